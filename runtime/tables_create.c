/* tables_create.c - `--create-tables`: before pulling starts, the dataset and every table of
 * the CREATE TABLE files in ddl/ are created through the BigQuery API (datasets.insert, tables.insert); what already
 * exists (409) is left as it is. The resources come from bepipe.ddl, so partitioning, clustering
 * and descriptions are the DDL's. */
#include "api.h"
#include "log.h"
#include "tables_create.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct creation {
    struct bp_api *api;
    char *tables_url;
    char **bodies;
    size_t n, pending;
    int failed;
    bp_tables_done_fn done;
    void *arg;
};

static void
finish(struct creation *c)
{
    c->done(c->arg, c->failed ? -1 : 0);
    free(c->tables_url);
    for (size_t i = 0; i < c->n; i++)
        free(c->bodies[i]);
    free(c->bodies);
    free(c);
}

static void
table_done(void *arg, const struct bp_http_result *res)
{
    struct creation *c = arg;
    if (res->status == 200)
        bp_log(BP_LOG_INFO, "tables", "created a table (%zu left)", c->pending - 1);
    else if (res->status != 409) {
        c->failed = 1;
        bp_log(BP_LOG_ERROR, "tables", "tables.insert failed: %ld %.*s%s", res->status,
               (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
               res->error ? res->error : "");
    }
    if (--c->pending == 0)
        finish(c);
}

static void
dataset_done(void *arg, const struct bp_http_result *res)
{
    struct creation *c = arg;
    if (res->status != 200 && res->status != 409) {
        bp_log(BP_LOG_ERROR, "tables", "datasets.insert failed: %ld %.*s%s", res->status,
               (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
               res->error ? res->error : "");
        c->failed = 1;
        finish(c);
        return;
    }
    c->pending = c->n;
    if (c->n == 0) {
        finish(c);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        char *body = c->bodies[i];
        c->bodies[i] = NULL;   /* the call owns it now */
        if (bp_api_call(c->api, "POST", c->tables_url, "application/json", NULL, body,
                        strlen(body), 60000, table_done, c) != 0) {
            c->failed = 1;
            if (--c->pending == 0)
                finish(c);
        }
    }
}

/* Creates project.dataset and the tables (JSON bodies, taken) at base ("…/bigquery/v2"), then
 * calls done(arg, 0) or done(arg, -1) from the loop. */
void
bp_tables_create(struct bp_api *api, const char *base, const char *project, const char *dataset,
                 char **bodies, size_t n, bp_tables_done_fn done, void *arg)
{
    struct creation *c = bp_xcalloc(1, sizeof(*c));
    char url[2048];
    c->api = api;
    c->bodies = bodies;
    c->n = n;
    c->done = done;
    c->arg = arg;
    snprintf(url, sizeof(url), "%s/projects/%s/datasets/%s/tables", base, project, dataset);
    c->tables_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s/projects/%s/datasets", base, project);
    json_t *ds = json_pack("{s:{s:s,s:s}}", "datasetReference", "projectId", project,
                           "datasetId", dataset);
    char *body = ds ? json_dumps(ds, JSON_COMPACT) : NULL;
    json_decref(ds);
    if (!body) {
        c->failed = 1;
        finish(c);
        return;
    }
    bp_log(BP_LOG_INFO, "tables", "creating dataset %s.%s and %zu tables from DDL (existing ones "
           "are kept)", project, dataset, n);
    if (bp_api_call(api, "POST", url, "application/json", NULL, body, strlen(body), 60000,
                    dataset_done, c) != 0) {
        c->failed = 1;
        finish(c);
    }
}
