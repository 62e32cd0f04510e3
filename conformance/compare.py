#!/usr/bin/env python3
"""Compare Autobahn reports against the committed baseline.

    compare.py ROLE REPORT_DIR [--update]

ROLE is "server" (fuzzingclient run) or "client" (fuzzingserver run). Fails (exit 1) when
- a case's behavior is not OK or INFORMATIONAL (3.4, 4.1.5 and 4.2.5 may be NON-STRICT: they send
  one byte per write and flip on timing alone),
- a case's behavior or close behavior differs from expected-results.json,
- a case of the baseline did not run.
--update rewrites the baseline for ROLE from the report instead.
"""
import json
import os
import sys

TIMING_FLIPS = {"3.4", "4.1.5", "4.2.5"}
ACCEPTED = {"OK", "INFORMATIONAL"}
HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = os.path.join(HERE, "expected-results.json")


def load_report(report_dir):
    try:
        with open(os.path.join(report_dir, "index.json")) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("conformance: no report in %s (%s)" % (report_dir, e))
    if len(index) != 1 or not any(index.values()):
        sys.exit("conformance: no results in %s (did the peer run?)" % report_dir)
    (cases,) = index.values()  # one agent per run
    return {cid: {"behavior": c["behavior"], "behaviorClose": c["behaviorClose"]}
            for cid, c in cases.items()}


def key(case_id):
    return tuple(int(x) for x in case_id.split("."))


def main():
    role, report_dir = sys.argv[1], sys.argv[2]
    update = "--update" in sys.argv[3:]
    got = load_report(report_dir)
    baseline = {}
    if os.path.exists(BASELINE):
        with open(BASELINE) as f:
            baseline = json.load(f)
    if update:
        baseline[role] = {cid: got[cid] for cid in sorted(got, key=key)}
        with open(BASELINE, "w") as f:
            json.dump(baseline, f, indent=1, sort_keys=False)
            f.write("\n")
        print("baseline for %s updated: %d cases" % (role, len(got)))
        return 0
    expected = baseline.get(role, {})
    problems = []
    for cid in sorted(set(got) | set(expected), key=key):
        g, e = got.get(cid), expected.get(cid)
        if g is None:
            problems.append("%s: in the baseline but did not run" % cid)
            continue
        flips = cid in TIMING_FLIPS and g["behavior"] == "NON-STRICT"
        if g["behavior"] not in ACCEPTED and not flips:
            problems.append("%s: %s" % (cid, g["behavior"]))
        elif e is None:
            problems.append("%s: not in the baseline (run with --update)" % cid)
        elif g != e and not flips:
            problems.append("%s: expected %s, got %s" % (cid, e, g))
    if problems:
        print("conformance %s: %d problem(s)" % (role, len(problems)))
        for p in problems:
            print("  " + p)
        return 1
    print("conformance %s: %d cases match the baseline" % (role, len(got)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
