#!/usr/bin/env bash
# The side-by-side benchmark of issue 12: harven-watchdog on its shipped defaults against Prometheus
# alerting rules + Alertmanager on production defaults, in the same run, on the same Prometheus and the
# same real FastAPI backend, both emailing the same aiosmtpd server. Prints a markdown table: switch ->
# email for each system and their ratio, per scenario (slow, errors, mild slow, mild errors, recovery),
# false pages in noisy normal traffic, and both processes' idle RSS and CPU.
#
#   scripts/bench-versus.sh [--quick] [versus_bench options…]
#
# Run `bash scripts/test.sh` once on the machine first (Prometheus, Redis, aiosmtpd and the FastAPI
# backend's venv); this script installs Debian's prometheus-alertmanager when it is missing (as root),
# builds the static release binary and the harness (examples/versus_bench.rs) with the same flags, and
# runs it. Every scenario runs on a stack of its own, all at once.
#
# --quick: one round, a 90 s warm-up (the 5 min windows are not full at the switch), 8 min of
#          noise and a day's swing of traffic in 10 min: about 15 min after the build.
# full:    three rounds, a 330 s warm-up (full windows), 20 min of noise and a day's swing in one
#          hour per round: about 3 h 20 min (each round lasts as long as its diurnal stack).
# --scrape 15 runs every stack with Prometheus scraping every 15 s instead of every second.
# Options after --quick go to the harness (e.g. --only slow,errors --rounds 1); see its header.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

if ! command -v prometheus-alertmanager >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench-versus.sh: prometheus-alertmanager is missing; run as root to install it (apt-get)" >&2
    exit 1
  fi
  log "installing prometheus-alertmanager (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  # Its service is not started: the harness runs its own Alertmanager per stack.
  apt-get install -y -q --no-install-recommends prometheus-alertmanager >&2
fi
for program in prometheus redis-server; do
  command -v "$program" >/dev/null || {
    echo "bench-versus.sh: $program is missing; run 'bash scripts/test.sh' as root first" >&2
    exit 1
  }
done

# The real FastAPI backend runs in the venv scripts/test.sh makes under its Cargo target dir; the
# harness looks for it under this one unless HARVEN_TEST_BACKEND_PYTHON names its interpreter.
venv_python="${HARVEN_TEST_BACKEND_PYTHON:-${CARGO_TARGET_DIR:-target}/backend-venv/bin/python}"
[[ -x $venv_python ]] || {
  echo "bench-versus.sh: no FastAPI backend venv at $venv_python; run 'bash scripts/test.sh' with the same CARGO_TARGET_DIR first, or set HARVEN_TEST_BACKEND_PYTHON to its bin/python" >&2
  exit 1
}
# Absolute, but not through the symlink: the venv's bin/python points at the system interpreter.
HARVEN_TEST_BACKEND_PYTHON="$(cd "$(dirname "$venv_python")" && pwd)/$(basename "$venv_python")"
export HARVEN_TEST_BACKEND_PYTHON

target="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS='-C target-feature=+crt-static'
log "building (static release, $target)"
cargo build --release --locked --target "$target" --bin harven-watchdog --example versus_bench
out="${CARGO_TARGET_DIR:-target}/$target/release"
bin="$(realpath "$out/harven-watchdog")"
harness="$(realpath "$out/examples/versus_bench")"

log "running (progress on stderr; the table on stdout)"
echo "harven-watchdog $(git rev-parse --short HEAD 2>/dev/null || echo '?') vs Alertmanager $(prometheus-alertmanager --version 2>&1 | sed -n '1s/.*version \([^ ]*\).*/\1/p'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$harness" --bin "$bin" "$@"
