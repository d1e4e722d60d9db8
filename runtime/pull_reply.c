/* pull_reply.c - a pull reply is the largest JSON the core reads (1,000 messages, ~700 KB), once
 * per pull. History of its decoder, measured on the cloud path: jansson parsed ~87 MB/s (~8
 * CPU-s per million events, a third of the whole path); lua-cjson into Lua tables, walked with
 * the C API, was 23% of bepipe-lua's CPU end to end (tests/bench/e2e, perf: the tables and
 * strings of every message, then their garbage). This is a scanner for the one shape a pull
 * reply has, in the manner of schema_check.c: one pass over the text, validating the JSON syntax
 * of everything it passes (an invalid reply is refused whole, as a parser would), pointing into
 * the body for strings without escapes and copying only those that have them (and publishTime,
 * which callers take NUL-terminated) into an arena of small chunks (it was one block the size of
 * the body, for the ~35 bytes per message a reply without escapes needs). */
#include "pull_reply.h"
#include "json_bytes.h"

#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than this refuses the reply (the same limit as events' JSON in host.lua). */
#define MAX_DEPTH 64

/* One block of the arena: copies never move, so the pointers handed out stay valid. */
struct bp_pull_chunk {
    struct bp_pull_chunk *next;
    size_t cap, used;
    char data[];
};

#define CHUNK_MIN 16384

struct scan {
    const char *p, *end;
    struct bp_pull_chunk **arena;   /* the reply's chunks, newest first; NULL: validate only */
    int oom;
};

/* Room for need bytes in the newest chunk (a new one when it is full), or NULL. */
static char *
arena_room(struct scan *s, size_t need)
{
    struct bp_pull_chunk *c = *s->arena;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > CHUNK_MIN ? need : CHUNK_MIN;
        c = malloc(sizeof(*c) + cap);
        if (!c) {
            s->oom = 1;
            return NULL;
        }
        c->next = *s->arena;
        c->cap = cap;
        c->used = 0;
        *s->arena = c;
    }
    return c->data + c->used;
}

static void
ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* The next non-blank byte is c: consumes it. */
static int
eat(struct scan *s, char c)
{
    ws(s);
    if (s->p >= s->end || *s->p != c)
        return 0;
    s->p++;
    return 1;
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* One escape at p (just after the backslash) into out (NULL: only validated). Returns the
 * bytes of text it took, or -1; *n gets the bytes it wrote (at most the bytes it took + 1). */
static int
unescape(const char *p, const char *end, char *out, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = p < end && *p ? strchr(from, *p) : NULL;
    if (k) {
        if (out)
            *out = to[k - from];
        *n = 1;
        return 1;
    }
    unsigned cp;
    if (p >= end || *p != 'u' || end - p < 5 || hex4(p + 1, &cp) != 0)
        return -1;
    int took = 5;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (end - p < 11 || p[5] != '\\' || p[6] != 'u' || hex4(p + 7, &lo) != 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        took = 11;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return -1;
    }
    unsigned char u[4];
    size_t m;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp, m = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3F)), m = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12), u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F)), m = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | cp >> 18), u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        m = 4;
    }
    if (out)
        memcpy(out, u, m);
    *n = m;
    return took;
}

/* The string at s->p (a '"'): validated and consumed. With out, its value: a pointer into the
 * body when it has no escape and nul is 0, else an unescaped copy in the arena (NUL-terminated).
 * Every escape writes no more bytes than it takes, so a copy never outgrows its text's span.
 * Returns 0, or -1 when it is not a JSON string. */
static int
string(struct scan *s, const char **out, size_t *len, int nul)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const char *start = ++s->p, *p = start;
    int esc = 0;
    for (;;) {
        p = bp_json_plain_run(p, s->end);
        if (p >= s->end || (unsigned char)*p < 0x20)
            return -1;
        if (*p == '"')
            break;
        size_t n;
        int took = unescape(p + 1, s->end, NULL, &n);
        if (took < 0)
            return -1;
        esc = 1;
        p += 1 + took;
    }
    s->p = p + 1;
    if (!out)
        return 0;
    if (!esc && !nul) {
        *out = start;
        *len = (size_t)(p - start);
        return 0;
    }
    char *dst = arena_room(s, (size_t)(p - start) + 1), *w = dst;
    if (!dst)
        return -1;
    for (const char *q = start; q < p;) {
        if (*q != '\\') {
            *w++ = *q++;
            continue;
        }
        size_t n;
        q += 1 + unescape(q + 1, p, w, &n);
        w += n;
    }
    *w = '\0';
    *out = dst;
    *len = (size_t)(w - dst);
    (*s->arena)->used += (size_t)(w - dst) + 1;
    return 0;
}

static int
number(struct scan *s)
{
    const char *p = s->p;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end || *p < '0' || *p > '9')
        return -1;
    if (*p == '0')
        p++;
    else
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    if (p < s->end && *p == '.') {
        if (++p >= s->end || *p < '0' || *p > '9')
            return -1;
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        if (++p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return -1;
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    s->p = p;
    return 0;
}

static int
word(struct scan *s, const char *w, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int skip_value(struct scan *s, int depth);

/* The members or elements of the object or array at s->p ('{' or '['), skipped. */
static int
skip_container(struct scan *s, int depth)
{
    char close = *s->p == '{' ? '}' : ']';
    int obj = close == '}';
    s->p++;
    if (eat(s, close))
        return 0;
    for (;;) {
        if (obj) {
            ws(s);
            if (string(s, NULL, NULL, 0) != 0 || !eat(s, ':'))
                return -1;
        }
        if (skip_value(s, depth + 1) != 0)
            return -1;
        if (eat(s, close))
            return 0;
        if (!eat(s, ','))
            return -1;
    }
}

/* Any JSON value, validated and skipped. */
static int
skip_value(struct scan *s, int depth)
{
    ws(s);
    if (s->p >= s->end || depth > MAX_DEPTH)
        return -1;
    switch (*s->p) {
    case '"': return string(s, NULL, NULL, 0);
    case '{': case '[': return skip_container(s, depth);
    case 't': return word(s, "true", 4);
    case 'f': return word(s, "false", 5);
    case 'n': return word(s, "null", 4);
    default: return number(s);
    }
}

/* A string member's value into out/len when it is a string; any other value is skipped and
 * leaves them as they are (a missing field, as for a parser into tables). */
static int
str_member(struct scan *s, const char **out, size_t *len, int nul, int depth)
{
    ws(s);
    if (s->p < s->end && *s->p == '"')
        return string(s, out, len, nul);
    *out = NULL;
    return skip_value(s, depth);
}

/* Walks the object at s->p calling member(s, key, keylen, ctx, depth) for each member; the
 * callback consumes the value. A value that is not an object is skipped and returns 1. */
static int
walk_object(struct scan *s, int depth, void *ctx,
            int (*member)(struct scan *, const char *, size_t, void *, int))
{
    ws(s);
    if (s->p >= s->end || *s->p != '{')
        return skip_value(s, depth) == 0 ? 1 : -1;
    if (depth > MAX_DEPTH)
        return -1;
    s->p++;
    if (eat(s, '}'))
        return 0;
    for (;;) {
        const char *k;
        size_t kl;
        ws(s);
        if (string(s, &k, &kl, 0) != 0 || !eat(s, ':') || member(s, k, kl, ctx, depth + 1) != 0)
            return -1;
        if (eat(s, '}'))
            return 0;
        if (!eat(s, ','))
            return -1;
    }
}

#define KEY(k, kl, lit) ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), (kl)) == 0)

struct item {
    struct bp_pull_msg *m;
    int msg_seen;           /* "message" was an object */
};

static int
message_member(struct scan *s, const char *k, size_t kl, void *ctx, int depth)
{
    struct bp_pull_msg *m = ((struct item *)ctx)->m;
    if (KEY(k, kl, "data"))
        return str_member(s, &m->data_b64, &m->data_b64_len, 0, depth);
    if (KEY(k, kl, "messageId"))
        return str_member(s, &m->message_id, &m->message_id_len, 0, depth);
    if (KEY(k, kl, "publishTime")) {
        size_t pl;
        return str_member(s, &m->publish_time, &pl, 1, depth);
    }
    if (KEY(k, kl, "attributes")) {
        /* kept as the JSON text it came as (valid JSON: the scan checks it), or NULL when it is
         * no object or an empty one */
        ws(s);
        const char *start = s->p;
        int is_obj = s->p < s->end && *s->p == '{';
        if (skip_value(s, depth) != 0)
            return -1;
        m->attrs = NULL;
        m->attrs_len = 0;
        if (is_obj) {
            struct scan in = { start + 1, s->p, NULL, 0 };   /* only ws and eat */
            if (!eat(&in, '}')) {
                m->attrs = start;
                m->attrs_len = (size_t)(s->p - start);
            }
        }
        return 0;
    }
    return skip_value(s, depth);
}

static int
item_member(struct scan *s, const char *k, size_t kl, void *ctx, int depth)
{
    struct item *it = ctx;
    if (KEY(k, kl, "ackId"))
        return str_member(s, &it->m->ack_id, &it->m->ack_id_len, 0, depth);
    if (KEY(k, kl, "deliveryAttempt")) {
        ws(s);
        const char *start = s->p;
        if (skip_value(s, depth) != 0)
            return -1;
        char num[32];
        size_t n = (size_t)(s->p - start);
        it->m->delivery_attempt = 0;
        if (n && n < sizeof(num) && (*start == '-' || (*start >= '0' && *start <= '9'))) {
            memcpy(num, start, n);
            num[n] = '\0';
            double d = strtod(num, NULL);
            it->m->delivery_attempt = d >= 0 && d < 1e6 ? (int)d : 0;
        }
        return 0;
    }
    if (KEY(k, kl, "message")) {
        /* a repeated "message" replaces the first, as in a parser into tables */
        const char *ack = it->m->ack_id;
        size_t ackl = it->m->ack_id_len;
        int da = it->m->delivery_attempt;
        memset(it->m, 0, sizeof(*it->m));
        it->m->ack_id = ack, it->m->ack_id_len = ackl, it->m->delivery_attempt = da;
        int rc = walk_object(s, depth, it, message_member);
        it->msg_seen = rc == 0;
        return rc < 0 ? -1 : 0;
    }
    return skip_value(s, depth);
}

struct reply_ctx {
    struct bp_pull_reply *r;
    size_t cap;
};

/* receivedMessages: each item that has an ackId and a message object becomes a message. */
static int
messages(struct scan *s, struct reply_ctx *rc, int depth)
{
    struct bp_pull_reply *r = rc->r;
    ws(s);
    if (s->p >= s->end || *s->p != '[')
        return skip_value(s, depth);
    r->n = 0;   /* a repeated list replaces the first */
    s->p++;
    if (eat(s, ']'))
        return 0;
    for (;;) {
        if (r->n == rc->cap) {
            size_t cap = rc->cap ? rc->cap * 2 : 256;
            struct bp_pull_msg *m = realloc(r->msgs, cap * sizeof(*m));
            if (!m) {
                s->oom = 1;
                return -1;
            }
            r->msgs = m;
            rc->cap = cap;
        }
        struct item it = { &r->msgs[r->n], 0 };
        memset(it.m, 0, sizeof(*it.m));
        int w = walk_object(s, depth, &it, item_member);
        if (w < 0)
            return -1;
        if (w == 0 && it.msg_seen && it.m->ack_id && it.m->ack_id_len)
            r->n++;
        if (eat(s, ']'))
            return 0;
        if (!eat(s, ','))
            return -1;
    }
}

static int
root_member(struct scan *s, const char *k, size_t kl, void *ctx, int depth)
{
    if (KEY(k, kl, "receivedMessages"))
        return messages(s, ctx, depth);
    return skip_value(s, depth);
}

int
bp_pull_reply_decode(struct bp_pull_reply *r, const char *body, size_t len, char *err,
                     size_t errlen)
{
    memset(r, 0, sizeof(*r));
    struct scan s = { body, body + len, &r->arena, 0 };
    struct reply_ctx rc = { r, 0 };
    ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        snprintf(err, errlen, s.p < s.end && (*s.p == '[' || *s.p == '"' || *s.p == 't' ||
                 *s.p == 'f' || *s.p == 'n' || *s.p == '-' || (*s.p >= '0' && *s.p <= '9'))
                 ? "pull reply is not a JSON object" : "pull reply is not JSON");
        goto fail;
    }
    int w = walk_object(&s, 0, &rc, root_member);
    ws(&s);
    if (s.oom) {
        snprintf(err, errlen, "out of memory for a pull reply of %zu bytes", len);
        goto fail;
    }
    if (w != 0 || s.p != s.end) {
        snprintf(err, errlen, "pull reply is not JSON (at byte %zu of %zu)",
                 (size_t)(s.p - body), len);
        goto fail;
    }
    return 0;
fail:
    bp_pull_reply_free(r);
    return -1;
}

/* Lets the decoded reply go (its strings are invalid afterwards). */
void
bp_pull_reply_free(struct bp_pull_reply *r)
{
    if (!r)
        return;
    free(r->msgs);
    while (r->arena) {
        struct bp_pull_chunk *c = r->arena;
        r->arena = c->next;
        free(c);
    }
    r->msgs = NULL;
    r->arena = NULL;
    r->n = 0;
}

/* The 6-bit value of each base64 character, already shifted to its place in a 4-character
 * group (so a group is four lookups OR-ed), or B64_BAD. Built once from the alphabet. */
#define B64_BAD 0x01000000u
static uint32_t b64_dec[4][256];

static void
b64_init(void)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 256; i++)
        b64_dec[0][i] = b64_dec[1][i] = b64_dec[2][i] = b64_dec[3][i] = B64_BAD;
    for (uint32_t i = 0; i < 64; i++) {
        unsigned char c = (unsigned char)alpha[i];
        b64_dec[0][c] = i << 18, b64_dec[1][c] = i << 12, b64_dec[2][c] = i << 6;
        b64_dec[3][c] = i;
    }
}

/* Decodes base64 text in[0..len) into out, which has room for len / 4 * 3 bytes. Returns the
 * decoded length, or -1 when the text is not base64 (Pub/Sub's JSON carries standard base64
 * with padding, so anything else is a hostile or broken reply: '=' only as the last one or two
 * characters, no whitespace). Our own loop, not OpenSSL's EVP_DecodeBlock: that one looks each
 * character up and tests it on its own (and trims whitespace we never get), 300 ns for a
 * 600-byte event against 170 ns here, and decoding was 2.1% of bepipe-lua's CPU end to end. */
long
bp_pull_data_decode(char *out, const char *in, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (len == 0)
        return 0;
    if (len % 4 != 0 || len / 4 > (size_t)(LONG_MAX / 3))
        return -1;
    pthread_once(&once, b64_init);
    const unsigned char *p = (const unsigned char *)in, *end = p + len;
    unsigned char *o = (unsigned char *)out;
    size_t pad = in[len - 1] != '=' ? 0 : in[len - 2] == '=' ? 2 : 1;
    const unsigned char *last = pad ? end - 4 : end;
    for (; p < last; p += 4, o += 3) {
        uint32_t v = b64_dec[0][p[0]] | b64_dec[1][p[1]] | b64_dec[2][p[2]] | b64_dec[3][p[3]];
        if (v & B64_BAD)
            return -1;
        o[0] = (unsigned char)(v >> 16), o[1] = (unsigned char)(v >> 8), o[2] = (unsigned char)v;
    }
    if (pad) {
        uint32_t v = b64_dec[0][p[0]] | b64_dec[1][p[1]] | (pad == 1 ? b64_dec[2][p[2]] : 0);
        if (v & B64_BAD)
            return -1;
        *o++ = (unsigned char)(v >> 16);
        if (pad == 1)
            *o++ = (unsigned char)(v >> 8);
    }
    return (long)(o - (unsigned char *)out);
}
