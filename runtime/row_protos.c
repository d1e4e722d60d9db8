/* row_protos.c - a Lua batch's rows written as protobuf in the map's own state, beside their
 * insertAll JSON (bigquery.method = storage_write).
 *
 * The batch loop (scripts/bepipe/host.lua) writes each mapped row twice from the same Lua table:
 * as JSON (json_row.c: the schema check, the dead-letter rows, --local-out and insertAll all read
 * that) and, for a route whose table has a schema, as the protobuf message the Storage Write API
 * takes (proto_row.c). dispatch.c hands both to the table's batch; the store sends the protobuf
 * as it is, so no row is turned into JSON text and read back into a Lua table before it is
 * encoded (that decode cost more than the encoding itself). A row keeps the serial of the schema
 * it was written under: the store takes it only while its table's schema is still that one, and
 * writes any other row (a schema changed since, a row the writer refused here) from its JSON as
 * before, so this is a shortcut that never changes what is stored.
 *
 * The ingestion time a JSON row gets as an added member is the writer's meta column here (the
 * same instant: the batch's now_str, read as the TIMESTAMP it is). A row the encoder refuses
 * (a value of the wrong type, a missing REQUIRED column, a table without the column) simply has
 * no protobuf: the schema check or the store's own encoding then says why, as it always did. */
#include "row_protos.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json_row.h"
#include "proto_row.h"
#include "schema_scalar.h"

/* The rows of one batch are held until it is dispatched: past this the rest go without (their
 * JSON is read back by the store), so a batch of huge rows cannot hold twice its size. */
#define ROW_PROTOS_MAX (64u << 20)
/* a buffer grown past this by a batch of large rows is given back before the next batch */
#define ROW_PROTOS_KEEP (8u << 20)

/* See row_protos.h. */
void
bp_row_protos_init(struct bp_row_protos *p)
{
    memset(p, 0, sizeof(*p));
    bp_buf_init(&p->buf, ROW_PROTOS_MAX);
}

/* See row_protos.h. */
void
bp_row_protos_free(struct bp_row_protos *p)
{
    if (!p)
        return;
    bp_buf_free(&p->buf);
    free(p->schemas);
    free(p->off);
    free(p->len);
    free(p->serial);
    memset(p, 0, sizeof(*p));
}

/* See row_protos.h. */
void
bp_row_protos_bind(struct bp_row_protos *p, const struct bp_schema *const *schemas, size_t n)
{
    free(p->schemas);
    p->schemas = bp_xcalloc(n ? n : 1, sizeof(*p->schemas));
    if (n)
        memcpy(p->schemas, schemas, n * sizeof(*p->schemas));
    p->nroutes = n;
}

/* See row_protos.h. */
void
bp_row_protos_begin(struct bp_row_protos *p, size_t n, const char *now_str)
{
    if (p->buf.cap > ROW_PROTOS_KEEP) {
        bp_buf_free(&p->buf);
        bp_buf_init(&p->buf, ROW_PROTOS_MAX);
    }
    bp_buf_reset(&p->buf);
    if (n > p->cap) {
        free(p->off);
        free(p->len);
        free(p->serial);
        p->off = bp_xmalloc(n * sizeof(*p->off));
        p->len = bp_xmalloc(n * sizeof(*p->len));
        p->serial = bp_xmalloc(n * sizeof(*p->serial));
        p->cap = n;
    }
    if (n)
        memset(p->len, 0, n * sizeof(*p->len));
    p->n = n;
    p->now_ok = bp_schema_timestamp_us(now_str, strlen(now_str), &p->now_us) == 0;
}

/* See row_protos.h. */
const void *
bp_row_protos_get(const struct bp_row_protos *p, size_t i, size_t *len, unsigned long *serial)
{
    if (i >= p->n || p->len[i] == 0)
        return NULL;
    *len = p->len[i];
    *serial = p->serial[i];
    return p->buf.data + p->off[i];
}

/* Writes the row table at index 2 of L as message i's protobuf for route. The row's JSON
 * stands for it when it cannot be (no schema for the route, a value the writer refuses, the
 * batch's buffer full). */
static void
encode_proto(struct bp_row_protos *p, lua_State *L, lua_Integer i, lua_Integer route,
             int add_now)
{
    if (i < 0 || (size_t)i >= p->n || route < 0 || (size_t)route >= p->nroutes ||
        !p->schemas[route] || (add_now && !p->now_ok))
        return;
    /* a row with an empty table in a REPEATED column gets none: its JSON says "{}" there,
     * which the schema check (run for a row without protobuf) dead-letters as insertAll would */
    struct bp_proto_row_meta meta = {.ts_column = add_now ? "ingestion_time" : NULL,
                                     .ts_us = p->now_us, .empty_repeated_fails = 1};
    char why[400];
    size_t at = p->buf.len;
    int ok = bp_proto_row_append(p->schemas[route], L, 2, &meta, &p->buf, why,
                                 sizeof(why)) == 0 && p->buf.len - at <= UINT32_MAX;
    if (ok) {
        p->off[i] = (uint32_t)at;
        p->len[i] = (uint32_t)(p->buf.len - at);
        p->serial[i] = p->schemas[route]->serial;
    } else {
        p->buf.len = at;
    }
}

/* lua_CFunction (batch light userdata, row table, member, message index, route index): what
 * bp_json_row_encode does with the first three, and, when that wrote the row, the row written
 * as message index's protobuf too (upvalue 1: the bp_row_protos), with the ingestion time
 * unless member is "}" (the row holds it). Returns bp_json_row_encode's results. Raises on
 * misuse and on a Lua memory error. */
static int
encode_both(lua_State *L)
{
    struct bp_row_protos *p = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer i = luaL_checkinteger(L, 4);
    lua_Integer route = luaL_checkinteger(L, 5);
    size_t ml;
    const char *member = luaL_checklstring(L, 3, &ml);
    int add_now = !(ml == 1 && member[0] == '}');
    lua_settop(L, 3);
    int nres = bp_json_row_encode(L);
    if (p && lua_type(L, -nres) == LUA_TNUMBER)
        encode_proto(p, L, i, route, add_now);
    return nres;
}

/* See row_protos.h. */
void
bp_row_protos_register(struct bp_row_protos *p, lua_State *L)
{
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, encode_both, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.encode_both");
}
