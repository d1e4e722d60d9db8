--[[
bepipe.check — validation helpers for event scripts (pure Lua, LuaJIT friendly).

    local check = require "bepipe.check"

Every predicate is safe to call with any Lua value (nil, cjson.null, tables, numbers...) and never
throws. The helpers are written for LuaJIT's trace compiler: no string patterns, no closures, no
tables built per call; only string.byte loops and lookups in constant tables built at load. The
success path of check.timestamp allocates nothing when the input is already canonical UTC.

Predicates (return true/false):
  check.nonempty_string(v)  v is a string of length >= 1. Whitespace is NOT special: " " is a
                            non-empty string (empty means length 0; trimming is the script's call).
  check.integer(v)          v is a finite number without fraction, |v| < 2^53 (a double of 2^53
                            may be a rounded 2^53 + 1; 3.0 counts as the integer 3, 3.5 does
                            not), or an integer from 2^53 on as the decoder carries it
                            (bepipe.int64).
  check.number(v)           v is a finite number (NaN, +inf and -inf are refused; lua-cjson decodes
                            1e999 to inf and, with decode_invalid_numbers, "NaN" to nan), or an
                            integer past 2^53 (bepipe.int64).
  check.uuid(s)             s is the 8-4-4-4-12 hex form, either case, exactly 36 bytes, no braces,
                            no "urn:uuid:" prefix. Version/variant nibbles are not checked.
  check.ip(s)               s is an IPv4 or IPv6 address in text form:
                            IPv4: exactly four dotted decimal parts 0..255; a part may not have a
                              leading zero ("01", "00") because inet_aton() would read it as octal,
                              so such text is ambiguous; "0" alone is fine.
                            IPv6: RFC 4291 text: eight groups of 1-4 hex digits (either case), or
                              fewer with one "::" standing for one or more zero groups, optionally
                              ending in an embedded IPv4 tail (which counts as two groups, e.g.
                              "::ffff:192.0.2.1"). No zone ids ("fe80::1%eth0"), no brackets,
                              no prefix lengths ("/64").
  check.is_null(v)          v is nil or JSON null (cjson.null).

Timestamps:
  check.timestamp(s) -> utc_string | nil, reason
    Accepted inputs:
      RFC 3339:  YYYY-MM-DDTHH:MM:SS[.f...]Z  (T or t, Z or z), or with a +hh:mm / -hh:mm offset
                 instead of Z (offset hours 00-23, minutes 00-59; -00:00 is UTC). The fraction has
                 1 to 9 digits.
      BigQuery:  YYYY-MM-DD HH:MM:SS[.f...][ UTC]  (one space; fraction 1 to 6 digits; the optional
                 suffix is exactly " UTC"; without it the time is taken as UTC, as BigQuery does).
    Rules: real calendar dates (leap years by the Gregorian rule), hour 00-23, minute 00-59,
    second 00-59. A leap second (:60) is refused: BigQuery cannot store it and the pipeline would
    otherwise have to invent a time. The year written must be in 1970-2099, and so must the UTC
    year after applying the offset (an offset can move the date across a day, month or year).
    Result: the canonical UTC text "YYYY-MM-DDTHH:MM:SS[.ffffff]Z". The fraction keeps the digits
    given, truncated to 6 (microseconds, BigQuery's precision; never invented, never rounded).
    When the input already is canonical (T, Z uppercase, fraction <= 6 digits) the very same
    string is returned, without allocation. The plain "YYYY-MM-DDTHH:MM:SSZ" takes a compiled,
    straight-line fast path; the other forms are parsed by the interpreter (see jit.off below).
    The reason on failure always starts with "not a valid timestamp".
  check.hour_key(utc) -> integer YYYYMMDDHH
    utc must be a string returned by check.timestamp (not checked). Pure arithmetic on bytes.

Reasons (rare path; these allocate):
  check.describe(v) -> short text of a value for messages: 'missing', 'null', 'empty string',
                       'string "abc"' (cut at 40 bytes), 'number 3.5', 'boolean', 'object',
                       'array', 'empty object or array' (cjson decodes {} and [] alike).
  check.reason(path, v, expected) -> reason
    "path: required field is missing"       when v is nil
    "path: must not be null"                when v is cjson.null
    "path: must be <expected> (got <describe(v)>)" otherwise.
  check.fail(path, v, expected) -> false, check.reason(path, v, expected)
    so a validator can write:
      if not check.uuid(v) then return check.fail("user_id", v, "a UUID") end
  check.is_array(v)  v is a table decoded from a non-empty JSON array (v[1] ~= nil). JSON objects
                     decode to tables with string keys only, so a non-empty object never has v[1].
                     An empty array and an empty object look alike after lua-cjson decode.
  check.is_object(v) v is a table that is not a non-empty array (an empty {} / [] counts as object).

Paths used in script reasons name array elements 0-based, as in JSON/JavaScript: items[0] is the
first item.
]]

local byte, sub, floor, type, tostring = string.byte, string.sub, math.floor, type, tostring
local format = string.format

local M = {}

-- JSON null as lua-cjson decodes it. A lightuserdata NULL; if cjson is absent a private sentinel
-- stands in (nothing decoded then can be equal to it).
local ok_cjson, cjson = pcall(require, "cjson")
local NULL = ok_cjson and cjson.null
    or setmetatable({}, { __tostring = function() return "null" end })
M.null = NULL

-- Constant lookup tables, built once.
local HEX = {}          -- byte -> true for [0-9A-Fa-f]
for b = 0, 255 do HEX[b] = false end
for b = 48, 57 do HEX[b] = true end
for b = 65, 70 do HEX[b] = true end
for b = 97, 102 do HEX[b] = true end

local PAD2 = {}         -- 0..99 -> "00".."99"
for i = 0, 99 do PAD2[i] = (i < 10 and "0" or "") .. tostring(i) end

local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local B_0, B_9, B_DASH, B_COLON, B_DOT, B_PLUS = 48, 57, 45, 58, 46, 43
local B_T, B_t, B_Z, B_z, B_SP = 84, 116, 90, 122, 32
local MAX_SAFE_INT = 2 ^ 53
local int64 = require "bepipe.int64"
local is_int64 = int64.is

----------------------------------------------------------------------------------------------------
-- Simple predicates

function M.is_null(v)
    return v == nil or v == NULL
end

function M.nonempty_string(v)
    return type(v) == "string" and #v > 0
end

function M.number(v)
    -- v - v is 0 for finite v, NaN for NaN and +-inf (NaN ~= 0).
    if type(v) == "number" then
        return v - v == 0
    end
    return is_int64(v)
end

function M.integer(v)
    if type(v) == "number" then
        return floor(v) == v and v < MAX_SAFE_INT and v > -MAX_SAFE_INT
    end
    return is_int64(v)
end

function M.is_array(v)
    return type(v) == "table" and v[1] ~= nil
end

function M.is_object(v)
    return type(v) == "table" and v[1] == nil
end

----------------------------------------------------------------------------------------------------
-- UUID

-- Straight-line checks (no loop): a loop here would become its own trace with side exits in every
-- caller; four- and eight-byte blocks inline into the caller's trace instead.
local function hex4(s, i)
    local a, b, c, d = byte(s, i, i + 3)
    return HEX[a] and HEX[b] and HEX[c] and HEX[d]
end

function M.uuid(s)
    if type(s) ~= "string" or #s ~= 36 then return false end
    if byte(s, 9) ~= B_DASH or byte(s, 14) ~= B_DASH or byte(s, 19) ~= B_DASH
        or byte(s, 24) ~= B_DASH then
        return false
    end
    return hex4(s, 1) and hex4(s, 5) and hex4(s, 10) and hex4(s, 15) and hex4(s, 20)
        and hex4(s, 25) and hex4(s, 29) and hex4(s, 33) or false
end

----------------------------------------------------------------------------------------------------
-- IP addresses

-- IPv4 in s[i..n]: four parts, 1-3 digits, <= 255, no leading zero. One flat loop (nested loops
-- make more traces).
local function ipv4_at(s, i, n)
    local dots, v, len = 0, 0, 0
    for j = i, n do
        local c = byte(s, j)
        if c == B_DOT then
            if len == 0 or dots == 3 then return false end
            dots = dots + 1
            v = 0
            len = 0
        else
            c = c - B_0
            if c < 0 or c > 9 or (len > 0 and v == 0) then return false end -- "01", "00"
            v = v * 10 + c
            if v > 255 then return false end
            len = len + 1
        end
    end
    return dots == 3 and len > 0
end

local function ipv6(s, n)
    local i, groups, dbl = 1, 0, false
    if byte(s, 1) == B_COLON then
        if byte(s, 2) ~= B_COLON then return false end -- a leading ':' only as part of '::'
        dbl = true
        i = 3
        if n == 2 then return true end                 -- "::"
    end
    while true do
        local j = i
        while j <= n and HEX[byte(s, j)] do j = j + 1 end
        local c = byte(s, j)                           -- nil at the end
        if c == B_DOT then                             -- embedded IPv4 tail: must end the text
            if not ipv4_at(s, i, n) then return false end
            groups = groups + 2
            break
        end
        local len = j - i
        if len == 0 or len > 4 then return false end
        groups = groups + 1
        if c == nil then break end
        if c ~= B_COLON or j == n then return false end -- a trailing ':' only as part of '::'
        if byte(s, j + 1) == B_COLON then
            if dbl then return false end                -- at most one '::'
            dbl = true
            if j + 1 == n then break end                -- trailing "::"
            i = j + 2
        else
            i = j + 1
        end
        if groups >= 8 then return false end
    end
    if dbl then return groups <= 7 end                  -- '::' stands for at least one group
    return groups == 8
end

-- IPv6 text varies a lot (group sizes, where "::" stands, IPv4 tails): compiled, its loop makes a
-- root trace whose exits return through the caller's frames (NYI: return to lower frame) and whose
-- side traces multiply. Interpreted it costs well under a microsecond; IPv4 stays compiled.
if jit then jit.off(ipv6) end

function M.ip(s)
    if type(s) ~= "string" then return false end
    local n = #s
    if n < 2 or n > 45 then return false end
    -- IPv4 text has no ':'; IPv6 text always has one within its first 5 bytes.
    local a, b, c, d, e = byte(s, 1, 5)
    if a == B_COLON or b == B_COLON or c == B_COLON or d == B_COLON or e == B_COLON then
        return ipv6(s, n)
    end
    if n <= 15 then return ipv4_at(s, 1, n) end
    return false
end

----------------------------------------------------------------------------------------------------
-- Timestamps

local function leap(y)
    return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
end

local function days_in(y, m)
    if m == 2 and leap(y) then return 29 end
    return MDAYS[m]
end

-- Two decimal digits at s[i], s[i+1]; -1 when either is not a digit.
local function d2(s, i)
    local a, b = byte(s, i, i + 1)
    a, b = a - B_0, b - B_0
    if a < 0 or a > 9 or b < 0 or b > 9 then return -1 end
    return a * 10 + b
end

-- d2 for timestamp_any, which runs interpreted (see jit.off below): a helper shared with compiled
-- code would be entered hot from the interpreter, start root traces there and abort on returning
-- into the interpreted function.
local function d2i(s, i)
    local a, b = byte(s, i, i + 1)
    a, b = a - B_0, b - B_0
    if a < 0 or a > 9 or b < 0 or b > 9 then return -1 end
    return a * 10 + b
end

local function days_in_i(y, m)
    if m == 2 and ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) then return 29 end
    return MDAYS[m]
end

local BAD = "not a valid timestamp (expected RFC 3339 such as 2025-03-01T12:34:56Z, or"
    .. " 2025-03-01 12:34:56[.ffffff][ UTC])"
local BAD_TYPE = "not a valid timestamp: must be a string"
local BAD_YEAR = "not a valid timestamp: year must be within 1970-2099"
local BAD_UTC_YEAR = "not a valid timestamp: the UTC time must be within 1970-2099"
local BAD_MONTH = "not a valid timestamp: month must be 01-12"
local BAD_HOUR = "not a valid timestamp: hour must be 00-23"
local BAD_MINUTE = "not a valid timestamp: minute must be 00-59"
local BAD_SECOND = "not a valid timestamp: second must be 00-59 (leap seconds are not accepted)"
local BAD_OFFSET = "not a valid timestamp: offset must be +hh:mm or -hh:mm, hh 00-23, mm 00-59"
local BAD_FRAC = "not a valid timestamp: fraction of a second must have 1-9 digits"
                 .. " (1-6 without T)"

local function bad_day(y, m)
    return "not a valid timestamp: day out of range for " .. PAD2[floor(y / 100)] .. PAD2[y % 100]
        .. "-" .. PAD2[m]
end

-- Build "YYYY-MM-DDTHH:MM:SS<frac>Z" after shifting by -off minutes (off = local - UTC).
local function to_utc(y, mo, d, h, mi, sec, frac, off)
    local t = h * 60 + mi - off
    if t < 0 then
        t = t + 1440
        d = d - 1
        if d == 0 then
            mo = mo - 1
            if mo == 0 then mo = 12; y = y - 1 end
            d = days_in_i(y, mo)
        end
    elseif t >= 1440 then
        t = t - 1440
        d = d + 1
        if d > days_in_i(y, mo) then
            d = 1
            mo = mo + 1
            if mo == 13 then mo = 1; y = y + 1 end
        end
    end
    if y < 1970 or y > 2099 then return nil, BAD_UTC_YEAR end
    h = floor(t / 60)
    mi = t - h * 60
    return PAD2[floor(y / 100)] .. PAD2[y % 100] .. "-" .. PAD2[mo] .. "-" .. PAD2[d] .. "T"
        .. PAD2[h] .. ":" .. PAD2[mi] .. ":" .. PAD2[sec] .. frac .. "Z"
end

-- Every form, and every reason. M.timestamp tries the canonical form first.
local function timestamp_any(s)
    local n = #s
    if n < 19 then return nil, BAD end
    -- Date and time: YYYY-MM-DD?HH:MM:SS
    local y1, y2 = d2i(s, 1), d2i(s, 3)
    local mo, d = d2i(s, 6), d2i(s, 9)
    local h, mi, sec = d2i(s, 12), d2i(s, 15), d2i(s, 18)
    local sep = byte(s, 11)
    if y1 < 0 or y2 < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or sec < 0
        or byte(s, 5) ~= B_DASH or byte(s, 8) ~= B_DASH
        or byte(s, 14) ~= B_COLON or byte(s, 17) ~= B_COLON then
        return nil, BAD
    end
    local rfc = sep == B_T or sep == B_t
    if not rfc and sep ~= B_SP then return nil, BAD end

    -- Fraction: s[20] == '.' then digits up to fe (exclusive).
    local i = 20
    local fe = 20
    if byte(s, 20) == B_DOT then
        fe = 21
        while fe <= n do
            local c = byte(s, fe)
            if c < B_0 or c > B_9 then break end
            fe = fe + 1
        end
        local fl = fe - 21
        if fl == 0 or fl > (rfc and 9 or 6) then return nil, BAD_FRAC end
        i = fe
    end

    -- Zone.
    local off = 0
    local zulu = false
    if rfc then
        local c = byte(s, i)
        if c == B_Z or c == B_z then
            if i ~= n then return nil, BAD end
            zulu = c == B_Z
        elseif c == B_PLUS or c == B_DASH then
            if i + 5 ~= n or byte(s, i + 3) ~= B_COLON then return nil, BAD_OFFSET end
            local oh, om = d2i(s, i + 1), d2i(s, i + 4)
            if oh < 0 or om < 0 or oh > 23 or om > 59 then return nil, BAD_OFFSET end
            off = oh * 60 + om
            if c == B_DASH then off = -off end
        else
            return nil, BAD
        end
    else
        if i <= n then
            -- only " UTC" may follow
            if i + 3 ~= n or byte(s, i) ~= B_SP or byte(s, i + 1) ~= 85 or byte(s, i + 2) ~= 84
                or byte(s, i + 3) ~= 67 then
                return nil, BAD
            end
        end
    end

    -- Ranges.
    local y = y1 * 100 + y2
    if y < 1970 or y > 2099 then return nil, BAD_YEAR end
    if mo < 1 or mo > 12 then return nil, BAD_MONTH end
    if d < 1 or d > days_in_i(y, mo) then return nil, bad_day(y, mo) end
    if h > 23 then return nil, BAD_HOUR end
    if mi > 59 then return nil, BAD_MINUTE end
    if sec > 59 then return nil, BAD_SECOND end

    -- Already canonical: "YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z".
    if zulu and sep == B_T and fe <= 27 then return s end

    local frac = ""
    if fe > 20 then
        if fe > 27 then fe = 27 end                     -- keep at most 6 digits (truncate)
        frac = sub(s, 20, fe - 1)
    end
    if off == 0 then
        return sub(s, 1, 10) .. "T" .. sub(s, 12, 19) .. frac .. "Z"
    end
    return to_utc(y, mo, d, h, mi, sec, frac, off)
end

function M.timestamp(s)
    if type(s) ~= "string" then return nil, BAD_TYPE end
    -- Fast path, the common "YYYY-MM-DDTHH:MM:SSZ": straight-line, one outcome on valid data (fewer
    -- distinct trace paths), returns the input itself.
    if #s == 20 and byte(s, 20) == B_Z and byte(s, 11) == B_T and byte(s, 5) == B_DASH
        and byte(s, 8) == B_DASH and byte(s, 14) == B_COLON and byte(s, 17) == B_COLON then
        local y1, y2, mo, d = d2(s, 1), d2(s, 3), d2(s, 6), d2(s, 9)
        local h, mi, sec = d2(s, 12), d2(s, 15), d2(s, 18)
        local y = y1 * 100 + y2
        if y1 >= 0 and y2 >= 0 and y >= 1970 and y <= 2099 and mo >= 1 and mo <= 12 and d >= 1
            and (d <= 28 or d <= days_in(y, mo)) and h >= 0 and h <= 23 and mi >= 0 and mi <= 59
            and sec >= 0 and sec <= 59 then
            return s
        end
    end
    return timestamp_any(s)
end

-- The other forms vary per event (fraction length, T or space, Z or offset): compiled, each variant
-- becomes side traces that copy the rest of the caller's path (validate, map, encode), and with a
-- realistic mix LuaJIT's default 512 KB of machine code overflowed and was flushed over and over
-- (measured: the whole path fell to 0.2-0.45 of the decode+encode floor). Interpreted they cost
-- 0.3-0.6 microseconds each (measured) and keep the compiled traces few and stable.
if jit then
    jit.off(timestamp_any)
    jit.off(to_utc)
    jit.off(bad_day)
    jit.off(d2i)
    jit.off(days_in_i)
end

function M.hour_key(utc)
    local a, b, c, d, _, e, f, _, g, h, _, i, j = byte(utc, 1, 13)
    return ((((((((a * 10 + b) * 10 + c) * 10 + d) * 10 + e) * 10 + f) * 10 + g) * 10 + h) * 10 + i)
        * 10 + j - 53333333328
end

----------------------------------------------------------------------------------------------------
-- Reasons (rare path)

function M.describe(v)
    local t = type(v)
    if v == nil then return "missing" end
    if v == NULL then return "null" end
    if t == "string" then
        if #v == 0 then return "empty string" end
        if #v > 40 then return format("string %q...", sub(v, 1, 40)) end
        return format("string %q", v)
    end
    if t == "number" then
        if v ~= v then return "number NaN" end
        -- tostring stops at 14 significant digits: the shortest of 14 to 17 that reads back
        local s = tostring(v)
        for p = 15, 17 do
            if tonumber(s) == v then break end
            s = format("%." .. p .. "g", v)
        end
        return "number " .. s
    end
    if is_int64(v) then
        return "number " .. int64.text(v)
    end
    if t == "table" then
        if v[1] ~= nil then return "array" end
        if next(v) == nil then return "empty object or array" end
        return "object"
    end
    return t
end

function M.reason(path, v, expected)
    if v == nil then return path .. ": required field is missing" end
    if v == NULL then return path .. ": must not be null" end
    return path .. ": must be " .. expected .. " (got " .. M.describe(v) .. ")"
end

function M.fail(path, v, expected)
    return false, M.reason(path, v, expected)
end

return M
