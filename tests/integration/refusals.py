"""A table that refuses for a while (quota 403, a grant still propagating, a table being
recreated: 404) pauses: its rows are held and sent again, /readyz says which table and why, and
only a refusal that outlasts bigquery.refused_grace_seconds dead-letters rows (or stops the
process, for the dead-letter table), as every 403/404 used to at once."""
import collections
import time

import cloud
from metrics import http, listen_port
import run
from run import Failure, check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


INSERT = "bigquery.tabledata.insertAll"


def metric(port, name):
    """The value of an unlabelled counter on /metrics."""
    for line in http(port, "/metrics")[2].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise Failure("no metric " + name)


def stages(emu):
    return collections.Counter(r["error_stage"] for r in emu.rows("rejected_events"))


@case
def quota_403_pauses_the_table_and_loses_no_row():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 1500, seed=71, invalid=0)
        s.emu.publish(path)
        s.emu.fault({"op": INSERT, "path": "/order_events/insertAll", "status": 403,
                     "reason": "quotaExceeded", "message": "Exceeded rate limits: too many "
                     "table update operations for this table", "count": 1})
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 1500, [b], timeout=90)
        check_eq(b.stop(), 0, "exit code")
        check_eq(stages(s.emu).get("insert", 0), 0, "no row dead-lettered for a quota 403")
        cloud.verify(s.emu, expect, raw)
        check("table order_events refused" in b.stderr() and "paused" in b.stderr(),
              "the pause is logged:\n" + b.stderr()[-2000:])
        check("accepts rows again" in b.stderr(), "and its end")


@case
def table_404_for_seconds_pauses_readyz_says_why_rows_stored_after():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 1500, seed=72, invalid=0)
        rule = s.emu.fault({"op": INSERT, "path": "/inventory_events/insertAll", "status": 404,
                            "count": -1})["rules"][0]
        b = cloud.Bepipe(s.emu, ["--http", "127.0.0.1:0"])
        port = listen_port(b.stderr)
        # the first 1,000 now; the rest once the table is paused, which must then stay in
        # Pub/Sub: pulling waits while a destination refuses
        with open(path, "rb") as f:
            lines = f.readlines()
        first, rest = path + ".1", path + ".2"
        with open(first, "wb") as f:
            f.writelines(lines[:1000])
        with open(rest, "wb") as f:
            f.writelines(lines[1000:])
        s.emu.publish(first)
        seen, end = None, time.time() + 30
        while time.time() < end and not seen:
            st, _, body = http(port, "/readyz")
            if st == 503 and "table inventory_events paused" in body:
                seen = body
            time.sleep(0.1)
        check(seen, "/readyz names the paused table")
        check("404" in seen, "and the answer: " + seen)
        time.sleep(2)     # pulls already in flight end (the emulator answers them in 1 s)
        pulled = metric(port, "bepipe_messages_pulled_total")
        s.emu.publish(rest)
        time.sleep(3)     # the table stays away a few seconds more
        check_eq(len(s.emu.rows("inventory_events")), 0, "nothing stored while it refuses")
        check_eq(metric(port, "bepipe_messages_pulled_total"), pulled,
                 "no pull while the table is paused")
        check(b.p.poll() is None, "still running")
        s.emu.admin("DELETE", f"/_emulator/faults/{rule['id']}")
        cloud.wait_drained(s.emu, 1500, [b], timeout=120)
        end = time.time() + 20
        while time.time() < end and http(port, "/readyz")[0] != 200:
            time.sleep(0.1)
        check_eq(http(port, "/readyz")[::2], (200, "ready\n"), "/readyz after the pause")
        check_eq(b.stop(), 0, "exit code")
        check_eq(stages(s.emu).get("insert", 0), 0, "no row dead-lettered for a 404 that passed")
        cloud.verify(s.emu, expect, raw)


@case
@run.errors(r" error batch: table order_events has refused requests for \d+ s ",
            r" error batch: table order_events refused \d+ rows for good; they are dead-lettered: ")
def refusal_past_the_grace_dead_letters_as_before():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 600, seed=73, invalid=0)
        s.emu.publish(path)
        s.emu.fault({"op": INSERT, "path": "/order_events/insertAll", "status": 403,
                     "reason": "quotaExceeded", "count": -1})
        t0 = time.time()
        b = cloud.Bepipe(s.emu, ["--set", "bigquery.refused_grace_seconds=3"])
        cloud.wait_drained(s.emu, 600, [b], timeout=90)
        took = time.time() - t0
        check_eq(b.stop(), 0, "exit code")
        orders = expect["rows"]["order_events"]
        check(orders > 0, "the corpus has orders")
        check_eq(len(s.emu.rows("order_events")), 0, "the table never accepted")
        check_eq(stages(s.emu).get("insert", 0), orders, "every order dead-lettered (insert)")
        for t in ["inventory_events", "user_activity_events"]:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], "rows of " + t)
        check(took >= 3, f"not before the grace ({took:.1f} s)")
        check("giving up on" in b.stderr(), "the end of the grace is logged")


@case
@run.errors(r" error batch: table rejected_events has refused requests for \d+ s ",
            r" error main: the dead-letter table rejected_events cannot be written \(insertAll ")
def dead_letter_table_refusing_past_the_grace_stops_the_process():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=74, invalid=20)
        s.emu.publish(path)
        s.emu.fault({"op": INSERT, "path": "/rejected_events/insertAll", "status": 403,
                     "count": -1})
        t0 = time.time()
        b = cloud.Bepipe(s.emu, ["--set", "bigquery.refused_grace_seconds=3"])
        rc = b.wait_exit(90)
        check_eq(rc, 1, "exit code")
        check(time.time() - t0 >= 3, "not before the grace")
        check("dead-letter table rejected_events cannot be written" in b.stderr(),
              "says why:\n" + b.stderr()[-1500:])
        check_eq(len(s.emu.rows("rejected_events")), 0, "nothing dead-lettered")
        st = s.emu.sub_state()
        check(st["backlog"] + st["outstanding"] > 0, "the invalid events were not acked")


@case
def bucket_403_for_seconds_holds_the_objects_then_uploads_them():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 800, seed=75, invalid=0)
        rule = s.emu.fault({"op": "storage.objects.insert.*", "status": 403, "count": -1,
                            "message": "The billing account for the owning project is "
                            "disabled"})["rules"][0]
        b = cloud.Bepipe(s.emu, ["--http", "127.0.0.1:0"])
        port = listen_port(b.stderr)
        # the first 1,000 now; the rest once the table is paused, which must then stay in
        # Pub/Sub: pulling waits while a destination refuses
        with open(path, "rb") as f:
            lines = f.readlines()
        first, rest = path + ".1", path + ".2"
        with open(first, "wb") as f:
            f.writelines(lines[:1000])
        with open(rest, "wb") as f:
            f.writelines(lines[1000:])
        s.emu.publish(first)
        seen, end = None, time.time() + 30
        while time.time() < end and not seen:
            st, _, body = http(port, "/readyz")
            if st == 503 and "archive uploads paused" in body:
                seen = body
            time.sleep(0.1)
        check(seen, "/readyz says the archive waits")
        time.sleep(3)
        check(b.p.poll() is None, "still running:\n" + b.stderr()[-1500:])
        check_eq(s.emu.objects(), {}, "nothing uploaded while refused")
        s.emu.admin("DELETE", f"/_emulator/faults/{rule['id']}")
        cloud.wait_drained(s.emu, 800, [b], timeout=120)
        end = time.time() + 20
        while time.time() < end and http(port, "/readyz")[0] != 200:
            time.sleep(0.1)
        check_eq(http(port, "/readyz")[::2], (200, "ready\n"), "/readyz after the pause")
        check_eq(b.stop(), 0, "exit code")
        cloud.verify(s.emu, expect, raw)


@case
@run.errors(r" error archive: object of \d+ lines not stored, their messages will be redelivered: ",
            r" error archive: the bucket has refused \S+ for \d+ s \(",
            r" error main: the archive cannot be written \(upload of ")
def bucket_refusing_past_the_grace_stops_as_before():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 200, seed=76, invalid=0)
        s.emu.publish(path)
        s.emu.fault({"op": "storage.objects.insert.*", "status": 404, "count": -1})
        t0 = time.time()
        b = cloud.Bepipe(s.emu, ["--set", "bigquery.refused_grace_seconds=3",
                                 "--set", "drain_seconds=3"])
        rc = b.wait_exit(90)
        check(rc != 0, "non-zero exit")
        check(time.time() - t0 >= 3, "not before the grace")
        check("the archive cannot be written" in b.stderr(), "says why:\n" + b.stderr()[-1500:])
        st = s.emu.sub_state()
        check_eq(st["backlog"] + st["outstanding"], 200, f"nothing acked: {st}")


@case
@run.errors(*cloud.RETRIES_RUN_OUT)
def probe_failing_otherwise_leaves_no_pause_behind():
    """The paused table's probe fails with 500s past its retries: its rows are nacked, nothing
    is held, and the table must not stay paused (pulling waits on a paused table, and with
    nothing held nothing would probe it again: the nacked messages were never pulled again)."""
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 30, seed=75, invalid=0)
        check(expect["rows"]["order_events"] > 0, "the corpus has orders")
        s.emu.publish(path)
        s.emu.fault({"op": INSERT, "path": "/order_events/insertAll", "status": 403,
                     "reason": "quotaExceeded", "count": 1})
        s.emu.fault({"op": INSERT, "path": "/order_events/insertAll", "status": 500,
                     "count": 2})
        b = cloud.Bepipe(s.emu, ["--set", "retry.attempts=2"])
        cloud.wait_drained(s.emu, 30, [b], timeout=60)
        check_eq(b.stop(), 0, "exit code")
        check_eq(stages(s.emu).get("insert", 0), 0, "no row dead-lettered")
        cloud.verify(s.emu, expect, raw)
        check("rows not stored, their messages will be redelivered" in b.stderr(),
              "the probe failed as planned:\n" + b.stderr()[-2000:])


@case
def sigterm_while_the_bucket_refuses_nacks_and_frees_the_held_objects():
    """SIGTERM while the bucket refuses for now: the drain tries for drain_seconds, then exits 1
    with every message still unacked (nothing is acked before its object is stored), and the
    objects the store still holds are freed (the sanitizer build reports no leak)."""
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=76, invalid=0)
        s.emu.publish(path)
        s.emu.fault({"op": "storage.objects.insert.*", "status": 403, "reason": "quotaExceeded",
                     "count": -1})
        b = cloud.Bepipe(s.emu, ["--set", "drain_seconds=4"])
        end = time.time() + 30
        while time.time() < end and "the object is held" not in b.stderr():
            time.sleep(0.2)
        check("the object is held" in b.stderr(), "an upload held:\n" + b.stderr()[-1500:])
        t0 = time.time()
        check_eq(b.stop(timeout=60), 1, "exit code after the drain's timeout")
        check(time.time() - t0 < 40, "the drain ends at drain_seconds")
        check_eq(s.emu.objects(), {}, "nothing uploaded")
        st = s.emu.sub_state()
        check_eq(st["backlog"] + st["outstanding"], 300, "no message acked")


@case
def file_input_ending_while_a_table_is_paused_waits_for_it():
    # a file source has no redelivery: its drain (at the end of the file) must keep trying a
    # paused table for drain_seconds, not drop the held rows
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 600, seed=77, invalid=0)
        rule = s.emu.fault({"op": INSERT, "path": "/order_events/insertAll", "status": 403,
                            "reason": "quotaExceeded", "count": -1})["rules"][0]
        b = cloud.Bepipe(s.emu, ["--input", path, "--set", "drain_seconds=60"])
        b.wait_log("draining (end of input)")
        time.sleep(2)
        check(b.p.poll() is None, "the drain waits for the paused table")
        s.emu.admin("DELETE", f"/_emulator/faults/{rule['id']}")
        check_eq(b.wait_exit(60), 0, "exit code:\n" + b.stderr()[-1500:])
        for t in cloud.TABLES:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], "rows in " + t)
        check_eq(stages(s.emu).get("insert", 0), 0, "no dead letter")
