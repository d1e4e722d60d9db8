/* pull_reply.h - reads a Pub/Sub pull reply (a scanner for its one shape, pull_reply.c). */
#ifndef BP_PULL_REPLY_H
#define BP_PULL_REPLY_H

#include "common.h"

#include <stddef.h>

struct lua_State;
struct bp_pull_chunk;

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
    const char *attrs;          /* attributes as the JSON text they came as, or NULL when none */
    size_t attrs_len;
    int delivery_attempt;       /* deliveryAttempt (subscriptions with a dead-letter policy), else 0 */
};

struct bp_pull_reply {
    struct bp_pull_chunk *arena; /* strings that had escapes, unescaped; publishTime copies */
    struct bp_pull_msg *msgs;
    size_t n;
};

/* Decodes a pull reply into r: r->msgs[0..n) with strings pointing into body or r's arena, valid
 * while body is and until bp_pull_reply_free. Items without an ackId or a message object are
 * skipped (nothing to ack: the server redelivers them). Returns 0, or -1 with err set (not JSON,
 * or not a JSON object). Never calls back; safe in any callback. */
int bp_pull_reply_decode(struct bp_pull_reply *r, const char *body, size_t len, char *err, size_t errlen) BP_WUR;
void bp_pull_reply_free(struct bp_pull_reply *r);
/* A message's data: base64 text in[0..len) into out (room for len / 4 * 3 bytes). Returns the
 * length, or -1 when it is not base64. */
long bp_pull_data_decode(char *out, const char *in, size_t len) BP_WUR;

#endif
