/* metrics.c - /metrics: the counters the runtime, its source, its sinks and its API layers
 * already keep, written as Prometheus text format 0.0.4 from a snapshot the runtime fills
 * (rt_metrics.c). Nothing here counts on the hot path except the two histograms. */
#include "metrics.h"
#include "dispatch.h"

#include <stdio.h>
#include <string.h>

#ifndef BP_VERSION
#define BP_VERSION "0.1.0"
#endif

/* Pull -> ack: Lua and the inserts take milliseconds, but an ack also waits for the raw line's
 * archive object to be finished (archive.roll_seconds, 60 s by default), so the upper buckets
 * reach past that. */
static const double ack_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                     30, 60, 120, 300, 600 };
/* One Lua call plus dispatch of up to source.batch_messages events: tens of microseconds to a
 * few hundred milliseconds. */
static const double batch_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };

/* Empties h and gives it its bounds (a static table; at most BP_HIST_MAX_BOUNDS are used). */
void
bp_hist_init(struct bp_hist *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds < BP_HIST_MAX_BOUNDS ? nbounds : BP_HIST_MAX_BOUNDS;
}

/* Counts v in the first bucket whose upper bound is >= v (Prometheus' le is inclusive). */
void
bp_hist_observe(struct bp_hist *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

/* Appends s with the escapes of the text format: label values escape \ " and newline, HELP
 * text only \ and newline. */
static int
append_escaped(bp_buf_t *b, const char *s, int quote)
{
    int rc = 0;
    for (const char *p = s; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = bp_buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            rc = bp_buf_append(b, "\\n", 2);
        else if (*p == '"' && quote)
            rc = bp_buf_append(b, "\\\"", 2);
        else
            rc = bp_buf_append(b, p, 1);
    }
    return rc;
}

/* "# HELP name help" and "# TYPE name type"; help is escaped. Returns 0, or -1 when b is full. */
int
bp_metrics_family(bp_buf_t *b, const char *name, const char *type, const char *help)
{
    int rc = bp_buf_append_str(b, "# HELP ");
    rc |= bp_buf_append_str(b, name);
    rc |= bp_buf_append(b, " ", 1);
    rc |= append_escaped(b, help, 0);
    rc |= bp_buf_append_str(b, "\n# TYPE ");
    rc |= bp_buf_append_str(b, name);
    rc |= bp_buf_append(b, " ", 1);
    rc |= bp_buf_append_str(b, type);
    rc |= bp_buf_append(b, "\n", 1);
    return rc ? -1 : 0;
}

/* Integers (every counter) print exactly up to 2^53; other values with 17 digits so they
 * parse back to the same double. */
static int
append_value(bp_buf_t *b, double v)
{
    char num[64];
    if (v == (double)(long long)v && v > -9007199254740992.0 && v < 9007199254740992.0)
        snprintf(num, sizeof(num), "%lld", (long long)v);
    else
        snprintf(num, sizeof(num), "%.17g", v);
    return bp_buf_append_str(b, num);
}

/* One sample line: name{labels} value. Returns 0, or -1 when b is full. */
int
bp_metrics_sample(bp_buf_t *b, const char *name, const struct bp_label *labels, size_t nlabels,
                  double value)
{
    int rc = bp_buf_append_str(b, name);
    for (size_t i = 0; i < nlabels; i++) {
        rc |= bp_buf_append(b, i ? "," : "{", 1);
        rc |= bp_buf_append_str(b, labels[i].name);
        rc |= bp_buf_append(b, "=\"", 2);
        rc |= append_escaped(b, labels[i].value, 1);
        rc |= bp_buf_append(b, "\"", 1);
    }
    if (nlabels)
        rc |= bp_buf_append(b, "}", 1);
    rc |= bp_buf_append(b, " ", 1);
    rc |= append_value(b, value);
    rc |= bp_buf_append(b, "\n", 1);
    return rc ? -1 : 0;
}

/* A whole histogram family from h. Returns 0, or -1 when b is full. */
int
bp_metrics_hist(bp_buf_t *b, const char *name, const char *help, const struct bp_hist *h)
{
    char sname[128], le[32];
    unsigned long cum = 0;
    int rc = bp_metrics_family(b, name, "histogram", help);
    snprintf(sname, sizeof(sname), "%s_bucket", name);
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        if (i < h->nbounds)
            snprintf(le, sizeof(le), "%g", h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        struct bp_label l = { "le", le };
        rc |= bp_metrics_sample(b, sname, &l, 1, (double)cum);
    }
    snprintf(sname, sizeof(sname), "%s_sum", name);
    rc |= bp_metrics_sample(b, sname, NULL, 0, h->sum);
    snprintf(sname, sizeof(sname), "%s_count", name);
    rc |= bp_metrics_sample(b, sname, NULL, 0, (double)h->count);
    return rc ? -1 : 0;
}

/* The runtime's histograms get their buckets (before anything can observe into them). */
void
bp_metrics_hists_init(struct bp_hist *ack_latency, struct bp_hist *batch_seconds)
{
    bp_hist_init(ack_latency, ack_bounds, BP_ARRAY_LEN(ack_bounds));
    bp_hist_init(batch_seconds, batch_bounds, BP_ARRAY_LEN(batch_bounds));
}

/* A family with a single unlabelled sample. */
static int
one(bp_buf_t *b, const char *name, const char *type, const char *help, double v)
{
    int rc = bp_metrics_family(b, name, type, help);
    rc |= bp_metrics_sample(b, name, NULL, 0, v);
    return rc ? -1 : 0;
}

/* The same with one label. */
static int
one_l(bp_buf_t *b, const char *name, const char *type, const char *help, const char *lname,
      const char *lvalue, double v)
{
    struct bp_label l = { lname, lvalue };
    int rc = bp_metrics_family(b, name, type, help);
    rc |= bp_metrics_sample(b, name, &l, 1, v);
    return rc ? -1 : 0;
}

static int
render_process(const struct bp_metrics_snapshot *m, bp_buf_t *b)
{
    int rc = one_l(b, "bepipe_build_info", "gauge", "Always 1; the label is the version.",
                   "version", BP_VERSION, 1);
    rc |= one(b, "bepipe_start_time_seconds", "gauge", "Start of this process, Unix time.",
              m->start_time);
    rc |= one(b, "bepipe_ready", "gauge", "1 when /readyz answers 200.", m->ready);
    rc |= one(b, "bepipe_script_generation", "gauge",
              "Generation of the loaded scripts (1 at start, +1 per successful reload).",
              m->generation);
    struct bp_label ok = { "result", "ok" }, failed = { "result", "failed" };
    rc |= bp_metrics_family(b, "bepipe_reloads_total", "counter",
                            "Script reloads (SIGHUP or POST /reload) by result.");
    rc |= bp_metrics_sample(b, "bepipe_reloads_total", &ok, 1, m->reloads);
    rc |= bp_metrics_sample(b, "bepipe_reloads_total", &failed, 1, m->reload_failures);
    rc |= one(b, "bepipe_lua_memory_bytes", "gauge", "Memory of the Lua state.",
              (double)m->lua_memory);
    rc |= one(b, "bepipe_log_lines_dropped_total", "counter",
              "Log lines stderr refused (a closed pipe, a full disk): dropped, not fatal.",
              m->log_lines_dropped);
    return rc ? -1 : 0;
}

static int
render_source(const struct bp_metrics_snapshot *m, bp_buf_t *b)
{
    const struct bp_source_stats ss = m->source;
    size_t outstanding = m->outstanding;
    int rc = one(b, "bepipe_messages_read_total", "counter",
                 "Messages handed to the pipeline (pulled, or lines of --input).", m->read);
    rc |= one(b, "bepipe_messages_pulled_total", "counter", "Messages received from Pub/Sub.",
              ss.pulled);
    rc |= one(b, "bepipe_messages_acked_total", "counter",
              "Messages acknowledged: every destination had them.", ss.acked);
    rc |= one(b, "bepipe_messages_nacked_total", "counter",
              "Messages nacked (a destination failed, or drain): Pub/Sub redelivers them.",
              ss.nacked);
    rc |= one(b, "bepipe_lease_extensions_total", "counter",
              "Ack deadline extensions (modifyAckDeadline) of messages still in flight.",
              ss.extended);
    rc |= one(b, "bepipe_ack_ids_rejected_total", "counter",
              "Ack ids the server refused (their messages are redelivered).", ss.ack_rejected);
    rc |= one(b, "bepipe_pull_failures_total", "counter",
              "Pull calls that brought nothing after the API's retries.", ss.pull_failures);
    rc |= one(b, "bepipe_lines_skipped_total", "counter", "Blank input lines (--input).",
              ss.skipped);
    rc |= one(b, "bepipe_outstanding_messages", "gauge",
              "Messages received and not yet acked or nacked.", (double)outstanding);
    rc |= one(b, "bepipe_outstanding_bytes", "gauge",
              "Bytes of the messages received and not yet acked or nacked.",
              (double)ss.outstanding_bytes);
    return rc ? -1 : 0;
}

static int
render_sinks(const struct bp_metrics_snapshot *m, bp_buf_t *b)
{
    int rc = bp_metrics_family(b, "bepipe_rows_inserted_total", "counter",
                               "Rows the table's store accepted (insertAll or local file).");
    for (size_t i = 0; i < m->ntables; i++) {
        struct bp_label l = { "table", m->tables[i].table };
        rc |= bp_metrics_sample(b, "bepipe_rows_inserted_total", &l, 1,
                                m->tables[i].rows_stored);
    }
    rc |= bp_metrics_family(b, "bepipe_rows_rejected_total", "counter",
                            "Rows BigQuery refused in insertErrors.");
    for (size_t i = 0; i < m->ntables; i++) {
        struct bp_label l = { "table", m->tables[i].table };
        rc |= bp_metrics_sample(b, "bepipe_rows_rejected_total", &l, 1,
                                m->tables[i].rows_rejected);
    }
    rc |= one(b, "bepipe_insert_failures_total", "counter",
              "insertAll requests that failed after retries (their messages are nacked).",
              m->insert_failures);
    rc |= bp_metrics_family(b, "bepipe_dead_letters_total", "counter",
                            "Events sent to the dead letter, by stage.");
    for (int s = BP_STAGE_PARSE; s <= BP_STAGE_SCHEMA; s++) {
        struct bp_label l = { "stage", bp_stage_names[s] };
        rc |= bp_metrics_sample(b, "bepipe_dead_letters_total", &l, 1, m->dead[s]);
    }
    if (m->storage_write) {
        rc |= one(b, "bepipe_append_calls_total", "counter",
                  "Storage Write API AppendRows calls opened (one per table, again after an end).",
                  m->append_calls);
        rc |= one(b, "bepipe_append_requests_total", "counter",
                  "AppendRows requests sent (retries included).", m->append_requests);
        rc |= one(b, "bepipe_append_retries_total", "counter",
                  "AppendRows requests sent again after a retryable code, a call's end or a "
                  "deadline.", m->append_retries);
        rc |= one(b, "bepipe_append_failures_total", "counter",
                  "Batches the Storage Write API did not write (nacked or dead-lettered).",
                  m->append_failures);
        rc |= one(b, "bepipe_append_bytes_total", "counter",
                  "Bytes sent on the Storage Write API's connections.", (double)m->append_bytes);
        rc |= one(b, "bepipe_append_rows_encoded_total", "counter",
                  "Rows sent as protobuf written beside their JSON (the batch loop's, C's).",
                  m->append_rows_encoded);
        rc |= one(b, "bepipe_append_rows_read_back_total", "counter",
                  "Rows read back from their JSON entry before their protobuf was written (a "
                  "schema changed since, a row C could not write).",
                  m->append_rows_read_back);
    }
    rc |= one(b, "bepipe_archive_objects_total", "counter", "Archive objects stored.",
              m->archive.objects);
    rc |= one(b, "bepipe_archive_lines_total", "counter", "Raw lines in stored archive objects.",
              m->archive.lines);
    rc |= one(b, "bepipe_archive_bytes_total", "counter", "Bytes of stored archive objects.",
              (double)m->archive.bytes);
    rc |= one(b, "bepipe_archive_failures_total", "counter",
              "Archive objects not stored (their messages are nacked).", m->archive.failures);
    rc |= one(b, "bepipe_archive_lines_compacted_total", "counter",
              "Multi-line JSON payloads archived as one line.", m->archive.lines_compacted);
    rc |= one(b, "bepipe_archive_lines_raw_total", "counter",
              "Payloads archived base64-encoded ({\"bepipe_raw_b64\":...}).",
              m->archive.lines_raw);
    rc |= one(b, "bepipe_archive_redelivered_total", "counter",
              "Redelivered messages not archived again (their line is stored).",
              m->archive.redelivered);
    rc |= one(b, "bepipe_quarantined_total", "counter",
              "Messages whose dead letter was refused until dead_letter.max_attempts, set aside "
              "under quarantine/ in the archive and acked.", m->quarantined);
    return rc ? -1 : 0;
}

static void
code_label(char *out, size_t outlen, int code)
{
    if (code == 0)
        snprintf(out, outlen, "none");
    else
        snprintf(out, outlen, "%d", code);
}

static int
render_http(const struct bp_metrics_snapshot *m, bp_buf_t *b)
{
    char code[16];
    int rc = bp_metrics_family(b, "bepipe_http_requests_total", "counter",
                               "HTTP requests to Google's APIs by api and status code (every "
                               "attempt; code none = no answer: timeout, reset, refused).");
    for (int k = 0; k < BP_API_KINDS; k++)
        for (int c = 0; c < BP_API_CODES; c++) {
            unsigned long n = m->http[k][c];
            if (!n)
                continue;
            code_label(code, sizeof(code), c);
            struct bp_label l[2] = { { "api", bp_api_kind_names[k] }, { "code", code } };
            rc |= bp_metrics_sample(b, "bepipe_http_requests_total", l, 2, n);
        }
    const struct bp_api_stats st = m->api;
    rc |= one(b, "bepipe_api_retries_total", "counter", "API call attempts that were retried.",
              st.retries);
    rc |= one(b, "bepipe_api_failures_total", "counter",
              "API calls whose final answer was not 2xx.", st.failures);
    struct bp_label ok = { "result", "ok" }, failed = { "result", "failed" };
    rc |= bp_metrics_family(b, "bepipe_token_refreshes_total", "counter",
                            "OAuth2 access token refreshes by result.");
    rc |= bp_metrics_sample(b, "bepipe_token_refreshes_total", &ok, 1, st.token_refreshes);
    rc |= bp_metrics_sample(b, "bepipe_token_refreshes_total", &failed, 1, st.token_failures);
    return rc ? -1 : 0;
}

/* Everything /metrics shows, in a fixed order of families. Returns 0, or -1 when out is full. */
int
bp_metrics_render(const struct bp_metrics_snapshot *m, bp_buf_t *out)
{
    int rc = render_process(m, out);
    rc |= render_source(m, out);
    rc |= render_sinks(m, out);
    rc |= render_http(m, out);
    rc |= bp_metrics_hist(out, "bepipe_ack_latency_seconds",
                          "Seconds from a message's pull to its ack (every destination had it).",
                          &m->ack_latency);
    rc |= bp_metrics_hist(out, "bepipe_batch_duration_seconds",
                          "Seconds of one batch: the Lua call and the dispatch to the sinks.",
                          &m->batch_seconds);
    return rc ? -1 : 0;
}
