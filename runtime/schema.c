/* schema.c - building a bp_schema from a table resource's JSON (jansson; start and reload only).
 * The per-row checker lives in schema_check.c. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schema.h"

struct type_alias {
    const char *name;
    enum bp_schema_type type;
    const char *canon;
};

/* The aliases BigQuery (and the emulator's TYPE_ALIASES) accept for each type. */
static const struct type_alias TYPES[] = {
    {"STRING", BP_SCHEMA_STRING, "STRING"},       {"INT64", BP_SCHEMA_INT64, "INT64"},
    {"INTEGER", BP_SCHEMA_INT64, "INT64"},        {"FLOAT64", BP_SCHEMA_FLOAT64, "FLOAT64"},
    {"FLOAT", BP_SCHEMA_FLOAT64, "FLOAT64"},      {"NUMERIC", BP_SCHEMA_NUMERIC, "NUMERIC"},
    {"DECIMAL", BP_SCHEMA_NUMERIC, "NUMERIC"},    {"BIGNUMERIC", BP_SCHEMA_NUMERIC, "BIGNUMERIC"},
    {"BIGDECIMAL", BP_SCHEMA_NUMERIC, "BIGNUMERIC"}, {"BOOL", BP_SCHEMA_BOOL, "BOOL"},
    {"BOOLEAN", BP_SCHEMA_BOOL, "BOOL"},          {"TIMESTAMP", BP_SCHEMA_TIMESTAMP, "TIMESTAMP"},
    {"DATE", BP_SCHEMA_DATE, "DATE"},             {"TIME", BP_SCHEMA_TIME, "TIME"},
    {"DATETIME", BP_SCHEMA_DATETIME, "DATETIME"}, {"JSON", BP_SCHEMA_JSON, "JSON"},
    {"BYTES", BP_SCHEMA_BYTES, "BYTES"},          {"RECORD", BP_SCHEMA_RECORD, "RECORD"},
    {"STRUCT", BP_SCHEMA_RECORD, "RECORD"},       {"GEOGRAPHY", BP_SCHEMA_STRING, "GEOGRAPHY"},
    {"RANGE", BP_SCHEMA_ANY, "RANGE"},            {"INTERVAL", BP_SCHEMA_ANY, "INTERVAL"},
};

/* See schema.h. */
const char *
bp_schema_type_canon(const char *name)
{
    for (size_t t = 0; name && t < BP_ARRAY_LEN(TYPES); t++)
        if (strcasecmp(TYPES[t].name, name) == 0)
            return TYPES[t].canon;
    return NULL;
}

static void
field_free(struct bp_schema_field *f)
{
    for (size_t i = 0; i < f->nfields; i++)
        field_free(&f->fields[i]);
    free(f->fields);
    free(f->name);
}

static int fields_build(struct bp_schema_field *rec, json_t *arr, int depth, char *why,
                        size_t whylen);

/* Fills one field from its JSON object; recurses into a RECORD's fields. */
static int
field_build(struct bp_schema_field *f, json_t *o, int depth, char *why, size_t whylen)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *mode = json_string_value(json_object_get(o, "mode"));
    if (!json_is_object(o) || !name || !*name || !type) {
        snprintf(why, whylen, "schema field without a name or a type");
        return -1;
    }
    f->name = bp_xstrdup(name);
    f->name_len = strlen(name);
    f->required_index = -1;
    size_t t = 0;
    while (t < BP_ARRAY_LEN(TYPES) && strcasecmp(TYPES[t].name, type) != 0)
        t++;
    if (t == BP_ARRAY_LEN(TYPES)) {
        snprintf(why, whylen, "%s: unknown type %s", name, type);
        return -1;
    }
    f->type = TYPES[t].type;
    f->type_name = TYPES[t].canon;
    if (!mode || strcasecmp(mode, "NULLABLE") == 0)
        f->mode = BP_SCHEMA_NULLABLE;
    else if (strcasecmp(mode, "REQUIRED") == 0)
        f->mode = BP_SCHEMA_REQUIRED;
    else if (strcasecmp(mode, "REPEATED") == 0)
        f->mode = BP_SCHEMA_REPEATED;
    else {
        snprintf(why, whylen, "%s: unknown mode %s", name, mode);
        return -1;
    }
    if (f->type != BP_SCHEMA_RECORD)
        return 0;
    if (depth >= BP_SCHEMA_MAX_DEPTH) {
        snprintf(why, whylen, "%s: RECORDs nested deeper than %d levels", name, BP_SCHEMA_MAX_DEPTH);
        return -1;
    }
    json_t *sub = json_object_get(o, "fields");
    if (!json_is_array(sub) || json_array_size(sub) == 0) {
        snprintf(why, whylen, "%s: RECORD without fields", name);
        return -1;
    }
    return fields_build(f, sub, depth + 1, why, whylen);
}

/* Fills rec->fields from a JSON array of field objects. */
static int
fields_build(struct bp_schema_field *rec, json_t *arr, int depth, char *why, size_t whylen)
{
    size_t n = json_array_size(arr);
    rec->fields = bp_xcalloc(n ? n : 1, sizeof(*rec->fields));
    for (size_t i = 0; i < n; i++) {
        struct bp_schema_field *f = &rec->fields[i];
        rec->nfields = i + 1;   /* so field_free reaches a half-built field */
        if (field_build(f, json_array_get(arr, i), depth, why, whylen) != 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(rec->fields[j].name, f->name) == 0) {
                snprintf(why, whylen, "%s: field named twice", f->name);
                return -1;
            }
        }
        if (f->mode == BP_SCHEMA_REQUIRED) {
            if (rec->nrequired == BP_SCHEMA_MAX_REQUIRED) {
                snprintf(why, whylen, "more than %d REQUIRED fields in one RECORD",
                         BP_SCHEMA_MAX_REQUIRED);
                return -1;
            }
            f->required_index = (int)rec->nrequired++;
        }
    }
    return 0;
}

/* See schema.h. */
struct bp_schema *
bp_schema_from_json(const char *json, size_t len, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, 0, &jerr);
    struct bp_schema *s = NULL;
    if (!doc) {
        snprintf(why, whylen, "schema JSON: %s (line %d)", jerr.text, jerr.line);
        return NULL;
    }
    json_t *fields = doc;
    if (json_is_object(fields) && json_object_get(fields, "schema"))
        fields = json_object_get(fields, "schema");
    if (json_is_object(fields))
        fields = json_object_get(fields, "fields");
    if (!json_is_array(fields)) {
        snprintf(why, whylen, "schema JSON has no fields array");
        goto fail;
    }
    s = bp_xcalloc(1, sizeof(*s));
    /* schemas are made on the loop thread only (start, reload, table sync, a reply) */
    static unsigned long serials;
    s->serial = ++serials;
    s->root.type = BP_SCHEMA_RECORD;
    s->root.type_name = "RECORD";
    s->root.required_index = -1;
    if (fields_build(&s->root, fields, 1, why, whylen) != 0)
        goto fail;
    json_decref(doc);
    return s;
fail:
    bp_schema_free(s);
    json_decref(doc);
    return NULL;
}

/* See schema.h. */
void
bp_schema_free(struct bp_schema *s)
{
    if (!s)
        return;
    field_free(&s->root);
    free(s);
}

/* A resource's tableReference.tableId (NULL when it has none). */
static char *
resource_table(const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    const char *id = json_string_value(json_object_get(json_object_get(doc, "tableReference"),
                                                       "tableId"));
    char *out = id ? bp_xstrdup(id) : NULL;
    json_decref(doc);
    return out;
}

/* See schema.h. */
int
bp_schema_set_add_resources(struct bp_schema_set *set, char *const *bodies, size_t n, char *why,
                            size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        char *table = resource_table(bodies[i]);
        char sub[400];
        struct bp_schema *s = table ? bp_schema_from_json(bodies[i], strlen(bodies[i]), sub,
                                                          sizeof(sub)) : NULL;
        if (!s) {
            snprintf(why, whylen, "table %s: %s", table ? table : "?",
                     table ? sub : "resource without tableReference.tableId");
            free(table);
            return -1;
        }
        size_t k = 0;
        while (k < set->n && strcmp(set->tables[k], table) != 0)
            k++;
        if (k == set->n) {
            set->tables = bp_xrealloc(set->tables, (set->n + 1) * sizeof(*set->tables));
            set->schemas = bp_xrealloc(set->schemas, (set->n + 1) * sizeof(*set->schemas));
            set->tables[k] = table;
            set->schemas[k] = NULL;
            set->n++;
        } else {
            free(table);
        }
        bp_schema_free(set->schemas[k]);
        set->schemas[k] = s;
    }
    return 0;
}

/* See schema.h. */
const struct bp_schema_field *
bp_schema_field_find(const struct bp_schema_field *rec, const char *k, size_t n)
{
    for (size_t i = 0; i < rec->nfields; i++)
        if (rec->fields[i].name_len == n && memcmp(rec->fields[i].name, k, n) == 0)
            return &rec->fields[i];
    for (size_t i = 0; i < rec->nfields; i++)
        if (rec->fields[i].name_len == n && strncasecmp(rec->fields[i].name, k, n) == 0)
            return &rec->fields[i];
    return NULL;
}

/* See schema.h. */
const struct bp_schema *
bp_schema_set_find(const struct bp_schema_set *set, const char *table)
{
    for (size_t i = 0; table && i < set->n; i++)
        if (strcmp(set->tables[i], table) == 0)
            return set->schemas[i];
    return NULL;
}

/* See schema.h. */
void
bp_schema_set_clear(struct bp_schema_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->tables[i]);
        bp_schema_free(set->schemas[i]);
    }
    free(set->tables);
    free(set->schemas);
    memset(set, 0, sizeof(*set));
}
