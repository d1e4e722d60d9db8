-- bepipe.host: the Lua half of the core. `load` reads pipeline.lua and every route script for
-- the C host; `process` runs one batch: decode, route, validate, map and encode every event,
-- writing one bp_result_t per event and returning every row / reason in one string.
--
-- Per event there is no FFI call, no closure and no table but the row: the batch loop runs under
-- a single pcall, and when a script throws, the event that threw is dead-lettered and the loop
-- resumes after it (see process).
local ffi = require "ffi"
local cdef = require "bepipe.cdef"
local cjson = require "cjson"
local check = require "bepipe.check"
local sandbox = require "bepipe.sandbox"
-- integers past 2^53 as int64 cdata: the decoder makes them, the row writer writes them
require("bepipe.int64").install()
-- The library scripts may use, loaded while ffi and io.popen are still reachable (see load).
require "bepipe"
require "bepipe.ddl"

local C = ffi.C
local byte, type, pcall, tostring = string.byte, type, pcall, tostring
local ffi_string, cast = ffi.string, ffi.cast
local hour_key = check.hour_key

local M = {}

-- The per-event path branches on event type and on every validation rule, so LuaJIT grows many
-- side traces. With its default limits (1000 traces, 512 KB of machine code) it flushed every
-- trace every ~12k events here and recompiled them; and every compiled trace costs mprotect calls
-- (TLB shoot-downs) that showed as 20% of the run in perf. Raising the limits stopped the
-- flushes; hotexit=255 (default 10) leaves rare validation branches to the interpreter instead of
-- compiling a side trace for each: on 300k events sys time fell from ~1.2 s to ~0.2 s with the
-- same user time. `make bench` measures the result against the floor.
-- hotexit + tryside must stay <= 255. A snapshot counts its exits in a uint8_t that stops at
-- 255 (which also means "side trace linked"); after hotexit exits LuaJIT tries a side trace,
-- and once hotexit + tryside exits were taken with every try aborted it links a stub that goes
-- to the interpreter. Debian's LuaJIT (2.1.0-beta3, 2022-03) lacks upstream's 119fd1fa ("Ensure
-- forward progress on trace exit to BC_ITERN", LuaJIT #1000, #1045): an exit of a compiled
-- pairs() loop that has neither a side trace nor that stub re-enters the loop's trace, which
-- takes the same exit, forever. With hotexit=255 a side trace that aborted once (e.g. "loop
-- unroll limit" in a second pairs() loop that calls a Lua function) left its exit so: the map of
-- tests/integration/run.py's jit_pairs_loops_never_spin hung `bepipe-lua test` and ran the
-- daemon at one event per lua.budget_ms, each dead-lettered as over its time budget.
jit.opt.start("maxtrace=8000", "maxmcode=16384", "maxrecord=8000", "maxside=200", "hotexit=250",
              "tryside=4")
-- BEPIPE_JIT_OPT="hotexit=10 ..." overrides them, for measuring (space-separated; a hotexit +
-- tryside past 255 is refused, see above).
if os.getenv("BEPIPE_JIT_OPT") then
    local param = { hotexit = 250, tryside = 4 }
    for opt in os.getenv("BEPIPE_JIT_OPT"):gmatch("%S+") do
        local k, v = opt:match("^(%a+)=(%d+)$")
        if param[k] then
            param[k] = tonumber(v)
        end
        jit.opt.start(opt)
    end
    if param.hotexit + param.tryside > 255 then
        error("BEPIPE_JIT_OPT: hotexit + tryside must be <= 255 (Debian's LuaJIT then loops "
              .. "forever at some pairs() loops), got " .. param.hotexit .. " + " .. param.tryside, 0)
    end
end

-- BEPIPE_JIT_V=FILE logs LuaJIT's trace compiler (jit.v) to FILE: trace aborts on the per-event
-- path ("NYI", "loop unroll limit") are performance bugs worth a look.
if os.getenv("BEPIPE_JIT_V") then
    require("jit.v").start(os.getenv("BEPIPE_JIT_V"))
end
-- BEPIPE_JIT_P="MODE,FILE" runs LuaJIT's sampling profiler (jit.p; MODE as for -jp, e.g. "vl"
-- for VM states and lines): where the per-event path spends its time, interpreted or compiled.
if os.getenv("BEPIPE_JIT_P") then
    local mode, file = os.getenv("BEPIPE_JIT_P"):match("^([^,]*),?(.*)$")
    require("jit.p").start(mode, file ~= "" and file or nil)
end

local STAGE_PARSE, STAGE_ROUTE = C.BP_STAGE_PARSE, C.BP_STAGE_ROUTE
local STAGE_VALIDATE, STAGE_MAP = C.BP_STAGE_VALIDATE, C.BP_STAGE_MAP
local batch_ptr = ffi.typeof("bp_batch_t *")

-- Our own cjson instance: strict numbers (no NaN/Infinity/hex) and a sane nesting limit.
local json = cjson.new()
json.decode_invalid_numbers(false)
json.decode_max_depth(64)
json.encode_invalid_numbers(false)
json.encode_sparse_array(false, 2, 10)
local decode, encode = json.decode, json.encode
-- decode_msg(batch, i): the batch's event i decoded by simdjson into tables of their final size
-- (runtime/json_lua.cpp), every number exact (an integer past 2^53 as an int64 cdata), or
-- nothing where lua-cjson must decide (invalid or unusual text: invalid UTF-8, a number written
-- -0 ...). Absent outside the daemon (tests/lua's simulation).
local decode_msg = debug.getregistry()["bepipe.decode_msg"]
-- inexact(text): for text lua-cjson decoded, the path, text and kind ("integer", "fraction") of
-- a number lua-cjson's double changes that cannot be carried (such an event is dead-lettered,
-- never changed), or nothing; a fraction it can carry is noted for the row writer.
local inexact = debug.getregistry()["bepipe.inexact"]
-- encode_row(batch, row, now_member): the row's text, numbers exact, with the ingestion_time
-- member, appended to the batch buffer (runtime/json_row.c); returns offset and length, or nil
-- and a reason naming the field that cannot be written. Absent outside the daemon, where
-- lua-cjson writes the rows (14 significant digits).
local encode_row = debug.getregistry()["bepipe.encode_row"]
-- encode_both(batch, row, now_member, i, route): with bigquery.method = storage_write,
-- encode_row's work and results, and the same row also written as the protobuf message its
-- table takes, kept by C for message i (runtime/row_protos.c), so the Storage Write store never
-- reads the JSON back (one call: a second C call per row cost more than the encoding). The
-- runtime registers it after this file loads (the store opens later), so each batch looks it up.
local registry = debug.getregistry()
local encode_both
-- The same decoder and writer for any text and value (`bepipe-lua test`'s fixtures, which load
-- after the sandbox took `debug` away): decode_exact(text) -> table or nothing when declined,
-- encode_exact(value) -> text or nil, reason.
M.decode_exact = debug.getregistry()["bepipe.decode"]
M.encode_exact = debug.getregistry()["bepipe.encode"]

-- Filled by load().
local routes = {}          -- event type -> { index = 0-based, mod = script module, time_field }
local route_field = "event_type"
-- The runtime sets the route field of the effective configuration (pipeline.lua's, or the
-- command line's `--set route_field=...`) once the options are merged.
debug.getregistry()["bepipe.set_route_field"] = function(field) route_field = field end
local routes_loaded = false

-- Flattens nested option tables into dotted keys ("bigquery.batch_rows") for the C option table.
-- An empty table stays a value, so that C can say where it was not expected (`route_field = {}`).
local function flatten(t, prefix, out)
    for k, v in pairs(t) do
        if type(k) ~= "string" then
            error("pipeline.lua: option keys must be strings, got " .. tostring(k)
                  .. (prefix and (" in " .. prefix) or ""), 0)
        end
        local key = prefix and (prefix .. "." .. k) or k
        if type(v) == "table" and next(v) ~= nil then
            flatten(v, key, out)
        else
            out[key] = v
        end
    end
    return out
end

-- The keys a route module may have; anything else is a typo (`tim_field`) that would be ignored.
local ROUTE_KEYS = { table = true, time_field = true, validate = true, map = true,
                     metadata = true }
local ROUTE_KEYS_TEXT = "table, time_field, validate, map, metadata"

-- The message metadata columns a route may ask for (`metadata = true` is all of them), as Pub/Sub
-- BigQuery subscriptions' write_metadata writes them; C adds them to the row (runtime/row_meta.c).
local META_COLUMNS = { "message_id", "publish_time", "attributes", "subscription_name",
                       "delivery_attempt" }
local META_TEXT = table.concat(META_COLUMNS, ", ")

-- The route's `metadata` as a list of column names (nil for none); raises on anything else.
local function metadata_list(name, file, v)
    if v == nil or v == false then
        return nil
    end
    if v == true then
        return META_COLUMNS
    end
    local known = {}
    for _, c in ipairs(META_COLUMNS) do known[c] = true end
    local ok = type(v) == "table" and next(v) ~= nil
    for k, c in pairs(ok and v or {}) do
        if type(k) ~= "number" or not known[c] then
            ok = false
        end
    end
    if not ok then
        error(("route %s (%s): metadata must be true or a list of %s"):format(name, file,
              META_TEXT), 0)
    end
    return v
end

local function load_route(name, spec, index)
    local mod, file = spec, "pipeline.lua"
    if type(spec) == "string" then
        file = package.searchpath and package.searchpath(spec, package.path) or spec
        local ok, m = pcall(require, spec)
        if not ok then
            error(("route %s: %s"):format(name, tostring(m)), 0)
        end
        mod = m
    end
    if type(mod) ~= "table" then
        error(("route %s: module %s did not return a table"):format(name, tostring(spec)), 0)
    end
    for k in pairs(mod) do
        if not ROUTE_KEYS[k] then
            error(("route %s (%s): unknown key `%s` (a route module has %s; keep helpers in "
                   .. "locals)"):format(name, file, tostring(k), ROUTE_KEYS_TEXT), 0)
        end
    end
    if type(mod.table) ~= "string" or mod.table == "" then
        error(("route %s (%s): the script has no `table` name"):format(name, file), 0)
    end
    if type(mod.validate) ~= "function" or type(mod.map) ~= "function" then
        error(("route %s (%s): the script needs validate(ev) and map(ev) functions")
              :format(name, file), 0)
    end
    if mod.time_field ~= nil and type(mod.time_field) ~= "string" then
        error(("route %s (%s): time_field must be the name of a row field"):format(name, file), 0)
    end
    local meta = metadata_list(name, file, mod.metadata)
    return { index = index, mod = mod, validate = mod.validate, map = mod.map,
             time_field = mod.time_field, file = file, metadata = meta }
end

-- Loads pipeline.lua (path) and every script it routes to. Returns
-- { options = {dotted key = value}, routes = { {name=, table=, metadata=}, ... } } for the C host; raises
-- with file and line on any error, leaving the running pipeline untouched (the C host builds
-- each pipeline in a fresh Lua state).
function M.load(path)
    if C.bp_ffi_abi_version() ~= cdef.ABI then
        error(("bepipe library ABI %d does not match the runtime's %d"):format(cdef.ABI,
              C.bp_ffi_abi_version()), 0)
    end
    -- Closed before pipeline.lua runs, so the modules it requires are loaded sandboxed too;
    -- `sandbox = false` in the table it returns opens it again before the routes load.
    if routes_loaded then
        error("bepipe.host.load runs once per Lua state", 2)
    end
    routes_loaded = true
    local open_sandbox = sandbox.close()
    local chunk, err = loadfile(path)
    if not chunk then
        error(err, 0)
    end
    local spec = chunk()
    if type(spec) ~= "table" then
        error(path .. ": must return a table (see scripts/pipeline.lua)", 0)
    end
    if (spec.sandbox == false or spec.sandbox == 0) and open_sandbox then
        open_sandbox()
    end
    local route_specs = spec.routes
    if type(route_specs) ~= "table" or next(route_specs) == nil then
        error(path .. ": `routes` must map event types to scripts", 0)
    end
    local names = {}
    for name in pairs(route_specs) do
        names[#names + 1] = name
    end
    table.sort(names)   -- stable route indexes between loads
    local list = {}
    routes = {}
    for i, name in ipairs(names) do
        local r = load_route(name, route_specs[name], i - 1)
        routes[name] = r
        list[i] = { name = name, table = r.mod.table, metadata = r.metadata }
    end
    local opts = {}
    for k, v in pairs(spec) do
        if k ~= "routes" then
            opts[k] = v
        end
    end
    opts = flatten(opts, nil, {})
    route_field = opts.route_field or "event_type"
    return { options = opts, routes = list }
end

-- Per-batch output: rows and reasons copied back to back into the batch's C buffer; a result
-- refers to its bytes by offset. ffi.copy compiles to a memcpy; the buffer grows (an FFI call)
-- only when a batch outgrows every earlier one.
local ffi_copy = ffi.copy
local function emit(b, s)
    local n = #s
    local off = b.out_len
    if off + n > b.out_cap and C.bp_ffi_batch_reserve(b, n) ~= 0 then
        error("the rows of this batch passed the output limit", 0)
    end
    ffi_copy(b.out + off, s, n)
    b.out_len = off + n
    return off
end

-- A row's text with `,"ingestion_time":"<now>"}` (now_member) in place of its closing brace: one
-- copy into the batch buffer and no second string. An empty row ({}) or one that is not an
-- object gets the column the plain way (and then fails the schema check if it is no row).
local function emit_row(b, js, now_member, row, now)
    local n = #js
    if n <= 2 or byte(js, n) ~= 125 then
        row.ingestion_time = now
        js = encode(row)
        return emit(b, js), #js
    end
    local m = #now_member
    local off = b.out_len
    if off + n - 1 + m > b.out_cap and C.bp_ffi_batch_reserve(b, n - 1 + m) ~= 0 then
        error("the rows of this batch passed the output limit", 0)
    end
    ffi_copy(b.out + off, js, n - 1)
    ffi_copy(b.out + off + n - 1, now_member, m)
    b.out_len = off + n - 1 + m
    return off, n - 1 + m
end

-- Where the batch loop is, for the error path of process() and for M.message().
local cur, cur_stage, cur_type = 0, 0, nil
local cur_batch = nil

-- The message of the event being validated or mapped: { id = "…", publish_time = <epoch s>,
-- attributes = { k = "v" } }. Built only when a script asks (bepipe.message()), so events whose
-- scripts never ask cost nothing. Returns nil outside a batch.
function M.message()
    local b = cur_batch
    if not b or cur >= b.n then
        return nil
    end
    local m = b.msgs[cur]
    local attrs = {}
    if m.attrs ~= nil and m.attrs_len > 0 then
        local ok, t = pcall(decode, ffi_string(m.attrs, m.attrs_len))
        if ok and type(t) == "table" then
            attrs = t
        end
    end
    return { id = ffi_string(m.id, m.id_len), publish_time = m.publish_time, attributes = attrs,
             delivery_attempt = m.delivery_attempt > 0 and m.delivery_attempt or nil }
end

local function dead(b, r, stage, reason, etype)
    r.stage = stage
    r.off = emit(b, reason)
    r.len = #reason
    if type(etype) == "string" then
        r.etype_off = emit(b, etype)
        r.etype_len = #etype
    end
end

local function is_object_text(s)
    -- cjson decodes [] and {} alike; only text that starts with '{' is an object.
    local i, c = 1, byte(s, 1)
    while c == 32 or c == 9 or c == 13 or c == 10 do
        i = i + 1
        c = byte(s, i)
    end
    return c == 123
end

local function run(b, lud, i, n, now, now_member)
    local msgs, res = b.msgs, b.results
    -- b.n, not n, before each event: the watchdog lowers it once the batch has held the loop
    -- lua.batch_budget_ms, and the runtime runs the rest in a later batch
    while i < n and i < b.n do
        cur = i
        cur_type = nil
        cur_stage = STAGE_PARSE
        local m, r = msgs[i], res[i]
        -- stage -1 until the event has its outcome (M.process tells a finished event by it)
        r.route, r.stage, r.hour, r.etype_off, r.etype_len = -1, -1, 0, 0, 0
        local ev = decode_msg and decode_msg(lud, i)
        if not ev then
            local s = ffi_string(m.data, m.len)
            if is_object_text(s) then
                ev = decode(s)
                local where, digits, what = nil, nil, nil
                if inexact then
                    where, digits, what = inexact(s)
                end
                if where then
                    ev = nil
                    dead(b, r, STAGE_PARSE, "invalid JSON: " .. (where == "" and "" or
                         where .. ": ") .. (what == "fraction" and ("the number " .. digits ..
                         " has a fraction a double loses,") or ("the integer " .. digits ..
                         " is past 2^53")) .. " in text the exact decoder refused (invalid " ..
                         "UTF-8, a raw control character ...): it cannot be carried exactly")
                end
            else
                -- decode first so the reason says what is wrong with non-JSON text
                decode(s)
                dead(b, r, STAGE_PARSE, "not a JSON object")
            end
        end
        if ev then
            cur_stage = STAGE_ROUTE
            local et = ev[route_field]
            cur_type = et
            local route = type(et) == "string" and routes[et]
            if not route then
                local why
                if et == nil or et == cjson.null then
                    why = route_field .. ": missing"
                elseif type(et) ~= "string" then
                    why = route_field .. ": must be a string"
                else
                    why = route_field .. ": unknown event type '" .. et .. "'"
                end
                dead(b, r, STAGE_ROUTE, why, et)
            else
                r.route = route.index
                cur_stage = STAGE_VALIDATE
                local ok, why = route.validate(ev)
                if not ok then
                    dead(b, r, STAGE_VALIDATE, tostring(why or "invalid event"), et)
                else
                    cur_stage = STAGE_MAP
                    local row = route.map(ev)
                    local tf = route.time_field
                    if type(row) ~= "table" then
                        dead(b, r, STAGE_MAP, "map error: map returned " .. type(row) ..
                             ", not a row table (" .. route.file .. ")", et)
                    elseif tf and type(row[tf]) ~= "string" then
                        dead(b, r, STAGE_MAP, "map error: the row has no `" .. tf .. "` (the " ..
                             "route's time_field) as a time string (" .. route.file .. ")", et)
                    else
                        local meta = route.metadata
                        if meta then
                            -- the message's metadata wins over a map's key of the same name:
                            -- C adds the columns after the row's last key (row_meta.c)
                            for k = 1, #meta do
                                row[meta[k]] = nil
                            end
                        end
                        if tf then
                            r.hour = hour_key(row[tf])
                        end
                        r.stage = 0
                        -- the column is added to the encoded text (see emit_row), not to the
                        -- row: a new key in the map's table constructor would resize its hash
                        local member = now_member
                        if row.ingestion_time ~= nil then
                            row.ingestion_time = now
                            member = "}"
                        end
                        if encode_row then
                            local off, len
                            if encode_both then
                                off, len = encode_both(lud, row, member, i, route.index)
                            else
                                off, len = encode_row(lud, row, member)
                            end
                            if off then
                                r.off, r.len = off, len
                            else
                                dead(b, r, STAGE_MAP, "map error: " .. len .. " (route " ..
                                     et .. ", " .. route.file .. ")", et)
                            end
                        elseif member == now_member then
                            r.off, r.len = emit_row(b, encode(row), now_member, row, now)
                        else
                            local js = encode(row)
                            r.off = emit(b, js)
                            r.len = #js
                        end
                    end
                end
            end
        end
        i = i + 1
    end
end

local stage_prefix = {
    [STAGE_PARSE] = "invalid JSON: ",
    [STAGE_ROUTE] = "route error: ",
    [STAGE_VALIDATE] = "validate error: ",
    [STAGE_MAP] = "map error: ",
}

-- Dead-letters the event at `cur`, which raised err.
local function fail_current(b, err)
    local r = b.results[cur]
    r.route = cur_stage >= STAGE_VALIDATE and r.route or -1
    err = tostring(err)
    if err == "not enough memory" then
        -- the C allocator refused: the state passed its cap; the runtime rebuilds it
        err = "not enough memory: the Lua state passed lua.memory_mb"
    end
    if cur_stage == STAGE_PARSE then
        -- cjson's message carries our own file:line, which says nothing about the event
        err = err:gsub("^[^\n]-:%d+: ", "", 1)
    end
    dead(b, r, cur_stage, stage_prefix[cur_stage] .. err, cur_type)
end

-- An error raised inside the bepipe library (bepipe.check given nil, say) names the library's
-- file and line, which tells a script's author nothing: point at the first frame of the stack
-- outside the library instead (their validate or map), keeping the message.
local getinfo = debug.getinfo
-- By file name, not full path: error locations carry Lua's short_src, cut to 60 bytes.
local function in_library(src)
    return src:find("bepipe[/\\][%w_]+%.lua$") ~= nil
end
local function locate(err)
    if type(err) ~= "string" then
        return err
    end
    local where = err:match("^([^\n]-):%d+: ")
    if not where or not in_library(where) then
        return err
    end
    for level = 3, 40 do
        local info = getinfo(level, "Sl")
        if not info then
            break
        end
        if info.what == "Lua" and info.currentline and info.currentline > 0 and
           not in_library(info.short_src) then
            return info.short_src .. ":" .. info.currentline .. ": " ..
                   err:gsub("^[^\n]-:%d+: ", "", 1)
        end
    end
    return err
end

-- Runs events i..n-1 of the batch: an event that throws (bad JSON, a script error, the time
-- budget's hook inside it) is dead-lettered and the batch goes on after it.
local function drive(b, lud, i, n, now, now_member)
    while true do
        local ok, err = xpcall(run, locate, b, lud, i, n, now, now_member)
        if ok then
            return
        end
        -- after an allocation failure the GC may take long enough for the budget's hook to
        -- land in fail_current: once more then (the hook is one-shot, re-armed only a whole
        -- budget later)
        if not pcall(fail_current, b, err) then
            fail_current(b, err)
        end
        i = cur + 1
    end
end

-- The batch entry the C host calls once per batch with a bp_batch_t pointer.
function M.process(lud)
    local b = cast(batch_ptr, lud)
    cur_batch = b
    local n = b.n
    local now = ffi_string(b.now_str)
    -- the time is RFC 3339 text: no character JSON would escape
    local now_member = ',"ingestion_time":"' .. now .. '"}'
    encode_both = registry["bepipe.encode_both"]
    local i = 0
    while true do
        local ok, err = pcall(drive, b, lud, i, n, now, now_member)
        if ok then
            break
        end
        -- The budget's hook raises at the next interpreted instruction, and after an error
        -- thrown from compiled code or a long GC (the memory cap) that can be drive's own code
        -- between two events: the event at `cur` is dead-lettered if it had no outcome yet,
        -- and the batch goes on after it (before, the whole batch was dead-lettered).
        if b.results[cur].stage < 0 and not pcall(fail_current, b, err) then
            fail_current(b, err)
        end
        i = cur + 1
    end
    cur_batch = nil
end

return M
