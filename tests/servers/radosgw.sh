#!/usr/bin/env bash
# A single-node Ceph (one monitor, one BlueStore OSD on a sparse file, no cephx) with
# radosgw on 127.0.0.1, all state under DIR. Creates the users "owner" (owns the test
# buckets) and "publisher" (outpost's identity). Serves plain http and TLS (a
# certificate for 127.0.0.1 from a private CA in DIR/tls/ca.pem). Prints export
# lines for the tests.
# A start that stalls (now and then the fresh OSD is refused by its monitor with "wrong
# fsid" and never comes up) is torn down and made again from scratch, up to 3 times.
set -euo pipefail
if [ "${1:-}" != --once ]; then
  DIR=$1
  for attempt in 1 2 3; do
    if "$0" --once "$DIR"; then exit 0; fi
    for f in "$DIR"/rgw.pid "$DIR"/osd.pid "$DIR"/mon.pid; do
      [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
    [ "$attempt" -lt 3 ] && echo "radosgw: start attempt $attempt failed; starting again" >&2
  done
  exit 1
fi
DIR=$2
rm -rf "$DIR"; mkdir -p "$DIR"/{mon,osd,run,log}
# Three distinct free ports at once.
read -r port tlsport monport < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
FSID=$(python3 -c 'import uuid;print(uuid.uuid4())')
CONF="$DIR/ceph.conf"
mkdir -p "$DIR/tls"
# A private CA (ca.pem, what clients trust) and the server certificate it signs.
( cd "$DIR/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=outpost test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -keyout ca.key -out ca.pem
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile ext.cnf -out cert.pem ) >/dev/null 2>&1
cat > "$CONF" <<C
[global]
fsid = $FSID
mon_host = v1:127.0.0.1:$monport
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_msgr2 = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
mon_data_avail_warn = 1
mon_data_avail_crit = 0
run_dir = $DIR/run
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
[mon]
mon_data = $DIR/mon/\$name
[osd]
osd_data = $DIR/osd/\$name
osd_objectstore = bluestore
bluestore_block_path = $DIR/osd/\$name.block
bluestore_block_size = 21474836480
bluestore_block_create = true
osd_memory_target = 1073741824
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$port ssl_endpoint=127.0.0.1:$tlsport ssl_certificate=$DIR/tls/cert.pem ssl_private_key=$DIR/tls/key.pem
rgw_data = $DIR/rgw
rgw_enable_usage_log = false
# Deleted objects' data is reclaimed within seconds, not after RGW's default 2 h: a
# bench writes tens of GiB through this 20 GiB OSD, deleting as it goes, and a full
# OSD makes every write hang.
rgw_gc_obj_min_wait = 0
rgw_gc_processor_period = 5
rgw_gc_processor_max_time = 5
C
export CEPH_CONF="$CONF"
ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --addv a "v1:127.0.0.1:$monport" --fsid "$FSID" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" 2>>"$DIR/log/setup.log"
ceph-mon -c "$CONF" -i a -f >>"$DIR/log/mon.out" 2>&1 &
echo $! > "$DIR/mon.pid"
up=0
for _ in $(seq 1 300); do ceph -c "$CONF" -s --connect-timeout 2 >/dev/null 2>&1 && { up=1; break; }; sleep 0.2; done
[ $up = 1 ] || { echo "ceph-mon did not start" >&2; exit 1; }
UUID=$(python3 -c 'import uuid;print(uuid.uuid4())')
ID=$(ceph -c "$CONF" osd new "$UUID")
mkdir -p "$DIR/osd/osd.$ID"
ceph-osd -c "$CONF" -i "$ID" --mkfs --osd-uuid "$UUID" >>"$DIR/log/setup.log" 2>&1
ceph-osd -c "$CONF" -i "$ID" -f >>"$DIR/log/osd.out" 2>&1 &
echo $! > "$DIR/osd.pid"
up=0
for _ in $(seq 1 300); do
  ceph -c "$CONF" osd stat 2>/dev/null | grep -q '1 up' && { up=1; break; }
  grep -qs "wrong fsid" "$DIR/log/osd.$ID.log" && break # never comes up: start again
  sleep 0.2
done
[ $up = 1 ] || { echo "ceph-osd did not come up; the end of its log:" >&2; tail -n 3 "$DIR/log/osd.$ID.log" >&2 || true; exit 1; }
radosgw -c "$CONF" -n client.rgw.a -f >>"$DIR/log/rgw.out" 2>&1 &
echo $! > "$DIR/rgw.pid"
for _ in $(seq 1 450); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" || {
  echo "radosgw did not start; the end of its logs:" >&2
  tail -n 15 "$DIR"/log/rgw.out "$DIR"/log/client.rgw.a.log >&2 2>/dev/null || true
  exit 1; }
radosgw-admin -c "$CONF" user create --uid=owner --display-name=Owner --access-key=OWNERACCESSKEY00000 --secret=ownersecretkey000000000000000000000000000 >/dev/null
radosgw-admin -c "$CONF" user create --uid=publisher --display-name=Publisher --access-key=PUBLISHERKEY0000000 --secret=publishersecretkey00000000000000000000000 >/dev/null
cat <<E
export OUTPOST_TEST_RGW_ENDPOINT=http://127.0.0.1:$port
export OUTPOST_TEST_RGW_OWNER_KEY=OWNERACCESSKEY00000
export OUTPOST_TEST_RGW_OWNER_SECRET=ownersecretkey000000000000000000000000000
export OUTPOST_TEST_RGW_PUBLISHER_KEY=PUBLISHERKEY0000000
export OUTPOST_TEST_RGW_PUBLISHER_SECRET=publishersecretkey00000000000000000000000
export OUTPOST_TEST_RGW_CONF=$CONF
export OUTPOST_TEST_RGW_TLS_ENDPOINT=https://127.0.0.1:$tlsport
export OUTPOST_TEST_RGW_CA=$DIR/tls/ca.pem
E
echo "radosgw on 127.0.0.1:$port" >&2
