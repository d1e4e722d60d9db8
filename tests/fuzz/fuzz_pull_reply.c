/* Fuzz target: the Pub/Sub pull reply decoder (runtime/pull_reply.c) in the pipeline's Lua state,
 * through the bepipe.json cjson instance. Every string it returns must lie inside memory Lua owns
 * and be readable for its whole length (ASan checks the reads below). */
#include <stdint.h>
#include <string.h>

#include "fuzz_host.h"
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
    if (bp_pull_reply_decode(&r, fuzz_host(), (const char *)data, size, err, sizeof(err)) != 0)
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
    }
    bp_pull_reply_free(&r);
    return 0;
}
