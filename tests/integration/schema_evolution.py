"""Schema evolution: on the cloud path the live table's schema is the one
rows are checked against (one log line per table that differs from its DDL); --update-tables
adds a DDL's new NULLABLE column to the live table with tables.patch before pulling, refuses a
retyped, dropped or new REQUIRED column naming it (exit 1, nothing pulled), and on SIGHUP
patches before the new scripts' rows flow (a refused change keeps the old scripts)."""
import json
import os
import signal
import subprocess

import cloud
from cloud import DATASET, PROJECT, Bepipe, Scenario, wait_drained
from check_mode import user_copy
import run
from run import check, check_eq

CASES = []
TAGS = ["schema"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


TABLE = f"{PROJECT}:{DATASET}.inventory_events"
INV = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-%012d",'
       '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
       '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":1,"reason":"sale",'
       '"timestamp":"2025-03-01T12:00:00Z"}\n')
UA = ('{"event_type":"user_activity","user_id":"6f1c2a8e-1b2c-4d3e-8f90-%012d",'
      '"activity_type":"login","ip_address":"10.0.0.1","user_agent":"ua",'
      '"timestamp":"2025-03-01T12:00:00Z","metadata":{"session_id":"s","platform":"web"}}\n')


def edit(d, rel, old, new):
    path = os.path.join(d, rel)
    src = open(path).read()
    check(old in src, f"{rel} has {old!r}")
    open(path, "w").write(src.replace(old, new, 1))


def add_note(d):
    """The DDL gains a NULLABLE column `note` and the inventory script fills it."""
    edit(d, "ddl/inventory_events.sql", "  timestamp TIMESTAMP",
         '  note STRING OPTIONS(description="added later"),\n  timestamp TIMESTAMP')
    edit(d, "scripts/events/inventory.lua", "reason = ev.reason,",
         'reason = ev.reason,\n        note = "n-" .. ev.reason,')


def events(s, name, fmt, ids):
    path = os.path.join(s.tmp, name)
    with open(path, "w") as f:
        for i in ids:
            f.write(fmt % i)
    return s.emu.publish(path)


def meta(s, table="inventory_events"):
    return s.emu.admin("GET", f"/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/{table}")


def names(m):
    return [f["name"] for f in m["schema"]["fields"]]


NODE_GET = """
const { BigQuery } = require(process.argv[1] + '/@google-cloud/bigquery');
new BigQuery({ projectId: process.argv[2] }).dataset(process.argv[3]).table(process.argv[4])
  .getMetadata().then(([m]) => console.log(JSON.stringify(m.schema.fields)),
                      (e) => { console.error(e.message); process.exit(1); });
"""


def official_client_fields(s, table):
    """The table's fields as Google's Node client (@google-cloud/bigquery) reads them."""
    mods = os.path.join(cloud.ROOT, "tests", "emulator", "conformance", "node_modules")
    env = dict(os.environ, BIGQUERY_EMULATOR_HOST=s.emu.url + "/bigquery/v2",
               GCE_METADATA_HOST=s.emu.url.replace("http://", ""),
               METADATA_SERVER_DETECTION="assume-present")
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    r = subprocess.run(["node", "-e", NODE_GET, mods, PROJECT, DATASET, table], env=env,
                       capture_output=True, text=True, timeout=60)
    check_eq(r.returncode, 0, "the Node client's getMetadata: " + r.stderr[-1000:])
    return json.loads(r.stdout)


@case
def update_tables_adds_the_ddl_column_and_its_rows_land():
    with Scenario() as s:
        d, p = user_copy()
        add_note(d)
        events(s, "inv.ndjson", INV, range(100))
        b = Bepipe(s.emu, ["--update-tables"], pipeline=p)
        wait_drained(s.emu, 100, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        err = b.stderr()
        check(f"table {TABLE} patched to its DDL: only in the DDL: note" in err, err[-1500:])
        m = meta(s)
        check_eq(names(m)[-1], "note", "the column appended by tables.patch")
        check_eq(m["schema"]["fields"][-1]["mode"], "NULLABLE", "NULLABLE")
        f = official_client_fields(s, "inventory_events")
        check_eq((f[-1]["name"], f[-1]["type"], f[-1].get("mode")), ("note", "STRING", "NULLABLE"),
                 "the official client sees the new column")
        check_eq(f[-1].get("description"), "added later", "with the DDL's description")
        rows = s.emu.rows("inventory_events")
        check_eq(len(rows), 100, "rows")
        check_eq({r.get("note") for r in rows}, {"n-sale"}, "the new column filled")
        check_eq(s.emu.rows("rejected_events"), [], "no dead letters")
        # a second start finds nothing to change
        b2 = Bepipe(s.emu, ["--update-tables"], pipeline=p)
        b2.wait_log("rows are checked against the live schemas")
        check_eq(b2.stop(), 0, "second start")
        check("patched" not in b2.stderr(), "nothing patched the second time")


@case
def the_live_table_wins_over_the_ddl():
    with Scenario() as s:
        d, p = user_copy()
        # inventory: the DDL and the script have `note`, the live table has not
        add_note(d)
        # user_activity: the live table has `shelf` (added by hand), the DDL has not
        ua = meta(s, "user_activity_events")
        ua["schema"]["fields"].append({"name": "shelf", "type": "STRING"})
        s.emu.admin("PATCH", f"/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/"
                    "user_activity_events", {"schema": ua["schema"]})
        edit(d, "scripts/events/user_activity.lua", "user_agent = ev.user_agent,",
             'user_agent = ev.user_agent,\n        shelf = "top",')
        events(s, "inv.ndjson", INV, range(20))
        events(s, "ua.ndjson", UA, range(20))
        b = Bepipe(s.emu, pipeline=p)
        wait_drained(s.emu, 40, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        err = b.stderr()
        # refused in C against the live table (stage schema), not by BigQuery (stage insert)
        dead = s.emu.rows("rejected_events")
        check_eq(len(dead), 20, "the inventory rows refused: " + err[-1500:])
        check_eq({(r["error_stage"], r["reason"]) for r in dead},
                 {("schema", "note: no such field")}, "refused by the live schema")
        # accepted by the live table although the DDL lacks the column
        rows = s.emu.rows("user_activity_events")
        check_eq(len(rows), 20, "user_activity rows landed")
        check_eq({r.get("shelf") for r in rows}, {"top"}, "with the live table's column")
        lines = [l for l in err.splitlines() if "differs from the DDL" in l]
        check_eq(len(lines), 2, "one line per table that differs: %s" % lines)
        check(any("inventory_events" in l and "only in the DDL: note" in l for l in lines), lines)
        check(any("user_activity_events" in l and "only in the table: shelf" in l
                  for l in lines), lines)
        check_eq(names(meta(s))[-1], "ingestion_time", "without the flag nothing is patched")


@case
def post_reload_answers_202_and_swaps_after_the_patch():
    from metrics import http, listen_port
    with Scenario() as s:
        d, p = user_copy()
        b = Bepipe(s.emu, ["--update-tables", "--http", "127.0.0.1:0"], pipeline=p)
        b.wait_log("rows are checked against the live schemas")
        port = listen_port(b.stderr)
        add_note(d)
        st, _, body = http(port, "/reload", "POST")
        check_eq((st, body), (202, "reload accepted: generation 2 runs once its tables are "
                              "patched (see the log)\n"), "POST /reload")
        b.wait_log("generation 2 loaded")
        check_eq(names(meta(s))[-1], "note", "patched")
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])


@case
def sighup_reads_the_live_schemas_again():
    with Scenario() as s:
        d, p = user_copy()
        edit(d, "scripts/events/user_activity.lua", "user_agent = ev.user_agent,",
             'user_agent = ev.user_agent,\n        shelf = "top",')
        b = Bepipe(s.emu, pipeline=p)
        events(s, "a.ndjson", UA, range(10))
        wait_drained(s.emu, 10, [b])
        check_eq({r["reason"] for r in s.emu.rows("rejected_events")}, {"shelf: no such field"},
                 "neither the DDL nor the table has the column yet")
        # someone adds the column to the live table; a reload reads the table again
        ua = meta(s, "user_activity_events")
        ua["schema"]["fields"].append({"name": "shelf", "type": "STRING"})
        s.emu.admin("PATCH", f"/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/"
                    "user_activity_events", {"schema": ua["schema"]})
        b.p.send_signal(signal.SIGHUP)
        b.wait_log("only in the table: shelf")
        events(s, "b.ndjson", UA, range(10, 30))
        wait_drained(s.emu, 30, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        rows = s.emu.rows("user_activity_events")
        check_eq((len(rows), {r.get("shelf") for r in rows}), (20, {"top"}),
                 "the rows after the reload land with the live table's column")


@case
@run.errors(r" error tables: table \S+\.inventory_events: the DDL cannot be applied: ",
            r" error main: the tables could not be brought to the DDL \(see above\); stopping ")
def a_change_bigquery_refuses_stops_before_pulling():
    with Scenario() as s:
        events(s, "inv.ndjson", INV, range(10))
        before = names(meta(s))
        changes = [
            ("quantity_change INT64", "quantity_change STRING", "quantity_change",
             "the DDL says STRING, the table INT64"),
            ('  reason STRING OPTIONS(description="Reason for the change: restock, sale, return, '
             'damage"),\n', "", "reason", "in the table but not in the DDL"),
            ("  timestamp TIMESTAMP", "  must STRING NOT NULL,\n  timestamp TIMESTAMP", "must",
             "is REQUIRED"),
        ]
        for old, new, col, why in changes:
            d, p = user_copy()
            edit(d, "ddl/inventory_events.sql", old, new)
            b = Bepipe(s.emu, ["--update-tables"], pipeline=p)
            rc = b.wait_exit(60)
            err = b.stderr()
            check(rc != 0, f"{col}: exit code {rc}")
            line = [l for l in err.splitlines() if "cannot be applied" in l]
            check(line and TABLE in line[0] and f"column {col}" in line[0] and why in line[0],
                  f"{col}: the error names the table and the column: {err[-1500:]}")
        check_eq(names(meta(s)), before, "the table is as it was")
        counters = s.emu.admin("GET", "/_emulator/counters")
        check("pubsub.subscriptions.pull" not in counters, "nothing pulled: %s" % sorted(counters))
        check("bigquery.tables.patch" not in counters, "nothing patched")


@case
@run.errors(r" error tables: table \S+\.inventory_events: the DDL cannot be applied: ",
            r" error reload: failed, generation \d+ keeps running: its tables could not ")
def sighup_patches_before_the_new_scripts_rows_flow():
    with Scenario() as s:
        d, p = user_copy()
        b = Bepipe(s.emu, ["--update-tables"], pipeline=p)
        events(s, "a.ndjson", INV, range(100))
        wait_drained(s.emu, 100, [b])
        add_note(d)
        b.p.send_signal(signal.SIGHUP)
        b.wait_log("generation 2 loaded")
        err = b.stderr()
        check(err.index("generation 2 waits for its tables' patch") <
              err.index("patched to its DDL: only in the DDL: note") <
              err.index("generation 2 loaded"), "patched, then swapped: " + err[-1500:])
        check_eq(names(meta(s))[-1], "note", "the column is there before the new rows")
        events(s, "b.ndjson", INV, range(100, 200))
        wait_drained(s.emu, 200, [b])
        rows = s.emu.rows("inventory_events")
        check_eq(len(rows), 200, "rows")
        check_eq(sum(1 for r in rows if r.get("note") == "n-sale"), 100, "the new rows filled it")
        check_eq(s.emu.rows("rejected_events"), [], "no row refused on the way")
        # a refused change: the reload is not applied, generation 2 goes on
        edit(d, "ddl/inventory_events.sql", "quantity_change INT64", "quantity_change STRING")
        edit(d, "scripts/events/inventory.lua", '"n-" .. ev.reason', '"v3-" .. ev.reason')
        b.p.send_signal(signal.SIGHUP)
        b.wait_log("reload: failed, generation 2 keeps running")
        check("column quantity_change: the DDL says STRING, the table INTEGER" in b.stderr() or
              "column quantity_change: the DDL says STRING, the table INT64" in b.stderr(),
              b.stderr()[-1500:])
        events(s, "c.ndjson", INV, range(200, 250))
        wait_drained(s.emu, 250, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        rows = s.emu.rows("inventory_events")
        check_eq(sum(1 for r in rows if r.get("note") == "n-sale"), 150, "the old scripts ran on")
        check_eq(names(meta(s))[-1], "note", "the table unchanged")


@case
def storage_write_takes_the_new_column_without_a_restart():
    """bigquery.method = storage_write: after --update-tables patched the table on SIGHUP, the
    next AppendRows carry a writer schema with the new column (on the call already open) and
    its values land."""
    with Scenario() as s:
        if not s.emu.grpc:
            raise run.Skip("the emulator serves no gRPC (Storage Write API)")
        d, p = user_copy()
        b = Bepipe(s.emu, ["--update-tables", "--set", "bigquery.method=storage_write"],
                   pipeline=p)
        events(s, "a.ndjson", INV, range(100))
        wait_drained(s.emu, 100, [b])
        add_note(d)
        b.p.send_signal(signal.SIGHUP)
        b.wait_log("generation 2 loaded")
        events(s, "b.ndjson", INV, range(100, 200))
        wait_drained(s.emu, 200, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        check("storage_write: " in b.stderr(), "the rows went through AppendRows")
        rows = s.emu.rows("inventory_events")
        check_eq(len(rows), 200, "rows")
        check_eq(sum(1 for r in rows if r.get("note") == "n-sale"), 100, "the new rows filled it")
        check_eq(s.emu.rows("rejected_events"), [], "no row refused on the way")
