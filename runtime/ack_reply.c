/* ack_reply.c - the per-id results Pub/Sub puts in a refused acknowledge / modifyAckDeadline
 * request. On a subscription with exactly-once delivery the whole request is answered 400 (or
 * 412) when any id failed, and the answer's google.rpc.ErrorInfo names each failed id in its
 * metadata: {"error":{"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",
 * "reason":"EXACTLY_ONCE_ACKID_FAILURE","metadata":{"<ackId>":"PERMANENT_FAILURE_INVALID_ACK_ID"
 * | "TRANSIENT_FAILURE_...", ...}}]}}. Ids the metadata does not name succeeded; a TRANSIENT_
 * value is worth repeating, anything else is final (Google's clients read it the same way). */
#include "ack.h"

#include <jansson.h>
#include <string.h>

/* The metadata object of the first ErrorInfo detail that has one, or NULL. */
static json_t *
error_metadata(json_t *root)
{
    json_t *details = json_object_get(json_object_get(root, "error"), "details");
    size_t i;
    json_t *d;
    json_array_foreach(details, i, d) {
        json_t *md = json_object_get(d, "metadata");
        const char *type = json_string_value(json_object_get(d, "@type"));
        if (json_is_object(md) && json_object_size(md) > 0 &&
            (!type || strstr(type, "ErrorInfo")))
            return md;
    }
    return NULL;
}

/* See ack.h. */
int
bp_ack_reply_verdicts(const char *body, size_t len, char *const *ids, size_t n, uint8_t *out)
{
    json_error_t jerr;
    json_t *root = body && len ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!root)
        return -1;
    json_t *md = error_metadata(root);
    int named = 0;
    for (size_t k = 0; k < n; k++) {
        const char *v = md ? json_string_value(json_object_get(md, ids[k])) : NULL;
        if (!v && md && json_object_get(md, ids[k]))
            v = "";   /* named with something that is not text: final, like an unknown value */
        out[k] = !v ? BP_ACKID_OK
                    : strncmp(v, "TRANSIENT_", 10) == 0 ? BP_ACKID_TRANSIENT : BP_ACKID_PERMANENT;
        named += v != NULL;
    }
    json_decref(root);
    return named;
}
