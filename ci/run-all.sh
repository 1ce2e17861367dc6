#!/usr/bin/env bash
# Everything CI does, runnable locally: `bash ci/run-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-1}"
export CARGO_TERM_COLOR=never
# tests/container.rs builds the arm64 image too (ci/build-image.sh); with the release
# profile's fat LTO that cross build alone takes minutes CI's 25 do not have, so CI builds
# it with LTO off. The amd64 image keeps the release profile.
export MQTT_MCP_ARM64_PROFILE="${MQTT_MCP_ARM64_PROFILE:-ci}"

bash ci/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== tests (the README's test command)"
cargo test --locked
