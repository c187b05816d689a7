"""The development kit: what the tests, scripts/ and benchmarks/ share to stand in for Schwab and
to read template.yaml as CloudFormation would.

- ``devkit.emulator``: the Schwab OAuth emulator, a real HTTP server on 127.0.0.1
  (``python -m devkit.emulator --port N``), and ``point_client_at_emulator`` for schwab-py.
- ``devkit.template``: template.yaml parsed with CloudFormation's tags, its Conditions and
  ``Fn::If`` decided for given parameter values.
- ``devkit.user``: what a user does: log a store in through the emulator, run the CLI in a shell
  pointed at it, paste a login.
- ``devkit.handlers``: a Lambda handler of functions/ loaded fresh, as a cold start does.
- ``devkit.function_url``: a local HTTPS stand-in for the hosted login's function URL.
- ``devkit.background``: a server on a daemon thread, and a free port for one.

Not part of the ``schwab-tokens`` distribution (pyproject.toml packages ``schwab_tokens`` only)
nor of the Lambda layer: ``make setup`` puts the repository on the development venv's path
(docs/development.md#where-the-code-is).
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root.
REPO = Path(__file__).resolve().parents[1]
