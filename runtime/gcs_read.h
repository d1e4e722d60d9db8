/* gcs_read.h - reading a bucket back (replay): objects.list with every page followed, and one
 * byte range of one object generation (objects.get alt=media with a Range header), through the
 * API layer and its one retry policy (5xx, 429, timeouts, resets are retried there). */
#ifndef BP_GCS_READ_H
#define BP_GCS_READ_H

#include "api.h"
#include "common.h"

/* One listed object: name, generation (decimal string, as the API gives it) and size; the
 * strings are lent for the call. Returns 0, or -1 to stop the listing (done then says so). */
typedef int (*bp_gcs_item_fn)(void *arg, const char *name, const char *generation,
                              uint64_t size);
/* The listing ended: ok = 1 after the last page, else 0 with the reason in err. */
typedef void (*bp_gcs_list_done_fn)(void *arg, int ok, const char *err);

/* Lists gs://bucket/prefix* through api at base (".../storage/v1") with maxResults 1000,
 * following nextPageToken until a page has none (a server may answer fewer items than asked);
 * item runs per object in the API's (name) order, then done once, always from the loop, never
 * inside this call. Returns 0 when started, -1 (err set, no callback) when not. */
int bp_gcs_list_start(struct bp_api *api, const char *base, const char *bucket,
                      const char *prefix, bp_gcs_item_fn item, bp_gcs_list_done_fn done,
                      void *arg, char *err, size_t errlen) BP_WUR;

/* The range arrived: status 0 with the bytes (lent for the call; fewer than asked only at the
 * object's end), or -1 with the reason in err: a permanent answer (404: the object or that
 * generation is gone, 403) or the retries exhausted. */
typedef void (*bp_gcs_get_done_fn)(void *arg, int status, const char *data, size_t len,
                                   const char *err);

/* Fetches bytes [off, off + len) of generation `generation` of gs://bucket/name, so memory stays
 * at one range whatever the object's size. The bytes are the stored ones (Accept-Encoding:
 * gzip): a gzip object's compressed bytes, which the caller inflates. size is the object's
 * stored size as listed: a 200 reply (the Range ignored) is the whole object and must have
 * exactly that many bytes, else done gets -1 (a server or proxy that decompressed a gzip
 * object sends other bytes, which would be misread at stored offsets). done runs once, from
 * the loop. Returns 0 when started, -1 (err set, no callback) when not. */
int bp_gcs_get_start(struct bp_api *api, const char *base, const char *bucket, const char *name,
                     const char *generation, uint64_t size, uint64_t off, size_t len,
                     bp_gcs_get_done_fn done, void *arg, char *err, size_t errlen) BP_WUR;

/* "403 from storage: <the API's message>" or "no answer: <transport error>", for logs. */
void bp_gcs_describe(const struct bp_http_result *res, char *out, size_t outlen);

#endif
