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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
    records: list[dict[str, Any]] = []
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


# -- the table: one entry of FIGURES per part, each from the records of its kinds -----------------
Record = dict[str, Any]
Kinds = dict[str, list[Record]]
#: One row of the table: figure, value, target, holds.
Row = tuple[str, str, str, bool]
Measured = tuple[list[Row], list[str]]


@dataclass(frozen=True)
class Figures:
    """One part of the table: the records it reads (``select``), the rows and notes they give
    (``measure``, called only when there are some), and its rows when there are none."""

    select: Callable[[Kinds], list[Record]]
    measure: Callable[[list[Record], Kinds], Measured]
    absent: tuple[Row, ...] = ()


def of_kind(kind: str) -> Callable[[Kinds], list[Record]]:
    return lambda kinds: kinds.get(kind, [])


def fault_figures(faults: list[Record], kinds: Kinds) -> Measured:
    cases = {(r.get("store"), r.get("fault")) for r in faults}
    known = [r for r in faults if not r.get("passed") and r.get("known_bug")]
    bad = [r for r in faults if not r.get("passed") and not r.get("known_bug")]
    unchanged = [r for r in faults if r.get("bytes_unchanged") is False]
    value = (
        f"{len(cases)} rows (store x fault), {len(faults)} runs; "
        f"{len(faults) - len(bad) - len(known)} as expected"
    )
    if known:
        value += f", {len(known)} known bug (xfail)"
    rows = [("faults tried", value, "every run as expected", not bad and not unchanged)]
    notes = [f"known bug, {r.get('store')}/{r.get('fault')}: {r.get('known_bug')}" for r in known]
    modes = Counter(str(r.get("mode")) for r in faults)
    notes.append(
        "fault matrix runs by mode: " + ", ".join(f"{m} {n}" for m, n in sorted(modes.items()))
    )
    for r in bad:
        notes.append(f"FAILED fault row {r.get('store')}/{r.get('fault')} ({r.get('mode')}):")
        notes += [f"  - {p}" for p in r.get("problems", [])]
    return rows, notes


def crash_figures(crashes: list[Record], kinds: Kinds) -> Measured:
    lost = sum(1 for r in crashes if r.get("lost") or r.get("corrupt"))
    next_failed = sum(1 for r in crashes if r.get("next_ok") is False)
    killed = Counter(str(r.get("store")) for r in crashes)
    short = [s for s in STORES if killed[s] < 50]
    rows = [
        (
            "runs killed (SIGKILL mid-refresh)",
            f"{len(crashes)} ({per_store(killed)})",
            ">= 50 per store",
            not short,
        ),
        (
            "tokens lost or corrupted",
            f"{lost} of {len(crashes)} kills; next run failed after {next_failed}",
            "0",
            lost == 0 and next_failed == 0,
        ),
    ]
    phases = Counter(str(r.get("phase")) for r in crashes)
    return rows, ["kills landed: " + ", ".join(f"{p} {n}" for p, n in sorted(phases.items()))]


def with_a_view(kinds: Kinds) -> list[Record]:
    return [r for r in kinds.get("fault", []) + kinds.get("crash", []) if r.get("view")]


def view_figures(views: list[Record], kinds: Kinds) -> Measured:
    states = Counter(str(r["view"]) for r in views)
    wrong = sum(n for state, n in states.items() if state.startswith("WRONG"))
    repaired = [r for r in views if r.get("recovered") is False or r.get("next_ok") is False]
    value = (
        f"{len(views)} checked: "
        + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
        + f"; not repaired by the next run: {len(repaired)}"
    )
    row = ("access view after a fault or kill", value, "matches or older, never another token")
    notes = []
    crashes = kinds.get("crash", [])
    if crashes:
        slowest = max(float(r.get("next_run_seconds") or 0) for r in crashes)
        notes.append(f"longest wait of a next run for a dead holder's lease: {slowest:.1f} s")
    return [(*row, wrong == 0 and not repaired)], notes


def hypothesis_figures(generated: list[Record], kinds: Kinds) -> Measured:
    examples = sum(int(r.get("examples") or 0) for r in generated)
    tests = len({r.get("test") for r in generated})
    return [("inputs generated (hypothesis)", f"{examples} in {tests} tests", "-", True)], []


def leak_checks(kinds: Kinds) -> list[Record]:
    return [r for r in kinds.get("leak_check", []) if int(r.get("checked") or 0)]


def leak_figures(leaks: list[Record], kinds: Kinds) -> Measured:
    checked = sum(int(r.get("checked") or 0) for r in leaks)
    texts = sum(int(r.get("texts") or 0) for r in leaks)
    leaked = sum(int(r.get("leaked") or 0) for r in leaks)
    scanned = f"{texts} outputs of {checked} tests" if texts else f"{checked} tests"
    return [("secrets leaked", f"{leaked} in {scanned} scanned", "0", leaked == 0)], []


def bad_answer_figures(answers: list[Record], kinds: Kinds) -> Measured:
    broken = sum(1 for r in answers if r.get("broken") or not r.get("passed"))
    stores = Counter(str(r.get("store")) for r in answers)
    value = f"{len(answers)} ({per_store(stores)}) / {broken}"
    return [("bad token answers tried / stores broken", value, "0 broken", broken == 0)], []


def clock_skew_figures(skews: list[Record], kinds: Kinds) -> Measured:
    doubles = sum(1 for r in skews if r.get("double_holder") or not r.get("passed"))
    writers = ", ".join(f"{r.get('store')} {r.get('skew'):+d} s" for r in skews)
    value = f"{len(skews)} ({writers}) / {doubles}"
    figure = "clock-skewed writers / double holders"
    return [(figure, value, "0 double holders", doubles == 0)], []


def soak_figures(soaks: list[Record], kinds: Kinds) -> Measured:
    needed, calls, errors, rejected, reads = (
        sum(int(r.get(name) or 0) for r in soaks)
        for name in ("needed", "calls", "errors", "rejected", "reads")
    )
    # A store's rounds may come in several chunks (records), one per test.
    rounds: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)
    chunks: Counter[str] = Counter()
    for r in soaks:
        rounds[str(r.get("store"))] += int(r.get("rounds") or 0)
        seconds[str(r.get("store"))] += float(r.get("seconds") or 0)
        chunks[str(r.get("store"))] += 1
    min_left = min(float(r.get("min_left") or 0) for r in soaks)
    rows = [
        (
            "endpoint calls vs needed (soak)",
            f"{calls} / {needed} (rounds: {per_store_text(rounds)}; 20 refreshers, 20 readers)",
            "equal",
            calls == needed and errors == 0,
        ),
        (
            "reader tokens refused or < 300 s left",
            f"{rejected} refused, least left {min_left:.0f} s, in {reads} reads",
            "0, > 300 s",
            rejected == 0 and min_left > 300 and errors == 0,
        ),
    ]
    notes = [
        f"soak {store}: {rounds[store]} rounds in {seconds[store]:.1f} s ({chunks[store]} chunks)"
        for store in sorted(rounds, key=store_order)
    ]
    return rows, notes


def crash_time_notes(summaries: list[Record], kinds: Kinds) -> Measured:
    killed: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)
    for r in summaries:  # one per store, or one per store and strategy
        killed[str(r.get("store"))] += int(r.get("killed") or 0)
        seconds[str(r.get("store"))] += float(r.get("seconds") or 0)
    notes = [
        f"crash {store}: {killed[store]} kills in {seconds[store]:.1f} s"
        for store in sorted(killed, key=store_order)
    ]
    return [], notes


#: The table's parts, in the order of its rows (and of the notes under it).
FIGURES = (
    Figures(
        of_kind("fault"),
        fault_figures,
        (("faults tried", "not run", "every run as expected", False),),
    ),
    Figures(
        of_kind("crash"),
        crash_figures,
        (
            ("runs killed (SIGKILL mid-refresh)", "not run", ">= 50 per store", False),
            ("tokens lost or corrupted", "not measured", "0", False),
        ),
    ),
    Figures(with_a_view, view_figures),
    Figures(
        of_kind("hypothesis"),
        hypothesis_figures,
        (("inputs generated (hypothesis)", "not measured", "-", True),),
    ),
    Figures(leak_checks, leak_figures, (("secrets leaked", "not measured", "0", True),)),
    Figures(
        of_kind("bad_answer"),
        bad_answer_figures,
        (("bad token answers tried / stores broken", "not run", "0 broken", False),),
    ),
    Figures(
        of_kind("clock_skew"),
        clock_skew_figures,
        (("clock-skewed writers / double holders", "not run", "0", False),),
    ),
    Figures(
        of_kind("soak"),
        soak_figures,
        (("endpoint calls vs needed (soak)", "not run", "equal", False),),
    ),
    Figures(of_kind("crash_summary"), crash_time_notes),
)


def summarize(records: list[Record]) -> Measured:
    """The table's rows (figure, value, target, holds) and the lines of detail under it."""
    kinds = by_kind(records)
    rows: list[Row] = []
    notes: list[str] = []
    for part in FIGURES:
        chosen = part.select(kinds)
        if chosen:
            more_rows, more_notes = part.measure(chosen, kinds)
            rows += more_rows
            notes += more_notes
        else:
            rows += part.absent
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
