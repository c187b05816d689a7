"""Several tokens in one deployment: concurrent, isolated, labelled per token."""

from __future__ import annotations

import json

import pytest

from schwab_tokens import aws
from schwab_tokens.stores import store_from_url
from tests.helpers import LambdaContext, cli_env, lambda_event, load_handler, login, run_cli


@pytest.fixture
def three_tokens(emulator, aws_endpoint, s3_store_url, sm_store_url, tmp_path, monkeypatch):
    urls = {
        "family": s3_store_url("family.json"),
        "bots": sm_store_url(),
        "laptop": str(tmp_path / "laptop.json"),
    }
    emulator.configure(access_lifetime=300)  # every login's token is already due
    for url in urls.values():
        login(store_from_url(url), emulator)
    emulator.configure(access_lifetime=1800)
    aws.put_credentials_secret("creds", emulator.app_key, emulator.app_secret, None)
    monkeypatch.setenv("SCHWAB_CREDENTIALS_SECRET", "creds")
    monkeypatch.setenv("SCHWAB_API_BASE", emulator.base_url)
    monkeypatch.setenv("TOKEN_STORE_URLS", ",".join(f"{k}={v}" for k, v in urls.items()))
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
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_token = {}
    for d in docs:
        dims = d.get("_aws", {}).get("CloudWatchMetrics", [{}])[0].get("Dimensions")
        if dims and sorted(dims[0]) == ["Token", "service"]:
            per_token[d["Token"]] = d
    assert set(per_token) == {"family", "bots", "laptop"}

    def value(doc: dict, name: str) -> float:
        found = doc[name]
        return found[0] if isinstance(found, list) else found

    assert value(per_token["bots"], "ReauthRequired") == 1
    assert value(per_token["family"], "ReauthRequired") == 0
    assert value(per_token["family"], "RefreshTokenHoursLeft") > 167
    logs = [d for d in docs if "_aws" not in d]
    assert {d["token"] for d in logs} == {"family", "bots", "laptop"}


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
