"""What the refresher's role may do, asked of AWS's own policy simulator
(``iam:SimulatePrincipalPolicy``), which evaluates conditions, permission boundaries and the
resource policies handed to it as IAM itself does. Where the endpoint cannot simulate (moto, a
LocalStack) or this identity may not ask, the check says "not checked" instead of guessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .. import aws
from ..errors import AccessDenied
from ..stores import TokenStore
from .clients import Clients
from .report import Check, Status, fail, ok

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_iam.type_defs import ContextEntryTypeDef

SIMULATE = "iam:SimulatePrincipalPolicy"
_NO_SIMULATOR = f"this AWS endpoint cannot simulate IAM policies ({SIMULATE})"
#: What a request over TLS carries: the bucket policy denies any other.
_TLS_CONTEXT: tuple[tuple[str, str, str], ...] = (
    ("aws:SecureTransport", "true", "boolean"),
    ("s3:TlsVersion", "1.3", "numeric"),
)


class CannotSimulate(Exception):
    """The endpoint answered no simulation (not implemented there, or refused to this caller)."""

    def __init__(self, why: str, status: Status) -> None:
        super().__init__(why)
        self.why = why
        self.status = status


@dataclass(frozen=True)
class Question:
    """May ``role_arn`` do each of ``actions`` on ``resource_arn``, given the resource's policy?"""

    role_arn: str
    actions: Sequence[str]
    resource_arn: str
    resource_policy: str | None = None
    context: tuple[tuple[str, str, str], ...] = ()


def simulate(question: Question, clients: Clients) -> dict[str, str]:
    """Each action's decision: ``allowed``, ``explicitDeny`` or ``implicitDeny``.

    Raises ``CannotSimulate`` when the endpoint cannot answer, and other refusals as
    ``AccessDenied``, ``TemporaryFailure`` or ``ConfigurationError``.
    """
    client = clients.iam()
    entries = (("aws:PrincipalArn", question.role_arn, "string"), *question.context)
    context = [
        cast(
            "ContextEntryTypeDef",
            {"ContextKeyName": k, "ContextKeyValues": [v], "ContextKeyType": t},
        )
        for k, v, t in entries
    ]
    options: dict[str, Any] = {}
    if question.resource_policy:
        options["ResourcePolicy"] = question.resource_policy
    from botocore.parsers import ResponseParserError

    try:
        answer = client.simulate_principal_policy(
            PolicySourceArn=question.role_arn,
            ActionNames=list(question.actions),
            ResourceArns=[question.resource_arn],
            ContextEntries=context,
            **options,
        )
    except ResponseParserError:
        # What moto's server answers for an action it does not implement: a 500 of no XML.
        raise CannotSimulate(_NO_SIMULATOR, Status.SKIP) from None
    except aws.boto_errors() as exc:
        raise _simulator_error(exc) from None
    return {
        str(result["EvalActionName"]): str(result["EvalDecision"])
        for result in answer.get("EvaluationResults", [])
    }


def _simulator_error(exc: BaseException) -> Exception:
    error = aws.translate(exc, what="the IAM policy simulator", action=SIMULATE)
    if isinstance(error, AccessDenied):
        return CannotSimulate(
            f"this identity may not call {SIMULATE}; grant it to check this", Status.WARN
        )
    if aws.error_code(exc) in ("NotImplemented", "InvalidAction", "UnknownOperationException"):
        return CannotSimulate(_NO_SIMULATOR, Status.SKIP)
    return error


def verdict(name: str, question: Question, what: str, clients: Clients) -> Check:
    """The check line for ``question``: ok when IAM allows every action, else FAIL.

    A FAIL names the first action not allowed (and whether a policy denies it explicitly); a
    simulation that cannot run is a "not checked" line.
    """
    try:
        decisions = simulate(question, clients)
    except CannotSimulate as exc:
        return Check(name, exc.status, f"not checked: {exc.why}")
    role = question.role_arn.rsplit("/", 1)[-1]
    refused = [(a, decisions.get(a, "implicitDeny")) for a in question.actions]
    refused = [(a, d) for a, d in refused if d != "allowed"]
    if not refused:
        return ok(name, f"its role {role} may {', '.join(question.actions)} on {what}")
    action, decision = refused[0]
    how = (
        "a policy denies it explicitly (the resource's policy, a boundary or an SCP)"
        if decision == "explicitDeny"
        else "nothing allows it"
    )
    return fail(
        name,
        f"its role {role} may not {action} on {what}: {how} (IAM's policy simulator)",
        f"deploy the stack again (sam deploy), or grant the role {action} on "
        f"{question.resource_arn}",
    )


# -- the questions doctor asks ----------------------------------------------------------------
def credentials_question(role_arn: str, name: str, function_arn: str, clients: Clients) -> Question:
    """May the refresher read the app credentials (an SSM parameter or a secret)?"""
    partition, region, account = _arn_parts(function_arn)
    if name.startswith("ssm:"):
        parameter = name.removeprefix("ssm:").lstrip("/")
        arn = f"arn:{partition}:ssm:{region}:{account}:parameter/{parameter}"
        return Question(role_arn, ("ssm:GetParameter",), arn)
    arn, policy = _secret(
        name, f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}", clients
    )
    return Question(role_arn, ("secretsmanager:GetSecretValue",), arn, policy)


def store_question(
    role_arn: str, store: TokenStore, function_arn: str, clients: Clients
) -> Question:
    """May the refresher read and write its token where it lives?

    The question carries the bucket's or the secret's resource policy, which can deny what
    the role's policies allow.
    """
    partition, region, account = _arn_parts(function_arn)
    bucket = getattr(store, "bucket", None)
    if isinstance(bucket, str):
        key = str(getattr(store, "key", ""))
        return Question(
            role_arn,
            ("s3:GetObject", "s3:PutObject"),
            f"arn:{partition}:s3:::{bucket}/{key}",
            _bucket_policy(bucket, clients),
            _TLS_CONTEXT,
        )
    name = str(getattr(store, "name", ""))
    arn, policy = _secret(
        name, f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}", clients
    )
    return Question(
        role_arn,
        (
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        ),
        arn,
        policy,
    )


def _arn_parts(arn: str) -> tuple[str, str, str]:
    parts = arn.split(":")
    return (parts[1], parts[3], parts[4]) if len(parts) > 4 else ("aws", "us-east-1", "*")


def _secret(name: str, fallback_arn: str, clients: Clients) -> tuple[str, str | None]:
    """The secret's ARN (with its random suffix) and resource policy, as far as this identity
    may read them."""
    client = clients.secretsmanager()
    try:
        arn = str(client.describe_secret(SecretId=name)["ARN"])
    except aws.boto_errors():
        return fallback_arn, None
    try:
        policy = client.get_resource_policy(SecretId=name).get("ResourcePolicy")
    except aws.boto_errors():
        policy = None
    return arn, str(policy) if policy else None


def _bucket_policy(bucket: str, clients: Clients) -> str | None:
    try:
        policy = clients.s3().get_bucket_policy(Bucket=bucket).get("Policy")
    except aws.boto_errors():
        return None  # none, or this identity may not read it
    return str(policy) if policy else None


__all__ = ["CannotSimulate", "Question", "credentials_question", "simulate", "store_question"]
