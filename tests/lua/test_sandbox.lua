-- bepipe.sandbox: what event scripts may not call, the message that says how to allow it, and
-- open() restoring everything (pipeline.lua's `sandbox = false`).
local sandbox = require "bepipe.sandbox"

-- Runs fn with the sandbox closed; always opens it again (the runner shares one state).
local function sandboxed(fn)
    local open = sandbox.close()
    local ok, err = pcall(fn)
    open()
    if not ok then error(err, 0) end
end

local function refused(name, fn)
    local ok, err = pcall(fn)
    eq(ok, false, name .. " refused")
    like(err, name .. " is not allowed in event scripts (sandbox); set sandbox = false in " ..
         "pipeline.lua to allow it", name)
    like(err, "test_sandbox.lua:", name .. " error names the caller's file")
end

local bytecode = string.dump(function() return 1 end)

test("process, file-writing and bytecode calls are refused with a clear reason", function()
    sandboxed(function()
        refused("os.exit", function() os.exit(3) end)
        refused("os.execute", function() os.execute("true") end)
        refused("os.remove", function() os.remove("/tmp/nothing-here") end)
        refused("io.popen", function() io.popen("id") end)
        refused("io.open with mode 'w'", function() io.open("/tmp/bp-sandbox-test", "w") end)
        refused("io.open with mode 'a+'", function() io.open("/tmp/bp-sandbox-test", "a+") end)
        refused("load of bytecode", function() load(bytecode) end)
        refused("loadstring of bytecode", function() loadstring(bytecode) end)
        refused("load of bytecode", function()
            local s = bytecode
            load(function() local x = s; s = nil; return x end)
        end)
        refused('require "ffi"', function() require "ffi" end)
        refused('require "jit.util"', function() require "jit.util" end)
        eq(sandbox.close(), nil, "a script cannot get the way to open it")
    end)
end)

test("what scripts need stays: reading files, text chunks, getenv, jit, modules", function()
    sandboxed(function()
        local f = assert(io.open("scripts/pipeline.lua", "r"))
        ok(f:read("*l"))
        f:close()
        eq(loadstring("return 1 + 1")(), 2)
        eq(load("return ...")(5), 5)
        ok(os.getenv("PATH"))
        ok(os.time() > 0)
        jit.off()
        jit.on()
        ok(require("bepipe.check").uuid)
        eq(package.loaded.ffi, nil, "ffi not in package.loaded")
        eq(debug.getupvalue, nil, "debug reduced to traceback")
        ok(debug.traceback)
    end)
end)

test("the function close() returns restores every function", function()
    local exit, popen, ffi_loaded = os.exit, io.popen, package.loaded.ffi
    sandbox.close()()
    eq(os.exit, exit)
    eq(io.popen, popen)
    eq(package.loaded.ffi, ffi_loaded)
    ok(require("ffi").C)
    ok(load(bytecode)(), "bytecode loads again")
end)
