"""Which heavy libraries each entry point loads, each case in a fresh interpreter.

What users feel: a consumer Lambda's cold start pays for neither boto3 (until its first read of
an AWS store), an HTTP client, powertools nor cryptography; the token, OAuth and policy modules
know nothing of AWS; a still-fresh refresher run never imports ``requests``; only the CLI's
login listener needs cryptography, and only once it listens; Apprise (alerts) loads only
when an alert URL is checked or sent to, never in a consumer or the refresher; and schwab-py and
Schwabdev (the extras) load only when a consumer builds the one-line client of that library,
never with a plain reader. The last cases check the probe itself: it does see a library that is
loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit import REPO
from devkit.background import free_port
from tests.fakes import token_at

#: Top-level packages whose import costs a cold start tens to hundreds of milliseconds.
HEAVY = (
    "boto3",
    "botocore",
    "s3transfer",
    "requests",
    "urllib3",
    "aws_lambda_powertools",
    "cryptography",
    "schwab",
    "schwabdev",
    "apprise",
)
AWS = ("boto3", "botocore", "s3transfer")

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))
"""

HANDLER_RUN = """
import importlib.util
spec = importlib.util.spec_from_file_location("app", {app!r})
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
assert "requests" not in sys.modules, "imported by the handler module"

class Context:
    function_name = "schwab-tokens-refresher"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:refresher"
    aws_request_id = "7e1b2c3d-0000-4000-8000-000000000001"

summary = app.lambda_handler({{"detail": {{}}}}, Context())
assert summary["outcome"] == "still_fresh", summary
"""


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    forbidden: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


def _all_modules_but_the_listener() -> str:
    return (
        "import pkgutil, importlib, schwab_tokens\n"
        "for info in pkgutil.walk_packages(schwab_tokens.__path__, 'schwab_tokens.'):\n"
        "    if info.name not in ('schwab_tokens.listener', 'schwab_tokens.__main__'):\n"
        "        importlib.import_module(info.name)\n"
    )


NOTIFIER = REPO / "functions" / "notifier" / "app.py"

CASES = [
    Case("import schwab_tokens", "import schwab_tokens", forbidden=HEAVY),
    Case(
        "consumer reads a file",
        "from schwab_tokens import TokenReader\nassert TokenReader('tokens.json').access_token()",
        forbidden=HEAVY,
    ),
    Case(
        "consumer builds an S3 reader",
        "from schwab_tokens import TokenReader\nTokenReader('s3://bucket-name/schwab/tokens.json')",
        forbidden=HEAVY,
    ),
    Case(
        "consumer gives schwab-py its access functions",
        "from schwab_tokens import TokenReader\nTokenReader('tokens.json').access_functions()",
        forbidden=HEAVY,
    ),
    Case(
        "consumer builds a schwab-py client",
        "from schwab_tokens import TokenReader\nTokenReader('tokens.json').schwab_py_client()",
        forbidden=(*AWS, "schwabdev", "aws_lambda_powertools", "apprise"),
        required=("schwab",),
    ),
    Case(
        "consumer builds a Schwabdev client",
        "from schwab_tokens import TokenReader\n"
        "TokenReader('tokens.json').schwabdev_client(tokens_db='schwabdev.db')",
        forbidden=(*AWS, "schwab", "aws_lambda_powertools", "apprise"),
        required=("schwabdev",),
    ),
    Case(
        "AWS stores, imported",
        "import schwab_tokens.aws, schwab_tokens.stores.s3, schwab_tokens.stores.secretsmanager",
        forbidden=(*AWS, "aws_lambda_powertools"),
    ),
    *[
        Case(f"schwab_tokens.{name}", f"import schwab_tokens.{name}", forbidden=AWS)
        for name in (
            "token",
            "oauth",
            "policy",
            "notes",
            "notify",
            "tickets",
            "hosted_login",
            "login_flow",
        )
    ],
    Case(
        "refresher handler, still-fresh run",
        HANDLER_RUN.format(app=str(REPO / "functions" / "refresher" / "app.py")),
        forbidden=("requests", "cryptography", "apprise"),
        required=("aws_lambda_powertools",),
    ),
    Case(
        "every module but the listener",
        _all_modules_but_the_listener(),
        forbidden=("cryptography", "apprise", "schwab", "schwabdev"),
        required=("requests", "aws_lambda_powertools"),
    ),
    Case(
        "notifier handler, imported",
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(NOTIFIER)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))",
        forbidden=("apprise", "requests", "cryptography"),
    ),
    Case(
        "alerts, checking a URL",
        "from schwab_tokens import alert_urls\nalert_urls.check('json://127.0.0.1:9/hook')",
        required=("apprise",),
    ),
    Case("listener, imported", "import schwab_tokens.listener", forbidden=("cryptography",)),
    Case(
        "listener, listening",
        "from schwab_tokens.listener import CallbackListener\n"
        "with CallbackListener('https://127.0.0.1:{port}'):\n    pass",
        required=("cryptography",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_heavy_libraries_load_only_where_needed(case: Case, tmp_path: Path) -> None:
    (tmp_path / "tokens.json").write_bytes(token_at(time.time()).to_json())
    env = {
        "PATH": "/usr/bin:/bin",
        "TOKEN_STORE_URL": str(tmp_path / "tokens.json"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "schwab-tokens",
        "POWERTOOLS_METRICS_NAMESPACE": "SchwabTokens",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    code = PROBE.format(code=case.code.replace("{port}", str(free_port())), heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & set(case.forbidden), f"{case.name} loads {sorted(loaded)}"
    assert set(case.required) <= loaded, f"{case.name} loads only {sorted(loaded)}"
