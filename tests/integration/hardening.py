#!/usr/bin/env python3
"""Hostile input and bad days in production: the modules run.py's SUITES["hardening"] names,
one per feature (leases.py, poison.py, refusals.py...), each contribute a CASES list; this runs
them all (or those whose name contains -k) against one binary and ends with
`N passed, N failed`.

    tests/integration/hardening.py [--bin PATH] [-k SUBSTRING] [-t TAG] [--list]

Each module may use cloud.py's Emulator / Bepipe / Scenario, and run.py's helpers; cases are
plain functions that raise on failure."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

if __name__ == "__main__":
    run.run_modules("hardening")
