"""Hostile pull replies and large messages: the Pub/Sub source
never corrupts memory, never stalls behind a reply too large for its cap, backs off after failed
pulls, and acks the good ids of a request the server refused."""
import base64
import collections
import json
import os
import re
import signal
import subprocess
import time

import cloud
import run as local
from run import Failure, check, check_eq

CASES = []
TAGS = ["pubsub"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


def pull_reply(msgs):
    """A pull reply as Pub/Sub writes it: [(ackId, data text as sent, message id)]."""
    return json.dumps({"receivedMessages": [
        {"ackId": a, "message": {"data": d, "messageId": i,
                                 "publishTime": "2025-03-01T12:00:00.000Z"}}
        for a, d, i in msgs]})


def b64(text):
    return base64.b64encode(text.encode()).decode()


def dead_letters(emu):
    return {r["message_id"]: r for r in emu.rows("rejected_events")}


@case
def pull_data_not_base64_is_dead_lettered_not_a_crash():
    # 400 bytes that are not base64: main reserved len/4*3+3 bytes and copied up to 1024 of the
    # text into them (a heap overflow that ASan reports and glibc aborts on)
    bad = "!!!!" * 100
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 200, seed=5, invalid=0)
        s.emu.publish(path)
        s.emu.fault({"op": "pubsub.subscriptions.pull",
                     "body": pull_reply([("a-bad-1", bad, "hostile-1"),
                                         ("a-bad-2", "Zm9v" + "!" * 8, "hostile-2")])})
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 202, [b])
        check_eq(b.stop(), 0, "exit code:\n" + b.stderr()[-2000:])
        dead = dead_letters(s.emu)
        for mid in ("hostile-1", "hostile-2"):
            check(mid in dead, f"{mid} dead-lettered: {sorted(dead)[:5]}")
            check_eq(dead[mid]["error_stage"], "parse", "stage")
            check("not valid base64" in dead[mid]["reason"], "reason: " + dead[mid]["reason"])
        check(dead["hostile-1"]["raw_payload"].startswith("!!!!"), "raw text kept")
        for t in cloud.TABLES:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], f"rows in {t}")


@case
def refused_ack_ids_do_not_fail_the_good_ones():
    # two messages with ack ids Pub/Sub refuses (INVALID_ARGUMENT for the whole request): main
    # redelivered all 300 real messages with them; now the request is split and the good ids
    # get through, so every raw line is archived exactly once
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=6, invalid=0)
        fake = [json.dumps({"event_type": "page_view", "n": i}) for i in range(2)]
        s.emu.fault({"op": "pubsub.subscriptions.pull",
                     "body": pull_reply([(f"fake{i}", b64(t), f"fake-{i}")
                                         for i, t in enumerate(fake)])})
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 302, [b])
        time.sleep(1.5)
        check_eq(b.stop(), 0, "exit code")
        for t in cloud.TABLES:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], f"rows in {t}")
        archived = collections.Counter(l for v in s.emu.objects().values() for l in v)
        for line in raw:
            check_eq(archived[line], 1, "archived once (not redelivered)")
        check("refused ack id" in b.stderr(), "the refused ids are logged")
        st = s.emu.sub_state()
        check_eq((st["backlog"], st["outstanding"]), (0, 0), "every real message acked")


@case
def large_messages_are_pulled_one_by_one():
    # eight 7.3 MB messages make a 78 MB pull reply, over the reply cap: main logged the pull as
    # failed and nothing behind them was ever stored; now pulls shrink to what fits
    with cloud.Scenario() as s:
        big = os.path.join(s.tmp, "big.ndjson")
        with open(big, "w") as f:
            for i in range(8):
                f.write(json.dumps({"event_type": "bulk_upload", "n": i,
                                    "blob": "x" * (7300 * 1000)}) + "\n")
        out = subprocess.run([os.path.join(cloud.ROOT, "tests/tools/publish.py"), "--endpoint",
                              s.emu.url, "--topic", f"projects/{cloud.PROJECT}/topics/{cloud.TOPIC}",
                              "--batch", "1", big], capture_output=True)
        check_eq(out.stdout.strip(), b"8", "published: " + out.stderr.decode()[-300:])
        path, expect, raw = cloud.corpus(s.tmp, 100, seed=7, invalid=0)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 108, [b], timeout=150)
        check_eq(b.stop(), 0, "exit code")
        for t in cloud.TABLES:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], f"rows in {t}")
        route_dead = [r for r in s.emu.rows("rejected_events") if r["error_stage"] == "route"]
        check_eq(len(route_dead), 8, "the big unknown-type events are dead letters")
        check("asking for" in b.stderr(), "the shrink is logged")


@case
@local.errors(r" error pubsub: pull reply is not JSON; the messages will be redelivered")
def failed_pulls_back_off():
    # a pull answered by something that is not a pull reply: main pulled again at once
    # (thousands of requests per second); with backoff a few seconds see only a handful
    with cloud.Scenario() as s:
        s.emu.fault({"op": "pubsub.subscriptions.pull", "body": "<html>proxy error</html>",
                     "count": -1})
        b = cloud.Bepipe(s.emu)
        time.sleep(4)
        calls = s.emu.admin("GET", "/_emulator/counters")["pubsub.subscriptions.pull"]["calls"]
        check(calls <= 40, f"pulls in 4 s with backoff: {calls}")
        check_eq(b.stop(), 0, "exit code")


@case
@local.errors(r" error pubsub: subscription \S+/subscriptions/nope was not found \(404\): ")
def missing_subscription_exits_non_zero():
    # a 404 on the subscription is permanent: a clear line and a non-zero exit, not a loop
    # (without the preflight, which would catch it first: a subscription deleted while running)
    with cloud.Scenario() as s:
        b = cloud.Bepipe(s.emu, ["--input_subscription",
                                 f"projects/{cloud.PROJECT}/subscriptions/nope",
                                 "--set", "preflight_seconds=0"])
        rc = b.wait_exit(30)
        check(rc != 0, "non-zero exit")
        check(re.search(r"subscription \S*nope was not found", b.stderr()),
              "the log names the subscription:\n" + b.stderr()[-1500:])


@case
def ten_kill9_lose_nothing():
    # crash safety under repeated kill -9: a crash can duplicate (archive lines of messages in
    # flight), never lose; BigQuery rows are de-duplicated by insertId. BigQuery keeps insertIds
    # for at least a minute (best effort), the emulator for 60 s by default; a killed process's
    # leases (extended to 60 s) end before its messages come back, so on a loaded machine a
    # redelivery's rows came 74 s after the first copy's and were stored twice: this case is
    # about loss, so the window is set past the run's length
    with cloud.Scenario(emu_args=("--dedup-seconds", "900")) as s:
        path, expect, raw = cloud.corpus(s.tmp, 20000, seed=27)
        s.emu.publish(path)
        kills = 0
        for k in range(10):
            b = cloud.Bepipe(s.emu)
            target = 1500 * (k + 1)
            end = time.time() + 30
            while time.time() < end:
                if sum(len(s.emu.rows(t)) for t in cloud.TABLES + ["rejected_events"]) >= target:
                    break
                if b.p.poll() is not None:
                    raise Failure("exited early:\n" + b.stderr()[-1500:])
                time.sleep(0.05)
            b.p.kill()
            b.p.wait()
            kills += 1
        check_eq(kills, 10, "kills")
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 20000, [b], timeout=180)
        check_eq(b.stop(), 0, "exit code of the last run")
        cloud.verify(s.emu, expect, raw, archive_dups_ok=True)


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


@case
def pull_replies_in_flight_share_one_memory_cap():
    # 4 pulls in flight, each answered by a 100 MB reply with no Content-Length: main capped each
    # reply at 64 MB, so RSS climbed past 256 MB; the cap is now a share of 64 MB for them all
    sub = f"/v1/projects/{cloud.PROJECT}/subscriptions/{cloud.SUB}"
    routes = {sub + ":pull": {"stream": 100_000_000}, sub: {"status": 200, "body": "{}"}}
    srv = subprocess.Popen([os.path.join(cloud.ROOT, "tests/tools/hostile_http.py"), "--routes",
                            json.dumps(routes)], stdout=subprocess.PIPE)
    try:
        port = int(re.search(r":(\d+)", srv.stdout.readline().decode()).group(1))
        d = os.path.join("/tmp", f"bepipe-cap-{os.getpid()}")
        env = dict(os.environ, PUBSUB_EMULATOR_HOST=f"127.0.0.1:{port}")
        # the normal build whatever --bin says: under ASan, RSS counts its quarantine of freed
        # buffers (256 MB by default) and says nothing about what the code keeps
        p = subprocess.Popen([os.path.join(cloud.ROOT, "bepipe-lua"), local.PIPELINE,
                              "--local-out", d, "--set",
                              "source.pull_concurrency=4", "--set", "stats_seconds=0"],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        time.sleep(8)
        peak = peak_rss_mb(p.pid)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        check(peak < 140, f"peak RSS {peak:.0f} MB < 140 MB")
        print(f"  (peak RSS {peak:.0f} MB)")
        check("passed 16 MB" in err.decode(), "the replies were cut at their share: " +
              err.decode()[-800:])
    finally:
        srv.kill()
        srv.wait()
        import shutil
        shutil.rmtree(os.path.join("/tmp", f"bepipe-cap-{os.getpid()}"), ignore_errors=True)
