"""The command line stays what --help says (a guard for the parse_args split)."""
import subprocess

import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def cli_flags_and_errors():
    def cli(*args):
        p = subprocess.run([local.BIN, *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr
    rc, out = cli("--version")
    check(rc == 0 and out.startswith("bepipe-lua "), "--version: " + out)
    rc, out = cli("-h")
    check(rc == 0 and "usage" in out.lower(), "-h prints the usage")
    rc, out = cli("--set", "nokey", "scripts/pipeline.lua")
    check(rc != 0 and "--set takes KEY=VALUE" in out, "--set without '=': " + out)
    rc, out = cli("--workers=0", "scripts/pipeline.lua")
    check(rc != 0 and "--workers takes 1..64" in out, "--workers 0: " + out)
    rc, out = cli("--bogus", "x", "scripts/pipeline.lua")
    check(rc != 0 and "unknown option --bogus" in out, "unknown option: " + out)
    rc, out = cli("test", "scripts/pipeline.lua")
    check(rc != 0 and "usage: bepipe-lua test" in out, "test without events: " + out)
    rc, out = cli("--check", "--streaming", "scripts/pipeline.lua")
    check_eq(rc, 0, "--check with a Dataflow flag: " + out)
    check("Dataflow option; ignored" in out, "Dataflow flags get a notice")
    rc, out = cli("--check", "--set=bigquery.batch_rows=100", "scripts/pipeline.lua")
    check_eq(rc, 0, "--set=KEY=VALUE: " + out)


@case
def readme_reference_lists_every_option():
    import os
    import re
    out = subprocess.run([local.BIN, "--help"], capture_output=True, text=True).stdout
    keys = re.findall(r"^  (\S+) {2,}", out[out.index("options (pipeline.lua keys"):], re.M)
    check(len(keys) > 30, f"--help lists the options: {len(keys)}")
    readme = open(os.path.join(local.ROOT, "README.md")).read()
    missing = [k for k in keys if f"| `{k}` |" not in readme]
    check_eq(missing, [], "keys without a row in the README's pipeline.lua reference")
