"""The hosted login, in-process: Function URL events to the login handler, AWS on moto, Schwab on
the emulator. Success, and every way it must refuse while changing nothing.

Each failure case checks the store byte for byte (token and notes) against what it held before.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from devkit.emulator import Emulator
from devkit.function_url import FunctionUrl
from devkit.user import follow_authorize, login, oauth_for
from schwab_tokens import aws, tickets
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.lambdas.login import handle
from schwab_tokens.login_flow import complete_login, record_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.settings import Settings
from schwab_tokens.stores import TokenStore, store_from_url
from tests.helpers import emulator_settings, make_token, view_of
from tests.s3_proxy import S3Proxy

DOMAIN = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
LOGIN_URL = f"https://{DOMAIN}/"
CALLBACK = LOGIN_URL + "callback"


def url_event(path: str, query: str = "", cookies: list[str] | None = None, method: str = "GET"):
    """A Lambda Function URL request (payload format 2.0), as AWS sends it."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": DOMAIN, "user-agent": "Mozilla/5.0 (iPhone)"},
        "requestContext": {
            "domainName": DOMAIN,
            "domainPrefix": DOMAIN.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            "requestId": "req-1",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    return event


@dataclass
class Phone:
    """A browser on a phone: keeps the cookies the login function sets."""

    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, query: str = "", **settings: Any) -> dict[str, Any]:
        jar = [f"{k}={v}" for k, v in self.cookies.items()]
        answer = handle(url_event(path, query, jar), **settings)
        for cookie in answer.get("cookies", []):
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return answer


@dataclass
class World:
    emulator: Emulator
    url: str
    settings: Settings
    store: TokenStore

    @property
    def key(self) -> bytes:
        return tickets.ticket_key(self.emulator.app_secret)

    def ticket(self, now: float | None = None, url: str | None = None) -> str:
        current = self.store.read().token
        return tickets.mint(
            self.key,
            url or self.url,
            current.creation_timestamp,
            time.time() if now is None else now,
        )

    def snapshot(self) -> str:
        raw = self.store.read_raw()
        notes, version = self.store.read_notes_raw()
        blob = raw.raw + b"|" + raw.version.encode() + b"|" + (notes or b"") + str(version).encode()
        return hashlib.sha256(blob).hexdigest()

    def start(self, phone: Phone, ticket: str, **kw: Any) -> dict[str, Any]:
        return phone.get("/start", f"ticket={ticket}", settings=self.settings, **kw)

    def at_schwab(self, answer: dict[str, Any]) -> str:
        """The browser follows the 302 to Schwab's authorize page, which redirects back."""
        assert answer["statusCode"] == 302, answer
        return follow_authorize(answer["headers"]["Location"])

    def back(self, phone: Phone, callback: str, **kw: Any) -> dict[str, Any]:
        parts = urlsplit(callback)
        assert f"https://{parts.netloc}{parts.path}" == CALLBACK
        return phone.get("/callback", parts.query, settings=self.settings, **kw)


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    moto_aws: None,
    emulator: Emulator,
    s3_store_url: Callable[..., str],
    sm_store_url: Callable[..., str],
    tmp_path: Path,
) -> Iterator[World]:
    """S3 unless a test asks for another kind (``indirect`` parametrisation)."""
    emulator.register_callback(CALLBACK)
    kind = getattr(request, "param", "s3")
    url = {
        "s3": s3_store_url,
        "secretsmanager": sm_store_url,
        "file": lambda: str(tmp_path / "tokens.json"),
    }[kind]()
    settings = emulator_settings(emulator, url, http_retries=0)
    store = store_from_url(url, settings)
    login(store, emulator)  # the first login, from a laptop: it notes the Schwab login
    yield World(emulator, url, settings, store)


def body(answer: dict[str, Any]) -> str:
    return str(answer["body"])


# -- success ------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", ["s3", "secretsmanager", "file"], indirect=True)
def test_a_phone_logs_in_again_through_the_link(world: World) -> None:
    before = world.store.read().token
    phone = Phone()
    started = world.start(phone, world.ticket())
    location = urlsplit(started["headers"]["Location"])
    query = parse_qs(location.query)
    assert location.path == "/v1/oauth/authorize"
    assert query["redirect_uri"] == [CALLBACK]
    assert query["client_id"] == [world.emulator.app_key]
    (cookie,) = started["cookies"]
    assert cookie.startswith("__Host-schwab-tokens-login=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie

    done = world.back(phone, world.at_schwab(started))
    assert done["statusCode"] == 200, body(done)
    assert "Logged in" in body(done) and "Your bots keep working until" in body(done)
    assert done["headers"]["Cache-Control"] == "no-store"
    assert done["headers"]["Referrer-Policy"] == "no-referrer"
    after = world.store.read().token
    assert after.creation_timestamp > before.creation_timestamp  # a new 7-day login
    assert after.refresh_token != before.refresh_token
    answer = requests.get(
        world.emulator.base_url + "/trader/v1/accounts/accountNumbers",
        headers={"Authorization": f"Bearer {after.access_token}"},
        timeout=5,
    )
    assert answer.status_code == 200
    notes, _ = world.store.read_notes()
    assert notes["login"] == after.creation_timestamp and notes["account"]
    assert phone.cookies == {}  # the nonce is cleared
    assert view_of(world.url)["access_token"] == after.access_token  # both hold to the schemas


# -- every refusal leaves the store as it was ------------------------------------------------------
def refused(world: World, answer: dict[str, Any], before: str, status: int, phrase: str) -> None:
    assert answer["statusCode"] == status, body(answer)
    assert phrase in body(answer), body(answer)
    assert world.snapshot() == before


def test_a_replayed_link_is_already_used(world: World) -> None:
    ticket = world.ticket()
    phone = Phone()
    assert world.back(phone, world.at_schwab(world.start(phone, ticket)))["statusCode"] == 200
    before = world.snapshot()
    refused(world, world.start(Phone(), ticket), before, 410, "already used")


def test_an_expired_link(world: World) -> None:
    ticket = world.ticket(now=time.time() - tickets.DEFAULT_VALID_SECONDS - 1)
    before = world.snapshot()
    refused(world, world.start(Phone(), ticket), before, 410, "has expired")


@pytest.mark.parametrize("kind", ["forged", "altered", "garbage", "empty"])
def test_a_forged_or_altered_link(world: World, kind: str) -> None:
    real = world.ticket()
    ticket = {
        "forged": tickets.mint(tickets.ticket_key("guessed secret"), world.url, 0, time.time()),
        "altered": real[:10] + ("x" if real[10] != "x" else "y") + real[11:],
        "garbage": "AAAA.BBBB",
        "empty": "",
    }[kind]
    before = world.snapshot()
    refused(world, world.start(Phone(), ticket), before, 403, "not valid")


def test_a_link_for_another_store(world: World) -> None:
    ticket = world.ticket(url="s3://another-bucket/schwab/tokens.json")
    before = world.snapshot()
    refused(world, world.start(Phone(), ticket), before, 403, "not valid")


def test_the_callback_needs_the_cookie_of_the_browser_that_started(world: World) -> None:
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    before = world.snapshot()
    refused(world, world.back(Phone(), callback), before, 400, "in this browser")
    stranger = Phone({"__Host-schwab-tokens-login": "another-nonce"})
    refused(world, world.back(stranger, callback), before, 400, "in this browser")


def test_a_state_from_another_start_is_refused(world: World) -> None:
    phone = Phone()
    first = world.at_schwab(world.start(phone, world.ticket()))
    world.start(phone, world.ticket())  # a second start: the phone now holds a new nonce
    before = world.snapshot()
    refused(world, world.back(phone, first), before, 400, "in this browser")


def test_schwab_denial_changes_nothing(world: World) -> None:
    phone = Phone()
    started = world.start(phone, world.ticket())
    world.emulator.set_fault("deny", count=1)
    before = world.snapshot()
    refused(world, world.back(phone, world.at_schwab(started)), before, 400, "Login cancelled")


def test_a_code_already_exchanged_is_refused(world: World) -> None:
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    thief = SchwabOAuth(
        world.emulator.app_key, world.emulator.app_secret, base_url=world.emulator.base_url
    )
    thief.exchange_code(code, CALLBACK)  # someone who intercepted the code used it first
    before = world.snapshot()
    refused(world, world.back(phone, callback), before, 400, "did not accept the sign-in")


def test_another_schwab_login_is_refused(world: World) -> None:
    phone = Phone()
    started = world.start(phone, world.ticket())
    world.emulator.login_as(["87654321"])  # the link's holder logs in as someone else
    before = world.snapshot()
    refused(world, world.back(phone, world.at_schwab(started)), before, 409, "share none with the")


@pytest.mark.parametrize("linked", [["11110002"], ["11110003", "11110009"]], ids=["subset", "mix"])
def test_a_login_that_links_other_accounts_of_the_same_login_is_accepted(
    world: World, linked: list[str]
) -> None:
    """Schwab's consent screen lets the user pick the accounts at each login: a subset, or a
    mix sharing one account, of the accounts noted at the last login is the same person."""
    world.emulator.login_as(["11110001", "11110002", "11110003"])
    login(world.store, world.emulator)  # the laptop login linked three accounts
    world.emulator.login_as(linked)  # this time, at Schwab, some of them
    phone = Phone()
    done = world.back(phone, world.at_schwab(world.start(phone, world.ticket())))
    assert done["statusCode"] == 200, body(done)
    notes, _ = world.store.read_notes()
    assert len(notes["account"].partition(":")[2].split(".")) == len(linked)  # noted afresh


def test_a_login_stored_meanwhile_wins(world: World) -> None:
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    time.sleep(1.01)
    login(world.store, world.emulator)  # a laptop login between start and callback
    before = world.snapshot()
    world.emulator.reset_counters()
    refused(world, world.back(phone, callback), before, 410, "already used")
    assert world.emulator.calls_by_grant == {}  # refused before Schwab's code was spent


def test_a_conflicting_write_of_another_login_is_not_overwritten(world: World) -> None:
    """Another login lands between the callback's read and its write (a botocore hook on the
    package's own client fires just before the token PUT, once)."""
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    s3 = aws.client("s3")
    fired: list[int] = []
    other = {}

    def before_put(params: dict[str, Any], **_: Any) -> None:
        if fired or params.get("Key") != urlsplit(world.url).path.lstrip("/"):
            return
        fired.append(1)
        time.sleep(1.01)
        other["token"] = login(store_from_url(world.url, world.settings), world.emulator)

    s3.meta.events.register_first("before-parameter-build.s3.PutObject", before_put)
    try:
        answer = world.back(phone, callback)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", before_put)
    assert fired
    assert answer["statusCode"] == 410, body(answer)
    assert world.store.read().token == other["token"]


def test_unreadable_credentials_change_nothing(world: World) -> None:
    broken = Settings(
        store_url=world.url,
        credentials_secret="ssm:/schwab-tokens/missing/credentials",
        api_base=world.emulator.base_url,
    )
    before = world.snapshot()
    answer = Phone().get("/start", f"ticket={world.ticket()}", settings=broken)
    refused(world, answer, before, 503, "not set up")


def test_a_login_never_noted_asks_for_the_cli(world: World) -> None:
    world.store.write_notes({}, world.store.read_notes()[1])
    before = world.snapshot()
    refused(world, world.start(Phone(), world.ticket()), before, 409, "on your computer")


def test_a_login_landing_mid_run_keeps_its_note_and_its_phone_link(world: World) -> None:
    """A laptop login lands while a scheduled run waits on Schwab (which then refuses the old
    refresh token: one login per app). The run must leave the new login's notes alone: its
    account note is what the next phone link checks (without it: 409, "on your computer")."""
    from schwab_tokens.lambdas.refresher import handle as refresher

    emulator = world.emulator
    emulator.configure(slow_seconds=2.0)
    emulator.set_fault("slow", count=1)
    calls = emulator.token_calls
    emulator.advance(1200)  # the access token is due: the run calls Schwab
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    outcome: list[Any] = []
    run = threading.Thread(
        target=lambda: outcome.append(refresher(event, world.settings, clock=emulator.now))
    )
    run.start()
    deadline = time.monotonic() + 10
    while emulator.token_calls == calls:  # the run's call is at Schwab, answering slowly
        assert time.monotonic() < deadline, "the run never called Schwab"
        time.sleep(0.01)
    oauth = oauth_for(emulator)  # the laptop's login, mid-run, at the world's time
    authorize, state = oauth.authorize_url(emulator.callback_url)
    newer = complete_login(
        oauth,
        world.store,
        follow_authorize(authorize),
        state,
        emulator.callback_url,
        now=emulator.now(),
    )
    run.join(timeout=30)
    # The run finds the new login in the store (it is what ended the old refresh token).
    assert outcome and outcome[0]["outcome"] == "still_fresh", outcome
    assert world.store.read().token.creation_timestamp == newer.creation_timestamp
    notes, _ = world.store.read_notes()
    assert notes["login"] == newer.creation_timestamp and notes["account"], notes
    assert "sent" not in notes  # no "login over" for the login the new one replaced
    done = world.back(phone := Phone(), world.at_schwab(world.start(phone, world.ticket())))
    assert done["statusCode"] == 200, body(done)


# -- what a stranger can learn -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/admin"),
        ("GET", "/start/"),
        ("POST", "/start"),
        ("PUT", "/callback"),
        ("HEAD", "/callback"),  # a link preview must never complete a login
    ],
)
def test_anything_else_is_404(world: World, method: str, path: str) -> None:
    answer = handle(url_event(path, "ticket=x", method=method), settings=world.settings)
    assert answer["statusCode"] == 404
    assert "schwab" not in body(answer).lower().replace("schwab-tokens", "")


def test_absurd_requests_get_a_page_and_change_nothing(world: World) -> None:
    before = world.snapshot()
    assert handle("not an event", settings=world.settings)["statusCode"] == 404
    assert (
        handle({"rawPath": 7, "requestContext": []}, settings=world.settings)["statusCode"] == 404
    )
    crowded = "&".join(f"f{i}=1" for i in range(50))  # far more fields than a login sends
    assert handle(url_event("/start", crowded), settings=world.settings)["statusCode"] == 400
    huge = f"ticket={'A' * 70_000}.{'B' * 43}"
    answer = handle(url_event("/start", huge), settings=world.settings)
    assert answer["statusCode"] == 403 and "A" * 100 not in body(answer)
    cookie = [f"__Host-schwab-tokens-login={'9' * 70_000}-x"]
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    late = handle(url_event("/callback", urlsplit(callback).query, cookie), settings=world.settings)
    assert late["statusCode"] == 400
    assert world.snapshot() == before


def test_a_bad_link_looks_the_same_whether_or_not_a_token_exists(
    world: World, s3_store_url: Callable[..., str]
) -> None:
    empty = s3_store_url()
    with_token = handle(url_event("/start", "ticket=AAAA.BBBB"), settings=world.settings)
    without = handle(
        url_event("/start", "ticket=AAAA.BBBB"), settings=world.settings.with_(store_url=empty)
    )
    assert with_token["statusCode"] == without["statusCode"] == 403
    assert with_token["body"] == without["body"]


def test_a_cli_paste_login_landing_here_shows_the_address_to_paste(world: World) -> None:
    oauth = SchwabOAuth(
        world.emulator.app_key, world.emulator.app_secret, base_url=world.emulator.base_url
    )
    authorize, _state = oauth.authorize_url(CALLBACK)  # as `login --paste --callback-url` does
    callback = follow_authorize(authorize)
    answer = world.back(Phone(), callback)
    assert answer["statusCode"] == 200
    assert "Paste this address in your terminal" in body(answer)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code.replace("@", "%40") in body(answer)


def test_a_refused_callback_leaves_the_link_usable(world: World) -> None:
    """Only a stored login spends a link: after another account was refused, the owner can
    still log in with the same link."""
    ticket = world.ticket()
    phone = Phone()
    started = world.start(phone, ticket)
    world.emulator.login_as(["87654321"])
    assert world.back(phone, world.at_schwab(started))["statusCode"] == 409
    world.emulator.login_as_default()  # the owner again
    phone = Phone()
    done = world.back(phone, world.at_schwab(world.start(phone, ticket)))
    assert done["statusCode"] == 200, body(done)


def test_an_altered_state_with_the_right_cookie_is_refused(world: World) -> None:
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    state = parse_qs(urlsplit(callback).query)["state"][0]
    _payload, _, mac = state.partition(".")
    other = tickets.mint(world.key, world.url, 1, time.time()).partition(".")[0]
    altered = callback.replace(state, f"{other}.{mac}")
    before = world.snapshot()
    refused(world, world.back(phone, altered), before, 400, "in this browser")


def test_a_sign_in_that_outlives_15_minutes_is_refused(world: World) -> None:
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    before = world.snapshot()
    later = time.time() + tickets.SIGN_IN_SECONDS + 5
    refused(world, world.back(phone, callback, clock=lambda: later), before, 410, "too long")


def test_a_login_whose_notes_cannot_be_written_still_succeeds(world: World) -> None:
    """The token is the login; the notes beside it only help the next phone login. A failure
    there (after the token was written) must not show "nothing changed"."""
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    s3 = aws.client("s3")
    notes_key = urlsplit(world.url).path.lstrip("/") + ".notes"

    def deny_notes(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == notes_key:
            error = {"Code": "AccessDenied", "Message": "Access Denied"}
            raise ClientError({"Error": error}, "PutObject")

    s3.meta.events.register_first("before-parameter-build.s3.PutObject", deny_notes)
    try:
        done = world.back(phone, callback)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", deny_notes)
    assert done["statusCode"] == 200, body(done)
    assert "Logged in" in body(done)
    # The next link cannot check the login and says so, rather than failing obscurely.
    refused(world, world.start(Phone(), world.ticket()), world.snapshot(), 409, "on your computer")


def test_a_new_login_is_always_later_than_the_one_it_replaces(world: World) -> None:
    """Even when the clock says otherwise (same second, or a laptop that ran fast), so the
    link that named the old login can never match the new one."""
    current = world.store.read().token
    token = make_token("phone", now=current.creation_timestamp - 600)
    stored = record_login(world.store, token, "key:account", replaces=current.creation_timestamp)
    assert stored.creation_timestamp == current.creation_timestamp + 1
    assert world.store.read().token == stored


def test_a_bug_still_answers_with_a_page(world: World) -> None:
    """An exception nobody anticipated (here from inside boto3's S3 write) ends on the generic
    page, with nothing but its kind in the log, and the store as it was."""
    phone = Phone()
    callback = world.at_schwab(world.start(phone, world.ticket()))
    s3 = aws.client("s3")

    def bug(**_: Any) -> None:
        raise RuntimeError("a bug somewhere")

    s3.meta.events.register_first("before-parameter-build.s3.PutObject", bug)
    before = world.snapshot()
    try:
        answer = world.back(phone, callback)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", bug)
    refused(world, answer, before, 500, "Something went wrong")


def test_the_paste_page_shows_only_what_schwab_sent(world: World) -> None:
    answer = world.back(Phone(), CALLBACK + "?code=C0DE%40&session=S&state=cli&note=%3Cb%3EMARK9Z")
    assert answer["statusCode"] == 200
    assert "C0DE" in body(answer) and "MARK9Z" not in body(answer)


# -- a request without a valid ticket or state costs no AWS call ---------------------------------
@dataclass
class Counted:
    """The login function behind a local Function URL, its app credentials in a Secrets Manager
    secret (as the stack keeps them) and AWS on moto's server behind a proxy that counts every
    request, whatever the service."""

    emulator: Emulator
    proxy: S3Proxy
    function: FunctionUrl
    store: TokenStore
    offset: list[float]

    def get(self, target: str, cookie: str = "") -> tuple[requests.Response, int]:
        """The answer to ``GET <LoginUrl>target``, and how many AWS requests it took."""
        aws.reset_clients()  # nothing cached: a credentials read shows in the count
        self.proxy.reset(list_bucket=True)
        answer = requests.get(
            self.function.login_url + target.lstrip("/"),
            headers={"Cookie": cookie} if cookie else {},
            allow_redirects=False,
            timeout=30,
            verify=False,  # the stand-in's certificate is self-signed
        )
        return answer, self.proxy.requests

    def ticket(self, now: float | None = None, key: bytes | None = None) -> str:
        return tickets.mint(
            key or tickets.ticket_key(self.emulator.app_secret),
            self.store.url,
            self.store.read().token.creation_timestamp,
            time.time() if now is None else now,
        )

    def started(self) -> tuple[str, str]:
        """A sign-in started in a browser: the callback Schwab sends it to, and its cookie."""
        answer, _ = self.get(f"start?ticket={self.ticket()}")
        assert answer.status_code == 302, answer.text
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
        return follow_authorize(answer.headers["Location"]), cookie


@pytest.fixture
def counted(
    emulator: Emulator,
    aws_endpoint: str,
    s3_proxy: S3Proxy,
    s3_store_url: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Counted]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_proxy.url)  # every service, not only S3
    aws.reset_clients()
    secret = "schwab-tokens/test/credentials"  # moto starts empty for each test
    store_credentials(secret, AppCredentials(emulator.app_key, emulator.app_secret))
    url = s3_store_url()
    login(store_from_url(url), emulator)
    settings = Settings(
        store_url=url,
        credentials_secret=secret,  # no key or secret in the settings: read like the stack's
        api_base=emulator.base_url,
        http_timeout=5,
        http_retries=0,
    )
    offset = [0.0]
    try:
        with FunctionUrl(settings, clock=lambda: time.time() + offset[0]) as function:
            emulator.register_callback(function.login_url + "callback")
            yield Counted(emulator, s3_proxy, function, store_from_url(url), offset)
    finally:
        aws.reset_clients()
        s3_proxy.reset(list_bucket=False)


NO_COOKIE = ""
BAD_COOKIE = "__Host-schwab-tokens-login=not-a-nonce"
#: Each request a stranger (or a stale tab) may send, the answer it got before this was checked
#: first, and what stands in for the real thing: {ticket} an expired ticket of this store,
#: {state} the state of a sign-in started in another browser, {cookie} that browser's cookie.
REFUSALS = {
    "no ticket": ("start", NO_COOKIE, 403, "not valid"),
    "empty ticket": ("start?ticket=", NO_COOKIE, 403, "not valid"),
    "malformed": ("start?ticket=AAAA.BBBB", NO_COOKIE, 403, "not valid"),
    "its form, not a ticket": (f"start?ticket={'A' * 40}.{'B' * 43}", NO_COOKIE, 403, "not valid"),
    "two tickets": ("start?ticket=A.B&ticket=C.D", NO_COOKIE, 400, "not complete"),
    "expired": ("start?ticket={ticket}", NO_COOKIE, 410, "has expired"),
    "unknown route": ("admin?ticket={ticket}", NO_COOKIE, 404, "nothing here"),
    "no state": ("callback", NO_COOKIE, 200, "Paste this address"),
    "no cookie": ("callback?code=C&state={state}", NO_COOKIE, 400, "in this browser"),
    "bad cookie": ("callback?code=C&state={state}", BAD_COOKIE, 400, "in this browser"),
    "no code": ("callback?state={state}", "{cookie}", 400, "Schwab sent no code"),
    "too late": ("callback?code=C&state={state}", "{cookie}", 410, "took too long"),
}


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("case", REFUSALS)
def test_a_request_without_a_valid_ticket_or_state_makes_no_aws_call(
    counted: Counted, case: str
) -> None:
    """Refused before the app credentials are read: a stranger's requests cost nothing and reach
    nothing. The answers are the pages these refusals always gave."""
    target, cookie, status, phrase = REFUSALS[case]
    callback, started = counted.started()
    fill = {
        "ticket": counted.ticket(now=time.time() - tickets.DEFAULT_VALID_SECONDS - 1),
        "state": parse_qs(urlsplit(callback).query)["state"][0],
        "cookie": started,
    }
    if case == "too late":
        counted.offset[0] = tickets.SIGN_IN_SECONDS + 5
    answer, calls = counted.get(target.format(**fill), cookie.format(**fill))
    assert answer.status_code == status, answer.text
    assert phrase in answer.text
    assert calls == 0


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_only_a_signature_check_reads_the_credentials(counted: Counted) -> None:
    """A ticket or state of the right form, unexpired, whose signature is wrong: checking a
    signature needs the key derived from the app secret, so the credentials are read (one
    request), and nothing else: the store is not looked at."""
    forged = counted.ticket(key=tickets.ticket_key("a guessed secret"))
    answer, calls = counted.get(f"start?ticket={forged}")
    assert (answer.status_code, calls) == (403, 1), answer.text
    assert "not valid" in answer.text
    callback, cookie = counted.started()
    query = urlsplit(callback).query
    state = parse_qs(query)["state"][0]
    altered = query.replace(state, state.partition(".")[0] + "." + "A" * 43)
    answer, calls = counted.get(f"callback?{altered}", cookie)
    assert (answer.status_code, calls) == (400, 1), answer.text
    assert "in this browser" in answer.text
    # The count is not blind: the genuine callback reads the credentials, then the store.
    answer, calls = counted.get(f"callback?{query}", cookie)
    assert answer.status_code == 200 and "Logged in" in answer.text
    assert calls > 2
