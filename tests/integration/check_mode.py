"""Script errors that point at the user's own code: --check refuses unknown
route keys and routes whose table has no DDL, naming the route and the file; errors inside the
bepipe library are reported at the user's line; a map that returns nil or a row without its
time field gets a plain reason.

--check is the run's own configuration: a table of every refusal the run makes on its
configuration (option types and forms from pipeline.lua and --set, endpoints, credentials
files, --local-out, --input, http.listen, --workers), each refused by --check and by the run
with the same message naming the key; dead_letter.format brings its own table; each pipeline
keeps its own state_dir."""
import os
import shutil
import subprocess
import tempfile

import run as local
from run import check, check_eq

CASES = []
TAGS = ["check"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


def user_copy():
    d = tempfile.mkdtemp(prefix="bepipe-check-")
    shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(d, "scripts"))
    shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(d, "ddl"))
    return d, os.path.join(d, "scripts", "pipeline.lua")


def patch(d, rel, old, new):
    path = os.path.join(d, "scripts", rel)
    src = open(path).read()
    check(old in src, f"{rel} has {old!r}")
    open(path, "w").write(src.replace(old, new, 1))
    return path


def cli(*args):
    return subprocess.run([local.BIN, *args], capture_output=True, text=True, timeout=60)


@case
def check_refuses_an_unknown_route_key():
    # main ignored a typo like `tim_field`
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", 'time_field = "timestamp"', 'tim_field = "timestamp"')
    r = cli("--check", p)
    check(r.returncode != 0, "refused")
    check("route inventory" in r.stderr and "unknown key `tim_field`" in r.stderr and
          f in r.stderr, "names the route, the key and the file: " + r.stderr)


@case
def check_refuses_a_route_without_ddl():
    d, p = user_copy()
    os.remove(os.path.join(d, "ddl", "order_events.sql"))
    r = cli("--check", p)
    check(r.returncode != 0, "refused")
    check("no CREATE TABLE" in r.stderr and "order_events" in r.stderr, r.stderr)
    check_eq(cli("--check", local.PIPELINE).returncode, 0, "the shipped pipeline passes")


def run_events(p, lines):
    d = tempfile.mkdtemp(prefix="bepipe-check-ev-")
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([local.BIN, "test", p, ev], capture_output=True, text=True, timeout=60)
    check_eq(r.returncode, 0, "test exit code: " + r.stderr)
    return r.stdout


INV = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc",'
       '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
       '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":5,"reason":"sale",'
       '"timestamp":"2025-03-01T12:00:00Z"}')


@case
def map_returning_nil_gets_a_plain_reason():
    # main: "bepipe/host.lua:231: attempt to index local 'row'"
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.map(ev)", "function M.map(ev)\n    do return nil end")
    out = run_events(p, [INV])
    check("DEAD map: map error: map returned nil, not a row table" in out and f in out, out)
    check("host.lua" not in out, "no library location: " + out)


@case
def row_without_its_time_field_gets_a_plain_reason():
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.map(ev)",
              "function M.map(ev)\n    do return { inventory_id = ev.inventory_id } end")
    out = run_events(p, [INV])
    check("the row has no `timestamp` (the route's time_field)" in out, out)
    check("check.lua" not in out, "no library location: " + out)


@case
def library_errors_name_the_users_line():
    # a bepipe.check helper misused from a script: the error is reported at the script's line
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.validate(ev)",
              "function M.validate(ev)\n    require('bepipe.check').hour_key(nil)")
    out = run_events(p, [INV])
    dead = [l for l in out.splitlines() if "DEAD" in l]
    check_eq(len(dead), 1, out)
    check("inventory.lua:" in dead[0] and "bepipe/check.lua" not in dead[0],
          "the user's file and line: " + dead[0])


# ---- --check = the run's refusals ----

def edited_pipeline(d, old, new):
    """The shipped pipeline.lua in d/scripts with old replaced by new (or new inserted at the top
    of the returned table when old is None)."""
    p = os.path.join(d, "scripts", "pipeline.lua")
    src = open(p).read()
    if old is None:
        old, new = "return {", "return {\n    " + new
    check(old in src, f"pipeline.lua has {old!r}")
    open(p, "w").write(src.replace(old, new, 1))
    return p


# The emulator variables at a port nothing listens on: a refusal that should come before any
# call must not be confused with a connection that failed.
NOWHERE = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "BIGQUERY_EMULATOR_HOST": "127.0.0.1:1",
           "STORAGE_EMULATOR_HOST": "127.0.0.1:1"}

# (name, pipeline.lua edit (old, new) or None, arguments, environment, where the run goes,
#  text the message must hold: the key, what it expects, the value). Where: "local" runs
# --input EV --local-out FRESH (offline), "cloud" --input EV to the cloud sinks at NOWHERE,
# "own" only the arguments given (they name the source and sinks).
REFUSALS = [
    # option types and forms (config.c), from pipeline.lua with its Lua types
    ("archive.path s3", ('path = "gs://backend_events_data/output"', 'path = "s3://bucket/x"'),
     [], {}, "local", 'archive.path: expected gs://BUCKET[/PREFIX], got "s3://bucket/x"'),
    ("archive.path number", ('path = "gs://backend_events_data/output"', "path = 42"),
     [], {}, "local", "archive.path: expected gs://BUCKET[/PREFIX], got 42"),
    ("route_field table", ('route_field = "event_type"', 'route_field = { table = "x" }'),
     [], {}, "local", "route_field: expected the name of an event field, got a table"),
    ("route_field empty table", ('route_field = "event_type"', "route_field = {}"),
     [], {}, "local", "route_field: expected the name of an event field, got a table"),
    ("route_field number", ('route_field = "event_type"', "route_field = 5"),
     [], {}, "local", "route_field: expected the name of an event field, got 5"),
    ("route_field function", ('route_field = "event_type"', "route_field = print"),
     [], {}, "local", "route_field: expected the name of an event field, got a function"),
    ("integer given true", ("batch_rows = 500", "batch_rows = true"),
     [], {}, "local", "bigquery.batch_rows: expected an integer in 1..50000, got true"),
    ("integer given text", ("batch_rows = 500", 'batch_rows = "500"'),
     [], {}, "local", 'bigquery.batch_rows: expected an integer in 1..50000, got "500"'),
    ("integer given a fraction", ("batch_rows = 500", "batch_rows = 2.5"),
     [], {}, "local", "bigquery.batch_rows: expected an integer in 1..50000, got 2.5"),
    ("pull_max_messages given true",
     ("max_outstanding_messages = 30000,", "max_outstanding_messages = 30000, "
      "pull_max_messages = true,"),
     [], {}, "local", "source.pull_max_messages: expected an integer in 1..1000, got true"),
    ("string given a number", ('dataset = "backend_events_data"', "dataset = 12"),
     [], {}, "local", "bigquery.dataset: expected a dataset name, got 12"),
    ("switch given 3", (None, "sandbox = 3,"),
     [], {}, "local", "sandbox: expected true or false, got 3"),
    ("section given a string", (None, 'lua = "fast",'),
     [], {}, "local", 'lua: expected a table of lua.* options, got "fast"'),
    ("key that is not a string", (None, 'endpoints = { "x" },'),
     [], {}, "local", "option keys must be strings, got 1 in endpoints"),
    # the same from the command line (text parsed as the option's type)
    ("unknown --set key", None, ["--set", "nosuch.option=1"], {}, "local",
     "unknown option 'nosuch.option'"),
    ("--set integer given text", None, ["--set", "bigquery.batch_rows=abc"], {}, "local",
     'bigquery.batch_rows: expected an integer in 1..50000, got "abc"'),
    ("--set integer given true", None, ["--set", "source.pull_max_messages=true"], {}, "local",
     'source.pull_max_messages: expected an integer in 1..1000, got "true"'),
    ("--set integer out of range", None, ["--set", "source.pull_max_messages=5000"], {},
     "local", 'source.pull_max_messages: expected an integer in 1..1000, got "5000"'),
    ("--set switch given yes", None, ["--set", "bigquery.create_tables=yes"], {}, "local",
     'bigquery.create_tables: expected true or false, got "yes"'),
    ("--set route_field empty", None, ["--set", "route_field="], {}, "local",
     'route_field: expected the name of an event field, got ""'),
    ("--gcs_output_path s3", None, ["--gcs_output_path", "s3://bucket/x"], {}, "local",
     'archive.path: expected gs://BUCKET[/PREFIX], got "s3://bucket/x"'),
    ("archive.time", None, ["--set", "archive.time=ingest"], {}, "local",
     'archive.time: expected event or publish, got "ingest"'),
    ("dead_letter.format", None, ["--set", "dead_letter.format=beam"], {}, "local",
     'dead_letter.format: expected rejected_events or dataflow, got "beam"'),
    ("bigquery.method", None, ["--set", "bigquery.method=grpc"], {}, "local",
     'bigquery.method: expected insert_all or storage_write, got "grpc"'),
    ("exactly_once without storage_write", None, ["--set", "bigquery.exactly_once=true"], {},
     "local", 'bigquery.exactly_once = true needs bigquery.method = "storage_write"'),
    ("Storage Write endpoint", None, ["--set", "endpoints.bigquery_storage=http://h:1"], {},
     "local", 'endpoints.bigquery_storage: expected HOST:PORT, got "http://h:1"'),
    ("auth.mode", None, ["--set", "auth.mode=oauth"], {}, "local",
     'auth.mode: expected auto, adc or none, got "oauth"'),
    ("subscription form", None, ["--input_subscription", "my-sub"], {}, "local",
     'source.subscription: expected projects/PROJECT/subscriptions/NAME, got "my-sub"'),
    ("endpoint scheme", None, ["--set", "endpoints.pubsub=ftp://host"], {}, "local",
     'endpoints.pubsub: expected an http:// or https:// URL, or HOST:PORT, got "ftp://host"'),
    ("token URL", None, ["--set", "auth.token_url=http:// x"], {}, "local",
     'auth.token_url: expected an http:// or https:// URL, or HOST:PORT, got "http:// x"'),
    # what the start refuses (rt.c, main.c, endpoints.c)
    ("emulator variable", None, [], dict(NOWHERE, PUBSUB_EMULATOR_HOST="a b:1"), "cloud",
     'PUBSUB_EMULATOR_HOST: expected an http:// or https:// URL, or HOST:PORT, got "a b:1"'),
    ("Storage Write emulator variable", None, ["--set", "bigquery.method=storage_write"],
     dict(NOWHERE, BIGQUERY_STORAGE_EMULATOR_HOST="http://h:1"), "cloud",
     'BIGQUERY_STORAGE_EMULATOR_HOST: expected HOST:PORT (gRPC over h2c), got "http://h:1"'),
    ("credentials file", None, ["--set", "auth.mode=adc", "--set",
                                "auth.key_file=/nonexistent/key.json"], NOWHERE, "cloud",
     "auth.key_file: credentials file /nonexistent/key.json"),
    ("dead-letter table of the other format", None,
     ["--set", "dead_letter.format=dataflow", "--set", "dead_letter.table=rejected_events"], {},
     "local", "dead_letter.table rejected_events has no column timestamp"),
    ("DDL folder", None, ["--set", "bigquery.ddl_dir=/nonexistent", "--create-tables",
                          "--set", "preflight_seconds=0"], NOWHERE, "cloud",
     "/nonexistent: no .sql files"),
    ("input missing", None, ["--input", "/nonexistent/ev.ndjson", "--local-out", "{fresh}"], {},
     "own", "source.input: cannot read /nonexistent/ev.ndjson"),
    ("input a folder", None, ["--input", "/", "--local-out", "{fresh}"], {}, "own",
     "source.input: cannot read /: is a directory"),
    ("local_out not empty", None, ["--input", "{ev}", "--local-out", "{full}"], {}, "own",
     "is not empty: choose a new folder, or add --append"),
    ("local_out under a file", None, ["--input", "{ev}", "--local-out", "{ev}/out"], {}, "own",
     "local_out: cannot create"),
    ("http.listen", None, ["--http", "nohost"], {}, "local", "http.listen 'nohost' is not ADDR:PORT"),
    ("--workers with a file source",
     ("max_outstanding_messages = 30000,", 'max_outstanding_messages = 30000, input = "{ev}",'),
     ["--workers", "2", "--local-out", "{fresh}"], {}, "own",
     "--workers needs the Pub/Sub source, not source.input"),
]


def refusal_args(d, ev, args, where):
    full = os.path.join(d, "full")
    os.makedirs(full, exist_ok=True)
    open(os.path.join(full, "x"), "w").close()
    fresh = tempfile.mkdtemp(prefix="out-", dir=d)
    os.rmdir(fresh)
    args = [a.format(ev=ev, fresh=fresh, full=full) for a in args]
    if where == "local":
        return ["--input", ev, "--local-out", fresh] + args
    if where == "cloud":
        return ["--input", ev, "--set", "preflight_seconds=2"] + args
    return args


@case
def check_refuses_everything_the_run_refuses():
    failures = []
    base = tempfile.mkdtemp(prefix="bepipe-refusals-")
    ev = os.path.join(base, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(INV + "\n")
    for i, (name, edit, args, env, where, want) in enumerate(REFUSALS):
        d = os.path.join(base, str(i))
        os.makedirs(d)
        shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(d, "scripts"))
        shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(d, "ddl"))
        p = os.path.join(d, "scripts", "pipeline.lua")
        if edit:
            p = edited_pipeline(d, edit[0], edit[1].replace("{ev}", ev))
        e = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
        e.update(env)
        runs = {}
        for mode in ("check", "run"):
            a = refusal_args(d, ev, args, where)
            a = ["--check", p] + a if mode == "check" else [p] + a
            r = subprocess.run([local.BIN] + a, capture_output=True, text=True, timeout=60,
                               env=e)
            local.no_sanitizer(r.stderr)
            runs[mode] = r
            if r.returncode == 0 or want not in r.stderr:
                failures.append(f"{name}: {mode} exit {r.returncode}, wanted a message with "
                                f"{want!r}: {r.stderr.strip()[-300:]!r}")
    check(not failures, f"{len(failures)} of {2 * len(REFUSALS)} refusals differ:\n  " +
          "\n  ".join(failures))
    # the table is not vacuous: the shipped pipeline with the same arguments passes both
    d = os.path.join(base, "ok")
    fresh = os.path.join(d, "out")
    r = cli("--check", local.PIPELINE, "--input", ev, "--local-out", fresh)
    check_eq(r.returncode, 0, "the shipped pipeline passes --check: " + r.stderr)
    r = cli(local.PIPELINE, "--input", ev, "--local-out", fresh)
    check_eq(r.returncode, 0, "and runs: " + r.stderr)
    shutil.rmtree(base, ignore_errors=True)


@case
def dataflow_format_brings_its_own_table():
    # main: "dead_letter.table rejected_events has no column timestamp"
    r = cli("--check", local.PIPELINE, "--set", "dead_letter.format=dataflow")
    check_eq(r.returncode, 0, "--check with the format alone: " + r.stderr)
    d = tempfile.mkdtemp(prefix="bepipe-dataflow-")
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(INV + "\n" + "not json\n")
    out = os.path.join(d, "out")
    r = cli(local.PIPELINE, "--input", ev, "--local-out", out, "--set", "dead_letter.format=dataflow")
    check_eq(r.returncode, 0, "run: " + r.stderr)
    rows = local.read_rows(out, "events_error_records")
    check_eq(len(rows), 1, "the dead letter in events_error_records")
    check(not os.path.exists(os.path.join(out, "bigquery", "rejected_events.ndjson")),
          "nothing in rejected_events")
    # a table named explicitly is kept (and checked against the format)
    r = cli("--check", local.PIPELINE, "--set", "dead_letter.format=dataflow", "--set",
            "dead_letter.table=rejected_events")
    check(r.returncode != 0 and "rejected_events has no column timestamp" in r.stderr, r.stderr)
    shutil.rmtree(d, ignore_errors=True)


@case
@local.errors(r" error lua: message ev\.ndjson:2 has run \d+ ms, past lua\.hard_ms=1500")
def two_pipelines_keep_their_own_suspects():
    # main: every pipeline of a user shared ~/.local/state/bepipe-lua, so a message that hung
    # pipeline A was dead-lettered on sight by pipeline B (other scripts) for a week
    base = tempfile.mkdtemp(prefix="bepipe-state-")
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY",)}
    env["XDG_STATE_HOME"] = os.path.join(base, "xdg")
    pa, pb = [], []
    for name, paths in (("a", pa), ("b", pb)):
        d = os.path.join(base, name)
        os.makedirs(d)
        shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(d, "scripts"))
        shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(d, "ddl"))
        paths.append(os.path.join(d, "scripts", "pipeline.lua"))
    # pipeline A's inventory validator never returns on a quantity of 7 (a compiled loop)
    patch(os.path.join(base, "a"), "events/inventory.lua", "function M.validate(ev)",
          "function M.validate(ev)\n    if ev.quantity_change == 7 then while true do end end")
    ev = os.path.join(base, "ev.ndjson")
    with open(ev, "w") as f:
        for i, q in enumerate([1, 7, 1, 1]):
            f.write(INV.replace('"quantity_change":5', f'"quantity_change":{q}')
                    .replace("123456789abc\",\"product_id", f"{i:012d}\",\"product_id") + "\n")
    budget = ["--set", "lua.budget_ms=300", "--set", "lua.hard_ms=1500"]
    out_a = os.path.join(base, "out-a")
    # past lua.hard_ms the watchdog records the message and ends the process (code 3)
    r = subprocess.run([local.BIN, pa[0], "--input", ev, "--local-out", out_a] + budget,
                       capture_output=True, text=True, timeout=60, env=env)
    err = r.stderr
    check_eq(r.returncode, 3, "pipeline A stopped its runaway script: " + err[-1500:])
    check("recorded as a suspect" in err, "A recorded the message: " + err[-1500:])
    # pipeline B (its own scripts, the same events): the message is no suspect of B's
    out_b = os.path.join(base, "out-b")
    r = subprocess.run([local.BIN, pb[0], "--input", ev, "--local-out", out_b],
                       capture_output=True, text=True, timeout=60, env=env)
    check_eq(r.returncode, 0, "pipeline B: " + r.stderr[-1500:])
    check_eq(len(local.read_rows(out_b, "inventory_events")), 4, "B stored every event")
    check_eq(local.read_rows(out_b, "rejected_events"), [], "B dead-lettered nothing")
    dirs = sorted(os.listdir(os.path.join(base, "xdg", "bepipe-lua")))
    check_eq(len(dirs), 2, "two pipelines, two state folders: %s" % dirs)
    check(all(x.startswith("pipeline-") and len(x) == len("pipeline-") + 12 for x in dirs),
          "named after the file and a hash: %s" % dirs)
    # A's restart still knows its suspect
    r = subprocess.run([local.BIN, pa[0], "--input", ev, "--local-out", out_a, "--append"],
                       capture_output=True, text=True, timeout=60, env=env)
    check_eq(r.returncode, 0, "A's restart: " + r.stderr[-1500:])
    dead = local.read_rows(out_a, "rejected_events")
    check_eq([x["insertId"] for x in dead], ["ev.ndjson:2"], "A dead-letters its suspect on sight")
    shutil.rmtree(base, ignore_errors=True)


@case
def set_route_field_is_the_field_that_routes():
    # main: --set route_field=kind was accepted and ignored (routes still read event_type)
    d = tempfile.mkdtemp(prefix="bepipe-route-field-")
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(INV.replace('"event_type":', '"kind":') + "\n")
    out = os.path.join(d, "out")
    r = cli(local.PIPELINE, "--input", ev, "--local-out", out, "--set", "route_field=kind")
    check_eq(r.returncode, 0, "run: " + r.stderr)
    check_eq(len(local.read_rows(out, "inventory_events")), 1, "routed by kind")
    check_eq(local.read_rows(out, "rejected_events"), [], "no dead letter")
    shutil.rmtree(d, ignore_errors=True)
