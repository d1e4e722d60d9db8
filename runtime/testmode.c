/* testmode.c - runs sample events through the same Lua entry the daemon uses and prints, per
 * event, its table and row or its dead-letter stage and reason, then the totals. Nothing is
 * written anywhere: it is for trying a script change before sending SIGHUP. */
#include "testmode.h"
#include "dispatch.h"
#include "rt.h"
#include "timefmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TM_BATCH 256

struct tm_state {
    struct bp_lua_host *h;
    FILE *out;
    bp_msg_t msgs[TM_BATCH];
    char *lines[TM_BATCH];
    unsigned long line_nos[TM_BATCH];
    char ids[TM_BATCH][32];
    bp_result_t res[TM_BATCH];
    bp_batch_t batch;
    size_t n;
    unsigned long total;
    unsigned long *rows;            /* per route */
    unsigned long dead[BP_STAGE_INSERT + 1];
};

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
        if (r->stage == BP_STAGE_OK && r->route >= 0 && (size_t)r->route < nroutes) {
            t->rows[r->route]++;
            fprintf(t->out, "line %lu: %s -> %s %.*s\n", t->line_nos[i], routes[r->route].name,
                    routes[r->route].table, (int)r->len, out + r->off);
        } else {
            int st = r->stage > 0 && r->stage <= BP_STAGE_INSERT ? r->stage : BP_STAGE_MAP;
            t->dead[st]++;
            fprintf(t->out, "line %lu: DEAD %s: %.*s\n", t->line_nos[i], bp_stage_names[st],
                    (int)r->len, out + r->off);
        }
        free(t->lines[i]);
    }
    t->n = 0;
    return 0;
}

/* Returns the exit code: 0 when it ran (dead letters are results, not failures), 1 otherwise. */
int
bp_testmode_run(struct bp_lua_host *h, const char *events_path, FILE *out)
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
    t->out = out;
    t->rows = bp_xcalloc(nroutes ? nroutes : 1, sizeof(*t->rows));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long line_no = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (strspn(line, " \t") == (size_t)len)
            continue;
        bp_msg_t *m = &t->msgs[t->n];
        t->lines[t->n] = bp_xstrndup(line, (size_t)len);
        t->line_nos[t->n] = line_no;
        snprintf(t->ids[t->n], sizeof(t->ids[0]), "test:%lu", line_no);
        m->data = t->lines[t->n];
        m->len = (size_t)len;
        m->id = t->ids[t->n];
        m->id_len = strlen(t->ids[t->n]);
        m->publish_time = bp_time_now();
        if (++t->n == TM_BATCH && (rc = run_batch(t)) != 0)
            break;
    }
    if (rc == 0 && t->n)
        rc = run_batch(t);
    free(line);
    if (in != stdin)
        fclose(in);
    if (rc == 0) {
        fprintf(out, "totals: %lu events", t->total);
        for (size_t i = 0; i < nroutes; i++)
            fprintf(out, ", %s=%lu", routes[i].table, t->rows[i]);
        for (int s = BP_STAGE_PARSE; s <= BP_STAGE_MAP; s++)
            fprintf(out, ", dead_%s=%lu", bp_stage_names[s], t->dead[s]);
        fprintf(out, "\n");
    }
    for (size_t i = 0; i < t->n; i++)
        free(t->lines[i]);
    free(t->rows);
    free(t->batch.out);
    free(t);
    return rc ? 1 : 0;
}
