"""Copies of template.yaml with other parameter defaults, for tools that resolve Conditions with
the defaults (checkov): each variant makes the other branch of some conditions the one scanned.

    python -m tests.template.variants OUT.yaml Encryption=CustomerManagedKey HostedLogin=Enabled

The copy differs from template.yaml only in the ``Default:`` lines of the parameters named; a
parameter that does not exist, has no default or does not allow the value is an error.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.template import TEMPLATE, load_yaml

_PARAMETER = re.compile(r"^  ([A-Za-z0-9]+):\s*$")


def with_defaults(text: str, overrides: Mapping[str, str]) -> str:
    """``text`` (a template) with the defaults of ``overrides``' parameters replaced."""
    parameters = load_yaml(text)["Parameters"]
    lines = text.splitlines(keepends=True)
    section = lines.index("Parameters:\n")
    changed = set()
    current = None
    for number in range(section + 1, len(lines)):
        line = lines[number]
        if line.strip() and not line.startswith(" "):
            break  # the next top-level section
        match = _PARAMETER.match(line)
        if match:
            current = match.group(1)
        elif current in overrides and line.startswith("    Default:"):
            lines[number] = f"    Default: {json.dumps(overrides[current])}\n"
            changed.add(current)
    for name, value in overrides.items():
        if name not in changed:
            raise ValueError(f"parameter {name} not found, or it has no Default line")
        allowed = parameters[name].get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise ValueError(f"{name}={value} is not one of {allowed}")
    result = "".join(lines)
    resolved = load_yaml(result)["Parameters"]
    assert {n: str(resolved[n]["Default"]) for n in overrides} == dict(overrides)
    return result


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all("=" in a for a in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    overrides = dict(a.split("=", 1) for a in argv[1:])
    Path(argv[0]).write_text(with_defaults(TEMPLATE.read_text(), overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
