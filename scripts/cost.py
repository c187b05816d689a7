"""`make cost`: what a deployment costs a month, at list price, with and without the free tier.

Two sources, nothing guessed that can be counted:

- the template (template.yaml, its Conditions resolved for each parameter combination): alarms,
  dashboards, customer-managed keys, Secrets Manager secrets, the functions' memory;
- a simulated day of runs: the real refresher handler, every 5 minutes of the emulator's clock,
  against AWS on moto (in-process) and the Schwab emulator. Every AWS request is counted by
  service and operation with botocore's own event hooks (the token, its notes and lease, and
  the consumers' access view beside it: on S3 an object read every run and written every
  refresh, for a Secrets Manager store an SSM SecureString, free on the standard tier but one
  KMS request a call); the EMF metrics it prints are counted by name and dimensions (each one
  is a billed custom metric); its log bytes are measured.

What cannot be measured here is an assumption, stated in ASSUMPTIONS and printed with the
table: request latencies on real AWS (for Lambda's billed duration), how much S3 Bucket Keys
save KMS (the access view is written without one: a KMS request per view request with the
stack's key), the Lambda platform's own log lines, how many e-mails a month, object sizes, and
with Alerts=Enabled how long the notifier runs (it runs once per message on the topic, the
messages the e-mails count; each run reads the alert URLs, an SSM SecureString: a KMS request).
Prices are us-east-1 list prices (PRICES); "free tier" means the always-free allowances, not
the 12-month ones.

    python scripts/cost.py [--hours 24] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# The refresher's environment as the stack sets it (powertools reads these at import).
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_SERVICE_NAME="schwab-tokens",
    POWERTOOLS_METRICS_NAMESPACE="SchwabTokens",
    POWERTOOLS_TRACE_DISABLED="true",
)
for _name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_name, None)

HOURS_PER_MONTH = 730.0
#: botocore's event names for the services whose IAM prefix differs.
SERVICE_NAMES = {"secrets-manager": "secretsmanager"}
RUNS_PER_HOUR = 12  # the default schedule, rate(5 minutes)

#: us-east-1 list prices (USD), Nov 2026.
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second_arm64": 0.0000133334,
    "s3_get": 0.0004 / 1000,  # GET, HEAD and other reads
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_gb_month": 0.023,
    "sm_secret_month": 0.40,
    "sm_api": 0.05 / 10000,
    "ssm_standard": 0.0,  # standard parameters and standard throughput cost nothing
    "kms_key_month": 1.00,
    "kms_request": 0.03 / 10000,
    "cw_alarm": 0.10,  # standard resolution, per alarm metric
    "cw_metric": 0.30,  # custom metric, first 10,000
    "cw_dashboard": 3.00,
    "logs_ingest_gb": 0.50,
    "logs_store_gb_month": 0.03,
    "sns_publish": 0.50 / 1e6,
    "sns_email": 2.00 / 100000,
    "xray_trace": 5.00 / 1e6,
}
#: Always-free allowances per month (the 12-month S3 and Secrets Manager trials are not counted).
FREE = {
    "lambda_request": 1e6,
    "lambda_gb_second_arm64": 400000,
    "kms_request": 20000,
    "cw_alarm": 10,
    "cw_metric": 10,
    "cw_dashboard": 3,
    "logs_gb": 5,
    "sns_publish": 1e6,
    "sns_email": 1000,
    "xray_trace": 100000,
}
ASSUMPTIONS = {
    "aws_call_ms": 25,  # one AWS API call from Lambda in-region
    "schwab_call_ms": 300,  # one call to Schwab's token endpoint
    "run_overhead_ms": 20,  # the handler's own work on a warm container
    "platform_log_bytes": 260,  # Lambda's START, END and REPORT lines per invocation
    "kms_per_s3_request_with_bucket_key": 0.1,  # S3 Bucket Keys cut KMS calls by ~90-99 %
    "emails_per_month": 9,  # two warnings per weekly login, plus the odd outage
    "document_bytes": 2048,
    "view_bytes": 512,  # the access view: the access token, its expiry, a fingerprint
    "noncurrent_days": 30,
    # Alerts=Enabled: the notifier, one run per message on the topic (emails_per_month), most
    # of them cold (Lambda bills the init phase): Apprise's import, the SSM read, a post a URL.
    "notifier_ms": 300,
    "notifier_log_bytes": 1000,  # the platform's lines and its own, per run
}
COMBINATIONS: dict[str, dict[str, str]] = {
    "defaults (S3, AWS-managed keys, Parameter Store)": {},
    "StoreType=SecretsManager": {"StoreType": "SecretsManager"},
    "Encryption=CustomerManagedKey": {"Encryption": "CustomerManagedKey"},
    "CredentialsStore=SecretsManager": {"CredentialsStore": "SecretsManager"},
    "DetailedMetrics=Enabled": {"DetailedMetrics": "Enabled"},
    "HostedLogin=Enabled": {"HostedLogin": "Enabled"},
    "Alerts=Enabled": {"Alerts": "Enabled"},
    "everything on (SM store, CMK, SM credentials, metrics, hosted login, alerts)": {
        "StoreType": "SecretsManager",
        "Encryption": "CustomerManagedKey",
        "CredentialsStore": "SecretsManager",
        "DetailedMetrics": "Enabled",
        "HostedLogin": "Enabled",
        "Alerts": "Enabled",
    },
}


# -- the template ----------------------------------------------------------------------------------
def _quantity(value: float) -> str:
    """A count with thousands separators (32,060), a small amount in four figures (0.0073)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.4g}"


def _alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """How many metrics an alarm's price counts: one, or each ``MetricStat`` of its math."""
    metrics = alarm.get("Metrics")
    if not metrics:
        return 1
    return sum(1 for metric in metrics if "MetricStat" in metric)


def template_counts(deployed: Mapping[str, Any]) -> dict[str, Any]:
    """What the bill counts from a template whose conditions are resolved."""
    resources = deployed["Resources"]
    kinds = Counter(body["Type"] for body in resources.values())
    refresher = resources["RefresherFunction"]["Properties"]
    notifier = resources.get("NotifierFunction", {}).get("Properties")
    return {
        # CloudWatch bills an alarm per metric it watches: a metric-math alarm, each of them.
        "alarms": sum(
            _alarm_metrics(body["Properties"])
            for body in resources.values()
            if body["Type"] == "AWS::CloudWatch::Alarm"
        ),
        "dashboards": kinds["AWS::CloudWatch::Dashboard"],
        "kms_keys": kinds["AWS::KMS::Key"],
        "secrets": kinds["AWS::SecretsManager::Secret"],
        "memory_mb": int(refresher.get("MemorySize", 128)),
        "tracing": refresher.get("Tracing") == "Active",
        # Alerts=Enabled: the notifier's memory (0: no notifier).
        "notifier_memory_mb": int(notifier.get("MemorySize", 128)) if notifier else 0,
    }


# -- a simulated day -------------------------------------------------------------------------------
@dataclass
class Day:
    hours: float
    runs: int = 0
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The calls (of ``calls``) on the consumers' access view: the S3 object or SSM parameter.
    view_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    schwab_calls: int = 0
    metrics: set[str] = field(default_factory=set)
    log_bytes: int = 0


@contextlib.contextmanager
def aws_on_moto() -> Iterator[None]:
    from moto import mock_aws

    from schwab_tokens import aws

    with mock_aws():
        aws.reset_clients()
        yield
    aws.reset_clients()


def simulate(store_type: str, credentials: str, detailed: bool, hours: float) -> Day:
    """``hours`` of scheduled runs with the emulator's clock moving 5 minutes per run."""
    from devkit.emulator import Emulator

    day = Day(hours)
    with Emulator() as emulator, aws_on_moto():
        settings = stack_settings(emulator, store_type, credentials, detailed)
        emulator.reset_counters()
        count_aws_calls(day, settings.credentials_secret or "")
        log_handlers = logging.getLogger(os.environ["POWERTOOLS_SERVICE_NAME"]).handlers
        for _ in range(int(hours * RUNS_PER_HOUR)):
            scheduled_run(day, settings, emulator.now, log_handlers)
            emulator.advance(3600 / RUNS_PER_HOUR)
        day.schwab_calls = emulator.calls_by_grant.get("refresh_token", 0)
    return day


def stack_settings(emulator: Any, store_type: str, credentials: str, detailed: bool) -> Any:
    """The stack's store, credentials and topic made on moto, a token logged in to the store,
    and the refresher's settings for them."""
    from devkit.user import login
    from schwab_tokens import aws
    from schwab_tokens.credentials import AppCredentials, store_credentials
    from schwab_tokens.settings import Settings
    from schwab_tokens.stores import store_from_url

    if store_type == "S3":
        aws.client("s3").create_bucket(Bucket="schwab-tokens-cost")
        url = "s3://schwab-tokens-cost/schwab/tokens.json"
    else:
        url = "secretsmanager://schwab-tokens/tokens"
    creds_name = (
        "ssm:/schwab-tokens/credentials"
        if credentials == "ParameterStore"
        else ("schwab-tokens/credentials")
    )
    store_credentials(creds_name, AppCredentials(emulator.app_key, emulator.app_secret, None))
    topic = aws.client("sns").create_topic(Name="schwab-tokens")["TopicArn"]
    settings = Settings(
        store_url=url,
        credentials_secret=creds_name,
        api_base=emulator.base_url,
        topic_arn=topic,
        detailed_metrics=detailed,
    )
    login(store_from_url(url, settings), emulator)
    return settings


def count_aws_calls(day: Day, creds_name: str) -> None:
    """Count every AWS request from now on in ``day``, by service and operation (the credentials'
    reads as one operation, ``credentials``; the access view's also in ``day.view_calls``)."""
    from schwab_tokens import aws

    credential_names = (creds_name.removeprefix("ssm:"), creds_name)

    def count(event_name: str, params: dict[str, Any], **_: Any) -> None:
        service, operation = event_name.split(".")[1:3]
        service = SERVICE_NAMES.get(service, service)
        if params.get("SecretId") in credential_names or params.get("Name") in credential_names:
            operation = "credentials"  # priced below from the cache's lifetime
        day.calls[(service, operation)] += 1
        if str(params.get("Key", "")).endswith(".access.json") or str(
            params.get("Name", "")
        ).endswith(".access"):
            day.view_calls[(service, operation)] += 1

    for service in ("s3", "secretsmanager", "ssm", "sns"):
        # The API parameters (before-call sees the serialized request instead).
        aws.client(service).meta.events.register("before-parameter-build.*.*", count)


def scheduled_run(
    day: Day, settings: Any, clock: Callable[[], float], log_handlers: list[logging.Handler]
) -> None:
    """One scheduled run of the refresher handler; its log and EMF metrics counted in ``day``."""
    from schwab_tokens.lambdas import refresher
    from schwab_tokens.lambdas.observability import metrics

    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    out = io.StringIO()
    for handler in log_handlers:  # the function's log, as CloudWatch would ingest it
        handler.stream = out  # type: ignore[attr-defined]
    with contextlib.redirect_stdout(out):
        refresher.handle(event, settings, clock=clock)
        if settings.detailed_metrics:
            metrics.flush_metrics()
    text = out.getvalue()
    day.log_bytes += len(text.encode())
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
                dims = ",".join(sorted(itertools.chain(*directive["Dimensions"])))
                for metric in directive["Metrics"]:
                    day.metrics.add(f"{metric['Name']}[{dims}]")
    day.runs += 1


# -- the bill ------------------------------------------------------------------------------------
#: The Secrets Manager calls that read or write a secret's value: one KMS request each.
SECRET_VALUE_OPERATIONS = ("GetSecretValue", "PutSecretValue", "CreateSecret")


class Month:
    """A month of one deployment, scaled from a simulated day and priced from the template's
    counts: the quantities the bill's lines (``LINES``) are made of."""

    def __init__(self, counts: Mapping[str, Any], day: Day, params: Mapping[str, str]) -> None:
        self.counts, self.day, self.params = counts, day, params
        self.scale = HOURS_PER_MONTH / day.hours
        self.runs = day.runs * self.scale
        self.calls = self._aws_calls()
        self.view = {call: n * self.scale for call, n in day.view_calls.items()}
        # The notifier (Alerts=Enabled) runs once per message on the topic and reads the alert URLs.
        self.notifier_runs = ASSUMPTIONS["emails_per_month"] if counts["notifier_memory_mb"] else 0
        self.on_s3 = params.get("StoreType", "S3") == "S3"

    def _aws_calls(self) -> dict[tuple[str, str], float]:
        from schwab_tokens.credentials import CACHE_SECONDS

        calls = {call: n * self.scale for call, n in self.day.calls.items()}
        # Credentials are cached CACHE_SECONDS per warm container; the simulation is one container
        # living a day in seconds, so the cache never expired: price a read per cache lifetime.
        for service, operation in calls:
            if operation == "credentials":
                calls[(service, operation)] = HOURS_PER_MONTH * 3600 / CACHE_SECONDS
        return calls

    def total(self, service: str, operation: Callable[[str], bool] = lambda _: True) -> float:
        """The month's calls to ``service`` whose operation passes ``operation``."""
        return sum(n for (s, op), n in self.calls.items() if s == service and operation(op))

    def view_total(self, operation: Callable[[str], bool], service: str | None = None) -> float:
        """The month's calls on the access view (of ``service``, if given) passing ``operation``."""
        return sum(n for (s, op), n in self.view.items() if service in (None, s) and operation(op))

    @cached_property
    def s3_reads(self) -> float:
        return self.total("s3", lambda op: op.startswith(("Get", "Head")))

    @cached_property
    def s3_writes(self) -> float:
        return self.total("s3", lambda op: op.startswith(("Put", "Copy", "List", "Post")))

    @cached_property
    def ssm_calls(self) -> float:
        return self.total("ssm") + self.notifier_runs

    @cached_property
    def kms_requests(self) -> float:
        # SecureStrings (the credentials, a Secrets Manager store's access view): one Encrypt or
        # Decrypt a call, under aws/ssm or the stack's key; so is every secret value read or
        # written.
        kms = self.ssm_calls + self.total("secretsmanager", SECRET_VALUE_OPERATIONS.__contains__)
        if self.params.get("Encryption") == "CustomerManagedKey" and self.on_s3:
            # The token, notes and lease under the bucket key; the view without (its own context).
            s3_view = self.view_total(lambda op: not op.startswith("Delete"), "s3")
            bucket_keyed = self.s3_reads + self.s3_writes - s3_view
            kms += bucket_keyed * ASSUMPTIONS["kms_per_s3_request_with_bucket_key"] + s3_view
        return kms

    @cached_property
    def billed_ms_per_run(self) -> float:
        day = self.day
        return (
            ASSUMPTIONS["run_overhead_ms"] * day.runs
            + ASSUMPTIONS["aws_call_ms"] * sum(day.calls.values())
            + ASSUMPTIONS["schwab_call_ms"] * day.schwab_calls
        ) / day.runs

    @cached_property
    def notifier_gb_seconds(self) -> float:
        memory: int = self.counts["notifier_memory_mb"]
        return self.notifier_runs * ASSUMPTIONS["notifier_ms"] / 1000 * memory / 1024

    @cached_property
    def gb_seconds(self) -> float:
        memory: int = self.counts["memory_mb"]
        return self.runs * self.billed_ms_per_run / 1000 * memory / 1024 + self.notifier_gb_seconds

    @cached_property
    def log_gb(self) -> float:
        return (
            self.day.log_bytes * self.scale
            + self.runs * ASSUMPTIONS["platform_log_bytes"]
            + self.notifier_runs * ASSUMPTIONS["notifier_log_bytes"]
        ) / 1e9

    @cached_property
    def s3_gb(self) -> float:
        """A new version of the token and of its access view per refresh, kept noncurrent_days."""
        if not self.on_s3:
            return 0.0
        refreshes_a_day = (self.day.schwab_calls * self.scale / HOURS_PER_MONTH) * 24
        versions = refreshes_a_day * ASSUMPTIONS["noncurrent_days"]
        return versions * (ASSUMPTIONS["document_bytes"] + ASSUMPTIONS["view_bytes"]) / 1e9

    @cached_property
    def traces(self) -> float:
        return self.runs if self.counts["tracing"] else 0


@dataclass(frozen=True)
class Line:
    """One line of the bill: its item, the month's quantity, the PRICES of one unit (summed) and
    the FREE allowance it falls under, if any."""

    item: str
    quantity: Callable[[Month], float]
    prices: tuple[str, ...]
    free: str | None = None

    def row(self, month: Month) -> dict[str, Any]:
        """The line priced for ``month``, without and with the free tier."""
        quantity = self.quantity(month)
        dollars = quantity * sum(PRICES[key] for key in self.prices)
        free = dollars
        if self.free is not None:
            billable = max(0.0, quantity - FREE.get(self.free, 0))
            free = dollars * (billable / quantity) if quantity else 0.0
        return {"item": self.item, "quantity": quantity, "usd": dollars, "usd_free_tier": free}


LINES = (
    Line(
        "Lambda requests",
        lambda m: m.runs + m.notifier_runs,
        ("lambda_request",),
        "lambda_request",
    ),
    Line(
        "Lambda compute (GB-s)",
        lambda m: m.gb_seconds,
        ("lambda_gb_second_arm64",),
        "lambda_gb_second_arm64",
    ),
    Line("S3 reads", lambda m: m.s3_reads, ("s3_get",)),
    Line("S3 writes", lambda m: m.s3_writes, ("s3_put",)),
    Line("S3 storage (GB, with 30 days of versions)", lambda m: m.s3_gb, ("s3_gb_month",)),
    # From the resolved template: the credentials secret included.
    Line("Secrets Manager secrets", lambda m: m.counts["secrets"], ("sm_secret_month",)),
    Line("Secrets Manager API calls", lambda m: m.total("secretsmanager"), ("sm_api",)),
    Line("SSM Parameter Store (standard)", lambda m: m.ssm_calls, ("ssm_standard",)),
    Line("KMS customer-managed keys", lambda m: m.counts["kms_keys"], ("kms_key_month",)),
    Line("KMS requests", lambda m: m.kms_requests, ("kms_request",), "kms_request"),
    Line("CloudWatch alarms", lambda m: m.counts["alarms"], ("cw_alarm",), "cw_alarm"),
    Line("CloudWatch custom metrics", lambda m: len(m.day.metrics), ("cw_metric",), "cw_metric"),
    Line(
        "CloudWatch dashboards", lambda m: m.counts["dashboards"], ("cw_dashboard",), "cw_dashboard"
    ),
    Line(
        "CloudWatch Logs (GB ingested and kept)",
        lambda m: m.log_gb,
        ("logs_ingest_gb", "logs_store_gb_month"),
        "logs_gb",
    ),
    Line(
        "SNS e-mails",
        lambda m: ASSUMPTIONS["emails_per_month"],
        ("sns_email", "sns_publish"),
        "sns_email",
    ),
    Line("X-Ray traces", lambda m: m.traces, ("xray_trace",), "xray_trace"),
)


def bill(counts: dict[str, Any], day: Day, params: Mapping[str, str]) -> dict[str, Any]:
    """Monthly quantities and dollars per line (``LINES``), without and with the free tier."""
    month = Month(counts, day, params)
    rows = [line.row(month) for line in LINES]
    view_reads = month.view_total(lambda op: op.startswith("Get"))
    view_writes = month.view_total(lambda op: op.startswith("Put"))
    return {
        "rows": rows,
        "total": sum(r["usd"] for r in rows),
        "total_free_tier": sum(r["usd_free_tier"] for r in rows),
        "aws_calls_per_run": sum(month.calls.values()) / month.runs,
        "billed_ms_per_run": month.billed_ms_per_run,
        "notifier": {
            "runs": month.notifier_runs,
            "gb_seconds": month.notifier_gb_seconds,
            "memory_mb": counts["notifier_memory_mb"],
        },
        "access_view": {
            "reads": view_reads,
            "writes": view_writes,
            "reads_per_run": view_reads / month.runs,
            "writes_per_refresh": view_writes / max(day.schwab_calls * month.scale, 1),
        },
    }


# -- the tables ----------------------------------------------------------------------------------
def price_all(hours: float, only_defaults: bool) -> dict[str, dict[str, Any]]:
    """The bill of each deployment of COMBINATIONS (the first only, if ``only_defaults``); one
    simulated day for each store, credentials store and metrics setting."""
    from devkit.template import load_template, parameter_values, resolved_template

    template = load_template()
    combos = dict(list(COMBINATIONS.items())[:1]) if only_defaults else COMBINATIONS
    days: dict[tuple[str, str, bool], Day] = {}
    results = {}
    for label, overrides in combos.items():
        params = parameter_values(template, overrides)
        key = (
            params.get("StoreType", "S3"),
            params.get("CredentialsStore", "ParameterStore"),
            params.get("DetailedMetrics", "Disabled") == "Enabled",
        )
        if key not in days:
            with contextlib.redirect_stderr(io.StringIO()), tempfile.TemporaryDirectory():
                days[key] = simulate(*key, hours)
        results[label] = bill(template_counts(resolved_template(overrides)), days[key], params)
    return results


def print_deployments(results: Mapping[str, dict[str, Any]], hours: float) -> None:
    print(
        f"Monthly cost of one token, rate(5 minutes), us-east-1 list prices "
        f"(simulated {hours:g} h, scaled to {HOURS_PER_MONTH:.0f} h):\n"
    )
    print("| deployment | per month | with the always-free tier |")
    print("| --- | --- | --- |")
    for label, result in results.items():
        print(f"| {label} | ${result['total']:.2f} | ${result['total_free_tier']:.2f} |")


def print_lines(default: Mapping[str, Any]) -> None:
    print(
        f"\nThe defaults, line by line ({default['aws_calls_per_run']:.2f} AWS calls and "
        f"~{default['billed_ms_per_run']:.0f} ms billed per run):\n"
    )
    print("| item | per month | USD | USD, free tier |")
    print("| --- | --- | --- | --- |")
    for row in default["rows"]:
        if row["usd"] or row["quantity"]:
            print(
                f"| {row['item']} | {_quantity(row['quantity'])} | {row['usd']:.4f} | "
                f"{row['usd_free_tier']:.4f} |"
            )
    access = default["access_view"]
    print(
        f"\nThe access view consumers read is in those lines: {access['reads']:,.0f} reads "
        f"({access['reads_per_run']:.2f} a run) and {access['writes']:,.0f} writes "
        f"({access['writes_per_refresh']:.2f} a refresh) a month; with StoreType=SecretsManager "
        "it is an SSM standard parameter (free; a KMS request a call)."
    )


def print_alerts(default: Mapping[str, Any], alerts: Mapping[str, Any] | None) -> None:
    if alerts is None:
        return
    notifier = alerts["notifier"]
    print(
        f"\nAlerts=Enabled adds ${alerts['total'] - default['total']:.2f} a month "
        f"(${alerts['total_free_tier'] - default['total_free_tier']:.2f} with the free tier): "
        f"the notifier's errors alarm (${PRICES['cw_alarm']:.2f}), and the notifier itself, "
        f"{notifier['runs']:g} runs a month at {notifier['memory_mb']} MB and "
        f"~{ASSUMPTIONS['notifier_ms']} ms, each reading the alert URLs (an SSM SecureString, "
        "a KMS request)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--only-defaults", action="store_true", help="price the defaults only")
    args = parser.parse_args()

    results = price_all(args.hours, args.only_defaults)
    if args.json:
        print(json.dumps({"results": results, "assumptions": ASSUMPTIONS, "prices": PRICES}))
        return 0
    default = next(iter(results.values()))
    print_deployments(results, args.hours)
    print_lines(default)
    print_alerts(default, results.get("Alerts=Enabled"))
    print(
        "\nAssumptions (not measurable here): "
        + ", ".join(f"{k}={v}" for k, v in ASSUMPTIONS.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
