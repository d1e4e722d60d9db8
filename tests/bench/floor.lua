-- The floor of the local benchmark: read each line, decode it with lua-cjson and encode it again.
-- No routing, no validation, no sinks. bepipe-lua's local path is measured against this in the
-- same run (the machine's speed moves between runs; the ratio does not).
--   luajit tests/bench/floor.lua EVENTS.ndjson
local cjson = require "cjson"
local decode, encode = cjson.decode, cjson.encode
local f = assert(io.open(arg[1], "rb"))
local n, bytes = 0, 0
for line in f:lines() do
    local ok, v = pcall(decode, line)
    if ok and type(v) == "table" then
        local ok2, s = pcall(encode, v)   -- a few invalid events hold numbers cjson won't encode
        if ok2 then
            bytes = bytes + #s
        end
    end
    n = n + 1
end
f:close()
-- peak resident memory of this process (rusage would report the parent's size before exec)
local hwm = 0
local st = io.open("/proc/self/status")
if st then
    hwm = tonumber(st:read("*a"):match("VmHWM:%s*(%d+)")) or 0
    st:close()
end
io.stderr:write(("floor: %d lines, %d bytes re-encoded peak_rss_kb=%d\n"):format(n, bytes, hwm))
