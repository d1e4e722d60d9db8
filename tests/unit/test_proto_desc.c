/* Unit tests: the writer schema (proto_desc.c). The DescriptorProto's bytes are read back with a
 * wire reader of the test's own: every column type's proto type and label, field numbers in
 * column order, RECORDs as messages nested in the root with resolvable names, packed repeated
 * numbers, placeholder names with the column_name option, and the shipped DDL's tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_host.h"
#include "proto_desc.h"
#include "proto_wire_read.h"
#include "schema.h"

/* A field of a DescriptorProto, read back. */
struct dfield {
    char name[80];
    int number, label, type, packed, has_packed;
    char type_name[80];
    char column_name[80];
};

/* A message read back: its name, fields and nested messages' byte ranges. */
struct dmsg {
    char name[80];
    struct dfield f[64];
    size_t nf;
    const uint8_t *nested[64];
    size_t nested_len[64];
    size_t nn;
};

static void
copy_str(char *dst, size_t size, const struct wf *f)
{
    assert_true(f->wt == 2 && f->n < size);
    memcpy(dst, f->p, f->n);
    dst[f->n] = 0;
}

static void
read_msg(const uint8_t *p, size_t n, struct dmsg *m)
{
    struct wf fs[200];
    size_t k = wire_fields(p, n, fs, 200);
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < k; i++) {
        if (fs[i].num == 1) {
            copy_str(m->name, sizeof(m->name), &fs[i]);
        } else if (fs[i].num == 3) {
            assert_true(m->nn < 64);
            m->nested[m->nn] = fs[i].p;
            m->nested_len[m->nn++] = fs[i].n;
        } else if (fs[i].num == 2) {
            struct wf ff[20];
            size_t kk = wire_fields(fs[i].p, fs[i].n, ff, 20);
            struct dfield *d = &m->f[m->nf++];
            for (size_t j = 0; j < kk; j++) {
                switch (ff[j].num) {
                case 1: copy_str(d->name, sizeof(d->name), &ff[j]); break;
                case 3: d->number = (int)ff[j].u; break;
                case 4: d->label = (int)ff[j].u; break;
                case 5: d->type = (int)ff[j].u; break;
                case 6: copy_str(d->type_name, sizeof(d->type_name), &ff[j]); break;
                case 8: {
                    struct wf of[5];
                    size_t ko = wire_fields(ff[j].p, ff[j].n, of, 5);
                    for (size_t o = 0; o < ko; o++) {
                        if (of[o].num == 2)
                            d->has_packed = 1, d->packed = (int)of[o].u;
                        else if (of[o].num == 454943157)
                            copy_str(d->column_name, sizeof(d->column_name), &of[o]);
                        else
                            fail_msg("option %u", of[o].num);
                    }
                    break;
                }
                default: fail_msg("field descriptor field %u", ff[j].num);
                }
            }
        } else {
            fail_msg("descriptor field %u", fs[i].num);
        }
    }
}

static struct bp_schema *
schema(const char *json)
{
    char why[300];
    struct bp_schema *s = bp_schema_from_json(json, strlen(json), why, sizeof(why));
    if (!s)
        fail_msg("schema: %s", why);
    return s;
}

/* Every column type, each mode, one RECORD inside another. */
static void
every_type_and_mode(void **state)
{
    (void)state;
    struct bp_schema *s = schema(
        "[{\"name\":\"s\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"i\",\"type\":\"INTEGER\"},{\"name\":\"f\",\"type\":\"FLOAT\"},"
        "{\"name\":\"n\",\"type\":\"NUMERIC\"},{\"name\":\"bn\",\"type\":\"BIGNUMERIC\"},"
        "{\"name\":\"b\",\"type\":\"BOOLEAN\"},{\"name\":\"ts\",\"type\":\"TIMESTAMP\"},"
        "{\"name\":\"d\",\"type\":\"DATE\"},{\"name\":\"t\",\"type\":\"TIME\"},"
        "{\"name\":\"dt\",\"type\":\"DATETIME\"},{\"name\":\"j\",\"type\":\"JSON\"},"
        "{\"name\":\"by\",\"type\":\"BYTES\"},{\"name\":\"g\",\"type\":\"GEOGRAPHY\"},"
        "{\"name\":\"ri\",\"type\":\"INT64\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rs\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rd\",\"type\":\"DATE\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rb\",\"type\":\"BOOL\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rf\",\"type\":\"FLOAT64\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rec\",\"type\":\"STRUCT\",\"mode\":\"REPEATED\",\"fields\":["
        "  {\"name\":\"a\",\"type\":\"INT64\",\"mode\":\"REQUIRED\"},"
        "  {\"name\":\"inner\",\"type\":\"RECORD\",\"fields\":["
        "    {\"name\":\"z\",\"type\":\"BYTES\"}]}]}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    char why[300];
    assert_int_equal(bp_proto_descriptor(s, &b, why, sizeof(why)), 0);
    struct dmsg m;
    read_msg((const uint8_t *)b.data, b.len, &m);
    assert_string_equal(m.name, "row");
    /* name, proto type (DOUBLE 1, INT64 3, INT32 5, BOOL 8, STRING 9, MESSAGE 11, BYTES 12),
     * label (OPTIONAL 1, REQUIRED 2, REPEATED 3), packed */
    static const struct { const char *name; int type, label, packed; } want[] = {
        {"s", 9, 2, 0}, {"i", 3, 1, 0}, {"f", 1, 1, 0}, {"n", 9, 1, 0}, {"bn", 9, 1, 0},
        {"b", 8, 1, 0}, {"ts", 3, 1, 0}, {"d", 5, 1, 0}, {"t", 9, 1, 0}, {"dt", 9, 1, 0},
        {"j", 9, 1, 0}, {"by", 12, 1, 0}, {"g", 9, 1, 0}, {"ri", 3, 3, 1}, {"rs", 9, 3, 0},
        {"rd", 5, 3, 1}, {"rb", 8, 3, 1}, {"rf", 1, 3, 1}, {"rec", 11, 3, 0},
    };
    assert_int_equal(m.nf, BP_ARRAY_LEN(want));
    for (size_t i = 0; i < m.nf; i++) {
        assert_string_equal(m.f[i].name, want[i].name);
        assert_int_equal(m.f[i].number, (int)i + 1);
        assert_int_equal(m.f[i].type, want[i].type);
        assert_int_equal(m.f[i].label, want[i].label);
        assert_int_equal(m.f[i].packed, want[i].packed);
        assert_int_equal(m.f[i].has_packed, want[i].packed);
        assert_string_equal(m.f[i].column_name, "");
    }
    /* the RECORDs: both nested in the root; the inner one named from the outer's scope, so its
     * relative name resolves from inside the outer message up to the root */
    assert_string_equal(m.f[18].type_name, "row_19");
    assert_int_equal(m.nn, 2);
    struct dmsg inner, outer;
    read_msg(m.nested[0], m.nested_len[0], &inner);
    read_msg(m.nested[1], m.nested_len[1], &outer);
    assert_string_equal(inner.name, "row_19_2");
    assert_int_equal(inner.nf, 1);
    assert_int_equal(inner.f[0].type, 12);
    assert_int_equal(inner.nn, 0);
    assert_string_equal(outer.name, "row_19");
    assert_int_equal(outer.nf, 2);
    assert_int_equal(outer.f[0].label, 2);
    assert_string_equal(outer.f[1].type_name, "row_19_2");
    assert_int_equal(outer.nn, 0);
    bp_buf_free(&b);
    bp_schema_free(s);
}

/* A column name that is not a proto identifier: a placeholder that no column has, and the name
 * in the column_name option. */
static void
names_that_are_not_identifiers(void **state)
{
    (void)state;
    struct bp_schema *s = schema("[{\"name\":\"my-col\",\"type\":\"STRING\"},"
                                 "{\"name\":\"col_1\",\"type\":\"STRING\"},"
                                 "{\"name\":\"col_1_\",\"type\":\"STRING\"},"
                                 "{\"name\":\"2nd\",\"type\":\"INT64\",\"mode\":\"REPEATED\"},"
                                 "{\"name\":\"_ok_9\",\"type\":\"BOOL\"}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    char why[300];
    assert_int_equal(bp_proto_descriptor(s, &b, why, sizeof(why)), 0);
    struct dmsg m;
    read_msg((const uint8_t *)b.data, b.len, &m);
    assert_int_equal(m.nf, 5);
    assert_string_equal(m.f[0].name, "col_1__");
    assert_string_equal(m.f[0].column_name, "my-col");
    assert_string_equal(m.f[1].name, "col_1");
    assert_string_equal(m.f[1].column_name, "");
    assert_string_equal(m.f[3].name, "col_4");
    assert_string_equal(m.f[3].column_name, "2nd");
    assert_int_equal(m.f[3].packed, 1);
    assert_string_equal(m.f[4].name, "_ok_9");
    assert_true(bp_proto_ident_ok("a_Z9", 4));
    assert_false(bp_proto_ident_ok("9a", 2));
    assert_false(bp_proto_ident_ok("", 0));
    assert_false(bp_proto_ident_ok("a b", 3));
    bp_buf_free(&b);
    bp_schema_free(s);
}

/* RANGE and INTERVAL have no writer-schema form here: a clear error, the buffer as it was; and a
 * buffer too small for the descriptor. */
static void
refused_types_and_limits(void **state)
{
    (void)state;
    char why[300];
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_buf_append(&b, "x", 1), 0);
    struct bp_schema *s = schema("[{\"name\":\"a\",\"type\":\"STRING\"},"
                                 "{\"name\":\"r\",\"type\":\"RECORD\",\"fields\":["
                                 "{\"name\":\"span\",\"type\":\"RANGE\"}]}]");
    assert_int_equal(bp_proto_descriptor(s, &b, why, sizeof(why)), -1);
    assert_string_equal(why, "span: a RANGE column cannot be written with the Storage Write API");
    assert_int_equal(b.len, 1);
    bp_schema_free(s);
    s = schema("[{\"name\":\"iv\",\"type\":\"INTERVAL\"}]");
    assert_int_equal(bp_proto_descriptor(s, &b, why, sizeof(why)), -1);
    bp_schema_free(s);
    s = schema("[{\"name\":\"a_long_column_name\",\"type\":\"STRING\"}]");
    bp_buf_t small;
    bp_buf_init(&small, 8);
    assert_int_equal(bp_proto_descriptor(s, &small, why, sizeof(why)), -1);
    assert_int_equal(small.len, 0);
    bp_buf_free(&small);
    bp_schema_free(s);
    bp_buf_free(&b);
}

/* The shipped DDL's tables, read as the runtime reads them: every one has a writer schema whose
 * fields are its columns, in order, with the types the mapping gives. */
static void
the_shipped_ddl(void **state)
{
    (void)state;
    char err[500];
    struct bp_lua_host *h = bp_lua_host_new(SRC_ROOT "/scripts/pipeline.lua", SRC_ROOT "/scripts",
                                            1, err, sizeof(err));
    if (!h)
        fail_msg("host: %s", err);
    char **bodies;
    size_t n;
    assert_int_equal(bp_lua_host_table_resources(h, SRC_ROOT "/ddl", "p", "d", &bodies, &n, err,
                                                 sizeof(err)), 0);
    struct bp_schema_set set = {0};
    assert_int_equal(bp_schema_set_add_resources(&set, bodies, n, err, sizeof(err)), 0);
    assert_true(set.n >= 5);
    for (size_t t = 0; t < set.n; t++) {
        const struct bp_schema *s = set.schemas[t];
        bp_buf_t b;
        bp_buf_init(&b, 1 << 20);
        if (bp_proto_descriptor(s, &b, err, sizeof(err)) != 0)
            fail_msg("%s: %s", set.tables[t], err);
        struct dmsg m;
        read_msg((const uint8_t *)b.data, b.len, &m);
        assert_int_equal(m.nf, s->root.nfields);
        size_t records = 0;
        for (size_t i = 0; i < m.nf; i++) {
            const struct bp_schema_field *f = &s->root.fields[i];
            assert_string_equal(m.f[i].name, f->name);
            assert_int_equal(m.f[i].type, bp_proto_field_type(f));
            assert_int_equal(m.f[i].label, f->mode == BP_SCHEMA_REPEATED ? 3
                                           : f->mode == BP_SCHEMA_REQUIRED ? 2 : 1);
            if (f->type == BP_SCHEMA_TIMESTAMP)
                assert_int_equal(m.f[i].type, 3);
            records += f->type == BP_SCHEMA_RECORD;
        }
        assert_int_equal(m.nn, records);
        if (strcmp(set.tables[t], "order_events") == 0) {
            assert_string_equal(m.f[5].name, "items");
            assert_int_equal(m.f[5].label, 3);
            assert_string_equal(m.f[5].type_name, "row_6");
            assert_string_equal(m.f[6].type_name, "row_7");
        }
        bp_buf_free(&b);
    }
    bp_schema_set_clear(&set);
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
    bp_lua_host_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type_and_mode),
        cmocka_unit_test(names_that_are_not_identifiers),
        cmocka_unit_test(refused_types_and_limits),
        cmocka_unit_test(the_shipped_ddl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
