#!/usr/bin/env python3
"""Reads the results directory of compare.sh and prints the FerrisDB vs etcd comparison.

Usage: report.py RESULTS_DIR

Prints Markdown: the machine facts, a table per workload x clients with each system's
throughput and p50/p99 latency and the FerrisDB/etcd throughput ratio, then the commit
batching figures (etcd: write operations per WAL fsync during each write run; FerrisDB: the
coordinator's average transactions per commit batch from `ferrisdb status --json`) next to
the disk's measured fsync rate. Writes RESULTS_DIR/chart.svg: a grouped bar chart of
throughput per workload x clients, both systems. Python 3 standard library only.
"""
import html
import json
import math
import os
import sys

# (row label, etcd store name, etcd workload letter, FerrisDB workload letter)
WORKLOADS = {
    "w": ("w: 1-key write", "etcd", "w", "w"),
    "c": ("c: point read, linearizable", "etcd", "c", "c"),
    "cs": ("c: point read, etcd serializable", "etcd-serializable", "c", "c"),
    "a": ("a: 50% read / 50% write", "etcd", "a", "a"),
    "r": ("r: 100-key range read", "etcd", "r", "r"),
    "t": ("t: 2-key read-modify-write", "etcd", "t", "t"),
}
ORDER = ["w", "c", "cs", "a", "r", "t"]
WRITE_KINDS = ("update", "insert", "read_modify_write", "read_modify_write_2")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_runs(d):
    """Runs keyed by (store, workload, clients), from the bench JSON files."""
    runs = {}
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json") or name.startswith("load-") or name.count(".") > 1:
            continue
        r = load_json(os.path.join(d, name))
        if isinstance(r, dict) and "total" in r and "store" in r:
            runs[(r["store"], r["workload"], r["clients"])] = (name[: -len(".json")], r)
    return runs


def ms(us):
    return f"{us / 1000:.2f}"


def ops(x):
    return f"{x:,.0f}"


def notes(r):
    t = r["total"]
    out = []
    if t["errors"]:
        out.append(f"{t['errors']} errors")
    if t["retries"]:
        out.append(f"{t['abort_rate'] * 100:.1f}% aborts")
    return ", ".join(out)


def rows(runs):
    """(key, label, clients, etcd run or None, FerrisDB run or None) in table order."""
    clients = sorted({k[2] for k in runs})
    out = []
    for key in ORDER:
        label, estore, eletter, fletter = WORKLOADS[key]
        for n in clients:
            e = runs.get((estore, eletter, n))
            f = runs.get(("ferrisdb", fletter, n))
            if e or f:
                out.append((key, label, n, e and e[1], f and f[1], e and e[0]))
    return out


def table(rs):
    lines = [
        "| workload | clients | etcd ops/s | etcd p50 ms | etcd p99 ms "
        "| FerrisDB ops/s | FerrisDB p50 ms | FerrisDB p99 ms | FerrisDB/etcd | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, label, n, e, f, _ in rs:
        def cells(r):
            if not r:
                return ["–", "–", "–"]
            t = r["total"]
            return [ops(t["throughput"]), ms(t["p50_us"]), ms(t["p99_us"])]
        ratio = "–"
        if e and f and e["total"]["throughput"] > 0:
            ratio = f"{f['total']['throughput'] / e['total']['throughput']:.2f}x"
        note = "; ".join(
            f"{who}: {text}" for who, r in (("etcd", e), ("FerrisDB", f)) if r and (text := notes(r))
        )
        lines.append("| " + " | ".join([label, str(n), *cells(e), *cells(f), ratio, note]) + " |")
    return "\n".join(lines)


def batching(d, rs):
    fs = load_json(os.path.join(d, "fsync.json")) or {}
    rate = fs.get("fsyncs_per_second")
    lines = ["## Commit batching", ""]
    if rate:
        lines.append(
            f"Disk: {rate:,.0f} fsyncs/s (4 KiB write + fdatasync loop in the data directory). "
            f"A store that fsyncs once per commit tops out there; more commits/s than that need "
            f"group commit."
        )
        lines.append("")
    lines += [
        "| workload | clients | etcd write ops/s | etcd WAL fsyncs | etcd writes per fsync "
        "| FerrisDB write ops/s | FerrisDB commits per batch | FerrisDB log fsyncs "
        "| FerrisDB commits per fsync |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    any_row = False
    for key, label, n, e, f, ename in rs:
        if key not in ("w", "a", "t"):
            continue
        def writes(r):
            if not r:
                return None
            return sum(o["ops"] for k, o in r["operations"].items() if k in WRITE_KINDS)
        ew, fw = writes(e), writes(f)
        fsyncs = (load_json(os.path.join(d, f"{ename}.fsyncs.json")) or {}).get("wal_fsyncs") if ename else None
        base = f"ferrisdb-{WORKLOADS[key][3]}-{n}"
        after = (load_json(os.path.join(d, f"{base}.status.json")) or {}).get("coordinator") or {}
        before = (load_json(os.path.join(d, f"{base}.status-before.json")) or {}).get("coordinator") or {}
        def delta(field):
            a, b = after.get(field), before.get(field)
            return a - b if a is not None and b is not None and a >= b else None
        commits, batches, syncs = delta("commits_total"), delta("batches_total"), delta("log_fsyncs_total")
        cells = [
            label,
            str(n),
            ops(ew / e["duration_seconds"]) if ew is not None else "–",
            str(fsyncs) if fsyncs else "–",
            f"{ew / fsyncs:.1f}" if ew and fsyncs else "–",
            ops(fw / f["duration_seconds"]) if fw is not None else "–",
            f"{commits / batches:.1f}" if commits and batches else "–",
            str(syncs) if syncs else "–",
            f"{commits / syncs:.1f}" if commits and syncs else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        any_row = True
    if not any_row:
        return "\n".join(lines[:2])
    lines += [
        "",
        "etcd's figure counts completed write operations over WAL fsyncs during the run (failed "
        "Txn guards and t's read Txns are raft entries too). FerrisDB's come from the "
        "coordinator's counters (`ferrisdb status --json`: commits_total, batches_total, "
        "log_fsyncs_total) sampled a heartbeat before and after the run, so a few idle-tick "
        "batches and the edges of the run are included; one batch is one log record, and one "
        "fdatasync can cover several records.",
    ]
    return "\n".join(lines)


def nice_ceiling(x):
    if x <= 0:
        return 1
    p = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= x:
            return m * p
    return 10 * p


def svg(rs):
    groups = [(f"{key} ×{n}", e, f) for key, _, n, e, f, _ in rs]
    left, top, bottom, gw, bw, h = 70, 40, 90, 56, 22, 300
    width = left + max(1, len(groups)) * gw + 20
    height = top + h + bottom
    vmax = nice_ceiling(max([r["total"]["throughput"] for _, e, f in groups for r in (e, f) if r] or [1]))
    y = lambda v: top + h - h * v / vmax
    colors = {"etcd": "#4e79a7", "FerrisDB": "#e15759"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">Throughput, ops/s: etcd vs FerrisDB '
        f'(workload × clients)</text>',
    ]
    for i in range(6):
        v = vmax * i / 5
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for gi, (label, e, f) in enumerate(groups):
        x0 = left + gi * gw + (gw - 2 * bw) / 2
        for bi, (who, r) in enumerate((("etcd", e), ("FerrisDB", f))):
            if not r:
                continue
            v = r["total"]["throughput"]
            x = x0 + bi * bw
            out.append(
                f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bw - 2}" height="{top + h - y(v):.1f}" '
                f'fill="{colors[who]}"><title>{html.escape(who)} {html.escape(label)}: '
                f'{v:,.0f} ops/s</title></rect>'
            )
        cx = left + gi * gw + gw / 2
        out.append(
            f'<text x="{cx:.1f}" y="{top + h + 14}" text-anchor="end" '
            f'transform="rotate(-45 {cx:.1f} {top + h + 14})">{html.escape(label)}</text>'
        )
    out.append(f'<line x1="{left}" x2="{width - 20}" y1="{top + h}" y2="{top + h}" stroke="#333"/>')
    for i, (who, c) in enumerate(colors.items()):
        lx = width - 200 + i * 90
        out.append(f'<rect x="{lx}" y="28" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{lx + 16}" y="38">{who}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    d = sys.argv[1]
    runs = load_runs(d)
    if not runs:
        print(f"report.py: no benchmark JSON files in {d}", file=sys.stderr)
        return 1
    rs = rows(runs)
    print("# FerrisDB vs etcd, side by side\n")
    try:
        with open(os.path.join(d, "machine.txt")) as f:
            print("```\n" + f.read().rstrip() + "\n```\n")
    except OSError:
        pass
    print(
        "Same load generator (`ferrisdb bench`), same machine, loopback, fsync on commit for "
        "both; etcd restarted after loading and before read phases (etcd 3.4 reads slow down "
        "after write bursts until restarted). FerrisDB's reads are always strictly "
        "serializable, so its row for `c` serializable is its `c` run.\n"
    )
    print(table(rs))
    print()
    print(batching(d, rs))
    chart = os.path.join(d, "chart.svg")
    with open(chart, "w") as f:
        f.write(svg(rs))
    print(f"\nChart: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
