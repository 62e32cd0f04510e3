#!/usr/bin/env python3
"""Turns the HTTP/2 benchmark's results into the HTTP/2 section of docs/benchmarks.md.

    h2_report.py RESULTS --write docs/benchmarks.md   # rewrites the HTTP/2 section
    h2_report.py RESULTS --check                      # smoke run: every run present and sane
"""
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import machine  # noqa: E402

BEGIN, END = "<!-- http2:begin -->", "<!-- http2:end -->"
SHAPES = ["10x20B", "100x20B", "10x16KiB", "100x16KiB"]
SERVERS = {"socketry-listener": "socketry `Listener`", "socketry-axum-serve": "`socketry_axum::serve`"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def echo_medians(runs):
    by = {}
    for run in runs:
        if run["kind"] == "echo":
            by.setdefault((run["server"], run["transport"], run["shape"]), []).append(run)
    out = {}
    for key, group in by.items():
        rate = statistics.median(r["result"]["msgs_per_s"] for r in group)
        cpu_us = statistics.median(
            r["server_cpu_ticks"] / r["ticks_per_s"] * 1e6 / max(r["result"]["messages"], 1) for r in group
        )
        out[key] = {
            "rate": rate,
            "cpu_us": cpu_us,
            "p50": statistics.median(r["result"]["p50_us"] for r in group),
            "p99": statistics.median(r["result"]["p99_us"] for r in group),
            "reps": len(group),
        }
    return out


def table(runs):
    med = echo_medians(runs)
    lines = [
        "| server | shape | HTTP/1.1 msg/s | HTTP/2 msg/s | HTTP/2 ÷ 1.1 | server CPU µs/msg 1.1 → 2 | p50 µs 1.1 → 2 | p99 µs 1.1 → 2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server, label in SERVERS.items():
        for shape in SHAPES:
            a, b = med.get((server, "http1", shape)), med.get((server, "http2", shape))
            if not a or not b:
                continue
            lines.append(
                f"| {label} | {shape} | {a['rate']:,.0f} | {b['rate']:,.0f} | {b['rate'] / a['rate']:.2f}× "
                f"| {a['cpu_us']:.1f} → {b['cpu_us']:.1f} | {a['p50']:.0f} → {b['p50']:.0f} | {a['p99']:.0f} → {b['p99']:.0f} |"
            )
    idle = {(r["server"], r["transport"]): r for r in runs if r["kind"] == "idle"}
    if idle:
        sockets = next(iter(idle.values()))["sockets"]
        lines += [
            "",
            f"Memory per idle socket (server RSS growth over {sockets:,} sockets; HTTP/2: 128 streams per connection):",
            "",
            "| server | HTTP/1.1 KiB/socket | HTTP/2 KiB/socket |",
            "|---|---|---|",
        ]
        for server, label in SERVERS.items():
            a, b = idle.get((server, "http1")), idle.get((server, "http2"))
            if a and b:
                lines.append(f"| {label} | {a['kib_per_socket']:.2f} | {b['kib_per_socket']:.2f} |")
    reps = max((v["reps"] for v in med.values()), default=0)
    lines += ["", f"Medians of {reps} runs each."]
    return "\n".join(lines) + "\n"


def main():
    path, mode = sys.argv[1], sys.argv[2]
    runs = load(path)
    if mode == "--check":
        med = echo_medians(runs)
        missing = [
            (s, t, shape) for s in SERVERS for t in ("http1", "http2") for shape in SHAPES if (s, t, shape) not in med
        ]
        if missing or any(v["rate"] <= 0 for v in med.values()):
            sys.exit(f"h2 smoke: missing {missing} or a run echoed nothing")
        print(table(runs))
        return
    doc = sys.argv[3]
    stamp = datetime.date.today().isoformat()
    section = f"{BEGIN}\n_Run {stamp} on {machine()} by `scripts/h2_bench.sh`._\n\n" + table(runs) + f"{END}"
    with open(doc) as f:
        text = f.read()
    if BEGIN in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n## WebSockets over HTTP/2 (RFC 8441) against HTTP/1.1\n\n" + section + "\n"
    with open(doc, "w") as f:
        f.write(text)
    print(table(runs))


if __name__ == "__main__":
    main()
