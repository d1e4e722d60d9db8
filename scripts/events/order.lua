--[[
order events -> `order_events`.

Contract (DESIGN.md, "Validation contract of the shipped scripts"): all fields required, non-null;
strings non-empty; order_id, customer_id strings; order_date a timestamp (see bepipe.check);
status one of pending, processing, shipped, delivered, cancelled; items a non-empty array of
{product_id string, product_name string, quantity integer >= 1, price number >= 0};
shipping_address {street, city, country strings}; total_amount a number >= 0 within 0.01 of
the sum of quantity * price. Unknown fields are dropped from the row.

Reasons name the field by its JSON path; array elements are 0-based: "items[0].quantity: ...".
validate() stores the UTC form of order_date back into ev.order_date for map().
]]

local check = require "bepipe.check"

local type, abs, tostring = type, math.abs, tostring
local floor, INF = math.floor, math.huge
-- The checks of check.nonempty_string / check.integer / check.number are written inline: a tiny
-- helper called from many sites becomes a hot root trace of its own whose return into each call
-- site is a side trace (measured: ~150 extra traces); inline they are plain guards.
local MAX_INT = 2 ^ 53      -- as check.integer: exactly representable
local timestamp, fail, reason = check.timestamp, check.fail, check.reason

local STATUS = {
    pending = true, processing = true, shipped = true, delivered = true, cancelled = true,
}
local STATUS_TEXT = "one of pending, processing, shipped, delivered, cancelled"
local STR = "a non-empty string"

-- Float sums of cents are inexact: allow a hair more than 0.01, scaled for large amounts.
local TOLERANCE = 0.01 + 1e-9

local M = {
    table = "order_events",
    time_field = "order_date",
}

-- Rare path: reason for items[k] (0-based in the message).
local function item_path(i, field)
    return "items[" .. (i - 1) .. "]" .. (field and ("." .. field) or "")
end

local function validate_items(items)
    if type(items) ~= "table" or items[1] == nil then
        return nil, reason("items", items, "a non-empty array of items")
    end
    local sum = 0
    local n = #items
    for i = 1, n do
        local it = items[i]
        if type(it) ~= "table" or it[1] ~= nil then
            return nil, reason(item_path(i), it, "an object")
        end
        local v = it.product_id
        if type(v) ~= "string" or #v == 0 then
            return nil, reason(item_path(i, "product_id"), v, STR)
        end
        v = it.product_name
        if type(v) ~= "string" or #v == 0 then
            return nil, reason(item_path(i, "product_name"), v, STR)
        end
        local q = it.quantity
        if type(q) ~= "number" or q < 1 or q > MAX_INT or floor(q) ~= q then
            return nil, reason(item_path(i, "quantity"), q, "an integer >= 1")
        end
        local p = it.price
        if type(p) ~= "number" or not (p >= 0 and p < INF) then
            return nil, reason(item_path(i, "price"), p, "a number >= 0")
        end
        sum = sum + q * p
    end
    return sum
end

function M.validate(ev)
    local v = ev.order_id
    if type(v) ~= "string" or #v == 0 then return fail("order_id", v, STR) end
    v = ev.customer_id
    if type(v) ~= "string" or #v == 0 then return fail("customer_id", v, STR) end

    v = ev.status
    if not STATUS[v] then return fail("status", v, STATUS_TEXT) end

    local a = ev.shipping_address
    if type(a) ~= "table" or a[1] ~= nil then
        return fail("shipping_address", a, "an object {street, city, country}")
    end
    v = a.street
    if type(v) ~= "string" or #v == 0 then return fail("shipping_address.street", v, STR) end
    v = a.city
    if type(v) ~= "string" or #v == 0 then return fail("shipping_address.city", v, STR) end
    v = a.country
    if type(v) ~= "string" or #v == 0 then return fail("shipping_address.country", v, STR) end

    v = ev.order_date
    if type(v) ~= "string" then return fail("order_date", v, "a timestamp string") end
    local utc, why = timestamp(v)
    if not utc then return false, "order_date: " .. why end

    -- The items last: the loop's exits depend on the number of items, and what follows a branch
    -- is compiled into each of its side traces, so little should follow it.
    local sum, why2 = validate_items(ev.items)
    if not sum then return false, why2 end

    v = ev.total_amount
    if type(v) ~= "number" or not (v >= 0 and v < INF) then
        return fail("total_amount", v, "a number >= 0")
    end
    if abs(v - sum) > TOLERANCE + abs(sum) * 1e-12 then
        return false, "total_amount: " .. tostring(v) .. " is not within 0.01 of the sum of"
            .. " quantity * price (" .. tostring(sum) .. ")"
    end
    ev.order_date = utc
    return true
end

function M.map(ev)
    local src = ev.items
    local n = #src
    local items = {}
    for i = 1, n do
        local it = src[i]
        items[i] = {
            product_id = it.product_id,
            product_name = it.product_name,
            quantity = it.quantity + 0,  -- + 0 turns -0 into 0; 3.0 is already 3
            price = it.price + 0,
        }
    end
    local a = ev.shipping_address
    return {
        event_type = ev.event_type,
        order_id = ev.order_id,
        customer_id = ev.customer_id,
        order_date = ev.order_date,
        status = ev.status,
        items = items,
        shipping_address = { street = a.street, city = a.city, country = a.country },
        total_amount = ev.total_amount + 0,
    }
end

return M
