from __future__ import annotations

import json
from pathlib import Path

import pytest

from schwab_tokens.errors import UsageError
from schwab_tokens.manifest import Target, load_manifest, targets_from_env


def test_one_store_url() -> None:
    assert targets_from_env({"TOKEN_STORE_URL": "s3://b/schwab/tokens.json"}) == [
        Target("tokens", "s3://b/schwab/tokens.json")
    ]


def test_store_urls_with_and_without_names() -> None:
    env = {"TOKEN_STORE_URLS": "family=s3://b/f.json, secretsmanager://bots/alpha"}
    assert targets_from_env(env) == [
        Target("family", "s3://b/f.json"),
        Target("alpha", "secretsmanager://bots/alpha"),
    ]


def test_manifest_inline_and_file(tmp_path: Path) -> None:
    doc = {
        "tokens": [
            {"name": "main", "store": "s3://b/main.json"},
            {"name": "kid", "store": "secretsmanager://kid", "credentials_secret": "kid-app"},
        ]
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    expected = [
        Target("main", "s3://b/main.json"),
        Target("kid", "secretsmanager://kid", "kid-app"),
    ]
    assert load_manifest(json.dumps(doc)) == expected
    assert targets_from_env({"TOKEN_MANIFEST": str(path)}) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TOKEN_STORE_URL"),
        ({"TOKEN_STORE_URLS": "a.json,dir/a.json"}, "unique"),
        ({"TOKEN_STORE_URLS": "bad name=s3://b/k"}, "letters, digits"),
        ({"TOKEN_MANIFEST": "{not json"}, "not valid JSON"),
        ({"TOKEN_MANIFEST": '{"tokens": [{"name": "x"}]}'}, "store"),
        ({"TOKEN_MANIFEST": "/nonexistent/manifest.json"}, "cannot read"),
    ],
)
def test_bad_configuration_says_what_to_fix(env: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        targets_from_env(env)
