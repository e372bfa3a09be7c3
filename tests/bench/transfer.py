"""Workloads (a) one large file and (b) many small files: outpost and its four peers on one
store, interleaved (in repeat i every tool runs once, in an order rotated by i; the daemon
stays up across repeats), directly or through the delay proxy, at equal concurrency or at
each tool's defaults. Every sample is kept: wall time, the client's CPU (outpost's from
/proc/PID/stat, a peer's from RUSAGE_CHILDREN around its process), the store's CPU and
the proxy's CPU."""
import os
import shutil
import subprocess
import time
from pathlib import Path

from common import REPEAT, Outpost, children_cpu

DEBUG_LOG = "warn,outpost_uploader::upload=debug"


class OutpostRunner:
    """outpost as one of the tools: a drop into its spool, timed until /metrics counts it."""
    name, label = "outpost", "outpost"

    def __init__(self, op, workload, n):
        self.op, self.workload, self.n, self.done = op, workload, n, 0

    def run(self, i, src, bucket):
        op = self.op
        if self.workload == "a":
            staged = op.work / "staged"
            os.link(src, staged)  # outpost removes its link; the source stays
            dest, prefix = op.spool / "acme" / f"large-{i}.bin", f"acme/large-{i}.bin"
        else:
            staged = op.spool / f".staged-{i}"
            shutil.copytree(src, staged)
            dest, prefix = op.spool / "acme" / f"batch-{i}", f"acme/batch-{i}/"
        c0 = op.cpu()
        t = time.perf_counter()
        os.rename(staged, dest)
        self.done += self.n
        op.wait_uploaded(self.done, poll=0.005 if self.workload == "a" else 0.01)
        return time.perf_counter() - t, op.cpu() - c0, prefix


class PeerRunner:
    def __init__(self, peer, workload):
        self.peer, self.workload = peer, workload
        self.name, self.label = peer.name, peer.label

    def run(self, i, src, bucket):
        if self.workload == "a":
            prefix = f"{self.name}/large-{i}.bin"
            cmd, env = self.peer.large(src, bucket, prefix)
        else:
            prefix = f"{self.name}/b{i}/"
            cmd, env = self.peer.small(src, bucket, prefix)
        c0 = children_cpu()
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - t
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [""])[-1]
            raise RuntimeError(f"{self.name} exited {r.returncode}: {last[-200:]}")
        return took, children_cpu() - c0, prefix


def run_transfer(server, work, workload, mode, src, n, peers, proxy=None):
    """Runs workload `a` (src: one file) or `b` (src: a folder of `n` files) for outpost and
    `peers` (built for the endpoint the clients use). Returns {tool: samples} and the
    store's completion times from outpost's log (large files)."""
    target = proxy.server if proxy else server
    tag = f"{workload}-{server.name}-{mode}{'-delay' if proxy else ''}"
    bucket = server.bucket(f"bench-{tag}-{int(time.time() * 1000) % 10**9}")
    op = Outpost(Path(work) / f"op-{tag}", target, bucket, uploads=16, tuned=mode == "equal",
                 log=DEBUG_LOG if workload == "a" else "warn").start().ready()
    ours = OutpostRunner(op, workload, 1 if workload == "a" else n)
    tools = [ours] + [PeerRunner(p, workload) for p in peers]
    out = {t.name: dict(label=t.label, t=[], cpu=[], srv=[], proxy=[], error=None) for t in tools}
    try:
        # One untimed upload first: a fresh store (radosgw's BlueStore) is slow on first writes.
        server.empty(bucket, ours.run(REPEAT, src, bucket)[2])
        for i in range(REPEAT):
            k = i % len(tools)
            for tool in tools[k:] + tools[:k]:
                rec = out[tool.name]
                if rec["error"]:
                    continue
                s0, p0 = server.cpu(), proxy.cpu() if proxy else 0
                try:
                    wall, cpu, prefix = tool.run(i, src, bucket)
                except RuntimeError as e:
                    rec["error"] = str(e)
                    print(f"  {tag} {tool.name}: {e}", flush=True)
                    continue
                rec["srv"].append(server.cpu() - s0)
                if proxy:
                    rec["proxy"].append(proxy.cpu() - p0)
                rec["t"].append(wall)
                rec["cpu"].append(cpu)
                server.empty(bucket, prefix)
        out["outpost"]["hwm"] = op.status("VmHWM")
    finally:
        op.stop()
    completes = [int(line.split("took_ms=", 1)[1].split()[0]) / 1000
                 for line in (op.work / "daemon.log").read_text(errors="replace").splitlines()
                 if "multipart upload completed" in line and "took_ms" in line]
    out["outpost"]["complete"] = completes[1:]
    shutil.rmtree(op.work, ignore_errors=True)
    return out
