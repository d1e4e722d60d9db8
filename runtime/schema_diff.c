/* schema_diff.c - a DDL against the live table: the differences for the log, and the
 * tables.patch BigQuery accepts (see schema_diff.h). One walk over both field lists does both:
 * what differs is listed as it is found, the merged list is built beside it. */
#include "schema.h"
#include "schema_diff.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What one walk found; lists are "a, b" strings, cut with "..." when full. */
struct walk {
    char only_ddl[512], only_table[512], type[512], mode[512];
    char *error;
    size_t errlen;
    int added, relaxed;
};

static void
list_add(char *list, size_t cap, const char *fmt, ...) BP_PRINTF(3, 4);

static void
list_add(char *list, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(list);
    char item[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof(item), fmt, ap);
    va_end(ap);
    if (len + strlen(item) + 6 >= cap) {
        if (len + 4 < cap && (len < 3 || strcmp(list + len - 3, "...") != 0))
            snprintf(list + len, cap - len, "%s...", len ? ", " : "");
        return;
    }
    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", item);
}

static void
first_error(struct walk *w, const char *fmt, ...) BP_PRINTF(2, 3);

static void
first_error(struct walk *w, const char *fmt, ...)
{
    va_list ap;
    if (w->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(w->error, w->errlen, fmt, ap);
    va_end(ap);
}

static const char *
field_name(const json_t *f)
{
    const char *n = json_string_value(json_object_get(f, "name"));
    return n ? n : "";
}

/* A field's mode, NULLABLE when absent, upper case. */
static const char *
field_mode(const json_t *f)
{
    const char *m = json_string_value(json_object_get(f, "mode"));
    if (!m || strcasecmp(m, "NULLABLE") == 0)
        return "NULLABLE";
    return strcasecmp(m, "REQUIRED") == 0 ? "REQUIRED" : strcasecmp(m, "REPEATED") == 0 ?
           "REPEATED" : m;
}

static const char *
field_type(const json_t *f)
{
    const char *t = json_string_value(json_object_get(f, "type"));
    const char *canon = bp_schema_type_canon(t);
    return canon ? canon : t ? t : "?";
}

/* The field of arr named name (case-insensitive, as BigQuery's column names), or NULL. */
static json_t *
find_field(const json_t *arr, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f)
        if (strcasecmp(field_name(f), name) == 0)
            return f;
    return NULL;
}

static json_t *walk_fields(struct walk *w, const json_t *want, const json_t *have,
                           const char *prefix);

/* One live field h against its DDL field d: the merged field (a new reference). */
static json_t *
walk_field(struct walk *w, const json_t *d, json_t *h, const char *path)
{
    const char *dt = field_type(d), *ht = field_type(h);
    const char *dm = field_mode(d), *hm = field_mode(h);
    json_t *m = json_copy(h);   /* shallow: only what changes is replaced */
    if (strcmp(dt, ht) != 0) {
        list_add(w->type, sizeof(w->type), "%s (DDL %s, table %s)", path, dt, ht);
        first_error(w, "column %s: the DDL says %s, the table %s (a column's type is never "
                    "changed: add a new column instead)", path, dt, ht);
    } else if (strcmp(dt, "RECORD") == 0) {
        char sub[600];
        size_t n = strlen(path);
        n = n < sizeof(sub) - 2 ? n : sizeof(sub) - 2;     /* a path that long is cut */
        memcpy(sub, path, n);
        memcpy(sub + n, ".", 2);
        json_object_set_new(m, "fields", walk_fields(w, json_object_get(d, "fields"),
                                                     json_object_get(h, "fields"), sub));
    }
    if (strcmp(dm, hm) != 0) {
        list_add(w->mode, sizeof(w->mode), "%s (DDL %s, table %s)", path, dm, hm);
        if (strcmp(hm, "REQUIRED") == 0 && strcmp(dm, "NULLABLE") == 0) {
            json_object_set_new(m, "mode", json_string("NULLABLE"));
            w->relaxed++;
        } else {
            first_error(w, "column %s: the DDL says %s, the table %s (BigQuery only relaxes "
                        "REQUIRED to NULLABLE)", path, dm, hm);
        }
    }
    return m;
}

/* The merged list of want (DDL) and have (live): have's fields in their order, then want's
 * new ones. A new reference. */
static json_t *
walk_fields(struct walk *w, const json_t *want, const json_t *have, const char *prefix)
{
    json_t *merged = json_array(), *f;
    size_t i;
    char path[600];
    json_array_foreach(have, i, f) {
        json_t *d = find_field(want, field_name(f));
        snprintf(path, sizeof(path), "%s%s", prefix, field_name(f));
        if (!d) {
            list_add(w->only_table, sizeof(w->only_table), "%s", path);
            first_error(w, "column %s is in the table but not in the DDL (columns are never "
                        "dropped: put it back in the DDL, or drop it by hand)", path);
            json_array_append(merged, f);
        } else {
            json_array_append_new(merged, walk_field(w, d, f, path));
        }
    }
    json_array_foreach(want, i, f) {
        if (find_field(have, field_name(f)))
            continue;
        snprintf(path, sizeof(path), "%s%s", prefix, field_name(f));
        list_add(w->only_ddl, sizeof(w->only_ddl), "%s", path);
        if (strcmp(field_mode(f), "REQUIRED") == 0)
            first_error(w, "new column %s is REQUIRED (BigQuery adds only NULLABLE or REPEATED "
                        "columns to a table)", path);
        json_array_append_new(merged, json_deep_copy(f));
        w->added++;
    }
    return merged;
}

/* The fields array of a resource, a schema or a bare array (borrowed from doc), or NULL. */
static json_t *
fields_of(json_t *doc)
{
    json_t *f = doc;
    if (json_is_object(f) && json_object_get(f, "schema"))
        f = json_object_get(f, "schema");
    if (json_is_object(f))
        f = json_object_get(f, "fields");
    return json_is_array(f) ? f : NULL;
}

static void
summarize(struct bp_schema_diff *out, const struct walk *w)
{
    const char *names[] = { "only in the DDL", "only in the table", "type differs",
                            "mode differs" };
    const char *lists[] = { w->only_ddl, w->only_table, w->type, w->mode };
    size_t len = 0;
    for (size_t i = 0; i < BP_ARRAY_LEN(lists); i++) {
        if (!lists[i][0] || len >= sizeof(out->summary))
            continue;
        len += (size_t)snprintf(out->summary + len, sizeof(out->summary) - len, "%s%s: %s",
                                len ? "; " : "", names[i], lists[i]);
    }
}

/* See schema_diff.h. */
int
bp_schema_diff(const char *want, size_t want_len, const char *have, size_t have_len,
               struct bp_schema_diff *out)
{
    json_t *wd = json_loadb(want, want_len, 0, NULL);
    json_t *hd = json_loadb(have, have_len, 0, NULL);
    json_t *wf = fields_of(wd), *hf = fields_of(hd), *merged = NULL;
    struct walk w = { .error = out->error, .errlen = sizeof(out->error) };
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (!wf || !hf) {
        snprintf(out->error, sizeof(out->error), "%s has no schema.fields",
                 !wf ? "the DDL's table resource" : "the live table");
        goto done;
    }
    merged = walk_fields(&w, wf, hf, "");
    summarize(out, &w);
    out->added = w.added;
    out->relaxed = w.relaxed;
    if (!out->error[0] && (w.added || w.relaxed)) {
        json_t *body = json_pack("{s:{s:O}}", "schema", "fields", merged);
        out->patch = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!out->patch)
            snprintf(out->error, sizeof(out->error), "out of memory building the patch");
    }
    rc = 0;
done:
    json_decref(merged);
    json_decref(wd);
    json_decref(hd);
    return rc;
}

/* See schema_diff.h. */
void
bp_schema_diff_free(struct bp_schema_diff *d)
{
    free(d->patch);
    d->patch = NULL;
}
