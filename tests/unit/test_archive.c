/* Unit tests of the archive (archive.c) against a recording fake store: object names, rolls by
 * size and age, one object per (type, hour) however the folders interleave (the hash table), the
 * byte budget and the order it finishes objects in (largest, then oldest), the bound on open
 * files of a store that writes as objects grow, and flow control's release (the objects holding
 * the most messages first; a late folder's few messages stay). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "archive.h"
#include "archive_line.h"
#include "store.h"

#define MAXOBJ 20000

/* ---- a fake store recording every object ---- */
struct fake {
    struct bp_store base;
    struct bp_store_ops ops;
    int opened, finished, open_now, open_max;
    char names[MAXOBJ][64];
    size_t bytes[MAXOBJ];
    int done[MAXOBJ];           /* finish order, 1-based; 0 = not finished */
    char *text;                 /* every byte written, objects one after the other */
    size_t ntext;
    int capture;                /* keep the bytes in text */
    int fail_finish;            /* answer finishes with a failure */
    int hold_finish;            /* never answer finishes (uploads held at exit) */
};

struct bp_object {
    struct fake *f;
    int idx;
};

static struct bp_object *
f_open(struct bp_store *s, const char *name, char *err, size_t errlen)
{
    struct fake *f = (struct fake *)s;
    (void)err;
    (void)errlen;
    assert_true(f->opened < MAXOBJ);
    struct bp_object *o = calloc(1, sizeof(*o));
    o->f = f;
    o->idx = f->opened++;
    snprintf(f->names[o->idx], sizeof(f->names[0]), "%s", name);
    if (++f->open_now > f->open_max)
        f->open_max = f->open_now;
    return o;
}

static int
f_write(struct bp_object *o, const void *p, size_t n)
{
    struct fake *f = o->f;
    f->bytes[o->idx] += n;
    if (!f->capture)
        return 0;
    f->text = realloc(f->text, f->ntext + n + 1);
    memcpy(f->text + f->ntext, p, n);
    f->ntext += n;
    f->text[f->ntext] = '\0';
    return 0;
}

static int
f_finish(struct bp_object *o, bp_store_done_fn done, void *arg)
{
    struct fake *f = o->f;
    f->done[o->idx] = ++f->finished;
    f->open_now--;
    free(o);
    if (f->hold_finish)
        return 0;
    done(arg, f->fail_finish ? -1 : 0, f->fail_finish ? "refused" : NULL, NULL, 0);
    return 0;
}

static void
f_abort(struct bp_object *o)
{
    o->f->open_now--;
    free(o);
}

static struct fake *
fake_new(int in_memory)
{
    struct fake *f = calloc(1, sizeof(*f));
    f->ops.kind = "fake";
    f->ops.objects_in_memory = in_memory;
    f->ops.object_open = f_open;
    f->ops.object_write = f_write;
    f->ops.object_finish = f_finish;
    f->ops.object_abort = f_abort;
    f->base.ops = &f->ops;
    return f;
}

static int acks;

static void
on_ack(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    (void)owner;
    (void)slot;
    (void)cookie;
    acks += ok;
}

/* Adds n lines of len bytes to (type, hour), each from a new message when ack is given. */
static void
add(struct bp_archive *a, struct bp_ack *ack, const char *type, int32_t hour, size_t len,
    int n, double now)
{
    static char line[70000];
    memset(line, 'x', sizeof(line));
    for (int i = 0; i < n; i++) {
        uint32_t slot = ack ? bp_ack_new(ack, 0) : BP_ACK_NONE;
        assert_int_equal(bp_archive_add(a, type, hour, NULL, 0, line, len, slot, now), 0);
        if (ack)
            bp_ack_done(ack, slot, 1);      /* the dispatcher's hold */
    }
}

static void
names_and_rolls(void **state)
{
    (void)state;
    char name[256];
    bp_archive_object_name(name, sizeof(name), "output", "order", 2025030112, 1740832496.0);
    assert_string_equal(name, "output/order/2025/03/01/12/order_20250301123456.json");
    bp_archive_object_name(name, sizeof(name), "", "inventory", 2099123123, 1740832496.0);
    assert_string_equal(name, "inventory/2099/12/31/23/inventory_20250301123456.json");
    /* the names written by hand are snprintf's: short years padded, no room, odd hours */
    static const int32_t hours[] = { 9123123, 2024010100, 2147123123, 0, -2024010100 };
    for (size_t i = 0; i < sizeof(hours) / sizeof(hours[0]); i++)
        for (size_t room = 10; room <= 80; room += 35) {
            char want[256];
            int32_t h = hours[i];
            snprintf(want, room, "out/p/order/%04d/%02d/%02d/%02d/order_19700101000000.json",
                     h / 1000000, h / 10000 % 100, h / 100 % 100, h % 100);
            bp_archive_object_name(name, room, "out/p", "order", h, 0.5);
            assert_string_equal(name, want);
        }

    for (int in_memory = 0; in_memory <= 1; in_memory++) {
        struct fake *f = fake_new(in_memory);
        struct bp_archive a;
        struct bp_ack ack;
        bp_ack_init(&ack, NULL, NULL);
        struct bp_archive_params p = { "output", 100, 60.0, 0, 2, 0 };
        bp_archive_init(&a, &f->base, &ack, &p);
        add(&a, NULL, "order", 2025030112, 10, 2, 0.0);
        add(&a, NULL, "order", 2025030113, 1, 1, 2.0);
        add(&a, NULL, "inventory", 2025030112, 1, 1, 3.0);
        assert_int_equal(a.nopen, 3);
        /* size roll: 2 + 120 bytes pass roll_bytes = 100 */
        add(&a, NULL, "inventory", 2025030112, 120, 1, 4.0);
        assert_int_equal(f->finished, 1);
        /* age roll: the oldest is order/12, opened at 0.0 */
        assert_int_equal(bp_archive_tick(&a, 59.0), 0);
        assert_int_equal(f->finished, 1);
        assert_int_equal(bp_archive_tick(&a, 60.0), 0);
        assert_int_equal(f->finished, 2);
        assert_int_equal(bp_archive_tick(&a, 62.0), 0);
        assert_int_equal(f->finished, 3);
        assert_int_equal(a.nopen, 0);
        assert_int_equal(a.lines_done, 5);
        assert_int_equal(a.open_bytes, 0);
        /* every byte reached its object, lines end in '\n' */
        size_t total = 0;
        for (int i = 0; i < f->opened; i++)
            total += f->bytes[i];
        assert_int_equal(total, 22 + 2 + 2 + 121);
        bp_archive_free(&a);
        free(f);
    }
}

/* 6,000 folders, their lines interleaved: each gets exactly one object. */
static void
hash_one_object_per_folder(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 0, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    static const char *types[] = { "order", "inventory", "user_activity" };
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 6000; i++) {
            int k = (i * 7919 + round * 31) % 6000;     /* another order every round */
            add(&a, NULL, types[k % 3], 2024010100 + k / 3 % 24 + k / 72 * 100, 5, 1, 1.0);
        }
    assert_int_equal(a.nopen, 6000);
    assert_int_equal(f->opened, 6000);
    assert_true(a.nbuckets >= 4096);        /* the table grew with the objects */
    assert_int_equal(bp_archive_finish_all(&a), 0);
    for (int i = 0; i < f->opened; i++)
        assert_int_equal(f->bytes[i], 18);  /* 3 lines of 5 + '\n' */
    bp_archive_free(&a);
    free(f);
}

/* The budget finishes the object holding the most bytes, not the first opened; among equal
 * sizes the oldest. */
static void
budget_finishes_largest_then_oldest(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 20000, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, NULL, "late", 2024010100, 999, 1, 0.0);     /* object 0: 1 KB, opened first */
    add(&a, NULL, "cur", 2025030112, 999, 8, 1.0);      /* object 1: 8 KB */
    add(&a, NULL, "late", 2024010200, 999, 1, 2.0);     /* object 2: 1 KB */
    add(&a, NULL, "late", 2024010300, 999, 1, 3.0);     /* object 3: 1 KB */
    assert_int_equal(f->finished, 0);
    /* past 20,000 bytes: only the largest goes (it frees enough) */
    add(&a, NULL, "cur", 2025030112, 999, 8, 4.0);
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->done[1], 1);
    assert_int_equal(a.by_budget, 1);
    assert_true(a.open_bytes <= 20000);
    /* equal sizes: the oldest of them first (object 0, then 2) */
    add(&a, NULL, "late", 2024010400, 999, 1, 5.0);
    add(&a, NULL, "late", 2024010500, 999, 14, 6.0);   /* object 5: 14 KB */
    assert_int_equal(f->done[5], 0);
    add(&a, NULL, "late", 2024010600, 999, 4, 7.0);    /* over again: object 5 is largest */
    assert_int_equal(f->done[5], 2);
    assert_int_equal(f->done[0], 0);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    free(f);

    /* equal sizes: the oldest goes, not the one just written to */
    f = fake_new(1);
    p.budget_bytes = 6000;
    bp_archive_init(&a, &f->base, &ack, &p);
    for (int i = 0; i < 5; i++)
        add(&a, NULL, "late", 2024010100 + i * 100, 999, 1, (double)i);
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->done[0], 1);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    free(f);
}

/* Among objects of one size class the budget finishes the one that reached the class first (it
 * stopped growing the longest ago), not the one opened first; smaller classes stay. */
static void
budget_takes_class_by_arrival(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 2000, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, NULL, "t", 2024010100, 99, 1, 0.0);        /* object 0: 100 bytes, opened first */
    add(&a, NULL, "t", 2024010200, 299, 2, 1.0);       /* object 1: 600 bytes (class 2) */
    add(&a, NULL, "t", 2024010100, 499, 1, 2.0);       /* object 0: 600, in class 2 after it */
    assert_int_equal(f->finished, 0);
    add(&a, NULL, "t", 2024010300, 199, 1, 3.0);       /* 1,400 + 3 x 256 > 2,000 */
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->done[1], 1);
    assert_int_equal(bp_archive_check(&a), 0);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    free(f);
}

/* Past 256 KB (the last class) the oldest object goes first, not the first to get there: a late
 * folder that grew slowly goes before a current hour that got there first (by arrival, the local
 * live corpus kept 13 MB more pending). */
static void
budget_last_class_in_open_order(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 1000000, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, NULL, "late", 2024010100, 999, 1, 0.0);     /* object 0: opened first */
    add(&a, NULL, "cur", 2025030112, 59999, 5, 1.0);    /* object 1: past 256 KB first */
    add(&a, NULL, "late", 2024010100, 59999, 5, 2.0);   /* object 0 gets there after it */
    assert_int_equal(f->finished, 0);
    add(&a, NULL, "cur", 2025030113, 59999, 7, 3.0);    /* object 2: the budget fills */
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->done[0], 1);
    assert_int_equal(bp_archive_check(&a), 0);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    free(f);
}

/* Thousands of folders opened and finished in every order (budget, age, size) keep the table
 * whole: each line still finds its folder's open object, never a second one. */
static void
table_survives_churn(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 3000, 30.0, 400000, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    unsigned seed = 11;
    size_t lines = 0, bytes = 0;
    for (int i = 0; i < 12000; i++) {
        seed = seed * 1103515245u + 12345u;
        int32_t hour = 2024010100 + (int32_t)((seed >> 8) % 2000) * 100 + (int32_t)(seed >> 20) % 24;
        size_t len = 50 + (seed >> 12) % 700;
        add(&a, NULL, (seed >> 4) % 2 ? "t" : "u", hour, len, 1, (double)i / 100.0);
        lines++;
        bytes += len + 1;
        if (i % 100 == 0)
            assert_int_equal(bp_archive_tick(&a, (double)i / 100.0), 0);
        if (i % 1000 == 999)
            assert_int_equal(bp_archive_check(&a), 0);
    }
    assert_true(a.by_budget > 0);
    assert_int_equal(bp_archive_check(&a), 0);
    /* one open object per folder: finishing them all adds no line twice or none */
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(a.lines_done, lines);
    size_t total = 0;
    for (int i = 0; i < f->opened; i++)
        total += f->bytes[i];
    assert_int_equal(total, bytes);
    bp_archive_free(&a);
    free(f);
}

/* A store that writes as objects grow: small objects hold no store object (no file) until they
 * are finished; those past 64 KB do, at most max_files at once. */
static void
files_are_bounded(void **state)
{
    (void)state;
    struct fake *f = fake_new(0);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 0, 2, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    for (int h = 0; h < 500; h++)
        add(&a, NULL, "late", 2024010100 + h % 24 + h / 24 * 100, 400, 2, 0.0);
    assert_int_equal(f->opened, 0);                     /* 500 objects, no file */
    add(&a, NULL, "big1", 2025030112, 60000, 2, 1.0);  /* 120 KB each */
    add(&a, NULL, "big2", 2025030112, 60000, 2, 1.0);
    assert_int_equal(f->open_now, 2);
    add(&a, NULL, "big3", 2025030112, 60000, 2, 1.0);  /* a third file: the largest goes */
    assert_true(f->open_max <= 2);
    assert_int_equal(f->finished, 1);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_true(f->open_max <= 3);                      /* finishing opens, writes, closes */
    assert_int_equal(f->finished, 503);
    size_t total = 0;
    for (int i = 0; i < f->opened; i++)
        total += f->bytes[i];
    assert_int_equal(total, 500 * 2 * 401 + 3 * 2 * 60001);
    bp_archive_free(&a);
    free(f);
}

/* With a budget, an object past 64 KB finds every file taken: its bytes stay pending (the budget
 * bounds them) and no object is finished for its sake; it gets a file once one is free. */
static void
files_taken_keep_bytes_pending(void **state)
{
    (void)state;
    struct fake *f = fake_new(0);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 4 << 20, 2, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, NULL, "cur1", 2025030112, 60000, 2, 1.0);  /* 120 KB each: a file each */
    add(&a, NULL, "cur2", 2025030112, 60000, 2, 1.0);
    assert_int_equal(f->open_now, 2);
    add(&a, NULL, "late", 2024010100, 60000, 4, 2.0);  /* no file left: pending, none finished */
    assert_int_equal(f->finished, 0);
    assert_int_equal(f->open_now, 2);
    assert_int_equal(a.nopen, 3);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(f->finished, 3);
    assert_true(f->open_max <= 3);                      /* finishing opens, writes, closes */
    size_t total = 0;
    for (int i = 0; i < f->opened; i++)
        total += f->bytes[i];
    assert_int_equal(total, 8 * 60001);
    bp_archive_free(&a);
    free(f);
}

/* A time-ordered stream: the previous hour's object (complete) goes before the current hour's
 * (still growing), even when the current one is larger: both are past 256 KB, in one class, and
 * the oldest goes first. Largest first among them made an extra object per hour. */
static void
budget_finishes_previous_hour_first(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, NULL, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 4 << 20, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, NULL, "t", 2025030111, 60000, 30, 0.0);    /* object 0: the previous hour, 1.8 MB */
    add(&a, NULL, "t", 2025030112, 60000, 40, 1.0);    /* object 1: the current hour, 2.4 MB */
    assert_int_equal(f->done[0], 1);                    /* past 4 MB: the older goes */
    assert_int_equal(f->done[1], 0);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    free(f);
}

/* Flow control asks for messages: the objects holding the most go first, young ones stay, a
 * late folder's few stay; acks follow the objects. */
static void
release_takes_most_messages_first(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    struct bp_archive a;
    struct bp_ack ack;
    acks = 0;
    bp_ack_init(&ack, on_ack, NULL);
    struct bp_archive_params p = { "", 1 << 30, 60.0, 0, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, &ack, "cur", 2025030112, 10, 100, 0.0);     /* object 0: 100 messages */
    add(&a, &ack, "late", 2025022712, 10, 2, 0.0);      /* object 1: 2, a late folder */
    add(&a, &ack, "cur", 2025030111, 10, 50, 0.0);      /* object 2: 50 */
    add(&a, &ack, "new", 2025030112, 10, 500, 9.9);     /* object 3: 500 but 0.1 s old */
    assert_int_equal(a.held, 652);
    assert_int_equal(acks, 0);
    assert_int_equal(bp_archive_release(&a, 10.0, 120, 0, 0.5), 0);
    assert_int_equal(f->done[0], 1);
    assert_int_equal(f->done[2], 2);
    assert_int_equal(f->done[1], 0);
    assert_int_equal(f->done[3], 0);
    assert_int_equal(acks, 150);
    assert_int_equal(a.held, 502);
    /* the late folder stays until roll_seconds */
    assert_int_equal(bp_archive_tick(&a, 59.0), 0);
    assert_int_equal(f->done[1], 0);
    assert_int_equal(bp_archive_tick(&a, 60.0), 0);
    assert_int_equal(f->done[1], 3);
    assert_int_equal(acks, 152);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(acks, 652);
    assert_int_equal(a.held, 0);
    bp_archive_free(&a);
    free(f);

    /* open objects may keep `keep` messages: late folders survive a release that asks more */
    f = fake_new(1);
    bp_archive_init(&a, &f->base, &ack, &p);
    add(&a, &ack, "cur", 2025030112, 10, 100, 0.0);
    for (int h = 0; h < 20; h++)
        add(&a, &ack, "late", 2025020100 + h, 10, 2, 0.0);
    add(&a, &ack, "cur", 2025030113, 10, 300, 9.9);    /* too young to go */
    assert_int_equal(bp_archive_release(&a, 10.0, 1000, 40, 0.5), 0);
    assert_int_equal(f->finished, 1);                  /* only the current hour's object: */
    assert_int_equal(a.held, 340);                     /* the young one is not the late's */
    assert_int_equal(bp_archive_release(&a, 10.0, 1000, 30, 0.5), 0);
    assert_int_equal(a.held, 330);                     /* down to keep, five late objects */
    assert_int_equal(f->finished, 6);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    bp_archive_free(&a);
    bp_ack_free(&ack);
    free(f);
}

/* The running totals the budget decides by (bytes, ack slots, files, the lists by size class,
 * the table) agree with a recount after every kind of change: lines into new and open objects (a few
 * slots, then more than fit inline), objects finished by size, budget, files taken, flow control
 * and age; every line's message is acked once. */
static void
running_totals_follow_every_change(void **state)
{
    (void)state;
    for (int in_memory = 0; in_memory < 2; in_memory++) {
        struct fake *f = fake_new(in_memory);
        struct bp_archive a;
        struct bp_ack ack;
        acks = 0;
        bp_ack_init(&ack, on_ack, NULL);
        struct bp_archive_params p = { "", 200000, 50.0, 300000, 4, 0 };
        bp_archive_init(&a, &f->base, &ack, &p);
        unsigned seed = 7;
        int lines = 0;
        for (int i = 0; i < 3000; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *type = (seed >> 8) % 3 ? "t" : "u";
            int32_t hour = 2024010100 + (int32_t)((seed >> 12) % 40) * 100;
            size_t len = (seed >> 4) % 7 == 0 ? 20000 + (seed >> 16) % 40000 : 50 + (seed >> 16) % 900;
            int n = 1 + (int)((seed >> 20) % 3);
            add(&a, &ack, type, hour, len, n, (double)i / 10.0);
            lines += n;
            assert_int_equal(bp_archive_check(&a), 0);
            if (i % 97 == 0) {
                assert_int_equal(bp_archive_release(&a, (double)i / 10.0, 50, 10, 1.0), 0);
                assert_int_equal(bp_archive_check(&a), 0);
            }
            if (i % 31 == 0) {
                assert_int_equal(bp_archive_tick(&a, (double)i / 10.0), 0);
                assert_int_equal(bp_archive_check(&a), 0);
            }
        }
        assert_true(a.by_budget > 0);
        assert_true(a.by_pressure > 0);
        assert_int_equal(bp_archive_finish_all(&a), 0);
        assert_int_equal(bp_archive_check(&a), 0);
        assert_int_equal(a.open_bytes, 0);
        for (size_t c = 0; c < BP_ARCHIVE_SIZE_CLASSES; c++)
            assert_null(a.class_head[c]);
        assert_int_equal(acks, lines);
        assert_int_equal(a.lines_done, (unsigned long)lines);
        bp_archive_free(&a);
        bp_ack_free(&ack);
        free(f);
    }
}

/* Every payload is one record per line, and each line gives back the payload: as is, compacted
 * (valid JSON with newlines or carriage returns: only the whitespace between tokens goes) or
 * exactly, through the base64 marker (anything else a line cannot carry, and a payload that would
 * look like a marker). Both stores (lines pending, lines written through). */
static void
every_payload_is_one_line(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;             /* 0: strlen */
        const char *want;       /* the line's payload; NULL: the input's exact bytes */
        int kind;
    } cases[] = {
        { "{\"event_type\":\"inventory\",\"n\":1}", 0, NULL, BP_LINE_AS_IS },
        { "{\n \"event_type\": \"inventory\",\n \"s\": \"a b\\n\\t\",\n \"n\": [1, 2.50]\n}", 0,
          "{\"event_type\":\"inventory\",\"s\":\"a b\\n\\t\",\"n\":[1,2.50]}", BP_LINE_COMPACT },
        { "{\"a\":\r\n\"x\"}\r", 0, "{\"a\":\"x\"}", BP_LINE_COMPACT },
        { "{\"caf\xc3\xa9\":\n1}", 0, "{\"caf\xc3\xa9\":1}", BP_LINE_COMPACT },
        { "{\"a\":\"\xc3\xa9\"}", 0, NULL, BP_LINE_AS_IS },
        { "not json\nsecond line", 0, NULL, BP_LINE_RAW },
        { "{\"a\":1}\r", 0, "{\"a\":1}", BP_LINE_COMPACT },
        { "trailing cr\r", 0, NULL, BP_LINE_RAW },
        { "nul\0inside", 10, NULL, BP_LINE_RAW },
        { "\x01\x02\xff\xfe\x00\x80", 6, NULL, BP_LINE_RAW },
        { "{\"a\":\"\xff\"}", 0, NULL, BP_LINE_RAW },
        { "", 0, NULL, BP_LINE_RAW },
        { " \t ", 0, NULL, BP_LINE_RAW },
        { "{\"bepipe_raw_b64\":\"aGk=\"}", 0, NULL, BP_LINE_RAW },
        { "{\"bepipe_raw_b64\":\n\"aGk=\"}", 0, NULL, BP_LINE_RAW },
        { "{\"bepipe_raw_b64\" :\"aGk=\"}", 0, NULL, BP_LINE_AS_IS },
        { "\t{\"a\":1}", 0, NULL, BP_LINE_AS_IS },
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (int in_memory = 0; in_memory <= 1; in_memory++) {
        struct fake *f = fake_new(in_memory);
        f->capture = 1;
        struct bp_archive a;
        struct bp_archive_params p = { "", 1 << 30, 3600.0, 0, 4, 0 };
        bp_archive_init(&a, &f->base, NULL, &p);
        unsigned long compacted = 0, raw = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
            assert_int_equal(bp_archive_add(&a, "t", 2025030112, NULL, 0, cases[i].in, len,
                                            BP_ACK_NONE, 0), 0);
            compacted += cases[i].kind == BP_LINE_COMPACT;
            raw += cases[i].kind == BP_LINE_RAW;
        }
        assert_int_equal(bp_archive_finish_all(&a), 0);
        assert_int_equal(a.lines_compacted, compacted);
        assert_int_equal(a.lines_raw, raw);
        /* one record per line: as many '\n' as payloads, every line back to its payload */
        const char *t = f->text, *end = f->text + f->ntext;
        bp_buf_t dec;
        bp_buf_init(&dec, 1 << 20);
        for (size_t i = 0; i < n; i++) {
            const char *nl = memchr(t, '\n', (size_t)(end - t));
            assert_non_null(nl);
            size_t len = (size_t)(nl - t);
            assert_true(memchr(t, '\r', len) == NULL);
            int rc = bp_archive_line_decode(t, len, &dec);
            assert_int_equal(rc, cases[i].kind == BP_LINE_RAW);
            const char *got = rc ? dec.data : t;
            size_t glen = rc ? dec.len : len;
            const char *want = cases[i].want ? cases[i].want : cases[i].in;
            size_t wlen = cases[i].want ? strlen(want) : cases[i].len ? cases[i].len
                                                                      : strlen(want);
            assert_int_equal(glen, wlen);
            assert_memory_equal(got, want, wlen);
            /* the source side: the same payload through a batch's scratch */
            struct bp_raw_lines rl = { 0 };
            const char *d;
            size_t dl;
            assert_int_equal(bp_raw_lines_take(&rl, t, len, &d, &dl), 0);
            assert_int_equal(dl, wlen);
            assert_memory_equal(d, want, wlen);
            bp_raw_lines_free(&rl);
            t = nl + 1;
        }
        assert_true(t == end);
        bp_buf_free(&dec);
        bp_archive_free(&a);
        free(f->text);
        free(f);
    }
}

/* A line that begins like a marker but is not a well-formed one is its own payload. */
static void
malformed_markers_are_payloads(void **state)
{
    (void)state;
    static const char *lines[] = {
        "{\"bepipe_raw_b64\":\"aGk\"}",       /* not a multiple of 4 */
        "{\"bepipe_raw_b64\":\"aG!=\"}",      /* outside the alphabet */
        "{\"bepipe_raw_b64\":\"aGk=\"",       /* no end */
        "{\"bepipe_raw_b64\":\"aGk=\",\"x\":1}",
        "{\"bepipe_raw_b64\":\"a===\"}",
    };
    bp_buf_t dec;
    bp_buf_init(&dec, 1024);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        assert_int_equal(bp_archive_line_decode(lines[i], strlen(lines[i]), &dec), 0);
    assert_int_equal(bp_archive_line_decode("{\"bepipe_raw_b64\":\"\"}", 21, &dec), 1);
    assert_int_equal(dec.len, 0);
    bp_buf_free(&dec);
}

/* A message whose line is in a stored object is not archived again when it comes back (a
 * redelivery), and its slot gets no write; a line in an object still open, or in one whose
 * store failed, does not count; past archive.dedup_ids ids the oldest are forgotten (FIFO). */
static void
redelivered_lines_archived_once(void **state)
{
    (void)state;
    struct fake *f = fake_new(0);
    struct bp_archive a;
    struct bp_ack ack;
    acks = 0;
    bp_ack_init(&ack, on_ack, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 0, 4, 3 };
    bp_archive_init(&a, &f->base, &ack, &p);
    const char *ev = "{\"a\":1}";
#define ADD(id) do {                                                                   \
        uint32_t s_ = bp_ack_new(&ack, 0);                                               \
        assert_int_equal(bp_archive_add(&a, "t", 2025030112, id, strlen(id), ev, 7, s_, 0), 0); \
        bp_ack_done(&ack, s_, 1);                                                        \
    } while (0)
    ADD("m1");
    ADD("m1");                      /* open, not stored: written again */
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(a.lines_done, 2);
    assert_int_equal(acks, 2);
    assert_true(bp_archive_seen(&a, "m1", 2));
    ADD("m1");                      /* stored: skipped, and acked at once */
    assert_int_equal(acks, 3);
    assert_int_equal(a.dedup_skipped, 1);
    assert_int_equal(a.nopen, 0);
    /* no id, or no slot (a file): always written */
    uint32_t s0 = bp_ack_new(&ack, 0);
    assert_int_equal(bp_archive_add(&a, "t", 2025030112, "", 0, ev, 7, s0, 0), 0);
    bp_ack_done(&ack, s0, 1);
    assert_int_equal(bp_archive_add(&a, "t", 2025030112, "m1", 2, ev, 7, BP_ACK_NONE, 0), 0);
    assert_int_equal(a.nopen, 1);
    /* a failed store remembers nothing */
    ADD("m2");
    f->fail_finish = 1;
    assert_int_equal(bp_archive_finish_all(&a), 0);
    f->fail_finish = 0;
    assert_false(bp_archive_seen(&a, "m2", 2));
    /* FIFO: m1 m2 m3 m4 stored into a set of 3 forgets m1 */
    ADD("m2");
    ADD("m3");
    ADD("m4");
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_false(bp_archive_seen(&a, "m1", 2));
    assert_true(bp_archive_seen(&a, "m2", 2) && bp_archive_seen(&a, "m3", 2) &&
                bp_archive_seen(&a, "m4", 2));
    unsigned long done = a.lines_done;
    ADD("m1");
    ADD("m4");
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(a.lines_done, done + 1);
    assert_int_equal(a.dedup_skipped, 2);
    /* churn through the set: it keeps exactly the last 3 */
    char id[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        ADD(id);
        if (i % 7 == 0)
            assert_int_equal(bp_archive_finish_all(&a), 0);
    }
    assert_int_equal(bp_archive_finish_all(&a), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        assert_int_equal(bp_archive_seen(&a, id, strlen(id)), i >= 997);
    }
#undef ADD
    bp_archive_free(&a);
    bp_ack_free(&ack);
    free(f);
}

static int nacks;

static void
on_verdict(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    (void)owner;
    (void)slot;
    (void)cookie;
    if (ok)
        acks++;
    else
        nacks++;
}

/* Objects the store still holds at exit (uploads waiting for a refusing bucket, or queued) are
 * the archive's: freeing it frees them and nacks their messages, as it does the open ones. */
static void
objects_unanswered_at_exit_are_freed_and_nacked(void **state)
{
    (void)state;
    struct fake *f = fake_new(1);
    f->hold_finish = 1;
    struct bp_archive a;
    struct bp_ack ack;
    bp_ack_init(&ack, on_verdict, NULL);
    struct bp_archive_params p = { "", 1 << 30, 3600.0, 0, 64, 0 };
    bp_archive_init(&a, &f->base, &ack, &p);
    acks = nacks = 0;
    add(&a, &ack, "order", 2024010100, 5, 3, 1.0);
    add(&a, &ack, "inventory", 2024010100, 5, 2, 1.0);
    assert_int_equal(bp_archive_finish_all(&a), 0);
    assert_int_equal(f->finished, 2);
    assert_int_equal(a.in_flight, 2);
    add(&a, &ack, "order", 2024010101, 5, 1, 1.0);      /* one still open */
    bp_archive_free(&a);
    assert_int_equal(nacks, 6);
    assert_int_equal(acks, 0);
    bp_ack_free(&ack);
    free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_rolls),
        cmocka_unit_test(hash_one_object_per_folder),
        cmocka_unit_test(budget_finishes_largest_then_oldest),
        cmocka_unit_test(budget_finishes_previous_hour_first),
        cmocka_unit_test(budget_takes_class_by_arrival),
        cmocka_unit_test(budget_last_class_in_open_order),
        cmocka_unit_test(table_survives_churn),
        cmocka_unit_test(files_taken_keep_bytes_pending),
        cmocka_unit_test(files_are_bounded),
        cmocka_unit_test(release_takes_most_messages_first),
        cmocka_unit_test(running_totals_follow_every_change),
        cmocka_unit_test(every_payload_is_one_line),
        cmocka_unit_test(malformed_markers_are_payloads),
        cmocka_unit_test(redelivered_lines_archived_once),
        cmocka_unit_test(objects_unanswered_at_exit_are_freed_and_nacked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
