/* set_aside.c - a message whose dead-letter row the dead-letter table refuses (insertErrors on
 * rejected_events: a row it will never take, e.g. after a change of its schema). Nacking it
 * would loop forever: redelivered, dead-lettered, refused, again. So its deliveries are counted,
 * by Pub/Sub's deliveryAttempt (subscriptions with a dead-letter policy) or else by records of
 * kind D in the suspects file (quarantine.c, shared by the workers of one state_dir), and at
 * dead_letter.max_attempts it is set aside: an error line, the bepipe_quarantined_total metric,
 * and one line in the archive's quarantine/ folder, {"message_id", "table", "reason",
 * "attempts", "set_aside_at", "dead_letter": the refused row as sent}; the message is acked once
 * that object is stored. Its raw bytes are in the archive already: under errors/ with the dead
 * letter of its first delivery, or in its type's folder for a row its table refused. */
#include "guard.h"
#include "json_out.h"
#include "log.h"
#include "quarantine.h"
#include "rt.h"
#include "timefmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message id: the entry's insertId, which the dead-letter writers put first. */
static void
entry_id(const char *entry, size_t len, const char **id, size_t *id_len)
{
    static const char pre[] = "{\"insertId\":\"";
    *id = "";
    *id_len = 0;
    if (len > sizeof(pre) && memcmp(entry, pre, sizeof(pre) - 1) == 0) {
        const char *p = entry + sizeof(pre) - 1;
        const char *q = memchr(p, '"', len - (sizeof(pre) - 1));
        if (q) {
            *id = p;
            *id_len = (size_t)(q - p);
        }
    }
}

/* The quarantine/ line for the refused entry. Returns 0, or -1 when the buffer is full. */
static int
record(bp_buf_t *b, const char *id, size_t id_len, const char *table, const char *entry,
       size_t len, const char *reason, int attempts)
{
    char now[BP_TIME_STRLEN], n[32];
    bp_time_rfc3339(bp_time_now(), now);
    snprintf(n, sizeof(n), "%d", attempts);
    int rc = bp_buf_append_str(b, "{\"message_id\":") != 0 ||
             bp_json_string(b, id, id_len) != 0 ||
             bp_buf_append_str(b, ",\"table\":") != 0 ||
             bp_json_string(b, table, strlen(table)) != 0 ||
             bp_buf_append_str(b, ",\"reason\":") != 0 ||
             bp_json_string(b, reason, strlen(reason)) != 0 ||
             bp_buf_append_str(b, ",\"attempts\":") != 0 || bp_buf_append_str(b, n) != 0 ||
             bp_buf_append_str(b, ",\"set_aside_at\":\"") != 0 ||
             bp_buf_append_str(b, now) != 0 ||
             /* the entry is JSON text the dead-letter writer made: kept as a value */
             bp_buf_append_str(b, "\",\"dead_letter\":") != 0 ||
             bp_buf_append(b, entry, len) != 0 || bp_buf_append(b, "}", 1) != 0;
    return rc ? -1 : 0;
}

/* See batch.h (bp_dead_refused_fn). The attempts are max(deliveryAttempt, refusals recorded +
 * 1); below dead_letter.max_attempts one more refusal is recorded and the message nacked. Without
 * a suspects file and without deliveryAttempt nothing can count: set aside at once. Returns 0
 * when set aside (the slot holds the quarantine line's write), -1 to nack. A message without an
 * ack slot (a file's line) is set aside at the first refusal. */
int
bp_rt_dead_refused(void *owner, const char *table, const char *entry, size_t len,
                   const char *reason, uint32_t slot, int attempt)
{
    struct bp_rt *rt = owner;
    struct bp_quarantine *q = bp_guard_quarantine(rt);
    const char *id;
    size_t id_len;
    entry_id(entry, len, &id, &id_len);
    if (rt->archive.discard) {
        /* a replay without --archive has no archive to set it aside in: its object fails and
         * is not recorded as finished, which says so; nothing redelivers it in a loop */
        bp_log(BP_LOG_ERROR, "quarantine", "table %s refused the dead letter of message %.*s: "
               "%.300s", table, (int)(id_len > 200 ? 200 : id_len), id, reason);
        return -1;
    }
    int refused = bp_quarantine_refusals(q, id, id_len);
    int attempts = attempt > refused + 1 ? attempt : refused + 1;
    int max = (int)rt->cfg.dead_letter_max_attempts;
    /* a file's line (no ack slot) is never delivered again: set aside at once */
    if (attempts < max && id_len && (q || attempt > 0) && slot != BP_ACK_NONE) {
        if (!q || bp_quarantine_add_refusal(q, id, id_len) == 0 || attempt > 0) {
            bp_log_rl(BP_LOG_WARN, "quarantine", table, "table %s refused the dead letter of "
                      "message %.*s (attempt %d of %d); it will be redelivered: %.300s", table,
                      (int)(id_len > 200 ? 200 : id_len), id, attempts, max, reason);
            return -1;
        }
        bp_log(BP_LOG_WARN, "quarantine", "%s: %s: cannot count the attempts",
               bp_quarantine_path(q), strerror(errno));
    }
    bp_buf_t b;
    /* escaped text grows 6-fold at most (\u00XX) */
    bp_buf_init(&b, len + 6 * (strlen(reason) + id_len + strlen(table)) + 1024);
    int32_t hour = bp_time_hour_key(bp_time_now());
    int rc = record(&b, id, id_len, table, entry, len, reason, attempts) != 0 ||
             bp_archive_add(&rt->archive, BP_QUARANTINE_FOLDER, hour, NULL, 0, b.data, b.len,
                            slot, bp_time_mono()) != 0 ? -1 : 0;
    bp_buf_free(&b);
    if (rc != 0) {
        bp_log(BP_LOG_ERROR, "quarantine", "message %.*s: its dead letter cannot be set aside "
               "in the archive; it will be redelivered", (int)(id_len > 200 ? 200 : id_len), id);
        return -1;
    }
    rt->stats.quarantined++;
    bp_log(BP_LOG_ERROR, "quarantine", "message %.*s set aside under %s/ in the archive and "
           "acked: table %s refused its dead letter %d times (dead_letter.max_attempts=%d; the "
           "raw bytes are in the archive, a parse or validate dead letter's under %s/): %.300s",
           (int)(id_len > 200 ? 200 : id_len), id, BP_QUARANTINE_FOLDER, table, attempts, max,
           rt->cfg.dead_letter_prefix, reason);
    return 0;
}
