"""Settings: every environment variable checked once, a bad value named with its range (exit 2)."""

from __future__ import annotations

import pytest

from schwab_tokens.errors import ExitCode, UsageError
from schwab_tokens.settings import DEFAULT_REFRESH_MARGIN, Settings


def test_defaults_are_the_contracts() -> None:
    settings = Settings.from_env({})
    assert settings.api_base == "https://api.schwabapi.com"
    assert settings.refresh_margin == DEFAULT_REFRESH_MARGIN == 900
    assert (settings.http_timeout, settings.http_retries, settings.lease_ttl) == (15, 3, 120)
    assert settings.detailed_metrics is False
    assert settings.store_url is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REFRESH_MARGIN_SECONDS", "nan"),
        ("REFRESH_MARGIN_SECONDS", "inf"),
        ("REFRESH_MARGIN_SECONDS", "-1"),
        ("REFRESH_MARGIN_SECONDS", "901"),
        ("REFRESH_MARGIN_SECONDS", "ten minutes"),
        ("SCHWAB_HTTP_TIMEOUT", "0"),
        ("SCHWAB_HTTP_TIMEOUT", "-5"),
        ("SCHWAB_HTTP_TIMEOUT", "1e400"),
        ("SCHWAB_HTTP_RETRIES", "2.5"),
        ("SCHWAB_HTTP_RETRIES", "11"),
        ("SCHWAB_HTTP_RETRIES", "-1"),
        ("SCHWAB_TOKENS_LEASE_TTL", "0"),
        ("SCHWAB_TOKENS_LEASE_TTL", "0.001"),
        ("SCHWAB_TOKENS_LEASE_TTL", "NaN"),
        ("SCHWAB_TOKENS_DETAILED_METRICS", "maybe"),
    ],
)
def test_a_bad_number_is_a_usage_error_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.from_env({name: value})
    assert caught.value.exit_code == ExitCode.USAGE
    assert name in str(caught.value)


def test_values_in_range_are_taken() -> None:
    settings = Settings.from_env(
        {
            "REFRESH_MARGIN_SECONDS": "0",
            "SCHWAB_HTTP_TIMEOUT": "0.5",
            "SCHWAB_HTTP_RETRIES": "0",
            "SCHWAB_TOKENS_LEASE_TTL": "1.5",
            "SCHWAB_TOKENS_DETAILED_METRICS": "true",
        }
    )
    assert (settings.refresh_margin, settings.http_timeout, settings.http_retries) == (0, 0.5, 0)
    assert settings.lease_ttl == 1.5 and settings.detailed_metrics is True


@pytest.mark.parametrize(
    "base",
    [
        "http://api.schwabapi.com",  # the refresh token in clear text
        "ftp://api.schwabapi.com",
        "api.schwabapi.com",
        "https://",
        "http://10.0.0.5:8080",  # plain http only to this machine
        "https://[x",  # not even a URL
        "https://me:hunter2@api.schwabapi.com",  # would be repeated in every error message
    ],
)
def test_api_base_must_be_https_except_loopback(base: str) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.from_env({"SCHWAB_API_BASE": base})
    assert "SCHWAB_API_BASE" in str(caught.value) and "https" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8700", "http://localhost:1", "https://x.test/"])
def test_loopback_http_and_any_https_are_accepted(base: str) -> None:
    assert Settings.from_env({"SCHWAB_API_BASE": base}).api_base == base.rstrip("/")


def test_the_app_secret_is_not_in_the_settings_repr() -> None:
    settings = Settings.from_env({"SCHWAB_APP_KEY": "k", "SCHWAB_APP_SECRET": "s3cret-value-123"})
    assert "s3cret-value-123" not in repr(settings)
    assert settings.app_secret == "s3cret-value-123"


@pytest.mark.parametrize(
    "url", ["http://evil.example/", "javascript:alert(1)", "https://me:pw@x.lambda-url.on.aws/"]
)
def test_the_login_url_in_the_e_mails_must_be_https(url: str) -> None:
    with pytest.raises(UsageError, match="SCHWAB_LOGIN_URL"):
        Settings.from_env({"SCHWAB_LOGIN_URL": url})
    good = "https://abc.lambda-url.us-east-1.on.aws/"
    assert Settings.from_env({"SCHWAB_LOGIN_URL": good}).login_url == good
