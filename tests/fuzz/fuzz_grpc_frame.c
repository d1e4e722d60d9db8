/* Fuzz target: gRPC reply bytes (runtime/grpc_frame.c). Byte 0 picks the chunk size and the
 * message cap; the rest is a stream's DATA, fed whole and then in chunks: both feeds must see the
 * same messages (count, total length, the same failure) - reassembly may not depend on how the
 * server split its frames. Then the same bytes as trailer values: grpc-status, grpc-message,
 * grpc-status-details-bin (base64 decoded and checked against OpenSSL's encoder). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "grpc_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
    size_t n, bytes;
    uint32_t sum;
};

static int
count(void *arg, const uint8_t *msg, size_t len)
{
    struct tally *t = arg;
    t->n++;
    t->bytes += len;
    for (size_t i = 0; i < len; i++)
        t->sum = t->sum * 31 + msg[i];   /* every byte read: ASan sees a bad pointer */
    return 0;
}

static void
feed(const uint8_t *p, size_t n, size_t chunk, size_t cap, struct tally *t, int *rc, int *partial)
{
    struct bp_grpc_reader r;
    bp_grpc_reader_init(&r, cap);
    *rc = 0;
    for (size_t off = 0; off < n && *rc == 0; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        *rc = bp_grpc_reader_feed(&r, p + off, k, count, t);
    }
    *partial = bp_grpc_reader_partial(&r);
    bp_grpc_reader_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (data[0] & 0x0f) + 1;
    size_t cap = (size_t)1 << ((data[0] >> 4) + 2);   /* 4 bytes .. 128 KiB */
    data++;
    size--;
    struct tally a = {0}, b = {0};
    int rca, rcb, pa, pb;
    feed(data, size, size ? size : 1, cap, &a, &rca, &pa);
    feed(data, size, chunk, cap, &b, &rcb, &pb);
    if (rca != rcb || a.n != b.n || a.bytes != b.bytes || a.sum != b.sum || (!rca && pa != pb))
        abort();

    int code = bp_grpc_parse_status((const char *)data, size);
    if (code > 999 || (code < 0 && code != -1))
        abort();
    char *msg = bp_grpc_percent_decode((const char *)data, size);
    if (!msg || strlen(msg) > size)
        abort();
    free(msg);
    uint8_t *out;
    size_t outlen;
    if (bp_grpc_base64_decode((const char *)data, size, &out, &outlen) == 0) {
        /* decoded bytes encode back to the input, padding aside */
        unsigned char *enc = malloc(4 * ((outlen + 2) / 3) + 1);
        int n = EVP_EncodeBlock(enc, out, (int)outlen);
        size_t bare = size;
        while (bare > 0 && data[bare - 1] == '=')
            bare--;
        size_t m = (size_t)n;
        while (m > 0 && enc[m - 1] == '=')
            m--;
        /* the last character may carry bits a lenient decoder drops: compare all but it */
        if (m != bare || (m > 1 && memcmp(enc, data, m - 1) != 0))
            abort();
        free(enc);
        free(out);
    }
    return 0;
}
