"""template.yaml as CloudFormation reads it (for the template tests, `make invoke`, `make cost`).

``load_template`` parses CloudFormation's short-form tags (``!Ref``, ``!Sub``, ``!If``...) into
their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), so the readers see what CloudFormation
sees; ``conditions`` evaluates the Conditions for given parameter values, and
``resolved_template`` keeps what a deployment with those values holds.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from devkit import REPO

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
    # Rules-only functions.
    "Contains",
    "EachMemberEquals",
    "EachMemberIn",
    "RefAll",
    "ValueOf",
    "ValueOfAll",
)


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no types here: Any
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
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 (a SafeLoader with the CFN tags)


@cache
def load_template() -> dict[str, Any]:
    """template.yaml, parsed once per process (treat it as read-only)."""
    document = load_yaml(TEMPLATE.read_text())
    assert isinstance(document, dict)
    return document


# -- the template for given parameter values (Conditions resolved, as CloudFormation would) ------
NO_VALUE = {"Ref": "AWS::NoValue"}
#: The choice parameters and their values: every combination is a deployment a user may make.
CHOICES = {
    "StoreType": ("S3", "SecretsManager"),
    "Encryption": ("AwsManaged", "CustomerManagedKey"),
    "CredentialsStore": ("ParameterStore", "SecretsManager"),
    "HostedLogin": ("Disabled", "Enabled"),
    "DetailedMetrics": ("Disabled", "Enabled"),
}
#: Choices that change one property only: tested on their own rather than doubling every
#: combination (ReservedConcurrency: test_reserved_concurrency_is_opt_in).
#: What the pseudo parameters the Conditions read are where the tests deploy (moto's region).
PSEUDO_PARAMETERS = {"AWS::Partition": "aws", "AWS::Region": "us-east-1"}


def all_combinations() -> list[dict[str, str]]:
    """Every combination of the choice parameters (the first one is the defaults)."""
    combos: list[dict[str, str]] = [{}]
    for name, values in CHOICES.items():
        combos = [{**combo, name: value} for combo in combos for value in values]
    return combos


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    unknown = set(overrides) - set(values)
    assert not unknown, f"unknown parameters {unknown}"
    return {**values, **overrides}


def evaluate(node: Any, values: dict[str, str], condition: Any = None) -> Any:
    """A Condition or a Rules expression for these parameter values (``condition`` names the
    template's other conditions, for ``{"Condition": name}``)."""
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return values.get(argument, argument)
        if function == "Condition" and condition is not None:
            return condition(argument)
        if function == "Fn::Equals":
            return str(evaluate(argument[0], values, condition)) == str(
                evaluate(argument[1], values, condition)
            )
        if function == "Fn::Contains":  # Rules only
            listed = [str(evaluate(item, values, condition)) for item in argument[0]]
            return str(evaluate(argument[1], values, condition)) in listed
        if function == "Fn::Not":
            return not evaluate(argument[0], values, condition)
        if function == "Fn::And":
            return all(evaluate(a, values, condition) for a in argument)
        if function == "Fn::Or":
            return any(evaluate(a, values, condition) for a in argument)
        raise AssertionError(f"{function} cannot be evaluated here")
    return node


def conditions(
    template: dict[str, Any], values: dict[str, str], pseudo: dict[str, str] | None = None
) -> dict[str, bool]:
    """Every Condition of ``template`` evaluated for these parameter values, in the partition and
    region ``pseudo`` names (``PSEUDO_PARAMETERS`` where it names none)."""
    found: dict[str, bool] = {}
    values = {**PSEUDO_PARAMETERS, **(pseudo or {}), **values}

    def condition(name: str) -> bool:
        if name not in found:
            found[name] = bool(evaluate(template["Conditions"][name], values, condition))
        return found[name]

    for name in template.get("Conditions", {}):
        condition(name)
    return found


def resolve(value: Any, conds: dict[str, bool]) -> Any:
    """``value`` with every ``Fn::If`` decided and ``AWS::NoValue`` dropped (keys and items)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return resolve(when_true if conds[name] else when_false, conds)
        resolved = {key: resolve(item, conds) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item != NO_VALUE}
    if isinstance(value, list):
        items = [resolve(item, conds) for item in value]
        return [item for item in items if item != NO_VALUE]
    return value


def resolved_template(
    overrides: dict[str, str] | None = None,
    pseudo: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """template.yaml (or ``template``, e.g. its SAM translation) as deployed with these
    parameters (in the partition and region ``pseudo`` names): only the resources and outputs
    whose Condition holds, every ``Fn::If`` decided (Ref, Sub, FindInMap and GetAtt stay as they
    are)."""
    template = load_template() if template is None else template
    conds = conditions(template, parameter_values(template, overrides or {}), pseudo)

    def kept(section: str) -> dict[str, Any]:
        return {
            name: resolve(body, conds)
            for name, body in template.get(section, {}).items()
            if conds.get(body.get("Condition", ""), True)
        }

    return {**template, "Resources": kept("Resources"), "Outputs": kept("Outputs")}


def as_list(value: Any) -> list[Any]:
    """An IAM element that may be one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]
