#!/usr/bin/env bash
# Installs the Debian packages two kinds of test need, where missing:
# - chromium: the headless browser of the login tests (tests/e2e/);
# - faketime: libfaketime, which gives a CLI process a wrong wall clock (the lease clock tests).
# Without them those tests skip. Needs root or sudo and apt-get; does nothing when both are there.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)

if [ ${#missing[@]} -eq 0 ]; then
    echo "chromium and faketime already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: ${missing[*]} missing and apt-get is not available; install them yourself" >&2
    echo "(the browser login and lease clock tests skip without them)" >&2
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
echo "installed: ${missing[*]}"
