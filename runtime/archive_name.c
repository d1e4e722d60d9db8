/* archive_name.c - archive object names: "<prefix>/<type>/YYYY/MM/DD/HH/<type>_<stamp>.json",
 * the folder the hour of the events, the stamp the wall time the object was opened. */
#include "archive.h"
#include "timefmt.h"

#include <stdio.h>
#include <string.h>

/* n decimal digits of v (zero-padded) at p; returns the end. */
static char *
put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* The name with the stamp (14 digits) given: a backfill names an object per couple of events,
 * so this is written by hand, not by snprintf (2% of such a run's CPU with the stamp's). */
void
bp_archive_object_name_at(char *out, size_t outlen, const char *prefix, const char *type,
                          int32_t hour, const char *stamp)
{
    size_t plen = strlen(prefix), tlen = strlen(type);
    if (hour < 0 || plen + 1 + 2 * tlen + sizeof("/YYYY/MM/DD/HH/_YYYYMMDDHHMMSS.json") > outlen) {
        snprintf(out, outlen, "%s%s%s/%04d/%02d/%02d/%02d/%s_%s.json", prefix,
                 plen ? "/" : "", type, hour / 1000000, hour / 10000 % 100, hour / 100 % 100,
                 hour % 100, type, stamp);
        return;
    }
    char *p = out;
    memcpy(p, prefix, plen);
    p += plen;
    if (plen)
        *p++ = '/';
    memcpy(p, type, tlen);
    p += tlen;
    *p++ = '/';
    p = put_digits(p, (unsigned)hour / 1000000u % 10000u, 4);
    *p++ = '/';
    p = put_digits(p, (unsigned)hour / 10000u % 100u, 2);
    *p++ = '/';
    p = put_digits(p, (unsigned)hour / 100u % 100u, 2);
    *p++ = '/';
    p = put_digits(p, (unsigned)hour % 100u, 2);
    *p++ = '/';
    memcpy(p, type, tlen);
    p += tlen;
    *p++ = '_';
    memcpy(p, stamp, 14);
    memcpy(p + 14, ".json", sizeof(".json"));
}

/* "<prefix>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json"; the stamp is the wall time the
 * object was opened, the folder the hour of the events in it. */
void
bp_archive_object_name(char *out, size_t outlen, const char *prefix, const char *type,
                       int32_t hour, double wall)
{
    char stamp[16];
    bp_time_compact(wall, stamp);
    bp_archive_object_name_at(out, outlen, prefix, type, hour, stamp);
}
