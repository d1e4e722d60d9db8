"""tests/run-all itself: its two lanes run in sessions of their own (so that each lane's
leftover check sees only its own processes), which also puts them out of reach of a signal sent
to the run's process group or terminal; a run that is stopped (SIGTERM from a CI timeout,
SIGINT from Ctrl-C, SIGHUP from a closed terminal) must stop both lanes with it, not leave one
running the remaining suites unattended on the machine. Checked on a copy of the script whose
first suite (the unit tests) is a stand-in that sleeps."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import run as local
from run import check

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def default_signals():
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


@case
def run_all_stopped_by_a_signal_stops_both_lanes():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        d = tempfile.mkdtemp(prefix="bepipe-runall-")
        os.makedirs(os.path.join(d, "tests", "tools"))
        os.makedirs(os.path.join(d, "build", "unit"))
        shutil.copy(os.path.join(local.ROOT, "tests", "run-all"), os.path.join(d, "tests"))
        shutil.copy(os.path.join(local.ROOT, "tests", "tools", "leftovers.py"),
                    os.path.join(d, "tests", "tools"))
        pidf = os.path.join(d, "suite.pid")
        stand_in = os.path.join(d, "build", "unit", "test_sleep")
        with open(stand_in, "w") as f:
            f.write(f"#!/bin/sh\necho $$ > {pidf}.tmp && mv {pidf}.tmp {pidf}\nexec sleep 120\n")
        os.chmod(stand_in, 0o755)
        # signals at their default in the copy: run from a lane of a real run-all (a background
        # job of a script), this case inherits SIGINT ignored, and a shell cannot trap a signal
        # ignored when it started
        p = subprocess.Popen([os.path.join(d, "tests", "run-all")], cwd=d,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, preexec_fn=default_signals)
        suite = None
        try:
            check(wait_for(lambda: os.path.exists(pidf), 60), "the stand-in suite started")
            with open(pidf) as f:
                suite = int(f.read())
            p.send_signal(sig)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                check(False, f"run-all still running 30 s after {sig.name}")
            check(wait_for(lambda: not alive(suite), 15),
                  f"after {sig.name} to run-all, the lane's suite (pid {suite}) is still running")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            if suite and alive(suite):
                os.kill(suite, signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)


@case
def a_failed_case_leaves_no_process_running():
    """A case that fails half-way never reaches its stop(): the runner kills what it watched
    (in CI one such bepipe-lua kept pulling for ten minutes against a stopped emulator, and the
    suite's leftover check counted it as a second failure)."""
    script = (
        "import subprocess, sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import run\n"
        "class P:\n"
        "    def __init__(self):\n"
        "        self.p = subprocess.Popen(['sleep', '300'])\n"
        "        print(self.p.pid, flush=True)\n"
        "    def stderr(self):\n"
        "        return ''\n"
        "def failing():\n"
        "    run.watch(P())\n"
        "    raise run.Failure('half-way')\n"
        "run.run_cases([failing], '/bin/true', ['--bin', '/bin/true'])\n")
    r = subprocess.run(["python3", "-c", script], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "0 passed, 1 failed" in r.stdout,
          f"the case fails: rc={r.returncode} {r.stdout!r} {r.stderr[-500:]!r}")
    pid = int(r.stdout.split()[0])
    gone = wait_for(lambda: not alive(pid), 10)
    if not gone:
        os.kill(pid, signal.SIGKILL)
    check(gone, f"the process the failed case started (pid {pid}) was stopped by the runner")
