"""Who reaches the token: the stack's policies evaluated together, by an evaluator that honours
conditions and resource-policy denies.

    python -m tests.template.perimeter --write docs/security.md     (make security-table)

rewrites the tables of docs/security.md from this evaluation; test_perimeter fails when they
differ from it.

For each parameter variant that changes who may read what (``VARIANTS``: the store, the
encryption, where the credentials live; the hosted login on, a document reader declared), the
template is deployed on moto in-process (``tests.template.stack``: SAM's own translation, then
CloudFormation resolving every reference), and read back as deployed: the functions' roles with
every policy SAM attached to them (``role_documents``), the stack's managed policies, the bucket
policy, the secrets' resource policies and the KMS key policy. Each principal of ``PRINCIPALS``
(the functions, bots with each policy, roles holding AWS's own read-only policies, two
administrators) then asks for each request of ``requests()``: an S3, Secrets Manager or SSM call
on the token, its notes and lease, the access view or the app credentials, and the ``kms:Decrypt``
each service makes for it, with the encryption context and ``kms:ViaService`` that service
sends. moto evaluates none of this (its IAM checks actions only), so the answer comes from NCC
Group's Principal Mapper.

Why principalmapper (pinned to 1.1.5, its last release, 2022) is trusted here, and how far:

- It is NCC Group's IAM analysis tool; its local evaluator implements IAM's documented evaluation
  order (explicit denies in identity, resource, boundary and session policies first; then the
  resource policy, whose same-account match of the principal itself grants alone; for ``kms:``
  and ``iam:`` the key or trust policy must name the principal or delegate to the account) and
  IAM's condition operators, with notes of the policy simulator's observed answers; its own
  suite (tests/test_local_querying.py, test_resource_policy_evaluation.py,
  test_local_policy_sim.py) checks those. It is AGPL-3.0: a test dependency only, never shipped
  or modified.
- Its source was read for this use (principalmapper/querying/query_interface.py and
  local_policy_simulation.py), and test_perimeter pins every behaviour this evaluation relies on
  (a resource policy's deny with ``ArnNotLike`` on ``aws:PrincipalArn``, negated operators on a
  missing tag, the key policy's rule, encryption contexts) and every divergence from AWS found
  (``test_principal_mapper_divergences_from_aws``), so a release that changed them fails there
  first.
- Nothing here matches policies itself: a request's answer is the library's.

Where it differs from AWS, the inputs are made to mean the same to both: ``Principal: {"AWS":
"*"}`` (how AWS writes its managed keys' policies) is given as ``"*"``, which AWS's guides give
as the same wildcard (IAM's Principal element, "All principals"; S3's "Grant anonymous
permissions"); the KMS key policy is always passed for ``kms:`` requests (without it the library
lets the identity policy decide alone); service keys (``kms:EncryptionContext:*``,
``kms:ViaService``, ``kms:CallerAccount``) are given with each request, as the service would
send them; the template's perimeter uses ``StringNotEquals``, which both read alike on a missing
tag (not ``StringNotLike``, which the library reads otherwise).
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.template.stack import (
    ACCOUNT,
    REGION,
    Deployment,
    aws_managed_policy,
    deploy,
    managed_policy,
    role_documents,
)

# principalmapper 1.1.5 imports Mapping and MutableMapping from ``collections``, which Python
# 3.10 removed (nccgroup/PMapper issues #106, #130, #140; the fix never shipped in a release).
# They are the same classes as collections.abc's: alias them before the import. Here only: every
# module that evaluates policies imports it from this one.
for _name in ("Mapping", "MutableMapping"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402

#: The tag that declares a role a document reader of the stack named by its value.
READER_TAG = "schwab-tokens-document-reader"
#: DocumentReaderPrincipals in every variant: the bots under this path are declared.
DECLARED_BOTS = f"arn:aws:iam::{ACCOUNT}:role/bots/*"
SSO_ADMIN = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{REGION}/"
    "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
)
CHOICES = {
    "StoreType": ("S3", "SecretsManager"),
    "Encryption": ("AwsManaged", "CustomerManagedKey"),
    "CredentialsStore": ("ParameterStore", "SecretsManager"),
}
#: The variants evaluated: every combination of ``CHOICES``, with the hosted login on and the
#: bots under /bots/ declared.
VARIANTS = [
    {
        "StoreType": store,
        "Encryption": encryption,
        "CredentialsStore": credentials,
        "HostedLogin": "Enabled",
        "DocumentReaderPrincipals": DECLARED_BOTS,
    }
    for store in CHOICES["StoreType"]
    for encryption in CHOICES["Encryption"]
    for credentials in CHOICES["CredentialsStore"]
]
#: docs/security.md's generated part lies between these lines.
BEGIN = "<!-- perimeter table: generated by `make security-table`, do not edit -->"
END = "<!-- perimeter table: end -->"


def variant_name(variant: dict[str, str]) -> str:
    short = {
        "S3": "s3",
        "SecretsManager": "sm",
        "AwsManaged": "aws",
        "CustomerManagedKey": "cmk",
        "ParameterStore": "ps",
    }
    return "pm-" + "-".join(short[variant[name]] for name in CHOICES)


# ---------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    """One variant as deployed: names, policies, and the identities the stack made."""

    variant: dict[str, str]
    deployment: Deployment
    #: "refresher" / "login" -> (role ARN, its policy documents)
    roles: dict[str, tuple[str, list[dict[str, Any]]]]
    #: "reader" / "document" -> the managed policy's document
    managed: dict[str, dict[str, Any]]
    #: "bucket", "token secret", "credentials secret", "key" -> the resource policy
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_arn: str | None = None

    @property
    def name(self) -> str:
        return self.deployment.name

    def on(self, parameter: str, value: str) -> bool:
        return self.variant[parameter] == value


def deployed(session: Any, variant: dict[str, str], name: str | None = None) -> Stack:
    """``variant`` deployed on the moto ``session`` talks to, and read back."""
    deployment = deploy(session, name or variant_name(variant), variant)
    iam = session.client("iam")
    roles = {}
    for identity, logical in (
        ("refresher", "RefresherFunctionRole"),
        ("login", "LoginFunctionRole"),
    ):
        arn = iam.get_role(RoleName=deployment.physical(logical))["Role"]["Arn"]
        roles[identity] = (arn, role_documents(session, deployment, logical))
    managed = {
        "reader": managed_policy(session, deployment.physical("TokenReaderPolicy")),
        "document": managed_policy(session, deployment.physical("TokenDocumentPolicy")),
    }
    stack = Stack(variant, deployment, roles, managed)
    for label, logical, key in (
        ("bucket", "TokenBucketPolicy", "PolicyDocument"),
        ("token secret", "TokenSecretPolicy", "ResourcePolicy"),
        ("credentials secret", "CredentialsSecretPolicy", "ResourcePolicy"),
    ):
        if deployment.has(logical):
            stack.policies[label] = deployment.properties(logical)[key]
    if deployment.has("TokenKey"):
        stack.key_arn = deployment.outputs["KmsKeyArn"]
        text = session.client("kms").get_key_policy(KeyId=stack.key_arn, PolicyName="default")
        stack.policies["key"] = json.loads(text["Policy"])
    return stack


@contextmanager
def moto_session() -> Iterator[Any]:
    """A boto3 session on an in-process moto, for ``deployed``."""
    import boto3
    from moto import mock_aws

    saved = {k: os.environ.pop(k, None) for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    try:
        with mock_aws():
            yield boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
            )
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})


# ---------------------------------------------------------------------------- the principals
@dataclass(frozen=True)
class Principal:
    """A column of the table: who, holding which policies."""

    key: str
    header: str
    legend: str


PRINCIPALS = [
    Principal("refresher", "refresher", "the refresher function's role"),
    Principal("login", "login", "the login function's role (`HostedLogin=Enabled`)"),
    Principal("reader", "reader", "a bot's role with the reader policy (`ReaderPolicyArn`)"),
    Principal(
        "declared",
        "bot, listed",
        "a bot's role with the `TokenDocumentPolicyArn` policy, matched by the "
        "`DocumentReaderPrincipals` parameter",
    ),
    Principal(
        "tagged",
        "bot, tagged",
        f"the same, not listed but tagged `{READER_TAG}` with the stack's name",
    ),
    Principal(
        "undeclared",
        "bot, other",
        "the same, neither listed nor tagged",
    ),
    Principal(
        "readonly",
        "ReadOnlyAccess",
        "a role with AWS's `ReadOnlyAccess` managed policy (auditors, monitoring)",
    ),
    Principal(
        "s3readonly",
        "AmazonS3ReadOnlyAccess",
        "a role with AWS's `AmazonS3ReadOnlyAccess` managed policy",
    ),
    Principal(
        "admin",
        "admin, listed",
        "an IAM Identity Center `AdministratorAccess` role (matched by the default "
        "`AdministratorPrincipals`)",
    ),
    Principal(
        "otheradmin",
        "admin, other",
        "a role with AWS's `AdministratorAccess` policy, not in `AdministratorPrincipals`",
    ),
]


def node(arn: str, documents: list[dict[str, Any]], tags: dict[str, str] | None = None) -> Node:
    """A principal for the evaluator: ``arn`` holding ``documents``, tagged ``tags``."""
    policies = [Policy(arn, f"policy-{n}", doc) for n, doc in enumerate(documents)]
    trust = {"Version": "2012-10-17", "Statement": []} if ":role/" in arn else None
    unique = ("AROA" if ":role/" in arn else "AIDA") + hashlib.sha256(arn.encode()).hexdigest()[:17]
    return Node(arn, unique, policies, [], trust, None, 0, False, False, None, False, tags or {})


def principals(stack: Stack) -> dict[str, Node]:
    """Every principal of ``PRINCIPALS`` as it would be in the stack's account."""
    role = f"arn:aws:iam::{ACCOUNT}:role"
    document = [stack.managed["document"]]
    admin = [aws_managed_policy("AdministratorAccess")]
    return {
        "refresher": node(*stack.roles["refresher"]),
        "login": node(*stack.roles["login"]),
        "reader": node(f"{role}/consumer", [stack.managed["reader"]]),
        "declared": node(f"{role}/bots/declared-bot", document),
        "tagged": node(f"{role}/tagged-bot", document, {READER_TAG: stack.name}),
        "undeclared": node(f"{role}/other-bot", document),
        "readonly": node(f"{role}/auditor", [aws_managed_policy("ReadOnlyAccess")]),
        "s3readonly": node(f"{role}/s3-auditor", [aws_managed_policy("AmazonS3ReadOnlyAccess")]),
        "admin": node(SSO_ADMIN, admin),
        "otheradmin": node(f"{role}/ops-admin", admin),
    }


# ---------------------------------------------------------------------------- the requests
DOCUMENT, VIEW, CREDENTIALS = "the token, its notes and lease", "the access view", "credentials"


@dataclass(frozen=True)
class Request:
    """A row of the table: one authorization AWS makes, and the resource policy it reads."""

    group: str
    action: str
    on: str
    when: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    policy: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def row(self) -> tuple[str, str, str, str]:
        return (self.group, self.action, self.on, self.when)


def aws_managed_key_policy(service: str) -> dict[str, Any]:
    """The key policy of the AWS managed key ``aws/<service>``, in the form AWS gives every AWS
    managed key: the service may use it for any principal of the account, the account reads its
    metadata. Systems Manager's guide states the consequence for ``aws/ssm``: it "grants Decrypt
    permission to all IAM principals in the AWS account"
    (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"Allow access through {service} for all principals in the account "
                f"that are authorized to use {service}",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": ACCOUNT,
                        "kms:ViaService": f"{service}.{REGION}.amazonaws.com",
                    }
                },
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*",
            },
        ],
    }


def requests(stack: Stack) -> list[Request]:
    """What the table asks for each principal in this variant."""
    name, found = stack.name, []
    cmk = stack.on("Encryption", "CustomerManagedKey")
    encryption = "CustomerManagedKey" if cmk else "AwsManaged"

    def decrypt(group: str, on: str, when: str, service: str, context: dict[str, str]) -> None:
        """The kms:Decrypt ``service`` makes for the caller, under the stack's key (with
        CustomerManagedKey) or the service's AWS managed key."""
        key = stack.key_arn if cmk else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/aws-{service}"
        policy = stack.policies["key"] if cmk else aws_managed_key_policy(service)
        keys = {f"kms:EncryptionContext:{k}": v for k, v in context.items()}
        keys |= {
            "kms:ViaService": f"{service}.{REGION}.amazonaws.com",
            "kms:CallerAccount": ACCOUNT,
        }
        where = "the stack's key" if cmk else f"`aws/{service}`"
        found.append(
            Request(group, "kms:Decrypt", f"{where}, {on}", when, key, tuple(keys.items()), policy)
        )

    if stack.on("StoreType", "S3"):
        bucket = f"arn:aws:s3:::{stack.deployment.physical('TokenBucket')}"
        policy = stack.policies["bucket"]
        for key, actions in (
            ("schwab/tokens.json", ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject")),
            ("schwab/tokens.json.notes", ("s3:GetObject", "s3:PutObject")),
            ("schwab/tokens.json.lease", ("s3:GetObject", "s3:PutObject")),
        ):
            for action in actions:
                found.append(
                    Request(DOCUMENT, action, f"`{key}`", "", f"{bucket}/{key}", (), policy)
                )
        if cmk:  # SSE-S3 otherwise: S3's own keys, no KMS call
            decrypt(DOCUMENT, "the bucket's context", encryption, "s3", {"aws:s3:arn": bucket})
        view = f"{bucket}/schwab/tokens.access.json"
        for action in ("s3:GetObject", "s3:PutObject"):
            found.append(Request(VIEW, action, "`schwab/tokens.access.json`", "", view, (), policy))
        if cmk:
            decrypt(VIEW, "the view's context", encryption, "s3", {"aws:s3:arn": view})
    else:
        secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}/tokens-AbCdEf"
        policy = stack.policies["token secret"]
        for action, on in (
            ("secretsmanager:GetSecretValue", "`<stack>/tokens`"),
            ("secretsmanager:PutSecretValue", "`<stack>/tokens`"),
            ("secretsmanager:DescribeSecret", "`<stack>/tokens` (labels: the notes, the lease)"),
            ("secretsmanager:UpdateSecretVersionStage", "`<stack>/tokens` (notes, lease)"),
        ):
            found.append(Request(DOCUMENT, action, on, "", secret, (), policy))
        context = {"SecretARN": secret, "SecretVersionId": "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"}
        decrypt(DOCUMENT, "`<stack>/tokens`", encryption, "secretsmanager", context)
        view = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}/tokens.access"
        for action in ("ssm:GetParameter", "ssm:PutParameter"):
            found.append(Request(VIEW, action, "`/<stack>/tokens.access`", "", view))
        decrypt(VIEW, "`/<stack>/tokens.access`", encryption, "ssm", {"PARAMETER_ARN": view})

    if stack.on("CredentialsStore", "ParameterStore"):
        # Created by the command line, always under aws/ssm (docs/security.md).
        when = "CredentialsStore=ParameterStore"
        parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}/credentials"
        found.append(
            Request(CREDENTIALS, "ssm:GetParameter", "`/<stack>/credentials`", when, parameter)
        )
        found.append(
            Request(
                CREDENTIALS,
                "kms:Decrypt",
                "`aws/ssm`, `/<stack>/credentials`",
                when,
                f"arn:aws:kms:{REGION}:{ACCOUNT}:key/aws-ssm",
                (
                    ("kms:EncryptionContext:PARAMETER_ARN", parameter),
                    ("kms:ViaService", f"ssm.{REGION}.amazonaws.com"),
                    ("kms:CallerAccount", ACCOUNT),
                ),
                aws_managed_key_policy("ssm"),
            )
        )
    else:
        when = "CredentialsStore=SecretsManager"
        secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}/credentials-AbCdEf"
        policy = stack.policies["credentials secret"]
        found.append(
            Request(
                CREDENTIALS,
                "secretsmanager:GetSecretValue",
                "`<stack>/credentials`",
                when,
                secret,
                (),
                policy,
            )
        )
        context = {"SecretARN": secret, "SecretVersionId": "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"}
        decrypt(
            CREDENTIALS, "`<stack>/credentials`", f"{when}, {encryption}", "secretsmanager", context
        )
    return found


# ---------------------------------------------------------------------------- the evaluation
def as_aws_reads_it(policy: dict[str, Any]) -> dict[str, Any]:
    """``policy`` with ``Principal: {"AWS": "*"}`` written ``"*"``: AWS's guides give the two as
    the same wildcard (the Principal element's "All principals"); principalmapper 1.1.5 reads
    the first as no match of the caller itself (test_perimeter's divergences test pins it)."""
    result = copy.deepcopy(policy)
    for statement in result["Statement"]:
        if statement.get("Principal") == {"AWS": "*"}:
            statement["Principal"] = "*"
    return result


def allowed(principal: Node, request: Request) -> bool:
    """AWS's answer to ``principal`` making ``request``, as principalmapper evaluates it."""
    if request.action.startswith("kms:") and request.policy is None:
        raise ValueError("a kms: request needs the key policy (the library would skip it)")
    policy = None if request.policy is None else as_aws_reads_it(request.policy)
    return bool(
        local_check_authorization_full(
            principal,
            request.action,
            request.resource,
            dict(request.context),
            policy,
            ACCOUNT if policy is not None else None,
            None,
            None,
        )
    )


Results = dict[tuple[str, str, str, str], dict[str, bool]]


def evaluate(stack: Stack, only: list[str] | None = None) -> Results:
    """Every request of the variant for every principal (or those named in ``only``)."""
    nodes = principals(stack)
    keys = only or [p.key for p in PRINCIPALS]
    return {r.row: {k: allowed(nodes[k], r) for k in keys} for r in requests(stack)}


# ---------------------------------------------------------------------------- the tables
GROUPS = (DOCUMENT, VIEW, CREDENTIALS)


def merged(results: list[Results]) -> Results:
    """The variants' results, one row per request (a row found in several variants must answer
    the same in each: its ``when`` column says which variants it belongs to)."""
    rows: Results = {}
    for result in results:
        for row, answers in result.items():
            if row in rows and rows[row] != answers:
                raise AssertionError(f"{row} answers differently across variants: split it")
            rows.setdefault(row, answers)
    order = {row: n for n, row in enumerate(rows)}
    return dict(sorted(rows.items(), key=lambda item: (GROUPS.index(item[0][0]), order[item[0]])))


def table(rows: Results) -> str:
    """A markdown table of ``rows``: a line per request, a column per principal."""
    headers = ["request", "on", "when", *(p.header for p in PRINCIPALS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for (_, action, on, when), answers in rows.items():
        cells = ["yes" if answers[p.key] else "no" for p in PRINCIPALS]
        lines.append("| " + " | ".join([f"`{action}`", on, when, *cells]) + " |")
    return "\n".join(lines)


def section(stacks: list[Stack], results: list[Results] | None = None) -> str:
    """The generated part of docs/security.md: the legend, then a table per store (from
    ``results``, the stacks' evaluations in order, when given)."""
    evaluated = results or [evaluate(s) for s in stacks]
    parts = [BEGIN, "", "The principals, left to right:", ""]
    parts += [f"- **{p.header}**: {p.legend}" for p in PRINCIPALS]
    for store, title in (
        ("S3", "`StoreType=S3`"),
        ("SecretsManager", "`StoreType=SecretsManager`"),
    ):
        rows = [r for s, r in zip(stacks, evaluated, strict=True) if s.on("StoreType", store)]
        parts += ["", f"{title}:", "", table(merged(rows))]
    parts += ["", END]
    return "\n".join(parts)


def replace_section(text: str, generated: str) -> str:
    """``text`` (docs/security.md) with its generated part replaced by ``generated``."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no generated part ({BEGIN} ... {END}) to replace")
    return pattern.sub(lambda _: generated, text, count=1)


def current_section(text: str) -> str:
    """The generated part of ``text`` as it stands."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--write":
        print("usage: python -m tests.template.perimeter --write docs/security.md", file=sys.stderr)
        return 2
    path = Path(argv[1])
    # SAM's translator warns of metrics it keeps for its own service, once per translation.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    with moto_session() as session:
        stacks = [deployed(session, v) for v in VARIANTS]
    path.write_text(replace_section(path.read_text(), section(stacks)))
    print(f"{path}: the perimeter tables rewritten from {len(stacks)} deployed variants")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
