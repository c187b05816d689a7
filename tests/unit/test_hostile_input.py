"""Hostile input: the token-document parser and the returned-link parser under random attack.

Property-based (hypothesis). Whatever bytes a store hands back and whatever a user pastes, the
parsers either succeed or raise our own clear error (``InvalidTokenDocument``,
``CallbackError``), never another exception; a document they accept is usable (its arithmetic,
repr and round trip work); a link whose ``state`` is not this login's is never accepted; and
oversized input is refused by a size check before any parsing.

The last section proves the suite-wide secret-hygiene plugin (``tests/secret_hygiene.py``)
catches leaks, by running small leaking tests under ``pytester``.

With ``RELIABILITY_REPORT=<file>``, each property appends
``{"kind": "hypothesis", "test": <name>, "examples": <bodies run>}`` to that file.
"""

from __future__ import annotations

import copy
import json
import math
import os
import string
import sys
import time
import uuid
from collections import Counter
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schwab_tokens.errors import CallbackError, InvalidTokenDocument, SchwabTokensError
from schwab_tokens.oauth import MAX_LINK_LENGTH, parse_callback
from schwab_tokens.token import MAX_DOCUMENT_BYTES, Token, fingerprint
from tests.reliability.support import FULL

pytest_plugins = ["pytester"]

NOW = 1_732_300_100.0
TEN_MB = 10 * 1024 * 1024


def examples(count: int) -> settings:
    """Enough examples to matter, no per-example deadline (CI machines stall at times): half of
    ``count`` in ``make test``, all of it in ``make reliability`` (``FULL``), which reports them."""
    return settings(
        max_examples=count if FULL else count // 2,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- counting examples for the reliability report -----------------------------------------------
_BODIES: Counter[str] = Counter()


def _tick() -> None:
    """Count one run of the calling test's body (hypothesis calls it once per example)."""
    _BODIES[sys._getframe(1).f_code.co_name] += 1


@pytest.fixture(autouse=True)
def _report_examples(request: pytest.FixtureRequest):
    name = request.function.__name__
    _BODIES.pop(name, None)
    yield
    path = os.environ.get("RELIABILITY_REPORT")
    if path and getattr(request.function, "is_hypothesis_test", False):
        line = {"kind": "hypothesis", "test": name, "examples": _BODIES.get(name, 0)}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


# -- strategies ---------------------------------------------------------------------------------
URLSAFE = string.ascii_letters + string.digits + "-_"
#: Any code point, lone surrogates included (JSON's "\ud800" escapes produce them).
ANY_CHAR = st.characters(exclude_categories=())
TEXT_CHAR = st.characters(exclude_categories=("Cs",))
SPECIAL_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    2**63,
    -(2**63),
    2**64,
    10**20,
    10**400,
    -(10**400),
    True,
    False,
]
DOC_KEYS = [
    "creation_timestamp",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "expires_at",
    "expires_in",
    "token_type",
    "scope",
]

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from(SPECIAL_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHAR, max_size=20),
    st.text(URLSAFE, min_size=1, max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(DOC_KEYS) | st.text(ANY_CHAR, max_size=8), kids, max_size=5
        )
    ),
    max_leaves=8,
)


def valid_document(access: str = "AT-" + "a" * 40) -> dict:
    return {
        "creation_timestamp": 1_732_300_000,
        "token": {
            "access_token": access,
            "refresh_token": "RT-" + "r" * 40,
            "id_token": "ID." + "i" * 40 + ".sig",
            "token_type": "Bearer",
            "expires_in": 1800,
            "scope": "api",
            "expires_at": 1_732_301_800,
        },
    }


def serialize(doc: object, form: str, ensure_ascii: bool = True) -> bytes | str:
    text = json.dumps(doc, allow_nan=True, ensure_ascii=ensure_ascii)
    if form == "str":
        return text
    return text.encode(form, "surrogatepass")


FORMS = st.sampled_from(["str", "utf-8", "utf-16", "utf-32", "utf-8-sig"])


@st.composite
def document_shaped(draw: st.DrawFn) -> tuple[bytes | str, str]:
    """``{"creation_timestamp": ?, "token": {access/refresh/expires_at: ?}}`` with random values."""
    access = "AT-" + draw(st.text(URLSAFE, min_size=16, max_size=40))
    any_value = json_leaves | json_values  # leaves are cheaper and hit the type checks
    inner = {
        "access_token": draw(st.just(access) | any_value),
        "refresh_token": draw(st.text(URLSAFE, min_size=1, max_size=40) | any_value),
        "expires_at": draw(st.integers(0, 2 * 10**9) | any_value),
    }
    for key in draw(st.lists(st.sampled_from(DOC_KEYS), max_size=2)):
        inner[key] = draw(any_value)
    doc = {
        "creation_timestamp": draw(st.integers(0, 2 * 10**9) | any_value),
        "token": draw(st.just(inner) | any_value),
    }
    return serialize(doc, draw(FORMS), draw(st.booleans())), access


def _retype(value: object) -> object:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list):
        return {"0": value}
    return [value]


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[bytes | str, str]:
    """A valid document, then field mutations, then text mutations, then an encoding."""
    access = "AT-" + draw(st.text(URLSAFE, min_size=16, max_size=40))
    doc: dict = copy.deepcopy(valid_document(access))
    for _ in range(draw(st.integers(0, 4))):
        container = doc
        if isinstance(doc.get("token"), dict) and draw(st.booleans()):
            container = doc["token"]
        keys = sorted(container)
        op = draw(
            st.sampled_from(["drop", "replace", "special", "retype", "rename", "junk", "nest"])
        )
        if op == "junk" or not keys:
            container[draw(st.text(ANY_CHAR, max_size=12))] = draw(json_values)
            continue
        key = draw(st.sampled_from(keys))
        if op == "drop":
            del container[key]
        elif op == "replace":
            container[key] = draw(json_values)
        elif op == "special":
            container[key] = draw(st.sampled_from(SPECIAL_NUMBERS))
        elif op == "retype":
            container[key] = _retype(container[key])
        elif op == "rename":
            container[draw(st.sampled_from([key.upper(), key + " ", " " + key, key[:-1]]))] = (
                container.pop(key)
            )
        else:  # nest
            container[key] = {key: container[key]}
    text = json.dumps(doc, allow_nan=True, ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["truncate", "insert", "delete", "duplicate", "bom", "pad"]))
        at = draw(st.integers(0, len(text)))
        if op == "truncate":
            text = text[:at]
        elif op == "insert":
            text = text[:at] + draw(st.text(ANY_CHAR, min_size=1, max_size=3)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + 1 :]
        elif op == "duplicate":
            text = text.replace('"token": {', '"token": 1, "token": {', 1)
        elif op == "bom":
            text = "\ufeff" + text
        else:
            text = draw(st.sampled_from([" ", "\n", "\t", "\r\n"])) * 3 + text
    form = draw(FORMS)
    return (text if form == "str" else text.encode(form, "surrogatepass")), access


json_soup = st.lists(
    st.sampled_from(
        [
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            '"',
            '"creation_timestamp"',
            '"token"',
            '"access_token"',
            '"refresh_token"',
            '"expires_at"',
            '"x"',
            "1",
            "-0",
            "1e5",
            "1e999",
            "0.5",
            "9" * 5000,
            "true",
            "null",
            '"\\ud800"',
            '"\\u00e9"',
            "\\",
            " ",
            "\x00",
        ]
    ),
    max_size=60,
).map("".join)


# -- checks -------------------------------------------------------------------------------------
def assert_clear(exc: SchwabTokensError, *secrets: str) -> None:
    message = str(exc)
    assert message and message[0].isalnum(), repr(message)
    for secret in secrets:
        assert secret not in message and secret not in repr(exc), "the error quotes a secret"


def assert_usable(token: Token) -> None:
    """What the CLI, the stores and the reader do with an accepted document must work."""
    repr(token)
    str(token)
    assert len(token.fingerprint) == 10
    token.access_token.encode()  # the Authorization header, the refresh form
    token.refresh_token.encode()
    assert math.isfinite(token.access_seconds_left(NOW))
    assert math.isfinite(token.refresh_seconds_left(NOW))
    token.needs_refresh(600, NOW)
    again = Token.parse(token.to_json())
    assert again.to_json() == token.to_json()


def parse_or_refuse(raw: bytes | str, access: str | None = None) -> Token | None:
    try:
        token = Token.parse(raw)
    except InvalidTokenDocument as exc:
        assert_clear(exc, *([access] if access else []))
        return None
    assert_usable(token)
    return token


def valid_json(doc: dict) -> str:
    return json.dumps(doc, allow_nan=True)


INF_CREATED = valid_json({**valid_document(), "creation_timestamp": math.inf})
NAN_CREATED = valid_json({**valid_document(), "creation_timestamp": math.nan})
HUGE_CREATED = valid_json({**valid_document(), "creation_timestamp": 10**400})
SURROGATE_TOKEN = valid_json(valid_document(access="\ud800"))


# -- Token.parse --------------------------------------------------------------------------------
@examples(1500)
@given(raw=st.binary(max_size=600) | st.binary(max_size=60).map(lambda b: b'{"' + b))
def test_token_parse_random_bytes(raw: bytes) -> None:
    _tick()
    parse_or_refuse(raw)


@examples(1500)
@given(text=st.text(ANY_CHAR, max_size=300) | json_soup)
def test_token_parse_random_text(text: str) -> None:
    _tick()
    parse_or_refuse(text)
    parse_or_refuse(text.encode("utf-8", "surrogatepass"))


@examples(800)
@given(case=document_shaped())
@example(case=(NAN_CREATED, "AT-"))
def test_token_parse_document_shaped_json_values(case: tuple[bytes | str, str]) -> None:
    _tick()
    raw, access = case
    parse_or_refuse(raw, access)


@examples(1200)
@given(case=mutated_documents())
@example(case=(INF_CREATED, "AT-"))
def test_token_parse_mutated_documents(case: tuple[bytes | str, str]) -> None:
    _tick()
    raw, access = case
    parse_or_refuse(raw, access)


@examples(300)
@given(
    depth=st.integers(1, MAX_DOCUMENT_BYTES // 5),
    opener=st.sampled_from(["[", '{"a":', '{"token":', " [ "]),
    closed=st.booleans(),
)
@example(depth=5000, opener="[", closed=True)
def test_token_parse_nested_junk(depth: int, opener: str, closed: bool) -> None:
    _tick()
    closer = {"[": "]", '{"a":': "}", '{"token":': "}", " [ ": " ] "}[opener]
    raw = opener * depth + ("1" + closer * depth if closed else "")
    raw = raw[:MAX_DOCUMENT_BYTES]
    parse_or_refuse(raw)
    parse_or_refuse(raw.encode())


@pytest.mark.parametrize(
    "raw",
    [INF_CREATED, NAN_CREATED, HUGE_CREATED, SURROGATE_TOKEN, "[" * 5000],
    ids=["inf-created", "nan-created", "huge-created", "surrogate-token", "deep-nesting"],
)
def test_known_hostile_documents_are_refused_or_usable(raw: str) -> None:
    parse_or_refuse(raw)


#: What a JSON document can hold (NaN and the infinities are not JSON, and are refused).
finite_leaves = json_leaves.filter(lambda v: not (isinstance(v, float) and not math.isfinite(v)))


@examples(200)
@given(extra=st.dictionaries(st.text(max_size=8), finite_leaves))
def test_valid_documents_with_extra_keys_still_parse(extra: dict) -> None:
    """Schwab-py and future versions may add keys: a valid core JSON document is never refused."""
    _tick()
    doc = valid_document()
    doc["token"].update({k: v for k, v in extra.items() if k not in doc["token"]})
    doc.update({"x-" + k: v for k, v in extra.items()})
    token = Token.parse(valid_json(doc))
    assert token.access_token == doc["token"]["access_token"]
    assert token.creation_timestamp == doc["creation_timestamp"]
    assert_usable(token)


@examples(500)
@given(size=st.integers(MAX_DOCUMENT_BYTES - 40, MAX_DOCUMENT_BYTES + 40), as_bytes=st.booleans())
def test_token_size_limit_is_exact(size: int, as_bytes: bool) -> None:
    _tick()
    doc = valid_document()
    doc["pad"] = ""
    overhead = len(valid_json(doc))
    doc["pad"] = "p" * (size - overhead)
    text = valid_json(doc)
    assert len(text) == size
    raw: bytes | str = text.encode() if as_bytes else text
    if size <= MAX_DOCUMENT_BYTES:
        assert Token.parse(raw).access_token == doc["token"]["access_token"]
    else:
        with pytest.raises(InvalidTokenDocument, match=f"is {size} bytes, more than"):
            Token.parse(raw)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
@pytest.mark.parametrize("body", ["valid", "deep"])
def test_a_10_mb_document_is_refused_by_the_size_check(as_bytes: bool, body: str) -> None:
    """Were it parsed, the valid one would be accepted and the deep one would blow the stack."""
    if body == "valid":
        doc = valid_document()
        doc["pad"] = ""
        doc["pad"] = "p" * (TEN_MB - len(valid_json(doc)))
        text = valid_json(doc)
    else:
        text = "[" * TEN_MB
    assert len(text) == TEN_MB
    raw: bytes | str = text.encode() if as_bytes else text
    started = time.perf_counter()
    with pytest.raises(InvalidTokenDocument) as info:
        Token.parse(raw, source="s3://bucket/tokens.json")
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert f"is {TEN_MB} bytes" in message
    assert f"more than a token document can be ({MAX_DOCUMENT_BYTES})" in message
    assert message.startswith("s3://bucket/tokens.json")
    assert "JSON" not in message  # the parser's messages all say "not valid JSON"
    assert elapsed < 0.05, f"{elapsed:.3f} s: the size check should come before any decoding"


# -- parse_callback -----------------------------------------------------------------------------
CALLBACKS = [
    "https://127.0.0.1:8182",
    "https://127.0.0.1:8182/",
    "https://127.0.0.1:8443/schwab/callback",
]
EXPECTED_STATES = st.text(URLSAFE, min_size=8, max_size=32)

url_soup = st.lists(
    st.sampled_from(
        [
            "https://127.0.0.1:8182",
            "https://",
            "http://[::1",
            "[",
            "]",
            "/",
            "?",
            "&",
            "=",
            ";",
            "#",
            "+",
            "@",
            "%",
            "%40",
            "%zz",
            "%ff",
            "%e2%82",
            "%00",
            "code",
            "state",
            "error",
            "session",
            "access_denied",
            "STATE",
            " ",
            "\n",
            "\t",
            "\x00",
            "\uff03",
            "\ufe16",
            "\ud800",
            "é",
            "a" * 600,
        ]
    ),
    max_size=40,
).map("".join)


def refuse_or_return(link: object, expected: str | None) -> str | None:
    try:
        code = parse_callback(link, expected)  # type: ignore[arg-type]
    except CallbackError as exc:
        assert_clear(exc)
        return None
    assert isinstance(code, str) and code
    return code


def _mismatch_message() -> str:
    try:
        parse_callback("https://127.0.0.1:8182/?code=c&state=theirs", "ours")
    except CallbackError as exc:
        return str(exc)
    raise AssertionError("a link with another state was accepted")


STATE_MISMATCH = _mismatch_message()


@examples(1500)
@given(
    link=st.text(ANY_CHAR, max_size=300) | url_soup,
    expected=st.none() | EXPECTED_STATES | st.just("state"),
)
def test_parse_callback_random_strings(link: str, expected: str | None) -> None:
    _tick()
    code = refuse_or_return(link, expected)
    if code is not None:
        # Whatever was accepted carries exactly this login's state and that code, as the
        # standard URL parser reads the link.
        params = parse_qs(urlsplit(link.strip()).query, keep_blank_values=True)
        if expected is not None:
            assert params.get("state") == [expected]
        assert params.get("code") == [code]
        assert "error" not in params


@examples(200)
@given(
    value=st.none()
    | st.binary(max_size=50)
    | st.integers()
    | st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
)
def test_parse_callback_refuses_non_text(value: object) -> None:
    _tick()
    assert refuse_or_return(value, "expected-state") is None


@st.composite
def state_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """(expected, in the link): equal half the time, else different in an interesting way."""
    expected = draw(st.text(TEXT_CHAR, max_size=24))
    variants = [
        st.just(expected),
        st.text(TEXT_CHAR, max_size=24),
        st.just(expected.swapcase()),
        st.just(expected + " "),
        st.just(" " + expected),
        st.just(expected[:-1]),
        st.just(expected + "\x00"),
        st.just(expected.replace(" ", "+")),
        st.just(quote(expected, safe="")),
        st.text(TEXT_CHAR, min_size=1, max_size=2).map(lambda extra: expected + extra),
    ]
    if draw(st.booleans()):
        return expected, expected
    return expected, draw(st.one_of(*variants))


@examples(1000)
@given(
    pair=state_pairs(),
    code=st.text(TEXT_CHAR, min_size=1, max_size=60),
    junk=st.lists(
        st.tuples(
            st.text(TEXT_CHAR, max_size=8).filter(lambda k: k not in ("code", "state", "error")),
            st.text(TEXT_CHAR, max_size=20),
        ),
        max_size=5,
    ),
    base=st.sampled_from(CALLBACKS),
    quote_via=st.sampled_from([quote_plus, quote]),
    order=st.randoms(use_true_random=False),
    fragment=st.none() | st.text(TEXT_CHAR, max_size=20),
)
def test_link_with_another_state_is_never_accepted(
    pair, code, junk, base, quote_via, order, fragment
) -> None:
    """Links built from arbitrary states and codes: accepted exactly when the state matches."""
    _tick()
    expected, state = pair
    params = [("code", code), ("session", str(uuid.uuid4())), ("state", state), *junk]
    order.shuffle(params)
    link = base + "?" + urlencode(params, quote_via=quote_via)
    if fragment is not None:
        link += "#" + quote(fragment, safe="")
    assert len(link) <= MAX_LINK_LENGTH
    if state == expected:
        assert parse_callback(link, expected) == code
    else:
        with pytest.raises(CallbackError) as info:
            parse_callback(link, expected)
        # The same fixed words whatever the link held: nothing from it (the code) is echoed.
        assert str(info.value) == STATE_MISMATCH


def _percent_all(text: str, lower: bool) -> str:
    out = "".join(f"%{b:02X}" for b in text.encode())
    return out.lower() if lower else out


@st.composite
def mutated_links(draw: st.DrawFn) -> tuple[str, str, str, str, bool, bool]:
    """A link as Schwab sends it, mutated; also whether its state matches (``state_ok``) and
    whether it is otherwise a good link (``clean``: one non-empty code, no error, not too long).

    Each parameter is kept as (raw key, raw value, decoded key, decoded value): the decoded
    sides are what the mutation meant, so the verdict does not depend on any URL parser.
    """
    expected = draw(EXPECTED_STATES)
    # Opaque like Schwab's, with a prefix no message contains, so "not quoted" is checkable.
    code = "C0d3" + draw(st.text(URLSAFE, min_size=4, max_size=60)) + "@"
    params: list[tuple[str, str, str, str]] = [
        ("code", quote(code, safe=""), "code", code),
        ("session", str(uuid.uuid4()), "session", ""),
        ("state", expected, "state", expected),
    ]
    fragment = path_extra = ""

    def where(name: str) -> list[int]:
        return [i for i, p in enumerate(params) if p[2] == name]

    for _ in range(draw(st.integers(0, 4))):
        op = draw(
            st.sampled_from(
                [
                    "change_state",
                    "reencode_state",
                    "double_encode_state",
                    "drop_state",
                    "dup_state",
                    "state_elsewhere",
                    "rename_state_key",
                    "drop_code",
                    "dup_code",
                    "empty_code",
                    "error",
                    "junk",
                    "shuffle",
                ]
            )
        )
        if op == "change_state":
            other = draw(st.text(TEXT_CHAR, max_size=32))
            encode = draw(st.sampled_from([quote, quote_plus]))
            for i in where("state"):
                params[i] = ("state", encode(other, safe=""), "state", other)
        elif op == "reencode_state":
            # The same decoded value spelled differently (%XX, upper or lower hex).
            lower = draw(st.booleans())
            for i in where("state"):
                value = params[i][3]
                params[i] = ("state", _percent_all(value, lower), "state", value)
        elif op == "double_encode_state":
            for i in where("state"):
                once = _percent_all(params[i][3], False)
                params[i] = ("state", quote(once, safe=""), "state", once)
        elif op == "drop_state":
            params = [p for p in params if p[2] != "state"]
        elif op == "dup_state":
            value = draw(st.sampled_from([expected, expected + "x", ""]))
            params.append(("state", quote(value, safe=""), "state", value))
        elif op == "state_elsewhere":
            params = [p for p in params if p[2] != "state"]
            if draw(st.booleans()):
                fragment = f"#state={expected}"
            else:
                path_extra = f"state={expected}/"
        elif op == "rename_state_key":
            raw_key, key = draw(
                st.sampled_from(
                    [
                        ("State", "State"),
                        ("STATE", "STATE"),
                        ("state%20", "state "),
                        ("state%5B%5D", "state[]"),
                        ("_state", "_state"),
                    ]
                )
            )
            for i in where("state"):
                params[i] = (raw_key, params[i][1], key, params[i][3])
        elif op == "drop_code":
            params = [p for p in params if p[2] != "code"]
        elif op == "dup_code":
            other = draw(st.text(URLSAFE, min_size=1, max_size=9))
            params.append(("code", other, "code", other))
        elif op == "empty_code":
            params = [("code", "", "code", "") if p[2] == "code" else p for p in params]
        elif op == "error":
            raw, value = draw(
                st.sampled_from(
                    [
                        ("access_denied", "access_denied"),
                        ("server_error", "server_error"),
                        ("%3Cscript%3E", "<script>"),
                        ("", ""),
                        ("%00", "\x00"),
                    ]
                )
            )
            params.append(("error", raw, "error", value))
        elif op == "junk":
            key = draw(st.text(URLSAFE, min_size=1, max_size=8))
            value = draw(st.text(TEXT_CHAR, max_size=40))
            if key not in ("code", "state", "error"):
                params.append((key, quote(value, safe=""), key, value))
        else:
            params = draw(st.permutations(params))
    base = draw(st.sampled_from(CALLBACKS)).rstrip("/") + "/" + path_extra
    link = base + "?" + "&".join(f"{p[0]}={p[1]}" for p in params) + fragment
    if draw(st.booleans()):
        # Padding near and past the size limit (a junk parameter: harmless but for the size).
        target = draw(st.integers(MAX_LINK_LENGTH - 50, MAX_LINK_LENGTH + 50))
        link += "&pad=" + "x" * max(0, target - len(link) - 5)
    states = [p[3] for p in params if p[2] == "state"]
    codes = [p[3] for p in params if p[2] == "code"]
    state_ok = states == [expected]
    clean = (
        len(codes) == 1
        and codes[0] != ""
        and not any(p[2] == "error" for p in params)
        and len(link) <= MAX_LINK_LENGTH
    )
    spaces = draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n"]))
    # The code a good link yields, and Schwab's original code: the secret no message may quote.
    yields = codes[0] if codes else ""
    return spaces + link + spaces, expected, yields, code, state_ok, clean


@examples(1200)
@given(case=mutated_links())
def test_mutated_links_are_accepted_only_with_this_logins_state(case) -> None:
    _tick()
    link, expected, yields, secret, state_ok, clean = case
    if state_ok and clean:
        assert parse_callback(link, expected) == yields
        return
    with pytest.raises(CallbackError) as info:
        parse_callback(link, expected)
    assert_clear(info.value, secret, secret.rstrip("@"))
    if len(link.strip()) > MAX_LINK_LENGTH:
        assert f"longer than {MAX_LINK_LENGTH} characters" in str(info.value)


@examples(500)
@given(size=st.integers(MAX_LINK_LENGTH - 20, MAX_LINK_LENGTH + 20), state=EXPECTED_STATES)
def test_link_size_limit_is_exact(size: int, state: str) -> None:
    _tick()
    link = f"https://127.0.0.1:8182/?code=abc%40&state={state}&pad="
    link += "x" * (size - len(link))
    assert len(link) == size
    if size <= MAX_LINK_LENGTH:
        assert parse_callback(link, state) == "abc@"
    else:
        with pytest.raises(CallbackError, match=f"longer than {MAX_LINK_LENGTH} characters"):
            parse_callback(link, state)


def test_a_10_mb_link_is_refused_by_the_size_check() -> None:
    """A valid link padded to 10 MB: parsing it would return the code, so a refusal that
    names the length shows the size check ran first."""
    state = "s" * 32
    link = f"https://127.0.0.1:8182/?code=abc%40&state={state}&pad="
    link += "x" * (TEN_MB - len(link))
    started = time.perf_counter()
    with pytest.raises(CallbackError) as info:
        parse_callback(link, state)
    elapsed = time.perf_counter() - started
    assert str(info.value) == f"the returned link is longer than {MAX_LINK_LENGTH} characters"
    assert elapsed < 0.05, f"{elapsed:.3f} s: the size check should come before any parsing"


# -- the secret-hygiene plugin, proved on tests that leak ---------------------------------------
LEAKY_TESTS = """
import logging
from pathlib import Path

import pytest

from devkit.emulator import Emulator
from devkit.user import login
from schwab_tokens.errors import CallbackError
from schwab_tokens.stores.file import FileStore

SECRETS = Path(__file__).with_name("secrets.txt")


def logged_in(tmp_path):
    with Emulator() as emu:
        token = login(FileStore(tmp_path / "tokens.json"), emu)
    with SECRETS.open("a") as fh:
        fh.write(token.access_token + "\\n" + token.refresh_token + "\\n")
    return token


def test_prints_access_token(tmp_path):
    print("here it is:", logged_in(tmp_path).access_token)


def test_stderr_refresh_token(tmp_path, capsys):
    import sys

    print(logged_in(tmp_path).refresh_token, file=sys.stderr)
    capsys.readouterr()  # reading it does not hide it


def test_debug_log_refresh_token(tmp_path):
    token = logged_in(tmp_path)
    logging.getLogger("schwab_tokens.leaky").debug("refreshing with %s", token.refresh_token)


def test_service_log_extra_quotes_access_token(tmp_path):
    token = logged_in(tmp_path)
    logging.getLogger("schwab-tokens").error("refreshed", extra={"leak": token.access_token})


def test_exception_quotes_refresh_token(tmp_path):
    token = logged_in(tmp_path)
    raise CallbackError(f"bad link for {token.refresh_token}")


def test_caught_exception_quotes_app_secret():
    with pytest.raises(CallbackError):
        raise CallbackError("wrong secret emu-app-secret-0001")


def test_clean(tmp_path):
    token = logged_in(tmp_path)
    print("fingerprint", token.fingerprint)
    logging.getLogger("schwab_tokens.leaky").warning("refreshed %s", token.fingerprint)
    with pytest.raises(CallbackError):
        raise CallbackError("no code= parameter")
"""


def test_secret_hygiene_plugin_fails_leaking_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELIABILITY_REPORT", raising=False)  # the inner session's own totals
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.inline_run("-p", "tests.secret_hygiene", "-p", "no:cacheprovider")
    reports = {
        r.nodeid.split("::")[-1]: r
        for r in result.getreports("pytest_runtest_logreport")
        if r.when == "call"
    }
    secrets = (pytester.path / "secrets.txt").read_text().split()
    expected = {
        "test_prints_access_token": ("access token", "Captured stdout call"),
        "test_stderr_refresh_token": ("refresh token", "stderr read by the test"),
        "test_debug_log_refresh_token": ("refresh token", "log record from logger"),
        "test_service_log_extra_quotes_access_token": (
            "access token",
            "log record from logger 'schwab-tokens' at ERROR",
        ),
        "test_exception_quotes_refresh_token": ("refresh token", "str() of CallbackError"),
        "test_caught_exception_quotes_app_secret": ("app secret", "caught by pytest.raises"),
    }
    for name, (kind, where) in expected.items():
        report = reports[name]
        assert report.failed, name
        # The plugin's words: its own section when the test failed anyway, else the failure.
        added = [content for title, content in report.sections if title == "secret hygiene"]
        text = added[0] if added else report.longreprtext
        assert "secret hygiene" in text, (name, text)
        assert kind in text and where in text, (name, text)
        assert "fingerprint " in text
        for secret in secrets:
            assert secret not in text, f"{name}: the failure message shows the secret"
    leaked = [
        s for s in secrets if fingerprint(s) in reports["test_prints_access_token"].longreprtext
    ]
    assert len(leaked) == 1
    assert reports["test_clean"].passed, reports["test_clean"].longreprtext
    assert len(reports) == len(expected) + 1
