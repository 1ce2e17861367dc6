#!/usr/bin/env bash
# Builds the static release binary and the container image (deploy/Containerfile).
#   bash ci/build-image.sh [TAG]        default TAG: localhost/mqtt-mcp:<crate version>
# Uses docker when a daemon answers `docker info`, else podman (`--format docker`,
# so the HEALTHCHECK is kept); CONTAINER_ENGINE=podman|docker chooses. Everything goes to stderr except the last line
# of stdout: the tag.
#
# The binary: RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
# --target x86_64-unknown-linux-gnu, in its own target dir (target/static, or
# MQTT_MCP_STATIC_TARGET_DIR) so the debug build of the tests is not invalidated.
# With the release profile's fat LTO that takes about 4 minutes on 2 cores the
# first time; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
TAG="${1:-localhost/mqtt-mcp:${version}}"
TRIPLE=x86_64-unknown-linux-gnu
STATIC_DIR="${MQTT_MCP_STATIC_TARGET_DIR:-$PWD/target/static}"

engine="${CONTAINER_ENGINE:-}"
if [ -n "$engine" ]; then
  command -v "$engine" >/dev/null 2>&1 || { echo "build-image: CONTAINER_ENGINE=$engine not found" >&2; exit 1; }
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null 2>&1; then
  engine=podman
else
  echo "build-image: neither a docker daemon nor podman found (apt-get install podman runc)" >&2
  exit 1
fi

t0=$(date +%s)
# --target makes RUSTFLAGS apply to the binary only, not to build scripts.
CARGO_TARGET_DIR="$STATIC_DIR" RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release --target "$TRIPLE" --bin mqtt-mcp >&2
bin="$STATIC_DIR/$TRIPLE/release/mqtt-mcp"
echo "build-image: static binary in $(( $(date +%s) - t0 )) s: $bin ($(stat -c %s "$bin") bytes)" >&2
if command -v ldd >/dev/null 2>&1 && ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "build-image: $bin is dynamically linked:" >&2
  ldd "$bin" >&2
  exit 1
fi
"$bin" --version >&2

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "build-image: $ca missing (apt-get install ca-certificates)" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/etc"
cp deploy/rootfs/etc/passwd deploy/rootfs/etc/group "$ctx/etc/"
cp "$ca" "$ctx/ca-certificates.crt"
cp "$bin" "$ctx/mqtt-mcp"
chmod 0755 "$ctx/mqtt-mcp"
chmod 0644 "$ctx/etc/passwd" "$ctx/etc/group" "$ctx/ca-certificates.crt"

t1=$(date +%s)
if [ "$engine" = podman ]; then
  podman build --format docker -f deploy/Containerfile -t "$TAG" "$ctx" >&2
  size="$(podman image inspect --format '{{.Size}}' "$TAG")"
else
  docker build -f deploy/Containerfile -t "$TAG" "$ctx" >&2
  size="$(docker image inspect --format '{{.Size}}' "$TAG")"
fi
echo "build-image: $engine built $TAG in $(( $(date +%s) - t1 )) s, $size bytes" >&2
echo "$TAG"
