"""Logs: --log-format json gives one object per line; dead-letter samples come
at info level, rate-limited with counts; the stats line carries acks, nacks, extensions and
retries."""
import json
import os
import subprocess
import tempfile

import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def run_file(args, count=3000, invalid=20):
    d = tempfile.mkdtemp(prefix="bepipe-logs-")
    path = os.path.join(d, "ev.ndjson")
    local.gen(path, count, seed=4, invalid=invalid)
    p = subprocess.run([local.BIN, local.PIPELINE, "--input", path, "--local-out",
                        os.path.join(d, "out"), *args], capture_output=True, text=True,
                       timeout=60)
    check_eq(p.returncode, 0, "exit code: " + p.stderr[-1000:])
    return p.stderr


@case
def json_logs_are_one_object_per_line():
    err = run_file(["--log-format", "json"])
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) >= 3, "some lines")
    objs = []
    for l in lines:
        try:
            objs.append(json.loads(l))
        except ValueError:
            raise local.Failure("not JSON: " + l[:300])
    for o in objs:
        check({"time", "level", "component", "msg"} <= set(o), f"fields of {o}")
    summary = [o for o in objs if o["component"] == "summary"]
    check_eq(len(summary), 1, "one summary")
    check(isinstance(summary[0]["read"], int) and summary[0]["read"] == 3000,
          f"key=value words become fields: {summary[0].get('read')!r}")


@case
def dead_letter_samples_are_rate_limited():
    err = run_file([])
    dead = [l for l in err.splitlines() if " dead: dead letter:" in l]
    check(1 <= len(dead) <= 12, f"a few samples, not one per dead letter: {len(dead)}")
    check(any("(repeated " in l for l in dead), "the rest are counted")
    check(all(" info " in l for l in dead), "at info level")


@case
def bad_log_format_is_refused():
    p = subprocess.run([local.BIN, "--log-format", "xml", "--check", local.PIPELINE],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode != 0 and "--log-format takes text or json" in p.stderr, p.stderr)
