#!/usr/bin/env python3
"""bepipe-lua's Pub/Sub source against Google's own Pub/Sub emulator (the Cloud SDK's
`gcloud beta emulators pubsub start`, which speaks the REST API on its port), with BigQuery and
GCS on the project's emulator, and the results read back with Google's own `bq` and
`gcloud storage` CLIs. The project's emulator was written by the same hands as the client;
Google's emulator and tools were not, so this suite is the referee of the wire.

    tests/integration/google_emulator.py [--bin PATH] [-k SUBSTRING] [-t TAG] [--list]

Where gcloud, bq, Java or the Pub/Sub emulator component is missing it prints one line saying
so and reports every case as skipped (`0 passed, 0 failed` and `N skipped`), never as passed.
One Google emulator serves the whole suite, each case on a topic and subscription of its own;
each case starts its own project emulator. Ends with `N passed, N failed`."""
import collections
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cloud  # noqa: E402
import workers  # noqa: E402
import run as local  # noqa: E402

ROOT = local.ROOT
PROJECT, DATASET, BUCKET = cloud.PROJECT, cloud.DATASET, cloud.BUCKET
TABLES = cloud.TABLES
check, check_eq, Failure = local.check, local.check_eq, local.Failure
ACK_DEADLINE = 10
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def sdk_root():
    """The Cloud SDK folder of the gcloud on PATH, or None."""
    g = shutil.which("gcloud")
    return os.path.dirname(os.path.dirname(os.path.realpath(g))) if g else None


def missing_tools():
    """Why the suite cannot run here, or None."""
    for tool in ["gcloud", "bq", "java"]:
        if not shutil.which(tool):
            return f"{tool} is not installed"
    emu = os.path.join(sdk_root(), "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
    if not os.path.exists(emu):
        return "the Cloud SDK's Pub/Sub emulator (google-cloud-cli-pubsub-emulator) is not installed"
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sdk_env(home):
    """An environment for gcloud and bq that reads nothing of the user's configuration and
    authenticates with a fixed token (the emulators take any)."""
    cfg = os.path.join(home, "gcloud")
    os.makedirs(cfg, exist_ok=True)
    tok = os.path.join(home, "token")
    with open(tok, "w") as f:
        f.write("emulator-token\n")
    e = dict(os.environ)
    e.update({"CLOUDSDK_CONFIG": cfg, "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": tok,
              "CLOUDSDK_CORE_PROJECT": PROJECT, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
              "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true", "HOME": home})
    for k in ["GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST"]:
        e.pop(k, None)
    return e


class GooglePubSub:
    """Google's Pub/Sub emulator as a user starts it, in a process group of its own (gcloud
    runs it as a Java child that would outlive gcloud)."""

    def __init__(self, home):
        self.dir = tempfile.mkdtemp(prefix="bepipe-gpubsub-", dir=home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.dir, "emulator.log"), "wb")
        self.p = subprocess.Popen(
            ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{self.port}",
             f"--project={PROJECT}", f"--data-dir={self.dir}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=sdk_env(home),
            start_new_session=True)
        end = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.read().strip() == b"Ok":
                        break
            except OSError:
                pass
            if self.p.poll() is not None or time.time() > end:
                self.stop()
                raise Failure("Google's Pub/Sub emulator did not start:\n" + self.log_text())
            time.sleep(0.25)

    def log_text(self):
        with open(os.path.join(self.dir, "emulator.log"), "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/v1/projects/{PROJECT}/{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise Failure(f"{method} {path}: HTTP {e.code}: {e.read()[:300]!r}")

    def create(self, name):
        """A topic and its subscription (ack deadline 10 s), created over REST; returns the
        subscription's full name."""
        self.call("PUT", f"topics/{name}")
        self.call("PUT", f"subscriptions/{name}-sub",
                  {"topic": f"projects/{PROJECT}/topics/{name}",
                   "ackDeadlineSeconds": ACK_DEADLINE})
        return f"projects/{PROJECT}/subscriptions/{name}-sub"

    def publish(self, name, path):
        out = subprocess.run([os.path.join(ROOT, "tests/tools/publish.py"), "--endpoint",
                              self.url, "--topic", f"projects/{PROJECT}/topics/{name}", path],
                             capture_output=True)
        if out.returncode != 0:
            raise Failure("publish failed: " + out.stderr.decode()[-500:])
        return int(out.stdout)

    def take_left(self, name):
        """The messages still deliverable on the subscription: pulled with returnImmediately
        until none comes, then nacked all at once so they are deliverable again."""
        got = {}
        for _ in range(200):
            r = self.call("POST", f"subscriptions/{name}-sub:pull",
                          {"maxMessages": 1000, "returnImmediately": True})
            msgs = r.get("receivedMessages", [])
            if not msgs:
                break
            for m in msgs:
                got[m["message"]["messageId"]] = m["ackId"]
        ids = list(got.values())
        for i in range(0, len(ids), 1000):
            self.call("POST", f"subscriptions/{name}-sub:modifyAckDeadline",
                      {"ackIds": ids[i:i + 1000], "ackDeadlineSeconds": 0})
        return list(got)

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)   # the Java child, if it is still there
        except ProcessLookupError:
            pass
        self.p.wait()
        self.log.close()


GOOGLE = None   # the suite's one Google emulator
HOME = None


class Case:
    """A case's world: a topic and subscription of its own on Google's emulator, the project's
    emulator for BigQuery and GCS, a temporary folder."""
    n = 0

    def __enter__(self):
        Case.n += 1
        self.name = f"bepipe-case-{Case.n}"
        self.sub = GOOGLE.create(self.name)
        self.tmp = tempfile.mkdtemp(prefix="bepipe-gcase-", dir=HOME)
        self.emu = cloud.Emulator()
        return self

    def __exit__(self, *a):
        self.emu.stop()
        if a[0] is None:
            self.emu.cleanup()
        else:
            print(f"  (project emulator data kept in {self.emu.dir})")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def bepipe(self, args=(), env=None):
        e = {"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{GOOGLE.port}"}
        e.update(env or {})
        b = cloud.Bepipe(self.emu, ["--input_subscription", self.sub, *args], env=e)
        # past its preflight it drains on SIGTERM (before, SIGTERM simply ends it)
        b.wait_log("preflight: ok", timeout=60)
        return b

    def publish(self, n, seed, invalid=3):
        path, expect, raw = cloud.corpus(self.tmp, n, seed=seed, invalid=invalid)
        check_eq(GOOGLE.publish(self.name, path), n, "published to Google's emulator")
        return expect, raw

    def stored(self):
        return sum(len(self.emu.rows(t)) for t in TABLES + ["rejected_events"])

    def wait_stored(self, n, procs, timeout=120):
        end = time.time() + timeout
        while self.stored() < n:
            for b in procs:
                if b.p.poll() is not None:
                    raise Failure("bepipe-lua exited early:\n" + b.stderr()[-3000:])
            if time.time() > end:
                raise Failure(f"{self.stored()} of {n} events stored after {timeout} s\n" +
                              "\n".join(b.stderr()[-2000:] for b in procs))
            time.sleep(0.2)

    def verify(self, expect, raw, archive_dups_ok=False):
        """Tables, dead letters and archive against the corpus (the project emulator's files),
        and nothing left on Google's subscription."""
        for t in TABLES:
            check_eq(len(self.emu.rows(t)), expect["rows"][t], f"rows in {t}")
        for t, k in {"order_events": "order_id", "inventory_events": "inventory_id"}.items():
            ids = [r[k] for r in self.emu.rows(t)]
            check_eq(len(ids), len(set(ids)), f"{t}: no duplicate rows")
        dead = self.emu.rows("rejected_events")
        stages = collections.Counter(r["error_stage"] for r in dead)
        for st in ["parse", "route", "validate"]:
            check_eq(stages.get(st, 0), expect["dead"].get(st, 0), f"dead letters at stage {st}")
        archived = [l for v in self.emu.objects().values() for l in v]
        if archive_dups_ok:
            check_eq(set(archived), set(raw), "every raw line archived")
        else:
            check_eq(collections.Counter(archived), collections.Counter(raw),
                     "every raw line archived exactly once")
        left = GOOGLE.take_left(self.name)
        check_eq(len(left), 0, "nothing left unacked on Google's subscription")


class Sdk:
    """A Cloud SDK command (bq, gcloud) running against the emulators; result() waits for it
    and returns its stdout, or raises with its stderr."""

    def __init__(self, args, stdin=b"", env=None):
        self.args = args
        e = dict(SDK_ENV)
        e.update(env or {})
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=e)
        self.stdin = stdin

    def result(self, timeout=150):
        out, err = self.p.communicate(self.stdin, timeout=timeout)
        if self.p.returncode != 0:
            raise Failure(f"{' '.join(self.args[:6])}: exit {self.p.returncode}:\n"
                          f"{err.decode(errors='replace')[-1500:]}")
        return out


class BqShell(Sdk):
    """Several bq commands in one `bq shell`, each reply parsed as JSON."""

    def __init__(self, emu, commands):
        self.commands = commands
        super().__init__(["bq", "--api", emu.url, "--project_id", PROJECT, "--format", "json",
                          "shell"], ("\n".join(commands) + "\nexit\n").encode())

    def result(self, timeout=150):
        out = super().result(timeout).decode(errors="replace")
        parts = out.split(f"{PROJECT}> ")[1:1 + len(self.commands)]
        replies = []
        for cmd, text in zip(self.commands, parts):
            try:
                replies.append(json.loads(text))
            except ValueError:
                raise Failure(f"bq {cmd}: not JSON: {text[:800]}")
        check_eq(len(replies), len(self.commands), "a reply from bq to every command:\n" + out[-800:])
        return replies


def bq_shell(emu, commands):
    return BqShell(emu, commands)


def gcloud_storage(emu, *args):
    return Sdk(["gcloud", "storage", *args],
               env={"CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": emu.url + "/"})


SDK_ENV = {}


# ---------------------------------------------------------------------------------------------

@case
def a_pull_ack_read_back_with_bq_and_gcloud_storage():
    with Case() as c:
        expect, raw = c.publish(2000, seed=61)
        b = c.bepipe()
        c.wait_stored(2000, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        check(" error " not in b.stderr(), "no error lines:\n" + b.stderr()[-2000:])
        c.verify(expect, raw)
        # Google's bq (one `bq shell` for every command: its start-up is the slow part) and
        # gcloud storage read the tables and the archive back, side by side
        tables = TABLES + ["rejected_events"]
        bqp = bq_shell(c.emu, [f"ls {DATASET}"] +
                       [f"head --max_rows 5000 {DATASET}.{t}" for t in tables])
        lsp = gcloud_storage(c.emu, "ls", f"gs://{BUCKET}/output/**")
        catp = gcloud_storage(c.emu, "cat", f"gs://{BUCKET}/output/**")
        replies = bqp.result()
        listed = {t["tableReference"]["tableId"] for t in replies[0]}
        check(set(tables) <= listed, f"bq ls lists the tables: {listed}")
        for t, rows in zip(tables, replies[1:]):
            want = expect["rows"][t] if t in TABLES else sum(expect["dead"].values())
            check_eq(len(rows), want, f"bq head: rows in {t}")
        files = {r["order_id"]: r for r in c.emu.rows("order_events")}
        rows = replies[1 + tables.index("order_events")]
        check_eq(sorted(r["order_id"] for r in rows), sorted(files), "bq: order ids")
        for r in rows:
            f = files[r["order_id"]]
            check_eq((r["status"], float(r["total_amount"]), len(r["items"])),
                     (f["status"], float(f["total_amount"]), len(f["items"])),
                     "bq: values of order " + r["order_id"])
        names = sdk_lines(lsp.result())
        check_eq(sorted(names), sorted(f"gs://{BUCKET}/{n}" for n in c.emu.objects()),
                 "gcloud storage ls: the archive's objects")
        hours = {h for per in expect["hours"].values() for h in per}
        now = time.gmtime()
        by_publish = 0
        for n in names:
            m = cloud.ARCHIVE.match(n[len(f"gs://{BUCKET}/"):])
            check(m, "archive object name: " + n)
            # an event without a time of its own (not JSON) is filed by its publish time, as
            # Google's emulator writes it (milliseconds, not the project emulator's nanoseconds)
            hour = "".join(m.group(2, 3, 4, 5))
            check(hour in hours or abs(time.mktime(time.strptime(hour, "%Y%m%d%H")) -
                                       time.mktime(now)) < 2 * 3600,
                  f"{n}: filed by the event's time or the publish time")
            by_publish += hour not in hours
        check(by_publish > 0, "some dead letters filed by their publish time")
        lines = catp.result().split(b"\n")
        check_eq(collections.Counter(l for l in lines if l.strip()), collections.Counter(raw),
                 "gcloud storage cat: every raw line once")


@case
def h_gcloud_storage_reads_a_gzip_object():
    """A gzip archive object (contentEncoding gzip, stored compressed) as Google's own CLI reads
    it. gcloud asks for gzip (Accept-Encoding: gzip, deflate, as Python's requests does) so GCS
    sends the stored bytes and no decompressive transcoding happens; `gcloud storage cp` to a
    file inflates them (it checks contentEncoding), but `gcloud storage cat` and `cp ... -`
    write them to stdout as they are. So a reader of the archive through gcloud gets NDJSON from
    `cp` to a file, or from `cat | gunzip`, not from `cat` alone."""
    emu = cloud.Emulator(tables=False)
    try:
        lines = [json.dumps({"id": i, "kind": "order", "note": "x" * (i % 30)}) for i in range(300)]
        plain = ("\n".join(lines) + "\n").encode()
        gz = gzip.compress(plain)
        name = "output/2026/01/02/03/gz-object.json"
        req = urllib.request.Request(
            f"{emu.url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}",
            data=gz, method="POST",
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as r:
            meta = json.loads(r.read())
        check_eq(meta.get("contentEncoding"), "gzip", "stored with contentEncoding gzip")
        check_eq(meta.get("size"), str(len(gz)), "stored compressed")
        url = f"gs://{BUCKET}/{name}"
        tmp = tempfile.mkdtemp(prefix="bepipe-gzcat-", dir=HOME)
        dest = os.path.join(tmp, "copy.json")
        catp = gcloud_storage(emu, "cat", url)
        cpp = gcloud_storage(emu, "cp", url, dest)
        lsp = gcloud_storage(emu, "ls", "--json", url)
        cat = catp.result()
        cpp.result()
        with open(dest, "rb") as f:
            check_eq(f.read(), plain, "gcloud storage cp to a file: the plain NDJSON")
        check_eq(cat, gz, "gcloud storage cat: the stored gzip bytes (gcloud accepts gzip and does not "
                 "inflate what it writes to stdout)")
        check_eq(gzip.decompress(cat), plain, "gcloud storage cat | gunzip: the plain NDJSON")
        listed = json.loads(lsp.result())
        enc = [o.get("metadata", o).get("contentEncoding") for o in listed]
        check_eq(enc, ["gzip"], "gcloud storage ls --json: contentEncoding gzip")
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        emu.stop()
        emu.cleanup()


def sdk_lines(out):
    return [l for l in out.decode().split("\n") if l.strip() and not l.endswith(":")]


@case
def b_leases_extended_past_the_ack_deadline():
    with Case() as c:
        expect, raw = c.publish(1000, seed=62)
        # archive objects stay open 60 s, longer than the subscription's 10 s ack deadline:
        # every message is held that long and must not come back meanwhile
        b = c.bepipe(["--set", "archive.roll_seconds=60", "--set", "stats_seconds=3"])
        c.wait_stored(1000, [b])
        time.sleep(ACK_DEADLINE + 5)
        probe = GOOGLE.take_left(c.name)
        check_eq(len(probe), 0, "nothing redelivered while held past the ack deadline")
        objects = c.emu.objects()
        check_eq(sum(len(v) for v in objects.values()), 0, "objects still open: "
                 f"{len(objects)}")
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        ext = [int(x) for x in re.findall(r"extended=(\d+)", b.stderr())]
        check(ext and max(ext) > 0, "leases were extended with modifyAckDeadline: " +
              str(ext[-3:]))
        check(" error " not in b.stderr() and " warn " not in b.stderr(),
              "Google's emulator took every modifyAckDeadline:\n" + b.stderr()[-1500:])
        c.verify(expect, raw)   # exactly once: no redelivery while held


@case
def c_kill9_redelivered_deduplicated_by_insert_id():
    with Case() as c:
        expect, raw = c.publish(4000, seed=63)
        b = c.bepipe()
        c.wait_stored(1500, [b])
        b.p.kill()
        b.p.wait()
        # what the killed run held comes back after its lease: stored again with the same
        # insertIds, which BigQuery's de-duplication drops
        b2 = c.bepipe()
        c.wait_stored(4000, [b2])
        time.sleep(ACK_DEADLINE + 3)   # past the killed run's leases
        check_eq(b2.stop(), 0, "exit code of the restart: " + b2.stderr()[-1500:])
        c.verify(expect, raw, archive_dups_ok=True)
        ids = [r["message_id"] for r in c.emu.rows("rejected_events")]
        check_eq(len(ids), len(set(ids)), "no duplicate dead letters")


@case
def d_flow_control_pauses_pulling():
    with Case() as c:
        expect, raw = c.publish(1500, seed=64)
        c.emu.fault({"op": "bigquery.tabledata.insertAll", "latencyMs": 400, "count": -1})
        port = free_port()
        cap = 150
        b = c.bepipe(["--set", f"source.max_outstanding_messages={cap}",
                      "--http", f"127.0.0.1:{port}"])
        seen = []
        end = time.time() + 120
        while c.stored() < 1500 and time.time() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    m = re.search(rb"^bepipe_outstanding_messages (\d+)", r.read(), re.M)
                    if m:
                        seen.append(int(m.group(1)))
            except OSError:
                pass
            time.sleep(0.1)
        check(len(seen) > 10, f"metrics sampled while the backlog drained: {len(seen)}")
        check(max(seen) > 0, "messages were outstanding")
        # what the pulls in flight asked for counts against the cap too
        check(max(seen) <= cap, f"never more than {cap} outstanding: peak {max(seen)}")
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        c.verify(expect, raw)


@case
def e_sigterm_drains_and_nacks_the_rest():
    with Case() as c:
        expect, raw = c.publish(5000, seed=65)
        # flow control keeps most of the backlog on the subscription, so some is left to nack
        b = c.bepipe(["--set", "archive.roll_seconds=60", "--set", "drain_seconds=20",
                      "--set", "source.max_outstanding_messages=1000"])
        c.wait_stored(1500, [b])
        t0 = time.time()
        check_eq(b.stop(signal.SIGTERM, timeout=40), 0, "exit code: " + b.stderr()[-1500:])
        check(time.time() - t0 < 30, f"drained in {time.time() - t0:.1f} s")
        stored = c.stored()
        archived = sum(len(v) for v in c.emu.objects().values())
        check_eq(archived, stored, "every stored event also archived")
        left = GOOGLE.take_left(c.name)   # nacked: deliverable again at once
        check_eq(len(left), 5000 - stored, "exactly the stored messages were acked")
        check(len(left) > 0, "the drain left messages to the next run")
        b2 = c.bepipe()
        c.wait_stored(5000, [b2])
        check_eq(b2.stop(), 0, "exit code of the second run")
        c.verify(expect, raw)


@case
def f_two_workers_share_it_and_drain_when_the_parent_dies():
    with Case() as c:
        expect, raw = c.publish(6000, seed=66)
        drain = 10
        b = c.bepipe(["--workers", "2", "--set", f"drain_seconds={drain}"])
        end = time.time() + 60
        while len(workers.worker_pids(b.stderr())) < 2 and time.time() < end:
            time.sleep(0.1)
        pids = workers.worker_pids(b.stderr())
        check_eq(len(pids), 2, "two workers started:\n" + b.stderr()[-1500:])
        c.wait_stored(1500, [b])
        b.p.kill()
        b.p.wait()
        left = workers.wait_gone(pids, drain + 15)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        check_eq(left, [], "no worker left after the parent's SIGKILL")
        reads = [int(x) for x in re.findall(r"summary: read=(\d+)", b.stderr())]
        check_eq(len(reads), 2, "both workers drained and summed up:\n" + b.stderr()[-1500:])
        check(all(r > 0 for r in reads), f"both workers pulled: {reads}")
        b2 = c.bepipe()
        c.wait_stored(6000, [b2])
        check_eq(b2.stop(), 0, "exit code of the restart")
        c.verify(expect, raw)


class Idle:
    """A pipeline on an empty subscription for the whole suite (it costs no time of its own):
    Google's emulator, like the service, holds an empty pull about 90 s before it answers {}."""

    def start(self):
        self.c = Case().__enter__()
        self.t0 = time.time()
        self.b = self.c.bepipe(["--set", "stats_seconds=10"])

    def stop(self):
        if self.b.p.poll() is None:
            self.b.p.kill()
            self.b.p.wait()
        self.c.__exit__(None, None, None)


IDLE = Idle()


@case
def g_idle_long_polls_are_not_cut_off():
    # past the 60 s a silent transfer may last elsewhere and past Google's ~90 s hold, so that
    # some pulls came back empty on their own
    time.sleep(max(0, IDLE.t0 + 100 - time.time()))
    b = IDLE.b
    t0 = time.time()
    check_eq(b.stop(signal.SIGTERM, timeout=40), 0, "exit code: " + b.stderr()[-1500:])
    took = time.time() - t0
    err = b.stderr()
    check(" warn " not in err and " error " not in err,
          "an idle pipeline logs no failure:\n" + err[-1500:])
    ret = [int(x) for x in re.findall(r"retries=(\d+)", err)]
    fails = [int(x) for x in re.findall(r"pull_failures=(\d+)", err)]
    check(ret and ret[-1] == 0 and fails[-1] == 0,
          f"no pull retried or failed while idle: retries={ret[-1:]} pull_failures={fails[-1:]}")
    check(took < 10, f"drained in {took:.1f} s with long-polls in flight")


def bin_arg():
    """--bin as run_cases will read it (the idle pipeline starts before the cases)."""
    argv = sys.argv[1:]
    if "--bin" in argv and argv.index("--bin") + 1 < len(argv):
        return argv[argv.index("--bin") + 1]
    return os.environ.get("BEPIPE_BIN", os.path.join(ROOT, "bepipe-lua"))


def main():
    global GOOGLE, HOME, SDK_ENV
    why = missing_tools()
    if why:
        print(f"google-emulator: skipped: {why}")
        print("0 passed, 0 failed")
        print(f"{len(CASES)} skipped")
        return
    HOME = tempfile.mkdtemp(prefix="bepipe-google-")
    SDK_ENV = sdk_env(HOME)
    try:
        GOOGLE = GooglePubSub(HOME)
    except Failure as e:
        print(f"FAIL google emulator: {e}")
        print(f"0 passed, {len(CASES)} failed")
        sys.exit(1)
    try:
        local.BIN = os.path.abspath(bin_arg())
        IDLE.start()
        local.run_cases(CASES, os.path.join(ROOT, "bepipe-lua"))
    finally:
        IDLE.stop()
        GOOGLE.stop()
        shutil.rmtree(HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
