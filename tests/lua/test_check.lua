-- bepipe.check: predicates, timestamps, hour_key, reasons.
local check = require "bepipe.check"
local cjson = require "cjson"
local null = cjson.null

-- nonempty_string ---------------------------------------------------------------------------
test("nonempty_string accepts strings of length >= 1, whitespace included", function()
    ok(check.nonempty_string("a"))
    ok(check.nonempty_string(" "), "whitespace-only is not empty")
    ok(check.nonempty_string("\t"))
    ok(check.nonempty_string("0"))
end)

test("nonempty_string rejects empty, nil, null and other types", function()
    eq(check.nonempty_string(""), false)
    eq(check.nonempty_string(nil), false)
    eq(check.nonempty_string(null), false)
    eq(check.nonempty_string(1), false)
    eq(check.nonempty_string(true), false)
    eq(check.nonempty_string({}), false)
    eq(check.nonempty_string({ "a" }), false)
end)

-- integer / number ------------------------------------------------------------------------------
test("integer accepts whole finite numbers, 3.0 included", function()
    for _, v in ipairs { 0, 1, -1, 3.0, 100, -100, 2 ^ 53 - 1, -(2 ^ 53) + 1, -0.0, 1e15 } do
        ok(check.integer(v), tostring(v))
    end
    ok(check.integer(cjson.decode("[3.0]")[1]), "3.0 decoded by cjson")
    ok(check.integer(cjson.decode("[1e2]")[1]), "1e2 decoded by cjson")
end)

test("integer rejects fractions, inf, nan, huge, non-numbers", function()
    -- 2^53 as a double may be a rounded 2^53 + 1 (the decoder carries 2^53 written as an
    -- integer as a 64-bit integer, which integer accepts)
    for _, v in ipairs { 3.5, 0.5, -0.1, 1 / 0, -1 / 0, 2 ^ 53, -(2 ^ 53), 2 ^ 53 + 2, -(2 ^ 53) - 2,
                         1e300 } do
        eq(check.integer(v), false, tostring(v))
    end
    eq(check.integer(0 / 0), false, "nan")
    eq(check.integer("3"), false)
    eq(check.integer(nil), false)
    eq(check.integer(null), false)
    eq(check.integer(true), false)
    eq(check.integer(cjson.decode("[1e999]")[1]), false, "1e999 decodes to inf")
end)

test("number accepts finite numbers", function()
    for _, v in ipairs { 0, -0.0, 1.5, -1e300, 1e300, 2 ^ -1074 } do ok(check.number(v), tostring(v)) end
end)

test("number rejects nan, inf and non-numbers", function()
    eq(check.number(1 / 0), false)
    eq(check.number(-1 / 0), false)
    eq(check.number(0 / 0), false)
    eq(check.number(cjson.decode("[1e999]")[1]), false)
    eq(check.number(cjson.decode("[-1e999]")[1]), false)
    eq(check.number("1"), false)
    eq(check.number(nil), false)
    eq(check.number(null), false)
    eq(check.number({}), false)
end)

-- UUID -------------------------------------------------------------------------------------
test("uuid accepts 8-4-4-4-12 hex in either case", function()
    ok(check.uuid("0f8fad5b-d9cb-469f-a165-70867728950e"))
    ok(check.uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"))
    ok(check.uuid("0F8fad5b-D9cb-469F-a165-70867728950E"), "mixed case")
    ok(check.uuid("00000000-0000-0000-0000-000000000000"))
    ok(check.uuid("ffffffff-ffff-ffff-ffff-ffffffffffff"))
end)

test("uuid rejects wrong length, group sizes, non-hex, wrappers, non-strings", function()
    local bad = {
        "", "0f8fad5b-d9cb-469f-a165-70867728950",     -- 35
        "0f8fad5b-d9cb-469f-a165-70867728950e1",       -- 37
        "0f8fad5b-d9cb-469f-a165-70867728950g",        -- non-hex
        "0f8fad5z-d9cb-469f-a165-70867728950e",
        "0f8fad5bd-9cb-469f-a165-70867728950e",        -- 9-3-4-4-12
        "0f8fad5b-d9cb4-69f-a165-70867728950e",        -- 8-5-3
        "0f8fad5b-d9cb-469fa-165-70867728950e",
        "0f8fad5b-d9cb-469f-a1657-0867728950e",        -- 8-4-4-5-11
        "0f8fad5bd9cb469fa16570867728950e",            -- no dashes
        "{0f8fad5b-d9cb-469f-a165-70867728950e}",
        "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        " 0f8fad5b-d9cb-469f-a165-70867728950e",
        "0f8fad5b_d9cb_469f_a165_70867728950e",
        "0f8fad5b-d9cb-469f-a165-70867728950e\n",
    }
    for _, s in ipairs(bad) do eq(check.uuid(s), false, s) end
    eq(check.uuid(nil), false)
    eq(check.uuid(null), false)
    eq(check.uuid(42), false)
    eq(check.uuid({}), false)
end)

-- IP ---------------------------------------------------------------------------------------
test("ip accepts IPv4 edge values", function()
    for _, s in ipairs { "0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.1", "192.168.100.200",
        "127.0.0.1", "100.10.0.9", "249.250.251.252" } do
        ok(check.ip(s), s)
    end
end)

test("ip rejects bad IPv4: range, leading zeros, part count, junk", function()
    for _, s in ipairs { "256.0.0.0", "0.0.0.256", "300.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4",
        "1.2.3.04", "00.0.0.0", "1.2.3.000", "1..3.4", ".1.2.3", "1.2.3.", "1.2.3.-4", "+1.2.3.4",
        "1.2.3.4 ", " 1.2.3.4", "1.2.3.4/8", "a.b.c.d", "1234.1.1.1", "1.2.3.4a", "", "1",
        "localhost", "0x7f.0.0.1" } do
        eq(check.ip(s), false, s)
    end
end)

test("ip accepts IPv6 forms", function()
    for _, s in ipairs { "::", "::1", "1::", "2001:db8::1", "2001:DB8::1", "fe80::1:2",
        "2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8:0:0:0:ff00:42:8329",
        "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "1:2:3::6:7:8",
        "::ffff:192.0.2.1", "::ffff:0.0.0.0", "64:ff9b::192.0.2.33", "1:2:3:4:5:6:1.2.3.4",
        "::1.2.3.4", "1::1.2.3.4", "FFFF:ffff:FFFF:ffff:FFFF:ffff:FFFF:ffff" } do
        ok(check.ip(s), s)
    end
end)

test("ip rejects bad IPv6: zone ids, double ::, too many groups, long groups", function()
    for _, s in ipairs { ":", ":::", "1:::2", "1::2::3", "::1::", "fe80::1%eth0", "fe80::1%1",
        "12345::1", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7:8", "1:", ":1", "g::1",
        "[::1]", "::1/128", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.256", "::ffff:1.2.3",
        "::ffff:01.2.3.4", "::1.2.3.4:5", "1.2.3.4::", "2001:db8::1 ", "2001:db8:: 1" } do
        eq(check.ip(s), false, s)
    end
    eq(check.ip(nil), false)
    eq(check.ip(null), false)
    eq(check.ip(2130706433), false)
    eq(check.ip(string.rep("1:", 30)), false)
end)

-- timestamp --------------------------------------------------------------------------------
local function ts(s, want)
    local got, why = check.timestamp(s)
    eq(got, want, s .. " -> " .. tostring(why))
end
local function ts_bad(s, reason_part)
    local got, why = check.timestamp(s)
    eq(got, nil, tostring(s) .. " must be rejected")
    like(why, "not a valid timestamp", tostring(s))
    if reason_part then like(why, reason_part, tostring(s)) end
end

test("timestamp: canonical UTC is returned as the same string", function()
    local s = "2025-03-01T12:34:56Z"
    ok(rawequal(check.timestamp(s), s))
    ts("2025-03-01T12:34:56.5Z", "2025-03-01T12:34:56.5Z")
    ts("2025-03-01T12:34:56.123456Z", "2025-03-01T12:34:56.123456Z")
    ts("2025-03-01T12:34:56.000Z", "2025-03-01T12:34:56.000Z")
end)

test("timestamp: all accepted forms", function()
    ts("2025-03-01t12:34:56z", "2025-03-01T12:34:56Z")
    ts("2025-03-01T12:34:56z", "2025-03-01T12:34:56Z")
    ts("2025-03-01t12:34:56Z", "2025-03-01T12:34:56Z")
    ts("2025-03-01T12:34:56+00:00", "2025-03-01T12:34:56Z")
    ts("2025-03-01T12:34:56-00:00", "2025-03-01T12:34:56Z")
    ts("2025-03-01T12:34:56+02:00", "2025-03-01T10:34:56Z")
    ts("2025-03-01T12:34:56-05:30", "2025-03-01T18:04:56Z")
    ts("2025-03-01T12:34:56.25+01:00", "2025-03-01T11:34:56.25Z")
    ts("2025-03-01 12:34:56", "2025-03-01T12:34:56Z")
    ts("2025-03-01 12:34:56 UTC", "2025-03-01T12:34:56Z")
    ts("2025-03-01 12:34:56.123456", "2025-03-01T12:34:56.123456Z")
    ts("2025-03-01 12:34:56.1 UTC", "2025-03-01T12:34:56.1Z")
end)

test("timestamp: fractional seconds kept as given, truncated to 6 digits", function()
    ts("2025-03-01T12:34:56.1Z", "2025-03-01T12:34:56.1Z")
    ts("2025-03-01T12:34:56.1234567Z", "2025-03-01T12:34:56.123456Z")
    ts("2025-03-01T12:34:56.999999999Z", "2025-03-01T12:34:56.999999Z")
    ts("2025-03-01T23:59:59.999999999-01:00", "2025-03-02T00:59:59.999999Z")
    ts_bad("2025-03-01T12:34:56.Z", "fraction")
    ts_bad("2025-03-01T12:34:56.1234567890Z", "fraction")
    ts_bad("2025-03-01 12:34:56.1234567", "fraction")
    ts_bad("2025-03-01T12:34:56,5Z")
end)

test("timestamp: offsets crossing day, month and year boundaries", function()
    ts("2025-03-01T00:30:00+01:00", "2025-02-28T23:30:00Z")
    ts("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z")
    ts("2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00Z")
    ts("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00Z")
    ts("2025-02-28T23:30:00-01:00", "2025-03-01T00:30:00Z")
    ts("2024-02-28T23:30:00-01:00", "2024-02-29T00:30:00Z")
    ts("2025-04-30T20:00:00-23:59", "2025-05-01T19:59:00Z")
    ts("2025-05-01T01:00:00+23:59", "2025-04-30T01:01:00Z")
    ts("1970-01-01T00:30:00-01:00", "1970-01-01T01:30:00Z")
    ts("2099-12-31T23:30:00+01:00", "2099-12-31T22:30:00Z")
end)

test("timestamp: the UTC result must stay within 1970-2099", function()
    ts_bad("1970-01-01T00:30:00+01:00", "UTC")
    ts_bad("2099-12-31T23:30:00-01:00", "UTC")
end)

test("timestamp: years 1969/1970/2099/2100", function()
    ts_bad("1969-12-31T23:59:59Z", "year")
    ts("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z")
    ts("2099-12-31T23:59:59Z", "2099-12-31T23:59:59Z")
    ts_bad("2100-01-01T00:00:00Z", "year")
    ts_bad("1969-12-31T23:30:00-01:00", "year")   -- written year counts too
    ts_bad("0000-01-01T00:00:00Z", "year")
    ts_bad("9999-12-31T23:59:59Z", "year")
end)

test("timestamp: leap years", function()
    ts("2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z")
    ts("2000-02-29T12:00:00Z", "2000-02-29T12:00:00Z")
    ts_bad("2023-02-29T12:00:00Z", "day")
    ts_bad("2100-02-29T12:00:00Z")
    ts_bad("2024-02-30T12:00:00Z", "day")
end)

test("timestamp: months and days", function()
    ts_bad("2025-00-10T00:00:00Z", "month")
    ts_bad("2025-13-01T00:00:00Z", "month")
    ts("2025-12-31T00:00:00Z", "2025-12-31T00:00:00Z")
    ts("2025-01-31T00:00:00Z", "2025-01-31T00:00:00Z")
    ts_bad("2025-03-00T00:00:00Z", "day")
    ts_bad("2025-03-32T00:00:00Z", "day")
    ts_bad("2025-04-31T00:00:00Z", "day")
    ts_bad("2025-06-31T00:00:00Z", "day")
    ts_bad("2025-09-31T00:00:00Z", "day")
    ts_bad("2025-11-31T00:00:00Z", "day")
    ts("2025-04-30T00:00:00Z", "2025-04-30T00:00:00Z")
end)

test("timestamp: hours, minutes, seconds, leap second", function()
    ts("2025-03-01T23:59:59Z", "2025-03-01T23:59:59Z")
    ts("2025-03-01T00:00:00Z", "2025-03-01T00:00:00Z")
    ts_bad("2025-03-01T24:00:00Z", "hour")
    ts_bad("2025-03-01T12:60:00Z", "minute")
    ts_bad("2025-03-01T12:00:60Z", "leap")
    ts_bad("2016-12-31T23:59:60Z", "leap")
    ts_bad("2025-03-01T12:00:99Z", "second")
end)

test("timestamp: bad offsets", function()
    ts_bad("2025-03-01T12:00:00+24:00", "offset")
    ts_bad("2025-03-01T12:00:00+01:60", "offset")
    ts_bad("2025-03-01T12:00:00+0100", "offset")
    ts_bad("2025-03-01T12:00:00+01", "offset")
    ts_bad("2025-03-01T12:00:00+01:00:00", "offset")
    ts_bad("2025-03-01T12:00:00+1:00", "offset")
end)

test("timestamp: rejected syntax", function()
    for _, s in ipairs { "", "2025-03-01", "2025-03-01T12:00:00", "2025-03-01T12:00Z",
        "2025-03-01T12:00:00ZZ", "2025-03-01T12:00:00 Z", "2025-3-01T12:00:00Z",
        "2025/03/01T12:00:00Z", "2025-03-01X12:00:00Z", "2025-03-01  12:00:00",
        "2025-03-01 12:00:00 utc", "2025-03-01 12:00:00 GMT", "2025-03-01 12:00:00UTC",
        "2025-03-01 12:00:00Z", "2025-03-01 12:00:00+01:00", " 2025-03-01T12:00:00Z",
        "2025-03-01T12:00:00Z ", "yesterday", "20250301T120000Z", "2025-03-01T12:0a:00Z",
        "+2025-03-01T12:00:00Z", "2025-03-01T12:00:00.5", "２０２５-03-01T12:00:00Z" } do
        ts_bad(s)
    end
end)

test("timestamp: non-strings", function()
    ts_bad(nil)
    ts_bad(null)
    ts_bad(1740830400)
    ts_bad({})
end)

-- hour_key ---------------------------------------------------------------------------------
test("hour_key gives YYYYMMDDHH as an integer", function()
    eq(check.hour_key("2025-03-01T12:34:56Z"), 2025030112)
    eq(check.hour_key("1970-01-01T00:00:00Z"), 1970010100)
    eq(check.hour_key("2099-12-31T23:59:59.999999Z"), 2099123123)
    eq(check.hour_key(check.timestamp("2025-01-01T00:30:00+01:00")), 2024123123)
    eq(check.hour_key(check.timestamp("2025-03-01 09:00:00 UTC")), 2025030109)
    eq(math.type and math.type(check.hour_key("2025-03-01T12:00:00Z")) or "integer", "integer")
    local k = check.hour_key("2025-03-01T12:00:00Z")
    eq(k % 1, 0)
end)

-- reasons ----------------------------------------------------------------------------------
test("fail/reason distinguish missing, null and wrong values", function()
    local okv, why = check.fail("a.b", nil, "x")
    eq(okv, false)
    eq(why, "a.b: required field is missing")
    eq(check.reason("a", null, "x"), "a: must not be null")
    eq(check.reason("a", "", "a non-empty string"), "a: must be a non-empty string (got empty string)")
    eq(check.reason("a", 3.5, "an integer"), "a: must be an integer (got number 3.5)")
    eq(check.reason("a", "zz", "a UUID"), 'a: must be a UUID (got string "zz")')
    eq(check.reason("a", {}, "x"), "a: must be x (got empty object or array)")
    eq(check.reason("a", { 1 }, "x"), "a: must be x (got array)")
    eq(check.reason("a", { k = 1 }, "x"), "a: must be x (got object)")
    eq(check.reason("a", true, "x"), "a: must be x (got boolean)")
    like(check.reason("a", string.rep("y", 100), "x"), '"...)')
end)

test("is_null, is_array, is_object", function()
    ok(check.is_null(nil)); ok(check.is_null(null)); eq(check.is_null(false), false)
    ok(check.is_array(cjson.decode("[1]"))); eq(check.is_array(cjson.decode("{}")), false)
    eq(check.is_array(cjson.decode('{"a":1}')), false)
    ok(check.is_object(cjson.decode('{"a":1}'))); eq(check.is_object(cjson.decode("[1]")), false)
    eq(check.is_object("x"), false)
    eq(check.null, null)
end)

test("check: a reason shows the number the event carried, not 14 digits of it", function()
    -- tostring writes 14 significant digits: 12345678901234567.0 read "1.2345678901235e+16"
    like(check.reason("q", 12345678901234567.0, "small"), "(got number 12345678901234568)")
    like(check.reason("q", 1234567.8912345678, "small"), "(got number 1234567.8912345679)")
    like(check.reason("q", 0.1, "small"), "(got number 0.1)")
    like(check.reason("q", 3.5, "an integer"), "(got number 3.5)")
    like(check.reason("q", -0.0, "x"), "(got number -0)")
    like(check.reason("q", 1 / 0, "finite"), "(got number inf)")
    like(check.reason("q", 1e300, "small"), "(got number 1e+300)")
end)
