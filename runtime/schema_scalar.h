/* schema_scalar.h - verdicts on one JSON scalar for a column type (internal to the schema
 * checker: schema_check.c scans, schema_scalar.c judges). */
#ifndef BP_SCHEMA_SCALAR_H
#define BP_SCHEMA_SCALAR_H

#include <stddef.h>

#include "schema.h"

/* A decoded JSON string's verdict for type t: 1 accepted, 0 refused, -1 for JSON (whose text
 * the caller's scanner validates). Pure; never allocates. */
int bp_schema_string_ok(enum bp_schema_type t, const char *s, size_t n);

/* A JSON number's verdict (raw text s/n; simple = a bare -?digits integer): JavaScript reads it as
 * a double, so the rules are on that double. Allocates only for a number over 63 characters. */
int bp_schema_number_ok(enum bp_schema_type t, const char *s, size_t n, int simple);

#endif
