-- bepipe.ddl: the DDL reader behind --create-tables, on the project's own ddl/ files and on
-- the forms it claims to read.
local ddl = require "bepipe.ddl"
local cjson = require "cjson"

local function field(fields, name)
    for _, f in ipairs(fields) do
        if f.name == name then return f end
    end
end

test("ddl: the shipped files give the seed's tables", function()
    local list = assert(ddl.read_dir("ddl"))
    local by = {}
    for _, t in ipairs(list) do by[t.name] = t.resource end
    for _, name in ipairs({ "order_events", "inventory_events", "user_activity_events",
                            "rejected_events" }) do
        ok(by[name], name .. " parsed")
    end
    local o = by.order_events
    eq(o.timePartitioning.field, "order_date")
    eq(o.timePartitioning.type, "DAY")
    eq(table.concat(o.clustering.fields, ","), "status,customer_id")
    local items = field(o.schema.fields, "items")
    eq(items.type, "RECORD")
    eq(items.mode, "REPEATED")
    eq(field(items.fields, "quantity").type, "INTEGER")
    eq(field(items.fields, "price").type, "FLOAT")
    eq(field(o.schema.fields, "shipping_address").mode, "NULLABLE")
    ok(field(o.schema.fields, "order_id").description:find("order", 1, true))
    eq(by.inventory_events.clustering.fields[2], "warehouse_id")
    eq(by.rejected_events.timePartitioning.field, "ingestion_time")
    eq(field(by.rejected_events.schema.fields, "attributes").type, "JSON")
end)

test("ddl: other forms", function()
    local list = assert(ddl.parse([[
        -- a comment
        CREATE OR REPLACE TABLE `p.d.t` (
          a STRING NOT NULL OPTIONS(description="it's \"a\""),
          b ARRAY<INT64>, c NUMERIC(10, 2), /* inline */ d BOOL
        ) PARTITION BY TIMESTAMP_TRUNC(ts, HOUR) CLUSTER BY a;
        CREATE TABLE d2.u (x DATE) PARTITION BY _PARTITIONDATE;
    ]]))
    eq(#list, 2)
    local t = list[1]
    eq(t.project, "p")
    eq(t.dataset, "d")
    local a = t.resource.schema.fields[1]
    eq(a.mode, "REQUIRED")
    eq(a.description, 'it\'s "a"')
    eq(t.resource.schema.fields[2].mode, "REPEATED")
    eq(t.resource.schema.fields[2].type, "INTEGER")
    eq(t.resource.schema.fields[3].type, "NUMERIC")
    eq(t.resource.timePartitioning.type, "HOUR")
    eq(t.resource.timePartitioning.field, "ts")
    eq(list[2].resource.timePartitioning.field, nil)   -- ingestion-time partitioning
end)

test("ddl: errors name what is wrong", function()
    local list, err = ddl.parse("CREATE TABLE t (a WHATEVER)")
    eq(list, nil)
    ok(err:find("unknown column type WHATEVER", 1, true), err)
    list, err = ddl.parse("CREATE TABLE t (a STRING")
    eq(list, nil)
    ok(err, "unterminated column list")
    -- found by tests/fuzz (fuzz_ddl): an unclosed type parameter list looped forever
    list, err = ddl.parse("CREATE TABLE `d.t` (c NUMERIC(10")
    eq(list, nil)
    ok(err:find("expected ), got end of text", 1, true), err)
    list, err = ddl.parse("CREATE TABLE `d.t` (c STRING OPTIONS(description=")
    eq(list, nil)
    ok(err:find("expected a value", 1, true), err)
    local r = ddl.resources("ddl", "proj", "ds")
    local first = cjson.decode(r[1])
    eq(first.tableReference.projectId, "proj")
    eq(first.tableReference.datasetId, "ds")
end)
