/* config.c - the option table and its parser. One row per setting: pipeline.lua keys, command-line
 * flags, --set and --help all come from it, so a new option cannot be half-wired. */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR(field) BP_OPT_STR, offsetof(struct bp_config, field)
#define INT(field) BP_OPT_INT, offsetof(struct bp_config, field)
#define MB (1024L * 1024L)

static const struct bp_opt options[] = {
    { "source.input", "--input", STR(input), NULL, 0, 0,
      "read NDJSON events from this file ('-' = stdin) instead of Pub/Sub" },
    { "source.subscription", "--input_subscription", STR(subscription),
      "projects/re-case/subscriptions/backend-events-topic-sub", 0, 0,
      "Pub/Sub subscription to pull (projects/P/subscriptions/S)" },
    { "source.max_line_bytes", NULL, INT(max_line_bytes), "10485760", 64, 256 * MB,
      "longest accepted event; longer ones are dead-lettered (stage parse)" },
    { "source.batch_messages", NULL, INT(batch_messages), "512", 1, 65536,
      "events handed to Lua per call" },
    { "source.max_outstanding_messages", NULL, INT(max_outstanding_messages), "30000", 1,
      10000000, "flow control: pulling pauses above this many unacked messages" },
    { "source.max_outstanding_bytes", NULL, INT(max_outstanding_bytes), "52428800", 1024,
      4096 * MB, "flow control: pulling pauses above this many unacked bytes" },
    { "source.pull_concurrency", NULL, INT(pull_concurrency), "4", 1, 64,
      "Pub/Sub pull requests in flight" },
    { "source.pull_max_messages", NULL, INT(pull_max_messages), "400", 1, 1000,
      "Pub/Sub: maxMessages of one pull (fewer requests and Lua calls per event; more memory)" },
    { "source.lease_seconds", NULL, INT(lease_seconds), "60", 10, 600,
      "Pub/Sub: ack deadline each lease extension asks for" },
    { "project", "--project", STR(project), "re-case", 0, 0,
      "Google Cloud project of the subscription" },
    { "bigquery.project", "--bq_project", STR(bq_project), "re-case", 0, 0,
      "project of the BigQuery dataset" },
    { "bigquery.dataset", "--bq_dataset", STR(bq_dataset), "backend_events_data", 0, 0,
      "BigQuery dataset of the tables" },
    { "bigquery.batch_rows", NULL, INT(batch_rows), "500", 1, 50000,
      "insertAll request: flush at this many rows" },
    { "bigquery.batch_bytes", NULL, INT(batch_bytes), "5242880", 1024, 9 * MB,
      "insertAll request: flush at this many bytes (the API refuses 10 MB)" },
    { "bigquery.batch_ms", NULL, INT(batch_ms), "1000", 1, 3600000,
      "insertAll request: flush rows older than this" },
    { "bigquery.create_tables", NULL, INT(create_tables), "0", 0, 1,
      "1 (or --create-tables): create the dataset and missing tables from the DDL first" },
    { "bigquery.ddl_dir", NULL, STR(ddl_dir), NULL, 0, 0,
      "folder of the CREATE TABLE files (default: ddl/ in the pipeline's folder, or in its "
      "parent when that is scripts/)" },
    { "archive.path", "--gcs_output_path", STR(archive_path), "gs://backend_events_data/output",
      0, 0, "raw archive root: gs://BUCKET/PREFIX" },
    { "archive.roll_bytes", NULL, INT(roll_bytes), "67108864", 1024, 4096 * MB,
      "archive object: finish at this size" },
    { "archive.roll_seconds", NULL, INT(roll_seconds), "60", 1, 86400,
      "archive object: finish at this age (acks wait for it)" },
    { "archive.max_open", NULL, INT(max_open_objects), "64", 1, 4096,
      "local store: archive objects with a file open at once (one under 64 KB has none); the "
      "largest is finished beyond" },
    { "dead_letter.table", NULL, STR(dead_letter_table), "rejected_events", 0, 0,
      "BigQuery table of dead letters" },
    { "dead_letter.archive_prefix", NULL, STR(dead_letter_prefix), "errors", 0, 0,
      "archive folder of dead letters' raw lines, under the archive prefix" },
    { "route_field", NULL, STR(route_field), "event_type", 0, 0,
      "event field whose value picks the route" },
    { "local_out", "--local-out", STR(local_out), NULL, 0, 0,
      "write tables and archive under this directory instead of BigQuery and GCS" },
    { "stats_seconds", NULL, INT(stats_seconds), "10", 0, 86400,
      "interval of the stats log line (0 = off)" },
    { "drain_seconds", NULL, INT(drain_seconds), "30", 1, 3600,
      "on SIGTERM: longest wait for sinks to finish" },
    { "endpoints.pubsub", NULL, STR(pubsub_endpoint), NULL, 0, 0,
      "Pub/Sub base URL (default: $PUBSUB_EMULATOR_HOST, else Google's)" },
    { "endpoints.bigquery", NULL, STR(bigquery_endpoint), NULL, 0, 0,
      "BigQuery base URL (default: $BIGQUERY_EMULATOR_HOST, else Google's)" },
    { "endpoints.storage", NULL, STR(storage_endpoint), NULL, 0, 0,
      "Cloud Storage base URL (default: $STORAGE_EMULATOR_HOST, else Google's)" },
    { "auth.mode", NULL, STR(auth_mode), "auto", 0, 0,
      "auto (no token for emulator endpoints), adc (always Application Default Credentials) "
      "or none" },
    { "auth.key_file", NULL, STR(auth_key_file), NULL, 0, 0,
      "service-account or authorized_user key (default: $GOOGLE_APPLICATION_CREDENTIALS)" },
    { "auth.token_url", NULL, STR(auth_token_url), NULL, 0, 0,
      "OAuth2 token endpoint instead of the key file's token_uri (tests)" },
    { "http.ca_file", NULL, STR(ca_file), NULL, 0, 0,
      "extra CA bundle for TLS peers (tests with a private CA)" },
    { "retry.attempts", NULL, INT(retry_attempts), "8", 1, 100,
      "attempts per API call (408, 429, 5xx, timeouts, resets)" },
    { "retry.max_ms", NULL, INT(retry_max_ms), "30000", 10, 600000,
      "longest backoff between attempts (full jitter, doubling from 200 ms)" },
    /* operability (issue 9) */
    { "preflight_seconds", NULL, INT(preflight_seconds), "30", 0, 3600,
      "before pulling, check credentials, subscription, dataset, tables and bucket; exit "
      "non-zero if they fail within this long (0 = no preflight)" },
    { "local_out_append", NULL, INT(local_out_append), "0", 0, 1,
      "let --local-out add to a folder that is not empty (refused otherwise)" },
    /* the HTTP listener */
    { "http.listen", "--http", STR(http_listen), NULL, 0, 0,
      "--http ADDR:PORT: serve /metrics, /healthz, /readyz and POST /reload there (e.g. "
      "127.0.0.1:9464; port 0 picks a free one; off by default)" },
    /* scripts: time and memory budgets, sandbox (issue 8 item 4) */
    { "lua.budget_ms", NULL, INT(lua_budget_ms), "1000", 0, 3600000,
      "time budget of one batch of events in Lua: past it the running event is interrupted "
      "and dead-lettered (0 = no budget)" },
    { "lua.hard_ms", NULL, INT(lua_hard_ms), "0", 0, 3600000,
      "an event that cannot be interrupted (compiled loop) is recorded as a suspect after this "
      "long and the process exits (code 3) for a restart; 0 = 4 x lua.budget_ms" },
    { "lua.memory_mb", NULL, INT(lua_memory_mb), "256", 16, 65536,
      "memory cap of the Lua state: the event that passes it is dead-lettered, the state rebuilt" },
    { "sandbox", NULL, INT(sandbox), "1", 0, 1,
      "pipeline.lua `sandbox = false` lets event scripts use os.exit, os.execute, io.popen, "
      "io.open for writing, bytecode and ffi (pipeline.lua only: read as the scripts load)" },
    { "state_dir", NULL, STR(state_dir), NULL, 0, 0,
      "folder of the suspects file (default $STATE_DIRECTORY, $XDG_STATE_HOME/bepipe-lua, "
      "~/.local/state/bepipe-lua)" },
    /* archive (issue 10) */
    { "archive.time", NULL, STR(archive_time), "event", 0, 0,
      "folder hour of an archived event: event (its route's time_field, else the publish "
      "time) or publish (the message's publish time: a folder is complete once its hour is "
      "over)" },
    { "archive.max_open_bytes", NULL, INT(archive_open_bytes), "33554432", 64 * 1024,
      4096 * MB, "archive objects stay open (one per type and hour, late hours too) while "
      "their bytes fit this; beyond, the largest are finished (cloud: they are in memory)" },
    { "archive.max_uploads", NULL, INT(max_uploads), "32", 1, 1024,
      "cloud: archive uploads in flight at once; finished objects past it wait in memory, and "
      "once those hold a quarter of archive.max_open_bytes pulling pauses until uploads catch "
      "up" },
    /* schema (issue 11) */
    { "schema.check", NULL, INT(schema_check), "1", 0, 1,
      "check every row against its table's schema before it is batched (0 = send rows "
      "unchecked and let BigQuery refuse them: the escape hatch if the checker and BigQuery "
      "ever disagree)" },
    /* dead letters (issue 11, item 4) */
    { "dead_letter.format", NULL, STR(dead_letter_format), "rejected_events", 0, 0,
      "columns of dead-letter rows: rejected_events (ddl/rejected_events.sql) or dataflow (the "
      "Pub/Sub-to-BigQuery Dataflow template's error records: ddl/error_records.sql)" },
    /* schema evolution (issue 11 item 2) */
    { "bigquery.update_tables", NULL, INT(update_tables), "0", 0, 1,
      "1 (or --update-tables): before pulling and on reload, add the DDL's new NULLABLE columns "
      "and RECORD fields to the existing tables (tables.patch); a change BigQuery refuses stops "
      "the start (or the reload). --create-tables does it too" },
};

const struct bp_opt *
bp_config_options(size_t *n)
{
    *n = BP_ARRAY_LEN(options);
    return options;
}

static char **
str_slot(struct bp_config *c, const struct bp_opt *o)
{
    return (char **)((char *)c + o->offset);
}

static long *
int_slot(struct bp_config *c, const struct bp_opt *o)
{
    return (long *)((char *)c + o->offset);
}

static int
set_opt(struct bp_config *c, const struct bp_opt *o, const char *value, char *err, size_t errlen)
{
    if (o->type == BP_OPT_STR) {
        char **slot = str_slot(c, o);
        if (o->offset == offsetof(struct bp_config, archive_time) &&
            (!value || (strcmp(value, "event") != 0 && strcmp(value, "publish") != 0))) {
            snprintf(err, errlen, "option %s: '%s' is not event or publish", o->key,
                     value ? value : "");
            return -1;
        }
        if (o->offset == offsetof(struct bp_config, dead_letter_format) &&
            (!value || (strcmp(value, "rejected_events") != 0 &&
                        strcmp(value, "dataflow") != 0))) {
            snprintf(err, errlen, "option %s: '%s' is not rejected_events or dataflow", o->key,
                     value ? value : "");
            return -1;
        }
        free(*slot);
        *slot = value ? bp_xstrdup(value) : NULL;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(value ? value : "", &end, 10);
    /* Lua hands numbers over as text; "500.0" is still an integer. */
    if (end != value && *end == '.' && strspn(end + 1, "0") == strlen(end + 1))
        end += strlen(end);
    if (!value || end == value || *end || errno) {
        snprintf(err, errlen, "option %s: '%s' is not an integer", o->key, value ? value : "");
        return -1;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "option %s: %ld is out of range %ld..%ld", o->key, v, o->min,
                 o->max);
        return -1;
    }
    *int_slot(c, o) = v;
    return 0;
}

/* Sets every option to its default. */
void
bp_config_init(struct bp_config *c)
{
    char err[128];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (set_opt(c, &options[i], options[i].def, err, sizeof(err)) != 0 && options[i].def)
            bp_log(BP_LOG_ERROR, "config", "bad default: %s", err);
}

void
bp_config_free(struct bp_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (options[i].type == BP_OPT_STR) {
            free(*str_slot(c, &options[i]));
            *str_slot(c, &options[i]) = NULL;
        }
}

/* Deep copy (strings duplicated); dst must not hold strings of its own. */
void
bp_config_copy(struct bp_config *dst, const struct bp_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (options[i].type == BP_OPT_STR) {
            char **s = str_slot(dst, &options[i]);
            if (*s)
                *s = bp_xstrdup(*s);
        }
}

/* Sets option `key` (its dotted name) from text. Returns 0, or -1 with a message in err. */
int
bp_config_set(struct bp_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (strcmp(options[i].key, key) == 0)
            return set_opt(c, &options[i], value, err, errlen);
    snprintf(err, errlen, "unknown option '%s' (bepipe-lua --help lists them)", key);
    return -1;
}

/* The option behind a command-line flag such as "--bq_dataset", or NULL. */
const struct bp_opt *
bp_config_find_flag(const char *flag)
{
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (options[i].flag && strcmp(options[i].flag, flag) == 0)
            return &options[i];
    return NULL;
}

/* Splits "gs://bucket/some/prefix" into malloc'd bucket and prefix (prefix may be "").
 * Returns 0, or -1 when the path is not a gs:// URL with a bucket. */
int
bp_config_archive_split(const char *path, char **bucket, char **prefix)
{
    if (!path || strncmp(path, "gs://", 5) != 0 || path[5] == '\0' || path[5] == '/')
        return -1;
    const char *b = path + 5;
    const char *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    const char *p = slash ? slash + 1 : "";
    size_t plen = strlen(p);
    while (plen && p[plen - 1] == '/')
        plen--;
    *bucket = bp_xstrndup(b, blen);
    *prefix = bp_xstrndup(p, plen);
    return 0;
}

/* Logs the options that differ: on reload those of sources and sinks need a restart. */
void
bp_config_diff_log(const struct bp_config *a, const struct bp_config *b)
{
    struct bp_config *ca = (struct bp_config *)a, *cb = (struct bp_config *)b;
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++) {
        const struct bp_opt *o = &options[i];
        int differ;
        if (o->type == BP_OPT_STR) {
            const char *x = *str_slot(ca, o), *y = *str_slot(cb, o);
            differ = (x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0);
        } else {
            differ = *int_slot(ca, o) != *int_slot(cb, o);
        }
        if (differ)
            bp_log(BP_LOG_WARN, "reload", "option %s changed in pipeline.lua; it applies at the "
                   "next restart", o->key);
    }
}
