"""The archive's object count when open files run out: late folders
that grow past the archive's pending chunk must not cost the current hour an extra object each."""
import collections
import os

import run as local
from run import check, check_eq

CASES = []
TAGS = ["archive"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


def inv(i, ts, pad):
    """An inventory event of hour ts, padded with a field the row drops."""
    line = (local.INV % (i, "sale")).strip()
    return line.replace("2025-03-01T12:00:00Z", ts)[:-1] + ',"note":"%s"}' % pad


@case
def archive_files_taken_no_extra_objects():
    # one current hour and 6 late hours, each late folder passing 64 KB (its own file) with only
    # 2 files allowed: main finished the largest file's object (the current hour's) each time a
    # late folder needed a file, 7 extra objects; within the byte budget none is needed
    with local.Tmp() as d:
        path = os.path.join(d, "ev.ndjson")
        pad = "x" * 300
        lines = []
        for i in range(4200):
            h = i % 7
            ts = "2025-03-01T12:00:00Z" if h == 0 else "2025-02-2%dT0%d:00:00Z" % (h, h)
            lines.append(inv(i, ts, pad))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = os.path.join(d, "out")
        rc, _, err = local.run([local.PIPELINE, "--input", path, "--local-out", out, "--set",
                                "stats_seconds=0", "--set", "archive.max_open=2"])
        check_eq(rc, 0, "exit code: " + err[-1500:])
        objs = local.archive_objects(out)
        folders = collections.Counter(n.rsplit("/", 1)[0] for n in objs)
        check_eq(collections.Counter(l for ls in objs.values() for l in ls),
                 collections.Counter(l.encode() for l in lines),
                 "every line archived exactly once")
        check_eq(len(folders), 7, "folders: %s" % sorted(folders))
        check_eq(len(objs), 7, "one object per folder: %s" % sorted(folders.items()))
