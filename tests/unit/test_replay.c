/* Unit tests: which archive objects a replay selects (folder hour against --since/--until, the
 * dead-letter folder only when asked, --resume's finished objects), the times --since/--until
 * take, and the message ids (stable, short, per object generation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"

static void
times_parse(void **state)
{
    (void)state;
    double t;
    assert_int_equal(bp_replay_parse_time("2025-03-01", &t), 0);
    assert_true(t == 1740787200.0);
    assert_int_equal(bp_replay_parse_time("2025-03-01T12", &t), 0);
    assert_true(t == 1740787200.0 + 12 * 3600);
    assert_int_equal(bp_replay_parse_time("2025-03-01T12:30:15Z", &t), 0);
    assert_true(t == 1740787200.0 + 12 * 3600 + 30 * 60 + 15);
    assert_int_equal(bp_replay_parse_time("2025-03-01T12:30:15.25+01:00", &t), 0);
    assert_true(t == 1740787200.0 + 11 * 3600 + 30 * 60 + 15);
    assert_int_equal(bp_replay_parse_time("2025-03-01 12:30", &t), 0);
    assert_true(t == 1740787200.0 + 12 * 3600 + 30 * 60);
    assert_int_equal(bp_replay_parse_time("2025-3-01", &t), -1);
    assert_int_equal(bp_replay_parse_time("2025-03-01T", &t), -1);
    assert_int_equal(bp_replay_parse_time("2025-13-01", &t), -1);
    assert_int_equal(bp_replay_parse_time("2025-03-01T25", &t), -1);
    assert_int_equal(bp_replay_parse_time("yesterday", &t), -1);
}

static int
add(struct bp_replay_list *l, const struct bp_replay_opts *o, const char *source,
    const char *name, const char *gen)
{
    char err[256];
    return bp_replay_list_add(l, o, "errors", source, "b", name, gen, 100, err, sizeof(err));
}

static void
selection_by_folder_hour(void **state)
{
    (void)state;
    struct bp_replay_opts o;
    struct bp_replay_list l;
    memset(&o, 0, sizeof(o));
    memset(&l, 0, sizeof(l));
    o.has_since = o.has_until = 1;
    assert_int_equal(bp_replay_parse_time("2025-03-01T11:30", &o.since), 0);
    assert_int_equal(bp_replay_parse_time("2025-03-01T13", &o.until), 0);
    const char *src = "gs://b/output";
    assert_int_equal(add(&l, &o, src, "output/order/2025/03/01/10/order_1.json", "1"), 0);
    assert_int_equal(add(&l, &o, src, "output/order/2025/03/01/11/order_2.json", "1"), 0);
    assert_int_equal(add(&l, &o, src, "output/order/2025/03/01/12/order_3.json", "1"), 0);
    assert_int_equal(add(&l, &o, src, "output/order/2025/03/01/13/order_4.json", "1"), 0);
    assert_int_equal(add(&l, &o, src, "output/order/notes.json", "1"), 0);
    assert_int_equal(add(&l, &o, src, "output/errors/2025/03/01/12/errors_1.json", "1"), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].name, "output/order/2025/03/01/11/order_2.json");
    assert_string_equal(l.v[1].name, "output/order/2025/03/01/12/order_3.json");
    assert_true(l.v[0].hour == o.since - 1800);
    assert_int_equal(l.out_of_range, 3);     /* hours 10 and 13, and a name without an hour */
    assert_int_equal(l.dead_folder, 1);
    assert_int_equal(l.bytes, 200);
    /* asked for by name, the dead-letter folder is replayed */
    assert_int_equal(add(&l, &o, "gs://b/output/errors/", "output/errors/2025/03/01/12/e.json",
                         "1"), 0);
    assert_int_equal(l.n, 3);
    /* so is quarantine/ (messages set aside: records, not events): only when asked for */
    assert_int_equal(add(&l, &o, src, "output/quarantine/2025/03/01/12/quarantine_1.json", "1"),
                     0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.dead_folder, 2);
    assert_int_equal(add(&l, &o, "gs://b/output/quarantine", "output/quarantine/2025/03/01/12/"
                         "quarantine_1.json", "1"), 0);
    assert_int_equal(l.n, 4);
    bp_replay_list_free(&l);
}

static void
ids_and_resume(void **state)
{
    (void)state;
    struct bp_replay_opts o;
    struct bp_replay_list l;
    char path[] = "/tmp/bp-replay-resume-XXXXXX", err[256];
    memset(&o, 0, sizeof(o));
    memset(&l, 0, sizeof(l));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *done = "gs://b/output/order/2025/03/01/11/order_2.json#7\n";
    assert_int_equal(write(fd, done, strlen(done)), (ssize_t)strlen(done));
    close(fd);
    assert_int_equal(bp_replay_list_load_resume(&l, path, err, sizeof(err)), 0);
    unlink(path);
    const char *name = "output/order/2025/03/01/11/order_2.json";
    assert_int_equal(add(&l, &o, "gs://b/output", name, "7"), 0);   /* finished */
    assert_int_equal(add(&l, &o, "gs://b/output", name, "8"), 0);   /* a new generation */
    assert_int_equal(add(&l, &o, "gs://b/output", name, "8"), 0);
    assert_int_equal(l.resumed, 1);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].key, "gs://b/output/order/2025/03/01/11/order_2.json#8");
    assert_string_equal(l.v[0].label, "gs://b/output/order/2025/03/01/11/order_2.json");
    /* the same object and generation: the same ids; "<basename>@<16 hex>" */
    assert_string_equal(l.v[0].idbase, l.v[1].idbase);
    assert_int_equal(strlen(l.v[0].idbase), strlen("order_2.json@") + 16);
    assert_memory_equal(l.v[0].idbase, "order_2.json@", 13);
    bp_replay_list_free(&l);
    memset(&l, 0, sizeof(l));
    assert_int_equal(add(&l, &o, "gs://b/output", name, "9"), 0);
    assert_int_equal(add(&l, &o, "gs://b/output", name, "10"), 0);
    assert_string_not_equal(l.v[0].idbase, l.v[1].idbase);
    bp_replay_list_free(&l);
    assert_int_equal(bp_replay_list_load_resume(&l, "/nonexistent/dir/resume", err,
                                                sizeof(err)), 0);
}

static void
gs_urls_split(void **state)
{
    (void)state;
    char *b = NULL, *p = NULL;
    assert_int_equal(bp_replay_split_gs("gs://bkt/output/order/", &b, &p), 1);
    assert_string_equal(b, "bkt");
    assert_string_equal(p, "output/order/");
    free(b);
    free(p);
    assert_int_equal(bp_replay_split_gs("gs://bkt", &b, &p), 1);
    assert_string_equal(p, "");
    free(b);
    free(p);
    assert_int_equal(bp_replay_split_gs("gs:///x", &b, &p), -1);
    assert_int_equal(bp_replay_split_gs("./archive", &b, &p), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(times_parse),
        cmocka_unit_test(selection_by_folder_hour),
        cmocka_unit_test(ids_and_resume),
        cmocka_unit_test(gs_urls_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
