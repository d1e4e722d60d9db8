-- bepipe.int64: integers from 2^53 on, which a double cannot hold apart, carried exactly. The event
-- decoder (runtime/json_lua.cpp) gives such an integer (up to the int64 range) as an int64_t
-- cdata made by `make`; the row writer (runtime/json_row.c) writes an int64_t or uint64_t cdata
-- as its digits through `text`. A script sees a value that compares (==, <) with numbers and
-- other 64-bit integers, does integer arithmetic (+ - * / % wrap at 64 bits; / truncates) and
-- that `bepipe.check.integer` accepts. Once `install` ran, tostring(), string.format's %s and
-- print give its digits, as for a number (LuaJIT's own text is "123456789012345678LL", which a
-- map copying tostring(ev.id) into a STRING column would store); `..` refuses it, loudly.
local ffi = require "ffi"

local i64, u64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local istype, sub, type = ffi.istype, string.sub, type

-- LuaJIT's __tostring of every cdata (the FFI's base metatable, shared by all cdata): "123LL",
-- "123ULL", "cdata<int *>: 0x...". Taken before install replaces it.
local cdata_mt = debug.getmetatable(i64(0))
local ffi_tostring = cdata_mt.__tostring

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
        return (sub(ffi_tostring(v), 1, -3))
    end
    if istype(u64, v) then
        return (sub(ffi_tostring(v), 1, -4))
    end
    return nil
end

-- The cdata __tostring install puts in place: a 64-bit integer's digits, LuaJIT's text for
-- any other cdata. It is a metamethod, not a replacement of the global tostring: tostring and
-- string.format stay LuaJIT's builtins (compiled inline for strings and numbers) and only a
-- cdata argument reaches this function.
local function cdata_tostring(v)
    local t = M.text(v)
    if t == nil then
        t = ffi_tostring(v)
    end
    return t
end

-- Puts make and text in the registry, where the C decoders and writer find them, and makes
-- tostring(), string.format's %s and print give a 64-bit integer's digits. Call it before code
-- calls tostring on a cdata (bepipe.host does, first thing): LuaJIT takes the cdata metatable
-- as constant in a trace, and a trace compiled before (ending at the FFI's __tostring, which it
-- cannot compile) would go on calling the old one.
function M.install()
    local reg = debug.getregistry()
    reg["bepipe.int64"] = M.make
    reg["bepipe.int_text"] = M.text
    cdata_mt.__tostring = cdata_tostring
end

return M
