/* schema_check.c - checking one insertAll row's JSON text against a bp_schema, per row, in C.
 *
 * Why a hand-written scanner and not jansson: this runs for every row on the hot path, and
 * building a tree per row (allocating every key and value, then walking it) would cost more than
 * the rest of the local path's per-row work. The scanner below makes one pass over the compact
 * JSON lua-cjson produces, validating its syntax as it goes, looking each key up in the record's
 * fields and checking each scalar in place; it allocates only to decode a string holding escapes.
 * The per-type coercion rules (tests/emulator/lib/schema.js's) are in schema_scalar.c. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_bytes.h"
#include "schema.h"
#include "schema_scalar.h"

/* One step of the path to the value being checked, linked up the C stack: the path text is
 * built only when a violation is reported. */
struct seg {
    const struct seg *up;
    const char *name;   /* field name, or NULL for an array index */
    size_t nlen;
    size_t idx;
};

struct ck {
    const char *p, *end;
    char *why;
    size_t whylen;
};

/* A scanned scalar: its kind and its raw text (strings without their quotes). */
enum kind { K_STRING, K_NUMBER, K_TRUE, K_FALSE, K_NULL, K_OBJECT, K_ARRAY };
struct scalar {
    enum kind kind;
    const char *s;
    size_t n;
    int esc;            /* string holds backslash escapes */
};

static size_t
path_text(const struct seg *g, char *out, size_t cap)
{
    size_t n = 0;
    if (!g)
        return 0;
    if (g->up)
        n = path_text(g->up, out, cap);
    char tmp[48];
    const char *add = tmp;
    size_t alen;
    if (g->name) {
        if (n && n < cap)
            out[n++] = '.';
        add = g->name;
        alen = g->nlen;
    } else {
        alen = (size_t)snprintf(tmp, sizeof(tmp), "[%zu]", g->idx);
    }
    if (n + alen >= cap)
        alen = n < cap ? cap - n - 1 : 0;
    memcpy(out + n, add, alen);
    return n + alen;
}

/* Reports "path: reason" and returns -1. */
BP_PRINTF(3, 4) static int
fail(struct ck *c, const struct seg *g, const char *fmt, ...)
{
    char path[512];
    size_t n = path_text(g, path, sizeof(path));
    path[n] = 0;
    if (!c->whylen)
        return -1;
    int off = snprintf(c->why, c->whylen, "%s: ", n ? path : "row");
    if (off < 0 || (size_t)off >= c->whylen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + off, c->whylen - (size_t)off, fmt, ap);
    va_end(ap);
    return -1;
}

static int
bad_json(struct ck *c, const struct seg *g, const char *start)
{
    return fail(c, g, "invalid JSON at byte %zu", (size_t)(c->p - start));
}

static void
skip_ws(struct ck *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* ---- tokens ------------------------------------------------------------------------------ */

/* c->p at the opening quote; on success c->p is past the closing one and s, n the raw content. */
static int
scan_string(struct ck *c, const char **s, size_t *n, int *esc)
{
    const char *p = ++c->p;
    *esc = 0;
    for (;;) {
        p = bp_json_plain_run(p, c->end);
        if (p >= c->end || (unsigned char)*p < 0x20)
            return -1;
        if (*p == '"')
            break;
        *esc = 1;
        if (++p >= c->end)
            return -1;
        if (*p == 'u') {
            for (int i = 1; i <= 4; i++)
                if (p + i >= c->end || !isxdigit((unsigned char)p[i]))
                    return -1;
            p += 5;
        } else if (strchr("\"\\/bfnrt", *p) && *p) {
            p++;
        } else {
            return -1;
        }
    }
    *s = c->p;
    *n = (size_t)(p - c->p);
    c->p = p + 1;
    return 0;
}

static const char *
digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* JSON number grammar; *simple is set for a bare integer (-?digits). */
static int
scan_number(struct ck *c, const char **s, size_t *n, int *simple)
{
    const char *p = c->p, *q;
    if (p < c->end && *p == '-')
        p++;
    if (p >= c->end || !(*p >= '0' && *p <= '9'))
        return -1;
    p = *p == '0' ? p + 1 : digits(p, c->end);
    *simple = 1;
    if (p < c->end && *p == '.') {
        q = digits(p + 1, c->end);
        if (q == p + 1)
            return -1;
        p = q;
        *simple = 0;
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < c->end && (*p == '+' || *p == '-'))
            p++;
        q = digits(p, c->end);
        if (q == p)
            return -1;
        p = q;
        *simple = 0;
    }
    *s = c->p;
    *n = (size_t)(p - c->p);
    c->p = p;
    return 0;
}

static int
scan_lit(struct ck *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

/* Validates and skips any JSON value (the text of a JSON column). */
static int
skip_value(struct ck *c, int depth)
{
    const char *s;
    size_t n;
    int x;
    if (depth > 1000 || c->p >= c->end)
        return -1;
    switch (*c->p) {
    case '"': return scan_string(c, &s, &n, &x);
    case 't': return scan_lit(c, "true", 4);
    case 'f': return scan_lit(c, "false", 5);
    case 'n': return scan_lit(c, "null", 4);
    case '{': case '[': {
        char close = *c->p == '{' ? '}' : ']';
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                if (c->p >= c->end || *c->p != '"' || scan_string(c, &s, &n, &x) != 0)
                    return -1;
                skip_ws(c);
                if (c->p >= c->end || *c->p++ != ':')
                    return -1;
                skip_ws(c);
            }
            if (skip_value(c, depth + 1) != 0)
                return -1;
            skip_ws(c);
            if (c->p >= c->end)
                return -1;
            if (*c->p == close) {
                c->p++;
                return 0;
            }
            if (*c->p++ != ',')
                return -1;
            skip_ws(c);
        }
    }
    default: return scan_number(c, &s, &n, &x);
    }
}

/* ---- string decoding (only for strings holding escapes) ---------------------------------- */

static size_t
put_utf8(char *o, unsigned long u)
{
    if (u < 0x80) { o[0] = (char)u; return 1; }
    if (u < 0x800) { o[0] = (char)(0xC0 | (u >> 6)); o[1] = (char)(0x80 | (u & 0x3F)); return 2; }
    if (u < 0x10000) {
        o[0] = (char)(0xE0 | (u >> 12)); o[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        o[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (u >> 18)); o[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((u >> 6) & 0x3F)); o[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

/* Decodes a validated raw string into out (room for n + 1 bytes: decoding never grows it). */
static size_t
decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') { out[o++] = s[i]; continue; }
        char e = s[++i];
        static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
        const char *k = strchr(from, e);
        if (e != 'u') { out[o++] = k && e ? to[k - from] : e; continue; }
        unsigned long u = strtoul((char[5]){s[i + 1], s[i + 2], s[i + 3], s[i + 4], 0}, NULL, 16);
        i += 4;
        if (u >= 0xD800 && u < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
            unsigned long l = strtoul((char[5]){s[i + 3], s[i + 4], s[i + 5], s[i + 6], 0}, NULL, 16);
            if (l >= 0xDC00 && l < 0xE000) {
                u = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                i += 6;
            }
        }
        o += put_utf8(out + o, u);
    }
    out[o] = 0;
    return o;
}


static int
valid_json_text(const char *s, size_t n)
{
    struct ck sub = {s, s + n, NULL, 0};
    skip_ws(&sub);
    if (skip_value(&sub, 0) != 0)
        return 0;
    skip_ws(&sub);
    return sub.p == sub.end;
}

/* See schema.h. */
int
bp_schema_json_text_ok(const char *s, size_t n)
{
    return valid_json_text(s, n);
}

/* A decoded string's verdict: JSON text needs this file's scanner, the rest schema_scalar.c. */
static int
string_ok(enum bp_schema_type t, const char *s, size_t n)
{
    if (t == BP_SCHEMA_JSON)
        return valid_json_text(s, n);
    return bp_schema_string_ok(t, s, n) == 1;
}


/* ---- the walk ---------------------------------------------------------------------------- */

static int check_record(struct ck *c, const struct bp_schema_field *rec, const struct seg *g,
                        int depth, const char *start);

/* Describes a scanned value for a message: `string "3x"`, `number 1.5`, `true`, `object`. */
static const char *
describe(const struct scalar *v, char *buf, size_t cap)
{
    switch (v->kind) {
    case K_STRING: {
        int cut = v->n > 40;
        snprintf(buf, cap, "string \"%.*s%s\"", cut ? 40 : (int)v->n, v->s, cut ? "..." : "");
        return buf;
    }
    case K_NUMBER: snprintf(buf, cap, "number %.*s", v->n > 40 ? 40 : (int)v->n, v->s); return buf;
    case K_TRUE: return "true";
    case K_FALSE: return "false";
    case K_NULL: return "null";
    case K_OBJECT: return "an object";
    case K_ARRAY: return "an array";
    }
    return "?";
}

/* Scans a scalar (or notes an object/array without consuming it). */
static int
scan_scalar(struct ck *c, struct scalar *v, int *simple)
{
    *simple = 0;
    v->esc = 0;
    v->s = c->p;
    v->n = 0;
    if (c->p >= c->end)
        return -1;
    switch (*c->p) {
    case '"': v->kind = K_STRING; return scan_string(c, &v->s, &v->n, &v->esc);
    case 't': v->kind = K_TRUE; return scan_lit(c, "true", 4);
    case 'f': v->kind = K_FALSE; return scan_lit(c, "false", 5);
    case 'n': v->kind = K_NULL; return scan_lit(c, "null", 4);
    case '{': v->kind = K_OBJECT; return 0;
    case '[': v->kind = K_ARRAY; return 0;
    default: v->kind = K_NUMBER; return scan_number(c, &v->s, &v->n, simple);
    }
}

/* Checks one (non-null, non-array-level) value of field f at c->p. */
static int
check_one(struct ck *c, const struct bp_schema_field *f, const struct seg *g, int depth,
          const char *start)
{
    struct scalar v;
    int simple, ok;
    char d[80];
    if (scan_scalar(c, &v, &simple) != 0)
        return bad_json(c, g, start);
    if (f->type == BP_SCHEMA_RECORD) {
        if (v.kind != K_OBJECT)
            return fail(c, g, "RECORD expected an object, got %s", describe(&v, d, sizeof(d)));
        return check_record(c, f, g, depth + 1, start);
    }
    if (v.kind == K_OBJECT || v.kind == K_ARRAY)
        return fail(c, g, "%s expected, got %s", f->type_name, describe(&v, d, sizeof(d)));
    if (v.kind == K_NUMBER) {
        ok = bp_schema_number_ok(f->type, v.s, v.n, simple);
    } else if (v.kind == K_STRING && v.esc) {
        char *tmp = bp_xmalloc(v.n + 1);
        ok = string_ok(f->type, tmp, decode(v.s, v.n, tmp));
        free(tmp);
    } else if (v.kind == K_STRING) {
        ok = string_ok(f->type, v.s, v.n);
    } else {    /* true / false: STRING takes their text, BOOL the value */
        ok = f->type == BP_SCHEMA_BOOL || f->type == BP_SCHEMA_STRING || f->type == BP_SCHEMA_ANY;
    }
    if (!ok)
        return fail(c, g, "%s expected, got %s", f->type_name, describe(&v, d, sizeof(d)));
    return 0;
}

/* A REPEATED field's array at c->p: every element present and of the field's type. */
static int
check_array(struct ck *c, const struct bp_schema_field *f, const struct seg *g, int depth,
            const char *start)
{
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (size_t i = 0;; i++) {
        struct seg el = {g, NULL, 0, i};
        if (c->p >= c->end)
            return bad_json(c, g, start);
        if (*c->p == 'n') {
            if (scan_lit(c, "null", 4) != 0)
                return bad_json(c, &el, start);
            return fail(c, &el, "NULL in a REPEATED field");
        }
        if (check_one(c, f, &el, depth, start) != 0)
            return -1;
        skip_ws(c);
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return 0;
        }
        if (c->p >= c->end || *c->p != ',')
            return bad_json(c, g, start);
        c->p++;
        skip_ws(c);
    }
}

/* One key/value pair of a record: the key's field, then its value by mode. */
static int
check_member(struct ck *c, const struct bp_schema_field *rec, const struct seg *g, int depth,
             const char *start, uint64_t *seen)
{
    const char *k;
    size_t kn;
    int esc;
    char kbuf[320];
    if (c->p >= c->end || *c->p != '"' || scan_string(c, &k, &kn, &esc) != 0)
        return bad_json(c, g, start);
    if (esc && kn < sizeof(kbuf)) {   /* field names are plain ASCII: decode only to compare */
        kn = decode(k, kn, kbuf);
        k = kbuf;
    }
    struct seg me = {g, k, kn > 300 ? 300 : kn, 0};
    skip_ws(c);
    if (c->p >= c->end || *c->p++ != ':')
        return bad_json(c, g, start);
    skip_ws(c);
    if (c->p >= c->end)
        return bad_json(c, g, start);
    const struct bp_schema_field *f = bp_schema_field_find(rec, k, kn);
    if (!f)
        return fail(c, &me, "no such field");
    me.name = f->name;      /* the schema's spelling, whatever case the key had */
    if (*c->p == 'n') {
        if (scan_lit(c, "null", 4) != 0)
            return bad_json(c, &me, start);
        if (f->mode == BP_SCHEMA_REQUIRED)
            return fail(c, &me, "missing REQUIRED field (null)");
        return 0;
    }
    if (f->mode == BP_SCHEMA_REPEATED) {
        if (*c->p != '[') {
            struct scalar v;
            int simple;
            char d[80];
            if (scan_scalar(c, &v, &simple) != 0)   /* an object is noted, not consumed */
                return bad_json(c, &me, start);
            return fail(c, &me, "REPEATED field expected an array, got %s",
                        describe(&v, d, sizeof(d)));
        }
        return check_array(c, f, &me, depth, start);
    }
    if (*c->p == '[')
        return fail(c, &me, "array given for a field that is not REPEATED");
    if (f->required_index >= 0)
        seen[f->required_index / 64] |= 1ULL << (f->required_index % 64);
    return check_one(c, f, &me, depth, start);
}

/* An object at c->p against a RECORD's fields; REQUIRED fields checked once it is closed. */
static int
check_record(struct ck *c, const struct bp_schema_field *rec, const struct seg *g, int depth,
             const char *start)
{
    uint64_t seen[BP_SCHEMA_MAX_REQUIRED / 64] = {0};
    if (depth > BP_SCHEMA_MAX_DEPTH + 1)
        return fail(c, g, "nested deeper than the schema");
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    } else {
        for (;;) {
            if (check_member(c, rec, g, depth, start, seen) != 0)
                return -1;
            skip_ws(c);
            if (c->p < c->end && *c->p == '}') {
                c->p++;
                break;
            }
            if (c->p >= c->end || *c->p != ',')
                return bad_json(c, g, start);
            c->p++;
            skip_ws(c);
        }
    }
    if (!rec->nrequired)
        return 0;
    for (size_t i = 0; i < rec->nfields; i++) {
        int r = rec->fields[i].required_index;
        if (r >= 0 && !(seen[r / 64] & (1ULL << (r % 64)))) {
            struct seg me = {g, rec->fields[i].name,
                             rec->fields[i].name_len, 0};
            return fail(c, &me, "missing REQUIRED field");
        }
    }
    return 0;
}

/* See schema.h. */
int
bp_schema_check(const struct bp_schema *s, const char *row_json, size_t len, char *why,
                size_t whylen)
{
    struct ck c = {row_json, row_json + len, why, whylen};
    if (whylen)
        why[0] = 0;
    if (len > BP_SCHEMA_MAX_ROW)
        return fail(&c, NULL, "%zu bytes, over BigQuery's row limit of %u bytes", len,
                    BP_SCHEMA_MAX_ROW);
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return fail(&c, NULL, "not a JSON object");
    if (check_record(&c, &s->root, NULL, 0, row_json) != 0)
        return -1;
    skip_ws(&c);
    if (c.p != c.end)
        return bad_json(&c, NULL, row_json);
    return 0;
}
