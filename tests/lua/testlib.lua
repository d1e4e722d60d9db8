-- Shared helpers for the Lua tests: valid sample events (decoded with cjson, so JSON null is
-- cjson.null as in production), path setters and a table-driven rule checker.
local cjson = require "cjson"

local M = {}
M.null = cjson.null
M.DEL = setmetatable({}, { __tostring = function() return "<removed>" end })
M.EMPTY = function() return cjson.decode("{}") end      -- {} and [] decode alike

M.ORDER = [[{"event_type":"order","order_id":"ORD-2025-000001",
 "customer_id":"4712e547-f6e9-45cc-936d-365bfcdc283d","order_date":"2025-03-01T12:34:56Z",
 "status":"pending",
 "items":[{"product_id":"b9b7efca-38de-41ca-bcf4-316d123d1523","product_name":"Wireless Mouse",
           "quantity":2,"price":10.5},
          {"product_id":"418b5bab-248e-41de-86d1-14ced3890e21","product_name":"Mouse Pad",
           "quantity":1,"price":4}],
 "shipping_address":{"street":"221B Baker Street","city":"London","country":"GB"},
 "total_amount":25}]]

M.INVENTORY = [[{"event_type":"inventory","inventory_id":"37a314df-828c-4022-8f4e-0df065fc8505",
 "product_id":"3d76121e-f845-40b2-9164-4bf5b0002f78",
 "warehouse_id":"25005694-8185-47f6-8823-4cce12f25e5d","quantity_change":-20,"reason":"sale",
 "timestamp":"2025-03-01T12:00:11Z"}]]

M.USER_ACTIVITY = [[{"event_type":"user_activity","user_id":"56e6be01-08c9-4088-a2e9-9b8918ed6f77",
 "activity_type":"add_to_cart","ip_address":"203.0.113.7",
 "user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
 "timestamp":"2025-03-01T12:00:22Z","metadata":{"session_id":"sess_2c141db919c0","platform":"web"}}]]

function M.order() return cjson.decode(M.ORDER) end
function M.inventory() return cjson.decode(M.INVENTORY) end
function M.user_activity() return cjson.decode(M.USER_ACTIVITY) end

-- set(ev, "items.2.quantity", v): dotted path, numeric segments index arrays (1-based, Lua).
-- v == DEL removes the field; a function v is called to make a fresh value.
function M.set(ev, path, v)
    if type(v) == "function" then v = v() end
    if v == M.DEL then v = nil end
    local t, last = ev, nil
    local segs = {}
    for seg in path:gmatch("[^.]+") do segs[#segs + 1] = tonumber(seg) or seg end
    for i = 1, #segs - 1 do t = t[segs[i]] end
    last = segs[#segs]
    t[last] = v
    return ev
end

local function show(v)
    if v == M.null then return "null" end
    if type(v) == "string" then return string.format("%q", v) end
    if type(v) == "table" then return "table" end
    return tostring(v)
end

-- cases: { path, value, want } where want is true (accepted) or a string the reason must contain.
-- Registers one test per case.
function M.rules(tname, mod, make, cases)
    for _, c in ipairs(cases) do
        local path, value, want = c[1], c[2], c[3]
        local name = string.format("%s: %s = %s -> %s", tname, path, c.desc or show(value),
            want == true and "accepted" or "rejected")
        test(name, function()
            local ev = M.set(make(), path, value)
            local okv, why = mod.validate(ev)
            if want == true then
                eq(okv, true, why)
                eq(why, nil)
            else
                eq(okv, false, "must be rejected")
                ok(type(why) == "string", "a reason")
                like(why, want)
            end
        end)
    end
end

-- Every non-empty-string rule: missing / null / wrong type / empty / whitespace-only (accepted).
function M.string_cases(cases, path)
    local n = #cases
    cases[n + 1] = { path, M.DEL, path:gsub("%.(%d+)", function(d) return "[" .. (d - 1) .. "]" end)
        .. ": required field is missing" }
    local p = cases[n + 1][3]:gsub(": required field is missing", "")
    cases[n + 2] = { path, M.null, p .. ": must not be null" }
    cases[n + 3] = { path, 42, p .. ": must be a non-empty string (got number 42)" }
    cases[n + 4] = { path, "", p .. ": must be a non-empty string (got empty string)" }
    cases[n + 5] = { path, true, p .. ": must be a non-empty string (got boolean)" }
    cases[n + 6] = { path, function() return cjson.decode('{"a":"b"}') end, p .. ": must be a non-empty string (got object)", desc = "{object}" }
    cases[n + 7] = { path, " ", true, desc = "whitespace-only" }
    cases[n + 8] = { path, "x", true }
    cases[n + 9] = { path, "Zürich \"quoted\" \0 nul", true, desc = "utf-8/quote/nul" }
end

function M.uuid_cases(cases, path)
    local n = #cases
    local add = function(v, want, desc) n = n + 1; cases[n] = { path, v, want, desc = desc } end
    add(M.DEL, path .. ": required field is missing")
    add(M.null, path .. ": must not be null")
    add("", path .. ": must be a UUID")
    add(42, path .. ": must be a UUID")
    add("0f8fad5b-d9cb-469f-a165-70867728950e", true)
    add("0F8FAD5B-D9CB-469F-A165-70867728950E", true, "upper case")
    add("0f8fad5b-d9cb-469f-a165-70867728950", path .. ": must be a UUID", "35 chars")
    add("0f8fad5b-d9cb-469f-a165-70867728950e0", path .. ": must be a UUID", "37 chars")
    add("0f8fad5bd-9cb-469f-a165-70867728950e", path .. ": must be a UUID", "group sizes")
    add("0f8fad5b-d9cb-469f-a165-70867728950x", path .. ": must be a UUID", "non-hex")
    add("0f8fad5bd9cb469fa16570867728950e", path .. ": must be a UUID", "no dashes")
end

function M.timestamp_cases(cases, path)
    local n = #cases
    local add = function(v, want, desc) n = n + 1; cases[n] = { path, v, want, desc = desc } end
    add(M.DEL, path .. ": required field is missing")
    add(M.null, path .. ": must not be null")
    add(1740830400, path .. ": must be a timestamp string")
    add("", path .. ": not a valid timestamp")
    add("2025-03-01T12:34:56Z", true)
    add("2025-03-01T12:34:56.123Z", true)
    add("2025-03-01t12:34:56z", true)
    add("2025-03-01T12:34:56+05:30", true)
    add("2025-03-01T12:34:56-08:00", true)
    add("2025-03-01 12:34:56", true)
    add("2025-03-01 12:34:56.123456 UTC", true)
    add("2024-02-29T00:00:00Z", true)
    add("2023-02-29T00:00:00Z", path .. ": not a valid timestamp: day out of range")
    add("1969-12-31T23:59:59Z", path .. ": not a valid timestamp: year")
    add("2100-01-01T00:00:00Z", path .. ": not a valid timestamp: year")
    add("1970-01-01T00:00:00Z", true)
    add("2099-12-31T23:59:59Z", true)
    add("2025-03-01T24:00:00Z", path .. ": not a valid timestamp: hour")
    add("2025-03-01T12:00:60Z", path .. ": not a valid timestamp: second")
    add("2025-03-01T12:00:00", path .. ": not a valid timestamp")
    add("1970-01-01T00:30:00+01:00", path .. ": not a valid timestamp: the UTC time")
end

return M
