/* rt_metrics.c - what the runtime shows its operator: the snapshot of its counters that
 * /metrics writes (metrics.c), and the callbacks of the HTTP listener (httpd.c). Neither of
 * those files sees struct bp_rt. */
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "rt.h"
#include "store_write.h"
#include "timefmt.h"

#include <stdlib.h>
#include <string.h>

/* Called by the Pub/Sub source per acked message (source.h). */
void
bp_rt_observe_ack_latency(struct bp_rt *rt, double seconds)
{
    bp_hist_observe(&rt->stats.ack_latency, seconds);
}

/* Fills out with rt's counters now: both API layers (with and without a token) are added up,
 * callers see one set of APIs. out->tables is allocated (free() it); its names are rt's, valid
 * until the next reload. Reads counters only: safe from any loop callback. */
void
bp_rt_metrics_snapshot(struct bp_rt *rt, struct bp_metrics_snapshot *out)
{
    char why[256];
    memset(out, 0, sizeof(*out));
    out->start_time = bp_time_now() - (bp_time_mono() - rt->started_at);
    out->ready = bp_rt_ready(rt, why, sizeof(why));
    out->generation = rt->generation;
    out->reloads = rt->stats.reloads;
    out->reload_failures = rt->stats.reload_failures;
    out->lua_memory = rt->host ? bp_lua_host_memory(rt->host) : 0;
    out->log_lines_dropped = bp_log_dropped();

    out->read = rt->stats.read;
    if (rt->source && rt->source->ops->stats)
        rt->source->ops->stats(rt->source, &out->source);
    if (rt->source && rt->source->ops->outstanding)
        out->outstanding = rt->source->ops->outstanding(rt->source);

    struct bp_metrics_table *t = bp_xcalloc(rt->tables.n ? rt->tables.n : 1, sizeof(*t));
    for (size_t i = 0; i < rt->tables.n; i++) {
        t[i].table = rt->tables.v[i]->table;
        t[i].rows_stored = rt->tables.v[i]->rows_stored;
        t[i].rows_rejected = rt->tables.v[i]->rows_rejected;
    }
    out->tables = t;
    out->ntables = rt->tables.n;
    out->insert_failures = rt->tables.failures;
    memcpy(out->dead, rt->stats.dead, sizeof(out->dead));
    out->archive.objects = rt->archive.objects_done;
    out->archive.lines = rt->archive.lines_done;
    out->archive.bytes = rt->archive.bytes_done;
    out->archive.failures = rt->archive.failures;
    out->archive.lines_compacted = rt->archive.lines_compacted;
    out->archive.lines_raw = rt->archive.lines_raw;
    out->archive.redelivered = rt->archive.dedup_skipped;
    out->quarantined = rt->stats.quarantined;
    if (rt->row_store) {
        const struct bp_store_write_stats *w = bp_store_write_stats(rt->row_store);
        out->storage_write = 1;
        out->append_calls = w->calls;
        out->append_requests = w->requests;
        out->append_retries = w->retries;
        out->append_failures = w->failures;
        out->append_bytes = w->bytes_sent;
        out->append_rows_encoded = w->rows_encoded;
        out->append_rows_read_back = w->rows_read_back;
    }

    const struct bp_api *apis[2] = { rt->api_auth, rt->api_plain };
    for (int i = 0; i < 2; i++) {
        if (!apis[i])
            continue;
        for (int k = 0; k < BP_API_KINDS; k++)
            for (int c = 0; c < BP_API_CODES; c++)
                out->http[k][c] += bp_api_http_count(apis[i], k, c);
        const struct bp_api_stats *st = bp_api_stats(apis[i]);
        out->api.retries += st->retries;
        out->api.failures += st->failures;
        out->api.token_refreshes += st->token_refreshes;
        out->api.token_failures += st->token_failures;
    }
    out->ack_latency = rt->stats.ack_latency;
    out->batch_seconds = rt->stats.batch_seconds;
}

/* GET /metrics: the snapshot is large (the HTTP answers by code), so it lives on the heap. */
static int
render_metrics(void *rt, bp_buf_t *out)
{
    struct bp_metrics_snapshot *snap = bp_xcalloc(1, sizeof(*snap));
    bp_rt_metrics_snapshot(rt, snap);
    int rc = bp_metrics_render(snap, out);
    free((void *)snap->tables);
    free(snap);
    return rc;
}

static int
ready(void *rt, char *why, size_t whylen)
{
    return bp_rt_ready(rt, why, whylen);
}

static int
draining(void *rt)
{
    return bp_rt_draining(rt);
}

static int
reload(void *rt, char *err, size_t errlen)
{
    return bp_rt_reload_err(rt, err, errlen);
}

static int
generation(void *rt)
{
    return ((struct bp_rt *)rt)->generation;
}

/* The HTTP listener on addr, answering from rt's loop. Returns it, or NULL with err set. */
struct bp_httpd *
bp_rt_httpd_new(struct bp_rt *rt, const char *addr, char *err, size_t errlen)
{
    struct bp_httpd_ops ops = { rt, rt->pipeline_path, render_metrics, ready, draining, reload,
                                generation };
    return bp_httpd_new(&ops, rt->loop, addr, err, errlen);
}
