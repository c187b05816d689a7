"""What a security reviewer checks in template.yaml, read statically (no AWS, no network)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.template import REPO, load_template

NO_VALUE = {"Ref": "AWS::NoValue"}
TOKEN_KEY = "schwab/tokens.json"
LEASE_KEY = TOKEN_KEY + ".lease"  # the S3 store's lease object (stores/s3.py)

#: Actions that change a store, a secret or encrypt with a key: never on "*".
WRITE_ACTION = re.compile(
    r"^(s3:(Put|Delete|Restore|Replicate|Abort|Create|Update|Bypass)"
    r"|secretsmanager:(Put|Update|Create|Delete|Restore|Rotate|Tag|Untag|Cancel|Replicate|Remove"
    r"|Stop)"
    r"|kms:(Encrypt|ReEncrypt|GenerateDataKey|Create|Put|Delete|Disable|Enable|Schedule|Update"
    r"|Revoke|Retire|Tag|Untag|Import|Replicate|Sign))",
)
READ_ACTION = re.compile(r"^[a-z0-9-]+:(Get|Describe|Decrypt|List)[A-Za-z]*$")
ALARM_METRICS = {
    "RefreshFailed",
    "ReauthRequired",
    "RefreshTokenHoursLeft",
    "SuccessfulRun",
}


# ---------------------------------------------------------------------------- helpers
def resources() -> dict[str, Any]:
    return load_template()["Resources"]


def resource(name: str) -> dict[str, Any]:
    return resources()[name]


def props(name: str) -> dict[str, Any]:
    return resource(name)["Properties"]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources().items() if r["Type"] == kind}


def branches(value: Any) -> Iterator[Any]:
    """Every value an ``Fn::If`` may resolve to (both branches), dropping ``AWS::NoValue``."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        yield from branches(when_true)
        yield from branches(when_false)
    elif value != NO_VALUE:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in as_list(document["Statement"]):
        found.extend(branches(item))
    return found


def inline_statements(function: str) -> list[dict[str, Any]]:
    """The statements of a SAM function's inline policy documents (not managed-policy refs)."""
    found = []
    for policy in props(function).get("Policies", []):
        for document in branches(policy):
            if isinstance(document, dict) and "Statement" in document:
                found.extend(statements(document))
    return found


def is_star(resource_value: Any) -> bool:
    return isinstance(resource_value, str) and (
        resource_value == "*" or resource_value.endswith(":*")
    )


def sub_text(value: Any) -> str:
    """The template string of a ``Fn::Sub`` (either form), or the string itself."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    raise AssertionError(f"not a string or Fn::Sub: {value!r}")


def env(function: str) -> dict[str, Any]:
    return props(function)["Environment"]["Variables"]


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
    assert set(functions) == {"RefresherFunction", "ExampleConsumerFunction"}
    globals_ = template["Globals"]["Function"]
    for name in functions:
        merged = {**globals_, **props(name)}
        assert merged["Runtime"] == "python3.12", name
        assert merged["Architectures"] == ["arm64"], name
        assert merged["Handler"] == "app.lambda_handler", name


def test_parameters_and_conditions() -> None:
    template = load_template()
    params = template["Parameters"]
    assert params["StoreType"]["AllowedValues"] == ["S3", "SecretsManager"]
    assert params["StoreType"]["Default"] == "S3"
    assert params["ScheduleExpression"]["Default"] == "rate(5 minutes)"
    assert params["RefreshMarginSeconds"]["Default"] == 600
    assert params["AlarmEmail"]["Default"] == ""
    assert params["LogRetentionDays"]["Default"] in params["LogRetentionDays"]["AllowedValues"]
    assert params["TokenStoreUrls"]["Default"] == ""
    assert "PowertoolsLayerArn" in params
    conditions = template["Conditions"]
    assert conditions["IsS3"] == {"Fn::Equals": [{"Ref": "StoreType"}, "S3"]}
    assert conditions["IsSecretsManager"] == {
        "Fn::Equals": [{"Ref": "StoreType"}, "SecretsManager"]
    }
    assert resource("TokenBucket")["Condition"] == "IsS3"
    assert resource("TokenBucketPolicy")["Condition"] == "IsS3"
    assert resource("TokenSecret")["Condition"] == "IsSecretsManager"
    assert resource("AlarmEmailSubscription")["Condition"] == "HasAlarmEmail"


def test_the_official_powertools_layer_is_the_default() -> None:
    layers = props("RefresherFunction")["Layers"]
    assert layers[0] == {"Ref": "SchwabTokensLayer"}
    condition, official, chosen = layers[1]["Fn::If"]
    assert condition == "UseOfficialPowertools"
    assert chosen == {"Ref": "PowertoolsLayerArn"}
    assert re.fullmatch(
        r"arn:\$\{AWS::Partition\}:lambda:\$\{AWS::Region\}:017000801446:layer:"
        r"AWSLambdaPowertoolsPythonV3-python312-arm64:\d+",
        sub_text(official),
    )


# ---------------------------------------------------------------------------- the refresher
def test_refresher_writes_nothing_on_a_star_resource() -> None:
    found = inline_statements("RefresherFunction")
    assert found
    for statement in found:
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"wildcard action {action} in {statement.get('Sid')}"
        if any(WRITE_ACTION.match(a) for a in actions):
            for target in as_list(statement["Resource"]):
                assert not is_star(target), f"{statement.get('Sid')} writes to {target}"
    # The on-failure destination policy SAM adds is scoped to the queue, not a wildcard.
    destination = props("RefresherFunction")["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert destination == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["FailureQueue", "Arn"]}}


def test_refresher_s3_writes_are_scoped_to_the_token_and_its_lease() -> None:
    url = next(branches(env("RefresherFunction")["TOKEN_STORE_URL"]))
    assert sub_text(url) == "s3://${TokenBucket}/" + TOKEN_KEY
    s3_statements = [
        s
        for s in inline_statements("RefresherFunction")
        if any(a.startswith("s3:") for a in as_list(s["Action"]))
    ]
    writers = [s for s in s3_statements if any(WRITE_ACTION.match(a) for a in as_list(s["Action"]))]
    assert len(writers) == 1
    assert set(as_list(writers[0]["Action"])) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert sorted(sub_text(r) for r in as_list(writers[0]["Resource"])) == [
        "${TokenBucket.Arn}/" + TOKEN_KEY,
        "${TokenBucket.Arn}/" + LEASE_KEY,
    ]
    listing = [s for s in s3_statements if s not in writers]
    assert len(listing) == 1
    assert as_list(listing[0]["Action"]) == ["s3:ListBucket"]
    assert listing[0]["Resource"] == {"Fn::GetAtt": ["TokenBucket", "Arn"]}
    prefixes = listing[0]["Condition"]["StringEqualsIfExists"]["s3:prefix"]
    assert set(as_list(prefixes)) == {TOKEN_KEY, LEASE_KEY}


def test_refresher_secrets_and_key_are_its_own() -> None:
    by_sid = {s["Sid"]: s for s in inline_statements("RefresherFunction")}
    assert by_sid["ReadCredentialsSecret"]["Resource"] == {"Ref": "CredentialsSecret"}
    assert as_list(by_sid["ReadCredentialsSecret"]["Action"]) == ["secretsmanager:GetSecretValue"]
    token_secret = by_sid["ReadWriteTokenSecret"]
    assert token_secret["Resource"] == {"Ref": "TokenSecret"}
    assert set(as_list(token_secret["Action"])) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:ListSecretVersionIds",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    }
    kms = by_sid["UseTokenKeyThroughTheStores"]
    assert kms["Resource"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert set(as_list(kms["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"}
    # Every statement names one of this stack's resources.
    for statement in by_sid.values():
        for target in as_list(statement["Resource"]):
            assert isinstance(target, dict), f"{statement['Sid']}: literal resource {target}"


def test_refresher_schedule_concurrency_and_retries() -> None:
    refresher = props("RefresherFunction")
    schedule = refresher["Events"]["Schedule"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
    assert schedule["Properties"].get("State", "ENABLED") == "ENABLED"
    assert refresher["ReservedConcurrentExecutions"] == 1
    assert refresher["Timeout"] >= 60  # covers the in-run retries with backoff
    assert {**load_template()["Globals"]["Function"], **refresher}["Tracing"] == "Active"
    invoke = refresher["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    queue = props("FailureQueue")
    assert queue.get("KmsMasterKeyId") or queue.get("SqsManagedSseEnabled")


def test_refresher_environment_follows_the_contract() -> None:
    variables = env("RefresherFunction")
    assert set(variables) >= {
        "TOKEN_STORE_URL",
        "SCHWAB_CREDENTIALS_SECRET",
        "REFRESH_MARGIN_SECONDS",
        "TOKEN_STORE_KMS_KEY_ID",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    assert variables["REFRESH_MARGIN_SECONDS"] == {"Ref": "RefreshMarginSeconds"}
    assert variables["TOKEN_STORE_KMS_KEY_ID"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "schwab-tokens"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "SchwabTokens"
    # The credentials secret is named, and it is the secret the refresher may read.
    assert sub_text(variables["SCHWAB_CREDENTIALS_SECRET"]) == sub_text(
        props("CredentialsSecret")["Name"]
    )
    # Several tokens: TOKEN_STORE_URLS replaces TOKEN_STORE_URL, so it starts with the stack's own.
    condition, joined, otherwise = variables["TOKEN_STORE_URLS"]["Fn::If"]
    assert condition == "HasExtraStores" and otherwise == NO_VALUE
    separator, parts = joined["Fn::Join"]
    assert separator == ","
    assert parts == [variables["TOKEN_STORE_URL"], {"Ref": "TokenStoreUrls"}]


def test_store_url_output_matches_what_the_functions_read() -> None:
    output = load_template()["Outputs"]["StoreUrl"]["Value"]
    assert env("RefresherFunction")["TOKEN_STORE_URL"] == output
    assert env("ExampleConsumerFunction")["TOKEN_STORE_URL"] == output
    condition, s3_url, sm_url = output["Fn::If"]
    assert condition == "IsS3"
    assert sub_text(s3_url) == "s3://${TokenBucket}/" + TOKEN_KEY
    assert sub_text(sm_url) == "secretsmanager://" + sub_text(props("TokenSecret")["Name"])


# ---------------------------------------------------------------------------- readers
def test_reader_policy_has_only_read_actions_on_the_store() -> None:
    policy = resource("TokenReaderPolicy")
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    found = statements(props("TokenReaderPolicy")["PolicyDocument"])
    actions: dict[str, Any] = {}
    for statement in found:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert READ_ACTION.match(action), f"{action} is not a read action"
            actions[action] = statement["Resource"]
        for target in as_list(statement["Resource"]):
            assert not is_star(target)
    assert set(actions) == {
        "s3:GetObject",
        "s3:ListBucket",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "kms:Decrypt",
    }
    assert sub_text(actions["s3:GetObject"]) == "${TokenBucket.Arn}/" + TOKEN_KEY
    assert actions["secretsmanager:GetSecretValue"] == {"Ref": "TokenSecret"}
    assert actions["kms:Decrypt"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}


def test_example_consumer_uses_only_the_layer_and_the_reader_policy() -> None:
    consumer = props("ExampleConsumerFunction")
    assert consumer["Layers"] == [{"Ref": "SchwabTokensLayer"}]
    assert consumer["Policies"] == [{"Ref": "TokenReaderPolicy"}]
    assert set(consumer["Environment"]["Variables"]) == {"TOKEN_STORE_URL"}
    assert consumer["CodeUri"].rstrip("/") == "functions/example_consumer"


# ---------------------------------------------------------------------------- the store
def test_bucket_is_encrypted_versioned_private_and_tls_only() -> None:
    bucket = props("TokenBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": ["TokenKey", "Arn"]
    }
    assert rule["BucketKeyEnabled"] is True
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
    # Private: the bucket policy only denies; access comes from IAM (the roles, the reader policy).
    assert {s["Effect"] for s in statements(policy["PolicyDocument"])} == {"Deny"}
    tls = [
        s
        for s in statements(policy["PolicyDocument"])
        if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert len(tls) == 1
    assert tls[0]["Effect"] == "Deny"
    assert tls[0]["Principal"] == "*"
    assert as_list(tls[0]["Action"]) == ["s3:*"]
    targets = [r if "Fn::GetAtt" in r else sub_text(r) for r in tls[0]["Resource"]]
    assert {"Fn::GetAtt": ["TokenBucket", "Arn"]} in targets
    assert "${TokenBucket.Arn}/*" in targets


def test_key_rotates_and_no_one_outside_the_account_administers_it() -> None:
    key = props("TokenKey")
    assert key["EnableKeyRotation"] is True
    for statement in statements(key["KeyPolicy"]):
        assert statement["Effect"] == "Allow"
        principal = statement["Principal"]
        assert principal != "*"
        if "AWS" in principal:
            assert sub_text(principal["AWS"]) == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
        else:
            # Services get only what they need to use the key, never to manage it.
            for action in as_list(statement["Action"]):
                assert re.match(r"kms:(Encrypt|Decrypt|ReEncrypt|GenerateDataKey|Describe)", action)
    services = {
        sub_text(s["Principal"]["Service"])
        for s in statements(key["KeyPolicy"])
        if "Service" in s["Principal"]
    }
    assert "cloudwatch.amazonaws.com" in services  # alarms publish to the encrypted topic
    assert props("TokenKeyAlias")["TargetKeyId"] == {"Ref": "TokenKey"}


def test_secrets_are_encrypted_with_the_key_and_hold_no_value_from_the_template() -> None:
    for name in ("TokenSecret", "CredentialsSecret"):
        secret = props(name)
        assert secret["KmsKeyId"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}, name
        assert "SecretString" not in secret, f"{name} holds a literal value"
    # The token secret starts empty (login writes the first version); the credentials secret
    # holds a generated placeholder until `login --credentials-secret` fills it.
    assert "GenerateSecretString" not in props("TokenSecret")
    generated = props("CredentialsSecret")["GenerateSecretString"]
    template = json.loads(generated["SecretStringTemplate"])
    assert not {"app_key", "app_secret"} & set(template)
    assert generated["GenerateStringKey"] not in ("app_key", "app_secret")


# ---------------------------------------------------------------------------- no secrets
def test_no_parameter_holds_or_defaults_to_a_secret() -> None:
    for name, parameter in load_template()["Parameters"].items():
        assert not re.search(r"secret|password|apikey|appkey|credential", name, re.I), name
        default = str(parameter.get("Default", ""))
        assert not looks_like_a_secret(default), f"{name} defaults to {default!r}"


def test_no_function_environment_value_is_a_secret_literal() -> None:
    for function in of_type("AWS::Serverless::Function"):
        for name, value in env(function).items():
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


# ---------------------------------------------------------------------------- observability
def test_every_alarm_notifies_the_topic() -> None:
    alarms = of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) == 5
    for name, alarm in alarms.items():
        assert {"Ref": "AlarmTopic"} in alarm["Properties"]["AlarmActions"], name
        assert {"Ref": "AlarmTopic"} in alarm["Properties"].get("OKActions", []), name
    # Readable names in the e-mails, matching the README's runbook entries.
    assert {sub_text(a["Properties"]["AlarmName"]) for a in alarms.values()} == {
        "${AWS::StackName}-" + name
        for name in (
            "RefreshFailing",
            "LoginRequired",
            "RefreshTokenExpiringSoon",
            "NoSuccessfulRun",
            "RefresherErrors",
        )
    }
    assert props("AlarmTopic")["KmsMasterKeyId"] == {"Ref": "TokenKey"}
    subscription = props("AlarmEmailSubscription")
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == {"Ref": "AlarmEmail"}


def test_alarms_watch_the_metrics_the_refresher_emits() -> None:
    source = (REPO / "layers/schwab_tokens/schwab_tokens/refresher.py").read_text()
    refresher_env = env("RefresherFunction")
    by_metric = {}
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        if p["Namespace"] == "AWS/Lambda":
            assert p["MetricName"] == "Errors"
            assert p["Dimensions"] == [
                {"Name": "FunctionName", "Value": {"Ref": "RefresherFunction"}}
            ]
            continue
        assert p["Namespace"] == refresher_env["POWERTOOLS_METRICS_NAMESPACE"]
        assert p["Dimensions"] == [
            {"Name": "service", "Value": refresher_env["POWERTOOLS_SERVICE_NAME"]}
        ]
        assert f'"{p["MetricName"]}"' in source, f"the refresher emits no {p['MetricName']}"
        by_metric[p["MetricName"]] = p
    assert set(by_metric) == ALARM_METRICS

    failing = by_metric["RefreshFailed"]
    assert (failing["Statistic"], failing["Period"]) == ("Sum", 300)
    assert (failing["EvaluationPeriods"], failing["DatapointsToAlarm"]) == (3, 2)
    assert failing["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert failing["Threshold"] == 1
    login = by_metric["ReauthRequired"]
    assert (login["Statistic"], login["Threshold"]) == ("Sum", 1)
    assert login["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    expiring = by_metric["RefreshTokenHoursLeft"]
    assert (expiring["Statistic"], expiring["Threshold"]) == ("Minimum", 24)
    assert expiring["ComparisonOperator"] == "LessThanThreshold"
    silent = by_metric["SuccessfulRun"]
    assert (silent["Statistic"], silent["Threshold"]) == ("Sum", 1)
    assert silent["ComparisonOperator"] == "LessThanThreshold"
    assert silent["Period"] * silent["EvaluationPeriods"] == 15 * 60
    assert silent["TreatMissingData"] == "breaching"


def test_log_groups_have_retention_and_the_functions_use_them() -> None:
    for function, group in (
        ("RefresherFunction", "RefresherLogGroup"),
        ("ExampleConsumerFunction", "ExampleConsumerLogGroup"),
    ):
        assert props(function)["LoggingConfig"]["LogGroup"] == {"Ref": group}
        assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert props(group)["KmsKeyId"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}


def test_dashboard_is_valid_json_showing_hours_left_and_outcomes() -> None:
    body, variables = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    for placeholder in set(re.findall(r"\$\{([^}]+)\}", body)):
        assert placeholder in variables or placeholder.startswith("AWS::"), placeholder
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))
    metrics = json.dumps([w["properties"].get("metrics", []) for w in dashboard["widgets"]])
    for name in (
        "RefreshTokenHoursLeft",
        "AccessTokenSecondsLeft",
        "Refreshed",
        "StillFresh",
        "ReauthRequired",
        "RefreshFailed",
        "RefreshDuration",
        "Errors",
    ):
        assert f'"{name}"' in metrics, name
    alarms = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert len(alarms[0]["properties"]["alarms"]) == len(of_type("AWS::CloudWatch::Alarm"))


def test_outputs() -> None:
    outputs = load_template()["Outputs"]
    assert set(outputs) >= {
        "StoreUrl",
        "LayerArn",
        "ReaderPolicyArn",
        "CredentialsSecretName",
        "DashboardUrl",
        "AlarmTopicArn",
    }
    assert outputs["LayerArn"]["Value"] == {"Ref": "SchwabTokensLayer"}
    assert outputs["ReaderPolicyArn"]["Value"] == {"Ref": "TokenReaderPolicy"}
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}
    assert sub_text(outputs["CredentialsSecretName"]["Value"]) == sub_text(
        props("CredentialsSecret")["Name"]
    )
    assert "#dashboards:name=${Dashboard}" in sub_text(outputs["DashboardUrl"]["Value"])


# ---------------------------------------------------------------------------- checkov skips
def test_every_checkov_skip_has_a_reason() -> None:
    skips = 0
    for name, r in resources().items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "").split()) >= 8, f"{name} {skip['id']}: no reason"
            skips += 1
    assert skips > 0


# ---------------------------------------------------------------------------- the layer
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
        for line in (content / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "requests" in requirements
    for unwanted in ("boto3", "botocore", "aws-lambda-powertools", "cryptography"):
        assert unwanted not in requirements, unwanted


@pytest.mark.parametrize("function", ["RefresherFunction", "ExampleConsumerFunction"])
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
def test_sample_events() -> None:
    from schwab_tokens.refresher import is_forced

    scheduled = json.loads((REPO / "events/scheduled.json").read_text())
    assert scheduled["detail-type"] == "Scheduled Event"
    assert scheduled["source"] == "aws.events"
    forced = json.loads((REPO / "events/force_refresh.json").read_text())
    assert {k: v for k, v in forced.items() if k not in ("id", "time", "detail")} == {
        k: v for k, v in scheduled.items() if k not in ("id", "time", "detail")
    }
    assert forced["detail"] == {"force": True}
    assert is_forced(forced) and not is_forced(scheduled)
    assert isinstance(json.loads((REPO / "events/consumer.json").read_text()), dict)


def test_samconfig_deploy_defaults() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"] == "schwab-tokens"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert "StoreType=S3" in deploy["parameter_overrides"]
