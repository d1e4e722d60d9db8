/* config.c - the option table and its parser. One row per setting: pipeline.lua keys, command-line
 * flags, --set and --help all come from it, so a new option cannot be half-wired. */
#include "config.h"
#include "endpoints.h"
#include "log.h"
#include "quarantine.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR(field) BP_OPT_STR, offsetof(struct bp_config, field)
#define INT(field) BP_OPT_INT, offsetof(struct bp_config, field)
#define BOOL(field) BP_OPT_BOOL, offsetof(struct bp_config, field)
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
    { "bigquery.create_tables", NULL, BOOL(create_tables), "0", 0, 1,
      "1 (or --create-tables): create the dataset and missing tables from the DDL first" },
    { "bigquery.ddl_dir", NULL, STR(ddl_dir), NULL, 0, 0,
      "folder of the CREATE TABLE files (default: ddl/ in the pipeline's folder, or in its "
      "parent when that is scripts/)" },
    { "bigquery.refused_grace_seconds", NULL, INT(refused_grace_seconds), "600", 0, 86400,
      "a table or the archive's bucket answering 403 (quota, permissions) or 404 is paused and "
      "its rows or objects held and sent again; refused past this long, rows are dead-lettered "
      "(the dead-letter table, the bucket: the process stops)" },
    { "bigquery.method", NULL, STR(bq_method), "insert_all", 0, 0,
      "how rows reach BigQuery: insert_all (tabledata.insertAll, JSON over HTTP) or "
      "storage_write (the Storage Write API's default stream over gRPC, at-least-once: no "
      "insertId de-duplication)" },
    { "bigquery.exactly_once", NULL, BOOL(exactly_once), "0", 0, 1,
      "storage_write only: rows go to COMMITTED streams of this process's own with an offset "
      "on every append, recorded in state_dir/appends-<worker>.log before each is sent, so a "
      "message redelivered after a crash is not appended twice (state_dir must outlive the "
      "process)" },
    { "bigquery.append_timeout_seconds", NULL, INT(append_timeout_seconds), "60", 1, 3600,
      "storage_write: an AppendRows request without a reply this long ends its call; the call's "
      "requests are sent again on a new one (a retry)" },
    { "archive.path", "--gcs_output_path", STR(archive_path), "gs://backend_events_data/output",
      0, 0, "raw archive root: gs://BUCKET/PREFIX" },
    { "archive.roll_bytes", NULL, INT(roll_bytes), "67108864", 1024, 4096 * MB,
      "archive object: finish at this size" },
    { "archive.roll_seconds", NULL, INT(roll_seconds), "60", 1, 86400,
      "archive object: finish at this age (acks wait for it)" },
    { "archive.max_open", NULL, INT(max_open_objects), "64", 1, 4096,
      "local store: archive objects with a file open at once (one under 64 KB has none); the "
      "largest is finished beyond" },
    { "dead_letter.table", NULL, STR(dead_letter_table), NULL, 0, 0,
      "BigQuery table of dead letters (default: rejected_events, or events_error_records with "
      "dead_letter.format = dataflow)" },
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
    { "endpoints.bigquery_storage", NULL, STR(bigquery_storage_endpoint), NULL, 0, 0,
      "BigQuery Storage Write API emulator HOST:PORT, gRPC over h2c (default: "
      "$BIGQUERY_STORAGE_EMULATOR_HOST, else bigquerystorage.googleapis.com:443 over TLS)" },
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
    /* preflight and --local-out */
    { "preflight_seconds", NULL, INT(preflight_seconds), "30", 0, 3600,
      "before pulling, check credentials, subscription, dataset, tables and bucket; exit "
      "non-zero if they fail within this long (0 = no preflight)" },
    { "local_out_append", NULL, BOOL(local_out_append), "0", 0, 1,
      "let --local-out add to a folder that is not empty (refused otherwise)" },
    /* the HTTP listener */
    { "http.listen", "--http", STR(http_listen), NULL, 0, 0,
      "--http ADDR:PORT: serve /metrics, /healthz, /readyz and POST /reload there (e.g. "
      "127.0.0.1:9464; port 0 picks a free one; off by default)" },
    /* scripts: time and memory budgets, sandbox */
    { "lua.budget_ms", NULL, INT(lua_budget_ms), "1000", 0, 3600000,
      "time budget of one event in Lua: past it the event is interrupted "
      "and dead-lettered (0 = no budget)" },
    { "lua.batch_budget_ms", NULL, INT(lua_batch_budget_ms), "500", 0, 3600000,
      "time one batch may hold the loop in Lua: past it no new event starts and the rest of the "
      "batch runs after the loop has served timers and I/O (0 = no cap; needs lua.budget_ms)" },
    { "lua.hard_ms", NULL, INT(lua_hard_ms), "0", 0, 3600000,
      "an event that cannot be interrupted (compiled loop) is recorded as a suspect after this "
      "long and the process exits (code 3) for a restart; 0 = 4 x lua.budget_ms" },
    { "lua.memory_mb", NULL, INT(lua_memory_mb), "256", 16, 65536,
      "memory cap of the Lua state: the event that passes it is dead-lettered, the state rebuilt" },
    { "sandbox", NULL, BOOL(sandbox), "1", 0, 1,
      "pipeline.lua `sandbox = false` lets event scripts use os.exit, os.execute, io.popen, "
      "io.open for writing, bytecode and ffi (pipeline.lua only: read as the scripts load)" },
    { "state_dir", NULL, STR(state_dir), NULL, 0, 0,
      "folder of the suspects file (default: a folder of this pipeline's own, named after "
      "its file and a hash of its absolute path, under $STATE_DIRECTORY, "
      "$XDG_STATE_HOME/bepipe-lua or ~/.local/state/bepipe-lua)" },
    /* archive */
    { "archive.time", NULL, STR(archive_time), "event", 0, 0,
      "folder hour of an archived event: event (its route's time_field, else the publish "
      "time) or publish (the message's publish time: a folder is complete once its hour is "
      "over)" },
    { "archive.max_open_bytes", NULL, INT(archive_open_bytes), "33554432", 64 * 1024,
      4096 * MB, "archive objects stay open (one per type and hour, late hours too) while "
      "their bytes fit this; beyond, the largest are finished (cloud: they are in memory)" },
    { "archive.compression", NULL, STR(archive_compression), "none", 0, 0,
      "cloud: gzip stores archive and dead-letter objects gzip-compressed (about a quarter of "
      "the bytes) with Content-Encoding gzip, names unchanged: readers that do not ask for "
      "gzip get NDJSON (GCS's decompressive transcoding); none stores NDJSON as is. "
      "--local-out writes NDJSON either way" },
    { "archive.max_uploads", NULL, INT(max_uploads), "32", 1, 1024,
      "cloud: archive uploads in flight at once; finished objects past it wait in memory, and "
      "once those hold a quarter of archive.max_open_bytes pulling pauses until uploads catch "
      "up" },
    /* schema check */
    { "schema.check", NULL, BOOL(schema_check), "1", 0, 1,
      "check every row against its table's schema before it is batched (0 = send rows "
      "unchecked and let BigQuery refuse them: the escape hatch if the checker and BigQuery "
      "ever disagree)" },
    /* dead letters */
    { "dead_letter.format", NULL, STR(dead_letter_format), "rejected_events", 0, 0,
      "columns of dead-letter rows: rejected_events (ddl/rejected_events.sql) or dataflow (the "
      "Pub/Sub-to-BigQuery Dataflow template's error records: ddl/error_records.sql)" },
    /* schema evolution */
    { "bigquery.update_tables", NULL, BOOL(update_tables), "0", 0, 1,
      "1 (or --update-tables): before pulling and on reload, add the DDL's new NULLABLE columns "
      "and RECORD fields to the existing tables (tables.patch); a change BigQuery refuses stops "
      "the start (or the reload). --create-tables does it too" },
    /* redeliveries */
    { "archive.dedup_ids", NULL, INT(archive_dedup_ids), "100000", 0, 1000000,
      "message ids of lines in stored archive objects remembered (the last N, 16 bytes each): "
      "a redelivered message among them is not archived again (0 = off)" },
    { "dead_letter.max_attempts", NULL, INT(dead_letter_max_attempts), "5", 1, 1000,
      "deliveries of a message whose dead-letter row the table refuses (Pub/Sub's "
      "deliveryAttempt, else the suspects file's count); at this one it is set aside under "
      "quarantine/ in the archive, logged and acked instead of looping" },
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
is_archive_path(const char *v)
{
    char *bucket, *prefix;
    if (bp_config_archive_split(v, &bucket, &prefix) != 0)
        return 0;
    free(bucket);
    free(prefix);
    return 1;
}

static int
is_archive_time(const char *v)
{
    return strcmp(v, "event") == 0 || strcmp(v, "publish") == 0;
}

static int
is_compression(const char *v)
{
    return strcmp(v, "none") == 0 || strcmp(v, "gzip") == 0;
}

static int
is_dead_letter_format(const char *v)
{
    return strcmp(v, "rejected_events") == 0 || strcmp(v, "dataflow") == 0;
}

static int
is_bq_method(const char *v)
{
    return strcmp(v, "insert_all") == 0 || strcmp(v, "storage_write") == 0;
}

/* HOST:PORT with a port in 1..65535 (a bracketed IPv6 address too): a gRPC emulator is reached
 * with h2c prior knowledge, so no scheme is taken. */
int
bp_hostport_valid(const char *v)
{
    const char *c = strrchr(v, ':');
    if (!c || c == v || !c[1] || strlen(c + 1) > 5)
        return 0;
    long port = 0;
    for (const char *p = c + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535 && !strpbrk(v, "/ \t\r\n");
}

static int
is_auth_mode(const char *v)
{
    return strcmp(v, "auto") == 0 || strcmp(v, "adc") == 0 || strcmp(v, "none") == 0;
}

/* projects/P/subscriptions/S with P and S non-empty and free of '/': the name the pull URL is
 * made of (anything else is a 404 at the first pull, or a URL of another resource). */
static int
is_subscription(const char *v)
{
    const char *p = v + 9, *s;
    if (strncmp(v, "projects/", 9) != 0 || !(s = strstr(p, "/subscriptions/")) || s == p)
        return 0;
    if (memchr(p, '/', (size_t)(s - p)))
        return 0;
    s += strlen("/subscriptions/");
    return *s && !strchr(s, '/') && !strpbrk(s, " \t\r\n");
}

static int
non_empty(const char *v)
{
    return *v != '\0';
}

/* The string options whose text the runtime refuses unless it has a form: what they expect
 * (for the message) and the test. The others take any text. */
static const struct str_rule {
    size_t offset;
    const char *expect;
    int (*ok)(const char *v);
} str_rules[] = {
    { offsetof(struct bp_config, archive_path), "gs://BUCKET[/PREFIX]", is_archive_path },
    { offsetof(struct bp_config, archive_time), "event or publish", is_archive_time },
    { offsetof(struct bp_config, archive_compression), "gzip or none", is_compression },
    { offsetof(struct bp_config, dead_letter_format), "rejected_events or dataflow",
      is_dead_letter_format },
    { offsetof(struct bp_config, auth_mode), "auto, adc or none", is_auth_mode },
    { offsetof(struct bp_config, bq_method), "insert_all or storage_write", is_bq_method },
    { offsetof(struct bp_config, bigquery_storage_endpoint), "HOST:PORT", bp_hostport_valid },
    { offsetof(struct bp_config, subscription), "projects/PROJECT/subscriptions/NAME",
      is_subscription },
    { offsetof(struct bp_config, pubsub_endpoint), BP_ENDPOINT_EXPECT, bp_endpoint_valid },
    { offsetof(struct bp_config, bigquery_endpoint), BP_ENDPOINT_EXPECT, bp_endpoint_valid },
    { offsetof(struct bp_config, storage_endpoint), BP_ENDPOINT_EXPECT, bp_endpoint_valid },
    { offsetof(struct bp_config, auth_token_url), BP_ENDPOINT_EXPECT, bp_endpoint_valid },
    { offsetof(struct bp_config, project), "a project name", non_empty },
    { offsetof(struct bp_config, bq_project), "a project name", non_empty },
    { offsetof(struct bp_config, bq_dataset), "a dataset name", non_empty },
    { offsetof(struct bp_config, route_field), "the name of an event field", non_empty },
    { offsetof(struct bp_config, dead_letter_prefix), "a folder name", non_empty },
};

static const struct str_rule *
str_rule(const struct bp_opt *o)
{
    for (size_t i = 0; i < BP_ARRAY_LEN(str_rules); i++)
        if (str_rules[i].offset == o->offset)
            return &str_rules[i];
    return NULL;
}

/* What option o takes, for messages: "an integer in 1..1000", "true or false", the rule's. */
static const char *
expected(const struct bp_opt *o, char *buf, size_t len)
{
    const struct str_rule *r;
    if (o->type == BP_OPT_INT)
        snprintf(buf, len, "an integer in %ld..%ld", o->min, o->max);
    else if (o->type == BP_OPT_BOOL)
        snprintf(buf, len, "true or false");
    else
        snprintf(buf, len, "%s", (r = str_rule(o)) ? r->expect : "a string");
    return buf;
}

/* v as the user wrote it: "text" quoted, 42, true, "a table". */
static const char *
describe(const struct bp_val *v, char *buf, size_t len)
{
    switch (v->kind) {
    case BP_VAL_TEXT:
    case BP_VAL_STRING:
        snprintf(buf, len, "\"%.200s%s\"", v->text, strlen(v->text) > 200 ? "..." : "");
        break;
    case BP_VAL_NUMBER:
        if (fabs(v->num) < 1e15 && v->num == (double)(long long)v->num)
            snprintf(buf, len, "%lld", (long long)v->num);
        else
            snprintf(buf, len, "%.17g", v->num);
        break;
    case BP_VAL_BOOLEAN:
        snprintf(buf, len, "%s", v->boolean ? "true" : "false");
        break;
    default:
        snprintf(buf, len, "a %s", v->text ? v->text : "value of another type");
    }
    return buf;
}

static int
refuse(const struct bp_opt *o, const struct bp_val *v, char *err, size_t errlen)
{
    char want[128], got[256];
    snprintf(err, errlen, "%s: expected %s, got %s", o->key, expected(o, want, sizeof(want)),
             describe(v, got, sizeof(got)));
    return -1;
}

/* Text to an integer: "500", and "500.0" (a whole number however written). */
static int
text_integer(const char *t, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(t, &end, 10);
    if (end != t && *end == '.' && strspn(end + 1, "0") == strlen(end + 1))
        end += strlen(end);
    if (end == t || *end || errno)
        return -1;
    *out = v;
    return 0;
}

/* The integer an INT or BOOL option gets from v, or -1 when v is not one of its type. */
static int
integer_of(const struct bp_opt *o, const struct bp_val *v, long *out)
{
    if (v->kind == BP_VAL_NUMBER) {
        /* within long's range before the cast; fractions and NaN fail the comparison */
        if (!(v->num >= -9.2e18 && v->num <= 9.2e18) || v->num != (double)(long)v->num)
            return -1;
        *out = (long)v->num;
        return 0;
    }
    if (o->type == BP_OPT_BOOL && v->kind == BP_VAL_BOOLEAN) {
        *out = v->boolean;
        return 0;
    }
    if (v->kind != BP_VAL_TEXT)
        return -1;      /* pipeline.lua's "500" or true where a number belongs */
    if (o->type == BP_OPT_BOOL &&
        (strcmp(v->text, "true") == 0 || strcmp(v->text, "false") == 0)) {
        *out = v->text[0] == 't';
        return 0;
    }
    return text_integer(v->text, out);
}

static int
set_opt(struct bp_config *c, const struct bp_opt *o, const struct bp_val *v, char *err,
        size_t errlen)
{
    if (o->type == BP_OPT_STR) {
        char **slot = str_slot(c, o);
        const struct str_rule *r = str_rule(o);
        if (v->kind != BP_VAL_TEXT && v->kind != BP_VAL_STRING)
            return refuse(o, v, err, errlen);
        /* an option that is off by default is turned off again by "" (--set local_out=) */
        if (!o->def && !*v->text) {
            free(*slot);
            *slot = NULL;
            return 0;
        }
        if (r && !r->ok(v->text))
            return refuse(o, v, err, errlen);
        free(*slot);
        *slot = bp_xstrdup(v->text);
        return 0;
    }
    long n;
    if (integer_of(o, v, &n) != 0 || n < o->min || n > o->max)
        return refuse(o, v, err, errlen);
    *int_slot(c, o) = n;
    return 0;
}

/* Sets every option to its default. */
void
bp_config_init(struct bp_config *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++) {
        struct bp_val v = { BP_VAL_TEXT, options[i].def, 0, 0 };
        if (options[i].def && set_opt(c, &options[i], &v, err, sizeof(err)) != 0)
            bp_log(BP_LOG_ERROR, "config", "bad default: %s", err);
    }
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

/* Whether key names a section of options ("source" of "source.input"). */
static int
is_section(const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (strncmp(options[i].key, key, n) == 0 && options[i].key[n] == '.')
            return 1;
    return 0;
}

/* A key no option has. pipeline.lua's tables are flattened into dotted keys, so a table where
 * a value belongs arrives as "route_field.table": named as what it is. */
static int
unknown_key(const char *key, const struct bp_val *v, char *err, size_t errlen)
{
    char got[256];
    if (v->kind != BP_VAL_TEXT && is_section(key)) {
        if (v->kind == BP_VAL_OTHER && v->text && strcmp(v->text, "table") == 0)
            return 0;       /* an empty section: nothing set */
        snprintf(err, errlen, "%s: expected a table of %s.* options, got %s", key, key,
                 describe(v, got, sizeof(got)));
        return -1;
    }
    for (size_t i = 0; v->kind != BP_VAL_TEXT && i < BP_ARRAY_LEN(options); i++) {
        size_t n = strlen(options[i].key);
        if (strncmp(key, options[i].key, n) == 0 && key[n] == '.') {
            struct bp_val table = { BP_VAL_OTHER, "table", 0, 0 };
            return refuse(&options[i], &table, err, errlen);
        }
    }
    snprintf(err, errlen, "unknown option '%s' (bepipe-lua --help lists them)", key);
    return -1;
}

/* Sets option `key` (its dotted name) from v, type-checked: a number where an integer belongs,
 * a string where text does, true/false (or 1/0) for a switch; command-line text is parsed as
 * the option's type. Returns 0, or -1 with "KEY: expected WHAT, got VALUE" in err. */
int
bp_config_set_value(struct bp_config *c, const char *key, const struct bp_val *v, char *err,
                    size_t errlen)
{
    for (size_t i = 0; i < BP_ARRAY_LEN(options); i++)
        if (strcmp(options[i].key, key) == 0)
            return set_opt(c, &options[i], v, err, errlen);
    return unknown_key(key, v, err, errlen);
}

/* Sets option `key` from command-line text (--set, the seed's flags). Returns 0, or -1 with a
 * message in err. */
int
bp_config_set(struct bp_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    struct bp_val v = { BP_VAL_TEXT, value ? value : "", 0, 0 };
    return bp_config_set_value(c, key, &v, err, errlen);
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

/* The folder of this pipeline's own state under base: "<base>/<file name without .lua>-<12 hex
 * digits of the SHA-256 of its absolute path>". Two pipelines on one machine never share a
 * suspects file (a message one pipeline's scripts choke on may be fine for another's), while
 * the workers and restarts of one pipeline do. The absolute path is the file's folder resolved
 * and the file's name as given, the file itself not followed: a Kubernetes ConfigMap mounts it
 * as a symlink into a folder renamed at every update of the map, which the state must outlive.
 * Returns 0, or -1 with err set. */
static int
pipeline_state_dir(const char *base, const char *pipeline_path, char **out, char *err,
                   size_t errlen)
{
    char abs[PATH_MAX + 1], dir[PATH_MAX + 1], hex[2 * SHA256_DIGEST_LENGTH + 1];
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    const char *slash = strrchr(pipeline_path, '/'), *file = slash ? slash + 1 : pipeline_path;
    size_t dlen = !slash ? 1 : slash == pipeline_path ? 1 : (size_t)(slash - pipeline_path);
    if (dlen > PATH_MAX || !*file) {
        snprintf(err, errlen, "%s: not a file's path", pipeline_path);
        return -1;
    }
    snprintf(dir, sizeof(dir), "%.*s", (int)dlen, slash ? pipeline_path : ".");
    if (!realpath(dir, abs)) {
        snprintf(err, errlen, "%s: %s", pipeline_path, strerror(errno));
        return -1;
    }
    size_t alen = strlen(abs);
    int w = snprintf(abs + alen, sizeof(abs) - alen, "%s%s", alen == 1 ? "" : "/", file);
    if (w < 0 || (size_t)w >= sizeof(abs) - alen) {
        snprintf(err, errlen, "%s: the path is too long", pipeline_path);
        return -1;
    }
    if (EVP_Digest(abs, strlen(abs), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 6) {
        snprintf(err, errlen, "state_dir: SHA-256 of %s failed", abs);
        return -1;
    }
    for (unsigned i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    const char *name = strrchr(abs, '/') + 1;   /* realpath's result is absolute */
    size_t stem = strlen(name);
    if (stem > 4 && strcmp(name + stem - 4, ".lua") == 0)
        stem -= 4;
    size_t len = strlen(base) + stem + 16;
    *out = bp_xmalloc(len);
    snprintf(*out, len, "%s/%.*s-%s", base, (int)stem, name, hex);
    return 0;
}

/* Fills the defaults that depend on other options or on the pipeline's file, once the three
 * layers are merged: dead_letter.table from dead_letter.format, state_dir per pipeline (an
 * explicit state_dir is kept as given). Returns 0, or -1 with err set. */
int
bp_config_finish(struct bp_config *c, const char *pipeline_path, char *err, size_t errlen)
{
    if (!c->dead_letter_table)
        c->dead_letter_table = bp_xstrdup(strcmp(c->dead_letter_format, "dataflow") == 0
                                          ? "events_error_records" : "rejected_events");
    if (c->exactly_once && strcmp(c->bq_method, "storage_write") != 0) {
        snprintf(err, errlen, "bigquery.exactly_once = true needs bigquery.method = "
                 "\"storage_write\" (insert_all has no offsets; it de-duplicates by insertId "
                 "at best)");
        return -1;
    }
    if (!c->state_dir) {
        char base[4096];
        bp_quarantine_default_dir(base, sizeof(base));
        if (pipeline_state_dir(base, pipeline_path, &c->state_dir, err, errlen) != 0)
            return -1;
    }
    return 0;
}
