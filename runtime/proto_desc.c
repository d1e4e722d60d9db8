/* proto_desc.c - building a table's writer schema (a DescriptorProto) with protobuf-c.
 *
 * Why protobuf-c here (Debian's libprotobuf-c, from proto/descriptor_subset.proto): the descriptor
 * is a fixed message type, and packing it with the library that also decodes the service's replies
 * keeps one implementation of the wire format for every fixed message. It runs once per table and
 * reload, so its tree of small allocations costs nothing that matters. Rows, whose message type is
 * only known at run time, are written by proto_row.c directly. */
#include "proto_desc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor_subset.pb-c.h"

/* google.protobuf.FieldDescriptorProto's Type and Label values */
enum { T_DOUBLE = 1, T_INT64 = 3, T_INT32 = 5, T_BOOL = 8, T_STRING = 9, T_MESSAGE = 11,
       T_BYTES = 12 };
enum { L_OPTIONAL = 1, L_REQUIRED = 2, L_REPEATED = 3 };

/* The messages of RECORD columns, all nested in the root (built before it, so kept here). */
struct dctx {
    Bpd__DescriptorProto **nested;
    size_t nnested;
    char *why;
    size_t whylen;
};

/* See proto_desc.h. */
int
bp_proto_field_type(const struct bp_schema_field *f)
{
    switch (f->type) {
    case BP_SCHEMA_INT64: case BP_SCHEMA_TIMESTAMP: return T_INT64;
    case BP_SCHEMA_FLOAT64: return T_DOUBLE;
    case BP_SCHEMA_BOOL: return T_BOOL;
    case BP_SCHEMA_DATE: return T_INT32;
    case BP_SCHEMA_BYTES: return T_BYTES;
    case BP_SCHEMA_RECORD: return T_MESSAGE;
    case BP_SCHEMA_STRING: case BP_SCHEMA_NUMERIC: case BP_SCHEMA_TIME: case BP_SCHEMA_DATETIME:
    case BP_SCHEMA_JSON:
        return T_STRING;
    case BP_SCHEMA_ANY:
        return 0;   /* RANGE needs its element type, which bp_schema does not keep; INTERVAL
                     * has no Storage Write form in Google's clients */
    }
    return 0;
}

/* See proto_desc.h. */
int
bp_proto_ident_ok(const char *name, size_t n)
{
    if (n == 0 || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return 0;
    }
    return 1;
}

static void
message_free(Bpd__DescriptorProto *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_field; i++) {
        Bpd__FieldDescriptorProto *f = m->field[i];
        if (!f)
            continue;
        free(f->name);
        free(f->type_name);
        if (f->options)
            free(f->options->column_name);
        free(f->options);
        free(f);
    }
    free(m->field);
    for (size_t i = 0; i < m->n_nested_type; i++)
        message_free(m->nested_type[i]);
    free(m->nested_type);
    free(m->name);
    free(m);
}

/* A field name for column f of rec: its own when it is an identifier, else "col_<number>" made
 * unique among rec's columns with trailing '_' (column names are unique case-insensitively, the
 * placeholder only needs to differ from every one of them). */
static char *
field_name(const struct bp_schema_field *rec, const struct bp_schema_field *f, size_t number)
{
    if (bp_proto_ident_ok(f->name, f->name_len))
        return bp_xstrdup(f->name);
    char buf[64];
    int n = snprintf(buf, sizeof(buf) - 8, "col_%zu", number);
    for (size_t i = 0; i < rec->nfields && (size_t)n < sizeof(buf) - 1; i++) {
        if (strcmp(rec->fields[i].name, buf) == 0) {
            buf[n++] = '_';
            buf[n] = 0;
            i = (size_t)-1;     /* the longer name against every column again */
        }
    }
    return bp_xstrdup(buf);
}

static Bpd__DescriptorProto *message_build(const struct bp_schema_field *rec, const char *name,
                                           struct dctx *c);

/* Fills fd for column f (number n) of rec, whose message is named scope. */
static int
field_build(Bpd__FieldDescriptorProto *fd, const struct bp_schema_field *rec,
            const struct bp_schema_field *f, size_t n, const char *scope, struct dctx *c)
{
    int type = bp_proto_field_type(f);
    if (type == 0) {
        snprintf(c->why, c->whylen, "%s: a %s column cannot be written with the Storage Write "
                 "API", f->name, f->type_name ? f->type_name : "?");
        return -1;
    }
    fd->name = field_name(rec, f, n);
    fd->has_number = fd->has_label = fd->has_type = 1;
    fd->number = (int32_t)n;
    fd->type = type;
    fd->label = f->mode == BP_SCHEMA_REPEATED ? L_REPEATED
              : f->mode == BP_SCHEMA_REQUIRED ? L_REQUIRED : L_OPTIONAL;
    int packed = f->mode == BP_SCHEMA_REPEATED && type != T_STRING && type != T_BYTES &&
                 type != T_MESSAGE;
    int renamed = strcmp(fd->name, f->name) != 0;
    if (packed || renamed) {
        fd->options = bp_xmalloc(sizeof(*fd->options));
        bpd__field_options__init(fd->options);
        fd->options->has_packed = packed;
        fd->options->packed = packed;
        fd->options->column_name = renamed ? bp_xstrndup(f->name, f->name_len) : NULL;
    }
    if (type != T_MESSAGE)
        return 0;
    char sub[400];
    snprintf(sub, sizeof(sub), "%s_%zu", scope, n);
    fd->type_name = bp_xstrdup(sub);
    Bpd__DescriptorProto *m = message_build(f, sub, c);
    if (!m)
        return -1;
    /* nested depth is capped by the schema (BP_SCHEMA_MAX_DEPTH), so is the count per table */
    c->nested = bp_xrealloc(c->nested, (c->nnested + 1) * sizeof(*c->nested));
    c->nested[c->nnested++] = m;
    return 0;
}

/* The message of RECORD rec, named name, its RECORD columns' messages added to c->nested. */
static Bpd__DescriptorProto *
message_build(const struct bp_schema_field *rec, const char *name, struct dctx *c)
{
    Bpd__DescriptorProto *m = bp_xmalloc(sizeof(*m));
    bpd__descriptor_proto__init(m);
    m->name = bp_xstrdup(name);
    m->field = bp_xcalloc(rec->nfields ? rec->nfields : 1, sizeof(*m->field));
    for (size_t i = 0; i < rec->nfields; i++) {
        Bpd__FieldDescriptorProto *fd = bp_xmalloc(sizeof(*fd));
        bpd__field_descriptor_proto__init(fd);
        m->field[i] = fd;
        m->n_field = i + 1;     /* so message_free reaches a half-built field */
        if (field_build(fd, rec, &rec->fields[i], i + 1, name, c) != 0) {
            message_free(m);
            return NULL;
        }
    }
    return m;
}

/* See proto_desc.h. */
int
bp_proto_descriptor(const struct bp_schema *s, bp_buf_t *out, char *why, size_t whylen)
{
    struct dctx c = {NULL, 0, why, whylen};
    int rc = -1;
    Bpd__DescriptorProto *root = message_build(&s->root, BP_PROTO_ROOT_NAME, &c);
    if (!root)
        goto fail;
    root->nested_type = c.nested;
    root->n_nested_type = c.nnested;
    c.nested = NULL;
    c.nnested = 0;
    size_t n = bpd__descriptor_proto__get_packed_size(root);
    if (bp_buf_reserve(out, n) != 0) {
        snprintf(why, whylen, "the writer schema (%zu bytes) passes the buffer's limit", n);
        goto fail;
    }
    out->len += bpd__descriptor_proto__pack(root, (uint8_t *)out->data + out->len);
    rc = 0;
fail:
    for (size_t i = 0; i < c.nnested; i++)
        message_free(c.nested[i]);
    free(c.nested);
    message_free(root);
    return rc;
}
