/* Unit tests: row batches (flush at rows/bytes/age, never over the byte limit) against a
 * recording fake store; the local store's atomic, never-overwriting objects. The archive's tests
 * are in test_archive.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ack.h"
#include "batch.h"
#include "store.h"

/* ---- a fake store that records what it was asked to do ---- */
struct fake {
    struct bp_store base;
    int puts;
    size_t last_rows, last_len, max_len;
    int objects_opened, objects_finished;
    char last_name[512];
    size_t obj_bytes[64];
    int fail;
    const struct bp_row_error *errs;    /* the rows the next answers refuse */
    size_t nerrs;
    int status;            /* answer rows_put with this status (BP_STORE_REFUSED...) */
    char entries[256];     /* the last rows_put's entries (cut) */
};

struct bp_object {
    struct fake *f;
    int idx;
};

static int
f_rows_put(struct bp_store *s, const char *t, const char *e, size_t len, size_t n,
           bp_store_done_fn done, void *arg)
{
    struct fake *f = (struct fake *)s;
    (void)t;
    /* every entry is one line */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += e[i] == '\n';
    assert_int_equal(lines, n);
    f->puts++;
    snprintf(f->entries, sizeof(f->entries), "%.*s", (int)len, e);
    f->last_rows = n;
    f->last_len = len;
    if (len > f->max_len)
        f->max_len = len;
    if (f->status) {
        done(arg, f->status, "insertAll t: HTTP 403 quotaExceeded", NULL, 0);
        return 0;
    }
    done(arg, f->fail ? -1 : 0, f->fail ? "fake failure" : NULL, f->errs, f->nerrs);
    return f->fail ? -1 : 0;
}

static struct bp_object *
f_open(struct bp_store *s, const char *name, char *err, size_t errlen)
{
    struct fake *f = (struct fake *)s;
    (void)err;
    (void)errlen;
    snprintf(f->last_name, sizeof(f->last_name), "%s", name);
    struct bp_object *o = calloc(1, sizeof(*o));
    o->f = f;
    o->idx = f->objects_opened++;
    return o;
}

static int
f_write(struct bp_object *o, const void *p, size_t n)
{
    (void)p;
    o->f->obj_bytes[o->idx % 64] += n;
    return 0;
}

static int
f_finish(struct bp_object *o, bp_store_done_fn done, void *arg)
{
    o->f->objects_finished++;
    free(o);
    done(arg, 0, NULL, NULL, 0);
    return 0;
}

static size_t
f_pending(struct bp_store *s)
{
    (void)s;
    return 0;
}

static void
f_abort(struct bp_object *o)
{
    free(o);
}

static void
f_destroy(struct bp_store *s)
{
    (void)s;
}

static const struct bp_store_ops fake_ops = {
    "fake", 0, f_rows_put, f_open, f_write, f_finish, f_abort, f_pending, f_destroy, NULL,
};

static void
batches_flush_at_rows_bytes_age(void **state)
{
    (void)state;
    struct fake f = { .base.ops = &fake_ops };
    struct bp_batches b;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    bp_batches_init(&b, &f.base, &ack, 3, 100, 1.0);
    size_t t = bp_batches_index(&b, "t");
    assert_int_equal(bp_batches_index(&b, "t"), t);
    assert_int_equal(bp_batches_add(&b, t, "{\"a\":1}", 7, BP_ACK_NONE, 10.0), 0);
    assert_int_equal(bp_batches_add(&b, t, "{\"a\":2}", 7, BP_ACK_NONE, 10.0), 0);
    assert_int_equal(f.puts, 0);
    assert_int_equal(bp_batches_add(&b, t, "{\"a\":3}", 7, BP_ACK_NONE, 10.0), 0);
    assert_int_equal(f.puts, 1);                 /* 3 rows */
    assert_int_equal(f.last_rows, 3);
    char big[60];
    memset(big, 'x', sizeof(big));
    assert_int_equal(bp_batches_add(&b, t, big, 60, BP_ACK_NONE, 20.0), 0);
    assert_int_equal(bp_batches_add(&b, t, big, 60, BP_ACK_NONE, 20.0), 0);   /* 122 > 100: flush first */
    assert_int_equal(f.puts, 2);
    assert_int_equal(f.last_rows, 1);
    assert_true(f.max_len <= 100);
    assert_int_equal(bp_batches_tick(&b, 20.5), 0);
    assert_int_equal(f.puts, 2);                 /* not old enough */
    assert_int_equal(bp_batches_tick(&b, 21.0), 0);
    assert_int_equal(f.puts, 3);
    assert_int_equal(b.v[t]->rows_stored, 5);
    assert_int_equal(bp_batches_flush_all(&b), 0);
    assert_int_equal(f.puts, 3);                 /* empty batches send nothing */
    f.fail = 1;
    assert_int_equal(bp_batches_add(&b, t, "{}", 2, BP_ACK_NONE, 30.0), 0);
    assert_int_equal(bp_batches_flush_all(&b), -1);
    assert_int_equal(b.failures, 1);
    bp_batches_free(&b);
}

struct refused {
    int calls;
    size_t len;
    char reason[128];
    int fail;
};

static int
on_refused(void *owner, const char *table, const char *entry, size_t len, const char *reason,
           uint32_t slot)
{
    struct refused *r = owner;
    (void)table;
    (void)entry;
    (void)slot;
    r->calls++;
    r->len = len;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    return r->fail ? -1 : 0;
}

/* An entry over BP_ROW_MAX is never sent (it would fail its request on every redelivery): it
 * goes to the rejected callback, and only fails the add when it cannot be dead-lettered. */
static void
batches_refuse_an_oversized_entry(void **state)
{
    (void)state;
    struct fake f = { .base.ops = &fake_ops };
    struct bp_batches b;
    struct bp_ack ack;
    struct refused r = { 0 };
    bp_ack_init(&ack, NULL, NULL);
    bp_batches_init(&b, &f.base, &ack, 500, 5 << 20, 1.0);
    bp_batches_on_rejected(&b, on_refused, &r);
    size_t t = bp_batches_index(&b, "t");
    size_t n = BP_ROW_MAX + 1;
    char *big = malloc(n);
    memset(big, 'x', n);
    assert_int_equal(bp_batches_add(&b, t, "{}", 2, BP_ACK_NONE, 1.0), 0);
    assert_int_equal(bp_batches_add(&b, t, big, n, BP_ACK_NONE, 1.0), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.len, n);
    assert_non_null(strstr(r.reason, "exceeds the insertAll limit"));
    assert_int_equal(bp_batches_buffered(&b), 1);      /* the small row waits as before */
    assert_int_equal(bp_batches_add(&b, t, big, BP_ROW_MAX, BP_ACK_NONE, 1.0), 0);
    assert_int_equal(r.calls, 1);                        /* at the limit: sent */
    r.fail = 1;
    assert_int_equal(bp_batches_add(&b, t, big, n, BP_ACK_NONE, 1.0), -1);
    b.v[t]->is_dead_letter = 1;
    r.fail = 0;
    assert_int_equal(bp_batches_add(&b, t, big, n, BP_ACK_NONE, 1.0), -1);
    assert_int_equal(r.calls, 2);                        /* never for the dead-letter table */
    assert_int_equal(f.puts, 2);                         /* "{}", then the 9 MB row alone */
    assert_true(f.max_len <= BP_ROW_MAX + 1);
    free(big);
    bp_batches_free(&b);
}

static int acked[8], nacked[8], refused_attempt[8], refused_calls;

static void
on_ack8(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    (void)owner;
    (void)slot;
    if (ok)
        acked[cookie]++;
    else
        nacked[cookie]++;
}

/* Sets aside (0) from the third attempt on, as the runtime would at dead_letter.max_attempts. */
static int
on_dead_refused(void *owner, const char *table, const char *entry, size_t len,
                const char *reason, uint32_t slot, int attempt)
{
    (void)owner;
    (void)slot;
    assert_string_equal(table, "dead");
    assert_string_equal(reason, "no");
    assert_true(len == 7 && entry[0] == '{');
    refused_calls++;
    refused_attempt[entry[5] - '0'] = attempt;
    return attempt >= 3 ? 0 : -1;
}

/* A row the dead-letter table refuses goes to the dead_refused callback with its delivery
 * attempt: set aside, its message is acked; else nacked (redelivered). Its other rows and the
 * rows of other tables are not affected; without the callback, refused dead letters are nacked. */
static void
batches_refused_dead_letters_go_to_their_callback(void **state)
{
    (void)state;
    struct bp_row_error errs[] = { { 0, "no" }, { 2, "no" } };
    struct fake f = { .base.ops = &fake_ops, .errs = errs, .nerrs = 2 };
    struct bp_batches b;
    struct bp_ack ack;
    bp_ack_init(&ack, on_ack8, NULL);
    bp_batches_init(&b, &f.base, &ack, 4, 1000, 1.0);
    bp_batches_on_dead_refused(&b, on_dead_refused);
    size_t d = bp_batches_index(&b, "dead");
    b.v[d]->is_dead_letter = 1;
    static const int attempts[] = { 3, 0, 1, 5 };
    for (int i = 0; i < 4; i++) {
        char e[8];
        snprintf(e, sizeof(e), "{\"r\":%d}", i);
        uint32_t slot = bp_ack_new(&ack, (uint64_t)i);
        assert_int_equal(bp_batches_add_attempt(&b, d, e, 7, slot, attempts[i], 1.0), 0);
        bp_ack_done(&ack, slot, 1);
    }
    assert_int_equal(f.puts, 1);
    assert_int_equal(refused_calls, 2);
    assert_int_equal(refused_attempt[0], 3);
    assert_int_equal(refused_attempt[2], 1);
    /* row 0 set aside (attempt 3), row 2 nacked (attempt 1), rows 1 and 3 stored */
    assert_int_equal(acked[0] + acked[1] + acked[3], 3);
    assert_int_equal(nacked[2], 1);
    assert_int_equal(acked[2] + nacked[0] + nacked[1] + nacked[3], 0);
    /* no callback: nacked */
    bp_batches_on_dead_refused(&b, NULL);
    uint32_t slot = bp_ack_new(&ack, 4);
    assert_int_equal(bp_batches_add_attempt(&b, d, "{\"r\":4}", 7, slot, 9, 1.0), 0);
    bp_ack_done(&ack, slot, 1);
    assert_int_equal(bp_batches_flush_all(&b), 0);
    assert_int_equal(nacked[4], 1);
    bp_batches_free(&b);
    bp_ack_free(&ack);
}

/* The runtime's rejected callback writes its dead letter in the buffer the row entries are
 * lent from (rt->entry): this one does the same with lent, and grows it (a realloc). */
static bp_buf_t lent;
static int lent_rejected;

static int
reject_into_lent(void *owner, const char *table, const char *entry, size_t len,
                 const char *reason, uint32_t slot)
{
    (void)owner, (void)table, (void)entry, (void)len, (void)reason, (void)slot;
    lent_rejected++;
    bp_buf_reset(&lent);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bp_buf_append(&lent, "{\"dead\":1}", 10), 0);
    return 0;
}

/* A row that does not fit its batch flushes the batch first; a store may answer that flush at
 * once, and the rows it refuses go to the rejected callback, which reuses the buffer the new
 * row's entry (and its protobuf, with metadata columns) is lent from. The row must still be
 * added as it was given (a copy taken before the flush), not as what the callback wrote
 * there (a dead letter in the route's table, or freed memory). */
static void
batches_row_lent_from_the_callbacks_buffer_survives_a_flush(void **state)
{
    (void)state;
    struct bp_row_error errs[] = { { 0, "no" } };
    struct fake f = { .base.ops = &fake_ops, .errs = errs, .nerrs = 1 };
    struct bp_batches b;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    bp_batches_init(&b, &f.base, &ack, 100, 20, 1.0);
    bp_batches_on_rejected(&b, reject_into_lent, NULL);
    bp_buf_init(&lent, 1 << 20);
    size_t t = bp_batches_index(&b, "t");
    static const char *rows[] = { "{\"a\":1}", "{\"a\":2}", "{\"a\":3}" };
    for (int i = 0; i < 3; i++) {
        bp_buf_reset(&lent);
        assert_int_equal(bp_buf_append(&lent, rows[i], 7), 0);
        assert_int_equal(bp_batches_add_encoded(&b, t, lent.data, 7, lent.data, 7, 1,
                                                BP_ACK_NONE, 1.0), 0);
    }
    /* the third flushed the first two, whose row 0 was refused */
    assert_int_equal(f.puts, 1);
    assert_int_equal(lent_rejected, 1);
    f.nerrs = 0;
    assert_int_equal(bp_batches_flush_all(&b), 0);
    assert_int_equal(f.puts, 2);
    assert_string_equal(f.entries, "{\"a\":3}\n");
    bp_batches_free(&b);
    bp_ack_free(&ack);
    bp_buf_free(&lent);
}

static int
count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void
ok_done(void *arg, int status, const char *msg, const struct bp_row_error *errs, size_t nerrs)
{
    (void)msg;
    (void)errs;
    (void)nerrs;
    *(int *)arg = status;
}

/* Both ways of writing an object: unnamed files (O_TMPFILE) and hidden temp files. */
static void
local_store_atomic(int tmpfile)
{
    char dir[] = "/tmp/bepipe-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char err[256];
    struct bp_store *s = bp_store_local_new(dir, "bkt", err, sizeof(err));
    assert_non_null(s);
    bp_store_local_set_tmpfile(s, tmpfile);
    struct bp_object *o1 = s->ops->object_open(s, "p/t/x.json", err, sizeof(err));
    struct bp_object *o2 = s->ops->object_open(s, "p/t/x.json", err, sizeof(err));
    assert_non_null(o1);
    assert_non_null(o2);
    assert_int_equal(s->ops->object_write(o1, "one\n", 4), 0);
    assert_int_equal(s->ops->object_write(o2, "two\n", 4), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/gcs/bkt/p/t", dir);
    assert_int_equal(count_files(path), 0);      /* nothing under a final name yet */
    int st = 1;
    assert_int_equal(s->ops->object_finish(o1, ok_done, &st), 0);
    assert_int_equal(st, 0);
    st = 1;
    assert_int_equal(s->ops->object_finish(o2, ok_done, &st), 0);
    assert_int_equal(st, 0);
    assert_int_equal(count_files(path), 2);
    char buf[16] = { 0 };
    snprintf(path, sizeof(path), "%s/gcs/bkt/p/t/x_1.json", dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    assert_string_equal(buf, "two\n");
    /* an aborted object leaves nothing */
    struct bp_object *o3 = s->ops->object_open(s, "p/t/y.json", err, sizeof(err));
    s->ops->object_abort(o3);
    snprintf(path, sizeof(path), "%s/gcs/bkt/p/t", dir);
    assert_int_equal(count_files(path), 2);
    /* and no temp file is left behind */
    DIR *dd = opendir(path);
    int entries = 0;
    for (struct dirent *e; dd && (e = readdir(dd));)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dd);
    assert_int_equal(entries, 2);
    /* rows are appended per batch */
    st = 1;
    assert_int_equal(s->ops->rows_put(s, "tbl", "{\"a\":1}\n{\"a\":2}\n", 16, 2, ok_done, &st), 0);
    assert_int_equal(s->ops->rows_put(s, "tbl", "{\"a\":3}\n", 8, 1, ok_done, &st), 0);
    snprintf(path, sizeof(path), "%s/bigquery/tbl.ndjson", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 24);
    s->ops->destroy(s);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void
local_store_is_atomic_and_never_overwrites(void **state)
{
    (void)state;
    local_store_atomic(1);
    local_store_atomic(0);
}

struct verdicts {
    int ok, failed;
};

static void
on_verdict(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    struct verdicts *v = owner;
    (void)slot;
    (void)cookie;
    if (ok)
        v->ok++;
    else
        v->failed++;
}

/* n messages of one row each into table t, their dispatcher hold released. */
static void
add_rows(struct bp_batches *b, struct bp_ack *ack, size_t t, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t slot = bp_ack_new(ack, 0);
        assert_int_equal(bp_batches_add(b, t, "{\"a\":1}", 7, slot, 1.0), 0);
        bp_ack_done(ack, slot, 1);
    }
}

/* A table that refuses for now (a quota 403, a 404 while it is recreated) is paused: its
 * requests are held, not dead-lettered, no new one is sent until a probe is due, and the first
 * success sends them all; with no grace left the refusal dead-letters as before. */
static void
batches_pause_a_table_that_refuses_for_now(void **state)
{
    (void)state;
    struct fake f = { .base.ops = &fake_ops, .status = BP_STORE_REFUSED };
    struct bp_batches b;
    struct bp_ack ack;
    struct refused r = { 0 };
    struct verdicts v = { 0 };
    bp_ack_init(&ack, on_verdict, &v);
    bp_batches_init(&b, &f.base, &ack, 3, 1000, 1.0);
    bp_batches_on_rejected(&b, on_refused, &r);
    size_t t = bp_batches_index(&b, "t");
    add_rows(&b, &ack, t, 3);                            /* sent, refused */
    assert_int_equal(f.puts, 1);
    assert_non_null(bp_batches_paused(&b));
    assert_non_null(strstr(bp_batches_paused(&b)->paused_why, "quotaExceeded"));
    add_rows(&b, &ack, t, 3);                            /* held without a request */
    assert_int_equal(f.puts, 1);
    assert_int_equal(bp_batches_held_rows(&b), 6);
    assert_int_equal(bp_batches_tick(&b, 1.0), 0);
    assert_int_equal(f.puts, 1);                         /* the probe is not due yet */
    assert_int_equal(r.calls, 0);
    assert_int_equal(v.ok + v.failed, 0);                /* nothing acked, nothing nacked */
    f.status = 0;                                        /* the table is back */
    usleep(1100 * 1000);
    assert_int_equal(bp_batches_tick(&b, 2.0), 0);       /* the probe, accepted */
    assert_int_equal(f.puts, 2);
    assert_null(bp_batches_paused(&b));
    assert_int_equal(bp_batches_tick(&b, 2.0), 0);       /* the rest at the next tick */
    assert_int_equal(f.puts, 3);
    assert_int_equal(v.ok, 6);
    assert_int_equal(bp_batches_held_rows(&b), 0);
    assert_int_equal(r.calls, 0);
    /* no grace: refused for good at once, the rows dead-lettered */
    bp_batches_set_refused_grace(&b, 0);
    f.status = BP_STORE_REFUSED;
    add_rows(&b, &ack, t, 3);
    assert_int_equal(r.calls, 3);
    assert_null(bp_batches_paused(&b));
    assert_int_equal(b.permanent, 1);
    bp_batches_free(&b);
    bp_ack_free(&ack);
}

/* The dead-letter table's requests keep each row's delivery attempt: a paused one's held
 * requests free them whichever way they end (nacked at the drain's timeout, dropped at exit,
 * given up after the grace), which the sanitizer build's leak check proves. */
static void
batches_paused_dead_letter_table_frees_its_held_requests(void **state)
{
    (void)state;
    struct fake f = { .base.ops = &fake_ops, .status = BP_STORE_REFUSED };
    struct bp_batches b;
    struct bp_ack ack;
    struct verdicts v = { 0 };
    bp_ack_init(&ack, on_verdict, &v);
    bp_batches_init(&b, &f.base, &ack, 3, 1000, 1.0);
    size_t d = bp_batches_index(&b, "dead");
    b.v[d]->is_dead_letter = 1;
    add_rows(&b, &ack, d, 6);                            /* sent, refused; then held */
    assert_int_equal(f.puts, 1);
    assert_int_equal(bp_batches_held_rows(&b), 6);
    bp_batches_set_refused_grace(&b, 0);                 /* the probe's refusal gives up */
    usleep(2100 * 1000);
    assert_int_equal(bp_batches_tick(&b, 3.0), 0);
    assert_int_equal(f.puts, 2);
    assert_int_equal(bp_batches_held_rows(&b), 0);
    assert_int_equal(v.failed, 6);
    bp_batches_set_refused_grace(&b, 600);
    add_rows(&b, &ack, d, 6);                            /* paused again, held */
    assert_int_equal(bp_batches_held_rows(&b), 6);
    bp_batches_nack_held(&b);                            /* the drain's timeout */
    assert_int_equal(v.failed, 12);
    assert_int_equal(bp_batches_held_rows(&b), 0);
    add_rows(&b, &ack, d, 3);                            /* held until exit */
    assert_int_equal(bp_batches_held_rows(&b), 3);
    bp_batches_free(&b);
    bp_ack_free(&ack);
}

/* A paused table's probe that fails otherwise (an error after the api's retries, a refusal
 * for good of its own rows) is no answer about the pause: the next held request is probed when
 * due, and once none is held the table is no longer paused (pulling waits on a paused table,
 * and with nothing held nothing would ever probe it again). */
static void
batches_a_probe_that_fails_otherwise_ends_no_pause_for_good(void **state)
{
    (void)state;
    struct fake f = { .base.ops = &fake_ops, .status = BP_STORE_REFUSED };
    struct bp_batches b;
    struct bp_ack ack;
    struct refused r = { 0 };
    struct verdicts v = { 0 };
    bp_ack_init(&ack, on_verdict, &v);
    bp_batches_init(&b, &f.base, &ack, 3, 1000, 1.0);
    bp_batches_on_rejected(&b, on_refused, &r);
    size_t t = bp_batches_index(&b, "t");
    add_rows(&b, &ack, t, 6);                            /* one refused, one held behind it */
    assert_int_equal(f.puts, 1);
    assert_int_equal(bp_batches_held_rows(&b), 6);
    f.status = BP_STORE_PERMANENT;                       /* the probe's own rows refused */
    usleep(1100 * 1000);
    assert_int_equal(bp_batches_tick(&b, 2.0), 0);
    assert_int_equal(f.puts, 2);
    assert_int_equal(r.calls, 3);
    assert_int_equal(bp_batches_held_rows(&b), 3);
    f.status = -1;                                       /* the next probe fails: nacked */
    for (int i = 0; i < 50 && f.puts == 2; i++) {
        usleep(100 * 1000);
        assert_int_equal(bp_batches_tick(&b, 3.0), 0);
    }
    assert_int_equal(f.puts, 3);
    assert_int_equal(v.failed, 3);
    assert_int_equal(bp_batches_held_rows(&b), 0);
    assert_null(bp_batches_paused(&b));                  /* nothing held: not paused */
    f.status = 0;
    add_rows(&b, &ack, t, 3);                            /* sent at once, stored */
    assert_int_equal(f.puts, 4);
    assert_int_equal(v.ok, 6);
    bp_batches_free(&b);
    bp_ack_free(&ack);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_flush_at_rows_bytes_age),
        cmocka_unit_test(batches_refuse_an_oversized_entry),
        cmocka_unit_test(batches_refused_dead_letters_go_to_their_callback),
        cmocka_unit_test(batches_row_lent_from_the_callbacks_buffer_survives_a_flush),
        cmocka_unit_test(batches_pause_a_table_that_refuses_for_now),
        cmocka_unit_test(batches_paused_dead_letter_table_frees_its_held_requests),
        cmocka_unit_test(batches_a_probe_that_fails_otherwise_ends_no_pause_for_good),
        cmocka_unit_test(local_store_is_atomic_and_never_overwrites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
