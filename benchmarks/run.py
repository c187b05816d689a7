"""`make bench`: medians and ratios, each figure beside what a user would use instead.

Nothing here asserts a time; it prints tables. Schwab is the emulator, AWS is moto.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from schwab_tokens import aws  # noqa: E402
from schwab_tokens.reader import TokenReader  # noqa: E402
from schwab_tokens.refresh import run  # noqa: E402
from schwab_tokens.stores import store_from_url  # noqa: E402
from schwab_tokens.stores.base import TokenStore  # noqa: E402
from tests.emulator import Emulator  # noqa: E402
from tests.helpers import login  # noqa: E402


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


# -- cold imports -------------------------------------------------------------------------------
def cold_import_ms(code: str, runs: int) -> float:
    times = []
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'functions' / 'refresher'}"}
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bench_imports(runs: int = 15) -> None:
    cases = {
        "python -c pass (interpreter start)": "pass",
        "import boto3 (baseline)": "import boto3",
        "refresher handler module (functions/refresher/app.py)": "import app",
        "consumer read path (TokenReader + S3 store)": (
            "from schwab_tokens import TokenReader; import schwab_tokens.stores.s3"
        ),
        "import schwab (schwab-py, for comparison)": "import schwab",
    }
    measured = {name: cold_import_ms(code, runs) for name, code in cases.items()}
    base = measured["import boto3 (baseline)"]
    start = measured["python -c pass (interpreter start)"]
    rows = [
        [name, f"{ms:.0f}", f"{ms - start:.0f}", f"{ms / base:.2f}x"]
        for name, ms in measured.items()
    ]
    table(
        f"Cold import (median of {runs} fresh interpreters)",
        ["what", "ms (process)", "ms (minus interpreter)", "ratio to import boto3"],
        rows,
    )


# -- call counting ------------------------------------------------------------------------------
@contextmanager
def counting_aws_calls() -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: object) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    clients = [aws.client("s3"), aws.client("secretsmanager")]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
    try:
        yield calls
    finally:
        for c in clients:
            c.meta.events.unregister("before-call.*.*", count)


def stores_under_moto(folder: str) -> Iterator[tuple[str, TokenStore]]:
    aws.client("s3").create_bucket(Bucket="bench-bucket")
    yield "file", store_from_url(str(Path(folder) / "tokens.json"))
    yield "s3", store_from_url("s3://bench-bucket/schwab/tokens.json")
    yield "secretsmanager", store_from_url("secretsmanager://bench/schwab-token")


def bench_reader_and_store_calls() -> None:
    from moto import mock_aws

    rows_calls = []
    rows_warm = []
    with mock_aws(), Emulator() as emu, tempfile.TemporaryDirectory() as folder:
        aws.reset_clients()
        endpoint = _endpoint_for(emu)
        for kind, store in stores_under_moto(folder):
            login(store, emu)
            with counting_aws_calls() as fresh_calls:
                outcome = run(store, endpoint)
            assert outcome.outcome == "still_fresh", outcome.to_dict()
            with counting_aws_calls() as refresh_calls:
                outcome = run(store, endpoint, force=True)
            assert outcome.outcome == "refreshed", outcome.to_dict()
            reader = TokenReader(store)
            reader.access_token()
            with counting_aws_calls() as warm_calls:
                per_call = _per_call_ns(reader.access_token)
            rows_calls.append(
                [
                    kind,
                    _calls(fresh_calls, kind),
                    _calls(refresh_calls, kind),
                    sum(warm_calls.values()),
                ]
            )
            rows_warm.append([f"TokenReader.access_token() ({kind})", f"{per_call:.0f}"])
        # The alternative a user would write: powertools' cached get_secret.
        from aws_lambda_powertools.utilities.parameters import get_secret

        get_secret("bench/schwab-token", max_age=300)
        rows_warm.append(
            [
                "powertools get_secret(max_age=300), cache warm",
                f"{_per_call_ns(lambda: get_secret('bench/schwab-token', max_age=300)):.0f}",
            ]
        )
    table(
        "Store calls per run (file: reads+writes of the file store; AWS: API calls)",
        ["store", "still-fresh run", "refresh run", "AWS calls over 10,000 warm reads"],
        rows_calls,
    )
    table("Warm read, per call (median of 7 x 100,000 calls)", ["what", "ns per call"], rows_warm)


def _calls(calls: Counter[str], kind: str) -> str:
    if kind == "file":
        return "local file (no API calls)"
    return f"{sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})"


def _per_call_ns(func: Callable[[], object], number: int = 100_000) -> float:
    runs = timeit.repeat(func, number=number, repeat=7)
    return statistics.median(runs) / number * 1e9


def _endpoint_for(emu: Emulator) -> Callable[[], object]:
    from schwab_tokens.oauth import SchwabOAuth

    client = SchwabOAuth(emu.app_key, emu.app_secret, base_url=emu.base_url)
    return lambda: client


def main() -> int:
    bench_imports()
    bench_reader_and_store_calls()
    return 0


if __name__ == "__main__":
    sys.exit(main())
