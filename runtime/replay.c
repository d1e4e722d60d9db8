/* replay.c - the end of a replay: one summary line with what the replay source read and what
 * the runtime stored of it (rows per table, dead letters), so a backfill says what it did. */
#include "log.h"
#include "replay.h"
#include "rt.h"
#include "timefmt.h"

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
