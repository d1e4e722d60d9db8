--[[
inventory events -> `inventory_events`.

Contract (DESIGN.md): all fields required, non-null; inventory_id, product_id, warehouse_id UUIDs
(8-4-4-4-12 hex, either case); quantity_change an integer in -100..100 (3 or 3.0, not 3.5);
reason one of restock, sale, return, damage; timestamp a timestamp (see bepipe.check), stored in
UTC. Unknown fields are dropped from the row.
validate() stores the UTC form of the timestamp back into ev.timestamp for map().
]]

local check = require "bepipe.check"

local type = type
local floor = math.floor
local uuid, timestamp, fail = check.uuid, check.timestamp, check.fail

local REASON = { restock = true, sale = true, ["return"] = true, damage = true }
local REASON_TEXT = "one of restock, sale, return, damage"
local UUID = "a UUID (8-4-4-4-12 hex digits)"

local M = {
    table = "inventory_events",
    time_field = "timestamp",
}

function M.validate(ev)
    local v = ev.inventory_id
    if not uuid(v) then return fail("inventory_id", v, UUID) end
    v = ev.product_id
    if not uuid(v) then return fail("product_id", v, UUID) end
    v = ev.warehouse_id
    if not uuid(v) then return fail("warehouse_id", v, UUID) end

    v = ev.quantity_change
    if type(v) ~= "number" or not (v >= -100 and v <= 100) or floor(v) ~= v then
        return fail("quantity_change", v, "an integer in -100..100")
    end

    v = ev.reason
    if not REASON[v] then return fail("reason", v, REASON_TEXT) end

    v = ev.timestamp
    if type(v) ~= "string" then return fail("timestamp", v, "a timestamp string") end
    local utc, why = timestamp(v)
    if not utc then return false, "timestamp: " .. why end
    ev.timestamp = utc
    return true
end

function M.map(ev)
    return {
        event_type = ev.event_type,
        inventory_id = ev.inventory_id,
        product_id = ev.product_id,
        warehouse_id = ev.warehouse_id,
        quantity_change = ev.quantity_change + 0,   -- + 0 turns -0 into 0; 3.0 is already 3
        reason = ev.reason,
        timestamp = ev.timestamp,
    }
end

return M
