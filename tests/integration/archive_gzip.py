"""archive.compression = gzip, through the emulator (which stores contentEncoding and serves
decompressive transcoding as GCS does): a live run stores every archive and dead-letter object as
one gzip member with contentEncoding gzip, the names unchanged and every raw line in them once,
@google-cloud/storage downloads them as NDJSON, and replay reads them back into the live rows; an upload whose reply was lost meets a 412 and is
recognised as ours by the compressed bytes' MD5 (no copy under a suffix); a replay of plain and
gzip objects together gives the insertIds of the plain formula (name, generation, line) for both;
a corrupted gzip object stops the replay with a reason naming it, and so does one served
decompressed by a server that ignores Accept-Encoding; a local .json file that is gzip replays
like the plain one; --local-out stays plain NDJSON with gzip set, and says so; upload faults and
a SIGTERM while an upload stalls lose no line."""
import gzip
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import zlib

import cloud
import replay as rp
import run as local
from run import check, check_eq

CASES = []
TABLES = local.TABLES


def case(fn):
    CASES.append(fn)
    return fn


def meta(emu, name):
    path = os.path.join(emu.data, "gcs-meta", cloud.BUCKET, urllib.parse.quote(name, safe="") + ".json")
    with open(path) as f:
        return json.load(f)


def stored(emu, name):
    with open(os.path.join(emu.data, "gcs", cloud.BUCKET, name), "rb") as f:
        return f.read()


def one_member(data):
    """The plain bytes of data, which must be exactly one gzip member."""
    d = zlib.decompressobj(16 + 15)
    plain = d.decompress(data) + d.flush()
    check(d.eof and d.unused_data == b"", "exactly one gzip member, nothing after it")
    return plain


def put_gzip(emu, name, plain, corrupt=False):
    """Uploads plain gzip-compressed with contentEncoding gzip in the object's metadata (a
    multipart upload, as Google documents it); corrupt flips a byte of the deflate data."""
    data = bytearray(gzip.compress(plain, 6))
    if corrupt:
        data[len(data) // 2] ^= 0x55
    boundary = "bepipe-gzip-test-boundary"
    md = json.dumps({"name": name, "contentEncoding": "gzip",
                     "contentType": "application/x-ndjson"}).encode()
    body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode() + md
            + f"\r\n--{boundary}\r\nContent-Type: application/x-ndjson\r\n\r\n".encode()
            + bytes(data) + f"\r\n--{boundary}--\r\n".encode())
    url = f"{emu.url}/upload/storage/v1/b/{cloud.BUCKET}/o?uploadType=multipart"
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/related; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        res = json.loads(r.read())
    check_eq(res.get("contentEncoding"), "gzip", "the test object is stored as gzip")
    return res


def needs_query_encoding(emu):
    """Skips the case unless the emulator stores contentEncoding from a media upload's query
    parameter (objects.insert's documented way, which bepipe-lua uses)."""
    url = (f"{emu.url}/upload/storage/v1/b/{cloud.BUCKET}/o?uploadType=media"
           "&name=_probe.json&contentEncoding=gzip")
    req = urllib.request.Request(url, data=gzip.compress(b"{}\n"), method="POST",
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as r:
        res = json.loads(r.read())
    req = urllib.request.Request(f"{emu.url}/storage/v1/b/{cloud.BUCKET}/o/_probe.json",
                                 method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()
    if res.get("contentEncoding") != "gzip":
        raise local.Skip("the emulator does not take contentEncoding from a media upload's "
                         "query parameter")


def fnv1a(s):
    h = 14695981039346656037
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def expected_ids(name, generation, nlines):
    """The insertIds replay gives an object: <basename>@<FNV-1a of gs://B/NAME#GEN>:<line>."""
    base = name.rsplit("/", 1)[-1][:60]
    h = fnv1a(f"gs://{cloud.BUCKET}/{name}#{generation}")
    return [f"{base}@{h:016x}:{i}" for i in range(1, nlines + 1)]


@case
def gzip_archive_objects_are_one_member_each_and_replay_gives_the_live_rows():
    with cloud.Scenario() as s:
        needs_query_encoding(s.emu)
        expect, raw = rp.live_run(s, 3000, seed=61, extra=[
            "--set", "archive.roll_bytes=40000", "--set", "archive.compression=gzip"])
        names = rp.archive_names(s.emu)
        check(len(names) >= 10, f"many archive objects: {len(names)}")
        check(any(n.startswith("output/errors/") for n in names), "dead-letter objects too")
        archived, plain_bytes, stored_bytes = [], 0, 0
        for n in names:
            m, data = meta(s.emu, n), stored(s.emu, n)
            check_eq((m.get("contentEncoding"), m.get("contentType")),
                     ("gzip", "application/x-ndjson"), f"{n}: metadata")
            check_eq(int(m["size"]), len(data), f"{n}: size is the stored bytes'")
            plain = one_member(data)
            plain_bytes += len(plain)
            stored_bytes += len(data)
            archived.extend(local.unmark(l) for l in plain.split(b"\n")[:-1])
        check_eq(sorted(archived), sorted(raw), "every raw line archived once, as NDJSON")
        check(stored_bytes * 2 < plain_bytes, f"compressed: {stored_bytes} of {plain_bytes} bytes")
        # a reader that does not accept gzip gets NDJSON (decompressive transcoding)
        url = (f"{s.emu.url}/storage/v1/b/{cloud.BUCKET}/o/"
               + urllib.parse.quote(names[0], safe="") + "?alt=media")
        req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
        with urllib.request.urlopen(req, timeout=30) as r:
            check_eq(r.read(), one_member(stored(s.emu, names[0])), "transcoded download")
        r = rp.replay(s.emu, [f"gs://{cloud.BUCKET}/output", "--set", "stats_seconds=0"])
        check_eq(r.returncode, 0, "replay exit code: " + r.stderr[-2500:])
        check(" error " not in r.stderr, "no error line:\n" + r.stderr[-2000:])
        for t in TABLES:
            check_eq(rp.content(rp.ds_rows(s.emu, t)), rp.content(s.emu.rows(t)),
                     f"{t}: the live rows")
        f = rp.summary_fields(r.stderr)
        check_eq(f["rows"], str(sum(expect["rows"].values())), "rows replayed")


NODE_DOWNLOAD = """
const { Storage } = require(process.argv[1] + '/@google-cloud/storage');
new Storage({ projectId: 'p' }).bucket(process.argv[2]).file(process.argv[3])
  .download({ validation: 'md5' }).then(([b]) => process.stdout.write(b),
                                        (e) => { console.error(e.message); process.exit(1); });
"""


@case
def gzip_archive_object_read_by_the_official_client():
    mods = os.path.join(cloud.ROOT, "tests", "emulator", "conformance", "node_modules")
    if not os.path.isdir(os.path.join(mods, "@google-cloud", "storage")):
        raise local.Skip("@google-cloud/storage is not installed (make deps-test; "
                         "tests/emulator/run-tests installs it)")
    with cloud.Scenario() as s:
        needs_query_encoding(s.emu)
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=64)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu, ["--set", "archive.compression=gzip"])
        cloud.wait_drained(s.emu, 300, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        names = rp.archive_names(s.emu)
        check(names, "archive objects")
        env = dict(os.environ, STORAGE_EMULATOR_HOST=s.emu.url)
        env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        archived = []
        for n in names:
            r = subprocess.run(["node", "-e", NODE_DOWNLOAD, mods, cloud.BUCKET, n], env=env,
                               capture_output=True, timeout=60)
            check_eq(r.returncode, 0, f"{n}: the Node client's download: " + r.stderr.decode()[-800:])
            check_eq(r.stdout, one_member(stored(s.emu, n)), f"{n}: NDJSON, validated")
            archived.extend(local.unmark(l) for l in r.stdout.split(b"\n")[:-1])
        check_eq(sorted(archived), sorted(raw), "every raw line, read by the official client")


@case
def gzip_upload_whose_reply_was_lost_is_recognised_by_the_compressed_md5():
    with cloud.Scenario() as s:
        needs_query_encoding(s.emu)
        path, expect, raw = cloud.corpus(s.tmp, 400, seed=62)
        s.emu.publish(path)
        # the first upload is stored, then its reply is lost: the retry meets a 412
        s.emu.fault({"op": "storage.objects.insert.*", "reset": "after", "count": 1})
        b = cloud.Bepipe(s.emu, ["--set", "archive.compression=gzip", "--set",
                                 "archive.roll_seconds=2", "--set", "retry.max_ms=300"])
        cloud.wait_drained(s.emu, 400, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        err = b.stderr()
        check("was already stored by an earlier attempt" in err, "the 412 recognised ours:\n"
              + err[-2000:])
        names = rp.archive_names(s.emu)
        check(not any(re.search(r"\d{14}_\d+\.json$", n) for n in names),
              f"no copy under a suffix: {names}")
        archived = []
        for n in names:
            archived.extend(local.unmark(l) for l in one_member(stored(s.emu, n)).split(b"\n")[:-1])
        check_eq(sorted(archived), sorted(raw), "every raw line archived once")


def gz_objects(emu):
    """{object name: [lines]} of the bucket, each object one gzip member."""
    root = os.path.join(emu.data, "gcs", cloud.BUCKET)
    res = {}
    for dp, _, ns in os.walk(root):
        for n in ns:
            with open(os.path.join(dp, n), "rb") as f:
                res[os.path.relpath(os.path.join(dp, n), root)] = one_member(f.read()).split(b"\n")[:-1]
    return res


@case
def gzip_archive_under_upload_faults_and_sigterm_mid_upload_loses_nothing():
    """503s, a reset after the object landed (the 412 path), and SIGTERM while an upload
    stalls: the run exits, a restart drains the rest, and every raw line is in a valid gzip
    member (none cut, none lost)."""
    with cloud.Scenario() as s:
        needs_query_encoding(s.emu)
        path, expect, raw = cloud.corpus(s.tmp, 6000, seed=66)
        s.emu.publish(path)
        for rule in [{"op": "storage.objects.insert.*", "status": 503, "count": 2},
                     {"op": "storage.objects.insert.*", "reset": "after", "count": 1, "skip": 3},
                     {"op": "storage.objects.insert.*", "stall": 40, "count": 1, "skip": 6}]:
            s.emu.fault(rule)
        gz = ["--set", "archive.compression=gzip", "--set", "archive.roll_bytes=40000",
              "--set", "retry.max_ms=500", "--set", "drain_seconds=5"]
        b = cloud.Bepipe(s.emu, gz)
        end = time.time() + 60
        while time.time() < end and rp.counter(s.emu, "storage.objects.insert.media", None) < 8:
            time.sleep(0.1)
        check(rp.counter(s.emu, "storage.objects.insert.media", None) >= 8,
              "uploads past the stalled one")
        b.stop()
        s.emu.clear_faults()
        b2 = cloud.Bepipe(s.emu, gz)
        cloud.wait_drained(s.emu, 6000, [b2])
        check_eq(b2.stop(), 0, "exit code of the restart: " + b2.stderr()[-1500:])
        archived = [local.unmark(l) for ls in gz_objects(s.emu).values() for l in ls]
        check_eq(set(archived), set(raw), "every raw line archived")
        for t in TABLES:
            check_eq(len(s.emu.rows(t)), expect["rows"][t], f"rows in {t}")


@case
def replay_of_plain_and_gzip_objects_gives_the_same_insert_ids_formula():
    with cloud.Scenario() as s:
        lines = [json.dumps({"event_type": "inventory", "inventory_id": f"{i:08x}-0000-4000-8000-"
                             "000000000001", "product_id": "11111111-2222-4333-8444-555555555555",
                             "warehouse_id": "11111111-2222-4333-8444-666666666666",
                             "quantity_change": i % 50, "reason": "restock",
                             "timestamp": "2025-03-01T10:00:00Z"}).encode() for i in range(120)]
        plain = b"\n".join(lines[:60]) + b"\n"
        gz = b"\n".join(lines[60:]) + b"\n"
        p = rp.put_object(s.emu, "mixed/2025/03/01/10/inventory_a.json", plain)
        g = put_gzip(s.emu, "mixed/2025/03/01/10/inventory_b.json", gz)
        out = os.path.join(s.tmp, "out")
        env = rp.env_of(s.emu)
        r = subprocess.run([local.BIN, "replay", local.PIPELINE, f"gs://{cloud.BUCKET}/mixed/",
                            "--local-out", out, "--set", "stats_seconds=0"], capture_output=True,
                           text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        local.no_sanitizer(r.stderr)
        check_eq(r.returncode, 0, "replay: " + r.stderr[-2000:])
        rows = local.read_rows(out, "inventory_events")
        check_eq(sorted(json.loads(x["json"])["inventory_id"] if isinstance(x["json"], str)
                        else x["json"]["inventory_id"] for x in rows),
                 sorted(json.loads(l)["inventory_id"] for l in lines), "both objects' rows")
        ids = sorted(x["insertId"] for x in rows)
        want = sorted(expected_ids(p["name"], p["generation"], 60)
                      + expected_ids(g["name"], g["generation"], 60))
        check_eq(ids, want, "insertIds: name, generation and line, compressed or not")


@case
@local.errors(r" error replay: gs://\S+/order_x\.json: not valid gzip: ")
def replay_of_a_corrupted_gzip_object_stops_with_a_reason_naming_it():
    with cloud.Scenario() as s:
        body = b"".join(json.dumps({"event_type": "order", "n": i}).encode() + b"\n"
                        for i in range(20000))
        put_gzip(s.emu, "bad/2025/03/01/10/order_x.json", body, corrupt=True)
        r = rp.replay(s.emu, [f"gs://{cloud.BUCKET}/bad/"])
        check_eq(r.returncode, 1, "a corrupted object fails the replay: " + r.stderr[-1500:])
        check(re.search(r"error replay: gs://%s/bad/2025/03/01/10/order_x\.json: not valid gzip"
                        % cloud.BUCKET, r.stderr), "the reason names the object:\n"
              + r.stderr[-1500:])
        check("Sanitizer" not in r.stderr and "Segmentation" not in r.stderr, "no crash")


@case
@local.errors(r" error replay: reading gs://\S+/order_t\.json: the server sent \d+ bytes for "
              r"the whole object where \d+ are stored")
def replay_of_a_gzip_object_served_decompressed_is_refused_not_cut():
    """A server (or proxy) that ignores Accept-Encoding: gzip answers the Range request with the
    whole object decompressed (200, no Content-Encoding): those are not the listed object's
    stored bytes, so the replay stops naming the object instead of taking the first
    stored-size bytes of the plain text as the object (rows silently lost, a line cut)."""
    with cloud.Scenario() as s:
        plain = b"".join(json.dumps({"event_type": "order", "n": i, "pad": "x" * 40}).encode()
                         + b"\n" for i in range(3000))
        put_gzip(s.emu, "tc/2025/03/01/10/order_t.json", plain)
        s.emu.fault({"op": "storage.objects.get.media", "count": -1, "status": 200,
                     "body": plain.decode(), "headers": {"Content-Type": "application/x-ndjson"}})
        r = rp.replay(s.emu, [f"gs://{cloud.BUCKET}/tc/"])
        check_eq(r.returncode, 1, "bytes other than the stored ones fail the replay: "
                 + r.stderr[-1500:])
        check(re.search(r"error replay: .*gs://%s/tc/2025/03/01/10/order_t\.json" % cloud.BUCKET,
                        r.stderr), "the reason names the object:\n" + r.stderr[-1500:])


@case
def replay_of_a_gzip_object_whose_first_read_brings_one_byte_inflates_it():
    """A server may answer a Range request with fewer bytes than asked (HTTP allows a 206 with
    a shorter range): a first read of one byte (0x1f) cannot tell gzip from plain text, so the
    decision waits for the second byte instead of taking the object for plain text (every line
    then garbage and dead-lettered, no row)."""
    with cloud.Scenario() as s:
        lines = [json.dumps({"event_type": "inventory", "inventory_id": f"{i:08x}-0000-4000-8000-"
                             "000000000002", "product_id": "11111111-2222-4333-8444-555555555555",
                             "warehouse_id": "11111111-2222-4333-8444-666666666666",
                             "quantity_change": i % 50, "reason": "restock",
                             "timestamp": "2025-03-01T10:00:00Z"}).encode() for i in range(50)]
        put_gzip(s.emu, "short/2025/03/01/10/inventory_s.json", b"\n".join(lines) + b"\n")
        s.emu.fault({"op": "storage.objects.get.media", "count": 1, "status": 206,
                     "body": "\u001f", "headers": {"Content-Type": "application/x-ndjson"}})
        out = os.path.join(s.tmp, "out")
        r = subprocess.run([local.BIN, "replay", local.PIPELINE, f"gs://{cloud.BUCKET}/short/",
                            "--local-out", out, "--set", "stats_seconds=0"], capture_output=True,
                           text=True, timeout=60, env=rp.env_of(s.emu), stdin=subprocess.DEVNULL)
        local.no_sanitizer(r.stderr)
        check_eq(r.returncode, 0, "replay: " + r.stderr[-2000:])
        rows = local.read_rows(out, "inventory_events")
        check_eq(len(rows), 50, "every line a row:\n" + r.stderr[-1500:])


@case
def replay_of_a_local_gzip_json_file_gives_the_plain_files_rows():
    """Local files gzip wrote, of one member or several, replay as the plain files do."""
    d = tempfile.mkdtemp(prefix="bepipe-gzip-")
    expect, live, src = rp.local_archive(d, 1500, seed=63)
    gz = os.path.join(d, "gz")
    multi = several = 0
    for dp, _, ns in os.walk(src):
        for n in sorted(ns):
            rel = os.path.relpath(os.path.join(dp, n), src)
            os.makedirs(os.path.dirname(os.path.join(gz, rel)), exist_ok=True)
            with open(os.path.join(dp, n), "rb") as f, open(os.path.join(gz, rel), "wb") as o:
                data = f.read()
                if multi % 2 and len(data) > 3000:
                    # every other file as several members, cut mid-line (gzip -c a >> b, or
                    # what pigz --independent or bgzip write): RFC 1952's members, all read
                    o.write(b"".join(gzip.compress(data[i:i + 2999], 1)
                                     for i in range(0, len(data), 2999)))
                    several += 1
                else:
                    o.write(gzip.compress(data, 1))
                multi += 1
    check(several, "some files of several members")
    out = os.path.join(d, "out")
    r = rp.local_replay(gz, out)
    check_eq(r.returncode, 0, "local replay of gzip files: " + r.stderr[-1500:])
    for t in TABLES:
        check_eq(rp.content(x["json"] for x in local.read_rows(out, t)),
                 rp.content(x["json"] for x in local.read_rows(live, t)), f"{t}: the live rows")


@case
def local_out_writes_plain_ndjson_with_gzip_set_and_says_so():
    d = tempfile.mkdtemp(prefix="bepipe-gzip-")
    ev = os.path.join(d, "ev.ndjson")
    local.gen(ev, 500, seed=65)
    out = os.path.join(d, "out")
    rc, _, err = local.run([local.PIPELINE, "--input", ev, "--local-out", out, "--set",
                            "archive.compression=gzip"])
    check_eq(rc, 0, "local run: " + err[-1500:])
    check("--local-out writes the archive as NDJSON a person can read" in err, err[-1500:])
    objs = local.archive_objects(out)
    check(objs, "archive files")
    for name, lines in objs.items():
        check(lines and not lines[0].startswith(b"\x1f\x8b"), f"{name}: not gzip")
    with open(ev, "rb") as f:
        raw = [l for l in f.read().split(b"\n") if l.strip()]
    check_eq(sorted(local.unmark(l) for ls in objs.values() for l in ls), sorted(raw),
             "every event's line, as NDJSON")
