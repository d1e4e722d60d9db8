/* log.c - stderr logger. The level is the one process-wide setting outside struct bp_rt: it is
 * written once at start-up, and every module (even those that never see the runtime) logs. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static int log_level = BP_LOG_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
bp_log_set_level(int level)
{
    log_level = level;
}

int
bp_log_level(void)
{
    return log_level;
}

/* Returns the level for a name ("error".."debug"), or -1 when the name is unknown. */
int
bp_log_parse_level(const char *name)
{
    for (size_t i = 0; i < BP_ARRAY_LEN(level_names); i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

/* Formats the whole line first so concurrent writers (workers share stderr) never interleave. */
void
bp_log_write(int level, const char *component, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    int n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, (int)(tv.tv_usec / 1000),
                 level_names[level < 0 ? 0 : level > 3 ? 3 : level], component);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
