/* api.h - one call to a Google API: the HTTP request plus everything the APIs share, the
 * bearer token (refreshed before it expires, and once more on a 401) and one retry policy:
 * 408, 429, 5xx, BigQuery's rateLimitExceeded 403, timeouts, connection errors and requests
 * that could not even start are retried with exponential backoff and full jitter, up to an
 * attempt limit and a deadline. Redirects are never followed: a 3xx is a failure the caller
 * sees (and backs off from, see struct bp_backoff), never retried.
 *
 * Contract: every done callback runs from the loop, never inside bp_api_call*, so a caller may
 * start the next call from its callback without recursing. */
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
    unsigned long start_failures;   /* attempts curl could not start (each one retried) */
    unsigned long redirects;        /* 3xx answers (never followed; the call failed) */
    unsigned long permanent;        /* calls that ended with bp_api_permanent() true */
};

struct bp_api *bp_api_new(struct ev_loop *loop, struct bp_http *http, struct bp_auth *auth,
                          const struct bp_api_retry *retry);
void bp_api_free(struct bp_api *api);
const struct bp_api_stats *bp_api_stats(const struct bp_api *api);
size_t bp_api_in_flight(const struct bp_api *api);
const char *bp_api_token_error(const struct bp_api *api);
double bp_api_backoff(struct bp_api *api, int attempt);
/* Starts a token refresh when the token is missing or due and none is in flight (a caller that
 * sends the token itself, the gRPC store, then reads it with bp_auth_token). */
void bp_api_ensure_token(struct bp_api *api);

/* Whether a failed attempt is worth repeating as it is: no response at all (timeout, reset,
 * refused, not started), 408, 429, any 5xx, and BigQuery's 403 for rate limits. */
int bp_api_retryable(const struct bp_http_result *res);

/* Whether a final answer is a refusal that may pass by itself within minutes: 403 other than
 * the rate limits retried above (quotaExceeded, a permission still propagating) and 404 (a
 * table or bucket being recreated). bp_api_permanent is true for them too (a preflight fails
 * fast on them); a writer pauses instead and gives up only once they last (the stores). */
int bp_api_refused_transient(const struct bp_http_result *res);

/* Whether the call's outcome is not a usable answer: not 2xx (3xx included), or a body past
 * the cap. The caller's own checks (an unparsable body) come on top. */
int bp_api_failed(const struct bp_http_result *res);

/* Whether a final answer is permanent, i.e. repeating the same request cannot succeed until
 * someone changes the configuration or the resource: any 3xx (a wrong endpoint or a proxy:
 * redirects are not followed), 400 (a request-level error; BigQuery's per-row errors come in a
 * 200), 401 (the api already refreshed the token once), 403 other than rate limits, 404, and
 * the other 4xx but 408, 429 and the conditional answers 409 and 412, whose meaning is the
 * caller's (a table that exists, an object name taken). Retryable outcomes and 2xx are not
 * permanent. Callers still back off on permanent errors (struct bp_backoff): they may be fixed
 * by an operator while the daemon runs. */
int bp_api_permanent(const struct bp_http_result *res);

/* Starts a call. body (may be NULL) is taken whatever the result: freed when the call ends, or
 * at once on -1. content_type may be NULL. extra_header (may be NULL) is one more
 * "Name: value". Returns 0 when the call is started: done then runs exactly once, later, from
 * the loop (never inside bp_api_call), whatever happens, including when curl cannot start a
 * transfer (a failed attempt that goes through the retry policy). Returns -1 only when api,
 * method, url or done is NULL: nothing was started and done will NOT run. */
int bp_api_call(struct bp_api *api, const char *method, const char *url, const char *content_type,
                const char *extra_header, char *body, size_t body_len, long timeout_ms,
                bp_api_done_fn done, void *arg) BP_WUR;
/* The same, with body borrowed: it must stay valid until done runs (large uploads); on -1 it
 * is not touched. */
int bp_api_call_ref(struct bp_api *api, const char *method, const char *url,
                    const char *content_type, const char *body, size_t body_len, long timeout_ms,
                    bp_api_done_fn done, void *arg) BP_WUR;

/* The same as bp_api_call without an extra header, with the response body capped at max_reply
 * bytes instead of BP_API_MAX_REPLY (a longer body ends the call with body_truncated set): pull
 * replies, whose sum over the pulls in flight bounds the source's memory. A pull is a long-poll:
 * the server may send nothing until it answers, so timeout_ms alone bounds the call (no stall
 * guard). */
int bp_api_call_capped(struct bp_api *api, const char *method, const char *url,
                       const char *content_type, char *body, size_t body_len, long timeout_ms,
                       size_t max_reply, bp_api_done_fn done, void *arg) BP_WUR;
/* bp_api_call (body taken, no extra header) with the response body capped at max_reply bytes,
 * and not a long-poll: calls whose answer is small and bounded by their request (acknowledge:
 * at most a result per id; insertAll: a verdict per row; an object's metadata), so a server that answers with more is cut off there (a failed
 * attempt) instead of costing BP_API_MAX_REPLY per call in flight. */
int bp_api_call_small(struct bp_api *api, const char *method, const char *url,
                      const char *content_type, char *body, size_t body_len, long timeout_ms,
                      size_t max_reply, bp_api_done_fn done, void *arg) BP_WUR;
/* bp_api_call_ref with the response body capped at max_reply bytes: uploads, whose reply is a
 * small object resource, so a server that answers with more is cut off there (a failed
 * attempt) instead of costing BP_API_MAX_REPLY per upload in flight. */
int bp_api_call_ref_capped(struct bp_api *api, const char *method, const char *url,
                           const char *content_type, const char *body, size_t body_len,
                           long timeout_ms, size_t max_reply, bp_api_done_fn done,
                           void *arg) BP_WUR;

/* Backoff across calls, for a caller that repeats a call after it failed for good (a pull
 * answered 404, 302 or unparsable JSON, or one that failed after all its attempts): the call's
 * own retry policy does not cover those, and starting the next call at once hammers the server
 * (13,900 pulls/s against the emulator). One struct per stream of calls (e.g. the source's
 * pulls), owned by the caller, no allocation:
 *
 *     if (bp_api_failed(res) || !parsed) delay = bp_backoff_fail(&s->pull_backoff);
 *     else bp_backoff_reset(&s->pull_backoff);    (then start the next call after delay)
 *
 * The n-th consecutive failure waits uniform(cap/2, cap) with cap = min(max, base * 2^(n-1))
 * ("equal jitter": never 0, so even the first failures cost at most a few calls a second per
 * stream, and a lasting error one call per ~max seconds). */
struct bp_backoff {
    double base, max;       /* seconds */
    unsigned failures;      /* consecutive, since the last success */
    uint64_t rng;
};

void bp_backoff_init(struct bp_backoff *b, double base, double max);
/* Counts one more consecutive failure; returns the seconds to wait before the next call. */
double bp_backoff_fail(struct bp_backoff *b);
/* A success: the next failure waits about base again. */
void bp_backoff_reset(struct bp_backoff *b);

/* ---- HTTP answers by API and status, for /metrics ---- */
enum bp_api_kind { BP_API_PUBSUB, BP_API_BIGQUERY, BP_API_STORAGE, BP_API_OAUTH2, BP_API_OTHER,
                   BP_API_KINDS };
extern const char *const bp_api_kind_names[BP_API_KINDS];
#define BP_API_CODES 600    /* status 0 = no answer (timeout, reset, refused) */
/* Which API a URL calls, from its path (emulator URLs have no Google host name). */
int bp_api_kind_of(const char *url);
/* HTTP answers of kind with status code (0..BP_API_CODES-1) so far, every attempt counted. */
unsigned long bp_api_http_count(const struct bp_api *api, int kind, int code);

#endif
