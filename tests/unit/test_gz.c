/* Unit tests: the archive's gzip (gz.c). The compressor's output (ISA-L's igzip) is one gzip
 * member that zlib's own inflate reads back byte for byte, for objects compressed a chunk at a
 * time with one shared deflate state, interleaved, at every level, compressible or not, up to
 * its cap exactly; the inflater reads it back in bounded steps, reads several members one after
 * another, and refuses what is not gzip (corrupt, cut short, a bad checksum, bytes
 * after the end) with a reason, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gz.h"

/* n bytes of NDJSON lines that look like the archive's (repeated keys, varying values). */
static char *
ndjson(size_t n, unsigned seed)
{
    char *p = malloc(n + 512), line[512];
    size_t len = 0;
    for (unsigned i = 0; len < n; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = snprintf(line, sizeof(line), "{\"event_type\":\"order\",\"order_id\":\"o-%u\","
                         "\"customer_id\":\"c-%u\",\"status\":\"%s\",\"total_amount\":%u.%02u}\n",
                         seed % 100000, (seed >> 8) % 5000, (seed >> 4) % 2 ? "shipped" : "pending",
                         seed % 1000, i % 100);
        memcpy(p + len, line, (size_t)k);
        len += (size_t)k;
    }
    return p;
}

/* Inflates a whole gzip stream with zlib alone (not the code under test). */
static int
zlib_gunzip(const char *in, size_t n, char *out, size_t cap, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + 15) != Z_OK)
        return -1;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    *outlen = z.total_out;
    int rest = (int)z.avail_in;
    inflateEnd(&z);
    return rc == Z_STREAM_END && rest == 0 ? 0 : -1;
}

/* Compresses plain (n bytes) as the cloud store does: pieces of `piece` bytes gathered into
 * chunks of BP_GZ_CHUNK, the rest with last. */
static void
compress_all(struct bp_gz *g, const char *plain, size_t n, size_t piece, bp_buf_t *out)
{
    struct bp_gz_member m;
    memset(&m, 0, sizeof(m));
    size_t start = 0;
    for (size_t off = 0; off < n; off += piece) {
        size_t end = off + piece < n ? off + piece : n;
        if (end - start >= BP_GZ_CHUNK) {
            assert_int_equal(bp_gz_add(g, &m, plain + start, end - start, 0, out), 0);
            start = end;
        }
    }
    assert_int_equal(bp_gz_add(g, &m, plain + start, n - start, 1, out), 0);
    assert_true(m.ended);
    assert_int_equal(bp_gz_add(g, &m, "x", 1, 0, out), -1);     /* nothing after the end */
}

static void
round_trip_by_zlib(void **state)
{
    (void)state;
    struct bp_gz g;
    assert_int_equal(bp_gz_init(&g, 1), 0);
    size_t n = 3 * BP_GZ_CHUNK + 12345;
    char *plain = ndjson(n, 7), *back = malloc(n + 1);
    bp_buf_t out;
    bp_buf_init(&out, n);
    compress_all(&g, plain, n, 400, &out);
    assert_true(bp_gz_magic(out.data, out.len));
    /* archive-like lines compress well even chunk by chunk */
    assert_true(out.len * 3 < n);
    size_t got = 0;
    assert_int_equal(zlib_gunzip(out.data, out.len, back, n + 1, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(back, plain, n);
    /* an empty object is a valid, empty member */
    bp_buf_t empty;
    bp_buf_init(&empty, 1024);
    compress_all(&g, "", 0, 1, &empty);
    assert_int_equal(zlib_gunzip(empty.data, empty.len, back, n, &got), 0);
    assert_int_equal(got, 0);
    bp_buf_free(&empty);
    bp_buf_free(&out);
    free(plain);
    free(back);
    bp_gz_free(&g);
    bp_gz_free(&g);     /* twice: safe */
}

/* Two objects compressed turn about with the one shared state stay independent. */
static void
interleaved_objects(void **state)
{
    (void)state;
    struct bp_gz g;
    assert_int_equal(bp_gz_init(&g, 1), 0);
    size_t n = 2 * BP_GZ_CHUNK;
    char *a = ndjson(n, 1), *b = ndjson(n, 2), *back = malloc(n);
    struct bp_gz_member ma, mb;
    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    bp_buf_t oa, ob;
    bp_buf_init(&oa, n);
    bp_buf_init(&ob, n);
    size_t half = BP_GZ_CHUNK;
    assert_int_equal(bp_gz_add(&g, &ma, a, half, 0, &oa), 0);
    assert_int_equal(bp_gz_add(&g, &mb, b, half, 0, &ob), 0);
    assert_int_equal(bp_gz_add(&g, &ma, a + half, n - half, 1, &oa), 0);
    assert_int_equal(bp_gz_add(&g, &mb, b + half, n - half, 1, &ob), 0);
    size_t got;
    assert_int_equal(zlib_gunzip(oa.data, oa.len, back, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(back, a, n);
    assert_int_equal(zlib_gunzip(ob.data, ob.len, back, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(back, b, n);
    bp_buf_free(&oa);
    bp_buf_free(&ob);
    free(a);
    free(b);
    free(back);
    bp_gz_free(&g);
}

/* The object's cap is the store's: passing it is an error, not a larger object. */
static void
cap_is_an_error(void **state)
{
    (void)state;
    struct bp_gz g;
    struct bp_gz_member m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(bp_gz_init(&g, 1), 0);
    char *plain = ndjson(BP_GZ_CHUNK, 3);
    bp_buf_t out;
    bp_buf_init(&out, 1000);
    assert_int_equal(bp_gz_add(&g, &m, plain, BP_GZ_CHUNK, 1, &out), -1);
    assert_true(out.len <= 1000);
    bp_buf_free(&out);
    free(plain);
    bp_gz_free(&g);
}

/* Every level compresses to one member zlib reads back, archive lines and bytes that do not
 * compress alike (from level 1 igzip stores those; level 0 has fixed codes only and grows them
 * by a quarter); levels outside 0..3 are refused. */
static void
levels_and_incompressible(void **state)
{
    (void)state;
    struct bp_gz g;
    assert_int_equal(bp_gz_init(&g, -1), -1);
    bp_gz_free(&g);
    assert_int_equal(bp_gz_init(&g, 4), -1);
    bp_gz_free(&g);
    size_t n = 2 * BP_GZ_CHUNK + 777;
    char *lines = ndjson(n, 9), *noise = malloc(n), *back = malloc(n + 1);
    unsigned seed = 12345;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        noise[i] = (char)(seed >> 16);
    }
    for (int level = 0; level <= 3; level++) {
        assert_int_equal(bp_gz_init(&g, level), 0);
        const char *plains[2] = { lines, noise };
        for (int k = 0; k < 2; k++) {
            bp_buf_t out;
            bp_buf_init(&out, 2 * n);
            compress_all(&g, plains[k], n, 4096, &out);
            size_t got = 0;
            assert_int_equal(zlib_gunzip(out.data, out.len, back, n + 1, &got), 0);
            assert_int_equal(got, n);
            assert_memory_equal(back, plains[k], n);
            if (k == 0)
                assert_true(out.len * 3 < n);
            else if (level > 0)
                assert_true(out.len < n + n / 50);      /* stored, not grown */
            bp_buf_free(&out);
        }
        bp_gz_free(&g);
    }
    free(lines);
    free(noise);
    free(back);
}

/* An object of two chunks, the second ending it: the return of the second add. */
static int
two_chunks(struct bp_gz *g, const char *plain, size_t n, bp_buf_t *out)
{
    struct bp_gz_member m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(bp_gz_add(g, &m, plain, BP_GZ_CHUNK, 0, out), 0);
    return bp_gz_add(g, &m, plain + BP_GZ_CHUNK, n - BP_GZ_CHUNK, 1, out);
}

/* An object whose gzip bytes fit its cap exactly is written whole; a byte less is an error that
 * never writes past the cap (nor spins). */
static void
cap_exactly(void **state)
{
    (void)state;
    struct bp_gz g;
    assert_int_equal(bp_gz_init(&g, 1), 0);
    size_t n = BP_GZ_CHUNK + 5000;
    char *plain = ndjson(n, 11);
    bp_buf_t big, tight;
    bp_buf_init(&big, 2 * n);
    assert_int_equal(two_chunks(&g, plain, n, &big), 0);
    bp_buf_init(&tight, big.len);
    assert_int_equal(two_chunks(&g, plain, n, &tight), 0);
    assert_int_equal(tight.len, big.len);
    assert_memory_equal(tight.data, big.data, big.len);
    bp_buf_free(&tight);
    bp_buf_init(&tight, big.len - 1);
    assert_int_equal(two_chunks(&g, plain, n, &tight), -1);
    assert_true(tight.len <= big.len - 1);
    bp_buf_free(&tight);
    bp_buf_free(&big);
    free(plain);
    bp_gz_free(&g);
}

/* gzip bytes of plain (n bytes) by the compressor, in *out. */
static void
gz_of(const char *plain, size_t n, bp_buf_t *out)
{
    struct bp_gz g;
    assert_int_equal(bp_gz_init(&g, 1), 0);
    bp_buf_init(out, n + 1024);
    compress_all(&g, plain, n, 1000, out);
    bp_gz_free(&g);
}

/* Inflates in (n bytes) fed `feed` bytes at a time, at most `step` plain bytes per call, as the
 * replay does. Returns 0 or -1 (err set). */
static int
inflate_steps(const char *in, size_t n, size_t feed, size_t step, bp_buf_t *out, char *err,
              size_t errlen, uint64_t *members)
{
    struct bp_gunzip z;
    memset(&z, 0, sizeof(z));
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t f = n - off < feed ? n - off : feed;
        const unsigned char *p = (const unsigned char *)in + off;
        size_t left = f;
        while (left && rc == 0) {
            size_t before = out->len;
            rc = bp_gunzip_run(&z, &p, &left, out, step, err, errlen);
            assert_true(out->len - before <= step);
        }
        off += f;
    }
    if (rc == 0)
        rc = bp_gunzip_end(&z, err, errlen);
    *members = z.members;
    bp_gunzip_free(&z);
    return rc;
}

static void
inflate_bounded_steps(void **state)
{
    (void)state;
    size_t n = BP_GZ_CHUNK + 999;
    char *plain = ndjson(n, 4), err[200];
    bp_buf_t gz, out;
    gz_of(plain, n, &gz);
    bp_buf_init(&out, 2 * n);
    uint64_t members;
    assert_int_equal(inflate_steps(gz.data, gz.len, 1, 7, &out, err, sizeof(err), &members), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, plain, n);
    assert_int_equal(members, 1);
    /* two members one after the other (gzip -c a >> b): both read */
    bp_buf_t two;
    bp_buf_init(&two, 2 * gz.len);
    assert_int_equal(bp_buf_append(&two, gz.data, gz.len), 0);
    assert_int_equal(bp_buf_append(&two, gz.data, gz.len), 0);
    bp_buf_reset(&out);
    assert_int_equal(inflate_steps(two.data, two.len, 65536, 1 << 20, &out, err, sizeof(err),
                                   &members), 0);
    assert_int_equal(out.len, 2 * n);
    assert_int_equal(members, 2);
    bp_buf_free(&two);
    bp_buf_free(&gz);
    bp_buf_free(&out);
    free(plain);
}

/* A small object that inflates to far more is read a step at a time: the input it did not
 * need yet stays with the caller. */
static void
inflate_bomb_is_bounded(void **state)
{
    (void)state;
    size_t n = 24u << 20;
    char *zeros = calloc(1, n);
    bp_buf_t gz, out;
    gz_of(zeros, n, &gz);
    assert_true(gz.len < n / 100);
    struct bp_gunzip z;
    memset(&z, 0, sizeof(z));
    bp_buf_init(&out, 4u << 20);
    const unsigned char *p = (const unsigned char *)gz.data;
    size_t left = gz.len, total = 0;
    char err[200];
    while (left) {
        assert_int_equal(bp_gunzip_run(&z, &p, &left, &out, 4u << 20, err, sizeof(err)), 0);
        assert_true(out.len <= 4u << 20);
        total += out.len;
        bp_buf_reset(&out);
    }
    assert_int_equal(total, n);
    assert_int_equal(bp_gunzip_end(&z, err, sizeof(err)), 0);
    bp_gunzip_free(&z);
    bp_buf_free(&gz);
    bp_buf_free(&out);
    free(zeros);
}

/* Every way a stored object can fail to be gzip gives -1 and a reason. */
static void
inflate_refuses_bad_gzip(void **state)
{
    (void)state;
    size_t n = 100000;
    char *plain = ndjson(n, 5), err[200];
    bp_buf_t gz, out, bad;
    gz_of(plain, n, &gz);
    bp_buf_init(&out, 4 * n);
    bp_buf_init(&bad, 2 * gz.len);
    uint64_t members;
    /* a byte flipped in the deflate data */
    assert_int_equal(bp_buf_append(&bad, gz.data, gz.len), 0);
    bad.data[gz.len / 2] ^= 0x5a;
    err[0] = '\0';
    assert_int_equal(inflate_steps(bad.data, bad.len, 4096, 65536, &out, err, sizeof(err),
                                   &members), -1);
    assert_non_null(strstr(err, "not valid gzip"));
    /* the CRC-32 in the trailer */
    bp_buf_reset(&bad);
    bp_buf_reset(&out);
    assert_int_equal(bp_buf_append(&bad, gz.data, gz.len), 0);
    bad.data[gz.len - 6] ^= 1;
    assert_int_equal(inflate_steps(bad.data, bad.len, 4096, 65536, &out, err, sizeof(err),
                                   &members), -1);
    assert_non_null(strstr(err, "not valid gzip"));
    /* cut short */
    bp_buf_reset(&out);
    assert_int_equal(inflate_steps(gz.data, gz.len - 100, 4096, 65536, &out, err, sizeof(err),
                                   &members), -1);
    assert_non_null(strstr(err, "cut short"));
    /* bytes after the member */
    bp_buf_reset(&bad);
    bp_buf_reset(&out);
    assert_int_equal(bp_buf_append(&bad, gz.data, gz.len), 0);
    assert_int_equal(bp_buf_append(&bad, "{\"a\":1}\n", 8), 0);
    assert_int_equal(inflate_steps(bad.data, bad.len, 4096, 65536, &out, err, sizeof(err),
                                   &members), -1);
    assert_non_null(strstr(err, "after the end"));
    /* not gzip at all */
    bp_buf_reset(&out);
    assert_int_equal(inflate_steps(plain, n, 4096, 65536, &out, err, sizeof(err), &members), -1);
    assert_non_null(strstr(err, "no gzip header"));
    assert_false(bp_gz_magic(plain, n));
    assert_false(bp_gz_magic(gz.data, 1));
    bp_buf_free(&gz);
    bp_buf_free(&bad);
    bp_buf_free(&out);
    free(plain);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_by_zlib),
        cmocka_unit_test(interleaved_objects),
        cmocka_unit_test(cap_is_an_error),
        cmocka_unit_test(levels_and_incompressible),
        cmocka_unit_test(cap_exactly),
        cmocka_unit_test(inflate_bounded_steps),
        cmocka_unit_test(inflate_bomb_is_bounded),
        cmocka_unit_test(inflate_refuses_bad_gzip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
