/* pull_reply.c - a pull reply is the largest JSON the core reads (1,000 messages, ~700 KB), once
 * per pull. Measured on such a reply (tests/bench, this machine): jansson parses ~87 MB/s
 * (~120k messages/s, i.e. ~8 CPU-s per million events, a third of the whole cloud path), lua-cjson
 * ~510 MB/s (~700k messages/s). So the reply is decoded by lua-cjson in the pipeline's Lua state
 * (one C call, no Lua code) and walked with the Lua C API; the table is anchored in the registry
 * while C points into its strings. jansson stays for the small, rare replies (insertAll errors,
 * tokens), where its speed does not show. */
#include "pull_reply.h"

#include <lauxlib.h>
#include <limits.h>
#include <openssl/evp.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
field_str(lua_State *L, int idx, const char *name, size_t *len)
{
    lua_getfield(L, idx, name);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    lua_pop(L, 1);   /* the string stays alive: the table holding it is anchored */
    return s;
}

/* Keeps the attributes of the message table at msg as JSON text (for the dead letter and
 * bepipe.message()), anchored in the message table so it lives as long as the reply. */
static void
attrs_json(lua_State *L, int msg, int encode, struct bp_pull_msg *m)
{
    lua_getfield(L, msg, "attributes");
    if (!lua_istable(L, -1))
        return;
    lua_pushnil(L);
    if (!lua_next(L, -2))
        return;   /* empty: no attributes */
    lua_pop(L, 2);
    lua_pushvalue(L, encode);
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1)) {
        lua_pushvalue(L, -1);
        lua_setfield(L, msg, "_attrs_json");
        m->attrs = lua_tolstring(L, -1, &m->attrs_len);
    }
}

/* Reads receivedMessages[i] (on top of the stack) into m. Returns 0, or -1 when the item has
 * nothing to ack. The caller resets the stack. */
static int
decode_item(lua_State *L, int encode, struct bp_pull_msg *m)
{
    int item = lua_gettop(L);
    if (!lua_istable(L, item))
        return -1;
    memset(m, 0, sizeof(*m));
    m->ack_id = field_str(L, item, "ackId", &m->ack_id_len);
    lua_getfield(L, item, "deliveryAttempt");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Number d = lua_tonumber(L, -1);
        m->delivery_attempt = d >= 0 && d < 1e6 ? (int)d : 0;
    }
    lua_pop(L, 1);
    lua_getfield(L, item, "message");
    int msg = lua_gettop(L);
    if (!m->ack_id || m->ack_id_len == 0 || !lua_istable(L, msg))
        return -1;
    m->data_b64 = field_str(L, msg, "data", &m->data_b64_len);
    m->message_id = field_str(L, msg, "messageId", &m->message_id_len);
    size_t pl;
    m->publish_time = field_str(L, msg, "publishTime", &pl);
    attrs_json(L, msg, encode, m);
    return 0;
}

/* Runs cjson.decode on the body: on success the reply table is on top of the stack. */
static int
decode_json(lua_State *L, const char *body, size_t len, char *err, size_t errlen)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "bepipe.json");   /* our cjson instance, see host.lua */
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "pull reply: the Lua state has no bepipe.json");
        return -1;
    }
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, body, len);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "pull reply is not JSON: %s", lua_tostring(L, -1));
        return -1;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "pull reply is not a JSON object");
        return -1;
    }
    return 0;
}

int
bp_pull_reply_decode(struct bp_pull_reply *r, lua_State *L, const char *body, size_t len,
                     char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->L = L;
    r->ref = LUA_NOREF;
    int top = lua_gettop(L);
    if (decode_json(L, body, len, err, errlen) != 0) {
        lua_settop(L, top);
        return -1;
    }
    int root = lua_gettop(L);
    lua_getfield(L, root, "receivedMessages");
    int list = lua_gettop(L);
    size_t n = lua_istable(L, list) ? lua_objlen(L, list) : 0;
    r->msgs = calloc(n ? n : 1, sizeof(*r->msgs));
    if (!r->msgs) {
        snprintf(err, errlen, "out of memory for %zu messages", n);
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, root - 1, "encode");   /* bepipe.json.encode, for attributes */
    int encode = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (int)i + 1);
        if (decode_item(L, encode, &r->msgs[r->n]) == 0)
            r->n++;
        lua_settop(L, encode);
    }
    lua_settop(L, root);
    r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, top);
    return 0;
}

/* Lets the decoded reply go (its strings are invalid afterwards). */
void
bp_pull_reply_free(struct bp_pull_reply *r)
{
    if (!r || !r->L)
        return;
    if (r->ref != LUA_NOREF)
        luaL_unref(r->L, LUA_REGISTRYINDEX, r->ref);
    free(r->msgs);
    r->msgs = NULL;
    r->n = 0;
    r->ref = LUA_NOREF;
}

/* Decodes base64 text in[0..len) into out, which has room for len / 4 * 3 bytes. Returns the
 * decoded length, or -1 when the text is not base64 (Pub/Sub's JSON carries standard base64
 * with padding, so anything else is a hostile or broken reply). OpenSSL's decoder does the work;
 * only the padding count is ours. */
long
bp_pull_data_decode(char *out, const char *in, size_t len)
{
    if (len == 0)
        return 0;
    if (len % 4 != 0 || len > INT_MAX)
        return -1;
    int n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the bytes of '=' padding as zeros; at most two are padding */
    for (size_t p = len; p > len - 2 && in[p - 1] == '='; p--)
        n--;
    return n < 0 ? -1 : n;
}
