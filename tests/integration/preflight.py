"""Preflight: before pulling, credentials, subscription, dataset, tables and
bucket are checked; a failure exits non-zero within preflight_seconds with one line naming what is
missing and how to fix it. `--check --online` runs the same checks without pulling."""
import os
import subprocess
import time

import cloud
import run as local
from run import Failure, check, check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def run_to_exit(args, env, timeout=40):
    e = {k: v for k, v in os.environ.items()
         if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST",
                      "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    e.update(env)
    t0 = time.time()
    try:
        p = subprocess.run([local.BIN, local.PIPELINE, *args], capture_output=True, text=True,
                           env=e, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        raise Failure(f"still running after {timeout} s: {(ex.stderr or b'')[-1500:]!r}")
    return p.returncode, p.stdout + p.stderr, time.time() - t0


def preflight_line(out):
    lines = [l for l in out.splitlines() if "error preflight:" in l]
    check_eq(len(lines), 1, "one preflight error line:\n" + out[-2000:])
    return lines[0]


@case
@local.errors(r" error auth: token refresh failed \(Failed to connect to 127\.0\.0\.1 port 9 ",
              r" error preflight: no access token: Application Default Credentials tried ")
def no_credentials_exit_with_the_adc_order():
    # main retried the token forever ("token refresh failed ... calls wait") and never exited
    rc, out, secs = run_to_exit(["--input_subscription", "projects/p/subscriptions/s",
                                 "--set", "preflight_seconds=10"],
                                {"HOME": "/nonexistent", "GCE_METADATA_HOST": "127.0.0.1:9"})
    check(rc != 0, "non-zero exit")
    check(secs < 15, f"within preflight_seconds: {secs:.1f} s")
    line = preflight_line(out)
    for want in ("GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login",
                 "metadata server"):
        check(want in line, f"names {want!r}: {line}")


@case
@local.errors(r" error preflight: table \S+\.inventory_events does not exist: create it with ")
def missing_table_is_named_with_the_fix():
    # a route to a table that does not exist passed and then looped on 404s at run time
    with cloud.Scenario() as s:
        s.emu.admin("DELETE", f"/bigquery/v2/projects/{cloud.PROJECT}/datasets/{cloud.DATASET}"
                              "/tables/inventory_events")
        rc, out, secs = run_to_exit([], s.emu.env())
        check(rc != 0, "non-zero exit")
        line = preflight_line(out)
        check("inventory_events does not exist" in line and "--create-tables" in line, line)
        check_eq(s.emu.admin("GET", "/_emulator/counters").get("pubsub.subscriptions.pull"), None,
                 "nothing pulled")


@case
@local.errors(r" error preflight: bucket gs://no-such-bucket does not exist: ",
              r" error preflight: subscription \S+/subscriptions/nope does not exist: ")
def missing_bucket_and_subscription_are_named():
    with cloud.Scenario() as s:
        rc, out, _ = run_to_exit(["--gcs_output_path", "gs://no-such-bucket/output"], s.emu.env())
        check(rc != 0, "non-zero exit")
        line = preflight_line(out)
        check("bucket gs://no-such-bucket does not exist" in line, line)
        rc, out, _ = run_to_exit(["--input_subscription",
                                  f"projects/{cloud.PROJECT}/subscriptions/nope"], s.emu.env())
        check(rc != 0, "non-zero exit")
        check("subscriptions/nope does not exist" in preflight_line(out), out[-800:])


@case
@local.errors(r" error preflight: dataset \S+:nope does not exist: ")
def check_online_checks_without_pulling():
    with cloud.Scenario() as s:
        rc, out, _ = run_to_exit(["--check", "--online"], s.emu.env())
        check_eq(rc, 0, "--check --online on a complete setup:\n" + out[-1500:])
        check("ok online" in out, out[-500:])
        counters = s.emu.admin("GET", "/_emulator/counters")
        check("pubsub.subscriptions.get" in counters and "bigquery.tables.get" in counters and
              "storage.buckets.get" in counters, f"each resource was checked: {sorted(counters)}")
        check("pubsub.subscriptions.pull" not in counters, "nothing pulled")
        rc, out, _ = run_to_exit(["--check", "--online", "--bq_dataset", "nope"], s.emu.env())
        check(rc != 0, "missing dataset fails --check --online")
        check("dataset re-case:nope does not exist" in preflight_line(out), out[-800:])


@case
def forbidden_reads_are_left_to_the_first_real_call():
    # roles/pubsub.subscriber cannot subscriptions.get, roles/storage.objectCreator cannot read
    # the bucket: a 403 there is no failure, the pipeline runs
    with cloud.Scenario() as s:
        for op in ("pubsub.subscriptions.get", "storage.buckets.get"):
            s.emu.fault({"op": op, "status": 403, "count": -1})
        path, expect, raw = cloud.corpus(s.tmp, 200, seed=9, invalid=0)
        s.emu.publish(path)
        b = cloud.Bepipe(s.emu)
        cloud.wait_drained(s.emu, 200, [b])
        check_eq(b.stop(), 0, "exit code")
        check("first real call checks it" in b.stderr(), "the 403 is logged as deferred")
