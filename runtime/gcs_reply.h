/* gcs_reply.h - whether a GCS reply really is the object resource of the upload we sent. */
#ifndef BP_GCS_REPLY_H
#define BP_GCS_REPLY_H

#include "common.h"

/* Checks a 2xx reply body of an upload (or of an object metadata GET): it must parse as one JSON
 * object naming `bucket`, `name` and `size` (a decimal string in the API, a JSON integer is
 * accepted too). An md5Hash the reply carries must be a string, and equal md5_b64 (the base64 MD5
 * of what we sent) when that is not NULL; a reply without md5Hash passes (composite objects have
 * none). A `kind` other than
 * "storage#object" is refused. Returns 0 when it matches, -1 with the reason in err otherwise.
 * Pure: no allocation outlives the call, no I/O. */
int bp_gcs_reply_check(const char *body, size_t len, const char *bucket, const char *name,
                       size_t size, const char *md5_b64, char *err, size_t errlen) BP_WUR;

#endif
