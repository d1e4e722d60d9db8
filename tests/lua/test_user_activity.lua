-- events/user_activity: every rule of the validation contract, both sides, and the mapping.
local ua = require "events.user_activity"
local T = require "testlib"
local cjson = require "cjson"
local DEL, null = T.DEL, T.null

test("user_activity: module fields", function()
    eq(ua.table, "user_activity_events")
    eq(ua.time_field, "timestamp")
end)

test("user_activity: the sample event is valid", function()
    local okv, why = ua.validate(T.user_activity())
    eq(okv, true, why)
end)

local cases = {}
T.uuid_cases(cases, "user_id")
T.string_cases(cases, "user_agent")
T.timestamp_cases(cases, "timestamp")
T.string_cases(cases, "metadata.session_id")
T.string_cases(cases, "metadata.platform")
local function add(path, v, want, desc) cases[#cases + 1] = { path, v, want, desc = desc } end

for _, a in ipairs { "login", "logout", "view_product", "add_to_cart", "remove_from_cart",
    "purchase", "search" } do
    add("activity_type", a, true)
end
add("activity_type", "signup", "activity_type: must be one of login, logout, view_product,"
    .. " add_to_cart, remove_from_cart, purchase, search (got string \"signup\")")
add("activity_type", "LOGIN", "activity_type: must be one of")
add("activity_type", "", "activity_type: must be one of")
add("activity_type", 0, "activity_type: must be one of")
add("activity_type", DEL, "activity_type: required field is missing")
add("activity_type", null, "activity_type: must not be null")

for _, ip in ipairs { "0.0.0.0", "255.255.255.255", "203.0.113.7", "::1", "::", "2001:db8::1",
    "2001:0DB8:0000:0000:0000:FF00:0042:8329", "::ffff:192.0.2.1", "fe80::1:2:3:4" } do
    add("ip_address", ip, true)
end
for _, ip in ipairs { "256.0.0.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "1::2::3", "fe80::1%eth0",
    "12345::1", "1:2:3:4:5:6:7:8:9", "localhost", "[::1]", "10.0.0.0/8", "" } do
    add("ip_address", ip, "ip_address: must be an IPv4 or IPv6 address (got ")
end
add("ip_address", 2130706433, "ip_address: must be an IPv4 or IPv6 address (got number")
add("ip_address", DEL, "ip_address: required field is missing")
add("ip_address", null, "ip_address: must not be null")

add("metadata", DEL, "metadata: required field is missing")
add("metadata", null, "metadata: must not be null")
add("metadata", "web", "metadata: must be an object {session_id, platform} (got string")
add("metadata", function() return cjson.decode('["s1","web"]') end,
    "metadata: must be an object {session_id, platform} (got array)", "[array]")
add("metadata", T.EMPTY, "metadata.session_id: required field is missing", "{}")

T.rules("user_activity", ua, T.user_activity, cases)

test("user_activity: map gives exactly the row", function()
    local ev = T.user_activity()
    ev.extra = { nested = true }
    ev.metadata.app_version = "5.2.1"
    ev.timestamp = "2025-03-01 23:30:00 UTC"
    eq(ua.validate(ev), true)
    deep_eq(ua.map(ev), {
        event_type = "user_activity",
        user_id = "56e6be01-08c9-4088-a2e9-9b8918ed6f77",
        activity_type = "add_to_cart",
        ip_address = "203.0.113.7",
        user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
        timestamp = "2025-03-01T23:30:00Z",
        metadata = { session_id = "sess_2c141db919c0", platform = "web" },
    })
end)

test("user_activity: timestamp offset crossing the year is normalised", function()
    local ev = T.user_activity()
    ev.timestamp = "2024-12-31T22:00:00-03:00"
    eq(ua.validate(ev), true)
    eq(ua.map(ev).timestamp, "2025-01-01T01:00:00Z")
end)

test("user_activity: a failed validation leaves the timestamp as written", function()
    local ev = T.user_activity()
    ev.timestamp = "2025-03-01T12:00:00+01:00"
    ev.metadata = nil
    eq(ua.validate(ev), false)
    eq(ev.timestamp, "2025-03-01T12:00:00+01:00")
end)
