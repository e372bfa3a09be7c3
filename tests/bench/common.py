"""The pieces every `make bench` workload shares: the size knobs, the S3 stores on
127.0.0.1 (`Server`), a release outpost daemon on its own spool (`Outpost`), the delay
proxy (`DelayProxy`), CPU accounting from /proc and getrusage, and samples kept whole
(`spread`: min / median / max)."""
import copy
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
OUTPOST = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "outpost"
MIB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def knob(name, default):
    return int(os.environ.get(name, str(default)))


REPEAT = knob("BENCH_REPEAT", 5)
LARGE = knob("BENCH_LARGE_MIB", 1024) * MIB
SMALL_N = knob("BENCH_SMALL_N", 3000)
DESTINATIONS = knob("BENCH_DESTINATIONS", 10000)
IDLE_S = knob("BENCH_IDLE_S", 60)
DELAY_MS = knob("BENCH_DELAY_MS", 10)
PROXY_PROCS = knob("BENCH_PROXY_PROCS", 2)


def load_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    """One store: s3s-fs, radosgw over http, or radosgw over TLS (`name` says which)."""

    def __init__(self, env, kind, tls=False):
        self.kind = kind
        self.name = "radosgw-tls" if tls else kind
        self.ca = env.get("OUTPOST_TEST_RGW_CA") if tls else None
        if kind == "radosgw":
            self.endpoint = env["OUTPOST_TEST_RGW_TLS_ENDPOINT" if tls else "OUTPOST_TEST_RGW_ENDPOINT"]
            self.key, self.secret = env["OUTPOST_TEST_RGW_PUBLISHER_KEY"], env["OUTPOST_TEST_RGW_PUBLISHER_SECRET"]
            self.owner = (env["OUTPOST_TEST_RGW_OWNER_KEY"], env["OUTPOST_TEST_RGW_OWNER_SECRET"])
            # The cheapest check radosgw verifies (docs/configuration.md#integrity-checks):
            # the signed payload's SHA-256, not a Content-MD5 beside it.
            self.checksum = "signed_payload"
        else:
            self.endpoint = env["OUTPOST_TEST_S3S_ENDPOINT"]
            self.key, self.secret = env["OUTPOST_TEST_S3S_KEY"], env["OUTPOST_TEST_S3S_SECRET"]
            self.owner = (self.key, self.secret)
            self.checksum = "crc32c"
        self.pid_list = []
        # What the clients connect to: the store, or a delay proxy in front of it.
        self.direct = self.endpoint

    def via(self, endpoint):
        """The same store reached through another endpoint (a proxy); admin calls stay direct."""
        other = copy.copy(self)
        other.endpoint = endpoint
        return other

    def client(self, owner=False):
        k, s = self.owner if owner else (self.key, self.secret)
        return boto3.client("s3", endpoint_url=self.direct, region_name="us-east-1", verify=self.ca,
                            aws_access_key_id=k, aws_secret_access_key=s)

    def find_pids(self, dirs):
        """The server's processes (radosgw counts its OSD and monitor too)."""
        names = ["rgw.pid", "osd.pid", "mon.pid"] if self.kind == "radosgw" else ["pid"]
        sub = dirs / ("radosgw" if self.kind == "radosgw" else "s3s")
        self.pid_list = [int((sub / n).read_text()) for n in names if (sub / n).exists()]
        return self

    def cpu(self):
        return proc_cpu(self.pid_list)

    def bucket(self, name):
        c = self.client(owner=True)
        c.create_bucket(Bucket=name)
        if self.kind == "radosgw":
            c.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{name}/*", f"arn:aws:s3:::{name}"]}]}))
        return name

    def empty(self, bucket, prefix=""):
        """Deletes what a run left (untimed), so the store's disk holds one run's objects."""
        c = self.client(owner=True)
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


class Outpost:
    """A release outpost daemon on its own spool. `tuned` sets the bench's equal-concurrency
    settings (parts of `part` bytes, `conc` per file, `uploads` files in flight); without
    it the daemon runs at its documented defaults."""

    def __init__(self, work, server, bucket, servers=1, part=8 * MIB, conc=8, uploads=16, archive=False, log="warn",
                 ledger=True, keys=None, tuned=True):
        self.log_level = log
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.spool = self.work / "spool"
        self.port = free_port()
        width = max(3, len(str(servers - 1)))
        self.names = ["acme"] + [f"s{i:0{width}}" for i in range(1, servers)]
        # Without a ledger: a state_dir below a regular file cannot be opened, and the
        # daemon delivers without one (as it would with a broken disk there).
        state = self.work / "state"
        if not ledger:
            (self.work / "no-ledger").write_text("")
            state = self.work / "no-ledger" / "state"
        lines = [f"spool_dir: {self.spool}", f"listen: 127.0.0.1:{self.port}", f"state_dir: {state}"]
        if tuned:
            lines.append(f"max_concurrent_uploads: {uploads}")
        lines += ["defaults:", f"  endpoint: {server.endpoint}", "  path_style: true", f"  checksum: {server.checksum}",
                  f"  after_upload: {'archive' if archive else 'delete'}"]
        if tuned:
            lines += [f"  max_concurrent_uploads: {uploads}",
                      f"  multipart: {{ threshold: 16MiB, part_size: {part // MIB}MiB, concurrency: {conc} }}"]
        self.head = lines
        self.keys = keys or {}
        self.config = self.work / "outpost.yaml"
        self.write_config(bucket)
        self.server = server
        self.proc = None

    def write_config(self, bucket, prefixes=None):
        lines = self.head + ["servers:"]
        for n in self.names:
            prefix = (prefixes or {}).get(n, f"{n}/")
            lines += [f"  {n}:", f"    bucket: {bucket}", f"    prefix: \"{prefix}\""]
            lines += [f"    {k}" for k in self.keys.get(n, [])]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.server.key, AWS_SECRET_ACCESS_KEY=self.server.secret,
                   AWS_EC2_METADATA_DISABLED="true", RUST_LOG=self.log_level)
        if self.server.ca:
            env["SSL_CERT_FILE"] = self.server.ca
        self.log = open(self.work / "daemon.log", "a")
        self.proc = subprocess.Popen([str(OUTPOST), "run", "-c", str(self.config)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=unit_nofile)
        return self

    def ready(self, timeout=600):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status == 200:
                    return self
            except Exception:
                pass
            if self.proc.poll() is not None:
                tail = (self.work / "daemon.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"outpost exited {self.proc.returncode}: {tail}")
            time.sleep(0.005)
        raise RuntimeError("outpost not ready")

    def uploaded(self, server="acme"):
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except Exception:
            return -1
        want = f'outpost_files_uploaded_total{{server="{server}"}}'
        for line in body.splitlines():
            if line.startswith(want):
                return float(line.split()[-1])
        return -1

    def wait_uploaded(self, n, poll=0.005, timeout=3600, server="acme"):
        end = time.time() + timeout
        while time.time() < end:
            if self.uploaded(server) >= n:
                return
            time.sleep(poll)
        raise RuntimeError(f"outpost did not upload {n} files; see {self.work / 'daemon.log'}")

    def status(self, field):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu(self):
        """CPU seconds the daemon used so far (utime + stime from /proc/PID/stat)."""
        return proc_cpu([self.proc.pid])

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=120)
            self.proc = None


class DelayProxy:
    """tests/bench/delay_proxy.py in front of `server`: DELAY_MS per segment each way,
    PROXY_PROCS worker processes. `cpu()` sums the workers' CPU seconds."""

    def __init__(self, server):
        self.port = free_port()
        target = server.direct.split("://", 1)[1].rstrip("/")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "bench" / "delay_proxy.py"), str(self.port),
                                      target, str(DELAY_MS), str(PROXY_PROCS)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("delay proxy did not start")
        self.workers = [int(p) for p in line[1:]]
        scheme = server.direct.split("://", 1)[0]
        self.server = server.via(f"{scheme}://127.0.0.1:{self.port}")

    def cpu(self):
        return proc_cpu(self.workers)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def unit_nofile():
    """The descriptor limit of systemd/outpost.service (LimitNOFILE=65536), or the most
    this shell may have (the daemon holds descriptors per configured server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_cpu(pids):
    """CPU seconds used so far by the processes `pids`."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def big_file(path, size):
    with open(path, "wb") as f:
        chunk = os.urandom(min(size, 64 * MIB))
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def small_files(path, n, size=16 * 1024):
    path.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(size)
    for i in range(n):
        (path / f"f{i:05}.bin").write_bytes(payload)
    return path


def spread(xs, fmt="{:.2f}"):
    """min / median / max of the samples."""
    if not xs:
        return "-"
    return " / ".join(fmt.format(v) for v in (min(xs), statistics.median(xs), max(xs)))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Linux {platform.release()}"
