"""Poison messages: an event whose row, or a message whose dead letter,
is too large for one insertAll becomes a dead letter with a reason, never a stopped pipeline;
invalid UTF-8 inside a mapped field reaches BigQuery as U+FFFD."""
import base64
import json
import os
import time

import cloud
import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def good_lines(d, n, seed):
    path = os.path.join(d, "good.ndjson")
    expect = local.gen(path, n, seed=seed, invalid=0)
    with open(path, "rb") as f:
        return [l for l in f.read().split(b"\n") if l.strip()], expect


def slash_order(lines):
    """A valid order whose order_id is 2 MB of raw U+0001 bytes (lua-cjson reads raw control
    characters in strings): a row must write each as '\\u0001', so its row is 12 MB, over the
    insertAll limit, from a 2 MB message. (It was 5.5 MB of '/', which lua-cjson wrote as '\\/';
    the row writer writes '/' as it is, which insertAll takes.)"""
    ev = json.loads(next(l for l in lines if b'"order"' in l))
    ev["order_id"] = "@ORDER_ID@"
    return json.dumps(ev).encode().replace(b"@ORDER_ID@", b"\x01" * (2048 * 1024))


def dead_of(rows, stage):
    return [r for r in rows if r["error_stage"] == stage]


@case
def poison_row_too_large_for_insertall_file_input_goes_on():
    with local.Tmp() as d:
        lines, expect = good_lines(d, 40, seed=81)
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "wb") as f:
            f.write(b"\n".join(lines[:20] + [slash_order(lines)] + lines[20:]) + b"\n")
        out = os.path.join(d, "out")
        rc, _, err = local.run([local.PIPELINE, "--input", ev, "--local-out", out])
        check_eq(rc, 0, "exit code: " + err[-1500:])
        for t in local.TABLES:
            check_eq(len(local.read_rows(out, t)), expect["rows"][t], "rows of " + t)
        dead = [r["json"] for r in local.read_rows(out, "rejected_events")]
        check_eq(len(dead), 1, "one dead letter")
        check_eq(dead[0]["error_stage"], "insert", "stage")
        check("exceeds the insertAll limit" in dead[0]["reason"], dead[0]["reason"])
        check_eq(dead[0]["event_type"], "order", "event type")
        check(dead[0]["raw_payload"].endswith(" bytes]") and "\u2026[truncated " in
              dead[0]["raw_payload"], "raw payload cut with a marker")
        check(len(dead[0]["raw_payload"]) < 1100 * 1024, "raw payload cut near 1 MB")
        errors = [l for n, ls in local.archive_objects(out).items() if "/errors/" in "/" + n
                  for l in ls]
        check_eq(len(errors), 1, "the whole raw line in the errors/ archive")
        check_eq(local.unmark(errors[0]), slash_order(lines), "archived whole (exact bytes)")


def pull_reply(msgs):
    rm = []
    for i, (data, attrs) in enumerate(msgs):
        m = {"data": base64.b64encode(data).decode(), "messageId": f"poison-{i}",
             "publishTime": "2026-01-01T00:00:00.000Z"}
        if attrs:
            m["attributes"] = attrs
        # unknown ackIds of this shape are acked silently by the emulator
        rm.append({"ackId": f"poison-{900000 + i}-1", "message": m})
    return json.dumps({"receivedMessages": rm})


@case
def poison_cloud_row_too_large_for_insertall_is_a_dead_letter():
    with cloud.Scenario() as s:
        lines, expect = good_lines(s.tmp, 200, seed=82)
        path = os.path.join(s.tmp, "ev.ndjson")
        big = slash_order(lines)
        with open(path, "wb") as f:
            f.write(b"\n".join(lines[:100] + [big] + lines[100:]) + b"\n")
        s.emu.publish(path)
        # small objects: the 2 MB line must fit an object of its own past roll_bytes
        b = cloud.Bepipe(s.emu, ["--set", "archive.roll_bytes=65536"])
        cloud.wait_drained(s.emu, 201, [b], timeout=60)
        time.sleep(0.5)
        check(b.p.poll() is None, "still running:\n" + b.stderr()[-2000:])
        check_eq(b.stop(), 0, "exit code")
        dead = s.emu.rows("rejected_events")
        check_eq(len(dead), 1, "the oversized row dead-lettered")
        check_eq(dead[0]["error_stage"], "insert", "stage")
        check("exceeds the insertAll limit" in dead[0]["reason"], dead[0]["reason"])
        check("\u2026[truncated " in dead[0]["raw_payload"], "raw payload cut")
        cloud.verify(s.emu, expect, lines + [big])


@case
def poison_cloud_10mb_of_attributes_is_a_dead_letter():
    with cloud.Scenario() as s:
        lines, expect = good_lines(s.tmp, 100, seed=84)
        path = os.path.join(s.tmp, "ev.ndjson")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        # 10 MB of attributes (past Pub/Sub's own limits: a hostile or broken server) on a
        # message that is not JSON (a dead letter) and on a valid one (a row)
        attrs = {f"k{i}": chr(97 + i) * 1_000_000 for i in range(10)}
        # one such message per pull reply: two in one reply (20 MB) would pass the source's
        # per-pull reply cap (16 MB, which holds any one message Pub/Sub accepts)
        s.emu.fault({"op": "pubsub.subscriptions.pull",
                     "body": pull_reply([(b"not json", attrs)])})
        s.emu.fault({"op": "pubsub.subscriptions.pull",
                     "body": pull_reply([(lines[0], attrs)])})
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 100 + 2, [b], timeout=60)
        time.sleep(0.5)
        check(b.p.poll() is None, "still running:\n" + b.stderr()[-2000:])
        check_eq(b.stop(), 0, "exit code")
        dead = s.emu.rows("rejected_events")
        check_eq([(d["message_id"], d["error_stage"]) for d in dead], [("poison-0", "parse")],
                 "the non-JSON message dead-lettered")
        a = dead[0]["attributes"]
        a = json.loads(a) if isinstance(a, str) else a
        check("\u2026[truncated " in a["truncated"], "attributes cut with a marker")
        check(len(a["truncated"]) < 300 * 1024, "attributes cut")
        twice = json.loads(lines[0])["event_type"] + "_events"
        for t in local.TABLES:
            # lines[0] comes twice: published, and in the hostile reply under another id
            want = expect["rows"][t] + (1 if t == twice else 0)
            check_eq(len(s.emu.rows(t)), want, "rows of " + t)
        st = s.emu.sub_state()
        check_eq((st["backlog"], st["outstanding"]), (0, 0), "every message acked")


@case
def poison_invalid_utf8_in_a_field_reaches_bigquery_as_replacement_char():
    with cloud.Scenario() as s:
        lines, expect = good_lines(s.tmp, 50, seed=83)
        ev = json.loads(next(l for l in lines if b'"order"' in l))
        ev["order_id"] = "ord-@@-utf8"
        bad = json.dumps(ev).encode().replace(b"@@", b"\xff\xc3(\xed\xa0\x80")
        path = os.path.join(s.tmp, "ev.ndjson")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines + [bad]) + b"\n")
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 51, [b], timeout=40)
        check_eq(b.stop(), 0, "exit code")
        ids = [r["order_id"] for r in s.emu.rows("order_events")]
        check_eq(len(ids), expect["rows"]["order_events"] + 1, "every order stored")
        check("ord-\ufffd\ufffd(\ufffd\ufffd\ufffd-utf8" in ids,
              "invalid bytes replaced by U+FFFD: " + repr([i for i in ids if "ord-" in i]))
