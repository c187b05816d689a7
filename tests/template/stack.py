"""template.yaml deployed on moto: SAM's own translator, then CloudFormation on moto.

``deploy(session, name, parameters[, template])`` translates the SAM template (or a changed copy
of it) in-process, for the session's region, with samtranslator
(the library behind ``sam build``/``sam validate`` and CloudFormation's SAM transform; AWS-
managed policy names are not looked up: the template uses none), then creates the stack with
moto's CloudFormation and reads back what it made.

What moto 5.2 cannot do is stood in, each time in the same way:

- resource types moto's CloudFormation does not implement (``AWS::SecretsManager::Secret`` and
  ``::ResourcePolicy``, ``AWS::Lambda::Url``, ``AWS::Lambda::EventInvokeConfig``,
  ``AWS::CloudWatch::Alarm``, ``AWS::SNS::Subscription`` and ``::TopicPolicy``,
  ``AWS::S3::BucketPolicy``) and ``AWS::Lambda::LayerVersion`` (whose ``Ref`` moto answers with
  an object, and whose functions keep no layers anyway) become an ``AWS::SSM::Parameter`` with
  the same ``Condition``, holding the resource's properties as moto resolved them
  (``Fn::ToJsonString``): the stand-in exists exactly when the resource would, and its value
  shows the resolved references. ``Ref`` to a stood-in secret or layer becomes an ARN of the
  right shape; ``Fn::GetAtt`` to a stand-in (e.g. the function URL) a literal
  ``https://<id>.standin.invalid/<attribute>/``.
- moto keeps ``AWS::NoValue`` inside lists as ``null`` (CloudFormation drops the item):
  ``moto_drops_novalue_in_lists()`` patches moto's resolver while a stack is created.
- moto's functions keep no layers, architectures or tracing mode: tests read those from the
  translated template (``Deployment.translated`` with ``devkit.template.resolve``).
- moto keeps a key's ``KeyPolicy`` as the object CloudFormation passes (AWS keeps the JSON
  text), and its ``DescribeKey`` and ``GetKeyPolicy`` then fail: the policy is handed over as
  JSON text (``Fn::ToJsonString``), so ``GetKeyPolicy`` answers the policy as deployed.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from devkit.template import conditions, load_template, parameter_values

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
ARTIFACTS_BUCKET = "schwab-tokens-artifacts"
#: What moto's CloudFormation parses but answers wrongly (see the module docstring).
ALWAYS_STOOD_IN = {"AWS::Lambda::LayerVersion"}
_STANDIN_PREFIX = "/standin"


@dataclass
class Deployment:
    name: str
    parameters: dict[str, str]
    #: SAM's translation (before the stand-ins), and its Conditions for these parameters.
    translated: dict[str, Any]
    conditions: dict[str, bool]
    outputs: dict[str, str] = field(default_factory=dict)
    #: logical id -> (type as created on moto, physical id)
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: logical id of a stood-in resource -> {"Type": original type, "Properties": resolved}
    stood_in: dict[str, dict[str, Any]] = field(default_factory=dict)

    def physical(self, logical: str) -> str:
        return self.resources[logical][1]

    def has(self, logical: str) -> bool:
        return logical in self.resources

    def properties(self, logical: str) -> dict[str, Any]:
        """A stood-in resource's properties, as moto resolved them."""
        return self.stood_in[logical]["Properties"]


def translate(
    parameters: dict[str, str],
    template: dict[str, Any] | None = None,
    region: str = REGION,
    *,
    passthrough_metadata: bool = False,
) -> dict[str, Any]:
    """The CloudFormation template SAM makes of template.yaml, or of ``template`` (a changed
    copy), for ``region`` (code from ARTIFACTS_BUCKET). ``passthrough_metadata``: SAM copies
    each SAM resource's Metadata to the resources it makes of it (for checkov's skips)."""
    import boto3

    try:
        from samtranslator.parser.parser import Parser
        from samtranslator.translator.translator import Translator
    except ImportError as exc:  # cfn-lint 1.x no longer brings it
        raise ImportError(
            "aws-sam-translator is a dev dependency (pyproject.toml dev extras): run `make setup`"
        ) from exc

    template = copy.deepcopy(load_template() if template is None else template)
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:  # what `sam package` puts there
                properties[key] = f"s3://{ARTIFACTS_BUCKET}/{name}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    return translator.translate(
        template,
        parameter_values=dict(parameters),
        get_managed_policy_map=lambda: {},  # no lookups: the template names no AWS policy
        passthrough_metadata=passthrough_metadata,
    )


def _arn_for_ref(resource: dict[str, Any]) -> Any:
    """What ``Ref`` gives for a stood-in resource that is referenced by ARN."""
    properties = resource.get("Properties", {})
    kinds = {
        "AWS::SecretsManager::Secret": ("secretsmanager", "secret:", "Name", "-AbCdEf"),
        "AWS::Lambda::LayerVersion": ("lambda", "layer:", "LayerName", ":1"),
    }
    if resource["Type"] not in kinds:
        return None
    service, kind, name, suffix = kinds[resource["Type"]]
    prefix = {
        "Fn::Sub": f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{kind}"
    }
    return {"Fn::Join": ["", [prefix, properties[name], suffix]]}


def stand_in(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """A copy of ``template`` that moto can create, and the logical ids stood in."""
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map()) - ALWAYS_STOOD_IN
    resources = template["Resources"]
    originals = {n: r for n, r in resources.items() if r["Type"] not in supported}

    def literal(logical: str, attribute: str) -> str:
        return f"https://{logical.lower()}.standin.invalid/{attribute}/"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in originals:
                arn = _arn_for_ref(originals[node["Ref"]])
                return node if arn is None else rewrite(arn)
            if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in originals:
                return literal(*node["Fn::GetAtt"])
            if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
                text = re.sub(
                    r"\$\{(\w+)\.(\w+)\}",
                    lambda m: literal(m[1], m[2]) if m[1] in originals else m[0],
                    node["Fn::Sub"],
                )
                assert not [m for m in re.findall(r"\$\{(\w+)\}", text) if m in originals]
                return {"Fn::Sub": text}
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    result = rewrite(copy.deepcopy(template))
    for body in result["Resources"].values():
        policy = body.get("Properties", {}).get("KeyPolicy")
        if body["Type"] == "AWS::KMS::Key" and isinstance(policy, dict):
            body["Properties"]["KeyPolicy"] = {"Fn::ToJsonString": policy}
    for name, original in originals.items():
        standin: dict[str, Any] = {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": {"Fn::Sub": f"{_STANDIN_PREFIX}/${{AWS::StackName}}/{name}"},
                "Type": "String",
                "Value": {
                    "Fn::ToJsonString": {
                        "Type": original["Type"],
                        "Properties": result["Resources"][name].get("Properties", {}),
                    }
                },
            },
        }
        if "Condition" in original:
            standin["Condition"] = original["Condition"]
        result["Resources"][name] = standin
    return result, set(originals)


@contextlib.contextmanager
def moto_drops_novalue_in_lists() -> Iterator[None]:
    """CloudFormation drops a list item that resolves to ``AWS::NoValue``; moto 5.2 keeps a
    ``null`` (an IAM statement list then fails as "Syntax errors in policy")."""
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(value: Any, resources_map: Any) -> Any:
        result = original(value, resources_map)
        if isinstance(value, list) and isinstance(result, list):
            return [item for item in result if item is not None]
        return result

    parsing.clean_json = clean_json
    try:
        yield
    finally:
        parsing.clean_json = original


def upload_artifacts(s3: Any, template: dict[str, Any]) -> None:
    """A small zip for every CodeUri/ContentUri the translation points at."""
    region = s3.meta.region_name
    where = {} if region == "us-east-1" else {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(
            Bucket=ARTIFACTS_BUCKET, **({"CreateBucketConfiguration": where} if where else {})
        )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
    keys = set(re.findall(rf"{ARTIFACTS_BUCKET}\W+(\w+\.zip)", json.dumps(template)))
    for key in keys:
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=archive.getvalue())


class StackFailed(AssertionError):
    """The stack did not reach CREATE_COMPLETE: ``status`` and moto's ``reason``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def deploy(
    session: Any, name: str, overrides: dict[str, str], template: dict[str, Any] | None = None
) -> Deployment:
    """Create stack ``name`` with these parameters on the moto ``session`` talks to, in the
    session's region, from template.yaml or ``template`` (a changed copy). Raises
    ``StackFailed`` when the stack is not created."""
    region = session.region_name
    values = parameter_values(load_template() if template is None else template, overrides)
    translated = translate(overrides, template, region)
    template, stood_in = stand_in(translated)
    upload_artifacts(session.client("s3"), translated)
    cloudformation = session.client("cloudformation")
    with moto_drops_novalue_in_lists():
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise StackFailed(stack["StackStatus"], str(stack.get("StackStatusReason")))
    pseudo = {"AWS::Region": region, "AWS::Partition": session.get_partition_for_region(region)}
    deployment = Deployment(name, values, translated, conditions(translated, values, pseudo))
    deployment.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    deployment.resources = {
        s["LogicalResourceId"]: (s["ResourceType"], s["PhysicalResourceId"])
        for s in summaries
        if s["LogicalResourceId"]  # moto lists one nameless entry of its own
    }
    ssm = session.client("ssm")
    for logical in stood_in & set(deployment.resources):
        value = ssm.get_parameter(Name=f"{_STANDIN_PREFIX}/{name}/{logical}")["Parameter"]
        deployment.stood_in[logical] = json.loads(value["Value"])
    return deployment


def policy_document(document: Any) -> dict[str, Any]:
    """moto returns a role's inline policy as a dict, JSON, or a Python repr."""
    if isinstance(document, str):
        try:
            return dict(json.loads(document))
        except ValueError:
            return dict(ast.literal_eval(document))
    return dict(document)


def managed_policy(session: Any, arn: str) -> dict[str, Any]:
    iam = session.client("iam")
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    return policy_document(document["Document"])


def aws_managed_policy(name: str) -> dict[str, Any]:
    """The document of AWS's managed policy ``name`` (``ReadOnlyAccess``...), from the copy of
    AWS's managed policies moto ships (their default versions, as moto's release took them)."""
    return copy.deepcopy(_aws_managed_policies()[name]["Document"])


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return dict(json.loads(aws_managed_policies_data))


def role_documents(session: Any, deployment: Deployment, role: str) -> list[dict[str, Any]]:
    """Every policy of the stack's role ``role`` (a logical id): the managed ones SAM's
    translation attaches (moto's CloudFormation attaches none: the stack's own are read from IAM
    by the ARN their Ref resolves to, AWS's own from ``aws_managed_policy``) and the inline ones
    IAM holds."""
    from devkit.template import resolve

    translated = resolve(deployment.translated["Resources"][role], deployment.conditions)
    documents = []
    for attached in translated["Properties"].get("ManagedPolicyArns", []):
        if isinstance(attached, dict) and "Ref" in attached:
            documents.append(managed_policy(session, deployment.physical(attached["Ref"])))
        else:  # arn:${AWS::Partition}:iam::aws:policy/[path/]Name, a Sub or a literal
            arn = attached["Fn::Sub"] if isinstance(attached, dict) else attached
            documents.append(aws_managed_policy(arn.rsplit("/", 1)[1]))
    return documents + role_policies(session, deployment.physical(role))


def role_policies(session: Any, role: str) -> list[dict[str, Any]]:
    """The inline policy documents of an IAM role."""
    iam = session.client("iam")
    return [
        policy_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    ]
