"""`make demo`: the whole local journey on the embedded default, with no internet and no AWS.

It starts the Schwab emulator (a real HTTP server on 127.0.0.1), logs in through
`schwab-tokens login --paste` (following the emulator's redirect as a browser would),
refreshes, prints `status`, lets a real schwab-py client call the account route with the stored
token, then logs in again "from a phone": `schwab-tokens login-link` prints a one-time link to
the hosted login (the real login handler behind a local HTTPS stand-in for its Function URL),
and the demo follows it as a browser would. It ends with `schwab-tokens doctor`, which checks
the setup item by item. It stops everything, whatever happens.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

# The login function's log names its service, as the stack's environment sets it.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "schwab-tokens")

import requests
import urllib3

from devkit.emulator import Emulator
from devkit.emulator.schwabpy import point_client_at_emulator
from devkit.function_url import FunctionUrl
from devkit.user import cli_env, paste_login, run_cli
from schwab_tokens.settings import Settings


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(run_output: str) -> None:
    for line in run_output.rstrip().splitlines():
        print(f"   | {line}", flush=True)


def check(code: int, what: str) -> None:
    if code != 0:
        raise SystemExit(f"demo failed: {what} exited {code}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="schwab-tokens-demo-") as folder, Emulator() as emu:
        store = str(Path(folder) / "tokens.json")
        env = cli_env(emu, SCHWAB_HTTP_TIMEOUT="5")
        print(f"Schwab emulator on {emu.base_url}; token file {store}")

        step("schwab-tokens login --paste  (the demo pastes the emulator's redirect)")
        run = paste_login(["--store", store, "--callback-url", emu.callback_url], env)
        show(run.out + run.err)
        check(run.code, "login")

        for args, title in (
            (["refresh"], "schwab-tokens refresh  (fresh: no call to Schwab)"),
            (["refresh", "--force"], "schwab-tokens refresh --force  (one call to Schwab)"),
            (["status"], "schwab-tokens status"),
        ):
            step(title)
            run = run_cli([*args, "--store", store], env)
            show(run.out + run.err)
            check(run.code, " ".join(args))

        step("schwab-py: client_from_access_functions(*TokenReader(file).access_functions())")
        # schwab-py's authlib announces a change to its own httpx module: noise in a demo. Its
        # module installs an "always" filter on import, so ours goes in after it.
        import authlib.deprecate  # noqa: F401

        warnings.filterwarnings("ignore", message="The httpx module is deprecated")
        import schwab

        from schwab_tokens import TokenReader

        # The reader's hooks, not client_from_token_file: the client then follows the file
        # `watch` keeps fresh instead of rewriting it behind watch's back.
        client = schwab.auth.client_from_access_functions(
            emu.app_key, emu.app_secret, *TokenReader(store).access_functions()
        )
        point_client_at_emulator(client, emu.base_url)
        answer = client.get_account_numbers()
        show(f"HTTP {answer.status_code}: {len(answer.json())} account(s)")
        check(0 if answer.status_code == 200 else 1, "the schwab-py account call")

        phone_login(emu, store, env)

        step("schwab-tokens doctor  (the setup, item by item)")
        run = run_cli(["doctor", "--store", store], env)
        show(run.out + run.err)
        check(run.code, "doctor")

        print(
            f"\nToken-endpoint calls: {emu.token_calls} "
            "(1 login + 1 forced refresh + 1 phone login)"
        )
    print("Demo finished; the emulator and the login function are stopped.")
    return 0


def phone_login(emu: Emulator, store: str, env: dict[str, str]) -> None:
    """The weekly login from a phone: a one-time link, Schwab, and the token replaced."""
    settings = Settings(
        store_url=store, app_key=emu.app_key, app_secret=emu.app_secret, api_base=emu.base_url
    )
    with FunctionUrl(settings) as function:
        emu.register_callback(function.login_url + "callback")
        step(f"schwab-tokens login-link  (the hosted login's URL: {function.login_url})")
        run = run_cli(
            ["login-link", "--store", store, "--login-url", function.login_url, "--valid", "1h"],
            env,
        )
        show(run.out + run.err)
        check(run.code, "login-link")
        link = run.out.strip().splitlines()[-1]

        step("a phone opens the link (the demo follows it as a browser would; the JSON lines are")
        print("   the login function's own log, as CloudWatch shows it)", flush=True)
        time.sleep(1.01)  # the new login starts in a new second
        urllib3.disable_warnings()  # the local stand-in's certificate is self-signed
        browser = requests.Session()
        url = link
        for _ in range(5):
            answer = browser.get(url, allow_redirects=False, timeout=10, verify=False)
            where = url.split("?")[0]
            show(f"GET {where} -> {answer.status_code}")
            if answer.status_code != 302:
                break
            url = answer.headers["Location"]
        page = answer.text.split("<body", 1)[-1]  # what the phone shows (not the tab title)
        # One line per heading or paragraph, as the phone lays them out.
        blocks = re.split(r"</(?:h\d|p)>", "<" + page)
        lines = [" ".join(re.sub(r"<[^>]+>", " ", block).split()) for block in blocks]
        show("\n".join(line for line in lines if line))
        check(0 if answer.status_code == 200 else 1, "the phone login")

        step("schwab-tokens status  (the login is new: seven more days)")
        run = run_cli(["status", "--store", store], env)
        show(run.out + run.err)
        check(run.code, "status")


if __name__ == "__main__":
    sys.exit(main())
