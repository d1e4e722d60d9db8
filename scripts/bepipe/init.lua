-- bepipe: what pipeline scripts may use. Scripts never see cdata; everything here takes and
-- returns plain Lua values.
--   bepipe.log.info(fmt, ...)   (also error, warn, debug) - a line in the daemon's log
--   bepipe.check                - validation helpers (uuid, ip, timestamp, ...)
--   bepipe.message()            - the current event's message inside validate/map:
--                                 { id = "<Pub/Sub messageId or file:line>",
--                                   publish_time = <epoch seconds>, attributes = { k = "v" } }
local ffi = require "ffi"

local M = {}

M.check = require "bepipe.check"

-- Logging goes through the C core when the script runs inside bepipe-lua, and to stderr when the
-- module is used from a plain luajit (unit tests), where the bp_ffi_* symbols do not exist.
local has_core = pcall(function()
    require "bepipe.cdef"
    return ffi.C.bp_ffi_abi_version
end)

-- Inside bepipe-lua the host knows the message being processed; elsewhere there is none.
function M.message()
    local ok, host = pcall(require, "bepipe.host")
    return ok and host.message() or nil
end

local levels = { error = 0, warn = 1, info = 2, debug = 3 }
M.log = {}
for name, level in pairs(levels) do
    M.log[name] = function(fmt, ...)
        local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
        if has_core then
            if ffi.C.bp_ffi_log_enabled(level) ~= 0 then
                ffi.C.bp_ffi_log(level, "script", msg, #msg)
            end
        elseif level <= 1 then
            io.stderr:write(name, " script: ", msg, "\n")
        end
    end
end

return M
