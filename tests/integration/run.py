#!/usr/bin/env python3
"""Black-box tests of the bepipe-lua binary (the Test::Nginx idea): run it on inputs, check the
tables, dead letters, archive objects, exit codes and log lines it produces.

    tests/integration/run.py [--bin PATH] [-k SUBSTRING] [-t TAG] [--list]

BEPIPE_BIN (or --bin) picks the binary, so the same cases run on the normal and the
AddressSanitizer build. Any sanitizer report on stderr fails the case. Ends with
`N passed, N failed`."""
import argparse
import base64
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE = os.path.join(ROOT, "scripts", "pipeline.lua")
GEN = os.path.join(ROOT, "tests", "tools", "gen_events.lua")
TABLES = ["order_events", "inventory_events", "user_activity_events"]
STAGES = ["parse", "route", "validate", "map", "insert"]
SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")

BIN = None
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def errors(*patterns):
    """Declares the error lines a case expects (Test::Nginx's `--- error_log`): every line the
    binary logs at level error during the case (text `<time> error <component>: ...` or JSON
    `"level":"error"`) must match one of these regular expressions (re.search), or the case
    fails. A pattern is allowed, not required: the case itself asserts what must be logged.
    Stack it with the module's @case in either order."""
    def declare(fn):
        fn.errors = list(getattr(fn, "errors", ())) + list(patterns)
        return fn
    return declare


def tags(*names):
    """Tags a case with feature names for -t (Redis's `tags {...}`), beside the name of its file
    that every case carries. Stack it with the module's @case in either order."""
    def declare(fn):
        fn.tags = list(getattr(fn, "tags", ())) + list(names)
        return fn
    return declare


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


# The binary's error lines: `2026-01-01T00:00:00.000Z error source: ...` (runtime/log.c) or, with
# --log-format json, an object whose level is "error".
ERROR_LINE = re.compile(r'^\S+Z error .*$|^\{.*"level":"error".*$', re.M)

# What the current case's runs of the binary wrote to stderr, checked against its @errors once it
# returns: texts seen by no_sanitizer and subprocess.run, and the processes watch() registered
# (Daemon, cloud.py's Bepipe), read when the case ends however it stopped them.
SEEN = []
WATCHED = []


def seen_stderr(text):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text:
        SEEN.append(text)


def watch(proc):
    """Registers an object whose stderr() the error-line check reads after the case."""
    WATCHED.append(proc)
    return proc


def stop_left_running():
    """Kills the watched processes a case left running (a case that failed half-way never
    reached its stop()): left alone, one kept pulling for ten minutes against an emulator that
    was gone and the suite's leftover check counted it as a second failure."""
    for proc in WATCHED:
        p = getattr(proc, "p", None)
        if p is None or p.poll() is not None:
            continue
        try:
            p.kill()
            p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass


def no_sanitizer(stderr):
    seen_stderr(stderr)
    m = SANITIZER.search(stderr)
    check(m is None, "sanitizer report:\n" + stderr[-3000:])


def undeclared_errors(fn):
    """The error lines of this case's runs that none of fn's @errors patterns matches."""
    for proc in WATCHED:
        try:
            seen_stderr(proc.stderr())
        except (OSError, ValueError):
            pass   # its log file is gone: nothing more to read
    allowed = [re.compile(p) for p in getattr(fn, "errors", ())]
    bad = {}
    for text in SEEN:
        for m in ERROR_LINE.finditer(text):
            line = m.group(0)
            if not any(p.search(line) for p in allowed):
                bad[line] = True
    return list(bad)


def _watching_run(real_run):
    """subprocess.run that hands the stderr of the binary's runs to the error-line check, so the
    cases that call subprocess.run([local.BIN, ...]) themselves are covered too."""
    def run_and_see(*args, **kwargs):
        r = real_run(*args, **kwargs)
        cmd = args[0] if args else kwargs.get("args")
        if (BIN and isinstance(cmd, (list, tuple)) and cmd
                and os.path.abspath(str(cmd[0])) == BIN):
            seen_stderr(r.stderr)
        return r
    run_and_see.watching = True
    return run_and_see


def run(args, stdin_data=None, timeout=120, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([BIN] + args, input=stdin_data, capture_output=True, timeout=timeout,
                       env=e)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    no_sanitizer(err)
    return p.returncode, out, err


def gen(path, count, seed=1, invalid=3):
    expect = path + ".expect.json"
    with open(path, "wb") as f:
        subprocess.run(["luajit", GEN, "--count", str(count), "--seed", str(seed),
                        "--invalid-pct", str(invalid), "--expect", expect], stdout=f, check=True)
    with open(expect) as f:
        return json.load(f)


def read_rows(out, table):
    path = os.path.join(out, "bigquery", table + ".ndjson")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


def bucket_objects(root):
    """{object name: [lines]} for every file under a bucket folder."""
    res = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                res[os.path.relpath(full, root)] = f.read().split(b"\n")[:-1]
    return res


RAW_MARK = b'{"bepipe_raw_b64":"'


def unmark(line):
    """An archive line's payload: a line of bytes that are not one line of text is carried as
    {"bepipe_raw_b64":"..."} (runtime/archive_line.cpp), decoded here as replay does."""
    if line.startswith(RAW_MARK) and line.endswith(b'"}'):
        return base64.b64decode(line[len(RAW_MARK):-2], validate=True)
    return line


def archive_objects(out):
    """{object path relative to the bucket: [lines]} for every finished object."""
    res = {}
    for root in glob.glob(os.path.join(out, "gcs", "*")):
        res.update(bucket_objects(root))
    return res


def summary(out):
    s = {t: len(read_rows(out, t)) for t in TABLES}
    dead = read_rows(out, "rejected_events")
    s["dead"] = {st: sum(1 for r in dead if r["json"]["error_stage"] == st) for st in STAGES}
    return s


class Tmp:
    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bepipe-it-")
        return self.dir

    def __exit__(self, *a):
        shutil.rmtree(self.dir, ignore_errors=True)


def copy_scripts(dst):
    shutil.copytree(os.path.join(ROOT, "scripts"), dst)
    return os.path.join(dst, "pipeline.lua")


# ---------------------------------------------------------------------------------------------
# command line

@case
@tags("cli")
def cli_help_and_version():
    rc, out, _ = run(["--help"])
    check_eq(rc, 0, "--help exit code")
    for word in ["--input", "--local-out", "--check", "test PIPELINE.lua", "SIGHUP",
                 "bigquery.batch_rows"]:
        check(word in out, f"--help lacks {word}")
    rc, out, _ = run(["--version"])
    check_eq(rc, 0, "--version exit code")
    check(re.match(r"bepipe-lua \d+\.\d+\.\d+", out), "version line: " + out)


@case
@tags("cli")
def cli_errors_are_one_clear_line():
    with Tmp() as d:
        rc, _, err = run([os.path.join(d, "missing.lua")])
        check_eq(rc, 1, "missing pipeline exit code")
        check("cannot read" in err and "missing.lua" in err, "missing pipeline message: " + err)
        rc, _, err = run(["--bogus", PIPELINE])
        check_eq(rc, 2, "unknown flag exit code")
        check("unknown option --bogus" in err, "unknown flag message: " + err)
        rc, _, err = run([PIPELINE, "--input", os.path.join(d, "nope.ndjson"), "--local-out", d])
        check_eq(rc, 1, "unreadable input exit code")
        check("cannot read" in err and "nope.ndjson" in err, "unreadable input message: " + err)
        rc, _, err = run([PIPELINE, "--set", "bigquery.batch_rows=abc"])
        check_eq(rc, 1, "bad option value exit code")
        check("bigquery.batch_rows: expected an integer in 1..50000, got \"abc\"" in err,
              "bad option message: " + err)
        rc, _, err = run([PIPELINE, "--set", "nosuch.option=1"])
        check_eq(rc, 1, "unknown --set key exit code")
        check("unknown option 'nosuch.option'" in err, "unknown key message: " + err)
        check_eq(len(err.strip().splitlines()), 1, "one line of error")


@case
@tags("check")
def broken_pipeline_names_file_and_line():
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        with open(os.path.join(d, "s", "events", "order.lua"), "a") as f:
            f.write("\nlocal x = = 1\n")
        rc, _, err = run(["--check", p])
        check_eq(rc, 1, "--check exit code on a syntax error")
        check(re.search(r"order\.lua:\d+:", err), "error names file:line: " + err)
        with open(p, "w") as f:
            f.write("return 42\n")
        rc, _, err = run(["--check", p])
        check_eq(rc, 1, "--check exit code on a non-table pipeline")
        check("must return a table" in err, "message: " + err)


@case
@tags("check", "cli")
def check_ok_and_dataflow_flags_ignored():
    rc, out, err = run(["--check", PIPELINE, "--runner", "DataflowRunner", "--region",
                        "us-central1", "--streaming", "--temp_location", "gs://x/temp",
                        "--input_subscription", "projects/p/subscriptions/s", "--bq_dataset", "d",
                        "--bq_project", "p", "--project", "p", "--gcs_output_path", "gs://b/o",
                        "--job_name", "j", "--staging_location", "gs://x/s"])
    check_eq(rc, 0, "--check exit code")
    check("ok (3 routes)" in out, "--check output: " + out)
    check("--runner is a Dataflow option; ignored" in err, "notice for --runner: " + err)
    check("--streaming is a Dataflow option; ignored" in err, "notice for --streaming")


@case
@tags("fixtures")
def test_subcommand_prints_rows_and_dead_letters():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "w") as f:
            f.write('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc",'
                    '"product_id":"6F1C2A8E-1B2C-4D3E-8F90-123456789ABC","warehouse_id":'
                    '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":5.0,"reason":"sale",'
                    '"timestamp":"2025-03-01T23:30:00-02:00","junk":1}\n')
            f.write("not json\n\n")
            f.write('{"event_type":"nope"}\n')
        rc, out, _ = run(["test", PIPELINE, ev])
        check_eq(rc, 0, "test exit code")
        lines = out.strip().splitlines()
        check(lines[0].startswith("line 1: inventory -> inventory_events {"), lines[0])
        row = json.loads(lines[0].split(" ", 5)[5])
        check_eq(row["timestamp"], "2025-03-02T01:30:00Z", "timestamp in UTC")
        check_eq(row["quantity_change"], 5, "integer")
        check("junk" not in row, "unknown field dropped")
        check("ingestion_time" in row, "ingestion_time added")
        check(lines[1].startswith("line 2: DEAD parse: invalid JSON"), lines[1])
        check(lines[2].startswith("line 4: DEAD route: event_type: unknown event type 'nope'"),
              lines[2])
        check_eq(lines[3], "totals: 3 events, inventory_events=1, order_events=0, "
                 "user_activity_events=0, dead_parse=1, dead_route=1, dead_validate=0, dead_map=0",
                 "totals line")


# ---------------------------------------------------------------------------------------------
# the corpus end to end

def verify_corpus(out, expect, raw_lines):
    s = summary(out)
    for t in TABLES:
        check_eq(s[t], expect["rows"][t], f"rows in {t}")
    for st in ["parse", "route", "validate"]:
        check_eq(s["dead"][st], expect["dead"].get(st, 0), f"dead letters at stage {st}")
    check_eq(s["dead"]["map"], 0, "dead letters at stage map")
    # every insertId once, and every row carries ingestion_time
    ids = []
    for t in TABLES + ["rejected_events"]:
        for r in read_rows(out, t):
            ids.append(r["insertId"])
            check("ingestion_time" in r["json"], f"{t} row without ingestion_time")
    check_eq(len(ids), len(set(ids)), "insertIds unique")
    check_eq(len(ids), expect["total"], "rows + dead letters = events")
    # every raw line archived exactly once, under its type (or errors/) and a valid path
    objs = archive_objects(out)
    archived = []
    pat = re.compile(r"^output/(order|inventory|user_activity|errors)/(\d{4})/(\d\d)/(\d\d)/(\d\d)/"
                     r"\1_(\d{14})(_\d+)?\.json$")
    for name, lines in objs.items():
        check(pat.match(name), "archive object name: " + name)
        archived.extend(lines)
    check_eq(sorted(archived), sorted(raw_lines), "archived lines = input lines")
    # rows of each table are in the archive of their hour folder
    if "hours" in expect:
        for t, hours in expect["hours"].items():
            typ = t.replace("_events", "")
            got = {}
            for name, lines in objs.items():
                m = pat.match(name)
                if m.group(1) == typ:
                    got[m.group(2) + m.group(3) + m.group(4) + m.group(5)] = \
                        got.get(m.group(2) + m.group(3) + m.group(4) + m.group(5), 0) + len(lines)
            check_eq(got, {k: v for k, v in hours.items() if v}, f"archive lines per hour of {t}")


@case
@tags("archive", "dead-letters")
def corpus_file_gives_exact_rows_and_dead_letters():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        expect = gen(ev, 20000, seed=7, invalid=5)
        out = os.path.join(d, "out")
        rc, _, err = run([PIPELINE, "--input", ev, "--local-out", out,
                          "--set", "archive.roll_bytes=200000"])
        check_eq(rc, 0, "exit code; stderr: " + err[-2000:])
        check("summary: read=20000" in err, "summary line: " + err[-500:])
        check(" error " not in err, "no error lines: " + err[-2000:])
        with open(ev, "rb") as f:
            raw = [l for l in f.read().split(b"\n") if l.strip()]
        verify_corpus(out, expect, raw)


@case
def corpus_stdin_pipe_same_result():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        expect = gen(ev, 5000, seed=3, invalid=10)
        out = os.path.join(d, "out")
        with open(ev, "rb") as f:
            data = f.read()
        rc, _, err = run([PIPELINE, "--input", "-", "--local-out", out], stdin_data=data)
        check_eq(rc, 0, "exit code: " + err[-1000:])
        verify_corpus(out, expect, [l for l in data.split(b"\n") if l.strip()])


@case
@tags("dead-letters", "archive")
def dead_letter_rows_have_the_contract_columns():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "wb") as f:
            f.write(b'{"event_type":"order","order_id":""}\n')
            f.write(b'\xff\xfe not utf8 \x01\n')
        out = os.path.join(d, "out")
        rc, _, err = run([PIPELINE, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err)
        rows = read_rows(out, "rejected_events")
        check_eq(len(rows), 2, "dead letters")
        cols = {"message_id", "event_type", "error_stage", "reason", "raw_payload", "attributes",
                "publish_time", "ingestion_time"}
        for r in rows:
            check_eq(set(r["json"].keys()), cols, "dead-letter columns")
        check_eq(rows[0]["json"]["event_type"], "order", "event_type of a validate failure")
        check_eq(rows[0]["json"]["error_stage"], "validate", "stage")
        check_eq(rows[0]["insertId"], "ev.ndjson:1", "insertId = message id")
        check_eq(rows[1]["json"]["error_stage"], "parse", "stage of binary garbage")
        check("\ufffd" in rows[1]["json"]["raw_payload"], "invalid UTF-8 replaced")
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", rows[1]["json"]["publish_time"]),
              "publish_time format")
        # the raw bytes are kept exactly in the archive: bytes that are not text travel in a
        # {"bepipe_raw_b64":...} line that replay decodes
        objs = archive_objects(out)
        errs = [l for n, ls in objs.items() if n.startswith("output/errors/") for l in ls]
        raw = [base64.b64decode(json.loads(l)["bepipe_raw_b64"])
               if l.startswith(b'{"bepipe_raw_b64":') else l for l in errs]
        check(b'\xff\xfe not utf8 \x01' in raw, "raw bytes archived under errors/: %r" % errs)


@case
@tags("dead-letters")
def overlong_line_is_dead_lettered_not_fatal():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        good = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc",'
                '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
                '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":1,"reason":"sale",'
                '"timestamp":"2025-03-01T12:00:00Z"}\n')
        with open(ev, "w") as f:
            f.write(good)
            f.write('{"event_type":"order","pad":"' + "x" * 3_000_000 + '"}\n')
            f.write(good)
            f.write('{"x":"' + "y" * 5000 + '"}\n')
            f.write(good)
        out = os.path.join(d, "out")
        rc, _, err = run([PIPELINE, "--input", ev, "--local-out", out,
                          "--set", "source.max_line_bytes=4096"])
        check_eq(rc, 0, "exit code: " + err[-1000:])
        check_eq(len(read_rows(out, "inventory_events")), 3, "good rows around the long lines")
        dead = read_rows(out, "rejected_events")
        check_eq(len(dead), 2, "long lines dead-lettered")
        check("exceeds source.max_line_bytes" in dead[0]["json"]["reason"], dead[0]["json"]["reason"])
        check("3000031 bytes" in dead[0]["json"]["reason"], "size in reason: " + dead[0]["json"]["reason"])
        check_eq(dead[0]["json"]["error_stage"], "parse", "stage")
        check_eq(dead[0]["insertId"], "ev.ndjson:2", "line number kept")
        check_eq(dead[1]["insertId"], "ev.ndjson:4", "line number kept after a long line")


@case
def script_runtime_error_dead_letters_one_event():
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        path = os.path.join(d, "s", "events", "inventory.lua")
        src = open(path).read()
        # make validate throw for one warehouse only
        src = src.replace("function M.validate(ev)",
                          "function M.validate(ev)\n    if ev.warehouse_id == 'boom' then "
                          "local t = nil; return t.x end", 1)
        check("'boom'" in src, "patched the script")
        open(path, "w").write(src)
        ev = os.path.join(d, "ev.ndjson")
        line = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc",'
                '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":"%s",'
                '"quantity_change":1,"reason":"sale","timestamp":"2025-03-01T12:00:00Z"}\n')
        with open(ev, "w") as f:
            f.write(line % "6f1c2a8e-1b2c-4d3e-8f90-123456789abc")
            f.write(line % "boom")
            f.write(line % "6f1c2a8e-1b2c-4d3e-8f90-123456789abd")
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err)
        check_eq(len(read_rows(out, "inventory_events")), 2, "the other events stored")
        dead = read_rows(out, "rejected_events")
        check_eq(len(dead), 1, "one dead letter")
        check_eq(dead[0]["json"]["error_stage"], "validate", "stage")
        check(re.search(r"inventory\.lua:\d+: attempt to index", dead[0]["json"]["reason"]),
              "reason names file:line: " + dead[0]["json"]["reason"])


NUMS_DDL = """CREATE TABLE IF NOT EXISTS `backend_events_data.nums` (
  event_type STRING, i INT64, f FLOAT64, s STRING, bad FLOAT64, ingestion_time TIMESTAMP
);
"""
# a user's map hands the event's values straight over
NUMS_ROUTE = """return {
  table = "nums",
  validate = function(ev) return true end,
  map = function(ev)
    local bad = ev.bad
    if bad == "nan" then bad = 0 / 0 elseif bad == "function" then bad = print end
    return { event_type = ev.event_type, i = ev.i, f = ev.f, s = ev.s, bad = bad }
  end,
}
"""


def nums_pipeline(d):
    p = copy_scripts(os.path.join(d, "s"))
    ddl = os.path.join(d, "s", "ddl")
    shutil.copytree(os.path.join(ROOT, "ddl"), ddl)
    with open(os.path.join(ddl, "nums.sql"), "w") as f:
        f.write(NUMS_DDL)
    with open(os.path.join(d, "s", "events", "nums.lua"), "w") as f:
        f.write(NUMS_ROUTE)
    src = open(p).read().replace('order = "events.order",',
                                 'order = "events.order",\n        nums = "events.nums",', 1)
    check('"events.nums"' in src, "route added")
    open(p, "w").write(src)
    return p


@case
@tags("numbers")
def numbers_reach_the_row_exactly():
    # (field, text in the event, text in the row): integers past 2^53 to INT64 exactly, doubles
    # as the shortest text of the same double
    table = [
        ("i", "1234567890123456", "1234567890123456"),
        ("i", "123456789012345678", "123456789012345678"),
        ("i", "9007199254740993", "9007199254740993"),
        ("i", "-9007199254740993", "-9007199254740993"),
        ("i", "9223372036854775807", "9223372036854775807"),
        ("i", "-9223372036854775808", "-9223372036854775808"),
        ("i", "9007199254740992", "9007199254740992"),
        ("i", "-9007199254740992", "-9007199254740992"),
        ("i", "9007199254740991.0", "9007199254740991"),
        ("i", "-0", "-0"),
        ("f", "1234567.8912345678", "1234567.8912345678"),
        ("f", "0.1", "0.1"),
        ("f", "1e300", "1e+300"),
        ("f", "-0.0", "-0"),
        ("f", "5e-324", "5e-324"),
        ("f", "2.2250738585072014e-308", "2.2250738585072014e-308"),
        ("f", "0.30000000000000004", "0.30000000000000004"),
    ]
    with Tmp() as d:
        p = nums_pipeline(d)
        ev = os.path.join(d, "ev.ndjson")
        slash = "/" * 100000
        with open(ev, "w") as f:
            for field, text, _ in table:
                f.write('{"event_type":"nums","%s":%s}\n' % (field, text))
            f.write('{"event_type":"nums","s":"%s"}\n' % slash)
            f.write('{"event_type":"nums","bad":"nan"}\n')
            f.write('{"event_type":"nums","bad":"function"}\n')
            # -0 and an integer past 2^53 in one event: both exact (-0 was left to lua-cjson,
            # and the event dead-lettered for the integer)
            f.write('{"event_type":"nums","f":-0,"i":123456789012345678,"x":[-0,1]}\n')
            # a double of 2^53 (so written, or rounded there) bound for INT64: refused, never
            # stored as 9007199254740992
            for text in ("9007199254740993.0", "9007199254740992.5", "-9.007199254740993e15"):
                f.write('{"event_type":"nums","i":%s}\n' % text)
        # lua-cjson decodes what the exact decoder refuses (invalid UTF-8): an integer past 2^53
        # there is dead-lettered naming the field, never rounded
        with open(ev, "ab") as f:
            f.write(b'{"event_type":"nums","s":"\xff","x":{"y":[1,123456789012345678]}}\n')
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err[-2000:])
        with open(os.path.join(out, "bigquery", "nums.ndjson"), "rb") as f:
            lines = {json.loads(l)["insertId"]: l.decode() for l in f if l.strip()}
        for n, (field, text, want) in enumerate(table, 1):
            line = lines.get("ev.ndjson:%d" % n)
            check(line is not None, f"{text}: no row")
            m = re.search(r'"%s":(-?[0-9][0-9.e+-]*)' % field, line)
            check(m is not None, f"{text}: no {field} in {line}")
            check_eq(m.group(1), want, f"row text of {text}")
        slash_row = lines.get("ev.ndjson:%d" % (len(table) + 1), "")
        check('"s":"%s"' % slash in slash_row, "'/' written as it is")
        check("\\/" not in slash_row, "no '\\/' in the row")
        both = lines.get("ev.ndjson:%d" % (len(table) + 4), "")
        check('"f":-0' in both and '"i":123456789012345678' in both, "-0 with a big integer: " + both)
        dead = {r["insertId"]: r["json"] for r in read_rows(out, "rejected_events")}
        check_eq(len(dead), 6, "dead letters: " + repr(dead))
        for n, want in ((5, "9007199254740993.0"), (6, "9007199254740992.5"),
                        (7, "-9.007199254740993e15")):
            r = dead["ev.ndjson:%d" % (len(table) + n)]
            check_eq((r["error_stage"], r["reason"]), ("schema", "i: INT64 expected, got number "
                                                       + want), "a double of 2^53 for INT64")
        nan = dead["ev.ndjson:%d" % (len(table) + 2)]
        check_eq(nan["error_stage"], "map", "NaN's stage")
        check("row field bad: NaN is not a JSON number (route nums," in nan["reason"],
              nan["reason"])
        fn = dead["ev.ndjson:%d" % (len(table) + 3)]
        check_eq(fn["error_stage"], "map", "function's stage")
        check("row field bad: a function cannot be written (route nums," in fn["reason"],
              fn["reason"])
        big = dead["ev.ndjson:%d" % (len(table) + 8)]
        check_eq(big["error_stage"], "parse", "stage of an integer lua-cjson would round")
        check("x.y[1]: the integer 123456789012345678 is past 2^53" in big["reason"],
              big["reason"])


@case
@tags("numbers")
def a_fraction_lost_in_the_double_never_reaches_int64():
    # from 2^52 to 2^53 doubles are whole numbers: 4503599627370496.5 reads as 4503599627370496,
    # which an INT64 column must not store as if the event had written it; an integer on its
    # digits (4503599627370496.0, 4.503599627370496e15) is stored exactly, and FLOAT64 reads
    # the same double as ever
    lost = ["4503599627370496.5", "-4503599627370496.5", "9007199254740990.5",
            "4503599627370495.9", "45035996273704965e-1"]
    exact = [("4503599627370496.0", "4503599627370496"),
             ("4.503599627370496e15", "4503599627370496"),
             ("-4503599627370496.0", "-4503599627370496"),
             ("4503599627370496", "4503599627370496"),
             ("9007199254740991.0", "9007199254740991"),
             ("4503599627370495", "4503599627370495")]
    with Tmp() as d:
        p = nums_pipeline(d)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "wb") as f:
            for text in lost:
                f.write(b'{"event_type":"nums","i":%s}\n' % text.encode())
            for text, _ in exact:
                f.write(b'{"event_type":"nums","i":%s}\n' % text.encode())
            f.write(b'{"event_type":"nums","f":4503599627370496.5}\n')
            # text the exact decoder refuses (invalid UTF-8), which lua-cjson decodes
            f.write(b'{"event_type":"nums","x":"\xff","i":-4503599627370496.5}\n')
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err[-2000:])
        with open(os.path.join(out, "bigquery", "nums.ndjson"), "rb") as f:
            rows = {json.loads(l)["insertId"]: l.decode() for l in f if l.strip()}
        dead = {r["insertId"]: r["json"] for r in read_rows(out, "rejected_events")}
        for n, text in enumerate(lost + [None] * len(exact) + [None, "-4503599627370496.5"], 1):
            if text is None:
                continue
            r = dead.get("ev.ndjson:%d" % n)
            check(r is not None, f"{text}: not dead-lettered; row {rows.get('ev.ndjson:%d' % n)}")
            check_eq((r["error_stage"], r["reason"]),
                     ("schema", "i: INT64 expected, got number " + text), text)
        for n, (text, want) in enumerate(exact, len(lost) + 1):
            line = rows.get("ev.ndjson:%d" % n)
            check(line is not None, f"{text}: no row; dead letter {dead.get('ev.ndjson:%d' % n)}")
            m = re.search(r'"i":(-?[0-9][0-9.e+-]*)', line)
            check(m is not None and m.group(1) == want, f"{text}: row {line}, want i {want}")
        f_row = rows.get("ev.ndjson:%d" % (len(lost) + len(exact) + 1))
        check(f_row is not None, "FLOAT64 row: " + repr(dead))
        check_eq(json.loads(f_row)["json"]["f"], 4503599627370496.0,
                 "FLOAT64 reads the same double")
        check_eq(len(rows) + len(dead), len(lost) + len(exact) + 2, "every event has an outcome")
        # `bepipe-lua test` gives the pipeline a fixture's event with the text it has
        fx = os.path.join(d, "fx.ndjson")
        with open(fx, "w") as f:
            f.write('{"event":{"event_type":"nums","i":4503599627370496.5},"expect":{"dead":'
                    '"schema","reason":"i: INT64 expected, got number 4503599627370496.5"}}\n')
            f.write('{"event":{"event_type":"nums","i":4503599627370496.0},"expect":{"table":'
                    '"nums","row":{"i":4503599627370496}}}\n')
        rc, out, err = run(["test", p, fx])
        check_eq(rc, 0, "bepipe-lua test: " + out + err)
        check("2 passed, 0 failed" in out, out)


@case
@tags("numbers")
def a_fraction_lost_below_2_52_never_reaches_int64():
    # below 2^52 a text of more than 15 significant digits can say more than its double
    # (1.9999999999999999 reads as 2): INT64 refuses it naming the field, NUMERIC stores the
    # event's value, FLOAT64 reads the same double; through both decoders
    lost = ["1.9999999999999999", "-0.99999999999999999", "99999999999999.99999",
            "1.00000000000000001e3"]
    numeric = [("1234567.8912345678", "1234567.8912345678"),
               ("1.9999999999999999", "1.9999999999999999"),
               ("2.0000000000000000", "2"), ("0.1", "0.1")]
    with Tmp() as d:
        p = nums_pipeline(d)
        with open(os.path.join(d, "s", "ddl", "nums.sql"), "w") as f:
            f.write(NUMS_DDL.replace("bad FLOAT64,", "bad FLOAT64, n NUMERIC,"))
        route = os.path.join(d, "s", "events", "nums.lua")
        src = open(route).read().replace("bad = bad }", "bad = bad, n = ev.n }")
        check("n = ev.n" in src, "n mapped")
        open(route, "w").write(src)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "wb") as f:
            for text in lost:
                f.write(b'{"event_type":"nums","i":%s}\n' % text.encode())
            for text, _ in numeric:
                f.write(b'{"event_type":"nums","n":%s,"f":%s}\n' % (text.encode(), text.encode()))
            # text the exact decoder refuses (invalid UTF-8), which lua-cjson decodes
            f.write(b'{"event_type":"nums","x":"\xff","i":1.9999999999999999}\n')
            f.write(b'{"event_type":"nums","x":"\xff","n":1234567.8912345678}\n')
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err[-2000:])
        with open(os.path.join(out, "bigquery", "nums.ndjson"), "rb") as f:
            rows = {json.loads(l)["insertId"]: l.decode() for l in f if l.strip()}
        dead = {r["insertId"]: r["json"] for r in read_rows(out, "rejected_events")}
        k = len(lost) + len(numeric)
        for n, text in enumerate(lost + [None] * len(numeric) + ["1.9999999999999999"], 1):
            if text is None:
                continue
            r = dead.get("ev.ndjson:%d" % n)
            check(r is not None, f"{text}: not dead-lettered; row {rows.get('ev.ndjson:%d' % n)}")
            check_eq((r["error_stage"], r["reason"]),
                     ("schema", "i: INT64 expected, got number " + text), text)
        for n, (text, want) in enumerate(numeric + [("1234567.8912345678",
                                                     "1234567.8912345678")], len(lost) + 1):
            if n == k + 1:
                n = k + 2
            line = rows.get("ev.ndjson:%d" % n)
            check(line is not None, f"{text}: no row; dead letter {dead.get('ev.ndjson:%d' % n)}")
            m = re.search(r'"n":(-?[0-9][0-9.e+-]*)', line)
            check(m is not None and m.group(1) == want, f"NUMERIC {text}: row {line}, want {want}")
            if '"f":' in line:
                check_eq(json.loads(line)["json"]["f"], float(text), "FLOAT64 reads the same double")
        check_eq(len(rows) + len(dead), k + 2, "every event has an outcome")


@case
@tags("numbers")
def many_17_digit_doubles_in_an_event_are_not_dead_lettered():
    # printf's %.17g (jansson, C and C++ writers) says more than the double for most values
    # (0.41000000000000003 is 0.41's double): an event with dozens of them is ordinary data,
    # stored through both decoders, FLOAT64 the same double
    xs = ["%.17g" % (i / 10 + 0.01) for i in range(1, 61)]
    with Tmp() as d:
        p = nums_pipeline(d)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "wb") as f:
            body = ('"f":%s,"xs":[%s]' % (xs[3], ",".join(xs))).encode()
            f.write(b'{"event_type":"nums",' + body + b'}\n')
            # text the exact decoder refuses (invalid UTF-8), which lua-cjson decodes
            f.write(b'{"event_type":"nums","x":"\xff",' + body + b'}\n')
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err[-2000:])
        dead = {r["insertId"]: r["json"] for r in read_rows(out, "rejected_events")}
        check_eq(dead, {}, "dead letters")
        with open(os.path.join(out, "bigquery", "nums.ndjson"), "rb") as f:
            rows = [json.loads(l) for l in f if l.strip()]
        check_eq(len(rows), 2, "rows")
        for r in rows:
            check_eq(r["json"]["f"], float(xs[3]), "FLOAT64 reads the same double")


@case
@tags("numbers", "fixtures")
def test_fixtures_carry_numbers_exactly():
    # `bepipe-lua test` hands a fixture's event to the pipeline and compares rows with the same
    # exact decoder and writer as the daemon (lua-cjson rounded both sides alike to 14 digits)
    with Tmp() as d:
        p = nums_pipeline(d)
        fx = os.path.join(d, "fx.ndjson")
        with open(fx, "w") as f:
            f.write('{"event":{"event_type":"nums","i":123456789012345678,"f":1234567.8912345678,'
                    '"s":"a/b"},"expect":{"table":"nums","row":{"i":123456789012345678,'
                    '"f":1234567.8912345678,"s":"a/b"}}}\n')
            f.write('{"event":{"event_type":"nums","i":123456789012345678},'
                    '"expect":{"table":"nums","row":{"i":123456789012345679}}}\n')
        rc, out, err = run(["test", p, fx])
        check_eq(rc, 1, "exit code (one fixture fails): " + out + err)
        check("1 passed, 1 failed" in out, out)
        check("FAIL line 2: row i: expected 123456789012345679, got 123456789012345678" in out,
              out)


# a user's map that copies an integer past 2^53 into STRING columns with tostring and %s
DIGITS_ROUTE = """return {
  table = "nums",
  validate = function(ev) return true end,
  map = function(ev)
    return { event_type = ev.event_type, s = tostring(ev.i) .. " " .. string.format("%s", ev.i) }
  end,
}
"""


@case
def tostring_of_a_big_integer_gives_its_digits():
    # such an integer is an int64 cdata in the script, whose LuaJIT text is "...LL"
    table = ["9007199254740993", "-9007199254740993", "9223372036854775807",
             "-9223372036854775808", "123456789012345678", "5", "-7", "0.5"]
    with Tmp() as d:
        p = nums_pipeline(d)
        with open(os.path.join(d, "s", "events", "nums.lua"), "w") as f:
            f.write(DIGITS_ROUTE)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "w") as f:
            for text in table:
                f.write('{"event_type":"nums","i":%s}\n' % text)
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out,
                          "--set", "state_dir=" + os.path.join(d, "state")])
        check_eq(rc, 0, "exit code: " + err[-2000:])
        rows = {r["insertId"]: r["json"]["s"] for r in read_rows(out, "nums")}
        for n, text in enumerate(table, 1):
            check_eq(rows.get("ev.ndjson:%d" % n), text + " " + text, "tostring and %s of " + text)
        rc, tout, _ = run(["test", p, ev])
        check_eq(rc, 0, "test exit code: " + tout[-1000:])
        check('"s":"9223372036854775807 9223372036854775807"' in tout, tout[-2000:])
        check("LL" not in tout, "no LuaJIT int64 text in test's rows: " + tout[-2000:])


KEYS_DDL = """CREATE TABLE IF NOT EXISTS `backend_events_data.keys` (
  event_type STRING, n INT64, ingestion_time TIMESTAMP
);
"""
# a pairs() loop, then another whose body calls a helper ending in a tail call: the second
# loop aborts the side trace of the first loop's exit ("loop unroll limit")
KEYS_ROUTE = """local function name(k)
  if type(k) ~= "string" then return "?" end
  return tostring(k)
end
return {
  table = "keys",
  validate = function(ev) return true end,
  map = function(ev)
    local count = 0
    for _ in pairs(ev) do count = count + 1 end
    if count == 0 then return nil end
    local keys = {}
    for k in pairs(ev) do keys[#keys + 1] = name(k) end
    return { event_type = ev.event_type, n = #keys }
  end,
}
"""


@case
def jit_pairs_loops_never_spin():
    # Debian's LuaJIT re-enters a compiled pairs() loop forever at an exit left with no side
    # trace (bepipe.host's hotexit + tryside <= 255 keeps LuaJIT's fallback stub). Before,
    # `test` hung on 4 runs in 5 and the daemon dead-lettered one event per second as over its
    # time budget. Which loop gets hot first depends on addresses, so three runs of `test`.
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        ddl = os.path.join(d, "s", "ddl")
        shutil.copytree(os.path.join(ROOT, "ddl"), ddl)
        with open(os.path.join(ddl, "keys.sql"), "w") as f:
            f.write(KEYS_DDL)
        with open(os.path.join(d, "s", "events", "keys.lua"), "w") as f:
            f.write(KEYS_ROUTE)
        src = open(p).read().replace('order = "events.order",',
                                     'order = "events.order",\n        keys = "events.keys",', 1)
        open(p, "w").write(src)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "w") as f:
            for i in range(5000):
                f.write(json.dumps(dict({"event_type": "keys"},
                                        **{c: i for c in "abcdefghijklmnopqr"})) + "\n")
        for _ in range(3):
            rc, tout, _ = run(["test", p, ev], timeout=60)
            check_eq(rc, 0, "test exit code")
            check("keys=5000," in tout and "dead_map=0" in tout, tout[-300:])
        out = os.path.join(d, "out")
        rc, _, err = run([p, "--input", ev, "--local-out", out,
                          "--set", "state_dir=" + os.path.join(d, "state")], timeout=60)
        check_eq(rc, 0, "exit code: " + err[-2000:])
        check_eq(len(read_rows(out, "keys")), 5000, "rows")
        check_eq(read_rows(out, "rejected_events"), [], "dead letters")


# ---------------------------------------------------------------------------------------------
# signals: reload and drain

class Daemon:
    """bepipe-lua reading from a pipe we write to."""

    def __init__(self, args):
        self.errf = tempfile.TemporaryFile()
        self.p = subprocess.Popen([BIN] + args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=self.errf)
        watch(self)

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def stderr(self):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")

    def wait_log(self, text, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.stderr():
                return
            time.sleep(0.05)
        raise Failure(f"log never showed {text!r}:\n{self.stderr()[-2000:]}")

    def finish(self, close_stdin=True, timeout=60):
        if close_stdin:
            self.p.stdin.close()
        rc = self.p.wait(timeout=timeout)
        err = self.stderr()
        no_sanitizer(err)
        return rc, err


def wait_rows(out, table, n, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if len(read_rows(out, table)) >= n:
            return
        time.sleep(0.05)
    raise Failure(f"{table} never reached {n} rows (has {len(read_rows(out, table))})")


INV = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-%012d",'
       '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
       '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":1,"reason":"%s",'
       '"timestamp":"2025-03-01T12:00:00Z"}\n')


@case
@tags("reload")
def sighup_applies_changed_script_to_later_events():
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        out = os.path.join(d, "out")
        dm = Daemon([p, "--input", "-", "--local-out", out, "--set", "bigquery.batch_ms=20"])
        try:
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(100)))
            wait_rows(out, "inventory_events", 100)
            # new rule: "sale" is no longer accepted
            path = os.path.join(d, "s", "events", "inventory.lua")
            src = open(path).read().replace("function M.validate(ev)",
                                            "function M.validate(ev)\n    if ev.reason == 'sale' "
                                            "then return false, 'sales are closed' end", 1)
            open(path, "w").write(src)
            dm.p.send_signal(signal.SIGHUP)
            dm.wait_log("generation 2 loaded")
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(100, 150)))
            dm.write(b"".join((INV % (i, "restock")).encode() for i in range(150, 200)))
        finally:
            rc, err = dm.finish()
        check_eq(rc, 0, "exit code: " + err[-1000:])
        rows = read_rows(out, "inventory_events")
        dead = read_rows(out, "rejected_events")
        check_eq(len(rows), 150, "rows: 100 before + 50 restock after")
        check_eq(len(dead), 50, "sales after the reload rejected")
        check(all(r["json"]["reason"] == "sales are closed" for r in dead), "reason of new rule")
        check_eq(sorted(int(r["insertId"].split(":")[1]) for r in dead), list(range(101, 151)),
                 "exactly the later sale events")
        check_eq(len(rows) + len(dead), 200, "nothing lost")


@case
@tags("reload")
@errors(r"reload: failed, generation 1 keeps running: .*inventory\.lua:\d+:")
def sighup_with_syntax_error_keeps_old_script():
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        out = os.path.join(d, "out")
        dm = Daemon([p, "--input", "-", "--local-out", out, "--set", "bigquery.batch_ms=20"])
        try:
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(50)))
            wait_rows(out, "inventory_events", 50)
            with open(os.path.join(d, "s", "events", "inventory.lua"), "a") as f:
                f.write("\nthis is not lua\n")
            dm.p.send_signal(signal.SIGHUP)
            dm.wait_log("reload: failed")
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(50, 100)))
        finally:
            rc, err = dm.finish()
        check_eq(rc, 0, "exit code")
        check(re.search(r"reload: failed, generation 1 keeps running: .*inventory\.lua:\d+:", err),
              "error with file and line: " + err[-1500:])
        check_eq(len(read_rows(out, "inventory_events")), 100, "old script kept processing")


@case
@tags("drain")
def sigterm_drains_everything_read():
    with Tmp() as d:
        out = os.path.join(d, "out")
        ev = os.path.join(d, "ev.ndjson")
        expect = gen(ev, 3000, seed=11, invalid=5)
        # batches and archive objects would not flush by themselves for an hour
        dm = Daemon([PIPELINE, "--input", "-", "--local-out", out, "--set",
                     "bigquery.batch_ms=3600000", "--set", "archive.roll_seconds=3600",
                     "--set", "bigquery.batch_rows=50000"])
        with open(ev, "rb") as f:
            data = f.read()
        dm.write(data)
        time.sleep(1.0)
        check_eq(summary(out)["order_events"], 0, "nothing flushed before the signal")
        dm.p.send_signal(signal.SIGTERM)
        rc, err = dm.finish(close_stdin=False, timeout=30)
        dm.p.stdin.close()
        check_eq(rc, 0, "exit code after SIGTERM: " + err[-1000:])
        check("draining (SIGTERM)" in err, "drain logged")
        verify_corpus(out, expect, [l for l in data.split(b"\n") if l.strip()])


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


@case
@tags("drain", "logs")
def stderr_reader_gone_run_still_drains():
    # `bepipe-lua … 2>&1 | head -c 300`: the reader of stderr goes away. Log lines are dropped
    # and counted; the run goes on, drains on SIGTERM and exits 0 with every event stored.
    with Tmp() as d:
        out = os.path.join(d, "out")
        ev = os.path.join(d, "ev.ndjson")
        expect = gen(ev, 2000, seed=5, invalid=5)
        with open(ev, "rb") as f:
            data = f.read()
        rfd, wfd = os.pipe()
        os.close(rfd)  # nobody will ever read stderr
        port = free_port()
        p = subprocess.Popen([BIN, PIPELINE, "--input", "-", "--local-out", out, "--http",
                              f"127.0.0.1:{port}", "--log-level", "debug",
                              "--set", "archive.roll_seconds=3600"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=wfd)
        os.close(wfd)
        try:
            try:
                p.stdin.write(data)
                p.stdin.flush()
            except BrokenPipeError:
                raise Failure(f"died with stderr gone: exit {p.wait()}")
            end = time.time() + 30
            dropped = None
            while time.time() < end and p.poll() is None:
                try:
                    dropped = metric(port, "bepipe_log_lines_dropped_total")
                    if dropped and summary(out)["order_events"] == expect["rows"]["order_events"]:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            check(p.poll() is None, f"still running with stderr gone (exit {p.poll()})")
            check(dropped and dropped > 0, f"dropped log lines counted: {dropped}")
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        check_eq(rc, 0, "exit code after SIGTERM with stderr gone")
        verify_corpus(out, expect, [l for l in data.split(b"\n") if l.strip()])


@case
@tags("archive")
def archive_objects_never_overwritten():
    with Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "w") as f:
            for i in range(40):
                f.write(INV % (i, "sale"))
        out = os.path.join(d, "out")
        # one line per object: many objects of one hour opened within the same second
        rc, _, err = run([PIPELINE, "--input", ev, "--local-out", out,
                          "--set", "archive.roll_bytes=1024"])
        check_eq(rc, 0, "exit code: " + err)
        objs = archive_objects(out)
        check_eq(sum(len(v) for v in objs.values()), 40, "all lines archived")
        check(len(objs) >= 8, f"objects rolled by size: {len(objs)}")
        # the run takes well under a second or two, so names collide and get a suffix
        check([n for n in objs if re.search(r"_\d{14}_\d+\.json$", n)], "suffixed names: %s" % list(objs))
        check(not [n for n in objs if ".tmp." in n], "no temp files left")


def wait_handles(proc, sig=signal.SIGTERM, timeout=30):
    """Waits until proc has installed its handler for sig (SigCgt in /proc/PID/status): a signal
    sent before that, by a test that only slept, takes the default action (a loaded machine
    or a sanitizer build can take longer than the sleep to get there). Fails on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                caught = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
        except (OSError, StopIteration):
            caught = 0
        if caught & (1 << (int(sig) - 1)):
            return
        if proc.poll() is not None:
            raise Failure(f"process {proc.pid} ended before handling signal {int(sig)}")
        time.sleep(0.02)
    raise Failure(f"process {proc.pid} did not handle signal {int(sig)} within {timeout} s")


class Skip(Exception):
    """A case that cannot run here (a tool or an emulator feature is missing): counted as
    skipped, never as passed."""


def case_tags(fn):
    """A case's tags: the name of its file (archive, leases, cloud, run...), the file's TAGS and
    the case's @tags."""
    mod = sys.modules.get(fn.__module__)
    path = getattr(mod, "__file__", None) or fn.__module__
    return ([os.path.basename(path).rsplit(".", 1)[0]] + list(getattr(mod, "TAGS", ()))
            + list(getattr(fn, "tags", ())))


def selected(fn, k, wanted):
    """Whether -k and -t select fn: its name contains k, and it has one of the wanted tags (any
    tag when none is wanted)."""
    return k in fn.__name__ and (not wanted or bool(wanted & set(case_tags(fn))))


def run_cases(cases, default_bin, argv=None):
    """Runs the cases whose name contains -k and that carry one of the -t tags, each isolated;
    a case fails on an exception or on an error line of the binary its @errors does not declare.
    Prints `N passed, N failed` and exits non-zero on a failure. --bin (or BEPIPE_BIN) picks the
    binary; --list prints the selected cases and their tags instead. Shared by every runner."""
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("BEPIPE_BIN", default_bin))
    ap.add_argument("-k", default="", help="run the cases whose name contains this")
    ap.add_argument("-t", "--tags", action="append", default=[],
                    help="run the cases carrying this tag (repeat, or comma-separated: any of)")
    ap.add_argument("--list", action="store_true", help="list the selected cases and their tags")
    a = ap.parse_args(argv)
    BIN = os.path.abspath(a.bin)
    wanted = {t for arg in a.tags for t in arg.split(",") if t}
    cases = [fn for fn in cases if selected(fn, a.k, wanted)]
    if a.list:
        for fn in cases:
            print(f"{fn.__name__}  [{' '.join(case_tags(fn))}]")
        return
    if not getattr(subprocess.run, "watching", False):
        subprocess.run = _watching_run(subprocess.run)
    passed = failed = skipped = 0
    for fn in cases:
        t0 = time.time()
        SEEN.clear()
        WATCHED.clear()
        try:
            fn()
            bad = undeclared_errors(fn)
            check(not bad, f"{len(bad)} error line(s) the case does not declare (@errors):\n  "
                  + "\n  ".join(line[:300] for line in bad[:5]))
            passed += 1
            print(f"ok   {fn.__name__} ({time.time() - t0:.1f}s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"skip {fn.__name__}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - any exception is a failed case
            failed += 1
            print(f"FAIL {fn.__name__}: {e}", flush=True)
            if not isinstance(e, Failure):
                traceback.print_exc()
            stop_left_running()   # only after a failure: a passing case that leaks one is
            #                       still caught by the suite's leftover check
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    sys.exit(1 if failed else 0)


# The modules of each suite that has no cases of its own (ops.py, hardening.py), named for the
# feature they test. A module of this folder with a CASES list must be in one of them (or be a
# runner itself), or run_modules counts it as a failure: a case file nobody runs is worse than
# none.
SUITES = {
    # operability on the normal build: tooling, configuration, observability, packaging
    "ops": ["archive", "archive_gzip", "archive_open_files", "check_mode", "cli", "cloud_cpu", "deploy",
            "fixtures", "install", "logs", "memory", "metadata", "metrics", "paths",
            "permanent_errors", "preflight", "replay", "schema", "schema_evolution", "test_runner",
            "workers"],
    # hostile peers and inputs, on the sanitizer build
    "hardening": ["emulator_faults", "gcs_replies", "http_resilience", "leases", "poison",
                  "pull_replies", "refusals", "script_limits"],
}


def unlisted_modules():
    """The modules of this folder that define CASES, are no runner (no __main__) and are in no
    SUITES list."""
    here = os.path.dirname(os.path.abspath(__file__))
    listed = {m for mods in SUITES.values() for m in mods}
    res = []
    for path in sorted(glob.glob(os.path.join(here, "*.py"))):
        name = os.path.basename(path)[:-3]
        with open(path) as f:
            text = f.read()
        if (name not in listed and re.search(r"^CASES = ", text, re.M)
                and "__main__" not in text):
            res.append(name)
    return res


def run_modules(suite):
    """Runs the CASES of every module SUITES lists for suite (hardening.py, ops.py)."""
    import importlib
    cases = []
    for name in SUITES[suite]:
        cases.extend(getattr(importlib.import_module(name), "CASES", []))
    for name in unlisted_modules():
        def unlisted(name=name):
            raise Failure(f"tests/integration/{name}.py has CASES but no suite of "
                          "run.py's SUITES lists it")
        unlisted.__name__ = "unlisted_module_" + name
        cases.append(unlisted)
    run_cases(cases, os.path.join(ROOT, "bepipe-lua"))


if __name__ == "__main__":
    run_cases(CASES, os.path.join(ROOT, "bepipe-lua"))
