/* tables_update.c - the live tables' schemas (tables.get) and, with --update-tables or
 * --create-tables, the tables.patch that adds a DDL's new columns to its table (see
 * tables_update.h). One state per table, all tables in parallel; the API layer's retry policy
 * covers transient failures, so a table that still does not answer is a logged fallback (or a
 * failure when it was to be patched), never a wait without end. */
#include "api.h"
#include "log.h"
#include "schema_diff.h"
#include "tables_update.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct one {
    struct bp_tables_sync *s;
    char *table;
    char *ddl;          /* its tables.insert resource, or NULL (a route without DDL) */
    int routed;
    char *summary;      /* what a patch in flight changes, for its log line */
};

struct bp_tables_sync {
    struct bp_api *api;
    char *tables_url;   /* ".../projects/P/datasets/D/tables" */
    char *id;           /* "P:D", for messages */
    int update, create;
    struct one *v;
    size_t n, pending;
    int failed;
    struct bp_schema_set live;
    bp_tables_sync_fn done;
    void *arg;
};

/* Frees everything; the live set too (done has moved what it keeps). */
void
bp_tables_sync_free(struct bp_tables_sync *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].table);
        free(s->v[i].ddl);
        free(s->v[i].summary);
    }
    free(s->v);
    bp_schema_set_clear(&s->live);
    free(s->tables_url);
    free(s->id);
    free(s);
}

static void
one_end(struct one *o)
{
    struct bp_tables_sync *s = o->s;
    if (--s->pending)
        return;
    if (s->failed)
        bp_schema_set_clear(&s->live);
    s->done(s->arg, s->failed ? -1 : 0, &s->live);
    bp_tables_sync_free(s);
}

/* A call's outcome for a log line: "503 {...}" or the transport error. */
static void
describe(const struct bp_http_result *res, char *out, size_t outlen)
{
    snprintf(out, outlen, "%ld %.*s%s", res->status,
             (int)(res->body_len > 300 ? 300 : res->body_len), res->body ? res->body : "",
             res->error ? res->error : "");
}

static void
fail(struct one *o, const char *what, const struct bp_http_result *res)
{
    char why[512];
    describe(res, why, sizeof(why));
    bp_log(BP_LOG_ERROR, "tables", "table %s.%s: %s failed: %s", o->s->id, o->table, what, why);
    o->s->failed = 1;
}

/* Keeps a live table resource's schema (JSON text) for the row check. */
static void
add_live(struct one *o, const char *body, size_t len)
{
    char why[600];
    char *copy = bp_xstrndup(body, len);
    if (bp_schema_set_add_resources(&o->s->live, &copy, 1, why, sizeof(why)) != 0)
        bp_log(BP_LOG_WARN, "schema", "the live schema of %s.%s is not usable (%s): its rows are "
               "checked against the DDL", o->s->id, o->table, why);
    free(copy);
}

static void
patched(void *arg, const struct bp_http_result *res)
{
    struct one *o = arg;
    if (bp_api_failed(res)) {
        fail(o, "tables.patch (adding the DDL's new columns)", res);
    } else {
        bp_log(BP_LOG_INFO, "tables", "table %s.%s patched to its DDL: %s", o->s->id, o->table,
               o->summary);
        add_live(o, res->body, res->body_len);
    }
    one_end(o);
}

static void
created(void *arg, const struct bp_http_result *res)
{
    struct one *o = arg;
    if (bp_api_failed(res)) {
        fail(o, "tables.insert", res);
    } else {
        bp_log(BP_LOG_INFO, "tables", "table %s.%s created from the DDL", o->s->id, o->table);
        add_live(o, res->body, res->body_len);
    }
    one_end(o);
}

/* Starts a call for o (body taken); a failure to start fails the sync. Returns 1 when o waits
 * for the call. */
static int
call(struct one *o, const char *method, char *body, bp_api_done_fn cb)
{
    char url[4096];
    snprintf(url, sizeof(url), "%s%s%s", o->s->tables_url, strcmp(method, "POST") ? "/" : "",
             strcmp(method, "POST") ? o->table : "");
    if (bp_api_call(o->s->api, method, url, "application/json", NULL, body,
                    body ? strlen(body) : 0, 60000, cb, o) == 0)
        return 1;
    bp_log(BP_LOG_ERROR, "tables", "table %s.%s: %s could not start", o->s->id, o->table, method);
    o->s->failed = 1;
    return 0;
}

/* The live table answered: with update, patch it to its DDL (or refuse); else name how it
 * differs from the DDL, once, and keep its schema. Returns 1 when a patch is in flight. */
static int
on_live(struct one *o, const char *body, size_t len)
{
    struct bp_tables_sync *s = o->s;
    struct bp_schema_diff d;
    if (!o->ddl) {
        add_live(o, body, len);
        return 0;
    }
    if (bp_schema_diff(o->ddl, strlen(o->ddl), body, len, &d) != 0) {
        bp_log(BP_LOG_WARN, "schema", "table %s.%s: %s", s->id, o->table, d.error);
    } else if (s->update && d.error[0]) {
        bp_log(BP_LOG_ERROR, "tables", "table %s.%s: the DDL cannot be applied: %s; nothing was "
               "changed", s->id, o->table, d.error);
        s->failed = 1;
    } else if (s->update && d.patch) {
        o->summary = bp_xstrdup(d.summary);
        char *patch = d.patch;
        d.patch = NULL;     /* the call owns it */
        return call(o, "PATCH", patch, patched);
    } else if (d.summary[0]) {
        bp_log(BP_LOG_WARN, "schema", "table %s.%s: rows are checked against the live table's "
               "schema, which differs from the DDL: %s", s->id, o->table, d.summary);
    }
    bp_schema_diff_free(&d);
    if (!s->failed)
        add_live(o, body, len);
    return 0;
}

/* tables.get answered (or failed after its retries). */
static void
got(void *arg, const struct bp_http_result *res)
{
    struct one *o = arg;
    struct bp_tables_sync *s = o->s;
    char why[512];
    if (!bp_api_failed(res)) {
        if (on_live(o, res->body, res->body_len))
            return;
    } else if (res->status == 404 && s->update && s->create && o->ddl) {
        if (call(o, "POST", bp_xstrdup(o->ddl), created))
            return;
    } else if (res->status == 404 && s->update && o->routed) {
        bp_log(BP_LOG_ERROR, "tables", "table %s.%s does not exist: --update-tables changes "
               "existing tables; add --create-tables to create it from the DDL", s->id, o->table);
        s->failed = 1;
    } else if (s->update && res->status != 404) {
        fail(o, "tables.get (its schema is needed to apply the DDL)", res);
    } else {
        describe(res, why, sizeof(why));
        bp_log(BP_LOG_WARN, "schema", "table %s.%s: tables.get failed (%s): %s", s->id, o->table,
               why, o->routed ? "its rows are checked against its DDL's schema, if any" :
               "not in any route, left as it is");
    }
    one_end(o);
}

static struct one *
add_table(struct bp_tables_sync *s, const char *table)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].table, table) == 0)
            return &s->v[i];
    s->v = bp_xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
    memset(&s->v[s->n], 0, sizeof(*s->v));
    s->v[s->n].s = s;
    s->v[s->n].table = bp_xstrdup(table);
    return &s->v[s->n++];
}

/* The DDL's resources by table; with update every DDL table is synced, else only routed
 * ones. */
static void
add_bodies(struct bp_tables_sync *s, const struct bp_tables_sync_params *p)
{
    for (size_t i = 0; i < p->nbodies; i++) {
        json_t *doc = json_loads(p->bodies[i], 0, NULL);
        const char *id = json_string_value(json_object_get(json_object_get(doc, "tableReference"),
                                                           "tableId"));
        struct one *o = NULL;
        for (size_t k = 0; id && k < s->n && !o; k++)
            if (strcmp(s->v[k].table, id) == 0)
                o = &s->v[k];
        if (id && !o && p->update)
            o = add_table(s, id);
        if (o) {
            free(o->ddl);
            o->ddl = bp_xstrdup(p->bodies[i]);
        }
        json_decref(doc);
    }
}

/* See tables_update.h. */
struct bp_tables_sync *
bp_tables_sync_start(const struct bp_tables_sync_params *p, bp_tables_sync_fn done, void *arg)
{
    char url[2048];
    if (!p->api)
        return NULL;
    struct bp_tables_sync *s = bp_xcalloc(1, sizeof(*s));
    s->api = p->api;
    s->update = p->update;
    s->create = p->create;
    s->done = done;
    s->arg = arg;
    snprintf(url, sizeof(url), "%s/projects/%s/datasets/%s/tables", p->base, p->project,
             p->dataset);
    s->tables_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s:%s", p->project, p->dataset);
    s->id = bp_xstrdup(url);
    for (size_t i = 0; i < p->ntables; i++)
        add_table(s, p->tables[i])->routed = 1;
    add_bodies(s, p);
    if (s->n == 0) {
        bp_tables_sync_free(s);
        return NULL;
    }
    /* one more pending than calls until all are started, so no end runs in this loop */
    s->pending = s->n + 1;
    for (size_t i = 0; i < s->n; i++)
        if (!call(&s->v[i], "GET", NULL, got))
            s->pending--;
    if (s->pending == 1) {
        /* nothing started (only a broken API layer): done must not run inside this call */
        bp_tables_sync_free(s);
        return NULL;
    }
    s->pending--;
    return s;
}
