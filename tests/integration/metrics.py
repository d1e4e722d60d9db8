"""The HTTP listener: /metrics in Prometheus text format 0.0.4 with counters
that match what went through, /healthz, /readyz, POST /reload, and clients that cannot stall
the pipeline. Also: every metric the Grafana dashboard (deploy/grafana/bepipe-lua.json) queries
is in a real scrape."""
import collections
import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request

import cloud
import run as local
from run import Failure, check, check_eq

CASES = []
DASHBOARD = os.path.join(local.ROOT, "deploy", "grafana", "bepipe-lua.json")


def case(fn):
    CASES.append(fn)
    return fn


# ---- the exposition format, line by line -----------------------------------------------------

NAME = re.compile(r"^bepipe_[a-z0-9_]+$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_labels(text, line):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise Failure("bad labels: " + line)
        check(m.group(1) not in labels, "label twice: " + line)
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return name


def parse_exposition(text):
    """{(name, ((label, value), ...)): float}, {family: type}; raises on any format error."""
    helps, types, samples = {}, {}, {}
    check(text.endswith("\n"), "the exposition ends with a newline")
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            check(name not in helps, "HELP twice: " + name)
            helps[name] = line
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            check(name not in types, "TYPE twice: " + name)
            check(typ in ("counter", "gauge", "histogram"), "type: " + line)
            check(name in helps, "HELP before TYPE: " + name)
            types[name] = typ
            continue
        check(not line.startswith("#") and line.strip(), "unexpected line: %r" % line)
        m = SAMPLE.match(line)
        check(m, "sample syntax: " + line)
        name, labels = m.group(1), parse_labels(m.group(3) or "", line)
        fam = family_of(name, types)
        check(fam in types, "sample before its TYPE: " + line)
        check(NAME.match(name), "name: " + name)
        value = float(m.group(4))  # raises on a value that is not a float
        if types[fam] == "counter":
            check(name.endswith("_total"), "a counter ends in _total: " + name)
            check(value >= 0 and value == int(value), "counter value: " + line)
        else:
            check(not name.endswith("_total"), "only counters end in _total: " + name)
        key = (name, tuple(sorted(labels.items())))
        check(key not in samples, "series twice: " + line)
        samples[key] = value
    for fam, typ in types.items():
        if typ == "histogram":
            check_histogram(fam, samples)
    return samples, types


def check_histogram(fam, samples):
    buckets = [(dict(k[1])["le"], v) for k, v in samples.items() if k[0] == fam + "_bucket"]
    check(buckets and buckets[-1][0] == "+Inf", fam + ": buckets end with le=\"+Inf\"")
    les = [float(le) for le, _ in buckets]
    check(les == sorted(les) and len(set(les)) == len(les), fam + ": le ascending")
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), fam + ": cumulative counts never fall")
    check_eq(samples.get((fam + "_count", ())), counts[-1], fam + "_count == +Inf bucket")
    check((fam + "_sum", ()) in samples, fam + "_sum present")


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def label_values(samples, name, label):
    return {dict(k[1])[label]: v for k, v in samples.items() if k[0] == name}


# ---- HTTP helpers ----------------------------------------------------------------------------

def http(port, path, method="GET", timeout=10):
    """(status, headers, body text); error statuses are answers too."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(port):
    st, hdr, body = http(port, "/metrics")
    check_eq(st, 200, "/metrics status")
    check(hdr["Content-Type"].startswith("text/plain; version=0.0.4"),
          "Content-Type: " + hdr["Content-Type"])
    return parse_exposition(body)


def listen_port(stderr_fn, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(r"httpd: listening on \S+ \(port (\d+)\)", stderr_fn())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise Failure("no 'httpd: listening' line:\n" + stderr_fn()[-2000:])


def dashboard_metrics():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expr":
                    exprs.append(v)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    check(exprs, "the dashboard has queries")
    names = set()
    for e in exprs:
        for n in re.findall(r"bepipe_[a-z0-9_]+", e):
            names.add(re.sub(r"_(bucket|sum|count)$", "", n))
    return names, dash


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- cases -----------------------------------------------------------------------------------

@case
@local.errors(r" error reload: failed, generation \d+ keeps running: \S+/pipeline\.lua:\d+: ")
def metrics_match_what_went_through_the_emulator():
    with cloud.Scenario() as s:
        scripts = local.copy_scripts(os.path.join(s.tmp, "s"))
        path, expect, raw = cloud.corpus(s.tmp, 1000, seed=31)
        check_eq(s.emu.publish(path), 1000, "published")
        # two 503s from insertAll: retried, and counted by api and code
        s.emu.fault({"op": "bigquery.tabledata.insertAll", "status": 503, "count": 2})
        b = cloud.Bepipe(s.emu, ["--http", "127.0.0.1:0"], pipeline=scripts)
        try:
            port = listen_port(b.stderr)
            cloud.wait_drained(s.emu, 1000, [b])
            m, types = scrape(port)
            check_eq(value(m, "bepipe_messages_pulled_total"), 1000, "pulled")
            check_eq(value(m, "bepipe_messages_acked_total"), 1000, "acked")
            check_eq(value(m, "bepipe_messages_nacked_total"), 0, "nacked")
            check_eq(value(m, "bepipe_messages_read_total"), 1000, "read")
            check_eq((value(m, "bepipe_outstanding_messages"),
                      value(m, "bepipe_outstanding_bytes")), (0, 0), "nothing outstanding")
            rows = label_values(m, "bepipe_rows_inserted_total", "table")
            for t in cloud.TABLES + ["rejected_events"]:
                check_eq(rows.get(t), len(s.emu.rows(t)), "rows inserted into " + t)
            stages = collections.Counter(r["error_stage"] for r in s.emu.rows("rejected_events"))
            dead = label_values(m, "bepipe_dead_letters_total", "stage")
            for st in ["parse", "route", "validate", "map", "insert"]:
                check_eq(dead.get(st), stages.get(st, 0), "dead letters at stage " + st)
            check_eq(sum(dead.values()), sum(expect["dead"].values()), "dead letters in all")
            objs = s.emu.objects()
            check_eq(value(m, "bepipe_archive_objects_total"), len(objs), "archive objects")
            check_eq(value(m, "bepipe_archive_lines_total"), 1000, "archive lines")
            check_eq(value(m, "bepipe_archive_bytes_total"),
                     sum(len(l) + 1 for ls in objs.values() for l in ls), "archive bytes")
            check_eq(value(m, "bepipe_ack_latency_seconds_count"), 1000, "one latency per ack")
            check(value(m, "bepipe_ack_latency_seconds_sum") > 0, "ack latency sum")
            check(value(m, "bepipe_batch_duration_seconds_count") >= 1, "batches observed")
            codes = {(dict(k[1])["api"], dict(k[1])["code"]): v for k, v in m.items()
                     if k[0] == "bepipe_http_requests_total"}
            check_eq(codes.get(("bigquery", "503")), 2, "the two 503s counted: %s" % codes)
            for api in ["pubsub", "bigquery", "storage"]:
                check(codes.get((api, "200"), 0) > 0, f"{api} 200s counted: {codes}")
            check(not any(a == "other" for a, _ in codes), "every URL classified: %s" % codes)
            check(value(m, "bepipe_api_retries_total") >= 2, "the retries counted")
            check(value(m, "bepipe_lua_memory_bytes") > 10000, "Lua memory")
            check_eq(value(m, "bepipe_ready"), 1, "ready gauge")
            # the dashboard queries only what a scrape really has
            names, _ = dashboard_metrics()
            missing = names - set(types)
            check(not missing, "dashboard metrics missing from /metrics: %s" % sorted(missing))
            # the other endpoints
            check_eq(http(port, "/healthz")[::2], (200, "ok\n"), "/healthz")
            check_eq(http(port, "/readyz")[::2], (200, "ready\n"), "/readyz")
            st, hdr, _ = http(port, "/reload")
            check_eq((st, hdr["Allow"]), (405, "POST"), "GET /reload")
            check_eq(http(port, "/metrics", "POST")[0], 405, "POST /metrics")
            check_eq(http(port, "/nope")[0], 404, "unknown path")
            # POST /reload: what SIGHUP does, answered with the outcome
            st, _, body = http(port, "/reload", "POST")
            check_eq((st, body), (200, "reloaded: generation 2\n"), "POST /reload")
            with open(scripts, "a") as f:
                f.write("\nthis is not lua\n")
            st, _, body = http(port, "/reload", "POST")
            check_eq(st, 500, "POST /reload of a broken script: " + body)
            check(re.search(r"generation 2 keeps running: .*pipeline\.lua:\d+:", body),
                  "the error with file and line: " + body)
            m, _ = scrape(port)
            check_eq((value(m, "bepipe_reloads_total", result="ok"),
                      value(m, "bepipe_reloads_total", result="failed")), (1, 1), "reloads")
            check_eq(value(m, "bepipe_script_generation"), 2, "generation")
        finally:
            rc = b.stop()
        check_eq(rc, 0, "exit code: " + b.stderr()[-1500:])


INV = local.INV


@case
def idle_clients_do_not_stall_the_pipeline():
    with local.Tmp() as d:
        out = os.path.join(d, "out")
        dm = local.Daemon([local.PIPELINE, "--input", "-", "--local-out", out, "--http",
                           "127.0.0.1:0", "--set", "bigquery.batch_ms=20", "--set",
                           "stats_seconds=0"])
        socks = []
        try:
            port = listen_port(dm.stderr)
            st, _, body = http(port, "/readyz")
            check_eq((st, body), (200, "ready\n"), "/readyz once the source started")
            # more idle connections than the listener takes (32), one with half a request
            for _ in range(40):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            socks[0].sendall(b"GET /metr")
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(300)))
            local.wait_rows(out, "inventory_events", 300)
            # a full listener must not spin the loop
            c0, t0 = cpu_seconds(dm.p.pid), time.time()
            time.sleep(2.0)
            used = cpu_seconds(dm.p.pid) - c0
            check(used < 0.4 * (time.time() - t0), f"idle with a full listener: {used:.2f}s CPU")
            dm.write(b"".join((INV % (i, "sale")).encode() for i in range(300, 400)))
            local.wait_rows(out, "inventory_events", 400)
            # idle connections are closed after 10 s, so a scrape gets through again, even
            # though the clients never close theirs
            t0 = time.time()
            m, _ = scrape_retrying(port, 25)
            check(time.time() - t0 < 20, "listener free again within the idle timeout")
            check_eq(value(m, "bepipe_messages_read_total"), 400, "read")
            check_eq(label_values(m, "bepipe_rows_inserted_total", "table").get(
                "inventory_events"), 400, "rows inserted")
            socks[1].settimeout(5)
            check_eq(socks[1].recv(1), b"", "an idle connection was closed by the server")
        finally:
            for sk in socks:
                sk.close()
            rc, err = dm.finish()
        check_eq(rc, 0, "exit code: " + err[-1000:])


def scrape_retrying(port, timeout):
    end = time.time() + timeout
    while True:
        try:
            return scrape(port)
        except (OSError, urllib.error.URLError):
            if time.time() > end:
                raise
            time.sleep(0.2)


@case
def http_listen_is_checked_and_off_by_default():
    with local.Tmp() as d:
        ev = os.path.join(d, "ev.ndjson")
        with open(ev, "w") as f:
            f.write(INV % (1, "sale"))
        args = [local.PIPELINE, "--input", ev, "--local-out", os.path.join(d, "o")]
        rc, _, err = local.run(args)
        check_eq(rc, 0, "a run without --http: " + err[-500:])
        check("httpd" not in err, "no listener unless asked for")
        rc, _, err = local.run(args[:-1] + [os.path.join(d, "o2"), "--http", "nonsense"])
        check(rc != 0 and "is not ADDR:PORT" in err, "bad address: " + err[-500:])
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            rc, _, err = local.run(args[:-1] + [os.path.join(d, "o3"), "--http",
                                                "127.0.0.1:%d" % taken.getsockname()[1]])
        finally:
            taken.close()
        check(rc != 0 and "cannot listen" in err, "port in use: " + err[-500:])
        rc, out, _ = local.run(["--help"])
        check("http.listen" in out and "--http" in out, "--help names the option")


@case
def readyz_fails_while_draining():
    """SIGTERM with an archive upload stalled: the drain waits, /readyz says 503 meanwhile,
    /healthz stays 200 (the loop runs)."""
    with cloud.Scenario() as s:
        path, _, _ = cloud.corpus(s.tmp, 50, seed=32)
        s.emu.publish(path)
        s.emu.fault({"op": "storage.objects.insert*", "stall": 3, "count": -1})
        b = cloud.Bepipe(s.emu, ["--http", "127.0.0.1:0"])
        try:
            port = listen_port(b.stderr)
            end = time.time() + 20
            while value(scrape(port)[0], "bepipe_messages_pulled_total") < 50:
                check(time.time() < end, "never pulled the 50 messages")
                time.sleep(0.1)
            b.p.send_signal(signal.SIGTERM)
            b.wait_log("draining")
            st, _, body = http(port, "/readyz")
            check_eq((st, body), (503, "not ready: draining\n"), "/readyz while draining")
            check_eq(http(port, "/healthz")[0], 200, "/healthz while draining")
        finally:
            rc = b.stop()
        check_eq(rc, 0, "exit code: " + b.stderr()[-1500:])

