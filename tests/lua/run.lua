--[[
Tiny test runner for the Lua side of bepipe-lua.

    luajit tests/lua/run.lua [pattern]      (from the repository root)

Runs every tests/lua/test_*.lua (only those whose name contains `pattern`, when given). A test
file registers tests with the global `test(name, fn)`; each test runs isolated in pcall. Assertion
helpers are globals too (see below). Failures print "file:line: test name: message"; the last line
is exactly "N passed, N failed"; the exit status is non-zero when anything failed.

Assertions (all take an optional trailing message):
  ok(v, msg)             v is truthy
  eq(a, b, msg)          a == b (numbers compare with ==, so 3 == 3.0)
  deep_eq(a, b, msg)     tables compared recursively, keys and values
  like(s, sub, msg)      string s contains the plain text sub
  fails(fn, ...)         fn(...) raises an error
]]

package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local pattern = arg and arg[1]

local function show(v)
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
end

local function deep(a, b, path)
    if type(a) ~= "table" or type(b) ~= "table" then
        if a == b or (a ~= a and b ~= b) then return nil end
        return string.format("%s: %s ~= %s", path, show(a), show(b))
    end
    for k, v in pairs(a) do
        local d = deep(v, b[k], path .. "." .. tostring(k))
        if d then return d end
    end
    for k, v in pairs(b) do
        if a[k] == nil then
            return string.format("%s.%s: nil ~= %s", path, tostring(k), show(v))
        end
    end
    return nil
end

-- An assertion failure: a table so the runner can tell it from other errors.
local Failure = {}
local function failure(msg, extra)
    error(setmetatable({ msg = extra and (msg .. " (" .. extra .. ")") or msg }, Failure), 3)
end

function ok(v, msg)
    if not v then failure("expected a true value, got " .. show(v), msg) end
    return v
end

function eq(a, b, msg)
    if a ~= b and not (a ~= a and b ~= b) then
        failure("expected " .. show(b) .. ", got " .. show(a), msg)
    end
end

function deep_eq(a, b, msg)
    local d = deep(a, b, "$")
    if d then failure("tables differ at " .. d, msg) end
end

function like(s, sub, msg)
    if type(s) ~= "string" or not s:find(sub, 1, true) then
        failure("expected " .. show(s) .. " to contain " .. show(sub), msg)
    end
end

function fails(fn, ...)
    if pcall(fn, ...) then failure("expected an error") end
end

-- Registration.
local current_file
local tests = {}
function test(name, fn)
    tests[#tests + 1] = { file = current_file, name = name, fn = fn }
end

-- Where the failing assertion was called: the innermost Lua frame outside this runner (a test
-- file, or a helper module it uses), followed by the test file's own line when that differs.
local RUNNER = debug.getinfo(1, "S").source
local function where(file)
    local first, own
    for level = 3, 60 do
        local info = debug.getinfo(level, "Sl")
        if not info then break end
        if info.what ~= "C" and info.source ~= RUNNER and info.currentline > 0 then
            local at = info.short_src .. ":" .. tostring(info.currentline)
            first = first or at
            if not own and (info.short_src == file or info.source == "@" .. file) then own = at end
        end
    end
    if first and own and first ~= own then return first .. " (" .. own .. ")" end
    return first or own or file
end

local function list_files()
    local p = io.popen("ls tests/lua/test_*.lua 2>/dev/null")
    local files = {}
    for f in p:lines() do
        if not pattern or f:find(pattern, 1, true) then files[#files + 1] = f end
    end
    p:close()
    table.sort(files)
    return files
end

local passed, failed = 0, 0
for _, file in ipairs(list_files()) do
    current_file = file
    local chunk, err = loadfile(file)
    if not chunk then
        failed = failed + 1
        print("FAIL " .. tostring(err))
    else
        local okl, lerr = pcall(chunk)
        if not okl then
            failed = failed + 1
            print("FAIL " .. file .. ": loading: " .. tostring(lerr))
        end
    end
end

for _, t in ipairs(tests) do
    local loc
    local okt, err = xpcall(t.fn, function(e)
        loc = where(t.file)
        if getmetatable(e) == Failure then return e.msg end
        return debug.traceback(tostring(e), 2)
    end)
    if okt then
        passed = passed + 1
    else
        failed = failed + 1
        print(string.format("FAIL %s: %s: %s", loc or t.file, t.name, tostring(err)))
    end
end

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
