"""The perimeter around the refresh token, proven by evaluating the stack's policies together:
identity policies, the bucket policy, the secrets' resource policies and the KMS key policies,
with their conditions (``tests.template.perimeter`` says how, and why its evaluator, NCC Group's
principalmapper, is trusted; the last two tests pin what it answers).

moto deploys each variant but evaluates neither conditions nor resource policies: the answers
here are the evaluator's, for the policies as moto's CloudFormation resolved them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from devkit import REPO
from tests.template.perimeter import (
    BEGIN,
    CREDENTIALS,
    DECLARED_BOTS,
    DOCUMENT,
    END,
    READER_TAG,
    VARIANTS,
    VIEW,
    Node,
    Request,
    Results,
    Stack,
    allowed,
    current_section,
    deployed,
    evaluate,
    merged,
    moto_session,
    node,
    principals,
    replace_section,
    requests,
    section,
    table,
    variant_name,
)
from tests.template.stack import ACCOUNT, REGION, aws_managed_policy

#: On one worker (``--dist loadgroup``), first (``slow``): the eight stacks are deployed and
#: evaluated once there, instead of again by every worker that runs one of these tests.
pytestmark = [pytest.mark.xdist_group("perimeter"), pytest.mark.slow]

SECURITY_DOC = REPO / "docs" / "security.md"
#: Who the perimeter lets reach the token, its notes and its lease (their own policies still
#: decide what each may do there).
NAMED = {"refresher", "login", "declared", "tagged", "admin"}


class Stacks(dict[str, Stack]):
    """variant name -> the variant deployed the first time a test asks for it."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self._results: dict[str, Results] = {}

    def __missing__(self, name: str) -> Stack:
        (variant,) = [v for v in VARIANTS if variant_name(v) == name]
        self[name] = deployed(self.session, variant)
        return self[name]

    def all(self) -> list[Stack]:
        return [self[variant_name(v)] for v in VARIANTS]

    def results(self, stack: Stack) -> Results:
        """``evaluate(stack)``, once per variant (the stacks are read-only)."""
        if stack.name not in self._results:
            self._results[stack.name] = evaluate(stack)
        return self._results[stack.name]


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    with moto_session() as session:
        yield Stacks(session)


@pytest.fixture(params=[variant_name(v) for v in VARIANTS])
def stack(request: pytest.FixtureRequest, stacks: Stacks) -> Stack:
    return stacks[request.param]


@pytest.fixture
def results(stack: Stack, stacks: Stacks) -> Results:
    return stacks.results(stack)


def answers(results: Results, group: str, principal: str, kms: bool | None = None) -> set[str]:
    """The requests of ``group`` (``action on``) that ``principal`` is allowed; ``kms`` True for
    the kms:Decrypt rows only, False for the others, None for both."""
    return {
        f"{action} {on}"
        for (row_group, action, on, _), by in results.items()
        if row_group == group and by[principal]
        if kms is None or action.startswith("kms:") is kms
    }


def every(results: Results, group: str, kms: bool = False) -> set[str]:
    return {
        f"{action} {on}"
        for (row_group, action, on, _) in results
        if row_group == group and action.startswith("kms:") is kms
    }


def reads(results: Results, principal: str, group: str) -> bool:
    """Whether ``principal`` gets the plaintext of ``group``'s first read: the service's read
    and, where the service calls KMS, the decrypt it makes."""
    rows = [(row, by) for row, by in results.items() if row[0] == group]
    read = next(by for row, by in rows if row[1].split(":")[1].startswith("Get"))
    decrypts = [by for row, by in rows if row[1] == "kms:Decrypt"]
    return read[principal] and all(by[principal] for by in decrypts[:1])


# ---------------------------------------------------------------------------- the perimeter
def test_the_evaluation_keeps_the_perimeters_promises(stack: Stack, results: Results) -> None:
    """One test per variant (its stack is deployed once, its evaluation made once): each promise
    of docs/security.md is a function below."""
    only_named_principals_reach_the_token_its_notes_and_lease(stack, results)
    the_views_stay_readable_through_the_reader_policy(results)
    a_read_only_role_still_sees_only_what_the_docs_say(stack, results)


def only_named_principals_reach_the_token_its_notes_and_lease(
    stack: Stack, results: Results
) -> None:
    document = every(results, DOCUMENT)
    version = {r for r in document if r.startswith("s3:GetObjectVersion")}
    lease = {r for r in document if r.endswith((".lease`", "(notes, lease)"))}
    s3 = stack.on("StoreType", "S3")
    expected = {
        "refresher": document - version,
        # TokenWriterPolicy: the token and notes; no lease on S3 (a staging label on Secrets
        # Manager, moved with the store's own action).
        "login": document - version - (lease if s3 else set()),
        "declared": document - version,
        "tagged": document - version,
        "admin": document,
    }
    for principal in ("reader", "undeclared", "readonly", "s3readonly", "otheradmin"):
        expected[principal] = set()
    got = {p: answers(results, DOCUMENT, p, kms=False) for p in expected}
    assert got == expected
    # ReadOnlyAccess holds s3:Get* and secretsmanager:Describe* on "*", the undeclared bot and
    # the other administrator the actions themselves: only the resource policy's deny stops them.
    assert {p for p in expected if not expected[p]} == set(expected) - NAMED


def the_views_stay_readable_through_the_reader_policy(results: Results) -> None:
    view = every(results, VIEW) | every(results, VIEW, kms=True)
    reads_view = {r for r in view if r.startswith(("s3:GetObject ", "ssm:GetParameter ", "kms:"))}
    assert answers(results, VIEW, "reader") == reads_view
    assert answers(results, DOCUMENT, "reader", kms=False) == set()
    assert answers(results, CREDENTIALS, "reader", kms=False) == set()
    for bot in ("declared", "tagged", "undeclared"):
        assert answers(results, VIEW, bot) == view  # TokenDocumentPolicy keeps the view too
        assert answers(results, CREDENTIALS, bot, kms=False) == set()  # a bot brings its own app


def a_read_only_role_still_sees_only_what_the_docs_say(stack: Stack, results: Results) -> None:
    """docs/security.md says it plainly: never the token; the access view where the stack's own
    key does not guard it; the app credentials where they are an SSM SecureString under aws/ssm
    (whose key policy lets every principal of the account decrypt through SSM)."""
    cmk = stack.on("Encryption", "CustomerManagedKey")
    parameter_store = stack.on("CredentialsStore", "ParameterStore")
    assert not reads(results, "readonly", DOCUMENT)
    assert reads(results, "readonly", VIEW) is not cmk
    assert reads(results, "readonly", CREDENTIALS) is parameter_store
    assert not reads(results, "s3readonly", DOCUMENT)
    assert not reads(results, "s3readonly", CREDENTIALS)
    assert reads(results, "s3readonly", VIEW) is (stack.on("StoreType", "S3") and not cmk)


@pytest.mark.parametrize(
    "stack", [variant_name(VARIANTS[0]), variant_name(VARIANTS[4])], indirect=True
)
def test_a_document_reader_is_declared_by_the_stacks_name_in_its_tag(stack: Stack) -> None:
    nodes = principals(stack)
    document = [
        r for r in requests(stack) if r.group == DOCUMENT and not r.action.startswith("kms")
    ]
    other = node(nodes["tagged"].arn, [stack.managed["document"]], {READER_TAG: "another-stack"})
    assert all(allowed(nodes["tagged"], r) for r in document if "Version" not in r.action)
    assert not any(allowed(other, r) for r in document)


@pytest.mark.parametrize(
    "stack", [variant_name(VARIANTS[0]), variant_name(VARIANTS[4])], indirect=True
)
def test_an_administrator_outside_the_parameter_can_always_remove_the_fence(stack: Stack) -> None:
    """The way back (docs/security.md): the perimeter denies object and secret-value actions
    only; any administrator may still replace or delete the bucket policy or the secret's
    resource policy (and the account's root user always can)."""
    admin = principals(stack)["otheradmin"]
    if stack.on("StoreType", "S3"):
        bucket = f"arn:aws:s3:::{stack.deployment.physical('TokenBucket')}"
        policy, actions = stack.policies["bucket"], ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy")
        target = bucket
    else:
        target = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{stack.name}/tokens-AbCdEf"
        policy = stack.policies["token secret"]
        actions = (
            "secretsmanager:PutResourcePolicy",
            "secretsmanager:DeleteResourcePolicy",
            "secretsmanager:DeleteSecret",
        )
    for action in actions:
        assert allowed(admin, Request(DOCUMENT, action, "", "", target, (), policy)), action
    token = next(r for r in requests(stack) if r.group == DOCUMENT)
    assert not allowed(admin, token)


def test_the_perimeter_as_deployed_names_the_functions_administrators_and_readers(
    stack: Stack,
) -> None:
    s3 = stack.on("StoreType", "S3")
    policy = copy.deepcopy(stack.policies["bucket" if s3 else "token secret"])
    (fence,) = [s for s in policy["Statement"] if s["Sid"] == "OnlyNamedPrincipalsReachTheToken"]
    condition = fence.pop("Condition")
    named = condition.pop("ArnNotLike")["aws:PrincipalArn"]
    assert condition == {"StringNotEquals": {f"aws:PrincipalTag/{READER_TAG}": stack.name}}
    admins = stack.deployment.parameters["AdministratorPrincipals"].split(",")
    functions = [stack.roles["refresher"][0], stack.roles["login"][0]]
    assert named == [*functions, *admins, DECLARED_BOTS]
    if s3:
        bucket = f"arn:aws:s3:::{stack.deployment.physical('TokenBucket')}"
        keys = ("tokens.json", "tokens.json.notes", "tokens.json.lease")
        assert fence == {
            "Sid": "OnlyNamedPrincipalsReachTheToken",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"{bucket}/schwab/{key}" for key in keys],
        }
        # TLS stays required of everyone, named or not.
        assert {s["Sid"] for s in policy["Statement"]} == {
            "OnlyNamedPrincipalsReachTheToken",
            "DenyInsecureTransport",
            "DenyOutdatedTls",
        }
    else:
        assert (fence["Effect"], fence["Principal"], fence["Resource"]) == ("Deny", "*", "*")
        # Never the policy's own actions, nor DeleteSecret: no way back would be left.
        assert not [a for a in fence["Action"] if "ResourcePolicy" in a or "Delete" in a]
        properties = stack.deployment.properties("TokenSecretPolicy")
        assert properties["BlockPublicPolicy"] is True
        assert properties["SecretId"].endswith(f":secret:{stack.name}/tokens-AbCdEf")


def test_no_document_reader_is_declared_unless_the_parameter_names_one(stacks: Stacks) -> None:
    """The default: only the functions and the administrators are named (and tagged roles)."""
    stack = deployed(stacks.session, {**VARIANTS[0], "DocumentReaderPrincipals": ""}, "pm-none")
    (fence,) = [
        s for s in stack.policies["bucket"]["Statement"] if s["Sid"].startswith("OnlyNamed")
    ]
    named = fence["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    refresher = stack.roles["refresher"][0]
    assert named == [
        refresher,
        stack.roles["login"][0],
        *stack.deployment.parameters["AdministratorPrincipals"].split(","),
        refresher,
    ]
    bot = principals(stack)["declared"]
    assert not any(
        allowed(bot, r) for r in requests(stack) if r.group == DOCUMENT and "kms" not in r.action
    )


# ---------------------------------------------------------------------------- the documented table
def test_docs_security_shows_the_evaluated_table(stacks: Stacks) -> None:
    documented = current_section(SECURITY_DOC.read_text())
    evaluated = [stacks.results(s) for s in stacks.all()]
    assert documented == section(stacks.all(), evaluated), (
        "docs/security.md's perimeter tables differ from the evaluation: run "
        "`make security-table` and read the difference"
    )


def test_a_bucket_policy_without_the_deny_turns_the_table_red(stacks: Stacks) -> None:
    """The acceptance check: a change that lets a ReadOnlyAccess role read tokens.json (here,
    the perimeter's statement removed from a copy of the bucket policy) changes the evaluation,
    and the documented table no longer matches it."""

    def weakened(stack: Stack) -> Stack:
        if not stack.on("StoreType", "S3"):
            return stack
        copied = copy.copy(stack)
        copied.policies = copy.deepcopy(stack.policies)
        statements = copied.policies["bucket"]["Statement"]
        statements[:] = [s for s in statements if s["Sid"] != "OnlyNamedPrincipalsReachTheToken"]
        return copied

    stack = stacks[variant_name(VARIANTS[0])]
    open_stack = weakened(stack)
    readonly = principals(stack)["readonly"]
    (token,) = [r for r in requests(stack) if r.action == "s3:GetObject" and "tokens.json`" in r.on]
    (open_token,) = [r for r in requests(open_stack) if r.row == token.row]
    assert not allowed(readonly, token)
    assert allowed(readonly, open_token)  # s3:Get* on "*" reads the refresh token
    documented = current_section(SECURITY_DOC.read_text())
    s3 = [stacks[variant_name(v)] for v in VARIANTS if v["StoreType"] == "S3"]
    assert table(merged([stacks.results(s) for s in s3])) in documented
    assert table(merged([evaluate(weakened(s)) for s in s3])) not in documented


def test_the_generator_rewrites_only_its_part() -> None:
    text = f"# Security\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n"
    assert replace_section(text, f"{BEGIN}\nnew\n{END}") == (
        f"# Security\n\nbefore\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    )
    with pytest.raises(ValueError, match="no generated part"):
        replace_section("# Security\n", "x")


# ---------------------------------------------------------------------------- the evaluator
ROLE = f"arn:aws:iam::{ACCOUNT}:role"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OBJECT = "arn:aws:s3:::b/schwab/tokens.json"
READ_ANY_OBJECT = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}],
}
ROOT_KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ],
}


def ask(who: Node, action: str, resource: str, policy: Any = None, **context: str) -> bool:
    keys = tuple((k.replace("__", ":"), v) for k, v in context.items())
    return allowed(who, Request(DOCUMENT, action, "", "", resource, keys, policy))


def fence(**condition: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": OBJECT,
                "Condition": condition,
            }
        ],
    }


def test_principal_mapper_answers_what_the_perimeter_relies_on() -> None:
    """Each behaviour the evaluation relies on, as IAM documents it."""
    listed = node(f"{ROLE}/bots/a", [READ_ANY_OBJECT])
    tagged = node(f"{ROLE}/t", [READ_ANY_OBJECT], {READER_TAG: "stack"})
    other = node(f"{ROLE}/auditor", [READ_ANY_OBJECT])
    names = {"ArnNotLike": {"aws:PrincipalArn": [f"{ROLE}/fn", f"{ROLE}/bots/*"]}}
    tag = {"StringNotEquals": {f"aws:PrincipalTag/{READER_TAG}": "stack"}}
    policy = fence(**names, **tag)
    # A resource policy's explicit deny beats the identity policy's allow; ArnLike's wildcard
    # reaches into a role's path; conditions of one statement must all hold.
    assert not ask(other, "s3:GetObject", OBJECT, policy)
    assert ask(listed, "s3:GetObject", OBJECT, policy)
    assert ask(tagged, "s3:GetObject", OBJECT, policy)
    # A negated operator on a missing key matches: an untagged role is denied by the tag part.
    assert not ask(other, "s3:GetObject", OBJECT, fence(**tag))
    # The deny covers its resources only; no matching statement leaves it to the identity.
    assert ask(other, "s3:GetObject", "arn:aws:s3:::b/schwab/tokens.access.json", policy)
    assert not ask(node(f"{ROLE}/none", []), "s3:GetObject", OBJECT, {"Statement": []})
    # KMS: the key policy must allow the account (then IAM decides) or the principal itself.
    decrypt = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": KEY,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"s3.{REGION}.amazonaws.com",
                        "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b",
                    }
                },
            }
        ],
    }
    holder = node(f"{ROLE}/holder", [decrypt])
    via = f"s3.{REGION}.amazonaws.com"
    context = {"kms__ViaService": via, "kms__EncryptionContext__aws__s3__arn": "arn:aws:s3:::b"}
    assert ask(holder, "kms:Decrypt", KEY, ROOT_KEY_POLICY, **context)
    assert not ask(node(f"{ROLE}/none", []), "kms:Decrypt", KEY, ROOT_KEY_POLICY, **context)
    elsewhere = copy.deepcopy(ROOT_KEY_POLICY)
    elsewhere["Statement"][0]["Principal"] = {"AWS": f"{ROLE}/someone-else"}
    assert not ask(holder, "kms:Decrypt", KEY, elsewhere, **context)
    # The encryption context and the calling service must be the ones named, and present.
    wrong = {**context, "kms__EncryptionContext__aws__s3__arn": "arn:aws:s3:::b/other"}
    assert not ask(holder, "kms:Decrypt", KEY, ROOT_KEY_POLICY, **wrong)
    assert not ask(holder, "kms:Decrypt", KEY, ROOT_KEY_POLICY, kms__ViaService=via)
    assert not ask(holder, "kms:Decrypt", KEY, ROOT_KEY_POLICY)
    # AWS's managed policies are read as AWS wrote them (wildcard actions, "*" resources).
    auditor = node(f"{ROLE}/auditor", [aws_managed_policy("ReadOnlyAccess")])
    assert ask(auditor, "s3:GetObject", OBJECT)
    assert ask(auditor, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/s/c")
    assert not ask(auditor, "s3:PutObject", OBJECT)
    assert not ask(auditor, "kms:Decrypt", KEY, ROOT_KEY_POLICY, **context)


def test_principal_mapper_divergences_from_aws() -> None:
    """principalmapper 1.1.5's known differences from AWS, pinned as the library answers them, so
    that a release that changed them fails here; the evaluation steers clear of each (see
    tests.template.perimeter)."""
    nobody = node(f"{ROLE}/nobody", [])
    via = {"kms__ViaService": f"ssm.{REGION}.amazonaws.com", "kms__CallerAccount": ACCOUNT}
    for_all = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": via["kms__ViaService"]}},
            }
        ],
    }
    # AWS: Principal {"AWS": "*"} is "*"; the library does not grant through it alone (the
    # evaluation passes policies through as_aws_reads_it, which writes it "*").
    from principalmapper.querying.query_interface import local_check_authorization_full

    def raw(who: Node, action: str, resource: str, context: dict[str, str], policy: Any) -> bool:
        owner = ACCOUNT if policy is not None else None
        return bool(
            local_check_authorization_full(
                who, action, resource, context, policy, owner, None, None
            )
        )

    context = {k.replace("__", ":"): v for k, v in via.items()}
    assert not raw(nobody, "kms:Decrypt", KEY, context, for_all)
    assert ask(nobody, "kms:Decrypt", KEY, for_all, **via)  # as AWS reads it
    # AWS: resource ARNs match case-sensitively; the library ignores case.
    reader = node(f"{ROLE}/case", [READ_ANY_OBJECT])
    assert ask(reader, "s3:GetObject", "arn:aws:s3:::B/SCHWAB/x")
    # AWS: a negated operator on a missing key matches; the library's StringNotLike does not
    # (the perimeter uses StringNotEquals, which it reads as AWS does).
    not_like = fence(StringNotLike={f"aws:PrincipalTag/{READER_TAG}": "stack"})
    assert ask(reader, "s3:GetObject", OBJECT, not_like)
    # AWS: an unknown condition operator makes the policy invalid; the library lets the
    # condition match (here: the deny applies to everyone).
    typo = fence(NoSuchOperator={"aws:PrincipalArn": "x"})
    assert not ask(reader, "s3:GetObject", OBJECT, typo)
    # AWS: KMS needs the key policy's allow; without one passed, the identity policy decides.
    holder = node(
        f"{ROLE}/holder", [{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]
    )
    assert raw(holder, "kms:Decrypt", KEY, {}, None)
    with pytest.raises(ValueError, match="key policy"):
        ask(holder, "kms:Decrypt", KEY)
    # It fills aws:SecureTransport with "true" (the stack's TLS denies never apply) and
    # aws:PrincipalArn and aws:PrincipalTag/* from the node; service keys come with the request.
    tls = fence(Bool={"aws:SecureTransport": "false"})
    assert ask(reader, "s3:GetObject", OBJECT, tls)
    assert not ask(reader, "s3:GetObject", OBJECT, tls, aws__SecureTransport="false")
