"""What the refresher's role may do, asked of AWS's own policy simulator
(``iam:SimulatePrincipalPolicy``), which evaluates conditions, permission boundaries and the
resource policies handed to it as IAM itself does. Where the endpoint cannot simulate (moto, a
LocalStack) or this identity may not ask, the check says "not checked" instead of guessing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .. import aws, strictjson
from ..errors import AccessDenied
from ..stores import TokenStore
from .clients import Clients
from .report import Check, Status, fail, ok

if TYPE_CHECKING:  # type stubs, a development dependency only
    from mypy_boto3_iam.type_defs import ContextEntryTypeDef

SIMULATE = "iam:SimulatePrincipalPolicy"
_NO_SIMULATOR = f"this AWS endpoint cannot simulate IAM policies ({SIMULATE})"
#: IAM simulates a resource's policy only for an IAM user as the caller (``CallerArn``: "required
#: if you include a ResourcePolicy and the PolicySourceArn is not the ARN for an IAM user"). A
#: role's question is asked as this user holding the role's policies, the resource policy's
#: mentions of the role naming it instead; conditions still see the role (``aws:PrincipalArn``).
CALLER_NAME = "schwab-tokens-doctor"
#: What IAM answers when it will not take that caller (a user that does not exist, say).
_CALLER_REFUSED = ("InvalidInput", "NoSuchEntity")
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

    Raises ``CannotSimulate`` when the endpoint cannot answer (or would not take a caller for
    the resource's policy), and other refusals as ``AccessDenied``, ``TemporaryFailure`` or
    ``ConfigurationError``.
    """
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
        caller = caller_arn(question.role_arn)
        options["CallerArn"] = caller
        options["ResourcePolicy"] = as_caller(question.resource_policy, question.role_arn, caller)
    from botocore.parsers import ResponseParserError

    try:
        answer = clients.iam().simulate_principal_policy(
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
        if options and aws.error_code(exc) in _CALLER_REFUSED:
            raise CannotSimulate(
                f"IAM's policy simulator would not take {options['CallerArn']} as the caller "
                f"for the resource's policy ({aws.error_code(exc)}), and without one it "
                "cannot weigh that policy",
                Status.WARN,
            ) from None
        raise _simulator_error(exc) from None
    return {
        str(result["EvalActionName"]): str(result["EvalDecision"])
        for result in answer.get("EvaluationResults", [])
    }


def caller_arn(role_arn: str) -> str:
    """The IAM user ARN, in the role's partition and account, that asks a resource's policy."""
    parts = role_arn.split(":")
    partition, account = (parts[1], parts[4]) if len(parts) > 4 else ("aws", "")
    return f"arn:{partition}:iam::{account}:user/{CALLER_NAME}"


def as_caller(policy: str, role_arn: str, caller: str) -> str:
    """``policy`` with each ``Principal``/``NotPrincipal`` naming the role naming ``caller``.

    A policy that is not a JSON object of statements (AWS's answer, so checked) is returned as it
    came: the simulator then judges it as written.
    """
    try:
        document = strictjson.loads(policy)
    except ValueError:
        return policy
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        return policy
    for statement in statements:
        for key in ("Principal", "NotPrincipal"):
            named = statement.get(key) if isinstance(statement, dict) else None
            if isinstance(named, dict) and "AWS" in named:
                arns = named["AWS"]
                named["AWS"] = (
                    [caller if arn == role_arn else arn for arn in arns]
                    if isinstance(arns, list)
                    else (caller if arns == role_arn else arns)
                )
    return strictjson.dumps(document).decode()


def _simulator_error(exc: BaseException) -> Exception:
    error = aws.translate(exc, what="the IAM policy simulator", action=SIMULATE)
    if isinstance(error, AccessDenied):
        return CannotSimulate(
            f"this identity may not call {SIMULATE}; grant it to check this", Status.WARN
        )
    if aws.error_code(exc) in ("NotImplemented", "InvalidAction", "UnknownOperationException"):
        return CannotSimulate(_NO_SIMULATOR, Status.SKIP)
    return error


def verdict(name: str, ask: Callable[[], Question], what: str, clients: Clients) -> Check:
    """The check line for the question ``ask`` builds: ok when IAM allows every action.

    A FAIL names the first action not allowed (and whether a policy denies it explicitly); a
    question or a simulation that cannot be had is a "not checked" line.
    """
    try:
        question = ask()
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
    except aws.boto_errors() as exc:
        _unless_refused(exc, f"the secret {name}")
        return fallback_arn, None  # no such secret: the store's own line says so
    try:
        policy = client.get_resource_policy(SecretId=name).get("ResourcePolicy")
    except aws.boto_errors() as exc:
        _unless_refused(exc, f"the resource policy of {name}")
        policy = None
    return arn, str(policy) if policy else None


def _bucket_policy(bucket: str, clients: Clients) -> str | None:
    try:
        policy = clients.s3().get_bucket_policy(Bucket=bucket).get("Policy")
    except aws.boto_errors() as exc:
        _unless_refused(exc, f"the bucket policy of {bucket}")
        return None  # the bucket has none
    return str(policy) if policy else None


def _unless_refused(exc: BaseException, what: str) -> None:
    """Raise ``CannotSimulate`` (a warning) if AWS refused to show ``what`` to this identity:
    asked without it, IAM's answer would be a guess (a FAIL, or an ok that skipped a deny)."""
    if isinstance(aws.translate(exc, what=what, action="doctor"), AccessDenied):
        raise CannotSimulate(
            f"this identity may not read {what}, which IAM needs to answer: run doctor as an "
            "administrator",
            Status.WARN,
        ) from None


__all__ = [
    "CALLER_NAME",
    "CannotSimulate",
    "Question",
    "as_caller",
    "caller_arn",
    "credentials_question",
    "simulate",
    "store_question",
]
