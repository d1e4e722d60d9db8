/* log.c - stderr logger. The level is the one process-wide setting outside struct bp_rt: it is
 * written once at start-up, and every module (even those that never see the runtime) logs.
 * The repeat counter (log.h) is process-wide too, so one failing endpoint seen by several
 * modules still counts as one stream of repeats; a mutex keeps it consistent should a thread
 * (a script watchdog) log. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#define LINE_MAX_LEN 2048
#define REPEAT_SLOTS 16       /* distinct repeating events tracked at once */
#define KEY_MAX_LEN 320

struct repeat {
    int used;
    int level;
    char component[32];
    char key[KEY_MAX_LEN];
    char text[LINE_MAX_LEN];  /* the last suppressed message, printed with the count */
    double first;             /* when the line was last printed: the window starts there */
    double last;              /* the last suppressed repeat */
    unsigned long count;      /* repeats suppressed since first */
};

static int log_level = BP_LOG_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };
static struct repeat repeats[REPEAT_SLOTS];
static double repeat_window = 10.0;
static double (*log_clock)(void);
static FILE *log_stream;
static int flush_registered;
static int log_json;          /* --log-format json */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long lines_dropped; /* lines the stream refused (a closed pipe, a full disk) */

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

/* "text" (default) or "json": one object per line. Returns 0, or -1 for another name. */
int
bp_log_set_format(const char *name)
{
    if (strcmp(name, "text") == 0)
        log_json = 0;
    else if (strcmp(name, "json") == 0)
        log_json = 1;
    else
        return -1;
    return 0;
}

void
bp_log_set_repeat_window(double seconds)
{
    repeat_window = seconds;
}

void
bp_log_set_clock(double (*now)(void))
{
    log_clock = now;
}

void
bp_log_set_stream(FILE *f)
{
    log_stream = f;
}

static double
mono_now(void)
{
    if (log_clock)
        return log_clock();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* JSON string escaping for the json format, into out (cut at outlen). Hand-written: log.c is
 * below every other module (json_out.c logs) and a line needs nothing but this. */
static size_t
json_escape(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 7 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

static int
is_key(const char *p, size_t n)
{
    if (n == 0 || n > 40 || !((p[0] >= 'a' && p[0] <= 'z') || p[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
            return 0;
    return strncmp(p, "time", n) && strncmp(p, "level", n) && strncmp(p, "component", n) &&
           strncmp(p, "msg", n);
}

/* The message's `key=value` words as JSON fields (numbers stay numbers), after the message. */
static size_t
json_fields(char *out, size_t outlen, const char *msg)
{
    size_t o = 0;
    const char *p = msg;
    while (*p && o + 64 < outlen) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        const char *eq = memchr(w, '=', (size_t)(p - w));
        if (!eq || !is_key(w, (size_t)(eq - w)) || eq + 1 == p)
            continue;
        const char *v = eq + 1;
        size_t vn = (size_t)(p - v);
        char num[64], *end;
        snprintf(num, sizeof(num), "%.*s", (int)(vn < 63 ? vn : 63), v);
        strtod(num, &end);
        int numeric = vn < 63 && *end == '\0' && num[0] != '+' && !strchr(num, 'x') &&
                      !strpbrk(num, "nN");
        o += (size_t)snprintf(out + o, outlen - o, ",\"%.*s\":", (int)(eq - w), w);
        if (numeric) {
            o += (size_t)snprintf(out + o, outlen - o, "%s", num);
        } else {
            out[o++] = '"';
            o += json_escape(out + o, outlen - o - 2, v, vn);
            out[o++] = '"';
        }
    }
    out[o] = '\0';
    return o;
}

/* One line to the stream. A line the stream refuses (EPIPE when the reader of a pipe is gone,
 * SIGPIPE being ignored; ENOSPC) is dropped and counted: logging never stops the pipeline, and
 * the stream's error flag is cleared so a reader that comes back gets the next lines. Called
 * with log_mu held. */
static void
put_line(const char *line, size_t len)
{
    FILE *f = log_stream ? log_stream : stderr;
    if (fwrite(line, 1, len, f) != len) {
        lines_dropped++;
        clearerr(f);
    }
}

static void
emit_json(const char *when, int level, const char *component, const char *msg,
          const char *suffix)
{
    char line[3 * LINE_MAX_LEN], text[LINE_MAX_LEN + 128];
    snprintf(text, sizeof(text), "%s%s", msg, suffix ? suffix : "");
    size_t o = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\","
                                "\"component\":\"", when, level_names[level]);
    o += json_escape(line + o, 64, component, strlen(component));
    o += (size_t)snprintf(line + o, sizeof(line) - o, "\",\"msg\":\"");
    o += json_escape(line + o, LINE_MAX_LEN + 256, text, strlen(text));
    line[o++] = '"';
    o += json_fields(line + o, sizeof(line) - o - 3, msg);
    line[o++] = '}';
    line[o++] = '\n';
    put_line(line, o);
}

/* Writes one whole line (so concurrent writers, workers sharing stderr, never interleave):
 * the header, msg, then suffix (may be NULL); or one JSON object (--log-format json). */
static void
emit(int level, const char *component, const char *msg, const char *suffix)
{
    char line[LINE_MAX_LEN + 64];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    if (log_json) {
        char when[96];
        snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
        emit_json(when, level, component, msg, suffix);
        return;
    }
    int n = snprintf(line, sizeof(line) - 1, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: %s%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000),
                     level_names[level < 0 ? 0 : level > 3 ? 3 : level], component, msg,
                     suffix ? suffix : "");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) - 2 ? (size_t)n : sizeof(line) - 2;
    line[len++] = '\n';
    put_line(line, len);
}

/* " (repeated 1,234 times in 10 s)" */
static void
repeat_suffix(char *out, size_t outlen, unsigned long count, double seconds)
{
    char digits[32], grouped[48];
    int nd = snprintf(digits, sizeof(digits), "%lu", count);
    size_t g = 0;
    for (int i = 0; i < nd; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            grouped[g++] = ',';
        grouped[g++] = digits[i];
    }
    grouped[g] = '\0';
    if (seconds < 1)
        snprintf(out, outlen, " (repeated %s time%s in %.1f s)", grouped, count == 1 ? "" : "s",
                 seconds);
    else
        snprintf(out, outlen, " (repeated %s time%s in %.0f s)", grouped, count == 1 ? "" : "s",
                 seconds);
}

/* Prints a slot's suppressed count (if any) and frees the slot. */
static void
flush_slot(struct repeat *r)
{
    char suffix[96];
    if (r->used && r->count) {
        repeat_suffix(suffix, sizeof(suffix), r->count, r->last - r->first);
        emit(r->level, r->component, r->text, suffix);
    }
    r->used = 0;
}

/* Windows that are over: their counts come out now rather than never. */
static void
flush_expired(double now, const struct repeat *skip)
{
    for (size_t i = 0; i < REPEAT_SLOTS; i++)
        if (repeats[i].used && &repeats[i] != skip && now - repeats[i].first >= repeat_window)
            flush_slot(&repeats[i]);
}

/* strncpy without its padding, always terminated: keys and names longer than dst are cut. */
static void
copy_cut(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static struct repeat *
find_slot(int level, const char *component, const char *key)
{
    for (size_t i = 0; i < REPEAT_SLOTS; i++) {
        struct repeat *r = &repeats[i];
        if (r->used && r->level == level && strncmp(r->component, component,
                                                    sizeof(r->component) - 1) == 0 &&
            strncmp(r->key, key, sizeof(r->key) - 1) == 0)
            return r;
    }
    return NULL;
}

/* A free slot, else the one repeated least recently (its count printed first). */
static struct repeat *
new_slot(void)
{
    struct repeat *oldest = &repeats[0];
    for (size_t i = 0; i < REPEAT_SLOTS; i++) {
        if (!repeats[i].used)
            return &repeats[i];
        double t = repeats[i].count ? repeats[i].last : repeats[i].first;
        double to = oldest->count ? oldest->last : oldest->first;
        if (t < to)
            oldest = &repeats[i];
    }
    flush_slot(oldest);
    return oldest;
}

/* The line goes out unless it repeats key within the window (then it is counted). Called with
 * log_mu held. */
static void
write_counted(int level, const char *component, const char *key, const char *msg)
{
    double now = mono_now();
    struct repeat *r = find_slot(level, component, key);
    if (r && now - r->first < repeat_window) {
        r->count++;
        r->last = now;
        copy_cut(r->text, sizeof(r->text), msg);
        return;
    }
    flush_expired(now, r);
    if (r) {
        /* the window is over: this line goes out with the count of those it stood for */
        char suffix[96];
        repeat_suffix(suffix, sizeof(suffix), r->count, now - r->first);
        emit(level, component, msg, r->count ? suffix : NULL);
        r->first = now;
        r->count = 0;
        return;
    }
    if (!flush_registered) {
        flush_registered = 1;
        atexit(bp_log_flush);
    }
    r = new_slot();
    r->used = 1;
    r->level = level;
    r->count = 0;
    r->first = r->last = now;
    copy_cut(r->component, sizeof(r->component), component);
    copy_cut(r->key, sizeof(r->key), key);
    emit(level, component, msg, NULL);
}

static void
write_line(int level, const char *component, const char *key, const char *fmt, va_list ap)
{
    char msg[LINE_MAX_LEN];
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        return;
    pthread_mutex_lock(&log_mu);
    if (repeat_window <= 0) {
        emit(level, component, msg, NULL);
    } else if (key || level <= BP_LOG_WARN) {
        write_counted(level, component, key ? key : msg, msg);
    } else {
        flush_expired(mono_now(), NULL);
        emit(level, component, msg, NULL);
    }
    pthread_mutex_unlock(&log_mu);
}

/* Errors and warnings are counted when they repeat (log.h); info and debug lines always go. */
void
bp_log_write(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, component, NULL, fmt, ap);
    va_end(ap);
}

/* Counted when key (not the text) repeats, at any level. */
void
bp_log_write_rl(int level, const char *component, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, component, key, fmt, ap);
    va_end(ap);
}

/* Lines dropped because the stream refused them, since start (any thread). */
unsigned long
bp_log_dropped(void)
{
    pthread_mutex_lock(&log_mu);
    unsigned long n = lines_dropped;
    pthread_mutex_unlock(&log_mu);
    return n;
}

void
bp_log_flush(void)
{
    pthread_mutex_lock(&log_mu);
    for (size_t i = 0; i < REPEAT_SLOTS; i++)
        flush_slot(&repeats[i]);
    pthread_mutex_unlock(&log_mu);
}
