/* row_protos.h - a Lua batch's rows written as protobuf in the map's own state, beside their
 * insertAll JSON, for the Storage Write store (bigquery.method = storage_write): the store sends
 * these bytes as they are instead of reading the JSON back into Lua tables. See row_protos.c. */
#ifndef BP_ROW_PROTOS_H
#define BP_ROW_PROTOS_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "common.h"
#include "schema.h"

/* The rows of one Lua batch, message by message. Owned by the runtime (one per process),
 * filled by the batch loop (bp_row_protos_register's writer), read by dispatch.c. */
struct bp_row_protos {
    const struct bp_schema **schemas;   /* per route: the schema its table's rows are sent
                                         * under (the store's), NULL = not encoded */
    size_t nroutes;
    bp_buf_t buf;                       /* this batch's rows back to back */
    uint32_t *off, *len;                /* per message: its row in buf; len 0 = none */
    unsigned long *serial;              /* per message: the serial of the schema its row was
                                         * written under (not its address: a schema may be
                                         * freed before the row is read) */
    size_t cap;
    size_t n;                           /* messages of the batch */
    int64_t now_us;                     /* the batch's ingestion time, microseconds */
    int now_ok;
};

/* Initializes p empty (no route encoded). */
void bp_row_protos_init(struct bp_row_protos *p);

/* Frees what p holds. */
void bp_row_protos_free(struct bp_row_protos *p);

/* Sets the schema of each of n routes (copied; NULL entries: that route is not encoded). The
 * schemas must outlive every batch run until the next call (they are the runtime's live or DDL
 * schemas, rebound whenever one changes). */
void bp_row_protos_bind(struct bp_row_protos *p, const struct bp_schema *const *schemas,
                        size_t n);

/* Starts a batch of n messages whose ingestion time is now_str (the batch's RFC 3339 text, the
 * one its JSON rows carry): every message has no row until encoded. */
void bp_row_protos_begin(struct bp_row_protos *p, size_t n, const char *now_str);

/* Message i's row (a ProtoRows.serialized_rows entry: tag, length, message), its length in
 * *len and the serial of the schema it was written under in *serial; NULL when it has none. */
const void *bp_row_protos_get(const struct bp_row_protos *p, size_t i, size_t *len,
                              unsigned long *serial);

/* Registers, in L's registry as "bepipe.encode_both" (where scripts/bepipe/host.lua's batch loop
 * finds it), a row writer that does what bepipe.encode_row does (json_row.h) and also writes
 * the row as its message's protobuf into p. p must outlive L's batches. */
void bp_row_protos_register(struct bp_row_protos *p, lua_State *L);

#endif
