#!/usr/bin/env python3
"""The cases of every integration suite that -t (and -k) select, against one binary: run.py's,
cloud.py's and those of the files ops.py and hardening.py run (run.py's SUITES).

    tests/integration/tagged.py -t TAG [-t TAG...] [-k SUBSTRING] [--bin PATH] [--list]

e.g. `-t archive` runs the archive cases of the local, cloud, ops and hardening suites.
google_emulator.py's cases need its own set-up (Google's emulator, the Cloud SDK) and stay there.
Ends with `N passed, N failed`."""
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cloud  # noqa: E402
import run  # noqa: E402

if __name__ == "__main__":
    cases = list(run.CASES) + list(cloud.CASES)
    for modules in run.SUITES.values():
        for name in modules:
            cases.extend(importlib.import_module(name).CASES)
    run.run_cases(cases, os.path.join(run.ROOT, "bepipe-lua"))
