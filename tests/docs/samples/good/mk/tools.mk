# An included file: its targets count too.
VERSION := 1:2

.PHONY: build

build:
	true
