/* dispatch.c - turns the results of one Lua batch into work for the sinks: a row goes to its
 * table's batch and its raw line to the archive of its type; a dead letter becomes a row of the
 * dead-letter table and its raw line goes to the archive's errors/ folder. Every event reaches
 * exactly one table and exactly one archive object. */
#include "dispatch.h"
#include "dead_format.h"
#include "json_out.h"
#include "log.h"
#include "row_meta.h"
#include "rt.h"
#include "rt_reload.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const bp_stage_names[BP_STAGE_SCHEMA + 1] = {
    "ok", "parse", "route", "validate", "map", "insert", "schema"
};

static int32_t
publish_hour(const bp_msg_t *m)
{
    return bp_time_hour_key(m->publish_time > 0 ? m->publish_time : bp_time_now());
}

/* Writes dead letter d's entry into rt->entry and adds it to the dead-letter batch; with
 * storage_write, its protobuf too (written in the same pass, dead_format.c), or none when the
 * table's schema cannot take it as the entry says it (the store then reads the entry back and
 * reports what it finds). Returns 0, or -1 when a sink failed. */
static int
add_dead_entry(struct bp_rt *rt, const struct bp_dead_letter *d, uint32_t slot)
{
    int dataflow = rt->cfg.dead_letter_format[0] == 'd';
    const struct bp_schema *s = rt->protos ? bp_rt_table_schema(rt, rt->cfg.dead_letter_table)
                                          : NULL;
    struct bp_proto_put w;
    bp_buf_t pb;
    bp_buf_init(&pb, rt->entry.max);
    if (s)
        bp_proto_put_begin(&w, s, &pb);
    int rc = dataflow ? bp_dead_dataflow_entry(&rt->entry, d, s ? &w : NULL)
                      : bp_dead_rejected_entry(&rt->entry, d, s ? &w : NULL);
    char why[200];
    if (s && bp_proto_put_end(&w, why, sizeof(why)) != 0)
        bp_log(BP_LOG_DEBUG, "dead", "dead letter id=%.*s sent as JSON only: %s",
               (int)(d->m->id_len > 200 ? 200 : d->m->id_len), d->m->id, why);
    rc = rc != 0 ||
         bp_batches_add_encoded_attempt(&rt->tables, rt->dead_batch, rt->entry.data,
                                        rt->entry.len, pb.len ? pb.data : NULL, pb.len,
                                        s ? s->serial : 0, slot, d->m->delivery_attempt,
                                        bp_time_mono()) != 0;
    bp_buf_free(&pb);
    return rc ? -1 : 0;
}

/* The dead-letter row only (no archive line). */
static int
dead_row(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage, const char *reason,
         const char *etype, size_t etype_len)
{
    char now_str[BP_TIME_STRLEN], pt[BP_TIME_STRLEN];
    bp_time_rfc3339(bp_time_now(), now_str);
    bp_time_rfc3339(m->publish_time > 0 ? m->publish_time : bp_time_now(), pt);
    if (stage < BP_STAGE_PARSE || stage > BP_STAGE_SCHEMA)
        stage = BP_STAGE_MAP;
    /* a sample per stage at info level: the first of each 10 s window, then the count of the
     * rest (log.h), so a flood of bad events costs a line per stage per window */
    bp_log_rl(BP_LOG_INFO, "dead", bp_stage_names[stage], "dead letter: stage=%s id=%.*s "
              "reason=%.300s", bp_stage_names[stage], (int)(m->id_len > 200 ? 200 : m->id_len),
              m->id, reason);
    struct bp_dead_letter d = {m, bp_stage_names[stage], reason, strlen(reason), etype,
                               etype_len, now_str, pt};
    if (add_dead_entry(rt, &d, slot) != 0)
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
        bp_archive_add(&rt->archive, rt->cfg.dead_letter_prefix, publish_hour(m), m->id,
                       m->id_len, m->data, m->len, slot, bp_time_mono()) != 0)
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
    /* the dead letter is built in rt->entry: an entry lent from there is copied first */
    char *copy = NULL;
    if (rt->entry.data && entry >= rt->entry.data && entry < rt->entry.data + rt->entry.cap) {
        copy = bp_xmalloc(len ? len : 1);
        memcpy(copy, entry, len);
        entry = copy;
    }
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
    int rc = dead_row(rt, &m, slot, BP_STAGE_INSERT, why, NULL, 0);
    free(copy);
    return rc;
}

/* The map's protobuf row (row, *n bytes, written under the schema of serial) with the route's
 * metadata columns, appended to rt->entry after the row's entry (bp_meta_proto); NULL when it
 * cannot be (the store then reads the entry back). rt->entry's data may move: the caller takes
 * the entry's address after. */
static const void *
with_meta(struct bp_rt *rt, int route, unsigned meta, const bp_msg_t *m, const char *sub,
          const void *row, size_t *n, unsigned long serial)
{
    const struct bp_row_protos *p = rt->protos;
    const struct bp_schema *s = (size_t)route < p->nroutes ? p->schemas[route] : NULL;
    size_t at = rt->entry.len;
    if (!s || s->serial != serial || bp_meta_proto(&rt->entry, s, row, *n, meta, m, sub) != 0)
        return NULL;
    *n = rt->entry.len - at;
    return rt->entry.data + at;
}

static int
dispatch_row(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, const bp_result_t *r,
             size_t i, const char *row, const char *type, unsigned meta, double now)
{
    bp_buf_t *b = &rt->entry;
    bp_buf_reset(b);
    const char *sub = rt->cfg.input || rt->replay ? NULL : rt->cfg.subscription;
    /* a row too large for one insertAll would fail its batch on every redelivery: it becomes a
     * dead letter with the raw event instead (one length compare on the hot path) */
    int rc = r->len > BP_ROW_MAX || bp_buf_append_str(b, "{\"insertId\":") != 0 ||
             bp_json_string(b, m->id, m->id_len) != 0 || bp_buf_append_str(b, ",\"json\":") != 0;
    size_t row_at = b->len;
    /* the metadata columns a route asks for go in before the row's closing brace (one branch
     * when it asks for none), so the schema check below sees the row as BigQuery will */
    rc = rc || bp_json_text_utf8(b, row, r->len) != 0 ||
         (meta && bp_meta_splice(b, row_at, meta, m, sub) != 0);
    size_t row_len = b->len - row_at;
    if (rc || bp_buf_append(b, "}", 1) != 0 || b->len > BP_ROW_MAX) {
        char why[128];
        snprintf(why, sizeof(why), "row of %zu bytes exceeds the insertAll limit",
                 r->len > b->len ? (size_t)r->len : b->len);
        return bp_rt_dead_letter(rt, m, slot, BP_STAGE_INSERT, why, type, strlen(type));
    }
    /* storage_write: the row as the batch loop also wrote it in protobuf (row_protos.c), sent
     * as it is, its metadata columns added after it in rt->entry */
    size_t plen = 0, elen = b->len;
    unsigned long serial = 0;
    const void *proto = rt->protos ? bp_row_protos_get(rt->protos, i, &plen, &serial) : NULL;
    /* a row its table would refuse fails here, with its field path, rather than in an insertAll
     * (a request, a round trip and BigQuery's less precise message later). A row written as
     * protobuf under the same schema passed the same rules there (proto_row.c checks values as
     * schema_check.c does, and refuses what it cannot write; test_proto_row compares them): not
     * checked twice, unless metadata columns were added to the JSON only */
    const struct bp_schema *schema = (size_t)r->route < rt->nroutes ? rt->route_schema[r->route]
                                                                    : NULL;
    char why[512];
    if (schema && !(proto && !meta && schema->serial == serial) &&
        bp_schema_check(schema, b->data + row_at, row_len, why, sizeof(why)) != 0)
        return bp_rt_dead_letter(rt, m, slot, BP_STAGE_SCHEMA, why, type, strlen(type));
    /* archive.time: the event's own hour, or the publish hour (a folder complete once its hour
     * is over) */
    int32_t hour = r->hour > 0 && rt->cfg.archive_time[0] != 'p' ? r->hour : publish_hour(m);
    if (proto && meta)
        proto = with_meta(rt, r->route, meta, m, sub, proto, &plen, serial);
    if (bp_batches_add_encoded(&rt->tables, rt->route_batch[r->route], b->data, elen, proto,
                               plen, serial, slot, now) != 0 ||
        bp_archive_add(&rt->archive, type, hour, m->id, m->id_len, m->data, m->len, slot,
                       now) != 0)
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
    double now = bp_time_mono();   /* durations: never the wall clock (ev_now) */
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
            rc = dispatch_row(rt, m, slot, r, i, out + r->off, routes[r->route].name,
                              routes[r->route].metadata, now);
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
        if (rc != 0) {
            /* per-event limits become dead letters above: what is left is a sink that failed */
            bp_log(BP_LOG_ERROR, "dispatch", "id=%.*s (%zu bytes): a sink refused the event",
                   (int)(m->id_len > 200 ? 200 : m->id_len), m->id, m->len);
            return -1;
        }
    }
    return 0;
}
