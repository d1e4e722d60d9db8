-- bepipe.fixtures: the Lua half of `bepipe-lua test PIPELINE.lua FIXTURES`. A fixture is one
-- NDJSON line: {"event": {...}} or {"raw": "..."} (with optional "attributes": {...}) and an
-- optional "expect": {"table": T, "row": {...}} (the row's listed fields must equal; others are
-- ignored; ingestion_time is never compared) or {"dead": STAGE, "reason": "substring"}. A line
-- that is none of these is an event itself (the older `test` input), run without expectation.
--
-- The C side (runtime/testmode.c) runs the events through the pipeline's real batch entry and
-- hands each outcome here; this module only parses, compares and prints, so `test` reports what
-- the daemon would do.
local cjson = require "cjson"

local json = cjson.new()
json.decode_max_depth(64)
json.encode_sparse_array(false, 2, 10)

-- The daemon's own decoder and writer (runtime/json_lua.cpp, json_row.c), which carry every
-- number exactly (lua-cjson rounds integers past 2^53 and writes 14 digits): a fixture's event
-- reaches the pipeline with the numbers it has, and rows compare exactly. lua-cjson where they
-- are absent (a plain luajit) or decline (text that is not an object, or unusual).
local fast_decode, fast_encode
do
    local ok, host = pcall(require, "bepipe.host")
    if ok then
        fast_decode, fast_encode = host.decode_exact, host.encode_exact
    end
end
local function decode(s)
    local t = fast_decode and fast_decode(s)
    if t == nil then
        t = json.decode(s)
    end
    return t
end
local function encode(v)
    if fast_encode then
        local s, why = fast_encode(v)
        if s == nil then
            error(why, 0)
        end
        return s
    end
    return json.encode(v)
end

local M = {}

local expectations = {}    -- line number -> expect table

-- Returns the raw event text and the attributes' JSON text (or nil) of fixture line `line`
-- (number line_no), remembering its expectation. Raises with a plain message for a fixture that
-- is malformed (an "expect" of the wrong shape).
function M.prepare(line_no, line)
    expectations[line_no] = nil
    local ok, t = pcall(decode, line)
    if not ok or type(t) ~= "table" or (t.event == nil and t.raw == nil) then
        return line, nil
    end
    local raw
    if t.raw ~= nil then
        if type(t.raw) ~= "string" then
            error("fixture line " .. line_no .. ": \"raw\" must be a string", 0)
        end
        raw = t.raw
    else
        raw = encode(t.event)
    end
    local attrs
    if type(t.attributes) == "table" and next(t.attributes) ~= nil then
        attrs = encode(t.attributes)
    end
    local e = t.expect
    if e ~= nil then
        if type(e) ~= "table" or (e.table == nil and e.dead == nil) then
            error("fixture line " .. line_no .. ": \"expect\" needs \"table\" (with \"row\") " ..
                  "or \"dead\" (with \"reason\")", 0)
        end
        expectations[line_no] = e
    end
    return raw, attrs
end

-- JSON text with object keys sorted, so two runs diff cleanly.
local function canonical(v, out)
    local tv = type(v)
    if tv ~= "table" then
        out[#out + 1] = encode(v)
        return
    end
    local n = #v
    local count = 0
    for _ in pairs(v) do
        count = count + 1
    end
    if n > 0 and n == count then
        out[#out + 1] = "["
        for i = 1, n do
            if i > 1 then
                out[#out + 1] = ","
            end
            canonical(v[i], out)
        end
        out[#out + 1] = "]"
        return
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
        if i > 1 then
            out[#out + 1] = ","
        end
        out[#out + 1] = encode(k) .. ":"
        canonical(v[k], out)
    end
    out[#out + 1] = "}"
end

-- The row as printed by `test`: keys sorted; ingestion_time (the core's clock, different every
-- run) shown as a placeholder, so the output diffs cleanly and still shows the column is set.
M.INGESTION_PLACEHOLDER = "(ingestion time)"
function M.canonical_row(row_json)
    local ok, row = pcall(decode, row_json)
    if not ok then
        return row_json
    end
    if type(row) == "table" and row.ingestion_time ~= nil then
        row.ingestion_time = M.INGESTION_PLACEHOLDER
    end
    local out = {}
    canonical(row, out)
    return table.concat(out)
end

local function show(v)
    local out = {}
    canonical(v, out)
    return table.concat(out)
end

-- Deep comparison of what the fixture lists (want) with what came out (got): numbers compare as
-- numbers (10 and 10.0 are equal), tables field by field. Appends "path: ..." lines to diffs.
local function compare(path, want, got, diffs)
    if type(want) == "table" and type(got) == "table" then
        for k, w in pairs(want) do
            local sub = type(k) == "number" and (path .. "[" .. (k - 1) .. "]")
                        or (path == "" and tostring(k) or (path .. "." .. tostring(k)))
            compare(sub, w, got[k], diffs)
        end
        return
    end
    if want == got then
        return
    end
    if got == nil then
        diffs[#diffs + 1] = path .. ": expected " .. show(want) .. ", missing"
    else
        diffs[#diffs + 1] = path .. ": expected " .. show(want) .. ", got " .. show(got)
    end
end

-- The dead-letter stage line_no expects (a string), or nil; forgets the expectation
-- (`--check --fixtures` asks this instead of check).
function M.expected_dead(line_no)
    local e = expectations[line_no]
    expectations[line_no] = nil
    return e and e.dead ~= nil and tostring(e.dead) or nil
end

-- Checks the outcome of line_no against its expectation. table_name/row_json for a row, or
-- stage/reason for a dead letter. Returns nil when the line has no expectation, true when it
-- passed, or false and one line saying what differs.
function M.check(line_no, table_name, row_json, stage, reason)
    local e = expectations[line_no]
    if e == nil then
        return nil
    end
    expectations[line_no] = nil
    local got = table_name and ("table " .. table_name) or ("dead " .. tostring(stage) ..
                                                           ": " .. tostring(reason))
    if e.dead ~= nil then
        if table_name then
            return false, "expected dead " .. tostring(e.dead) .. ", got " .. got
        end
        if e.dead ~= stage then
            return false, "expected dead " .. tostring(e.dead) .. ", got " .. got
        end
        if e.reason ~= nil and not string.find(reason, tostring(e.reason), 1, true) then
            return false, "expected a reason containing " .. json.encode(tostring(e.reason)) ..
                          ", got " .. json.encode(reason)
        end
        return true
    end
    if not table_name then
        return false, "expected table " .. tostring(e.table) .. ", got " .. got
    end
    if e.table ~= table_name then
        return false, "expected table " .. tostring(e.table) .. ", got " .. got
    end
    if type(e.row) == "table" then
        local row = decode(row_json)
        local want = {}
        for k, v in pairs(e.row) do
            if k ~= "ingestion_time" then
                want[k] = v
            end
        end
        local diffs = {}
        compare("", want, row, diffs)
        if #diffs > 0 then
            table.sort(diffs)
            return false, "row " .. table.concat(diffs, "; ")
        end
    end
    return true
end

return M
