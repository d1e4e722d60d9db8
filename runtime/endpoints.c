/* endpoints.c - resolves the API base URLs once at start-up. An emulator endpoint is plain HTTP
 * and, unless auth is asked for explicitly, gets no token (as Google's clients do). */
#include "endpoints.h"

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

static const char *
pick(const char *explicit_value, const char *env_name)
{
    if (explicit_value && *explicit_value)
        return explicit_value;
    const char *v = getenv(env_name);
    return v && *v ? v : NULL;
}

/* Fills e from explicit values (pipeline.lua / --set; may be NULL), else the emulator
 * variables, else Google's hosts. Returns 0 (it cannot fail today; kept for URL checks). */
int
bp_endpoints_init(struct bp_endpoints *e, const char *pubsub, const char *bigquery,
                  const char *storage, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memset(e, 0, sizeof(*e));
    const char *ps = pick(pubsub, "PUBSUB_EMULATOR_HOST");
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
    const char *bq = pick(bigquery, "BIGQUERY_EMULATOR_HOST");
    if (bq) {
        char *b = with_scheme(bq);
        e->bigquery = *url_path(b) ? b : join(b, strlen(b), "/bigquery/v2");
        if (e->bigquery != b)
            free(b);
        e->bigquery_emulated = 1;
    } else {
        e->bigquery = bp_xstrdup("https://bigquery.googleapis.com/bigquery/v2");
    }
    const char *st = pick(storage, "STORAGE_EMULATOR_HOST");
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
