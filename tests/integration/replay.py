"""Replay and backfill: `bepipe-lua replay PIPELINE.lua SOURCE...` reads the
archive back through route/validate/map/schema into the tables. Through the emulator: the archive
of a live Pub/Sub run replayed into another dataset gives the live run's rows, a second replay
adds none (insertIds from object, generation and line), errors/ gives its dead letters again
only when asked; SIGTERM mid-replay with --resume, then a rerun, ends with exactly the right rows
without reading the finished objects again; --since/--until read only the folder hours asked
(the others are not downloaded); listings of many short pages are followed; a missing object or
a permanent error stops with a clear error, transient ones are retried. Locally: the same rows as
the --input run with stable insertIds, --max-rate bounds the rate, progress lines and a summary."""
import base64
import collections
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import cloud
import run as local
from run import check, check_eq

CASES = []
TABLES = local.TABLES
OUT = "backfill"            # the dataset replays write to (the live run's is cloud.DATASET)


def case(fn):
    CASES.append(fn)
    return fn


def ds_rows(emu, table, dataset=OUT):
    path = os.path.join(emu.data, "bigquery", cloud.PROJECT, dataset, table + ".ndjson")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(l) for l in f if l.strip()]


def content(rows):
    """Rows as comparable text without the ingestion time (a replay has its own)."""
    out = []
    for r in rows:
        r = dict(r)
        r.pop("ingestion_time", None)
        out.append(json.dumps(r, sort_keys=True))
    return collections.Counter(out)


def replay_cmd(emu, args, dataset=OUT):
    return [local.BIN, "replay", local.PIPELINE, *args, "--bq_dataset", dataset,
            "--create-tables", "--set", "stats_seconds=0"]


def env_of(emu):
    e = dict(os.environ)
    e.update(emu.env())
    return e


def replay(emu, args, dataset=OUT, timeout=60):
    r = subprocess.run(replay_cmd(emu, args, dataset), capture_output=True, text=True,
                       timeout=timeout, env=env_of(emu), stdin=subprocess.DEVNULL)
    local.no_sanitizer(r.stderr)
    return r


def counter(emu, op, status="200"):
    got = emu.admin("GET", "/_emulator/counters").get(op, {})
    return sum(got.get("statuses", {}).values()) if status is None else \
        got.get("statuses", {}).get(status, 0) + got.get("statuses", {}).get("206", 0)


def put_object(emu, name, data):
    url = (f"{emu.url}/upload/storage/v1/b/{cloud.BUCKET}/o?uploadType=media&name="
           + urllib.parse.quote(name, safe=""))
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def archive_names(emu):
    return sorted(n for n in emu.objects() if cloud.ARCHIVE.match(n))


def live_run(s, n, seed, extra=()):
    """Publishes a corpus and runs the live pipeline over Pub/Sub until it is drained: its tables
    are in cloud.DATASET, its archive under gs://BUCKET/output."""
    path, expect, raw = cloud.corpus(s.tmp, n, seed=seed)
    s.emu.publish(path)
    b = cloud.Bepipe(s.emu, list(extra))
    cloud.wait_drained(s.emu, n, [b])
    check_eq(b.stop(), 0, "live run exit code: " + b.stderr()[-1500:])
    return expect, raw


def summary_fields(stderr):
    m = re.findall(r"replay: done (.*)", stderr)
    check(m, "a replay summary line:\n" + stderr[-2000:])
    return dict(kv.split("=", 1) for kv in m[-1].split())


@case
def replay_gs_archive_gives_the_live_rows_and_twice_no_new_rows():
    with cloud.Scenario() as s:
        expect, raw = live_run(s, 4000, seed=31, extra=["--set", "archive.roll_bytes=40000"])
        names = archive_names(s.emu)
        data = [n for n in names if not n.startswith("output/errors/")]
        check(len(data) >= 20, f"many archive objects: {len(data)}")
        # short pages: the replay must follow nextPageToken
        s.emu.admin("POST", "/_emulator/config", {"listPageMax": 7})
        s.emu.admin("DELETE", "/_emulator/counters")
        src = f"gs://{cloud.BUCKET}/output"
        r = replay(s.emu, [src, "--progress", "0.05"])
        check_eq(r.returncode, 0, "replay exit code: " + r.stderr[-2500:])
        check(" error " not in r.stderr, "no error line:\n" + r.stderr[-2000:])
        pages = counter(s.emu, "storage.objects.list")
        check(pages >= len(names) // 7, f"every page listed ({pages} calls, {len(names)} objects)")
        check_eq(counter(s.emu, "storage.objects.get.media"), len(data),
                 "each data object downloaded once, errors/ left out")
        for t in TABLES:
            check_eq(content(ds_rows(s.emu, t)), content(s.emu.rows(t)), f"{t}: the live rows")
        check_eq(ds_rows(s.emu, "rejected_events"), [], "no dead letter (errors/ not replayed)")
        f = summary_fields(r.stderr)
        total = sum(expect["rows"].values())
        check_eq((f["objects"], f["lines"], f["rows"], f["dead"]),
                 (f"{len(data)}/{len(data)}", str(total), str(total), "0"), "summary")
        check("replay: progress objects=" in r.stderr, "plain progress lines: " + r.stderr[-1500:])
        check_eq(archive_names(s.emu), names, "the raw archive is not written again")
        # the same objects again: the same insertIds, de-duplicated by BigQuery
        r2 = replay(s.emu, [src])
        check_eq(r2.returncode, 0, "second replay: " + r2.stderr[-2000:])
        check_eq(summary_fields(r2.stderr)["rows"], str(total), "rows sent again")
        for t in TABLES:
            check_eq(len(ds_rows(s.emu, t)), expect["rows"][t], f"{t}: no new row")
        # the dead-letter folder when asked for: the live run's dead letters again
        r3 = replay(s.emu, [src + "/errors/"])
        check_eq(r3.returncode, 0, "errors replay: " + r3.stderr[-2000:])
        stages = collections.Counter(x["error_stage"] for x in ds_rows(s.emu, "rejected_events"))
        live = collections.Counter(x["error_stage"] for x in s.emu.rows("rejected_events"))
        check_eq(stages, live, "the live run's dead letters by stage")


def upload_archive(emu, d, hours, per_object, objects_per_hour, seed):
    """Valid events (every line a row) uploaded as archive objects of the given folder hours."""
    path = os.path.join(d, "valid.ndjson")
    n = len(hours) * per_object * objects_per_hour
    local.gen(path, n, seed=seed, invalid=0)
    lines = [l for l in open(path, "rb").read().split(b"\n") if l.strip()]
    by_name, i = {}, 0
    for h in hours:
        for k in range(objects_per_hour):
            name = f"output/mixed/{h}/mixed_{h.replace('/', '')}00{k:02d}.json"
            chunk = lines[i:i + per_object]
            i += per_object
            put_object(emu, name, b"\n".join(chunk) + b"\n")
            by_name[name] = chunk
    return by_name


def table_of(line):
    return json.loads(line)["event_type"] + "_events"


def check_exact_rows(emu, lines, what):
    want = collections.Counter(table_of(l) for l in lines)
    for t in TABLES:
        rows = ds_rows(emu, t)
        check_eq(len(rows), want[t], f"{what}: rows in {t}")
    for t, k in (("order_events", "order_id"), ("inventory_events", "inventory_id")):
        ids = [r[k] for r in ds_rows(emu, t)]
        check_eq(len(ids), len(set(ids)), f"{what}: no duplicate in {t}")


@case
def replay_sigterm_then_resume_completes_and_skips_finished_objects():
    with cloud.Scenario() as s:
        objs = upload_archive(s.emu, s.tmp, ["2025/03/01/10", "2025/03/01/11"], 60, 15, seed=41)
        resume = os.path.join(s.tmp, "resume.txt")
        src = f"gs://{cloud.BUCKET}/output/"
        p = subprocess.Popen(replay_cmd(s.emu, [src, "--resume", resume, "--max-rate", "600",
                                                "--set", "bigquery.batch_ms=50"]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env_of(s.emu))
        end = time.time() + 30
        while time.time() < end and (not os.path.exists(resume) or
                                     open(resume).read().count("\n") < 4):
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=60)[1]
        local.no_sanitizer(err)
        check_eq(p.returncode, 0, "stopped replay drains and exits 0: " + err[-2000:])
        check("draining (SIGTERM)" in err and "--resume continues" in err, err[-1500:])
        done = [l for l in open(resume).read().split("\n") if l]
        check(4 <= len(done) < len(objs), f"some objects finished before SIGTERM: {len(done)}")
        check(all(re.match(r"gs://%s/output/mixed/.*#\d+$" % cloud.BUCKET, l) for l in done),
              "identities are gs://B/NAME#GENERATION: " + done[0])
        s.emu.admin("DELETE", "/_emulator/counters")
        r = replay(s.emu, [src, "--resume", resume])
        check_eq(r.returncode, 0, "resumed replay: " + r.stderr[-2000:])
        check_eq(counter(s.emu, "storage.objects.get.media"), len(objs) - len(done),
                 "finished objects are not read again")
        check_eq(summary_fields(r.stderr)["skipped_finished"], str(len(done)), "summary")
        check_exact_rows(s.emu, [l for ls in objs.values() for l in ls], "after the resume")
        check_eq(len(open(resume).read().split("\n")) - 1, len(objs), "every object recorded")
        r = replay(s.emu, [src, "--resume", resume])
        check_eq(summary_fields(r.stderr)["lines"], "0", "a third run has nothing left")


@case
def replay_since_until_reads_only_the_folder_hours_asked():
    with cloud.Scenario() as s:
        hours = ["2025/03/01/10", "2025/03/01/11", "2025/03/01/12", "2025/03/02/00"]
        objs = upload_archive(s.emu, s.tmp, hours, 20, 3, seed=42)
        put_object(s.emu, "output/errors/2025/03/01/11/errors_20250301110000.json", b"not json\n")
        s.emu.admin("DELETE", "/_emulator/counters")
        src = f"gs://{cloud.BUCKET}/output"
        d = subprocess.run(replay_cmd(s.emu, [src, "--since", "2025-03-01T11:30:00Z", "--until",
                                              "2025-03-01T13", "--dry-run"]),
                           capture_output=True, text=True, env=env_of(s.emu), timeout=30)
        check_eq(d.returncode, 0, "dry run: " + d.stderr[-1500:])
        want = [n for n in objs if "/2025/03/01/11/" in n or "/2025/03/01/12/" in n]
        listed = [l.split("\t")[0] for l in d.stdout.splitlines() if l.startswith("gs://")]
        check_eq(listed, [f"gs://{cloud.BUCKET}/{n}" for n in sorted(want)], "dry run lists")
        check("6 objects" in d.stdout and "6 outside --since/--until" in d.stdout and
              "1 in the dead-letter folder" in d.stdout, d.stdout[-500:])
        check_eq(counter(s.emu, "storage.objects.get.media", None), 0, "a dry run reads nothing")
        check_eq(counter(s.emu, "bigquery.tabledata.insertAll", None), 0, "nor writes")
        r = replay(s.emu, [src, "--since", "2025-03-01T11:30:00Z", "--until", "2025-03-01T13"])
        check_eq(r.returncode, 0, "replay: " + r.stderr[-2000:])
        check_eq(counter(s.emu, "storage.objects.get.media"), len(want),
                 "only the objects of hours 11 and 12 are downloaded")
        check_exact_rows(s.emu, [l for n in want for l in objs[n]], "hours 11-12")
        r = replay(s.emu, [src, "--since", "2025-03-02"], dataset="day2")
        check_eq(r.returncode, 0, "replay: " + r.stderr[-2000:])
        n = sum(len(ds_rows(s.emu, t, "day2")) for t in TABLES)
        check_eq(n, 60, "--since a day: that day's folder only")


@case
@local.errors(r" error replay: listing gs://no-such-bucket/output: 404 from storage: ",
              r" error replay: reading gs://\S+: \d+ from storage: Injected fault: HTTP \d+\.")
def replay_missing_object_is_a_clear_error_and_transient_ones_are_retried():
    with cloud.Scenario() as s:
        objs = upload_archive(s.emu, s.tmp, ["2025/03/01/10"], 30, 2, seed=43)
        src = f"gs://{cloud.BUCKET}/output/"
        s.emu.fault({"op": "storage.objects.list", "status": 503, "count": 1})
        s.emu.fault({"op": "storage.objects.get.media", "status": 503, "count": 2})
        r = replay(s.emu, [src, "--set", "retry.max_ms=200"])
        check_eq(r.returncode, 0, "transient errors retried: " + r.stderr[-2000:])
        check_exact_rows(s.emu, [l for ls in objs.values() for l in ls], "after retries")
        s.emu.fault({"op": "storage.objects.get.media", "status": 404, "count": -1})
        r = replay(s.emu, [src], dataset="other")
        check_eq(r.returncode, 1, "a missing object fails the replay: " + r.stderr[-1500:])
        check(re.search(r"error replay: reading gs://%s/output/mixed/\S+: 404 from storage"
                        % cloud.BUCKET, r.stderr), r.stderr[-1500:])
        r = replay(s.emu, ["gs://no-such-bucket/output"], dataset="other")
        check_eq(r.returncode, 1, "a missing bucket: " + r.stderr[-1500:])
        check("listing gs://no-such-bucket/output: 404 from storage" in r.stderr, r.stderr[-1500:])


def local_archive(d, n, seed):
    ev = os.path.join(d, "ev.ndjson")
    expect = local.gen(ev, n, seed=seed)
    live = os.path.join(d, "live")
    rc, _, err = local.run([local.PIPELINE, "--input", ev, "--local-out", live, "--set",
                            "archive.roll_bytes=20000"])
    check_eq(rc, 0, "live local run: " + err[-1500:])
    return expect, live, os.path.join(live, "gcs", cloud.BUCKET, "output")


def local_replay(src, out, *args):
    r = subprocess.run([local.BIN, "replay", local.PIPELINE, src, "--local-out", out,
                        "--set", "stats_seconds=0", *args], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    local.no_sanitizer(r.stderr)
    return r


@case
def replay_local_folder_gives_the_same_rows_with_stable_insert_ids():
    d = tempfile.mkdtemp(prefix="bepipe-replay-")
    expect, live, src = local_archive(d, 3000, seed=44)
    ids = []
    for k in range(2):
        out = os.path.join(d, f"rep{k}")
        r = local_replay(src, out)
        check_eq(r.returncode, 0, "local replay: " + r.stderr[-1500:])
        for t in TABLES:
            check_eq(content(x["json"] for x in local.read_rows(out, t)),
                     content(x["json"] for x in local.read_rows(live, t)), f"{t}: the live rows")
        ids.append(sorted(x["insertId"] for t in TABLES for x in local.read_rows(out, t)))
        check_eq(local.archive_objects(out), {}, "no archive written again")
    check_eq(ids[0], ids[1], "the same insertIds on every replay")
    check(all(len(i) <= 128 and re.match(r"^[\w.-]+@[0-9a-f]{16}:\d+$", i) for i in ids[0]),
          "insertIds are <basename>@<hash>:<line>: " + ids[0][0])
    out = os.path.join(d, "arch")
    r = local_replay(src, out, "--archive")
    check_eq(sum(len(v) for v in local.archive_objects(out).values()),
             sum(expect["rows"].values()), "--archive writes the raw archive again")


@case
def replay_bad_lines_are_dead_letters_as_with_input():
    # not JSON, a long line whole in one read, a blank line, one longer than a read, a tail
    d = tempfile.mkdtemp(prefix="bepipe-replay-")
    src = os.path.join(d, "a.json")
    with open(src, "w") as f:
        f.write("not json\n" + '{"event_type":"inventory","x":"%s"}\n' % ("a" * 5000) + "\n" +
                '{"event_type":"inventory","x":"%s"}\n' % ("b" * 6000000) + "tail")
    out = os.path.join(d, "out")
    r = local_replay(src, out, "--set", "source.max_line_bytes=1000")
    check_eq(r.returncode, 0, "replay: " + r.stderr[-1500:])
    dead = [x["json"] for x in local.read_rows(out, "rejected_events")]
    check_eq([(x["message_id"].rsplit(":", 1)[1], x["error_stage"]) for x in dead],
             [("1", "parse"), ("2", "parse"), ("4", "parse"), ("5", "parse")], "dead letters")
    check("line of 5033 bytes exceeds" in dead[1]["reason"], dead[1]["reason"])
    check("line of 6000033 bytes exceeds" in dead[2]["reason"], dead[2]["reason"])
    check_eq(len(dead[2]["raw_payload"]), 1024, "the first bytes kept")
    check_eq(summary_fields(r.stderr)["dead"], "4", "summary")


@case
def replay_progress_bar_on_a_terminal():
    import pty
    d = tempfile.mkdtemp(prefix="bepipe-replay-")
    expect, live, src = local_archive(d, 1500, seed=46)
    master, slave = pty.openpty()
    p = subprocess.Popen([local.BIN, "replay", local.PIPELINE, src, "--local-out",
                          os.path.join(d, "out"), "--max-rate", "1500", "--log-level", "warn"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    check_eq(p.wait(30), 0, "exit code: " + out.decode(errors="replace")[-1000:])
    text = out.decode(errors="replace")
    bars = re.findall(r"\rreplay \[[#.]{24}\] (\d+)/(\d+) objects  (\d+) lines  \d+ ev/s  ETA "
                      r"[\d:?]+\x1b\[K", text)
    check(len(bars) >= 3, "a bar redrawn in place: " + repr(text[-600:]))
    check(len(bars) <= 4 * 1.5 + 8, f"a few redraws a second, not more: {len(bars)}")
    last = bars[-1]
    check_eq((last[0], last[1], last[2]), (last[1], last[1], str(sum(expect["rows"].values()))),
             "the last bar: every object and line")
    check(text.endswith("\x1b[K\r\n"), "the bar line is ended: " + repr(text[-100:]))


@case
def replay_max_rate_bounds_events_per_second():
    d = tempfile.mkdtemp(prefix="bepipe-replay-")
    expect, live, src = local_archive(d, 1500, seed=45)
    t0 = time.time()
    r = local_replay(src, os.path.join(d, "slow"), "--max-rate", "1000")
    secs = time.time() - t0
    check_eq(r.returncode, 0, "replay: " + r.stderr[-1500:])
    f = summary_fields(r.stderr)
    lines = int(f["lines"])
    check_eq(lines, sum(expect["rows"].values()), "every line")
    check(secs >= (lines - 100) / 1000.0, f"{lines} lines at <= 1000/s took {secs:.2f} s")
    check(float(f["rate"].rstrip("/s")) <= 1100, "summary rate: " + f["rate"])


# ---- payloads a line cannot carry as is: live -> archive -> replay, byte for byte ----

MARK = b'{"bepipe_raw_b64":"'


def inventory_event(i):
    return {"event_type": "inventory", "inventory_id": "6f1c2a8e-1b2c-4d3e-8f90-%012d" % i,
            "product_id": "6f1c2a8e-1b2c-4d3e-8f90-123456789abc",
            "warehouse_id": "6f1c2a8e-1b2c-4d3e-8f90-123456789abc", "quantity_change": 3,
            "reason": "restock", "timestamp": "2025-03-01T12:00:00Z"}


def odd_payloads():
    """(payload, what its archive line must give back): pretty-printed events (a row each, the
    line compacted), and dead letters a line cannot hold (carried exactly)."""
    pretty = json.dumps(inventory_event(1), indent=1).encode()
    crlf = json.dumps(inventory_event(2), indent=2).replace("\n", "\r\n").encode() + b"\r\n"
    compact = lambda i: json.dumps(inventory_event(i), separators=(",", ":")).encode()
    return [
        (pretty, compact(1)),
        (crlf, compact(2)),
        (compact(3), compact(3)),
        (b"not json\nsecond line\n", None),
        (b"carriage\rreturn", None),
        (bytes(range(256)), None),
        (b'{"event_type":"nope","x":"\xff\xfe"}', None),
        (b'{"bepipe_raw_b64":"aGk="}', None),       # a real event that looks like a marker
        (b"\x00", None),
    ]


def line_payload(line):
    return base64.b64decode(line[len(MARK):-2], validate=True) if line.startswith(MARK) else line


def check_archive_lines(objects, cases, what):
    lines = [l for v in objects.values() for l in v]
    check_eq(len(lines), len(cases), f"{what}: one archive line per message")
    check_eq(collections.Counter(line_payload(l) for l in lines),
             collections.Counter(want or p for p, want in cases),
             f"{what}: each line gives its payload back (compacted when valid JSON)")
    check(all(b"\r" not in l for l in lines), f"{what}: no carriage return in a line")


def dead_payloads(rows):
    return collections.Counter((r["error_stage"], r["raw_payload"]) for r in rows)


def publish_payloads(emu, payloads):
    body = json.dumps({"messages": [{"data": base64.b64encode(p).decode()}
                                    for p in payloads]}).encode()
    req = urllib.request.Request(f"{emu.url}/v1/projects/{cloud.PROJECT}/topics/{cloud.TOPIC}"
                                 ":publish", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        check_eq(len(json.loads(r.read())["messageIds"]), len(payloads), "published")


@case
def replay_multiline_and_binary_payloads_round_trip_through_the_archive():
    cases = odd_payloads()
    with cloud.Scenario() as s:
        publish_payloads(s.emu, [p for p, _ in cases])
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, len(cases), [b])
        check_eq(b.stop(), 0, "live run: " + b.stderr()[-1500:])
        check_eq(len(s.emu.rows("inventory_events")), 3, "the three events are rows")
        check_archive_lines(s.emu.objects(), cases, "live archive")
        src = f"gs://{cloud.BUCKET}/output"
        for source in (src, src + "/errors/"):
            r = replay(s.emu, [source])
            check_eq(r.returncode, 0, "replay: " + r.stderr[-2000:])
        check_eq(content(ds_rows(s.emu, "inventory_events")),
                 content(s.emu.rows("inventory_events")), "replayed rows are the live rows")
        live_dead = s.emu.rows("rejected_events")
        check_eq(len(live_dead), 6, "six dead letters live")
        check_eq(dead_payloads(ds_rows(s.emu, "rejected_events")), dead_payloads(live_dead),
                 "each dead letter replays to the same dead letter (stage and payload)")
    # locally: the marker lines as --input, --local-out, then the archive replayed and read back
    d = tempfile.mkdtemp(prefix="bepipe-replay-")
    ev = os.path.join(d, "in.ndjson")
    with open(ev, "wb") as f:
        for p, _ in cases:
            f.write(MARK + base64.b64encode(p) + b'"}\n')
    live = os.path.join(d, "live")
    rc, _, err = local.run([local.PIPELINE, "--input", ev, "--local-out", live])
    check_eq(rc, 0, "local run: " + err[-1500:])
    check_eq(len(local.read_rows(live, "inventory_events")), 3, "local: three rows")
    check_archive_lines(local.archive_objects(live), cases, "local archive")
    root = os.path.join(live, "gcs", cloud.BUCKET, "output")
    live_dead = [x["json"] for x in local.read_rows(live, "rejected_events")]
    for k, source in enumerate((root, os.path.join(root, "errors"))):
        out = os.path.join(d, f"rep{k}")
        r = local_replay(source, out)
        check_eq(r.returncode, 0, "local replay: " + r.stderr[-1500:])
        if k == 0:
            check_eq(content(x["json"] for x in local.read_rows(out, "inventory_events")),
                     content(x["json"] for x in local.read_rows(live, "inventory_events")),
                     "local replay: the rows")
        else:
            check_eq(dead_payloads(x["json"] for x in local.read_rows(out, "rejected_events")),
                     dead_payloads(live_dead), "local replay: the same dead letters")
    # an archive object given as --input reads the same way
    errs = [os.path.join(dp, n) for dp, _, ns in os.walk(os.path.join(root, "errors")) for n in ns]
    out = os.path.join(d, "again")
    rc, _, err = local.run([local.PIPELINE, "--input", errs[0], "--local-out", out])
    check_eq(rc, 0, "--input of an archive object: " + err[-1500:])
    check_eq(dead_payloads(x["json"] for x in local.read_rows(out, "rejected_events")),
             dead_payloads(live_dead), "--input of the errors/ object: the same dead letters")
