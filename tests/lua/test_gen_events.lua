-- tests/tools/gen_events.lua: its output, run through parse/route/validate/map, gives exactly its
-- expectation file; it is deterministic; invalid events cover every rule.
local sim = require "pipeline_sim"
local check = require "bepipe.check"
local cjson = require "cjson"

local function gen(args)
    local exp = os.tmpname()
    local p = assert(io.popen("luajit tests/tools/gen_events.lua " .. args .. " --expect " .. exp))
    local data = p:read("*a")
    p:close()
    local f = assert(io.open(exp))
    local e = cjson.decode(f:read("*a"))
    f:close()
    os.remove(exp)
    return data, e
end

local function run(data)
    local got = {
        total = 0,
        rows = { order_events = 0, inventory_events = 0, user_activity_events = 0 },
        dead = { parse = 0, route = 0, validate = 0 },
        hours = { order_events = {}, inventory_events = {}, user_activity_events = {} },
    }
    local reasons = {}
    for line in data:gmatch("([^\n]*)\n") do
        got.total = got.total + 1
        local stage, a, row, mod = sim.process(line)
        if stage == "row" then
            got.rows[a] = got.rows[a] + 1
            local h = tostring(check.hour_key(row[mod.time_field]))
            got.hours[a][h] = (got.hours[a][h] or 0) + 1
        else
            got.dead[stage] = (got.dead[stage] or 0) + 1
            if stage == "validate" then
                local field = a:match("^([^:]+):") or a
                reasons[(field:gsub("%[%d+%]", "[]"))] = true
            end
        end
    end
    return got, reasons
end

for _, args in ipairs { "--count 20000 --seed 1", "--count 20000 --seed 2 --invalid-pct 20",
    "--count 5000 --seed 99 --invalid-pct 100 --start-time 946684000",
    "--count 3000 --seed 5 --invalid-pct 0", "--count 5000 --seed 6 --lateness live",
    "--count 3000 --seed 7 --lateness uniform" } do
    test("gen_events: output matches its expectation (" .. args .. ")", function()
        local data, exp = gen(args)
        local got = run(data)
        eq(got.total, exp.total, "total")
        deep_eq(got.rows, exp.rows, "rows")
        deep_eq(got.dead, exp.dead, "dead")
        deep_eq(got.hours, exp.hours, "hours")
    end)
end

test("gen_events: deterministic for a seed, different across seeds", function()
    local a = gen("--count 2000 --seed 42")
    local b = gen("--count 2000 --seed 42")
    local c = gen("--count 2000 --seed 43")
    ok(a == b, "same seed, same bytes")
    ok(a ~= c, "another seed, other bytes")
end)

test("gen_events: ~400 bytes a line, mix of types, no empty lines, ~3% invalid", function()
    local data, exp = gen("--count 20000 --seed 3")
    local lines, bytes, empty = 0, 0, 0
    for line in data:gmatch("([^\n]*)\n") do
        lines = lines + 1
        bytes = bytes + #line
        if not line:find("%S") then empty = empty + 1 end
    end
    eq(lines, 20000)
    eq(empty, 0)
    local avg = bytes / lines
    ok(avg > 330 and avg < 470, "average line length " .. avg)
    local r = exp.rows
    local valid = r.order_events + r.inventory_events + r.user_activity_events
    ok(math.abs(r.order_events / valid - 0.4) < 0.03, "order share")
    ok(math.abs(r.inventory_events / valid - 0.3) < 0.03, "inventory share")
    ok(math.abs(r.user_activity_events / valid - 0.3) < 0.03, "user_activity share")
    local dead = exp.dead.parse + exp.dead.route + exp.dead.validate
    ok(dead > 20000 * 0.02 and dead < 20000 * 0.04, "invalid share " .. dead)
end)

test("gen_events: invalid events cover every validated field of the three types", function()
    local data = gen("--count 20000 --seed 8 --invalid-pct 100")
    local _, reasons = run(data)
    for _, f in ipairs { "order_id", "customer_id", "order_date", "status", "items", "items[]",
        "items[].product_id", "items[].product_name", "items[].quantity", "items[].price",
        "shipping_address", "shipping_address.street", "shipping_address.city",
        "shipping_address.country", "total_amount", "inventory_id", "product_id", "warehouse_id",
        "quantity_change", "reason", "timestamp", "user_id", "activity_type", "ip_address",
        "user_agent", "metadata", "metadata.session_id", "metadata.platform" } do
        ok(reasons[f], "no invalid event for " .. f)
    end
end)

test("gen_events: valid events use every timestamp form and both IP families", function()
    local data = gen("--count 5000 --seed 4 --invalid-pct 0")
    local seen = {}
    for line in data:gmatch("([^\n]*)\n") do
        local ev = cjson.decode(line)
        local t = ev.order_date or ev.timestamp
        if t:find("T", 1, true) and t:find("Z", 1, true) then seen.Z = true end
        if t:find("t", 1, true) and t:find("z", 1, true) then seen.lower = true end
        if t:find("[+-]%d%d:%d%d$") then seen.offset = true end
        if t:find(" UTC", 1, true) then seen.utc = true end
        if t:find("^%S+ %S+$") then seen.bare = true end
        if t:find(".", 1, true) then seen.frac = true end
        if ev.ip_address then
            seen[ev.ip_address:find(":", 1, true) and "v6" or "v4"] = true
        end
    end
    for _, k in ipairs { "Z", "lower", "offset", "utc", "bare", "frac", "v4", "v6" } do
        ok(seen[k], k)
    end
end)

test("gen_events: lateness models (live: 95% recent, 4% hours, 1% days late; uniform)", function()
    local hour = check.hour_key
    local function hours_late(h, clock_h)   -- YYYYMMDDHH keys -> hours between them
        local function epoch_h(k)
            local y, m, d, hh = math.floor(k / 1e6), math.floor(k / 1e4) % 100,
                math.floor(k / 100) % 100, k % 100
            return os.time { year = y, month = m, day = d, hour = hh } / 3600
        end
        return epoch_h(clock_h) - epoch_h(h)
    end
    local _, exp = gen("--count 50000 --seed 11 --lateness live --invalid-pct 0")
    local now = hour("2025-03-01T12:00:00Z")
    local recent, hours, days, n = 0, 0, 0, 0
    for _, per in pairs(exp.hours) do
        for h, c in pairs(per) do
            local late = hours_late(tonumber(h), now)
            n = n + c
            if late <= 1 then recent = recent + c
            elseif late <= 25 then hours = hours + c
            else days = days + c end
            ok(late <= 7 * 24 + 1, "at most 7 days late: " .. h)
        end
    end
    ok(math.abs(recent / n - 0.95) < 0.01, "recent share " .. recent / n)
    ok(math.abs(hours / n - 0.04) < 0.005, "hours-late share " .. hours / n)
    ok(math.abs(days / n - 0.01) < 0.003, "days-late share " .. days / n)
    _, exp = gen("--count 20000 --seed 12 --lateness uniform --invalid-pct 0")
    local folders = 0
    for _, per in pairs(exp.hours) do
        for h in pairs(per) do
            folders = folders + 1
            ok(tonumber(h) >= 2024010100 and tonumber(h) <= 2025123123, "2024-2025: " .. h)
        end
    end
    ok(folders > 15000, "a two-year spread: " .. folders .. " folders")
    local okx = os.execute("luajit tests/tools/gen_events.lua --count 1 --lateness late "
        .. ">/dev/null 2>&1")
    ok(okx ~= 0 and okx ~= true, "an unknown lateness model must fail")
end)

test("gen_events: rejects bad arguments", function()
    local okx = os.execute("luajit tests/tools/gen_events.lua --bogus 1 >/dev/null 2>&1")
    ok(okx ~= 0 and okx ~= true, "unknown option must fail")
    okx = os.execute("luajit tests/tools/gen_events.lua >/dev/null 2>&1")
    ok(okx ~= 0 and okx ~= true, "--count is required")
end)
