/* schema.h - a BigQuery table schema, and checking an insertAll row against it before it leaves.
 *
 * A schema is built once (at start, from a tables.insert/tables.get resource's JSON) and then only
 * read, so one schema may be shared by every row of a table. bp_schema_check runs per row on the
 * hot path: it walks the row's JSON text once without building a tree (see schema_check.c). */
#ifndef BP_SCHEMA_H
#define BP_SCHEMA_H

#include <stddef.h>

#include "common.h"

enum bp_schema_type {
    BP_SCHEMA_STRING, BP_SCHEMA_INT64, BP_SCHEMA_FLOAT64, BP_SCHEMA_NUMERIC, BP_SCHEMA_BOOL,
    BP_SCHEMA_TIMESTAMP, BP_SCHEMA_DATE, BP_SCHEMA_TIME, BP_SCHEMA_DATETIME, BP_SCHEMA_JSON,
    BP_SCHEMA_BYTES, BP_SCHEMA_RECORD,
    BP_SCHEMA_ANY /* GEOGRAPHY, RANGE, INTERVAL: any scalar, as the emulator stores them */
};

enum bp_schema_mode { BP_SCHEMA_NULLABLE, BP_SCHEMA_REQUIRED, BP_SCHEMA_REPEATED };

/* Most REQUIRED fields one RECORD may have: a row's presence marks live in a fixed bitmap. */
#define BP_SCHEMA_MAX_REQUIRED 256
/* Deepest RECORD nesting accepted (BigQuery allows 15 levels). */
#define BP_SCHEMA_MAX_DEPTH 16
/* BigQuery's row size limit for streaming inserts (10 MB, counted in decimal megabytes here so a
 * row the service might refuse is never sent). */
#define BP_SCHEMA_MAX_ROW 10000000u

struct bp_schema_field {
    char *name;
    size_t name_len;
    enum bp_schema_type type;
    enum bp_schema_mode mode;
    const char *type_name;            /* "INT64", "RECORD", ... for messages */
    int required_index;               /* position among the record's REQUIRED fields, or -1 */
    struct bp_schema_field *fields;   /* RECORD only */
    size_t nfields;
    size_t nrequired;                 /* REQUIRED fields among `fields` */
};

struct bp_schema {
    struct bp_schema_field root;      /* a RECORD holding the table's columns */
    unsigned long serial;             /* unique to this schema in the process, from 1: rows
                                       * written under it are told from rows written under a
                                       * schema freed since at the same address */
};

/* Builds a schema from JSON text: a table resource ({"schema":{"fields":[...]}}), a schema
 * ({"fields":[...]}) or a bare fields array. Type names and modes are BigQuery's (aliases such
 * as INTEGER, FLOAT, BOOLEAN, STRUCT, DECIMAL accepted). Returns NULL with a message in `why` on
 * bad JSON or an invalid schema. Uses jansson: meant for start and reload, not the hot path. */
struct bp_schema *bp_schema_from_json(const char *json, size_t len, char *why, size_t whylen);

/* BigQuery's canonical name of a type name or alias ("INTEGER" -> "INT64", "STRUCT" -> "RECORD"),
 * case-insensitive; NULL for a name it does not know. */
const char *bp_schema_type_canon(const char *name);

/* Frees a schema; NULL is fine. */
void bp_schema_free(struct bp_schema *s);

/* The schemas of a pipeline's tables, by table id (from the DDL's tables.insert resources). */
struct bp_schema_set {
    char **tables;
    struct bp_schema **schemas;
    size_t n;
};

/* Adds one schema per resource body (tableReference.tableId names its table; a table named
 * twice keeps the last). Returns 0, or -1 with the table and reason in `why` (the set keeps what
 * it had). Start and reload only. */
int bp_schema_set_add_resources(struct bp_schema_set *set, char *const *bodies, size_t n,
                                char *why, size_t whylen) BP_WUR;

/* The field of record `rec` (the schema's root or a RECORD) that key k (n bytes) names: exact
 * name first, then case-insensitively (BigQuery's column names are), or NULL. */
const struct bp_schema_field *bp_schema_field_find(const struct bp_schema_field *rec,
                                                   const char *k, size_t n);

/* The schema of `table`, or NULL when it has none (such a table's rows are not checked). */
const struct bp_schema *bp_schema_set_find(const struct bp_schema_set *set, const char *table);

/* Frees every schema and leaves the set empty (and reusable). */
void bp_schema_set_clear(struct bp_schema_set *set);

/* Checks one row (the `json` object of an insertAll entry, as JSON text) against `s` with the
 * coercions BigQuery's streaming API accepts (as tests/emulator/lib/schema.js implements them).
 * Returns 0 when the row would be accepted; -1 with the first violation in `why` as
 * "path: reason" (e.g. `items[2].quantity: INT64 expected, got string "3x"`). Reentrant; does
 * not allocate unless a string holds escapes. */
int bp_schema_check(const struct bp_schema *s, const char *row_json, size_t len, char *why,
                    size_t whylen) BP_WUR;

/* Whether s[0..n) is JSON text as a JSON column takes it (the checker's own scanner, so a JSON
 * column's value is judged alike however the row is sent). Reentrant; never allocates. */
int bp_schema_json_text_ok(const char *s, size_t n);

#endif
