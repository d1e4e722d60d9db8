/* testmode.c - runs sample events through the same Lua entry the daemon uses and prints, per
 * event, its table and row (keys sorted, ingestion_time as a placeholder, so runs diff cleanly) or its
 * dead-letter stage and reason, then the totals. Lines may be fixtures with expectations
 * (scripts/bepipe/fixtures.lua): then every failing case gets a line saying what differs, the
 * output ends with `N passed, N failed` and the exit code is 1 on any failure. Nothing is
 * written anywhere: it is for trying a script change before sending SIGHUP, and for CI. */
#include "testmode.h"
#include "dispatch.h"
#include "row_meta.h"
#include "rt.h"
#include "timefmt.h"

#include <errno.h>
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#define TM_BATCH 256

struct tm_state {
    struct bp_lua_host *h;
    FILE *out;
    bp_msg_t msgs[TM_BATCH];
    char *lines[TM_BATCH];
    char *attrs[TM_BATCH];
    unsigned long line_nos[TM_BATCH];
    char ids[TM_BATCH][32];
    bp_result_t res[TM_BATCH];
    bp_batch_t batch;
    size_t n;
    unsigned long total;
    unsigned long *rows;            /* per route */
    unsigned long dead[BP_STAGE_SCHEMA + 1];
    int fixtures_ref;               /* bepipe.fixtures in the host's registry */
    const struct bp_schema_set *schemas;    /* the DDL's, checked as the runtime does */
    unsigned long passed, failed;   /* fixtures with an expectation */
    /* --check --fixtures: sample rows are checked against the schema, nothing is printed per
     * line; `seen` marks, per route, the columns (top-level fields) any sample row set */
    int check;
    unsigned char **seen;
    unsigned long *samples;         /* per route: rows the schema accepted */
    unsigned long problems;
    bp_buf_t row;                   /* a row with the metadata columns its route asks for */
};

/* Calls fixtures.<fn> with the nargs values on top of the stack; leaves nres results. Returns
 * 0, or -1 with the error message on top. */
static int
fixtures_call(struct tm_state *t, const char *fn, int nargs, int nres)
{
    lua_State *L = bp_lua_host_state(t->h);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fixtures_ref);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -nargs - 1);
    return lua_pcall(L, nargs, nres, 0) == 0 ? 0 : -1;
}

/* Checks one outcome against the line's expectation (if it has one) and prints what is due:
 * the outcome when there is no expectation, a FAIL line when it differs, nothing when it passed.
 * row/reason are (p, len); table NULL for a dead letter. */
static void
report(struct tm_state *t, unsigned long line_no, const char *route, const char *table,
       const char *text, size_t len, const char *stage)
{
    lua_State *L = bp_lua_host_state(t->h);
    int top = lua_gettop(L);
    lua_pushnumber(L, (lua_Number)line_no);
    if (table) {
        lua_pushstring(L, table);
        lua_pushlstring(L, text, len);
        lua_pushnil(L);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushstring(L, stage);
        lua_pushlstring(L, text, len);
    }
    if (fixtures_call(t, "check", 5, 2) != 0) {
        t->failed++;
        fprintf(t->out, "FAIL line %lu: %s\n", line_no, lua_tostring(L, -1));
    } else if (lua_isnil(L, -2) && table) {
        lua_settop(L, top);
        lua_pushlstring(L, text, len);
        if (fixtures_call(t, "canonical_row", 1, 1) == 0)
            fprintf(t->out, "line %lu: %s -> %s %s\n", line_no, route, table,
                    lua_tostring(L, -1));
    } else if (lua_isnil(L, -2)) {
        fprintf(t->out, "line %lu: DEAD %s: %.*s\n", line_no, stage, (int)len, text);
    } else if (lua_toboolean(L, -2)) {
        t->passed++;
    } else {
        t->failed++;
        fprintf(t->out, "FAIL line %lu: %s\n", line_no, lua_tostring(L, -1));
    }
    lua_settop(L, top);
}

/* Whether fixture line_no expects a dead letter (then a refused sample row is what it tests). */
static int
expects_dead(struct tm_state *t, unsigned long line_no)
{
    lua_State *L = bp_lua_host_state(t->h);
    int top = lua_gettop(L);
    lua_pushnumber(L, (lua_Number)line_no);
    int dead = fixtures_call(t, "expected_dead", 1, 1) == 0 && lua_isstring(L, -1);
    lua_settop(L, top);
    return dead;
}

/* Marks the columns of `schema` that the row (JSON text) sets to something other than null. */
static void
mark_seen(unsigned char *seen, const struct bp_schema *schema, const char *row, size_t len)
{
    json_t *o = json_loadb(row, len, 0, NULL);
    const char *k;
    json_t *v;
    if (json_is_object(o))
        json_object_foreach(o, k, v) {
            for (size_t f = 0; f < schema->root.nfields && !json_is_null(v); f++)
                if (strcmp(schema->root.fields[f].name, k) == 0)
                    seen[f] = 1;
        }
    json_decref(o);
}

/* --check --fixtures: one sample row of route `route`. A row its table's schema refuses (a map
 * writing a field the table lacks, a wrong type) is a problem unless the fixture expects a dead
 * letter; an accepted one marks the columns it set. */
static void
check_sample(struct tm_state *t, const struct bp_route *rt, size_t route,
             const struct bp_schema *schema, const char *row, size_t len,
             unsigned long line_no)
{
    char why[512];
    if (!schema) {
        expects_dead(t, line_no);
        return;
    }
    if (bp_schema_check(schema, row, len, why, sizeof(why)) != 0) {
        if (!expects_dead(t, line_no)) {
            t->problems++;
            fprintf(t->out, "route %s: sample line %lu: table %s would refuse the row: %s\n",
                    rt->name, line_no, rt->table, why);
        }
        return;
    }
    expects_dead(t, line_no);
    if (!t->seen[route])
        t->seen[route] = bp_xcalloc(schema->root.nfields + 1, 1);
    mark_seen(t->seen[route], schema, row, len);
    t->samples[route]++;
}

/* --check --fixtures, at the end: per route, the columns no accepted sample row set. Not a
 * failure (a column may be optional), but the only trace a typo in a map leaves: `amount =
 * ev.amout` stores NULL. */
static void
report_unseen(struct tm_state *t, const struct bp_route *routes, size_t nroutes)
{
    for (size_t i = 0; i < nroutes; i++) {
        const struct bp_schema *s = bp_schema_set_find(t->schemas, routes[i].table);
        if (!s || !t->samples[i])
            continue;
        int any = 0;
        for (size_t f = 0; f < s->root.nfields; f++) {
            if (t->seen[i][f])
                continue;
            if (!any)
                fprintf(t->out, "note: route %s: table %s: no sample row sets ", routes[i].name,
                        routes[i].table);
            fprintf(t->out, "%s%s", any ? ", " : "", s->root.fields[f].name);
            any = 1;
        }
        if (any)
            fprintf(t->out, " (%lu sample rows; a typo in the map?)\n", t->samples[i]);
    }
}

static int
run_batch(struct tm_state *t)
{
    size_t nroutes;
    const struct bp_route *routes = bp_lua_host_routes(t->h, &nroutes);
    bp_batch_t *b = &t->batch;
    b->msgs = t->msgs;
    b->results = t->res;
    b->n = (int32_t)t->n;
    b->now = bp_time_now();
    bp_time_rfc3339(b->now, b->now_str);
    char err[4096];
    if (bp_lua_host_process(t->h, b, err, sizeof(err)) != 0) {
        fprintf(stderr, "bepipe-lua: the batch entry failed: %s\n", err);
        return -1;
    }
    const char *out = b->out;
    for (size_t i = 0; i < t->n; i++) {
        const bp_result_t *r = &t->res[i];
        t->total++;
        const struct bp_schema *schema = NULL;
        char why[512];
        const char *row = out + r->off;
        size_t row_len = r->len;
        if (r->stage == BP_STAGE_OK && r->route >= 0 && (size_t)r->route < nroutes) {
            schema = bp_schema_set_find(t->schemas, routes[r->route].table);
            /* the row as dispatch.c sends it: with its route's metadata columns */
            bp_buf_reset(&t->row);
            if (routes[r->route].metadata && bp_buf_append(&t->row, row, row_len) == 0 &&
                bp_meta_splice(&t->row, 0, routes[r->route].metadata, &t->msgs[i],
                               bp_lua_host_config(t->h)->subscription) == 0) {
                row = t->row.data;
                row_len = t->row.len;
            }
        }
        if (t->check) {
            if (r->stage == BP_STAGE_OK && r->route >= 0 && (size_t)r->route < nroutes)
                check_sample(t, &routes[r->route], (size_t)r->route, schema, row, row_len,
                             t->line_nos[i]);
            else
                expects_dead(t, t->line_nos[i]);
        } else if (schema && bp_schema_check(schema, row, row_len, why, sizeof(why)) != 0) {
            /* the same verdict dispatch.c gives this row online */
            t->dead[BP_STAGE_SCHEMA]++;
            report(t, t->line_nos[i], NULL, NULL, why, strlen(why),
                   bp_stage_names[BP_STAGE_SCHEMA]);
        } else if (r->stage == BP_STAGE_OK && r->route >= 0 && (size_t)r->route < nroutes) {
            t->rows[r->route]++;
            report(t, t->line_nos[i], routes[r->route].name, routes[r->route].table, row,
                   row_len, NULL);
        } else {
            int st = r->stage > 0 && r->stage <= BP_STAGE_INSERT ? r->stage : BP_STAGE_MAP;
            t->dead[st]++;
            report(t, t->line_nos[i], NULL, NULL, out + r->off, r->len, bp_stage_names[st]);
        }
        free(t->lines[i]);
        free(t->attrs[i]);
        t->attrs[i] = NULL;
    }
    t->n = 0;
    return 0;
}

/* Turns one input line (an event, or a fixture) into the next message of the batch. Returns 0,
 * or -1 when the fixture is malformed (reported as a failed case). */
static int
add_line(struct tm_state *t, const char *line, size_t len, unsigned long line_no)
{
    lua_State *L = bp_lua_host_state(t->h);
    int top = lua_gettop(L);
    lua_pushnumber(L, (lua_Number)line_no);
    lua_pushlstring(L, line, len);
    if (fixtures_call(t, "prepare", 2, 2) != 0) {
        t->failed++;
        fprintf(t->out, "FAIL line %lu: %s\n", line_no, lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    size_t rl = 0, al = 0;
    const char *raw = lua_tolstring(L, -2, &rl);
    const char *attrs = lua_isstring(L, -1) ? lua_tolstring(L, -1, &al) : NULL;
    bp_msg_t *m = &t->msgs[t->n];
    t->lines[t->n] = bp_xstrndup(raw ? raw : "", rl);
    t->attrs[t->n] = attrs ? bp_xstrndup(attrs, al) : NULL;
    t->line_nos[t->n] = line_no;
    snprintf(t->ids[t->n], sizeof(t->ids[0]), "test:%lu", line_no);
    m->data = t->lines[t->n];
    m->len = rl;
    m->id = t->ids[t->n];
    m->id_len = strlen(t->ids[t->n]);
    m->publish_time = bp_time_now();
    m->attrs = t->attrs[t->n];
    m->attrs_len = al;
    m->delivery_attempt = 0;
    lua_settop(L, top);
    return 0;
}

/* Loads bepipe.fixtures into the host's state. Returns 0, or -1 with the error printed. */
static int
load_fixtures(struct tm_state *t)
{
    lua_State *L = bp_lua_host_state(t->h);
    lua_getglobal(L, "require");
    lua_pushstring(L, "bepipe.fixtures");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "bepipe-lua: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    t->fixtures_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Prints what a run found: `test`'s totals (and fixtures' passed/failed), or --check's verdict
 * on the sample rows. */
static void
print_totals(struct tm_state *t, const struct bp_route *routes, size_t nroutes)
{
    FILE *out = t->out;
    if (t->check) {
        report_unseen(t, routes, nroutes);
        unsigned long rows = 0;
        for (size_t i = 0; i < nroutes; i++)
            rows += t->samples[i];
        fprintf(out, "sample rows: %lu of %lu events checked against their tables' schemas, "
                "%lu refused\n", rows + t->problems, t->total, t->problems);
        return;
    }
    fprintf(out, "totals: %lu events", t->total);
    for (size_t i = 0; i < nroutes; i++)
        fprintf(out, ", %s=%lu", routes[i].table, t->rows[i]);
    for (int s = BP_STAGE_PARSE; s <= BP_STAGE_MAP; s++)
        fprintf(out, ", dead_%s=%lu", bp_stage_names[s], t->dead[s]);
    if (t->dead[BP_STAGE_SCHEMA])   /* only then: the totals line stays as it was */
        fprintf(out, ", dead_schema=%lu", t->dead[BP_STAGE_SCHEMA]);
    fprintf(out, "\n");
    if (t->passed + t->failed)
        fprintf(out, "%lu passed, %lu failed\n", t->passed, t->failed);
}

static int
run_events(struct bp_lua_host *h, const struct bp_schema_set *schemas, const char *events_path,
           FILE *out, int check)
{
    FILE *in = strcmp(events_path, "-") == 0 ? stdin : fopen(events_path, "r");
    if (!in) {
        fprintf(stderr, "bepipe-lua: cannot read %s: %s\n", events_path, strerror(errno));
        return 1;
    }
    size_t nroutes;
    const struct bp_route *routes = bp_lua_host_routes(h, &nroutes);
    struct tm_state *t = bp_xcalloc(1, sizeof(*t));
    t->h = h;
    t->schemas = schemas;
    t->out = out;
    t->rows = bp_xcalloc(nroutes ? nroutes : 1, sizeof(*t->rows));
    t->check = check;
    t->seen = bp_xcalloc(nroutes ? nroutes : 1, sizeof(*t->seen));
    t->samples = bp_xcalloc(nroutes ? nroutes : 1, sizeof(*t->samples));
    bp_buf_init(&t->row, 16 * 1024 * 1024);
    int rc = load_fixtures(t);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long line_no = 0;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (strspn(line, " \t") == (size_t)len)
            continue;
        if (add_line(t, line, (size_t)len, line_no) != 0)
            continue;
        if (++t->n == TM_BATCH && (rc = run_batch(t)) != 0)
            break;
    }
    if (rc == 0 && t->n)
        rc = run_batch(t);
    free(line);
    if (in != stdin)
        fclose(in);
    if (rc == 0)
        print_totals(t, routes, nroutes);
    for (size_t i = 0; i < t->n; i++) {
        free(t->lines[i]);
        free(t->attrs[i]);
    }
    for (size_t i = 0; i < nroutes; i++)
        free(t->seen[i]);
    free(t->seen);
    free(t->samples);
    free(t->rows);
    free(t->batch.out);
    bp_buf_free(&t->row);
    int failed = rc != 0 || t->failed > 0 || t->problems > 0;
    free(t);
    return failed ? 1 : 0;
}

/* Returns the exit code: 1 when a fixture failed or the run could not happen, else 0 (dead
 * letters without an expectation are results, not failures). Rows are checked against
 * schemas (the DDL's tables) as the runtime checks them: a refused row is DEAD schema. */
int
bp_testmode_run(struct bp_lua_host *h, const struct bp_schema_set *schemas,
                const char *events_path, FILE *out)
{
    return run_events(h, schemas, events_path, out, 0);
}

/* --check --fixtures: runs the sample events (fixtures or plain events) through the scripts and
 * checks every row against its table's schema without printing rows. Prints each refused row
 * (unless its fixture expects a dead letter), a note per route naming the columns no sample
 * row set, and a summary line. Returns 1 when a row was refused or the run failed, else 0. */
int
bp_testmode_check_samples(struct bp_lua_host *h, const struct bp_schema_set *schemas,
                          const char *events_path, FILE *out)
{
    return run_events(h, schemas, events_path, out, 1);
}
