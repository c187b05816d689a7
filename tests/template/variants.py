"""Copies of template.yaml with other parameter defaults, for the scanners of `make lint-template`.

    python -m tests.template.variants OUT.yaml Encryption=CustomerManagedKey HostedLogin=Enabled
    python -m tests.template.variants --scan DIR

The first form writes a copy that differs from template.yaml only in the ``Default:`` lines of
the parameters named; a parameter that does not exist, has no default or does not allow the
value is an error. checkov decides a SAM template's resource Conditions by the defaults, so
each copy makes other resources the ones scanned.

The second form writes, for every variant of ``VARIANTS``:

- ``DIR/NAME.yaml``: the copy with the variant's defaults (the SAM template);
- ``DIR/NAME.translated.json``: what CloudFormation receives after the SAM transform, translated
  with SAM's own translator (``tests.template.stack.translate``) for the variant's parameters and
  region; cfn-lint reads it (it follows every Condition itself);
- ``DIR/NAME.deployed.json``: what CloudFormation deploys with those values: only the resources
  and outputs whose Condition holds, every ``Fn::If`` decided
  (``devkit.template.resolved_template``). checkov reads this one: it does not decide an
  ``Fn::If`` by the defaults (a log group's ``KmsKeyId: !If [UsesCustomerManagedKey, ...,
  !Ref AWS::NoValue]`` passes its KMS check with Encryption=AwsManaged, where the deployed log
  group has no key), and it skips IAM statements wrapped in one.

The translation passes each function's Metadata on to the resources SAM makes of it (SAM's
``passthrough_metadata``), so a checkov skip on a function reaches its role, permissions and URL.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devkit.template import TEMPLATE, load_yaml, resolved_template

_PARAMETER = re.compile(r"^  ([A-Za-z0-9]+):\s*$")

#: The parameter values a variant turns on, each the non-default value of its parameter.
ON = {
    "StoreType": "SecretsManager",
    "Encryption": "CustomerManagedKey",
    "CredentialsStore": "SecretsManager",
    "HostedLogin": "Enabled",
    "DetailedMetrics": "Enabled",
    "ReservedConcurrency": "Enabled",
    "AlarmEmail": "alarms@example.com",
    "TokenStoreUrls": "s3://other-bucket/schwab/bot2.json",
    "PowertoolsLayerArn": "arn:aws:lambda:us-east-1:123456789012:layer:my-powertools:3",
    "Alerts": "Enabled",
    "DocumentReaderPrincipals": "arn:aws:iam::123456789012:role/bot",
}
#: The region a variant is translated for; the Powertools layer's conditions read it.
REGION = "us-east-1"


def _variant(on: str, region: str = REGION) -> dict[str, str]:
    return {**{name: ON[name] for name in on.split()}, "AWS::Region": region}


#: The variants the scanners read: parameter values, and the region (``AWS::Region``). Every
#: pair of values of two parameters of ``ON`` appears in at least one of them (pairwise
#: coverage, test_the_scanned_variants_cover_every_pair_of_parameter_values), and so does every
#: branch of every Condition, the Powertools layer's three included (us-east-1: the official
#: layer of the commercial partition; cn-north-1: China's; ca-west-1: the stack's own).
#: Pairs, not just each value: a resource that exists under one parameter has properties that
#: follow another (the login's log group and Encryption, the credentials secret's policy and
#: HostedLogin), and all-off and all-on alone never scan the login's log group without the key.
#: The five mixed variants are a covering array: each parameter is on in three of the five, and
#: no two parameters are on in the same three. (No "secret" in a name: checkov takes the file's
#: name for AWS::StackName, and its CKV_AWS_384 then fails on StackNameCheck's name.)
VARIANTS: dict[str, dict[str, str]] = {
    "defaults": _variant(""),
    "all-on-s3": _variant(" ".join(n for n in ON if n != "StoreType")),
    "all-on-sm": _variant(" ".join(ON)),
    "mixed-1": _variant(
        "StoreType Encryption DetailedMetrics ReservedConcurrency TokenStoreUrls PowertoolsLayerArn"
    ),
    "mixed-2": _variant(
        "StoreType CredentialsStore DetailedMetrics AlarmEmail TokenStoreUrls Alerts",
        region="ca-west-1",
    ),
    "mixed-3": _variant(
        "StoreType HostedLogin ReservedConcurrency AlarmEmail PowertoolsLayerArn Alerts",
    ),
    "mixed-4": _variant(
        "Encryption CredentialsStore HostedLogin DetailedMetrics AlarmEmail PowertoolsLayerArn"
    ),
    "mixed-5": _variant(
        "Encryption CredentialsStore HostedLogin ReservedConcurrency TokenStoreUrls Alerts",
        region="cn-north-1",
    ),
    # One more parameter than the five's covering array has triples: on alone here, it meets
    # every other parameter off, and on (all-on) and off (defaults, mixed-1 to 5) elsewhere.
    "mixed-6": _variant("DocumentReaderPrincipals"),
}


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


def parameters_of(variant: Mapping[str, str]) -> dict[str, str]:
    """A variant's parameter values (without its region)."""
    return {name: value for name, value in variant.items() if not name.startswith("AWS::")}


def pseudo_parameters(variant: Mapping[str, str]) -> dict[str, str]:
    """The region a variant is translated for, and its partition (as boto3 knows them)."""
    import boto3

    region = variant.get("AWS::Region", REGION)
    partition = boto3.session.Session().get_partition_for_region(region)
    return {"AWS::Region": region, "AWS::Partition": partition}


def translated(variant: Mapping[str, str]) -> dict[str, Any]:
    """The SAM translation of the variant's copy of template.yaml (its defaults set)."""
    from tests.template.stack import translate

    parameters = parameters_of(variant)
    copy = load_yaml(with_defaults(TEMPLATE.read_text(), parameters))
    region = pseudo_parameters(variant)["AWS::Region"]
    return translate(parameters, copy, region, passthrough_metadata=True)


def deployed(translation: dict[str, Any], variant: Mapping[str, str]) -> dict[str, Any]:
    """``translation`` as CloudFormation deploys it for the variant: the resources and outputs
    whose Condition holds, without Conditions, every ``Fn::If`` decided."""
    result = resolved_template(parameters_of(variant), pseudo_parameters(variant), translation)
    for section in ("Resources", "Outputs"):
        for body in result[section].values():
            body.pop("Condition", None)
    result.pop("Conditions", None)
    return result


def deployed_variant(variant: Mapping[str, str]) -> dict[str, Any]:
    """What CloudFormation deploys for a variant (parameter values, ``AWS::Region`` optional):
    ``deployed(translated(variant), variant)``."""
    return deployed(translated(variant), variant)


def scan_files(directory: Path) -> list[Path]:
    """Write every variant's copy, translation and deployed template into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, variant in VARIANTS.items():
        copy = directory / f"{name}.yaml"
        copy.write_text(with_defaults(TEMPLATE.read_text(), parameters_of(variant)))
        translation = translated(variant)
        for suffix, document in (
            ("translated", translation),
            ("deployed", deployed(translation, variant)),
        ):
            path = directory / f"{name}.{suffix}.json"
            path.write_text(json.dumps(document, indent=1) + "\n")
            written.append(path)
        written.append(copy)
    return written


def pairs_missing(variants: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
    """Pairs of ``ON`` values (``name=on`` or ``name=off``) that no variant holds together."""
    seen = set()
    for variant in variants.values():
        values = [f"{n}={'on' if variant.get(n) == ON[n] else 'off'}" for n in ON]
        seen.update(itertools.combinations(values, 2))
    wanted = [
        (f"{a}={x}", f"{b}={y}")
        for a, b in itertools.combinations(ON, 2)
        for x in ("on", "off")
        for y in ("on", "off")
    ]
    return [pair for pair in wanted if pair not in seen]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--scan"] and len(argv) == 2:
        # samtranslator warns of its unpublished usage metrics, which nothing here publishes.
        logging.getLogger("samtranslator").setLevel(logging.ERROR)
        for path in scan_files(Path(argv[1])):
            print(path)
        return 0
    if len(argv) < 2 or not all("=" in a for a in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    overrides = dict(a.split("=", 1) for a in argv[1:])
    Path(argv[0]).write_text(with_defaults(TEMPLATE.read_text(), overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
