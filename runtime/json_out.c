/* json_out.c - JSON string encoder for the rows C builds itself (dead letters, insertAll
 * envelopes). Raw payloads may be any bytes, and BigQuery refuses STRING values that are not
 * UTF-8, so invalid sequences become U+FFFD instead of failing the whole dead letter. */
#include "json_out.h"

#include <string.h>

/* Length of a valid UTF-8 sequence starting at s (1..4), or 0 when the bytes there are invalid
 * (overlongs, surrogates and code points past U+10FFFF are invalid, as RFC 3629 says). */
static size_t
utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && s[1] < 0xA0)
        return 0;
    if (c == 0xED && s[1] > 0x9F)
        return 0;
    if (c == 0xF0 && s[1] < 0x90)
        return 0;
    if (c == 0xF4 && s[1] > 0x8F)
        return 0;
    return n;
}

/* Returns the length of the longest prefix of s that ends on a whole valid UTF-8 sequence; used
 * to cut payloads without splitting a character. */
size_t
bp_utf8_valid_prefix(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq_len((const unsigned char *)s + i, len - i);
        if (n == 0)
            break;
        i += n;
    }
    return i;
}

/* Appends s as a quoted JSON string. Returns 0, or -1 when the buffer's cap is reached. */
int
bp_json_string(bp_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    /* Worst case is 6 bytes out per byte in; reserving once keeps the loop free of checks. */
    if (len > (b->max / 6) || bp_buf_reserve(b, len * 6 + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
            } else {
                memcpy(o, p + i, n);
                o += n;
                i += n;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        i++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

int
bp_json_string_or_null(bp_buf_t *b, const char *s, size_t len)
{
    if (!s)
        return bp_buf_append(b, "null", 4);
    return bp_json_string(b, s, len);
}
