#!/usr/bin/env luajit
--[[
gen_events.lua — deterministic generator of test events for bepipe-lua (NDJSON on stdout).

  luajit tests/tools/gen_events.lua --count N [--invalid-pct P] [--seed S] [--expect FILE]
                                    [--start-time EPOCH] [--lateness none|live|uniform]

  --count N          number of events (lines) to write (required)
  --invalid-pct P    percentage of invalid events, 0..100 (default 3)
  --seed S           PRNG seed (default 1); the same arguments give the same bytes
  --expect FILE      write the exact expected outcome as JSON:
                       {"total":N,"rows":{"order_events":a,"inventory_events":b,
                        "user_activity_events":c},"dead":{"parse":x,"route":y,"validate":z},
                        "hours":{"<table>":{"YYYYMMDDHH":n,...},...}}
                     "hours" counts the rows of each table by the UTC hour of its time field
                     (order_date / timestamp), i.e. check.hour_key of the row.
  --start-time EPOCH UTC seconds of the first event (default 1740830400 = 2025-03-01T12:00:00Z);
                     events move forward 1 s per 28 events (about 100,000 events per hour) with
                     +-2 minutes of jitter. Must lie within 1970-01-02 .. 2099-12-30.
  --lateness MODEL   how event times relate to the stream (default none: the clock above):
                       live     a stream clock at 5,000 events/s from --start-time; 95% of
                                events up to 2 minutes old, 4% 1-24 hours late, 1% 1-7 days
                                late (devices that were offline)
                       uniform  a shuffled backfill: times uniform over 2024-01-01 .. 2025-12-31

Mix: ~40% order, ~30% inventory, ~30% user_activity; ~400 bytes per line on average. Values are
realistic: UUIDs (mostly lower, some upper case), IPv4 and IPv6 (compressed, full, IPv4-mapped),
several timestamp forms (RFC 3339 with Z, fractions, +-hh:mm offsets, lowercase t/z; BigQuery's
"YYYY-MM-DD HH:MM:SS[.ffffff][ UTC]"), quantities written 3 or 3.0, extra unknown fields.

Invalid events are spread over every kind of failure, by stage: ~15% `parse` (not JSON, truncated
JSON, a JSON array / string / number / null / boolean instead of an object, trailing comma, ...),
~15% `route` (event_type missing, null, unknown, wrong case, empty, a number, an array; "{}"), and
~70% `validate` (every rule of the validation contract of the three types). Empty or whitespace-only
lines are never generated: the NDJSON source skips them, they are not events.
Parse rule assumed by the expectation: a line is an object iff its first non-space byte is "{" and
lua-cjson decodes it to a table.
]]

local floor, rnd, format, concat = math.floor, math.random, string.format, table.concat

-- The generator branches at random on nearly every line, which makes LuaJIT's trace compiler
-- thrash (thousands of side traces, mcode flushes); the interpreter is faster here (measured:
-- ~1.5 s vs ~3 s per 200k events). The output does not depend on it.
if jit then jit.off() end

----------------------------------------------------------------------------------------------------
-- Arguments

local opt = { count = nil, invalid_pct = 3, seed = 1, expect = nil, start_time = 1740830400,
    lateness = "none" }
do
    local i = 1
    local function usage(msg)
        io.stderr:write("gen_events: ", msg, "\nusage: luajit tests/tools/gen_events.lua --count N"
            .. " [--invalid-pct P] [--seed S] [--expect FILE] [--start-time EPOCH]\n")
        os.exit(2)
    end
    while i <= #arg do
        local a, v = arg[i], arg[i + 1]
        if a == "--help" or a == "-h" then usage("help") end
        if v == nil then usage("missing value for " .. a) end
        if a == "--count" then opt.count = tonumber(v)
        elseif a == "--invalid-pct" then opt.invalid_pct = tonumber(v)
        elseif a == "--seed" then opt.seed = tonumber(v)
        elseif a == "--expect" then opt.expect = v
        elseif a == "--start-time" then opt.start_time = tonumber(v)
        elseif a == "--lateness" then opt.lateness = v
        else usage("unknown option " .. a) end
        i = i + 2
    end
    if not opt.count or opt.count < 0 or opt.count % 1 ~= 0 then usage("--count N required") end
    if not opt.invalid_pct or opt.invalid_pct < 0 or opt.invalid_pct > 100 then
        usage("--invalid-pct must be 0..100")
    end
    if not opt.seed then usage("bad --seed") end
    if opt.lateness ~= "none" and opt.lateness ~= "live" and opt.lateness ~= "uniform" then
        usage("--lateness must be none, live or uniform")
    end
    if opt.lateness == "live" and opt.start_time < 8 * 86400 then
        usage("--start-time must keep live events (up to 7 days late) after 1970-01-02")
    end
    if not opt.start_time or opt.start_time < 86400 + 300
        or opt.start_time + opt.count / 28 + 300 > 4102444800 - 86400 then
        usage("--start-time must keep events within 1970-01-02 .. 2099-12-30")
    end
end

math.randomseed(opt.seed)

----------------------------------------------------------------------------------------------------
-- Time formatting (own civil-from-days: os.date is slower and depends on the C library)

local PAD2 = {}
for i = 0, 99 do PAD2[i] = format("%02d", i) end

local function civil(days)               -- days since 1970-01-01 -> y, m, d (H. Hinnant)
    local z = days + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local d = doy - floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end

local DATE = {}          -- days since epoch -> "YYYY-MM-DD" (a few distinct days per run)
local function date_of(days)
    local s = DATE[days]
    if not s then
        local y, m, d = civil(days)
        s = PAD2[floor(y / 100)] .. PAD2[y % 100] .. "-" .. PAD2[m] .. "-" .. PAD2[d]
        DATE[days] = s
    end
    return s
end

-- "YYYY-MM-DD", h, mi, s of the UTC time t (seconds).
local function ymdhms(t)
    local days = floor(t / 86400)
    local s = t - days * 86400
    local h = floor(s / 3600)
    s = s - h * 3600
    local mi = floor(s / 60)
    return date_of(days), h, mi, s - mi * 60
end

local function time_str(h, mi, s)
    return PAD2[h] .. ":" .. PAD2[mi] .. ":" .. PAD2[s]
end

local OFFSETS = { 60, 120, 330, 540, -300, -480, -210, 0, 600, -600, 345, 840, -720, 1425, -1425 }

local function frac(ndig)
    local f = tostring(rnd(0, 10 ^ ndig - 1))
    return "." .. string.rep("0", ndig - #f) .. f
end

-- A JSON string literal for the time t, in one of several accepted forms.
local function ts_json(t)
    local r = rnd(100)
    if r <= 55 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. "T" .. time_str(h, mi, s) .. 'Z"'
    elseif r <= 65 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. "T" .. time_str(h, mi, s) .. frac(3) .. 'Z"'
    elseif r <= 70 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. "T" .. time_str(h, mi, s) .. frac(6) .. 'Z"'
    elseif r <= 85 then                        -- local time with an offset
        local off = OFFSETS[rnd(#OFFSETS)]
        local ds, h, mi, s = ymdhms(t + off * 60)
        local a = off < 0 and -off or off
        local o = (off < 0 and "-" or "+") .. PAD2[floor(a / 60)] .. ":" .. PAD2[a % 60]
        local f = rnd(3) == 1 and frac(3) or ""
        return '"' .. ds .. "T" .. time_str(h, mi, s) .. f .. o .. '"'
    elseif r <= 91 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. " " .. time_str(h, mi, s) .. ' UTC"'
    elseif r <= 95 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. " " .. time_str(h, mi, s) .. frac(6) .. '"'
    elseif r <= 97 then
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. " " .. time_str(h, mi, s) .. '"'
    else                                       -- lowercase t/z, nanoseconds
        local ds, h, mi, s = ymdhms(t)
        return '"' .. ds .. "t" .. time_str(h, mi, s) .. frac(9) .. 'z"'
    end
end

local hour_names = {}
local function hour_name(t)
    local hi = floor(t / 3600)
    local s = hour_names[hi]
    if not s then
        local ds, h = ymdhms(hi * 3600)
        s = ds:sub(1, 4) .. ds:sub(6, 7) .. ds:sub(9, 10) .. PAD2[h]
        hour_names[hi] = s
    end
    return s
end

----------------------------------------------------------------------------------------------------
-- Value pools (JSON literals, built once)

local function uuid_raw(upper)
    local s = format("%08x-%04x-4%03x-%04x-%04x%08x", rnd(0, 0xffffffff), rnd(0, 0xffff),
        rnd(0, 0xfff), 0x8000 + rnd(0, 0x3fff), rnd(0, 0xffff), rnd(0, 0xffffffff))
    return upper and s:upper() or s
end
local function uuid_json()
    return '"' .. uuid_raw(rnd(20) == 1) .. '"'
end

local function pool(n, f)
    local p = {}
    for i = 1, n do p[i] = f(i) end
    return p
end
local function pick(p) return p[rnd(#p)] end

local USERS = pool(5000, uuid_json)
local PRODUCTS = pool(500, uuid_json)
local WAREHOUSES = pool(20, uuid_json)
local SESSIONS = pool(3000, function() return format('"sess_%08x%04x"', rnd(0, 0xffffffff),
    rnd(0, 0xffff)) end)
local PRODUCT_NAMES = {
    '"Wireless Mouse"', '"USB-C Charger 65W"', '"Mechanical Keyboard"', '"27\\" 4K Monitor"',
    '"Noise Cancelling Headphones"', '"Espresso Machine"', '"Café Latte Mug"', '"Yoga Mat"',
    '"Running Shoes Size 42"', '"Stainless Steel Water Bottle"', '"LED Desk Lamp"',
    '"Smartphone Case \\u2013 Black"', '"Bluetooth Speaker"', '"Backpack 30L"', '"Coffee Beans 1kg"',
    '"Kinderbuch: Die kleine Raupe"', '"HDMI Cable 2m"', '"Gaming Chair"', '"Notebook A5, dotted"',
    '"Électric Kettle"',
}
local STREETS = { '"221B Baker Street"', '"1600 Amphitheatre Pkwy"', '"Unter den Linden 77"',
    '"12 Rue de Rivoli"', '"350 Fifth Avenue, Apt 4B"', '"Calle de Alcalá 45"', '"1-1 Chiyoda"',
    '"742 Evergreen Terrace"', '"Av. Paulista 1578"', '"10 Downing St"' }
local CITIES = { '"London"', '"Mountain View"', '"Berlin"', '"Paris"', '"New York"', '"Madrid"',
    '"Tokyo"', '"Springfield"', '"São Paulo"', '"Zürich"' }
local COUNTRIES = { '"GB"', '"US"', '"DE"', '"FR"', '"US"', '"ES"', '"JP"', '"US"', '"BR"', '"CH"' }
local STATUSES = { '"pending"', '"processing"', '"shipped"', '"delivered"', '"cancelled"' }
local REASONS = { '"restock"', '"sale"', '"return"', '"damage"' }
local ACTIVITIES = { '"login"', '"logout"', '"view_product"', '"add_to_cart"', '"remove_from_cart"',
    '"purchase"', '"search"' }
local PLATFORMS = { '"web"', '"ios"', '"android"', '"desktop"' }
local AGENTS = {
    '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"',
    '"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15"',
    '"Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"',
    '"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Mobile Safari/537.36"',
    '"Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"',
    '"ShopApp/5.2.1 (Android 13; SM-S911B)"', '"ShopApp/5.2.0 (iOS 17.2; iPhone15,2)"',
    '"curl/8.5.0"',
}
local function ip_json()
    local r = rnd(100)
    if r <= 75 then
        return format('"%d.%d.%d.%d"', rnd(1, 223), rnd(0, 255), rnd(0, 255), rnd(1, 254))
    elseif r <= 85 then
        return format('"2001:db8:%x:%x::%x"', rnd(0, 0xffff), rnd(0, 0xffff), rnd(1, 0xffff))
    elseif r <= 92 then
        return format('"%x:%x:%x:%x:%x:%x:%x:%x"', rnd(0x2000, 0x3fff), rnd(0, 0xffff),
            rnd(0, 0xffff), rnd(0, 0xffff), rnd(0, 0xffff), rnd(0, 0xffff), rnd(0, 0xffff),
            rnd(0, 0xffff))
    elseif r <= 96 then
        return format('"::ffff:%d.%d.%d.%d"', rnd(1, 223), rnd(0, 255), rnd(0, 255), rnd(1, 254))
    elseif r <= 98 then
        return format('"FE80::%X:%X"', rnd(0, 0xffff), rnd(0, 0xffff))
    else
        return '"::1"'
    end
end
local EXTRA = { '"source":"web-checkout"', '"schema_version":2', '"trace":{"id":"4bf92f3577b34da6",'
    .. '"sampled":true}', '"tags":["promo","spring"]', '"client_ts":1740830400123',
    '"note":null', '"debug":false' }

----------------------------------------------------------------------------------------------------
-- Mutations. A mutation names a field path and the JSON text to put there (DEL removes it).

local DEL = {}
local TOTAL_PLUS = {}      -- total_amount off by +0.02
local TOTAL_MINUS = {}     -- total_amount off by -0.05

local function muts(list, path, values)
    for _, v in ipairs(values) do list[#list + 1] = { path = path, value = v } end
end

local STRING_BAD = { DEL, "null", '""', "123", "true", '{"v":"x"}', '["x"]' }
local UUID_BAD = { DEL, "null", '""', "42", '"not-a-uuid"',
    '"0f8fad5b-d9cb-469f-a165-70867728950"',      -- 35 chars
    '"0f8fad5b-d9cb-469f-a165-70867728950e1"',    -- 37 chars
    '"0f8fad5b-d9cb-469f-a165-70867728950g"',     -- non-hex
    '"0f8fad5bd-9cb-469f-a165-70867728950e"',     -- group sizes 9-3-...
    '"0f8fad5bd9cb469fa16570867728950e"',         -- no dashes
    '"{0f8fad5b-d9cb-469f-a165-70867728950e}"' }
local TS_BAD = { DEL, "null", '""', "1740830400", '"yesterday"', '"2023-02-29T10:00:00Z"',
    '"2025-13-01T00:00:00Z"', '"2025-00-10T00:00:00Z"', '"2025-04-31T00:00:00Z"',
    '"2025-03-00T00:00:00Z"', '"1969-12-31T23:59:59Z"', '"2100-01-01T00:00:00Z"',
    '"2025-03-01T24:00:00Z"', '"2025-03-01T12:60:00Z"', '"2025-03-01T12:00:60Z"',
    '"1970-01-01T00:30:00+01:00"', '"2099-12-31T23:30:00-01:00"', '"2025-03-01T12:00:00"',
    '"2025-03-01T12:00:00+25:00"', '"2025-03-01T12:00:00+0100"', '"2025-03-01T12:00:00.Z"',
    '"2025/03/01T12:00:00Z"', '"2025-03-01 12:00:00 GMT"', '"2025-03-01 12:00:00.1234567"',
    '"2025-3-1T12:00:00Z"', '"2025-03-01T12:00:00ZZ"' }

local VALIDATE = { order = {}, inventory = {}, user_activity = {} }
do
    local o = VALIDATE.order
    muts(o, "order_id", STRING_BAD)
    muts(o, "customer_id", STRING_BAD)
    muts(o, "order_date", TS_BAD)
    muts(o, "status", { DEL, "null", '""', '"unknown"', '"Pending"', '"refunded"', "3" })
    muts(o, "items", { DEL, "null", "[]", "{}", '"x"', "5", '{"product_id":"p1"}', "[null]", "[1]",
        "[[]]", '["item"]' })
    muts(o, "items.*", { "null", '"item"', "{}", "7", "[1,2]" })
    muts(o, "items.*.product_id", STRING_BAD)
    muts(o, "items.*.product_name", STRING_BAD)
    muts(o, "items.*.quantity", { DEL, "null", "0", "-1", "3.5", "0.5", '"2"', "1e999", "true" })
    muts(o, "items.*.price", { DEL, "null", "-0.01", "-5", '"9.99"', "1e999", "-1e999" })
    muts(o, "shipping_address", { DEL, "null", '"221B Baker Street"', "42", '["a","b"]', "{}" })
    muts(o, "shipping_address.street", STRING_BAD)
    muts(o, "shipping_address.city", STRING_BAD)
    muts(o, "shipping_address.country", STRING_BAD)
    muts(o, "total_amount", { DEL, "null", '"12.00"', "-1", TOTAL_PLUS, TOTAL_MINUS, "1e999",
        "false" })

    local inv = VALIDATE.inventory
    muts(inv, "inventory_id", UUID_BAD)
    muts(inv, "product_id", UUID_BAD)
    muts(inv, "warehouse_id", UUID_BAD)
    muts(inv, "quantity_change", { DEL, "null", "101", "-101", "1000", "2.5", '"5"', "1e999",
        "true" })
    muts(inv, "reason", { DEL, "null", '""', '"stolen"', '"Restock"', "1", '["sale"]' })
    muts(inv, "timestamp", TS_BAD)

    local ua = VALIDATE.user_activity
    muts(ua, "user_id", UUID_BAD)
    muts(ua, "activity_type", { DEL, "null", '""', '"signup"', '"LOGIN"', "0" })
    muts(ua, "ip_address", { DEL, "null", '""', "2130706433", '"256.1.1.1"', '"1.2.3"',
        '"01.2.3.4"', '"1.2.3.4.5"', '"1.2.3.-4"', '"1::2::3"', '"fe80::1%eth0"', '"12345::1"',
        '"2001:db8:0:0:0:0:0:0:1"', '"1:2:3:4:5:6:7"', '"::ffff:1.2.3.256"', '"localhost"',
        '"[::1]"', '"10.0.0.0/8"' })
    muts(ua, "user_agent", STRING_BAD)
    muts(ua, "timestamp", TS_BAD)
    muts(ua, "metadata", { DEL, "null", '"web"', "1", '["s1","web"]', "{}" })
    muts(ua, "metadata.session_id", STRING_BAD)
    muts(ua, "metadata.platform", STRING_BAD)
end

local ROUTE = { DEL, "null", '"refund"', '"Order"', '""', "42", '["order"]', '{"type":"order"}',
    '"order "', "true", "{}" }
local PARSE = { "not json", "truncated", "array", "string", "number", "null", "true",
    "trailing_comma", "single_quotes", "empty_array", "unterminated", "garbage_after", "nan_key" }

----------------------------------------------------------------------------------------------------
-- Event builders: fill K (keys in order) and V (JSON values), then apply the mutation.

local buf = {}          -- reused for serialisation

local KEYSTR = setmetatable({ x1 = "" }, {       -- key -> '"key":' (x1: a whole "key":value)
    __index = function(t, k) local v = '"' .. k .. '":'; t[k] = v; return v end })

local function obj(keys, vals, n)
    local b, m = buf, 1
    b[1] = "{"
    for i = 1, n do
        local k = keys[i]
        local v = vals[k]
        if v ~= nil and v ~= DEL then
            b[m + 1] = KEYSTR[k]
            b[m + 2] = v
            b[m + 3] = ","
            m = m + 3
        end
    end
    if m == 1 then return "{}" end
    b[m] = "}"
    return concat(b, "", 1, m)
end

local ITEM_KEYS = { "product_id", "product_name", "quantity", "price", "sku" }
local ADDR_KEYS = { "street", "city", "country", "zip" }
local META_KEYS = { "session_id", "platform", "app_version" }
local ORDER_KEYS = { "event_type", "order_id", "customer_id", "order_date", "status", "items",
    "shipping_address", "total_amount", "x1" }
local INV_KEYS = { "event_type", "inventory_id", "product_id", "warehouse_id", "quantity_change",
    "reason", "timestamp", "x1" }
local UA_KEYS = { "event_type", "user_id", "activity_type", "ip_address", "user_agent",
    "timestamp", "metadata", "x1" }

local order_seq = 0

-- Applies mutation mu (or nil) on path prefix `pre` of values table t; returns the value to use
-- for key k of sub-object pre.
local function sub_override(mu, pre, k)
    if mu and mu.sub == pre and mu.field == k then return true, mu.value end
    return false
end

local function order(t, mu)
    local V = {}
    order_seq = order_seq + 1
    V.event_type = '"order"'
    V.order_id = rnd(3) == 1 and format('"ORD-%d-%06d"', 2025, order_seq % 1000000) or uuid_json()
    V.customer_id = pick(USERS)
    V.order_date = ts_json(t)
    V.status = pick(STATUSES)
    local nitems = rnd(4) == 1 and rnd(3, 5) or rnd(1, 2)
    local bad_item = mu and mu.sub == "items" and rnd(nitems) or 0
    local cents_total = 0
    local parts = {}
    local iv = {}
    for i = 1, nitems do
        local q = rnd(10) == 1 and rnd(5, 20) or rnd(1, 3)
        local c = rnd(6) == 1 and rnd(0, 50) * 100 or rnd(50, 25000)
        if rnd(40) == 1 then c = 0 end
        cents_total = cents_total + q * c
        iv.product_id = pick(PRODUCTS)
        iv.product_name = pick(PRODUCT_NAMES)
        iv.quantity = rnd(8) == 1 and (q .. ".0") or tostring(q)
        iv.price = c % 100 == 0 and tostring(c / 100) or format("%d.%02d", floor(c / 100), c % 100)
        iv.sku = rnd(5) == 1 and format('"SKU-%05d"', rnd(99999)) or nil
        if i == bad_item then
            if mu.field == "*" then
                parts[i] = mu.value
            else
                iv[mu.field] = mu.value
                parts[i] = obj(ITEM_KEYS, iv, 5)
            end
        else
            parts[i] = obj(ITEM_KEYS, iv, 5)
        end
    end
    V.items = "[" .. concat(parts, ",") .. "]"
    local a = rnd(#STREETS)
    local av = { street = STREETS[a], city = CITIES[a], country = COUNTRIES[a],
        zip = rnd(4) == 1 and '"10115"' or nil }
    if mu and mu.sub == "shipping_address" then av[mu.field] = mu.value end
    V.shipping_address = obj(ADDR_KEYS, av, 4)
    local tc = cents_total
    local tv = rnd(3) == 1 and tc % 100 == 0 and tostring(tc / 100)
        or format("%d.%02d", floor(tc / 100), tc % 100)
    if mu and mu.value == TOTAL_PLUS then
        tc = tc + 2
        tv = format("%d.%02d", floor(tc / 100), tc % 100)
    elseif mu and mu.value == TOTAL_MINUS then
        tc = tc - 5
        if tc < 0 then tc = tc + 10 end
        tv = format("%d.%02d", floor(tc / 100), tc % 100)
    end
    V.total_amount = tv
    V.x1 = rnd(6) == 1 and pick(EXTRA) or nil
    if mu and not mu.sub and (mu.value == DEL or type(mu.value) == "string") then
        V[mu.path] = mu.value
    end
    return V, ORDER_KEYS
end

local function inventory(t, mu)
    local V = {}
    V.event_type = '"inventory"'
    V.inventory_id = uuid_json()
    V.product_id = pick(PRODUCTS)
    V.warehouse_id = pick(WAREHOUSES)
    local r = rnd(4)
    local q = rnd(20) == 1 and (rnd(2) == 1 and 100 or -100) or rnd(1, 60)
    if r >= 2 then q = -q end
    V.quantity_change = rnd(10) == 1 and (q .. ".0") or tostring(q)
    V.reason = REASONS[r]
    V.timestamp = ts_json(t)
    V.x1 = rnd(6) == 1 and pick(EXTRA) or nil
    if mu then V[mu.path] = mu.value end
    return V, INV_KEYS
end

local function user_activity(t, mu)
    local V = {}
    V.event_type = '"user_activity"'
    V.user_id = pick(USERS)
    V.activity_type = pick(ACTIVITIES)
    V.ip_address = ip_json()
    V.user_agent = pick(AGENTS)
    V.timestamp = ts_json(t)
    local mv = { session_id = pick(SESSIONS), platform = pick(PLATFORMS),
        app_version = rnd(5) == 1 and '"5.2.1"' or nil }
    if mu and mu.sub == "metadata" then mv[mu.field] = mu.value end
    V.metadata = obj(META_KEYS, mv, 3)
    V.x1 = rnd(6) == 1 and pick(EXTRA) or nil
    if mu and not mu.sub then V[mu.path] = mu.value end
    return V, UA_KEYS
end

-- Split "a.b" paths once.
for _, list in pairs(VALIDATE) do
    for _, mu in ipairs(list) do
        local dot = mu.path:find(".", 1, true)
        if dot then
            mu.sub = mu.path:sub(1, dot - 1)
            mu.field = mu.path:sub(dot + 1)
            if mu.sub == "items" then mu.field = mu.field:sub(3) ~= "" and mu.field:sub(3) or "*" end
        end
    end
end

local BUILD = { order = order, inventory = inventory, user_activity = user_activity }
local TABLE = { order = "order_events", inventory = "inventory_events",
    user_activity = "user_activity_events" }
local TYPES = { "order", "inventory", "user_activity" }

local function pick_type()
    local r = rnd(10)
    if r <= 4 then return "order" elseif r <= 7 then return "inventory" end
    return "user_activity"
end

local function build(ty, t, mu)
    local V, K = BUILD[ty](t, mu)
    return obj(K, V, #K)
end

local function parse_failure(kind, t)
    if kind == "not json" then return "this is not json" end
    if kind == "truncated" then
        local s = build(pick_type(), t)
        return s:sub(1, rnd(1, #s - 1))
    end
    if kind == "array" then return "[" .. build(pick_type(), t) .. "]" end
    if kind == "string" then return '"event_type=order"' end
    if kind == "number" then return "42" end
    if kind == "null" then return "null" end
    if kind == "true" then return "true" end
    if kind == "trailing_comma" then return '{"event_type":"order","order_id":"o1",}' end
    if kind == "single_quotes" then return "{'event_type':'order'}" end
    if kind == "empty_array" then return "[]" end
    if kind == "unterminated" then return '{"event_type":"user_activity","user_agent":"Mozilla' end
    if kind == "garbage_after" then return build(pick_type(), t) .. " trailing" end
    return '{event_type:"inventory"}'
end

----------------------------------------------------------------------------------------------------
-- Main loop

local rows = { order_events = 0, inventory_events = 0, user_activity_events = 0 }
local dead = { parse = 0, route = 0, validate = 0 }
local hours = { order_events = {}, inventory_events = {}, user_activity_events = {} }

local out = {}
local nout = 0
local p_invalid = opt.invalid_pct / 100
local start = opt.start_time
local stdout = io.stdout

-- The time of event i under the lateness model (see --lateness). "none" draws exactly what it
-- always did, so existing corpora keep their bytes.
local UNIFORM_FROM, UNIFORM_TO = 1704067200, 1767225599     -- 2024-01-01 .. 2025-12-31 UTC
local function event_time(i)
    if opt.lateness == "none" then return start + floor(i / 28) + rnd(-120, 120) end
    if opt.lateness == "uniform" then return rnd(UNIFORM_FROM, UNIFORM_TO) end
    local clock = start + floor(i / 5000)
    local r = rnd()
    if r < 0.95 then return clock - rnd(0, 120) end
    if r < 0.99 then return clock - rnd(3600, 86400) end
    return clock - rnd(86400, 7 * 86400)
end

for i = 0, opt.count - 1 do
    local t = event_time(i)
    local line
    if rnd() < p_invalid then
        local r = rnd(100)
        if r <= 15 then
            line = parse_failure(PARSE[rnd(#PARSE)], t)
            dead.parse = dead.parse + 1
        elseif r <= 30 then
            local ty = pick_type()
            local V, K = BUILD[ty](t, nil)
            local et = ROUTE[rnd(#ROUTE)]
            if et == "{}" then
                line = "{}"
            else
                V.event_type = et
                line = obj(K, V, #K)
            end
            dead.route = dead.route + 1
        else
            local ty = TYPES[rnd(3)]
            local list = VALIDATE[ty]
            line = build(ty, t, list[rnd(#list)])
            dead.validate = dead.validate + 1
        end
    else
        local ty = pick_type()
        line = build(ty, t, nil)
        local tbl = TABLE[ty]
        rows[tbl] = rows[tbl] + 1
        local h = hours[tbl]
        local hn = hour_name(t)
        h[hn] = (h[hn] or 0) + 1
    end
    nout = nout + 1
    out[nout] = line
    if nout == 2048 then
        stdout:write(concat(out, "\n", 1, nout), "\n")
        nout = 0
    end
end
if nout > 0 then stdout:write(concat(out, "\n", 1, nout), "\n") end
stdout:flush()

if opt.expect then
    local function counts(tbl, keys)
        local p = {}
        for _, k in ipairs(keys) do p[#p + 1] = format('"%s":%d', k, tbl[k]) end
        return "{" .. concat(p, ",") .. "}"
    end
    local tables = { "order_events", "inventory_events", "user_activity_events" }
    local hp = {}
    for _, tb in ipairs(tables) do
        local keys = {}
        for k in pairs(hours[tb]) do keys[#keys + 1] = k end
        table.sort(keys)
        hp[#hp + 1] = format('"%s":%s', tb, counts(hours[tb], keys))
    end
    local f = assert(io.open(opt.expect, "w"))
    f:write(format('{"total":%d,"rows":%s,"dead":%s,"hours":{%s}}\n', opt.count,
        counts(rows, tables), counts(dead, { "parse", "route", "validate" }), concat(hp, ",")))
    f:close()
end
