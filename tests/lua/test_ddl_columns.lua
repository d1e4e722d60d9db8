-- Every row the mappers produce has exactly the DDL's column names, at the top level and inside
-- STRUCT / ARRAY<STRUCT> columns (ingestion_time excepted: the host adds it).
local T = require "testlib"
local sim = require "pipeline_sim"

-- Tiny parser for the CREATE TABLE column list of ddl/*.sql.
-- Returns { name = true | sub-schema }, with schema.__array[name] = true for ARRAY columns.
local function strip_comments_and_options(sql)
    local out = {}
    for line in (sql .. "\n"):gmatch("([^\n]*)\n") do
        out[#out + 1] = (line:gsub("%-%-.*$", ""))
    end
    sql = table.concat(out, "\n")
    -- OPTIONS( ... ) with strings inside: remove by scanning.
    local res, i = {}, 1
    while true do
        local s, e = sql:find("OPTIONS%s*%(", i)
        if not s then res[#res + 1] = sql:sub(i); break end
        res[#res + 1] = sql:sub(i, s - 1)
        local depth, j, q = 1, e + 1, nil
        while depth > 0 do
            local c = sql:sub(j, j)
            assert(c ~= "", "unbalanced OPTIONS")
            if q then
                if c == "\\" then j = j + 1 elseif c == q then q = nil end
            elseif c == '"' or c == "'" then q = c
            elseif c == "(" then depth = depth + 1
            elseif c == ")" then depth = depth - 1 end
            j = j + 1
        end
        i = j
    end
    return table.concat(res)
end

local function parse_ddl(sql)
    sql = strip_comments_and_options(sql)
    local s = sql:find("%(")
    local pos = s + 1
    local function ws() pos = sql:find("[^%s]", pos) or #sql + 1 end
    local function ident()
        ws()
        local a, b = sql:find("^[%w_]+", pos)
        assert(a, "identifier expected at " .. sql:sub(pos, pos + 20))
        pos = b + 1
        return sql:sub(a, b)
    end
    local function expect(ch)
        ws()
        assert(sql:sub(pos, pos) == ch, ch .. " expected at " .. sql:sub(pos, pos + 20))
        pos = pos + 1
    end
    local parse_fields
    local function parse_type()
        local ty = ident():upper()
        if ty == "STRUCT" then
            expect("<")
            return parse_fields(">"), false
        elseif ty == "ARRAY" then
            expect("<")
            local sub = parse_type()
            expect(">")
            return sub, true
        end
        return true, false
    end
    function parse_fields(term)
        local schema = { __array = {} }
        while true do
            local name = ident()
            local sub, is_array = parse_type()
            schema[name] = sub
            if is_array then schema.__array[name] = true end
            ws()
            local c = sql:sub(pos, pos)
            if c == "," then
                pos = pos + 1
                -- a trailing comma before the terminator is allowed
                ws()
                if sql:sub(pos, pos) == term then pos = pos + 1; return schema end
            elseif c == term then
                pos = pos + 1
                return schema
            else
                error("unexpected " .. sql:sub(pos, pos + 20))
            end
        end
    end
    return parse_fields(")")
end

local function load_schema(tbl)
    local f = assert(io.open("ddl/" .. tbl .. ".sql"))
    local sql = f:read("*a")
    f:close()
    return parse_ddl(sql)
end

local function sorted_keys(t)
    local k = {}
    for name in pairs(t) do if name ~= "__array" then k[#k + 1] = name end end
    table.sort(k)
    return table.concat(k, ",")
end

-- Checks row against schema; returns nil or a description of the difference.
local function compare(row, schema, path, top)
    local want = {}
    for k in pairs(schema) do
        if k ~= "__array" and not (top and k == "ingestion_time") then want[k] = true end
    end
    if sorted_keys(row) ~= sorted_keys(want) then
        return path .. ": columns " .. sorted_keys(row) .. " ~= DDL " .. sorted_keys(want)
    end
    for k, sub in pairs(schema) do
        if k ~= "__array" and type(sub) == "table" and row[k] ~= nil then
            if schema.__array[k] then
                for i, el in ipairs(row[k]) do
                    local d = compare(el, sub, path .. "." .. k .. "[" .. i .. "]")
                    if d then return d end
                end
            else
                local d = compare(row[k], sub, path .. "." .. k)
                if d then return d end
            end
        end
    end
    return nil
end

local SCHEMAS = {}
local function schema_of(tbl)
    SCHEMAS[tbl] = SCHEMAS[tbl] or load_schema(tbl)
    return SCHEMAS[tbl]
end

test("ddl: the parser finds the documented columns", function()
    local o = schema_of("order_events")
    eq(sorted_keys(o), "customer_id,event_type,ingestion_time,items,order_date,order_id,"
        .. "shipping_address,status,total_amount")
    ok(o.__array.items)
    eq(sorted_keys(o.items), "price,product_id,product_name,quantity")
    eq(sorted_keys(o.shipping_address), "city,country,street")
    eq(sorted_keys(schema_of("inventory_events")), "event_type,ingestion_time,inventory_id,"
        .. "product_id,quantity_change,reason,timestamp,warehouse_id")
    local u = schema_of("user_activity_events")
    eq(sorted_keys(u), "activity_type,event_type,ingestion_time,ip_address,metadata,timestamp,"
        .. "user_agent,user_id")
    eq(sorted_keys(u.metadata), "platform,session_id")
end)

test("ddl: sample rows of each type have exactly the DDL's columns", function()
    for _, pair in ipairs { { "events.order", T.order }, { "events.inventory", T.inventory },
        { "events.user_activity", T.user_activity } } do
        local mod = require(pair[1])
        local ev = pair[2]()
        eq(mod.validate(ev), true)
        local row = mod.map(ev)
        local d = compare(row, schema_of(mod.table), mod.table, true)
        eq(d, nil, d)
    end
end)

test("ddl: every row from 3000 generated events has exactly the DDL's columns", function()
    local p = assert(io.popen("luajit tests/tools/gen_events.lua --count 3000 --seed 11"
        .. " --invalid-pct 5"))
    local n = 0
    for line in p:lines() do
        local stage, tbl, row = sim.process(line)
        if stage == "row" then
            n = n + 1
            local d = compare(row, schema_of(tbl), tbl, true)
            if d then p:close(); eq(d, nil, d) end
        end
    end
    p:close()
    ok(n > 2500, "rows: " .. n)
end)

test("ddl: the comparison catches a missing, an extra and a nested extra column", function()
    local mod = require "events.inventory"
    local ev = T.inventory()
    eq(mod.validate(ev), true)
    local row = mod.map(ev)
    row.extra = 1
    ok(compare(row, schema_of("inventory_events"), "inventory_events", true))
    row.extra, row.reason = nil, nil
    ok(compare(row, schema_of("inventory_events"), "inventory_events", true))
    local u = require "events.user_activity"
    ev = T.user_activity()
    eq(u.validate(ev), true)
    row = u.map(ev)
    row.metadata.app_version = "1"
    ok(compare(row, schema_of("user_activity_events"), "user_activity_events", true))
end)
