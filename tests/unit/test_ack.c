/* Unit tests: the ack tracker (a message is acked only when every destination has it; any
 * failure nacks it; slots are reused) and the row batches' per-row rejection path (a refused
 * row is dead-lettered before its message can be acked). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "ack.h"
#include "batch.h"

struct verdicts {
    int calls;
    uint64_t last_cookie;
    int last_ok;
};

static void
record(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    struct verdicts *v = owner;
    (void)slot;
    v->calls++;
    v->last_cookie = cookie;
    v->last_ok = ok;
}

static void
acked_only_after_every_destination(void **state)
{
    (void)state;
    struct verdicts v = { 0 };
    struct bp_ack a;
    bp_ack_init(&a, record, &v);
    uint32_t s = bp_ack_new(&a, 42);
    bp_ack_add(&a, s, 2);             /* table + archive */
    bp_ack_done(&a, s, 1);            /* table */
    assert_int_equal(v.calls, 0);
    bp_ack_done(&a, s, 1);            /* dispatcher's hold */
    assert_int_equal(v.calls, 0);
    assert_int_equal(bp_ack_outstanding(&a), 1);
    bp_ack_done(&a, s, 1);            /* archive */
    assert_int_equal(v.calls, 1);
    assert_int_equal(v.last_cookie, 42);
    assert_true(v.last_ok);
    assert_int_equal(bp_ack_outstanding(&a), 0);
    bp_ack_done(&a, s, 1);            /* a stray completion is ignored, not a second verdict */
    assert_int_equal(v.calls, 1);
    bp_ack_free(&a);
}

static void
one_failure_nacks(void **state)
{
    (void)state;
    struct verdicts v = { 0 };
    struct bp_ack a;
    bp_ack_init(&a, record, &v);
    uint32_t s = bp_ack_new(&a, 7);
    bp_ack_add(&a, s, 2);
    bp_ack_done(&a, s, 0);            /* archive upload gave up */
    bp_ack_done(&a, s, 1);
    bp_ack_done(&a, s, 1);
    assert_int_equal(v.calls, 1);
    assert_false(v.last_ok);
    bp_ack_done(&a, BP_ACK_NONE, 1);  /* untracked messages are fine */
    bp_ack_free(&a);
}

static void
slots_are_reused_and_grow(void **state)
{
    (void)state;
    struct verdicts v = { 0 };
    struct bp_ack a;
    bp_ack_init(&a, record, &v);
    uint32_t first = bp_ack_new(&a, 1);
    bp_ack_done(&a, first, 1);
    assert_int_equal(bp_ack_new(&a, 2), first);
    for (int i = 0; i < 5000; i++)
        (void)bp_ack_new(&a, (uint64_t)i);
    assert_int_equal(bp_ack_outstanding(&a), 5001);
    assert_true(a.cap >= 5001);
    bp_ack_free(&a);
}

/* ---- row batches with a store that refuses row 1 ---- */
struct rstore {
    struct bp_store base;
};

static int
r_rows_put(struct bp_store *s, const char *t, const char *e, size_t len, size_t n,
           bp_store_done_fn done, void *arg)
{
    (void)s;
    (void)t;
    (void)e;
    (void)len;
    assert_int_equal(n, 3);
    struct bp_row_error err = { 1, "invalid: no such field: x" };
    done(arg, 0, NULL, &err, 1);
    return 0;
}

static size_t
r_pending(struct bp_store *s)
{
    (void)s;
    return 0;
}

static const struct bp_store_ops rops = { "refusing", 0, r_rows_put, NULL, NULL, NULL, NULL,
                                          r_pending, NULL, NULL };

struct rejected_seen {
    int calls;
    char entry[64];
    char reason[64];
    struct bp_ack *ack;
    uint32_t slot;
    int pending_during;
};

static int
on_rejected(void *owner, const char *table, const char *entry, size_t len, const char *reason,
            uint32_t slot)
{
    struct rejected_seen *r = owner;
    assert_string_equal(table, "t");
    r->calls++;
    snprintf(r->entry, sizeof(r->entry), "%.*s", (int)len, entry);
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    r->slot = slot;
    bp_ack_add(r->ack, slot, 1);      /* as the dead letter does: one more destination */
    r->pending_during = (int)r->ack->slots[slot].pending;
    return 0;
}

static void
refused_row_is_dead_lettered_before_ack(void **state)
{
    (void)state;
    struct verdicts v = { 0 };
    struct bp_ack a;
    bp_ack_init(&a, record, &v);
    struct rstore st = { { &rops } };
    struct bp_batches b;
    bp_batches_init(&b, &st.base, &a, 3, 1 << 20, 1.0);
    struct rejected_seen seen = { .ack = &a };
    bp_batches_on_rejected(&b, on_rejected, &seen);
    size_t t = bp_batches_index(&b, "t");
    uint32_t s[3];
    for (int i = 0; i < 3; i++)      /* each held by the dispatcher until released below */
        s[i] = bp_ack_new(&a, (uint64_t)(10 + i));
    assert_int_equal(bp_batches_add(&b, t, "{\"r\":0}", 7, s[0], 0), 0);
    assert_int_equal(bp_batches_add(&b, t, "{\"r\":1}", 7, s[1], 0), 0);
    assert_int_equal(bp_batches_add(&b, t, "{\"r\":2}", 7, s[2], 0), 0);   /* flushes */
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.entry, "{\"r\":1}");
    assert_string_equal(seen.reason, "invalid: no such field: x");
    assert_int_equal(seen.slot, s[1]);
    assert_int_equal(seen.pending_during, 3);   /* hold + row + dead letter */
    assert_int_equal(b.v[t]->rows_stored, 2);
    assert_int_equal(b.v[t]->rows_rejected, 1);
    assert_int_equal(v.calls, 0);               /* holds still on */
    for (int i = 0; i < 3; i++)
        bp_ack_done(&a, s[i], 1);
    assert_int_equal(v.calls, 2);               /* the refused one waits for its dead letter */
    bp_ack_done(&a, s[1], 1);
    assert_int_equal(v.calls, 3);
    assert_true(v.last_ok);
    bp_batches_free(&b);
    bp_ack_free(&a);
}

/* Exactly-once delivery's answer to a refused acknowledge: the ids its ErrorInfo metadata
 * names failed (TRANSIENT_ ones are worth sending again), the others succeeded. */
static void
ack_reply_per_id_results(void **state)
{
    (void)state;
    char *ids[] = { "a-1-1", "b-2-1", "c-3-1", "d-4-1" };
    uint8_t v[4];
    const char *body = "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\",\"details\":["
                       "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":"
                       "\"EXACTLY_ONCE_ACKID_FAILURE\",\"metadata\":{\"b-2-1\":"
                       "\"PERMANENT_FAILURE_INVALID_ACK_ID\",\"c-3-1\":"
                       "\"TRANSIENT_FAILURE_UNORDERED_ACK_ID\",\"d-4-1\":7}}]}}";
    assert_int_equal(bp_ack_reply_verdicts(body, strlen(body), ids, 4, v), 3);
    assert_int_equal(v[0], BP_ACKID_OK);
    assert_int_equal(v[1], BP_ACKID_PERMANENT);
    assert_int_equal(v[2], BP_ACKID_TRANSIENT);
    assert_int_equal(v[3], BP_ACKID_PERMANENT);   /* not text: final, never retried forever */
    /* a 400 without per-id results (no exactly-once delivery): nothing named */
    const char *plain = "{\"error\":{\"code\":400,\"message\":\"bad ack id\"}}";
    assert_int_equal(bp_ack_reply_verdicts(plain, strlen(plain), ids, 4, v), 0);
    const char *other = "{\"error\":{\"details\":[{\"@type\":\"type.googleapis.com/"
                        "google.rpc.BadRequest\",\"metadata\":{\"a-1-1\":\"X\"}}]}}";
    assert_int_equal(bp_ack_reply_verdicts(other, strlen(other), ids, 4, v), 0);
    /* not JSON (a proxy's page), empty, cut short: -1, never a crash */
    assert_int_equal(bp_ack_reply_verdicts("<html>", 6, ids, 4, v), -1);
    assert_int_equal(bp_ack_reply_verdicts("", 0, ids, 4, v), -1);
    assert_int_equal(bp_ack_reply_verdicts(body, 40, ids, 4, v), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(acked_only_after_every_destination),
        cmocka_unit_test(one_failure_nacks),
        cmocka_unit_test(slots_are_reused_and_grow),
        cmocka_unit_test(refused_row_is_dead_lettered_before_ack),
        cmocka_unit_test(ack_reply_per_id_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
