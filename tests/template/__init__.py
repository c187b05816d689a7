"""Tests of template.yaml (the evaluator they share with scripts/ is devkit/template.py)."""
