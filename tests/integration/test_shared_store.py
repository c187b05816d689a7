"""Many writers and readers on one store: single flight, conditional writes, the warm reader.

S3 and Secrets Manager are moto's server over real HTTP (``AWS_ENDPOINT_URL``); refreshers are
separate processes, as the scheduled Lambda, a laptop's ``watch`` and a bot would be.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import schwab

from devkit.emulator.schwabpy import point_client_at_emulator
from devkit.user import CLI, cli_env, login
from schwab_tokens import aws
from schwab_tokens.reader import TokenReader
from schwab_tokens.stores import store_from_url
from tests.helpers import accepted, make_token
from tests.reliability.support import ACCESS_DENIED, WRITE_OP, Hooks


def test_twenty_refreshers_make_one_call(emulator, store_url: str) -> None:
    emulator.configure(access_lifetime=300)  # the login's token is already due
    first = login(store_from_url(store_url), emulator)
    emulator.configure(access_lifetime=1800)
    emulator.reset_counters()
    env = cli_env(emulator)
    procs = [
        subprocess.Popen(
            [*CLI, "refresh", "--json", "--store", store_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(20)
    ]
    results = [(p, *p.communicate(timeout=120)) for p in procs]
    outcomes = sorted(json.loads(out)["outcome"] for _, out, _ in results)
    assert [p.returncode for p, _, _ in results] == [0] * 20, [e for _, _, e in results]
    assert emulator.token_calls == 1
    assert outcomes.count("refreshed") == 1 and outcomes.count("still_fresh") == 19
    final = store_from_url(store_url).read().token
    assert final.creation_timestamp == first.creation_timestamp
    assert final.access_seconds_left() > 1700 and accepted(emulator, final.access_token)


def test_stale_writer_never_replaces_the_fresher_document(emulator, store_url: str) -> None:
    store = store_from_url(store_url)
    login(store, emulator)
    read, write = TokenReader(store_url).access_functions()
    stale = read()
    # Another writer (the refresher) stores a newer document after this reader read.
    other = store.read()
    store.write(
        other.token.refreshed({"access_token": "N" * 40, "expires_in": 1800}), other.version
    )
    before = store.read_raw()[:2]
    stale["token"]["access_token"] = "S" * 40
    write(stale, refresh_token=stale["token"]["refresh_token"])
    assert store.read_raw()[:2] == before  # bytes and version unchanged
    assert read()["token"]["access_token"] == "N" * 40  # the reader re-read the winner


def test_schwab_py_through_reader_hooks(emulator, store_url: str) -> None:
    store = store_from_url(store_url)
    emulator.configure(access_lifetime=200)  # under schwab-py's 300 s leeway: it refreshes
    first = login(store, emulator)
    emulator.configure(access_lifetime=1800)
    reader = TokenReader(store_url, reread_margin=0)
    client = schwab.auth.client_from_access_functions(
        emulator.app_key, emulator.app_secret, *reader.access_functions()
    )
    point_client_at_emulator(client, emulator.base_url)
    assert client.get_account_numbers().status_code == 200
    stored = store.read().token
    assert stored.creation_timestamp == first.creation_timestamp
    assert stored.access_token != first.access_token and stored.access_seconds_left() > 1700


@pytest.mark.parametrize("kind", ["s3", "secretsmanager"])
def test_warm_reader_makes_no_aws_call(emulator, kind: str, request) -> None:
    request.getfixturevalue("aws_endpoint")
    url = (
        request.getfixturevalue("s3_store_url")()
        if kind == "s3"
        else request.getfixturevalue("sm_store_url")()
    )
    emulator.configure(access_lifetime=400)
    login(store_from_url(url), emulator)
    calls: list[str] = []
    for service in ("s3", "secretsmanager", "ssm"):
        aws.client(service).meta.events.register(
            "before-call.*.*", lambda event_name, **_: calls.append(event_name)
        )
    reader = TokenReader(url, reread_margin=360)
    token = reader.access_token()
    assert len(calls) == 2  # the document, and its view (does it say the login is over?)
    assert all(reader.access_token() == token for _ in range(10_000))
    assert len(calls) == 2
    # Crossing the margin: one load, then warm again.
    reader.invalidate()  # same as waiting 40 s for the 400 s token to pass 360 s left
    reader.access_token()
    reader.access_token()
    assert len(calls) == 4


@pytest.mark.parametrize("kind", ["s3", "secretsmanager"])
def test_a_read_only_reader_takes_the_refreshers_token_when_schwab_py_refreshes(
    emulator, kind: str, request
) -> None:
    """A consumer with the stack's read-only policy: schwab-py's write is denied; nothing is
    raised into the bot, and the next read takes the store's (the refresher's) token."""
    request.getfixturevalue("aws_endpoint")
    url = (
        request.getfixturevalue("s3_store_url")()
        if kind == "s3"
        else request.getfixturevalue("sm_store_url")()
    )
    store = store_from_url(url)
    login(store, emulator)
    reader = TokenReader(url)
    read, write = reader.access_functions()
    document = read()
    hooks = Hooks()
    denials = hooks.answer(kind, url, WRITE_OP[kind], ACCESS_DENIED[kind])  # AWS's own 403
    ours = make_token("schwab-py")
    before = store.read_raw()[:2]
    try:
        write(ours.to_dict(), refresh_token=ours.refresh_token)
    finally:
        hooks.clear()
    assert denials, "the write never reached AWS"
    assert store.read_raw()[:2] == before
    # The cache was forgotten: what the refresher stores next is what the bot reads next.
    current = store.read()
    refresher = current.token.refreshed({"access_token": "N" * 40, "expires_in": 1800})
    store.write(refresher, current.version)
    assert document["token"]["access_token"] != "N" * 40
    assert read()["token"]["access_token"] == "N" * 40
