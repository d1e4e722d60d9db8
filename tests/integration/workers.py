"""--workers N: worker i serves /metrics and the probes on PORT + i, so every worker can be
scraped (they used to fight over one port); workers drain and exit when the parent dies, however
it dies, instead of pulling on as orphans."""
import os
import re
import signal
import socket
import time
import urllib.request

import cloud
import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def free_port_pair():
    for _ in range(50):
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    raise RuntimeError("no two free ports in a row")


@case
def workers_listen_on_consecutive_ports():
    with cloud.Scenario() as s:
        port = free_port_pair()
        b = cloud.Bepipe(s.emu, ["--workers", "2", "--http", f"127.0.0.1:{port}"])
        codes = []
        for p in (port, port + 1):
            end = time.time() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=5) as r:
                        codes.append(r.status)
                        break
                except OSError:
                    if time.time() > end:
                        codes.append(None)
                        break
                    time.sleep(0.2)
        check_eq(codes, [200, 200], "both workers answer /healthz")
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])


def worker_pids(stderr):
    """The workers' pids, from each one's start line."""
    return sorted(set(int(p) for p in re.findall(r"generation 1, pid (\d+)", stderr)))


def alive(pid):
    """True while pid runs (a zombie waiting for its new parent to reap it has stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout):
    """The pids still running after timeout seconds (empty once all have gone)."""
    end = time.time() + timeout
    while time.time() < end and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def kill_parent_mid_run(s, n, drain, margin=15):
    """Runs --workers 2 on n published events, SIGKILLs the parent once some rows are stored and
    checks that no worker outlives it by more than drain_seconds (+ margin for a loaded machine).
    Returns (the killed run, its expect, its raw lines) for the caller to finish the backlog."""
    path, expect, raw = cloud.corpus(s.tmp, n, seed=41)
    s.emu.publish(path)
    b = cloud.Bepipe(s.emu, ["--workers", "2", "--set", f"drain_seconds={drain}"])
    end = time.time() + 60
    while len(worker_pids(b.stderr())) < 2 and time.time() < end:
        time.sleep(0.1)
    pids = worker_pids(b.stderr())
    check_eq(len(pids), 2, "two workers started:\n" + b.stderr()[-1500:])
    while sum(len(s.emu.rows(t)) for t in cloud.TABLES) < n // 10 and time.time() < end:
        time.sleep(0.05)
    b.p.kill()
    b.p.wait()
    left = wait_gone(pids, drain + margin)
    for pid in left:   # orphans of a failing build must not pull on after the test
        os.kill(pid, signal.SIGKILL)
    check_eq(left, [], f"no worker left {drain + margin} s after the parent's SIGKILL:\n"
             + b.stderr()[-2000:])
    return b, expect, raw


@case
def workers_drain_when_the_parent_is_killed():
    with cloud.Scenario() as s:
        b, expect, raw = kill_parent_mid_run(s, 20000, drain=10)
        check("drain" in b.stderr(), "the workers drained:\n" + b.stderr()[-1500:])
        local.no_sanitizer(b.stderr())
        # what the workers held was acked once stored, or nacked: a new run finishes the rest
        b2 = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 20000, [b2])
        check_eq(b2.stop(), 0, "exit code of the restart")
        cloud.verify(s.emu, expect, raw)
