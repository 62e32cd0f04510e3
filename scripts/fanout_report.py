#!/usr/bin/env python3
"""Turns the fan-out benchmark's results into the table of docs/benchmarks.md.

    fanout_report.py RESULTS --write docs/benchmarks.md   # rewrites the fan-out section
    fanout_report.py RESULTS --check                      # smoke run: every run present and sane
"""
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import machine  # noqa: E402  (one description of the machine for both reports)

SERVERS = ["socketry-hub", "bun", "socketio", "node-ws"]
NAMES = {
    "socketry-hub": "socketry-hub",
    "bun": "Bun 1.4 pub/sub (uWS TopicTree)",
    "socketio": "Socket.IO 4.8",
    "node-ws": "Node ws 8 (forEach send)",
}
BEGIN, END = "<!-- fanout:begin -->", "<!-- fanout:end -->"


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def shape_key(run):
    return (run["shape"], run["clients"], run["size"])


def shape_name(key):
    shape, clients, size = key
    size = f"{size} B" if size < 1024 else f"{size // 1024} KiB"
    if shape == "fanout":
        return f"1 → {clients:,}, {size}, 16 in flight"
    return f"all-to-all {clients}, {size}"


def medians(runs):
    """Median per (shape, server) of each figure."""
    out = {}
    for run in runs:
        if run["kind"] != "fanout":
            continue
        out.setdefault((shape_key(run), run["server"]), []).append(run)
    result = {}
    for key, group in out.items():
        def med(field):
            values = [r[field] for r in group if r[field] is not None]
            return statistics.median(values) if values else None
        result[key] = {f: med(f) for f in ("deliveries_per_s", "server_us_per_delivery",
                                           "load_us_per_delivery", "p50_us", "p99_us")}
        result[key]["reps"] = len(group)
    return result


def table(runs):
    figures = medians(runs)
    shapes = sorted({k for k, _ in figures}, key=lambda k: (k[0] != "fanout", k[1], k[2]))
    lines = [
        "| shape | server | deliveries/s | vs Bun | server CPU µs/delivery | load CPU µs/delivery | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for shape in shapes:
        bun = figures.get((shape, "bun"))
        for server in SERVERS:
            f = figures.get((shape, server))
            if not f:
                continue
            ratio = f"{f['deliveries_per_s'] / bun['deliveries_per_s']:.2f}×" if bun else "–"
            cpu = f"{f['server_us_per_delivery']:.3f}" if f["server_us_per_delivery"] is not None else "–"
            load_cpu = f"{f['load_us_per_delivery']:.3f}" if f["load_us_per_delivery"] is not None else "–"
            name = f"**{NAMES[server]}**" if server == "socketry-hub" else NAMES[server]
            lines.append(
                f"| {shape_name(shape)} | {name} | {f['deliveries_per_s']:,.0f} | {ratio} | {cpu} | "
                f"{load_cpu} | {f['p50_us'] / 1000:.2f} | {f['p99_us'] / 1000:.2f} |"
            )
        hub = figures.get((shape, "socketry-hub"))
        if hub and bun:
            misses = []
            if hub["deliveries_per_s"] < bun["deliveries_per_s"]:
                misses.append(f"deliveries/s {hub['deliveries_per_s'] / bun['deliveries_per_s'] - 1:+.1%}")
            if (hub["server_us_per_delivery"] or 0) > (bun["server_us_per_delivery"] or 0):
                misses.append(f"CPU/delivery {hub['server_us_per_delivery'] / bun['server_us_per_delivery'] - 1:+.1%}")
            if hub["p99_us"] > bun["p99_us"]:
                misses.append(f"p99 {hub['p99_us'] / bun['p99_us'] - 1:+.1%}")
            verdicts.append((shape_name(shape), misses))
    return lines, verdicts


def idle_lines(runs):
    idle = {r["server"]: r for r in runs if r["kind"] == "idle"}
    if "socketry" not in idle or "socketry-hub" not in idle:
        return []
    plain, hub = idle["socketry"]["kib_per_connection"], idle["socketry-hub"]["kib_per_connection"]
    added = hub - plain
    verdict = "met" if added < 3 else f"missed by {added - 3:.2f} KiB"
    return [
        f"Idle: {idle['socketry']['connections']:,} idle connections, each in one room: "
        f"{hub:.2f} KiB per connection with the hub (hub_server) against {plain:.2f} KiB for plain "
        f"socketry connections (bench_server socketry): the hub adds **{added:.2f} KiB** per "
        f"subscribed idle connection (target under 3 KiB: {verdict}).",
    ]


def section(runs):
    lines, verdicts = table(runs)
    today = datetime.date.today().isoformat()
    out = [
        BEGIN,
        f"Run of {today} on {machine()}: `scripts/fanout_bench.sh` (medians of "
        f"{max((f['reps'] for f in medians(runs).values()), default=0)} runs of each shape per server).",
        "",
    ]
    out += lines
    out.append("")
    met = [name for name, misses in verdicts if not misses]
    missed = [(name, misses) for name, misses in verdicts if misses]
    out.append(f"Targets against Bun (at least its deliveries/s, at most its server CPU per delivery, "
               f"p99 no worse): met in {len(met)} of {len(verdicts)} shapes.")
    for name, misses in missed:
        out.append(f"- missed in {name}: {', '.join(misses)}")
    out.append("")
    out += idle_lines(runs)
    out.append(END)
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    runs = load(args[0])
    if "--check" in args:
        fanout = [r for r in runs if r["kind"] == "fanout"]
        servers = {r["server"] for r in fanout}
        assert servers == set(SERVERS), f"missing servers: {set(SERVERS) - servers}"
        assert all(r["deliveries_per_s"] > 0 for r in fanout), "a run delivered nothing"
        assert {r["server"] for r in runs if r["kind"] == "idle"} == {"socketry", "socketry-hub"}
        print(section(runs))
        return
    if "--write" in args:
        path = args[args.index("--write") + 1]
        with open(path) as f:
            doc = f.read()
        new = section(runs)
        if BEGIN in doc:
            head, rest = doc.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            doc = head + new + tail
        else:
            doc += "\n## Fan-out: socketry-hub against Bun, Socket.IO and Node ws\n\n" + new + "\n"
        with open(path, "w") as f:
            f.write(doc)
        print(new)


if __name__ == "__main__":
    main()
