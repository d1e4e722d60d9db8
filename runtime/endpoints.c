/* endpoints.c - resolves the API base URLs once at start-up. An emulator endpoint is plain HTTP
 * and, unless auth is asked for explicitly, gets no token (as Google's clients do). */
#include "endpoints.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "host:port" -> "http://host:port"; a URL keeps its scheme; trailing '/' dropped. */
static char *
with_scheme(const char *v)
{
    char buf[2048];
    if (strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0)
        snprintf(buf, sizeof(buf), "%s", v);
    else
        snprintf(buf, sizeof(buf), "http://%s", v);
    size_t n = strlen(buf);
    while (n > 8 && buf[n - 1] == '/')
        buf[--n] = '\0';
    return bp_xstrdup(buf);
}

/* The part of a URL after scheme://host[:port], or "" */
static const char *
url_path(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *slash = strchr(p, '/');
    return slash ? slash : "";
}

static char *
join(const char *base, size_t base_len, const char *suffix)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "%.*s%s", (int)base_len, base, suffix);
    return bp_xstrdup(buf);
}

/* Whether v is an endpoint with_scheme can make a base URL of: an optional http:// or https://,
 * a host (a name, an IPv4 address or a bracketed IPv6 one), an optional port 1..65535, an
 * optional path; no other scheme ("ftp://x" would become "http://ftp://x"), no blanks. Returns
 * 1 or 0. */
int
bp_endpoint_valid(const char *v)
{
    const char *h = v;
    if (strncmp(v, "http://", 7) == 0)
        h = v + 7;
    else if (strncmp(v, "https://", 8) == 0)
        h = v + 8;
    if (strpbrk(v, " \t\r\n\"<>\\^`{|}"))
        return 0;
    size_t hostlen = strcspn(h, "/?#");
    const char *end = h + hostlen, *port = NULL;
    if (*h == '[') {
        const char *close = memchr(h, ']', hostlen);
        if (!close || close == h + 1)
            return 0;
        port = close + 1 < end ? close + 1 : NULL;
        if (port && *port != ':')
            return 0;
    } else {
        port = memchr(h, ':', hostlen);
        if (port == h || (!port && hostlen == 0))
            return 0;
        for (const char *c = h; c < (port ? port : end); c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_'))
                return 0;
    }
    if (port) {
        long n = 0;
        const char *c = port + 1;
        if (c == end)
            return 0;
        for (; c < end; c++) {
            if (*c < '0' || *c > '9' || (n = n * 10 + (*c - '0')) > 65535)
                return 0;
        }
        if (n == 0)
            return 0;
    }
    return 1;
}

/* The endpoint to use: the explicit value (pipeline.lua / --set), else the environment's. */
static const char *
pick(const char *explicit_value, const char *env_name)
{
    if (explicit_value && *explicit_value)
        return explicit_value;
    const char *v = getenv(env_name);
    return v && *v ? v : NULL;
}

static int
refuse(const char *from, const char *v, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: expected %s, got \"%.200s\"", from, BP_ENDPOINT_EXPECT, v);
    return -1;
}

/* See endpoints.h. */
int
bp_endpoint_storage_write(const char *explicit_value, char **host, int *port, int *emulated,
                          char *err, size_t errlen)
{
    const char *v = pick(explicit_value, "BIGQUERY_STORAGE_EMULATOR_HOST");
    *host = NULL;
    *port = 443;
    *emulated = 0;
    if (!v) {
        *host = bp_xstrdup("bigquerystorage.googleapis.com");
        return 0;
    }
    if (!bp_hostport_valid(v)) {
        snprintf(err, errlen, "%s: expected HOST:PORT (gRPC over h2c), got \"%.200s\"",
                 v == explicit_value ? "endpoints.bigquery_storage"
                                     : "BIGQUERY_STORAGE_EMULATOR_HOST", v);
        return -1;
    }
    const char *c = strrchr(v, ':');
    const char *h = v;
    size_t hl = (size_t)(c - v);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    *host = bp_xmalloc(hl + 1);
    memcpy(*host, h, hl);
    (*host)[hl] = '\0';
    *port = atoi(c + 1);
    *emulated = 1;
    return 0;
}

/* Fills e from explicit values (pipeline.lua / --set; may be NULL), else the emulator
 * variables, else Google's hosts. Returns 0, or -1 with err naming the setting (or variable)
 * whose value is not an endpoint (e is then empty). */
int
bp_endpoints_init(struct bp_endpoints *e, const char *pubsub, const char *bigquery,
                  const char *storage, char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    const char *ps = pick(pubsub, "PUBSUB_EMULATOR_HOST");
    const char *bq = pick(bigquery, "BIGQUERY_EMULATOR_HOST");
    const char *st = pick(storage, "STORAGE_EMULATOR_HOST");
    /* named as the user set it: the option, or the variable it fell back to */
    if (ps && !bp_endpoint_valid(ps))
        return refuse(ps == pubsub ? "endpoints.pubsub" : "PUBSUB_EMULATOR_HOST", ps, err,
                      errlen);
    if (bq && !bp_endpoint_valid(bq))
        return refuse(bq == bigquery ? "endpoints.bigquery" : "BIGQUERY_EMULATOR_HOST", bq, err,
                      errlen);
    if (st && !bp_endpoint_valid(st))
        return refuse(st == storage ? "endpoints.storage" : "STORAGE_EMULATOR_HOST", st, err,
                      errlen);
    if (ps) {
        char *b = with_scheme(ps);
        /* the Pub/Sub convention is host:port only; our paths start with /v1 */
        e->pubsub = *url_path(b) ? b : join(b, strlen(b), "/v1");
        if (e->pubsub != b)
            free(b);
        e->pubsub_emulated = 1;
    } else {
        e->pubsub = bp_xstrdup("https://pubsub.googleapis.com/v1");
    }
    if (bq) {
        char *b = with_scheme(bq);
        e->bigquery = *url_path(b) ? b : join(b, strlen(b), "/bigquery/v2");
        if (e->bigquery != b)
            free(b);
        e->bigquery_emulated = 1;
    } else {
        e->bigquery = bp_xstrdup("https://bigquery.googleapis.com/bigquery/v2");
    }
    if (st) {
        char *b = with_scheme(st);
        size_t origin_len = strlen(b) - strlen(url_path(b));
        e->storage = *url_path(b) ? bp_xstrdup(b) : join(b, strlen(b), "/storage/v1");
        e->upload = join(b, origin_len, "/upload/storage/v1");
        free(b);
        e->storage_emulated = 1;
    } else {
        e->storage = bp_xstrdup("https://storage.googleapis.com/storage/v1");
        e->upload = bp_xstrdup("https://storage.googleapis.com/upload/storage/v1");
    }
    return 0;
}

void
bp_endpoints_free(struct bp_endpoints *e)
{
    if (!e)
        return;
    free(e->pubsub);
    free(e->bigquery);
    free(e->storage);
    free(e->upload);
    memset(e, 0, sizeof(*e));
}

/* Percent-encodes s for a URL (RFC 3986 unreserved kept; '/' kept when keep_slash). */
char *
bp_url_escape(const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = bp_xmalloc(n * 3 + 1), *p = o;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '_' || *c == '.' || *c == '~' || (keep_slash && *c == '/')) {
            *p++ = (char)*c;
        } else {
            *p++ = '%';
            *p++ = hex[*c >> 4];
            *p++ = hex[*c & 15];
        }
    }
    *p = '\0';
    return o;
}
