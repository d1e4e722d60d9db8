/* Unit tests: the gRPC channel (grpc_channel.c) on a real libev loop against
 * tests/tools/grpc_test_server.js - @grpc/grpc-js for the normal paths, Node's http2 by hand for
 * what grpc-js will not send. Unary OK on one kept connection; a status with its message
 * (grpc-js's Trailers-Only reply); a bidi stream; the server ending a call before the client
 * half-closed; GOAWAY mid-stream (the open stream finishes on the draining connection, the next
 * call opens a new one); a stalled stream cut by its deadline; the server dropping the
 * connection (UNAVAILABLE, new_connection); the request's headers (content-type, te,
 * authorization, x-goog-request-params, grpc-timeout); a reply without grpc-status (UNKNOWN); a
 * GOAWAY refusing a stream (UNAVAILABLE, new_connection); a 4 GiB length prefix
 * (RESOURCE_EXHAUSTED); grpc-status-details-bin; a refused connection; messages over the HTTP/2
 * windows, and one over the reply cap; the send queue cap and on_writable; cancel from a
 * callback; TLS with ALPN h2 and a verified certificate (an untrusted one, and one for another
 * name, refused). No callback ever runs inside an API call. Skipped (one line) without node or
 * @grpc/grpc-js. */
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

#include "grpc_channel.h"

static pid_t server_pid = -1;
static int server_stdin = -1;
static int grpc_port, raw_port, tls_port, tls2_port;
static char cert_dir[400];
static char cert_ip[512], cert_other[512];
static int cert_dir_made;
static struct ev_loop *loop;

/* ---- the server ---- */

/* A scratch folder next to the test binary (build/unit/NAME, build/asan/unit/NAME...), emptied:
 * one fixed place per build, so a run killed before its teardown leaves nothing to pile up. */
static int
scratch_dir(char *out, size_t n, const char *name)
{
    char exe[400], cmd[900];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return -1;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    if (snprintf(out, n, "%s/%s", exe, name) >= (int)n)
        return -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    return system(cmd) == 0 ? 0 : -1;
}

static int
start_server(void **state)
{
    (void)state;
    const char *mods = SRC_ROOT "/tests/emulator/conformance/node_modules/@grpc/grpc-js";
    if (system("command -v node >/dev/null 2>&1") != 0 || access(mods, R_OK) != 0) {
        printf("test_grpc_channel: skipped (needs node and @grpc/grpc-js: npm ci in "
               "tests/emulator/conformance)\n");
        return 0;
    }
    /* two self-signed certificates: one for 127.0.0.1, one for another name */
    char cmd[2048], key_ip[512], key_other[512];
    cert_dir_made = scratch_dir(cert_dir, sizeof cert_dir, "grpc-certs") == 0;
    int have_certs = cert_dir_made;
    snprintf(cert_ip, sizeof cert_ip, "%s/ip.pem", cert_dir);
    snprintf(key_ip, sizeof key_ip, "%s/ip.key", cert_dir);
    snprintf(cert_other, sizeof cert_other, "%s/other.pem", cert_dir);
    snprintf(key_other, sizeof key_other, "%s/other.key", cert_dir);
    static const char *req = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                             "-nodes -days 2 -subj /CN=%s -addext subjectAltName=%s "
                             "-keyout %s -out %s >/dev/null 2>&1";
    snprintf(cmd, sizeof cmd, req, "127.0.0.1", "IP:127.0.0.1", key_ip, cert_ip);
    have_certs = have_certs && system(cmd) == 0;
    snprintf(cmd, sizeof cmd, req, "other.example", "DNS:other.example", key_other, cert_other);
    have_certs = have_certs && system(cmd) == 0;
    if (!have_certs)
        printf("test_grpc_channel: TLS cases skipped (no openssl command)\n");
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        if (have_certs)
            execlp("node", "node", SRC_ROOT "/tests/tools/grpc_test_server.js", "--tls", cert_ip,
                   key_ip, cert_other, key_other, (char *)NULL);
        else
            execlp("node", "node", SRC_ROOT "/tests/tools/grpc_test_server.js", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    server_stdin = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[128] = "";
    if (!f || !fgets(line, sizeof line, f) ||
        sscanf(line, "grpc=%d raw=%d tls=%d tls2=%d", &grpc_port, &raw_port, &tls_port,
               &tls2_port) != 4) {
        fprintf(stderr, "grpc_test_server.js did not start: %s\n", line);
        return -1;
    }
    fclose(f);
    return 0;
}

static int
stop_server(void **state)
{
    (void)state;
    if (server_pid > 0) {
        close(server_stdin);
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cert_dir);
    if (cert_dir_made && system(cmd) != 0)
        return -1;
    return 0;
}

#define NEED_SERVER() do { if (server_pid <= 0) skip(); } while (0)

/* ---- helpers ---- */

struct call {
    int done, code, messages, in_api, cb_in_api, new_connection, writable;
    long http_status;
    char message[256], replies[1024];
    uint8_t details[64];
    size_t details_len;
    struct bp_grpc_stream *s;
    int cancel_on_message;
};

static void
on_message(struct bp_grpc_stream *s, const uint8_t *msg, size_t len, void *arg)
{
    struct call *c = arg;
    c->cb_in_api |= c->in_api;
    c->messages++;
    size_t have = strlen(c->replies);
    if (have + len + 2 < sizeof c->replies) {
        memcpy(c->replies + have, msg, len);
        c->replies[have + len] = '|';
        c->replies[have + len + 1] = '\0';
    }
    if (c->cancel_on_message) {
        bp_grpc_stream_cancel(s);
        c->done = 1;
        c->code = -1;
    }
}

static void
on_writable(struct bp_grpc_stream *s, void *arg)
{
    (void)s;
    struct call *c = arg;
    c->cb_in_api |= c->in_api;
    c->writable++;
}

static void
on_done(struct bp_grpc_stream *s, const struct bp_grpc_status *st, void *arg)
{
    (void)s;
    struct call *c = arg;
    c->cb_in_api |= c->in_api;
    c->done++;
    c->code = st->code;
    c->http_status = st->http_status;
    c->new_connection = st->new_connection;
    snprintf(c->message, sizeof c->message, "%s", st->message);
    if (st->details && st->details_len <= sizeof c->details) {
        memcpy(c->details, st->details, st->details_len);
        c->details_len = st->details_len;
    }
    c->s = NULL;
}

static const struct bp_grpc_stream_cbs CBS = {on_message, on_writable, on_done};

static void
guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)revents;
    *(int *)w->data = 1;
    ev_break(l, EVBREAK_ALL);
}

/* Runs the loop until *v >= n (or 20 s: generous, the machine may be loaded). */
static void
run_until_line(int *v, int n, const int *ended, int line)
{
    int expired = 0;
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, 20.0, 0);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (*v < n && !expired && !(ended && *ended))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    if (expired)
        fprintf(stderr, "nothing after 20 s (line %d)\n", line);
    assert_false(expired);
    if (ended && *ended && *v < n)
        fprintf(stderr, "the call ended first (line %d)\n", line);
    assert_true(*v >= n);
}

#define run_until_n(v, n) run_until_line(v, n, NULL, __LINE__)
/* Until the call has n replies, or failing as soon as it ends with fewer. */
#define run_until_replies(c, field, n) run_until_line(&(c)->field, n, &(c)->done, __LINE__)

#define run_until(flag) run_until_line(flag, 1, NULL, __LINE__)

static struct bp_grpc_channel *
channel_tls(int port, size_t max_queued, int tls, const char *ca_file)
{
    char err[256];
    struct bp_grpc_channel_opts o = {.host = "127.0.0.1", .port = port, .max_queued = max_queued,
                                     .max_reply = 1 << 20, .user_agent = "bepipe-lua-test",
                                     .tls = tls, .ca_file = ca_file};
    struct bp_grpc_channel *ch = bp_grpc_channel_new(loop, &o, err, sizeof err);
    assert_non_null(ch);
    return ch;
}

static struct bp_grpc_channel *
channel(int port, size_t max_queued)
{
    return channel_tls(port, max_queued, 0, NULL);
}

static struct bp_grpc_stream *
open_call(struct bp_grpc_channel *ch, const char *path, struct call *c, double timeout)
{
    struct bp_grpc_call_opts o = {.bearer_token = "test-token",
                                  .request_params = "write_stream=projects/p/streams/_default",
                                  .timeout = timeout};
    c->in_api = 1;
    struct bp_grpc_stream *s = bp_grpc_stream_open(ch, path, &o, &CBS, c);
    c->in_api = 0;
    assert_non_null(s);
    c->s = s;
    return s;
}

static void
send_text(struct call *c, const char *text)
{
    c->in_api = 1;
    assert_int_equal(bp_grpc_stream_send(c->s, text, strlen(text)), 0);
    c->in_api = 0;
}

struct unary_result {
    int done, code;
    char message[256], reply[256];
};

static void
unary_done(void *arg, const struct bp_grpc_status *st, const uint8_t *reply, size_t len)
{
    struct unary_result *u = arg;
    u->done = 1;
    u->code = st->code;
    snprintf(u->message, sizeof u->message, "%s", st->message);
    if (reply)
        snprintf(u->reply, sizeof u->reply, "%.*s", (int)len, (const char *)reply);
}

static void
unary(struct bp_grpc_channel *ch, const char *text, struct unary_result *u)
{
    memset(u, 0, sizeof(*u));
    struct bp_grpc_call_opts o = {.timeout = 30};
    assert_non_null(bp_grpc_unary(ch, "/test.T/Echo", &o, text, strlen(text), unary_done, u));
    assert_false(u->done);   /* never inside the call */
    run_until(&u->done);
}

/* ---- tests ---- */

static void
unary_ok_on_one_connection(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct unary_result u;
    for (int i = 0; i < 5; i++) {
        unary(ch, "hello", &u);
        assert_int_equal(u.code, BP_GRPC_OK);
        assert_string_equal(u.reply, "hello");
    }
    unary(ch, "", &u);
    assert_int_equal(u.code, BP_GRPC_OK);
    assert_string_equal(u.reply, "");
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    assert_int_equal(bp_grpc_channel_stats(ch)->streams, 6);
    bp_grpc_channel_free(ch);
}

static void
status_with_message(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct unary_result u;
    unary(ch, "status:5:table not found: a%b, c", &u);
    assert_int_equal(u.code, BP_GRPC_NOT_FOUND);
    assert_string_equal(u.message, "table not found: a%b, c");
    assert_string_equal(u.reply, "");
    unary(ch, "status:14:try later", &u);
    assert_int_equal(u.code, BP_GRPC_UNAVAILABLE);
    assert_true(bp_grpc_retryable(u.code));
    /* the connection survived both */
    unary(ch, "again", &u);
    assert_int_equal(u.code, BP_GRPC_OK);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    bp_grpc_channel_free(ch);
}

static void
bidi_stream(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct call c = {0};
    open_call(ch, "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows", &c, 0);
    bp_grpc_stream_cancel(c.s);   /* grpc-js: UNIMPLEMENTED; cancelled first: no callback */
    memset(&c, 0, sizeof c);
    open_call(ch, "/test.T/Chat", &c, 30);
    send_text(&c, "one");
    send_text(&c, "two");
    run_until_replies(&c, messages, 2);
    send_text(&c, "three");
    c.in_api = 1;
    bp_grpc_stream_close_send(c.s);
    assert_int_equal(bp_grpc_stream_send(c.s, "late", 4), -1);
    c.in_api = 0;
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_OK);
    assert_string_equal(c.replies, "one|two|three|");
    assert_false(c.cb_in_api);
    bp_grpc_channel_free(ch);
}

static void
server_ends_before_the_client_half_closes(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct call c = {0};
    open_call(ch, "/test.T/Chat", &c, 30);
    send_text(&c, "hi");
    send_text(&c, "end");
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_OK);
    assert_string_equal(c.replies, "hi|");
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    bp_grpc_channel_free(ch);
    /* a Trailers-Only status before the client half-closed: the same */
    ch = channel(raw_port, 0);
    memset(&c, 0, sizeof c);
    open_call(ch, "/raw/Details", &c, 30);
    send_text(&c, "x");
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_INVALID_ARGUMENT);
    assert_string_equal(c.message, "bad row: 1%zz");
    bp_grpc_channel_free(ch);
}

static void
goaway_mid_stream(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct call c = {0};
    open_call(ch, "/test.T/Chat", &c, 30);
    send_text(&c, "drain");
    run_until_replies(&c, messages, 1);
    for (int i = 0; i < 2000 && !bp_grpc_channel_stats(ch)->goaways; i++)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(bp_grpc_channel_stats(ch)->goaways, 1);
    /* the open stream goes on where it is */
    send_text(&c, "after");
    c.messages = 0;
    run_until_replies(&c, messages, 1);
    assert_string_equal(c.replies, "drain|after|");
    /* a new call goes to a new connection */
    struct call d = {0};
    open_call(ch, "/test.T/Chat", &d, 30);
    send_text(&d, "x");
    bp_grpc_stream_close_send(d.s);
    run_until(&d.done);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 2);
    assert_int_equal(d.code, BP_GRPC_OK);
    assert_string_equal(d.replies, "x|");
    bp_grpc_stream_close_send(c.s);
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_OK);
    bp_grpc_channel_free(ch);
}

static void
stalled_stream_hits_its_deadline(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    struct call c = {0};
    open_call(ch, "/test.T/Chat", &c, 0.5);
    send_text(&c, "stall");
    send_text(&c, "more");
    ev_tstamp t0 = ev_time();
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(c.messages, 0);
    assert_true(ev_time() - t0 >= 0.3);
    /* the connection is still good for the next call */
    struct unary_result u;
    unary(ch, "ok", &u);
    assert_int_equal(u.code, BP_GRPC_OK);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    bp_grpc_channel_free(ch);
}

static void
raw_call(const char *path, struct call *c, struct bp_grpc_channel *ch)
{
    memset(c, 0, sizeof(*c));
    open_call(ch, path, c, 30);
    send_text(c, "req");
    bp_grpc_stream_close_send(c->s);
    run_until(&c->done);
}

static void
dropped_connection_headers_missing_status_huge_prefix(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(raw_port, 0);
    struct call c;
    raw_call("/raw/Drop", &c, ch);
    assert_int_equal(c.code, BP_GRPC_UNAVAILABLE);
    assert_true(c.new_connection);
    assert_string_equal(c.replies, "first|");

    /* the headers a gRPC server and Google's front end look at */
    raw_call("/raw/Headers", &c, ch);
    assert_int_equal(c.code, BP_GRPC_OK);
    char authority[128];
    static const char *const sent[] = {
        "\"content-type\":\"application/grpc\"", "\"te\":\"trailers\"",
        "\"authorization\":\"Bearer test-token\"",
        "\"x-goog-request-params\":\"write_stream=projects/p/streams/_default\"",
        "\"grpc-timeout\":\"30000000u\"", "\"user-agent\":\"bepipe-lua-test\"",
        "\":scheme\":\"http\"", "\":method\":\"POST\"",
    };
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++)
        assert_non_null(strstr(c.replies, sent[i]));
    snprintf(authority, sizeof authority, "\":authority\":\"127.0.0.1:%d\"", raw_port);
    assert_non_null(strstr(c.replies, authority));

    raw_call("/raw/NoStatus", &c, ch);
    assert_int_equal(c.code, BP_GRPC_UNKNOWN);
    assert_non_null(strstr(c.message, "without grpc-status"));
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 2);   /* reconnected after the drop */

    raw_call("/raw/Huge", &c, ch);
    assert_int_equal(c.code, BP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(c.messages, 0);

    raw_call("/raw/Details", &c, ch);
    assert_int_equal(c.code, BP_GRPC_INVALID_ARGUMENT);
    assert_string_equal(c.message, "bad row: 1%zz");
    static const uint8_t want[] = {0x08, 0x03, 0x12, 0x03, 'b', 'a', 'd'};
    assert_int_equal(c.details_len, sizeof want);
    assert_memory_equal(c.details, want, sizeof want);

    /* a GOAWAY that refuses the stream (its last stream id is the one before): retryable, and
     * the next call goes to a new connection */
    unsigned long conns = bp_grpc_channel_stats(ch)->connections;
    raw_call("/raw/Refuse", &c, ch);
    assert_int_equal(c.code, BP_GRPC_UNAVAILABLE);
    assert_true(c.new_connection);
    assert_non_null(strstr(c.message, "GOAWAY"));
    raw_call("/raw/NoStatus", &c, ch);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, conns + 1);

    raw_call("/raw/Nothing", &c, ch);   /* HTTP 404, no grpc-status */
    assert_int_equal(c.code, BP_GRPC_UNIMPLEMENTED);
    assert_int_equal(c.http_status, 404);
    bp_grpc_channel_free(ch);
}

static void
refused_connection_reports_from_the_loop(void **state)
{
    (void)state;
    NEED_SERVER();
    /* port 1 on the loopback: nothing listens */
    struct bp_grpc_channel *ch = channel(1, 0);
    struct call c = {0};
    open_call(ch, "/test.T/Echo", &c, 5);
    assert_false(c.done);
    run_until(&c.done);
    assert_int_equal(c.code, BP_GRPC_UNAVAILABLE);
    assert_true(c.new_connection);
    assert_false(c.cb_in_api);
    bp_grpc_channel_free(ch);
}

struct big {
    int done, code, messages;
    size_t bytes;
    int intact;
};

static void
big_message(struct bp_grpc_stream *s, const uint8_t *msg, size_t len, void *arg)
{
    (void)s;
    struct big *b = arg;
    b->messages++;
    b->bytes += len;
    for (size_t i = 0; i < len; i++)
        b->intact &= msg[i] == (uint8_t)(i * 7 + len);
}

static void
big_done(struct bp_grpc_stream *s, const struct bp_grpc_status *st, void *arg)
{
    (void)s;
    struct big *b = arg;
    b->done = 1;
    b->code = st->code;
}

/* Messages far over HTTP/2's 64 KiB windows, both ways, arrive whole; one over the reply cap
 * (1 MiB here) ends the call RESOURCE_EXHAUSTED without taking it. */
static void
large_messages_and_the_reply_cap(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 0);
    static const struct bp_grpc_stream_cbs cbs = {big_message, NULL, big_done};
    struct big b = {.intact = 1};
    struct bp_grpc_stream *s = bp_grpc_stream_open(ch, "/test.T/Chat", NULL, &cbs, &b);
    assert_non_null(s);
    size_t sizes[] = {900000, 1, 1000000};
    uint8_t *m = malloc(1 << 21);
    assert_non_null(m);
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            m[i] = (uint8_t)(i * 7 + sizes[k]);
        assert_int_equal(bp_grpc_stream_send(s, m, sizes[k]), 0);
    }
    bp_grpc_stream_close_send(s);
    run_until(&b.done);
    assert_int_equal(b.code, BP_GRPC_OK);
    assert_int_equal(b.messages, 3);
    assert_int_equal(b.bytes, 1900001);
    assert_true(b.intact);

    memset(&b, 0, sizeof b);
    s = bp_grpc_stream_open(ch, "/test.T/Chat", NULL, &cbs, &b);
    assert_non_null(s);
    assert_int_equal(bp_grpc_stream_send(s, m, (1 << 20) + 1), 0);
    run_until(&b.done);
    assert_int_equal(b.code, BP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(b.messages, 0);
    free(m);
    bp_grpc_channel_free(ch);
}

static void
queue_cap_and_writable(void **state)
{
    (void)state;
    NEED_SERVER();
    struct bp_grpc_channel *ch = channel(grpc_port, 1000);
    struct call c = {0};
    open_call(ch, "/test.T/Chat", &c, 30);
    char msg[600];
    memset(msg, 'm', sizeof msg);
    int refused = 0, sent = 0;
    for (int i = 0; i < 10 && !refused; i++) {
        int rc = bp_grpc_stream_send(c.s, msg, sizeof msg);
        assert_true(rc == 0 || rc == -2);
        refused = rc == -2;
        sent += rc == 0;
    }
    assert_true(refused);
    assert_int_equal(sent, 2);
    assert_true(bp_grpc_stream_queued(c.s) >= 1000);
    run_until_replies(&c, writable, 1);
    assert_int_equal(bp_grpc_stream_send(c.s, msg, sizeof msg), 0);
    run_until_replies(&c, messages, 3);
    /* cancel from inside on_message: no on_done afterwards */
    c.cancel_on_message = 1;
    assert_int_equal(bp_grpc_stream_send(c.s, "x", 1), 0);
    run_until(&c.done);
    assert_int_equal(c.code, -1);
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(c.done, 1);
    bp_grpc_channel_free(ch);
}

static void
tls_verified_with_alpn(void **state)
{
    (void)state;
    NEED_SERVER();
    if (!tls_port)
        skip();
    struct bp_grpc_channel *ch = channel_tls(tls_port, 0, 1, cert_ip);
    struct unary_result u;
    unary(ch, "over tls", &u);
    assert_int_equal(u.code, BP_GRPC_OK);
    assert_string_equal(u.reply, "over tls");
    unary(ch, "again", &u);
    assert_int_equal(u.code, BP_GRPC_OK);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    bp_grpc_channel_free(ch);

    /* the same server without its CA: refused, and said why */
    ch = channel_tls(tls_port, 0, 1, NULL);
    unary(ch, "x", &u);
    assert_int_equal(u.code, BP_GRPC_UNAVAILABLE);
    assert_non_null(strstr(u.message, "not trusted"));
    bp_grpc_channel_free(ch);

    /* a trusted certificate for another name: refused too */
    ch = channel_tls(tls2_port, 0, 1, cert_other);
    unary(ch, "x", &u);
    assert_int_equal(u.code, BP_GRPC_UNAVAILABLE);
    assert_non_null(strstr(u.message, "mismatch"));
    bp_grpc_channel_free(ch);

    /* a CA file that cannot be read: the channel is not made */
    char err[256];
    struct bp_grpc_channel_opts o = {.host = "127.0.0.1", .port = tls_port, .tls = 1,
                                     .ca_file = "/nonexistent/ca.pem"};
    assert_null(bp_grpc_channel_new(loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

/* A loop per test: a test that fails leaves its channel's watchers on its own loop, which no
 * later test runs. */
static int
loop_new(void **state)
{
    (void)state;
    loop = ev_loop_new(EVFLAG_AUTO);
    return loop ? 0 : -1;
}

static int
loop_free(void **state)
{
    (void)state;
    ev_loop_destroy(loop);
    loop = NULL;
    return 0;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, loop_new, loop_free)
    const struct CMUnitTest tests[] = {
        T(unary_ok_on_one_connection),
        T(status_with_message),
        T(bidi_stream),
        T(server_ends_before_the_client_half_closes),
        T(goaway_mid_stream),
        T(stalled_stream_hits_its_deadline),
        T(dropped_connection_headers_missing_status_huge_prefix),
        T(refused_connection_reports_from_the_loop),
        T(large_messages_and_the_reply_cap),
        T(queue_cap_and_writable),
        T(tls_verified_with_alpn),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
