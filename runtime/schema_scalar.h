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
 * fraction or exponent whose decimal value is an integer (bp_number_text_integral) and whose
 * double is below 2^53 in magnitude; the other types' rules are on the number's double.
 * Allocates only for a number over 63 characters. */
int bp_schema_number_ok(enum bp_schema_type t, const char *s, size_t n, int simple);

/* True when the JSON number text s[0..n) (a valid number: -?digits[.digits][(e|E)[+-]digits])
 * has an integer for its decimal value, on its digits, not its double: "1e3", "-9e15",
 * "4503599627370496.0" and "0.5e1" are, "4503599627370496.5" and "1.0000000000000000001" are
 * not (each reads to a double that is an integer). Pure; never allocates. */
int bp_number_text_integral(const char *s, size_t n);

/* A TIMESTAMP string the checker accepts (bp_schema_string_ok), as microseconds since the epoch,
 * UTC, exactly (its offset applied, its up to 6 fraction digits kept). Returns 0, or -1 for a
 * string the checker refuses. Pure. */
int bp_schema_timestamp_us(const char *s, size_t n, int64_t *us) BP_WUR;

/* A DATE string the checker accepts (YYYY-M[M]-D[D]), as days since 1970-01-01 (negative
 * before). Returns 0, or -1 for a string the checker refuses. Pure. */
int bp_schema_date_days(const char *s, size_t n, int32_t *days) BP_WUR;

#endif
