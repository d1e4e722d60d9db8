"""Script errors that point at the user's own code (issue 9, item 5): --check refuses unknown
route keys and routes whose table has no DDL, naming the route and the file; errors inside the
bepipe library are reported at the user's line; a map that returns nil or a row without its
time field gets a plain reason."""
import os
import shutil
import subprocess
import tempfile

import run as local
from run import check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def user_copy():
    d = tempfile.mkdtemp(prefix="bepipe-check-")
    shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(d, "scripts"))
    shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(d, "ddl"))
    return d, os.path.join(d, "scripts", "pipeline.lua")


def patch(d, rel, old, new):
    path = os.path.join(d, "scripts", rel)
    src = open(path).read()
    check(old in src, f"{rel} has {old!r}")
    open(path, "w").write(src.replace(old, new, 1))
    return path


def cli(*args):
    return subprocess.run([local.BIN, *args], capture_output=True, text=True, timeout=60)


@case
def check_refuses_an_unknown_route_key():
    # main ignored a typo like `tim_field`
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", 'time_field = "timestamp"', 'tim_field = "timestamp"')
    r = cli("--check", p)
    check(r.returncode != 0, "refused")
    check("route inventory" in r.stderr and "unknown key `tim_field`" in r.stderr and
          f in r.stderr, "names the route, the key and the file: " + r.stderr)


@case
def check_refuses_a_route_without_ddl():
    d, p = user_copy()
    os.remove(os.path.join(d, "ddl", "order_events.sql"))
    r = cli("--check", p)
    check(r.returncode != 0, "refused")
    check("no CREATE TABLE" in r.stderr and "order_events" in r.stderr, r.stderr)
    check_eq(cli("--check", local.PIPELINE).returncode, 0, "the shipped pipeline passes")


def run_events(p, lines):
    d = tempfile.mkdtemp(prefix="bepipe-check-ev-")
    ev = os.path.join(d, "ev.ndjson")
    with open(ev, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([local.BIN, "test", p, ev], capture_output=True, text=True, timeout=60)
    check_eq(r.returncode, 0, "test exit code: " + r.stderr)
    return r.stdout


INV = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc",'
       '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
       '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":5,"reason":"sale",'
       '"timestamp":"2025-03-01T12:00:00Z"}')


@case
def map_returning_nil_gets_a_plain_reason():
    # main: "bepipe/host.lua:231: attempt to index local 'row'"
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.map(ev)", "function M.map(ev)\n    do return nil end")
    out = run_events(p, [INV])
    check("DEAD map: map error: map returned nil, not a row table" in out and f in out, out)
    check("host.lua" not in out, "no library location: " + out)


@case
def row_without_its_time_field_gets_a_plain_reason():
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.map(ev)",
              "function M.map(ev)\n    do return { inventory_id = ev.inventory_id } end")
    out = run_events(p, [INV])
    check("the row has no `timestamp` (the route's time_field)" in out, out)
    check("check.lua" not in out, "no library location: " + out)


@case
def library_errors_name_the_users_line():
    # a bepipe.check helper misused from a script: the error is reported at the script's line
    d, p = user_copy()
    f = patch(d, "events/inventory.lua", "function M.validate(ev)",
              "function M.validate(ev)\n    require('bepipe.check').hour_key(nil)")
    out = run_events(p, [INV])
    dead = [l for l in out.splitlines() if "DEAD" in l]
    check_eq(len(dead), 1, out)
    check("inventory.lua:" in dead[0] and "bepipe/check.lua" not in dead[0],
          "the user's file and line: " + dead[0])
