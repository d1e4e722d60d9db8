/* api.c - calls with retries and tokens on top of http.c. A call waiting for a token sits in a
 * queue until the refresh answers; a refresh starts before the token expires (checked every
 * second), so the pipeline normally never waits. */
#include "api.h"
#include "log.h"
#include "timefmt.h"

#ifndef BP_API_VERSION
#define BP_API_VERSION "0.1.0"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct call {
    struct bp_api *api;
    char *method;
    char *url;
    char *content_type;
    char *extra_header;
    char *body;              /* owned unless borrowed */
    size_t body_len;
    int borrowed;
    long timeout_ms;
    size_t max_reply;        /* response bodies past this are cut (body_truncated) */
    int long_poll;           /* bp_http_req_long_poll */
    int attempt;
    int auth_retried;
    double started;
    ev_timer backoff;        /* the wait before the next attempt, or 0 s after a failed start */
    const char *start_error; /* set when the attempt could not start: the timer reports it */
    bp_api_done_fn done;
    void *arg;
    struct call *next_waiting;
    struct call *prev, *next;    /* every live call, so bp_api_free can free them */
};

struct bp_api {
    struct ev_loop *loop;
    struct bp_http *http;
    struct bp_auth *auth;
    struct bp_api_retry retry;
    uint64_t rng;
    struct call *waiting, *waiting_tail;
    struct call *calls;
    int refreshing;
    ev_timer refresh_timer;
    size_t in_flight;
    struct bp_api_stats stats;
    char token_error[512];       /* why the last refresh failed; "" after a success */
    unsigned long http_codes[BP_API_KINDS][BP_API_CODES];   /* metrics: answers by api, code */
};

static void send_attempt(struct call *c);

/* xorshift64*: jitter only needs to spread retries, not be unpredictable. */
static double
rnd01_state(uint64_t *rng)
{
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    return (double)((*rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double
rnd01(struct bp_api *api)
{
    return rnd01_state(&api->rng);
}

/* Full jitter: uniform(0, min(max_delay, base * 2^attempt)) (AWS's analysis: it spreads retries
 * of many clients best). */
double
bp_api_backoff(struct bp_api *api, int attempt)
{
    double cap = api->retry.base_delay * pow(2.0, attempt < 30 ? attempt : 30);
    if (cap > api->retry.max_delay)
        cap = api->retry.max_delay;
    return cap * rnd01(api);
}

/* Whether a failed attempt is worth repeating: no response at all (timeout, reset, refused),
 * 408, 429, any 5xx, and BigQuery's 403 for rate limits (not quotaExceeded, which lasts
 * minutes: bp_api_refused_transient, and the caller pauses). */
int
bp_api_retryable(const struct bp_http_result *res)
{
    if (res->status == 0)
        return 1;
    if (res->status == 408 || res->status == 429 || res->status >= 500)
        return 1;
    if (res->status == 403 && res->body_len) {
        /* body is not NUL-terminated; memmem keeps to its length */
        if (memmem(res->body, res->body_len, "rateLimitExceeded", 17) ||
            memmem(res->body, res->body_len, "userRateLimitExceeded", 21))
            return 1;
    }
    return 0;
}

/* A refusal that often passes by itself (api.h): 403 other than the rate limits the retry
 * policy covers (quotaExceeded lasts minutes; a grant takes minutes to propagate) and 404 (a
 * table being recreated). Too long for the call's own retries: the caller pauses. */
int
bp_api_refused_transient(const struct bp_http_result *res)
{
    return (res->status == 403 || res->status == 404) && !res->body_truncated &&
           !bp_api_retryable(res);
}

/* Not a usable answer (api.h): the test callers share for "count this as a failure". */
int
bp_api_failed(const struct bp_http_result *res)
{
    return res->status < 200 || res->status >= 300 || res->body_truncated;
}

/* Repeating the request cannot help until someone changes something (api.h lists the cases);
 * the operability checks and the callers' logs use it to say so. */
int
bp_api_permanent(const struct bp_http_result *res)
{
    if (res->status == 0 || (res->status >= 200 && res->status < 300) || bp_api_retryable(res))
        return 0;
    if (res->status == 409 || res->status == 412)
        return 0;   /* the caller's condition (exists, name taken): neither a success nor broken */
    return 1;       /* 1xx as final, 3xx, and the 4xx left (400, 401, 403, 404, 405, 413...) */
}

/* Seeds from the time and the struct's address, so streams started together spread apart. */
void
bp_backoff_init(struct bp_backoff *b, double base, double max)
{
    b->base = base > 0 ? base : 0.1;
    b->max = max > b->base ? max : b->base;
    b->failures = 0;
    b->rng = ((uint64_t)(bp_time_now() * 1e6) ^ (uint64_t)(uintptr_t)b) | 1;
}

/* Equal jitter on a doubling cap (api.h): uniform(cap/2, cap). The count stops at 1,000 so it
 * never wraps, and the exponent at 30 so pow stays finite. */
double
bp_backoff_fail(struct bp_backoff *b)
{
    if (b->failures < 1000)
        b->failures++;
    unsigned n = b->failures - 1;
    double cap = b->base * pow(2.0, n < 30 ? n : 30);
    if (cap > b->max)
        cap = b->max;
    return cap / 2 + cap / 2 * rnd01_state(&b->rng);
}

/* A success ends the run of failures. */
void
bp_backoff_reset(struct bp_backoff *b)
{
    b->failures = 0;
}

static void
call_free(struct call *c)
{
    struct bp_api *api = c->api;
    if (c->prev)
        c->prev->next = c->next;
    else if (api->calls == c)
        api->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ev_timer_stop(api->loop, &c->backoff);
    free(c->method);
    free(c->url);
    free(c->content_type);
    free(c->extra_header);
    if (!c->borrowed)
        free(c->body);
    free(c);
}

static void
finish(struct call *c, const struct bp_http_result *res)
{
    struct bp_api *api = c->api;
    api->in_flight--;
    if (bp_api_failed(res))
        api->stats.failures++;
    if (bp_api_permanent(res))
        api->stats.permanent++;
    c->done(c->arg, res);
    call_free(c);
}

/* An attempt that could not start is reported from the loop, 0 s later: its outcome (status 0)
 * then goes through the retry policy like a refused connection, and done never runs inside
 * bp_api_call (nor recurses through a caller that starts its next call from done). */
static void
start_failed(struct call *c, const char *why)
{
    c->api->stats.start_failures++;
    c->start_error = why;
    ev_timer_set(&c->backoff, 0., 0.);
    ev_timer_start(c->api->loop, &c->backoff);
}

static void attempt_done(struct call *c, const struct bp_http_result *res);

static void
on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct call *c = w->data;
    (void)loop;
    (void)revents;
    if (!c->start_error) {
        send_attempt(c);
        return;
    }
    struct bp_http_result res;
    memset(&res, 0, sizeof(res));
    res.error = c->start_error;
    res.body = "";
    c->start_error = NULL;
    attempt_done(c, &res);
}

static int ensure_refresh(struct bp_api *api);

static void
wait_for_token(struct call *c)
{
    struct bp_api *api = c->api;
    c->next_waiting = NULL;
    if (api->waiting_tail)
        api->waiting_tail->next_waiting = c;
    else
        api->waiting = c;
    api->waiting_tail = c;
    /* a refresh that cannot start fails the waiting calls' attempts from the refresh timer,
     * never here: wait_for_token runs inside bp_api_call */
    (void)ensure_refresh(api);
}

/* "HTTP 503", or the transport error when no response came. */
static const char *
outcome(const struct bp_http_result *res, char *buf, size_t len)
{
    if (res->status)
        snprintf(buf, len, "HTTP %ld", res->status);
    else
        snprintf(buf, len, "%s", res->error ? res->error : "no response");
    return buf;
}

/* The retry policy, for every outcome of an attempt: retry after a backoff, or finish. */
static void
attempt_done(struct call *c, const struct bp_http_result *res)
{
    struct bp_api *api = c->api;
    char key[600], what[300];
    /* repeats of one error on one URL are counted, not printed (log.c): the key leaves out the
     * attempt number and delay, which change every time */
    snprintf(key, sizeof(key), "%s %s %ld %s", c->method, c->url, res->status,
             res->error ? res->error : "");
    double elapsed = bp_time_mono() - c->started;
    if (bp_api_retryable(res) && c->attempt + 1 < api->retry.max_attempts &&
        elapsed < api->retry.deadline) {
        double delay = bp_api_backoff(api, c->attempt);
        c->attempt++;
        api->stats.retries++;
        bp_log_rl(BP_LOG_WARN, "api", key, "%s %s: %s; retry %d in %.2f s", c->method, c->url,
                  outcome(res, what, sizeof(what)), c->attempt, delay);
        ev_timer_set(&c->backoff, delay, 0.);
        ev_timer_start(api->loop, &c->backoff);
        return;
    }
    if (res->status >= 300 && res->status < 400) {
        /* callers see only a failed status: say here why it is one */
        api->stats.redirects++;
        bp_log_rl(BP_LOG_ERROR, "api", key, "%s %s: HTTP %ld redirect to %s (redirects are "
                  "not followed: check the endpoint)", c->method, c->url, res->status,
                  res->location ? res->location : "(no Location)");
    }
    /* a final answer the caller handles (404, 409, 412...) is not ours to report */
    if (bp_api_failed(res) && bp_api_retryable(res))
        bp_log_rl(BP_LOG_ERROR, "api", key, "%s %s failed after %d attempt(s): %s %.*s",
                  c->method, c->url, c->attempt + 1, outcome(res, what, sizeof(what)),
                  (int)(res->body_len > 300 ? 300 : res->body_len), res->body);
    finish(c, res);
}

/* ---- HTTP answers by API and status, for /metrics ---- */
const char *const bp_api_kind_names[BP_API_KINDS] = {
    "pubsub", "bigquery", "storage", "oauth2", "other"
};

/* The API a URL belongs to, by path: emulator hosts carry no Google host name. */
int
bp_api_kind_of(const char *url)
{
    if (strstr(url, "/bigquery/"))
        return BP_API_BIGQUERY;
    if (strstr(url, "/storage/v1"))
        return BP_API_STORAGE;
    if (strstr(url, "/subscriptions/") || strstr(url, "/topics/"))
        return BP_API_PUBSUB;
    if (strstr(url, "token") || strstr(url, "oauth2"))
        return BP_API_OAUTH2;
    return BP_API_OTHER;
}

/* Every attempt counts (a 503 that a retry absorbed is still a 503 Google answered). */
static void
count_http(struct bp_api *api, int kind, long status)
{
    api->http_codes[kind][status > 0 && status < BP_API_CODES ? status : 0]++;
}

/* Answers of one (api, status) so far; 0 for indexes out of range. */
unsigned long
bp_api_http_count(const struct bp_api *api, int kind, int code)
{
    if (kind < 0 || kind >= BP_API_KINDS || code < 0 || code >= BP_API_CODES)
        return 0;
    return api->http_codes[kind][code];
}
/* ---- end of the metrics counters ---- */

static void
on_response(struct bp_http_req *req, void *arg)
{
    struct call *c = arg;
    struct bp_api *api = c->api;
    const struct bp_http_result *res = bp_http_req_result(req);
    count_http(api, bp_api_kind_of(c->url), res->status);
    if (res->status == 401 && api->auth && bp_auth_kind(api->auth) != BP_AUTH_NONE &&
        !c->auth_retried) {
        /* an expired or revoked token: refresh once and go again (does not count as a retry) */
        c->auth_retried = 1;
        bp_log(BP_LOG_INFO, "api", "401 from %s: refreshing the token", c->url);
        bp_auth_invalidate(api->auth);
        wait_for_token(c);
        return;
    }
    attempt_done(c, res);
}

static void
send_attempt(struct call *c)
{
    struct bp_api *api = c->api;
    char hdr[4200];
    struct bp_http_req *req = bp_http_req_new(api->http, c->method, c->url);
    int rc = 0;
    if (api->auth && bp_auth_kind(api->auth) != BP_AUTH_NONE) {
        const char *tok = bp_auth_token(api->auth, bp_time_mono());
        if (!tok) {
            bp_http_req_cancel(req);
            wait_for_token(c);
            return;
        }
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", tok);
        rc |= bp_http_req_header(req, hdr);
        const char *qp = bp_auth_quota_project(api->auth);
        if (qp) {
            snprintf(hdr, sizeof(hdr), "x-goog-user-project: %s", qp);
            rc |= bp_http_req_header(req, hdr);
        }
    }
    if (c->content_type) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", c->content_type);
        rc |= bp_http_req_header(req, hdr);
    }
    /* extra headers: one "Name: value" per line */
    for (const char *h = c->extra_header, *nl; h && *h; h = nl ? nl + 1 : NULL) {
        nl = strchr(h, '\n');
        size_t hl = nl ? (size_t)(nl - h) : strlen(h);
        snprintf(hdr, sizeof(hdr), "%.*s", (int)hl, h);
        if (hl)
            rc |= bp_http_req_header(req, hdr);
    }
    rc |= bp_http_req_header(req, "x-goog-api-client: gl-c/11 bepipe-lua/" BP_API_VERSION);
    if (c->body)
        bp_http_req_body_ref(req, c->body, c->body_len);
    bp_http_req_limits(req, c->timeout_ms, c->max_reply);
    if (c->long_poll)
        bp_http_req_long_poll(req);
    if (rc != 0) {
        bp_http_req_cancel(req);
        start_failed(c, "out of memory building the request");
        return;
    }
    if (bp_http_req_send(req, on_response, c) != 0)
        start_failed(c, "cannot start the request");
}

/* Every call waiting for a token gets a failed attempt (status 0, "no token: why"). Called
 * from the refresh's done callback, i.e. from the loop. */
static void
fail_waiting(struct bp_api *api, const char *why)
{
    char msg[600];
    struct bp_http_result res;
    memset(&res, 0, sizeof(res));
    snprintf(msg, sizeof(msg), "no token: %s", why);
    res.error = msg;
    res.body = "";
    /* detached first: a done callback may start calls, which queue on a fresh list */
    struct call *c = api->waiting;
    api->waiting = api->waiting_tail = NULL;
    while (c) {
        struct call *next = c->next_waiting;
        attempt_done(c, &res);
        c = next;
    }
}

static void
refresh_done(struct bp_http_req *req, void *arg)
{
    struct bp_api *api = arg;
    const struct bp_http_result *res = bp_http_req_result(req);
    char err[512];
    api->refreshing = 0;
    count_http(api, BP_API_OAUTH2, res->status);
    if (bp_auth_refresh_done(api->auth, bp_time_mono(), res->status, res->body, res->body_len,
                             res->metadata_flavor, err, sizeof(err)) != 0) {
        api->stats.token_failures++;
        snprintf(api->token_error, sizeof(api->token_error), "%.200s%s%.300s",
                 res->error ? res->error : "", res->error && *res->error ? ": " : "", err);
        bp_log(BP_LOG_ERROR, "auth", "token refresh failed (%s): %s; it is retried",
               res->error ? res->error : "", err);
        /* the refresh timer tries again when the auth module's backoff allows; meanwhile each
         * waiting call has had a failed attempt: it goes through the retry policy (and ends
         * after its attempts or deadline) instead of waiting for a token forever */
        fail_waiting(api, err);
        return;
    }
    api->stats.token_refreshes++;
    api->token_error[0] = '\0';
    bp_log(BP_LOG_DEBUG, "auth", "token refreshed (%s)", bp_auth_kind_name(bp_auth_kind(api->auth)));
    /* send everything that waited */
    struct call *c = api->waiting;
    api->waiting = api->waiting_tail = NULL;
    while (c) {
        struct call *next = c->next_waiting;
        send_attempt(c);
        c = next;
    }
}

/* Starts a token refresh when one is due and none is in flight. Returns 0 (started, or none
 * needed), or -1 when it could not start. */
static int
ensure_refresh(struct bp_api *api)
{
    if (!api->auth || bp_auth_kind(api->auth) == BP_AUTH_NONE || api->refreshing)
        return 0;
    double now = bp_time_mono();   /* expiry and backoff: durations, never the wall clock */
    if (!bp_auth_needs_refresh(api->auth, now))
        return 0;
    struct bp_auth_request ar;
    char err[512];
    if (bp_auth_refresh_request(api->auth, now, bp_time_now(), &ar, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "auth", "cannot build the token request: %s", err);
        return -1;
    }
    struct bp_http_req *req = bp_http_req_new(api->http, ar.method, ar.url);
    int rc = 0;
    for (size_t i = 0; i < ar.nheaders; i++)
        rc |= bp_http_req_header(req, ar.headers[i]);
    if (ar.body) {
        /* the request copies nothing: hand it the body and wipe ours */
        bp_http_req_body_take(req, bp_xstrndup(ar.body, ar.body_len), ar.body_len);
    }
    bp_http_req_limits(req, 30000, 1024 * 1024);
    bp_auth_request_free(&ar);
    if (rc != 0 || bp_http_req_send(req, refresh_done, api) != 0) {
        if (rc != 0)
            bp_http_req_cancel(req);
        bp_log(BP_LOG_ERROR, "auth", "cannot start the token request");
        return -1;
    }
    api->refreshing = 1;
    return 0;
}

static void
on_refresh_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bp_api *api = w->data;
    if (ensure_refresh(api) != 0)
        fail_waiting(api, "cannot start the token request");
}

/* Creates the API layer. auth may be NULL (no tokens). */
struct bp_api *
bp_api_new(struct ev_loop *loop, struct bp_http *http, struct bp_auth *auth,
           const struct bp_api_retry *retry)
{
    struct bp_api *api = bp_xcalloc(1, sizeof(*api));
    api->loop = loop;
    api->http = http;
    api->auth = auth;
    api->retry = *retry;
    if (api->retry.max_attempts < 1)
        api->retry.max_attempts = 1;
    api->rng = (uint64_t)(bp_time_now() * 1e6) ^ 0x9E3779B97F4A7C15ULL;
    if (auth && bp_auth_kind(auth) != BP_AUTH_NONE) {
        ev_timer_init(&api->refresh_timer, on_refresh_timer, 0., 1.);
        api->refresh_timer.data = api;
        ev_timer_start(loop, &api->refresh_timer);
    }
    return api;
}

/* Every call still alive (in flight, waiting for a token or a backoff) is dropped without its
 * callback: used at exit, after the drain, before bp_http_free drops their transfers. */
void
bp_api_free(struct bp_api *api)
{
    if (!api)
        return;
    ev_timer_stop(api->loop, &api->refresh_timer);
    while (api->calls)
        call_free(api->calls);
    free(api);
}

/* Counters since bp_api_new (api.h); valid as long as api. */
const struct bp_api_stats *
bp_api_stats(const struct bp_api *api)
{
    return &api->stats;
}

/* Why the last token refresh failed, or NULL when it did not (or no refresh ran yet). */
const char *
bp_api_token_error(const struct bp_api *api)
{
    return api->token_error[0] ? api->token_error : NULL;
}

/* Calls started and not finished (including those waiting to retry). */
size_t
bp_api_in_flight(const struct bp_api *api)
{
    return api->in_flight;
}

static struct call *
start_call(struct bp_api *api, const char *method, const char *url, const char *content_type,
           const char *extra_header, char *body, size_t body_len, long timeout_ms,
           bp_api_done_fn done, void *arg)
{
    struct call *c = bp_xcalloc(1, sizeof(*c));
    c->api = api;
    c->method = bp_xstrdup(method);
    c->url = bp_xstrdup(url);
    c->content_type = content_type ? bp_xstrdup(content_type) : NULL;
    c->extra_header = extra_header ? bp_xstrdup(extra_header) : NULL;
    c->body = body;
    c->body_len = body_len;
    c->timeout_ms = timeout_ms;
    c->max_reply = BP_API_MAX_REPLY;
    c->done = done;
    c->arg = arg;
    c->started = bp_time_mono();
    ev_timer_init(&c->backoff, on_backoff, 0., 0.);
    c->backoff.data = c;
    c->next = api->calls;
    if (api->calls)
        api->calls->prev = c;
    api->calls = c;
    api->in_flight++;
    api->stats.calls++;
    return c;
}

/* See api.h for the contract (done always from the loop; -1 only on NULL arguments). */
int
bp_api_call(struct bp_api *api, const char *method, const char *url, const char *content_type,
            const char *extra_header, char *body, size_t body_len, long timeout_ms,
            bp_api_done_fn done, void *arg)
{
    if (!api || !method || !url || !done) {
        free(body);
        return -1;
    }
    send_attempt(start_call(api, method, url, content_type, extra_header, body, body_len,
                            timeout_ms, done, arg));
    return 0;
}

/* bp_api_call with a borrowed body (api.h). */
int
bp_api_call_ref(struct bp_api *api, const char *method, const char *url, const char *content_type,
                const char *body, size_t body_len, long timeout_ms, bp_api_done_fn done,
                void *arg)
{
    if (!api || !method || !url || !done)
        return -1;
    /* the cast is safe: a borrowed body is only read (bp_http_req_body_ref) and never freed */
    struct call *c = start_call(api, method, url, content_type, NULL, (char *)body, body_len,
                                timeout_ms, done, arg);
    c->borrowed = 1;
    send_attempt(c);
    return 0;
}

/* The capped calls: body taken, reply capped at max_reply; a long poll has no stall guard. */
static int
call_capped(struct bp_api *api, const char *method, const char *url, const char *content_type,
            char *body, size_t body_len, long timeout_ms, size_t max_reply, int long_poll,
            bp_api_done_fn done, void *arg)
{
    if (!api || !method || !url || !done) {
        free(body);
        return -1;
    }
    struct call *c = start_call(api, method, url, content_type, NULL, body, body_len, timeout_ms,
                                done, arg);
    c->max_reply = max_reply;
    c->long_poll = long_poll;
    send_attempt(c);
    return 0;
}

/* See api.h. */
int
bp_api_call_capped(struct bp_api *api, const char *method, const char *url,
                   const char *content_type, char *body, size_t body_len, long timeout_ms,
                   size_t max_reply, bp_api_done_fn done, void *arg)
{
    return call_capped(api, method, url, content_type, body, body_len, timeout_ms, max_reply, 1,
                       done, arg);
}

/* See api.h. */
int
bp_api_call_small(struct bp_api *api, const char *method, const char *url,
                  const char *content_type, char *body, size_t body_len, long timeout_ms,
                  size_t max_reply, bp_api_done_fn done, void *arg)
{
    return call_capped(api, method, url, content_type, body, body_len, timeout_ms, max_reply, 0,
                       done, arg);
}

/* bp_api_call_ref with the response body capped at max_reply (api.h). */
int
bp_api_call_ref_capped(struct bp_api *api, const char *method, const char *url,
                       const char *content_type, const char *body, size_t body_len,
                       long timeout_ms, size_t max_reply, bp_api_done_fn done, void *arg)
{
    if (!api || !method || !url || !done)
        return -1;
    struct call *c = start_call(api, method, url, content_type, NULL, (char *)body, body_len,
                                timeout_ms, done, arg);
    c->borrowed = 1;
    c->max_reply = max_reply;
    send_attempt(c);
    return 0;
}

/* See api.h. */
void
bp_api_ensure_token(struct bp_api *api)
{
    /* a refresh that cannot start is logged there; the caller asks again on its next try */
    (void)ensure_refresh(api);
}
