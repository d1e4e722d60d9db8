/* proto_wire_read.h - a protobuf wire reader for the tests of runtime/proto_*.c, written apart
 * from the code it checks (which writes with protobuf-c or by hand): the fields of one message
 * body, each as its number, wire type and value. Aborts the test on bytes that are not a
 * message. */
#ifndef BP_TEST_PROTO_WIRE_READ_H
#define BP_TEST_PROTO_WIRE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wf {
    uint32_t num;
    int wt;
    uint64_t u;             /* varint / fixed64 / fixed32 */
    const uint8_t *p;       /* length-delimited */
    size_t n;
};

static uint64_t
wire_varint(const uint8_t *p, size_t n, size_t *i)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*i >= n)
            fail_msg("varint runs past the end");
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail_msg("varint longer than 10 bytes");
    return 0;
}

/* The fields of p[0..n) into out[0..max); returns their count. */
static __attribute__((unused)) size_t
wire_fields(const void *vp, size_t n, struct wf *out, size_t max)
{
    const uint8_t *p = vp;
    size_t i = 0, k = 0;
    while (i < n) {
        uint64_t key = wire_varint(p, n, &i);
        struct wf f = {(uint32_t)(key >> 3), (int)(key & 7), 0, NULL, 0};
        if (f.wt == 0) {
            f.u = wire_varint(p, n, &i);
        } else if (f.wt == 1 || f.wt == 5) {
            size_t w = f.wt == 1 ? 8 : 4;
            if (n - i < w)
                fail_msg("fixed value runs past the end");
            for (size_t b = 0; b < w; b++)
                f.u |= (uint64_t)p[i + b] << (8 * b);
            i += w;
        } else if (f.wt == 2) {
            uint64_t len = wire_varint(p, n, &i);
            if (len > n - i)
                fail_msg("length %llu runs past the end", (unsigned long long)len);
            f.p = p + i;
            f.n = (size_t)len;
            i += (size_t)len;
        } else {
            fail_msg("wire type %d", f.wt);
        }
        if (k == max)
            fail_msg("more than %zu fields", max);
        out[k++] = f;
    }
    return k;
}

/* The k-th (0-based) field numbered num among fs[0..n), or NULL. */
static __attribute__((unused)) const struct wf *
wire_find(const struct wf *fs, size_t n, uint32_t num, size_t k)
{
    for (size_t i = 0; i < n; i++)
        if (fs[i].num == num && k-- == 0)
            return &fs[i];
    return NULL;
}

/* Whether a length-delimited field holds exactly the string s. */
static __attribute__((unused)) int
wire_is(const struct wf *f, const char *s)
{
    return f && f->wt == 2 && f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

#endif
