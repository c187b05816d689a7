"""Where AWS and Schwab answer less kindly than moto and a well-behaved emulator, in the order a
new user meets them in the first week (docs/architecture.md, "What the tests stand in for").

Each answer is reproduced, not assumed: S3's 403 for a missing object through a proxy in front
of moto's server, Schwab's edge answering HTML and empty 400s, one login per app, and
``Retry-After`` from the emulator over real HTTP; an old botocore through botocore's own data
path. Nothing of ours is patched. (The deploy-time answers of a new account, its concurrency
quota and name limits, are in tests/template; the week of e-mails in test_notifications.py;
the phone login's account sets in test_hosted_login.py; the CLI's truthfulness in test_cli.py.)
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from devkit.emulator import Emulator
from devkit.emulator.server import EDGE_400_FAULT_KINDS
from devkit.user import cli_env, follow_authorize, login, oauth_for, run_cli
from schwab_tokens import aws
from schwab_tokens.errors import AccessDenied, ConfigurationError
from schwab_tokens.lambdas.refresher import handle
from schwab_tokens.oauth import parse_callback
from schwab_tokens.reader import TokenReader
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import accepted, emulator_settings, secrets_of, snapshot

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


# -- 1. the first deploy ------------------------------------------------------------------------
def test_a_botocore_without_s3_conditional_writes_is_refused_at_cold_start(
    s3_without_listbucket: Any,
    emulator: Emulator,
    s3_store_url: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lambda's bundled botocore depends on the runtime and the region. One whose S3 model has
    no ``IfMatch``/``IfNoneMatch`` (before late 2024) must stop the refresher with a message
    naming the fix, before it reads or writes anything, not fail every write as a puzzle."""
    url = s3_store_url()
    login(store_from_url(url, Settings()), emulator)
    before = snapshot(url)
    _old_s3_model(tmp_path / "models", monkeypatch)
    aws.reset_clients()
    with pytest.raises(ConfigurationError, match=r"botocore 1\.35\.69 or newer") as info:
        handle(EVENT, emulator_settings(emulator, url), clock=emulator.now)
    assert "PutObject IfMatch" in str(info.value) and "add a layer" in str(info.value)
    assert emulator.token_calls == 1 and snapshot(url) == before  # the login's exchange only


def _old_s3_model(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own S3 model without the conditional-write members, on botocore's data path
    (``AWS_DATA_PATH``, searched before the bundled models): botocore as it was in mid-2024."""
    import botocore

    bundled = Path(botocore.__file__).parent / "data" / "s3" / "2006-03-01"
    model = json.loads(gzip.decompress((bundled / "service-2.json.gz").read_bytes()))
    for shape in ("PutObjectRequest", "DeleteObjectRequest"):
        for member in ("IfMatch", "IfNoneMatch"):
            model["shapes"][shape]["members"].pop(member, None)
    target = folder / "s3" / "2006-03-01"
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(folder))


# -- 2. before the first login -------------------------------------------------------------------
@pytest.mark.parametrize("list_bucket", [True, False], ids=["stack-grant", "no-listbucket"])
def test_a_fresh_stack_asks_for_a_login_and_alarms_nobody(
    s3_without_listbucket: Any,
    emulator: Emulator,
    s3_store_url: Any,
    list_bucket: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No token yet. With the stack's s3:ListBucket grant S3 answers 404 and the scheduled run
    is "login required": it does not raise (no RefresherErrors alarm, no failure queue) and
    e-mails nobody. Without the grant S3 answers 403: the run names the missing permission."""
    s3_without_listbucket.list_bucket = list_bucket
    topic = aws.client("sns").create_topic(Name="alarms")["TopicArn"]
    url = s3_store_url()
    settings = emulator_settings(emulator, url, topic_arn=topic)
    if list_bucket:
        summary = handle(EVENT, settings, clock=emulator.now)
        (token,) = summary["tokens"]
        assert token["outcome"] == "reauth_required" and "schwab-tokens login" in token["reason"]
        assert s3_without_listbucket.rewritten == 0
    else:
        with pytest.raises(Exception, match="s3:ListBucket"):
            handle(EVENT, settings, clock=emulator.now)
        assert s3_without_listbucket.rewritten > 0
    assert emulator.token_calls == 0
    assert "notified" not in capsys.readouterr().out


def test_lease_notes_and_view_take_s3s_403_for_absent(
    s3_without_listbucket: Any, emulator: Emulator, s3_store_url: Any
) -> None:
    """Without s3:ListBucket, the lease object a rival just released, the notes before the
    first message and the view before its first write all answer 403: none of them is a
    configuration error. Twenty racing refreshers make one token call."""
    url = s3_store_url()
    emulator.configure(access_lifetime=300)  # due under the 900 s margin
    login(store_from_url(url, Settings()), emulator)
    emulator.configure(access_lifetime=1800)
    env = cli_env(emulator, AWS_ENDPOINT_URL_S3=s3_without_listbucket.url)
    emulator.reset_counters()
    results = _race(20, ["refresh", "--json", "--store", url], env)
    outcomes = sorted(json.loads(r.out)["outcome"] for r in results)
    assert outcomes == ["refreshed"] + ["still_fresh"] * 19, [r.out for r in results]
    assert emulator.calls_by_grant == {"refresh_token": 1}
    assert s3_without_listbucket.rewritten > 0  # the 403s really happened
    assert accepted(emulator, store_from_url(url, Settings()).read().token.access_token)


def test_a_bot_before_the_first_view_is_told_both_causes_of_s3s_403(
    s3_without_listbucket: Any, emulator: Emulator, s3_store_url: Any
) -> None:
    """A bot may read the view alone (no s3:ListBucket), so before the view's first write S3
    answers it 403, exactly as it answers a role without the reader policy. The error names
    both, with the command that writes the view; once written, the same reader works."""
    url = s3_store_url()
    login(store_from_url(url, Settings()), emulator)
    store = store_from_url(url, Settings())
    bucket, key = store.view.url.removeprefix("s3://").split("/", 1)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)  # a stack upgraded from before views
    reader = TokenReader(store.view.url)
    with pytest.raises(AccessDenied) as denied:
        reader.access_token()
    message = str(denied.value)
    assert "s3:GetObject" in message  # a role without the reader policy
    assert "no access view yet" in message and f"schwab-tokens refresh --store {url}" in message
    assert s3_without_listbucket.rewritten > 0
    assert run_cli(["refresh", "--store", url], cli_env(emulator)).code == 0  # still fresh: repairs
    assert accepted(emulator, reader.access_token())


def _race(count: int, args: list[str], env: dict[str, str]) -> list[Any]:
    import subprocess

    from devkit.user import CLI, Run

    procs = [
        subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(count)
    ]
    return [Run(p.returncode, *p.communicate(timeout=120)) for p in procs]


# -- 3. Schwab's edge has a bad minute -----------------------------------------------------------
@pytest.mark.parametrize("fault", EDGE_400_FAULT_KINDS)
def test_a_400_without_a_verdict_is_temporary_and_touches_nothing(
    emulator: Emulator, store_url: str, fault: str
) -> None:
    login(store_from_url(store_url, Settings()), emulator)
    before = snapshot(store_url)
    emulator.set_fault(fault, count=1)
    run = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert run.code == 4, run.text  # temporary: not 3, "log in"
    assert "400 without a verdict" in run.err and "login" not in run.err
    assert snapshot(store_url) == before
    again = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert again.code == 0 and "refreshed" in again.out  # the token was alive all along
    assert not any(s in run.text + again.text for s in secrets_of(emulator))


# -- 4. another login replaced ours --------------------------------------------------------------
def test_another_login_to_the_app_is_named_as_the_cause(emulator: Emulator, store_url: str) -> None:
    """Schwab keeps one login per app: schwab-py's easy_client (or any tool) logging in to the
    same app kills our refresh token with days left. The CLI says so, and what to do."""
    login(store_from_url(store_url, Settings()), emulator)
    before = snapshot(store_url)
    other = oauth_for(emulator)  # another tool's login to the same app
    authorize, state = other.authorize_url(emulator.callback_url)
    other.exchange_code(parse_callback(follow_authorize(authorize), state), emulator.callback_url)
    run = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert run.code == 3, run.text
    assert "another login to this app replaced this one" in run.err
    assert f"schwab-tokens login --store {store_url}" in run.err
    assert "one login per app" in run.err and snapshot(store_url) == before


# -- 7. timing: retries sized to the lease ---------------------------------------------------------
@pytest.mark.parametrize(("unavailable", "outcome"), [(2, "refreshed"), (8, "failed")])
def test_retry_after_never_costs_a_good_answer(
    emulator: Emulator, s3_store_url: Any, aws_endpoint: str, unavailable: int, outcome: str
) -> None:
    """Schwab answers 503 with Retry-After 3 s; the lease lasts 20 s (18 s usable) and a try
    at most 4 s. Either the good answer comes in time and is stored, or the retries stop while
    there is still time, and Schwab is not asked again for an answer that could not be kept."""
    url = s3_store_url()
    login(store_from_url(url, Settings()), emulator)
    before = snapshot(url)
    emulator.configure(retry_after=3)
    emulator.set_fault("unavailable", count=unavailable)
    emulator.reset_counters()
    env = cli_env(
        emulator, SCHWAB_TOKENS_LEASE_TTL="20", SCHWAB_HTTP_TIMEOUT="2", SCHWAB_HTTP_RETRIES="9"
    )
    run = run_cli(["refresh", "--force", "--json", "--store", url], env)
    result = json.loads(run.out)
    assert result["outcome"] == outcome, run.text
    calls = emulator.calls_by_grant["refresh_token"]
    if outcome == "refreshed":
        assert calls == unavailable + 1 and snapshot(url) != before
        assert accepted(emulator, store_from_url(url, Settings()).read().token.access_token)
    else:
        # Tries every 3 s from 0: the last one starts at the latest 4 s (a try) + 3 s (its
        # Retry-After) before the 18 s are up, and the nine retries allowed are never all used.
        assert 3 <= calls <= 5 and snapshot(url) == before
        assert "no time left on the lease" in result["reason"]
    assert result["duration_ms"] < 20_000  # the run itself: every answer in within the lease
