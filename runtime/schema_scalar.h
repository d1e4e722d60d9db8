/* schema_scalar.h - verdicts on one JSON scalar for a column type (internal to the schema
 * checker: schema_check.c scans, schema_scalar.c judges). */
#ifndef BP_SCHEMA_SCALAR_H
#define BP_SCHEMA_SCALAR_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"

/* A decoded JSON string's verdict for type t: 1 accepted, 0 refused, -1 for JSON (whose text
 * the caller's scanner validates). Pure; never allocates. */
int bp_schema_string_ok(enum bp_schema_type t, const char *s, size_t n);

/* A JSON number's verdict (raw text s/n; simple = a bare -?digits integer). INT64 takes a bare
 * integer in the int64 range (on its digits: one past 2^53 is exact there), or a number with a
 * fraction or exponent whose double is an integer below 2^53 in magnitude; the other types'
 * rules are on the number's double. Allocates only for a number over 63 characters. */
int bp_schema_number_ok(enum bp_schema_type t, const char *s, size_t n, int simple);

/* A TIMESTAMP string the checker accepts (bp_schema_string_ok), as microseconds since the epoch,
 * UTC, exactly (its offset applied, its up to 6 fraction digits kept). Returns 0, or -1 for a
 * string the checker refuses. Pure. */
int bp_schema_timestamp_us(const char *s, size_t n, int64_t *us) BP_WUR;

/* A DATE string the checker accepts (YYYY-M[M]-D[D]), as days since 1970-01-01 (negative
 * before). Returns 0, or -1 for a string the checker refuses. Pure. */
int bp_schema_date_days(const char *s, size_t n, int32_t *days) BP_WUR;

#endif
