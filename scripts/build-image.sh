#!/usr/bin/env bash
# Builds the runnable image `harven-watchdog:local` without pulling anything: a static release binary
# built here, copied into `FROM scratch` (deploy/Dockerfile.prebuilt). Needs cargo, a running Docker
# Engine and /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates).
#   scripts/build-image.sh [TAG]      default TAG: harven-watchdog:local
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-harven-watchdog:local}"
target="$(rustc -vV | sed -n 's/^host: //p')"

RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "${CARGO_TARGET_DIR:-target}/$target/release/harven-watchdog" "$ctx/harven-watchdog"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
mkdir "$ctx/data"
# The legacy builder is what Debian's engine has; its deprecation notice is noise here.
if ! DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" -f deploy/Dockerfile.prebuilt "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "build-image: docker build failed" >&2
  exit 1
fi
docker image inspect "$tag" --format "built $tag: {{.Size}} bytes"
