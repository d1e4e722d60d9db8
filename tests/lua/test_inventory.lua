-- events/inventory: every rule of the validation contract, both sides, and the mapping.
local inventory = require "events.inventory"
local T = require "testlib"
local cjson = require "cjson"
local DEL, null = T.DEL, T.null

test("inventory: module fields", function()
    eq(inventory.table, "inventory_events")
    eq(inventory.time_field, "timestamp")
end)

test("inventory: the sample event is valid", function()
    local okv, why = inventory.validate(T.inventory())
    eq(okv, true, why)
end)

local cases = {}
T.uuid_cases(cases, "inventory_id")
T.uuid_cases(cases, "product_id")
T.uuid_cases(cases, "warehouse_id")
T.timestamp_cases(cases, "timestamp")
local function add(path, v, want, desc) cases[#cases + 1] = { path, v, want, desc = desc } end

for _, q in ipairs { -100, 100, 0, 1, -1, 42 } do add("quantity_change", q, true) end
add("quantity_change", 3.0, true, "3.0")
add("quantity_change", -100.0, true, "-100.0")
add("quantity_change", -101, "quantity_change: must be an integer in -100..100 (got number -101)")
add("quantity_change", 101, "quantity_change: must be an integer in -100..100 (got number 101)")
add("quantity_change", 3.5, "quantity_change: must be an integer in -100..100 (got number 3.5)")
add("quantity_change", -0.5, "quantity_change: must be an integer")
add("quantity_change", "5", "quantity_change: must be an integer in -100..100 (got string")
add("quantity_change", 1 / 0, "quantity_change: must be an integer", "inf")
add("quantity_change", 0 / 0, "quantity_change: must be an integer", "nan")
add("quantity_change", true, "quantity_change: must be an integer")
add("quantity_change", DEL, "quantity_change: required field is missing")
add("quantity_change", null, "quantity_change: must not be null")

for _, r in ipairs { "restock", "sale", "return", "damage" } do add("reason", r, true) end
add("reason", "stolen", "reason: must be one of restock, sale, return, damage (got string")
add("reason", "Restock", "reason: must be one of")
add("reason", "", "reason: must be one of restock, sale, return, damage (got empty string)")
add("reason", 1, "reason: must be one of")
add("reason", function() return cjson.decode('["sale"]') end, "reason: must be one of", "[array]")
add("reason", DEL, "reason: required field is missing")
add("reason", null, "reason: must not be null")

T.rules("inventory", inventory, T.inventory, cases)

test("inventory: map gives exactly the row", function()
    local ev = T.inventory()
    ev.unknown = "dropped"
    ev.quantity_change = 7.0
    ev.timestamp = "2025-03-01T12:00:11.250-08:00"
    eq(inventory.validate(ev), true)
    deep_eq(inventory.map(ev), {
        event_type = "inventory",
        inventory_id = "37a314df-828c-4022-8f4e-0df065fc8505",
        product_id = "3d76121e-f845-40b2-9164-4bf5b0002f78",
        warehouse_id = "25005694-8185-47f6-8823-4cce12f25e5d",
        quantity_change = 7,
        reason = "sale",
        timestamp = "2025-03-01T20:00:11.250Z",
    })
end)

test("inventory: UUIDs are kept as written (case not changed)", function()
    local ev = T.inventory()
    ev.product_id = "3D76121E-F845-40B2-9164-4BF5B0002F78"
    eq(inventory.validate(ev), true)
    eq(inventory.map(ev).product_id, "3D76121E-F845-40B2-9164-4BF5B0002F78")
end)

test("inventory: quantity_change 3.0 and -0 encode as integers", function()
    local ev = cjson.decode((T.INVENTORY:gsub('"quantity_change":%-20', '"quantity_change":3.0')))
    eq(inventory.validate(ev), true)
    like(cjson.encode(inventory.map(ev)), '"quantity_change":3')
    ok(not cjson.encode(inventory.map(ev)):find('"quantity_change":3.0', 1, true))
    ev = cjson.decode((T.INVENTORY:gsub('"quantity_change":%-20', '"quantity_change":-0')))
    eq(inventory.validate(ev), true)
    like(cjson.encode(inventory.map(ev)), '"quantity_change":0')
end)
