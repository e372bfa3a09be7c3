#!/usr/bin/env python3
"""`make bench`: outpost against the AWS CLI, rclone, s5cmd and boto3 + AWS CRT on S3
stores on 127.0.0.1, same files, interleaved runs; prints every table and, on a complete
run, writes docs/benchmarks.md's generated section.

  bench.py ENV_FILE      (the servers' env file written by tests/servers/start.sh)

Workloads (BENCH_ONLY=a,b,delay,c,d,e,f,g,h,i picks some; default all):
  a, b   one large file; many small files: on every store (s3s-fs, radosgw over http and
         over TLS; BENCH_SERVER=s3s|radosgw [BENCH_TLS=1] for one), all five tools at equal
         concurrency
  delay  a and b on the default store through tests/bench/delay_proxy.py (BENCH_DELAY_MS
         each way), every tool at its defaults and at equal concurrency
  c..h   outpost alone on the default store (s3s-fs, or BENCH_SERVER): latency, memory,
         idle CPU, backlog, ledger, bandwidth limits
  i      BENCH_DESTINATIONS servers in one daemon: ready, RSS, idle CPU, SIGHUP, first upload
Size knobs (for smoke runs): BENCH_REPEAT (5), BENCH_LARGE_MIB (1024), BENCH_SMALL_N
(3000), BENCH_DESTINATIONS (10000), BENCH_IDLE_S (60), BENCH_BACKLOG_N (100000),
BENCH_LATENCY_N (200), BENCH_PROXY_PROCS (2). BENCH_DOC=path writes the document there
even on a partial run.

Measurements, not tests: nothing here asserts a time.
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import (DELAY_MS, LARGE, MIB, PROXY_PROCS, REPEAT, ROOT, SMALL_N, DelayProxy, Server, big_file, knob,
                    load_env, machine, small_files)
from destinations import bench_destinations
from peers import peers
from report import destinations_table, targets, transfer_table, write_doc
from transfer import run_transfer
from workloads import bench_backlog, bench_bandwidth, bench_hwm, bench_idle, bench_latency, bench_ledger

ALL = "a,b,delay,c,d,e,f,g,h,i"
NAMES = {"s3s": "s3s-fs", "radosgw": "radosgw (http)", "radosgw-tls": "radosgw (TLS)"}


def stores_from_env(env):
    one = os.environ.get("BENCH_SERVER")
    tls = os.environ.get("BENCH_TLS") == "1"
    if tls and one != "radosgw":
        sys.exit("BENCH_TLS=1 needs BENCH_SERVER=radosgw (s3s-fs serves plain http only)")
    if one:
        return [Server(env, one, tls)]
    return [Server(env, "s3s"), Server(env, "radosgw"), Server(env, "radosgw", tls=True)]


def show(lines):
    print("\n".join(lines) + "\n", flush=True)


def main():
    env = load_env(sys.argv[1])
    dirs = Path(sys.argv[1]).parent
    stores = [s.find_pids(dirs) for s in stores_from_env(env)]
    default = stores[0]
    only = set(os.environ.get("BENCH_ONLY", ALL).split(","))
    (ROOT / ".tmp").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="outpost-bench-", dir=str(ROOT / ".tmp")))
    print(f"bench on {', '.join(s.name for s in stores)}; {machine()}; {REPEAT} repeats", flush=True)
    sections, results, amounts = [], {}, {"a": LARGE, "b": SMALL_N}
    large, small = work / "large.bin", work / "small"
    if only & {"a", "delay"}:
        big_file(large, LARGE)
    if only & {"b", "delay"}:
        small_files(small, SMALL_N)
    srcs = {"a": large, "b": small}
    titles = {"a": f"(a) one {LARGE // MIB:,} MiB file", "b": f"(b) {SMALL_N:,} files of 16 KiB"}

    def transfer(workload, store, mode, proxy=None):
        target = proxy.server if proxy else store
        res = run_transfer(store, work, workload, mode, srcs[workload], SMALL_N, peers(target, work, mode), proxy)
        results[(workload, store.name, mode, proxy is not None)] = res
        return transfer_table(res, workload, amounts[workload], delayed=proxy is not None)

    try:
        for workload in ("a", "b"):
            if workload not in only:
                continue
            sections.append(f"### {titles[workload]}, equal concurrency\n")
            for store in stores:
                lines = transfer(workload, store, "equal")
                sections += [f"On {NAMES[store.name]}:\n"] + lines + [""]
                show([f"{titles[workload]} on {store.name}"] + lines)
        if "delay" in only:
            sections.append(f"### With {2 * DELAY_MS} ms round trip (delay proxy), on {NAMES[default.name]}\n")
            sections.append(
                f"tests/bench/delay_proxy.py between every client and the store: each segment forwarded "
                f"{DELAY_MS} ms after it was read, in each direction, pipelined (bandwidth not cut), a new "
                f"connection's first bytes one round trip later (its handshake); {PROXY_PROCS} proxy processes "
                "on one port (SO_REUSEPORT). Its CPU per run is in the last column: \"busy\" is that CPU over "
                f"the run's wall time and its {PROXY_PROCS} processes; near 100 % it, not the tool, is the bound.\n")
            for mode, what in (("defaults", "each tool at its defaults"), ("equal", "equal concurrency")):
                proxy = DelayProxy(default)
                try:
                    for workload in ("a", "b"):
                        lines = transfer(workload, default, mode, proxy)
                        sections += [f"{titles[workload]}, {what}:\n"] + lines + [""]
                        show([f"{titles[workload]}, {2 * DELAY_MS} ms RTT, {what}"] + lines)
                finally:
                    proxy.stop()
        large.unlink(missing_ok=True)
        shutil.rmtree(small, ignore_errors=True)
        rows = alone(default, work, only)
        if rows:
            sections += [f"### Outpost alone, on {NAMES[default.name]}\n",
                         "| figure | outpost | against | its figure | ratio |", "|---|---|---|---|---|"]
            sections += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""]
        dest = None
        if "i" in only:
            try:
                dest = bench_destinations(default, work)
            except RuntimeError as e:
                dest = {"n": knob("BENCH_DESTINATIONS", 10000), "error": str(e).strip()[-400:], "sighup_line": ""}
            lines = destinations_table(dest)
            sections += [f"### (i) {dest['n']:,} destinations, on {NAMES[default.name]}\n",
                         f"One daemon, {dest['n']:,} servers (each its own spool folder and prefix in one bucket; "
                         "10 of them with 3 files waiting at start-up), defaults otherwise. The first upload and "
                         "the upload after the SIGHUP are timed from the drop until the object is in the store "
                         "(HEAD polled every 2 ms; scraping /metrics of 10,000 servers that often would load the "
                         "daemon); the SIGHUP until the daemon logs \"SIGHUP: configuration reloaded\". "
                         f"Reload line: `{dest['sighup_line'].strip()}`\n"] + lines + [""]
            show(["(i)"] + lines)
        tgt = targets(results, amounts, dest)
        sections += ["### Issue 15's targets, from this run\n"] + tgt + [""]
        show(tgt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = os.environ.get("BENCH_DOC")
    complete = only == set(ALL.split(",")) and not os.environ.get("BENCH_SERVER")
    if doc or complete:
        path = Path(doc) if doc else ROOT / "docs" / "benchmarks.md"
        write_doc(path, sections, [NAMES[s.name] for s in stores])
        print(f"written to {path}")
    else:
        print("partial run: docs/benchmarks.md not written (BENCH_DOC=path writes it elsewhere)")


def alone(server, work, only):
    """(c)-(h): outpost alone, rows of (figure, outpost, against, its figure, ratio)."""
    rows = []
    if "c" in only:
        p50, p99, floor = bench_latency(server, work, n=knob("BENCH_LATENCY_N", 200))
        rows.append(("(c) 64 KiB drop-to-ack p50 / p99, ms", f"{p50 * 1000:.1f} / {p99 * 1000:.1f}",
                     "bare PUT (boto3, connected), ms", f"{floor * 1000:.1f}", f"p50 - floor = {(p50 - floor) * 1000:.1f} ms"))
    if "d" in only:
        hwm1, hwm4 = bench_hwm(server, work, LARGE), bench_hwm(server, work, 4 * LARGE)
        budget = 8 * 8 * MIB
        rows.append((f"(d) VmHWM, {LARGE // MIB} MiB / {4 * LARGE // MIB} MiB file, MiB",
                     f"{hwm1 / MIB:.0f} / {hwm4 / MIB:.0f}", "parts in flight x part size, MiB", f"{budget / MIB:.0f}",
                     f"+{(max(hwm1, hwm4) - budget) / MIB:.0f} MiB"))
    if "e" in only:
        idle = bench_idle(server, work, seconds=knob("BENCH_IDLE_S", 60))
        rows.append(("(e) idle CPU, 100 servers", f"{idle:.3f} % of a core", "target", "< 0.1 %", ""))
    if "f" in only:
        n = knob("BENCH_BACKLOG_N", 100_000)
        first, rss, drain, hwm = bench_backlog(server, work, n=n)
        rows.append((f"(f) {n:,} pending: first upload", f"{first:.2f} s", "target", "< 2 s", ""))
        rows.append((f"(f) {n:,} pending: RSS after scan / peak", f"{rss / MIB:.0f} / {hwm / MIB:.0f} MiB", "target",
                     "< 200 MiB", ""))
        rows.append((f"(f) {n:,} pending: drain rate", f"{drain:.0f} files/s", "", "", ""))
    if "g" in only:
        with_l, without, figures = bench_ledger(server, work)
        rows.append((f"(g) {SMALL_N:,} x 16 KiB with the ledger, files/s", f"{with_l:.2f}", "without the ledger",
                     f"{without:.2f}", f"{with_l / without:.2f}x"))
        rows.append(("(g) ledger: 1,000,000 rows", figures.get("size", "?"), "insert rate",
                     figures.get("insert", "?"), f"--since 24h: {figures.get('since', '?')}"))
    if "h" in only:
        limit = 50
        whole, sending, side_alone, beside = bench_bandwidth(server, work, limit)
        mib = LARGE // MIB
        rows.append((f"(h) {mib} MiB at max_bandwidth: 50MiB/s, sending, MiB/s", f"{sending:.1f}", "the limit",
                     f"{limit:.1f}", f"{sending / limit:.3f}x"))
        rows.append(("(h) the same, drop to acknowledgement, MiB/s", f"{whole:.1f}", "the limit", f"{limit:.1f}",
                     f"{whole / limit:.3f}x"))
        rows.append((f"(h) {mib // 2} MiB to an unlimited server beside it, MiB/s", f"{beside:.1f}", "the same alone",
                     f"{side_alone:.1f}", f"{beside / side_alone:.2f}x"))
    for r in rows:
        print(" | ".join(str(c) for c in r), flush=True)
    return rows


if __name__ == "__main__":
    time.tzset()
    main()
