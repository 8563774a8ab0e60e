#!/usr/bin/env python3
"""cpu.py PID: CPU seconds (user + system) used so far by process PID
minus its vCPU threads', as "%.3f".  QEMU must run with -name
...,debug-threads=on (vCPU threads are then named "CPU N/TCG" or
"CPU N/KVM").  What is left is the migration work (migration thread,
multifd threads, the main loop that loads an incoming stream, post-copy's
fault thread, also those that have ended: the process's counters keep them)
plus the main loop's small share of guest I/O.  0.000 when PID is gone."""
import os
import re
import sys

VCPU = re.compile(r"^CPU \d+/")


def cputime(stat):
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])	# utime, stime


def main():
    pid = sys.argv[1]
    hz = os.sysconf("SC_CLK_TCK")
    try:
        ticks = cputime(open("/proc/%s/stat" % pid).read())
        tids = os.listdir("/proc/%s/task" % pid)
    except OSError:
        print("0.000")
        return
    for tid in tids:
        base = "/proc/%s/task/%s/" % (pid, tid)
        try:
            comm = open(base + "comm").read().strip()
            stat = open(base + "stat").read()
        except OSError:
            continue
        if VCPU.match(comm):
            ticks -= cputime(stat)
    print("%.3f" % (max(ticks, 0) / hz))


main()
