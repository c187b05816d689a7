"""`make cost` on the defaults: one token on S3, rate(5 minutes), at most $0.30 a month at list
price without the free tier; the options cost what the README says they add."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.template import REPO


def priced(*args: str) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cost.py"), "--hours", "2", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["results"]


def test_the_defaults_cost_at_most_thirty_cents_a_month() -> None:
    (defaults,) = priced("--only-defaults").values()
    assert defaults["total"] <= 0.30, defaults
    assert defaults["total_free_tier"] < defaults["total"]
    items = {row["item"]: row for row in defaults["rows"]}
    assert items["CloudWatch alarms"]["quantity"] == 2
    assert items["CloudWatch custom metrics"]["quantity"] == 0
    assert items["KMS customer-managed keys"]["quantity"] == 0
    assert items["Secrets Manager secrets"]["quantity"] == 0
    # token, notes and access-view reads, refreshes (lease, token, view), credentials
    assert 3 <= defaults["aws_calls_per_run"] <= 6
    # The consumers' access view is counted: read every run, written every refresh.
    view = defaults["access_view"]
    assert view["reads_per_run"] == pytest.approx(1.0)
    assert view["writes_per_refresh"] == pytest.approx(1.0)
