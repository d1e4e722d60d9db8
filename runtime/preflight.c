/* preflight.c - before the first pull, every destination and the source are checked the way
 * Vector's sink health checks do: one GET each (the subscription, the dataset, every routed table
 * and the dead-letter table, the bucket), through the same API layers the pipeline uses, so the
 * credentials are checked too (the first call needs a token). A failure ends in one line that
 * names what is missing and how to fix it, within preflight_seconds, instead of a daemon that
 * retries forever with nothing outside the log to show it.
 *
 * What the IAM roles the pipeline needs do not allow is not a failure: roles/pubsub.subscriber
 * cannot subscriptions.get and roles/storage.objectCreator cannot buckets.get, so a 403 there
 * leaves the check to the first real pull or upload (where a 403 names the role). */
#include "preflight.h"
#include "log.h"
#include "timefmt.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check {
    struct bp_preflight *p;
    struct bp_api *api;
    char *what;                  /* "subscription projects/P/subscriptions/S" */
    char *url;
    char *fix;                   /* what to do when it is missing (404) */
    const char *role;            /* the role a 403 points at */
    int forbidden_ok;
    char *failure;               /* why it failed, or NULL */
};

struct bp_preflight {
    struct ev_loop *loop;
    double timeout;
    const char *auth_hint;       /* the ADC order tried, for a credentials failure */
    struct check *v;
    size_t n, cap, pending;
    int done_called;
    char failure[1024];
    ev_timer timer;              /* the deadline and a watch on token failures */
    double started;
    bp_preflight_done_fn done;
    void *arg;
};

/* Creates an empty preflight on loop; done runs once, from the loop. auth_hint (static or
 * outliving p) says which credentials were found, for a message when no token comes. */
struct bp_preflight *
bp_preflight_new(struct ev_loop *loop, double timeout, const char *auth_hint,
                 bp_preflight_done_fn done, void *arg)
{
    struct bp_preflight *p = bp_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->timeout = timeout;
    p->auth_hint = auth_hint;
    p->done = done;
    p->arg = arg;
    return p;
}

/* Adds a GET of url through api. what names the resource in messages; fix says how to create
 * it; role is the IAM role that grants the call (named on a 403); forbidden_ok makes a 403 a
 * pass (the role the pipeline needs cannot read this resource). */
void
bp_preflight_add(struct bp_preflight *p, struct bp_api *api, const char *url, const char *what,
                 const char *fix, const char *role, int forbidden_ok)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->v = bp_xrealloc(p->v, p->cap * sizeof(*p->v));
    }
    p->v[p->n++] = (struct check){ p, api, bp_xstrdup(what), bp_xstrdup(url), bp_xstrdup(fix),
                                   role, forbidden_ok, NULL };
}

static void
finish(struct bp_preflight *p, int ok)
{
    if (p->done_called)
        return;
    /* the first check in order that failed is the one reported: a missing dataset, not the
     * tables that are missing with it, whichever answered first */
    for (size_t i = 0; i < p->n && !p->failure[0]; i++)
        if (p->v[i].failure)
            snprintf(p->failure, sizeof(p->failure), "%s", p->v[i].failure);
    ok = ok && !p->failure[0];
    p->done_called = 1;
    ev_timer_stop(p->loop, &p->timer);
    p->done(p->arg, ok, ok ? "" : p->failure);
}

static void
fail(struct bp_preflight *p, const char *fmt, ...) BP_PRINTF(2, 3);

static void
fail(struct bp_preflight *p, const char *fmt, ...)
{
    if (p->failure[0])
        return;   /* the first failure is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->failure, sizeof(p->failure), fmt, ap);
    va_end(ap);
}

/* The API's own words for an error, from its envelope {"error":{"message":...}}, cut short. */
static void
api_message(const struct bp_http_result *res, char *out, size_t outlen)
{
    const char *m = res->body_len ? memmem(res->body, res->body_len, "\"message\"", 9) : NULL;
    out[0] = '\0';
    if (!m) {
        snprintf(out, outlen, "%s", res->error ? res->error : "");
        return;
    }
    const char *end = res->body + res->body_len, *q = memchr(m + 9, '"', (size_t)(end - m - 9));
    if (!q)
        return;
    const char *close = memchr(q + 1, '"', (size_t)(end - q - 1));
    size_t len = close ? (size_t)(close - q - 1) : 0;
    snprintf(out, outlen, "%.*s", (int)(len > 200 ? 200 : len), q + 1);
}

static void
check_fail(struct check *c, const char *fmt, ...) BP_PRINTF(2, 3);

static void
check_fail(struct check *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    free(c->failure);
    c->failure = bp_xstrdup(buf);
}

/* A subscription with exactly-once delivery answers a refused acknowledge with per-id results,
 * which the source reads (transient failures go again, expired ids are dropped and redelivered):
 * said once at start, so the operator knows which delivery the pipeline runs with. */
static void
note_subscription(const struct check *c, const struct bp_http_result *res)
{
    if (strncmp(c->what, "subscription ", 13) != 0 || !res->body_len)
        return;
    json_t *root = json_loadb(res->body, res->body_len, 0, NULL);
    if (json_is_true(json_object_get(root, "enableExactlyOnceDelivery")))
        bp_log(BP_LOG_INFO, "preflight", "%s has exactly-once delivery: each ack id's result is "
               "read (transient failures are sent again, expired ids redelivered)", c->what);
    json_decref(root);
}

static void
check_done(void *arg, const struct bp_http_result *res)
{
    struct check *c = arg;
    struct bp_preflight *p = c->p;
    char msg[256];
    api_message(res, msg, sizeof(msg));
    if (res->status == 200) {
        bp_log(BP_LOG_DEBUG, "preflight", "%s: ok", c->what);
        note_subscription(c, res);
    } else if (res->status == 404) {
        check_fail(c, "%s does not exist: %s", c->what, c->fix);
    } else if (res->status == 403 && c->forbidden_ok) {
        bp_log(BP_LOG_INFO, "preflight", "%s: not readable with the pipeline's roles (403); the "
               "first real call checks it", c->what);
    } else if (res->status == 403) {
        check_fail(c, "%s: permission denied (403: %s); the service account needs %s", c->what, msg,
             c->role);
    } else if (res->status == 401) {
        check_fail(c, "%s: the credentials were refused (401: %s); check %s", c->what, msg,
             p->auth_hint);
    } else {
        check_fail(c, "%s: cannot be checked (%s%ld %s)", c->what, res->status ? "HTTP " : "",
             res->status, msg);
    }
    if (--p->pending == 0)
        finish(p, 1);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_preflight *p = w->data;
    (void)loop;
    (void)revents;
    for (size_t i = 0; i < p->n; i++) {
        const char *terr = bp_api_token_error(p->v[i].api);
        if (terr) {
            fail(p, "no access token: %s (%s). Run `gcloud auth application-default login`, or "
                 "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; for the "
                 "local emulator set PUBSUB_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST and "
                 "STORAGE_EMULATOR_HOST", p->auth_hint, terr);
            finish(p, 0);
            return;
        }
    }
    if (bp_time_mono() - p->started > p->timeout) {
        fail(p, "no answer within preflight_seconds (%.0f s) from %s", p->timeout,
             p->pending ? "the APIs" : "?");
        finish(p, 0);
    }
}

/* Starts every check; done(arg, ok, message) runs once from the loop: ok = 1 when all passed,
 * else 0 with one line saying what is missing and how to fix it. Calls still in flight when it
 * fails are left to the API layer (bp_api_free drops them). */
void
bp_preflight_start(struct bp_preflight *p)
{
    p->started = bp_time_mono();
    ev_timer_init(&p->timer, on_timer, 0.1, 0.1);
    p->timer.data = p;
    ev_timer_start(p->loop, &p->timer);
    p->pending = p->n;
    for (size_t i = 0; i < p->n; i++) {
        struct check *c = &p->v[i];
        if (bp_api_call(c->api, "GET", c->url, NULL, NULL, NULL, 0, 30000, check_done, c) != 0) {
            fail(p, "%s: cannot start the request", c->what);
            p->pending--;
        }
    }
    if (p->pending == 0)
        finish(p, 1);
}

/* Frees p. Its calls must have answered or been dropped (bp_api_free) first. */
void
bp_preflight_free(struct bp_preflight *p)
{
    if (!p)
        return;
    ev_timer_stop(p->loop, &p->timer);
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].what);
        free(p->v[i].url);
        free(p->v[i].fix);
        free(p->v[i].failure);
    }
    free(p->v);
    free(p);
}
