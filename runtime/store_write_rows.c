/* store_write_rows.c - a batch's rows into AppendRows requests of the Storage Write store
 * (store_write.c): the writer schema they go under and the ProtoRows they carry.
 *
 * Writer schemas (struct sw_desc): each table holds its newest, refcounted, a version number
 * (gen) bumped whenever the DescriptorProto built from its schema changes (a reload, a table
 * sync, a reply's updated_schema); each request holds the one its rows were encoded under, so
 * rows queued before a column moved still go with the numbering they were written in
 * (store_write.c sends a request's writer schema when it is not the one its call last sent).
 *
 * Rows: a row the batch loop (or C, for dead letters and metadata columns) already wrote as
 * protobuf under the schema in force is copied as it is; any other is read from its insertAll
 * entry into a Lua table (entry_lua.c) and written by proto_row.c. A batch's rows fill a request
 * up to its 10 MB and the next one after, in order; a row that cannot be written is a row error
 * of its request (a dead letter of stage insert once the batch ends). */
#include "store_write_int.h"

#include <stdlib.h>
#include <string.h>

#include "entry_lua.h"
#include "proto_desc.h"
#include "proto_row.h"

/* See store_write_int.h. */
void
bp_sw_req_error(struct req *r, size_t index, const char *reason)
{
    r->errs = bp_xrealloc(r->errs, (r->nerrs + 1) * sizeof(*r->errs));
    r->errs[r->nerrs].index = index;
    r->errs[r->nerrs].reason = bp_xstrdup(reason);
    r->nerrs++;
}

/* See store_write_int.h. */
void
bp_sw_desc_unref(struct sw_desc *d)
{
    if (d && --d->refs == 0) {
        bp_buf_free(&d->bytes);
        free(d);
    }
}

static struct req *
req_new(struct sw_store *s, struct sw_table *t, struct put *put, size_t nrows)
{
    struct req *r = bp_xcalloc(1, sizeof(*r));
    r->s = s;
    r->t = t;
    r->put = put;
    r->desc = t->desc;
    r->desc->refs++;
    r->offset = -1;
    put->left++;
    s->pending++;
    bp_buf_init(&r->rows, BP_SW_MAX_REQUEST);
    r->orig = bp_xmalloc((nrows ? nrows : 1) * sizeof(*r->orig));
    return r;
}

static void
parts_add(struct req ***out, size_t *nout, struct req *r)
{
    *out = bp_xrealloc(*out, (*nout + 1) * sizeof(**out));
    (*out)[(*nout)++] = r;
}

/* Copies row i's protobuf (enc, n bytes: a serialized_rows entry the batch loop wrote) into r,
 * or into a new request of put when r is full. Returns the request it went into, or NULL when
 * it fits in none (its entry is then written as any other row is). */
static struct req *
copy_encoded(struct sw_store *s, struct sw_table *t, struct put *put, struct req *r,
             const char *enc, size_t n, size_t nrows, struct req ***out, size_t *nout)
{
    if (bp_buf_append(&r->rows, enc, n) == 0)
        return r;
    if (r->nrows == 0)
        return NULL;
    struct req *next = req_new(s, t, put, nrows);
    parts_add(out, nout, next);
    return bp_buf_append(&next->rows, enc, n) == 0 ? next : NULL;
}

/* Encodes every entry line into requests of put (appended to *out, *nout of them), in the
 * batch's order: a row that does not fit in the current request starts the next one; a row that
 * cannot be written (or does not fit even alone) is a row error. A row enc holds (written by
 * the batch loop under the schema being sent: enc's serial is schema's) is copied as it is;
 * the others are read from their entry into a Lua table and written from it. */
/* See store_write_int.h. */
void
bp_sw_encode_rows(struct sw_store *s, struct sw_table *t, struct put *put,
            const struct bp_schema *schema, const char *entries, size_t len, size_t nrows,
            const struct bp_encoded_rows *enc, const unsigned char *skip, struct req ***out,
            size_t *nout)
{
    struct req *r = req_new(s, t, put, nrows);
    parts_add(out, nout, r);
    const char *p = entries, *end = entries + len;
    const char *ep = enc && enc->serial == schema->serial ? enc->data : NULL;
    for (size_t i = 0; i < nrows && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t en = ep ? enc->len[i] : 0;
        if (skip && skip[i]) {
            /* exactly_once: the log says a crashed process's append stored it */
            p = nl ? nl + 1 : end;
            ep = ep ? ep + en : NULL;
            continue;
        }
        if (en) {
            struct req *in = copy_encoded(s, t, put, r, ep, en, nrows, out, nout);
            ep += en;
            if (in) {
                r = in;
                r->orig[r->nrows++] = i;
                s->stats.rows_encoded++;
                p = nl ? nl + 1 : end;
                continue;
            }
            /* fits in no request: its entry gives the reason (a row error) */
            r = (*out)[*nout - 1];
        }
        s->stats.rows_read_back++;
        char why[600];
        int ok = bp_entry_lua_push(s->rows, p, n, why, sizeof(why)) == 0;
        if (ok) {
            lua_State *L = bp_entry_lua_state(s->rows);
            ok = bp_proto_row_append(schema, L, lua_gettop(L), NULL, &r->rows, why,
                                     sizeof(why)) == 0;
            if (!ok && r->nrows) {
                /* the request may be full: the row opens the next one (alone it may fit) */
                r = req_new(s, t, put, nrows);
                parts_add(out, nout, r);
                ok = bp_proto_row_append(schema, L, lua_gettop(L), NULL, &r->rows, why,
                                         sizeof(why)) == 0;
            }
            lua_settop(L, 0);
        }
        if (ok)
            r->orig[r->nrows++] = i;
        else
            bp_sw_req_error(r, i, why);
        p = nl ? nl + 1 : end;
    }
    bp_entry_lua_collect(s->rows);
}

/* See store_write_int.h. */
int
bp_sw_desc_outdated(struct sw_table *t, const struct sw_desc *d)
{
    const struct bp_schema *schema = t->s->schema_for(t->s->owner, t->name);
    if (!schema)
        return 0;
    char why[300];
    bp_buf_t now;
    bp_buf_init(&now, 1u << 20);
    int outdated = bp_proto_descriptor(schema, &now, why, sizeof(why)) == 0 &&
                   (now.len != d->bytes.len || memcmp(now.data, d->bytes.data, now.len) != 0);
    bp_buf_free(&now);
    return outdated;
}

/* See store_write_int.h. */
int
bp_sw_desc_update(struct sw_table *t, const struct bp_schema *schema, char *why, size_t whylen)
{
    /* built for every batch rather than trusted by address (a reload frees the schemas it
     * replaces: a new one may come at an old one's address); a new one when it differs (a new
     * table, or a reload read another live schema), sent with the first request of its rows */
    bp_buf_t d;
    bp_buf_init(&d, 1u << 20);
    if (bp_proto_descriptor(schema, &d, why, whylen) != 0) {
        bp_buf_free(&d);
        return -1;
    }
    if (t->desc && d.len == t->desc->bytes.len && memcmp(d.data, t->desc->bytes.data, d.len) == 0) {
        bp_buf_free(&d);
        return 0;
    }
    struct sw_desc *nd = bp_xcalloc(1, sizeof(*nd));
    nd->refs = 1;
    nd->gen = t->desc ? t->desc->gen + 1 : 1;
    nd->bytes = d;
    bp_sw_desc_unref(t->desc);
    t->desc = nd;
    return 0;
}
