/* Unit tests: the gRPC channel (grpc_channel.c) against the emulator's BigQuery Storage Write API
 * (tests/emulator, lib/bigquery_write.js): AppendRows on the table's _default stream with
 * hand-encoded requests (a one-column writer schema and rows), several appends on one stream
 * and the rows landing in the table; the emulator's gRPC faults on the wire - GOAWAY after an
 * append (the stream ends retryable, the next one goes to a new connection and succeeds), an
 * injected UNAVAILABLE before any message (Trailers-Only), an in-band error that keeps the stream
 * open, a stalled append cut by the deadline, a reply without grpc-status, a reset stream.
 * Skipped (one line) without node or the conformance suite's npm packages, and in the
 * allocation-failure run. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grpc_channel.h"

#define APPEND "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"
#define TABLE "projects/p/datasets/d/tables/t"
#define DEFAULT_STREAM TABLE "/streams/_default"

static pid_t emu_pid = -1;
static int rest_port, grpc_port;
static char dir[400];
static int dir_made;
static struct ev_loop *loop;

/* ---- protobuf by hand: only what an AppendRowsRequest needs ---- */

static size_t
pb_varint(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    do {
        o[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static size_t
pb_bytes(uint8_t *o, int field, const void *p, size_t len)
{
    size_t n = pb_varint(o, (uint64_t)field << 3 | 2);
    n += pb_varint(o + n, len);
    memcpy(o + n, p, len);
    return n + len;
}

static size_t
pb_str(uint8_t *o, int field, const char *s)
{
    return pb_bytes(o, field, s, strlen(s));
}

static size_t
pb_uint(uint8_t *o, int field, uint64_t v)
{
    size_t n = pb_varint(o, (uint64_t)field << 3);
    return n + pb_varint(o + n, v);
}

/* AppendRowsRequest{write_stream, proto_rows{writer_schema{DescriptorProto t{optional string
 * id = 1}}, rows{the ids}}} */
static size_t
append_request(uint8_t *out, const char **ids, size_t nids)
{
    uint8_t field[64], desc[128], schema[160], rows[512], row[64], data[768];
    size_t fl = pb_str(field, 1, "id");
    fl += pb_uint(field + fl, 3, 1);
    fl += pb_uint(field + fl, 4, 1);     /* LABEL_OPTIONAL */
    fl += pb_uint(field + fl, 5, 9);     /* TYPE_STRING */
    size_t dl = pb_str(desc, 1, "t");
    dl += pb_bytes(desc + dl, 2, field, fl);
    size_t sl = pb_bytes(schema, 1, desc, dl);
    size_t rl = 0;
    for (size_t i = 0; i < nids; i++) {
        size_t one = pb_str(row, 1, ids[i]);
        rl += pb_bytes(rows + rl, 1, row, one);
    }
    size_t pl = pb_bytes(data, 1, schema, sl);
    pl += pb_bytes(data + pl, 2, rows, rl);
    size_t n = pb_str(out, 1, DEFAULT_STREAM);
    return n + pb_bytes(out + n, 4, data, pl);
}

/* Which top-level fields (1..31) a reply has, as bits: AppendRowsResponse's append_result is
 * 1, error 2. -1 when it is not protobuf. */
static long
pb_fields(const uint8_t *p, size_t len)
{
    long seen = 0;
    size_t i = 0;
    while (i < len) {
        uint64_t tag = 0, v = 0;
        for (int s = 0; i < len; s += 7) {
            tag |= (uint64_t)(p[i] & 0x7f) << s;
            if (!(p[i++] & 0x80))
                break;
        }
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        for (int s = 0; (wt == 0 || wt == 2) && i < len; s += 7) {
            v |= (uint64_t)(p[i] & 0x7f) << s;
            if (!(p[i++] & 0x80))
                break;
        }
        if (wt == 2) {
            if (v > len - i)
                return -1;
            i += v;
        } else if (wt != 0) {
            return -1;
        }
        if (field > 0 && field < 32)
            seen |= 1L << field;
    }
    return seen;
}

/* ---- the emulator ---- */

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
start_emulator(void **state)
{
    (void)state;
    const char *mods = SRC_ROOT "/tests/emulator/conformance/node_modules/@grpc/grpc-js";
    if (getenv("BP_ALLOC_FAIL_AT") || getenv("BP_ALLOC_COUNT")) {
        /* the allocation-failure sweep restarts a binary per allocation: an emulator each time
         * would add minutes to reach the same runtime paths test_grpc_channel's sweep reaches */
        printf("test_grpc_emulator: skipped under the allocation-failure run "
               "(test_grpc_channel covers the channel there)\n");
        return 0;
    }
    if (system("command -v node >/dev/null 2>&1") != 0 || access(mods, R_OK) != 0) {
        printf("test_grpc_emulator: skipped (needs node and the conformance suite's npm "
               "packages: npm ci in tests/emulator/conformance)\n");
        return 0;
    }
    if (scratch_dir(dir, sizeof dir, "grpc-emulator") != 0)
        return -1;
    dir_made = 1;
    char path[512], data[512];
    snprintf(path, sizeof path, "%s/ddl", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    FILE *f;
    char ddl[600];
    snprintf(ddl, sizeof ddl, "%s/t.sql", path);
    if (mkdir(path, 0700) != 0 || !(f = fopen(ddl, "w")))
        return -1;
    fputs("CREATE TABLE IF NOT EXISTS `d.t` (\n  id STRING NOT NULL\n);\n", f);
    fclose(f);
    int out[2];
    if (pipe(out) != 0)
        return -1;
    emu_pid = fork();
    if (emu_pid < 0)
        return -1;
    if (emu_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        close(out[0]);
        execl(SRC_ROOT "/tests/emulator/emulator", "emulator", "--port", "0", "--data", data,
              "--project", "p", "--ddl", path, "--dataset", "d", "--quiet", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    f = fdopen(out[0], "r");
    char l1[160] = "", l2[160] = "";
    if (!f || !fgets(l1, sizeof l1, f) || !fgets(l2, sizeof l2, f) ||
        sscanf(l1, "listening on http://127.0.0.1:%d", &rest_port) != 1) {
        fprintf(stderr, "the emulator did not start: %s\n", l1);
        return -1;
    }
    fclose(f);
    if (sscanf(l2, "grpc on 127.0.0.1:%d", &grpc_port) != 1) {
        printf("test_grpc_emulator: skipped (emulator says: %s)", l2);
        kill(emu_pid, SIGTERM);
        waitpid(emu_pid, NULL, 0);
        emu_pid = -1;
        return 0;
    }
    return 0;
}

static int
stop_emulator(void **state)
{
    (void)state;
    if (emu_pid > 0) {
        kill(emu_pid, SIGTERM);
        waitpid(emu_pid, NULL, 0);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (dir_made && system(cmd) != 0)
        return -1;
    return 0;
}

#define NEED_EMULATOR() do { if (emu_pid <= 0) skip(); } while (0)

static void
fault(const char *rule)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -sf -o /dev/null -XPOST http://127.0.0.1:%d/_emulator/faults "
             "-d '%s'", rest_port, rule);
    assert_int_equal(system(cmd), 0);
}

/* ---- one AppendRows connection ---- */

struct call {
    int done, code, replies, new_connection;
    long fields[8];
    char message[256];
    struct bp_grpc_stream *s;
};

static void
on_message(struct bp_grpc_stream *s, const uint8_t *msg, size_t len, void *arg)
{
    (void)s;
    struct call *c = arg;
    if (c->replies < 8)
        c->fields[c->replies] = pb_fields(msg, len);
    c->replies++;
}

static void
on_done(struct bp_grpc_stream *s, const struct bp_grpc_status *st, void *arg)
{
    (void)s;
    struct call *c = arg;
    c->done = 1;
    c->code = st->code;
    c->new_connection = st->new_connection;
    snprintf(c->message, sizeof c->message, "%s", st->message);
}

static const struct bp_grpc_stream_cbs CBS = {on_message, NULL, on_done};

static void
guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)revents;
    *(int *)w->data = 1;
    ev_break(l, EVBREAK_ALL);
}

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

static struct bp_grpc_channel *
channel(void)
{
    char err[256];
    struct bp_grpc_channel_opts o = {.host = "127.0.0.1", .port = grpc_port};
    struct bp_grpc_channel *ch = bp_grpc_channel_new(loop, &o, err, sizeof err);
    assert_non_null(ch);
    return ch;
}

static void
open_append(struct bp_grpc_channel *ch, struct call *c, double timeout)
{
    memset(c, 0, sizeof(*c));
    struct bp_grpc_call_opts o = {.request_params = "write_stream=" DEFAULT_STREAM,
                                  .timeout = timeout};
    c->s = bp_grpc_stream_open(ch, APPEND, &o, &CBS, c);
    assert_non_null(c->s);
}

static void
append(struct call *c, const char *id)
{
    uint8_t req[2048];
    const char *ids[] = {id};
    size_t n = append_request(req, ids, 1);
    assert_int_equal(bp_grpc_stream_send(c->s, req, n), 0);
}

static int
table_has(const char *id)
{
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/data/bigquery/p/d/t.ndjson", dir);
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, id) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* ---- tests ---- */

static void
appends_on_one_stream_land_in_the_table(void **state)
{
    (void)state;
    NEED_EMULATOR();
    struct bp_grpc_channel *ch = channel();
    struct call c;
    open_append(ch, &c, 30);
    append(&c, "row-a1");
    run_until_replies(&c, replies, 1);
    append(&c, "row-a2");
    run_until_replies(&c, replies, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(c.fields[i] > 0);
        assert_true(c.fields[i] & (1L << 1));      /* append_result */
        assert_false(c.fields[i] & (1L << 2));     /* no error */
    }
    bp_grpc_stream_close_send(c.s);
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_OK);
    assert_true(table_has("row-a1"));
    assert_true(table_has("row-a2"));
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 1);
    bp_grpc_channel_free(ch);
}

static void
goaway_after_an_append_then_a_new_connection(void **state)
{
    (void)state;
    NEED_EMULATOR();
    struct bp_grpc_channel *ch = channel();
    struct call c;
    open_append(ch, &c, 30);
    append(&c, "row-b1");
    run_until_replies(&c, replies, 1);
    fault("{\"op\":\"bigquerystorage.AppendRows\",\"goaway\":\"after\",\"count\":1}");
    append(&c, "row-b2");
    run_until_replies(&c, replies, 2);
    run_until_n(&c.done, 1);
    assert_int_equal(c.replies, 2);                /* answered, then the drain */
    assert_int_equal(c.code, BP_GRPC_UNAVAILABLE);
    assert_true(bp_grpc_retryable(c.code));
    assert_true(bp_grpc_channel_stats(ch)->goaways >= 1);
    struct call d;
    open_append(ch, &d, 30);
    append(&d, "row-b3");
    run_until_replies(&d, replies, 1);
    assert_true(d.fields[0] & (1L << 1));
    bp_grpc_stream_close_send(d.s);
    run_until_n(&d.done, 1);
    assert_int_equal(d.code, BP_GRPC_OK);
    assert_int_equal(bp_grpc_channel_stats(ch)->connections, 2);
    assert_true(table_has("row-b2") && table_has("row-b3"));
    bp_grpc_channel_free(ch);
}

static void
injected_statuses(void **state)
{
    (void)state;
    NEED_EMULATOR();
    struct bp_grpc_channel *ch = channel();
    struct call c;

    fault("{\"op\":\"bigquerystorage.AppendRows\",\"grpcCode\":\"UNAVAILABLE\","
          "\"message\":\"try again: 100%\",\"count\":1}");
    open_append(ch, &c, 30);
    append(&c, "row-c1");
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_UNAVAILABLE);
    assert_string_equal(c.message, "try again: 100%");
    assert_int_equal(c.replies, 0);

    /* in band: the append fails, the stream stays open for the next one */
    fault("{\"op\":\"bigquerystorage.AppendRows\",\"grpcCode\":\"RESOURCE_EXHAUSTED\","
          "\"inband\":true,\"count\":1}");
    open_append(ch, &c, 30);
    append(&c, "row-c2");
    run_until_replies(&c, replies, 1);
    assert_true(c.fields[0] & (1L << 2));
    append(&c, "row-c3");
    run_until_replies(&c, replies, 2);
    assert_true(c.fields[1] & (1L << 1));
    bp_grpc_stream_close_send(c.s);
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_OK);

    fault("{\"op\":\"bigquerystorage.AppendRows\",\"noStatus\":true,\"count\":1}");
    open_append(ch, &c, 30);
    append(&c, "row-c4");
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_UNKNOWN);

    fault("{\"op\":\"bigquerystorage.AppendRows\",\"reset\":\"before\",\"count\":1}");
    open_append(ch, &c, 30);
    append(&c, "row-c5");
    run_until_n(&c.done, 1);
    assert_int_not_equal(c.code, BP_GRPC_OK);
    assert_true(bp_grpc_retryable(c.code));
    assert_false(table_has("row-c5"));

    fault("{\"op\":\"bigquerystorage.AppendRows\",\"stall\":true,\"count\":1}");
    open_append(ch, &c, 0.5);
    append(&c, "row-c6");
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_DEADLINE_EXCEEDED);

    /* and the channel still works */
    open_append(ch, &c, 30);
    append(&c, "row-c7");
    bp_grpc_stream_close_send(c.s);
    run_until_n(&c.done, 1);
    assert_int_equal(c.code, BP_GRPC_OK);
    assert_int_equal(c.replies, 1);
    bp_grpc_channel_free(ch);
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
        T(appends_on_one_stream_land_in_the_table),
        T(goaway_after_an_append_then_a_new_connection),
        T(injected_statuses),
    };
    return cmocka_run_group_tests(tests, start_emulator, stop_emulator);
}
