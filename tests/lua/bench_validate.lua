--[[
Micro-benchmark of the per-event Lua path: cjson.decode -> route -> validate -> map -> cjson.encode.

    luajit tests/lua/bench_validate.lua [count=200000] [seed=1] [rounds=5]

Generates `count` events with tests/tools/gen_events.lua (3% invalid), keeps them in memory, then
measures (CPU time, best of `rounds`):
  floor: cjson.decode + cjson.encode of every line, nothing else (DESIGN.md's reference floor)
  full:  the parse check, route, validate, map and encode of the row (dead letters: reason only)
and prints events/s for both and full/floor (the design aims at >= 0.8 for the whole C path).
With the host's JIT limits (scripts/bepipe/host.lua sets jit.opt): luajit -Omaxtrace=8000
-Omaxmcode=16384 -Omaxrecord=8000 -Omaxside=200 -Ohotexit=250 -Otryside=4 tests/lua/bench_validate.lua
Machine speed moves between runs: compare the ratio, not absolute figures across runs.
Expected aborts: "blacklisted at check.lua" / "JIT compilation disabled for function" where a
trace reaches check.timestamp's interpreted slow path (deliberate, see check.lua), and rare-path
aborts in reason building. Trace aborts in the scripts: `luajit -jv=/tmp/jv.txt tests/lua/bench_validate.lua 50000` then
`grep -E "check.lua|events/" /tmp/jv.txt | grep "TRACE ---"` (or see the summary printed at the end
when run with env BENCH_JV=1).
]]

package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local cjson = require "cjson"
local count = tonumber(arg[1]) or 200000
local seed = tonumber(arg[2]) or 1
local rounds = tonumber(arg[3]) or 5

local jv_file
if os.getenv("BENCH_JV") == "1" then
    jv_file = os.tmpname()
    require("jit.v").on(jv_file)
end

-- All input in one string; each event is cut out as a fresh string, as the host hands over each
-- message. (Keeping 200k line strings alive instead would make every GC cycle sweep them and
-- charge that to whichever loop allocates most.)
local p = assert(io.popen("luajit tests/tools/gen_events.lua --count " .. count .. " --seed " .. seed))
local data = p:read("*a")
p:close()
local starts, n = {}, 0
do
    local pos = 1
    while true do
        local e = data:find("\n", pos, true)
        if not e then break end
        n = n + 1
        starts[n] = pos
        pos = e + 1
    end
    starts[n + 1] = pos
end
local bytes = #data - n

local decode, encode = cjson.decode, cjson.encode
local ROUTES = {
    order = require "events.order",
    inventory = require "events.inventory",
    user_activity = require "events.user_activity",
}
local byte, sub, type, pcall, clock = string.byte, string.sub, type, pcall, os.clock

local function floor_run()
    local out = 0
    for i = 1, n do
        local ok, ev = pcall(decode, sub(data, starts[i], starts[i + 1] - 2))
        if ok then
            local ok2, js = pcall(encode, ev)      -- a few invalid events hold 1e999 (inf)
            if ok2 then out = out + #js end
        end
    end
    return out
end

local stats = {}
local function full_run()
    local rows, dead, out = 0, 0, 0
    for i = 1, n do
        local line = sub(data, starts[i], starts[i + 1] - 2)
        local ok, ev = pcall(decode, line)
        if not ok or type(ev) ~= "table" or byte(line, 1) ~= 123 then
            dead = dead + 1
        else
            local et = ev.event_type
            local mod = type(et) == "string" and ROUTES[et]
            if not mod then
                dead = dead + 1
            else
                local valid, why = mod.validate(ev)
                if valid then
                    rows = rows + 1
                    out = out + #encode(mod.map(ev))
                else
                    dead = dead + 1
                end
            end
        end
    end
    stats.rows, stats.dead = rows, dead
    return out
end

local function best1(fn)
    collectgarbage()
    local t0 = clock()
    fn()
    return clock() - t0
end

-- Interleave the two so that a change of machine speed hits both alike.
local tf, tv = math.huge, math.huge
for _ = 1, rounds do
    local a = best1(floor_run)
    local b = best1(full_run)
    if a < tf then tf = a end
    if b < tv then tv = b end
end
print(string.format("events: %d (avg %.0f bytes), rows %d, dead %d", n, bytes / n, stats.rows,
    stats.dead))
print(string.format("floor (decode+encode):              %8.0f events/s  %.2f CPU-s per 1M", n / tf,
    tf / n * 1e6))
print(string.format("full (decode+validate+map+encode):  %8.0f events/s  %.2f CPU-s per 1M", n / tv,
    tv / n * 1e6))
print(string.format("full / floor: %.2f", tf / tv))

-- Trace health: LuaJIT's default machine-code area is 512 KB (maxmcode); when a workload's traces
-- outgrow it, everything is flushed and recompiled over and over.
do
    local ok_ju, ju = pcall(require, "jit.util")
    if ok_ju and jit.status() then
        local traces, bytes = 0, 0
        for tr = 1, 65535 do
            if not ju.traceinfo(tr) then break end
            local mc = ju.tracemc(tr)
            traces = traces + 1
            bytes = bytes + (type(mc) == "string" and #mc or 0)
        end
        print(string.format("traces: %d, machine code: %.0f KB", traces, bytes / 1024))
    end
end

if jv_file then
    require("jit.v").off()
    local aborts = 0
    for l in io.lines(jv_file) do
        if (l:find("check.lua", 1, true) or l:find("events/", 1, true)) and l:find("TRACE ---", 1, true) then
            aborts = aborts + 1
            if aborts <= 20 then print(l) end
        end
    end
    print("trace aborts in scripts: " .. aborts)
    os.remove(jv_file)
end
