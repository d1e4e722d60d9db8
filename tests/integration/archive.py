"""The archive with late and out-of-order events: one object per folder per roll
period, every raw line in exactly one object, folders by event or publish hour, and flow control
that keeps acking the current hour while late folders stay open."""
import calendar
import collections
import json
import os
import re
import subprocess
import time

import cloud
import run as local
from run import check, check_eq

CASES = []

FOLDER = re.compile(r"^output/(order|inventory|user_activity|errors)/(\d{4})/(\d\d)/(\d\d)/(\d\d)/"
                    r"\1_\d{14}(_\d+)?\.json$")


def case(fn):
    CASES.append(fn)
    return fn


def gen(path, count, seed, lateness, start=None):
    """Writes a corpus with a lateness model; returns (expectation, raw lines)."""
    expect = path + ".expect.json"
    args = ["luajit", local.GEN, "--count", str(count), "--seed", str(seed), "--lateness",
            lateness, "--expect", expect]
    if start:
        args += ["--start-time", str(int(start))]
    with open(path, "wb") as f:
        subprocess.run(args, stdout=f, check=True)
    with open(path, "rb") as f:
        raw = [l for l in f.read().split(b"\n") if l.strip()]
    with open(expect) as f:
        return json.load(f), raw


def check_archive(objs, expect, raw, max_per_folder, what):
    """Every raw line in exactly one object, each row's line in its event hour's folder, and at
    most max_per_folder objects per (type, hour) folder on average."""
    folders = collections.Counter()
    lines, hours = [], collections.Counter()
    for name, ls in objs.items():
        m = FOLDER.match(name)
        check(m, f"{what}: archive object name {name}")
        folders[m.group(1, 2, 3, 4, 5)] += 1
        lines.extend(ls)
        if m.group(1) != "errors":
            hours[(m.group(1) + "_events", "".join(m.group(2, 3, 4, 5)))] += len(ls)
    check_eq(collections.Counter(lines), collections.Counter(raw),
             f"{what}: every raw line archived exactly once")
    for t, per_hour in expect["hours"].items():
        for h, n in per_hour.items():
            check_eq(hours[(t, h)], n, f"{what}: lines of {t} in the folder of hour {h}")
    per = len(objs) / len(folders)
    check(per <= max_per_folder, f"{what}: {len(objs)} objects for {len(folders)} folders "
          f"({per:.2f} per folder, at most {max_per_folder})")
    return folders


def rss_ok(err):
    """Peak RSS <= 64 MB (an ASan build's own shadow memory is not the pipeline's)."""
    m = re.search(r"peak_rss_kb=(\d+)", err)
    check(m, "summary has peak_rss_kb")
    check("asan" in local.BIN or int(m.group(1)) <= 64 * 1024, "peak RSS <= 64 MB: " + m.group(0))


def local_run(d, path, *sets):
    out = os.path.join(d, "out")
    args = [local.PIPELINE, "--input", path, "--local-out", out, "--set", "stats_seconds=0"]
    for s in sets:
        args += ["--set", s]
    rc, _, err = local.run(args)
    check_eq(rc, 0, "exit code: " + err[-1500:])
    check(" error " not in err, "no error lines:\n" + err[-1500:])
    rss_ok(err)
    return local.archive_objects(out)


@case
def archive_live_lateness_one_object_per_folder():
    # 95% of events up to 2 minutes old, 4% 1-24 h late, 1% 1-7 days late: ~450 folders, most
    # with a few late events each (main: an object per late event)
    with local.Tmp() as d:
        path = os.path.join(d, "live.ndjson")
        expect, raw = gen(path, 30000, 7, "live")
        check_archive(local_run(d, path), expect, raw, 1.2, "live")


@case
def archive_uniform_backfill_at_most_two_per_folder():
    # a shuffled two-year backfill squeezed through a small budget: the largest objects are
    # finished, so a folder gets at most a couple of objects
    with local.Tmp() as d:
        path = os.path.join(d, "uniform.ndjson")
        expect, raw = gen(path, 30000, 8, "uniform")
        check_archive(local_run(d, path, "archive.max_open_bytes=4194304"), expect, raw, 2.0,
                      "uniform")


@case
def archive_time_publish_files_by_publish_hour():
    with local.Tmp() as d:
        path = os.path.join(d, "live.ndjson")
        _, raw = gen(path, 3000, 9, "live")
        t0 = time.gmtime()
        objs = local_run(d, path, "archive.time=publish")
        t1 = time.gmtime()
        now = {time.strftime("%Y%m%d%H", t) for t in (t0, t1)}
        lines = []
        for name, ls in objs.items():
            m = FOLDER.match(name)
            check(m and "".join(m.group(2, 3, 4, 5)) in now,
                  f"{name} is in the publish (here: read) hour {now}")
            lines.extend(ls)
        check_eq(collections.Counter(lines), collections.Counter(raw), "every line once")
        check(len(objs) <= 4 * len(now), f"one object per type: {sorted(objs)}")
        rc, _, err = local.run([local.PIPELINE, "--check", "--set", "archive.time=ingest"])
        check(rc != 0 and "archive.time" in err, "a bad archive.time is refused: " + err)


@case
def archive_late_data_under_flow_control_pressure_cloud():
    # live lateness around now, through the emulator, with a small flow-control window: the
    # current hour keeps being acked (the run drains in time), nothing is lost or doubled, and
    # late folders are not split into an object per late event
    with cloud.Scenario() as s:
        path = os.path.join(s.tmp, "live.ndjson")
        expect, raw = gen(path, 20000, 10, "live", start=time.time() - 4)
        check_eq(s.emu.publish(path), 20000, "published")
        t0 = time.time()
        b = cloud.Bepipe(s.emu, ["--set", "source.max_outstanding_messages=2000",
                                 "--set", "archive.roll_seconds=20"])
        cloud.wait_drained(s.emu, 20000, [b], timeout=60)
        took = time.time() - t0
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        check(" error " not in b.stderr(), "no error lines:\n" + b.stderr()[-2000:])
        objs = s.emu.objects()
        folders = check_archive(objs, expect, raw, 3.0, "cloud")
        late = [f for f in folders if f[0] != "errors" and time.time() - calendar.timegm(
            time.strptime("".join(f[1:]), "%Y%m%d%H")) > 3 * 3600]
        late_objs = sum(folders[f] for f in late)
        check(late_objs <= 2 * len(late), f"late folders: {late_objs} objects for {len(late)}")
        check(took < 45, f"drained in {took:.1f}s (no starvation)")
        rss_ok(b.stderr())
