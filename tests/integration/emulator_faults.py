"""The emulator's `body` fault answers raw text: what hostile-reply tests build on."""
import json
import urllib.request

import cloud
from run import check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def emulator_body_fault_answers_raw_text():
    with cloud.Scenario() as s:
        s.emu.fault({"op": "pubsub.subscriptions.pull", "body": "{\"receivedMessages\":7"})
        url = f"{s.emu.url}/v1/projects/{cloud.PROJECT}/subscriptions/{cloud.SUB}:pull"
        req = urllib.request.Request(url, data=b'{"maxMessages":1}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            check_eq((r.status, r.read()), (200, b"{\"receivedMessages\":7"), "raw reply")
        with urllib.request.urlopen(req, timeout=10) as r:
            check_eq(json.loads(r.read()), {}, "the rule applied once; then a real (empty) pull")
