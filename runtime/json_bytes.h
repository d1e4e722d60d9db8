/* json_bytes.h - tests of JSON string text eight bytes at a time (SWAR), for the scanners and
 * the row writer: strings are most of an event's bytes, and a byte at a time with three or five
 * compares each was a visible share of the CPU (pull replies, rows, the schema check).
 *
 * (x - 0x01..) & ~x has a byte's high bit set where x has a zero byte, and after a borrow also
 * above one: exact about whether *some* byte matches, not which, so a word that matches goes to
 * a byte loop. Bytes from 0x80 up never count as "below". */
#ifndef BP_JSON_BYTES_H
#define BP_JSON_BYTES_H

#include <stdint.h>
#include <string.h>

#define BP_BYTES_ONES UINT64_C(0x0101010101010101)
#define BP_BYTES_HIGH UINT64_C(0x8080808080808080)

/* Nonzero when some byte of w is c. */
static inline uint64_t
bp_bytes_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (BP_BYTES_ONES * c);
    return (x - BP_BYTES_ONES) & ~x & BP_BYTES_HIGH;
}

/* Nonzero when some byte of w is below n (n <= 0x80). */
static inline uint64_t
bp_bytes_below(uint64_t w, unsigned char n)
{
    return (w - BP_BYTES_ONES * n) & ~w & BP_BYTES_HIGH;
}

/* The first byte in [p, end) that ends a plain run of string text: '"', '\\' or a control
 * byte; end when there is none. */
static inline const char *
bp_json_plain_run(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (bp_bytes_eq(w, '"') | bp_bytes_eq(w, '\\') | bp_bytes_below(w, 0x20))
            break;
        p += 8;
    }
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

#endif
