"""Several tokens in one deployment: concurrent, isolated, labelled per token."""

from __future__ import annotations

import json
import os

import pytest

from devkit.handlers import load_handler
from devkit.user import cli_env, login, run_cli
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.stores import store_from_url
from tests.helpers import LambdaContext, emf_documents, lambda_event, log_records, refresher_env


@pytest.fixture
def three_tokens(emulator, aws_endpoint, s3_store_url, sm_store_url, tmp_path, monkeypatch):
    urls = {
        "family": s3_store_url("family.json"),
        "bots": sm_store_url(),
        "laptop": str(tmp_path / "laptop.json"),
    }
    # Several tokens of one emulated app stand for several apps (Schwab keeps one login per
    # app, so a real deployment gives each token its own app): keep every login alive.
    emulator.configure(one_login_per_app=False)
    emulator.configure(access_lifetime=300)  # every login's token is already due
    for url in urls.values():
        login(store_from_url(url), emulator)
    emulator.configure(access_lifetime=1800)
    store_credentials("creds", AppCredentials(emulator.app_key, emulator.app_secret))
    env = refresher_env(
        emulator,
        "",
        SCHWAB_CREDENTIALS_SECRET="creds",
        TOKEN_STORE_URLS=",".join(f"{k}={v}" for k, v in urls.items()),
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return urls


def test_one_dead_token_does_not_stop_the_others(emulator, three_tokens, capsys) -> None:
    bots = store_from_url(three_tokens["bots"])
    doc = bots.read()
    # The "bots" login is dead: its refresh token is one Schwab no longer knows.
    dead = type(doc.token)(
        doc.token.creation_timestamp, {**doc.token.token, "refresh_token": "x" * 40}
    )
    bots.write(dead, doc.version)
    emulator.reset_counters()
    handler = load_handler("refresher")
    capsys.readouterr()
    summary = handler.lambda_handler(lambda_event("scheduled.json"), LambdaContext())
    by_token = {t["token"]: t["outcome"] for t in summary["tokens"]}
    assert by_token == {"family": "refreshed", "bots": "reauth_required", "laptop": "refreshed"}
    assert summary["outcome"] == "reauth_required"
    assert emulator.token_calls == 3
    out = capsys.readouterr().out
    per_token = {d["Token"]: d for d in emf_documents(out, ["Token", "service"])}
    assert set(per_token) == {"family", "bots", "laptop"}

    def value(doc: dict, name: str) -> float:
        found = doc[name]
        return found[0] if isinstance(found, list) else found

    assert value(per_token["bots"], "ReauthRequired") == 1
    assert value(per_token["family"], "ReauthRequired") == 0
    assert value(per_token["family"], "RefreshTokenHoursLeft") > 167
    logs = log_records(out)
    assert {d["token"] for d in logs if "token" in d} == {"family", "bots", "laptop"}


def test_status_shows_all_tokens_of_a_manifest(emulator, three_tokens, tmp_path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"tokens": [{"name": k, "store": v} for k, v in three_tokens.items()]})
    )
    run = run_cli(["status", "--manifest", str(manifest)], cli_env(emulator))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split()[0] == "token" and len(lines) == 4
    assert {line.split()[0] for line in lines[1:]} == {"family", "bots", "laptop"}
    rows = json.loads(
        run_cli(["status", "--json", "--manifest", str(manifest)], cli_env(emulator)).out
    )
    assert [r["healthy"] for r in rows] == [True, True, True]


def test_the_cli_takes_the_token_list_from_the_environment_too(emulator, three_tokens) -> None:
    """TOKEN_STORE_URLS set as for the refresher: status and refresh cover all three tokens
    rather than quietly falling back to ./tokens.json; --store still picks one."""
    env = cli_env(emulator, TOKEN_STORE_URLS=os.environ["TOKEN_STORE_URLS"])
    run = run_cli(["status", "--json"], env)
    assert run.code == 0, run.err
    assert sorted(row["token"] for row in json.loads(run.out)) == ["bots", "family", "laptop"]
    run = run_cli(["refresh"], env)
    assert run.code == 0, run.err
    assert all(url in run.out for url in three_tokens.values())
    one = run_cli(["status", "--json", "--store", three_tokens["laptop"]], env)
    assert json.loads(one.out)["store"] == three_tokens["laptop"]
