#!/usr/bin/env bash
# Prints the daemon's idle footprint: resident memory and CPU over a window, on its embedded defaults
# (no peer is reachable unless you run some; the probes then report their sources down, which is the
# same work). Uses the static release binary scripts/build-image.sh builds.
#   scripts/measure-idle.sh [SECONDS]      default 60
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
target="$(rustc -vV | sed -n 's/^host: //p')"
bin="$(realpath -m "${CARGO_TARGET_DIR:-target}/$target/release/harven-watchdog")"
[[ -x "$bin" ]] || { echo "build it first: scripts/build-image.sh" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
(cd "$work" && HARVEN_WATCHDOG__SERVER__LISTEN="127.0.0.1:$port" RUST_LOG=error exec "$bin") &
pid=$!
sleep 5 # start-up: first polls, store creation
ticks="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0="$(cpu)"; t0="$(date +%s.%N)"
sleep "$seconds"
c1="$(cpu)"; t1="$(date +%s.%N)"
rss_kib="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
hwm_kib="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" -v rss="$rss_kib" -v hwm="$hwm_kib" 'BEGIN {
  printf "idle over %.0f s: CPU %.3f %% of one core, RSS %.1f MiB (peak %.1f MiB)\n",
         t1 - t0, 100 * (c1 - c0) / hz / (t1 - t0), rss / 1024, hwm / 1024 }'
