-- bepipe.ddl: reads BigQuery `CREATE TABLE` DDL (the files in ddl/) into tables.insert resources,
-- so `bepipe-lua --create-tables` can create the dataset's tables from the same text a person
-- would paste into the console. Supported: column types (STRING, INT64/INTEGER, FLOAT64/FLOAT,
-- NUMERIC, BIGNUMERIC, BOOL/BOOLEAN, BYTES, DATE, TIME, DATETIME, TIMESTAMP, GEOGRAPHY, JSON),
-- STRUCT<...>, ARRAY<...>, NOT NULL, OPTIONS(description="..."), PARTITION BY DATE(col) |
-- col | TIMESTAMP_TRUNC(col, HOUR|DAY|MONTH|YEAR) | DATE_TRUNC(col, MONTH|YEAR), CLUSTER BY,
-- and the table's OPTIONS(description=...).
--   local ddl = require "bepipe.ddl"
--   local tables, err = ddl.parse(sql_text)          -- { {name=, dataset=, project=, resource=}, ... }
--   local list, err = ddl.read_dir(dir)              -- every *.sql of dir
local cjson = require "cjson"
-- kept before bepipe.sandbox closes io.popen to event scripts (bepipe.host loads us first)
local popen = io.popen

local M = {}

local TYPES = {
    STRING = "STRING", INT64 = "INTEGER", INTEGER = "INTEGER", FLOAT64 = "FLOAT",
    FLOAT = "FLOAT", NUMERIC = "NUMERIC", BIGNUMERIC = "BIGNUMERIC", BOOL = "BOOLEAN",
    BOOLEAN = "BOOLEAN", BYTES = "BYTES", DATE = "DATE", TIME = "TIME", DATETIME = "DATETIME",
    TIMESTAMP = "TIMESTAMP", GEOGRAPHY = "GEOGRAPHY", JSON = "JSON",
}

-- Tokens: identifiers, `quoted`, "strings", numbers and single punctuation characters.
local function tokenize(sql)
    local toks, i, n = {}, 1, #sql
    while i <= n do
        local c = sql:sub(i, i)
        if c:match("%s") then
            i = i + 1
        elseif sql:sub(i, i + 1) == "--" or c == "#" then
            i = (sql:find("\n", i, true) or n) + 1
        elseif sql:sub(i, i + 1) == "/*" then
            i = (select(2, sql:find("*/", i + 2, true)) or n) + 1
        elseif c == "`" then
            local j = sql:find("`", i + 1, true)
            if not j then return nil, "unterminated `name`" end
            toks[#toks + 1] = { t = "id", v = sql:sub(i + 1, j - 1) }
            i = j + 1
        elseif c == '"' or c == "'" then
            local j, buf = i + 1, {}
            while j <= n and sql:sub(j, j) ~= c do
                local d = sql:sub(j, j)
                if d == "\\" then
                    j = j + 1
                    d = sql:sub(j, j)
                    d = d == "n" and "\n" or d == "t" and "\t" or d
                end
                buf[#buf + 1] = d
                j = j + 1
            end
            if j > n then return nil, "unterminated string" end
            toks[#toks + 1] = { t = "str", v = table.concat(buf) }
            i = j + 1
        elseif c:match("[%w_]") then
            local j = i
            while j <= n and sql:sub(j, j):match("[%w_]") do j = j + 1 end
            toks[#toks + 1] = { t = "id", v = sql:sub(i, j - 1) }
            i = j
        else
            toks[#toks + 1] = { t = "p", v = c }
            i = i + 1
        end
    end
    return toks
end

local P = {}
P.__index = P

function P:peek(k) return self.toks[self.i + (k or 0)] end
function P:next() local t = self.toks[self.i]; self.i = self.i + 1; return t end
function P:is(v, k)
    local t = self:peek(k)
    return t and (t.t == "p" or t.t == "id") and t.v:upper() == v:upper()
end
function P:expect(v)
    local t = self:next()
    if not t or t.v:upper() ~= v:upper() then
        error(("expected %s, got %s"):format(v, t and t.v or "end of text"), 0)
    end
end
function P:ident()
    local t = self:next()
    if not t or t.t ~= "id" then error("expected a name, got " .. (t and t.v or "end"), 0) end
    return t.v
end

-- OPTIONS(key=value, ...) -> table (strings and numbers only)
function P:options()
    local o = {}
    self:expect("(")
    while not self:is(")") do
        local k = self:ident():lower()
        self:expect("=")
        local v = self:next()
        if not v then error("expected a value, got end of text", 0) end
        o[k] = v.t == "str" and v.v or tonumber(v.v) or v.v
        if self:is(",") then self:next() end
    end
    self:expect(")")
    return o
end

-- a type: returns field fragment {type=, mode=, fields=}
function P:type()
    local name = self:ident():upper()
    if name == "ARRAY" then
        self:expect("<")
        local inner = self:type()
        self:expect(">")
        inner.mode = "REPEATED"
        return inner
    elseif name == "STRUCT" or name == "RECORD" then
        self:expect("<")
        local fields = {}
        while not self:is(">") do
            fields[#fields + 1] = self:column()
            if self:is(",") then self:next() end
        end
        self:expect(">")
        return { type = "RECORD", fields = fields }
    end
    local t = TYPES[name]
    if not t then error("unknown column type " .. name, 0) end
    if self:is("(") then   -- STRING(10), NUMERIC(10, 2): parameters are not kept
        while not self:is(")") do
            if not self:next() then error("expected ), got end of text", 0) end
        end
        self:next()
    end
    return { type = t }
end

function P:column()
    local name = self:ident()
    local f = self:type()
    local field = { name = name, type = f.type, mode = f.mode or "NULLABLE", fields = f.fields }
    while true do
        if self:is("NOT") and self:is("NULL", 1) then
            self:next(); self:next()
            field.mode = field.mode == "REPEATED" and "REPEATED" or "REQUIRED"
        elseif self:is("OPTIONS") then
            self:next()
            local o = self:options()
            field.description = o.description
        else
            break
        end
    end
    return field
end

local function parse_one(p)
    p:expect("CREATE")
    if p:is("OR") then p:next(); p:expect("REPLACE") end
    p:expect("TABLE")
    if p:is("IF") then p:next(); p:expect("NOT"); p:expect("EXISTS") end
    local full = p:ident()
    while p:is(".") do p:next(); full = full .. "." .. p:ident() end
    local parts = {}
    for s in full:gmatch("[^.]+") do parts[#parts + 1] = s end
    local res = { tableReference = { tableId = parts[#parts] }, schema = { fields = {} } }
    p:expect("(")
    while not p:is(")") do
        table.insert(res.schema.fields, p:column())
        if p:is(",") then p:next() end
    end
    p:expect(")")
    while p:peek() and not p:is(";") do
        if p:is("PARTITION") then
            p:next(); p:expect("BY")
            local tp = { type = "DAY" }
            local fn = p:ident()
            if p:is("(") then
                p:next()
                tp.field = p:ident()
                if p:is(",") then p:next(); tp.type = p:ident():upper() end
                p:expect(")")
                if fn:upper() == "DATE" then tp.type = "DAY" end
            else
                tp.field = fn
            end
            if tp.field:upper() == "_PARTITIONDATE" or tp.field:upper() == "_PARTITIONTIME" then
                tp.field = nil
            end
            res.timePartitioning = tp
        elseif p:is("CLUSTER") then
            p:next(); p:expect("BY")
            local f = { p:ident() }
            while p:is(",") do p:next(); f[#f + 1] = p:ident() end
            res.clustering = { fields = f }
        elseif p:is("OPTIONS") then
            p:next()
            res.description = p:options().description
        else
            error("unexpected " .. p:peek().v, 0)
        end
    end
    if p:is(";") then p:next() end
    return { name = parts[#parts], dataset = parts[#parts - 1], project = parts[#parts - 2],
             resource = res }
end

-- Parses every CREATE TABLE statement of sql. Returns a list, or nil and an error.
function M.parse(sql)
    local toks, err = tokenize(sql)
    if not toks then return nil, err end
    local p = setmetatable({ toks = toks, i = 1 }, P)
    local out = {}
    local ok, e = pcall(function()
        while p:peek() do
            out[#out + 1] = parse_one(p)
        end
    end)
    if not ok then return nil, e end
    return out
end

-- Every *.sql of dir, in name order. Returns the list, or nil and "file: error".
function M.read_dir(dir)
    local files = {}
    -- single quotes: the shell expands nothing inside them ($, `, \ are the folder's own)
    local ls = popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
    for name in ls:lines() do
        if name:match("%.sql$") then files[#files + 1] = name end
    end
    ls:close()
    table.sort(files)
    if #files == 0 then return nil, dir .. ": no .sql files" end
    local all = {}
    for _, name in ipairs(files) do
        local f, err = io.open(dir .. "/" .. name, "rb")
        if not f then return nil, err end
        local list, perr = M.parse(f:read("*a"))
        f:close()
        if not list then return nil, dir .. "/" .. name .. ": " .. perr end
        for _, t in ipairs(list) do all[#all + 1] = t end
    end
    return all
end

-- For --check: every table in `tables` (a list of names) must have a CREATE TABLE in dir.
-- Returns true, or nil and one line naming the tables without one and where to put them.
function M.check_tables(dir, tables)
    local list, err = M.read_dir(dir)
    if not list then
        return nil, "the routes' tables need their DDL: " .. err
    end
    local have = {}
    for _, t in ipairs(list) do
        have[t.resource.tableReference.tableId] = true
    end
    local missing = {}
    for _, name in ipairs(tables) do
        if not have[name] then missing[#missing + 1] = name end
    end
    if #missing > 0 then
        return nil, ("no CREATE TABLE in %s for %s (add %s/%s.sql)"):format(dir,
            table.concat(missing, ", "), dir, missing[1])
    end
    return true
end

-- For the C core (--create-tables): the tables.insert bodies of dir for project.dataset, as
-- JSON strings, in order. Raises with file and reason on a DDL error.
function M.resources(dir, project, dataset)
    local list, err = M.read_dir(dir)
    if not list then error(err, 0) end
    local out = {}
    for i, t in ipairs(list) do
        local r = t.resource
        r.tableReference.projectId = project
        r.tableReference.datasetId = dataset
        out[i] = cjson.encode(r)
    end
    return out
end

return M
