#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, from Debian's packages:
# - chromium, which tests/hmi_browser.rs drives headless, and a Chinese font (fonts-wqy-zenhei), without which
#   the zh-CN pages render as boxes in the screenshots the browser tests save for people to look at;
# - openssl, whose command makes the self-signed certificate of tests/http_tls.rs (usually already there);
# - mosquitto, the MQTT broker that drivers/tests/mqtt_*.rs start (each test runs its own broker process on a
#   free port; the package's system service is not started, and not needed).
# Idempotent: it does nothing for a program that is already there, and refreshes the package lists only when a
# package cannot be found without it.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
CHROMIUM=/usr/bin/chromium
MOSQUITTO=/usr/sbin/mosquitto

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
else
    SUDO=(sudo)
fi

# A fresh machine may have no package lists at all; update them only then (or when they lack the package).
ensure_known() {
    local package=$1
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        echo "install-test-deps: the package lists do not know $package, running apt-get update"
        "${SUDO[@]}" apt-get update -q
    fi
}

install_chromium() {
    if [[ -x "$CHROMIUM" ]]; then
        echo "install-test-deps: $CHROMIUM is already installed, nothing to do"
        return
    fi
    ensure_known chromium
    echo "install-test-deps: installing the Debian package chromium"
    "${SUDO[@]}" apt-get install -y -q chromium
    if [[ ! -x "$CHROMIUM" ]]; then
        echo "install-test-deps: chromium was installed but $CHROMIUM is missing" >&2
        exit 1
    fi
    echo "install-test-deps: installed $("$CHROMIUM" --version 2>/dev/null)"
}

# The tests need only the broker binary. The package would start a system-wide broker on port 1883; a
# policy-rc.d that forbids service starts keeps it from doing so (an existing one is left as it is).
install_mosquitto() {
    if [[ -x "$MOSQUITTO" ]]; then
        echo "install-test-deps: $MOSQUITTO is already installed, nothing to do"
        return
    fi
    ensure_known mosquitto
    local policy=/usr/sbin/policy-rc.d
    local own_policy=no
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# Written by install-test-deps.sh while it installs packages: start no services.\nexit 101\n' |
            "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        own_policy=yes
    fi
    echo "install-test-deps: installing the Debian package mosquitto (its service is not started)"
    local status=0
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends mosquitto || status=$?
    if [[ "$own_policy" == yes ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
    if [[ "$status" -ne 0 ]]; then
        echo "install-test-deps: apt-get install mosquitto failed" >&2
        exit "$status"
    fi
    if [[ ! -x "$MOSQUITTO" ]]; then
        echo "install-test-deps: mosquitto was installed but $MOSQUITTO is missing" >&2
        exit 1
    fi
    echo "install-test-deps: installed $("$MOSQUITTO" -h 2>/dev/null | head -n 1)"
}

install_cjk_font() {
    if fc-list 2>/dev/null | grep -qi 'wqy'; then
        echo "install-test-deps: a Chinese font is already installed, nothing to do"
        return
    fi
    ensure_known fonts-wqy-zenhei
    echo "install-test-deps: installing the Debian package fonts-wqy-zenhei"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends fonts-wqy-zenhei
}

install_openssl() {
    if command -v openssl >/dev/null 2>&1; then
        echo "install-test-deps: openssl is already installed, nothing to do"
        return
    fi
    ensure_known openssl
    echo "install-test-deps: installing the Debian package openssl"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends openssl
}

install_chromium
install_openssl
install_cjk_font
install_mosquitto
