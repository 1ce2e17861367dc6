#!/usr/bin/env bash
# Installs the system packages the test suite uses (Debian). Idempotent.
#   mosquitto            a second broker for the tool tests
#   openssh-server/client  tests/ssh.rs runs its own sshd on a loopback port
#   python3-venv         only for a Debian python3 without venv (tests/interop_python.rs)
#   podman runc          tests/container.rs builds the image (ci/build-image.sh) and
#                        runs podman's Docker-compatible API service for the docker CLI
#   ca-certificates      the CA bundle copied into the image
#   docker.io            only when no `docker` CLI is installed (the machine usually has one)
# The arm64 image (ci/build-image.sh builds it next to the amd64 one; tests/container.rs
# runs it under emulation). Only Debian packages, none of them replaces the default
# (rustup) toolchain: Debian's compiler lives in /usr/bin and build-image.sh calls it by path.
#   rustc-web cargo-web  Rust 1.96 from bookworm-security (>= Cargo.toml's rust-version)
#   libstd-rust-web-dev:arm64   the aarch64 standard library of that compiler
#                        (needs `dpkg --add-architecture arm64`, done here)
#   gcc-aarch64-linux-gnu libc6-dev-arm64-cross   linker, C compiler (ring) and static glibc
#   qemu-user-static binfmt-support   runs aarch64 binaries: the binfmt_misc entry
#                        qemu-aarch64 is (re)enabled on every run, since it does not survive
#                        a reboot and a machine without systemd never registers it
# The Python and npm packages of the interop tests are installed by the tests
# themselves, pinned, into target/interop/.
set -euo pipefail
PKGS=(mosquitto mosquitto-clients openssh-server openssh-client podman runc ca-certificates)
ARM64_PKGS=(rustc-web cargo-web libstd-rust-web-dev libstd-rust-web-dev:arm64
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binfmt-support)
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == *'install ok installed'* ]]; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

missing=()
for p in "${PKGS[@]}" "${ARM64_PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done
# Multi-Arch: same: the aarch64 standard library must be the compiler's exact version
# (an upgraded rustc-web with an old libstd-rust-web-dev:arm64 cannot link).
if installed rustc-web && installed libstd-rust-web-dev:arm64 \
  && [ "$(version_of rustc-web)" != "$(version_of libstd-rust-web-dev:arm64)" ]; then
  missing+=(rustc-web libstd-rust-web-dev libstd-rust-web-dev:arm64)
fi
if [ "$(command -v python3 || true)" = /usr/bin/python3 ] \
  && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ! command -v docker >/dev/null 2>&1; then
  missing+=(docker.io)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages present: ${PKGS[*]} ${ARM64_PKGS[*]}"
else
  if [[ " $(dpkg --print-foreign-architectures | tr "\n" " ") " != *" arm64 "* ]]; then
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  # A source without arm64 indices (a mirror or third-party repository serving amd64
  # only) leaves the aarch64 library without a candidate: say so instead of a bare
  # "unable to locate package".
  # (Captured first: `grep -q` closing the pipe early would fail it under pipefail.)
  policy="$(apt-cache policy libstd-rust-web-dev:arm64 2>/dev/null || true)"
  if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
    echo "install-deps: libstd-rust-web-dev:arm64 has no install candidate; the apt sources" >&2
    echo "  must serve arm64 (deb.debian.org does) and include bookworm-security for Rust 1.96" >&2
    exit 1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The services of the packages just installed are not needed: tests start
  # mosquitto and sshd themselves. (A service that was there before is left alone.)
  for p in "${missing[@]}"; do
    case "$p" in
      mosquitto) svc=mosquitto ;;
      openssh-server) svc=ssh ;;
      docker.io) svc=docker ;;
      *) continue ;;
    esac
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# binfmt_misc: mounted by systemd on most machines, not in a bare VM or container.
# Failures here are reported, not fatal: tests/container.rs checks the entry itself and
# fails with this explanation (a container without privileges cannot mount it).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  $SUDO mount -t binfmt_misc binfmt_misc "$binfmt" \
    || echo "install-deps: WARNING: cannot mount binfmt_misc on $binfmt; arm64 binaries will not run" >&2
fi
if [ -e "$binfmt/register" ] && ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
  # --import registers what qemu-user-static ships in /usr/share/binfmts (its postinst
  # only does so when binfmt_misc was mounted at install time).
  $SUDO update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
  if ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
    $SUDO update-binfmts --enable qemu-aarch64 \
      || echo "install-deps: WARNING: update-binfmts --enable qemu-aarch64 failed" >&2
  fi
fi
if grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
  echo "binfmt_misc: qemu-aarch64 enabled ($(sed -n 's/^interpreter //p' "$binfmt/qemu-aarch64"))"
fi
