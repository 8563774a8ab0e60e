#!/usr/bin/env python3
"""table.py RESULTS.CSV: bench/migrate/run's CSV as the Markdown table of
README.md.  Ratios are against stop-and-copy in the same rate and link:
its downtime over the method's, and its guest gap over the method's."""
import csv
import sys


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    return "%.0f" % (a / b) if a is not None and b else "-"


def fmt2(x):
    # Negative: the destination QEMU exited after a cancelled migration
    # before its CPU time was read.
    return "%.2f" % num(x) if num(x) is not None and num(x) >= 0 else "-"


rows = list(csv.DictReader(open(sys.argv[1])))
stop = {(r["rate"], r["link"]): r for r in rows if r["method"] == "stopcopy"}
print("| rate | link | method | total s | downtime s | guest gap s | MiB sent | converged | memcheck "
      "| CPU s/GiB send | CPU s/GiB recv | load | s&c downtime / this | s&c gap / this |")
print("|---|---|---|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|")
for r in rows:
    conv = r["converged"] == "yes"
    down = num(r["downtime_s"]) if conv else None
    gap = num(r["guest_gap_s"])
    s = stop.get((r["rate"], r["link"]))
    sdown = num(s["downtime_s"]) if s and s["converged"] == "yes" else None
    sgap = num(s["guest_gap_s"]) if s and s["converged"] == "yes" else None
    dr = ratio(sdown, down) if conv else "-"
    if r["method"] == "postcopy" and dr != "-":
        dr += " (switch-over)"
    print("| %s | %s | %s | %.2f | %s | %.3f | %.0f | %s | %s | %s | %s | %s | %s | %s |" % (
        r["rate"], r["link"], r["method"], num(r["total_s"]) or 0,
        "%.3f" % down if down is not None else "-", gap or 0,
        (num(r["bytes"]) or 0) / 1048576, r["converged"], r["memcheck"],
        fmt2(r["cpu_send_s_per_gib"]), fmt2(r["cpu_recv_s_per_gib"]), r["load1"],
        dr, ratio(sgap, gap) if conv else "-"))
