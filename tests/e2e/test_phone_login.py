"""The phone login as a person does it: a link from the e-mail, a real browser, Schwab, done.

Headless Chromium opens ``<LoginUrl>start?ticket=...`` on a local HTTPS stand-in for the Lambda
Function URL (``devkit/function_url.py``, the real login handler behind it), follows the redirect
to the Schwab emulator's authorize page, comes back to ``<LoginUrl>callback`` with the cookie the
function set, and shows the page the user reads. Opening the same link again shows "already
used". AWS is moto's server over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from devkit.emulator import Emulator
from devkit.function_url import FunctionUrl
from devkit.user import login
from schwab_tokens import tickets
from schwab_tokens.stores import store_from_url
from tests.browser import browse, needs_chromium
from tests.helpers import assert_no_secrets, emulator_settings


@needs_chromium
def test_the_phone_flow_and_a_replayed_link(
    emulator: Emulator, aws_endpoint: str, s3_store_url: Callable[..., str], tmp_path: Path
) -> None:
    url = s3_store_url()
    settings = emulator_settings(emulator, url)
    store = store_from_url(url, settings)
    first = login(store, emulator)  # the laptop login a week ago
    with FunctionUrl(settings) as function:
        emulator.register_callback(function.login_url + "callback")
        ticket = tickets.mint(
            tickets.ticket_key(emulator.app_secret), url, first.creation_timestamp, time.time()
        )
        link = f"{function.login_url}start?ticket={ticket}"
        page = browse(link, tmp_path / "phone")
        assert "Logged in" in page.stdout, page.stdout + page.stderr
        assert "Your bots keep working until" in page.stdout
        assert [status for _, status in function.requests] == [302, 200]
        after = store.read().token
        assert after.creation_timestamp > first.creation_timestamp
        assert_no_secrets(page.stdout, emulator.issued_secrets() | {emulator.app_secret})

        again = browse(link, tmp_path / "phone")
        assert "This login link was already used" in again.stdout, again.stdout
        assert store.read().token == after
