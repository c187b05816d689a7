from __future__ import annotations

import json
from pathlib import Path

import pytest

from schwab_tokens.errors import UsageError
from schwab_tokens.manifest import Target, load_manifest, targets_from_settings
from schwab_tokens.settings import Settings


def targets(env: dict[str, str]) -> list[Target]:
    """The tokens a deployment with this environment keeps fresh."""
    return targets_from_settings(Settings.from_env(env))


def test_one_store_url() -> None:
    assert targets({"TOKEN_STORE_URL": "s3://bucket/schwab/tokens.json"}) == [
        Target("tokens", "s3://bucket/schwab/tokens.json")
    ]


def test_store_urls_with_and_without_names() -> None:
    env = {"TOKEN_STORE_URLS": "family=s3://bucket/f.json, secretsmanager://bots/alpha"}
    assert targets(env) == [
        Target("family", "s3://bucket/f.json"),
        Target("alpha", "secretsmanager://bots/alpha"),
    ]


def test_manifest_inline_and_file(tmp_path: Path) -> None:
    doc = {
        "tokens": [
            {"name": "main", "store": "s3://bucket/main.json"},
            {"name": "kid", "store": "secretsmanager://kid", "credentials_secret": "kid-app"},
        ]
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    expected = [
        Target("main", "s3://bucket/main.json"),
        Target("kid", "secretsmanager://kid", "kid-app"),
    ]
    assert load_manifest(json.dumps(doc)) == expected
    assert targets({"TOKEN_MANIFEST": str(path)}) == expected


def test_a_manifest_files_relative_paths_are_relative_to_it(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "manifest.json"
    path.write_text(json.dumps(["a.json", "file:b.json", "/abs/c.json", "s3://bucket/d.json"]))
    assert [t.url for t in load_manifest(str(path))] == [
        str(folder / "a.json"),
        str(folder / "b.json"),
        "/abs/c.json",
        "s3://bucket/d.json",
    ]
    # Inline JSON has no file to be relative to: paths stay as written.
    assert [t.url for t in load_manifest('["a.json"]')] == ["a.json"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TOKEN_STORE_URL"),
        ({"TOKEN_STORE_URLS": "a.json,dir/a.json"}, "unique"),
        ({"TOKEN_STORE_URLS": "bad name=s3://bucket/k"}, "letters, digits"),
        ({"TOKEN_MANIFEST": "{not json"}, "not valid JSON"),
        ({"TOKEN_MANIFEST": '{"tokens": [{"name": "x"}]}'}, "store"),
        ({"TOKEN_MANIFEST": "/nonexistent/manifest.json"}, "cannot read"),
        ({"TOKEN_MANIFEST": "~no-such-user-x/manifest.json"}, "home folder"),
        ({"TOKEN_MANIFEST": '{"tokens": []}'}, "non-empty list"),
        ({"TOKEN_MANIFEST": '{"tokens": ["a.json"], "extra": 1}'}, "unknown keys"),
        ({"TOKEN_MANIFEST": '[{"store": "a.json", "credential_secret": "x"}]'}, "unknown keys"),
        ({"TOKEN_MANIFEST": '[{"store": "a.json", "name": 7}]'}, "name must be a non-empty"),
        ({"TOKEN_MANIFEST": '[{"store": ["a.json"]}]'}, "store must be a non-empty"),
        ({"TOKEN_MANIFEST": '[{"store": " "}]'}, "store must be a non-empty"),
        ({"TOKEN_MANIFEST": "[42]"}, "a store URL or an object"),
        ({"TOKEN_MANIFEST": '[{"store": "a.json", "name": NaN}]'}, "not valid JSON"),
    ],
)
def test_bad_configuration_says_what_to_fix(env: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        targets(env)
