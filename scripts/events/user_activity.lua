--[[
user_activity events -> `user_activity_events`.

Contract (DESIGN.md): all fields required, non-null; user_id a UUID (8-4-4-4-12 hex, either
case); activity_type one of login, logout, view_product, add_to_cart, remove_from_cart, purchase,
search; ip_address a valid IPv4 or IPv6 address (see check.ip); user_agent a non-empty string;
timestamp a timestamp (see bepipe.check), stored in UTC; metadata {session_id, platform non-empty
strings}. Unknown fields, also inside metadata, are dropped from the row.
validate() stores the UTC form of the timestamp back into ev.timestamp for map().
]]

local check = require "bepipe.check"

local type = type
local uuid, ip = check.uuid, check.ip
local timestamp, fail = check.timestamp, check.fail

local ACTIVITY = {
    login = true, logout = true, view_product = true, add_to_cart = true,
    remove_from_cart = true, purchase = true, search = true,
}
local ACTIVITY_TEXT = "one of login, logout, view_product, add_to_cart, remove_from_cart,"
    .. " purchase, search"
local STR = "a non-empty string"

local M = {
    table = "user_activity_events",
    time_field = "timestamp",
}

function M.validate(ev)
    local v = ev.user_id
    if not uuid(v) then return fail("user_id", v, "a UUID (8-4-4-4-12 hex digits)") end
    v = ev.activity_type
    if not ACTIVITY[v] then return fail("activity_type", v, ACTIVITY_TEXT) end
    v = ev.user_agent
    if type(v) ~= "string" or #v == 0 then return fail("user_agent", v, STR) end

    local m = ev.metadata
    if type(m) ~= "table" or m[1] ~= nil then
        return fail("metadata", m, "an object {session_id, platform}")
    end
    v = m.session_id
    if type(v) ~= "string" or #v == 0 then return fail("metadata.session_id", v, STR) end
    v = m.platform
    if type(v) ~= "string" or #v == 0 then return fail("metadata.platform", v, STR) end

    v = ev.timestamp
    if type(v) ~= "string" then return fail("timestamp", v, "a timestamp string") end
    local utc, why = timestamp(v)
    if not utc then return false, "timestamp: " .. why end

    -- The IP address last: its branches depend on the address (v4/v6, digits per part), and what
    -- follows a branch is compiled into each of its side traces, so little should follow it.
    v = ev.ip_address
    if not ip(v) then return fail("ip_address", v, "an IPv4 or IPv6 address") end
    ev.timestamp = utc
    return true
end

function M.map(ev)
    local m = ev.metadata
    return {
        event_type = ev.event_type,
        user_id = ev.user_id,
        activity_type = ev.activity_type,
        ip_address = ev.ip_address,
        user_agent = ev.user_agent,
        timestamp = ev.timestamp,
        metadata = { session_id = m.session_id, platform = m.platform },
    }
end

return M
