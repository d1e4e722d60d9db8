#!/usr/bin/env python3
"""Processes a test run left behind (tests/run-all calls it last).

    tests/tools/leftovers.py --since PID --root DIR [--mark TEXT] [--grace S] [--kill]

A leftover is a process started after process PID (the run) that is neither PID nor one of
this script's ancestors (what is running this check), and that belongs to the run: its environment holds TEXT (the run's mark, inherited by everything it starts),
or it is in the run's session, is no child of the run's callers (a `| tee` beside the run), and
its command line or working folder lies in DIR (the checkout; the mark is lost by a child
started with a fresh environment). Those still there after --grace seconds (5; servers that
watch their parent need a moment) are printed one per line with their command line; --kill
sends them SIGKILL so the next run starts clean. Exits 1 when there were any, else 0."""
import argparse
import os
import signal
import sys
import time


def stat(pid):
    """(ppid, starttime in clock ticks, state, session) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[19]), rest[0], int(rest[3])


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def belongs(pid, root, mark, session, siblings_of):
    if mark and mark in read(f"/proc/{pid}/environ").split(b"\0"):
        return True
    s = stat(pid)
    if s is None or s[3] != session:
        return False  # someone else's work in this checkout (another terminal)
    if s[0] in siblings_of:
        return False  # `tests/run-all | tee log`: the tee is the caller's, not the run's
    cmd = read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    inside = lambda p: p == root or p.startswith(root + "/")
    return inside(cwd) or any(inside(w) for w in cmd.split())


def find(since, root, mark):
    ref = stat(since)
    if ref is None:
        sys.exit(f"leftovers: no process {since}")
    keep = {since, os.getpid()}
    pid = os.getpid()
    while pid > 1:
        s = stat(pid)
        if s is None:
            break
        pid = s[0]
        keep.add(pid)
    # children of the run's callers (not of the run, nor of init) are the caller's
    siblings_of = keep - {since, 1}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        s = stat(pid)
        if pid in keep or s is None or s[2] in ("Z", "X") or s[1] < ref[1]:
            continue
        if belongs(pid, root, mark, ref[3], siblings_of):
            found.append(pid)
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--since", type=int, required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--mark", default="")
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--kill", action="store_true")
    a = ap.parse_args()
    root = os.path.realpath(a.root)
    mark = a.mark.encode()
    end = time.time() + a.grace
    found = find(a.since, root, mark)
    while found and time.time() < end:
        time.sleep(0.2)
        found = find(a.since, root, mark)
    for pid in found:
        cmd = read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        print(f"  left running: pid {pid}: {cmd.strip()[:200]}")
        if a.kill:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
