/* Fuzz target: the per-row schema checker (runtime/schema_check.c, schema_scalar.c), which reads
 * every row's JSON text on the hot path. Besides memory safety it checks that a refused row
 * always has a reason, and that an accepted row is a JSON object jansson reads too (the checker
 * must never pass malformed JSON on to BigQuery). */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SCHEMA[] =
    "{\"fields\":[{\"name\":\"s\",\"type\":\"STRING\"},{\"name\":\"i\",\"type\":\"INT64\"},"
    "{\"name\":\"f\",\"type\":\"FLOAT64\"},{\"name\":\"n\",\"type\":\"NUMERIC\"},"
    "{\"name\":\"b\",\"type\":\"BOOL\"},{\"name\":\"ts\",\"type\":\"TIMESTAMP\"},"
    "{\"name\":\"d\",\"type\":\"DATE\"},{\"name\":\"t\",\"type\":\"TIME\"},"
    "{\"name\":\"dt\",\"type\":\"DATETIME\"},{\"name\":\"j\",\"type\":\"JSON\"},"
    "{\"name\":\"by\",\"type\":\"BYTES\"},{\"name\":\"req\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"tags\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
    "{\"name\":\"items\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
    "{\"name\":\"quantity\",\"type\":\"INT64\",\"mode\":\"REQUIRED\"},{\"name\":\"price\",\"type\":\"FLOAT\"}]},"
    "{\"name\":\"addr\",\"type\":\"STRUCT\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"},"
    "{\"name\":\"geo\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"lat\",\"type\":\"FLOAT64\"}]}]}]}";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bp_schema *s;
    char why[300];
    if (!s)
        s = bp_schema_from_json(SCHEMA, strlen(SCHEMA), why, sizeof(why));
    if (!s)
        __builtin_trap();
    if (bp_schema_check(s, (const char *)data, size, why, sizeof(why)) != 0) {
        if (!why[0])
            __builtin_trap();
        return 0;
    }
    /* accepted: jansson must read an object too, except what it alone refuses: invalid UTF-8
     * and \u0000 (left to the encoder) and numbers past a double (JavaScript, so the emulator,
     * reads 1e400 as Infinity: a FLOAT64 value) */
    json_error_t e;
    json_t *j = json_loadb((const char *)data, size, 0, &e);
    if (j && !json_is_object(j))
        __builtin_trap();
    if (!j && !strstr(e.text, "overflow") && !strstr(e.text, "too big") && !memmem(data, size, "\\u", 2) &&
        !memchr(data, 0, size)) {
        int ascii = 1;
        for (size_t k = 0; k < size && ascii; k++)
            ascii = data[k] < 0x80;
        if (ascii)
            __builtin_trap();
    }
    json_decref(j);
    return 0;
}
