/* rt_preflight.c - what the start checks. Offline, before anything starts (and all of --check):
 * the configuration built as the run builds it, and refused where the run would refuse it.
 * Online (preflight.c runs the checks): one GET per resource the pipeline reads or writes, each
 * through the API layer it will use, with the fix and the IAM role to name when it fails; and
 * which credentials were found, for a missing token. */
#include "httpd.h"
#include "log.h"
#include "preflight.h"
#include "replay.h"
#include "rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* See rt.h. */
int
bp_rt_cloud_settings(const struct bp_config *c, struct bp_endpoints *ep, struct bp_auth **auth,
               char *err, size_t errlen)
{
    *auth = NULL;
    if (bp_endpoints_init(ep, c->pubsub_endpoint, c->bigquery_endpoint, c->storage_endpoint,
                          err, errlen) != 0)
        return -1;
    int force = strcmp(c->auth_mode, "adc") == 0;
    /* the Storage Write API's endpoint is a gRPC one (HOST:PORT), checked here with the others */
    int sw_emulated = 1;
    if (!c->local_out && strcmp(c->bq_method, "storage_write") == 0) {
        char *host;
        int port;
        if (bp_endpoint_storage_write(c->bigquery_storage_endpoint, &host, &port, &sw_emulated,
                                      err, errlen) != 0) {
            bp_endpoints_free(ep);
            return -1;
        }
        free(host);
    }
    int need_token = force || (strcmp(c->auth_mode, "auto") == 0 &&
                               (!ep->pubsub_emulated || !ep->bigquery_emulated ||
                                !ep->storage_emulated || !sw_emulated));
    if (!need_token)
        return 0;
    const char *env = getenv("GOOGLE_APPLICATION_CREDENTIALS"), *from = NULL;
    char why[2048];
    *auth = bp_auth_new(c->auth_key_file, 0, NULL, why, sizeof(why));
    if (!*auth)
        from = c->auth_key_file && *c->auth_key_file ? "auth.key_file"
             : env && *env ? "GOOGLE_APPLICATION_CREDENTIALS" : "credentials";
    else if (c->auth_token_url &&
             bp_auth_set_token_url(*auth, c->auth_token_url, why, sizeof(why)) != 0)
        from = "auth.token_url";
    if (!from)
        return 0;
    snprintf(err, errlen, "%s: %s", from, why);
    bp_auth_free(*auth);
    *auth = NULL;
    bp_endpoints_free(ep);
    return -1;
}

/* Whether dir exists and holds anything: a second run into the same --local-out would mix two
 * runs' rows and objects, so it needs --append. */
static int
dir_not_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    if (!d)
        return 0;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return found;
}

/* A file source opens as bp_source_ndjson_new opens it ("-" is stdin: nothing to check). */
static int
check_input(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd;
    if (strcmp(path, "-") == 0)
        return 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "source.input: cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "source.input: cannot read %s: is a directory", path);
        return -1;
    }
    return 0;
}

/* --local-out's folder can be made where bp_store_local_new will make it: the path, or its
 * nearest existing parent, is a folder we may write (nothing is created here). */
static int
check_local_out(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s", dir);
    for (;;) {
        if (stat(path, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                errno = ENOTDIR;
            else if (access(path, W_OK | X_OK) == 0)
                return 0;
            break;
        }
        char *slash = strrchr(path, '/');
        if (errno != ENOENT || !slash) {
            if (!slash && errno == ENOENT)
                snprintf(path, sizeof(path), ".");     /* a relative name: the working folder */
            else
                break;
        } else if (slash == path) {
            path[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
    int e = errno;
    if (strcmp(path, dir) == 0)
        snprintf(err, errlen, "local_out: cannot create %s: %s", dir, strerror(e));
    else
        snprintf(err, errlen, "local_out: cannot create %s: %s: %s", dir, path, strerror(e));
    return -1;
}

/* See rt.h. Builds what bp_rt_start builds from the configuration up to the first socket, with
 * the same functions, and throws it away. */
int
bp_rt_check_config(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    struct bp_endpoints ep;
    struct bp_auth *auth;
    struct sockaddr_storage ss;
    int v6;
    if (bp_rt_check_columns(rt, err, errlen) != 0)
        return -1;
    char *bucket, *prefix;
    if (bp_config_archive_split(c->archive_path, &bucket, &prefix) != 0) {
        snprintf(err, errlen, "archive.path: expected gs://BUCKET[/PREFIX], got \"%s\"",
                 c->archive_path ? c->archive_path : "");
        return -1;
    }
    free(bucket);
    free(prefix);
    if (rt->workers > 1 && c->input && !rt->replay) {
        snprintf(err, errlen, "--workers needs the Pub/Sub source, not source.input (%s)",
                 c->input);
        return -1;
    }
    if (!c->local_out || !bp_rt_local_source(rt)) {
        if (bp_rt_cloud_settings(c, &ep, &auth, err, errlen) != 0)
            return -1;
        bp_auth_free(auth);
        bp_endpoints_free(&ep);
    }
    if (c->local_out && !c->local_out_append && dir_not_empty(c->local_out)) {
        snprintf(err, errlen, "--local-out %s is not empty: choose a new folder, or add --append "
                 "to add this run's rows and objects to it", c->local_out);
        return -1;
    }
    if (c->local_out && check_local_out(c->local_out, err, errlen) != 0)
        return -1;
    if (c->input && !rt->replay && check_input(c->input, err, errlen) != 0)
        return -1;
    if (c->http_listen && bp_httpd_parse_addr(c->http_listen, &ss, &v6, err, errlen) != 0)
        return -1;
    return 0;
}


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
