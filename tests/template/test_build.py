"""`sam build` makes a small arm64 layer and the three functions without Docker, from the
hash-locked requirements (docs/development.md#locks), and refuses a wheel whose hash is not the
lock's.

`sam build` needs the SAM CLI in its own venv (`make tools` creates .tools/sam); without it the
build tests skip, or fail under CI (``tests/requirements.py``). The build downloads the layer's
wheels with pip (from the package index or pip's cache), as a user's `sam build` does.
(cfn-lint, `sam validate --lint` and checkov run in `make lint-template`, once, not here again.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from devkit import REPO
from devkit.template import TEMPLATE
from scripts.lock import pins
from tests.requirements import require_tool

SAM = REPO / ".tools" / "sam" / "bin" / "sam"
#: The consumer layer stays under 1 MB: every bot loads it (Apprise ships in the notifier only).
LAYER_ZIP_LIMIT = 1_000_000
#: Never in the layer: the runtime has boto3, the refresher gets powertools from the official
#: layer (or the stack's PowertoolsLayer), and only the laptop's login listener needs
#: cryptography.
NOT_IN_LAYER = ("boto3", "botocore", "aws_lambda_powertools", "cryptography", "moto", "yaml")


def sam_cli() -> str:
    """The SAM CLI of `make tools` (skips, or fails under CI, without it)."""
    return require_tool(
        f"the SAM CLI ({SAM.relative_to(REPO)})", "run `make tools`", SAM if SAM.exists() else None
    )


#: The pip the makefile builders get from `make build`: the SAM venv's (any Python 3.11+).
PIP = f"{SAM.with_name('python')} -m pip"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Path]:
    """One `sam build` for the whole session, shared by the xdist workers (a build is ~10 s of
    pip and copying: made once, under a lock, by whichever worker needs it first)."""
    sam = sam_cli()
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's, not a worker's
    build_dir = shared / "sam-build" / "build"
    with open(shared / "sam-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "sam-build" / "built").exists():
            _sam_build(sam, build_dir)
            (shared / "sam-build" / "built").touch()
    yield build_dir


def _sam_build(sam: str, build_dir: Path) -> None:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PIP": PIP}
    result = subprocess.run(
        [
            sam,
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(build_dir.parent / "cache"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Build Succeeded" in result.stdout


def test_layer_holds_schwab_tokens_and_requests_only(built: Path) -> None:
    python = built / "SchwabTokensLayer" / "python"
    assert (python / "schwab_tokens" / "__init__.py").is_file()
    assert (python / "requests").is_dir()
    for dependency in ("urllib3", "idna", "certifi", "charset_normalizer"):
        assert (python / dependency).is_dir(), dependency
    names = {path.name for path in python.iterdir()}
    for unwanted in NOT_IN_LAYER:
        assert unwanted not in names, f"{unwanted} is in the layer"
    assert not list(python.rglob("__pycache__"))
    # Compiled parts, if any, are for Lambda: CPython 3.12 on arm64.
    for extension in python.rglob("*.so"):
        assert "cpython-312-aarch64-linux-gnu" in extension.name, extension


def test_layer_zip_is_under_1_mb(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    layer = built / "SchwabTokensLayer"
    archive = tmp_path / "layer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(layer.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(layer))
    size = archive.stat().st_size
    with capsys.disabled():
        print(f"\nSchwabTokensLayer zip: {size} bytes ({size / 2**20:.2f} MiB)")
    assert size < LAYER_ZIP_LIMIT


def test_the_bundled_powertools_layer_holds_powertools_and_its_tracer_only(built: Path) -> None:
    """The layer regions without the official one get: the hash-locked wheels, for Lambda."""
    python = built / "PowertoolsLayer" / "python"
    names = {path.name for path in python.iterdir()}
    for needed in ("aws_lambda_powertools", "aws_xray_sdk", "wrapt", "jmespath"):
        assert needed in names, needed
    assert "typing_extensions.py" in names
    for unwanted in ("boto3", "botocore", "schwab_tokens", "requests", "bin"):
        assert unwanted not in names, f"{unwanted} is in the layer"
    assert not list(python.rglob("__pycache__"))
    extensions = list(python.rglob("*.so"))
    assert extensions  # wrapt's
    for extension in extensions:
        assert "cpython-312-aarch64-linux-gnu" in extension.name, extension


def test_functions_hold_their_handler_only(built: Path) -> None:
    for function in ("RefresherFunction", "LoginFunction", "ExampleConsumerFunction"):
        files = sorted(p.name for p in (built / function).rglob("*") if p.is_file())
        assert "app.py" in files, function
        assert "Makefile" not in files, function
        assert not [name for name in files if name.endswith(".pyc")], function


def shipped_versions(folder: Path) -> dict[str, str]:
    """Name -> version of every distribution pip installed into ``folder`` (its dist-info)."""
    found = {}
    for info in folder.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[canonicalize_name(name)] = version
    return found


def locked_versions(folder: str) -> dict[str, str]:
    """Name -> version of every pin of ``folder``'s requirements.lock."""
    lock = f"{folder}/requirements.lock"
    return {pin.name: pin.version for pin in pins((REPO / lock).read_text(), lock)}


LAYERS = {"SchwabTokensLayer": "layers/schwab_tokens", "PowertoolsLayer": "layers/powertools"}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_the_layers_ship_exactly_their_locked_versions(built: Path, layer: str) -> None:
    assert shipped_versions(built / layer / "python") == locked_versions(LAYERS[layer])


def run_target(
    makefile: Path, target: str, source: Path, artifacts: Path
) -> subprocess.CompletedProcess[str]:
    """One makefile builder's target, as `sam build` runs it: in ``source`` (a copy of the
    resource's folder) with ARTIFACTS_DIR set, and `make build`'s pip."""
    artifacts.mkdir()
    env = {**os.environ, "ARTIFACTS_DIR": str(artifacts), "PIP": PIP}
    return subprocess.run(
        ["make", "--makefile", str(makefile), target],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("layer", "package"),
    # The internet-facing layer's compiled wheel; the bundled Powertools' (installed --no-deps).
    [("SchwabTokensLayer", "charset-normalizer"), ("PowertoolsLayer", "wrapt")],
)
def test_a_tampered_hash_in_a_layers_lock_fails_its_build_naming_the_package(
    tmp_path: Path, layer: str, package: str
) -> None:
    sam_cli()
    folder = LAYERS[layer]
    source = tmp_path / "source"
    shutil.copytree(
        REPO / folder, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    lock = source / "requirements.lock"
    (pin,) = [pin for pin in pins(lock.read_text(), str(lock)) if pin.name == package]
    # The one hash a Lambda lock keeps: the wheel pip installs for Lambda (scripts/lock.py).
    (real,) = (digest.removeprefix("sha256:") for digest in pin.hashes)
    tampered = real[:-1] + ("0" if real[-1] != "0" else "1")
    lock.write_text(lock.read_text().replace(real, tampered))

    artifacts = tmp_path / "artifacts"
    result = run_target(REPO / folder / "Makefile", f"build-{layer}", source, artifacts)

    assert result.returncode != 0, result.stdout + result.stderr
    assert "DO NOT MATCH THE HASHES" in result.stderr, result.stderr
    assert f"{package}=={pin.version} from" in result.stderr, result.stderr
    assert f"Got        {real}" in result.stderr, result.stderr
    assert not (artifacts / "python" / package.replace("-", "_")).exists()


def test_a_function_with_a_lock_ships_its_locked_requirements(tmp_path: Path) -> None:
    """A function's own dependencies (docs/development.md#locks): a requirements.in beside its
    app.py, locked by `make lock` into requirements.lock, which functions/Makefile installs.
    The schwab_tokens layer's lock stands in for a function's."""
    sam_cli()
    source = tmp_path / "example_consumer"
    shutil.copytree(
        REPO / "functions" / "example_consumer",
        source,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("requirements.in", "requirements.lock"):
        shutil.copy(REPO / "layers" / "schwab_tokens" / name, source)
    artifacts = tmp_path / "artifacts"
    result = run_target(
        REPO / "functions" / "Makefile", "build-ExampleConsumerFunction", source, artifacts
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (artifacts / "app.py").is_file()
    assert shipped_versions(artifacts) == locked_versions("layers/schwab_tokens")
    names = {path.name for path in artifacts.iterdir()}
    assert not names & {"requirements.in", "requirements.lock", "bin", "Makefile"}
    assert not list(artifacts.rglob("__pycache__"))


def lambda_runtime(folder: Path) -> Path:
    """A folder with what Lambda's python3.12 runtime brings: boto3 and its dependencies."""
    import importlib.util

    folder.mkdir()
    for module in ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "six"):
        spec = importlib.util.find_spec(module)
        # The project's own dependencies (boto3's): missing means a broken `make setup`.
        assert spec is not None and spec.origin is not None, f"{module} is not installed"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


def run_isolated(path: list[Path], statement: str, env: dict[str, str]) -> str:
    """``statement`` in a Python that sees only ``path`` (and the standard library); its
    output. It writes no bytecode (-B): the build is shared by the session's tests, and one of
    them checks that it holds no ``.pyc``."""
    code = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; {statement}"
    result = subprocess.run(
        [sys.executable, "-B", "-S", "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_built_consumer_imports_with_the_layer_and_the_runtimes_boto3(
    built: Path, tmp_path: Path
) -> None:
    """What Lambda gives the example consumer: its code, our layer, the runtime's boto3."""
    path = [
        built / "ExampleConsumerFunction",
        built / "SchwabTokensLayer" / "python",
        lambda_runtime(tmp_path / "runtime"),
    ]
    env = {"TOKEN_ACCESS_URL": "s3://example-bucket/schwab/tokens.access.json"}
    assert run_isolated(path, "import app; print(type(app.READER).__name__)", env) == "TokenReader"


def test_built_refresher_starts_with_the_bundled_powertools_and_the_runtimes_boto3(
    built: Path, tmp_path: Path
) -> None:
    """Where the stack deploys its own Powertools layer, the refresher gets: its code, our
    layer, that layer, the runtime's boto3. With tracing on (DetailedMetrics), its cold start
    patches botocore for X-Ray, which needs the bundle's aws-xray-sdk and wrapt."""
    path = [
        built / "RefresherFunction",
        built / "SchwabTokensLayer" / "python",
        built / "PowertoolsLayer" / "python",
        lambda_runtime(tmp_path / "runtime"),
    ]
    statement = (
        "import app, aws_lambda_powertools, aws_xray_sdk, botocore; "
        "from aws_xray_sdk.core import patcher; "
        "print(callable(app.lambda_handler), 'botocore' in patcher._PATCHED_MODULES, "
        "aws_lambda_powertools.__file__.startswith(sys.path[2]))"
    )
    env = {
        "LAMBDA_TASK_ROOT": str(built / "RefresherFunction"),  # Powertools traces in Lambda only
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_SERVICE_NAME": "schwab-tokens",
    }
    assert run_isolated(path, statement, env) == "True True True"
