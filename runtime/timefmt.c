/* timefmt.c - UTC formatting. Wall-clock time (not ev_now) because rows carry real ingestion times. */
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

double
bp_time_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Monotonic seconds, for durations. */
double
bp_time_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "2025-03-01T12:34:56.123456Z": microseconds, BigQuery's TIMESTAMP precision. */
void
bp_time_rfc3339(double t, char out[BP_TIME_STRLEN])
{
    time_t s = (time_t)floor(t);
    long us = lround((t - (double)s) * 1e6);
    if (us >= 1000000) {
        s++;
        us -= 1000000;
    }
    struct tm tm;
    gmtime_r(&s, &tm);
    /* unsigned casts tell the compiler the fields are small, keeping -Wformat-truncation quiet */
    snprintf(out, BP_TIME_STRLEN, "%04u-%02u-%02uT%02u:%02u:%02u.%06luZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned long)us % 1000000ul);
}

/* YYYYMMDDHH as an integer: the archive's hour folder, the same key the Lua side computes. */
int32_t
bp_time_hour_key(double t)
{
    time_t s = (time_t)floor(t);
    struct tm tm;
    gmtime_r(&s, &tm);
    return (int32_t)((((tm.tm_year + 1900) * 100 + tm.tm_mon + 1) * 100 + tm.tm_mday) * 100 +
                     tm.tm_hour);
}

/* "YYYYMMDDHHMMSS", the stamp in archive object names. */
void
bp_time_compact(double t, char out[16])
{
    time_t s = (time_t)floor(t);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 16, "%04u%02u%02u%02u%02u%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
}
