"""Scripts that hang, exhaust or escape the process: the time budget (an
interpreted loop is interrupted, a compiled one ends the process and is dead-lettered on sight
after the restart), the Lua memory cap and the sandbox. File source throughout (fast)."""
import os
import re
import signal
import subprocess
import time

import run
from run import Tmp, check, check_eq, copy_scripts, read_rows

CASES = []

# The watchdog's line for a script past lua.hard_ms that cannot be interrupted: the process
# records the message as a suspect and exits for a restart.
HARD_LIMIT = r" error lua: message \S+ has run \d+ ms, past lua\.hard_ms=\d+, and cannot "


def case(fn):
    CASES.append(fn)
    return fn


INV = ('{"event_type":"inventory","inventory_id":"6f1c2a8e-1b2c-4d3e-8f90-%012d",'
       '"product_id":"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","warehouse_id":'
       '"6f1c2a8e-1b2c-4d3e-8f90-123456789abc","quantity_change":%d,"reason":"sale",'
       '"timestamp":"2025-03-01T12:00:00Z"}\n')


def scripts_with(d, body, pipeline_extra=""):
    """A copy of the shipped scripts whose inventory validator first runs `body` (Lua, with
    `q` = ev.quantity_change); pipeline_extra goes into pipeline.lua's table."""
    p = copy_scripts(os.path.join(d, "s"))
    path = os.path.join(d, "s", "events", "inventory.lua")
    src = open(path).read()
    src = src.replace("function M.validate(ev)",
                      "function M.validate(ev)\n    local q = ev.quantity_change\n" + body, 1)
    check("local q = ev.quantity_change" in src, "patched the validator")
    open(path, "w").write(src)
    if pipeline_extra:
        src = open(p).read().replace("return {", "return {\n    " + pipeline_extra, 1)
        open(p, "w").write(src)
    return p


def events(path, qs):
    with open(path, "w") as f:
        for i, q in enumerate(qs):
            f.write(INV % (i, q))


def bepipe(args, **kw):
    return subprocess.Popen([run.BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            **kw)


def finish(p, timeout=30):
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()            # a hung script must not outlive its test
        p.communicate()
        raise
    err = err.decode(errors="replace")
    run.no_sanitizer(err)
    return p.returncode, err


def reasons(out):
    return [r["json"]["reason"] for r in read_rows(out, "rejected_events")]


BUDGET = ["--set", "lua.budget_ms=300", "--set", "lua.hard_ms=1500"]


@case
def script_interpreted_loop_is_dead_lettered_and_sigterm_drains():
    with Tmp() as d:
        p = scripts_with(d, "    if q == 7 then jit.off(); while true do end end\n")
        out = os.path.join(d, "out")
        # stdin stays open: only SIGTERM ends this run
        dm = run.Daemon([p, "--input", "-", "--local-out", out, "--set",
                         "state_dir=" + os.path.join(d, "state")] + BUDGET)
        dm.write(b"".join((INV % (i, 7 if i == 1 else 1)).encode() for i in range(3)))
        run.wait_handles(dm.p)
        time.sleep(0.15)                      # the loop is running
        t0 = time.time()
        dm.p.send_signal(signal.SIGTERM)
        try:
            rc, err = dm.finish(close_stdin=False, timeout=20)
        except subprocess.TimeoutExpired:
            dm.p.kill()
            raise
        took = time.time() - t0
        dm.p.stdin.close()
        check_eq(rc, 0, "exit code after SIGTERM: " + err[-1500:])
        check(took < 3.0, f"SIGTERM served within the budget (+ drain): {took:.1f}s")
        check_eq(len(read_rows(out, "inventory_events")), 2, "the other events stored")
        r = reasons(out)
        check_eq(len(r), 1, "one dead letter")
        check(re.search(r"validate error: .*inventory\.lua:\d+: time budget exceeded.*"
                        r"lua\.budget_ms \(300 ms\)", r[0]), "reason: " + r[0])
        check("ran past the time budget" in err, "logged: " + err[-1500:])


@case
@run.errors(HARD_LIMIT)
def script_compiled_loop_exits_then_suspect_dead_lettered_on_sight():
    with Tmp() as d:
        p = scripts_with(d, "    if q == 7 then while true do end end\n")
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        state = os.path.join(d, "state")
        events(ev, [1, 7, 1, 1])
        args = [p, "--input", ev, "--local-out", out, "--set", "state_dir=" + state] + BUDGET
        # a compiled loop sees no hook: past lua.hard_ms the process records it and exits,
        # SIGTERM or not
        t0 = time.time()
        pr = bepipe(args)
        run.wait_handles(pr)
        time.sleep(0.2)
        pr.send_signal(signal.SIGTERM)
        rc, err = finish(pr)
        check_eq(rc, 3, "exit code of a stuck script: " + err[-1500:])
        check(time.time() - t0 < 5, "ended near lua.hard_ms")
        check(re.search(r"message ev\.ndjson:2 has run \d+ ms, past lua\.hard_ms=1500.*recorded "
                        r"as a suspect.*exiting with code 3", err), "log line: " + err[-1500:])
        check_eq(read_rows(out, "inventory_events"), [], "nothing of that batch stored")
        # the restart (into the same --local-out, hence --append): the suspect is dead-lettered
        # before Lua sees it, the rest is stored
        pr = bepipe(args + ["--append"])
        rc, err = finish(pr)
        check_eq(rc, 0, "restart exit code: " + err[-1500:])
        check_eq(len(read_rows(out, "inventory_events")), 3, "the other events stored")
        dead = read_rows(out, "rejected_events")
        check_eq([r["insertId"] for r in dead], ["ev.ndjson:2"], "the suspect dead-lettered")
        check(dead[0]["json"]["reason"].startswith("delivered 1 times without completing"),
              "reason: " + dead[0]["json"]["reason"])
        # another file of the same name: the same id with other bytes is no suspect
        events(ev, [1, 2, 1, 1])
        out2 = os.path.join(d, "out2")
        pr = bepipe([p, "--input", ev, "--local-out", out2, "--set", "state_dir=" + state])
        rc, err = finish(pr)
        check_eq(rc, 0, "exit code: " + err[-1500:])
        check_eq(len(read_rows(out2, "inventory_events")), 4, "same id, other payload: stored")


@case
def script_memory_cap_dead_letters_the_event_and_rebuilds_the_state():
    with Tmp() as d:
        p = scripts_with(d, "    if q == 7 then local t = {} while true do "
                            "t[#t + 1] = string.rep('x', 64) .. #t end end\n")
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        # 600 events: the rest of the first batch runs on the old state, the second on the new
        events(ev, [7] + [1] * 599)
        # lua.budget_ms=0: the cap is what is tested; under load (ASan, a busy CI machine) the
        # GC near the cap can outlast the 1 s budget, and the event then ends as a budget
        # dead letter instead (script_budget_error_between_two_events_* covers that race)
        pr = bepipe([p, "--input", ev, "--local-out", out, "--set", "lua.memory_mb=64",
                     "--set", "lua.budget_ms=0", "--set", "state_dir=" + os.path.join(d, "state")])
        rc, err = finish(pr, timeout=60)
        check_eq(rc, 0, "exit code: " + err[-1500:])
        check_eq(len(read_rows(out, "inventory_events")), 599, "the other events stored")
        r = reasons(out)
        check_eq(len(r), 1, "one dead letter")
        check("not enough memory: the Lua state passed lua.memory_mb" in r[0], "reason: " + r[0])
        check("hit lua.memory_mb=64; rebuilding it" in err and "generation 2 loaded" in err,
              "state rebuilt: " + err[-1500:])
        rss = int(re.search(r"peak_rss_kb=(\d+)", err).group(1))
        limit = 400 if "asan" in run.BIN else 160
        check(rss < limit * 1024, f"RSS bounded: {rss} KB")


# The watchdog's hook raises at the next interpreted instruction; after an error thrown from
# compiled code or a long GC at the memory cap, that is the batch driver's own code in host.lua,
# between two events. This line hook (sandbox = false lets the script set one) raises there,
# once, the way the watchdog's would.
HOOK_IN_DRIVER = """    if q == 7 then
        local driver   -- the host.lua function that called xpcall around this event
        for level = 2, 40 do
            local info = debug.getinfo(level, "f")
            if not info then break end
            if info.func == xpcall then
                driver = debug.getinfo(level + 1, "f").func
                break
            end
        end
        debug.sethook(function()
            if debug.getinfo(2, "f").func == driver then
                debug.sethook()
                error("time budget exceeded: simulated", 0)
            end
        end, "l")
        error("boom")
    end
"""


@case
def script_budget_error_between_two_events_dead_letters_one_event():
    # main: "batch entry failed, dead-lettering 512 events" (seen under load in CI, when the
    # memory cap's GC outlasted lua.budget_ms); now only the event that ran over is
    with Tmp() as d:
        p = scripts_with(d, HOOK_IN_DRIVER, "sandbox = false,")
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        events(ev, [1, 7, 1, 1])
        pr = bepipe([p, "--input", ev, "--local-out", out, "--set",
                     "state_dir=" + os.path.join(d, "state")])
        rc, err = finish(pr)
        check_eq(rc, 0, "exit code: " + err[-1500:])
        check("batch entry failed" not in err, "the batch went on: " + err[-1500:])
        check_eq(len(read_rows(out, "inventory_events")), 3, "the other events stored")
        dead = read_rows(out, "rejected_events")
        check_eq([r["insertId"] for r in dead], ["ev.ndjson:2"], "only the event that threw")


FORBIDDEN = """    local marker = os.getenv("BP_MARK")
    if q == 2 then os.exit(9) end
    if q == 3 then io.popen("touch " .. marker .. ".popen"):close() end
    if q == 4 then os.execute("touch " .. marker .. ".exec") end
    if q == 5 then io.open(marker .. ".open", "w"):close() end
    if q == 6 then assert(load(string.dump(function() return 1 end)))() end
    if q == 8 then assert(require("ffi").C) end
    if q == 9 then assert(loadstring(string.dump(function() return 1 end)))() end
    if q == 10 then
        local sb = require("bepipe.sandbox")
        local open = sb.close() or sb.open
        if open then open() end
        os.exit(9)
    end
    if q == 11 then require("cjson.safe") end
    if q == 12 then require("bepipe.host").process(0) end
"""


@case
def script_sandbox_refuses_forbidden_calls():
    with Tmp() as d:
        p = scripts_with(d, FORBIDDEN)
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        events(ev, [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 1])
        mark = os.path.join(d, "mark")
        pr = bepipe([p, "--input", ev, "--local-out", out, "--set",
                     "state_dir=" + os.path.join(d, "state")], env=dict(os.environ, BP_MARK=mark))
        rc, err = finish(pr)
        check_eq(rc, 0, "the process keeps running (os.exit refused): " + err[-1500:])
        check_eq(len(read_rows(out, "inventory_events")), 2, "the other events stored")
        r = reasons(out)
        names = ["os.exit", "io.popen", "os.execute", "io.open with mode 'w'", "load of bytecode",
                 'require "ffi"', "loadstring of bytecode", "os.exit",
                 "require of the C module 'cjson.safe'"]
        check_eq(len(r), len(names) + 1, "one dead letter per forbidden call: %r" % r)
        check(re.search(r"attempt to call field 'process' \(a nil value\)", r[-1]),
              "the batch entry is C's only: " + r[-1])
        for name, reason in zip(names, r):
            check(re.search(r"^validate error: .*\.lua:\d+: " + re.escape(name) + r"( \([^)]*\))?"
                            r" is not allowed in event scripts \(sandbox\); set sandbox = false",
                            reason), f"{name}: {reason}")
        check_eq([f for f in os.listdir(d) if f.startswith("mark")], [], "nothing ran or written")


@case
def script_sandbox_false_allows_them():
    with Tmp() as d:
        p = scripts_with(d, FORBIDDEN, "sandbox = false,")
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        events(ev, [1, 3, 4, 5, 6, 8, 9])
        mark = os.path.join(d, "mark")
        pr = bepipe([p, "--input", ev, "--local-out", out, "--set",
                     "state_dir=" + os.path.join(d, "state")], env=dict(os.environ, BP_MARK=mark))
        rc, err = finish(pr)
        check_eq(rc, 0, "exit code: " + err[-1500:])
        check_eq(reasons(out), [], "no dead letters")
        check_eq(len(read_rows(out, "inventory_events")), 7, "every event stored")
        check_eq(sorted(f for f in os.listdir(d) if f.startswith("mark")),
                 ["mark.exec", "mark.open", "mark.popen"], "the calls ran")
        # and os.exit really exits (skipping lua_close: no leak report for that under ASan)
        events(ev, [2])
        pr = bepipe([p, "--input", ev, "--local-out", out, "--append", "--set",
                     "state_dir=" + os.path.join(d, "state")],
                    env=dict(os.environ, BP_MARK=mark, ASAN_OPTIONS="detect_leaks=0"))
        rc, err = finish(pr)
        check_eq(rc, 9, "os.exit(9) allowed")


@case
def script_sandbox_at_load_names_file_and_line():
    with Tmp() as d:
        p = copy_scripts(os.path.join(d, "s"))
        path = os.path.join(d, "s", "events", "order.lua")
        src = open(path).read()
        open(path, "w").write("local h = io.popen('id')\n" + src)
        pr = bepipe(["--check", p])
        rc, err = finish(pr)
        check_eq(rc, 1, "--check fails: " + err)
        check(re.search(r"order\.lua:1: io\.popen is not allowed in event scripts \(sandbox\); "
                        r"set sandbox = false in pipeline\.lua", err), "load error: " + err)


@case
@run.errors(HARD_LIMIT)
def script_compiled_loop_on_pubsub_ends_as_a_dead_letter():
    import cloud
    with cloud.Scenario() as s:
        p = scripts_with(s.tmp, "    if q == 7 then while true do end end\n")
        ev = os.path.join(s.tmp, "ev.ndjson")
        events(ev, [1, 7, 1, 1])
        s.emu.publish(ev)
        # a short lease: the messages of the killed process come back soon
        args = ["--set", "state_dir=" + os.path.join(s.tmp, "state"), "--set",
                "source.lease_seconds=10"] + BUDGET
        b = cloud.Bepipe(s.emu, args, pipeline=p)
        try:
            rc = b.p.wait(30)
        except subprocess.TimeoutExpired:
            b.p.kill()
            raise
        check_eq(rc, 3, "exit code of a stuck script: " + b.stderr()[-1500:])
        check("recorded as a suspect" in b.stderr(), "log: " + b.stderr()[-1500:])
        b2 = cloud.Bepipe(s.emu, args, pipeline=p)
        cloud.wait_drained(s.emu, 4, [b2], timeout=60)
        check_eq(b2.stop(), 0, "restart exit code: " + b2.stderr()[-1500:])
        check_eq(len(s.emu.rows("inventory_events")), 3, "the other events stored")
        dead = s.emu.rows("rejected_events")
        check_eq(len(dead), 1, "the looping event dead-lettered")
        check(dead[0]["reason"].startswith("delivered 1 times without completing"),
              "reason: " + dead[0]["reason"])


@case
@run.errors(HARD_LIMIT)
def script_stuck_worker_its_suspect_dead_lettered_by_another():
    import cloud
    with cloud.Scenario() as s:
        p = scripts_with(s.tmp, "    if q == 7 then while true do end end\n")
        ev = os.path.join(s.tmp, "ev.ndjson")
        events(ev, [1] * 20 + [7] + [1] * 19)
        s.emu.publish(ev)
        args = ["--workers", "2", "--set", "state_dir=" + os.path.join(s.tmp, "state"),
                "--set", "source.lease_seconds=10"] + BUDGET
        b = cloud.Bepipe(s.emu, args, pipeline=p)
        b.wait_log("recorded as a suspect")
        # the other worker reads the suspects file (once a second) and gets the redelivery
        end = time.time() + 60
        while len(s.emu.rows("rejected_events")) < 1 and time.time() < end:
            time.sleep(0.2)
        cloud.wait_drained(s.emu, 40, timeout=30)
        # the stuck worker is replaced (the pool keeps its size), so the run ends cleanly
        check_eq(b.stop(), 0, "exit code of the workers: " + b.stderr()[-1500:])
        check("worker" in b.stderr() and "restarting it" in b.stderr(),
              "the parent restarts the stuck worker: " + b.stderr()[-1500:])
        check_eq(len(s.emu.rows("inventory_events")), 39, "the other events stored")
        dead = s.emu.rows("rejected_events")
        check_eq(len(dead), 1, "the looping event dead-lettered")
        check(dead[0]["reason"].startswith("delivered 1 times without completing"),
              "reason: " + dead[0]["reason"])


# Slow but innocent events (each sleeps 0.1 s, well inside lua.budget_ms, however loaded the
# machine) and one that never ends (interpreted, so the budget's hook can interrupt it).
SLOW = """    if q == 5 then
        local ffi = require("ffi")
        pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
        ffi.C.poll(nil, 0, 100)
    end
    if q == 9 then jit.off(); while true do end end
"""


@case
def script_slow_batch_leaves_the_loop_free_and_blames_only_the_overrun():
    # main: the batch of 60 slow events held the loop ~7 s (/healthz unanswered throughout),
    # and every ~1 s the event running when the batch's time ran out was interrupted,
    # dead-lettered and recorded as a suspect, though it had used 0.1 s of its own; after: the
    # batch runs in slices of lua.batch_budget_ms with the loop's turn between them
    import threading
    from metrics import http, listen_port
    with Tmp() as d:
        p = scripts_with(d, SLOW, "sandbox = false,")
        out = os.path.join(d, "out")
        state = os.path.join(d, "state")
        qs = [5] * 30 + [9] + [5] * 30 + [1] * 20
        dm = run.Daemon([p, "--input", "-", "--local-out", out, "--http", "127.0.0.1:0",
                         "--set", "state_dir=" + state, "--set", "stats_seconds=0",
                         # the overrun holds the loop its whole budget: shorter than the default
                         "--set", "lua.budget_ms=700"])
        try:
            port = listen_port(dm.stderr)
            check_eq(http(port, "/healthz")[0], 200, "/healthz before")
            worst, stop = [0.0], threading.Event()

            def poll():
                while not stop.is_set():
                    t0 = time.time()
                    try:
                        http(port, "/healthz", timeout=30)
                    except OSError:
                        pass
                    worst[0] = max(worst[0], time.time() - t0)
                    time.sleep(0.05)
            th = threading.Thread(target=poll, daemon=True)
            th.start()
            dm.write(b"".join((INV % (i, q)).encode() for i, q in enumerate(qs)))
            end = time.time() + 90
            while time.time() < end and (len(read_rows(out, "inventory_events")) +
                                         len(read_rows(out, "rejected_events")) < len(qs)):
                time.sleep(0.1)
            stop.set()
            th.join(40)
            rc, err = dm.finish(timeout=30)
        finally:
            if dm.p.poll() is None:
                dm.p.kill()
        check_eq(rc, 0, "exit code: " + err[-1500:])
        dead = read_rows(out, "rejected_events")
        check_eq(len(read_rows(out, "inventory_events")), len(qs) - 1, "every other event "
                 "stored; dead letters: %s" % [(r["insertId"], r["json"]["reason"]) for r in dead])
        check_eq([r["insertId"] for r in dead], ["stdin:31"], "only the event that overran")
        check("time budget exceeded" in dead[0]["json"]["reason"], dead[0]["json"]["reason"])
        check(worst[0] < 2.5, f"/healthz answered within 2.5 s throughout (worst {worst[0]:.1f} s)")
        with open(os.path.join(state, "suspects")) as f:
            suspects = [l.split()[-1] for l in f if l.strip()]
        check_eq(suspects, ["stdin:31"], "one suspect: the event that overran its own budget")
        check("ran past lua.batch_budget_ms" in err, "the cut is logged: " + err[-1500:])


@case
def script_slow_batch_on_pubsub_runs_in_slices_and_acks_everything():
    # the rest of a cut batch is copied (a pull reply's memory is the source's) and runs after
    # the loop's turn; every message is acked once stored, none twice, none lost
    import cloud
    with cloud.Scenario() as s:
        p = scripts_with(s.tmp, SLOW, "sandbox = false,")
        ev = os.path.join(s.tmp, "ev.ndjson")
        qs = [5] * 25 + [1] * 15 + [5] * 10 + [1] * 10
        events(ev, qs)
        s.emu.publish(ev)
        b = cloud.Bepipe(s.emu, ["--set", "state_dir=" + os.path.join(s.tmp, "state"),
                                 "--set", "source.batch_messages=100"], pipeline=p)
        cloud.wait_drained(s.emu, len(qs), [b], timeout=90)
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
        rows = s.emu.rows("inventory_events")
        check_eq(sorted(r["inventory_id"][-12:] for r in rows),
                 ["%012d" % i for i in range(len(qs))], "every event stored once")
        check_eq(s.emu.rows("rejected_events"), [], "no dead letter")
        check("ran past lua.batch_budget_ms" in b.stderr(), "the batch was cut: " +
              b.stderr()[-1500:])
        st = s.emu.sub_state()
        check_eq((st["backlog"], st["outstanding"]), (0, 0), "every message acked")


@case
def script_slow_batch_from_a_file_is_stored_whole_at_the_end_of_input():
    # the end of the file comes while the rest of a cut batch waits: the drain runs it and
    # flushes its rows (a file has no redelivery)
    with Tmp() as d:
        p = scripts_with(d, SLOW, "sandbox = false,")
        ev = os.path.join(d, "ev.ndjson")
        out = os.path.join(d, "out")
        events(ev, [5] * 20 + [1] * 30)
        rc, err = finish(bepipe([p, "--input", ev, "--local-out", out, "--set",
                                 "state_dir=" + os.path.join(d, "state")]), timeout=60)
        check_eq(rc, 0, "exit code: " + err[-1500:])
        check("ran past lua.batch_budget_ms" in err, "the batch was cut: " + err[-1500:])
        check_eq(sorted(r["json"]["inventory_id"][-12:] for r in read_rows(out, "inventory_events")),
                 ["%012d" % i for i in range(50)], "every event stored once")
        check_eq(read_rows(out, "rejected_events"), [], "no dead letter")
