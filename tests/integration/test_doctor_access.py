"""``schwab-tokens doctor``'s access lines ("refresher reads credentials", "refresher writes the
store") as a user on AWS reads them: ok, or FAIL naming the action and why.

Doctor asks IAM's policy simulator (``iam:SimulatePrincipalPolicy``), which moto does not
implement: here IAM alone is pointed (``AWS_ENDPOINT_URL_IAM``, in the CLI's environment only)
at ``tests/iam_simulator.py``, which answers as IAM documents it, from the roles moto holds. The
stack is test_doctor's (its fixtures: the default stack on a moto server, put back as made
before each test).

Where this differs from AWS:

- The bucket carries no policy unless a test puts one: moto's CloudFormation stands the
  template's in as a parameter, and moto's S3 holds every Deny statement of a bucket policy
  against every caller, whatever its Principal and Condition (moto/s3/models.py,
  ``FakeBucket.get_permission``), so the template's (deny ``s3:*`` on the token to all but the
  named principals) would refuse doctor its own reads. On AWS the bucket always has it, and
  doctor always sends it to the simulator.
- Only the default stack (``StoreType=S3``, the credentials in Parameter Store): the Secrets
  Manager store's secret and resource policy are stood in on moto (tests/template/stack.py), so
  doctor finds no secret there to ask about.

IAM refuses a ``ResourcePolicy`` with a role as ``PolicySourceArn`` and no ``CallerArn`` (400
``InvalidInput``: "Invalid caller - Caller must be an IAM user in this context."), so doctor
asks as a stand-in user (diagnosis/access.py, ``CALLER_NAME``). Whether IAM requires that user
to exist is not documented: the tests run the stand-in both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devkit.user import Run
from schwab_tokens import aws
from tests.iam_simulator import IamSimulator
from tests.integration import test_doctor
from tests.integration.test_doctor import STACK, Deployed, doctor, line, lines
from tests.s3_proxy import S3Proxy

# test_doctor's fixtures: the session's deployment, and the stack put back as made.
deployed, stack = test_doctor.deployed, test_doctor.stack


@pytest.fixture
def deployed_stack(stack: Deployed) -> Iterator[Deployed]:
    """The stack with a confirmed subscription, so that a correct stack passes every check; a
    bucket policy a test adds is taken away after it."""
    # An SQS queue, which AWS confirms at once (see test_doctor).
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="doctor-access-notes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    topic = stack.outputs["AlarmTopicArn"]
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    try:
        yield stack
    finally:
        aws.client("s3").delete_bucket_policy(Bucket=stack.bucket)


@pytest.fixture
def simulator(stack: Deployed) -> Iterator[IamSimulator]:
    with IamSimulator(stack.endpoint) as server:
        yield server


@pytest.fixture
def strict_simulator(stack: Deployed) -> Iterator[IamSimulator]:
    """The stand-in on the reading of IAM where the caller must be a user it holds."""
    with IamSimulator(stack.endpoint, callers_must_exist=True) as server:
        yield server


def doctor_on_aws(simulator: IamSimulator) -> Run:
    """doctor --stack, its IAM client (alone) asking the simulator."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL_IAM", simulator.url)
        return doctor("--stack", STACK)


def role(stack: Deployed) -> str:
    return stack.refresher_role  # its name: doctor names the role by it


def object_arn(stack: Deployed) -> str:
    return "arn:aws:s3:::" + stack.store_url.removeprefix("s3://")


# ---------------------------------------------------------------------------- the credentials
def test_the_refresher_may_read_its_credentials(
    deployed_stack: Deployed, simulator: IamSimulator
) -> None:
    run = doctor_on_aws(simulator)
    name = deployed_stack.outputs["CredentialsSecretName"]
    assert line(run, "refresher reads credentials") == (
        f"ok    refresher reads credentials: its role {role(deployed_stack)} may "
        f"ssm:GetParameter on {name}"
    )


def test_a_role_without_its_writer_policy_may_not_read_the_credentials(
    deployed_stack: Deployed, simulator: IamSimulator
) -> None:
    # An administrator detaches the stack's policy from the refresher's role (the stack
    # fixture attaches it again for the next test).
    aws.client("iam").detach_role_policy(
        RoleName=deployed_stack.refresher_role, PolicyArn=deployed_stack.writer_policy
    )

    run = doctor_on_aws(simulator)

    name = deployed_stack.outputs["CredentialsSecretName"]
    parameter = f"arn:aws:ssm:us-east-1:123456789012:parameter/{name.removeprefix('ssm:/')}"
    assert line(run, "refresher reads credentials") == (
        f"FAIL  refresher reads credentials: its role {role(deployed_stack)} may not "
        f"ssm:GetParameter on {name}: nothing allows it (IAM's policy simulator); deploy the "
        f"stack again (sam deploy), or grant the role ssm:GetParameter on {parameter}"
    )
    assert lines(run)[-1].startswith("doctor: ")
    assert run.code == 5, run.text


# ---------------------------------------------------------------------------- the store
def test_a_deployed_stack_is_all_ok_with_the_simulator(
    deployed_stack: Deployed, simulator: IamSimulator
) -> None:
    run = doctor_on_aws(simulator)
    assert line(run, "refresher writes the store") == (
        f"ok    refresher writes the store: its role {role(deployed_stack)} may s3:GetObject, "
        f"s3:PutObject on {deployed_stack.store_url}"
    )
    assert lines(run)[-1] == "doctor: everything is in place (11 ok, 2 skipped)"
    assert run.code == 0, run.text


def deny_the_write(stack: Deployed, *, arn_as_list: bool = True) -> None:
    """An administrator's mistake: a bucket policy denying the refresher's role the write."""
    arn = aws.client("iam").get_role(RoleName=stack.refresher_role)["Role"]["Arn"]
    statement = {
        "Sid": "NoMoreWrites",
        "Effect": "Deny",
        "Principal": {"AWS": [arn] if arn_as_list else arn},  # both of IAM's forms
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{stack.bucket}/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    aws.client("s3").put_bucket_policy(Bucket=stack.bucket, Policy=json.dumps(policy))


def test_a_bucket_policy_denying_the_write_fails_naming_it(
    deployed_stack: Deployed, simulator: IamSimulator
) -> None:
    deny_the_write(deployed_stack, arn_as_list=False)

    run = doctor_on_aws(simulator)

    assert line(run, "refresher writes the store") == (
        f"FAIL  refresher writes the store: its role {role(deployed_stack)} may not s3:PutObject "
        f"on {deployed_stack.store_url}: a policy denies it explicitly (the resource's policy, a "
        "boundary or an SCP) (IAM's policy simulator); deploy the stack again (sam deploy), or "
        f"grant the role s3:PutObject on {object_arn(deployed_stack)}"
    )
    assert lines(run)[-1] == (
        "doctor: 1 problem in 13 checks; exit 5: fix the FAIL lines above, then run doctor again"
    )
    assert run.code == 5, run.text


def test_a_bucket_policy_doctor_may_not_read_leaves_the_store_line_not_checked(
    deployed_stack: Deployed, simulator: IamSimulator, s3_proxy: S3Proxy
) -> None:
    """Asked without the bucket's policy, IAM would judge the role's policies alone: an ok that
    skipped the policy's denies. So the line says it was not checked, and why. (S3 answers
    GetBucketPolicy 403 to a caller without s3:GetBucketPolicy; moto shows it to anyone, so
    the proxy answers as S3.)"""
    deny_the_write(deployed_stack)  # a deny doctor cannot see
    s3_proxy.reset(list_bucket=True)
    s3_proxy.policy_private = True
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.url)
            run = doctor_on_aws(simulator)
    finally:
        s3_proxy.reset()

    found = line(run, "refresher writes the store")
    assert found.startswith("warn  refresher writes the store: not checked: "), found
    assert f"may not read the bucket policy of {deployed_stack.bucket}" in found, found
    assert "run doctor as an administrator" in found


def test_where_iam_would_not_take_the_caller_the_store_line_says_so_and_never_ok(
    deployed_stack: Deployed, strict_simulator: IamSimulator
) -> None:
    deny_the_write(deployed_stack)

    run = doctor_on_aws(strict_simulator)

    assert line(run, "refresher writes the store") == (
        "warn  refresher writes the store: not checked: IAM's policy simulator would not take "
        "arn:aws:iam::123456789012:user/schwab-tokens-doctor as the caller for the resource's "
        "policy (NoSuchEntity), and without one it cannot weigh that policy"
    )


def test_a_role_without_its_writer_policy_may_not_write_the_store(
    deployed_stack: Deployed, simulator: IamSimulator
) -> None:
    aws.client("iam").detach_role_policy(
        RoleName=deployed_stack.refresher_role, PolicyArn=deployed_stack.writer_policy
    )

    run = doctor_on_aws(simulator)

    assert line(run, "refresher writes the store") == (
        f"FAIL  refresher writes the store: its role {role(deployed_stack)} may not s3:GetObject "
        f"on {deployed_stack.store_url}: nothing allows it (IAM's policy simulator); deploy the "
        f"stack again (sam deploy), or grant the role s3:GetObject on {object_arn(deployed_stack)}"
    )
    assert run.code == 5, run.text


# ---------------------------------------------------------------------------- the stand-in
def test_the_stand_in_answers_and_refuses_as_iam_does(
    stack: Deployed, simulator: IamSimulator
) -> None:
    """Through the real boto3 client: each decision; and IAM's documented refusals (an action
    it does not know, a resource policy for a role without a caller, a role that is not)."""
    import boto3
    from botocore.exceptions import ClientError

    iam = boto3.client("iam", endpoint_url=simulator.url)
    arn = str(aws.client("iam").get_role(RoleName=stack.refresher_role)["Role"]["Arn"])
    token = object_arn(stack)
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": token,
        "Condition": {"ArnEquals": {"aws:PrincipalArn": arn}},
    }
    answer = iam.simulate_principal_policy(
        PolicySourceArn=arn,
        CallerArn="arn:aws:iam::123456789012:user/doctor",
        ActionNames=["s3:GetObject", "s3:PutObject", "s3:DeleteBucket"],
        ResourceArns=[token],
        ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
        ContextEntries=[
            {
                "ContextKeyName": "aws:PrincipalArn",
                "ContextKeyValues": [arn],
                "ContextKeyType": "string",
            }
        ],
    )
    assert answer["IsTruncated"] is False
    assert [
        (r["EvalActionName"], r["EvalDecision"], r["ResourceSpecificResults"])
        for r in answer["EvaluationResults"]
    ] == [
        (action, decision, [{"EvalResourceName": token, "EvalResourceDecision": decision}])
        for action, decision in (
            ("s3:GetObject", "allowed"),
            ("s3:PutObject", "explicitDeny"),
            ("s3:DeleteBucket", "implicitDeny"),
        )
    ]

    with pytest.raises(ClientError) as unknown:
        iam.list_roles()
    assert unknown.value.response["Error"]["Code"] == "InvalidAction"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as no_caller:
        iam.simulate_principal_policy(
            PolicySourceArn=arn, ActionNames=["s3:GetObject"], ResourcePolicy="{}"
        )
    assert no_caller.value.response["Error"] == {
        "Type": "Sender",
        "Code": "InvalidInput",
        "Message": "Invalid caller - Caller must be an IAM user in this context.",
    }
    with pytest.raises(ClientError) as missing:
        iam.simulate_principal_policy(PolicySourceArn=arn + "-gone", ActionNames=["s3:GetObject"])
    assert missing.value.response["Error"]["Code"] == "NoSuchEntity"
