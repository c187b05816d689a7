"""A stand-in for IAM's policy simulator (``iam:SimulatePrincipalPolicy``) on 127.0.0.1, for the
tests of ``schwab-tokens doctor``'s access lines (docs/cli.md).

Why a stand-in: moto implements no ``SimulatePrincipalPolicy`` (its server answers a 500 of no
XML), so against moto doctor can only say "not checked". Pointed at this server with
``AWS_ENDPOINT_URL_IAM`` (botocore reads a service's own endpoint variable before
``AWS_ENDPOINT_URL``), doctor's real boto3 client asks it what it would ask IAM, and gets IAM's
answer as botocore parses it.

What it speaks: IAM's Query protocol (a form-encoded POST, or the same fields in a GET's query
string) for ``Action=SimulatePrincipalPolicy`` only, answering the documented
``SimulatePrincipalPolicyResponse``: per action one ``EvaluationResults`` member whose
``EvalDecision`` (``allowed``, ``explicitDeny``, ``implicitDeny``) is the most restrictive over
the resources asked, each resource's decision in ``ResourceSpecificResults``, ``IsTruncated``
false (IAM's reference, EvaluationResult: "The simulator now returns a single EvaluationResult
per action"). Any other action is answered as IAM answers one it does not know: HTTP 400,
``InvalidAction``. Signatures are not checked.

How it decides: with the evaluator the perimeter tests trust (principalmapper 1.1.5, through
``tests.template.perimeter``'s ``node`` and ``allowed``; see that module for why and how far).
The principal holds what moto's IAM holds for the ``PolicySourceArn`` role, read over boto3:
its inline and attached policies, its tags (``aws:PrincipalTag/...``) and its permissions
boundary; ``PolicyInputList`` and ``PermissionsBoundaryPolicyInputList`` are added as IAM adds
them. The ``ResourcePolicy`` and the ``ContextEntries`` are applied to each request; the
resource's owner is the stack's account (``perimeter.ACCOUNT``, moto's).

As IAM documents it (SimulatePrincipalPolicy, ``CallerArn``): a ``ResourcePolicy`` needs a
caller that is an IAM user, so with a role as ``PolicySourceArn`` and no ``CallerArn`` the
request is refused (400 ``InvalidInput``, the message IAM gives: "Invalid caller - Caller must
be an IAM user in this context."); a ``CallerArn`` is the principal the resource policy's
``Principal`` is matched against, holding the source's policies. Whether IAM requires that
user to exist is not documented: by default it need not exist here, and with
``callers_must_exist`` a caller moto's IAM does not hold is refused (404 ``NoSuchEntity``), so
doctor is tested on both readings.

Not honoured: service control and resource control policies, session policies, groups and
users as ``PolicySourceArn`` (answered 501 ``NotImplemented``), ``ResourceOwner``,
``ResourceHandlingOption``, paging (``MaxItems``, ``Marker``), ``ContextKeyType`` (each
condition operator reads the value as its type), ``MatchedStatements``,
``MissingContextValues`` and the permissions-boundary and organizations details. The top-level
``EvalResourceName`` is ``*``: IAM now puts the resource type's ARN template there, never the
resource asked for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from devkit.background import BackgroundServer
from tests.template.perimeter import Request, allowed, node
from tests.template.stack import REGION, aws_managed_policy, managed_policy, role_policies

VERSION = "2010-05-08"
XMLNS = f"https://iam.amazonaws.com/doc/{VERSION}/"
#: Least restrictive first: an action's decision is its resources' last in this order.
DECISIONS = ("allowed", "implicitDeny", "explicitDeny")
NOT_A_USER = "Invalid caller - Caller must be an IAM user in this context."


class Refused(Exception):
    """An error answer: HTTP ``status``, IAM's error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Moto:
    """What ``tests.template.stack``'s policy readers ask of a boto3 session: a client, here of
    the moto server that holds the roles (named outright, so that ``AWS_ENDPOINT_URL_IAM``
    pointing at this stand-in never sends it its own questions)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, name: str) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            name,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


class IamSimulator(BackgroundServer):
    """``url`` answers ``SimulatePrincipalPolicy`` for the roles the moto server at
    ``moto_endpoint`` holds."""

    thread_name = "iam-simulator"

    def __init__(self, moto_endpoint: str, *, callers_must_exist: bool = False) -> None:
        self.moto = _Moto(moto_endpoint)
        self.callers_must_exist = callers_must_exist

    def new_server(self) -> ThreadingHTTPServer:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode())

            def do_GET(self) -> None:
                self._answer(urlsplit(self.path).query)

            def _answer(self, fields: str) -> None:
                status, body = simulator.answer(parse_qs(fields, keep_blank_values=True))
                raw = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: object) -> None:
                pass

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    # ------------------------------------------------------------------------ the protocol
    def answer(self, form: Mapping[str, list[str]]) -> tuple[int, str]:
        """The HTTP status and XML body IAM would answer to the Query request ``form``."""
        action = _one(form, "Action")
        try:
            if action != "SimulatePrincipalPolicy":
                raise Refused(
                    400, "InvalidAction", f"Could not find operation {action} for version {VERSION}"
                )
            results = self.simulate(form)
        except Refused as refused:
            return refused.status, _error(refused)
        members = "".join(_result(action, decisions) for action, decisions in results.items())
        return 200, (
            f'<SimulatePrincipalPolicyResponse xmlns="{XMLNS}">'
            "<SimulatePrincipalPolicyResult>"
            f"<IsTruncated>false</IsTruncated><EvaluationResults>{members}</EvaluationResults>"
            "</SimulatePrincipalPolicyResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</SimulatePrincipalPolicyResponse>"
        )

    def simulate(self, form: Mapping[str, list[str]]) -> dict[str, dict[str, str]]:
        """Action -> resource -> decision, for the request ``form``; ``Refused`` as IAM would."""
        source = _one(form, "PolicySourceArn")
        actions = _members(form, "ActionNames")
        if not source or not actions:
            raise Refused(400, "ValidationError", "PolicySourceArn and ActionNames are required")
        resources = _members(form, "ResourceArns") or ["*"]
        text = _one(form, "ResourcePolicy")
        resource_policy = _document(text) if text else None
        caller = _one(form, "CallerArn")
        if resource_policy is not None and ":user/" not in (caller or source):
            raise Refused(400, "InvalidInput", NOT_A_USER)
        if caller and ":user/" not in caller:
            raise Refused(400, "InvalidInput", NOT_A_USER)
        if caller and self.callers_must_exist:
            self.existing_user(caller)
        principal = self.principal(source, caller, form)
        context = tuple(_context(form))
        try:
            return {
                action: {
                    r: decide(principal, action, r, context, resource_policy) for r in resources
                }
                for action in actions
            }
        except ValueError as exc:  # principalmapper's word for a context key given twice
            raise Refused(400, "InvalidInput", str(exc)) from None

    # ------------------------------------------------------------------------ the principal
    def principal(self, source: str, caller: str | None, form: Mapping[str, list[str]]) -> Any:
        """The evaluator's principal: ``caller`` (else ``source``) holding the source role's
        policies, tags and boundary as moto's IAM holds them, and the ones the request adds."""
        from botocore.exceptions import ClientError

        if ":role/" not in source:
            raise Refused(
                501,
                "NotImplemented",
                "the IAM simulator stand-in (tests/iam_simulator.py) simulates roles only",
            )
        name = source.rsplit("/", 1)[1]
        iam = self.moto.client("iam")
        try:
            role = iam.get_role(RoleName=name)["Role"]
            documents = role_policies(self.moto, name)
            attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            documents += [self._policy(a["PolicyArn"]) for a in attached]
            bound = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
            boundary = self._policy(bound) if bound else None
        except ClientError as exc:  # NoSuchEntity (404) and the like, as IAM says them
            error = exc.response["Error"]
            status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
            raise Refused(status, str(error["Code"]), str(error["Message"])) from None
        documents += [_document(text) for text in _members(form, "PolicyInputList")]
        given = _members(form, "PermissionsBoundaryPolicyInputList")
        boundary = _document(given[0]) if given else boundary
        tags = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
        principal = node(caller or source, documents, tags)
        if boundary is not None:
            from principalmapper.common import Policy

            principal.permissions_boundary = Policy(bound or "input", "boundary", boundary)
        return principal

    def existing_user(self, arn: str) -> None:
        """Refuse, as IAM refuses an entity it does not hold, a user moto's IAM does not hold."""
        from botocore.exceptions import ClientError

        try:
            self.moto.client("iam").get_user(UserName=arn.rsplit("/", 1)[1])
        except ClientError as exc:
            error = exc.response["Error"]
            status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
            raise Refused(status, str(error["Code"]), str(error["Message"])) from None

    def _policy(self, arn: str) -> dict[str, Any]:
        if ":iam::aws:policy/" in arn:  # AWS's own, which moto's server does not load
            return aws_managed_policy(arn.rsplit("/", 1)[1])
        return managed_policy(self.moto, arn)


def decide(
    principal: Any,
    action: str,
    resource: str,
    context: tuple[tuple[str, Any], ...],
    resource_policy: dict[str, Any] | None,
) -> str:
    """``allowed``, ``explicitDeny`` or ``implicitDeny``: the evaluator's answer, and whether a
    Deny is what refused it."""
    request = Request("simulated", action, "", "", resource, context, resource_policy)
    if allowed(principal, request):
        return "allowed"
    # The library answers yes or no. A refusal is explicit when no grant can overturn it: asked
    # again with the resource's policy granting this very principal everything (which, in the
    # resource's account, grants alone once no Deny matched), only a Deny still refuses.
    grant = {"Effect": "Allow", "Principal": {"AWS": principal.arn}, "Action": "*", "Resource": "*"}
    statements = [*(resource_policy or {}).get("Statement", []), grant]
    granting = Request(
        "simulated",
        action,
        "",
        "",
        resource,
        context,
        {"Version": "2012-10-17", "Statement": statements},
    )
    return "implicitDeny" if allowed(principal, granting) else "explicitDeny"


# ---------------------------------------------------------------------------- the Query fields
def _one(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _members(form: Mapping[str, list[str]], name: str) -> list[str]:
    """The list ``name`` as the Query protocol flattens it: ``name.member.1``, ``.2``..."""
    found = []
    for n in range(1, len(form) + 1):
        value = _one(form, f"{name}.member.{n}")
        if value is None:
            break
        found.append(value)
    return found


def _context(form: Mapping[str, list[str]]) -> list[tuple[str, Any]]:
    """``ContextEntries`` as the evaluator's condition keys: one value, or the list of them."""
    entries = []
    for n in range(1, len(form) + 1):
        prefix = f"ContextEntries.member.{n}"
        key = _one(form, f"{prefix}.ContextKeyName")
        if key is None:
            break
        values = _members(form, f"{prefix}.ContextKeyValues")
        entries.append((key, values[0] if len(values) == 1 else values))
    return entries


def _document(text: str) -> dict[str, Any]:
    """A policy document, its ``Statement`` always a list (the evaluator's helpers expect one)."""
    try:
        document = dict(json.loads(text))
    except ValueError:
        raise Refused(400, "MalformedPolicyDocument", "the policy is not JSON") from None
    statements = document.get("Statement", [])
    document["Statement"] = statements if isinstance(statements, list) else [statements]
    return document


# ---------------------------------------------------------------------------- the XML
def _result(action: str, decisions: Mapping[str, str]) -> str:
    overall = max(decisions.values(), key=DECISIONS.index)
    each = "".join(
        f"<member><EvalResourceName>{escape(resource)}</EvalResourceName>"
        f"<EvalResourceDecision>{decision}</EvalResourceDecision></member>"
        for resource, decision in decisions.items()
    )
    return (
        f"<member><EvalActionName>{escape(action)}</EvalActionName>"
        f"<EvalResourceName>*</EvalResourceName><EvalDecision>{overall}</EvalDecision>"
        f"<ResourceSpecificResults>{each}</ResourceSpecificResults></member>"
    )


def _error(refused: Refused) -> str:
    kind = "Receiver" if refused.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(refused.code)}</Code><Message>{escape(refused.message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
