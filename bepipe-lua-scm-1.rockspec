-- LuaRocks spec: builds the C daemon with its Makefile and installs the binary, the `bepipe` Lua
-- library and the shipped scripts. `luarocks make` from a checkout.
rockspec_format = "3.0"
package = "bepipe-lua"
version = "scm-1"
source = {
   url = "git+https://example.invalid/bepipe-lua.git",
}
description = {
   summary = "Pub/Sub -> Lua validate/route/map -> BigQuery + GCS archive, as one small C daemon",
   detailed = [[
bepipe-lua replaces a Dataflow (Apache Beam) streaming job: it pulls events, validates, routes
and maps each one with Lua scripts run by embedded LuaJIT, streams the rows into BigQuery and
archives every raw event as NDJSON in Cloud Storage. Scripts reload on SIGHUP.]],
   license = "Apache-2.0",
   labels = { "bigquery", "pubsub", "etl", "luajit" },
}
dependencies = {
   "lua == 5.1",
   "lua-cjson >= 2.1",
}
external_dependencies = {
   LIBEV = { header = "ev.h" },
   LIBCURL = { header = "curl/curl.h" },
   OPENSSL = { header = "openssl/evp.h" },
}
build = {
   type = "make",
   build_target = "bepipe-lua",
   install_target = "install",
   install_variables = {
      PREFIX = "$(PREFIX)",
   },
}
