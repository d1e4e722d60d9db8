/* http.h - every HTTP request of the process: one libcurl multi handle driven by the libev loop
 * (no threads, no blocking calls). One attempt per request; retries live in api.c.
 * One stuck request never holds up the others: HTTP/2 streams are multiplexed where TLS offers
 * it, HTTP/1.1 opens as many connections to a host as there are requests in flight (no request
 * queues behind a busy connection), and connect and stall timeouts end a request whose server
 * accepted it and went silent long before its total timeout. */
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
void bp_http_req_long_poll(struct bp_http_req *r);
int bp_http_req_send(struct bp_http_req *r, bp_http_done_fn done, void *arg) BP_WUR;
void bp_http_req_cancel(struct bp_http_req *r);
const struct bp_http_result *bp_http_req_result(const struct bp_http_req *r);

/* A request during which no byte moves either way for stall_ms (rounded up to seconds) fails
 * with a timeout, unless its total timeout comes first. Default 60 s: shorter than the
 * long-poll's 90 s, longer than any silence of a healthy Google API. Applies to requests sent
 * after the call. */
void bp_http_set_stall_timeout(struct bp_http *h, long stall_ms);

/* Test hook: the next n bp_http_req_send calls fail as if curl could not start them. */
void bp_http_test_fail_sends(struct bp_http *h, int n);

#endif
