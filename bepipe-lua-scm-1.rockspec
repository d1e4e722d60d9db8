-- LuaRocks spec: builds the C daemon with its Makefile and installs the binary, the `bepipe` Lua
-- library, the shipped scripts, ddl and man page. `luarocks make` from a checkout (tested with
-- Debian 12's luarocks 3.8: `luarocks --tree=DIR make`).
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
-- The binary embeds LuaJIT and links lua-cjson's C library (Debian: lua-cjson-dev), so neither is
-- a rock it needs: both are external libraries, like the rest.
dependencies = {
   "lua == 5.1",
}
-- Found by library where the header sits under the multiarch include folder (Debian's curl.h
-- is /usr/include/x86_64-linux-gnu/curl/curl.h, which luarocks does not search; its library
-- search does know lib/<multiarch>). The Makefile itself asks pkg-config for the flags.
external_dependencies = {
   LUAJIT = { header = "luajit-2.1/luajit.h" },
   LIBEV = { header = "ev.h" },
   LIBCURL = { library = "curl" },
   OPENSSL = { header = "openssl/evp.h" },
   JANSSON = { header = "jansson.h" },
   MICROHTTPD = { header = "microhttpd.h" },
   LUA_CJSON = { library = "lua5.1-cjson" },
   SIMDJSON = { header = "simdjson.h" },
   PROTOBUF_C = { header = "protobuf-c/protobuf-c.h" },
   ZLIB = { header = "zlib.h" },
   ISAL = { header = "isa-l/crc.h" },
   NGHTTP2 = { header = "nghttp2/nghttp2.h" },
}
-- The rock's bin/ lands in the tree's bin/ and its lua/ in the tree's share/lua/5.1/, so the
-- data goes under lua/: the binary finds ../share/lua/5.1/bepipe-lua/lua from its own folder.
build = {
   type = "make",
   build_target = "bepipe-lua",
   install_target = "install",
   install_variables = {
      PREFIX = "$(PREFIX)",
      BINDIR = "$(BINDIR)",
      DATADIR = "$(LUADIR)/bepipe-lua",
      MANDIR = "$(PREFIX)/doc/man",
   },
}
