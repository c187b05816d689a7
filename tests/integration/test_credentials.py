"""App credentials kept in Secrets Manager: written by `login --credentials-secret`, used later
by `refresh` and the refresher with only the secret's name configured."""

from __future__ import annotations

import json

import pytest

from schwab_tokens import aws
from schwab_tokens.credentials import load_credentials
from schwab_tokens.errors import ConfigurationError, UsageError
from tests.helpers import assert_no_secrets, cli_env, paste_login, run_cli


def test_login_stores_credentials_then_refresh_uses_only_the_secret(
    emulator, aws_endpoint, s3_store_url
) -> None:
    url = s3_store_url()
    name = "schwab-tokens/credentials"
    run = paste_login(
        ["--store", url, "--callback-url", emulator.callback_url, "--credentials-secret", name],
        cli_env(emulator),
    )
    assert run.code == 0, run.err
    stored = json.loads(
        aws.client("secretsmanager").get_secret_value(SecretId=name, VersionStage="AWSCURRENT")[
            "SecretString"
        ]
    )
    assert stored == {
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
    assert_no_secrets(run.text + forced.text, emulator.issued_secrets() | {emulator.app_secret})


def test_credentials_secret_is_read_once_per_warm_container(emulator, aws_endpoint) -> None:
    name = "schwab-tokens/cached"
    aws.put_credentials_secret(name, "key-1", "secret-1", None)
    calls: list[str] = []
    aws.client("secretsmanager").meta.events.register(
        "before-call.*.GetSecretValue", lambda event_name, **_: calls.append(event_name)
    )
    env = {"SCHWAB_CREDENTIALS_SECRET": name}
    for _ in range(5):
        assert load_credentials(env=env).app_key == "key-1"
    assert len(calls) == 1


def test_credentials_errors_are_actionable(aws_endpoint) -> None:
    with pytest.raises(UsageError, match="SCHWAB_APP_KEY"):
        load_credentials(env={})
    with pytest.raises(ConfigurationError, match="schwab-tokens/missing"):
        load_credentials(env={"SCHWAB_CREDENTIALS_SECRET": "schwab-tokens/missing"})
    aws.client("secretsmanager").create_secret(Name="placeholder", SecretString='{"note": "x"}')
    with pytest.raises(ConfigurationError, match="login --credentials-secret placeholder"):
        load_credentials(env={"SCHWAB_CREDENTIALS_SECRET": "placeholder"})
