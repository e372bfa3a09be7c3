#!/usr/bin/env bash
# `make demo`: builds outpost, starts a local Ceph radosgw with two identities — a
# customer who owns a bucket and allowlists the publisher in its bucket policy, and the
# publisher outpost runs as — publishes sample batch files through the daemon, and shows
# what arrived (key, size, owner grants) and a few metrics. Stops all it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK="$ROOT/.tmp/demo"
TOOLS=${OUTPOST_TOOLS:-/opt/outpost-tools}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing radosgw and boto3 if missing"
tests/servers/install.sh radosgw
say "building outpost"
cargo build -p outpost --quiet
BIN="$ROOT/target/debug/outpost"

rm -rf "$WORK"; mkdir -p "$WORK"
DAEMON=""
cleanup() {
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  tests/servers/stop.sh "$WORK/servers" >/dev/null 2>&1 || true
}
trap cleanup EXIT
say "starting Ceph radosgw on 127.0.0.1 (about 20 s)"
tests/servers/start.sh "$WORK/servers" radosgw
# shellcheck disable=SC1091
source "$WORK/servers/env"

say "customer: creates bucket customer-data and allowlists the publisher"
"$TOOLS/venv/bin/python" - <<PY
import boto3, json
s3 = boto3.client("s3", endpoint_url="$OUTPOST_TEST_RGW_ENDPOINT", region_name="us-east-1",
    aws_access_key_id="$OUTPOST_TEST_RGW_OWNER_KEY", aws_secret_access_key="$OUTPOST_TEST_RGW_OWNER_SECRET")
s3.create_bucket(Bucket="customer-data")
policy = {"Version": "2012-10-17", "Statement": [{
    "Sid": "OutpostPublisherWrites", "Effect": "Allow",
    "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
    "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
    "Resource": ["arn:aws:s3:::customer-data/outbound/*"]}]}
s3.put_bucket_policy(Bucket="customer-data", Policy=json.dumps(policy))
print(json.dumps(policy, indent=2))
PY

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$WORK/outpost.yaml" <<YAML
spool_dir: $WORK/spool
listen: 127.0.0.1:$PORT
state_dir: $WORK/state
servers:
  acme:
    bucket: customer-data
    prefix: "outbound/"
    endpoint: $OUTPOST_TEST_RGW_ENDPOINT
    path_style: true
    checksum: signed_payload # radosgw recomputes the signed payload's SHA-256
    multipart: { threshold: 16MiB, part_size: 8MiB, concurrency: 4 }
YAML
say "publisher: outpost check"
"$BIN" check -c "$WORK/outpost.yaml"

say "publisher: outpost run (as the publisher identity)"
AWS_ACCESS_KEY_ID=$OUTPOST_TEST_RGW_PUBLISHER_KEY AWS_SECRET_ACCESS_KEY=$OUTPOST_TEST_RGW_PUBLISHER_SECRET \
  AWS_EC2_METADATA_DISABLED=true "$BIN" run -c "$WORK/outpost.yaml" 2> "$WORK/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

say "exporter: drops batch files (write under a temporary name, then rename)"
SPOOL="$WORK/spool/acme"
drop() { mkdir -p "$(dirname "$SPOOL/$1")"; head -c "$2" /dev/urandom > "$SPOOL/$1.tmp"; mv "$SPOOL/$1.tmp" "$SPOOL/$1"; echo "dropped $1 ($2 bytes)"; }
drop 2026-11-29/audience-0001.csv 120000
drop 2026-11-29/audience-0002.csv 80000
drop 2026-11-29/segments/seg-a.json 4000
drop 2026-11-29/empty-marker.csv 0
drop 2026-11-29/full-export.bin 41943040

for _ in $(seq 1 600); do
  pending=$("$BIN" status -c "$WORK/outpost.yaml" --json | python3 -c 'import json,sys;print(sum(s["pending_files"] for s in json.load(sys.stdin)))')
  [ "$pending" = 0 ] && break; sleep 0.2
done
say "outpost status"
"$BIN" status -c "$WORK/outpost.yaml"

say "customer: what arrived in s3://customer-data (owner's view)"
"$TOOLS/venv/bin/python" - <<PY
import boto3
s3 = boto3.client("s3", endpoint_url="$OUTPOST_TEST_RGW_ENDPOINT", region_name="us-east-1",
    aws_access_key_id="$OUTPOST_TEST_RGW_OWNER_KEY", aws_secret_access_key="$OUTPOST_TEST_RGW_OWNER_SECRET")
print(f"{'KEY':<45} {'SIZE':>10}  GRANTS")
for o in s3.list_objects_v2(Bucket="customer-data").get("Contents", []):
    acl = s3.get_object_acl(Bucket="customer-data", Key=o["Key"])
    grants = ", ".join(f"{g['Grantee'].get('ID')}:{g['Permission']}" for g in acl["Grants"])
    print(f"{o['Key']:<45} {o['Size']:>10}  {grants}")
print("incomplete multipart uploads:", len(s3.list_multipart_uploads(Bucket="customer-data").get("Uploads", [])))
PY

say "publisher: what the ledger says was delivered (outpost deliveries)"
"$BIN" deliveries -c "$WORK/outpost.yaml"

say "metrics (GET /metrics)"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^outpost_(files_uploaded_total|bytes_uploaded_total|queue_files|files_failed_total\{reason="retries_exhausted"|upload_errors_total\{class="transient"|build_info)'

say "stopping (SIGTERM)"
kill "$DAEMON"; wait "$DAEMON" && echo "outpost exited 0"; DAEMON=""
echo "daemon log: $WORK/daemon.log"
