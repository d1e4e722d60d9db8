/* Unit tests: repeated errors are counted, not printed (log.c), on a fake clock: the first line
 * goes out, repeats within the window are counted, the count comes out with the next repeat
 * after the window, with any later line once the window is over, and at bp_log_flush; info
 * lines and different messages are never held back; keyed lines (bp_log_rl) count by key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static double fake_now;
static char *text;
static size_t text_len;
static FILE *mem;

static double
fake_clock(void)
{
    return fake_now;
}

static int
setup(void **state)
{
    (void)state;
    bp_log_flush();
    fake_now = 1000.0;
    bp_log_set_clock(fake_clock);
    bp_log_set_repeat_window(10.0);
    bp_log_set_level(BP_LOG_INFO);
    mem = open_memstream(&text, &text_len);
    bp_log_set_stream(mem);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    bp_log_flush();
    bp_log_set_stream(NULL);
    fclose(mem);
    free(text);
    text = NULL;
    return 0;
}

static size_t
count(const char *needle)
{
    fflush(mem);
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void
test_identical_errors_print_once_then_a_count(void **state)
{
    (void)state;
    for (int i = 0; i < 1235; i++) {
        bp_log(BP_LOG_ERROR, "pubsub", "pull failed after retries: %d", 404);
        fake_now += 0.005;
    }
    assert_int_equal(count("pull failed after retries: 404"), 1);
    fake_now = 1010.5;    /* the window is over: the next repeat carries the count */
    bp_log(BP_LOG_ERROR, "pubsub", "pull failed after retries: %d", 404);
    assert_int_equal(count("pull failed after retries: 404"), 2);
    assert_int_equal(count("pull failed after retries: 404 (repeated 1,234 times in 10 s)"), 1);
}

static void
test_count_comes_out_with_a_later_line_and_at_flush(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        bp_log(BP_LOG_WARN, "api", "same warning");
    assert_int_equal(count("same warning"), 1);
    fake_now += 11;
    bp_log(BP_LOG_INFO, "main", "something else");
    assert_int_equal(count("same warning (repeated 2 times in 0.0 s)"), 1);
    /* not flushed twice */
    bp_log_flush();
    assert_int_equal(count("(repeated"), 1);
    /* a burst with no later line: bp_log_flush (atexit) reports it */
    bp_log(BP_LOG_ERROR, "x", "burst");
    fake_now += 2;
    bp_log(BP_LOG_ERROR, "x", "burst");
    bp_log_flush();
    assert_int_equal(count("burst (repeated 1 time in 2 s)"), 1);
}

static void
test_different_messages_and_info_lines_are_never_held(void **state)
{
    (void)state;
    bp_log(BP_LOG_ERROR, "a", "one");
    bp_log(BP_LOG_ERROR, "a", "two");
    bp_log(BP_LOG_ERROR, "b", "one");      /* another component */
    bp_log(BP_LOG_WARN, "a", "one");       /* another level */
    bp_log(BP_LOG_INFO, "a", "info");
    bp_log(BP_LOG_INFO, "a", "info");
    assert_int_equal(count(" a: one"), 2);
    assert_int_equal(count(" a: two"), 1);
    assert_int_equal(count(" b: one"), 1);
    assert_int_equal(count(" a: info"), 2);
}

static void
test_keyed_lines_count_by_key(void **state)
{
    (void)state;
    for (int i = 1; i <= 5; i++)
        bp_log_rl(BP_LOG_WARN, "api", "POST /x 503", "POST /x: HTTP 503; retry %d", i);
    bp_log_rl(BP_LOG_WARN, "api", "POST /y 503", "POST /y: HTTP 503; retry %d", 1);
    assert_int_equal(count("POST /x: HTTP 503; retry 1"), 1);
    assert_int_equal(count("POST /y: HTTP 503; retry 1"), 1);
    bp_log_flush();
    /* the last text stands for the repeats */
    assert_int_equal(count("POST /x: HTTP 503; retry 5 (repeated 4 times"), 1);
}

static void
test_window_zero_prints_everything(void **state)
{
    (void)state;
    bp_log_set_repeat_window(0);
    for (int i = 0; i < 3; i++)
        bp_log(BP_LOG_ERROR, "a", "again");
    assert_int_equal(count("again"), 3);
    bp_log_set_repeat_window(10.0);
}

static void
test_many_distinct_repeating_events(void **state)
{
    (void)state;
    /* more distinct events than slots: evicted ones report their counts, none is lost */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 40; i++)
            bp_log(BP_LOG_ERROR, "many", "event %d", i);
    bp_log_flush();
    char needle[64];
    size_t total = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(needle, sizeof(needle), "event %d\n", i);
        size_t printed = count(needle);
        snprintf(needle, sizeof(needle), "event %d (repeated 1 time ", i);
        total += printed + count(needle);   /* a count line stands for one more */
    }
    assert_true(total >= 80);
}

static void
test_refused_lines_are_dropped_and_counted(void **state)
{
    (void)state;
    /* a stream that refuses every write (a closed pipe, a full disk): lines are dropped and
     * counted, and a stream that works again gets the next line */
    FILE *full = fopen("/dev/full", "w");
    assert_non_null(full);
    setvbuf(full, NULL, _IONBF, 0);
    unsigned long before = bp_log_dropped();
    bp_log_set_stream(full);
    bp_log(BP_LOG_INFO, "a", "lost one");
    bp_log(BP_LOG_INFO, "a", "lost two");
    bp_log(BP_LOG_ERROR, "a", "lost three");
    assert_int_equal(bp_log_dropped() - before, 3);
    bp_log_set_stream(mem);
    bp_log(BP_LOG_INFO, "a", "back");
    assert_int_equal(count("back"), 1);
    assert_int_equal(bp_log_dropped() - before, 3);
    fclose(full);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identical_errors_print_once_then_a_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_count_comes_out_with_a_later_line_and_at_flush,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_messages_and_info_lines_are_never_held,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyed_lines_count_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_zero_prints_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_distinct_repeating_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_lines_are_dropped_and_counted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
