#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: Debian's Chromium, which
# tests/hmi_browser.rs drives headless. Idempotent: it does nothing when Chromium is already there,
# and refreshes the package lists only when the package cannot be found without it.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    echo "install-test-deps: $CHROMIUM is already installed, nothing to do"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
else
    SUDO=(sudo)
fi

# A fresh machine may have no package lists at all; update them only then (or when they lack chromium).
if ! apt-cache show chromium >/dev/null 2>&1; then
    echo "install-test-deps: the package lists do not know chromium, running apt-get update"
    "${SUDO[@]}" apt-get update -q
fi

echo "install-test-deps: installing the Debian package chromium"
"${SUDO[@]}" apt-get install -y -q chromium

if [[ ! -x "$CHROMIUM" ]]; then
    echo "install-test-deps: chromium was installed but $CHROMIUM is missing" >&2
    exit 1
fi
echo "install-test-deps: installed $("$CHROMIUM" --version 2>/dev/null)"
