#!/usr/bin/env bash
# Cold start to the `initialize` answer through `docker exec -i` next to the
# direct start (median of 20 each), as a client configured with
# `ssh … docker exec -i mqtt-mcp mqtt-mcp serve` experiences it (minus ssh).
#   bash ci/bench-exec.sh [amd64] [arm64]      default: both
# Builds the images with ci/build-image.sh, runs podman's Docker-compatible API
# service in a temp dir (or uses a docker daemon), starts each image's container with
# --network=host --read-only, measures, and removes everything it created.
# On an x86_64 machine arm64 runs under qemu-user (binfmt_misc): its figures are
# emulation's, not a Raspberry Pi's.
set -euo pipefail
cd "$(dirname "$0")/.."
arches=("$@")
[ "${#arches[@]}" -gt 0 ] || arches=(amd64 arm64)
build_arch=all
[ "${#arches[@]}" -eq 1 ] && build_arch="${arches[0]}"
tag="$(bash ci/build-image.sh --arch "$build_arch" localhost/mqtt-mcp:bench-exec | tail -n1)"
dir="$(mktemp -d)"
name="mqtt-mcp-bench-exec-$$"
svc=""
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  if [ -n "$svc" ]; then kill "$svc" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  cat > "$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  CONTAINERS_CONF="$dir/containers.conf" podman system service --time=0 "unix://$dir/podman.sock" &
  svc=$!
  export DOCKER_HOST="unix://$dir/podman.sock"
  export CONTAINERS_CONF="$dir/containers.conf"
  for _ in $(seq 50); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
fi
for arch in "${arches[@]}"; do
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d -i --read-only --network=host --platform "linux/$arch" --name "$name" \
    "$tag-$arch" >/dev/null
  binary="$dir/mqtt-mcp-$arch"
  docker cp "$name:/usr/local/bin/mqtt-mcp" "$binary" >/dev/null
  python3 - "$binary" "$name" "linux/$arch" <<'PY'
import json, statistics, subprocess, sys, time
binary, name, platform = sys.argv[1], sys.argv[2], sys.argv[3]
init = (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}) + "\n").encode()
def run(cmd):
    times = []
    for _ in range(21):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdin.write(init); p.stdin.flush()
        p.stdout.readline()
        times.append((time.perf_counter() - t0) * 1000)
        p.stdin.close(); p.wait()
    times = times[1:]  # the first spawn warms caches
    return statistics.median(times), min(times), max(times)
for label, cmd in [("direct (the image's binary)", [binary, "serve", "--no-embedded"]),
                   ("docker exec -i", ["docker", "exec", "-i", name, "mqtt-mcp", "serve", "--no-embedded"])]:
    med, lo, hi = run(cmd)
    print(f"| {platform}: {label} | {med:.2f} | {lo:.2f} | {hi:.2f} |")
PY
done
