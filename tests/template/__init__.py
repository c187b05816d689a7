"""Template tests: read template.yaml as a reviewer would, and build it with SAM.

``load_template`` parses CloudFormation's short-form tags (``!Ref``, ``!Sub``, ``!If``...) into
their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), so the tests see what CloudFormation sees.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

_SCALAR_FUNCTIONS = ("Ref", "Condition")
_FUNCTIONS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "ToJsonString",
    "Length",
)


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that knows CloudFormation's intrinsic-function tags."""


def _construct(node: yaml.Node, loader: CfnLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _add(tag: str, key: str) -> None:
    def construct(loader: CfnLoader, node: yaml.Node) -> Any:
        return {key: _construct(node, loader)}

    CfnLoader.add_constructor(f"!{tag}", construct)


for _name in _SCALAR_FUNCTIONS:
    _add(_name, _name)
for _name in _FUNCTIONS:
    _add(_name, f"Fn::{_name}")


def _get_att(loader: CfnLoader, node: yaml.Node) -> Any:
    value = _construct(node, loader)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!GetAtt", _get_att)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=CfnLoader)


@cache
def load_template() -> dict[str, Any]:
    """template.yaml, parsed once per test session (treat it as read-only)."""
    document = load_yaml(TEMPLATE.read_text())
    assert isinstance(document, dict)
    return document
