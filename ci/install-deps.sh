#!/usr/bin/env bash
# Installs the system packages the test suite uses (Debian). Idempotent.
set -euo pipefail
PKGS=(mosquitto mosquitto-clients)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages present: ${PKGS[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The package's own service is not needed: tests start mosquitto themselves.
$SUDO systemctl stop mosquitto >/dev/null 2>&1 || true
