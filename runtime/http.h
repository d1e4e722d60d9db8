/* http.h - every HTTP request of the process: one libcurl multi handle driven by the libev loop
 * (no threads, no blocking calls). One attempt per request; retries live in api.c. */
#ifndef BP_HTTP_H
#define BP_HTTP_H

#include <ev.h>

#include "buf.h"

struct bp_http;
struct bp_http_req;

/* Runs once per request, from the loop (never inside a libcurl callback), after which the
 * request is freed. */
typedef void (*bp_http_done_fn)(struct bp_http_req *req, void *arg);

struct bp_http_opts {
    const char *ca_file;       /* extra CA bundle (tests with a self-signed emulator), or NULL */
    long connect_timeout_ms;
    const char *user_agent;
};

struct bp_http_result {
    long status;               /* HTTP status, 0 when no response came */
    int transport_error;       /* CURLcode when the exchange failed below HTTP, else 0 */
    const char *error;         /* transport error text */
    const char *body;          /* response body (not NUL-terminated; len below) */
    size_t body_len;
    int body_truncated;        /* the body passed the request's cap */
    const char *location;      /* Location header, or NULL */
    const char *range;         /* Range header (GCS resumable uploads), or NULL */
    int metadata_flavor;       /* "Metadata-Flavor: Google" was in the response */
    double seconds;            /* total time */
};

struct bp_http *bp_http_new(struct ev_loop *loop, const struct bp_http_opts *opts, char *err,
                            size_t errlen);
void bp_http_free(struct bp_http *h);
size_t bp_http_active(const struct bp_http *h);

struct bp_http_req *bp_http_req_new(struct bp_http *h, const char *method, const char *url);
int bp_http_req_header(struct bp_http_req *r, const char *header) BP_WUR;
void bp_http_req_body_take(struct bp_http_req *r, char *body, size_t len);
void bp_http_req_body_ref(struct bp_http_req *r, const char *body, size_t len);
void bp_http_req_limits(struct bp_http_req *r, long timeout_ms, size_t max_response);
int bp_http_req_send(struct bp_http_req *r, bp_http_done_fn done, void *arg) BP_WUR;
void bp_http_req_cancel(struct bp_http_req *r);
const struct bp_http_result *bp_http_req_result(const struct bp_http_req *r);

#endif
