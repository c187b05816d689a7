"""Day seven on real Schwab: a login past its days may be refused with 401 ``invalid_client``
naming the refresh token (RFC 6749's status for ``invalid_client`` under Basic auth), not 400.
The CLI and the refresher say "log in again", not "check the app key", and touch nothing; a
401 that names no refresh token still means a wrong app key or secret."""

from __future__ import annotations

import time

import pytest

from devkit.user import cli_env, follow_authorize, oauth_for, run_cli
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.login_flow import complete_login
from schwab_tokens.stores import store_from_url
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME
from tests.helpers import (
    assert_no_secrets,
    emf_metrics,
    invoke,
    refresher_env,
    secrets_of,
    snapshot,
)

#: How long the login has left by our clock when Schwab already calls it over.
LEFT = 1800


def last_day_login(emulator, url: str) -> None:
    """A login made 7 days less ``LEFT`` ago by our clock, and over at Schwab."""
    oauth = oauth_for(emulator)
    authorize, state = oauth.authorize_url(emulator.callback_url)
    link = follow_authorize(authorize)
    now = time.time() - REFRESH_TOKEN_LIFETIME + LEFT
    complete_login(oauth, store_from_url(url), link, state, emulator.callback_url, now=now)
    emulator.advance(REFRESH_TOKEN_LIFETIME + 60)


def schwab_answers(emulator, answer: str) -> None:
    if answer == "expired_login_401":
        emulator.configure(expired_login_401=True)
    else:
        emulator.set_fault(answer)


@pytest.mark.parametrize("answer", ["expired_login_401", "refresh_token_invalid_401"])
def test_refresh_asks_for_a_new_login(emulator, tmp_path, answer: str) -> None:
    url = str(tmp_path / "tokens.json")
    last_day_login(emulator, url)
    before = snapshot(url)
    schwab_answers(emulator, answer)
    run = run_cli(["refresh", "--force", "--store", url], cli_env(emulator))
    assert run.code == 3, run.err
    assert "401 invalid_client" in run.err
    assert f"Run `schwab-tokens login --store {url}` to log in again" in run.err
    assert "app key" not in run.err
    assert snapshot(url) == before
    assert_no_secrets(run.text, secrets_of(emulator))


def test_a_plain_401_invalid_client_still_names_the_app_key_and_secret(emulator, tmp_path) -> None:
    url = str(tmp_path / "tokens.json")
    last_day_login(emulator, url)
    before = snapshot(url)
    emulator.set_fault("invalid_client")
    run = run_cli(["refresh", "--force", "--store", url], cli_env(emulator))
    assert run.code == 5, run.err
    assert "check the app key and secret" in run.err and "log in again" not in run.err
    assert snapshot(url) == before


def test_the_refresher_reports_login_required(
    emulator, aws_endpoint, s3_store_url, monkeypatch, capsys
) -> None:
    url = s3_store_url()
    secret = f"schwab-tokens/credentials-{id(emulator)}"
    store_credentials(secret, AppCredentials(emulator.app_key, emulator.app_secret))
    for name, value in refresher_env(emulator, url, SCHWAB_CREDENTIALS_SECRET=secret).items():
        monkeypatch.setenv(name, value)
    last_day_login(emulator, url)
    before = snapshot(url)
    schwab_answers(emulator, "expired_login_401")
    result, error, out = invoke(capsys, "force_refresh.json")
    assert error is None, error
    assert result is not None and result["outcome"] == "reauth_required"
    (token,) = result["tokens"]
    assert "401 invalid_client" in token["reason"] and "schwab-tokens login" in token["reason"]
    assert emf_metrics(out)["ReauthRequired"] == [1]
    assert snapshot(url) == before
    assert_no_secrets(out, secrets_of(emulator))
