/* log.h - one-line logs on stderr: time, level, component, message, k=v fields.
 *
 * Repeats are counted, not printed: an error or warning whose (level, component, text) was
 * printed less than the repeat window ago (10 s) is suppressed and counted; the count comes out
 * as one line, `<text> (repeated 1,234 times in 10 s)`, when that window is over (with the next
 * repeat, or with any later line) and at exit. bp_log_rl does the same at any level for lines
 * whose text changes each time (an attempt number, a delay): they are keyed on a caller's key
 * instead of the text. So a server answering 503 forever costs a line per window, not one per
 * retry, and no message is lost without its count. */
#ifndef BP_LOG_H
#define BP_LOG_H

#include <stdio.h>

#include "common.h"

enum bp_log_level { BP_LOG_ERROR = 0, BP_LOG_WARN, BP_LOG_INFO, BP_LOG_DEBUG };

/* Process-wide threshold, set once from the command line before the loop starts. */
void bp_log_set_level(int level);
int bp_log_level(void);
int bp_log_parse_level(const char *name);
/* "text": `time level component: message`; "json": {"time","level","component","msg"} plus the
 * message's key=value words as fields. Set once from the command line. */
int bp_log_set_format(const char *name) BP_WUR;
void bp_log_write(int level, const char *component, const char *fmt, ...) BP_PRINTF(3, 4);
void bp_log_write_rl(int level, const char *component, const char *key, const char *fmt, ...)
    BP_PRINTF(4, 5);

/* Lines dropped because stderr (or the test stream) refused them: a log write that fails is
 * counted here, never fatal (the process ignores SIGPIPE). For /metrics. */
unsigned long bp_log_dropped(void);

/* Prints the counts of repeats not reported yet (registered with atexit; tests call it). */
void bp_log_flush(void);

/* Test hooks: the repeat window in seconds (0 prints every line), the clock the window is
 * measured with (NULL: CLOCK_MONOTONIC), and the stream lines go to (NULL: stderr). */
void bp_log_set_repeat_window(double seconds);
void bp_log_set_clock(double (*now)(void));
void bp_log_set_stream(FILE *f);

/* Tests the level before evaluating the arguments, so debug logs cost nothing when off. */
#define bp_log(level, component, ...) \
    do { if ((level) <= bp_log_level()) bp_log_write((level), (component), __VA_ARGS__); } while (0)

/* The same, with repeats keyed on key (a string naming "the same event", e.g. method, URL and
 * status) rather than on the formatted text. */
#define bp_log_rl(level, component, key, ...) \
    do { if ((level) <= bp_log_level()) \
            bp_log_write_rl((level), (component), (key), __VA_ARGS__); } while (0)

#endif
