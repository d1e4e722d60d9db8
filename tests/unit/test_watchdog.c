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
    struct bp_watchdog *w = bp_watchdog_new(50, 5000, q, err, sizeof(err));
    assert_non_null(w);
    struct fixture fx;
    fixture_init(&fx);
    assert_int_equal(run_batch(&fx, w, "return 1 + 1"), 0);
    assert_int_equal(bp_watchdog_disarm(w), 0);
    usleep(150 * 1000);   /* not armed: no hook past the budget */
    assert_int_equal(run_batch(&fx, w, "local x = 0 for i = 1, 1e5 do x = x + i end"), 0);
    assert_int_equal(bp_watchdog_disarm(w), 0);
    assert_int_not_equal(run_batch(&fx, w, "jit.off() while true do end"), 0);
    assert_non_null(strstr(lua_tostring(fx.L, -1), "time budget exceeded"));
    assert_int_equal(bp_watchdog_disarm(w), 1);
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
        struct bp_watchdog *w = bp_watchdog_new(50, 300, q, err, sizeof(err));
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
