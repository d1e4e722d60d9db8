/* proto_row.h - a map's row (a Lua table) written as a protobuf message of the table's writer
 * schema (proto_desc.h), straight from the table: no JSON text in between. See proto_row.c. */
#ifndef BP_PROTO_ROW_H
#define BP_PROTO_ROW_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "common.h"
#include "schema.h"

/* A TIMESTAMP column the runtime fills itself (ingestion_time), written after the row's own
 * columns: a protobuf reader keeps the last value of a field, as a JSON reader keeps the last of
 * a repeated key, so it wins over a value the row has, as json_row.c's member does. */
struct bp_proto_row_meta {
    const char *ts_column;      /* NULL: none */
    int64_t ts_us;              /* microseconds since the epoch */
    int empty_repeated_fails;   /* an empty table in a REPEATED column is an error: the row's
                                 * JSON (json_row.c) writes it "{}", which the schema check and
                                 * insertAll refuse, so a writer standing in for that JSON must
                                 * refuse it too (a table read back from "[]" is an array) */
};

/* Appends the row table at stack index idx of L to rows as one ProtoRows.serialized_rows entry
 * (field 1: tag, length, the row message of schema s), so rows is a ProtoRows message body that
 * grows a row at a time (bp_proto_append_request sends it as it is). The caller records rows->len
 * before the call to find the row again. The values are converted exactly as BigQuery's insertAll
 * would take their JSON (the rules of schema_check.c): integers are exact (an int64_t cdata as
 * it is; a number past 2^53, a fraction or a uint64_t past INT64_MAX for an INT64 column is an
 * error), TIMESTAMP from the strings the checker accepts or a number of seconds (into
 * microseconds), DATE from YYYY-M-D (into days), BYTES from base64, NaN and infinities refused
 * as numbers (as JSON cannot carry them; the strings "NaN", "Infinity" of a FLOAT64 column are
 * accepted as insertAll accepts them). A column the schema does not have, a missing REQUIRED
 * column, a NULL in a REPEATED column or a value of the wrong type is an error.
 * meta: NULL, or an extra TIMESTAMP column (its name must be in s) and the empty-table rule.
 * Returns 0, or -1 with rows as it was and the reason in err naming the field by its path
 * ("row field items[1].price: INT64 expected, got number 1.5"); -1 too when rows would pass its
 * maximum or the row BigQuery's 10 MB. Runs Lua only to read an int64_t cdata's digits
 * (bepipe.int_text in the registry, as json_row.c does); raises only on a Lua memory error. */
int bp_proto_row_append(const struct bp_schema *s, lua_State *L, int idx,
                        const struct bp_proto_row_meta *meta, bp_buf_t *rows, char *err,
                        size_t errlen) BP_WUR;

#endif
