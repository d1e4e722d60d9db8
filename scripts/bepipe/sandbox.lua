-- bepipe.sandbox: what event scripts (and the route modules pipeline.lua names) may not do in
-- the daemon: end or fork the process (os.exit, os.execute, io.popen), write files (io.open
-- for writing, io.output, io.tmpfile, os.remove, os.rename, os.tmpname), change the C locale
-- that number formatting depends on (os.setlocale), load bytecode (load, loadstring, loadfile,
-- dofile, require of a bytecode file: malformed bytecode corrupts the VM), or reach raw memory
-- (ffi, C modules, package.loadlib, jit.util, and debug, whose getupvalue/getregistry/sethook
-- reach the library's ffi handles and the time budget's hook). Reading files, os.getenv, os.time,
-- os.clock, os.date, jit.on/off, print and debug.traceback stay.
--
-- It works on the globals of the Lua state (one state per loaded pipeline), so a module that
-- captured a function before close() keeps it: bepipe.host loads the bepipe library, which
-- needs ffi, first. A forbidden call raises "<file>:<line>: <name> is not allowed in event
-- scripts (sandbox); set sandbox = false in pipeline.lua to allow it".
local M = {}

local HOW = " is not allowed in event scripts (sandbox); set sandbox = false in pipeline.lua " ..
            "to allow it"
local saved            -- originals, to restore with open()

local function refuse(name)
    return function()
        error(name .. HOW, 2)
    end
end

-- require "ffi" refused; Lua modules found on package.path and loaded as text only.
local function make_require(real_require, real_loadfile)
    local function lua_searcher(name)
        local path, err = package.searchpath(name, package.path)
        if not path then
            return err
        end
        local chunk, lerr = real_loadfile(path, "t")
        if not chunk then
            if lerr:find("wrong mode", 1, true) then
                error(("require of bytecode%s (module '%s' in %s)"):format(HOW, name, path), 3)
            end
            error(("error loading module '%s' from file '%s':\n\t%s"):format(name, path, lerr), 3)
        end
        return chunk
    end
    -- a C module (native code) found on package.cpath: say why it is not loaded
    local function c_searcher(name)
        local root = name:match("^[^.]+")
        local path = package.searchpath(name, package.cpath) or
                     package.searchpath(root, package.cpath)
        if path then
            error(("require of the C module '%s' (%s)%s"):format(name, path, HOW), 3)
        end
        return "\n\tno C modules in the sandbox"
    end
    return function(name)
        if name == "ffi" or name == "jit.util" or name == "jit.profile" then
            -- jit.util.tracek hands out the functions compiled traces hold (ffi.cast, ...)
            error(('require "%s"'):format(name) .. HOW, 2)
        end
        return real_require(name)
    end, lua_searcher, c_searcher
end

-- Lifts the sandbox again (pipeline.lua set sandbox = false).
local function open_again()
    if not saved then
        return
    end
    for i = #saved, 1, -1 do
        local s = saved[i]
        s[1][s[2]] = s[3]
    end
    saved = nil
end

local function install(g, tab, key, value)
    saved[#saved + 1] = { tab, key, tab[key] }
    tab[key] = value
end

-- Closes the sandbox on the state's globals. Returns the function that opens it again, to the
-- first caller only (bepipe.host, for `sandbox = false`); while it is closed, a script calling
-- close() gets nothing, so it cannot open it.
function M.close()
    if saved then
        return nil
    end
    saved = {}
    local g = _G
    for _, name in ipairs({ "exit", "execute", "remove", "rename", "tmpname", "setlocale" }) do
        install(g, os, name, refuse("os." .. name))
    end
    install(g, io, "popen", refuse("io.popen"))
    install(g, io, "tmpfile", refuse("io.tmpfile"))
    local open, output = io.open, io.output
    install(g, io, "open", function(path, mode)
        if mode == nil or mode == "r" or mode == "rb" then
            return open(path, mode)
        end
        error(("io.open with mode '%s'"):format(tostring(mode)) .. HOW, 2)
    end)
    install(g, io, "output", function(f)
        if type(f) == "string" then
            error("io.output to a file" .. HOW, 2)
        end
        return output(f)
    end)
    local load, loadfile = g.load, g.loadfile
    install(g, g, "load", function(chunk, name, mode, env)
        if type(chunk) == "string" and chunk:byte(1) == 27 then
            error("load of bytecode" .. HOW, 2)
        end
        local fn, err
        if env == nil then
            fn, err = load(chunk, name, "t")
        else
            fn, err = load(chunk, name, "t", env)
        end
        if not fn and type(err) == "string" and err:find("wrong mode", 1, true) then
            error("load of bytecode" .. HOW, 2)
        end
        return fn, err
    end)
    install(g, g, "loadstring", function(s, name)
        if type(s) == "string" and s:byte(1) == 27 then
            error("loadstring of bytecode" .. HOW, 2)
        end
        return load(s, name, "t")
    end)
    install(g, g, "loadfile", function(path, mode, env)
        local chunk, err
        if env == nil then
            chunk, err = loadfile(path, "t")
        else
            chunk, err = loadfile(path, "t", env)
        end
        if not chunk and type(err) == "string" and err:find("wrong mode", 1, true) then
            error("loadfile of bytecode" .. HOW, 2)
        end
        return chunk, err
    end)
    install(g, g, "dofile", function(path)
        local chunk, err = loadfile(path, "t")
        if not chunk then
            if type(err) == "string" and err:find("wrong mode", 1, true) then
                error("dofile of bytecode" .. HOW, 2)
            end
            error(err, 2)
        end
        return chunk()
    end)
    local req, searcher, c_searcher = make_require(g.require, loadfile)
    install(g, g, "require", req)
    install(g, package.loaded, "ffi", nil)
    install(g, package.preload, "ffi", nil)
    for _, name in ipairs({ "jit.util", "jit.profile" }) do
        install(g, package.loaded, name, nil)
        install(g, package.preload, name, nil)
    end
    install(g, package, "loadlib", refuse("package.loadlib"))
    -- the Lua file searcher as text only; the C searchers (native code) are gone
    install(g, package, "loaders", { package.loaders[1], searcher, c_searcher })
    install(g, package.loaded, "debug", nil)
    install(g, g, "debug", { traceback = debug.traceback })
    return open_again
end

return M
