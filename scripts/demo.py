"""`make demo`: the whole local journey on the embedded default, with no internet and no AWS.

It starts the Schwab emulator (a real HTTP server on 127.0.0.1), logs in through
`schwab-tokens login --paste` (following the emulator's redirect as a browser would),
refreshes, prints `status`, lets a real schwab-py client call the account route with the stored
token, and stops the emulator, whatever happens.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.emulator import Emulator  # noqa: E402
from tests.emulator.schwabpy import point_client_at_emulator  # noqa: E402
from tests.helpers import cli_env, paste_login, run_cli  # noqa: E402


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

        step("schwab-py: client_from_token_file(...).get_account_numbers()")
        import schwab

        client = schwab.auth.client_from_token_file(store, emu.app_key, emu.app_secret)
        point_client_at_emulator(client, emu.base_url)
        answer = client.get_account_numbers()
        show(f"HTTP {answer.status_code}: {len(answer.json())} account(s)")
        check(0 if answer.status_code == 200 else 1, "the schwab-py account call")

        print(f"\nToken-endpoint calls: {emu.token_calls} (1 login + 1 forced refresh)")
    print("Demo finished; the emulator is stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
