/* dispatch.c - turns the results of one Lua batch into work for the sinks: a row goes to its
 * table's batch and its raw line to the archive of its type; a dead letter becomes a row of the
 * dead-letter table and its raw line goes to the archive's errors/ folder. Every event reaches
 * exactly one table and exactly one archive object. */
#include "dispatch.h"
#include "json_out.h"
#include "log.h"
#include "rt.h"
#include "timefmt.h"

#include <stdio.h>
#include <string.h>

const char *const bp_stage_names[BP_STAGE_INSERT + 1] = {
    "ok", "parse", "route", "validate", "map", "insert"
};

/* Raw payloads in dead-letter rows are cut here; the archive keeps the whole line. */
#define BP_DEAD_PAYLOAD_MAX (1024 * 1024)

static int32_t
publish_hour(const bp_msg_t *m)
{
    return bp_time_hour_key(m->publish_time > 0 ? m->publish_time : bp_time_now());
}

/* Appends `"key":` */
static int
key(bp_buf_t *b, const char *k)
{
    return bp_buf_append_str(b, k);
}

static int
build_dead_entry(struct bp_rt *rt, const bp_msg_t *m, int stage, const char *reason,
                 size_t reason_len, const char *etype, size_t etype_len, const char *now_str)
{
    bp_buf_t *b = &rt->entry;
    char pt[BP_TIME_STRLEN];
    bp_time_rfc3339(m->publish_time > 0 ? m->publish_time : bp_time_now(), pt);
    size_t raw_len = m->len > BP_DEAD_PAYLOAD_MAX ? BP_DEAD_PAYLOAD_MAX : m->len;
    bp_buf_reset(b);
    int rc = 0;
    rc |= key(b, "{\"insertId\":");
    rc |= bp_json_string(b, m->id, m->id_len);
    rc |= key(b, ",\"json\":{\"message_id\":");
    rc |= bp_json_string(b, m->id, m->id_len);
    rc |= key(b, ",\"event_type\":");
    rc |= bp_json_string_or_null(b, etype_len ? etype : NULL, etype_len);
    rc |= key(b, ",\"error_stage\":");
    rc |= bp_json_string(b, bp_stage_names[stage], strlen(bp_stage_names[stage]));
    rc |= key(b, ",\"reason\":");
    rc |= bp_json_string(b, reason, reason_len);
    rc |= key(b, ",\"raw_payload\":");
    rc |= bp_json_string(b, m->data, raw_len);
    rc |= key(b, ",\"attributes\":");
    /* a JSON column takes a string of JSON text */
    rc |= bp_json_string_or_null(b, m->attrs, m->attrs_len);
    rc |= key(b, ",\"publish_time\":\"");
    rc |= bp_buf_append_str(b, pt);
    rc |= key(b, "\",\"ingestion_time\":\"");
    rc |= bp_buf_append_str(b, now_str);
    rc |= key(b, "\"}}");
    return rc ? -1 : 0;
}

/* The dead-letter row only (no archive line). */
static int
dead_row(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage, const char *reason,
         const char *etype, size_t etype_len)
{
    char now_str[BP_TIME_STRLEN];
    bp_time_rfc3339(bp_time_now(), now_str);
    if (stage < BP_STAGE_PARSE || stage > BP_STAGE_INSERT)
        stage = BP_STAGE_MAP;
    bp_log(BP_LOG_DEBUG, "dead", "id=%.*s stage=%s reason=%s", (int)m->id_len, m->id,
           bp_stage_names[stage], reason);
    if (build_dead_entry(rt, m, stage, reason, strlen(reason), etype, etype_len, now_str) != 0 ||
        bp_batches_add(&rt->tables, rt->dead_batch, rt->entry.data, rt->entry.len, slot,
                       ev_now(rt->loop)) != 0)
        return -1;
    rt->stats.dead[stage]++;
    return 0;
}

/* Sends one event to the dead letter: a rejected_events row and the raw line under errors/.
 * Returns 0, or -1 when a sink failed. Also used by sources for events Lua never sees. */
int
bp_rt_dead_letter(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage,
                  const char *reason, const char *etype, size_t etype_len)
{
    if (dead_row(rt, m, slot, stage, reason, etype, etype_len) != 0 ||
        bp_archive_add(&rt->archive, rt->cfg.dead_letter_prefix, publish_hour(m), m->data, m->len,
                       slot, ev_now(rt->loop)) != 0)
        return -1;
    return 0;
}

/* A row the table refused (BigQuery insertErrors): a dead letter of stage insert whose
 * raw_payload is the row as sent (the raw event is already in the archive of its type). The
 * message id is taken back from the entry's insertId, which dispatch_row wrote first. */
int
bp_rt_rejected_row(void *owner, const char *table, const char *entry, size_t len,
                   const char *reason, uint32_t slot)
{
    struct bp_rt *rt = owner;
    static const char pre[] = "{\"insertId\":\"";
    bp_msg_t m;
    memset(&m, 0, sizeof(m));
    m.data = entry;
    m.len = len;
    m.id = "";
    if (len > sizeof(pre) && memcmp(entry, pre, sizeof(pre) - 1) == 0) {
        const char *id = entry + sizeof(pre) - 1;
        const char *q = memchr(id, '"', len - (sizeof(pre) - 1));
        if (q) {
            m.id = id;
            m.id_len = (size_t)(q - id);
        }
    }
    char why[1200];
    snprintf(why, sizeof(why), "table %s refused the row: %s", table, reason);
    return dead_row(rt, &m, slot, BP_STAGE_INSERT, why, NULL, 0);
}

static int
dispatch_row(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, const bp_result_t *r,
             const char *row, const char *type, double now)
{
    bp_buf_t *b = &rt->entry;
    bp_buf_reset(b);
    if (bp_buf_append_str(b, "{\"insertId\":") != 0 || bp_json_string(b, m->id, m->id_len) != 0 ||
        bp_buf_append_str(b, ",\"json\":") != 0 || bp_buf_append(b, row, r->len) != 0 ||
        bp_buf_append(b, "}", 1) != 0)
        return -1;
    /* archive.time: the event's own hour, or the publish hour (a folder complete once its hour
     * is over) */
    int32_t hour = r->hour > 0 && rt->cfg.archive_time[0] != 'p' ? r->hour : publish_hour(m);
    if (bp_batches_add(&rt->tables, rt->route_batch[r->route], b->data, b->len, slot, now) != 0 ||
        bp_archive_add(&rt->archive, type, hour, m->data, m->len, slot, now) != 0)
        return -1;
    rt->stats.rows++;
    return 0;
}

/* Routes every result of a batch. out/outlen is the output Lua wrote; results index into it
 * and are checked, since a result is Lua-written memory. slots (or NULL) are the messages' ack
 * slots: each holds one pending write that is released here once the message has been handed
 * to all its destinations. Returns 0, or -1 when a sink failed. */
int
bp_dispatch_batch(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots,
                  const bp_result_t *res, size_t n, const char *out, size_t outlen)
{
    size_t nroutes;
    const struct bp_route *routes = bp_lua_host_routes(rt->host, &nroutes);
    double now = ev_now(rt->loop);
    for (size_t i = 0; i < n; i++) {
        const bp_result_t *r = &res[i];
        const bp_msg_t *m = &msgs[i];
        uint32_t slot = slots ? slots[i] : BP_ACK_NONE;
        int sane = (size_t)r->off + r->len <= outlen &&
                   (r->etype_len == 0 || (size_t)r->etype_off + r->etype_len <= outlen) &&
                   r->stage >= BP_STAGE_OK && r->stage <= BP_STAGE_INSERT;
        int rc;
        if (!sane)
            rc = bp_rt_dead_letter(rt, m, slot, BP_STAGE_MAP, "internal: the Lua host wrote a "
                                   "bad result for this event", NULL, 0);
        else if (r->stage == BP_STAGE_OK && r->route >= 0 && (size_t)r->route < nroutes)
            rc = dispatch_row(rt, m, slot, r, out + r->off, routes[r->route].name, now);
        else if (r->stage == BP_STAGE_OK)
            rc = bp_rt_dead_letter(rt, m, slot, BP_STAGE_MAP, "internal: row without a route",
                                   NULL, 0);
        else {
            /* reasons are short text; copy so the dead-letter writer gets a C string */
            char reason[1024];
            snprintf(reason, sizeof(reason), "%.*s", (int)r->len, out + r->off);
            rc = bp_rt_dead_letter(rt, m, slot, r->stage, reason, out + r->etype_off,
                                   r->etype_len);
        }
        bp_ack_done(&rt->ack, slot, rc == 0);
        if (rc != 0)
            return -1;
    }
    return 0;
}
