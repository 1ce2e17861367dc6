#!/usr/bin/env bash
# Installs the system packages the test suite uses (Debian). Idempotent.
#   mosquitto            a second broker for the tool tests
#   openssh-server/client  tests/ssh.rs runs its own sshd on a loopback port
#   python3-venv         only for a Debian python3 without venv (tests/interop_python.rs)
#   podman runc          tests/container.rs builds the image (ci/build-image.sh) and
#                        runs podman's Docker-compatible API service for the docker CLI
#   ca-certificates      the CA bundle copied into the image
#   docker.io            only when no `docker` CLI is installed (the machine usually has one)
# The Python and npm packages of the interop tests are installed by the tests
# themselves, pinned, into target/interop/.
set -euo pipefail
PKGS=(mosquitto mosquitto-clients openssh-server openssh-client podman runc ca-certificates)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "$(command -v python3 || true)" = /usr/bin/python3 ] \
  && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ! command -v docker >/dev/null 2>&1; then
  missing+=(docker.io)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages present: ${PKGS[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
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
