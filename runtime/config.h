/* config.h - every setting of a pipeline, from three layers: built-in defaults, the table
 * pipeline.lua returns, then the command line. The option table documents itself (--help). */
#ifndef BP_CONFIG_H
#define BP_CONFIG_H

#include "common.h"

struct bp_config {
    char *input;               /* NDJSON file instead of Pub/Sub ("-" = stdin) */
    char *local_out;           /* directory of the local sinks instead of BigQuery/GCS */
    char *subscription;
    char *project;
    char *bq_project;
    char *bq_dataset;
    char *archive_path;        /* gs://bucket/prefix */
    char *dead_letter_table;   /* after bp_config_finish: never NULL (the format's table) */
    char *dead_letter_prefix;  /* archive folder for dead letters, under the archive prefix */
    char *route_field;
    long max_line_bytes;
    long batch_messages;       /* events per Lua call */
    long batch_rows;
    long batch_bytes;
    long batch_ms;
    long roll_bytes;
    long roll_seconds;
    long max_open_objects;
    long max_outstanding_messages;
    long max_outstanding_bytes;
    long stats_seconds;
    long drain_seconds;
    long pull_concurrency;
    long pull_max_messages;
    long lease_seconds;
    char *pubsub_endpoint;
    char *bigquery_endpoint;
    char *storage_endpoint;
    char *auth_mode;           /* auto, adc, none */
    char *auth_key_file;
    char *auth_token_url;
    char *ca_file;
    long create_tables;
    char *ddl_dir;
    long retry_attempts;
    long retry_max_ms;
    long refused_grace_seconds;    /* a 403/404 pauses a table this long before rows go */
    char *bq_method;           /* "insert_all" or "storage_write": how rows reach BigQuery */
    long exactly_once;         /* storage_write: committed streams, offsets, the append log */
    long append_timeout_seconds;   /* storage_write: an append's reply waited for this long */
    char *bigquery_storage_endpoint;   /* HOST:PORT of a Storage Write emulator (h2c), or NULL */
    /* preflight and --local-out */
    long preflight_seconds;
    long local_out_append;
    /* the HTTP listener */
    char *http_listen;         /* ADDR:PORT of /metrics, /healthz, /readyz, /reload; NULL = off */
    /* scripts: time and memory budgets, sandbox */
    long lua_budget_ms;
    long lua_hard_ms;
    long lua_batch_budget_ms;  /* time one batch may hold the loop (watchdog.c) */
    long lua_memory_mb;
    long sandbox;
    char *state_dir;           /* the suspects file; after bp_config_finish: never NULL */
    /* archive */
    char *archive_time;        /* "event" or "publish": the hour that names an object's folder */
    char *archive_compression; /* "gzip" or "none": how archive objects are stored (cloud) */
    long archive_open_bytes;   /* budget of open archive objects (memory, or bytes written) */
    long max_uploads;          /* cloud: archive uploads in flight at once (the rest queue) */
    /* schema check */
    long schema_check;         /* 0: rows leave unchecked (dispatch.c) */
    /* dead letters */
    char *dead_letter_format;  /* "rejected_events" or "dataflow" (the template's error records) */
    /* schema evolution */
    long update_tables;        /* patch existing tables to their DDL before pulling and on reload */
    /* redeliveries */
    long archive_dedup_ids;    /* ids of stored archive lines remembered (0 = off) */
    long dead_letter_max_attempts;  /* deliveries of a message whose dead letter is refused */
};

enum bp_opt_type { BP_OPT_STR, BP_OPT_INT, BP_OPT_BOOL };

/* A value for an option: command-line text (parsed as the option's type), or a pipeline.lua
 * value with its Lua type (checked against the option's type: no text where a number belongs,
 * no boolean where an integer does). */
enum bp_val_kind { BP_VAL_TEXT, BP_VAL_STRING, BP_VAL_NUMBER, BP_VAL_BOOLEAN, BP_VAL_OTHER };
struct bp_val {
    enum bp_val_kind kind;
    const char *text;       /* TEXT, STRING; OTHER: the Lua type's name ("table", "function") */
    double num;             /* NUMBER */
    int boolean;            /* BOOLEAN */
};

struct bp_opt {
    const char *key;       /* dotted name in pipeline.lua (and for --set KEY=VALUE) */
    const char *flag;      /* command-line alias, or NULL */
    enum bp_opt_type type;
    size_t offset;
    const char *def;
    long min, max;
    const char *help;
};

const struct bp_opt *bp_config_options(size_t *n);
void bp_config_init(struct bp_config *c);
void bp_config_free(struct bp_config *c);
void bp_config_copy(struct bp_config *dst, const struct bp_config *src);
int bp_config_set(struct bp_config *c, const char *key, const char *value,
                  char *err, size_t errlen) BP_WUR;
int bp_config_set_value(struct bp_config *c, const char *key, const struct bp_val *v, char *err,
                        size_t errlen) BP_WUR;
int bp_config_finish(struct bp_config *c, const char *pipeline_path, char *err,
                     size_t errlen) BP_WUR;
const struct bp_opt *bp_config_find_flag(const char *flag);
/* Whether v is HOST:PORT (port 1..65535, no scheme, no path): a gRPC emulator's address. */
int bp_hostport_valid(const char *v);
int bp_config_archive_split(const char *path, char **bucket, char **prefix) BP_WUR;
void bp_config_diff_log(const struct bp_config *a, const struct bp_config *b);

#endif
