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
    int attempt;
    int auth_retried;
    double started;
    ev_timer backoff;
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
    unsigned long http_codes[BP_API_KINDS][BP_API_CODES];   /* metrics: answers by api, code */
};

static void send_attempt(struct call *c);

/* xorshift64*: jitter only needs to spread retries, not be unpredictable. */
static double
rnd01(struct bp_api *api)
{
    api->rng ^= api->rng >> 12;
    api->rng ^= api->rng << 25;
    api->rng ^= api->rng >> 27;
    return (double)((api->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
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
 * 408, 429, any 5xx, and BigQuery's 403 for rate limits (not quotaExceeded, which lasts). */
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
    if (res->status < 200 || res->status >= 300)
        api->stats.failures++;
    c->done(c->arg, res);
    call_free(c);
}

static void
fail_now(struct call *c, const char *why)
{
    struct bp_http_result res;
    memset(&res, 0, sizeof(res));
    res.error = why;
    res.body = "";
    finish(c, &res);
}

static void
on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    send_attempt(w->data);
}

static void ensure_refresh(struct bp_api *api);

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
    ensure_refresh(api);
}

/* ---- HTTP answers by API and status, for /metrics (issue 9, item 3) ---- */
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
    double elapsed = bp_time_mono() - c->started;
    if (bp_api_retryable(res) && c->attempt + 1 < api->retry.max_attempts &&
        elapsed < api->retry.deadline) {
        double delay = bp_api_backoff(api, c->attempt);
        c->attempt++;
        api->stats.retries++;
        bp_log(BP_LOG_WARN, "api", "%s %s: %s%ld%s; retry %d in %.2f s", c->method, c->url,
               res->status ? "HTTP " : "", res->status, res->error ? res->error : "",
               c->attempt, delay);
        ev_timer_set(&c->backoff, delay, 0.);
        ev_timer_start(api->loop, &c->backoff);
        return;
    }
    /* a final answer the caller handles (404, 409, 412...) is not ours to report */
    if ((res->status < 200 || res->status >= 300) && bp_api_retryable(res))
        bp_log(BP_LOG_ERROR, "api", "%s %s failed after %d attempt(s): %s%ld %.*s%s", c->method,
               c->url, c->attempt + 1, res->status ? "HTTP " : "", res->status,
               (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
               res->error ? res->error : "");
    finish(c, res);
}

static void
send_attempt(struct call *c)
{
    struct bp_api *api = c->api;
    char hdr[4200];
    struct bp_http_req *req = bp_http_req_new(api->http, c->method, c->url);
    int rc = 0;
    if (api->auth && bp_auth_kind(api->auth) != BP_AUTH_NONE) {
        const char *tok = bp_auth_token(api->auth, bp_time_now());
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
    if (c->extra_header)
        rc |= bp_http_req_header(req, c->extra_header);
    rc |= bp_http_req_header(req, "x-goog-api-client: gl-c/11 bepipe-lua/" BP_API_VERSION);
    if (c->body)
        bp_http_req_body_ref(req, c->body, c->body_len);
    bp_http_req_limits(req, c->timeout_ms, c->max_reply);
    if (rc != 0) {
        bp_http_req_cancel(req);
        fail_now(c, "out of memory building the request");
        return;
    }
    if (bp_http_req_send(req, on_response, c) != 0)
        fail_now(c, "cannot start the request");
}

static void
refresh_done(struct bp_http_req *req, void *arg)
{
    struct bp_api *api = arg;
    const struct bp_http_result *res = bp_http_req_result(req);
    char err[512];
    api->refreshing = 0;
    count_http(api, BP_API_OAUTH2, res->status);
    if (bp_auth_refresh_done(api->auth, bp_time_now(), res->status, res->body, res->body_len,
                             res->metadata_flavor, err, sizeof(err)) != 0) {
        api->stats.token_failures++;
        bp_log(BP_LOG_ERROR, "auth", "token refresh failed (%s): %s; calls wait and it is retried",
               res->error ? res->error : "", err);
        return;   /* the refresh timer tries again when the auth module's backoff allows */
    }
    api->stats.token_refreshes++;
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

static void
ensure_refresh(struct bp_api *api)
{
    if (!api->auth || bp_auth_kind(api->auth) == BP_AUTH_NONE || api->refreshing)
        return;
    double now = bp_time_now();
    if (!bp_auth_needs_refresh(api->auth, now))
        return;
    struct bp_auth_request ar;
    char err[512];
    if (bp_auth_refresh_request(api->auth, now, &ar, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "auth", "cannot build the token request: %s", err);
        return;
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
        return;
    }
    api->refreshing = 1;
}

static void
on_refresh_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ensure_refresh(w->data);
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

const struct bp_api_stats *
bp_api_stats(const struct bp_api *api)
{
    return &api->stats;
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

int
bp_api_call(struct bp_api *api, const char *method, const char *url, const char *content_type,
            const char *extra_header, char *body, size_t body_len, long timeout_ms,
            bp_api_done_fn done, void *arg)
{
    send_attempt(start_call(api, method, url, content_type, extra_header, body, body_len,
                            timeout_ms, done, arg));
    return 0;
}

int
bp_api_call_ref(struct bp_api *api, const char *method, const char *url, const char *content_type,
                const char *body, size_t body_len, long timeout_ms, bp_api_done_fn done,
                void *arg)
{
    /* the cast is safe: a borrowed body is only read (bp_http_req_body_ref) and never freed */
    struct call *c = start_call(api, method, url, content_type, NULL, (char *)body, body_len,
                                timeout_ms, done, arg);
    c->borrowed = 1;
    send_attempt(c);
    return 0;
}

int
bp_api_call_capped(struct bp_api *api, const char *method, const char *url,
                   const char *content_type, char *body, size_t body_len, long timeout_ms,
                   size_t max_reply, bp_api_done_fn done, void *arg)
{
    struct call *c = start_call(api, method, url, content_type, NULL, body, body_len, timeout_ms,
                                done, arg);
    c->max_reply = max_reply;
    send_attempt(c);
    return 0;
}
