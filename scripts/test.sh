#!/usr/bin/env bash
# The one test command (README): installs what the tests need when it is missing, then runs every test.
#   ./scripts/test.sh
# Needs: the Rust toolchain (cargo). Installs, as root on Debian, when missing: chromium (browser test).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (every crate, every integration test)"
cargo test --workspace
echo "== cargo bench --no-run (the benchmark still builds)"
cargo bench --workspace --no-run
