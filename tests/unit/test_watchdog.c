/* Unit tests: the suspects file (quarantine.c) and the scripts' time budget (watchdog.c): an
 * interpreted loop is interrupted with an error, a compiled one ends the process with code 3
 * after recording its message, a quick batch is left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "quarantine.h"
#include "watchdog.h"

static char dir[64];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bp-wd-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static bp_msg_t
msg(const char *id, const char *data)
{
    bp_msg_t m;
    memset(&m, 0, sizeof(m));
    m.id = id;
    m.id_len = strlen(id);
    m.data = data;
    m.len = strlen(data);
    return m;
}

static void
suspects_match_id_and_payload_and_survive_a_restart(void **state)
{
    (void)state;
    char err[256], path[128];
    struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
    assert_non_null(q);
    assert_int_equal(bp_quarantine_count(q), 0);
    bp_msg_t a = msg("ev.ndjson:2", "{\"x\":1}"), other = msg("ev.ndjson:2", "{\"x\":2}");
    assert_int_equal(bp_quarantine_attempts(q, &a), 0);
    assert_int_equal(bp_quarantine_add(q, &a, BP_SUSPECT_KILLED), 0);
    assert_int_equal(bp_quarantine_attempts(q, &a), 0);   /* learnt at the next refresh */
    assert_int_equal(bp_quarantine_refresh(q), 0);
    assert_int_equal(bp_quarantine_attempts(q, &a), 1);
    assert_int_equal(bp_quarantine_attempts(q, &other), 0);   /* same id, other bytes */
    /* a second worker on the same folder learns the first one's records */
    struct bp_quarantine *q2 = bp_quarantine_open(dir, err, sizeof(err));
    assert_non_null(q2);
    assert_int_equal(bp_quarantine_attempts(q2, &a), 1);
    assert_int_equal(bp_quarantine_add(q, &a, BP_SUSPECT_TIMEOUT), 0);
    assert_int_equal(bp_quarantine_refresh(q2), 0);
    assert_int_equal(bp_quarantine_attempts(q2, &a), 2);
    assert_int_equal(bp_quarantine_refresh(q2), 0);
    assert_int_equal(bp_quarantine_attempts(q2, &a), 2);   /* nothing read twice */
    bp_quarantine_free(q2);
    bp_quarantine_free(q);
    /* a record a week old is dropped when the file is opened */
    snprintf(path, sizeof(path), "%s/suspects", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "%ld K 0000000000000001 7 old:1\n", (long)time(NULL) - 8 * 86400);
    fclose(f);
    q = bp_quarantine_open(dir, err, sizeof(err));
    assert_non_null(q);
    assert_int_equal(bp_quarantine_count(q), 1);
    assert_int_equal(bp_quarantine_attempts(q, &a), 2);
    bp_quarantine_free(q);
    char line[256];
    int lines = 0;
    f = fopen(path, "r");
    while (fgets(line, sizeof(line), f))
        lines++;
    fclose(f);
    assert_int_equal(lines, 2);
}

/* Refused dead letters (kind D) are counted by id, apart from the script suspects: a message
 * with such records is no suspect, and a suspect's records are no refusals; another worker
 * sharing the folder sees them at once (the count reads the file first). */
static void
refused_dead_letters_counted_apart_from_suspects(void **state)
{
    (void)state;
    char err[256];
    struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
    struct bp_quarantine *q2 = bp_quarantine_open(dir, err, sizeof(err));
    assert_non_null(q);
    assert_non_null(q2);
    bp_msg_t a = msg("1234", "not json"), b = msg("5678", "x");
    assert_int_equal(bp_quarantine_refusals(q, "1234", 4), 0);
    assert_int_equal(bp_quarantine_add_refusal(q, "1234", 4), 0);
    assert_int_equal(bp_quarantine_refusals(q, "1234", 4), 1);
    assert_int_equal(bp_quarantine_add_refusal(q2, "1234", 4), 0);
    assert_int_equal(bp_quarantine_refusals(q, "1234", 4), 2);
    assert_int_equal(bp_quarantine_refusals(q2, "1234", 4), 2);
    assert_int_equal(bp_quarantine_refusals(q, "123", 3), 0);
    assert_int_equal(bp_quarantine_attempts(q, &a), 0);     /* no script suspect */
    assert_int_equal(bp_quarantine_add(q, &b, BP_SUSPECT_TIMEOUT), 0);
    assert_int_equal(bp_quarantine_refresh(q), 0);
    assert_int_equal(bp_quarantine_attempts(q, &b), 1);
    assert_int_equal(bp_quarantine_refusals(q, "5678", 4), 0);
    assert_int_equal(bp_quarantine_refusals(NULL, "1234", 4), 0);
    bp_quarantine_free(q2);
    bp_quarantine_free(q);
    /* after a restart too */
    q = bp_quarantine_open(dir, err, sizeof(err));
    assert_int_equal(bp_quarantine_refusals(q, "1234", 4), 2);
    assert_int_equal(bp_quarantine_attempts(q, &a), 0);
    bp_quarantine_free(q);
}

/* One message, a batch around it, and a state running `code` on it. */
struct fixture {
    lua_State *L;
    bp_msg_t m;
    bp_result_t res[1];
    bp_batch_t b;
};

static void
fixture_init(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->L = luaL_newstate();
    luaL_openlibs(fx->L);
    fx->m = msg("loop:1", "{}");
    fx->b.msgs = &fx->m;
    fx->b.results = fx->res;
    fx->b.n = 1;
}

/* Runs code as host.lua would: the event marked started, then the script. */
static int
run_batch(struct fixture *fx, struct bp_watchdog *w, const char *code)
{
    bp_watchdog_arm(w, fx->L, &fx->b);
    fx->res[0].route = -1;
    int rc = luaL_loadstring(fx->L, code);
    assert_int_equal(rc, 0);
    return lua_pcall(fx->L, 0, 0, 0);
}

static void
interpreted_loop_is_interrupted_and_recorded(void **state)
{
    (void)state;
    char err[256];
    struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
    struct bp_watchdog *w = bp_watchdog_new(50, 5000, 0, q, err, sizeof(err));
    assert_non_null(w);
    struct fixture fx;
    fixture_init(&fx);
    assert_int_equal(run_batch(&fx, w, "return 1 + 1"), 0);
    assert_int_equal(bp_watchdog_disarm(w, NULL), 0);
    usleep(150 * 1000);   /* not armed: no hook past the budget */
    assert_int_equal(run_batch(&fx, w, "local x = 0 for i = 1, 1e5 do x = x + i end"), 0);
    assert_int_equal(bp_watchdog_disarm(w, NULL), 0);
    assert_int_not_equal(run_batch(&fx, w, "jit.off() while true do end"), 0);
    assert_non_null(strstr(lua_tostring(fx.L, -1), "time budget exceeded"));
    assert_int_equal(bp_watchdog_disarm(w, NULL), 1);
    lua_pop(fx.L, 1);
    assert_int_equal(bp_quarantine_refresh(q), 0);
    assert_int_equal(bp_quarantine_attempts(q, &fx.m), 1);
    bp_watchdog_free(w);
    lua_close(fx.L);
    bp_quarantine_free(q);
}

static void
compiled_loop_ends_the_process_after_recording(void **state)
{
    (void)state;
    char err[256];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
        struct bp_watchdog *w = bp_watchdog_new(50, 300, 0, q, err, sizeof(err));
        struct fixture fx;
        fixture_init(&fx);
        (void)run_batch(&fx, w, "while true do end");
        _exit(0);   /* not reached: the watchdog exits with BP_WATCHDOG_EXIT */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), BP_WATCHDOG_EXIT);
    struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
    bp_msg_t m = msg("loop:1", "{}");
    assert_int_equal(bp_quarantine_attempts(q, &m), 1);
    bp_quarantine_free(q);
}

/* A batch of four events, run the way host.lua runs them: start(i) marks event i started and
 * answers whether the batch still has it (b.n, which the batch cap lowers), nap(ms) sleeps. */
static struct fixture4 {
    lua_State *L;
    bp_msg_t m[4];
    bp_result_t res[4];
    bp_batch_t b;
} f4;

static int
l_start(lua_State *L)
{
    int i = (int)luaL_checkinteger(L, 1);
    lua_pushboolean(L, i < f4.b.n);
    if (i < f4.b.n)
        f4.res[i].route = -1;
    return 1;
}

static int
l_nap(lua_State *L)
{
    usleep((useconds_t)luaL_checkinteger(L, 1) * 1000);
    return 0;
}

static const char *const FOUR_EVENTS =
    "jit.off() for i = 0, 3 do if not start(i) then return i end nap(...) end return 4";

static void
fixture4_init(void)
{
    memset(&f4, 0, sizeof(f4));
    f4.L = luaL_newstate();
    luaL_openlibs(f4.L);
    lua_register(f4.L, "start", l_start);
    lua_register(f4.L, "nap", l_nap);
    for (int i = 0; i < 4; i++)
        f4.m[i] = msg(i == 0 ? "four:0" : i == 1 ? "four:1" : i == 2 ? "four:2" : "four:3", "{}");
    f4.b.msgs = f4.m;
    f4.b.results = f4.res;
    f4.b.n = 4;
}

/* Runs the four events, each napping ms; returns how many the script started. */
static int
run_four(struct bp_watchdog *w, int ms)
{
    bp_watchdog_arm(w, f4.L, &f4.b);
    assert_int_equal(luaL_loadstring(f4.L, FOUR_EVENTS), 0);
    lua_pushinteger(f4.L, ms);
    assert_int_equal(lua_pcall(f4.L, 1, 1, 0), 0);
    int started = (int)lua_tointeger(f4.L, -1);
    lua_pop(f4.L, 1);
    return started;
}

static void
each_event_has_its_own_budget(void **state)
{
    (void)state;
    char err[256];
    struct bp_quarantine *q = bp_quarantine_open(dir, err, sizeof(err));
    /* four events of 40 ms against a budget of 150 ms each: the batch takes 160 ms, no event
     * overran its own budget, so none is interrupted or recorded */
    struct bp_watchdog *w = bp_watchdog_new(150, 5000, 0, q, err, sizeof(err));
    assert_non_null(w);
    fixture4_init();
    size_t ran = 0;
    assert_int_equal(run_four(w, 40), 4);
    assert_int_equal(bp_watchdog_disarm(w, &ran), 0);
    assert_int_equal(ran, 4);
    assert_int_equal(bp_quarantine_refresh(q), 0);
    assert_int_equal(bp_quarantine_count(q), 0);
    bp_watchdog_free(w);
    lua_close(f4.L);
    bp_quarantine_free(q);
}

static void
batch_budget_stops_starting_events(void **state)
{
    (void)state;
    char err[256];
    struct bp_watchdog *w = bp_watchdog_new(1000, 5000, 100, NULL, err, sizeof(err));
    assert_non_null(w);
    fixture4_init();
    size_t ran = 0;
    /* 4 x 150 ms against a batch budget of 100 ms: the event running at 100 ms ends, no other
     * starts */
    int started = run_four(w, 150);
    assert_int_equal(bp_watchdog_disarm(w, &ran), 0);
    assert_true(started >= 1 && started < 4);
    assert_int_equal(ran, (size_t)started);
    assert_int_equal(f4.b.n, 4);        /* set back for the caller */
    /* a quick batch is not cut */
    assert_int_equal(run_four(w, 0), 4);
    assert_int_equal(bp_watchdog_disarm(w, &ran), 0);
    assert_int_equal(ran, 4);
    bp_watchdog_free(w);
    lua_close(f4.L);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(suspects_match_id_and_payload_and_survive_a_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(refused_dead_letters_counted_apart_from_suspects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(interpreted_loop_is_interrupted_and_recorded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(compiled_loop_ends_the_process_after_recording, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(each_event_has_its_own_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_budget_stops_starting_events, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
