"""What ``make reliability`` runs: the reliability suite, then one Markdown table of its figures.

Runs pytest on ``tests/reliability`` (fault matrix, crash safety, concurrency soak) plus the
hostile-input and secret-hygiene tests where they exist, with ``RELIABILITY_REPORT`` naming a
fresh JSON-lines file that the tests append their records to. Then it prints the table and exits
non-zero if any test failed or any invariant broke (a matrix row not as expected, a token lost or
corrupted, a secret leaked, more or fewer token-endpoint calls than refreshes needed).

Records it reads (one JSON object per line, ``kind`` first):

- ``{"kind": "fault", "store", "fault", "mode", "passed", "known_bug", ...}``: one run of a
  matrix row (``known_bug``: the reason of its strict xfail, for a bug not fixed yet);
- ``{"kind": "crash", "store", "phase", "lost", "corrupt", ...}``: one SIGKILLed refresh, and
  ``{"kind": "crash_summary", "store", "killed", "seconds", ...}`` per store;
- ``{"kind": "soak", "store", "rounds", "needed", "calls", "errors", "rejected", ...}``;
- ``{"kind": "bad_answer", "store", "fault", "broken", "passed", ...}``: one hostile token answer;
- ``{"kind": "clock_skew", "store", "skew", "double_holder", "passed"}``: a writer with a wrong
  clock against a lease held or left by another;
- ``{"kind": "hypothesis", "test": NAME, "examples": N}``: inputs a property test generated;
- ``{"kind": "leak_check", "checked": TESTS, "texts": N, "leaked": M}``: outputs scanned for
  secrets (tests/secret_hygiene.py, one line per session).

Usage: ``python scripts/reliability.py [--keep FILE] [--table FILE] [PYTEST ARGS...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REPORT_ENV = "RELIABILITY_REPORT"
STORES = ("file", "s3", "secretsmanager")
#: Other authors' suites that belong to the figures: hostile input (hypothesis) and secret hygiene.
EXTRA_TESTS = (
    "tests/unit/test_hostile_input.py",
    "tests/unit/test_token_answers.py",
    "tests/integration/test_lease_clock.py",
)
HYGIENE_PLUGIN = "tests.secret_hygiene"
SECRET_TEST_PATTERNS = ("test_*secret*.py", "test_*leak*.py", "test_*hygiene*.py")


def test_paths() -> list[str]:
    paths = ["tests/reliability"]
    paths += [p for p in EXTRA_TESTS if (REPO / p).exists()]
    for pattern in SECRET_TEST_PATTERNS:
        for found in sorted((REPO / "tests").rglob(pattern)):
            relative = found.relative_to(REPO).as_posix()
            if not relative.startswith("tests/reliability/") and relative not in paths:
                paths.append(relative)
    return paths


def load(path: Path) -> list[dict[str, Any]]:
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def by_kind(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[str(record.get("kind"))].append(record)
    return grouped


def per_store(counts: Counter[str]) -> str:
    return ", ".join(f"{store} {counts[store]}" for store in STORES if counts[store])


def per_store_text(counts: Counter[str]) -> str:
    """``file 100, s3 100, ...`` in the usual store order, any other store last."""
    return ", ".join(f"{store} {counts[store]}" for store in sorted(counts, key=store_order))


def store_order(store: str) -> tuple[int, str]:
    return (STORES.index(store) if store in STORES else len(STORES), store)


def summarize(records: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str, bool]], list[str]]:
    """The table's rows (figure, value, target, holds) and the lines of detail under it."""
    kinds = by_kind(records)
    rows: list[tuple[str, str, str, bool]] = []
    notes: list[str] = []

    faults = kinds.get("fault", [])
    cases = {(r.get("store"), r.get("fault")) for r in faults}
    known = [r for r in faults if not r.get("passed") and r.get("known_bug")]
    bad = [r for r in faults if not r.get("passed") and not r.get("known_bug")]
    unchanged = [r for r in faults if r.get("bytes_unchanged") is False]
    if faults:
        value = (
            f"{len(cases)} rows (store x fault), {len(faults)} runs; "
            f"{len(faults) - len(bad) - len(known)} as expected"
        )
        if known:
            value += f", {len(known)} known bug (xfail)"
        rows.append(("faults tried", value, "every run as expected", not bad and not unchanged))
        for r in known:
            notes.append(f"known bug, {r.get('store')}/{r.get('fault')}: {r.get('known_bug')}")
        modes = Counter(str(r.get("mode")) for r in faults)
        notes.append(
            "fault matrix runs by mode: " + ", ".join(f"{m} {n}" for m, n in sorted(modes.items()))
        )
        for r in bad:
            notes.append(f"FAILED fault row {r.get('store')}/{r.get('fault')} ({r.get('mode')}):")
            notes += [f"  - {p}" for p in r.get("problems", [])]
    else:
        rows.append(("faults tried", "not run", "every run as expected", False))

    crashes = kinds.get("crash", [])
    summaries = kinds.get("crash_summary", [])
    lost = sum(1 for r in crashes if r.get("lost") or r.get("corrupt"))
    next_failed = sum(1 for r in crashes if r.get("next_ok") is False)
    if crashes:
        killed = Counter(str(r.get("store")) for r in crashes)
        short = [s for s in STORES if killed[s] < 50]
        rows.append(
            (
                "runs killed (SIGKILL mid-refresh)",
                f"{len(crashes)} ({per_store(killed)})",
                ">= 50 per store",
                not short,
            )
        )
        rows.append(
            (
                "tokens lost or corrupted",
                f"{lost} of {len(crashes)} kills; next run failed after {next_failed}",
                "0",
                lost == 0 and next_failed == 0,
            )
        )
        phases = Counter(str(r.get("phase")) for r in crashes)
        notes.append("kills landed: " + ", ".join(f"{p} {n}" for p, n in sorted(phases.items())))
    views = [r for r in faults + crashes if r.get("view")]
    if views:
        states = Counter(str(r["view"]) for r in views)
        wrong = sum(n for state, n in states.items() if state.startswith("WRONG"))
        repaired = [r for r in views if r.get("recovered") is False or r.get("next_ok") is False]
        rows.append(
            (
                "access view after a fault or kill",
                f"{len(views)} checked: "
                + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
                + f"; not repaired by the next run: {len(repaired)}",
                "matches or older, never another token",
                wrong == 0 and not repaired,
            )
        )
        slowest = max(float(r.get("next_run_seconds") or 0) for r in crashes)
        notes.append(f"longest wait of a next run for a dead holder's lease: {slowest:.1f} s")
    else:
        rows.append(("runs killed (SIGKILL mid-refresh)", "not run", ">= 50 per store", False))
        rows.append(("tokens lost or corrupted", "not measured", "0", False))

    generated = kinds.get("hypothesis", [])
    if generated:
        examples = sum(int(r.get("examples") or 0) for r in generated)
        tests = len({r.get("test") for r in generated})
        rows.append(("inputs generated (hypothesis)", f"{examples} in {tests} tests", "-", True))
    else:
        rows.append(("inputs generated (hypothesis)", "not measured", "-", True))

    leaks = [r for r in kinds.get("leak_check", []) if int(r.get("checked") or 0)]
    if leaks:
        checked = sum(int(r.get("checked") or 0) for r in leaks)
        texts = sum(int(r.get("texts") or 0) for r in leaks)
        leaked = sum(int(r.get("leaked") or 0) for r in leaks)
        scanned = f"{texts} outputs of {checked} tests" if texts else f"{checked} tests"
        rows.append(("secrets leaked", f"{leaked} in {scanned} scanned", "0", leaked == 0))
    else:
        rows.append(("secrets leaked", "not measured", "0", True))

    answers = kinds.get("bad_answer", [])
    if answers:
        broken = sum(1 for r in answers if r.get("broken") or not r.get("passed"))
        stores = Counter(str(r.get("store")) for r in answers)
        rows.append(
            (
                "bad token answers tried / stores broken",
                f"{len(answers)} ({per_store(stores)}) / {broken}",
                "0 broken",
                broken == 0,
            )
        )
    else:
        rows.append(("bad token answers tried / stores broken", "not run", "0 broken", False))

    skews = kinds.get("clock_skew", [])
    if skews:
        doubles = sum(1 for r in skews if r.get("double_holder") or not r.get("passed"))
        rows.append(
            (
                "clock-skewed writers / double holders",
                f"{len(skews)} ("
                + ", ".join(f"{r.get('store')} {r.get('skew'):+d} s" for r in skews)
                + f") / {doubles}",
                "0 double holders",
                doubles == 0,
            )
        )
    else:
        rows.append(("clock-skewed writers / double holders", "not run", "0", False))

    soaks = kinds.get("soak", [])
    if soaks:
        needed = sum(int(r.get("needed") or 0) for r in soaks)
        calls = sum(int(r.get("calls") or 0) for r in soaks)
        errors = sum(int(r.get("errors") or 0) for r in soaks)
        rejected = sum(int(r.get("rejected") or 0) for r in soaks)
        # A store's rounds may come in several chunks (records), one per test.
        soak_rounds: Counter[str] = Counter()
        seconds_per_store: defaultdict[str, float] = defaultdict(float)
        chunks_per_store: Counter[str] = Counter()
        for r in soaks:
            soak_rounds[str(r.get("store"))] += int(r.get("rounds") or 0)
            seconds_per_store[str(r.get("store"))] += float(r.get("seconds") or 0)
            chunks_per_store[str(r.get("store"))] += 1
        rounds = per_store_text(soak_rounds)
        reads = sum(int(r.get("reads") or 0) for r in soaks)
        min_left = min(float(r.get("min_left") or 0) for r in soaks)
        rows.append(
            (
                "endpoint calls vs needed (soak)",
                f"{calls} / {needed} (rounds: {rounds}; 20 refreshers, 20 readers)",
                "equal",
                calls == needed and errors == 0,
            )
        )
        rows.append(
            (
                "reader tokens refused or < 300 s left",
                f"{rejected} refused, least left {min_left:.0f} s, in {reads} reads",
                "0, > 300 s",
                rejected == 0 and min_left > 300 and errors == 0,
            )
        )
        for store in sorted(soak_rounds, key=store_order):
            notes.append(
                f"soak {store}: {soak_rounds[store]} rounds in {seconds_per_store[store]:.1f} s "
                f"({chunks_per_store[store]} chunks)"
            )
    else:
        rows.append(("endpoint calls vs needed (soak)", "not run", "equal", False))
    killed_per_store: Counter[str] = Counter()
    crash_seconds: defaultdict[str, float] = defaultdict(float)
    for r in summaries:  # one per store, or one per store and strategy
        killed_per_store[str(r.get("store"))] += int(r.get("killed") or 0)
        crash_seconds[str(r.get("store"))] += float(r.get("seconds") or 0)
    for store in sorted(killed_per_store, key=store_order):
        notes.append(
            f"crash {store}: {killed_per_store[store]} kills in {crash_seconds[store]:.1f} s"
        )
    return rows, notes


def table(rows: list[tuple[str, str, str, bool]]) -> str:
    lines = ["| figure | measured | target | holds |", "| --- | --- | --- | --- |"]
    for figure, value, target, holds in rows:
        lines.append(f"| {figure} | {value} | {target} | {'yes' if holds else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the JSON-lines records in this file")
    parser.add_argument("--table", type=Path, help="also write the Markdown table to this file")
    args, pytest_args = parser.parse_known_args(argv)

    fd, name = tempfile.mkstemp(prefix="reliability-", suffix=".jsonl")
    os.close(fd)
    report = Path(name)
    # The soak and the crash runs at their full size (``make test`` runs them smaller).
    env = dict(os.environ, **{REPORT_ENV: str(report), "RELIABILITY_FULL": "1"})
    # The secret-hygiene plugin reports what it scanned; named here too in case tests/conftest.py
    # does not register it (registering it twice is harmless).
    plugins = ["-p", HYGIENE_PLUGIN] if (REPO / "tests" / "secret_hygiene.py").exists() else []
    command = [sys.executable, "-m", "pytest", "-q", *plugins, *test_paths(), *pytest_args]
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    try:
        code = subprocess.call(command, cwd=REPO, env=env)
        records = load(report)
        if args.keep:
            args.keep.write_text(report.read_text())
    finally:
        report.unlink(missing_ok=True)
    minutes = (time.monotonic() - started) / 60

    rows, notes = summarize(records)
    rows.insert(0, ("tests", "passed" if code == 0 else f"pytest exit {code}", "pass", code == 0))
    text = table(rows)
    print()
    print(text)
    print()
    for note in notes:
        print(note)
    print(f"reliability suite: {minutes:.1f} min")
    if args.table:
        args.table.write_text(text + "\n")
    broken = [figure for figure, _, _, holds in rows if not holds]
    if broken:
        print("broken: " + ", ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
