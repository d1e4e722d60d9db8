/* row_meta.c - the metadata columns a route asks for, spliced into its rows (row_meta.h). The
 * row comes from lua-cjson as one JSON object; its closing brace is the last byte, so adding
 * columns is an append: no parse, no Lua round trip. */
#include "row_meta.h"
#include "json_out.h"
#include "lua_host.h"
#include "proto_put.h"
#include "timefmt.h"

#include <stdio.h>
#include <string.h>

const char *const bp_meta_names[BP_META_COLUMNS] = {
    "message_id", "publish_time", "attributes", "subscription_name", "delivery_attempt"
};

/* Their BigQuery types, for the hint of a missing column (attributes may be STRING too). */
static const char *const meta_types[BP_META_COLUMNS] = {
    "STRING", "TIMESTAMP", "JSON", "STRING", "INT64"
};

/* The bit of a metadata column name, or 0 (host.lua checks names first; this is C's own). */
unsigned
bp_meta_bit(const char *name)
{
    for (unsigned i = 0; i < BP_META_COLUMNS; i++)
        if (strcmp(name, bp_meta_names[i]) == 0)
            return 1u << i;
    return 0;
}

/* Appends `,"name":` (no comma before the first key of an empty object). */
static int
meta_key(bp_buf_t *b, int *first, const char *name)
{
    int rc = *first ? 0 : bp_buf_append(b, ",", 1);
    *first = 0;
    return rc || bp_buf_append(b, "\"", 1) || bp_buf_append_str(b, name) ||
           bp_buf_append(b, "\":", 2) ? -1 : 0;
}

static int
meta_value(bp_buf_t *b, unsigned bit, const bp_msg_t *m, const char *subscription)
{
    char tmp[BP_TIME_STRLEN + 2];
    switch (bit) {
    case BP_META_MESSAGE_ID:
        return bp_json_string(b, m->id, m->id_len);
    case BP_META_PUBLISH_TIME:
        if (m->publish_time <= 0)
            return bp_buf_append(b, "null", 4);
        bp_time_rfc3339(m->publish_time, tmp);
        return bp_json_string(b, tmp, strlen(tmp));
    case BP_META_ATTRIBUTES:
        /* a JSON column takes its value as a string of JSON text (as the dead letter's does) */
        return bp_json_string_or_null(b, m->attrs_len ? m->attrs : NULL, m->attrs_len);
    case BP_META_SUBSCRIPTION_NAME:
        return bp_json_string_or_null(b, subscription, subscription ? strlen(subscription) : 0);
    default:
        if (m->delivery_attempt <= 0)
            return bp_buf_append(b, "null", 4);
        snprintf(tmp, sizeof(tmp), "%d", (int)m->delivery_attempt);
        return bp_buf_append_str(b, tmp);
    }
}

/* Splices the columns of mask before the row's closing brace (see row_meta.h). */
int
bp_meta_splice(bp_buf_t *b, size_t row_at, unsigned mask, const bp_msg_t *m,
               const char *subscription)
{
    if (b->len < row_at + 2 || b->data[row_at] != '{' || b->data[b->len - 1] != '}')
        return -1;
    b->len--;
    /* `{}`: the first column needs no comma (whitespace cannot occur: cjson writes none) */
    int first = b->len == row_at + 1;
    for (unsigned i = 0; i < BP_META_COLUMNS; i++) {
        unsigned bit = 1u << i;
        if ((mask & bit) && (meta_key(b, &first, bp_meta_names[i]) != 0 ||
                             meta_value(b, bit, m, subscription) != 0))
            return -1;
    }
    return bp_buf_append(b, "}", 1);
}

/* One metadata column of the protobuf row w (bp_meta_proto). */
static void
meta_put(struct bp_proto_put *w, unsigned bit, const char *name, const bp_msg_t *m,
         const char *subscription)
{
    char tmp[BP_TIME_STRLEN];
    switch (bit) {
    case BP_META_MESSAGE_ID:
        bp_proto_put_text(w, name, m->id, m->id_len);
        return;
    case BP_META_PUBLISH_TIME:
        if (m->publish_time <= 0)
            break;
        /* the text the JSON carries, read as the store reads it */
        bp_time_rfc3339(m->publish_time, tmp);
        bp_proto_put_timestamp_text(w, name, tmp, strlen(tmp));
        return;
    case BP_META_ATTRIBUTES:
        if (!m->attrs_len)
            break;
        bp_proto_put_text(w, name, m->attrs, m->attrs_len);
        return;
    case BP_META_SUBSCRIPTION_NAME:
        if (!subscription)
            break;
        bp_proto_put_text(w, name, subscription, strlen(subscription));
        return;
    default: {
        if (m->delivery_attempt <= 0)
            break;
        const struct bp_schema_field *f = bp_schema_field_find(&w->s->root, name, strlen(name));
        if (f && f->mode == BP_SCHEMA_REPEATED)
            bp_proto_put_fail(w, "delivery_attempt: a REPEATED column");
        bp_proto_put_int64(w, name, m->delivery_attempt);
        return;
    }
    }
    bp_proto_put_null(w, name);
}

/* The map's protobuf row with the metadata columns (row_meta.h). */
int
bp_meta_proto(bp_buf_t *b, const struct bp_schema *s, const void *row, size_t n, unsigned mask,
              const bp_msg_t *m, const char *subscription)
{
    struct bp_proto_put w;
    char err[200];
    bp_proto_put_resume(&w, s, b, row, n);
    for (unsigned i = 0; i < BP_META_COLUMNS; i++)
        if (mask & (1u << i))
            meta_put(&w, 1u << i, bp_meta_names[i], m, subscription);
    return bp_proto_put_end(&w, err, sizeof(err));
}

/* First column of mask the schema's top level lacks (row_meta.h). Start and --check only. */
int
bp_meta_missing(const struct bp_schema *s, unsigned mask)
{
    for (int i = 0; i < BP_META_COLUMNS; i++) {
        if (!(mask & (1u << i)))
            continue;
        size_t k = 0, len = strlen(bp_meta_names[i]);
        while (k < s->root.nfields && !(s->root.fields[k].name_len == len &&
                                         memcmp(s->root.fields[k].name, bp_meta_names[i],
                                                len) == 0))
            k++;
        if (k == s->root.nfields)
            return i;
    }
    return -1;
}

/* Every metadata route against its table's schema (row_meta.h). Start, reload, --check. */
int
bp_meta_check_routes(const struct bp_route *routes, size_t n, const struct bp_schema_set *set,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct bp_schema *s = routes[i].metadata ? bp_schema_set_find(set, routes[i].table)
                                                       : NULL;
        int col = s ? bp_meta_missing(s, routes[i].metadata) : -1;
        if (col >= 0) {
            const char *name = bp_meta_names[col];
            snprintf(err, errlen, "route %s asks for metadata column %s, but table %s has no "
                     "column %s (add `%s %s` to its CREATE TABLE in ddl/, or leave it out of "
                     "the route's metadata)", routes[i].name, name, routes[i].table, name, name,
                     meta_types[col]);
            return -1;
        }
    }
    return 0;
}
