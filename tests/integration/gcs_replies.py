"""GCS success that isn't: a 2xx upload reply that is not our object resource
(empty, not JSON, truncated) never counts as stored: nothing is acked on it, the object is sent
again or its messages redelivered, and in the end every raw line is archived once."""
import time

import cloud
from cloud import TABLES
import run
from run import check, check_eq

CASES = []
TAGS = ["archive"]   # beside the file's name, for -t


def case(fn):
    CASES.append(fn)
    return fn


UPLOAD = "storage.objects.insert.*"


@case
@run.errors(r" error archive: object of \d+ lines not stored, their messages will be "
            r"redelivered: upload of \S+: HTTP 200 but reply ")
def gcs_upload_reply_that_is_not_the_object_is_not_stored():
    with cloud.Scenario() as s:
        path, expect, raw = cloud.corpus(s.tmp, 300, seed=85)
        s.emu.publish(path)
        # phase 1: every upload answers 200 with an empty body, for a while
        s.emu.fault({"op": UPLOAD, "body": "", "count": -1})
        b = cloud.Bepipe(s.emu, ["--set", "retry.attempts=3", "--set", "retry.max_ms=300"])
        end = time.time() + 20
        while time.time() < end:
            ins = s.emu.admin("GET", "/_emulator/counters").get("storage.objects.insert.media", {})
            if ins.get("calls", 0) >= 6:
                break
            time.sleep(0.2)
        check(ins.get("calls", 0) >= 6, f"uploads were tried: {ins}")
        st = s.emu.sub_state()
        check_eq(s.emu.objects(), {}, "no object in the bucket")
        check(st["backlog"] + st["outstanding"] == 300,
              f"no message acked on an empty 200: {st}")
        check(sum(len(s.emu.rows(t)) for t in TABLES) > 0, "rows went to BigQuery meanwhile")
        # phase 2: a few hostile replies in a row (not JSON, truncated, another object), then
        # real uploads
        s.emu.clear_faults()
        for body in ["OK", "<html><body>200 OK</body></html>",
                     '{"kind":"storage#object","bucket":"backend_events_data","na',
                     '{"kind":"storage#object","bucket":"backend_events_data","name":"x",'
                     '"size":"1"}']:
            s.emu.fault({"op": UPLOAD, "body": body, "count": 1})
        cloud.wait_drained(s.emu, 300, [b], timeout=60)
        check_eq(b.stop(), 0, "exit code")
        log = b.stderr()
        check("but reply is not a JSON object" in log, "the bad reply is logged")
        check("reply names another bucket or object" in log, "another object's reply is logged")
        cloud.verify(s.emu, expect, raw)
