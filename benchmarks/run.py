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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from devkit import REPO
from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.user import login
from schwab_tokens import aws
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.policy import run
from schwab_tokens.reader import TokenReader
from schwab_tokens.stores import store_from_url
from schwab_tokens.stores.base import TokenStore


def table(title: str, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


# -- cold imports -------------------------------------------------------------------------------
def cold_import_ms(code: str, runs: int) -> float:
    times = []
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "functions" / "refresher"),
        # As in Lambda: X-Ray's SDK then uses the Lambda context instead of creating sampling
        # clients at import (which it does on a laptop, costing ~0.5 s).
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "schwab-tokens-refresher",
        # schwab-py's authlib warns about its httpx module on import: noise in a table's output.
        "PYTHONWARNINGS": "ignore",
    }
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
        "consumer read path on the view (TokenReader + SSM view)": (
            "from schwab_tokens import TokenReader; import schwab_tokens.stores.ssm"
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

    clients = [aws.client("s3"), aws.client("secretsmanager"), aws.client("ssm")]
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
            view = TokenReader(store.view.url)
            view.access_token()
            with counting_aws_calls() as warm_calls:
                per_call = _per_call_ns(reader.access_token)
                per_view_call = _per_call_ns(view.access_token)
            rows_calls.append(
                [
                    kind,
                    _calls(fresh_calls, kind),
                    _calls(refresh_calls, kind),
                    sum(warm_calls.values()),
                ]
            )
            rows_warm.append([f"TokenReader.access_token() ({kind} document)", f"{per_call:.0f}"])
            where = "SSM parameter" if kind == "secretsmanager" else kind
            rows_warm.append(
                [f"TokenReader.access_token() (access view, {where})", f"{per_view_call:.0f}"]
            )
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
        ["store", "still-fresh run", "refresh run", "AWS calls over 2 x 700,000 warm reads"],
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


def _endpoint_for(emu: Emulator) -> Callable[[], SchwabOAuth]:
    client = SchwabOAuth(emu.app_key, emu.app_secret, base_url=emu.base_url)
    return lambda: client


# -- many tokens in one invocation --------------------------------------------------------------
@contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    """The emulator and moto's server, each in its own process (their own GIL, as in real life)."""
    emu_port, moto_port = free_port(), free_port()
    emu = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--port",
            str(emu_port),
            "--access-lifetime",
            "300",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    moto = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("moto_server")),
            "-H",
            "127.0.0.1",
            "-p",
            str(moto_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert emu.stdout is not None
        emu.stdout.readline()  # "emulator listening on ..."
        import requests

        # N tokens of one emulated app stand for N apps (Schwab keeps one login per app).
        requests.post(
            f"http://127.0.0.1:{emu_port}/_emulator/config",
            json={"one_login_per_app": False},
            timeout=5,
        ).raise_for_status()

        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{moto_port}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{moto_port}"
    finally:
        for proc in (emu, moto):
            proc.terminate()
            proc.wait(timeout=10)


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def scale_child(count: int, emulator_url: str) -> None:
    """One "invocation" refreshing ``count`` due S3 tokens; prints a JSON line of figures."""
    import json

    import requests

    from schwab_tokens.batch import refresh_all
    from schwab_tokens.login_flow import complete_login
    from schwab_tokens.manifest import Target
    from schwab_tokens.settings import Settings

    key, secret = "emu-app-key-0001", "emu-app-secret-0001"
    callback = "https://127.0.0.1:8182"
    bucket = f"scale-{count}"
    aws.client("s3").create_bucket(Bucket=bucket)
    oauth = SchwabOAuth(key, secret, base_url=emulator_url)
    targets = []
    for i in range(count):
        url = f"s3://{bucket}/tokens/{i}.json"
        authorize, state = oauth.authorize_url(callback)
        link = requests.get(authorize, allow_redirects=False, timeout=5).headers["Location"]
        complete_login(oauth, store_from_url(url), link, state, callback)
        targets.append(Target(f"t{i}", url))
    settings = Settings(app_key=key, app_secret=secret, api_base=emulator_url)
    # ru_maxrss is the peak of the whole process, already reached while the logins above ran;
    # the peak of the refresh alone comes from Linux's VmHWM after resetting it (clear_refs 5).
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    results = refresh_all(targets, settings)
    wall = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    outcomes = Counter(each.result.outcome for each in results)
    print(
        json.dumps(
            {
                "count": count,
                "wall_s": wall,
                "peak_rss_mb": peak / 1024,
                "growth_mb": (peak - before) / 1024,
                "outcomes": dict(outcomes),
            }
        )
    )


def bench_scaling(counts: tuple[int, ...] = (1, 100, 1000)) -> list[dict[str, Any]]:
    import json

    rows = []
    figures = []
    with _servers() as (emulator_url, moto_url):
        for count in counts:
            env = {**os.environ, "AWS_ENDPOINT_URL": moto_url}
            out = subprocess.run(
                [sys.executable, __file__, "--scale-child", str(count), emulator_url],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            data = json.loads(out.strip().splitlines()[-1])
            figures.append(data)
            rows.append(
                [
                    count,
                    f"{data['wall_s']:.2f}",
                    f"{data['wall_s'] / count * 1000:.1f}",
                    f"{data['peak_rss_mb']:.0f}",
                    f"{data['growth_mb']:.1f}",
                    ", ".join(f"{k} {v}" for k, v in sorted(data["outcomes"].items())),
                ]
            )
    table(
        "One invocation refreshing N due tokens (S3 on moto's server, Schwab emulator; 16 threads)",
        [
            "tokens",
            "wall s",
            "ms per token",
            "peak RSS during refresh MB",
            "RSS growth during refresh MB",
            "outcomes",
        ],
        rows,
    )
    return figures


def bench_layer_size() -> None:
    build = REPO / ".aws-sam" / "build" / "SchwabTokensLayer"
    if not build.exists():
        print("\n(layer size: run `make build` first)")
        return
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(build.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(build))
    size = len(buffer.getvalue())
    table(
        "Built layer",
        ["what", "bytes", "MiB", "limit"],
        [["SchwabTokensLayer zip", size, f"{size / 2**20:.2f}", "1 MB target"]],
    )


def main() -> int:
    if sys.argv[1:2] == ["--scale-child"]:
        scale_child(int(sys.argv[2]), sys.argv[3])
        return 0
    bench_imports()
    bench_reader_and_store_calls()
    bench_scaling()
    bench_layer_size()
    return 0


if __name__ == "__main__":
    sys.exit(main())
