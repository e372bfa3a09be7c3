"""Workload (i): one daemon configured with BENCH_DESTINATIONS servers (10,000; each its
own spool folder and key prefix in one bucket; a few have files waiting at start-up).
Measures start to /readyz 200, VmRSS once ready, the first upload's latency, idle CPU
over BENCH_IDLE_S seconds, and how long a SIGHUP that changes one server's prefix takes
to be applied (from the signal to the daemon's "SIGHUP: configuration reloaded" log line,
then checked: a file dropped for that server lands under its new prefix)."""
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path

from common import DESTINATIONS, IDLE_S, MIB, Outpost

BUSY, FILES_EACH = 10, 3


def total_uploaded(op):
    body = urllib.request.urlopen(f"http://127.0.0.1:{op.port}/metrics", timeout=30).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("outpost_files_uploaded_total{")), len(body)


def wait_object(server, bucket, key, timeout=120):
    """Until `key` exists in the store (HEAD every few ms: cheaper than scraping the
    metrics of 10,000 servers, which would load the daemon being measured)."""
    c = server.client(owner=True)
    end = time.time() + timeout
    while time.time() < end:
        try:
            c.head_object(Bucket=bucket, Key=key)
            return
        except c.exceptions.ClientError:
            time.sleep(0.002)
    raise RuntimeError(f"{key} never arrived")


def drop(op, name, file, payload):
    tmp = op.spool / name / f".{file}.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(payload)
    t = time.perf_counter()
    os.rename(tmp, op.spool / name / file)
    return t


def bench_destinations(server, work, n=DESTINATIONS, idle_s=IDLE_S):
    bucket = server.bucket(f"bench-dest-{int(time.time())}")
    op = Outpost(Path(work) / "op-dest", server, bucket, servers=n, tuned=False, log="warn,outpost::reload=info")
    payload = os.urandom(16 * 1024)
    busy = op.names[1::max(1, n // BUSY)][:BUSY]
    for name in busy:
        for k in range(FILES_EACH):
            (op.spool / name).mkdir(parents=True, exist_ok=True)
            (op.spool / name / f"waiting-{k}.bin").write_bytes(payload)
    quiet = [x for x in op.names if x not in busy]
    first_srv, changed = quiet[-1], quiet[len(quiet) // 2]
    out = {"n": n, "idle_s": idle_s}
    t = time.perf_counter()
    op.start()
    try:
        op.ready(timeout=300)
        out["ready"] = time.perf_counter() - t
        out["rss_ready"] = op.status("VmRSS")
        t = drop(op, first_srv, "first.bin", payload)
        wait_object(server, bucket, f"{first_srv}/first.bin")
        out["first"] = time.perf_counter() - t
        end = time.time() + 300
        while total_uploaded(op)[0] < len(busy) * FILES_EACH + 1:
            if time.time() > end:
                raise RuntimeError("the waiting files were not uploaded")
            time.sleep(0.5)
        out["metrics_bytes"] = total_uploaded(op)[1]
        time.sleep(2)
        c0 = op.cpu()
        time.sleep(idle_s)
        out["idle"] = (op.cpu() - c0) / idle_s * 100
        out["rss_idle"] = op.status("VmRSS")
        log = op.work / "daemon.log"
        pos = log.stat().st_size
        op.write_config(bucket, prefixes={changed: f"{changed}-v2/"})
        t = time.perf_counter()
        op.proc.send_signal(signal.SIGHUP)
        while True:
            tail = log.read_text(errors="replace")[pos:]
            if "SIGHUP: configuration reloaded" in tail:
                break
            if "SIGHUP" in tail and ("rejected" in tail or "error" in tail.lower()):
                raise RuntimeError(f"reload failed: {tail[-300:]}")
            if time.perf_counter() - t > 120:
                raise RuntimeError("no reload in 120 s")
            time.sleep(0.002)
        out["sighup"] = time.perf_counter() - t
        out["sighup_line"] = [x for x in tail.splitlines() if "configuration reloaded" in x][0][-200:]
        t2 = drop(op, changed, "after-reload.bin", payload)
        wait_object(server, bucket, f"{changed}-v2/after-reload.bin")
        out["after_reload"] = time.perf_counter() - t2
        out["hwm"] = op.status("VmHWM")
    finally:
        op.stop()
    server.empty(bucket)
    shutil.rmtree(op.work, ignore_errors=True)
    out["rss_ready_mib"] = out["rss_ready"] / MIB
    return out
