/* gcs_reply.c - reads a GCS object resource and compares it with what we uploaded. A 200 whose
 * body is empty, not JSON, truncated or about another object is not proof that our bytes are
 * stored (a proxy, a broken connection or a hostile server can answer so), so only a reply that
 * names our bucket, name and size counts as stored.
 *
 * Why not a hash of every object: OpenSSL's MD5 runs at ~850 MB/s on this machine, so hashing
 * each archive object would cost ~1.2 CPU-s per GB archived, for a check that TLS and the size
 * already make nearly redundant (the bytes reach the server intact, or the connection fails).
 * CRC32C would be cheaper in hardware but is not in OpenSSL. So md5Hash is compared only when the
 * caller already has the MD5 (after a 412, when it is needed to tell our earlier attempt from
 * another writer's object); size, bucket and name are compared always. */
#include "gcs_reply.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The size field as a number: a decimal string per the API, an integer from lenient servers. */
static int
reply_size(json_t *v, uintmax_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        *out = (uintmax_t)json_integer_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 20)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    *out = strtoumax(s, NULL, 10);
    return errno ? -1 : 0;
}

/* Whether object member key is the string want (compared with the string's own length, so a
 * "\u0000" inside it cannot make a prefix match). */
static int
same_string(json_t *root, const char *key, const char *want)
{
    json_t *v = json_object_get(root, key);
    return json_is_string(v) && json_string_length(v) == strlen(want) &&
           memcmp(json_string_value(v), want, strlen(want)) == 0;
}

int
bp_gcs_reply_check(const char *body, size_t len, const char *bucket, const char *name,
                   size_t size, const char *md5_b64, char *err, size_t errlen)
{
    json_error_t je;
    int rc = -1;
    uintmax_t got = 0;
    json_t *root = len ? json_loadb(body, len, 0, &je) : NULL;
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "reply is not a JSON object%s%s", len ? ": " : " (empty)",
                 len && !root ? je.text : "");
        goto out;
    }
    json_t *kind = json_object_get(root, "kind");
    if (kind && !same_string(root, "kind", "storage#object")) {
        snprintf(err, errlen, "reply is not an object resource (kind)");
        goto out;
    }
    if (!same_string(root, "bucket", bucket) || !same_string(root, "name", name)) {
        snprintf(err, errlen, "reply names another bucket or object");
        goto out;
    }
    if (reply_size(json_object_get(root, "size"), &got) != 0 || got != size) {
        snprintf(err, errlen, "reply size is not the %zu bytes sent", size);
        goto out;
    }
    json_t *md5 = json_object_get(root, "md5Hash");
    if (md5 && (!json_is_string(md5) || (md5_b64 && !same_string(root, "md5Hash", md5_b64)))) {
        snprintf(err, errlen, "reply md5Hash is not the MD5 of the bytes sent");
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
