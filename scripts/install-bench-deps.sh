#!/usr/bin/env bash
# Installs what the benchmarks need beyond the Rust toolchain: a C compiler and libmodbus (Debian's
# libmodbus-dev), for the reference Modbus TCP client `modbus_poll` runs beside ours, and PostgreSQL with pgbench
# (Debian's postgresql), the peer `store_writer` runs beside our store.
# Idempotent: it installs only what is missing, and refreshes the package lists only when a package cannot be
# found without it.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
HEADER=/usr/include/modbus/modbus.h

have_cc() { command -v cc >/dev/null 2>&1; }
have_pg() { compgen -G "/usr/lib/postgresql/*/bin/pgbench" >/dev/null; }

if [[ -f "$HEADER" ]] && have_cc && have_pg; then
    echo "install-bench-deps: libmodbus-dev, a C compiler and PostgreSQL are already installed, nothing to do"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
else
    SUDO=(sudo)
fi

PACKAGES=()
[[ -f "$HEADER" ]] || PACKAGES+=(libmodbus-dev)
have_cc || PACKAGES+=(gcc libc6-dev)
have_pg || PACKAGES+=(postgresql)

# A fresh machine may have no package lists at all; update them only then.
if ! apt-cache show libmodbus-dev >/dev/null 2>&1; then
    echo "install-bench-deps: the package lists do not know libmodbus-dev, running apt-get update"
    "${SUDO[@]}" apt-get update -q
fi

echo "install-bench-deps: installing ${PACKAGES[*]}"
"${SUDO[@]}" apt-get install -y -q "${PACKAGES[@]}"

if [[ ! -f "$HEADER" ]] || ! have_cc; then
    echo "install-bench-deps: installed, but $HEADER or cc is still missing" >&2
    exit 1
fi
echo "install-bench-deps: libmodbus $(dpkg-query -W -f '${Version}' libmodbus-dev) and $(cc --version | head -1)"
