/* schema_diff.h - how a table's DDL differs from the live table, and the tables.patch that
 * brings the table to the DDL when BigQuery allows it (schema evolution).
 *
 * BigQuery lets an existing table gain NULLABLE (or REPEATED) columns and new fields inside
 * RECORDs, and relax REQUIRED to NULLABLE; nothing else. So a patch keeps every live field as
 * it is (descriptions, policy tags and all), relaxes the modes the DDL relaxes, and appends the
 * DDL's new fields; a DDL that drops a column, changes a type, makes a field REQUIRED or adds
 * a REQUIRED one is refused, naming the column. Start and reload only (jansson). */
#ifndef BP_SCHEMA_DIFF_H
#define BP_SCHEMA_DIFF_H

#include <stddef.h>

#include "common.h"

struct bp_schema_diff {
    /* "" when the schemas agree; else one line for the log: "only in the DDL: a, r.b; only in
     * the table: x; type differs: y (DDL INT64, table STRING); mode differs: z (DDL REQUIRED,
     * table NULLABLE)" (type aliases such as INTEGER/INT64 agree; names are case-insensitive) */
    char summary[2048];
    /* "" when the DDL can be applied; else the first change BigQuery would refuse, e.g.
     * "column note: the DDL says INT64, the table STRING (a column's type is never changed)" */
    char error[1024];
    /* the tables.patch body {"schema":{"fields":[...]}} (the whole new list, as BigQuery
     * requires), or NULL when the table needs no change or error is set; owned */
    char *patch;
    int added;      /* columns and RECORD fields the patch adds */
    int relaxed;    /* REQUIRED fields the patch makes NULLABLE */
};

/* Compares want (the DDL: a table resource, a schema or a fields array, as JSON text) with
 * have (the live table's, e.g. a tables.get reply) into *out. Returns 0, or -1 with the reason
 * in out->error when either text is not a schema (out->patch stays NULL). */
int bp_schema_diff(const char *want, size_t want_len, const char *have, size_t have_len,
                   struct bp_schema_diff *out) BP_WUR;

/* Frees out->patch; the struct may be reused. */
void bp_schema_diff_free(struct bp_schema_diff *d);

#endif
