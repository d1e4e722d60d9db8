"""Paths belong to the pipeline: --create-tables reads the ddl/ of the user's
pipeline folder, not the one shipped beside the binary; --local-out refuses a folder that is not
empty unless --append."""
import os
import shutil
import subprocess
import tempfile

import cloud
import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
@local.errors(r" error tables: table \S+\.inventory_events does not exist: --update-tables ",
              r" error main: the tables could not be brought to the DDL \(see above\); stopping ")
def create_tables_reads_the_pipelines_own_ddl():
    # main created the shipped ddl/'s tables for a user's folder (the binary's scripts' parent)
    with cloud.Scenario(tables=False) as s:
        user = os.path.join(s.tmp, "mypipe")
        shutil.copytree(os.path.join(local.ROOT, "scripts"), user)
        os.makedirs(os.path.join(user, "ddl"))
        for name in os.listdir(os.path.join(local.ROOT, "ddl")):
            if name.endswith(".sql") and "inventory" not in name:
                shutil.copy(os.path.join(local.ROOT, "ddl", name), os.path.join(user, "ddl"))
        b = cloud.Bepipe(s.emu, ["--create-tables", "--set", "preflight_seconds=0"],
                         pipeline=os.path.join(user, "pipeline.lua"))
        b.wait_log("dataset and tables are ready", timeout=30)
        b.stop()
        tables = s.emu.admin("GET", f"/bigquery/v2/projects/{cloud.PROJECT}/datasets/"
                                    f"{cloud.DATASET}/tables")
        names = sorted(t["tableReference"]["tableId"] for t in tables.get("tables", []))
        check("inventory_events" not in names and "order_events" in names,
              f"the user's ddl/ was used: {names}")


@case
def local_out_refuses_a_used_folder_without_append():
    d = tempfile.mkdtemp(prefix="bepipe-paths-")
    ev = os.path.join(d, "ev.ndjson")
    local.gen(ev, 100, seed=2)
    out = os.path.join(d, "out")

    def go(*extra):
        return subprocess.run([local.BIN, local.PIPELINE, "--input", ev, "--local-out", out,
                               *extra], capture_output=True, text=True, timeout=60)
    check_eq(go().returncode, 0, "first run into a new folder")
    p = go()
    check(p.returncode != 0 and "is not empty" in p.stderr and "--append" in p.stderr,
          "second run refused: " + p.stderr[-500:])
    check_eq(go("--append").returncode, 0, "--append adds to it")
    rows = sum(len(local.read_rows(out, t)) for t in local.TABLES + ["rejected_events"])
    check_eq(rows, 200, "two runs' rows")
    shutil.rmtree(d, ignore_errors=True)


@case
def event_modules_come_only_from_the_pipelines_folder():
    # main fell back to the shipped script of the same name (the binary's scripts/ was on the
    # module path); now a missing script is an error naming where it was looked for
    d = tempfile.mkdtemp(prefix="bepipe-paths-")
    user = os.path.join(d, "mypipe")
    shutil.copytree(os.path.join(local.ROOT, "scripts"), user)
    shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(user, "ddl"))
    os.remove(os.path.join(user, "events", "inventory.lua"))
    p = subprocess.run([local.BIN, "--check", os.path.join(user, "pipeline.lua")],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode != 0, "a missing event script is an error")
    check("route inventory" in p.stderr and "events.inventory" in p.stderr and
          os.path.join(user, "events", "inventory.lua") in p.stderr, p.stderr[-600:])
    # the bepipe library comes from the install, whatever copy the user's folder holds
    with open(os.path.join(user, "bepipe", "check.lua"), "w") as f:
        f.write("error('the stale copy in the user folder was loaded')\n")
    shutil.copy(os.path.join(local.ROOT, "scripts", "events", "inventory.lua"),
                os.path.join(user, "events", "inventory.lua"))
    p = subprocess.run([local.BIN, "--check", os.path.join(user, "pipeline.lua")],
                       capture_output=True, text=True, timeout=30)
    check_eq(p.returncode, 0, "the library is the install's: " + p.stderr[-600:])
    shutil.rmtree(d, ignore_errors=True)
