"""The fault matrix: every store crossed with every fault, one policy run per row and mode.

Stores: the local file; S3 and Secrets Manager on moto's server (``aws_endpoint``), reached over
real HTTP. Faults reach the package the way they do in production:

- the token endpoint misbehaves: the emulator's fault modes, or nothing listening at all;
- the store is empty, corrupt or incomplete: bytes put there by another tool;
- S3 answers a missing object 403, as it does to a role without ``s3:ListBucket``
  (``tests/s3_proxy.py`` in front of moto's server);
- the store refuses or throttles: botocore ``before-send`` hooks on the package's own client
  answer with AWS's error (nothing is sent to moto), and botocore parses and retries it as it
  would a real answer; a root-owned file with mode 000 read by a process without root's
  permission override (``setpriv``), for the file store;
- another writer acts in the middle of a run: a conflicting write or the store vanishing, done
  with a separate client from a ``before-call`` hook on the write, or (for a CLI process) by a
  thread that acts while the emulator holds the run's token call;
- another writer holds the lease for longer than the run waits.

Modes: ``cli`` is ``schwab-tokens refresh --force --json`` in a subprocess (exit code, JSON
outcome); ``handler`` is the refresher Lambda handler in-process (its JSON log line and EMF
metrics); ``run`` is ``refresh.run`` with a short lease wait (the handler's is 60 s). Each run
checks the outcome, the exit code or handler result, the log line and metric, and that the
store holds exactly the bytes and version it held before (or what the other writer left).
Rows are appended to ``$RELIABILITY_REPORT`` for scripts/reliability.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.user import CLI, cli_env, login, oauth_for
from schwab_tokens import aws
from schwab_tokens.access import AccessView
from schwab_tokens.errors import ExitCode
from schwab_tokens.lambdas.refresher import METRIC_FOR_OUTCOME
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.policy import run
from schwab_tokens.stores import store_from_url
from schwab_tokens.stores.file import FileStore
from schwab_tokens.token import Token
from tests.helpers import (
    accepted,
    assert_no_secrets,
    emf_metrics,
    invoke,
    log_records,
    put_raw,
    refresher_env,
    secrets_of,
)
from tests.reliability.support import (
    ABSENT,
    ACCESS_DENIED,
    FULL,
    NO_BUCKET,
    READ_OP,
    SERVER_ERROR,
    SERVICE,
    THROTTLED,
    WRITE_OP,
    Hooks,
    foreign_client,
    foreign_write,
    iter_json_lines,
    new_store,
    newer_document,
    record,
    state,
    stored_token,
    unprivileged,
    vanish,
    view_state,
)
from tests.requirements import require_tool

STORES = ("file", "s3", "secretsmanager")
AWS_STORES = ("s3", "secretsmanager")
EVENT = "force_refresh.json"
#: Longest any one run may take (a throttled AWS call retries 4 times with up to 15 s of backoff).
RUN_LIMIT_SECONDS = 40.0


@dataclass(frozen=True)
class Row:
    fault: str
    group: str
    outcome: str
    exit_code: int
    #: A phrase the reason must contain (per store kind when it differs).
    reason: str | Mapping[str, str]
    #: What the store holds before: a login's token, nothing, or bytes that are not a token.
    prepare: str = "login"
    #: What the store must hold after: what it held before, what another writer left, or a
    #: token we refreshed.
    after: str = "unchanged"
    #: Whether the run reaches Schwab's token endpoint (None: not checked, another writer calls
    #: it too).
    calls_schwab: bool | None = True
    stores: tuple[str, ...] = STORES
    #: Whether the next run, the fault gone, refreshes (not when only a new login can help).
    recovers: bool = True

    def reason_for(self, kind: str) -> str:
        return self.reason if isinstance(self.reason, str) else self.reason[kind]


def _token(fault: str, outcome: str, code: int, reason: str) -> Row:
    return Row(fault, "token endpoint", outcome, code, reason)


ROWS: list[Row] = [
    # -- Schwab's token endpoint ---------------------------------------------------------------
    _token("unsupported_token_type", "reauth_required", 3, "400 unsupported_token_type"),
    _token("invalid_grant", "reauth_required", 3, "400 invalid_grant"),
    _token("invalid_client", "failed", 5, "401 invalid_client"),
    _token("rate_limited", "failed", 4, "answered 429"),
    _token("server_error", "failed", 4, "answered 500"),
    _token("bad_gateway", "failed", 4, "answered 502"),
    _token("unavailable", "failed", 4, "answered 503"),
    _token("access_denied_html", "failed", 4, "403 (an HTML error page)"),
    _token("not_json", "failed", 4, "not JSON"),
    _token("missing_access_token", "failed", 4, "has no access_token"),
    _token("slow", "failed", 4, "read timeout"),
    _token("drop", "failed", 4, "could not reach"),
    Row(
        "connection_refused",
        "token endpoint",
        "failed",
        4,
        "connection refused",
        calls_schwab=False,
    ),
    # Schwab's edge and OAuth server in the wild: only a verdict on the refresh token is one.
    _token("html_400", "failed", 4, "400 without a verdict on the refresh token (an HTML"),
    _token("empty_400", "failed", 4, "400 without a verdict on the refresh token (an empty"),
    _token("unknown_400", "failed", 4, "400 without a verdict on the refresh token"),
    _token("invalid_client_400", "reauth_required", 3, "400 invalid_client"),
    # The same verdict with 401, as RFC 6749 has it: the status does not decide (one store: the
    # verdict is Schwab's answer, not the store's).
    Row(
        "refresh_token_invalid_401",
        "token endpoint",
        "reauth_required",
        3,
        "401 invalid_client",
        stores=("file",),
    ),
    # Another tool logged in to the same app before the run: Schwab ended our login.
    Row(
        "another_login",
        "token endpoint",
        "reauth_required",
        3,
        "another login to this app replaced this one",
        recovers=False,
    ),
    # Three 503s with Retry-After inside the lease: the fourth try's good answer is stored.
    Row("retry_after", "token endpoint", "refreshed", 0, "", after="refreshed"),
    # -- the store ------------------------------------------------------------------------------
    Row("no_document", "store", "reauth_required", 3, "no token at", "none", calls_schwab=False),
    # S3 for a role without s3:ListBucket (tests/s3_proxy.py): a missing object answers 403
    # AccessDenied, not 404. Missing notes, lease and view are still just absent. A missing
    # token is indistinguishable from a denied one: the stack grants its writers ListBucket on
    # the token's key (then it is "no_document" above), and without it the error names it.
    Row(
        "no_document_403",
        "store",
        "failed",
        5,
        "s3:ListBucket",
        "none",
        calls_schwab=False,
        stores=("s3",),
    ),
    Row("missing_keys_403", "store", "refreshed", 0, "", after="refreshed", stores=("s3",)),
    Row("corrupt_json", "store", "failed", 5, "not valid JSON", "corrupt", calls_schwab=False),
    Row(
        "missing_fields",
        "store",
        "failed",
        5,
        "missing token.refresh_token",
        "missing_fields",
        calls_schwab=False,
    ),
    Row(
        "access_denied",
        "store",
        "failed",
        5,
        {
            "file": "permission denied",
            "s3": "the role needs s3:GetObject",
            "secretsmanager": "the role needs secretsmanager:GetSecretValue",
        },
        calls_schwab=False,
    ),
    Row(
        "access_denied_write",
        "store",
        "failed",
        5,
        {
            "file": "cannot write in",
            "s3": "the role needs s3:PutObject",
            "secretsmanager": "the role needs secretsmanager:PutSecretValue",
        },
    ),
    Row(
        "throttling",
        "store",
        "failed",
        4,
        {"s3": "SlowDown", "secretsmanager": "ThrottlingException"},
        stores=AWS_STORES,
    ),
    Row("throttling_transient", "store", "refreshed", 0, "", after="refreshed", stores=AWS_STORES),
    Row(
        "aws_server_error",
        "store",
        "failed",
        4,
        {"s3": "InternalError", "secretsmanager": "InternalServiceError"},
        calls_schwab=False,
        stores=AWS_STORES,
    ),
    # The write lands but its answer is lost; botocore retries it. The token is stored either
    # way; the run should still say it refreshed (the metric and log the alarms rely on).
    Row(
        "write_answer_lost",
        "store",
        "refreshed",
        0,
        "",
        after="refreshed",
        stores=AWS_STORES,
    ),
    # Another writer stores a document between our read and our write. Whichever expires
    # later is kept (a fresh token is never thrown away because another writer won the race);
    # a newer login always wins.
    Row("conflicting_write", "store", "refreshed", 0, "", after="refreshed", calls_schwab=None),
    Row(
        "conflicting_write_stale",
        "store",
        "refreshed",
        0,
        "",
        after="refreshed",
        calls_schwab=None,
    ),
    Row(
        "conflicting_write_later", "store", "still_fresh", 0, "", after="theirs", calls_schwab=None
    ),
    Row(
        "conflicting_login",
        "store",
        "still_fresh",
        0,
        "",
        prepare="earlier_login",
        after="theirs",
        calls_schwab=None,
    ),
    Row(
        "conflicting_login_due",
        "store",
        "failed",
        4,
        "changed while refreshing",
        prepare="earlier_login",
        after="theirs",
        calls_schwab=None,
    ),
    Row(
        "vanished",
        "store",
        "reauth_required",
        3,
        "no token at",
        after="theirs",
        calls_schwab=None,
        stores=("file", "secretsmanager"),
    ),
    # A deleted bucket is not "no token": login cannot fix it, so it is a configuration error.
    Row(
        "vanished",
        "store",
        "failed",
        5,
        "does not exist",
        after="theirs",
        calls_schwab=None,
        stores=("s3",),
    ),
    Row("lease_busy", "store", "failed", 4, "did not finish within", calls_schwab=False),
]

#: Faults injected with a botocore hook (AWS) or file permissions (file).
HOOKED = {"access_denied", "access_denied_write", "throttling", "throttling_transient"}
HOOKED |= {"aws_server_error", "write_answer_lost"}
#: Faults where another writer acts in the middle of the run.
MID_RUN = {"conflicting_write", "conflicting_write_stale", "conflicting_write_later", "vanished"}
MID_RUN |= {"conflicting_login", "conflicting_login_due"}
#: Run with S3 behind the proxy that answers a missing object 403, as S3 does without ListBucket.
BEHIND_403_PROXY = {"no_document_403", "missing_keys_403"}
#: What the other writer's refreshed document claims for ``expires_in`` (None: Schwab's).
THEIR_LIFETIME = {
    "conflicting_write": 1700,  # expires before ours: refreshed a little earlier
    "conflicting_write_stale": 60,
    "conflicting_write_later": 3600,  # claims to expire after ours
}


def modes(row: Row, kind: str) -> tuple[str, ...]:
    if row.fault == "lease_busy":
        return ("run",)  # the CLI and the handler wait 60 s for a busy lease
    if row.fault in HOOKED and kind != "file":
        return ("handler",)  # a hook lives in the process it hooks
    if not FULL:
        # ``make test``: one of the two per row, taking turns down the table and across the
        # stores, so both paths meet every store; ``make reliability`` runs both everywhere.
        turn = (ROWS.index(row) + STORES.index(kind)) % 2
        return (("cli", "handler")[turn],)
    return ("cli", "handler")


#: Rows that find a bug not fixed yet: kept, and expected to fail until the fix lands. (Empty:
#: ("s3", "write_answer_lost") was fixed in refresh._run, which now recognises its own write.)
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _case(row: Row, kind: str) -> Any:
    reason = KNOWN_BUGS.get((kind, row.fault))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(row, kind, id=f"{kind}-{row.fault}", marks=marks)


CASES = [_case(row, kind) for row in ROWS for kind in row.stores]


# -- one run ------------------------------------------------------------------------------------
@dataclass
class Ctx:
    kind: str
    mode: str
    url: str
    emulator: Emulator
    hooks: Hooks = field(default_factory=Hooks)
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)
    child: bool = False
    theirs: str | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    #: A folder of the test's own, outside the store.
    scratch: Path = field(default_factory=Path)
    errors: list[BaseException] = field(default_factory=list)


@dataclass
class Observed:
    outcome: str | None
    reason: str
    text: str
    exit_code: int | None = None
    raised: bool | None = None
    result_outcome: str | None = None
    metrics: dict[str, list[float]] = field(default_factory=dict)
    log: dict[str, Any] | None = None


def base_env(emulator: Emulator, url: str) -> dict[str, str]:
    return refresher_env(
        emulator, url, SCHWAB_APP_KEY=emulator.app_key, SCHWAB_APP_SECRET=emulator.app_secret
    )


def prepare(row: Row, url: str, emulator: Emulator) -> None:
    if row.prepare == "login":
        login(store_from_url(url), emulator)
    elif row.prepare == "earlier_login":
        # A login a minute ago (its times moved back), so that a login during the run is newer.
        store = store_from_url(url)
        token = login(store, emulator)
        earlier = Token(
            token.creation_timestamp - 60,
            {**token.token, "expires_at": token.access_expires_at - 60},
        )
        store.write(earlier, store.version())
        # The view goes back with it (sync_view itself never moves a view back in time).
        store.view.put(AccessView.from_token(earlier), store.view.current()[1])
    elif row.prepare == "corrupt":
        put_raw(url, "{not json")
    elif row.prepare == "missing_fields":
        put_raw(url, '{"creation_timestamp": 1, "token": {"access_token": "a", "expires_at": 1}}')


def mid_run(ctx: Ctx, action: Callable[[], None]) -> None:
    """Run ``action`` while the run under test waits for Schwab: its token call is held for a
    second and a half by the emulator (after the run read the store and took the lease), and
    the action starts as soon as that call arrives."""
    emulator = ctx.emulator
    base = emulator.token_calls
    if ctx.kind != "file":
        foreign_client(SERVICE[ctx.kind])  # ready before the run starts
    emulator.configure(slow_seconds=1.5)
    emulator.set_fault("slow", count=1)
    ctx.env["SCHWAB_HTTP_TIMEOUT"] = "5"

    def act() -> None:
        deadline = time.monotonic() + 60
        while emulator.token_calls <= base:
            if time.monotonic() > deadline:
                ctx.errors.append(AssertionError("the run never called Schwab"))
                return
            time.sleep(0.005)
        try:
            action()
        except BaseException as exc:  # reported by the test, not lost in the thread
            ctx.errors.append(exc)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    ctx.threads.append(thread)


def inject(row: Row, ctx: Ctx) -> None:
    kind, url, emulator, fault = ctx.kind, ctx.url, ctx.emulator, row.fault
    if row.group == "token endpoint":
        if fault == "connection_refused":
            ctx.env["SCHWAB_API_BASE"] = f"http://127.0.0.1:{free_port()}"
        elif fault == "another_login":
            login(FileStore(ctx.scratch / f"another-{ctx.mode}.json"), emulator)
        elif fault == "retry_after":
            emulator.configure(retry_after=1)
            emulator.set_fault("unavailable", count=3)
            ctx.env["SCHWAB_HTTP_RETRIES"] = "3"
            ctx.undo.append(lambda: emulator.configure(retry_after=None))
        else:
            if fault == "slow":
                emulator.configure(slow_seconds=1.5)  # past SCHWAB_HTTP_TIMEOUT=1
            emulator.set_fault(fault)
        return
    if fault == "missing_keys_403":
        bucket, key = url.removeprefix("s3://").split("/", 1)
        view_key = store_from_url(url).view.url.removeprefix(f"s3://{bucket}/")
        for gone in (f"{key}.notes", view_key):  # and no lease, as between runs
            aws.client("s3").delete_object(Bucket=bucket, Key=gone)
        return
    if fault in HOOKED and kind == "file":
        prefix = unprivileged()
        if prefix is None:  # root without util-linux's setpriv: file modes do not apply
            require_tool("setpriv", "apt-get install util-linux", None)
            return
        path = Path(url)
        target, mode, restore = (
            (path, 0o000, 0o600) if fault == "access_denied" else (path.parent, 0o500, 0o700)
        )
        target.chmod(mode)
        ctx.undo.append(lambda: target.chmod(restore))
        ctx.prefix = prefix
        ctx.child = bool(prefix)  # the in-process handler runs as full root
        return
    if fault == "access_denied":
        ctx.hooks.answer(kind, url, READ_OP[kind], ACCESS_DENIED[kind])
    elif fault == "access_denied_write":
        ctx.hooks.answer(kind, url, WRITE_OP[kind], ACCESS_DENIED[kind])
    elif fault == "throttling":
        ctx.hooks.answer(kind, url, WRITE_OP[kind], THROTTLED[kind])
    elif fault == "throttling_transient":
        ctx.hooks.answer(kind, url, READ_OP[kind], THROTTLED[kind], times=2)
    elif fault == "write_answer_lost":
        ctx.hooks.lose_write_answer(kind, url)
    elif fault == "aws_server_error":
        ctx.hooks.answer(kind, url, READ_OP[kind], SERVER_ERROR[kind])
    elif fault in MID_RUN:

        def action() -> None:
            if fault == "vanished":
                vanish(url)
            elif fault.startswith("conflicting_login"):
                if fault == "conflicting_login_due":
                    emulator.configure(access_lifetime=300)  # inside the 600 s margin
                foreign_write(url, login(FileStore(ctx.scratch / "login.json"), emulator).to_json())
                emulator.configure(access_lifetime=1800)
            else:
                lifetime = THEIR_LIFETIME.get(fault)
                foreign_write(url, newer_document(url, emulator, expires_in=lifetime).to_json())
            ctx.theirs = state(url)

        if kind != "file" and ctx.mode == "handler":
            ctx.hooks.before_write(kind, url, action)
        else:
            mid_run(ctx, action)


def observe(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> Observed:
    env = cli_env(ctx.emulator, **ctx.env)
    if ctx.mode == "cli":
        done = subprocess.run(
            [*ctx.prefix, *CLI, "refresh", "--force", "--json", "--store", ctx.url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        data = next((d for d in iter_json_lines(done.stdout) if "outcome" in d), {})
        return Observed(
            outcome=data.get("outcome"),
            reason=str(data.get("reason") or done.stderr),
            text=done.stdout + done.stderr,
            exit_code=done.returncode,
        )
    if ctx.mode == "run":
        holder = store_from_url(ctx.url)  # another writer, mid-refresh
        with holder.lease(30, 5):
            outcome = run(
                store_from_url(ctx.url), endpoint(ctx.emulator), force=True, lease_wait=0.5
            )
        reason = str(outcome.to_dict()["reason"] or "")
        return Observed(outcome.outcome, reason, reason, exit_code=outcome.exit_code)
    if ctx.child:
        done = subprocess.run(
            [*ctx.prefix, sys.executable, "-m", "tests.reliability.handler_child", EVENT],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        summary = list(iter_json_lines(done.stderr))[-1]
        result, raised, out = summary["result"], summary["error"] is not None, done.stdout
        text = done.stdout + done.stderr
    else:
        result, error, out = invoke(capsys, EVENT)
        raised = error is not None
        text = out + ("" if error is None else f"{error}\n{error!r}")
    logs = [r for r in log_records(out) if r.get("token")]
    log = logs[-1] if logs else None
    return Observed(
        outcome=None if log is None else log.get("outcome"),
        reason=str((log or {}).get("reason") or ""),
        text=text + json.dumps(result),
        raised=raised,
        result_outcome=None if result is None else result.get("outcome"),
        metrics=emf_metrics(out),
        log=log,
    )


def endpoint(emulator: Emulator) -> Callable[[], SchwabOAuth]:
    return lambda: oauth_for(emulator, timeout=5, retries=0)


def check(row: Row, ctx: Ctx, seen: Observed, before: str, after: str) -> list[str]:
    """Every way this run differs from what the row expects."""
    problems = []
    if seen.outcome != row.outcome:
        problems.append(f"outcome {seen.outcome!r}, expected {row.outcome!r}")
    if row.reason_for(ctx.kind) not in seen.reason:
        problems.append(f"reason {seen.reason!r} lacks {row.reason_for(ctx.kind)!r}")
    if ctx.mode in ("cli", "run") and seen.exit_code != row.exit_code:
        problems.append(f"exit code {seen.exit_code}, expected {row.exit_code}")
    if ctx.mode == "handler":
        # A temporary failure is reported (log, metric, e-mail after 30 minutes), not raised.
        must_raise = row.outcome == "failed" and row.exit_code != ExitCode.TEMPORARY
        if seen.raised != must_raise:
            problems.append(f"handler raised={seen.raised}, expected {must_raise}")
        if not must_raise and seen.result_outcome != row.outcome:
            problems.append(f"handler returned outcome {seen.result_outcome!r}")
        metric = METRIC_FOR_OUTCOME[row.outcome]
        if seen.metrics.get(metric) != [1]:
            problems.append(f"metric {metric}={seen.metrics.get(metric)}, expected [1]")
        if seen.metrics.get("SuccessfulRun") != [0 if row.outcome == "failed" else 1]:
            problems.append(f"metric SuccessfulRun={seen.metrics.get('SuccessfulRun')}")
        if seen.log is None:
            problems.append("no JSON log line for the token")
    if row.after == "unchanged" and after != before:
        problems.append("the stored document or its version changed")
    if row.after == "theirs":
        if ctx.theirs is None:
            problems.append("the other writer never acted")
        elif after != ctx.theirs:
            problems.append("the other writer's document was replaced")
        if row.fault == "vanished" and ctx.theirs not in (ABSENT, NO_BUCKET):
            problems.append(f"the store did not vanish ({ctx.theirs})")
    if row.after == "refreshed":
        if after == before:
            problems.append("the document was not refreshed")
        elif not accepted(ctx.emulator, stored_token(ctx.url).access_token):
            problems.append("the refreshed access token is refused by Schwab")
    called = ctx.emulator.calls_by_grant.get("refresh_token", 0) > 0
    if row.calls_schwab is not None and called != row.calls_schwab:
        problems.append(f"token endpoint called={called}, expected {row.calls_schwab}")
    return problems


@contextlib.contextmanager
def injected(row: Row, ctx: Ctx) -> Iterator[None]:
    try:
        inject(row, ctx)
        yield
    finally:
        ctx.hooks.clear()
        for thread in ctx.threads:
            thread.join(timeout=30)
        ctx.emulator.clear_faults()
        while ctx.undo:
            ctx.undo.pop()()


@pytest.mark.parametrize(("row", "kind"), CASES)
def test_fault(
    row: Row,
    kind: str,
    emulator: Emulator,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failures: list[str] = []
    for n, mode in enumerate(modes(row, kind)):
        url = new_store(kind, request, tmp_path, n)
        prepare(row, url, emulator)
        ctx = Ctx(kind, mode, url, emulator, scratch=tmp_path)
        ctx.env = base_env(emulator, url)
        proxy = None
        if row.fault in BEHIND_403_PROXY:
            proxy = request.getfixturevalue("s3_proxy")
            proxy.reset(list_bucket=False)
            ctx.env["AWS_ENDPOINT_URL_S3"] = proxy.url
        for name, value in ctx.env.items():
            monkeypatch.setenv(name, value)
        emulator.configure(slow_seconds=5.0)
        emulator.reset_counters()
        before = state(url)
        started = time.monotonic()
        with injected(row, ctx):
            for name, value in ctx.env.items():  # the in-process handler reads os.environ
                monkeypatch.setenv(name, value)
            if proxy is not None:
                aws.reset_clients()  # clients made before (by prepare) keep their endpoint
            seen = observe(ctx, capsys)
        seconds = time.monotonic() - started
        if proxy is not None:  # the test itself reads the store as one allowed to list it
            monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
            aws.reset_clients()
        after = state(url)
        view = view_state(url)
        problems = check(row, ctx, seen, before, after)
        if proxy is not None and not proxy.rewritten:
            problems.append("S3 never answered 403 for a missing object: the proxy was not used")
        if view.startswith("WRONG"):
            problems.append(view)
        problems += [f"the other writer failed: {exc!r}" for exc in ctx.errors]
        if seconds > RUN_LIMIT_SECONDS:
            problems.append(f"the run took {seconds:.1f} s")
        assert_no_secrets(seen.text, secrets_of(emulator))
        recovered = None
        if row.after == "unchanged" and row.prepare == "login" and row.recovers:
            # The fault gone, the next run refreshes at once: no lease was left behind.
            monkeypatch.setenv("SCHWAB_API_BASE", emulator.base_url)
            again = run(store_from_url(url), endpoint(emulator), force=True, lease_wait=5)
            recovered = again.outcome == "refreshed" and view_state(url) == "matches"
            if not recovered:
                problems.append(
                    f"the next run ended {again.outcome}: {again.error}; view {view_state(url)}"
                )
        record(
            "fault",
            store=kind,
            fault=row.fault,
            group=row.group,
            mode=mode,
            expected=row.outcome,
            outcome=seen.outcome,
            exit_code=seen.exit_code,
            handler=None if seen.raised is None else ("raised" if seen.raised else "returned"),
            metric=METRIC_FOR_OUTCOME.get(row.outcome) if mode == "handler" else None,
            bytes_unchanged=None
            if row.after == "refreshed"
            else after == (ctx.theirs if row.after == "theirs" else before),
            recovered=recovered,
            view=view,
            seconds=round(seconds, 2),
            passed=not problems,
            problems=problems,
            known_bug=KNOWN_BUGS.get((kind, row.fault)),
        )
        failures += [f"{mode}: {p}" for p in problems]
    assert not failures, failures
