#!/usr/bin/env python3
"""Summarises libFuzzer logs (reports/fuzz/<target>.log, written by scripts/fuzz.sh) as the
Markdown table docs/robustness.md shows: time, executions, coverage, corpus, result.

    scripts/fuzz_summary.py reports/fuzz/frame_decoder.log [...]
"""
import re
import sys

STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
CRASH = re.compile(r"^thread '.*'.* panicked at (.*?):?$|^==\d+== ERROR: libFuzzer: (.*)")
TIME = re.compile(r"-max_total_time=(\d+)")


def summarise(path):
    target = path.rsplit("/", 1)[-1].removesuffix(".log")
    last = None
    stats = {}
    crash = None
    seconds = None
    with open(path, errors="replace") as log:
        for line in log:
            if m := STATUS.match(line):
                last = m.groups()
            elif m := STAT.match(line):
                stats[m.group(1)] = int(m.group(2))
            elif (m := CRASH.match(line)) and crash is None:
                crash = (m.group(1) or m.group(2)).strip()
            elif seconds is None and (m := TIME.search(line)):
                seconds = int(m.group(1))
    executions = stats.get("number_of_executed_units", int(last[0]) if last else 0)
    cov, features, corpus = (last[1], last[2], last[3]) if last else ("?", "?", "?")
    per_second = f"{executions // seconds:,}" if seconds and stats and not crash else "?"
    result = f"**crash**: {crash}" if crash else ("no crash" if stats else "did not finish")
    if not seconds:
        minutes = "?"
    elif seconds % 60:
        minutes = f"{seconds} s"
    else:
        minutes = f"{seconds // 60} min"
    return (
        f"| `{target}` | {minutes} | {executions:,} | {per_second} | {cov} | {features} "
        f"| {corpus} | {stats.get('peak_rss_mb', '?')} MB | {result} |"
    )


def main():
    print("| target | time | executions | per second | coverage (edges) | features | corpus | peak RSS | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        print(summarise(path))


if __name__ == "__main__":
    main()
