#!/usr/bin/env bash
# `make test`: installs what the tests need, starts the S3 servers on 127.0.0.1, runs
# every test (unit and end-to-end), and stops the servers whatever happens.
# Extra arguments go to cargo-nextest (e.g. a filter: `tests/run.sh -E 'test(kill9)'`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
tests/servers/install.sh
echo "== build"
cargo build --workspace --all-targets --quiet
DIR="$ROOT/.tmp/servers"
tests/servers/stop.sh "$DIR" >/dev/null 2>&1 || true
trap 'tests/servers/stop.sh "$DIR" >/dev/null 2>&1; rm -rf "$DIR" "$ROOT/.tmp/e2e"' EXIT
echo "== starting radosgw, s3s-fs and moto on 127.0.0.1"
tests/servers/start.sh "$DIR"
# shellcheck disable=SC1091
source "$DIR/env"
export OUTPOST_TEST_TMP="$ROOT/.tmp/e2e"
rm -rf "$OUTPOST_TEST_TMP"; mkdir -p "$OUTPOST_TEST_TMP"
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 4 "$@"
else
  cargo test --workspace --no-fail-fast -- --test-threads 4
fi
