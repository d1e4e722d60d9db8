/* Fuzz target: the Pub/Sub pull reply scanner (runtime/pull_reply.c) and the base64 decoding of
 * each message's data. Every string it returns must lie inside the body or the reply's arena and
 * be readable for its whole length, and the decoded data must fit the len / 4 * 3 bytes the
 * source reserves (ASan checks both). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pull_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void
touch(const char *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++)
        sink += (unsigned char)p[i];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bp_pull_reply r;
    char err[512];
    if (bp_pull_reply_decode(&r, (const char *)data, size, err, sizeof(err)) != 0)
        return 0;
    for (size_t i = 0; i < r.n; i++) {
        const struct bp_pull_msg *m = &r.msgs[i];
        if (!m->ack_id)
            __builtin_trap();
        touch(m->ack_id, m->ack_id_len);
        touch(m->data_b64, m->data_b64_len);
        touch(m->message_id, m->message_id_len);
        if (m->publish_time)
            touch(m->publish_time, strlen(m->publish_time));
        touch(m->attrs, m->attrs_len);
        /* exactly the room the source reserves, so an overrun is a heap-buffer-overflow */
        size_t room = m->data_b64_len / 4 * 3;
        char *out = malloc(room ? room : 1);
        long n = bp_pull_data_decode(out, m->data_b64 ? m->data_b64 : "", m->data_b64_len);
        if (n > (long)room)
            __builtin_trap();
        touch(out, n > 0 ? (size_t)n : 0);
        free(out);
    }
    bp_pull_reply_free(&r);
    return 0;
}
