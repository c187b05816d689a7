"""The documentation's tests: README.md and docs/*.md hold to the conventions in
``tests/docs/checker.py`` (links, commands, make targets, template names, Python snippets), and
``scripts/invoke.py`` runs each Lambda handler locally."""
