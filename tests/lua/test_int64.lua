-- bepipe.int64 and bepipe.check on integers past 2^53, as the event decoder carries them (an
-- int64_t cdata; uint64_t past 2^63 - 1): exact through a script's hands.
local int64 = require "bepipe.int64"
local check = require "bepipe.check"

test("int64: make builds every 64-bit integer from its two halves", function()
    eq(int64.text(int64.make(0, 0, false)), "0")
    eq(int64.text(int64.make(0x1b69b4b, 0xa630f34e, false)), "123456789012345678")
    eq(int64.text(int64.make(0x200000, 1, false)), "9007199254740993")            -- 2^53 + 1
    eq(int64.text(int64.make(0x7fffffff, 0xffffffff, false)), "9223372036854775807")
    eq(int64.text(int64.make(0x80000000, 0, false)), "-9223372036854775808")
    eq(int64.text(int64.make(0xffdfffff, 0xffffffff, false)), "-9007199254740993")
    eq(int64.text(int64.make(0xffffffff, 0xffffffff, true)), "18446744073709551615")
    eq(int64.text(int64.make(0x80000000, 0, true)), "9223372036854775808")
end)

test("int64: text is nil for anything but a 64-bit integer", function()
    eq(int64.text(5), nil)
    eq(int64.text("5"), nil)
    eq(int64.text(require("ffi").new("int32_t", 5)), nil)
    eq(int64.is(5), false)
    eq(int64.is(123LL), true)
    eq(int64.is(123ULL), true)
end)

test("int64: LuaJIT's compiled uint64_t -> double rounds twice, so the decoder makes none", function()
    -- Debian's LuaJIT 2.1.0-beta3: interpreted, tonumber(9518674407709571615ULL) is the
    -- nearest double; once the loop is compiled it is not. Integers past the int64 range are
    -- decoded as doubles (runtime/json_lua.cpp), never as uint64_t cdata, and int64_t -> double
    -- is right both ways.
    local u, i = 9518674407709571615ULL, -9007199254740993LL
    local wu, wi = 9518674407709571615, -9007199254740992
    local bad_u, bad_i = 0, 0
    for _ = 1, 500 do
        if tonumber(u) ~= wu then bad_u = bad_u + 1 end
        if tonumber(i) ~= wi then bad_i = bad_i + 1 end
    end
    eq(bad_i, 0, "int64_t -> double")
    if bad_u == 0 then
        print("  (this LuaJIT converts uint64_t right when compiled too)")
    end
end)

test("int64: a script compares and adds them exactly", function()
    local v = int64.make(0x200000, 1, false)                   -- 2^53 + 1
    ok(v > 2 ^ 53, "compares with numbers")
    ok(v ~= 9007199254740992LL, "not the nearest double")
    eq(int64.text(v + 1), "9007199254740994")
    eq(int64.text(v * 2), "18014398509481986")
end)

test("check: integer and number accept 64-bit integers, describe shows their digits", function()
    local v = int64.make(0x1b69b4b, 0xa630f34e, false)
    eq(check.integer(v), true)
    eq(check.number(v), true)
    eq(check.integer(2 ^ 53 + 2), false, "a double past 2^53 may have been rounded")
    eq(check.integer(require("ffi").new("double", 1)), false)
    eq(check.describe(v), "number 123456789012345678")
    like(check.reason("q", v, "an integer <= 100"), "got number 123456789012345678")
end)

test("int64: once installed, tostring, string.format's %s and print give the digits", function()
    -- LuaJIT's own text appends "LL": a map copying tostring(ev.id) into a STRING column
    -- would store "9007199254740993LL"
    int64.install()
    int64.install()                                            -- twice changes nothing
    local ffi = require "ffi"
    local v = int64.make(0x200000, 1, false)                   -- 2^53 + 1
    eq(tostring(v), "9007199254740993")
    eq(tostring(int64.make(0x80000000, 0, false)), "-9223372036854775808")
    eq(tostring(int64.make(0xffffffff, 0xffffffff, true)), "18446744073709551615")
    eq(string.format("id-%s/%d/%5.1f/%s/%5s", v, v, 1.5, "x", 12LL),
       "id-9007199254740993/9007199254740993/  1.5/x/   12")
    eq(int64.text(v), "9007199254740993", "text still reads LuaJIT's text")
    ok(tostring(ffi.new("int32_t", 5)):find("^cdata<int>: 0x"), "other cdata as LuaJIT writes them")
    ok(tostring(ffi.new("char[2]")):find("^cdata<char %[2%]>: 0x"), "an array too")
    eq(tostring(12), "12")
    eq(tostring("s"), "s")
    eq(select("#", tostring(v)), 1)
    eq(pcall(function() return "a" .. v end), false, "`..` still refuses it")
    -- compiled too: the JIT treats the cdata metatable as a constant
    local bad = 0
    for i = 1, 300 do
        if tostring(v + i) ~= string.format("%d", v + i) then bad = bad + 1 end
    end
    eq(bad, 0, "compiled tostring")
end)
