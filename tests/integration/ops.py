#!/usr/bin/env python3
"""Operability (issue 9): every tests/integration/ops_*.py
module contributes a CASES list; this runs them all (or those whose name contains -k) against
one binary and ends with `N passed, N failed`.

    tests/integration/ops.py [--bin PATH] [-k SUBSTRING]

Each module may use cloud.py's Emulator / Bepipe / Scenario, and run.py's helpers; cases are
plain functions that raise on failure."""
import glob
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as local  # noqa: E402

cases = []
for path in sorted(glob.glob(os.path.join(HERE, "ops_*.py"))):
    mod = importlib.import_module(os.path.basename(path)[:-3])
    cases.extend(getattr(mod, "CASES", []))

if __name__ == "__main__":
    local.run_cases(cases, os.path.join(local.ROOT, "bepipe-lua"))
