/* pull_reply.h - reads a Pub/Sub pull reply with lua-cjson in the pipeline's Lua state. */
#ifndef BP_PULL_REPLY_H
#define BP_PULL_REPLY_H

#include "lua_host.h"

/* One received message. The strings point into the decoded reply and stay valid until
 * bp_pull_reply_free; none is NUL-terminated except where noted. */
struct bp_pull_msg {
    const char *ack_id;
    size_t ack_id_len;
    const char *data_b64;       /* message.data, base64 text */
    size_t data_b64_len;
    const char *message_id;
    size_t message_id_len;
    const char *publish_time;   /* RFC 3339, NUL-terminated */
    const char *attrs;          /* attributes re-encoded as JSON text, or NULL when none */
    size_t attrs_len;
};

struct bp_pull_reply {
    struct bp_lua_host *host;
    int ref;                    /* registry ref that keeps the decoded table alive */
    struct bp_pull_msg *msgs;
    size_t n;
};

int bp_pull_reply_decode(struct bp_pull_reply *r, struct bp_lua_host *h, const char *body,
                         size_t len, char *err, size_t errlen) BP_WUR;
void bp_pull_reply_free(struct bp_pull_reply *r);

#endif
