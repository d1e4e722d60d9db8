-- events/order: every rule of the validation contract, both sides, and the mapping.
local order = require "events.order"
local T = require "testlib"
local cjson = require "cjson"
local DEL, null = T.DEL, T.null

test("order: module fields", function()
    eq(order.table, "order_events")
    eq(order.time_field, "order_date")
    eq(type(order.validate), "function")
    eq(type(order.map), "function")
end)

test("order: the sample event is valid", function()
    local okv, why = order.validate(T.order())
    eq(okv, true, why)
end)

local cases = {}
T.string_cases(cases, "order_id")
T.string_cases(cases, "customer_id")
T.timestamp_cases(cases, "order_date")
T.string_cases(cases, "items.1.product_id")
T.string_cases(cases, "items.2.product_name")
T.string_cases(cases, "shipping_address.street")
T.string_cases(cases, "shipping_address.city")
T.string_cases(cases, "shipping_address.country")
local function add(path, v, want, desc) cases[#cases + 1] = { path, v, want, desc = desc } end

-- status: each value accepted, others rejected
for _, s in ipairs { "pending", "processing", "shipped", "delivered", "cancelled" } do
    add("status", s, true)
end
add("status", DEL, "status: required field is missing")
add("status", null, "status: must not be null")
add("status", "", "status: must be one of pending, processing, shipped, delivered, cancelled")
add("status", "refunded", "status: must be one of")
add("status", "Pending", "status: must be one of")
add("status", 1, "status: must be one of")

-- items: array-ness and elements
add("items", DEL, "items: required field is missing")
add("items", null, "items: must not be null")
add("items", T.EMPTY, "items: must be a non-empty array", "[] (empty)")
add("items", function() return cjson.decode('{"product_id":"p"}') end,
    "items: must be a non-empty array of items (got object)", "{object}")
add("items", "x", "items: must be a non-empty array")
add("items", 5, "items: must be a non-empty array")
add("items.1", null, "items[0]: must not be null")
add("items.2", "item", "items[1]: must be an object (got string")
add("items.2", function() return cjson.decode("[1]") end, "items[1]: must be an object (got array)",
    "[1]")
add("items.1", T.EMPTY, "items[0].product_id: required field is missing", "{}")

-- quantity: integer >= 1, 3.0 ok, 3.5 not
add("items.2.quantity", 1, true)
add("items.2.quantity", 1.0, true, "1.0")
add("items.1.quantity", 2.0, true, "2.0")
add("items.2.quantity", 0, "items[1].quantity: must be an integer >= 1 (got number 0)")
add("items.1.quantity", -1, "items[0].quantity: must be an integer >= 1")
add("items.1.quantity", 2.5, "items[0].quantity: must be an integer >= 1 (got number 2.5)")
add("items.1.quantity", "2", "items[0].quantity: must be an integer >= 1 (got string")
add("items.1.quantity", 1 / 0, "items[0].quantity: must be an integer >= 1", "inf")
add("items.1.quantity", DEL, "items[0].quantity: required field is missing")
add("items.2.quantity", null, "items[1].quantity: must not be null")

-- price: number >= 0
add("items.2.price", 4.0, true)
add("items.2.price", -0.01, "items[1].price: must be a number >= 0 (got number -0.01)")
add("items.2.price", "4", "items[1].price: must be a number >= 0 (got string")
add("items.2.price", 1 / 0, "items[1].price: must be a number >= 0", "inf")
add("items.2.price", 0 / 0, "items[1].price: must be a number >= 0", "nan")
add("items.2.price", DEL, "items[1].price: required field is missing")
add("items.2.price", null, "items[1].price: must not be null")

-- shipping_address object
add("shipping_address", DEL, "shipping_address: required field is missing")
add("shipping_address", null, "shipping_address: must not be null")
add("shipping_address", "221B Baker Street", "shipping_address: must be an object")
add("shipping_address", function() return cjson.decode('["a"]') end,
    "shipping_address: must be an object {street, city, country} (got array)", "[array]")
add("shipping_address", T.EMPTY, "shipping_address.street: required field is missing", "{}")

-- total_amount: number >= 0, within 0.01 of the sum (sample sum is 25)
add("total_amount", 25.01, true, "sum + 0.01")
add("total_amount", 24.99, true, "sum - 0.01")
add("total_amount", 25.005, true)
add("total_amount", 25.02, "total_amount: 25.02 is not within 0.01 of the sum of quantity * price (25)")
add("total_amount", 24.98, "total_amount: 24.98 is not within 0.01")
add("total_amount", -1, "total_amount: must be a number >= 0 (got number -1)")
add("total_amount", "25", "total_amount: must be a number >= 0 (got string")
add("total_amount", 1 / 0, "total_amount: must be a number >= 0", "inf")
add("total_amount", DEL, "total_amount: required field is missing")
add("total_amount", null, "total_amount: must not be null")

T.rules("order", order, T.order, cases)

test("order: price 0 accepted (and total 0)", function()
    local ev = T.order()
    ev.items[1].price = 0; ev.items[2].price = 0; ev.total_amount = 0
    local okv, why = order.validate(ev)
    eq(okv, true, why)
end)

test("order: total within 0.01 holds for amounts that are inexact in binary", function()
    -- 3 x 0.1 + 1 x 20.0 = 20.3; totals 20.31 and 20.29 are exactly 0.01 away in decimal
    local ev = T.order()
    ev.items[1].quantity, ev.items[1].price = 3, 0.1
    ev.items[2].quantity, ev.items[2].price = 1, 20.0
    for _, tot in ipairs { 20.3, 20.31, 20.29 } do
        ev.total_amount = tot
        eq(order.validate(ev), true, tostring(tot))
    end
    ev.total_amount = 20.32
    eq(order.validate(ev), false)
    -- large amounts
    ev.items[1].quantity, ev.items[1].price = 1000, 99999.99
    ev.items[2].quantity, ev.items[2].price = 1, 0.01
    ev.total_amount = 99999990.01
    eq(order.validate(ev), true)
    ev.total_amount = 99999990.02
    eq(order.validate(ev), true)
    ev.total_amount = 99999990.03
    eq(order.validate(ev), false)
end)

test("order: one item is enough; many items are checked one by one", function()
    local ev = T.order()
    ev.items[2] = nil
    ev.total_amount = 21
    eq(order.validate(ev), true)
    ev = T.order()
    for i = 3, 50 do
        ev.items[i] = { product_id = "p" .. i, product_name = "n", quantity = 1, price = 1 }
    end
    ev.total_amount = 25 + 48
    eq(order.validate(ev), true)
    ev.items[50].quantity = 0
    local okv, why = order.validate(ev)
    eq(okv, false)
    like(why, "items[49].quantity")
end)

test("order: the first failing rule is reported (field order)", function()
    local ev = T.order()
    ev.order_id = nil
    ev.status = "x"
    local _, why = order.validate(ev)
    like(why, "order_id:")
end)

-- Mapping ---------------------------------------------------------------------------------
local function mapped(ev)
    local okv, why = order.validate(ev)
    eq(okv, true, why)
    return order.map(ev)
end

test("order: map gives exactly the row", function()
    local row = mapped(T.order())
    deep_eq(row, {
        event_type = "order",
        order_id = "ORD-2025-000001",
        customer_id = "4712e547-f6e9-45cc-936d-365bfcdc283d",
        order_date = "2025-03-01T12:34:56Z",
        status = "pending",
        items = {
            { product_id = "b9b7efca-38de-41ca-bcf4-316d123d1523", product_name = "Wireless Mouse",
              quantity = 2, price = 10.5 },
            { product_id = "418b5bab-248e-41de-86d1-14ced3890e21", product_name = "Mouse Pad",
              quantity = 1, price = 4 },
        },
        shipping_address = { street = "221B Baker Street", city = "London", country = "GB" },
        total_amount = 25,
    })
end)

test("order: unknown fields dropped at every level", function()
    local ev = T.order()
    ev.extra = "x"; ev.trace = { id = 1 }
    ev.items[1].sku = "SKU-1"
    ev.shipping_address.zip = "10115"
    local row = mapped(ev)
    eq(row.extra, nil); eq(row.trace, nil)
    eq(row.items[1].sku, nil)
    eq(row.shipping_address.zip, nil)
    eq(row.ingestion_time, nil, "the host adds ingestion_time")
end)

test("order: order_date normalised to UTC", function()
    local ev = T.order()
    ev.order_date = "2025-01-01T00:30:00+01:00"
    eq(mapped(ev).order_date, "2024-12-31T23:30:00Z")
    ev = T.order()
    ev.order_date = "2025-03-01 12:34:56.5 UTC"
    eq(mapped(ev).order_date, "2025-03-01T12:34:56.5Z")
end)

test("order: integers 3.0 -> 3 and -0 -> 0 encode without fraction", function()
    local ev = cjson.decode((T.ORDER:gsub('"quantity":2', '"quantity":2.0')))
    local row = mapped(ev)
    eq(row.items[1].quantity, 2)
    local js = cjson.encode(row)
    ok(js:find('"quantity":2[,}]'), js)
    ok(not js:find('"quantity":2.0', 1, true))
    ev = T.order()
    ev.items[1].price, ev.items[2].price, ev.total_amount = -0.0, -0.0, -0.0
    js = cjson.encode(mapped(ev))
    ok(not js:find(":-0", 1, true), js)
end)

test("order: map does not alias the event's nested tables", function()
    local ev = T.order()
    local row = mapped(ev)
    ok(row.items ~= ev.items)
    ok(row.items[1] ~= ev.items[1])
    ok(row.shipping_address ~= ev.shipping_address)
end)

test("order: map hands numbers over unchanged, for the row writer to write exactly", function()
    -- the shipped script once turned such numbers into decimal strings (exact()), because
    -- lua-cjson wrote 14 digits; the row writer (runtime/json_row.c) now writes every number
    -- exactly, so a map passes numbers as they are
    local ev = T.order()
    ev.items = { { product_id = "b9b7efca-38de-41ca-bcf4-316d123d1523", product_name = "Bulk",
                   quantity = 123456789012345, price = 0.01 } }
    ev.total_amount = 1234567890123.45
    local row = mapped(ev)
    eq(type(row.items[1].quantity), "number")
    eq(row.items[1].quantity, 123456789012345)
    eq(type(row.total_amount), "number")
    eq(row.total_amount, 1234567890123.45)
    eq(row.items[1].price, 0.01)
    ev = T.order()
    ev.items = { { product_id = "b9b7efca-38de-41ca-bcf4-316d123d1523", product_name = "Bulk",
                   quantity = 2 ^ 53, price = 0 } }
    ev.total_amount = 0 * -1
    eq(mapped(ev).items[1].quantity, 2 ^ 53)
    eq(1 / mapped(ev).total_amount, math.huge, "-0 is still turned into 0")
end)
