"""The workloads of `make bench` that measure outpost alone, on the default store:
(c) drop-to-acknowledged latency, (d) peak memory for one large file, (e) idle CPU with
100 servers, (f) start-up with a 100,000-file backlog, (g) the delivery ledger's cost,
(h) bandwidth limits."""
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import LARGE, MIB, REPEAT, ROOT, SMALL_N, Outpost, big_file, small_files


def bench_hwm(server, work, size):
    """(d) VmHWM of a daemon that uploaded one file of `size` bytes (8 MiB parts x 8)."""
    bucket = server.bucket(f"bench-hwm-{int(time.time() * 1000) % 10**9}")
    src = Path(work) / "hwm.bin"
    big_file(src, size)
    op = Outpost(Path(work) / f"op-hwm-{size}", server, bucket, part=8 * MIB, conc=8).start().ready()
    os.link(src, op.work / "staged")
    src.unlink()
    os.rename(op.work / "staged", op.spool / "acme" / "hwm.bin")
    op.wait_uploaded(1, poll=0.05)
    hwm = op.status("VmHWM")
    op.stop()
    server.empty(bucket)
    shutil.rmtree(op.work, ignore_errors=True)
    return hwm


def bench_ledger(server, work, n=SMALL_N, size=16 * 1024, conc=16):
    """(g) the delivery ledger's cost: the small-file drain rate with the ledger and
    without it (state_dir unopenable), interleaved; then the ledger crate's own figures
    over 1,000,000 rows (size, insert rate, `--since 24h` query)."""
    bucket = server.bucket(f"bench-ledger-{int(time.time())}")
    src = small_files(Path(work) / "ledger-src", n, size)
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
    a = op.cpu()
    time.sleep(seconds)
    b = op.cpu()
    op.stop()
    return (b - a) / seconds * 100


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


def bench_bandwidth(server, work, limit_mib=50, other=LARGE // 2):
    """(h) max_bandwidth: a 1 GiB file to a server limited to `limit_mib` MiB/s while
    another server without a limit uploads a file of `other` bytes alongside; the
    limited server's achieved rate against its limit, and the other's rate alone and
    alongside. The limited rate is given twice: over the whole upload (drop to
    acknowledgement), and over the sending alone (less the store's time to complete the
    multipart upload, which no limit paces — s3s-fs assembles 1 GiB in seconds)."""
    bucket = server.bucket(f"bench-bw-{int(time.time())}")
    big, side = Path(work) / "bw-big.bin", Path(work) / "bw-side.bin"
    big_file(big, LARGE)
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
    mib = LARGE / MIB
    server.empty(bucket)
    return mib / total, mib / (total - sum(complete[-1:])), alone, beside
