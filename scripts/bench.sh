#!/usr/bin/env bash
# The benchmark: prints the figures the README's "Performance" section shows, with their targets.
# Run `bash scripts/test.sh` once on the machine first (it installs Prometheus, Redis, aiosmtpd, Docker
# and busybox-static, and starts the Docker Engine); this script starts its own peers like the tests.
#
#   scripts/bench.sh [--quick]
#
#   1. builds the static release binary (scripts/build-image.sh), the harness examples/stack_bench.rs
#      and the criterion benches with the same flags, so they share one build;
#   2. `cargo bench --bench engine`: one evaluation over 10 000 series and 500 containers, one probe
#      cycle against the test stack;
#   3. the offline `test` command over an hour of noisy normal traffic (no false page);
#   4. stack_bench latency: scenario switch -> L1 email, condition true -> email, back to normal ->
#      resolved email, for `slow` and `errors`, default and tight configuration;
#   5. stack_bench containers: idle RSS and CPU watching 50 containers for 60 s; RSS and Docker poll
#      time watching 500 (CONTAINERS=N changes that count);
#   6. the takeover of a standby after `kill -9` of the leader, two replicas on a real PostgreSQL with
#      the shipped lease (tests/it/ha.rs with HARVEN_TEST_HA_LEASE/RENEW_EVERY).
#
# --quick: fewer trials and flips, a 60 s warm-up and 100 containers, to check the script works.
# Figures come from whatever machine runs this; a busy shared machine makes them worse.
# The side-by-side comparison with Prometheus rules + Alertmanager (issue 12) is scripts/bench-versus.sh,
# which installs Debian's prometheus-alertmanager when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true
if $quick; then
  latency_args=(--default-trials 1 --tight-flips 2 --warmup 60)
  many="${CONTAINERS:-100}"
else
  latency_args=(--default-trials 3 --tight-flips 5 --warmup 300)
  many="${CONTAINERS:-500}"
fi

log() { printf '==> %s\n' "$*" >&2; }
timeout 10 docker version >/dev/null 2>&1 || {
  echo "bench.sh: the Docker Engine does not answer; run 'bash scripts/test.sh' as root first" >&2
  exit 1
}

target="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS='-C target-feature=+crt-static'
log "building (static release, $target)"
scripts/build-image.sh >&2
cargo build --release --locked --target "$target" --example stack_bench
out="${CARGO_TARGET_DIR:-target}/$target/release"
bin="$(realpath "$out/harven-watchdog")"
harness="$(realpath "$out/examples/stack_bench")"

figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT

log "cargo bench --bench engine"
cargo bench --locked --target "$target" --bench engine -- --noplot 2>&1 | tee /dev/stderr |
  awk '/^(evaluate|probe_cycle)\// { name = $1 }
       name && /time:/ { sub(/.*time: *\[/, ""); sub(/\].*/, "");
                         printf "FIGURE\t%s (criterion: low, estimate, high)\t%s\t-\t-\n", name, $0; name = "" }' >>"$figures"

log "an hour of noisy normal traffic, simulated (harven-watchdog test)"
if "$bin" test tests/scenarios/noise.normal_hour.toml >&2; then
  printf 'FIGURE\tfalse pages in 1 h of noisy normal traffic (default config, simulated time)\t0\t0\tyes\n' >>"$figures"
else
  printf 'FIGURE\tfalse pages in 1 h of noisy normal traffic (default config, simulated time)\tscenario failed\t0\tNO\n' >>"$figures"
fi

log "idle: 50 containers, 60 s"
"$harness" containers --bin "$bin" --count 50 --seconds 60 | tee -a "$figures"

log "latency: real Prometheus, simulated backend, aiosmtpd, the daemon (takes about 10 min)"
"$harness" latency --bin "$bin" "${latency_args[@]}" | tee -a "$figures"

log "takeover: two replicas on a real PostgreSQL, kill -9 of the leader (shipped lease 20 s, renewed every 5 s)"
# tests/it/ha.rs prints "kill N: node-x took over in S s" for each kill; the lease, not the CPU,
# decides the figure, so the debug build of the test suite measures it as well as a release one.
HARVEN_TEST_HA_LEASE=20s HARVEN_TEST_HA_RENEW_EVERY=5s HARVEN_TEST_KILLS="$($quick && echo 2 || echo 5)" \
  cargo test --locked --test it ha::kill_9 -- --nocapture 2>&1 | tee /dev/stderr |
  awk '/took over in/ { for (i = 1; i <= NF; i++) if ($i == "in") { s = $(i + 1); n++; sum += s; if (s > max) max = s } }
       END { if (n) printf "FIGURE\ttakeover after kill -9 of the leader (lease 20 s, renew 5 s; %d kills)\tmean %.1f s, max %.1f s\t<= 25 s\t%s\n", n, sum / n, max, (max <= 25 ? "yes" : "NO")
             else printf "FIGURE\ttakeover after kill -9 of the leader\tnot measured (the test failed)\t<= 25 s\tNO\n" }' >>"$figures"

log "$many containers, 60 s (creating and removing them takes minutes)"
"$harness" containers --bin "$bin" --count "$many" --seconds 60 | tee -a "$figures"

echo
echo "harven-watchdog benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
{
  printf 'figure\tmeasured\ttarget\tmet\n'
  sed -n 's/^FIGURE\t//p' "$figures"
} | awk -F'\t' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
      END { for (r = 1; r <= NR; r++) { line = ""
              for (i = 1; i <= 4; i++) line = line sprintf("%-*s  ", w[i], cell[r, i])
              sub(/ +$/, "", line); print line } }'
