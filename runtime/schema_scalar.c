/* schema_scalar.c - the verdict on one JSON scalar for a BigQuery column type: the coercions of
 * BigQuery's legacy streaming API as tests/emulator/lib/schema.js implements them, each function
 * naming the emulator's regex it mirrors. Hand-written matchers, not regex(3): they run per value
 * on the hot path. Divergence kept on purpose: JavaScript's \s also matches Unicode spaces
 * (U+00A0, U+2000...); here only ASCII white space counts. */
#include <ctype.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schema_scalar.h"

static int
is_sp(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Parses 1..max digits at s[*i] into *v; returns the count (0 = none). */
static int
num(const char *s, size_t n, size_t *i, int max, int *v)
{
    int k = 0;
    *v = 0;
    while (*i < n && k < max && s[*i] >= '0' && s[*i] <= '9') {
        *v = *v * 10 + (s[*i] - '0');
        (*i)++;
        k++;
    }
    return k;
}

static int
days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

/* DATE_RE's core at s[*i]: YYYY-M[M]-D[D], in range. */
static int
date_at(const char *s, size_t n, size_t *i, int *y, int *mo, int *d)
{
    if (num(s, n, i, 4, y) != 4 || *i >= n || s[(*i)++] != '-' || !num(s, n, i, 2, mo) ||
        *i >= n || s[(*i)++] != '-' || !num(s, n, i, 2, d))
        return 0;
    return *y >= 1 && *mo >= 1 && *mo <= 12 && *d >= 1 && *d <= days_in_month(*y, *mo);
}

static int
valid_date(const char *s, size_t n)
{
    size_t i = 0;
    int y, mo, d;
    return date_at(s, n, &i, &y, &mo, &d) && i == n;
}

/* TIME_RE: ^H[H]:M[M](:S[S](.F{1,6})?)?$ in range. */
static int
valid_time(const char *s, size_t n)
{
    size_t i = 0;
    int h, mi, sec = 0, f;
    if (!num(s, n, &i, 2, &h) || i >= n || s[i++] != ':' || !num(s, n, &i, 2, &mi))
        return 0;
    if (i < n && s[i] == ':') {
        i++;
        if (!num(s, n, &i, 2, &sec))
            return 0;
        if (i < n && s[i] == '.') {
            i++;
            if (!num(s, n, &i, 6, &f))
                return 0;
        }
    }
    return i == n && h <= 23 && mi <= 59 && sec <= 59;
}

/* Seconds since the epoch of a civil UTC date-time (days_from_civil). */
static long long
civil_sec(int y, int m, int d, int h, int mi, int s)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60 + s;
}

#define TS_MIN_SEC (-62135596800LL)
#define TS_MAX_SEC 253402300799LL

/* The emulator's TS_RE with parseTimestamp's range checks:
 * ^\s*YYYY-M-D([Tt]|\s+)H:M(:S(.F{0,6})?)?)?\s*(Z|z|UTC|[+-]H[H](:?MM)?)?\s*$
 * On success *us is the instant in microseconds since the epoch (the fraction's digits scaled:
 * ".5" is 500000), exactly. */
static int
parse_timestamp(const char *s, size_t n, int64_t *us)
{
    size_t i = 0;
    int y, mo, d, h = 0, mi = 0, sec = 0, f = 0, fd = 0, oh = 0, om = 0, sign = 0;
    while (i < n && is_sp(s[i]))
        i++;
    if (!date_at(s, n, &i, &y, &mo, &d))
        return 0;
    size_t j = i;
    if (j < n && (s[j] == 'T' || s[j] == 't'))
        j++;
    else
        while (j < n && is_sp(s[j]))
            j++;
    if (j > i && j < n && s[j] >= '0' && s[j] <= '9') {
        i = j;
        if (!num(s, n, &i, 2, &h) || i >= n || s[i++] != ':' || !num(s, n, &i, 2, &mi))
            return 0;
        if (i + 1 < n && s[i] == ':' && s[i + 1] >= '0' && s[i + 1] <= '9') {
            i++;
            (void)num(s, n, &i, 2, &sec);
            if (i < n && s[i] == '.') {
                i++;
                fd = num(s, n, &i, 6, &f);
            }
        }
    }
    while (i < n && is_sp(s[i]))
        i++;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (n - i >= 3 && memcmp(s + i, "UTC", 3) == 0) {
        i += 3;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i++] == '-' ? -1 : 1;
        size_t k = i;
        while (k < n && s[k] >= '0' && s[k] <= '9')
            k++;
        size_t run = k - i;
        if (run == 0 || run > 4)
            return 0;
        if (k < n && s[k] == ':') {
            /* [+-]H[H]:MM */
            if (run > 2 || k + 2 >= n + 0 || !(s[k + 1] >= '0' && s[k + 1] <= '9') ||
                !(s[k + 2] >= '0' && s[k + 2] <= '9'))
                return 0;
            (void)num(s, n, &i, 2, &oh);
            i = k + 1;
            (void)num(s, n, &i, 2, &om);
        } else {
            /* Without a colon the regex's backtracking splits 3 digits as H+MM, 4 as HH+MM. */
            (void)num(s, n, &i, run == 3 ? 1 : 2, &oh);
            if (run >= 3)
                (void)num(s, n, &i, 2, &om);
        }
    }
    while (i < n && is_sp(s[i]))
        i++;
    if (i != n || h > 23 || mi > 59 || sec > 59 || oh > 14 || om > 59)
        return 0;
    long long t = civil_sec(y, mo, d, h, mi, sec) - sign * (oh * 3600LL + om * 60LL);
    if (t < TS_MIN_SEC || t > TS_MAX_SEC)
        return 0;
    for (; fd < 6; fd++)
        f *= 10;
    *us = (int64_t)t * 1000000 + f;
    return 1;
}

static int
valid_timestamp(const char *s, size_t n)
{
    int64_t us;
    return parse_timestamp(s, n, &us);
}

/* DATETIME: trimmed, ^(\S+)([Tt ]|\s+)(\S+)$ with a date and a time, or a bare date. */
static int
valid_datetime(const char *s0, size_t n0)
{
    const char *s = s0;
    size_t n = n0;
    while (n && is_sp(*s))
        s++, n--;
    while (n && is_sp(s[n - 1]))
        n--;
    size_t a = 0, b = 0, split = 0;
    while (a < n && !is_sp(s[a]))
        a++;
    if (a < n) {            /* one run of white space splits date and time */
        b = a;
        while (b < n && is_sp(s[b]))
            b++;
        for (size_t k = b; k < n; k++)
            if (is_sp(s[k]))
                return valid_date(s0, n0);
        split = a ? 1 : 0;
    } else {                /* greedy \S+ splits at the last T or t */
        for (a = n >= 2 ? n - 2 : 0; a >= 1 && n >= 3; a--) {
            if (s[a] == 'T' || s[a] == 't') {
                b = a + 1;
                split = 1;
                break;
            }
        }
    }
    if (split && b < n && valid_date(s, a) && valid_time(s + b, n - b))
        return 1;
    return valid_date(s0, n0);
}

/* FLOAT_RE (special = 1: also NaN/Infinity/inf, any case) and NUMERIC_RE (special = 0). */
static int
valid_decimal(const char *s, size_t n, int special)
{
    size_t i = 0;
    while (i < n && is_sp(s[i]))
        i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    int have = i > d0;
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        have = have || i > f0;
    }
    if (have && i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t k = i + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        size_t e0 = k;
        while (k < n && s[k] >= '0' && s[k] <= '9')
            k++;
        if (k > e0)
            i = k;
    }
    if (!have && special) {
        static const char *const words[] = {"infinity", "nan", "inf"};
        for (size_t w = 0; w < 3 && !have; w++) {
            size_t wl = strlen(words[w]);
            if (n - i >= wl && strncasecmp(s + i, words[w], wl) == 0)
                i += wl, have = 1;
        }
    }
    while (i < n && is_sp(s[i]))
        i++;
    return have && i == n;
}

/* INT_RE (^\s*[+-]?\d+\s*$) and the int64 range. */
static int
valid_int_string(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_sp(s[i]))
        i++;
    int neg = i < n && s[i] == '-';
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t d1 = i;
    while (i < n && is_sp(s[i]))
        i++;
    if (d1 == d0 || i != n)
        return 0;
    while (d0 < d1 - 1 && s[d0] == '0')
        d0++;
    size_t nd = d1 - d0;
    if (nd != 19)
        return nd < 19;
    return memcmp(s + d0, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

static int
valid_base64(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '/'))
        i++;
    for (int k = 0; k < 2 && i < n && s[i] == '='; k++)
        i++;
    return i == n && n % 4 != 1;
}/* See schema_scalar.h. */
int
bp_schema_timestamp_us(const char *s, size_t n, int64_t *us)
{
    return parse_timestamp(s, n, us) ? 0 : -1;
}

/* See schema_scalar.h. */
int
bp_schema_date_days(const char *s, size_t n, int32_t *days)
{
    size_t i = 0;
    int y, mo, d;
    if (!date_at(s, n, &i, &y, &mo, &d) || i != n)
        return -1;
    *days = (int32_t)(civil_sec(y, mo, d, 0, 0, 0) / 86400);
    return 0;
}

/* See schema_scalar.h. */
int
bp_schema_string_ok(enum bp_schema_type t, const char *s, size_t n)
{
    switch (t) {
    case BP_SCHEMA_STRING: case BP_SCHEMA_ANY: return 1;
    case BP_SCHEMA_INT64: return valid_int_string(s, n);
    case BP_SCHEMA_FLOAT64: return valid_decimal(s, n, 1);
    case BP_SCHEMA_NUMERIC: return valid_decimal(s, n, 0);
    case BP_SCHEMA_BOOL: return (n == 4 && strncasecmp(s, "true", 4) == 0) ||
                                (n == 5 && strncasecmp(s, "false", 5) == 0);
    case BP_SCHEMA_TIMESTAMP: return valid_timestamp(s, n);
    case BP_SCHEMA_DATE: return valid_date(s, n);
    case BP_SCHEMA_TIME: return valid_time(s, n);
    case BP_SCHEMA_DATETIME: return valid_datetime(s, n);
    case BP_SCHEMA_BYTES: return valid_base64(s, n);
    case BP_SCHEMA_JSON: return -1;   /* the caller's scanner decides */
    case BP_SCHEMA_RECORD: return 0;
    }
    return 0;
}

/* See schema_scalar.h. */
int
bp_number_text_integral(const char *s, size_t n)
{
    size_t i = n && s[0] == '-' ? 1 : 0, dot = n, e = n;
    for (size_t j = i; j < n; j++) {
        if (s[j] == '.')
            dot = j;
        else if (s[j] == 'e' || s[j] == 'E') {
            e = j;
            break;
        }
    }
    /* the exponent, held at +-100000: past it every digit is on one side of the point */
    long exp = 0;
    if (e < n) {
        size_t j = e + 1;
        int neg = j < n && s[j] == '-';
        j += j < n && (s[j] == '-' || s[j] == '+');
        for (; j < n && s[j] >= '0' && s[j] <= '9'; j++)
            if (exp < 100000)
                exp = exp * 10 + (s[j] - '0');
        exp = neg ? -exp : exp;
    }
    /* the decimal point sits after `point` digits of the mantissa (intdigits then fraction
     * digits): an integer when every digit from there on is 0 */
    long point = (long)((dot < e ? dot : e) - i) + exp;
    long at = 0;
    for (size_t j = i; j < e; j++) {
        if (s[j] == '.')
            continue;
        if (at >= point && s[j] != '0')
            return 0;
        at++;
    }
    return 1;
}

/* See schema_scalar.h. */
int
bp_schema_number_ok(enum bp_schema_type t, const char *s, size_t n, int simple)
{
    char buf[64];
    double v;
    if (t == BP_SCHEMA_STRING || t == BP_SCHEMA_ANY || t == BP_SCHEMA_FLOAT64)
        return 1;
    if (t != BP_SCHEMA_INT64 && t != BP_SCHEMA_NUMERIC && t != BP_SCHEMA_TIMESTAMP)
        return 0;
    if (simple && n <= 16 && t != BP_SCHEMA_TIMESTAMP)
        return 1;   /* the common case: a small integer, no strtod */
    if (simple && t == BP_SCHEMA_INT64)
        return valid_int_string(s, n);    /* digits: the int64 range exactly, no double */
    if (n < sizeof(buf)) {
        memcpy(buf, s, n);
        buf[n] = 0;
        v = strtod(buf, NULL);
    } else {
        char *big = bp_xstrndup(s, n);
        v = strtod(big, NULL);
        free(big);
    }
    /* a fraction or an exponent: a double, whose integers are exact only below 2^53 (from it
     * on the text may be a rounded value, 9007199254740993.0 is 2^53, which BigQuery would
     * store as if exact); and an integer on the text's digits, since a fraction can be lost in
     * the double (1.9999999999999999 reads as 2, 4503599627370496.5 as 4503599627370496; the
     * row writer writes the event's own text for such a number, json_lua.cpp) */
    if (t == BP_SCHEMA_INT64)
        return isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0 &&
               bp_number_text_integral(s, n);
    if (t == BP_SCHEMA_NUMERIC)
        return isfinite(v);
    return v >= (double)TS_MIN_SEC && v < (double)TS_MAX_SEC + 1;
}
