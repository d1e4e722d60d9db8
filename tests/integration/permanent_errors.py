"""Permanent errors never loop: an API answer that retrying cannot fix sends the
affected rows to the dead letter with the API's reason, or, when the dead-letter table itself is
unusable, stops the pipeline with a non-zero exit; never an endless nack/redeliver loop that
archives the same line again and again."""
import collections
import time

import cloud
import run
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def drop_table(emu, table):
    emu.admin("DELETE", f"/bigquery/v2/projects/{cloud.PROJECT}/datasets/{cloud.DATASET}"
                        f"/tables/{table}")


@case
@run.errors(r" error batch: table inventory_events has refused requests for \d+ s ",
            r" error batch: table inventory_events refused \d+ rows for good; they are ")
def missing_table_rows_are_dead_letters_not_a_loop():
    # main: every insertAll answered 404, the messages were nacked and redelivered forever and
    # each redelivery archived the same raw line again (7 objects for 1 event in 15 s)
    with cloud.Scenario() as s:
        drop_table(s.emu, "inventory_events")
        path, expect, raw = cloud.corpus(s.tmp, 400, seed=11, invalid=0)
        s.emu.publish(path)
        # a table dropped at run time, for longer than the grace a 404 gets (0 here)
        b = cloud.Bepipe(s.emu, ["--set", "preflight_seconds=0",
                                 "--set", "bigquery.refused_grace_seconds=0"])
        end = time.time() + 60
        while time.time() < end:
            st = s.emu.sub_state()
            if st["backlog"] == 0 and st["outstanding"] == 0:
                break
            time.sleep(0.2)
        time.sleep(1)
        check_eq(b.stop(), 0, "exit code:\n" + b.stderr()[-1500:])
        st = s.emu.sub_state()
        check_eq((st["backlog"], st["outstanding"]), (0, 0), "every message acked")
        dead = [r for r in s.emu.rows("rejected_events") if r["error_stage"] == "insert"]
        check_eq(len(dead), expect["rows"]["inventory_events"], "inventory rows dead-lettered")
        check(all("inventory_events" in r["reason"] and "404" in r["reason"] for r in dead),
              "the reason names the table and the API's answer: " + (dead[0]["reason"] if dead else ""))
        for t in ("order_events", "user_activity_events"):
            check_eq(len(s.emu.rows(t)), expect["rows"][t], f"rows in {t}")
        archived = collections.Counter(l for v in s.emu.objects().values() for l in v)
        check_eq(archived, collections.Counter(raw), "every raw line archived exactly once")


@case
@run.errors(r" error batch: table rejected_events has refused requests for \d+ s ",
            r" error main: the dead-letter table rejected_events cannot be written \(insertAll ")
def unusable_dead_letter_table_stops_with_non_zero_exit():
    with cloud.Scenario() as s:
        drop_table(s.emu, "rejected_events")
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=12, invalid=10)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu, ["--set", "preflight_seconds=0", "--set", "drain_seconds=3",
                                 "--set", "bigquery.refused_grace_seconds=0"])
        rc = b.wait_exit(45)
        check(rc != 0, "non-zero exit")
        check("dead-letter table rejected_events cannot be written" in b.stderr(),
              "the log says why:\n" + b.stderr()[-1500:])
        pulls = s.emu.admin("GET", "/_emulator/counters")["pubsub.subscriptions.pull"]["calls"]
        check(pulls < 50, f"pulling stopped ({pulls} pulls)")


@case
@run.errors(r" error archive: object of \d+ lines not stored, their messages will be "
            r"redelivered: upload of \S+: HTTP 404 ",
            r" error main: the archive cannot be written \(upload of \S+: HTTP 404 ")
def unusable_bucket_stops_with_non_zero_exit():
    # a bucket that does not exist: main nacked and redelivered forever, uploading the same
    # lines again each time; now the process stops, nothing is acked
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 200, seed=13, invalid=0)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu, ["--set", "preflight_seconds=0", "--set", "drain_seconds=3",
                                 "--set", "bigquery.refused_grace_seconds=0",
                                 "--gcs_output_path", "gs://no-such-bucket/output"])
        rc = b.wait_exit(45)
        check(rc != 0, "non-zero exit")
        check("the archive cannot be written" in b.stderr(), "the log says why:\n" +
              b.stderr()[-1500:])
        st = s.emu.sub_state()
        check(st["backlog"] + st["outstanding"] == 200, f"nothing acked: {st}")
