/* log.h - one-line logs on stderr: time, level, component, message, k=v fields. */
#ifndef BP_LOG_H
#define BP_LOG_H

#include "common.h"

enum bp_log_level { BP_LOG_ERROR = 0, BP_LOG_WARN, BP_LOG_INFO, BP_LOG_DEBUG };

/* Process-wide threshold, set once from the command line before the loop starts. */
void bp_log_set_level(int level);
int bp_log_level(void);
int bp_log_parse_level(const char *name);
void bp_log_write(int level, const char *component, const char *fmt, ...) BP_PRINTF(3, 4);

/* Tests the level before evaluating the arguments, so debug logs cost nothing when off. */
#define bp_log(level, component, ...) \
    do { if ((level) <= bp_log_level()) bp_log_write((level), (component), __VA_ARGS__); } while (0)

#endif
