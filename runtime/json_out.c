/* json_out.c - JSON string encoder for the rows C builds itself (dead letters, insertAll
 * envelopes). Raw payloads may be any bytes, and BigQuery refuses STRING values that are not
 * UTF-8, so invalid sequences become U+FFFD instead of failing the whole dead letter. */
#include "json_out.h"

#include <stdint.h>
#include <stdio.h>
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

/* See json_out.h. */
int
bp_utf8_fixed(bp_buf_t *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = bp_utf8_valid_prefix(s, len);
    if (bp_buf_append(b, s, i) != 0)
        return -1;
    while (i < len) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            /* one U+FFFD per invalid byte, as bp_json_text_utf8 writes "\ufffd" */
            if (bp_buf_append(b, "\xef\xbf\xbd", 3) != 0)
                return -1;
            i++;
            continue;
        }
        if (bp_buf_append(b, s + i, n) != 0)
            return -1;
        i += n;
    }
    return 0;
}

/* Writes the escaped content of s (no quotes) at o, which has room for 6 bytes per input byte;
 * returns the end. Invalid UTF-8 becomes \ufffd. */
static char *
put_chars(char *o, const unsigned char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
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
    return o;
}

/* Appends s as a quoted JSON string. Returns 0, or -1 when the buffer's cap is reached. */
int
bp_json_string(bp_buf_t *b, const char *s, size_t len)
{
    /* Worst case is 6 bytes out per byte in; reserving once keeps the loop free of checks. */
    if (len > (b->max / 6) || bp_buf_reserve(b, len * 6 + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    o = put_chars(o, (const unsigned char *)s, len);
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Bytes put_chars writes for the character at p (of avail bytes), and its input length. */
static size_t
escaped_size(const unsigned char *p, size_t avail, size_t *in)
{
    unsigned char c = p[0];
    *in = 1;
    if (c >= 0x20 && c < 0x80)
        return c == '"' || c == '\\' ? 2 : 1;
    if (c >= 0x80) {
        size_t n = utf8_seq_len(p, avail);
        if (n == 0)
            return 6;
        *in = n;
        return n;
    }
    return c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f' ? 2 : 6;
}

/* Appends s as a quoted JSON string of at most max_out escaped bytes between the quotes plus,
 * when s does not fit, the marker "…[truncated N bytes]" (N: input bytes left out). The cut
 * falls between characters, never inside a UTF-8 sequence or an escape. For the fields of dead
 * letters, whose inputs (raw payloads, attributes) may be as large as a message. Returns 0 or
 * -1 when the buffer's cap is reached. */
int
bp_json_string_cut(bp_buf_t *b, const char *s, size_t len, size_t max_out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t keep = 0, out = 0;
    while (keep < len) {
        size_t in, n = escaped_size(p + keep, len - keep, &in);
        if (out + n > max_out)
            break;
        out += n;
        keep += in;
    }
    if (keep == len)
        return bp_json_string(b, s, len);
    char marker[64];
    int ml = snprintf(marker, sizeof(marker), "\xe2\x80\xa6[truncated %zu bytes]", len - keep);
    if (bp_buf_reserve(b, out + (size_t)ml + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    o = put_chars(o, p, keep);
    memcpy(o, marker, (size_t)ml);
    o += ml;
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Offset of the first byte >= 0x80 in s, or len. Eight bytes a step: rows are mostly ASCII. */
static size_t
first_high(const unsigned char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & UINT64_C(0x8080808080808080))
            break;
    }
    for (; i < len; i++)
        if (s[i] & 0x80)
            return i;
    return len;
}

/* Appends JSON text (a row the scripts encoded) with every invalid UTF-8 sequence replaced by
 * \ufffd: lua-cjson passes the bytes of strings through as they are, and BigQuery refuses a
 * request that is not UTF-8. Bytes >= 0x80 occur only inside strings of valid JSON text, so
 * the escape is always inside a string. Text without such bytes is copied as it is (one scan).
 * Returns 0, or -1 when the buffer's cap is reached. */
int
bp_json_text_utf8(bp_buf_t *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = first_high(p, len);
    if (bp_buf_append(b, s, i) != 0)
        return -1;
    while (i < len) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            if (bp_buf_append(b, "\\ufffd", 6) != 0)
                return -1;
            i++;
            continue;
        }
        /* the valid sequence and the ASCII run after it, up to the next high byte */
        size_t run = n + first_high(p + i + n, len - i - n);
        if (bp_buf_append(b, s + i, run) != 0)
            return -1;
        i += run;
    }
    return 0;
}

int
bp_json_string_or_null(bp_buf_t *b, const char *s, size_t len)
{
    if (!s)
        return bp_buf_append(b, "null", 4);
    return bp_json_string(b, s, len);
}
