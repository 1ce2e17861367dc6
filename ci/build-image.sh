#!/usr/bin/env bash
# Builds the static release binaries and the container image (deploy/Containerfile)
# for linux/amd64 and linux/arm64, and a manifest list that names both under one tag.
#   bash ci/build-image.sh [--arch amd64|arm64|all] [TAG]
#     TAG      default localhost/mqtt-mcp:<crate version>; a TAG without ":tag" gets ":latest"
#     --arch   default all. Each architecture's image is TAG-<arch>; TAG is the manifest
#              list of the images built (podman). Docker's classic image store has no local
#              manifest lists: with docker, TAG is the host architecture's image (or the only
#              one built).
# Uses docker when a daemon answers `docker info`, else podman (`--format docker`, so the
# HEALTHCHECK is kept); CONTAINER_ENGINE=podman|docker chooses. Everything goes to stderr
# except the last line of stdout: TAG.
# Publish (podman): podman manifest push --all --format v2s2 TAG docker://REGISTRY/mqtt-mcp:VERSION
#
# The binaries: cargo build --locked --release --target <triple> --bin mqtt-mcp with
# `-C target-feature=+crt-static` (static glibc), each in its own target dir so the debug
# build of the tests is not invalidated:
#   amd64  x86_64-unknown-linux-gnu with the default toolchain, in target/static
#          (MQTT_MCP_STATIC_TARGET_DIR). Fat LTO: about 4 minutes on 2 cores from nothing.
#   arm64  aarch64-unknown-linux-gnu with Debian's rustc-web/cargo-web (/usr/bin, called by
#          path; rustup cannot fetch targets here) and the aarch64 standard library
#          libstd-rust-web-dev:arm64, linked by aarch64-linux-gnu-gcc; in target/static-arm64
#          (MQTT_MCP_STATIC_ARM64_TARGET_DIR). ci/install-deps.sh installs all of it.
#          MQTT_MCP_ARM64_PROFILE=ci builds it with LTO off and 16 codegen units (in
#          <dir>-ci), which CI uses to stay in its time budget; releases use the default,
#          the release profile of Cargo.toml.
# The arm64 binary runs `--version` here only when binfmt_misc has qemu-aarch64 (the build
# itself needs no emulation: the image is FROM scratch, nothing runs while it is built).
set -euo pipefail
shopt -s inherit_errexit  # a failed build inside $(static_binary …) stops the script
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ARCHES=(amd64 arm64)
TAG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || usage; arch_flag="$2"; shift 2 ;;
    --arch=*) arch_flag="${1#--arch=}"; shift ;;
    -h|--help) usage ;;
    -*) echo "build-image: unknown flag $1" >&2; usage ;;
    *) [ -z "$TAG" ] || usage; TAG="$1"; shift ;;
  esac
done
case "${arch_flag:-all}" in
  all) ;;
  amd64|arm64) ARCHES=("$arch_flag") ;;
  *) echo "build-image: --arch must be amd64, arm64 or all, not ${arch_flag}" >&2; exit 2 ;;
esac
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
TAG="${TAG:-localhost/mqtt-mcp:${version}}"
case "${TAG##*/}" in *:*) ;; *) TAG="$TAG:latest" ;; esac

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
command -v readelf >/dev/null 2>&1 || { echo "build-image: readelf missing (apt-get install binutils)" >&2; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "build-image: $ca missing (apt-get install ca-certificates)" >&2
  exit 1
fi

# Run from `cargo test` (tests/container.rs), this script inherits the variables cargo sets
# for a test process. Build scripts (ring's) name some of them in rerun-if-env-changed, so
# they would make a build from a test differ from one from a shell and recompile ring, rustls
# and the fat-LTO binary every time the other one ran.
for v in $(compgen -e); do
  case "$v" in
    CARGO|CARGO_MANIFEST_*|CARGO_PKG_*|CARGO_CRATE_NAME|CARGO_BIN_NAME|CARGO_BIN_EXE_*| \
      CARGO_PRIMARY_PACKAGE|CARGO_TARGET_TMPDIR|CARGO_CFG_*|CARGO_RUSTC_CURRENT_DIR|OUT_DIR)
      unset "$v" ;;
  esac
done
# Every variable that could steer the Debian cargo to another compiler or flags; the
# ones each build needs are set again below.
CLEAN_ENV=(-u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u RUSTC
  -u RUSTDOC -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER -u CARGO_BUILD_TARGET)

# static_binary ARCH: builds it and prints its path. Both architectures share the release
# profile and the flags; only the compiler and linker differ.
static_binary() {
  local arch="$1" triple dir triple_env cargo=cargo
  local env_args=()
  case "$arch" in
    amd64)
      triple=x86_64-unknown-linux-gnu
      dir="${MQTT_MCP_STATIC_TARGET_DIR:-$PWD/target/static}"
      ;;
    arm64)
      triple=aarch64-unknown-linux-gnu
      dir="${MQTT_MCP_STATIC_ARM64_TARGET_DIR:-$PWD/target/static-arm64}"
      local missing=()
      for f in /usr/bin/cargo /usr/bin/rustc /usr/lib/rustlib/$triple/lib /usr/bin/aarch64-linux-gnu-gcc \
        /usr/aarch64-linux-gnu/lib/libc.a; do
        [ -e "$f" ] || missing+=("$f")
      done
      if [ "${#missing[@]}" -ne 0 ]; then
        echo "build-image: the arm64 build needs ${missing[*]} (bash ci/install-deps.sh installs" \
          "rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2
        return 1
      fi
      cargo=/usr/bin/cargo
      env_args=(PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar)
      case "${MQTT_MCP_ARM64_PROFILE:-release}" in
        release) ;;
        ci)
          dir="$dir-ci"
          env_args+=(CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16)
          echo "build-image: arm64 with MQTT_MCP_ARM64_PROFILE=ci: LTO off, 16 codegen units" >&2
          ;;
        *) echo "build-image: MQTT_MCP_ARM64_PROFILE must be release or ci" >&2; return 1 ;;
      esac
      ;;
  esac
  # The flags go to the target only (CARGO_TARGET_<TRIPLE>_RUSTFLAGS), not to build scripts.
  triple_env="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_RUSTFLAGS"
  local t0
  t0=$(date +%s)
  env "${CLEAN_ENV[@]}" "${env_args[@]}" CARGO_TARGET_DIR="$dir" \
    "$triple_env=-C target-feature=+crt-static" \
    "$cargo" build --locked --release --target "$triple" --bin mqtt-mcp >&2
  local bin="$dir/$triple/release/mqtt-mcp"
  echo "build-image: $arch static binary with $("$cargo" --version) in" \
    "$(( $(date +%s) - t0 )) s: $bin ($(stat -c %s "$bin") bytes)" >&2
  local machine
  machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
  case "$arch:$machine" in
    amd64:*X86-64*|arm64:AArch64) ;;
    *) echo "build-image: $bin is for '$machine', not $arch" >&2; return 1 ;;
  esac
  if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
    echo "build-image: $bin is dynamically linked:" >&2
    readelf -dW "$bin" | grep NEEDED >&2 || true
    return 1
  fi
  if [ "$arch" = amd64 ] || grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    "$bin" --version >&2
  else
    echo "build-image: not running the arm64 binary: binfmt_misc has no qemu-aarch64" >&2
  fi
  echo "$bin"
}

# image ARCH BIN: the image TAG-ARCH from BIN.
image() {
  local arch="$1" bin="$2" ctx t1 size
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/etc"
  cp deploy/rootfs/etc/passwd deploy/rootfs/etc/group "$ctx/etc/"
  cp "$ca" "$ctx/ca-certificates.crt"
  cp "$bin" "$ctx/mqtt-mcp"
  chmod 0755 "$ctx/mqtt-mcp"
  chmod 0644 "$ctx/etc/passwd" "$ctx/etc/group" "$ctx/ca-certificates.crt"
  t1=$(date +%s)
  if [ "$engine" = podman ]; then
    podman build --format docker --platform "linux/$arch" -f deploy/Containerfile \
      -t "$TAG-$arch" "$ctx" >&2
    size="$(podman image inspect --format '{{.Size}} bytes, {{.Os}}/{{.Architecture}}' "$TAG-$arch")"
  else
    docker build --platform "linux/$arch" -f deploy/Containerfile -t "$TAG-$arch" "$ctx" >&2
    size="$(docker image inspect --format '{{.Size}} bytes, {{.Os}}/{{.Architecture}}' "$TAG-$arch")"
  fi
  rm -rf "$ctx"
  echo "build-image: $engine built $TAG-$arch in $(( $(date +%s) - t1 )) s, $size" >&2
}

for arch in "${ARCHES[@]}"; do
  bin="$(static_binary "$arch")"
  image "$arch" "$bin"
done

if [ "$engine" = podman ]; then
  # Replace whatever holds TAG: the list of an earlier run, or the single-architecture
  # image older versions of this script built (untag keeps it for a container using it).
  if podman manifest exists "$TAG"; then
    podman manifest rm "$TAG" >&2
  elif podman image exists "$TAG"; then
    podman untag "$TAG" "$TAG" >&2
  fi
  podman manifest create "$TAG" >&2
  for arch in "${ARCHES[@]}"; do
    podman manifest add "$TAG" "containers-storage:$TAG-$arch" >&2
  done
  echo "build-image: manifest list $TAG:" >&2
  podman manifest inspect "$TAG" | grep -E '"(architecture|os|digest)"' >&2
else
  host="$(docker version --format '{{.Server.Arch}}' 2>/dev/null || true)"
  pick="${ARCHES[0]}"
  for arch in "${ARCHES[@]}"; do [ "$arch" = "$host" ] && pick="$arch"; done
  docker tag "$TAG-$pick" "$TAG" >&2
  echo "build-image: docker has no local manifest lists: $TAG is $TAG-$pick" >&2
fi
echo "$TAG"
