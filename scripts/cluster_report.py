#!/usr/bin/env python3
"""Turns the cross-node benchmark's results into the table of docs/benchmarks.md.

    cluster_report.py RESULTS --write docs/benchmarks.md   # rewrites the cross-node section
    cluster_report.py RESULTS --check                      # smoke run: every run present and sane
"""
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import machine  # noqa: E402

LABELS = ["hub-1node", "hub-1node-busy", "hub-redis", "hub-nats", "socketio-1node", "socketio-redis"]
BEGIN, END = "<!-- cluster:begin -->", "<!-- cluster:end -->"


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def medians(runs):
    by = {}
    for run in runs:
        by.setdefault((run["server"], run["size"]), []).append(run)
    out = {}
    for key, group in by.items():
        med = lambda field: statistics.median(r[field] for r in group if r.get(field) is not None) \
            if any(r.get(field) is not None for r in group) else None
        out[key] = {
            "deliveries": med("deliveries_per_s"),
            "remote": med("remote_deliveries_per_s"),
            "p50": med("p50_us"),
            "p99": med("p99_us"),
            "remote_p50": med("remote_p50_us"),
            "remote_p99": med("remote_p99_us"),
            "calls": med("redis_publish_calls"),
            "published": med("published"),
            "subscribers": med("redis_subscribers"),
            "reps": len(group),
        }
    return out


def size_name(size):
    return f"{size} B" if size < 1024 else f"{size // 1024} KiB"


def m(n):
    return f"{n / 1e6:.2f} M/s" if n is not None else "–"


def ms(us):
    return f"{us / 1000:.1f}" if us is not None else "–"


def table(runs, clients):
    med = medians(runs)
    sizes = sorted({r["size"] for r in runs})
    lines = [
        f"Two nodes on this machine sharing one broker, {clients:,} subscribers on each, one "
        "publisher on node A, 16 publishes in flight; the single-node rows put all "
        f"{2 * clients:,} subscribers on one process. Medians of {max(v['reps'] for v in med.values())} runs. "
        "Deliveries are to all subscribers of both nodes; cross-node ones are node B's. "
        "Latency is publish to delivery, in ms (p50 / p99), for node B's subscribers. "
        "The busy row runs the single node with one process spinning on the machine: two nodes "
        "and Redis share the two cores with the load, the single node does not, and this row "
        "shows what sharing the cores alone costs.",
        "",
        "| size | server | deliveries/s | cross-node deliveries/s | vs one node | latency B p50 / p99 | broker msgs per publish per node |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "hub-1node": "socketry-hub, one node",
        "hub-1node-busy": "socketry-hub, one node, one busy process beside it",
        "hub-redis": "socketry-hub + Redis",
        "hub-nats": "socketry-hub + NATS",
        "socketio-1node": "Socket.IO 4.8, one node",
        "socketio-redis": "Socket.IO 4.8 + redis-adapter 8.3",
    }
    for size in sizes:
        one = {"hub": med.get(("hub-1node", size)), "socketio": med.get(("socketio-1node", size))}
        for label in LABELS:
            r = med.get((label, size))
            if r is None:
                continue
            base = one["socketio" if label.startswith("socketio") else "hub"]
            vs = f"{r['deliveries'] / base['deliveries']:.2f}×" if base and label.endswith(("redis", "nats", "busy")) else ""
            msgs = ""
            # Socket.IO's own publications are not counted by the load (it emits per event it
            # gets); ours are: one PUBLISH per publication, to the nodes subscribed.
            if label == "hub-redis" and r["published"] and r["calls"] is not None:
                per = r["calls"] * r["subscribers"] / r["published"] / 2
                msgs = f"{per:.2f}"
            lat = f"{ms(r['remote_p50'])} / {ms(r['remote_p99'])}" if r["remote_p50"] is not None else f"{ms(r['p50'])} / {ms(r['p99'])} (one node)"
            lines.append(
                f"| {size_name(size)} | {names[label]} | {m(r['deliveries'])} | "
                f"{m(r['remote']) if r['remote'] is not None else '–'} | {vs} | {lat} | {msgs} |"
            )
        busy, hub = med.get(("hub-1node-busy", size)), med.get(("hub-redis", size))
        if busy and hub:
            lines.append(
                f"| {size_name(size)} | **hub + Redis vs one node with a busy process** | "
                f"{hub['deliveries'] / busy['deliveries']:.2f}× | | | | |"
            )
        hub, sio = med.get(("hub-redis", size)), med.get(("socketio-redis", size))
        if hub and sio and sio["remote"]:
            lines.append(
                f"| {size_name(size)} | **hub + Redis vs Socket.IO + Redis** | "
                f"{hub['deliveries'] / sio['deliveries']:.2f}× | {hub['remote'] / sio['remote']:.2f}× | | "
                f"p99 {ms(hub['remote_p99'])} vs {ms(sio['remote_p99'])} | |"
            )
    return "\n".join(lines)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    runs = [r for r in load(path) if r.get("kind") == "fanout"]
    if mode == "--check":
        labels = {r["server"] for r in runs}
        missing = [l for l in LABELS if l not in labels]
        if missing or any(r["deliveries_per_s"] <= 0 for r in runs):
            sys.exit(f"cluster smoke: missing {missing} or a run delivered nothing")
        two = [r for r in runs if r.get("nodes") == 2]
        if any(not r.get("remote_deliveries_per_s") for r in two):
            sys.exit("cluster smoke: a two-node run delivered nothing across")
        print(table(runs, runs[0]["clients"] // 1 if runs else 0))
        return
    doc = sys.argv[3]
    clients = next(r["clients"] for r in runs if r.get("nodes") == 2)
    stamp = datetime.date.today().isoformat()
    section = (
        f"{BEGIN}\n_Run {stamp} on {machine()} by `scripts/cluster_bench.sh`._\n\n"
        + table(runs, clients)
        + f"\n{END}"
    )
    with open(doc) as f:
        text = f.read()
    if BEGIN in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n## Across nodes (socketry-hub on Redis and NATS, Socket.IO on Redis)\n\n" + section + "\n"
    with open(doc, "w") as f:
        f.write(text)
    print(table(runs, clients))


if __name__ == "__main__":
    main()
