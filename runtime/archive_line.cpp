/* archive_line.cpp - a payload's archive line and back (archive_line.h). C++ only for simdjson
 * (Debian's libsimdjson): its DOM parser says whether a multi-line payload is valid JSON, and
 * simdjson::minify then removes the whitespace between tokens; base64 is OpenSSL's.
 *
 * The common payload (ASCII, no control byte) costs one pass eight bytes at a time and a
 * compare with the marker; UTF-8 text adds simdjson's UTF-8 check. Only multi-line or binary
 * payloads are parsed or encoded. */
#include <simdjson.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include <openssl/evp.h>

extern "C" {
#include "buf.h"
#include "json_bytes.h"
#include "json_lua.h"
}
#include "archive_line.h"

namespace {

const size_t MARK_LEN = sizeof(BP_RAW_MARK) - 1;
const char MARK_END[] = "\"}";
const size_t MARK_END_LEN = sizeof(MARK_END) - 1;

/* Its own parser (json_lua.cpp keeps one for the Lua stage), made on first use: most runs never
 * archive a multi-line payload. Capped like the Lua stage's, since a DOM parser's memory is
 * several times the largest document it has seen: larger multi-line payloads are carried raw,
 * which is lossless too. */
thread_local simdjson::dom::parser *parser;

/* What a scan of the payload found. */
struct scan {
    bool ctl;       /* a byte below 0x20 other than tab: the line would break or be binary */
    bool high;      /* a byte from 0x80 up: UTF-8 to check */
};

struct scan
scan_bytes(const char *p, size_t len)
{
    struct scan s = { false, false };
    const char *end = p + len;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if ((bp_bytes_below(w, 0x20) | (w & BP_BYTES_HIGH)) != 0)
            break;
        p += 8;
    }
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 && c != '\t')
            s.ctl = true;
        else if (c >= 0x80)
            s.high = true;
    }
    return s;
}

/* Only spaces and tabs (or nothing): the NDJSON readers skip such a line as blank. */
bool
blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t')
            return false;
    return true;
}

bool
starts_with_mark(const char *p, size_t len)
{
    return len >= MARK_LEN && memcmp(p, BP_RAW_MARK, MARK_LEN) == 0;
}

/* out = the marker line of p[0..len). */
int
encode_raw(const char *p, size_t len, bp_buf_t *out)
{
    if (len > (size_t)1 << 30)
        return -1;
    size_t b64 = (len + 2) / 3 * 4;
    bp_buf_reset(out);
    /* +1: EVP_EncodeBlock writes a NUL after the text */
    if (bp_buf_reserve(out, MARK_LEN + b64 + MARK_END_LEN + 1) != 0 ||
        bp_buf_append(out, BP_RAW_MARK, MARK_LEN) != 0)
        return -1;
    int n = EVP_EncodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)p,
                            (int)len);
    if (n < 0 || (size_t)n != b64)
        return -1;
    out->len += b64;
    if (bp_buf_append(out, MARK_END, MARK_END_LEN) != 0)
        return -1;
    return BP_LINE_RAW;
}

/* out = p[0..len) without the whitespace between JSON tokens, when it is valid JSON; 0 when it
 * is not (or too large to check), -1 when out is too small. */
int
compact_json(const char *p, size_t len, bp_buf_t *out)
{
    if (len > BP_JSON_LUA_MAX)
        return 0;
    if (!parser) {
        parser = new (std::nothrow) simdjson::dom::parser(BP_JSON_LUA_MAX);
        if (!parser)
            return 0;
    }
    simdjson::dom::element root;
    /* the text is copied into a padded buffer by the parser (realloc_if_needed) */
    if (parser->parse(p, len, true).get(root) != simdjson::SUCCESS)
        return 0;
    bp_buf_reset(out);
    if (bp_buf_reserve(out, len) != 0)
        return -1;
    size_t n = 0;
    if (simdjson::minify(p, len, out->data, n) != simdjson::SUCCESS)
        return 0;
    out->len = n;
    return BP_LINE_COMPACT;
}

bool
b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

} // namespace

/* See archive_line.h. */
int
bp_archive_line_encode(const char *p, size_t len, bp_buf_t *out)
{
    struct scan s = scan_bytes(p, len);
    if (!s.ctl) {
        if (s.high && !simdjson::validate_utf8(p, len))
            return encode_raw(p, len, out);
        if (blank(p, len) || starts_with_mark(p, len))
            return encode_raw(p, len, out);
        return BP_LINE_AS_IS;
    }
    /* JSON's only control bytes outside strings are whitespace, and inside strings none is
     * allowed: a valid document with one is multi-line whitespace, which compaction removes */
    int rc = compact_json(p, len, out);
    if (rc < 0)
        return -1;
    if (rc == BP_LINE_COMPACT && !starts_with_mark(out->data, out->len))
        return BP_LINE_COMPACT;
    return encode_raw(p, len, out);
}

/* See archive_line.h. */
int
bp_archive_line_decode(const char *line, size_t len, bp_buf_t *out)
{
    if (!starts_with_mark(line, len) || len < MARK_LEN + MARK_END_LEN ||
        memcmp(line + len - MARK_END_LEN, MARK_END, MARK_END_LEN) != 0)
        return 0;
    const char *b = line + MARK_LEN;
    size_t n = len - MARK_LEN - MARK_END_LEN, pad = 0;
    if (n % 4 != 0 || n > (size_t)1 << 30)
        return 0;
    /* strict: only the alphabet, then at most two '=' at the end */
    while (pad < 2 && pad < n && b[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!b64_char((unsigned char)b[i]))
            return 0;
    bp_buf_reset(out);
    if (bp_buf_reserve(out, n / 4 * 3 + 1) != 0)
        return -1;
    int got = EVP_DecodeBlock((unsigned char *)out->data, (const unsigned char *)b, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3)
        return 0;
    out->len = (size_t)got - pad;
    return 1;
}

/* See archive_line.h. */
int
bp_raw_lines_take(struct bp_raw_lines *r, const char *line, size_t len, const char **data,
                  size_t *dlen)
{
    *data = line;
    *dlen = len;
    if (!starts_with_mark(line, len))
        return 0;
    bp_buf_t b;
    /* the decoded bytes are shorter than the line */
    bp_buf_init(&b, len + 16);
    int rc = bp_archive_line_decode(line, len, &b);
    if (rc <= 0) {
        bp_buf_free(&b);
        return rc;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->v = (char **)bp_xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    /* an empty payload still needs a pointer that is not the line */
    if (!b.data && bp_buf_reserve(&b, 1) != 0)
        return -1;
    r->v[r->n++] = b.data;
    *data = b.data;
    *dlen = b.len;
    return 0;
}

/* See archive_line.h. */
void
bp_raw_lines_reset(struct bp_raw_lines *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i]);
    r->n = 0;
}

/* See archive_line.h. */
void
bp_raw_lines_free(struct bp_raw_lines *r)
{
    bp_raw_lines_reset(r);
    free(r->v);
    r->v = NULL;
    r->cap = 0;
}
