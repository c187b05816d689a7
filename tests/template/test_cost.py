"""`make cost` on the defaults: one token on S3, rate(5 minutes), at most $0.30 a month at list
price without the free tier; the options cost what the README says they add. The opt-in alerts
notifier (Alerts=Enabled) is counted: its alarm, its runs and what each reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devkit import REPO


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


def test_alerts_add_the_notifier_and_its_alarm() -> None:
    results = priced()
    defaults = results["defaults (S3, AWS-managed keys, Parameter Store)"]
    alerts = results["Alerts=Enabled"]
    assert defaults["total"] <= 0.30, defaults  # the notifier is opt-in
    assert defaults["notifier"]["runs"] == 0
    items = {row["item"]: row for row in alerts["rows"]}
    before = {row["item"]: row for row in defaults["rows"]}
    assert items["CloudWatch alarms"]["quantity"] == 3  # NotifierErrorsAlarm
    # A few runs a month (one per message on the topic), at the template's 256 MB.
    assert alerts["notifier"] == {
        "runs": pytest.approx(9),
        "gb_seconds": pytest.approx(9 * 0.3 * 256 / 1024),
        "memory_mb": 256,
    }
    runs = alerts["notifier"]["runs"]
    assert items["Lambda requests"]["quantity"] == pytest.approx(
        before["Lambda requests"]["quantity"] + runs
    )
    # Each run reads the alert URLs: an SSM SecureString, one KMS request.
    assert items["KMS requests"]["quantity"] == pytest.approx(
        before["KMS requests"]["quantity"] + runs
    )
    added = alerts["total"] - defaults["total"]
    assert 0.10 <= added < 0.11, added  # the alarm, and a fraction of a cent
    assert alerts["total_free_tier"] - defaults["total_free_tier"] < 0.01
    everything = next(label for label in results if label.startswith("everything on"))
    assert results[everything]["notifier"]["runs"] == runs
