"""template.yaml deployed: SAM's translation, created by CloudFormation on moto, for the
parameter combinations that change what exists.

Each combination is a real stack on moto (in-process): Conditions decided by CloudFormation,
references resolved, IAM policies parsed by moto's IAM. What moto cannot create or keeps wrong is
stood in (``tests.template.stack``: secrets, resource policies, the function URL, alarms, the
event-invoke config, the layer) and checked from its resolved properties or from the translated
template. No network (but the Schwab emulator on 127.0.0.1), no Docker.

The example consumer is invoked on the deployed stack after a refresh, with its deployed
environment and only the reader policy's permissions (moto's IAM enforcement, in-process).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.emulator import Emulator
from devkit.template import as_list, resolve
from schwab_tokens.settings import Settings
from schwab_tokens.stores import access_url
from tests.template.iam import DENIED, make_user, with_keys
from tests.template.stack import (
    ACCOUNT,
    REGION,
    Deployment,
    deploy,
    managed_policy,
    role_policies,
)

ALL_ON = {
    "Encryption": "CustomerManagedKey",
    "CredentialsStore": "SecretsManager",
    "HostedLogin": "Enabled",
    "DetailedMetrics": "Enabled",
    "AlarmEmail": "alarms@example.com",
    "ReservedConcurrency": "Enabled",
}
COMBINATIONS = {
    "defaults": {},
    "hosted-login": {"HostedLogin": "Enabled"},
    "customer-managed-key": {"Encryption": "CustomerManagedKey"},
    "secretsmanager-credentials": {"CredentialsStore": "SecretsManager"},
    "detailed-metrics": {"DetailedMetrics": "Enabled"},
    "secretsmanager-store": {"StoreType": "SecretsManager"},
    "everything-on-s3": ALL_ON,
    "everything-on-secretsmanager": {"StoreType": "SecretsManager", **ALL_ON},
}
LOGIN_RESOURCES = {
    "LoginFunction",
    "LoginFunctionRole",
    "LoginFunctionUrl",
    "LoginFunctionUrlPublicPermissions",
    "LoginFunctionURLInvokeAllowPublicAccess",
    "LoginLogGroup",
    "LoginFloodAlarm",
}


class Stacks(dict[str, tuple[Deployment, Any]]):
    """name -> (deployment, session); each combination deployed the first time it is asked for
    (with pytest-xdist a worker then deploys only the combinations of the tests it runs)."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session

    def __missing__(self, name: str) -> tuple[Deployment, Any]:
        self[name] = (deploy(self.session, f"st-{name}", COMBINATIONS[name]), self.session)
        return self[name]


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    """The combinations' stacks, on one in-process moto for the module."""
    import boto3
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            env.delenv(name, raising=False)
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        yield Stacks(session)


@pytest.fixture(params=sorted(COMBINATIONS))
def stack(request: pytest.FixtureRequest, stacks: Stacks) -> tuple[Deployment, Any]:
    return stacks[request.param]


def where(parameter: str, value: str) -> pytest.MarkDecorator:
    """Narrow the ``stack`` fixture to the combinations that set ``parameter`` to ``value`` (for
    tests of what only they have)."""
    names = sorted(n for n, overrides in COMBINATIONS.items() if overrides.get(parameter) == value)
    return pytest.mark.parametrize("stack", names, indirect=True)


def on(deployment: Deployment, parameter: str, value: str) -> bool:
    return deployment.parameters[parameter] == value


def actions(document: dict[str, Any]) -> set[str]:
    return {action for s in document["Statement"] for action in as_list(s["Action"])}


def function_env(deployment: Deployment, session: Any, logical: str) -> dict[str, str]:
    config = session.client("lambda").get_function_configuration(
        FunctionName=deployment.physical(logical)
    )
    return {k: str(v) for k, v in config["Environment"]["Variables"].items()}


def logical(deployment: Deployment, prefix: str) -> str:
    """The logical id SAM gave a layer (its name and a hash of its content)."""
    (name,) = [n for n in deployment.translated["Resources"] if n.startswith(prefix)]
    return name


def translated(deployment: Deployment, logical: str) -> dict[str, Any]:
    """A resource of SAM's translation with this deployment's Conditions decided."""
    return dict(resolve(deployment.translated["Resources"][logical], deployment.conditions))


# ---------------------------------------------------------------------------- what exists
def test_resources_and_outputs_exist_exactly_when_their_parameter_says(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, _ = stack
    login = on(deployment, "HostedLogin", "Enabled")
    cmk = on(deployment, "Encryption", "CustomerManagedKey")
    s3 = on(deployment, "StoreType", "S3")
    sm_credentials = on(deployment, "CredentialsStore", "SecretsManager")
    metrics = on(deployment, "DetailedMetrics", "Enabled")
    expected = {
        "TokenKey": cmk,
        "TokenKeyAlias": cmk,
        "TokenBucket": s3,
        "TokenBucketPolicy": s3,
        "TokenSecret": not s3,
        "TokenSecretPolicy": not s3,
        "CredentialsSecret": sm_credentials,
        "CredentialsSecretPolicy": sm_credentials,
        "Dashboard": metrics,
        "AlarmEmailSubscription": deployment.parameters["AlarmEmail"] != "",
        **dict.fromkeys(LOGIN_RESOURCES, login),
    }
    for always in (
        "RefresherFunction",
        "RefresherFunctionRole",
        "RefresherFunctionSchedule",
        "RefresherFunctionEventInvokeConfig",
        "FailureQueue",
        "AlarmTopic",
        "AlarmTopicPolicy",
        "RefresherErrorsAlarm",
        "RefresherNotRunningAlarm",
        "TokenWriterPolicy",
        "TokenReaderPolicy",
        "TokenDocumentPolicy",
        "ExampleConsumerFunction",
    ):
        expected[always] = True
    assert {name: deployment.has(name) for name in expected} == expected
    if not login:  # no trace of the hosted login at all
        assert not [name for name in deployment.resources if "login" in name.lower()]
    outputs = set(deployment.outputs)
    assert ({"LoginUrl", "SchwabCallbackUrl"} <= outputs) is login
    assert not ({"LoginUrl", "SchwabCallbackUrl"} & outputs) or login
    assert ("DashboardUrl" in outputs) is metrics
    assert ("KmsKeyArn" in outputs) is cmk
    alarms = [n for n, (_, _) in deployment.resources.items() if n.endswith("Alarm")]
    login_alarm = ["LoginFloodAlarm"] if login else []
    assert sorted(alarms) == [*login_alarm, "RefresherErrorsAlarm", "RefresherNotRunningAlarm"]


def test_outputs_name_what_the_cli_and_consumers_need(stack: tuple[Deployment, Any]) -> None:
    deployment, _ = stack
    out = deployment.outputs
    name = deployment.name
    if on(deployment, "StoreType", "S3"):
        bucket = deployment.physical("TokenBucket")
        assert out["StoreUrl"] == f"s3://{bucket}/schwab/tokens.json"
        assert out["AccessTokenUrl"] == f"s3://{bucket}/schwab/tokens.access.json"
    else:
        assert out["StoreUrl"] == f"secretsmanager://{name}/tokens"
        assert out["AccessTokenUrl"] == f"ssm:/{name}/tokens.access"
    assert access_url(out["StoreUrl"]) == out["AccessTokenUrl"]  # the library's rule
    if on(deployment, "CredentialsStore", "ParameterStore"):
        assert out["CredentialsSecretName"] == f"ssm:/{name}/credentials"
    else:
        assert out["CredentialsSecretName"] == f"{name}/credentials"
        assert deployment.properties("CredentialsSecret")["Name"] == f"{name}/credentials"
    assert out["AlarmTopicArn"] == deployment.physical("AlarmTopic")
    assert out["ReaderPolicyArn"] == deployment.physical("TokenReaderPolicy")
    assert out["TokenDocumentPolicyArn"] == deployment.physical("TokenDocumentPolicy")
    assert out["LayerArn"].startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}-")
    if "LoginUrl" in out:
        assert out["LoginUrl"].endswith("/")
        assert out["SchwabCallbackUrl"] == out["LoginUrl"] + "callback"


# ---------------------------------------------------------------------------- the functions
def test_the_functions_environment_is_what_the_library_reads(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, session = stack
    out = deployment.outputs
    env = function_env(deployment, session, "RefresherFunction")
    settings = Settings.from_env(env)  # the library accepts every value the stack sets
    assert settings.store_url == out["StoreUrl"]
    assert settings.credentials_secret == out["CredentialsSecretName"]
    assert settings.topic_arn == out["AlarmTopicArn"]
    assert settings.refresh_margin == 900
    assert settings.login_url == out.get("LoginUrl")
    assert settings.kms_key_id == out.get("KmsKeyArn")
    metrics = on(deployment, "DetailedMetrics", "Enabled")
    assert settings.detailed_metrics is metrics
    assert env["POWERTOOLS_TRACE_DISABLED"] == ("false" if metrics else "true")
    # moto keeps no tracing mode, layers or architectures: SAM's translation says them.
    refresher = translated(deployment, "RefresherFunction")["Properties"]
    assert refresher["TracingConfig"] == {"Mode": "Active" if metrics else "PassThrough"}
    assert refresher["Architectures"] == ["arm64"]
    assert refresher["Layers"][0] == {"Ref": logical(deployment, "SchwabTokensLayer")}
    assert "AWSLambdaPowertoolsPythonV3-python312-arm64" in json.dumps(refresher["Layers"][1])

    consumer = function_env(deployment, session, "ExampleConsumerFunction")
    assert consumer == {"TOKEN_ACCESS_URL": out["AccessTokenUrl"]}
    assert Settings.from_env(consumer).access_url == out["AccessTokenUrl"]
    if deployment.has("LoginFunction"):
        login_env = function_env(deployment, session, "LoginFunction")
        login = Settings.from_env(login_env)
        assert (login.store_url, login.credentials_secret, login.kms_key_id) == (
            settings.store_url,
            settings.credentials_secret,
            settings.kms_key_id,
        )
        assert login.login_url is None  # derived from the request: no circular reference
        properties = translated(deployment, "LoginFunction")["Properties"]
        assert properties["Timeout"] == 90
        assert (login.http_timeout, login.http_retries) == (10, 1)
        assert properties["Architectures"] == ["arm64"]
        assert "TracingConfig" not in properties


def test_no_function_reserves_concurrency_unless_enabled(stack: tuple[Deployment, Any]) -> None:
    """Any reservation fails the deploy on a new account (concurrency quota 10, of which Lambda
    keeps 10 unreserved): only ReservedConcurrency=Enabled reserves, 1 for the refresher and 2
    for the login function; in SAM's translation and in the functions as created."""
    deployment, session = stack
    enabled = on(deployment, "ReservedConcurrency", "Enabled")
    expected = {"RefresherFunction": 1, "LoginFunction": 2} if enabled else {}
    functions = [
        name for name, (kind, _) in deployment.resources.items() if kind == "AWS::Lambda::Function"
    ]
    assert {"RefresherFunction", "ExampleConsumerFunction"} <= set(functions)
    reserved = {}
    for name in functions:
        properties = translated(deployment, name)["Properties"]
        created = session.client("lambda").get_function(FunctionName=deployment.physical(name))
        on_moto = created.get("Concurrency", {}).get("ReservedConcurrentExecutions")
        assert properties.get("ReservedConcurrentExecutions") == on_moto, name
        if on_moto is not None:
            reserved[name] = on_moto
    assert reserved == {n: v for n, v in expected.items() if n in functions}


def test_keys_and_the_token_store_are_retained(stack: tuple[Deployment, Any]) -> None:
    """In SAM's translation (what CloudFormation receives), every KMS key and the resource that
    holds the token survive the stack's deletion and a replacement."""
    deployment, _ = stack
    resources = {
        name: resolve(r, deployment.conditions)
        for name, r in deployment.translated["Resources"].items()
        if deployment.conditions.get(r.get("Condition", ""), True)
    }
    keys = {n for n, r in resources.items() if r["Type"] == "AWS::KMS::Key"}
    store = "TokenBucket" if on(deployment, "StoreType", "S3") else "TokenSecret"
    assert store in resources and deployment.has(store)
    assert len(keys) == (1 if on(deployment, "Encryption", "CustomerManagedKey") else 0)
    for name in keys | {store}:
        resource = resources[name]
        policies = (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy"))
        assert policies == ("Retain", "Retain"), name


@where("HostedLogin", "Enabled")
def test_the_function_url_is_public_and_reaches_only_the_login_function(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, session = stack
    url = deployment.properties("LoginFunctionUrl")
    login = deployment.physical("LoginFunction")
    assert url == {"TargetFunctionArn": login, "AuthType": "NONE", "InvokeMode": "BUFFERED"}
    policy = json.loads(session.client("lambda").get_policy(FunctionName=login)["Policy"])
    granted = {
        (s["Action"], s.get("FunctionUrlAuthType"), s.get("InvokedViaFunctionUrl"))
        for s in policy["Statement"]
    }
    # Both permissions AWS requires for a public function URL, the second only via the URL.
    assert granted == {
        ("lambda:InvokeFunctionUrl", "NONE", None),
        ("lambda:InvokeFunction", None, True),
    }
    assert {s["Principal"] for s in policy["Statement"]} == {"*"}
    group = session.client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{deployment.name}-login"
    )["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in group] == [
        (f"/aws/lambda/{deployment.name}-login", 30)
    ]


# ---------------------------------------------------------------------------- encryption
def test_encryption_follows_the_encryption_parameter(stack: tuple[Deployment, Any]) -> None:
    deployment, session = stack
    cmk = on(deployment, "Encryption", "CustomerManagedKey")
    key_id = deployment.physical("TokenKey") if cmk else None
    key_arn = deployment.outputs.get("KmsKeyArn")
    if cmk:  # DescribeKey fails on a stack-made key in moto: list it instead
        assert key_id in {k["KeyId"] for k in session.client("kms").list_keys()["Keys"]}
        assert key_arn == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    if deployment.has("TokenBucket"):
        rules = session.client("s3").get_bucket_encryption(
            Bucket=deployment.physical("TokenBucket")
        )["ServerSideEncryptionConfiguration"]["Rules"]
        default = rules[0]["ApplyServerSideEncryptionByDefault"]
        if cmk:
            assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
            # moto keeps no BucketKeyEnabled: the translation says it (the reader's decrypt
            # condition relies on the bucket-level encryption context it gives).
            bucket = translated(deployment, "TokenBucket")["Properties"]
            (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert rule["BucketKeyEnabled"] is True
        else:
            assert default == {"SSEAlgorithm": "AES256"}
    queue = session.client("sqs").get_queue_attributes(
        QueueUrl=deployment.physical("FailureQueue"), AttributeNames=["All"]
    )["Attributes"]
    assert queue.get("KmsMasterKeyId") == key_id
    topic = session.client("sns").get_topic_attributes(TopicArn=deployment.physical("AlarmTopic"))
    assert topic["Attributes"].get("KmsMasterKeyId") == key_id
    for secret in ("TokenSecret", "CredentialsSecret"):
        if deployment.has(secret):
            assert deployment.properties(secret).get("KmsKeyId") == key_arn, secret
    # moto drops a log group's KmsKeyId: the translation says it.
    for group in ("RefresherLogGroup", "ExampleConsumerLogGroup", "LoginLogGroup"):
        if deployment.has(group):
            properties = translated(deployment, group)["Properties"]
            assert ("KmsKeyId" in properties) is cmk, group
    kinds = [kind for kind, _ in deployment.resources.values()]
    assert kinds.count("AWS::KMS::Key") == (1 if cmk else 0)


# ---------------------------------------------------------------------------- permissions
def test_policies_as_created_grant_the_store_credentials_and_topic_only(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, session = stack
    iam = session.client("iam")
    writer = managed_policy(session, deployment.physical("TokenWriterPolicy"))
    reader = managed_policy(session, deployment.physical("TokenReaderPolicy"))
    bot = managed_policy(session, deployment.physical("TokenDocumentPolicy"))
    inline = role_policies(session, deployment.physical("RefresherFunctionRole"))
    refresher = set().union(*(actions(d) for d in inline)) | actions(writer)
    cmk = on(deployment, "Encryption", "CustomerManagedKey")
    s3 = on(deployment, "StoreType", "S3")
    view = {"ssm:GetParameter", "ssm:PutParameter"}
    store = (
        {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}
        if s3
        else {
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            *view,
        }
    )
    credentials = (
        {"ssm:GetParameter"}
        if on(deployment, "CredentialsStore", "ParameterStore")
        else {"secretsmanager:GetSecretValue"}
    )
    kms = {"kms:Decrypt", "kms:GenerateDataKey"} if cmk else set()
    if cmk and not s3:
        kms.add("kms:Encrypt")  # SSM encrypts the view's SecureString under the key
    assert refresher == store | credentials | kms | {"sns:Publish", "sqs:SendMessage"}
    assert actions(bot) == store | kms
    assert actions(reader) == ({"s3:GetObject"} if s3 else {"ssm:GetParameter"}) | (
        {"kms:Decrypt"} if cmk else set()
    )
    # The reader: the access view's object or parameter, and the key (for the view only).
    view_arn = (
        f"arn:aws:s3:::{deployment.physical('TokenBucket')}/schwab/tokens.access.json"
        if s3
        else f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{deployment.name}/tokens.access"
    )
    key = [deployment.outputs["KmsKeyArn"]] if cmk else []
    assert sorted(s["Resource"] for s in reader["Statement"]) == sorted([view_arn, *key])
    for statement in reader["Statement"]:
        if statement["Action"] == "kms:Decrypt":
            context = {
                k: v
                for k, v in statement["Condition"]["StringEquals"].items()
                if k.startswith("kms:EncryptionContext:")
            }
            assert list(context.values()) == [view_arn], context
    credentials_name = f"{deployment.name}/credentials"  # the parameter's or the secret's
    assert "tokens.json" not in json.dumps(reader) and credentials_name not in json.dumps(reader)
    # The bot: the document, its notes (S3; a label of the secret otherwise), the lease and the
    # view; never the credentials.
    assert ("tokens.json.notes" in json.dumps(bot)) is s3
    assert credentials_name not in json.dumps(bot)
    if s3:  # listing: the stack's bucket, without a condition (S3's 404 needs it so)
        bucket = deployment.physical("TokenBucket")
        for policy in (writer, bot):
            (listing,) = [s for s in policy["Statement"] if s["Action"] == "s3:ListBucket"]
            assert listing["Resource"] == f"arn:aws:s3:::{bucket}"
            assert "Condition" not in listing
    if on(deployment, "CredentialsStore", "ParameterStore"):
        parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{deployment.name}/credentials"
        reads = [s for s in writer["Statement"] if "ssm:GetParameter" in as_list(s["Action"])]
        assert parameter in [s["Resource"] for s in reads]
    # The roles that SAM made: the writer policy is attached to the refresher and the login.
    for function in ("RefresherFunctionRole", "LoginFunctionRole"):
        if deployment.has(function):
            attached = translated(deployment, function)["Properties"]["ManagedPolicyArns"]
            assert {"Ref": "TokenWriterPolicy"} in attached, function
            assert {"Ref": "TokenDocumentPolicy"} not in attached, function
    consumer = translated(deployment, "ExampleConsumerFunctionRole")["Properties"]
    assert consumer["ManagedPolicyArns"][-1] == {"Ref": "TokenReaderPolicy"}
    assert "Policies" not in consumer
    if deployment.has("LoginFunctionRole"):
        login_role = deployment.physical("LoginFunctionRole")
        assert iam.list_role_policies(RoleName=login_role)["PolicyNames"] == []


@where("CredentialsStore", "SecretsManager")
def test_only_the_functions_and_administrators_may_read_the_credentials_secret(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, session = stack
    iam = session.client("iam")

    def role_arn(logical: str) -> str:
        return str(iam.get_role(RoleName=deployment.physical(logical))["Role"]["Arn"])

    policy = deployment.properties("CredentialsSecretPolicy")
    assert policy["SecretId"].startswith(
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{deployment.name}/credentials-"
    )
    assert policy["BlockPublicPolicy"] is True
    (statement,) = policy["ResourcePolicy"]["Statement"]
    allowed = statement.pop("Condition")["ArnNotLike"]["aws:PrincipalArn"]
    assert statement == {
        "Sid": "OnlyTheFunctionsAndAdministratorsRead",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": "*",
    }
    login = role_arn("LoginFunctionRole") if deployment.has("LoginFunctionRole") else None
    functions = [role_arn("RefresherFunctionRole"), login or role_arn("RefresherFunctionRole")]
    admins = deployment.parameters["AdministratorPrincipals"].split(",")
    assert allowed == functions + admins
    assert all(a.startswith("arn:") and a.endswith((":root", "_*")) for a in admins)
    consumer = role_arn("ExampleConsumerFunctionRole")
    assert consumer not in allowed


# ---------------------------------------------------------------------------- notifications
def test_alarms_and_topic_policy_name_this_stack(stack: tuple[Deployment, Any]) -> None:
    deployment, _ = stack
    topic = deployment.physical("AlarmTopic")
    refresher = deployment.physical("RefresherFunction")
    for alarm in ("RefresherErrorsAlarm", "RefresherNotRunningAlarm"):
        p = deployment.properties(alarm)
        assert p["Namespace"] == "AWS/Lambda"
        assert p["Dimensions"] == [{"Name": "FunctionName", "Value": refresher}]
        assert p["AlarmActions"] == p["OKActions"] == [topic]
        assert p["AlarmName"].startswith(f"{deployment.name}-")
    if deployment.has("LoginFloodAlarm"):
        flood = deployment.properties("LoginFloodAlarm")
        login = deployment.physical("LoginFunction")
        watched = [m["MetricStat"]["Metric"] for m in flood["Metrics"] if "MetricStat" in m]
        assert sorted(m["MetricName"] for m in watched) == ["Invocations", "Throttles"]
        for metric in watched:
            assert metric["Dimensions"] == [{"Name": "FunctionName", "Value": login}]
        assert flood["AlarmActions"] == flood["OKActions"] == [topic]
        assert flood["AlarmName"] == f"{deployment.name}-LoginFlood"
    # Silence is the refresher's INSUFFICIENT_DATA: that state change is the message.
    silence = deployment.properties("RefresherNotRunningAlarm")
    assert (silence["TreatMissingData"], silence["InsufficientDataActions"]) == ("missing", [topic])
    assert "InsufficientDataActions" not in deployment.properties("RefresherErrorsAlarm")
    policy = deployment.properties("AlarmTopicPolicy")
    assert policy["Topics"] == [topic]
    publish, tls = policy["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {
            "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{deployment.name}-*"
        },
    }
    assert (tls["Effect"], tls["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    invoke = deployment.properties("RefresherFunctionEventInvokeConfig")
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"].endswith(
        deployment.physical("FailureQueue").rsplit("/", 1)[1]
    )
    if deployment.has("AlarmEmailSubscription"):
        subscription = deployment.properties("AlarmEmailSubscription")
        assert subscription == {
            "TopicArn": topic,
            "Protocol": "email",
            "Endpoint": "alarms@example.com",
        }


@where("DetailedMetrics", "Enabled")
def test_the_dashboard_shows_the_refresher_and_the_two_alarms(
    stack: tuple[Deployment, Any],
) -> None:
    deployment, session = stack
    body = session.client("cloudwatch").get_dashboard(
        DashboardName=deployment.physical("Dashboard")
    )
    dashboard = json.loads(body["DashboardBody"])
    (alarms,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    # The alarms are stood in on moto: their ARNs are the stand-ins' literals.
    assert [a.split(".")[0] for a in alarms["properties"]["alarms"]] == [
        "https://refreshererrorsalarm",
        "https://refreshernotrunningalarm",
    ]
    assert deployment.physical("RefresherFunction") in body["DashboardBody"]
    assert deployment.outputs["DashboardUrl"].endswith(
        f"#dashboards:name={deployment.name}-{REGION}"
    )


# ---------------------------------------------------------------------------- regions, names
@pytest.mark.parametrize("region", ["ca-west-1", "ap-east-2", "cn-northwest-1", "us-gov-west-1"])
def test_the_stack_deploys_with_a_powertools_layer_in_every_region(
    stacks: Stacks, region: str
) -> None:
    """Where Powertools publishes no official layer for python3.12 on arm64, the stack deploys
    its own (built from layers/powertools/) and both functions take it; where it does (GovCloud
    here), the official one of that region's account and no bundle."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    deployment = deploy(session, f"st-{region}", {"HostedLogin": "Enabled"})
    bundle = logical(deployment, "PowertoolsLayer")
    own = region != "us-gov-west-1"
    assert deployment.has(bundle) is own
    for function in ("RefresherFunction", "LoginFunction"):
        layers = translated(deployment, function)["Properties"]["Layers"]
        assert layers[0] == {"Ref": logical(deployment, "SchwabTokensLayer")}
        if own:
            assert layers[1] == {"Ref": bundle}, function
        else:
            assert layers[1]["Fn::Sub"][0].endswith(
                "AWSLambdaPowertoolsPythonV3-python312-arm64:27"
            )
            assert deployment.conditions["UseOfficialPowertools"]
    if own:
        layer = deployment.properties(bundle)
        assert layer["LayerName"] == f"st-{region}-powertools"
        assert (layer["CompatibleRuntimes"], layer["CompatibleArchitectures"]) == (
            ["python3.12"],
            ["arm64"],
        )
        assert layer["Content"]["S3Key"] == "PowertoolsLayer.zip"  # layers/powertools/, packaged


@pytest.mark.parametrize("name", ["aws-tokens", "AWStokens", "ssm-tokens", "Ssm2"])
def test_a_stack_name_ssm_refuses_fails_before_anything_is_kept(stacks: Stacks, name: str) -> None:
    """SSM refuses parameter names that begin with "aws" or "ssm" (any case): such a stack could
    never hold /<stack>/credentials or /<stack>/tokens.access. Its first resource fails with SSM's
    own error, and no bucket (which a failed stack would keep) is created."""
    from botocore.exceptions import ClientError

    session = stacks.session
    with pytest.raises(ClientError) as refused:
        deploy(session, name, {})
    message = str(refused.value)
    assert "reserved parameter name" in message or "can't be prefixed" in message, message
    assert f"/{name}/stack-name" in message or "prefixed" in message
    buckets = [b["Name"] for b in session.client("s3").list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.startswith(name.lower())], buckets


# ---------------------------------------------------------------------------- the consumer
@pytest.mark.parametrize("stack", ["defaults", "secretsmanager-store"], indirect=True)
def test_the_example_consumer_reads_the_view_with_only_the_reader_policy(
    stack: tuple[Deployment, Any], emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a refresh of the deployed store, the example consumer's handler, run with its
    deployed environment by an IAM user holding only the reader policy, answers the fingerprint
    of the current access token from the view; the token document is AccessDenied to it.

    moto checks the action (and S3's object) of every call with IAM enforced; it compares other
    services' resources with "*" (``tests.template.iam.for_moto``), so the SSM parameter's own
    scoping is checked on the policy as created (test_policies_as_created_...)."""
    from botocore.exceptions import ClientError
    from moto.core import enable_iam_authentication

    from devkit.handlers import load_handler
    from devkit.user import login, oauth_for
    from schwab_tokens import aws
    from schwab_tokens.errors import AccessDenied
    from schwab_tokens.policy import Outcome, run
    from schwab_tokens.stores import store_from_url
    from tests.helpers import LambdaContext, lambda_event

    deployment, session = stack
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    aws.reset_clients()
    out = deployment.outputs
    if not deployment.has("TokenBucket"):  # moto's CloudFormation cannot make the secret
        with contextlib.suppress(ClientError):
            session.client("secretsmanager").create_secret(Name=f"{deployment.name}/tokens")
    # The administrator's first login, then the library's refresh of the deployed store.
    store = store_from_url(out["StoreUrl"])
    login(store, emulator)
    result = run(store, lambda: oauth_for(emulator), force=True, clock=emulator.now)
    assert result.outcome is Outcome.REFRESHED, result
    current = store.read().token
    reader = managed_policy(session, deployment.physical("TokenReaderPolicy"))
    keys = make_user(session.client("iam"), f"{deployment.name}-consumer", [reader])

    environment = function_env(deployment, session, "ExampleConsumerFunction")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TOKEN_STORE_URL", raising=False)
    with enable_iam_authentication(), with_keys(keys):
        consumer = load_handler("example_consumer")  # a cold start: TokenReader.from_env()
        answer = consumer.lambda_handler(lambda_event("consumer.json"), LambdaContext())
        assert answer["fingerprint"] == current.fingerprint
        assert answer["access_seconds_left"] > 0
        # With only the reader policy, the token document is AccessDenied; the view is not.
        with pytest.raises(AccessDenied):
            store_from_url(out["StoreUrl"]).read()
        denied = session.client(
            "s3" if deployment.has("TokenBucket") else "secretsmanager",
            aws_access_key_id=keys["id"],
            aws_secret_access_key=keys["secret"],
        )
        with pytest.raises(ClientError) as refused:
            if deployment.has("TokenBucket"):
                bucket = deployment.physical("TokenBucket")
                denied.get_object(Bucket=bucket, Key="schwab/tokens.json")
            else:
                denied.get_secret_value(SecretId=f"{deployment.name}/tokens")
        assert refused.value.response["Error"]["Code"] in DENIED
    aws.reset_clients()
