#!/usr/bin/env bash
# The buffer budget, measured: 32 files of 200 MiB in flight at once (defaults: 16 MiB
# parts, 4 per file — 2 GiB of buffers without a budget) through one daemon to s3s-fs;
# prints the daemon's peak resident size (VmHWM) against `max_buffer_memory`.
# Usage: memory.sh [outpost binary] (servers from tests/servers/start.sh, env sourced).
set -euo pipefail
BIN=${1:-target/debug/outpost}
: "${OUTPOST_TEST_S3S_ENDPOINT:?source the env file of tests/servers/start.sh first}"
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
BUCKET="mem-$$"
"$OUTPOST_TEST_PYTHON" - <<PY
import boto3
boto3.client('s3', endpoint_url='$OUTPOST_TEST_S3S_ENDPOINT', region_name='us-east-1',
  aws_access_key_id='$OUTPOST_TEST_S3S_KEY', aws_secret_access_key='$OUTPOST_TEST_S3S_SECRET').create_bucket(Bucket='$BUCKET')
PY
PORT=$(( 20000 + RANDOM % 20000 ))
cat > "$W/outpost.yaml" <<YAML
spool_dir: $W/spool
listen: 127.0.0.1:$PORT
max_concurrent_uploads: 32
max_buffer_memory: ${BUDGET:-256MiB}
servers:
  mem:
    bucket: $BUCKET
    endpoint: $OUTPOST_TEST_S3S_ENDPOINT
    path_style: true
    max_concurrent_uploads: 32
YAML
AWS_ACCESS_KEY_ID=$OUTPOST_TEST_S3S_KEY AWS_SECRET_ACCESS_KEY=$OUTPOST_TEST_S3S_SECRET \
  AWS_EC2_METADATA_DISABLED=true "$BIN" run -c "$W/outpost.yaml" 2> "$W/log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
mkdir -p "$W/stage"
for i in $(seq 32); do head -c 209715200 /dev/urandom > "$W/stage/f$i.bin" 2>/dev/null || true; done
start=$(date +%s)
for i in $(seq 32); do mv "$W/stage/f$i.bin" "$W/spool/mem/"; done
uploaded() { curl -s "http://127.0.0.1:$PORT/metrics" | grep '^outpost_files_uploaded_total{server="mem"}' | awk '{print $2}'; }
until [ "$(uploaded)" = 32 ]; do
  sleep 0.5
  [ $(( $(date +%s) - start )) -lt 900 ] || { echo "timed out"; tail "$W/log"; exit 1; }
done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
echo "32 x 200 MiB delivered in $(( $(date +%s) - start )) s; VmHWM $(( hwm / 1024 )) MiB with max_buffer_memory ${BUDGET:-256MiB}"
