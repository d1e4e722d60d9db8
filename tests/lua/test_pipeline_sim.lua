-- The parse/route decisions the tests and the generator's expectation rely on, and the JIT health
-- of the scripts (no NYI trace aborts on the per-event path).
local sim = require "pipeline_sim"
local T = require "testlib"

local function stage(line) return (sim.process(line)) end

test("parse: not JSON, truncated, trailing garbage -> parse", function()
    eq(stage("not json"), "parse")
    eq(stage('{"event_type":"order"'), "parse")
    eq(stage('{"event_type":"order",}'), "parse")
    eq(stage('{"event_type":"order"} x'), "parse")
    eq(stage("{'event_type':'order'}"), "parse")
end)

test("parse: JSON that is not an object -> parse (arrays too, even empty)", function()
    for _, l in ipairs { "[]", "[1]", '[{"event_type":"order"}]', '"order"', "42", "null", "true",
        " [] " } do
        eq(stage(l), "parse", l)
    end
end)

test("route: missing, null, unknown, wrong type or case -> route", function()
    for _, l in ipairs { "{}", " {} ", '{"a":1}', '{"event_type":null}', '{"event_type":"refund"}',
        '{"event_type":"Order"}', '{"event_type":""}', '{"event_type":42}',
        '{"event_type":["order"]}', '{"event_type":{"x":1}}', '{"event_type":true}' } do
        eq(stage(l), "route", l)
    end
end)

test("validate and row stages", function()
    eq(stage('{"event_type":"order"}'), "validate")
    local st, tbl, row = sim.process(T.ORDER)
    eq(st, "row"); eq(tbl, "order_events"); eq(row.order_id, "ORD-2025-000001")
    eq(stage("  \t" .. T.INVENTORY), "row", "leading whitespace is fine")
end)

test("jit: no NYI trace aborts in the scripts on the success path (valid events)", function()
    if not jit or not jit.status() then return end
    local v = require "jit.v"
    local file = os.tmpname()
    local p = assert(io.popen("luajit tests/tools/gen_events.lua --count 30000 --seed 21 --invalid-pct 0"))
    local data = p:read("*a")
    p:close()
    v.on(file)
    local okr, err = pcall(function()
        for line in data:gmatch("([^\n]*)\n") do sim.process(line) end
    end)
    v.off()
    ok(okr, err)
    local bad = {}
    for l in io.lines(file) do
        if l:find("NYI", 1, true) and (l:find("check.lua", 1, true) or l:find("events/", 1, true)) then
            bad[#bad + 1] = l
        end
    end
    os.remove(file)
    eq(#bad, 0, table.concat(bad, "\n"))
end)
