-- bepipe.int64: integers past 2^53, which a double cannot hold, carried exactly. The event
-- decoder (runtime/json_lua.cpp) gives such an integer (up to the int64 range) as an int64_t
-- cdata made by `make`; the row writer (runtime/json_row.c) writes an int64_t or uint64_t cdata
-- as its digits through `text`. A script sees a value that compares (==, <) with numbers and
-- other 64-bit integers, does integer arithmetic (+ - * / % wrap at 64 bits; / truncates) and
-- that `bepipe.check.integer` accepts; tostring() gives "123456789012345678LL", so a script
-- that wants the digits calls require("bepipe.int64").text(v).
local ffi = require "ffi"

local i64, u64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local istype, tostring, sub, type = ffi.istype, tostring, string.sub, type

local M = {}

-- The 64-bit integer whose bits are hi * 2^32 + lo (hi, lo in 0 .. 2^32 - 1), signed unless
-- `unsigned`. C passes two numbers: the C API cannot make a cdata.
function M.make(hi, lo, unsigned)
    return (unsigned and u64 or i64)(hi) * 4294967296 + lo
end

-- True for an int64_t or uint64_t cdata.
function M.is(v)
    return type(v) == "cdata" and (istype(i64, v) or istype(u64, v))
end

-- The digits of an int64_t / uint64_t cdata ("-123"), or nil for any other value.
function M.text(v)
    if type(v) ~= "cdata" then
        return nil
    end
    if istype(i64, v) then
        return (sub(tostring(v), 1, -3))
    end
    if istype(u64, v) then
        return (sub(tostring(v), 1, -4))
    end
    return nil
end

-- Puts make and text in the registry, where the C decoders and writer find them.
function M.install()
    local reg = debug.getregistry()
    reg["bepipe.int64"] = M.make
    reg["bepipe.int_text"] = M.text
end

return M
