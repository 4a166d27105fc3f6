#!/usr/bin/env bash
# The project's test command. Run as root on a fresh Debian 12 machine (CI runs it through
# .ci/run); on a machine that is already set up it only runs the checks.
#
#   1. installs the test peers that are missing (Debian packages: prometheus,
#      prometheus-alertmanager, redis-server, postgresql, python3-aiosmtpd, python3-yaml, python3-venv, docker.io, docker-compose, busybox-static, ca-certificates,
#      iptables, openssl, chromium, chromium-driver), and the real FastAPI test backend's Python
#      virtual environment (<target dir>/backend-venv, from PyPI: tests/fixtures/backend/requirements.txt);
#   2. starts dockerd when the Docker Engine does not answer;
#   3. runs scripts/build-image.sh when it exists and is executable;
#   4. runs cargo fmt --check, clippy (warnings are errors) and every test
#      (extra arguments go to `cargo test`, e.g. `bash scripts/test.sh -- --nocapture`).
#
# Prometheus, redis-server, PostgreSQL, the SMTP server, chromedriver and the FastAPI backend (uvicorn) are
# started by the tests themselves, each on an ephemeral port, and stopped when the test ends.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (run this script as root)"
    fi
}

# ---------------------------------------------------------------------------------------------
# 1. Test peers (Debian packages, then the FastAPI backend's virtual environment)
# ---------------------------------------------------------------------------------------------
pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# tests/it/alertmanager.rs posts real Alertmanager notifications to the webhook (its service is
# not started: policy-rc.d or not, the tests run their own process per test).
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The store's PostgreSQL backend is tested on a real server (tests/it/support/postgres.rs runs
# initdb and postgres from /usr/lib/postgresql/*/bin itself; the package's own service is never
# started: the policy-rc.d below keeps the install from starting it).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
# aiosmtpd must be importable by Debian's own interpreter (not a pyenv python3 on PATH).
if ! { [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; }; then
    missing+=(python3-aiosmtpd)
fi
# tests/it/alertmanager.rs parses the Grafana provisioning example with Debian's PyYAML.
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    missing+=(docker.io)
fi
# The deployment test runs deploy/compose.yaml with Debian's Compose (v1.29).
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# The test image is FROM scratch with /bin/busybox copied in: it must be the static build.
pkg_installed busybox-static || missing+=(busybox-static)
pkg_installed ca-certificates || missing+=(ca-certificates)
# The FastAPI backend's virtual environment is made with Debian's interpreter (see below).
pkg_installed python3-venv || missing+=(python3-venv)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# The SMTP TLS tests make a test CA and a server certificate with the openssl command.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The browser test drives headless Chromium through chromedriver (tests/it/browser.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if ((${#missing[@]} > 0)); then
    log "installing missing test peers: ${missing[*]}"
    as_root apt-get update
    # No service of a peer is started by its install (PostgreSQL's would take port 5432 and run
    # for ever): a policy-rc.d that refuses every start, for the install only, unless one exists.
    policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
    if [[ -n $policy ]]; then as_root rm -f "$policy"; fi
else
    log "test peers already installed"
fi

# The real FastAPI test backend (tests/fixtures/backend/app.py, started by tests/it/support/fastapi.rs)
# runs in a virtual environment under the Cargo target dir, made with Debian's /usr/bin/python3 (the
# one interpreter a fresh Debian 12 has, unlike a pyenv `python3` on PATH that may change under the
# venv), and rebuilt from scratch only when the requirements or that interpreter's version change
# (the stamp file holds both). `--only-binary :all:`: wheels only, nothing is compiled here.
backend_requirements=tests/fixtures/backend/requirements.txt
backend_target_dir=${CARGO_TARGET_DIR:-target}
[[ $backend_target_dir == /* ]] || backend_target_dir=$PWD/$backend_target_dir
backend_venv=$backend_target_dir/backend-venv
backend_stamp=$backend_venv/requirements.stamp
backend_want="$(sha256sum "$backend_requirements" | cut -d' ' -f1) $(/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])')"
if [[ -x $backend_venv/bin/python && -f $backend_stamp && $(<"$backend_stamp") == "$backend_want" ]]; then
    log "FastAPI backend venv up to date ($backend_venv)"
else
    log "creating the FastAPI backend venv $backend_venv (pip install -r $backend_requirements)"
    rm -rf "$backend_venv"
    mkdir -p "$backend_target_dir"
    /usr/bin/python3 -m venv "$backend_venv"
    "$backend_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary :all: -r "$backend_requirements" ||
        die "pip could not install $backend_requirements into $backend_venv (PyPI must be reachable)"
    printf '%s\n' "$backend_want" >"$backend_stamp"
    log "FastAPI backend venv ready: $("$backend_venv/bin/python" -m pip freeze --quiet | tr '\n' ' ')"
fi
# tests/it/support/fastapi.rs runs the backend with this interpreter.
export HARVEN_TEST_BACKEND_PYTHON=$backend_venv/bin/python

# ---------------------------------------------------------------------------------------------
# 2. Docker Engine
# ---------------------------------------------------------------------------------------------
docker_answers() { timeout 10 docker version >/dev/null 2>&1; }

# Starts dockerd with the given extra flags and waits up to 60 s; returns 1 if it died or
# never answered.
start_dockerd() {
    local log_file=$1
    shift
    log "starting dockerd $* (log: $log_file)"
    # setsid: keep dockerd running after this script (and its process group) ends.
    as_root setsid dockerd "$@" >>"$log_file" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 1 120); do
        if docker_answers; then
            log "dockerd is up"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited; last lines of $log_file:"
            tail -n 30 "$log_file" >&2 || true
            return 1
        fi
        sleep 0.5
    done
    log "dockerd did not answer within 60 s; last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    return 1
}

if docker_answers; then
    log "Docker Engine answers"
else
    dockerd_log=${TMPDIR:-/tmp}/harven-watchdog-dockerd.log
    if ! start_dockerd "$dockerd_log"; then
        # Sandboxes without netfilter: the test containers use network mode "none", so a
        # daemon without iptables/bridge set-up is enough for them.
        log "retrying dockerd without iptables and the default bridge"
        start_dockerd "$dockerd_log" --iptables=false --bridge=none ||
            die "the Docker Engine could not be started (see $dockerd_log); the tests need it"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 3. Project image (written by the lead developer; optional)
# ---------------------------------------------------------------------------------------------
if [[ -x scripts/build-image.sh ]]; then
    log "scripts/build-image.sh"
    scripts/build-image.sh
fi

# ---------------------------------------------------------------------------------------------
# 4. Checks and tests
# ---------------------------------------------------------------------------------------------
log "cargo fmt --all -- --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
log "cargo test --all-targets $*"
cargo test --all-targets "$@"
