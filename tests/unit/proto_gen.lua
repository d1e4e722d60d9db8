-- proto_gen.lua - generated schemas and rows for test_proto_row.c's differential check: gen(seed)
-- gives a BigQuery fields array, rows as a map would return them (numbers, int64 cdata, strings
-- in the forms the row checker accepts, json.null, nested tables) and, for each row, the value
-- protobufjs must decode (the checker tests/unit/proto_check.js converts TIMESTAMP and DATE
-- strings itself; 64-bit integers are given as their digits).
local int64 = require "bepipe.int64"
local random, floor, format, char = math.random, math.floor, string.format, string.char

local M = {}

local TYPES = {"STRING", "INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE",
               "TIME", "DATETIME", "JSON", "BYTES", "GEOGRAPHY", "RECORD"}
local MODES = {"NULLABLE", "NULLABLE", "REQUIRED", "REPEATED"}

local function gen_fields(depth)
    local fields, used = {}, {}
    for i = 1, random(1, 6) do
        local t = TYPES[random(1, depth < 3 and #TYPES or #TYPES - 1)]
        local name
        repeat
            -- some names that are not proto identifiers (placeholder + column_name)
            name = (random() < 0.15 and "x-" or "c") .. random(1, 99)
        until not used[name:lower()]
        used[name:lower()] = true
        local f = {name = name, type = t, mode = MODES[random(1, #MODES)]}
        if t == "RECORD" then
            f.fields = gen_fields(depth + 1)
        end
        fields[i] = f
    end
    return fields
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for k = 3, 0, -1 do
            local d = floor(n / 64 ^ k) % 64
            q[#q + 1] = B64:sub(d + 1, d + 1)
        end
        if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

local TEXTS = {"", "a", "hello world", "é€𝄞", "a/b\\c\"d", "line\nbreak", "\t"}

-- value, expected
local function scalar(t)
    if t == "STRING" then
        local s = TEXTS[random(1, #TEXTS)] .. random(0, 999)
        return s, s
    elseif t == "INT64" then
        local k = random(1, 6)
        if k == 1 then
            local v = random(-1000000, 1000000)
            return v, format("%d", v)
        elseif k == 2 then
            -- the largest whole doubles an INT64 takes (from 2^53 on only a cdata)
            local v = (random(0, 1) == 0 and 1 or -1) * (2 ^ 53 - 1 - random(0, 1))
            return v, format("%.0f", v)
        elseif k == 3 then
            local v = int64.make(random(0, 2 ^ 31 - 1), random(0, 2 ^ 32 - 1))
            return v, int64.text(v)
        elseif k == 4 then
            local v = int64.make(random(2 ^ 31, 2 ^ 32 - 1), random(0, 2 ^ 32 - 1))
            return v, int64.text(v)
        elseif k == 5 then
            local s = format("%d", random(-99999, 99999))
            return s, s
        else
            return "9223372036854775807", "9223372036854775807"
        end
    elseif t == "FLOAT64" then
        local k = random(1, 4)
        local v = k == 1 and random(-1000, 1000)
                  or k == 2 and (random() - 0.5) * 10 ^ random(-30, 30)
                  or k == 3 and random(0, 99999) / 100 or 0.1
        return v, v
    elseif t == "NUMERIC" or t == "BIGNUMERIC" then
        local s = format("%d.%06d", random(-99999, 99999), random(0, 999999))
        return s, s
    elseif t == "BOOL" then
        local v = random(0, 1) == 1
        return v, v
    elseif t == "TIMESTAMP" then
        if random(0, 2) == 0 then
            local v = random(-2000000000, 2000000000) + (random(0, 1) == 1 and 0.5 or 0)
            return v, "U:" .. format("%.0f", v * 1e6)
        end
        local s = format("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", random(1, 9999), random(1, 12),
                         random(1, 28), random(0, 23), random(0, 59), random(0, 59),
                         random(0, 999999))
        return s, "S:" .. s
    elseif t == "DATE" then
        local s = format("%04d-%02d-%02d", random(1, 9999), random(1, 12), random(1, 28))
        return s, s
    elseif t == "TIME" then
        local s = format("%02d:%02d:%02d", random(0, 23), random(0, 59), random(0, 59))
        return s, s
    elseif t == "DATETIME" then
        local s = format("%04d-%02d-%02d %02d:%02d:%02d", random(1, 9999), random(1, 12),
                         random(1, 28), random(0, 23), random(0, 59), random(0, 59))
        return s, s
    elseif t == "JSON" then
        local s = format('{"k":%d,"a":[true,null]}', random(0, 99))
        return s, s
    elseif t == "BYTES" then
        local b = {}
        for i = 1, random(0, 12) do
            b[i] = char(random(0, 255))
        end
        local s = base64(table.concat(b))
        return s, s
    else -- GEOGRAPHY
        local s = format("POINT(%d %d)", random(-180, 180), random(-90, 90))
        return s, s
    end
end

local gen_row

local function one(f)
    if f.type == "RECORD" then
        return gen_row(f.fields)
    end
    return scalar(f.type)
end

gen_row = function(fields)
    local row, expect = {}, {}
    for _, f in ipairs(fields) do
        local r = random()
        if f.mode == "REPEATED" then
            local vs, es = {}, {}
            for i = 1, random(0, 3) do
                vs[i], es[i] = one(f)
            end
            row[f.name], expect[f.name] = vs, es
        elseif f.mode == "REQUIRED" or r < 0.7 then
            row[f.name], expect[f.name] = one(f)
        elseif r < 0.85 then
            row[f.name] = json.null
        end
    end
    return row, expect
end

-- fields, rows, expects
function M.gen(seed)
    math.randomseed(seed)
    local fields = gen_fields(1)
    local rows, expects = {}, {}
    for i = 1, random(1, 8) do
        rows[i], expects[i] = gen_row(fields)
    end
    return fields, rows, expects
end

M.base64 = base64
return M
