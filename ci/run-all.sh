#!/usr/bin/env bash
# Everything CI does, runnable locally: `bash ci/run-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-1}"
export CARGO_TERM_COLOR=never

bash ci/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== tests (the README's test command)"
cargo test --locked
