"""Rows checked against the table schema before they leave: a map with a typo
(a REQUIRED column left out) or an extra key gives a dead letter of stage `schema` naming the
field, both in `bepipe-lua test` and in a --input/--local-out run; the shipped scripts give
none on a generated corpus."""
import json
import os
import subprocess
import tempfile

import run as local
from run import check, check_eq
from check_mode import INV, cli, patch, run_events, user_copy

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def typo_copy():
    # `reason = ev.reasn`, the `amount = ev.amout` kind of typo, on a column made NOT NULL
    d, p = user_copy()
    sql = os.path.join(d, "ddl", "inventory_events.sql")
    src = open(sql).read()
    old = 'reason STRING OPTIONS'
    check(old in src, "inventory DDL has the reason column")
    open(sql, "w").write(src.replace(old, 'reason STRING NOT NULL OPTIONS', 1))
    patch(d, "events/inventory.lua", "reason = ev.reason,", "reason = ev.reasn,")
    return d, p


def extra_key_copy():
    d, p = user_copy()
    patch(d, "events/inventory.lua", "reason = ev.reason,", "reason = ev.reason,\n        methdo = 1,")
    return d, p


def local_run(p, lines):
    d = tempfile.mkdtemp(prefix="bepipe-schema-run-")
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = os.path.join(d, "out")
    r = cli(p, "--input", ev, "--local-out", out)
    check_eq(r.returncode, 0, "run exit code: " + r.stderr[-2000:])
    return out, r.stderr


@case
def missing_required_field_is_a_schema_dead_letter_in_test():
    # main: the row went out without `reason` and only BigQuery refused it
    d, p = typo_copy()
    out = run_events(p, [INV])
    check("line 1: DEAD schema: reason: missing REQUIRED field" in out, out)
    check("dead_schema=1" in out, "totals count it: " + out)


@case
def extra_key_is_a_schema_dead_letter_in_test():
    # main: `methdo = 1` passed `test` and --check; BigQuery said `no such field: methdo`
    d, p = extra_key_copy()
    out = run_events(p, [INV])
    check("line 1: DEAD schema: methdo: no such field" in out, out)


@case
def schema_dead_letters_in_a_local_run():
    for make, want in ((typo_copy, "reason: missing REQUIRED field"),
                       (extra_key_copy, "methdo: no such field")):
        d, p = make()
        out, err = local_run(p, [INV, INV.replace('"quantity_change":5', '"quantity_change":6')])
        check_eq(local.read_rows(out, "inventory_events"), [], "no row reaches the table")
        dead = local.read_rows(out, "rejected_events")
        check_eq(len(dead), 2, "both events are dead letters")
        for row in dead:
            check_eq(row["json"]["error_stage"], "schema", "stage")
            check_eq(row["json"]["reason"], want, "reason")
        check("dead_schema=2" in err, "summary counts them: " + err[-1500:])


@case
def shipped_scripts_give_no_schema_dead_letter():
    d = tempfile.mkdtemp(prefix="bepipe-schema-gen-")
    ev = os.path.join(d, "ev.ndjson")
    expect = local.gen(ev, 20000, seed=11)
    out = os.path.join(d, "out")
    r = cli(local.PIPELINE, "--input", ev, "--local-out", out)
    check_eq(r.returncode, 0, "run exit code: " + r.stderr[-2000:])
    check("dead_schema=0" in r.stderr, "no schema dead letter: " + r.stderr[-1500:])
    dead = local.read_rows(out, "rejected_events")
    check_eq([x for x in dead if x["json"]["error_stage"] == "schema"], [], "no schema rows")
    for table in ("inventory_events", "order_events", "user_activity_events"):
        check(len(local.read_rows(out, table)) > 0, table + " has rows")
    t = subprocess.run([local.BIN, "test", local.PIPELINE, ev], capture_output=True, text=True,
                       timeout=60)
    check("DEAD schema" not in t.stdout and "dead_schema" not in t.stdout,
          "test agrees: " + t.stdout[-500:])
    check(expect is not None, "generator wrote its expectation")


@case
def fixtures_expect_schema_dead_letters():
    d, p = extra_key_copy()
    ev = json.loads(INV)
    fx = os.path.join(d, "fx.ndjson")
    with open(fx, "w") as f:
        f.write(json.dumps({"event": ev, "expect": {"dead": "schema",
                                                    "reason": "methdo: no such field"}}) + "\n")
        f.write(json.dumps({"event": ev, "expect": {"table": "inventory_events"}}) + "\n")
    r = cli("test", p, fx)
    check_eq(r.returncode, 1, "the second fixture fails: " + r.stdout)
    check("FAIL line 2: expected table inventory_events, got dead schema" in r.stdout, r.stdout)
    check(r.stdout.rstrip().endswith("1 passed, 1 failed"), r.stdout)


@case
def schema_sighup_reads_the_ddl_again_with_the_scripts():
    # a column added to the DDL together with the script key that fills it: after SIGHUP the
    # new rows pass (the schemas read at start would refuse `note`: no such field)
    import signal
    d, p = user_copy()
    out = os.path.join(d, "out")
    inv = (INV + "\n").encode()
    dm = local.Daemon([p, "--input", "-", "--local-out", out, "--set", "bigquery.batch_ms=20"])
    try:
        dm.write(inv)
        local.wait_rows(out, "inventory_events", 1)
        sql = os.path.join(d, "ddl", "inventory_events.sql")
        src = open(sql).read()
        open(sql, "w").write(src.replace("  reason STRING", "  note STRING,\n  reason STRING", 1))
        patch(d, "events/inventory.lua", "reason = ev.reason,", "reason = ev.reason,\n        note = 'n',")
        dm.p.send_signal(signal.SIGHUP)
        dm.wait_log("generation 2 loaded")
        dm.write(inv.replace(b'"quantity_change":5', b'"quantity_change":6'))
        local.wait_rows(out, "inventory_events", 2)
    finally:
        rc, err = dm.finish()
    check_eq(rc, 0, "exit code: " + err[-1000:])
    rows = local.read_rows(out, "inventory_events")
    check_eq([r["json"].get("note") for r in rows], [None, "n"], "the new column filled after")
    check_eq(local.read_rows(out, "rejected_events"), [], "no dead letter")


def fixtures_file(d, lines):
    fx = os.path.join(d, "fx.ndjson")
    with open(fx, "w") as f:
        f.write("\n".join(lines) + "\n")
    return fx


@case
def check_with_fixtures_refuses_a_field_the_table_lacks():
    # main: `methdo = 1` passed --check; only BigQuery refused it at run time
    d, p = extra_key_copy()
    r = cli("--check", p)
    check_eq(r.returncode, 0, "without samples --check cannot know: " + r.stderr)
    r = cli("--check", p, "--fixtures", fixtures_file(d, [INV]))
    check(r.returncode != 0, "refused with samples: " + r.stdout + r.stderr)
    check("route inventory: sample line 1: table inventory_events would refuse the row: "
          "methdo: no such field" in r.stdout, r.stdout)
    check("sample rows: 1 of 1 events checked against their tables' schemas, 1 refused"
          in r.stdout, r.stdout)


@case
def check_with_fixtures_notes_a_column_no_sample_sets():
    # `amount = ev.amout` on a NULLABLE column stores NULL with nobody told: --check says which
    # column no sample row sets (a note, not a failure: a column may be optional)
    d, p = user_copy()
    patch(d, "events/inventory.lua", "reason = ev.reason,", "reason = ev.reasn,")
    r = cli("--check", p, "--fixtures", fixtures_file(d, [INV, INV]))
    check_eq(r.returncode, 0, "a note only: " + r.stdout + r.stderr)
    check("note: route inventory: table inventory_events: no sample row sets reason "
          "(2 sample rows; a typo in the map?)" in r.stdout, r.stdout)


@case
def check_with_fixtures_accepts_the_shipped_examples():
    fx = os.path.join(local.ROOT, "examples", "fixtures.ndjson")
    r = cli("--check", local.PIPELINE, "--fixtures", fx)
    check_eq(r.returncode, 0, "shipped pipeline and fixtures: " + r.stdout + r.stderr)
    check("0 refused" in r.stdout and "no sample row sets" not in r.stdout, r.stdout)


@case
def check_with_fixtures_respects_expected_schema_dead_letters():
    d, p = extra_key_copy()
    fx = fixtures_file(d, [json.dumps({"event": json.loads(INV),
                                       "expect": {"dead": "schema"}})])
    r = cli("--check", p, "--fixtures", fx)
    check_eq(r.returncode, 0, "a fixture that expects the refusal: " + r.stdout + r.stderr)


@case
def schema_check_off_sends_rows_unchecked():
    # the escape hatch: with schema.check=0 the row with `methdo` reaches the (local) table
    d, p = extra_key_copy()
    out, err = local_run(p, [INV])
    check_eq(len(local.read_rows(out, "inventory_events")), 0, "checked: refused")
    d2 = tempfile.mkdtemp(prefix="bepipe-schema-off-")
    ev = fixtures_file(d2, [INV])
    out2 = os.path.join(d2, "out")
    r = cli(p, "--input", ev, "--local-out", out2, "--set", "schema.check=0")
    check_eq(r.returncode, 0, "run exit code: " + r.stderr[-2000:])
    rows = local.read_rows(out2, "inventory_events")
    check_eq([x["json"].get("methdo") for x in rows], [1], "the row went out unchecked")
