/* api.h - one call to a Google API: the HTTP request plus everything the APIs share, the
 * bearer token (refreshed before it expires, and once more on a 401) and one retry policy:
 * 408, 429, 5xx, BigQuery's rateLimitExceeded 403, timeouts and connection errors are retried
 * with exponential backoff and full jitter, up to an attempt limit and a deadline. */
#ifndef BP_API_H
#define BP_API_H

#include <ev.h>

#include "auth.h"
#include "http.h"

struct bp_api;

/* Response bodies longer than this end a call with body_truncated (bp_api_call_capped sets
 * another cap). */
#define BP_API_MAX_REPLY ((size_t)64 * 1024 * 1024)

/* res is the last attempt's outcome (status 0 + error text when no response came); valid only
 * during the call. */
typedef void (*bp_api_done_fn)(void *arg, const struct bp_http_result *res);

struct bp_api_retry {
    int max_attempts;       /* including the first */
    double base_delay;      /* seconds; attempt n waits uniform(0, min(max, base * 2^n)) */
    double max_delay;
    double deadline;        /* seconds from the first attempt; no retry starts after it */
};

struct bp_api_stats {
    unsigned long calls, retries, failures, token_refreshes, token_failures;
};

struct bp_api *bp_api_new(struct ev_loop *loop, struct bp_http *http, struct bp_auth *auth,
                          const struct bp_api_retry *retry);
void bp_api_free(struct bp_api *api);
const struct bp_api_stats *bp_api_stats(const struct bp_api *api);
size_t bp_api_in_flight(const struct bp_api *api);
int bp_api_retryable(const struct bp_http_result *res);
double bp_api_backoff(struct bp_api *api, int attempt);

/* Starts a call. body (may be NULL) is taken: freed when the call ends. content_type may be
 * NULL. extra_header (may be NULL) is one more "Name: value". Returns 0; done runs exactly once,
 * from the loop. */
int bp_api_call(struct bp_api *api, const char *method, const char *url, const char *content_type,
                const char *extra_header, char *body, size_t body_len, long timeout_ms,
                bp_api_done_fn done, void *arg) BP_WUR;
/* The same, with body borrowed: it must stay valid until done runs (large uploads). */
int bp_api_call_ref(struct bp_api *api, const char *method, const char *url,
                    const char *content_type, const char *body, size_t body_len, long timeout_ms,
                    bp_api_done_fn done, void *arg) BP_WUR;

/* The same as bp_api_call without an extra header, with the response body capped at max_reply
 * bytes instead of BP_API_MAX_REPLY (a longer body ends the call with body_truncated set): pull
 * replies, whose sum over the pulls in flight bounds the source's memory. */
int bp_api_call_capped(struct bp_api *api, const char *method, const char *url,
                       const char *content_type, char *body, size_t body_len, long timeout_ms,
                       size_t max_reply, bp_api_done_fn done, void *arg) BP_WUR;

/* ---- HTTP answers by API and status, for /metrics (issue 9, item 3) ---- */
enum bp_api_kind { BP_API_PUBSUB, BP_API_BIGQUERY, BP_API_STORAGE, BP_API_OAUTH2, BP_API_OTHER,
                   BP_API_KINDS };
extern const char *const bp_api_kind_names[BP_API_KINDS];
#define BP_API_CODES 600    /* status 0 = no answer (timeout, reset, refused) */
/* Which API a URL calls, from its path (emulator URLs have no Google host name). */
int bp_api_kind_of(const char *url);
/* HTTP answers of kind with status code (0..BP_API_CODES-1) so far, every attempt counted. */
unsigned long bp_api_http_count(const struct bp_api *api, int kind, int code);

#endif
