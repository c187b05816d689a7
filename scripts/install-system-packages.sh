#!/usr/bin/env bash
# Installs the Debian packages three kinds of test need, where missing:
# - chromium: the headless browser of the login tests (tests/e2e/);
# - faketime: libfaketime, which gives a CLI process a wrong wall clock (the lease clock tests);
# - systemd: systemd-analyze, which checks the systemd unit docs/local-use.md ships (tests/docs/).
# Without them those tests skip, except under CI (CI set), where they fail: see tests/requirements.py.
# Needs root or sudo and apt-get; does nothing when all three are there. Exits non-zero when it
# cannot install them (.ci/run then stops).
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

# The packages whose program is not where the tests look for it (tests/browser.py,
# tests/integration/test_lease_clock.py, tests/docs/test_docs.py).
find_missing() {
    missing=()
    [ -x "$CHROMIUM" ] || missing+=(chromium)
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
}

find_missing

if [ ${#missing[@]} -eq 0 ]; then
    echo "chromium, faketime and systemd already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: ${missing[*]} missing and apt-get is not available; install them yourself" >&2
    echo "(the browser login, lease clock and systemd unit tests skip without them, and fail under CI)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: installing ${missing[*]} needs root (or sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
installed=("${missing[@]}")
find_missing
if [ ${#missing[@]} -ne 0 ]; then
    # e.g. CHROMIUM names another path than the one Debian's package installs
    echo "error: installed ${installed[*]}, but ${missing[*]} still missing where the tests look" >&2
    exit 1
fi
echo "installed: ${installed[*]}"
