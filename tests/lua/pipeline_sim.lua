--[[
pipeline_sim — the parse → route → validate → map path of bepipe-lua in plain Lua, for tests and
benchmarks of the event scripts (the C host does the same with its own code).

  local sim = require "pipeline_sim"
  local stage, a, b = sim.process(line)
    stage "row":       a = table name, b = row (without ingestion_time)
    stage "parse" | "route" | "validate" | "map":  a = reason

Parse rule: an event is a JSON object. The line's first non-space byte must be "{" (lua-cjson
decodes [] and {} alike, so this is how an array is told from an object) and cjson.decode must
return a table. Route: event_type must be one of the routed types.
]]

local cjson = require "cjson"

local M = {}

M.ROUTES = {
    order = require "events.order",
    inventory = require "events.inventory",
    user_activity = require "events.user_activity",
}

local byte, type, pcall, decode = string.byte, type, pcall, cjson.decode
local ROUTES = M.ROUTES

local function first_byte(line)
    for i = 1, #line do
        local c = byte(line, i)
        if c ~= 32 and c ~= 9 and c ~= 13 and c ~= 10 then return c end
    end
    return nil
end

function M.decode(line)
    if first_byte(line) ~= 123 then return nil, "not a JSON object" end
    local ok, ev = pcall(decode, line)
    if not ok then return nil, ev end
    if type(ev) ~= "table" then return nil, "not a JSON object" end
    return ev
end

function M.process(line)
    local ev, err = M.decode(line)
    if not ev then return "parse", err end
    local et = ev.event_type
    local mod = type(et) == "string" and ROUTES[et]
    if not mod then return "route", "unknown event_type" end
    local ok, valid, why = pcall(mod.validate, ev)
    if not ok then return "validate", valid end
    if not valid then return "validate", why end
    local ok2, row = pcall(mod.map, ev)
    if not ok2 then return "map", row end
    return "row", mod.table, row, mod
end

return M
