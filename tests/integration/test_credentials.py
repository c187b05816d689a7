"""App credentials kept in Secrets Manager: written by `login --credentials-secret`, used later
by `refresh` and the refresher with only the secret's name configured."""

from __future__ import annotations

import json

import pytest

from devkit.user import cli_env, paste_login, run_cli
from schwab_tokens import aws
from schwab_tokens.credentials import (
    AppCredentials,
    CredentialsNotFound,
    load_credentials,
    store_credentials,
)
from schwab_tokens.errors import ConfigurationError, UsageError
from schwab_tokens.settings import Settings
from tests.helpers import RawBody, assert_no_secrets, secrets_of


def stored_credentials(name: str) -> dict:
    """The credentials document as AWS holds it (a secret, or an SSM SecureString)."""
    if name.startswith("ssm:"):
        answer = aws.client("ssm").get_parameter(Name=name[4:], WithDecryption=True)["Parameter"]
        assert answer["Type"] == "SecureString"
        return json.loads(answer["Value"])
    answer = aws.client("secretsmanager").get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    return json.loads(answer["SecretString"])


@pytest.mark.parametrize(
    "name", ["schwab-tokens/credentials", "ssm:/schwab-tokens/credentials"], ids=["secret", "ssm"]
)
def test_login_stores_credentials_then_refresh_uses_only_the_secret(
    emulator, aws_endpoint, s3_store_url, name: str
) -> None:
    url = s3_store_url()
    run = paste_login(
        ["--store", url, "--callback-url", emulator.callback_url, "--credentials-secret", name],
        cli_env(emulator),
    )
    assert run.code == 0, run.err
    assert stored_credentials(name) == {
        "app_key": emulator.app_key,
        "app_secret": emulator.app_secret,
        "callback_url": emulator.callback_url,
    }
    env = cli_env(emulator, SCHWAB_CREDENTIALS_SECRET=name)
    del env["SCHWAB_APP_KEY"], env["SCHWAB_APP_SECRET"]
    emulator.reset_counters()
    forced = run_cli(["refresh", "--force", "--store", url], env)
    assert forced.code == 0, forced.err
    assert emulator.token_calls == 1
    assert_no_secrets(run.text + forced.text, secrets_of(emulator))


def test_credentials_secret_is_read_once_per_warm_container(emulator, aws_endpoint) -> None:
    name = "schwab-tokens/cached"
    store_credentials(name, AppCredentials("key-1", "secret-1"))
    calls: list[str] = []
    aws.client("secretsmanager").meta.events.register(
        "before-call.*.GetSecretValue", lambda event_name, **_: calls.append(event_name)
    )
    settings = Settings.from_env({"SCHWAB_CREDENTIALS_SECRET": name})
    for _ in range(5):
        assert load_credentials(settings).app_key == "key-1"
    assert len(calls) == 1


def test_credentials_errors_are_actionable(aws_endpoint) -> None:
    with pytest.raises(UsageError, match="SCHWAB_APP_KEY"):
        load_credentials(Settings())
    with pytest.raises(ConfigurationError, match="schwab-tokens/missing"):
        load_credentials(Settings(credentials_secret="schwab-tokens/missing"))
    aws.client("secretsmanager").create_secret(Name="placeholder", SecretString='{"note": "x"}')
    with pytest.raises(ConfigurationError, match="login --credentials-secret placeholder"):
        load_credentials(Settings(credentials_secret="placeholder"))


def test_a_wrong_app_secret_is_not_stored(emulator, aws_endpoint, s3_store_url) -> None:
    """Credentials are stored only after Schwab accepted them: a typo never replaces good ones."""
    url = s3_store_url()
    name = "schwab-tokens/credentials"
    store_credentials(name, AppCredentials(emulator.app_key, emulator.app_secret))
    run = paste_login(
        ["--store", url, "--callback-url", emulator.callback_url, "--credentials-secret", name],
        cli_env(emulator, SCHWAB_APP_SECRET="a-typo-in-the-secret"),
    )
    assert run.code == 5 and "app key or secret" in run.err
    assert stored_credentials(name)["app_secret"] == emulator.app_secret


def test_a_secret_that_holds_no_value_is_not_called_a_typo(aws_endpoint) -> None:
    """A secret created without a value: AWS answers GetSecretValue with ResourceNotFoundException
    naming the staging label (moto, asked for AWSCURRENT, says the secret itself is missing, so
    AWS's answer is given here). The name is right: it is not reported as missing."""
    from botocore.awsrequest import AWSResponse

    name = "schwab-tokens/empty"
    sm = aws.client("secretsmanager")
    sm.create_secret(Name=name)
    body = json.dumps(
        {
            "__type": "ResourceNotFoundException",
            "Message": "Secrets Manager can't find the specified secret value for staging "
            "label: AWSCURRENT",
        }
    ).encode()
    answered: list[int] = []

    def as_aws_answers(request, **_) -> AWSResponse:
        answered.append(1)
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 400, headers, RawBody(body))

    sm.meta.events.register("before-send.secrets-manager.GetSecretValue", as_aws_answers)
    with pytest.raises(CredentialsNotFound) as info:
        load_credentials(Settings(credentials_secret=name))
    assert answered and "holds no value yet" in str(info.value)
    assert "does not exist" not in str(info.value)
