/* gcs_read.c - listing a bucket and reading byte ranges of its objects (replay of the archive).
 * Each listing or range is one small state struct freed after its done callback; the calls go
 * through bp_api_call, so retries, tokens and the reply cap are the API layer's. */
#include "endpoints.h"
#include "gcs_read.h"
#include "log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_TIMEOUT_MS 60000
#define GET_TIMEOUT_MS 120000

struct gcs_list {
    struct bp_api *api;
    char *base, *bucket, *prefix;
    bp_gcs_item_fn item;
    bp_gcs_list_done_fn done;
    void *arg;
    unsigned long pages;
};

struct gcs_get {
    bp_gcs_get_done_fn done;
    void *arg;
    uint64_t size;
    uint64_t off;
    size_t len;
};

/* See gcs_read.h. */
void
bp_gcs_describe(const struct bp_http_result *res, char *out, size_t outlen)
{
    if (res->status == 0) {
        snprintf(out, outlen, "no answer: %s", res->error ? res->error : "unknown error");
        return;
    }
    json_error_t jerr;
    json_t *root = res->body ? json_loadb(res->body, res->body_len, 0, &jerr) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"),
                                                        "message"));
    snprintf(out, outlen, "%ld from storage%s%.300s", res->status, msg ? ": " : "",
             msg ? msg : "");
    json_decref(root);
}

/* A size or generation is a decimal string in the API (an integer accepted too). */
static int
json_u64(json_t *v, uint64_t *out)
{
    char *end;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v) || !*json_string_value(v))
        return -1;
    *out = strtoull(json_string_value(v), &end, 10);
    return *end ? -1 : 0;
}

/* Hands every item of one page to the caller. Returns 0, or -1 with err set. */
static int
page_items(struct gcs_list *l, json_t *root, char *err, size_t errlen)
{
    json_t *items = json_object_get(root, "items"), *it;
    size_t i;
    if (items && !json_is_array(items)) {
        snprintf(err, errlen, "objects.list: items is not an array");
        return -1;
    }
    json_array_foreach(items, i, it) {
        const char *name = json_string_value(json_object_get(it, "name"));
        json_t *g = json_object_get(it, "generation");
        uint64_t size, gen;
        char gbuf[32];
        if (!name || json_u64(g, &gen) != 0 || json_u64(json_object_get(it, "size"), &size) != 0) {
            snprintf(err, errlen, "objects.list: item %zu has no name, generation or size", i);
            return -1;
        }
        snprintf(gbuf, sizeof(gbuf), "%" PRIu64, gen);
        if (l->item(l->arg, name, gbuf, size) != 0) {
            snprintf(err, errlen, "listing stopped");
            return -1;
        }
    }
    return 0;
}

static void
list_free(struct gcs_list *l)
{
    free(l->base);
    free(l->bucket);
    free(l->prefix);
    free(l);
}

static int list_page(struct gcs_list *l, const char *token, char *err, size_t errlen);

static void
on_page(void *arg, const struct bp_http_result *res)
{
    struct gcs_list *l = arg;
    char err[1024];
    json_error_t jerr;
    json_t *root = NULL;
    const char *next = NULL;
    if (bp_api_failed(res)) {
        char why[600];
        bp_gcs_describe(res, why, sizeof(why));
        snprintf(err, sizeof(err), "listing gs://%s/%s: %s", l->bucket, l->prefix, why);
        goto fail;
    }
    root = json_loadb(res->body ? res->body : "", res->body_len, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, sizeof(err), "listing gs://%s/%s: the reply is not a JSON object",
                 l->bucket, l->prefix);
        goto fail;
    }
    if (page_items(l, root, err, sizeof(err)) != 0)
        goto fail;
    l->pages++;
    next = json_string_value(json_object_get(root, "nextPageToken"));
    if (next && *next) {
        if (list_page(l, next, err, sizeof(err)) != 0)
            goto fail;
        json_decref(root);
        return;
    }
    bp_log(BP_LOG_DEBUG, "replay", "listed gs://%s/%s in %lu pages", l->bucket, l->prefix,
           l->pages);
    json_decref(root);
    l->done(l->arg, 1, "");
    list_free(l);
    return;
fail:
    json_decref(root);
    l->done(l->arg, 0, err);
    list_free(l);
}

/* Starts the call for one page (token NULL = the first). */
static int
list_page(struct gcs_list *l, const char *token, char *err, size_t errlen)
{
    char *pfx = bp_url_escape(l->prefix, 0), *tok = bp_url_escape(token ? token : "", 0);
    char *bkt = bp_url_escape(l->bucket, 0);
    size_t n = strlen(l->base) + strlen(pfx) + strlen(tok) + strlen(bkt) + 96;
    char *url = bp_xmalloc(n);
    snprintf(url, n, "%s/b/%s/o?maxResults=1000&prefix=%s%s%s", l->base, bkt, pfx,
             token ? "&pageToken=" : "", tok);
    int rc = bp_api_call(l->api, "GET", url, NULL, NULL, NULL, 0, LIST_TIMEOUT_MS, on_page, l);
    if (rc != 0)
        snprintf(err, errlen, "listing gs://%s/%s: the call could not start", l->bucket,
                 l->prefix);
    free(url);
    free(pfx);
    free(tok);
    free(bkt);
    return rc;
}

/* See gcs_read.h. */
int
bp_gcs_list_start(struct bp_api *api, const char *base, const char *bucket, const char *prefix,
                  bp_gcs_item_fn item, bp_gcs_list_done_fn done, void *arg, char *err,
                  size_t errlen)
{
    struct gcs_list *l = bp_xcalloc(1, sizeof(*l));
    l->api = api;
    l->base = bp_xstrdup(base);
    l->bucket = bp_xstrdup(bucket);
    l->prefix = bp_xstrdup(prefix);
    l->item = item;
    l->done = done;
    l->arg = arg;
    if (list_page(l, NULL, err, errlen) != 0) {
        list_free(l);
        return -1;
    }
    return 0;
}

static void
on_range(void *arg, const struct bp_http_result *res)
{
    struct gcs_get *g = arg;
    char err[700];
    if (bp_api_failed(res)) {
        bp_gcs_describe(res, err, sizeof(err));
        g->done(g->arg, -1, NULL, 0, err);
    } else if (res->status != 206 && (uint64_t)res->body_len != g->size) {
        /* a 200 is the whole object; other than its stored size, these are other bytes (a
         * gzip object decompressed on the way despite Accept-Encoding, or a cut reply) */
        snprintf(err, sizeof(err), "the server sent %zu bytes for the whole object where %" PRIu64
                 " are stored (decompressed on the way, or cut short?)", res->body_len, g->size);
        g->done(g->arg, -1, NULL, 0, err);
    } else if (res->status == 206 || g->off == 0) {
        size_t n = res->body_len < g->len ? res->body_len : g->len;
        g->done(g->arg, 0, res->body, n, "");
    } else if (res->body_len > g->off) {
        /* a 200 to a Range request is the whole object: take our part of it */
        size_t n = res->body_len - (size_t)g->off < g->len ? res->body_len - (size_t)g->off
                                                           : g->len;
        g->done(g->arg, 0, res->body + g->off, n, "");
    } else {
        g->done(g->arg, 0, "", 0, "");
    }
    free(g);
}

/* See gcs_read.h. */
int
bp_gcs_get_start(struct bp_api *api, const char *base, const char *bucket, const char *name,
                 const char *generation, uint64_t size, uint64_t off, size_t len,
                 bp_gcs_get_done_fn done, void *arg, char *err, size_t errlen)
{
    char *obj = bp_url_escape(name, 0), *bkt = bp_url_escape(bucket, 0);
    size_t n = strlen(base) + strlen(obj) + strlen(bkt) + strlen(generation) + 64;
    char *url = bp_xmalloc(n), range[128];
    /* the generation pins the bytes listed: an object replaced since answers 404, not others */
    snprintf(url, n, "%s/b/%s/o/%s?alt=media&generation=%s", base, bkt, obj, generation);
    /* Accept-Encoding: gzip asks for the stored bytes as they are: an object stored with
     * Content-Encoding gzip is otherwise decompressed by GCS on the way out (decompressive
     * transcoding), and such a reply ignores the Range and sends the whole object. The caller
     * inflates gzip objects itself (replay_read.c); curl leaves these bytes alone (http.c). */
    snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64 "\nAccept-Encoding: gzip",
             off, off + (len ? len : 1) - 1);
    struct gcs_get *g = bp_xcalloc(1, sizeof(*g));
    g->done = done;
    g->arg = arg;
    g->size = size;
    g->off = off;
    g->len = len;
    int rc = bp_api_call(api, "GET", url, NULL, range, NULL, 0, GET_TIMEOUT_MS, on_range, g);
    if (rc != 0) {
        snprintf(err, errlen, "reading gs://%s/%s: the call could not start", bucket, name);
        free(g);
    }
    free(url);
    free(obj);
    free(bkt);
    return rc;
}
