/* stats.c - what the runtime tells about a run: a periodic stats line (stats_seconds) and the
 * summary at exit, both one log line of k=v fields. */
#include "api.h"
#include "dispatch.h"
#include "log.h"
#include "rt.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long
dead_total(const struct bp_rt *rt)
{
    unsigned long dead = 0;
    for (int i = 1; i <= BP_STAGE_SCHEMA; i++)
        dead += rt->stats.dead[i];
    return dead;
}

static unsigned long
api_retries(const struct bp_rt *rt)
{
    unsigned long n = 0;
    if (rt->api_auth)
        n += bp_api_stats(rt->api_auth)->retries;
    if (rt->api_plain)
        n += bp_api_stats(rt->api_plain)->retries;
    return n;
}

static void
on_stats(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    struct bp_source_stats ss;
    (void)w;
    (void)revents;
    memset(&ss, 0, sizeof(ss));
    if (rt->source && rt->source->ops->stats)
        rt->source->ops->stats(rt->source, &ss);
    double now = bp_time_mono();
    double dt = now - rt->stats_last_at;
    double rate = dt > 0 ? (double)(rt->stats.read - rt->stats_last_read) / dt : 0;
    bp_log(BP_LOG_INFO, "stats", "read=%lu rows=%lu dead=%lu rate=%.0f/s objects=%lu "
           "acked=%lu nacked=%lu extended=%lu retries=%lu pull_failures=%lu lua_kb=%zu "
           "generation=%d", rt->stats.read, rt->stats.rows, dead_total(rt), rate,
           rt->archive.objects_done, ss.acked, ss.nacked, ss.extended, api_retries(rt),
           ss.pull_failures, bp_lua_host_memory(rt->host) / 1024, rt->generation);
    rt->stats_last_at = now;
    rt->stats_last_read = rt->stats.read;
}

/* Arms the periodic stats line (stats_seconds > 0). Called once the loop exists. */
void
bp_rt_stats_start(struct bp_rt *rt)
{
    rt->started_at = bp_time_mono();
    rt->stats_last_at = bp_time_mono();
    if (rt->cfg.stats_seconds <= 0)
        return;
    ev_timer_init(&rt->stats_timer, on_stats, (double)rt->cfg.stats_seconds,
                  (double)rt->cfg.stats_seconds);
    ev_timer_start(rt->loop, &rt->stats_timer);
}

/* Peak resident memory of this process in KB (VmHWM; 0 if /proc is not there). Not rusage: its
 * ru_maxrss keeps the parent's size from before exec. */
static long
peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..100) of the recorded batch times, in milliseconds. */
static double
batch_ms_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i] * 1000.0;
}

/* One line with the totals: per table rows stored, per stage dead letters, archive objects. */
void
bp_rt_log_summary(struct bp_rt *rt)
{
    char line[1024];
    size_t n = 0;
    struct bp_source_stats ss;
    memset(&ss, 0, sizeof(ss));
    if (rt->source && rt->source->ops->stats)
        rt->source->ops->stats(rt->source, &ss);
    for (size_t i = 0; i < rt->tables.n && n < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%lu", rt->tables.v[i]->table,
                              rt->tables.v[i]->rows_stored);
    for (int s = 1; s <= BP_STAGE_SCHEMA && n < sizeof(line); s++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " dead_%s=%lu", bp_stage_names[s],
                              rt->stats.dead[s]);
    double secs = rt->loop ? bp_time_mono() - rt->started_at : 0;
    size_t ns = rt->stats.batches < BP_LAT_SAMPLES ? rt->stats.batches : BP_LAT_SAMPLES;
    double *sorted = bp_xcalloc(ns ? ns : 1, sizeof(double));
    memcpy(sorted, rt->stats.batch_secs, ns * sizeof(double));
    qsort(sorted, ns, sizeof(double), cmp_double);
    bp_log(BP_LOG_INFO, "summary", "read=%lu skipped=%lu%s objects=%lu archived=%lu "
           "archive_redelivered=%lu seconds=%.2f rate=%.0f/s batches=%lu batch_ms_p50=%.3f batch_ms_p99=%.3f "
           "batch_ms_max=%.3f peak_rss_kb=%ld", rt->stats.read, ss.skipped,
           line, rt->archive.objects_done, rt->archive.lines_done, rt->archive.dedup_skipped, secs,
           secs > 0 ? rt->stats.read / secs : 0.0, rt->stats.batches,
           batch_ms_percentile(sorted, ns, 50), batch_ms_percentile(sorted, ns, 99),
           batch_ms_percentile(sorted, ns, 100), peak_rss_kb());
    free(sorted);
}
