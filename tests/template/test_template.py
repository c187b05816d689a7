"""What a security reviewer checks in template.yaml, read statically (no AWS, no network).

Most checks run for every combination of the choice parameters (StoreType, Encryption,
CredentialsStore, HostedLogin, DetailedMetrics: 32 deployments), on the
template as CloudFormation would deploy it (``devkit.template.resolved_template``: Conditions
decided, ``Fn::If`` resolved), so both branches of every condition are read.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from devkit import REPO
from devkit.template import (
    CHOICES,
    NO_VALUE,
    all_combinations,
    as_list,
    conditions,
    evaluate,
    load_template,
    parameter_values,
    resolved_template,
)
from schwab_tokens.policy import LEASE_WAIT_SECONDS
from schwab_tokens.settings import DEFAULT_LEASE_TTL
from schwab_tokens.stores.secretsmanager import NOTES_WAIT_SECONDS
from scripts.lock import pins as lock_pins
from tests.template.variants import (
    ON,
    VARIANTS,
    deployed_variant,
    pairs_missing,
    parameters_of,
    pseudo_parameters,
    translated,
    with_defaults,
)

TOKEN_KEY = "schwab/tokens.json"
TOKEN = "${TokenBucket.Arn}/" + TOKEN_KEY
NOTES = TOKEN + ".notes"  # the S3 store's notes object (stores/s3.py)
LEASE = TOKEN + ".lease"  # the S3 store's lease object
VIEW_KEY = "schwab/tokens.access.json"  # the S3 store's access view (stores.access_url)
VIEW = "${TokenBucket.Arn}/" + VIEW_KEY
#: Every key under schwab/ the stack's writers use: the token, its notes and lease, and the
#: access view consumers read.
STORE_KEYS = [TOKEN_KEY, TOKEN_KEY + ".notes", TOKEN_KEY + ".lease", VIEW_KEY]
BUCKET = "GetAtt:TokenBucket.Arn"
PARAMETER = (
    "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    "/${AWS::StackName}/credentials"
)
#: The Secrets Manager store's access view: the SSM SecureString /<stack>/tokens.access.
VIEW_PARAMETER = (
    "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    "/${AWS::StackName}/tokens.access"
)
KEY = "GetAtt:TokenKey.Arn"
SECRETS_STORE = {
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
}
#: Granted until an earlier round and removed: nobody calls them (test_least_privilege).
#: (kms:Encrypt is back, for one use only: SSM encrypting the access view's SecureString.)
REMOVED = {"secretsmanager:ListSecretVersionIds"}
#: The identities and the policies they hold (``documents``): the two functions that write the
#: token, the consumers (TokenReaderPolicy) and bots that refresh it (TokenDocumentPolicy).
MANAGED = {"reader": "TokenReaderPolicy", "bot": "TokenDocumentPolicy"}

#: Actions that change a store, a secret or encrypt with a key: never on "*".
WRITE_ACTION = re.compile(
    r"^(s3:(Put|Delete|Restore|Replicate|Abort|Create|Update|Bypass)"
    r"|secretsmanager:(Put|Update|Create|Delete|Restore|Rotate|Tag|Untag|Cancel|Replicate|Remove"
    r"|Stop)"
    r"|sns:Publish"
    r"|kms:(Encrypt|ReEncrypt|GenerateDataKey|Create|Put|Delete|Disable|Enable|Schedule|Update"
    r"|Revoke|Retire|Tag|Untag|Import|Replicate|Sign))",
)
READ_ACTION = re.compile(r"^[a-z0-9-]+:(Get|Describe|Decrypt|List)[A-Za-z]*$")
COMBINATIONS = all_combinations()


def combo_id(combo: dict[str, str]) -> str:
    return "-".join(value for value in combo.values())


each_combination = pytest.mark.parametrize("combo", COMBINATIONS, ids=combo_id)


# ---------------------------------------------------------------------------- helpers
def resources() -> dict[str, Any]:
    return load_template()["Resources"]


def resource(name: str) -> dict[str, Any]:
    return resources()[name]


def props(name: str) -> dict[str, Any]:
    return resource(name)["Properties"]


def of_type(kind: str, template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    found = (template or load_template())["Resources"]
    return {name: r for name, r in found.items() if r["Type"] == kind}


def sub_text(value: Any) -> str:
    """The template string of a ``Fn::Sub`` (either form), or the string itself."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    raise AssertionError(f"not a string or Fn::Sub: {value!r}")


def target(value: Any) -> str:
    """A policy Resource as text: the Sub string, ``Ref:X`` or ``GetAtt:X.Attr``."""
    if isinstance(value, dict) and "Ref" in value:
        return f"Ref:{value['Ref']}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "GetAtt:" + ".".join(value["Fn::GetAtt"])
    return sub_text(value)


@cache
def deployed(items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return resolved_template(dict(items))


def shape(combo: dict[str, str]) -> dict[str, Any]:
    """The template as deployed with these parameters (read-only, cached)."""
    return deployed(tuple(sorted(combo.items())))


def documents(template: dict[str, Any], identity: str) -> list[dict[str, Any]]:
    """The policy documents an identity holds: the refresher's role's inline ones and the
    stack's managed ones it attaches (not AWS's: Lambda's basic execution policy, and X-Ray's,
    which test_xray_write_comes_with_tracing_only reads); the login function's, of which SAM
    makes its role; the managed policy of a consumer or a bot."""
    res = template["Resources"]
    if identity in MANAGED:
        return [res[MANAGED[identity]]["Properties"]["PolicyDocument"]]
    if identity == "refresher":
        role = res["RefresherFunctionRole"]["Properties"]
        attached = [a for a in role["ManagedPolicyArns"] if set(a) == {"Ref"}]
        policies = [p["PolicyDocument"] for p in role["Policies"]] + attached
    else:
        policies = res["LoginFunction"]["Properties"].get("Policies", [])
    found = []
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            found.append(policy)
        else:
            assert set(policy) == {"Ref"}, policy
            found.append(res[policy["Ref"]]["Properties"]["PolicyDocument"])
    return found


def statements(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for document in docs for s in as_list(document["Statement"])]


def grants(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(action, resource) pairs, resources as ``target`` writes them."""
    return {
        (action, target(resource_value))
        for statement in statements(docs)
        for action in as_list(statement["Action"])
        for resource_value in as_list(statement["Resource"])
    }


def env(template: dict[str, Any], function: str) -> dict[str, Any]:
    return template["Resources"][function]["Properties"]["Environment"]["Variables"]


def looks_like_a_secret(text: str) -> bool:
    """A long random-looking word: letters and several digits, high entropy (a key, a token)."""
    for word in re.split(r"[\s\-_/.:,;()\"'=]+", text):
        if len(word) < 16 or len(re.findall(r"[0-9]", word)) < 2:
            continue
        if len(re.findall(r"[A-Za-z]", word)) < 2:
            continue
        counts = Counter(word)
        entropy = -sum(n / len(word) * math.log2(n / len(word)) for n in counts.values())
        if entropy > 3.5:
            return True
    return False


# ---------------------------------------------------------------------------- basics
def test_is_a_sam_template_for_python312_on_arm64() -> None:
    template = load_template()
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    functions = of_type("AWS::Serverless::Function")
    assert set(functions) == {
        "RefresherFunction",
        "LoginFunction",
        "ExampleConsumerFunction",
        "NotifierFunction",
    }
    globals_ = template["Globals"]["Function"]
    assert "Tracing" not in globals_  # opt-in, on the refresher only
    for name in functions:
        merged = {**globals_, **props(name)}
        assert merged["Runtime"] == "python3.12", name
        assert merged["Architectures"] == ["arm64"], name
        assert merged["Handler"] == "app.lambda_handler", name


def test_parameters_of_the_contract() -> None:
    params = load_template()["Parameters"]
    choices = {
        "StoreType": (["S3", "SecretsManager"], "S3"),
        "HostedLogin": (["Enabled", "Disabled"], "Disabled"),
        "Encryption": (["AwsManaged", "CustomerManagedKey"], "AwsManaged"),
        "CredentialsStore": (["ParameterStore", "SecretsManager"], "ParameterStore"),
        "DetailedMetrics": (["Enabled", "Disabled"], "Disabled"),
        # Any reservation fails the deploy on a new account: opt-in.
        "ReservedConcurrency": (["Enabled", "Disabled"], "Disabled"),
    }
    for name, (allowed, default) in choices.items():
        assert sorted(params[name]["AllowedValues"]) == sorted(allowed), name
        assert params[name]["Default"] == default, name
    assert params["ScheduleExpression"]["Default"] == "rate(5 minutes)"
    assert params["AlarmEmail"]["Default"] == ""
    assert params["LogRetentionDays"]["Default"] in params["LogRetentionDays"]["AllowedValues"]
    assert params["TokenStoreUrls"]["Default"] == ""
    assert params["PowertoolsLayerArn"]["Default"] == ""
    conditions = load_template()["Conditions"]
    assert conditions["HostedLoginEnabled"] == {"Fn::Equals": [{"Ref": "HostedLogin"}, "Enabled"]}
    assert resource("LoginFunction")["Condition"] == "HostedLoginEnabled"
    assert resource("TokenKey")["Condition"] == "UsesCustomerManagedKey"
    assert resource("CredentialsSecret")["Condition"] == "CredentialsInSecretsManager"
    assert resource("Dashboard")["Condition"] == "DetailedMetricsEnabled"
    assert resource("TokenBucket")["Condition"] == "IsS3"
    assert resource("TokenSecret")["Condition"] == "IsSecretsManager"
    assert resource("AlarmEmailSubscription")["Condition"] == "HasAlarmEmail"


# ---------------------------------------------------------------------------- powertools
class MappingNotFound(LookupError):
    """What CloudFormation stops a deploy with: "Unable to get mapping for Map::Key::Key"."""


def evaluate_value(node: Any, values: dict[str, str], conds: dict[str, bool]) -> Any:
    """A property value as CloudFormation computes it for these parameter and pseudo-parameter
    values: only the chosen branch of an ``Fn::If`` is evaluated (as CloudFormation does: a
    lookup in the other one may fail). ``Ref`` to a resource stays ``{"Ref": name}``."""
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return values.get(argument, node)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return evaluate_value(when_true if conds[name] else when_false, values, conds)
        if function == "Fn::FindInMap":
            name, *keys = [evaluate_value(a, values, conds) for a in argument]
            found = load_template()["Mappings"][name]
            for key in keys:
                if key not in found:
                    raise MappingNotFound("::".join([name, *keys]))
                found = found[key]
            return found
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            known = dict(values)
            known.update({k: evaluate_value(v, values, conds) for k, v in variables.items()})
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(known[m[1]]), text)
    return node


#: The commercial regions of the arm64, python3.12 table in Powertools' installation docs
#: (docs/includes/_layer_homepage_arm64.md, the newest copy read lists layer version 25 in each;
#: the install page now names 37). Not ca-west-1: the arm64 table does not list it.
POWERTOOLS_COMMERCIAL_REGIONS = [
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
]
#: The official layer's account where Powertools publishes it (its installation docs).
POWERTOOLS_ACCOUNTS = {
    **dict.fromkeys(POWERTOOLS_COMMERCIAL_REGIONS, "017000801446"),
    "cn-north-1": "498634801083",
    "us-gov-east-1": "165087284144",
    "us-gov-west-1": "165093116878",
}
#: Regions of each partition without the official layer: newer than the docs' table, no arm64
#: column, China's second region, and a partition Powertools does not publish to.
NO_OFFICIAL_LAYER = ("ap-east-2", "ap-southeast-6", "ca-west-1", "cn-northwest-1", "us-iso-east-1")
BUNDLED = {"Ref": "PowertoolsLayer"}


def partition(region: str) -> str:
    """CloudFormation's AWS::Partition in ``region``."""
    for prefix, name in (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-iso-", "aws-iso")):
        if region.startswith(prefix):
            return name
    return "aws"


def powertools_layer(function: str, region: str, overrides: dict[str, str] | None = None) -> Any:
    """The function's Powertools layer as CloudFormation resolves it in ``region``: an ARN, or
    ``{"Ref": "PowertoolsLayer"}`` for the stack's own; and whether that layer exists there."""
    template = load_template()
    pseudo = {"AWS::Region": region, "AWS::Partition": partition(region)}
    values = {**parameter_values(template, overrides or {}), **pseudo}
    conds = conditions(template, values, pseudo)
    layers = template["Resources"][function]["Properties"]["Layers"]
    assert layers[0] == {"Ref": "SchwabTokensLayer"}
    bundled = conds[template["Resources"]["PowertoolsLayer"]["Condition"]]
    return evaluate_value(layers[1], values, conds), bundled


@pytest.mark.parametrize("function", ["RefresherFunction", "LoginFunction"])
@pytest.mark.parametrize("region", sorted(POWERTOOLS_ACCOUNTS))
def test_the_official_powertools_layer_where_its_docs_list_it(function: str, region: str) -> None:
    account = POWERTOOLS_ACCOUNTS[region]
    assert powertools_layer(function, region) == (
        f"arn:{partition(region)}:lambda:{region}:{account}:layer:"
        "AWSLambdaPowertoolsPythonV3-python312-arm64:27",
        False,  # and no bundle of the stack's own
    )


@pytest.mark.parametrize("function", ["RefresherFunction", "LoginFunction"])
@pytest.mark.parametrize("region", NO_OFFICIAL_LAYER)
def test_the_stacks_own_powertools_layer_everywhere_else(function: str, region: str) -> None:
    """No deploy stops on a missing layer or mapping: the functions get the stack's bundle."""
    assert powertools_layer(function, region) == (BUNDLED, True)


@pytest.mark.parametrize("function", ["RefresherFunction", "LoginFunction"])
@pytest.mark.parametrize("region", sorted(POWERTOOLS_ACCOUNTS) + list(NO_OFFICIAL_LAYER))
def test_powertools_layer_arn_overrides_both(function: str, region: str) -> None:
    mine = f"arn:{partition(region)}:lambda:{region}:123456789012:layer:my-powertools:3"
    assert powertools_layer(function, region, {"PowertoolsLayerArn": mine}) == (mine, False)
    pattern = re.compile(load_template()["Parameters"]["PowertoolsLayerArn"]["AllowedPattern"])
    assert pattern.fullmatch(mine)


def test_the_deploy_docs_list_where_the_official_layer_is_used() -> None:
    """docs/deploy.md's Regions table names the regions of OfficialPowertoolsPublishedHere."""
    text = (REPO / "docs" / "deploy.md").read_text()
    section = text.split("\n## Regions\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    official = [
        row.split(" | ")[0].lstrip("| ")
        for row in rows
        if "version 27" in row or "the same layer" in row
    ]
    listed = {region.strip() for cells in official for region in cells.split(",")}
    published = {
        region
        for region in [*POWERTOOLS_ACCOUNTS, *NO_OFFICIAL_LAYER]
        if powertools_layer("RefresherFunction", region)[0] != BUNDLED
    }
    assert listed == published == set(POWERTOOLS_ACCOUNTS)
    assert "`<stack>-powertools`" in section and "`PowertoolsLayerArn`" in section


def test_every_or_and_and_has_two_to_ten_conditions() -> None:
    """CloudFormation's limit for Fn::Or and Fn::And (the region list is grouped for it)."""

    def walk(node: Any) -> Iterator[tuple[str, int]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("Fn::Or", "Fn::And"):
                    yield key, len(value)
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    found = list(walk(load_template()["Conditions"]))
    assert ("Fn::Or", 4) in found  # the region groups
    assert all(2 <= count <= 10 for _, count in found), found


def test_the_bundled_powertools_layer_is_built_from_hash_locked_requirements() -> None:
    """layers/powertools/ installs exactly its pinned, hashed wheels for Lambda's platform, and
    its Powertools is one that pyproject.toml's runtime dependency allows."""
    from packaging.requirements import Requirement

    layer = resource("PowertoolsLayer")
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    content = REPO / layer["Properties"]["ContentUri"]
    makefile = (content / "Makefile").read_text()
    assert "build-PowertoolsLayer:" in makefile
    for flag in (
        "--require-hashes",
        "--no-deps",
        "--platform manylinux2014_aarch64",
        "--implementation cp",
        "--python-version 3.12",
        "--only-binary=:all:",
    ):
        assert flag in makefile, flag
    locked = lock_pins((content / "requirements.lock").read_text(), "requirements.lock")
    assert all(len(pin.hashes) == 1 for pin in locked)  # the wheel that ships
    pins = {pin.name: pin.version for pin in locked}
    assert set(pins) == {
        "aws-lambda-powertools",
        "typing-extensions",
        "jmespath",
        "aws-xray-sdk",
        "wrapt",
    }
    assert not {"boto3", "botocore"} & set(pins)  # the runtime's
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (wanted,) = [
        Requirement(d)
        for d in pyproject["project"]["dependencies"]
        if d.startswith("aws-lambda-powertools")
    ]
    assert pins["aws-lambda-powertools"] in wanted.specifier


# ---------------------------------------------------------------------------- names
#: The longest stack name CloudFormation accepts (128 characters of [a-zA-Z][-a-zA-Z0-9]*).
LONGEST_STACK_NAME = "s" + "-x" * 63 + "y"
#: The longest region name (us-isof-south-1) and the longest partition.
LONGEST = {
    "AWS::StackName": LONGEST_STACK_NAME,
    "AWS::Region": "us-isof-south-1",
    "AWS::Partition": "aws-us-gov",
    "AWS::AccountId": "123456789012",
}
#: The limits of every name the template builds from the stack name: (type, property) ->
#: (maximum length, the characters allowed), from the CloudFormation resource schemas
#: (LayerName 140, LogGroupName 512, AlarmName 255, AliasName 256, secret Name 512, key
#: Description 8192) and CloudWatch's PutDashboard (DashboardName 255, A-Z a-z 0-9 - _).
NAME_LIMITS: dict[tuple[str, str], tuple[int, str]] = {
    ("AWS::Serverless::LayerVersion", "LayerName"): (140, r"[a-zA-Z0-9_-]+"),
    ("AWS::Logs::LogGroup", "LogGroupName"): (512, r"[.\-_/#A-Za-z0-9]+"),
    ("AWS::CloudWatch::Alarm", "AlarmName"): (255, r"\S+"),
    ("AWS::KMS::Alias", "AliasName"): (256, r"alias/[a-zA-Z0-9:/_-]+"),
    ("AWS::CloudWatch::Dashboard", "DashboardName"): (255, r"[A-Za-z0-9_-]+"),
    ("AWS::SecretsManager::Secret", "Name"): (512, r"[A-Za-z0-9/_+=.@-]+"),
    ("AWS::KMS::Key", "Description"): (8192, r".+"),
    # The name alone, less its longest ARN prefix (SSM_NAME_WITH_ARN below).
    ("AWS::SSM::Parameter", "Name"): (
        1011 - len("arn:aws-us-gov:ssm:us-isof-south-1:123456789012:parameter"),
        r"/[a-zA-Z0-9_.\-/]+",
    ),
}
#: An SSM parameter's name may be 1011 characters long counting its whole ARN (the SSM and
#: CloudFormation docs), in at most 15 levels.
SSM_NAME_WITH_ARN = 1011


def names_from_the_stack_name() -> dict[tuple[str, str, str], str]:
    """(resource, type, property) -> the value, for every name or description built from the
    stack's name, resolved for the longest stack name, region and partition."""
    values = {**parameter_values(load_template(), {}), **LONGEST}
    found = {}
    for name, r in resources().items():
        for key, value in r.get("Properties", {}).items():
            if (key.endswith("Name") or key == "Description") and "AWS::StackName" in json.dumps(
                value
            ):
                found[(name, r["Type"], key)] = evaluate_value(value, values, {})
    return found


def test_every_name_built_from_the_stack_name_fits_with_the_longest_stack_name() -> None:
    assert len(LONGEST_STACK_NAME) == 128
    found = names_from_the_stack_name()
    # Every such name has its limit here: a new one must be looked up and added.
    assert {(kind, key) for _, kind, key in found} == set(NAME_LIMITS)
    for (name, kind, key), value in found.items():
        limit, allowed = NAME_LIMITS[(kind, key)]
        assert LONGEST_STACK_NAME in value, (name, value)
        assert len(value) <= limit, f"{name}.{key}: {len(value)} > {limit} characters"
        assert re.fullmatch(allowed, value), f"{name}.{key}: {value!r}"
    # The layers' names are the tightest: 128 + "-layer" and 128 + "-powertools" of 140.
    layer = found[("SchwabTokensLayer", "AWS::Serverless::LayerVersion", "LayerName")]
    assert layer == LONGEST_STACK_NAME + "-layer"
    bundle = found[("PowertoolsLayer", "AWS::Serverless::LayerVersion", "LayerName")]
    assert bundle == LONGEST_STACK_NAME + "-powertools" and len(bundle) == 139


def test_the_ssm_parameter_names_fit_with_the_longest_stack_name() -> None:
    values = {**parameter_values(load_template(), {}), **LONGEST}
    outputs = load_template()["Outputs"]
    for arn_text, output in (
        (PARAMETER, outputs["CredentialsSecretName"]["Value"]["Fn::If"][1]),
        (VIEW_PARAMETER, outputs["AccessTokenUrl"]["Value"]["Fn::If"][2]),
    ):
        arn = evaluate_value({"Fn::Sub": arn_text}, values, {})
        assert len(arn) <= SSM_NAME_WITH_ARN
        name = arn.split(":parameter", 1)[1]
        assert name.startswith("/") and name.count("/") <= 15
        assert evaluate_value(output, values, {}) == "ssm:" + name


def test_ssm_refuses_a_stack_name_it_would_refuse_later_before_anything_is_kept() -> None:
    """The stack's SSM names share their first level, /<stack>/, with StackNameCheck: a name SSM
    refuses there ("aws...", "ssm...") fails that resource, in every combination, and the
    resources a failed stack keeps are created only after it (tested on moto in test_deploy)."""
    check = resource("StackNameCheck")
    assert check["Type"] == "AWS::SSM::Parameter" and "Condition" not in check
    name = sub_text(check["Properties"]["Name"])
    assert name.startswith("/${AWS::StackName}/")
    own = {PARAMETER.split(":parameter", 1)[1], VIEW_PARAMETER.split(":parameter", 1)[1]}
    assert {n.split("/")[1] for n in own} == {name.split("/")[1]}
    assert name not in own  # never in the way of the credentials or the view
    assert check["Properties"]["Type"] == "String"  # standard tier: free
    kept = {
        n
        for n, r in resources().items()
        if r.get("DeletionPolicy") == "Retain" or r.get("UpdateReplacePolicy") == "Retain"
    }
    # The perimeter's resource policies are kept with the store they fence, and refer to it, so
    # CloudFormation creates them after it.
    fences = {"TokenBucketPolicy": "TokenBucket", "TokenSecretPolicy": "TokenSecret"}
    assert kept == {"TokenKey", "TokenBucket", "TokenSecret", *fences}
    for n in kept - set(fences):
        assert resource(n)["DependsOn"] == "StackNameCheck", n
    for policy, store in fences.items():
        assert {"Ref": store} in props(policy).values(), policy


# ---------------------------------------------------------------------------- timing
RATES = {f"rate({n} minute{'s' if n > 1 else ''})": n for n in range(1, 10)}


def test_the_schedule_admits_only_what_the_margin_can_cover() -> None:
    pattern = re.compile(load_template()["Parameters"]["ScheduleExpression"]["AllowedPattern"])
    for expression in [*RATES, "cron(0/5 * * * ? *)", "cron(*/3 13-20 ? * MON-FRI *)"]:
        assert pattern.fullmatch(expression), expression
    for expression in (
        "rate(10 minutes)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(05 minutes)",
        "rate(1 hour)",
        "rate(0 minutes)",
        "every 5 minutes",
        "",
    ):
        assert not pattern.fullmatch(expression), expression


def test_margins_keep_refreshes_at_least_15_minutes_apart() -> None:
    margin = load_template()["Parameters"]["RefreshMarginSeconds"]
    assert margin["Default"] == 900
    assert (margin["MinValue"], margin["MaxValue"]) == (420, 900)
    assert margin["AllowedValues"] == list(range(420, 901, 60))
    # A 1800 s token is refreshed when less than the margin is left: the next refresh is at
    # least 1800 - margin seconds later, i.e. Secrets Manager sees at most one new version per
    # 15 minutes.
    assert 1800 - margin["MaxValue"] >= 15 * 60
    # The smallest margin still covers the fastest schedule: one failed run + schwab-py's 300 s.
    assert margin["MinValue"] >= 60 * min(RATES.values()) + 360


def test_the_refreshers_timeout_covers_its_worst_case() -> None:
    refresher = props("RefresherFunction")
    # Another writer's lease waited out, our own lease held to its deadline (Schwab's retries
    # stop there), the notes' wait on Secrets Manager, and 30 s of AWS calls around them.
    assert refresher["Timeout"] >= LEASE_WAIT_SECONDS + DEFAULT_LEASE_TTL + NOTES_WAIT_SECONDS + 30
    assert refresher["Timeout"] <= 300  # and no slack beyond: a hung run is billed to the end
    # Lambda retries a failed event 1 and then 2 minutes after an attempt: with every attempt
    # running its full timeout, the last retry still starts before the event is too old.
    invoke = refresher["EventInvokeConfig"]
    attempts = 1 + invoke["MaximumRetryAttempts"]
    last_start = (attempts - 1) * refresher["Timeout"] + 60 + 120
    assert attempts == 3 and last_start <= invoke["MaximumEventAgeInSeconds"] <= 15 * 60


def rules_pass(values: dict[str, str]) -> bool:
    """Evaluate the template's Rules as CloudFormation does for these parameter values."""
    for rule in load_template()["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        if not all(evaluate(a["Assert"], values) for a in rule["Assertions"]):
            return False
    return True


def test_rules_refuse_a_margin_shorter_than_the_interval_plus_360_seconds() -> None:
    template = load_template()
    margins = template["Parameters"]["RefreshMarginSeconds"]["AllowedValues"]
    for expression, minutes in RATES.items():
        for margin in margins:
            values = parameter_values(
                template, {"ScheduleExpression": expression, "RefreshMarginSeconds": str(margin)}
            )
            assert rules_pass(values) is (margin >= 60 * minutes + 360), (expression, margin)
    for margin in margins:  # a cron expression is not checked
        values = parameter_values(
            template,
            {"ScheduleExpression": "cron(0/5 * * * ? *)", "RefreshMarginSeconds": str(margin)},
        )
        assert rules_pass(values)
    assert rules_pass(parameter_values(template, {}))  # the defaults deploy
    for rule in template["Rules"].values():
        assert len(rule["Assertions"][0]["AssertDescription"]) > 20


# ---------------------------------------------------------------------------- permissions
@each_combination
def test_no_wildcard_action_and_no_write_on_a_wildcard_resource(combo: dict[str, str]) -> None:
    template = shape(combo)
    identities = ["refresher", "reader", "bot"]
    identities += ["login"] if combo["HostedLogin"] == "Enabled" else []
    for identity in identities:
        for statement in statements(documents(template, identity)):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, (identity, action)
            for resource_value in as_list(statement["Resource"]):
                # Every resource is one of this stack's: a reference, never a literal.
                assert isinstance(resource_value, dict), (identity, resource_value)
                assert "*" not in target(resource_value), (identity, resource_value)


@each_combination
def test_each_identity_holds_exactly_what_its_calls_need(combo: dict[str, str]) -> None:
    template = shape(combo)
    s3 = combo["StoreType"] == "S3"
    cmk = combo["Encryption"] == "CustomerManagedKey"
    listing = {("s3:ListBucket", BUCKET)}  # implicit: missing keys answer 404, not 403
    if s3:
        token = {(a, r) for a in ("s3:GetObject", "s3:PutObject") for r in (TOKEN, VIEW)}
        notes = {(a, NOTES) for a in ("s3:GetObject", "s3:PutObject")}
        lease = {(a, LEASE) for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")}
        view_read = {("s3:GetObject", VIEW)}
    else:
        token = {(a, "Ref:TokenSecret") for a in SECRETS_STORE}
        token |= {(a, VIEW_PARAMETER) for a in ("ssm:GetParameter", "ssm:PutParameter")}
        notes = lease = listing = set()  # staging labels: the store's own actions
        view_read = {("ssm:GetParameter", VIEW_PARAMETER)}
    if combo["CredentialsStore"] == "ParameterStore":
        credentials = {("ssm:GetParameter", PARAMETER)}
    else:
        credentials = {("secretsmanager:GetSecretValue", "Ref:CredentialsSecret")}
    key = {("kms:Decrypt", KEY), ("kms:GenerateDataKey", KEY)} if cmk else set()
    if cmk and not s3:  # SSM encrypts the view's SecureString directly under the key
        key.add(("kms:Encrypt", KEY))
    writer = token | notes | listing | credentials | key
    assert grants(documents(template, "refresher")) == writer | lease | {
        ("sns:Publish", "Ref:AlarmTopic"),
        ("sqs:SendMessage", "GetAtt:FailureQueue.Arn"),  # Lambda's on-failure destination
    }
    if combo["HostedLogin"] == "Enabled":
        assert grants(documents(template, "login")) == writer
    # Consumers: the access view, read only; bots: the document, its notes (a login it finds
    # over, noted as every writer notes it), the lease and the view.
    assert grants(documents(template, "reader")) == view_read | (
        {("kms:Decrypt", KEY)} if cmk else set()
    )
    assert grants(documents(template, "bot")) == token | notes | lease | listing | key
    for identity in ("refresher", "reader", "bot"):
        held = {action for action, _ in grants(documents(template, identity))}
        assert not held & REMOVED, identity
    reader = {action for action, _ in grants(documents(template, "reader"))}
    assert "s3:ListBucket" not in reader  # readers get no view of the bucket's keys
    assert ("s3:DeleteObject", TOKEN) not in grants(documents(template, "refresher"))


@each_combination
def test_the_reader_policy_names_the_access_view_and_nothing_else(combo: dict[str, str]) -> None:
    """What a leaked consumer role yields: the access view (30 minutes of API access), never the
    token document (the refresh token: seven days), the notes, the lease or the credentials."""
    template = shape(combo)
    (document,) = documents(template, "reader")
    view = VIEW if combo["StoreType"] == "S3" else VIEW_PARAMETER
    for statement in statements([document]):
        actions = as_list(statement["Action"])
        if actions == ["kms:Decrypt"]:
            assert statement["Resource"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
            (context,) = [
                v
                for k, v in statement["Condition"]["StringEquals"].items()
                if k.startswith("kms:EncryptionContext:")
            ]
            assert sub_text(context) == view  # decrypts the view's ciphertext only
        else:
            assert actions in (["s3:GetObject"], ["ssm:GetParameter"]), actions
            assert [sub_text(r) for r in as_list(statement["Resource"])] == [view]
        text = json.dumps(statement)
        for other in ("tokens.json", "TokenSecret", "credentials", "Credentials"):
            assert other not in text, (other, statement)


@each_combination
def test_writers_may_list_the_stores_bucket_without_a_condition(combo: dict[str, str]) -> None:
    """S3 answers a GetObject or HeadObject of a missing key with 404 only to a caller that has
    s3:ListBucket (403 AccessDenied otherwise, which a fresh stack would report as "access
    denied" instead of "login required"). Whether a grant limited by s3:prefix counts is not
    documented, so the writers' grant has no condition; it names the stack's bucket alone."""
    template = shape(combo)
    for policy in ("TokenWriterPolicy", "TokenDocumentPolicy"):
        document = template["Resources"][policy]["Properties"]["PolicyDocument"]
        listing = [s for s in statements([document]) if "s3:ListBucket" in as_list(s["Action"])]
        if combo["StoreType"] != "S3":
            assert listing == []
            continue
        (statement,) = listing
        assert as_list(statement["Action"]) == ["s3:ListBucket"]
        assert statement["Resource"] == {"Fn::GetAtt": ["TokenBucket", "Arn"]}  # the bucket only
        assert "Condition" not in statement, policy
    # Every object a function or a bot reads or writes is one of the store's keys: listing
    # shows no other name.
    identities = ["refresher", "bot"] + (["login"] if combo["HostedLogin"] == "Enabled" else [])
    for identity in identities:
        objects = {
            r.removeprefix("${TokenBucket.Arn}/")
            for action, r in grants(documents(template, identity))
            if action != "s3:ListBucket" and action.startswith("s3:")
        }
        assert objects <= set(STORE_KEYS), identity


@each_combination
def test_kms_use_is_scoped_to_the_services_and_the_encryption_contexts(
    combo: dict[str, str],
) -> None:
    """Every KMS grant names the stack's key, the services that call KMS on the caller's behalf
    (kms:ViaService) and, where a service's encryption context can name exactly what is
    decrypted, that context: S3 gives ``aws:s3:arn`` (the bucket's ARN under the bucket key, the
    object's own without it: the access view), Secrets Manager ``SecretARN``, SSM
    ``PARAMETER_ARN`` (a standard SecureString is encrypted directly under the key: Encrypt on
    PutParameter, Decrypt on GetParameter)."""
    template = shape(combo)
    s3 = combo["StoreType"] == "S3"

    def via(service: str) -> str:
        return f"{service}.${{AWS::Region}}.${{AWS::URLSuffix}}"

    def grants_of(identity: str) -> set[tuple[frozenset[str], frozenset[str], str]]:
        """(actions, services, the encryption-context condition as JSON) per KMS statement."""
        found = set()
        for statement in statements(documents(template, identity)):
            actions = as_list(statement["Action"])
            if not any(a.startswith("kms:") for a in actions):
                continue
            assert all(a.startswith("kms:") for a in actions), statement
            assert statement["Resource"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}, statement
            assert list(statement["Condition"]) == ["StringEquals"], statement  # no wildcards
            condition = dict(statement["Condition"]["StringEquals"])
            services = frozenset(sub_text(v) for v in as_list(condition.pop("kms:ViaService")))
            context = {k: [sub_text(target(v)) for v in as_list(c)] for k, c in condition.items()}
            assert all(k.startswith("kms:EncryptionContext:") for k in context), statement
            found.add((frozenset(actions), services, json.dumps(context, sort_keys=True)))
        return found

    def grant(actions: str, services: list[str], **context: list[str]) -> Any:
        keyed = {f"kms:EncryptionContext:{k.replace('__', ':')}": v for k, v in context.items()}
        return (
            frozenset(f"kms:{a}" for a in actions.split()),
            frozenset(via(s) for s in services),
            json.dumps(keyed, sort_keys=True),
        )

    if combo["Encryption"] == "AwsManaged":
        # aws/ssm (the Secrets Manager store's view) lets the account's principals use it
        # through SSM by its own key policy: no grant.
        for identity in ("refresher", "reader", "bot"):
            assert grants_of(identity) == set(), identity
        return
    view_parameter = {"PARAMETER_ARN": [VIEW_PARAMETER]}
    stores = grant("Decrypt GenerateDataKey", ["s3", "secretsmanager"])
    topic_and_queue = grant("Decrypt GenerateDataKey", ["sns", "sqs"])
    ssm_view = grant("Encrypt Decrypt", ["ssm"], **view_parameter)
    writer = {stores} | (set() if s3 else {ssm_view})
    assert grants_of("refresher") == writer | {topic_and_queue}
    if combo["HostedLogin"] == "Enabled":
        assert grants_of("login") == writer
    if s3:
        assert grants_of("reader") == {grant("Decrypt", ["s3"], aws__s3__arn=[VIEW])}
        assert grants_of("bot") == {
            grant("Decrypt GenerateDataKey", ["s3"], aws__s3__arn=[BUCKET, VIEW])
        }
    else:
        assert grants_of("reader") == {grant("Decrypt", ["ssm"], **view_parameter)}
        assert grants_of("bot") == {
            grant("Decrypt GenerateDataKey", ["secretsmanager"], SecretARN=["Ref:TokenSecret"]),
            ssm_view,
        }
    # kms:Encrypt: only SSM, only for the view's parameter.
    for identity in ("refresher", "reader", "bot"):
        for actions, services, context in grants_of(identity):
            if "kms:Encrypt" in actions:
                assert services == {via("ssm")}
                assert json.loads(context) == {
                    "kms:EncryptionContext:PARAMETER_ARN": [VIEW_PARAMETER]
                }


def test_the_bucket_key_gives_the_token_the_buckets_context_and_the_view_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader's and the bot's S3 encryption contexts rest on how the objects are written:
    the token under the bucket's default (the bucket key: context = the bucket's ARN), the view
    without the bucket key (context = its own ARN). The writers' own requests, on moto."""
    from moto import mock_aws

    from schwab_tokens import aws
    from schwab_tokens.stores import store_from_url
    from schwab_tokens.token import Token

    bucket = resolved_template({"Encryption": "CustomerManagedKey"})["Resources"]["TokenBucket"]
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    puts: dict[str, dict[str, Any]] = {}
    now = 1_800_000_000
    token = Token.from_dict(
        {
            "creation_timestamp": now,
            "token": {
                "access_token": "a" * 40,
                "refresh_token": "r" * 40,
                "id_token": "i" * 40,
                "token_type": "Bearer",
                "expires_in": 1800,
                "scope": "api",
                "expires_at": now + 1800,
            },
        }
    )
    with mock_aws():
        aws.reset_clients()
        key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
        aws.client("s3").create_bucket(Bucket="b-tokens")
        aws.client("s3").meta.events.register(
            "before-parameter-build.s3.PutObject",
            lambda params, **_: puts.__setitem__(params["Key"], dict(params)),
        )
        monkeypatch.setenv("TOKEN_STORE_KMS_KEY_ID", key)
        store = store_from_url("s3://b-tokens/" + TOKEN_KEY)
        store.write(token, None)
        assert store.sync_view(token) == "written"
    aws.reset_clients()
    assert "BucketKeyEnabled" not in puts[TOKEN_KEY]  # the bucket's default: the bucket key
    view = puts[VIEW_KEY]
    assert (view["ServerSideEncryption"], view["SSEKMSKeyId"]) == ("aws:kms", key)
    assert view["BucketKeyEnabled"] is False


#: Service principals that name the region carry the partition's suffix too (CloudWatch Logs'
#: is logs.cn-north-1.amazonaws.com.cn in China); the others are global, <service>.amazonaws.com
#: in every partition (CloudWatch's alarms, Lambda).
REGIONAL_PRINCIPALS = {"logs"}


def test_service_endpoints_and_regional_principals_carry_the_partitions_url_suffix() -> None:
    """kms:ViaService names the endpoint of the service that calls KMS, which ends in
    amazonaws.com.cn in China: each is ``<service>.${AWS::Region}.${AWS::URLSuffix}``, or the
    key would refuse the stores, the view, the topic and the queue there."""
    via: list[Any] = []
    principals: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "kms:ViaService":
                    via.extend(as_list(value))
                if key == "Principal" and isinstance(value, dict) and "Service" in value:
                    principals.extend(as_list(value["Service"]))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load_template())  # every branch of every Fn::If
    walk(translated({})["Resources"])  # and what SAM adds (the roles' trust policies)
    assert len(via) >= 10
    for value in via:
        assert re.fullmatch(r"[a-z0-9-]+\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}", sub_text(value))
    for value in principals:
        text = sub_text(value)
        service = text.split(".")[0]
        if service in REGIONAL_PRINCIPALS:
            assert text == service + ".${AWS::Region}.${AWS::URLSuffix}", text
        else:
            assert re.fullmatch(r"[a-z0-9-]+\.amazonaws\.com", text), text
    assert {sub_text(p).split(".")[0] for p in principals} == {"cloudwatch", "logs", "lambda"}
    assert "${AWS::Region}.amazonaws.com" not in (REPO / "template.yaml").read_text()


def test_the_key_policy_guards_every_service_statement() -> None:
    key = props("TokenKey")
    assert key["EnableKeyRotation"] is True
    services = {}
    for statement in as_list(key["KeyPolicy"]["Statement"]):
        assert statement["Effect"] == "Allow"
        principal = statement["Principal"]
        assert principal != "*"
        if "AWS" in principal:
            assert sub_text(principal["AWS"]) == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
            continue
        service = sub_text(principal["Service"])
        services[service] = statement
        # Services get only what they need to use the key, never to manage it.
        for action in as_list(statement["Action"]):
            assert re.match(r"kms:(Encrypt|Decrypt|ReEncrypt|GenerateDataKey|Describe)", action)
        condition = json.dumps(statement["Condition"])
        if service.startswith("logs."):
            # CloudWatch Logs' guard: the log group ARN in the encryption context names this
            # account and this stack's log groups.
            (arn,) = statement["Condition"]["ArnLike"].values()
            assert list(statement["Condition"]["ArnLike"]) == ["kms:EncryptionContext:aws:logs:arn"]
            assert sub_text(arn).startswith(
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
            )
            assert "/aws/lambda/${AWS::StackName}-" in sub_text(arn)
        else:
            assert "aws:SourceAccount" in condition and "aws:SourceArn" in condition, service
            source = sub_text(statement["Condition"]["ArnLike"]["aws:SourceArn"])
            assert ":${AWS::AccountId}:alarm:${AWS::StackName}-*" in source
    assert set(services) == {"cloudwatch.amazonaws.com", "logs.${AWS::Region}.${AWS::URLSuffix}"}
    assert props("TokenKeyAlias")["TargetKeyId"] == {"Ref": "TokenKey"}
    assert resource("TokenKeyAlias")["Condition"] == "UsesCustomerManagedKey"


# ---------------------------------------------------------------------------- encryption
@each_combination
def test_encryption_follows_the_encryption_parameter(combo: dict[str, str]) -> None:
    template = shape(combo)
    res = template["Resources"]
    cmk = combo["Encryption"] == "CustomerManagedKey"
    key_arn = {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert len(of_type("AWS::KMS::Key", template)) == (1 if cmk else 0)
    if not cmk:  # no customer-managed key at all: nothing even refers to one
        assert "TokenKey" not in json.dumps(res)
    if "TokenBucket" in res:
        (rule,) = res["TokenBucket"]["Properties"]["BucketEncryption"][
            "ServerSideEncryptionConfiguration"
        ]
        if cmk:
            assert rule == {
                "ServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": key_arn,
                },
                "BucketKeyEnabled": True,
            }
        else:
            assert rule == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    for secret in ("TokenSecret", "CredentialsSecret"):
        if secret in res:
            assert res[secret]["Properties"].get("KmsKeyId") == (key_arn if cmk else None)
    queue = res["FailureQueue"]["Properties"]
    if cmk:
        assert (
            queue["KmsMasterKeyId"] == {"Ref": "TokenKey"} and "SqsManagedSseEnabled" not in queue
        )
    else:
        assert queue["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in queue
    for group in of_type("AWS::Logs::LogGroup", template).values():
        assert group["Properties"].get("KmsKeyId") == (key_arn if cmk else None)
    topic = res["AlarmTopic"]["Properties"]
    assert topic.get("KmsMasterKeyId") == ({"Ref": "TokenKey"} if cmk else None)
    for function in ("RefresherFunction", "LoginFunction"):
        if function in res:
            assert env(template, function).get("TOKEN_STORE_KMS_KEY_ID") == (
                key_arn if cmk else None
            )


def test_the_encryption_parameter_says_what_each_mode_encrypts() -> None:
    """The Encryption parameter's description and the deploy docs' row name, for AwsManaged,
    what the deployed resources really use, and for CustomerManagedKey every kind of resource
    the key is set on (the access view: through the functions' TOKEN_STORE_KMS_KEY_ID)."""
    text = " ".join(load_template()["Parameters"]["Encryption"]["Description"].split())
    aws_managed, customer = text.split("CustomerManagedKey:")
    row = next(
        line
        for line in (REPO / "docs/deploy.md").read_text().splitlines()
        if line.startswith("| `Encryption` |")
    )
    res = shape({"StoreType": "SecretsManager", "CredentialsStore": "SecretsManager"})["Resources"]
    said = {
        "SSE-S3": shape({})["Resources"]["TokenBucket"]["Properties"]["BucketEncryption"][
            "ServerSideEncryptionConfiguration"
        ][0]["ServerSideEncryptionByDefault"]
        == {"SSEAlgorithm": "AES256"},
        "aws/secretsmanager": all(
            "KmsKeyId" not in res[s]["Properties"] for s in ("TokenSecret", "CredentialsSecret")
        ),
        "SSE-SQS": res["FailureQueue"]["Properties"].get("SqsManagedSseEnabled") is True,
        "not encrypted at rest": "KmsMasterKeyId" not in res["AlarmTopic"]["Properties"],
        "CloudWatch Logs' own encryption": all(
            "KmsKeyId" not in g["Properties"]
            for g in of_type("AWS::Logs::LogGroup", shape({})).values()
        ),
        "aws/ssm": "TOKEN_STORE_KMS_KEY_ID" not in env(shape({}), "RefresherFunction"),
    }
    assert said == dict.fromkeys(said, True)
    for words in said:
        assert words in aws_managed and words in row, words
    everything = shape(
        {
            "Encryption": "CustomerManagedKey",
            "CredentialsStore": "SecretsManager",
            "HostedLogin": "Enabled",
        }
    )
    nouns = {
        "AWS::S3::Bucket": "bucket",
        "AWS::SecretsManager::Secret": "secrets",
        "AWS::SQS::Queue": "queue",
        "AWS::SNS::Topic": "topic",
        "AWS::Logs::LogGroup": "logs",
        "AWS::Serverless::Function": "access view",  # the key the functions write it under
    }
    grants_only = {"AWS::KMS::Alias", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role"}
    keyed = {
        r["Type"]
        for r in everything["Resources"].values()
        if "TokenKey" in json.dumps(r.get("Properties", {})) and r["Type"] not in grants_only
    }
    assert keyed == set(nouns)
    for noun in nouns.values():
        assert noun in customer and noun in row.split("`CustomerManagedKey`:")[1], noun
    assert "ParameterStore credentials and the alerts URLs stay under aws/ssm" in customer


@each_combination
def test_keys_and_token_stores_are_retained_on_delete_and_replacement(
    combo: dict[str, str],
) -> None:
    """What holds the token, and every key that encrypts something (the store's old versions, a
    retained secret), outlives the stack and a replacement: a deleted key would leave retained
    data unreadable after its waiting period."""
    res = shape(combo)["Resources"]
    retained = {
        name
        for name, r in res.items()
        if r.get("DeletionPolicy") == "Retain" and r.get("UpdateReplacePolicy") == "Retain"
    }
    keys = set(of_type("AWS::KMS::Key", shape(combo)))
    stores = {"TokenBucket", "TokenSecret"} & set(res)
    assert len(stores) == 1  # the one store of this StoreType
    assert keys | stores <= retained
    assert bool(keys) is (combo["Encryption"] == "CustomerManagedKey")
    # The store's perimeter stays with it: a kept token stays fenced.
    fence = {"TokenBucket": "TokenBucketPolicy", "TokenSecret": "TokenSecretPolicy"}
    fences = {fence[store] for store in stores}
    # Nothing else stays behind: the credentials secret, logs, queue and topic go with the stack.
    assert retained == keys | stores | fences


def test_the_unencrypted_topic_keeps_to_tls_and_this_stacks_alarms() -> None:
    policy = props("AlarmTopicPolicy")
    assert policy["Topics"] == [{"Ref": "AlarmTopic"}]
    publish, tls = policy["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert sub_text(publish["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(
        ":${AWS::AccountId}:alarm:${AWS::StackName}-*"
    )
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        assert sub_text(alarm["Properties"]["AlarmName"]).startswith("${AWS::StackName}-")
    assert (tls["Effect"], tls["Principal"], tls["Condition"]) == (
        "Deny",
        "*",
        {"Bool": {"aws:SecureTransport": "false"}},
    )


# ---------------------------------------------------------------------------- credentials
@each_combination
def test_the_credentials_live_where_the_parameter_says(combo: dict[str, str]) -> None:
    template = shape(combo)
    res, outputs = template["Resources"], template["Outputs"]
    named = sub_text(outputs["CredentialsSecretName"]["Value"])
    functions = ["RefresherFunction"] + (["LoginFunction"] if "LoginFunction" in res else [])
    for function in functions:
        assert sub_text(env(template, function)["SCHWAB_CREDENTIALS_SECRET"]) == named
    if combo["CredentialsStore"] == "ParameterStore":
        assert named == "ssm:/${AWS::StackName}/credentials"
        assert PARAMETER.endswith(named.removeprefix("ssm:"))
        assert "CredentialsSecret" not in res and "CredentialsSecretPolicy" not in res
    else:
        assert named == sub_text(res["CredentialsSecret"]["Properties"]["Name"])
        assert "CredentialsSecretPolicy" in res


def test_only_the_functions_and_administrators_may_read_the_credentials_secret() -> None:
    policy = props("CredentialsSecretPolicy")
    assert resource("CredentialsSecretPolicy")["Condition"] == "CredentialsInSecretsManager"
    assert policy["SecretId"] == {"Ref": "CredentialsSecret"}
    assert policy["BlockPublicPolicy"] is True
    (statement,) = policy["ResourcePolicy"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Deny",
        "*",
        "secretsmanager:GetSecretValue",
    )
    separator, joined = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::Split"]
    joined_separator, names = joined["Fn::Join"]
    assert separator == joined_separator == ","
    refresher = {"Fn::GetAtt": ["RefresherFunctionRole", "Arn"]}
    login = {"Fn::GetAtt": ["LoginFunctionRole", "Arn"]}
    assert names == [
        refresher,
        {"Fn::If": ["HostedLoginEnabled", login, refresher]},
        {"Ref": "AdministratorPrincipals"},
    ]
    admins = load_template()["Parameters"]["AdministratorPrincipals"]
    pattern = re.compile(admins["AllowedPattern"])
    assert pattern.fullmatch(admins["Default"])
    assert pattern.fullmatch("arn:aws:iam::123456789012:user/me")
    for bad in ("", "*", "root", "arn:aws:iam::1:root,", "arn:aws:iam::1:root, arn:x"):
        assert not pattern.fullmatch(bad), bad
    # The default: the account root and IAM Identity Center administrators, nothing broader.
    assert admins["Default"].split(",") == [
        "arn:*:iam::*:root",
        "arn:*:iam::*:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_AdministratorAccess_*",
    ]


def test_secrets_hold_no_value_from_the_template() -> None:
    for name in ("TokenSecret", "CredentialsSecret"):
        assert "SecretString" not in props(name), f"{name} holds a literal value"
    # The token secret starts empty (login writes the first version); the credentials secret
    # holds a generated placeholder until `login --credentials-secret` fills it.
    assert "GenerateSecretString" not in props("TokenSecret")
    generated = props("CredentialsSecret")["GenerateSecretString"]
    template = json.loads(generated["SecretStringTemplate"])
    assert not {"app_key", "app_secret"} & set(template)
    assert generated["GenerateStringKey"] not in ("app_key", "app_secret")


# ---------------------------------------------------------------------------- hosted login
@each_combination
def test_the_hosted_login_leaves_no_trace_when_disabled(combo: dict[str, str]) -> None:
    template = shape(combo)
    enabled = combo["HostedLogin"] == "Enabled"
    for name in ("LoginFunction", "LoginLogGroup"):
        assert (name in template["Resources"]) is enabled, name
    for name in ("LoginUrl", "SchwabCallbackUrl"):
        assert (name in template["Outputs"]) is enabled, name
    login_url = env(template, "RefresherFunction").get("SCHWAB_LOGIN_URL")
    if enabled:
        assert login_url == {"Fn::GetAtt": ["LoginFunctionUrl", "FunctionUrl"]}
        assert template["Outputs"]["LoginUrl"]["Value"] == login_url
        assert sub_text(template["Outputs"]["SchwabCallbackUrl"]["Value"]) == (
            "${LoginFunctionUrl.FunctionUrl}callback"
        )
    else:
        assert login_url is None
        deployed_text = json.dumps([template["Resources"], template["Outputs"]])
        assert "Login" not in deployed_text.replace("HostedLoginEnabled", "")


def test_the_login_function_is_public_small_and_least_privileged() -> None:
    login = props("LoginFunction")
    metadata = resource("LoginFunction")["Metadata"]
    assert (metadata["BuildMethod"], metadata["ContextPath"]) == ("makefile", "functions")
    assert login["CodeUri"].rstrip("/") == "functions/login"
    assert login["FunctionUrlConfig"] == {"AuthType": "NONE", "InvokeMode": "BUFFERED"}
    # Public: the parameter says what the account's Lambda block public access must allow.
    description = load_template()["Parameters"]["HostedLogin"]["Description"]
    for needed in ("BlockPublicAccess", "PublicPolicyException", "Disabled", "schwab-tokens login"):
        assert needed in description, needed
    variables = login["Environment"]["Variables"]
    # Both Schwab calls timing out on every try, plus the notes' lease wait, fit in the timeout.
    tries, read = int(variables["SCHWAB_HTTP_RETRIES"]) + 1, float(variables["SCHWAB_HTTP_TIMEOUT"])
    assert 2 * tries * (5 + read) + NOTES_WAIT_SECONDS <= login["Timeout"] <= 120
    assert login["Policies"] == [{"Ref": "TokenWriterPolicy"}]
    assert "Events" not in login and "Tracing" not in login
    assert login["LoggingConfig"] == {"LogGroup": {"Ref": "LoginLogGroup"}}
    variables = login["Environment"]["Variables"]
    assert set(variables) == {
        "TOKEN_STORE_URL",
        "SCHWAB_CREDENTIALS_SECRET",
        "TOKEN_STORE_KMS_KEY_ID",
        "SCHWAB_HTTP_TIMEOUT",
        "SCHWAB_HTTP_RETRIES",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_TRACE_DISABLED",
        "POWERTOOLS_LOG_LEVEL",
    }
    # No SCHWAB_LOGIN_URL: the function derives its URL from the request (no circular reference).
    assert (
        variables["TOKEN_STORE_URL"] == env(load_template(), "RefresherFunction")["TOKEN_STORE_URL"]
    )
    group = props("LoginLogGroup")
    assert sub_text(group["LogGroupName"]) == "/aws/lambda/${AWS::StackName}-login"
    assert resource("LoginLogGroup")["Condition"] == "HostedLoginEnabled"


# ---------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("hosted", ["Disabled", "Enabled"])
@pytest.mark.parametrize("reserved", [None, "Disabled", "Enabled"])
def test_reserved_concurrency_is_opt_in(reserved: str | None, hosted: str) -> None:
    """A new account (quota 10, of which Lambda keeps 10 unreserved) refuses any reservation:
    by default no function reserves any; Enabled caps the refresher at 1 and the login at 2."""
    combo = {"HostedLogin": hosted, **({"ReservedConcurrency": reserved} if reserved else {})}
    res = shape(combo)["Resources"]
    enabled = reserved == "Enabled"
    expected = {"RefresherFunction": 1, "LoginFunction": 2} if enabled else {}
    reserved = {
        name: r["Properties"]["ReservedConcurrentExecutions"]
        for name, r in res.items()
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        and "ReservedConcurrentExecutions" in r["Properties"]
    }
    assert reserved == {n: v for n, v in expected.items() if n in res}


def test_reserved_concurrency_is_a_refresher_parameter() -> None:
    template = load_template()
    (group,) = [
        g
        for g in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        if g["Label"]["default"] == "Refresher"
    ]
    assert "ReservedConcurrency" in group["Parameters"]
    description = template["Parameters"]["ReservedConcurrency"]["Description"]
    assert "lease" in description and "quota" in description


# ---------------------------------------------------------------------------- the refresher
def test_refresher_schedule_concurrency_and_retries() -> None:
    refresher = props("RefresherFunction")
    schedule = refresher["Events"]["Schedule"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
    assert schedule["Properties"].get("State", "ENABLED") == "ENABLED"
    assert refresher["Timeout"] >= 60  # covers the in-run retries with backoff
    invoke = refresher["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    destination = invoke["DestinationConfig"]["OnFailure"]
    assert destination == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["FailureQueue", "Arn"]}}
    assert props("FailureQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_refresher_environment_is_what_the_library_reads() -> None:
    variables = env(load_template(), "RefresherFunction")
    settings = (REPO / "layers/schwab_tokens/schwab_tokens/settings.py").read_text()
    read = set(re.findall(r'["\']((?:TOKEN|SCHWAB|REFRESH)_[A-Z_]+)["\']', settings))
    ours = {name for name in variables if not name.startswith("POWERTOOLS_")}
    assert ours <= read, f"the library reads none of {ours - read}"
    assert ours == {
        "TOKEN_STORE_URL",
        "TOKEN_STORE_URLS",
        "SCHWAB_CREDENTIALS_SECRET",
        "REFRESH_MARGIN_SECONDS",
        "TOKEN_STORE_KMS_KEY_ID",
        "SCHWAB_TOKENS_TOPIC_ARN",
        "SCHWAB_LOGIN_URL",
        "SCHWAB_TOKENS_DETAILED_METRICS",
    }
    assert variables["REFRESH_MARGIN_SECONDS"] == {"Ref": "RefreshMarginSeconds"}
    assert variables["SCHWAB_TOKENS_TOPIC_ARN"] == {"Ref": "AlarmTopic"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "schwab-tokens"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "SchwabTokens"
    # Several tokens: TOKEN_STORE_URLS replaces TOKEN_STORE_URL, so it starts with the stack's own.
    condition, joined, otherwise = variables["TOKEN_STORE_URLS"]["Fn::If"]
    assert condition == "HasExtraStores" and otherwise == NO_VALUE
    separator, parts = joined["Fn::Join"]
    assert separator == ","
    assert parts == [variables["TOKEN_STORE_URL"], {"Ref": "TokenStoreUrls"}]


def test_store_url_output_matches_what_the_functions_read() -> None:
    template = load_template()
    output = template["Outputs"]["StoreUrl"]["Value"]
    for function in ("RefresherFunction", "LoginFunction"):
        assert env(template, function)["TOKEN_STORE_URL"] == output, function
    condition, s3_url, sm_url = output["Fn::If"]
    assert condition == "IsS3"
    assert sub_text(s3_url) == "s3://${TokenBucket}/" + TOKEN_KEY
    assert sub_text(sm_url) == "secretsmanager://" + sub_text(props("TokenSecret")["Name"])


@pytest.mark.parametrize("store", ["S3", "SecretsManager"])
def test_the_access_view_is_where_the_library_keeps_it(store: str) -> None:
    """AccessTokenUrl, the example consumer's TOKEN_ACCESS_URL and the reader policy's resource
    all name the view the library's writers keep beside StoreUrl (stores.access_url)."""
    from schwab_tokens.stores import access_url

    template = shape({"StoreType": store})
    outputs = template["Outputs"]
    values = {
        "TokenBucket": "my-stack-tokenbucket-abc123",
        "AWS::StackName": "my-stack",
        "AWS::Partition": "aws",
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
    }

    def text(value: Any) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], sub_text(value))

    store_url, view_url = (
        text(outputs["StoreUrl"]["Value"]),
        text(outputs["AccessTokenUrl"]["Value"]),
    )
    assert access_url(store_url) == view_url
    assert env(template, "ExampleConsumerFunction") == {
        "TOKEN_ACCESS_URL": outputs["AccessTokenUrl"]["Value"]
    }
    (document,) = documents(template, "reader")
    (read,) = [s for s in statements([document]) if not s["Action"].startswith("kms:")]
    if store == "S3":
        bucket, key = view_url.removeprefix("s3://").split("/", 1)
        values["TokenBucket.Arn"] = f"arn:aws:s3:::{bucket}"
        assert text(read["Resource"]) == f"arn:aws:s3:::{bucket}/{key}"
    else:
        assert view_url.startswith("ssm:/")
        name = view_url.removeprefix("ssm:")
        assert text(read["Resource"]) == f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"


def test_example_consumer_uses_only_the_layer_and_the_reader_policy() -> None:
    consumer = props("ExampleConsumerFunction")
    assert consumer["Layers"] == [{"Ref": "SchwabTokensLayer"}]
    assert consumer["Policies"] == [{"Ref": "TokenReaderPolicy"}]
    # The access view only: with the reader policy it could not read the store anyway.
    variables = consumer["Environment"]["Variables"]
    assert variables == {"TOKEN_ACCESS_URL": load_template()["Outputs"]["AccessTokenUrl"]["Value"]}
    assert consumer["CodeUri"].rstrip("/") == "functions/example_consumer"
    assert "Tracing" not in consumer  # its role then needs no X-Ray grant
    handler = (REPO / "functions/example_consumer/app.py").read_text()
    assert "TokenReader.from_env()" in handler and "TOKEN_ACCESS_URL" in handler


# ---------------------------------------------------------------------------- the store
def test_bucket_is_versioned_private_and_tls_only() -> None:
    bucket = props("TokenBucket")
    assert resource("TokenBucket")["DeletionPolicy"] == "Retain"
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert 1 <= lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 90

    policy = props("TokenBucketPolicy")
    assert policy["Bucket"] == {"Ref": "TokenBucket"}
    found = as_list(policy["PolicyDocument"]["Statement"])
    # Private: the bucket policy only denies; access comes from IAM (the roles, the reader policy).
    assert {s["Effect"] for s in found} == {"Deny"}
    (tls,) = [
        s
        for s in found
        if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert (tls["Principal"], as_list(tls["Action"])) == ("*", ["s3:*"])
    targets = [r if "Fn::GetAtt" in r else sub_text(r) for r in tls["Resource"]]
    assert {"Fn::GetAtt": ["TokenBucket", "Arn"]} in targets
    assert "${TokenBucket.Arn}/*" in targets


# ---------------------------------------------------------------------------- no secrets
def test_no_parameter_holds_or_defaults_to_a_secret() -> None:
    for name, parameter in load_template()["Parameters"].items():
        if re.search(r"secret|password|apikey|appkey|credential", name, re.I):
            # A name like that must be a choice between fixed values, never a value.
            assert parameter.get("AllowedValues"), name
        default = str(parameter.get("Default", ""))
        assert not looks_like_a_secret(default), f"{name} defaults to {default!r}"


def test_no_function_environment_value_is_a_secret_literal() -> None:
    template = load_template()
    for function in of_type("AWS::Serverless::Function"):
        for name, value in env(template, function).items():
            assert not re.search(r"APP_SECRET|APP_KEY|PASSWORD|ACCESS_TOKEN|REFRESH_TOKEN", name)
            if isinstance(value, str):
                assert not looks_like_a_secret(value), f"{function} {name}={value!r}"
                assert re.fullmatch(r"[A-Za-z0-9_.:/-]{1,64}", value), f"{function} {name}"
            else:
                assert isinstance(value, dict) and len(value) == 1, f"{function} {name}"


def test_the_secret_heuristic_catches_a_secret() -> None:
    assert looks_like_a_secret("Xk3q9Lw2Vb7Nc4Rt8Yz1Pm6Hd5Jf0Sg")
    assert looks_like_a_secret('{"app_secret": "q8Zr4TnW2xKc7LpM"}')
    assert not looks_like_a_secret("rate(5 minutes)")
    assert not looks_like_a_secret("schwab-tokens")
    assert not looks_like_a_secret("AWSLambdaPowertoolsPythonV3-python312-arm64")


# ---------------------------------------------------------------------------- lean by default
def test_the_defaults_are_lean() -> None:
    template = shape({})
    res = template["Resources"]
    kinds = Counter(r["Type"] for r in res.values())
    assert kinds["AWS::KMS::Key"] == 0
    assert kinds["AWS::SecretsManager::Secret"] == 0
    assert kinds["AWS::CloudWatch::Dashboard"] == 0
    assert kinds["AWS::CloudWatch::Alarm"] == 2
    assert "LoginFunction" not in res
    variables = env(template, "RefresherFunction")
    assert variables["SCHWAB_TOKENS_DETAILED_METRICS"] == "false"
    assert variables["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert res["RefresherFunction"]["Properties"]["Tracing"] == "PassThrough"


@each_combination
def test_detailed_metrics_turn_on_metrics_tracing_and_the_dashboard(combo: dict[str, str]) -> None:
    template = shape(combo)
    enabled = combo["DetailedMetrics"] == "Enabled"
    variables = env(template, "RefresherFunction")
    assert variables["SCHWAB_TOKENS_DETAILED_METRICS"] == ("true" if enabled else "false")
    assert variables["POWERTOOLS_TRACE_DISABLED"] == ("false" if enabled else "true")
    tracing = template["Resources"]["RefresherFunction"]["Properties"]["Tracing"]
    assert tracing == ("Active" if enabled else "PassThrough")
    assert ("Dashboard" in template["Resources"]) is enabled
    assert ("DashboardUrl" in template["Outputs"]) is enabled
    # The alarms do not depend on it (the login's comes with the login).
    alarms = len(of_type("AWS::CloudWatch::Alarm", template))
    assert alarms == 2 + (combo["HostedLogin"] == "Enabled")


REFRESHER_ALARMS = {"RefresherErrorsAlarm", "RefresherNotRunningAlarm"}


@pytest.mark.parametrize("metrics", ["Disabled", "Enabled"])
def test_xray_write_comes_with_tracing_only(metrics: str) -> None:
    """X-Ray's write permission is held by the refresher's role only when DetailedMetrics turns
    its tracing on; read where SAM adds it (its translation attaches an X-Ray policy to a role
    it makes whenever Tracing is set, PassThrough included), as CloudFormation deploys it."""
    variant = {"DetailedMetrics": metrics, "HostedLogin": "Enabled"}
    template = deployed_variant(variant)
    enabled = metrics == "Enabled"
    res = template["Resources"]
    xray = {
        name: [a for a in r["Properties"].get("ManagedPolicyArns", []) if "xray" in str(a).lower()]
        for name, r in res.items()
        if r["Type"] == "AWS::IAM::Role"
    }
    assert set(xray) == {
        "RefresherFunctionRole",
        "LoginFunctionRole",
        "ExampleConsumerFunctionRole",
    }
    expected = [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"}]
    assert xray == {
        "RefresherFunctionRole": expected if enabled else [],
        "LoginFunctionRole": [],
        "ExampleConsumerFunctionRole": [],
    }
    inline = json.dumps([r["Properties"].get("Policies", []) for r in res.values()])
    assert "xray:" not in inline.lower()
    assert res["RefresherFunction"]["Properties"]["TracingConfig"] == {
        "Mode": "Active" if enabled else "PassThrough"
    }
    functions = of_type("AWS::Lambda::Function", template)
    traced = [n for n, f in functions.items() if "TracingConfig" in f["Properties"]]
    assert traced == ["RefresherFunction"]


def test_two_alarms_on_lambdas_free_metrics() -> None:
    # The notifier's own alarm comes with the opt-in notifier (Alerts=Enabled) only.
    assert resource("NotifierErrorsAlarm")["Condition"] == "AlertsEnabled"
    alarms = {
        name: a["Properties"]
        for name, a in of_type("AWS::CloudWatch::Alarm").items()
        if name != "NotifierErrorsAlarm"
    }
    assert set(alarms) == REFRESHER_ALARMS | {"LoginFloodAlarm"}
    alarms = {name: alarms[name] for name in REFRESHER_ALARMS}
    for name, p in alarms.items():
        assert "Condition" not in resource(name)
        assert p["Namespace"] == "AWS/Lambda", name
        assert p["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RefresherFunction"}}]
        assert p["AlarmActions"] == p["OKActions"] == [{"Ref": "AlarmTopic"}], name
        # The state a new alarm starts in is a message only where it is the condition itself.
        silence = name == "RefresherNotRunningAlarm"
        assert p.get("InsufficientDataActions") == ([{"Ref": "AlarmTopic"}] if silence else None)
        assert p["Statistic"] == "Sum"
    errors = alarms["RefresherErrorsAlarm"]
    assert errors["MetricName"] == "Errors"
    # One failed run and Lambda's 2 retries span at most two periods: three in a row are two runs.
    assert (errors["Period"], errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (
        300,
        3,
        3,
    )
    assert (errors["ComparisonOperator"], errors["Threshold"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert errors["TreatMissingData"] == "notBreaching"
    silent = alarms["RefresherNotRunningAlarm"]
    assert silent["MetricName"] == "Invocations"
    assert silent["Period"] * silent["EvaluationPeriods"] == 15 * 60
    assert (silent["ComparisonOperator"], silent["Threshold"]) == ("LessThanThreshold", 1)
    # A new alarm starts INSUFFICIENT_DATA: "breaching" would make a stack just created go to
    # ALARM before its first run; "missing" keeps it there (no message) until the first run
    # makes it OK, and a refresher that stops takes it back to INSUFFICIENT_DATA, which notifies.
    assert silent["TreatMissingData"] == "missing"
    assert "INSUFFICIENT_DATA" in silent["AlarmDescription"]
    subscription = props("AlarmEmailSubscription")
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", {"Ref": "AlarmEmail"})


@pytest.mark.parametrize("hosted", ["Disabled", "Enabled"])
def test_a_flood_of_the_login_url_is_watched_only_with_the_login(hosted: str) -> None:
    """A flood of the public URL can take the concurrency the refresher needs: with the login
    on, an alarm on its free Invocations metric says so; off, nothing is added to the bill."""
    alarms = of_type("AWS::CloudWatch::Alarm", shape({"HostedLogin": hosted}))
    assert ("LoginFloodAlarm" in alarms) is (hosted == "Enabled")
    assert resource("LoginFloodAlarm")["Condition"] == "HostedLoginEnabled"
    flood = props("LoginFloodAlarm")
    # Requests answered (Invocations) and refused at the concurrency cap (Throttles), summed.
    watched = {m["Id"]: m for m in flood["Metrics"]}
    for name, metric in (("invocations", "Invocations"), ("throttles", "Throttles")):
        stat = watched[name]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "AWS/Lambda"
        assert stat["Metric"]["MetricName"] == metric
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": "LoginFunction"}}
        ]
        assert (stat["Period"], stat["Stat"], watched[name]["ReturnData"]) == (300, "Sum", False)
    assert watched["requests"]["Expression"] == "FILL(invocations, 0) + FILL(throttles, 0)"
    assert watched["requests"]["ReturnData"] is True
    # A person logging in makes a handful of requests; a hundred in 5 minutes is a flood.
    assert (flood["EvaluationPeriods"], flood["Threshold"]) == (1, 100)
    assert flood["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert flood["TreatMissingData"] == "notBreaching"  # no request, no data: no flood
    assert flood["AlarmActions"] == flood["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert sub_text(flood["AlarmName"]) == "${AWS::StackName}-LoginFlood"
    assert "Runbook: docs/emails.md, LoginFlood" in flood["AlarmDescription"]
    assert "\n## LoginFlood\n" in (REPO / "docs" / "emails.md").read_text()
    assert "\n### If the login URL is flooded\n" in (REPO / "docs" / "security.md").read_text()


def test_log_groups_have_retention_and_the_functions_use_them() -> None:
    for function, group, suffix in (
        ("RefresherFunction", "RefresherLogGroup", "refresher"),
        ("LoginFunction", "LoginLogGroup", "login"),
        ("ExampleConsumerFunction", "ExampleConsumerLogGroup", "example-consumer"),
    ):
        assert props(function)["LoggingConfig"]["LogGroup"] == {"Ref": group}
        assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert sub_text(props(group)["LogGroupName"]) == "/aws/lambda/${AWS::StackName}-" + suffix


def test_dashboard_is_valid_json_showing_hours_left_outcomes_and_the_alarms() -> None:
    body, variables = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    for placeholder in set(re.findall(r"\$\{([^}]+)\}", body)):
        assert placeholder in variables or placeholder.startswith("AWS::"), placeholder
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))
    metrics = json.dumps([w["properties"].get("metrics", []) for w in dashboard["widgets"]])
    source = (REPO / "layers/schwab_tokens/schwab_tokens/lambdas/refresher.py").read_text()
    for name in ("RefreshTokenHoursLeft", "AccessTokenSecondsLeft", "Refreshed", "StillFresh"):
        assert f'"{name}"' in metrics, name
        assert f'"{name}"' in source, f"the refresher emits no {name}"
    (alarms,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) == len(REFRESHER_ALARMS)
    assert variables["RefresherErrors"] == {"Fn::GetAtt": ["RefresherErrorsAlarm", "Arn"]}
    assert variables["RefresherNotRunning"] == {"Fn::GetAtt": ["RefresherNotRunningAlarm", "Arn"]}


def test_outputs() -> None:
    outputs = load_template()["Outputs"]
    assert set(outputs) >= {
        "StoreUrl",
        "AccessTokenUrl",
        "LayerArn",
        "ReaderPolicyArn",
        "TokenDocumentPolicyArn",
        "CredentialsSecretName",
        "AlarmTopicArn",
        "LoginUrl",
        "DashboardUrl",
    }
    assert outputs["LayerArn"]["Value"] == {"Ref": "SchwabTokensLayer"}
    assert outputs["ReaderPolicyArn"]["Value"] == {"Ref": "TokenReaderPolicy"}
    assert outputs["TokenDocumentPolicyArn"]["Value"] == {"Ref": "TokenDocumentPolicy"}
    # Each output says who takes it: consumers the view and the reader policy, bots the rest.
    assert "TOKEN_ACCESS_URL" in outputs["AccessTokenUrl"]["Description"]
    assert "ReaderPolicyArn" in outputs["TokenDocumentPolicyArn"]["Description"]
    for name in ("TokenDocumentPolicyArn",):
        assert "refresh token" in outputs[name]["Description"]
    description = props("TokenDocumentPolicy")["Description"]
    assert "refresh token" in description and "lease" in description
    assert "ReaderPolicyArn" in description
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}
    assert outputs["LoginUrl"]["Condition"] == "HostedLoginEnabled"
    assert outputs["DashboardUrl"]["Condition"] == "DetailedMetricsEnabled"
    assert outputs["KmsKeyArn"]["Condition"] == "UsesCustomerManagedKey"
    assert "#dashboards:name=${Dashboard}" in sub_text(outputs["DashboardUrl"]["Value"])


# ---------------------------------------------------------------------------- tools and builds
def test_every_checkov_skip_has_a_reason() -> None:
    skips = 0
    for name, r in resources().items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "").split()) >= 8, f"{name} {skip['id']}: no reason"
            skips += 1
    assert skips > 0


def test_checkov_variants_change_only_the_defaults() -> None:
    text = (REPO / "template.yaml").read_text()
    variant = with_defaults(text, {"Encryption": "CustomerManagedKey", "AlarmEmail": "a@b.example"})
    changed = [
        (old, new)
        for old, new in zip(text.splitlines(), variant.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        ("    Default: AwsManaged", '    Default: "CustomerManagedKey"'),
        ('    Default: ""', '    Default: "a@b.example"'),
    ]
    with pytest.raises(ValueError, match="not one of"):
        with_defaults(text, {"Encryption": "Sometimes"})
    with pytest.raises(ValueError, match="not found"):
        with_defaults(text, {"NoSuchParameter": "x"})


def test_the_scanned_variants_cover_every_pair_of_parameter_values() -> None:
    """`make lint-template` scans what ships for each of VARIANTS: every pair of values of two
    parameters appears in one of them, so a resource that exists under one parameter is
    scanned with each value of another (the login's log group under both encryption modes)."""
    assert pairs_missing(VARIANTS) == []
    template = load_template()
    for name, on in ON.items():
        assert str(template["Parameters"][name].get("Default", "")) != on, name
    assert set(CHOICES) | {"ReservedConcurrency", "AlarmEmail"} <= set(ON)
    assert pairs_missing({k: v for k, v in VARIANTS.items() if k != "mixed-3"}) != []  # can fail
    for name in VARIANTS:  # checkov takes the file name for the stack's name (variants.py)
        assert "secret" not in name.lower()


def test_the_scanned_variants_take_every_branch_of_every_condition() -> None:
    """Each Condition, the Powertools layer's (which read the region) included, holds in one
    scanned variant and fails in another."""
    template = load_template()
    seen: dict[str, set[bool]] = {}
    for variant in VARIANTS.values():
        values = parameter_values(template, parameters_of(variant))
        for condition, holds in conditions(template, values, pseudo_parameters(variant)).items():
            seen.setdefault(condition, set()).add(holds)
    assert seen == {name: {True, False} for name in template["Conditions"]}


def test_the_scanners_see_the_deployed_encryption_and_its_decisions() -> None:
    """checkov reads the deployed variants (variants.py: it decides no ``Fn::If``): with the
    default Encryption=AwsManaged the topic and the log groups have no key there, and each
    carries the checkov skip that says why, as do the secrets for their KMS check."""
    defaults = deployed_variant({})
    assert "Fn::If" not in json.dumps(defaults) and "Conditions" not in defaults
    res = defaults["Resources"]
    assert "TokenKey" not in res and "LoginFunction" not in res

    def skipped(body: dict[str, Any]) -> set[str]:
        return {s["id"] for s in body.get("Metadata", {}).get("checkov", {}).get("skip", [])}

    assert "KmsMasterKeyId" not in res["AlarmTopic"]["Properties"]
    assert "CKV_AWS_26" in skipped(res["AlarmTopic"])
    for name, group in of_type("AWS::Logs::LogGroup", defaults).items():
        assert "KmsKeyId" not in group["Properties"], name
        assert "CKV_AWS_158" in skipped(group), name
    assert res["FailureQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert "CKV_AWS_27" in skipped(res["FailureQueue"])
    everything = deployed_variant(
        {"StoreType": "SecretsManager", "CredentialsStore": "SecretsManager"}
    )
    for name in ("TokenSecret", "CredentialsSecret"):
        assert "KmsKeyId" not in everything["Resources"][name]["Properties"], name
        assert "CKV_AWS_149" in skipped(everything["Resources"][name]), name


def test_a_functions_checkov_skips_reach_what_sam_makes_of_it() -> None:
    """The public function URL SAM makes of the login function carries the function's skip of
    CKV_AWS_258 (with its reason) in the translation the scanners read; the moto deploys
    translate without it, as CloudFormation does."""
    from tests.template.stack import translate

    hosted = {"HostedLogin": "Enabled"}
    scanned = translated(hosted)["Resources"]
    url = scanned["LoginFunctionUrl"]
    assert url["Properties"]["AuthType"] == "NONE"
    (skip,) = [s for s in url["Metadata"]["checkov"]["skip"] if s["id"] == "CKV_AWS_258"]
    assert "signed single-use ticket" in skip["comment"]
    assert "Metadata" not in translate(hosted)["Resources"]["LoginFunctionUrl"]


def test_layer_is_python312_arm64_built_by_its_makefile() -> None:
    layer = resource("SchwabTokensLayer")
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    content = REPO / layer["Properties"]["ContentUri"]
    makefile = (content / "Makefile").read_text()
    assert "build-SchwabTokensLayer:" in makefile
    for flag in (
        "--platform manylinux2014_aarch64",
        "--implementation cp",
        "--python-version 3.12",
        "--only-binary=:all:",
    ):
        assert flag in makefile, flag
    requirements = [
        re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
        for line in (content / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "requests" in requirements
    for unwanted in ("boto3", "botocore", "aws-lambda-powertools", "cryptography"):
        assert unwanted not in requirements, unwanted


@pytest.mark.parametrize("function", sorted(of_type("AWS::Serverless::Function")))
def test_functions_build_without_python312(function: str) -> None:
    metadata = resource(function)["Metadata"]
    assert metadata["BuildMethod"] == "makefile"
    makefile = (REPO / metadata["ContextPath"] / "Makefile").read_text()
    targets = {
        target
        for line in re.findall(r"^([\w][\w .-]*):(?!=)", makefile, re.M)
        for target in line.split()
    }
    assert f"build-{function}" in targets
    assert (REPO / props(function)["CodeUri"] / "app.py").exists()


# ---------------------------------------------------------------------------- events, config
def test_sample_scheduled_events() -> None:
    from schwab_tokens.lambdas.refresher import parse_event

    scheduled = json.loads((REPO / "events/scheduled.json").read_text())
    assert scheduled["detail-type"] == "Scheduled Event"
    assert scheduled["source"] == "aws.events"
    forced = json.loads((REPO / "events/force_refresh.json").read_text())
    assert {k: v for k, v in forced.items() if k not in ("id", "time", "detail")} == {
        k: v for k, v in scheduled.items() if k not in ("id", "time", "detail")
    }
    assert forced["detail"] == {"force": True}
    assert parse_event(forced) and not parse_event(scheduled)
    assert isinstance(json.loads((REPO / "events/consumer.json").read_text()), dict)


@pytest.mark.parametrize(
    ("name", "status"),
    [("login_start", 403), ("login_callback", 200), ("login_unknown_route", 404)],
)
def test_sample_function_url_events(name: str, status: int, tmp_path: Any) -> None:
    """`sam local invoke LoginFunction -e events/login_*.json`: payload 2.0 events the handler
    answers (an invalid ticket, a callback it did not start, an unknown route)."""
    from schwab_tokens.lambdas.login import handle
    from schwab_tokens.settings import Settings

    event = json.loads((REPO / f"events/{name}.json").read_text())
    assert event["version"] == "2.0"
    assert event["requestContext"]["domainName"].endswith(".lambda-url.us-east-1.on.aws")
    assert event["requestContext"]["http"]["method"] == "GET"
    settings = Settings(store_url=str(tmp_path / "tokens.json"), app_key="k", app_secret="s" * 16)
    assert handle(event, settings)["statusCode"] == status


def test_samconfig_deploy_defaults() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"] == "schwab-tokens"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    # SAM sends UsePreviousValue for every parameter not overridden: with none pinned, a plain
    # `sam deploy` keeps what the running stack has (HostedLogin=Enabled from an earlier
    # --parameter-overrides stays enabled), and a new stack gets the template's defaults.
    assert "parameter_overrides" not in deploy
