"""Time and leases against the emulator: a wall clock stepped either way mid-run (an LD_PRELOAD
shim, tests/tools/clockshift.c) changes no age, deadline or lease; an acknowledge that stalls
keeps its messages leased until it is confirmed; a failed destination nacks with a growing
deadline instead of an immediate redelivery; a refused acknowledge is split a bounded number of
times and logged once; exactly-once delivery's per-id ack results are read."""
import collections
import json
import os
import re
import time

import cloud
import run as local
from pull_replies import b64, pull_reply
from run import Failure, check, check_eq

CASES = []
SHIM = os.path.join(cloud.ROOT, "build", "clockshift.so")


def case(fn):
    CASES.append(fn)
    return fn


def read_count(b):
    """Messages the run read (its exit summary's read=N): a redelivery counts again."""
    m = re.findall(r"summary.*?read=(\d+)", b.stderr())
    if not m:
        raise Failure("no summary line:\n" + b.stderr()[-1500:])
    return int(m[-1])


def shim_env(path):
    env = {"LD_PRELOAD": SHIM, "CLOCKSHIFT_FILE": path}
    if "asan" in local.BIN:   # ASan wants to come first; the shim only wraps three clock calls
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                               ":verify_asan_link_order=0").lstrip(":")
    return env


def step(path, seconds):
    with open(path + ".tmp", "w") as f:
        f.write(str(seconds))
    os.replace(path + ".tmp", path)


def rows_total(emu):
    return sum(len(emu.rows(t)) for t in cloud.TABLES + ["rejected_events"])


def wait_rows(emu, n, timeout, b):
    end = time.time() + timeout
    while time.time() < end:
        if rows_total(emu) >= n:
            return time.time()
        if b.p.poll() is not None:
            raise Failure("exited early:\n" + b.stderr()[-1500:])
        time.sleep(0.2)
    raise Failure(f"{rows_total(emu)} of {n} rows after {timeout} s:\n" + b.stderr()[-1500:])


def archived_lines(emu):
    return sum(len(v) for v in emu.objects().values())


def halves(tmp, path):
    lines = [l for l in open(path, "rb").read().split(b"\n") if l.strip()]
    out = []
    for k, part in enumerate((lines[:len(lines) // 2], lines[len(lines) // 2:])):
        p = os.path.join(tmp, f"half{k}.ndjson")
        open(p, "wb").write(b"\n".join(part) + b"\n")
        out.append(p)
    return out


@case
def clock_steps_change_no_age_or_lease():
    # the wall clock stepped back 120 s, later forward 300 s, each while 1,000 events wait in
    # open archive objects for their 20 s roll (past the subscription's 10 s deadline: only
    # lease extensions keep them). main: after the step back no object rolled and no lease was
    # extended (every message delivered again: read=2000 for 1,000); after the step forward
    # every object rolled at once
    # part of the test build (make unit, which make test runs), not an optional tool
    check(os.path.exists(SHIM), f"{SHIM} exists (make unit builds it)")
    with cloud.Scenario() as s:
        shift = os.path.join(s.tmp, "shift")
        step(shift, 0)
        path, expect, raw = cloud.corpus(s.tmp, 2000, seed=41)
        first, second = halves(s.tmp, path)
        b = cloud.Bepipe(s.emu, ["--set", "archive.roll_seconds=20"], env=shim_env(shift))
        s.emu.publish(first)
        wait_rows(s.emu, 1000, 30, b)
        step(shift, -120)
        t0 = time.time()
        end = t0 + 45
        while archived_lines(s.emu) < 1000 and time.time() < end:
            time.sleep(0.2)
        check_eq(archived_lines(s.emu), 1000, "archived within 45 s of a step back")
        print(f"  (objects {time.time() - t0:.1f} s after the step back)")
        s.emu.publish(second)
        wait_rows(s.emu, 2000, 30, b)
        step(shift, 180)
        time.sleep(8)
        check_eq(archived_lines(s.emu), 1000, "no object rolled early by a step forward")
        cloud.wait_drained(s.emu, 2000, [b], timeout=60)
        check_eq(b.stop(), 0, "exit code")
        cloud.verify(s.emu, expect, raw)
        check_eq(read_count(b), 2000, "messages read (a redelivery reads one again)")


def counter(emu, op):
    return emu.admin("GET", "/_emulator/counters").get(op, {})


@case
def stalled_acknowledge_keeps_the_leases():
    # the first acknowledge requests stall 25 s (the subscription's deadline is 10 s): main
    # stopped extending a message once its ack was queued, so every stalled ack's messages were
    # delivered and processed again (read=60000 for 20,000); their leases are now kept by
    # lease extensions until the server confirmed the ack
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 5000, seed=42)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.acknowledge", "stall": 25, "count": 4})
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 5000, [b], timeout=150)
        check_eq(b.stop(), 0, "exit code")
        print(f"  (read={read_count(b)}, modifyAckDeadline calls: "
              f"{counter(s.emu, 'pubsub.subscriptions.modifyAckDeadline').get('calls', 0)})")
        cloud.verify(s.emu, expect, raw)
        check_eq(read_count(b), 5000, "messages read: none redelivered while its ack stalled")


@case
def stalled_lease_extension_is_sent_again_before_the_lease_ends():
    # the first lease extensions stall 15 s while 2,000 events wait 30 s in open archive
    # objects: main waited 60 s for the stalled modifyAckDeadline and sent nothing else, so the
    # 10 s lease lapsed and the messages were delivered again; now an extension not answered
    # within 4 s goes again alongside, and later ones start with half the lease left
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 2000, seed=46)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.modifyAckDeadline", "stall": 15, "count": 2})
        b = cloud.Bepipe(s.emu, ["--set", "archive.roll_seconds=30"])
        cloud.wait_drained(s.emu, 2000, [b], timeout=120)
        check_eq(b.stop(), 0, "exit code")
        mod = counter(s.emu, "pubsub.subscriptions.modifyAckDeadline")
        print(f"  (read={read_count(b)}, modifyAckDeadline: {mod})")
        cloud.verify(s.emu, expect, raw)
        check_eq(read_count(b), 2000, "messages read: none redelivered")


@case
@local.errors(*cloud.RETRIES_RUN_OUT)
def failed_destination_nacks_with_a_growing_deadline():
    # BigQuery down: main nacked with deadline 0, so each message came back at once and was
    # read (and archived) again every cycle; now a nack asks for 10 s, doubling per round
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 500, seed=43)
        s.emu.publish(path)
        s.emu.fault({"op": "bigquery.tabledata.insertAll", "status": 503, "count": -1})
        b = cloud.Bepipe(s.emu, ["--set", "retry.attempts=2", "--set", "retry.max_ms=100"])
        time.sleep(14)
        s.emu.clear_faults()
        cloud.wait_drained(s.emu, 500, [b], timeout=120)
        check_eq(b.stop(), 0, "exit code")
        n = read_count(b)
        print(f"  (read={n} for 500 events over a 14 s outage)")
        check(n <= 4 * 500, f"each message read a few times in a 14 s outage: read={n}")
        cloud.verify(s.emu, expect, raw, archive_dups_ok=True)


@case
@local.errors(*cloud.RETRIES_RUN_OUT)
def partial_outage_nacks_back_off_per_message():
    # one table failing while the others keep acking (no dead-letter policy, so no
    # deliveryAttempt): every ack restarted the rounds of nacks, so the failing table's messages
    # came back every ~10 s for as long as it failed; now each message's own nacks double it
    with cloud.Scenario() as s:
        lines = []
        local.gen(os.path.join(s.tmp, "all.ndjson"), 1500, seed=45, invalid=0)
        with open(os.path.join(s.tmp, "all.ndjson"), "rb") as f:
            lines = [l for l in f if l.strip()]
        orders = [l for l in lines if json.loads(l)["event_type"] == "order"][:100]
        others = [l for l in lines if json.loads(l)["event_type"] != "order"][:400]

        def publish(name, chunk):
            path = os.path.join(s.tmp, name)
            with open(path, "wb") as f:
                f.writelines(chunk)
            s.emu.publish(path)

        s.emu.fault({"op": "bigquery.tabledata.insertAll", "path": "/order_events/insertAll",
                     "status": 503, "count": -1})
        publish("orders.ndjson", orders)
        b = cloud.Bepipe(s.emu, ["--set", "retry.attempts=2", "--set", "retry.max_ms=100"])
        # the other tables keep working: a few events every 2 s for 44 s
        for i in range(22):
            publish(f"others{i}.ndjson", others[i * 18:(i + 1) * 18])
            time.sleep(2)
        s.emu.clear_faults()
        total = len(orders) + 22 * 18
        cloud.wait_drained(s.emu, total, [b], timeout=150)
        check_eq(b.stop(), 0, "exit code")
        order_reads = read_count(b) - 22 * 18
        print(f"  (order messages read {order_reads} times for {len(orders)} in a 44 s outage)")
        # nacks of 10, 20, 40 s: each order message read at ~0, ~10, ~30 s and once more after;
        # at a flat 10 s it was read at 0, 10, 20, 30, 40 and after
        check(order_reads <= 4.3 * len(orders),
              f"each failing message backs off on its own: read {order_reads} times")
        check_eq(len(s.emu.rows("order_events")), len(orders), "every order stored after")


@case
def refused_acknowledge_is_split_a_bounded_number_of_times():
    # every ack id refused (400, no per-id results): main split each request down to single
    # ids, both halves at once: 3,000 messages made 5,998 acknowledge calls and 6,000 WARN lines
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 3000, seed=44)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.acknowledge", "status": 400, "count": -1})
        b = cloud.Bepipe(s.emu)
        wait_rows(s.emu, 3000, 60, b)
        time.sleep(8)
        calls = counter(s.emu, "pubsub.subscriptions.acknowledge").get("calls", 0)
        warns = [l for l in b.stderr().splitlines() if " warn " in l and "refused" in l]
        check_eq(b.stop(), 0, "exit code")
        print(f"  (acknowledge calls={calls}, WARN lines={len(warns)})")
        check(0 < calls <= 400, f"acknowledge calls bounded: {calls}")
        check(1 <= len(warns) <= 10, f"one counted line, not one per id: {len(warns)}")


@case
def exactly_once_delivery_per_id_results():
    # a subscription with exactly-once delivery: for a few seconds acknowledge requests fail for
    # every id with a TRANSIENT_ result in ErrorInfo (400 for the whole request). main took it as
    # refused ids, split every request down to single ids and dropped them all (every message
    # redelivered); now the transient ids go again and each message is read once
    with cloud.Scenario() as s:
        sub = f"/v1/projects/{cloud.PROJECT}/subscriptions/{cloud.SUB}"
        s.emu.admin("PATCH", sub, {"subscription": {"enableExactlyOnceDelivery": True},
                                   "updateMask": "enableExactlyOnceDelivery"})
        path, expect, raw = cloud.corpus(s.tmp, 2000, seed=45)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.acknowledge",
                     "ackIdResult": "TRANSIENT_FAILURE_UNORDERED_ACK_ID", "count": -1})
        b = cloud.Bepipe(s.emu)
        wait_rows(s.emu, 2000, 60, b)
        time.sleep(4)
        s.emu.clear_faults()
        cloud.wait_drained(s.emu, 2000, [b], timeout=120)
        calls = counter(s.emu, "pubsub.subscriptions.acknowledge")
        check_eq(b.stop(), 0, "exit code")
        print(f"  (acknowledge: {calls})")
        check(calls.get("statuses", {}).get("400", 0) >= 1, f"the fault was served: {calls}")
        check_eq(read_count(b), 2000, "messages read: none redelivered")
        cloud.verify(s.emu, expect, raw)
        check(calls.get("calls", 0) <= 40, f"no split storm: {calls}")
        check("has exactly-once delivery" in b.stderr(), "the preflight says so:\n" +
              b.stderr()[-1500:])


@case
def stalled_acknowledge_bounds_what_is_pulled():
    # acknowledge stalls (every request held 40 s) while the subscription holds 6,000 events and
    # max_outstanding_messages is 500: main released a message's flow-control slot when its ack
    # was queued, so pulling went on and every event was pulled, processed and held in
    # unconfirmed acks (kept leased by extensions): the ids in flight grew with the backlog, not
    # with the flow-control limit. Unconfirmed acks now count against a limit of their own
    # (max_outstanding_messages): pulling pauses, and resumes once the acks are confirmed
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 6000, seed=47)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.acknowledge", "stall": 40, "count": -1})
        b = cloud.Bepipe(s.emu, ["--set", "source.max_outstanding_messages=500"])
        time.sleep(25)
        during = rows_total(s.emu)
        s.emu.clear_faults()
        cloud.wait_drained(s.emu, 6000, [b], timeout=180)
        check_eq(b.stop(), 0, "exit code")
        print(f"  (rows while acks stalled: {during}; read={read_count(b)})")
        check(during <= 1500, f"pulling paused while acks stalled: {during} rows of 6000")
        cloud.verify(s.emu, expect, raw)


@case
def drain_waits_for_a_slow_acknowledge():
    # SIGTERM while acknowledge answers in 8 s (a latency spike, under the 10 s attempt
    # timeout): main gave the acks 5 s whatever was left of drain_seconds, exited with them
    # unanswered, and their messages (leased for up to a minute by the extensions) came back
    # to the next worker after BigQuery's insertId window: every event of the drain stored and
    # archived twice. The drain now waits for acknowledges within drain_seconds
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 2000, seed=50)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu, ["--set", "archive.roll_seconds=30"])
        wait_rows(s.emu, 2000, 60, b)
        s.emu.fault({"op": "pubsub.subscriptions.acknowledge", "stall": 8, "count": -1})
        t0 = time.time()
        check_eq(b.stop(), 0, "exit code")
        st = s.emu.sub_state()
        print(f"  (exit {time.time() - t0:.1f} s after SIGTERM; {st})")
        check_eq((st["backlog"], st["outstanding"]), (0, 0), "every message acked at exit")
        s.emu.clear_faults()
        cloud.verify(s.emu, expect, raw)


@case
def hostile_acknowledge_replies_are_cut_at_their_size():
    # acknowledge and modifyAckDeadline answered 400 with an ErrorInfo naming 150,000 ids never
    # sent (9 MB): main read each reply whole (up to 64 MB a call, every call in flight at once),
    # peak RSS 325 MB for 306 messages; a reply is now cut past what the API sends for the ids
    # of the request (the attempt fails: the ids are split or sent again as before)
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=51, invalid=0)
        s.emu.publish(path)
        body = json.dumps({"error": {"code": 400, "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "EXACTLY_ONCE_ACKID_FAILURE",
            "metadata": {f"never-sent-{i:08d}": "PERMANENT_FAILURE_INVALID_ACK_ID"
                         for i in range(150000)}}]}})
        for op in ("acknowledge", "modifyAckDeadline"):
            s.emu.fault({"op": f"pubsub.subscriptions.{op}", "status": 400, "body": body,
                         "count": -1})
        b = cloud.Bepipe(s.emu)
        wait_rows(s.emu, 300, 60, b)
        time.sleep(8)
        check_eq(b.stop(timeout=90), 0, "exit code")
        rss = int(re.search(r"peak_rss_kb=(\d+)", b.stderr()).group(1)) // 1024
        print(f"  (peak RSS {rss} MB)")
        cap = 200 if "asan" in local.BIN else 100   # ASan adds its own: 79 MB with the cut
        check(rss < cap, f"peak RSS under {cap} MB with hostile ack replies: {rss} MB")
