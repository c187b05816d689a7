"""Secret hygiene for the whole suite: no token, code or app secret in anything a test produced.

A pytest plugin (registered in ``tests/conftest.py``'s ``pytest_plugins``). For every test it
collects what a user or a log shipper could see:

- every log record (a handler on the root logger and on the ``schwab_tokens`` and powertools'
  ``schwab-tokens`` loggers; the ``schwab_tokens`` logger is lowered to DEBUG while the test
  runs, so a secret in a debug message is caught too);
- the captured stdout, stderr and log of every phase (the report's ``Captured ...`` sections,
  whether or not the test asked for ``capsys``/``capfd``), plus whatever the test itself read
  with ``capsys.readouterr()`` / ``capfd.readouterr()`` (which the report no longer holds);
- ``str()`` and ``repr()`` of every exception our code raised: the one that ended the test and
  the ones a test caught with ``pytest.raises``, with their ``__cause__``/``__context__`` chain.

The secrets it looks for are every code and token the emulator issued and the app secret of
every ``Emulator`` created during the test or running when it started (``Emulator.__init__`` is
wrapped: the emulator is test code, the library is not touched), the emulator's default app
secret, and ``SCHWAB_APP_SECRET`` when a test configured one. A leak fails the test with the
kind of secret and where it appeared, naming the secret only by its fingerprint (the same
sha256 prefix ``schwab-tokens status`` prints).

CLI subprocesses are outside pytest's capture: tests that run the CLI check its output with
``tests.helpers.assert_no_secrets``.

With ``RELIABILITY_REPORT=<file>`` the session appends one JSON line to that file:
``{"kind": "leak_check", "checked": <tests>, "texts": <texts scanned>, "leaked": <findings>}``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import logging
import os
import traceback
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Shorter strings would match ordinary words; every real secret here is far longer.
MIN_SECRET_LENGTH = 8
DEFAULT_APP_SECRET = "emu-app-secret-0001"
_LIBRARY_LOGGER = "schwab_tokens"
#: powertools' logger (the refresher's service name): watched through a filter, see _Collector.
TAPPED_LOGGERS = ("schwab-tokens",)


def fingerprint(secret: str) -> str:
    """The library's fingerprint: enough to tell which secret leaked, useless to an attacker."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:10]


# -- per-config and per-test state ------------------------------------------------------------
@dataclass
class _Totals:
    checked: int = 0
    texts: int = 0
    leaked: int = 0


@dataclass
class _TestState:
    emulators: list[Any] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    read_outputs: list[tuple[str, str]] = field(default_factory=list)
    raised: list[Any] = field(default_factory=list)  # ExceptionInfo from pytest.raises
    scanned_sections: set[str] = field(default_factory=set)
    scanned_records: int = 0
    scanned_reads: int = 0
    scanned_raised: int = 0
    checked_exceptions: set[int] = field(default_factory=set)


_TOTALS = pytest.StashKey[_Totals]()
_STATE = pytest.StashKey[_TestState]()
#: What pytest_configure wrapped, to put back at pytest_unconfigure: (owner, name, original).
_UNDO = pytest.StashKey[list[tuple[Any, str, Any]]]()

#: The tests running now, innermost last (a ``pytester`` run nests one inside another).
_CURRENT: list[_TestState] = []
#: Every emulator created in this process, to find the ones running when a test starts.
_ALL_EMULATORS: weakref.WeakSet[Any] = weakref.WeakSet()


class _Collector(logging.Handler):
    """Keeps every record it sees for one test (once, whichever logger it came through).

    On the root and ``schwab_tokens`` loggers it is a handler. On powertools' ``schwab-tokens``
    logger it is a logger *filter* that lets everything through: powertools takes that logger's
    first handler for its own formatter, so an extra handler there would break it.
    """

    def __init__(self, state: _TestState) -> None:
        super().__init__(level=logging.NOTSET)
        self.state = state
        self._seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.keep(record)

    def keep(self, record: logging.LogRecord) -> bool:
        if id(record) not in self._seen:
            self._seen.add(id(record))
            self.state.records.append(record)
        return True


class _LoggerTap(logging.Filter):
    def __init__(self, collector: _Collector) -> None:
        super().__init__()
        self.collector = collector

    def filter(self, record: logging.LogRecord) -> bool:
        return self.collector.keep(record)


# -- wrapping test helpers (never the library) ------------------------------------------------
def _wrap_emulator() -> tuple[type, Any] | None:
    try:
        from devkit.emulator.server import Emulator
    except ImportError:  # the plugin used outside this repository: nothing to learn from
        return None
    original = Emulator.__init__
    if getattr(original, "_secret_hygiene", False):
        return None  # an outer session (pytester) already wrapped it

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _ALL_EMULATORS.add(self)
        if _CURRENT:
            _CURRENT[-1].emulators.append(self)

    __init__._secret_hygiene = True  # type: ignore[attr-defined]
    Emulator.__init__ = __init__  # type: ignore[method-assign]
    return Emulator, original


def _wrap_readouterr() -> tuple[type, Any] | None:
    original = pytest.CaptureFixture.readouterr
    if getattr(original, "_secret_hygiene", False):
        return None

    @functools.wraps(original)
    def readouterr(self: Any) -> Any:
        result = original(self)
        if _CURRENT:
            _CURRENT[-1].read_outputs.append(
                ("stdout read by the test (readouterr)", str(result.out))
            )
            _CURRENT[-1].read_outputs.append(
                ("stderr read by the test (readouterr)", str(result.err))
            )
        return result

    readouterr._secret_hygiene = True  # type: ignore[attr-defined]
    pytest.CaptureFixture.readouterr = readouterr  # type: ignore[method-assign]
    return pytest.CaptureFixture, original


class _RaisesRecorder:
    """``pytest.raises(...)`` as a context manager, remembering the ``ExceptionInfo`` it fills."""

    def __init__(self, inner: Any, sink: list[Any]) -> None:
        self._inner = inner
        self._sink = sink

    def __enter__(self) -> Any:
        info = self._inner.__enter__()
        self._sink.append(info)
        return info

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrap_raises() -> tuple[Any, Any] | None:
    original = pytest.raises
    if getattr(original, "_secret_hygiene", False):
        return None

    @functools.wraps(original)
    def raises(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not _CURRENT:
            return result
        sink = _CURRENT[-1].raised
        if isinstance(result, pytest.ExceptionInfo):  # the call form: already filled
            sink.append(result)
            return result
        return _RaisesRecorder(result, sink)

    raises._secret_hygiene = True  # type: ignore[attr-defined]
    pytest.raises = raises
    return pytest, original


# -- hooks --------------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TOTALS] = _Totals()
    undo = []
    emulator = _wrap_emulator()
    if emulator is not None:
        undo.append((emulator[0], "__init__", emulator[1]))
    capture = _wrap_readouterr()
    if capture is not None:
        undo.append((capture[0], "readouterr", capture[1]))
    raises = _wrap_raises()
    if raises is not None:
        undo.append((raises[0], "raises", raises[1]))
    config.stash[_UNDO] = undo


def pytest_unconfigure(config: pytest.Config) -> None:
    for owner, name, original in reversed(config.stash.get(_UNDO, [])):
        setattr(owner, name, original)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    state = _TestState(emulators=[e for e in list(_ALL_EMULATORS) if _running(e)])
    item.stash[_STATE] = state
    collector = _Collector(state)
    tap = _LoggerTap(collector)
    handled = [logging.getLogger(), logging.getLogger(_LIBRARY_LOGGER)]
    tapped = [logging.getLogger(name) for name in TAPPED_LOGGERS]
    for logger in handled:
        logger.addHandler(collector)
    for logger in tapped:
        logger.addFilter(tap)
    library = logging.getLogger(_LIBRARY_LOGGER)
    old_level = library.level
    if old_level == logging.NOTSET or old_level > logging.DEBUG:
        library.setLevel(logging.DEBUG)
    _CURRENT.append(state)
    try:
        return (yield)
    finally:
        _CURRENT.remove(state)
        library.setLevel(old_level)
        for logger in handled:
            logger.removeHandler(collector)
        for logger in tapped:
            logger.removeFilter(tap)
        item.config.stash[_TOTALS].checked += 1


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    state = item.stash.get(_STATE, None)
    if state is None:
        return report
    secrets = _known_secrets(state)
    findings = []
    texts = 0
    for where, text in _new_texts(state, report, call):
        texts += 1
        findings.extend((kind, fp, where) for kind, fp in _leaks_in(text, secrets))
    totals = item.config.stash[_TOTALS]
    totals.texts += texts
    totals.leaked += len(findings)
    if findings:
        _fail(report, findings)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("RELIABILITY_REPORT")
    totals = session.config.stash.get(_TOTALS, None)
    if not path or totals is None:
        return
    line = {
        "kind": "leak_check",
        "checked": totals.checked,
        "texts": totals.texts,
        "leaked": totals.leaked,
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


# -- what is secret -----------------------------------------------------------------------------
def _running(emulator: Any) -> bool:
    return getattr(emulator, "_server", None) is not None


def _known_secrets(state: _TestState) -> dict[str, str]:
    """needle -> kind, for everything secret the test's emulators issued or were configured with."""
    found: dict[str, str] = {}

    def add(value: object, kind: str) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            found.setdefault(value, kind)
            # A code ends in "@", which a link carries as "%40": look for what precedes it.
            core = value.rstrip("@")
            if core != value and len(core) >= MIN_SECRET_LENGTH:
                found.setdefault(core, kind)

    for emu in state.emulators:
        try:
            issued = emu.issued_secrets()
        except Exception:  # an emulator half-built by a failing test: nothing issued
            issued = set()
        lock = getattr(emu, "_lock", None)
        if lock is None:
            continue
        with lock:
            codes = set(getattr(emu, "_codes", {}))
            refresh = set(getattr(emu, "_grants_by_refresh", {}))
            access = set(getattr(emu, "_access_expiry", {}))
        for value in issued:
            if value in codes:
                add(value, "authorization code issued by the emulator")
            elif value in refresh:
                add(value, "refresh token issued by the emulator")
            elif value in access:
                add(value, "access token issued by the emulator")
            elif value.count(".") == 2:
                add(value, "id token issued by the emulator")
            else:
                add(value, "token issued by the emulator")
        secret = getattr(emu, "app_secret", None)
        add(secret, "app secret of the emulator")
        key = getattr(emu, "app_key", None)
        if isinstance(secret, str) and isinstance(key, str):
            basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
            add(basic, "app secret (as an HTTP Basic authorization header)")
    add(DEFAULT_APP_SECRET, "app secret of the emulator (default)")
    add(os.environ.get("SCHWAB_APP_SECRET"), "app secret configured in SCHWAB_APP_SECRET")
    return found


def _leaks_in(text: str, secrets: dict[str, str]) -> list[tuple[str, str]]:
    if not text:
        return []
    hits = []
    seen_kinds: set[tuple[str, str]] = set()
    for needle, kind in secrets.items():
        if needle in text:
            key = (kind, fingerprint(needle))
            if key not in seen_kinds:
                seen_kinds.add(key)
                hits.append(key)
    return hits


# -- what the test produced ---------------------------------------------------------------------
_RECORD_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime"}


def _record_texts(record: logging.LogRecord) -> Iterator[str]:
    try:
        yield record.getMessage()
    except Exception:  # a record whose args do not fit its format: check the parts
        yield str(record.msg)
        yield repr(record.args)
    for name, value in vars(record).items():
        if name not in _RECORD_STANDARD:
            yield f"{name}={value!r}"  # extras, e.g. powertools' structured keys
    if record.exc_info and record.exc_info[1] is not None:
        yield "".join(traceback.format_exception(record.exc_info[1]))
    if record.exc_text:
        yield record.exc_text
    if record.stack_info:
        yield record.stack_info


def _new_texts(
    state: _TestState, report: pytest.TestReport, call: pytest.CallInfo[None]
) -> Iterator[tuple[str, str]]:
    """(where, text) for everything produced since the last phase was checked."""
    for title, content in report.sections:
        if title.startswith("Captured") and title not in state.scanned_sections:
            state.scanned_sections.add(title)
            yield title, content
    records = state.records[state.scanned_records :]
    state.scanned_records += len(records)
    for record in records:
        where = f"log record from logger {record.name!r} at {record.levelname} ({report.when})"
        for text in _record_texts(record):
            yield where, text
    reads = state.read_outputs[state.scanned_reads :]
    state.scanned_reads += len(reads)
    for where, text in reads:
        yield f"{where} ({report.when})", text
    if call.excinfo is not None:
        yield from _exception_texts(state, call.excinfo.value, f"exception raised ({report.when})")
    raised = state.raised[state.scanned_raised :]
    state.scanned_raised += len(raised)
    for info in raised:
        value = _filled(info)
        if value is not None:
            yield from _exception_texts(
                state, value, f"exception caught by pytest.raises ({report.when})"
            )


def _filled(info: Any) -> BaseException | None:
    try:
        return info.value if info._excinfo is not None else None
    except (AttributeError, AssertionError):
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
        for inner in getattr(current, "exceptions", ()) or ():  # exception groups
            if isinstance(inner, BaseException):
                todo.append(inner)


def _exception_texts(
    state: _TestState, exc: BaseException, where: str
) -> Iterator[tuple[str, str]]:
    """str() and repr() of an exception chain in which our library raised something."""
    chain = list(_chain(exc))
    if not any(_from_library(e) for e in chain):
        return  # the test's own failure (an assert), not something our code said
    for current in chain:
        if id(current) in state.checked_exceptions:
            continue
        state.checked_exceptions.add(id(current))
        name = type(current).__name__
        for form, render in (("str", str), ("repr", repr)):
            try:
                text = render(current)
            except Exception as render_error:  # a broken __str__ is itself a finding elsewhere
                text = f"<{form} failed: {type(render_error).__name__}>"
            yield f"{where}: {form}() of {name}", text


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    spec = importlib.util.find_spec("schwab_tokens")
    if spec is None or not spec.submodule_search_locations:
        return ()
    dirs = set()
    for location in spec.submodule_search_locations:
        dirs.add(str(Path(location)) + os.sep)
        dirs.add(str(Path(location).resolve()) + os.sep)
    return tuple(sorted(dirs))


def _from_library(exc: BaseException) -> bool:
    if (type(exc).__module__ or "").split(".")[0] == "schwab_tokens":
        return True
    dirs = _library_dirs()
    tb = exc.__traceback__
    while tb is not None and dirs:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(dirs):
            return True
        tb = tb.tb_next
    return False


# -- reporting ----------------------------------------------------------------------------------
def _fail(report: pytest.TestReport, findings: Iterable[tuple[str, str, str]]) -> None:
    lines = ["secret hygiene: a secret appeared in what this test produced"]
    lines += [f"  - {kind} (fingerprint {fp}) in {where}" for kind, fp, where in findings]
    lines.append(
        "  Output, logs and exception messages must carry at most a fingerprint "
        "(schwab_tokens.token.fingerprint), never the secret."
    )
    message = "\n".join(lines)
    if report.failed:
        report.sections.append(("secret hygiene", message))
        return
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    report.outcome = "failed"
    report.longrepr = message
