/* replay.c - what a replay tells: its progress (a bar redrawn in place on a terminal, a log line
 * otherwise) and, at the end, one summary line with what the replay source read and what the
 * runtime stored of it (rows, dead letters), so a backfill says what it did. */
#include "log.h"
#include "replay.h"
#include "rt.h"
#include "timefmt.h"

#include <inttypes.h>
#include <stdio.h>

/* See replay.h. The rate is over the whole replay; the ETA is from the bytes left at the bytes'
 * rate (lines per object vary, bytes are known from the listing). */
void
bp_replay_progress_print(const struct bp_replay_progress *p, int bar)
{
    double rate = p->seconds > 0 ? (double)p->lines / p->seconds : 0;
    double bps = p->seconds > 0 ? (double)p->bytes_read / p->seconds : 0;
    uint64_t left = p->bytes_total > p->bytes_read ? p->bytes_total - p->bytes_read : 0;
    double eta = bps > 0 ? (double)left / bps : -1;
    if (!bar) {
        bp_log(BP_LOG_INFO, "replay", "progress objects=%zu/%zu finished=%zu lines=%lu bytes=%"
               PRIu64 "/%" PRIu64 " rate=%.0f/s eta_s=%.0f", p->objects_read, p->objects,
               p->objects_done, p->lines, p->bytes_read, p->bytes_total, rate, eta);
        return;
    }
    char cells[25], etas[32];
    double frac = p->bytes_total ? (double)p->bytes_read / (double)p->bytes_total : 1;
    int fill = (int)(frac * 24 + 0.5);
    for (int i = 0; i < 24; i++)
        cells[i] = i < fill ? '#' : '.';
    cells[24] = '\0';
    if (eta >= 0)
        snprintf(etas, sizeof(etas), "%ld:%02ld", (long)eta / 60, (long)eta % 60);
    else
        snprintf(etas, sizeof(etas), "?");
    /* objects read: the bar ends full at the end of input, while the last ones are stored */
    fprintf(stderr, "\rreplay [%s] %zu/%zu objects  %lu lines  %.0f ev/s  ETA %s\033[K", cells,
            p->objects_read, p->objects, p->lines, rate, etas);
    fflush(stderr);
}

/* See replay.h. Runs after bp_rt_run, once the sinks have answered. */
void
bp_replay_summary(struct bp_rt *rt)
{
    struct bp_replay_counts n;
    unsigned long rows = 0, dead = 0;
    if (!rt->source)
        return;
    bp_source_replay_counts(rt->source, &n);
    for (size_t i = 0; i < rt->tables.n; i++)
        if (!rt->tables.v[i]->is_dead_letter)
            rows += rt->tables.v[i]->rows_stored;
    for (int s = BP_STAGE_PARSE; s <= BP_STAGE_SCHEMA; s++)
        dead += rt->stats.dead[s];
    double secs = rt->loop ? bp_time_mono() - rt->started_at : 0;
    bp_log(BP_LOG_INFO, "replay", "done objects=%zu/%zu failed=%zu lines=%lu rows=%lu dead=%lu "
           "bytes=%llu seconds=%.2f rate=%.0f/s skipped_finished=%lu outside_range=%lu "
           "dead_letter_folder=%lu", n.objects_done, n.objects, n.objects_failed, n.lines, rows,
           dead, (unsigned long long)n.bytes_read, secs, secs > 0 ? (double)n.lines / secs : 0.0,
           n.skipped_resume, n.out_of_range, n.dead_folder);
}
