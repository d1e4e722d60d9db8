/* Fuzz target: the archive's gzip (runtime/gz.c). The input read as stored bytes goes through the
 * inflater in bounded steps, fed in pieces, as replay reads an object: it ends with the bytes
 * inflated or a reason, never a crash, and no step adds more than it was allowed (a small input
 * that inflates to a great deal is read a step at a time). The input as plain bytes goes through
 * the compressor in pieces (the shared state reset for each, as the cloud store does) and the
 * result must inflate back to exactly the input, one member. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STEP (64 * 1024)
#define MAX_OUT (16u << 20)     /* stop reading a bomb here: enough to have stepped many times */

static void
inflate_input(const uint8_t *data, size_t size)
{
    struct bp_gunzip z;
    bp_buf_t out;
    char err[300];
    memset(&z, 0, sizeof(z));
    bp_buf_init(&out, STEP + 1);
    size_t feed = size ? (size_t)data[0] % 7 * 997 + 1 : 1, total = 0;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0 && total < MAX_OUT; off += feed) {
        const unsigned char *p = data + off;
        size_t left = size - off < feed ? size - off : feed;
        while (left && rc == 0 && total < MAX_OUT) {
            bp_buf_reset(&out);
            rc = bp_gunzip_run(&z, &p, &left, &out, STEP, err, sizeof(err));
            if (out.len > STEP)
                abort();
            total += out.len;
            if (rc != 0 && !strstr(err, "gzip") && !strstr(err, "memory"))
                abort();    /* a reason that says what failed */
        }
    }
    if (rc == 0 && total < MAX_OUT)
        (void)bp_gunzip_end(&z, err, sizeof(err));
    bp_gunzip_free(&z);
    bp_buf_free(&out);
}

static struct bp_gz gz;
static int gz_ready;

static void
round_trip(const uint8_t *data, size_t size)
{
    struct bp_gz_member m;
    bp_buf_t out, back;
    char err[300];
    if (!gz_ready) {
        if (bp_gz_init(&gz, 1) != 0)
            abort();
        gz_ready = 1;
    }
    memset(&m, 0, sizeof(m));
    /* one-byte pieces cost a block and a sync flush each: ~7 bytes a byte */
    bp_buf_init(&out, 16 * size + 4096);
    bp_buf_init(&back, size + 1);
    size_t piece = size ? (size_t)data[size - 1] * 37 + 1 : 1;
    for (size_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        if (bp_gz_add(&gz, &m, data + off, n, off + n >= size, &out) != 0)
            abort();
    }
    if (!m.ended && bp_gz_add(&gz, &m, "", 0, 1, &out) != 0)
        abort();
    struct bp_gunzip z;
    memset(&z, 0, sizeof(z));
    const unsigned char *p = (const unsigned char *)out.data;
    size_t left = out.len;
    if (bp_gunzip_run(&z, &p, &left, &back, size + 1, err, sizeof(err)) != 0 || left ||
        bp_gunzip_end(&z, err, sizeof(err)) != 0 || z.members != 1 || back.len != size ||
        (size && memcmp(back.data, data, size) != 0))
        abort();
    bp_gunzip_free(&z);
    bp_buf_free(&out);
    bp_buf_free(&back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    inflate_input(data, size);
    round_trip(data, size);
    return 0;
}
