/* rt_preflight.c - what the preflight checks (preflight.c runs the checks): one GET per resource
 * the pipeline reads or writes, each through the API layer it will use, with the fix and the IAM
 * role to name when it fails; and which credentials were found, for a missing token. */
#include "log.h"
#include "preflight.h"
#include "replay.h"
#include "rt.h"

#include <stdarg.h>
#include <stdio.h>

static void
add_check(struct bp_rt *rt, struct bp_api *api, const char *what, const char *fix,
          const char *role, int forbidden_ok, const char *fmt, ...) BP_PRINTF(7, 8);

static void
add_check(struct bp_rt *rt, struct bp_api *api, const char *what, const char *fix,
          const char *role, int forbidden_ok, const char *fmt, ...)
{
    char url[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof(url), fmt, ap);
    va_end(ap);
    bp_preflight_add(rt->preflight, api, url, what, fix, role, forbidden_ok);
}

/* One GET per thing the pipeline reads or writes, each through the API layer it will use. */
static void
add_checks(struct bp_rt *rt)
{
    struct bp_config *c = &rt->cfg;
    char what[1024], fix[1024];
    if (!c->input && !rt->replay) {
        snprintf(what, sizeof(what), "subscription %s", c->subscription);
        snprintf(fix, sizeof(fix), "create it (gcloud pubsub subscriptions create NAME --topic "
                 "TOPIC) or set source.subscription / --input_subscription");
        add_check(rt, bp_rt_api_for(rt, rt->ep.pubsub_emulated), what, fix,
                  "roles/pubsub.subscriber", 1, "%s/%s", rt->ep.pubsub, c->subscription);
    }
    if (c->local_out)
        return;
    struct bp_api *bq = bp_rt_api_for(rt, rt->ep.bigquery_emulated);
    if (!c->create_tables) {
        snprintf(what, sizeof(what), "dataset %s:%s", c->bq_project, c->bq_dataset);
        snprintf(fix, sizeof(fix), "create it with --create-tables (or bq mk --dataset %s:%s)",
                 c->bq_project, c->bq_dataset);
        add_check(rt, bq, what, fix, "roles/bigquery.dataEditor", 0, "%s/projects/%s/datasets/%s",
                  rt->ep.bigquery, c->bq_project, c->bq_dataset);
        for (size_t i = 0; i < rt->tables.n; i++) {
            const char *t = rt->tables.v[i]->table;
            snprintf(what, sizeof(what), "table %s:%s.%s", c->bq_project, c->bq_dataset, t);
            snprintf(fix, sizeof(fix), "create it with --create-tables (from ddl/%s.sql) or fix "
                     "the route's table name", t);
            add_check(rt, bq, what, fix, "roles/bigquery.dataEditor", 0,
                      "%s/projects/%s/datasets/%s/tables/%s", rt->ep.bigquery, c->bq_project,
                      c->bq_dataset, t);
        }
    }
    if (rt->replay && !rt->replay->archive)
        return;     /* a replay writes no archive (its sources' buckets are listed anyway) */
    snprintf(what, sizeof(what), "bucket gs://%s", rt->bucket);
    snprintf(fix, sizeof(fix), "create it (gcloud storage buckets create gs://%s) or fix "
             "archive.path", rt->bucket);
    add_check(rt, bp_rt_api_for(rt, rt->ep.storage_emulated), what, fix,
              "roles/storage.objectCreator", 1, "%s/b/%s", rt->ep.storage, rt->bucket);
}

/* Which credentials were found and the ADC order, for a preflight that gets no token. */
static void
auth_hint(struct bp_rt *rt)
{
    if (rt->auth && bp_auth_kind(rt->auth) == BP_AUTH_METADATA)
        snprintf(rt->auth_hint, sizeof(rt->auth_hint), "Application Default Credentials tried "
                 "GOOGLE_APPLICATION_CREDENTIALS (not set), gcloud's "
                 "application_default_credentials.json (not found), then the %s",
                 bp_auth_source(rt->auth));
    else if (rt->auth)
        snprintf(rt->auth_hint, sizeof(rt->auth_hint), "the %s credentials in %s",
                 bp_auth_kind_name(bp_auth_kind(rt->auth)), bp_auth_source(rt->auth));
    else
        snprintf(rt->auth_hint, sizeof(rt->auth_hint), "no credentials (emulator endpoints)");
}

/* Starts the preflight of rt's source and sinks; done(rt, ok, msg) runs once, from the loop.
 * The preflight object lives until bp_rt_free (after the APIs that may hold its calls). */
void
bp_rt_preflight_start(struct bp_rt *rt, bp_preflight_done_fn done)
{
    auth_hint(rt);
    rt->preflight = bp_preflight_new(rt->loop, (double)rt->cfg.preflight_seconds, rt->auth_hint,
                                     done, rt);
    add_checks(rt);
    bp_preflight_start(rt->preflight);
}
