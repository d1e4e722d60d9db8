"""Message metadata columns and template-format dead letters.

A route whose module says `metadata = true` (or a list of column names) gets message_id,
publish_time, attributes, subscription_name and delivery_attempt in its rows, written by C after
the map (as Pub/Sub BigQuery subscriptions' write_metadata does); --check and start refuse such a
route whose table lacks a column. `dead_letter.format = "dataflow"` writes dead letters as the
rows of Google's Pub/Sub-to-BigQuery template's error-records table (ddl/error_records.sql),
which the emulator checks against that schema like BigQuery. Through the emulator where the
values come from Pub/Sub; locally (--input) otherwise."""
import base64
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time

import cloud
import run as local
from run import check, check_eq
from check_mode import INV, cli

CASES = []

P, T, S = cloud.PROJECT, cloud.TOPIC, cloud.SUB
META = ["message_id", "publish_time", "attributes", "subscription_name", "delivery_attempt"]
META_DDL = {"message_id": "STRING", "publish_time": "TIMESTAMP", "attributes": "JSON",
            "subscription_name": "STRING", "delivery_attempt": "INT64"}
# GoogleCloudPlatform/DataflowTemplates, streaming_source_deadletter_table_schema.json
TEMPLATE = [("timestamp", "TIMESTAMP", "REQUIRED"), ("payloadString", "STRING", "REQUIRED"),
            ("payloadBytes", "BYTES", "REQUIRED"), ("attributes", "RECORD", "REPEATED"),
            ("errorMessage", "STRING", "NULLABLE"), ("stacktrace", "STRING", "NULLABLE")]


def case(fn):
    CASES.append(fn)
    return fn


def meta_copy(metadata_lua, columns):
    """scripts/ + ddl/ in a temp folder; the inventory route asks for metadata_lua (Lua text)
    and its DDL gains `columns`."""
    d = tempfile.mkdtemp(prefix="bepipe-meta-")
    shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(d, "scripts"))
    shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(d, "ddl"))
    inv = os.path.join(d, "scripts", "events", "inventory.lua")
    src = open(inv).read()
    old = '    time_field = "timestamp",\n'
    check(old in src, "inventory.lua has its time_field")
    if metadata_lua is not None:
        src = src.replace(old, old + f"    metadata = {metadata_lua},\n", 1)
    open(inv, "w").write(src)
    sql = os.path.join(d, "ddl", "inventory_events.sql")
    src = open(sql).read()
    old = "  reason STRING"
    check(old in src, "inventory DDL has reason")
    add = "".join(f"  {c} {META_DDL[c]},\n" for c in columns)
    open(sql, "w").write(src.replace(old, add + old, 1))
    return d, os.path.join(d, "scripts", "pipeline.lua")


def inv_line(i, reason="sale"):
    return (local.INV % (i, reason)).rstrip("\n")


def rest(emu, method, path, body=None):
    return emu.admin(method, "/v1/" + path, body)


def publish(emu, topic, lines, attrs=None):
    """Publishes raw lines (bytes or str); returns their messageIds, in order."""
    msgs = []
    for l in lines:
        raw = l if isinstance(l, bytes) else l.encode()
        m = {"data": base64.b64encode(raw).decode()}
        if attrs:
            m["attributes"] = attrs
        msgs.append(m)
    return rest(emu, "POST", f"projects/{P}/topics/{topic}:publish", {"messages": msgs})["messageIds"]


def pull_all(emu, sub, n):
    got = {}
    end = time.time() + 30
    while len(got) < n and time.time() < end:
        r = rest(emu, "POST", f"projects/{P}/subscriptions/{sub}:pull", {"maxMessages": 100})
        for rm in (r or {}).get("receivedMessages", []):
            got[rm["message"]["messageId"]] = rm
    check_eq(len(got), n, "the peek subscription got every message")
    return got


def micros(ts):
    """RFC 3339 (any fraction) -> integer microseconds since the epoch."""
    ts = ts.replace(" ", "T").rstrip("Z").replace("+00:00", "")
    main, _, frac = ts.partition(".")
    dt = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 1000000 + int((frac + "000000")[:6])


def as_json(v):
    return v if isinstance(v, (dict, list)) or v is None else json.loads(v)


def wait_rows(emu, table, n, procs, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if len(emu.rows(table)) >= n:
            return emu.rows(table)
        for b in procs:
            if b.p.poll() is not None:
                raise local.Failure("bepipe-lua exited early:\n" + b.stderr()[-3000:])
        time.sleep(0.2)
    raise local.Failure(f"{table}: {len(emu.rows(table))} rows, not {n}\n" +
                        "\n".join(b.stderr()[-2000:] for b in procs))


@case
def metadata_true_fills_all_five_columns_through_pubsub():
    # main: `metadata` is an unknown key of a route module (the pipeline does not load)
    d, p = meta_copy("true", META)
    with cloud.Scenario(tables=False) as s:
        emu = s.emu
        rest(emu, "PUT", f"projects/{P}/subscriptions/peek", {"topic": f"projects/{P}/topics/{T}"})
        # a second topic whose subscription has a dead-letter policy: Pub/Sub sends deliveryAttempt
        for t in ("second-topic", "second-dead"):
            rest(emu, "PUT", f"projects/{P}/topics/{t}", {})
        rest(emu, "PUT", f"projects/{P}/subscriptions/dlsub", {
            "topic": f"projects/{P}/topics/second-topic", "deadLetterPolicy": {
                "deadLetterTopic": f"projects/{P}/topics/second-dead", "maxDeliveryAttempts": 5}})
        ids = publish(emu, T, [inv_line(i) for i in range(6)], {"src": "web", "k": "v"})
        peek = pull_all(emu, "peek", 6)
        b = cloud.Bepipe(emu, ["--create-tables", "--set", "bigquery.batch_ms=50"], pipeline=p)
        rows = wait_rows(emu, "inventory_events", 6, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        check_eq(sorted(r["message_id"] for r in rows), sorted(ids), "message_id = messageId")
        for r in rows:
            pm = peek[r["message_id"]]["message"]
            check(abs(micros(r["publish_time"]) - micros(pm["publishTime"])) <= 1,
                  f"publish_time {r['publish_time']} is the publish time {pm['publishTime']}")
            check_eq(as_json(r["attributes"]), {"src": "web", "k": "v"}, "attributes as JSON")
            check_eq(r["subscription_name"], f"projects/{P}/subscriptions/{S}", "subscription")
            check_eq(r.get("delivery_attempt"), None, "no dead-letter policy: no delivery attempt")
            check_eq(r["reason"], "sale", "the map's columns are still there")
        check_eq(emu.rows("rejected_events"), [], "no dead letter")
        ids2 = publish(emu, "second-topic", [inv_line(i) for i in range(10, 13)])
        b2 = cloud.Bepipe(emu, ["--input_subscription", f"projects/{P}/subscriptions/dlsub",
                                "--set", "bigquery.batch_ms=50"], pipeline=p)
        rows = wait_rows(emu, "inventory_events", 9, [b2])
        check_eq(b2.stop(), 0, "exit code: " + b2.stderr()[-1500:])
        second = [r for r in rows if r["message_id"] in ids2]
        check_eq(len(second), 3, "rows of the second subscription")
        for r in second:
            check_eq(int(r["delivery_attempt"]), 1, "Pub/Sub's deliveryAttempt")
            check_eq(r["subscription_name"], f"projects/{P}/subscriptions/dlsub", "subscription")
            check_eq(r.get("attributes"), None, "a message without attributes")


@case
def metadata_list_fills_only_those_columns():
    # the DDL has only the two columns: any other metadata column would be a schema dead letter
    d, p = meta_copy('{ "message_id", "delivery_attempt" }', ["message_id", "delivery_attempt"])
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(inv_line(1) + "\n" + inv_line(2) + "\n")
    out = os.path.join(d, "out")
    r = cli(p, "--input", ev, "--local-out", out)
    check_eq(r.returncode, 0, "run: " + r.stderr[-1500:])
    rows = [x["json"] for x in local.read_rows(out, "inventory_events")]
    check_eq(len(rows), 2, "both rows stored: " + r.stderr[-800:])
    for i, row in enumerate(rows):
        check_eq(row["message_id"], f"ev.ndjson:{i + 1}", "a file's message id is file:line")
        check_eq(row["delivery_attempt"], None, "no delivery attempt from a file")
        for c in ("publish_time", "attributes", "subscription_name"):
            check(c not in row, f"{c} not asked for, not written")
    check_eq(local.read_rows(out, "rejected_events"), [], "no dead letter")
    t = cli("test", p, ev)
    check('"message_id":"test:1"' in t.stdout and "publish_time" not in t.stdout,
            "`bepipe-lua test` shows the same columns: " + t.stdout)


@case
def metadata_wins_over_a_map_key_of_the_same_name():
    d, p = meta_copy('{ "message_id" }', ["message_id"])
    inv = os.path.join(d, "scripts", "events", "inventory.lua")
    src = open(inv).read()
    check("reason = ev.reason," in src, "inventory map sets reason")
    open(inv, "w").write(src.replace("reason = ev.reason,", "reason = ev.reason,\n        message_id = 'mine',", 1))
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(inv_line(1) + "\n")
    out = os.path.join(d, "out")
    r = cli(p, "--input", ev, "--local-out", out)
    check_eq(r.returncode, 0, "run: " + r.stderr[-1500:])
    rows = local.read_rows(out, "inventory_events")
    check_eq([x["json"]["message_id"] for x in rows], ["ev.ndjson:1"], "the message's id wins")
    text = open(os.path.join(out, "bigquery", "inventory_events.ndjson")).read()
    check_eq(text.count('"message_id"'), 1, "one message_id key in the row: " + text)


@case
def check_refuses_a_metadata_route_whose_ddl_lacks_a_column():
    # main: --check passed and every row was refused by BigQuery (no such field: message_id)
    d, p = meta_copy("true", [c for c in META if c != "delivery_attempt"])
    r = cli("--check", p)
    check(r.returncode != 0, "refused: " + r.stdout)
    check("route inventory" in r.stderr and "delivery_attempt" in r.stderr and
          "inventory_events" in r.stderr and "INT64" in r.stderr,
          "names the route, the column, the table and its type: " + r.stderr)
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write(inv_line(1) + "\n")
    r = cli(p, "--input", ev, "--local-out", os.path.join(d, "out"))
    check(r.returncode != 0 and "delivery_attempt" in r.stderr, "start refuses it too: " + r.stderr)
    d, p = meta_copy('{ "message_id", "ordering_key" }', ["message_id"])
    r = cli("--check", p)
    check(r.returncode != 0 and "metadata must be true or a list of" in r.stderr,
          "an unknown column name is refused: " + r.stderr)
    d, p = meta_copy("true", META)
    r = cli("--check", p)
    check_eq(r.returncode, 0, "with every column it passes: " + r.stderr)


@case
def check_refuses_a_dead_letter_table_of_the_other_format():
    r = cli("--check", "--set", "dead_letter.format=dataflow", "--set",
            "dead_letter.table=rejected_events", local.PIPELINE)
    check(r.returncode != 0 and "rejected_events has no column timestamp" in r.stderr,
          "dataflow format into rejected_events: " + r.stderr)
    r = cli("--check", "--set", "dead_letter.table=events_error_records", local.PIPELINE)
    check(r.returncode != 0 and "events_error_records has no column message_id" in r.stderr,
          "rejected_events format into the template's table: " + r.stderr)
    r = cli("--check", "--set", "dead_letter.format=dataflow", "--set",
            "dead_letter.table=events_error_records", local.PIPELINE)
    check_eq(r.returncode, 0, "format and table agree: " + r.stderr)
    r = cli("--check", "--set", "dead_letter.format=beam", local.PIPELINE)
    check(r.returncode != 0 and
          "dead_letter.format: expected rejected_events or dataflow, got \"beam\"" in r.stderr,
          r.stderr)


@case
def dataflow_dead_letters_are_accepted_by_the_templates_schema():
    # main: dead_letter.format is an unknown option and no such table exists
    with cloud.Scenario(tables=False) as s:
        emu = s.emu
        bad = [b'not json at all', b'{"event_type":"nope"}', b'\xff\xfe{"binary":1}',
               inv_line(1, "stolen").encode()]
        ids = publish(emu, T, bad, {"src": "web", "k": "v"})
        good = publish(emu, T, [inv_line(2)])
        b = cloud.Bepipe(emu, ["--create-tables", "--set", "dead_letter.format=dataflow", "--set",
                               "dead_letter.table=events_error_records", "--set",
                               "bigquery.batch_ms=50"])
        rows = wait_rows(emu, "events_error_records", 4, [b])
        wait_rows(emu, "inventory_events", 1, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        meta = json.load(open(os.path.join(emu.data, "bigquery", P, cloud.DATASET,
                                           "events_error_records.table.json")))
        fields = [(f["name"], f["type"], f.get("mode", "NULLABLE")) for f in meta["schema"]["fields"]]
        check_eq(fields, TEMPLATE, "--create-tables made the template's schema")
        check_eq([(f["name"], f["type"]) for f in meta["schema"]["fields"][3]["fields"]],
                 [("key", "STRING"), ("value", "STRING")], "attributes {key, value}")
        check_eq(meta.get("timePartitioning", {}).get("field"), "timestamp", "by day of timestamp")
        check_eq(len(rows), 4, "every invalid event, accepted by the emulator's schema check")
        by_raw = {base64.b64decode(r["payloadBytes"]): r for r in rows}
        check_eq(sorted(by_raw), sorted(bad), "payloadBytes decodes to the raw payload")
        for raw, r in by_raw.items():
            check_eq(r["payloadString"], raw.decode(errors="replace"), "payloadString")
            check_eq(sorted((a["key"], a["value"]) for a in r["attributes"]),
                     [("k", "v"), ("src", "web")], "attributes as key/value records")
            check(abs(micros(r["timestamp"]) / 1e6 - time.time()) < 120, "timestamp: now")
            check(any(i in r["stacktrace"] for i in ids), "stacktrace names the message")
        msgs = {raw: by_raw[raw]["errorMessage"] for raw in bad}
        check(msgs[bad[0]].startswith("parse: "), msgs[bad[0]])
        check(msgs[bad[1]].startswith("route: event_type: unknown event type 'nope'"), msgs[bad[1]])
        check(msgs[bad[3]].startswith("validate: reason: "), msgs[bad[3]])
        check_eq(emu.rows("rejected_events"), [], "nothing in rejected_events")
        check(good, "the valid event was published")
        objs = emu.objects()
        errs = [l for n, lines in objs.items() if n.startswith("output/errors/") for l in lines]
        # bytes that are not text travel base64 in a {"bepipe_raw_b64":...} line: decoded, every
        # raw payload is there exactly
        errs = [base64.b64decode(json.loads(l)["bepipe_raw_b64"])
                if l.startswith(b'{"bepipe_raw_b64":') else l for l in errs]
        check_eq(sorted(errs), sorted(bad), "the raw lines still go to errors/")
