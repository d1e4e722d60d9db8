/* Unit tests: the api layer against tests/tools/hostile_http.py on 127.0.0.1 (a real libcurl
 * multi on a real libev loop): done never runs inside bp_api_call, curl start failures go
 * through the retry policy, 404 and 302 are final failures counted in the stats (302 never
 * followed), 503s are retried with their log lines counted rather than repeated, one hung
 * request does not hold up the others to the same host, a silent server is cut by the stall
 * timeout, a reply past its cap is cut off at the cap without reading the rest; the cloud
 * store's upload queue (never more than max_uploads in flight, every object answered); and the
 * caller's backoff helper (grows, caps, never 0, resets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"
#include "endpoints.h"
#include "log.h"
#include "store.h"
#include "timefmt.h"

static pid_t server_pid;
static char base[64];          /* http://127.0.0.1:PORT */

/* ---- the scripted server ---- */

static const char *ROUTES =
    "{\"/ok\":{\"status\":200,\"body\":\"{\\\"ok\\\":true}\"},"
    "\"/missing\":{\"status\":404,\"body\":\"{\\\"error\\\":\\\"NOT_FOUND\\\"}\"},"
    "\"/moved\":{\"redirect\":\"/ok\",\"status\":302},"
    "\"/unavailable\":{\"status\":503,\"body\":\"busy\"},"
    "\"/hang\":{\"hang\":true},"
    "\"/reset\":{\"reset\":true},"
    "\"/slow\":{\"first_byte_ms\":4000,\"status\":200},"
    "\"/huge\":{\"stream\":8000000000},"
    "\"/upload/storage/v1/b/*\":{\"first_byte_ms\":150,\"status\":404,"
    "\"body\":\"{\\\"error\\\":\\\"no bucket\\\"}\"},"
    "\"/computeMetadata/*\":{\"status\":500,\"body\":\"down\"}}";

/* Starts tests/tools/hostile_http.py with ROUTES; *pid is the server, url gets its base URL.
 * The server dies with this process however it ends: an abort (the alloc-fail sweep's "out of
 * memory") skips every teardown, so the kernel's parent-death signal is armed before the exec,
 * and the server also watches for a new parent itself. Returns 0, or -1. */
static int
start_server(pid_t *pid, char *url, size_t urllen)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t parent = getpid();
    *pid = fork();
    if (*pid < 0)
        return -1;
    if (*pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);  /* the parent is already gone: no server to leave behind */
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("python3", "python3", SRC_ROOT "/tests/tools/hostile_http.py", "--routes", ROUTES,
               (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[256];
    FILE *f = fdopen(fds[0], "r");
    if (!f)
        return -1;
    char *u = fgets(line, sizeof(line), f) ? strstr(line, "http://") : NULL;
    fclose(f);
    if (!u)
        return -1;
    u[strcspn(u, "\r\n")] = '\0';
    snprintf(url, urllen, "%s", u);
    return 0;
}

static int
group_setup(void **state)
{
    (void)state;
    if (start_server(&server_pid, base, sizeof(base)) != 0)
        return -1;
    bp_log_set_level(BP_LOG_INFO);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    return 0;
}

/* ---- a loop, an http engine and an api per test ---- */

struct fixture {
    struct ev_loop *loop;
    struct bp_http *http;
    struct bp_api *api;
    ev_timer guard;
};

struct outcome {
    int done;
    long status;
    int in_call;           /* set around bp_api_call: done must never see it */
    int ran_inside;
    double at;
    char location[256];
    char error[256];
    size_t body_len;
    int body_truncated;
};

static void
on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void
fixture_init(struct fixture *fx, int max_attempts)
{
    char err[256];
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    fx->http = bp_http_new(fx->loop, NULL, err, sizeof(err));
    assert_non_null(fx->http);
    struct bp_api_retry retry = { max_attempts, 0.01, 0.05, 60.0 };
    fx->api = bp_api_new(fx->loop, fx->http, NULL, &retry);
    ev_timer_init(&fx->guard, on_guard, 15., 0.);
}

static void
fixture_free(struct fixture *fx)
{
    ev_timer_stop(fx->loop, &fx->guard);
    bp_api_free(fx->api);
    bp_http_free(fx->http);
    ev_loop_destroy(fx->loop);
}

static void
record(void *arg, const struct bp_http_result *res)
{
    struct outcome *o = arg;
    o->done++;
    o->status = res->status;
    o->ran_inside = o->in_call;
    o->at = bp_time_mono();
    snprintf(o->location, sizeof(o->location), "%s", res->location ? res->location : "");
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
    o->body_len = res->body_len;
    o->body_truncated = res->body_truncated;
}

/* Runs the loop until every outcome is done, or the guard (seconds) fires. */
static void
run_until(struct fixture *fx, struct outcome *o, size_t n, double guard)
{
    ev_timer_set(&fx->guard, guard, 0.);
    ev_timer_start(fx->loop, &fx->guard);
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            left += o[i].done == 0;
        if (!left || !ev_is_active(&fx->guard))
            break;
        ev_run(fx->loop, EVRUN_ONCE);
    }
    ev_timer_stop(fx->loop, &fx->guard);
}

static void
call(struct fixture *fx, const char *path, long timeout_ms, struct outcome *o)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    o->in_call = 1;
    assert_int_equal(bp_api_call(fx->api, "POST", url, "application/json", NULL,
                                 bp_xstrdup("{}"), 2, timeout_ms, record, o), 0);
    o->in_call = 0;
}

/* ---- tests ---- */

static void
test_404_is_async_final_and_counted(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 4);
    call(&fx, "/missing", 10000, &o);
    assert_int_equal(o.done, 0);            /* never inside bp_api_call */
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.ran_inside, 0);
    assert_int_equal(o.status, 404);
    const struct bp_api_stats *st = bp_api_stats(fx.api);
    assert_int_equal(st->calls, 1);
    assert_int_equal(st->retries, 0);      /* final: not the call's to retry */
    assert_int_equal(st->failures, 1);
    assert_int_equal(st->permanent, 1);
    assert_int_equal(bp_api_in_flight(fx.api), 0);
    fixture_free(&fx);
}

static void
test_302_is_a_failure_never_followed(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 4);
    call(&fx, "/moved", 10000, &o);
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.status, 302);
    assert_non_null(strstr(o.location, "/ok"));
    const struct bp_api_stats *st = bp_api_stats(fx.api);
    assert_int_equal(st->redirects, 1);
    assert_int_equal(st->failures, 1);
    assert_int_equal(st->permanent, 1);
    assert_int_equal(st->retries, 0);
    fixture_free(&fx);
}

/* A connection reset without an answer: retried, then a final status 0 with curl's error. */
static void
test_reset_is_retried_then_final(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 3);
    call(&fx, "/reset", 10000, &o);
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.status, 0);
    assert_true(o.error[0] != '\0');
    const struct bp_api_stats *st = bp_api_stats(fx.api);
    assert_int_equal(st->retries, 2);
    assert_int_equal(st->failures, 1);
    assert_int_equal(st->permanent, 0);
    fixture_free(&fx);
}

/* curl_easy_init failing: retried with backoff, done from the loop, never recursing. */
static void
test_start_failure_is_retried_asynchronously(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 4);
    bp_http_test_fail_sends(fx.http, 2);
    call(&fx, "/ok", 10000, &o);
    assert_int_equal(o.done, 0);
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.ran_inside, 0);
    assert_int_equal(o.status, 200);
    const struct bp_api_stats *st = bp_api_stats(fx.api);
    assert_int_equal(st->start_failures, 2);
    assert_int_equal(st->retries, 2);
    fixture_free(&fx);

    /* out of attempts: the failure still comes from the loop */
    struct outcome o2 = { 0 };
    fixture_init(&fx, 1);
    bp_http_test_fail_sends(fx.http, 5);
    call(&fx, "/ok", 10000, &o2);
    assert_int_equal(o2.done, 0);
    run_until(&fx, &o2, 1, 10);
    assert_int_equal(o2.done, 1);
    assert_int_equal(o2.ran_inside, 0);
    assert_int_equal(o2.status, 0);
    assert_non_null(strstr(o2.error, "cannot start"));
    fixture_free(&fx);
}

static void
test_null_arguments_return_minus_one_without_done(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 1);
    assert_int_equal(bp_api_call(fx.api, "POST", NULL, NULL, NULL, bp_xstrdup("x"), 1, 1000,
                                 record, &o), -1);
    assert_int_equal(bp_api_call_ref(fx.api, "POST", base, NULL, "x", 1, 1000, NULL, &o), -1);
    run_until(&fx, &o, 1, 0.3);
    assert_int_equal(o.done, 0);
    assert_int_equal(bp_api_in_flight(fx.api), 0);
    fixture_free(&fx);
}

/* 503 forever: every attempt made, the retry lines counted instead of printed one by one. */
static void
test_503_retries_log_once_with_a_count(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    bp_log_flush();                          /* counts left by earlier tests */
    FILE *mem = open_memstream(&text, &len);
    bp_log_set_stream(mem);
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 6);
    call(&fx, "/unavailable", 10000, &o);
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.status, 503);
    assert_int_equal(bp_api_stats(fx.api)->retries, 5);
    bp_log_flush();
    bp_log_set_stream(NULL);
    fclose(mem);
    size_t retry_lines = 0;
    for (const char *p = text; (p = strstr(p, "; retry ")); p++)
        retry_lines++;
    assert_int_equal(retry_lines, 2);       /* the first, and the count of the other 4 */
    assert_non_null(strstr(text, "(repeated 4 times in"));
    assert_non_null(strstr(text, "failed after 6 attempt(s): HTTP 503"));
    free(text);
    fixture_free(&fx);
}

/* 20 requests hang on one host (more than any per-host connection cap); one more
 * request to that host completes at once. */
static void
test_hung_requests_do_not_block_others(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome hung[20], ok = { 0 };
    memset(hung, 0, sizeof(hung));
    fixture_init(&fx, 1);
    for (size_t i = 0; i < BP_ARRAY_LEN(hung); i++)
        call(&fx, "/hang", 30000, &hung[i]);
    run_until(&fx, &ok, 1, 0.5);          /* let the hung ones get their connections */
    double t0 = bp_time_mono();
    call(&fx, "/ok", 30000, &ok);
    run_until(&fx, &ok, 1, 5);
    assert_int_equal(ok.done, 1);
    assert_int_equal(ok.status, 200);
    assert_true(ok.at - t0 < 2.0);
    for (size_t i = 0; i < BP_ARRAY_LEN(hung); i++)
        assert_int_equal(hung[i].done, 0);
    fixture_free(&fx);                       /* drops the hung calls without callbacks */
}

/* A server that accepted the request and stays silent is cut by the stall timeout, well before
 * the call's total timeout (a long-poll's 90 s). */
static void
test_silent_server_is_cut_by_the_stall_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 1);
    bp_http_set_stall_timeout(fx.http, 1000);
    double t0 = bp_time_mono();
    call(&fx, "/slow", 90000, &o);
    run_until(&fx, &o, 1, 10);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.status, 0);
    assert_true(o.at - t0 < 3.5);           /* the server would answer after 4 s */
    fixture_free(&fx);
}

/* A token that cannot be had: the waiting call's attempts fail through the retry policy and the
 * call ends (it used to wait for a token forever). */
static void
test_failing_token_refresh_ends_the_call(void **state)
{
    (void)state;
    char err[512], host[64];
    snprintf(host, sizeof(host), "%s", base + strlen("http://"));
    setenv("GOOGLE_APPLICATION_CREDENTIALS", "", 1);
    setenv("HOME", "/nonexistent", 1);
    setenv("GCE_METADATA_HOST", host, 1);
    struct bp_auth *auth = bp_auth_new(NULL, 0, NULL, err, sizeof(err));
    assert_non_null(auth);
    assert_int_equal(bp_auth_kind(auth), BP_AUTH_METADATA);
    struct fixture fx;
    struct outcome o = { 0 };
    fixture_init(&fx, 2);
    bp_api_free(fx.api);
    struct bp_api_retry retry = { 2, 0.01, 0.05, 60.0 };
    fx.api = bp_api_new(fx.loop, fx.http, auth, &retry);
    call(&fx, "/ok", 10000, &o);
    assert_int_equal(o.done, 0);
    run_until(&fx, &o, 1, 8);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.ran_inside, 0);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.error, "no token"));
    assert_true(bp_api_stats(fx.api)->token_failures >= 2);
    fixture_free(&fx);
    bp_auth_free(auth);
}

/* ---- the caller's backoff ---- */

/* An 8 GB reply to a call capped at 64 KB: the call ends as soon as the cap is reached (the
 * rest is never read, so it ends in well under the seconds 8 GB would take), with the HTTP
 * status, the first 64 KB and body_truncated set: a failed call (bp_api_failed), and not a
 * transport error the retry policy would repeat. */
static void
test_reply_past_its_cap_is_cut_off(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_init(&fx, 3);
    struct outcome o = { 0 };
    char url[256];
    snprintf(url, sizeof(url), "%s/huge", base);
    double t0 = bp_time_mono();
    assert_int_equal(bp_api_call_capped(fx.api, "POST", url, "application/json",
                                        bp_xstrdup("{}"), 2, 60000, 64 * 1024, record, &o), 0);
    run_until(&fx, &o, 1, 15.0);
    assert_int_equal(o.done, 1);
    assert_true(o.at - t0 < 5.0);
    assert_int_equal(o.status, 200);
    assert_true(o.body_truncated);
    assert_int_equal(o.body_len, 64 * 1024);
    assert_int_equal(bp_api_stats(fx.api)->retries, 0);
    assert_int_equal(bp_api_stats(fx.api)->failures, 1);
    fixture_free(&fx);
}

/* ---- the cloud store's upload queue ---- */

struct store_done {
    int done;
    int failed;
};

static void
object_done(void *arg, int status, const char *errmsg, const struct bp_row_error *errs,
            size_t nerrs)
{
    struct store_done *d = arg;
    (void)errmsg;
    (void)errs;
    (void)nerrs;
    d->done++;
    d->failed += status != 0;
}

/* Ten objects finished at once with max_uploads 3: the uploads (each answered after 150 ms)
 * go three at a time, the rest wait, first in first out, and every object is answered once.
 * The bucket answers 404, a final failure, so every answer is that failure. */
static void
test_cloud_uploads_wait_behind_max_uploads(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_init(&fx, 1);
    struct bp_endpoints ep = { 0 };
    char err[256];
    assert_int_equal(bp_endpoints_init(&ep, base, base, base, err, sizeof(err)), 0);
    struct bp_store *s = bp_store_cloud_new(fx.api, fx.api, &ep, "p", "d", "b", 1 << 20, 3);
    assert_non_null(s);
    struct store_done d = { 0 };
    for (int i = 0; i < 10; i++) {
        char name[64];
        snprintf(name, sizeof(name), "t/2024/01/01/00/t_%d.json", i);
        struct bp_object *o = s->ops->object_open(s, name, err, sizeof(err));
        assert_non_null(o);
        assert_int_equal(s->ops->object_write(o, "{}\n", 3), 0);
        assert_int_equal(s->ops->object_finish(o, object_done, &d), 0);
    }
    const struct bp_store_cloud_stats *st = bp_store_cloud_stats(s);
    assert_int_equal(st->objects, 10);
    assert_int_equal(s->ops->pending(s), 10);
    ev_timer_set(&fx.guard, 15., 0.);
    ev_timer_start(fx.loop, &fx.guard);
    while (d.done < 10 && ev_is_active(&fx.guard)) {
        ev_run(fx.loop, EVRUN_ONCE);
        assert_true(bp_http_active(fx.http) <= 3);
    }
    ev_timer_stop(fx.loop, &fx.guard);
    assert_int_equal(d.done, 10);
    assert_int_equal(d.failed, 10);
    assert_int_equal(st->max_uploading, 3);
    assert_int_equal(st->max_queued, 7);     /* three started at once */
    assert_int_equal(s->ops->pending(s), 0);
    s->ops->destroy(s);
    bp_endpoints_free(&ep);
    fixture_free(&fx);
}

/* archive.compression = gzip: an object whose bytes pass the store's cap while compressed as it
 * grows fails cleanly: the write says so, every later write and the finish fail, done runs once
 * with a failure (its messages are nacked) and nothing is uploaded, so no broken gzip member can
 * be stored. A small object of the same store is a valid gzip member (finished, then its upload
 * fails against no server: answered once). */
static void
test_cloud_gzip_object_past_its_cap_fails_cleanly(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_init(&fx, 1);
    struct bp_endpoints ep = { 0 };
    char err[256];
    assert_int_equal(bp_endpoints_init(&ep, "http://127.0.0.1:9", "http://127.0.0.1:9",
                                       "http://127.0.0.1:9", err, sizeof(err)), 0);
    struct bp_store *s = bp_store_cloud_new(fx.api, fx.api, &ep, "p", "d", "b", 4096, 3);
    assert_int_equal(bp_store_cloud_set_gzip(s, 1), 0);
    struct store_done d = { 0 };
    struct bp_object *o = s->ops->object_open(s, "t/2024/01/01/00/t_1.json", err, sizeof(err));
    char line[1000];
    int failed_at = -1;
    for (int i = 0; i < 10 && failed_at < 0; i++) {
        for (size_t k = 0; k < sizeof(line) - 1; k++)
            line[k] = (char)('a' + (k * 7919u + (unsigned)i * 104729u) % 26);
        line[sizeof(line) - 1] = '\n';
        if (s->ops->object_write(o, line, sizeof(line)) != 0)
            failed_at = i;
    }
    assert_true(failed_at > 0);
    assert_int_equal(s->ops->object_write(o, "{}\n", 3), -1);     /* broken from now on */
    assert_int_equal(s->ops->object_finish(o, object_done, &d), -1);
    assert_int_equal(d.done, 1);
    assert_int_equal(d.failed, 1);
    assert_int_equal(s->ops->pending(s), 0);
    assert_int_equal(bp_store_cloud_stats(s)->objects, 0);
    /* a small object is finished and handed to an upload */
    o = s->ops->object_open(s, "t/2024/01/01/00/t_2.json", err, sizeof(err));
    assert_int_equal(s->ops->object_write(o, "{\"a\":1}\n", 8), 0);
    assert_int_equal(s->ops->object_finish(o, object_done, &d), 0);
    assert_int_equal(bp_store_cloud_stats(s)->objects, 1);
    ev_timer_set(&fx.guard, 15., 0.);
    ev_timer_start(fx.loop, &fx.guard);
    while (d.done < 2 && ev_is_active(&fx.guard))
        ev_run(fx.loop, EVRUN_ONCE);
    ev_timer_stop(fx.loop, &fx.guard);
    assert_int_equal(d.done, 2);
    s->ops->destroy(s);
    bp_endpoints_free(&ep);
    fixture_free(&fx);
}

static void
test_backoff_grows_caps_and_resets(void **state)
{
    (void)state;
    struct bp_backoff b;
    bp_backoff_init(&b, 0.2, 5.0);
    double cap = 0.2;
    for (int i = 0; i < 12; i++) {
        double d = bp_backoff_fail(&b);
        assert_true(d >= cap / 2 && d <= cap);   /* equal jitter: never 0 */
        cap = cap * 2 > 5.0 ? 5.0 : cap * 2;
    }
    assert_int_equal(b.failures, 12);
    bp_backoff_reset(&b);
    assert_int_equal(b.failures, 0);
    double d = bp_backoff_fail(&b);
    assert_true(d >= 0.1 && d <= 0.2);
    /* many failures: at most 1/max calls per second, never an overflow */
    for (int i = 0; i < 5000; i++)
        d = bp_backoff_fail(&b);
    assert_true(d >= 2.5 && d <= 5.0);
}

static void
test_permanent_and_retryable_classes(void **state)
{
    (void)state;
    static const struct { long status; int retryable, permanent, failed; } cases[] = {
        { 200, 0, 0, 0 }, { 204, 0, 0, 0 }, { 0, 1, 0, 1 }, { 301, 0, 1, 1 }, { 302, 0, 1, 1 },
        { 307, 0, 1, 1 }, { 400, 0, 1, 1 }, { 401, 0, 1, 1 }, { 403, 0, 1, 1 }, { 404, 0, 1, 1 },
        { 408, 1, 0, 1 }, { 409, 0, 0, 1 }, { 412, 0, 0, 1 }, { 413, 0, 1, 1 }, { 429, 1, 0, 1 },
        { 500, 1, 0, 1 }, { 503, 1, 0, 1 },
    };
    for (size_t i = 0; i < BP_ARRAY_LEN(cases); i++) {
        struct bp_http_result r;
        memset(&r, 0, sizeof(r));
        r.status = cases[i].status;
        r.body = "";
        assert_int_equal(bp_api_retryable(&r), cases[i].retryable);
        assert_int_equal(bp_api_permanent(&r), cases[i].permanent);
        assert_int_equal(bp_api_failed(&r), cases[i].failed);
    }
    struct bp_http_result r;
    memset(&r, 0, sizeof(r));
    r.status = 403;
    r.body = "{\"reason\":\"rateLimitExceeded\"}";
    r.body_len = strlen(r.body);
    assert_int_equal(bp_api_retryable(&r), 1);
    assert_int_equal(bp_api_permanent(&r), 0);
    assert_int_equal(bp_api_refused_transient(&r), 0);   /* the call's own retries cover it */
    /* quota, a grant still propagating, a table being recreated: the writer pauses */
    r.body = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"quotaExceeded\"}]}}";
    r.body_len = strlen(r.body);
    assert_int_equal(bp_api_retryable(&r), 0);
    assert_int_equal(bp_api_refused_transient(&r), 1);
    r.body = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"accessDenied\"}]}}";
    r.body_len = strlen(r.body);
    assert_int_equal(bp_api_refused_transient(&r), 1);
    r.status = 404;
    assert_int_equal(bp_api_refused_transient(&r), 1);
    long not_transient[] = { 0, 200, 400, 401, 409, 412, 413, 429, 500, 503 };
    for (size_t i = 0; i < sizeof(not_transient) / sizeof(*not_transient); i++) {
        r.status = not_transient[i];
        assert_int_equal(bp_api_refused_transient(&r), 0);
    }
    r.status = 200;
    r.body_truncated = 1;
    assert_int_equal(bp_api_failed(&r), 1);
}

/* ---- a helper server never outlives its test ---- */

/* 1 while pid runs (a zombie or no process counts as gone). */
static int
process_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void
test_server_dies_with_the_test_however_it_ends(void **state)
{
    (void)state;
    /* a test process starts its server, then dies without any teardown (as an abort on an
     * allocation failure does): the server must not stay behind */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t test = fork();
    assert_true(test >= 0);
    if (test == 0) {
        pid_t srv;
        char url[64];
        close(fds[0]);
        if (start_server(&srv, url, sizeof(url)) != 0 ||
            write(fds[1], &srv, sizeof(srv)) != (ssize_t)sizeof(srv))
            _exit(1);
        raise(SIGKILL);
    }
    close(fds[1]);
    pid_t srv = 0;
    ssize_t n = read(fds[0], &srv, sizeof(srv));
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(test, &st, 0), test);
    assert_int_equal(n, sizeof(srv));
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    double end = bp_time_mono() + 10;
    while (process_alive(srv) && bp_time_mono() < end)
        usleep(20000);
    int alive = process_alive(srv);
    if (alive)
        kill(srv, SIGKILL);
    assert_false(alive);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_404_is_async_final_and_counted),
        cmocka_unit_test(test_302_is_a_failure_never_followed),
        cmocka_unit_test(test_reset_is_retried_then_final),
        cmocka_unit_test(test_start_failure_is_retried_asynchronously),
        cmocka_unit_test(test_null_arguments_return_minus_one_without_done),
        cmocka_unit_test(test_503_retries_log_once_with_a_count),
        cmocka_unit_test(test_hung_requests_do_not_block_others),
        cmocka_unit_test(test_silent_server_is_cut_by_the_stall_timeout),
        cmocka_unit_test(test_failing_token_refresh_ends_the_call),
        cmocka_unit_test(test_reply_past_its_cap_is_cut_off),
        cmocka_unit_test(test_cloud_uploads_wait_behind_max_uploads),
        cmocka_unit_test(test_cloud_gzip_object_past_its_cap_fails_cleanly),
        cmocka_unit_test(test_backoff_grows_caps_and_resets),
        cmocka_unit_test(test_permanent_and_retryable_classes),
        cmocka_unit_test(test_server_dies_with_the_test_however_it_ends),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
