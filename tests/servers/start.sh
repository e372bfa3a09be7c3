#!/usr/bin/env bash
# Starts the real S3 servers on 127.0.0.1 for the tests and the demo, and writes their
# endpoints and keys to $DIR/env (sourced by the Makefile):
#   radosgw (Ceph, users "owner" and "publisher"), s3s-fs, moto.
# Usage: start.sh DIR [radosgw] [s3s] [moto]   (default: all three)
set -euo pipefail
DIR=$(mkdir -p "$1" && cd "$1" && pwd); shift
WHICH=${*:-radosgw s3s moto motoauth}
TOOLS=${OUTPOST_TOOLS:-/opt/outpost-tools}
HERE=$(cd "$(dirname "$0")" && pwd)
ENV="$DIR/env"
: > "$ENV"
wait_http() { # url seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  echo "server at $1 did not answer" >&2; return 1
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

for w in $WHICH; do case $w in
radosgw)
  "$HERE/radosgw.sh" "$DIR/radosgw" >> "$ENV"
  ;;
s3s)
  port=$(free_port)
  mkdir -p "$DIR/s3s/data"
  "$TOOLS/s3s/bin/s3s-fs" --host 127.0.0.1 --port "$port" --access-key s3sadmin --secret-key s3ssecretkey0000 "$DIR/s3s/data" > "$DIR/s3s/log" 2>&1 &
  echo $! > "$DIR/s3s/pid"
  wait_http "http://127.0.0.1:$port/" 60
  cat >> "$ENV" <<E
export OUTPOST_TEST_S3S_ENDPOINT=http://127.0.0.1:$port
export OUTPOST_TEST_S3S_KEY=s3sadmin
export OUTPOST_TEST_S3S_SECRET=s3ssecretkey0000
export OUTPOST_TEST_S3S_DATA=$DIR/s3s/data
E
  echo "s3s-fs on 127.0.0.1:$port" >&2
  ;;
moto)
  port=$(free_port)
  mkdir -p "$DIR/moto"
  "$TOOLS/venv/bin/python" -m moto.server -H 127.0.0.1 -p "$port" > "$DIR/moto/log" 2>&1 &
  echo $! > "$DIR/moto/pid"
  wait_http "http://127.0.0.1:$port/moto-api/" 60
  cat >> "$ENV" <<E
export OUTPOST_TEST_MOTO_ENDPOINT=http://127.0.0.1:$port
E
  echo "moto on 127.0.0.1:$port" >&2
  ;;
motoauth)
  # A second moto with IAM enforced: an admin user is created first, then auth is on.
  port=$(free_port)
  mkdir -p "$DIR/motoauth"
  "$TOOLS/venv/bin/python" -m moto.server -H 127.0.0.1 -p "$port" > "$DIR/motoauth/log" 2>&1 &
  echo $! > "$DIR/motoauth/pid"
  wait_http "http://127.0.0.1:$port/moto-api/" 60
  "$TOOLS/venv/bin/python" - "$port" >> "$ENV" <<'PY'
import json, sys, urllib.request
import boto3
ep = f"http://127.0.0.1:{sys.argv[1]}"
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="admin")
iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="admin")["AccessKey"]
urllib.request.urlopen(urllib.request.Request(f"{ep}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
print(f"export OUTPOST_TEST_MOTOAUTH_ENDPOINT={ep}")
print(f"export OUTPOST_TEST_MOTOAUTH_ADMIN_KEY={k['AccessKeyId']}")
print(f"export OUTPOST_TEST_MOTOAUTH_ADMIN_SECRET={k['SecretAccessKey']}")
PY
  echo "moto (IAM enforced) on 127.0.0.1:$port" >&2
  ;;
*) echo "unknown server $w" >&2; exit 2 ;;
esac; done
echo "export OUTPOST_TEST_PYTHON=$TOOLS/venv/bin/python" >> "$ENV"
