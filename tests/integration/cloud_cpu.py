"""The cloud path's own CPU: work the daemon need not do. Archive objects of one
folder opened in the same second share a name stamp; the second upload must not meet a 412 (which
costs an MD5 of the first object, a GET and a second full upload) when this process itself used
the name a moment ago."""
import collections

from run import check, check_eq
from cloud import Bepipe, Scenario, corpus, wait_drained

CASES = []
TAGS = ["archive"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


@case
def same_second_objects_take_a_suffix_without_a_412():
    with Scenario() as s:
        path, expect, raw = corpus(s.tmp, 1500, seed=31, invalid=0)
        s.emu.publish(path)
        # objects of ~4 KB: dozens per folder, finished within the same second
        b = Bepipe(s.emu, ["--set", "archive.roll_bytes=4096"])
        wait_drained(s.emu, 1500, [b])
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        counters = s.emu.admin("GET", "/_emulator/counters")
        ins = counters.get("storage.objects.insert.media", {})
        check(ins.get("calls", 0) > 50, f"many small objects uploaded: {ins}")
        check_eq(ins.get("statuses", {}).get("412", 0), 0, f"uploads answered 412: {ins}")
        check_eq(counters.get("storage.objects.get", {}).get("calls", 0), 0,
                 "existing objects looked up after a 412")
        suffixed = [n for n in s.emu.objects() if n.rsplit("_", 1)[-1].split(".")[0].isdigit()
                    and len(n.rsplit("_", 1)[-1]) < 10]
        check(suffixed, "some names took a suffix (objects of one folder in one second)")
        archived = collections.Counter(l for lines in s.emu.objects().values() for l in lines)
        check_eq(archived, collections.Counter(raw), "every raw line archived exactly once")
