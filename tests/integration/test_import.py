"""``schwab-tokens import``: a schwab-py or Schwabdev user switches in one command, without
logging in again.

The files are made by the real clients' own token-writing code against the Schwab emulator:
schwab-py's manual login flow writes its token file, Schwabdev 4's ``Tokens`` its database. The
CLI runs as a subprocess into each store kind (a file; S3 and Secrets Manager on moto's server).
Every refusal checks that nothing was written.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import schwab
import schwabdev.tokens
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.emulator.schwabpy import SCHWAB_HOST, EmulatorTransport
from devkit.user import cli_env, follow_authorize, login, run_cli
from schwab_tokens.errors import InvalidTokenDocument, SchwabTokensError
from schwab_tokens.exports import SCHWABDEV_COLUMNS, write_schwabdev
from schwab_tokens.imports import import_login, read_login
from schwab_tokens.stores import store_from_url
from schwab_tokens.token import Token
from tests.helpers import (
    accepted,
    assert_no_secrets,
    make_token,
    secrets_of,
    snapshot,
    valid,
    view_of,
)

DAY = 86400


@pytest.fixture
def emulator() -> Any:
    """The emulated Schwab, with an app secret of a shape Schwabdev accepts (it checks that the
    key and the secret have even lengths and 32 characters together)."""
    emu = Emulator(
        app_secret="emu-app-secret-00001", callback_url=f"https://127.0.0.1:{free_port()}"
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


def _at_emulator(url: str, emulator: Emulator) -> str:
    return url.replace(f"https://{SCHWAB_HOST}", emulator.base_url)


def schwab_py_login(
    emulator: Emulator, path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> dict[str, Any]:
    """The token file schwab-py's own manual login flow writes (``client_from_manual_flow``):
    its OAuth client is sent to the emulator, and the person at the prompt pastes where the
    authorize page sent the browser."""

    class AtEmulator(OAuth2Client):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, transport=EmulatorTransport(emulator.base_url), **kwargs)

    def person(prompt: str = "") -> str:
        printed = capsys.readouterr().out
        url = next(line.strip() for line in printed.splitlines() if "/oauth/authorize?" in line)
        return follow_authorize(_at_emulator(url, emulator))

    monkeypatch.setattr(schwab.auth, "OAuth2Client", AtEmulator)
    monkeypatch.setattr("builtins.input", person)
    path.parent.mkdir(parents=True, exist_ok=True)
    client = schwab.auth.client_from_manual_flow(
        emulator.app_key, emulator.app_secret, emulator.callback_url, str(path)
    )
    client.session.close()
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def schwabdev_login(
    emulator: Emulator, path: Path, monkeypatch: pytest.MonkeyPatch, encryption: str | None = None
) -> dict[str, Any]:
    """The database Schwabdev 4's ``Tokens`` writes after its login: its token calls are sent
    to the emulator, and its ``call_for_auth`` plays the browser. Returns its one row."""

    def post(url: str, **kwargs: Any) -> requests.Response:
        return requests.post(_at_emulator(url, emulator), **kwargs)

    def browser(auth_url: str) -> str:
        # Schwab's authorize page takes Schwabdev's URL as it is; the emulator wants the
        # response_type that OAuth names, so the browser adds it.
        return follow_authorize(_at_emulator(auth_url, emulator) + "&response_type=code")

    monkeypatch.setattr(
        schwabdev.tokens,
        "requests",
        SimpleNamespace(post=post, RequestException=requests.RequestException),
    )
    with schwabdev.tokens.Tokens(
        emulator.app_key,
        emulator.app_secret,
        emulator.callback_url,
        tokens_db=str(path),
        encryption=encryption,
        call_for_auth=browser,
    ):
        pass
    return _row(path)


def _row(path: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        (row,) = db.execute("SELECT * FROM schwabdev").fetchall()
        return dict(row)


def _age(path: Path, seconds: float) -> None:
    """Move the login in a Schwabdev database ``seconds`` into the past."""
    issued = datetime.fromisoformat(_row(path)["refresh_token_issued"])
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE schwabdev SET refresh_token_issued = ?",
            ((issued - timedelta(seconds=seconds)).isoformat(),),
        )


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _stored(url: str) -> dict[str, Any]:
    return valid("token", store_from_url(url).read_raw().raw)


def _no_creds(emulator: Emulator) -> dict[str, str]:
    env = cli_env(emulator)
    del env["SCHWAB_APP_KEY"], env["SCHWAB_APP_SECRET"]
    return env


# -- switching ---------------------------------------------------------------------------------
def test_a_schwab_py_token_file_is_imported_checked_and_keeps_its_login_time(
    emulator: Emulator, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    path = tmp_path / "bot" / "token.json"
    written = schwab_py_login(emulator, path, monkeypatch, capsys)
    # The login was two days ago (a time no write of this run could make up).
    written["creation_timestamp"] -= 2 * DAY
    path.write_text(json.dumps(written))
    before = path.read_bytes()

    run = run_cli(["import", str(path), "--store", store_url], cli_env(emulator))

    assert run.code == 0, run.err
    assert_no_secrets(run.text, secrets_of(emulator))
    assert "Checked: Schwab refreshed it" in run.out
    stored = _stored(store_url)
    assert stored["creation_timestamp"] == written["creation_timestamp"]
    assert stored["token"]["refresh_token"] == written["token"]["refresh_token"]
    assert stored["token"]["access_token"] != written["token"]["access_token"]  # the check
    assert accepted(emulator, stored["token"]["access_token"])
    view_of(store_url)  # the consumers' view is in step
    # What to do with the old file: schwab-py reads the store's view instead.
    view = store_from_url(store_url).view.url
    assert f'client_from_access_functions(api_key, app_secret, *TokenReader("{view}")' in run.out
    assert f"delete {path}" in run.out
    assert path.read_bytes() == before  # only read

    # The imported login refreshes like any other and keeps its time.
    again = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert again.code == 0, again.err
    refreshed = _stored(store_url)
    assert refreshed["creation_timestamp"] == written["creation_timestamp"]
    assert refreshed["token"]["access_token"] != stored["token"]["access_token"]
    status = run_cli(["status", "--json", "--store", store_url], cli_env(emulator))
    assert json.loads(status.out)["refresh_expires_at"] == written["creation_timestamp"] + 7 * DAY


def test_a_schwabdev_database_is_imported_with_its_login_time(
    emulator: Emulator, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "schwabdev" / "tokens.db"
    schwabdev_login(emulator, path, monkeypatch)
    # The login was two days ago (a time no write of this run could make up).
    _age(path, 2 * DAY)
    row = _row(path)
    before = path.read_bytes()

    run = run_cli(["import", str(path), "--store", store_url], cli_env(emulator))

    assert run.code == 0, run.err
    assert_no_secrets(run.text, secrets_of(emulator))
    assert "Imported the schwabdev login" in run.out and "Checked" in run.out
    stored = _stored(store_url)
    # The login's time is the refresh token's issue time.
    assert stored["creation_timestamp"] == _epoch(row["refresh_token_issued"])
    assert stored["token"]["refresh_token"] == row["refresh_token"]
    assert accepted(emulator, stored["token"]["access_token"])
    view_of(store_url)
    assert f"export --format schwabdev --output PATH --store {store_url}" in run.out
    assert path.read_bytes() == before  # opened read-only

    again = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert again.code == 0, again.err
    assert _stored(store_url)["creation_timestamp"] == _epoch(row["refresh_token_issued"])


def test_without_the_app_credentials_the_login_is_imported_unchecked(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    path = tmp_path / "token.json"
    written = schwab_py_login(emulator, path, monkeypatch, capsys)
    url = str(tmp_path / "store" / "tokens.json")

    env = _no_creds(emulator)
    run = run_cli(["import", str(path), "--store", url], env)

    assert run.code == 0, run.err
    assert "Not checked with Schwab" in run.out
    assert f"`schwab-tokens refresh --store {url}`" in run.out
    assert emulator.calls_by_grant.get("refresh_token", 0) == 0
    assert _stored(url) == written  # as schwab-py wrote it
    view_of(url)
    # Importing it again changes nothing; the printed refresh is the check, and keeps the time.
    assert "already holds this login" in run_cli(["import", str(path), "--store", url], env).out
    assert run_cli(["refresh", "--force", "--store", url], cli_env(emulator)).code == 0
    assert _stored(url)["creation_timestamp"] == written["creation_timestamp"]
    # The file's older access token does not go back over the refreshed one.
    stale = run_cli(["import", str(path), "--store", url], env)
    assert stale.code == 0 and "nothing was written" in stale.out
    assert _stored(url)["token"]["access_token"] != written["token"]["access_token"]


def test_a_newer_login_in_the_store_is_kept_unless_forced(
    emulator: Emulator, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    path = tmp_path / "token.json"
    document = schwab_py_login(emulator, path, monkeypatch, capsys)
    # That login was an hour ago; then the user logged in with schwab-tokens, which (one login
    # per app) ended it.
    document["creation_timestamp"] -= 3600
    path.write_text(json.dumps(document))
    login(store_from_url(store_url), emulator)
    kept = snapshot(store_url)

    refused = run_cli(["import", str(path), "--store", store_url], cli_env(emulator))
    assert refused.code == 5, refused.text
    assert "holds a newer login" in refused.err and "--force" in refused.err
    assert snapshot(store_url) == kept

    # Forced, the login is checked first: Schwab refuses it, so the working one stays.
    forced = run_cli(["import", str(path), "--store", store_url, "--force"], cli_env(emulator))
    assert forced.code == 3, forced.text
    assert "another login to this app has ended it" in forced.err
    assert f"schwab-tokens login --store {store_url}" in forced.err
    assert snapshot(store_url) == kept

    # Forced and unchecked, it is replaced, as asked.
    blind = run_cli(["import", str(path), "--store", store_url, "--force"], _no_creds(emulator))
    assert blind.code == 0, blind.text
    assert _stored(store_url)["creation_timestamp"] == document["creation_timestamp"]


def test_a_login_schwab_refuses_is_not_imported(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    path = tmp_path / "token.json"
    schwab_py_login(emulator, path, monkeypatch, capsys)
    emulator.revoke_all()
    url = str(tmp_path / "tokens.json")

    run = run_cli(["import", str(path), "--store", url], cli_env(emulator))

    assert run.code == 3, run.text
    assert "Nothing was imported" in run.err and f"schwab-tokens login --store {url}" in run.err
    assert snapshot(url) is None


@pytest.mark.parametrize("client", ["schwab-py", "schwabdev"])
def test_a_login_past_its_seven_days_is_refused(
    client: str,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    eight_days_ago = time.time() - 8 * DAY
    if client == "schwab-py":
        path = tmp_path / "token.json"
        document = schwab_py_login(emulator, path, monkeypatch, capsys)
        document["creation_timestamp"] = int(eight_days_ago)
        path.write_text(json.dumps(document))
    else:
        path = tmp_path / "tokens.db"
        schwabdev_login(emulator, path, monkeypatch)
        _age(path, 8 * DAY)
    url = str(tmp_path / "store.json")
    calls = emulator.calls_by_grant.get("refresh_token", 0)

    run = run_cli(["import", str(path), "--store", url], cli_env(emulator))

    assert run.code == 3, run.text
    assert "ended 7 days after it" in run.err
    assert f"log in again with `schwab-tokens login --store {url}`" in run.err
    assert snapshot(url) is None
    assert emulator.calls_by_grant.get("refresh_token", 0) == calls  # Schwab was not asked


def test_logins_it_cannot_carry_on_name_the_login(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "store.json")
    token = make_token("old")
    # schwab-py before its token metadata wrote the bare token: the login's time is unknown.
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps(dict(token.token)))
    # Schwabdev encrypting its tokens at rest.
    encrypted = tmp_path / "encrypted.db"
    schwabdev_login(emulator, encrypted, monkeypatch, encryption=Fernet.generate_key().decode())
    # Schwabdev whose login never finished: its table is empty.
    empty = tmp_path / "empty.db"
    write_schwabdev(token, empty)
    with contextlib.closing(sqlite3.connect(empty)) as db, db:
        db.execute("DELETE FROM schwabdev")

    for path, why in (
        (legacy, "old schwab-py"),
        (encrypted, "encrypted"),
        (empty, "holds no login"),
    ):
        run = run_cli(["import", str(path), "--store", url], cli_env(emulator))
        assert run.code == 3, (path, run.text)
        assert why in run.err and f"schwab-tokens login --store {url}" in run.err
        assert snapshot(url) is None
        assert_no_secrets(run.text, {token.access_token, token.refresh_token})


# -- hostile files ---------------------------------------------------------------------------------
Build = Callable[[Path], bytes]
NOW = time.time()


def _json(document: Any) -> Build:
    """schwab-py's document as Python's json writes it (NaN and Infinity included)."""
    return lambda _tmp: json.dumps(document).encode()


def _token_with(**changes: Any) -> dict[str, Any]:
    document = make_token("hostile").to_dict()
    document["token"].update(changes)
    return document


def _login_with(**changes: Any) -> dict[str, Any]:
    return {**make_token("hostile").to_dict(), **changes}


def _database(*statements: str, parameters: tuple[Any, ...] = ()) -> Build:
    """A Schwabdev database of a valid login (our writer of its format), then ``statements``."""

    def build(tmp: Path) -> bytes:
        path = tmp / "tampered.db"
        write_schwabdev(make_token("hostile"), path)
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            for statement in statements:
                db.execute(statement, parameters if "?" in statement else ())
        return path.read_bytes()

    return build


HOSTILE: dict[str, tuple[Build, str]] = {
    "not JSON": (lambda _tmp: b"hello, world", "neither JSON nor SQLite"),
    "empty": (lambda _tmp: b"", "is empty"),
    "broken JSON": (lambda _tmp: b'{"creation_timestamp": 1', "not valid JSON"),
    "a JSON list": (lambda _tmp: b"[{}]", "must be a JSON object"),
    "70 KB": (_json(_token_with(id_token="x" * 70_000)), "more than a token document"),
    "NaN": (
        _json(_login_with(creation_timestamp=float("nan"))),
        "creation_timestamp is not a finite number",
    ),
    "Infinity": (
        _json(_token_with(expires_at=float("inf"))),
        "token.expires_at is not a finite number",
    ),
    "1e13": (_json(_login_with(creation_timestamp=1e13)), "creation_timestamp must be"),
    "a future login": (
        _json(_login_with(creation_timestamp=int(NOW + DAY))),
        "creation_timestamp is in the future",
    ),
    "an empty token": (_json(_token_with(access_token="")), "token.access_token"),
    "a 60 KB token": (_json(_token_with(refresh_token="r" * 60_000)), "token.refresh_token"),
    "an absurd lifetime": (_json(_token_with(expires_in=1e13)), "token.expires_in"),
    "an access token for a year": (
        _json(_token_with(expires_at=int(NOW + 365 * DAY))),
        "token.expires_at is more than a day ahead",
    ),
    "an export (no refresh token)": (
        _json(_login_with(token={"access_token": "a", "expires_at": 1})),
        "token.refresh_token",
    ),
    "db: another table": (
        _database("ALTER TABLE schwabdev RENAME TO tokens"),
        "no schwabdev table",
    ),
    "db: a view in its place": (
        _database(
            "ALTER TABLE schwabdev RENAME TO tokens",
            "CREATE VIEW schwabdev AS SELECT * FROM tokens",
        ),
        "no schwabdev table",
    ),
    "db: a column missing": (
        _database("ALTER TABLE schwabdev DROP COLUMN refresh_token_issued"),
        "has no column refresh_token_issued",
    ),
    "db: two rows": (
        _database("INSERT INTO schwabdev SELECT * FROM schwabdev"),
        "several rows",
    ),
    "db: a 70 KB token": (
        _database("UPDATE schwabdev SET access_token = ?", parameters=("a" * 70_000,)),
        "token.access_token is longer than",
    ),
    "db: an empty token": (
        _database("UPDATE schwabdev SET refresh_token = ''"),
        "token.refresh_token",
    ),
    "db: bytes for a token": (
        _database("UPDATE schwabdev SET access_token = X'00ff'"),
        "token.access_token",
    ),
    "db: a future login": (
        _database(
            "UPDATE schwabdev SET refresh_token_issued = ?",
            parameters=(datetime.fromtimestamp(NOW + DAY, UTC).isoformat(),),
        ),
        "refresh_token_issued is in the future",
    ),
    "db: a time that is not ISO-8601": (
        _database("UPDATE schwabdev SET access_token_issued = 'yesterday'"),
        "access_token_issued is not an ISO-8601 time",
    ),
    "db: a month that does not exist": (
        _database("UPDATE schwabdev SET refresh_token_issued = '2026-13-01T00:00:00+00:00'"),
        "refresh_token_issued is not an ISO-8601 time",
    ),
    "db: an absurd lifetime": (
        _database("UPDATE schwabdev SET expires_in = 1e13"),
        "expires_in must be a number of seconds",
    ),
    "db: SQLite's magic, then garbage": (
        lambda _tmp: b"SQLite format 3\x00" + b"\xff" * 4000,
        "cannot be read as a SQLite database",
    ),
    "db: 300 KB": (
        _database("CREATE TABLE padding (x)", "INSERT INTO padding VALUES (zeroblob(300000))"),
        "more than a Schwabdev tokens database holds",
    ),
}


def _hostile(case: str, tmp_path: Path) -> Path:
    path = tmp_path / "from-elsewhere"
    path.write_bytes(HOSTILE[case][0](tmp_path))
    return path


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_file_is_refused_naming_the_field_and_nothing_is_written(
    case: str, tmp_path: Path
) -> None:
    path = _hostile(case, tmp_path)
    store = store_from_url(str(tmp_path / "store" / "tokens.json"))

    with pytest.raises(InvalidTokenDocument) as refused:
        import_login(str(path), store)

    assert refused.value.exit_code == 5
    assert HOSTILE[case][1] in str(refused.value)
    assert not re.search(r"[0-9a-f]{32}", str(refused.value)), "a token was quoted"
    assert snapshot(store.url) is None and not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "case", ["not JSON", "db: another table", "70 KB", "NaN", "db: a future login"]
)
def test_the_cli_refuses_a_hostile_file_with_exit_5(
    case: str, emulator: Emulator, tmp_path: Path
) -> None:
    path = _hostile(case, tmp_path)
    url = str(tmp_path / "store" / "tokens.json")

    run = run_cli(["import", str(path), "--store", url], cli_env(emulator))

    assert run.code == 5, run.text
    assert HOSTILE[case][1] in run.err
    assert not re.search(r"[0-9a-f]{32}", run.text), "a token was quoted"
    assert snapshot(url) is None and not (tmp_path / "store").exists()
    assert emulator.token_calls == 0


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = ["access_token", "refresh_token", "expires_at", "expires_in", "id_token", "scope"]


def _login_or_refusal(path: Path) -> None:
    """What ``read_login`` makes of ``path``: a usable token, or our own error naming the
    problem (exit 3 or 5) without quoting a token; never another exception."""
    try:
        _kind, token = read_login(str(path))
    except SchwabTokensError as exc:
        assert exc.exit_code in (3, 5), exc
        assert not re.search(r"[0-9a-f]{32}", str(exc)), "a token was quoted"
    else:
        assert Token.parse(token.to_json()) == token
        assert token.creation_timestamp <= time.time() + 300


@settings(max_examples=100, deadline=None)
@given(
    top=st.dictionaries(st.sampled_from(["creation_timestamp", "token", "format"]), _VALUES),
    inner=st.dictionaries(st.sampled_from(_FIELDS), _VALUES),
)
def test_any_schwab_py_document_is_a_login_or_a_named_refusal(
    top: dict[str, Any], inner: dict[str, Any]
) -> None:
    document = make_token("fuzz").to_dict()
    document["token"].update(inner)
    document.update(top)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token.json"
        path.write_text(json.dumps(document))  # NaN and Infinity included
        _login_or_refusal(path)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(SCHWABDEV_COLUMNS),
        st.none()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.floats()
        | st.text(max_size=40)
        | st.binary(max_size=40)
        | st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat),
    )
)
def test_any_schwabdev_row_is_a_login_or_a_named_refusal(row: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        valid_one = Path(tmp) / "valid.db"
        write_schwabdev(make_token("fuzz"), valid_one)
        values = {**_row(valid_one), **row}
        # A file from elsewhere need not keep Schwabdev's NOT NULL and types: none here.
        path = Path(tmp) / "tokens.db"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(f"CREATE TABLE schwabdev ({', '.join(SCHWABDEV_COLUMNS)})")
            db.execute(
                f"INSERT INTO schwabdev VALUES ({', '.join('?' * len(SCHWABDEV_COLUMNS))})",
                [values[column] for column in SCHWABDEV_COLUMNS],
            )
        _login_or_refusal(path)


def test_an_access_view_is_neither_a_file_to_import_nor_a_store(
    emulator: Emulator, tmp_path: Path
) -> None:
    url = str(tmp_path / "tokens.json")
    store = store_from_url(url)
    login(store, emulator)
    view = store.view.url
    run = run_cli(["import", view, "--store", str(tmp_path / "other.json")], cli_env(emulator))
    assert run.code == 5 and "is an access view" in run.err, run.text
    run = run_cli(["import", url, "--store", view], cli_env(emulator))
    assert run.code == 2 and "not a token store" in run.err, run.text


def test_a_copy_of_a_login_a_run_found_over_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """The store holds login X and a run noted Schwab refusing it; the old tool's file holds X
    too, a little fresher. Without credentials nothing can check it: importing it would wipe
    the verdict and make status say healthy over a dead login. Refused, the store untouched."""
    from tests.fakes import token_at

    url = str(tmp_path / "tokens.json")
    store = store_from_url(url)
    now = time.time()
    login_time = now - 2 * DAY
    stored = token_at(now, login=login_time, left=600)
    store.write(stored, None)
    store.write_notes({"login": stored.creation_timestamp, "over": True}, None)
    fresher = token_at(now, login=login_time, left=1500, access="AT-fresher")
    old_file = tmp_path / "token.json"
    old_file.write_text(json.dumps(fresher.schwab_py_document()))
    before = snapshot(url)

    run = run_cli(["import", str(old_file), "--store", url], _no_creds(emulator))

    assert run.code == 3, run.text
    assert "a run found the login in" in run.err and "Nothing was imported" in run.err
    assert snapshot(url) == before
    assert run_cli(["status", "--store", url], _no_creds(emulator)).code == 3
