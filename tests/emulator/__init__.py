"""Tests of the Schwab emulator (devkit/emulator/)."""
