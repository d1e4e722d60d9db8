"""Script tooling that tests: `bepipe-lua test PIPELINE.lua FIXTURES` asserts
each fixture's expectation, prints one line per failing case with what differs, ends with
`N passed, N failed` and exits 1 on any failure; without expectations its output is stable
(keys sorted, ingestion_time as a placeholder) so two runs diff cleanly."""
import json
import os
import subprocess
import tempfile

import run as local
from run import check, check_eq

CASES = []
EXAMPLE = os.path.join(local.ROOT, "examples", "fixtures.ndjson")


def case(fn):
    CASES.append(fn)
    return fn


def test_cmd(path):
    p = subprocess.run([local.BIN, "test", local.PIPELINE, path], capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout


@case
def shipped_fixtures_pass():
    rc, out = test_cmd(EXAMPLE)
    n = sum(1 for l in open(EXAMPLE) if l.strip())
    check_eq(rc, 0, "exit code:\n" + out)
    check(out.rstrip().endswith(f"{n} passed, 0 failed"), "summary:\n" + out)


@case
def failing_fixture_gets_a_diff_and_exit_1():
    # main printed and exited 0 whatever the scripts did
    cases = [json.loads(l) for l in open(EXAMPLE) if l.strip()]
    first = cases[0]
    first["expect"]["row"]["quantity_change"] = 5
    cases[1]["expect"] = {"table": "inventory_events"}
    d = tempfile.mkdtemp(prefix="bepipe-fx-")
    path = os.path.join(d, "fx.ndjson")
    with open(path, "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    rc, out = test_cmd(path)
    check_eq(rc, 1, "exit code")
    fails = [l for l in out.splitlines() if l.startswith("FAIL ")]
    check_eq(len(fails), 2, "one line per failing case:\n" + out)
    check("line 1: row quantity_change: expected 5, got -20" in fails[0], fails[0])
    check("line 2: expected table inventory_events, got dead validate" in fails[1], fails[1])
    check(out.rstrip().endswith(f"{len(cases) - 2} passed, 2 failed"), out)


@case
def output_without_expectations_is_stable():
    d = tempfile.mkdtemp(prefix="bepipe-fx-")
    path = os.path.join(d, "ev.ndjson")
    local.gen(path, 200, seed=13)
    rc1, out1 = test_cmd(path)
    rc2, out2 = test_cmd(path)
    check_eq((rc1, rc2), (0, 0), "exit codes")
    check_eq(out1, out2, "two runs print the same")
    row = next(l for l in out1.splitlines() if " -> " in l)
    obj = json.loads(row.split(" ", 5)[5])
    check_eq(obj.get("ingestion_time"), "(ingestion time)", "ingestion_time as a placeholder")
    check_eq(list(obj), sorted(obj), "keys sorted")
