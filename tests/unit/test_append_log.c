/* Unit tests: the append log (runtime/append_log.c) - records written and synced, trimmed as
 * acks come, rewritten; recovery after a crash cut the file at every byte (never a crash, never
 * a wrong "stored"); a corrupt record in the middle refused; messages spanning appends and
 * streams, duplicates, a row count cutting an append; write errors (a file size limit, a
 * read-only folder); another pipeline's, worker's or version's file refused; mode 0600. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "append_log.h"

static char dir[256];
static char err[512];

static int
setup(void **state)
{
    (void)state;
    /* tmpfs when there is one: every write syncs, and a disk's syncs would make this suite
     * (and its allocation-failure sweep) take minutes; the syncs' effect is not what it tests */
    snprintf(dir, sizeof(dir), "%s/bp-alog-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "chmod -R u+w %s; rm -rf %s", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct bp_append_log_params
params(void)
{
    struct bp_append_log_params p = { dir, "proj/ds/sub", 0, 0, 0, 0 };
    return p;
}

static bp_append_log_t *
open_log(void)
{
    struct bp_append_log_params p = params();
    bp_append_log_t *log = bp_append_log_open(&p, err, sizeof(err));
    if (!log)
        print_error("open: %s\n", err);
    assert_non_null(log);
    return log;
}

static struct bp_append_log_msg
msg(const char *id, uint32_t total, uint32_t first, uint32_t rows)
{
    struct bp_append_log_msg m = { id, strlen(id), total, first, rows };
    return m;
}

static void
write_ok(bp_append_log_t *log, const char *stream, int64_t off, struct bp_append_log_msg *m,
         size_t n)
{
    int rc = bp_append_log_write(log, stream, off, m, n, err, sizeof(err));
    if (rc != 0)
        print_error("write: %s\n", err);
    assert_int_equal(rc, 0);
}

static enum bp_append_log_state
state_of(bp_append_log_t *log, const char *id)
{
    struct bp_append_log_answer a;
    bp_append_log_lookup(log, id, strlen(id), &a);
    return a.state;
}

static off_t
file_len(bp_append_log_t *log)
{
    struct stat st;
    assert_int_equal(stat(bp_append_log_path(log), &st), 0);
    return st.st_size;
}

static void
crc32c_is_the_standard_one(void **state)
{
    (void)state;
    assert_int_equal(bp_append_log_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(bp_append_log_crc32c("", 0), 0);
}

/* The scenario most tests recover from: stream A has appends [0,3) {m1 x2, m2} and [3,5)
 * {m3, m4}; m5 spans A [5,6) and B [0,1); stream B [1,2) is m6. */
static void
write_scenario(bp_append_log_t *log)
{
    struct bp_append_log_msg a1[] = { msg("m1", 2, 0, 2), msg("m2", 1, 0, 1) };
    struct bp_append_log_msg a2[] = { msg("m3", 1, 0, 1), msg("m4", 1, 0, 1) };
    struct bp_append_log_msg a3[] = { msg("m5", 2, 0, 1) };
    struct bp_append_log_msg b1[] = { msg("m5", 2, 1, 1) };
    struct bp_append_log_msg b2[] = { msg("m6", 1, 0, 1) };
    write_ok(log, "streams/A", 0, a1, 2);
    write_ok(log, "streams/A", 3, a2, 2);
    write_ok(log, "streams/A", 5, a3, 1);
    write_ok(log, "streams/B", 0, b1, 1);
    write_ok(log, "streams/B", 1, b2, 1);
}

static void
write_file_mode_and_recovery(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    write_scenario(log);
    struct stat st;
    assert_int_equal(stat(bp_append_log_path(log), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a second process on the same file is refused (the lock), also after a rewrite */
    struct bp_append_log_params p = params();
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "in use by another process"));
    assert_int_equal(bp_append_log_compact(log, err, sizeof(err)), 0);
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_int_equal(stat(bp_append_log_path(log), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, bp_append_log_size(log));
    /* this process's own messages are not answered: they are in flight here */
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_UNKNOWN);
    assert_true(bp_append_log_mem(log) > 0);
    bp_append_log_free(log);

    /* "crash": reopen; both streams are to be finalized; until then answers wait */
    log = open_log();
    assert_int_equal(bp_append_log_recovering(log), 5);
    assert_non_null(bp_append_log_unfinalized(log, 0));
    assert_non_null(bp_append_log_unfinalized(log, 1));
    assert_null(bp_append_log_unfinalized(log, 2));
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_PENDING);
    assert_int_equal(state_of(log, "nobody"), BP_APPEND_LOG_UNKNOWN);
    /* A has 5 rows (the append at 5 never landed); B has 1 */
    assert_int_equal(bp_append_log_finalized(log, "streams/A", 5, err, sizeof(err)), 0);
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_STORED);
    assert_int_equal(state_of(log, "m4"), BP_APPEND_LOG_STORED);
    assert_int_equal(state_of(log, "m5"), BP_APPEND_LOG_PENDING);   /* B unknown yet */
    assert_int_equal(bp_append_log_finalized(log, "streams/B", 1, err, sizeof(err)), 0);
    assert_null(bp_append_log_unfinalized(log, 0));
    /* m5: row 1 in B at offset 0 < 1 stored, row 0 in A at 5 not: partly stored */
    struct bp_append_log_answer a;
    bp_append_log_lookup(log, "m5", 2, &a);
    assert_int_equal(a.state, BP_APPEND_LOG_PARTIAL);
    assert_int_equal(a.row_total, 2);
    assert_int_equal(a.stored[0] & 3, 2);
    assert_int_equal(state_of(log, "m6"), BP_APPEND_LOG_NOT_STORED);
    /* asked twice (a duplicate delivery): the same answer */
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_STORED);
    /* the same count again is fine; another one is refused */
    assert_int_equal(bp_append_log_finalized(log, "streams/A", 5, err, sizeof(err)), 0);
    assert_int_equal(bp_append_log_finalized(log, "streams/A", 6, err, sizeof(err)), -1);
    /* a recovered stream takes no new append */
    struct bp_append_log_msg m = msg("x", 1, 0, 1);
    assert_int_equal(bp_append_log_write(log, "streams/A", 9, &m, 1, err, sizeof(err)), -1);
    bp_append_log_free(log);

    /* a second crash: the row counts were recorded, no second finalization needed */
    log = open_log();
    assert_null(bp_append_log_unfinalized(log, 0));
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_STORED);
    assert_int_equal(state_of(log, "m6"), BP_APPEND_LOG_NOT_STORED);
    /* acks resolve the recovered messages; when all are, the recovered state is gone */
    const char *ids[] = { "m1", "m2", "m3", "m4", "m5", "m6" };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(bp_append_log_acked(log, ids[i], 2, err, sizeof(err)), 0);
    assert_int_equal(bp_append_log_recovering(log), 0);
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_UNKNOWN);
    assert_int_equal(bp_append_log_compact(log, err, sizeof(err)), 0);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_recovering(log), 0);
    assert_null(bp_append_log_unfinalized(log, 0));
    bp_append_log_free(log);
}

static void
trim_and_compact(void **state)
{
    (void)state;
    struct bp_append_log_params p = params();
    p.compact_min = 4096;
    bp_append_log_t *log = bp_append_log_open(&p, err, sizeof(err));
    assert_non_null(log);
    size_t base_mem = bp_append_log_mem(log);
    char id[32];
    /* 2000 appends of 2 messages, each acked 10 appends later: the file stays small */
    uint64_t peak = 0;
    for (int i = 0; i < 2000; i++) {
        char id2[32];
        snprintf(id, sizeof(id), "id-%d", 2 * i);
        snprintf(id2, sizeof(id2), "id-%d", 2 * i + 1);
        struct bp_append_log_msg m[] = { msg(id, 1, 0, 1), msg(id2, 1, 0, 1) };
        write_ok(log, "streams/live", 2 * i, m, 2);
        if (i >= 10) {
            snprintf(id, sizeof(id), "id-%d", 2 * (i - 10));
            assert_int_equal(bp_append_log_acked(log, id, strlen(id), err, sizeof(err)), 0);
            snprintf(id, sizeof(id), "id-%d", 2 * (i - 10) + 1);
            assert_int_equal(bp_append_log_acked(log, id, strlen(id), err, sizeof(err)), 0);
        }
        if (bp_append_log_size(log) > peak)
            peak = bp_append_log_size(log);
        assert_int_equal((uint64_t)file_len(log), bp_append_log_size(log));
    }
    /* 2000 records of ~60 bytes would be 120 KB; rewritten at 4 KB of dead ones */
    assert_true(peak < 12 * 1024);
    /* an ack for an unknown id is a no-op */
    assert_int_equal(bp_append_log_acked(log, "never", 5, err, sizeof(err)), 0);
    /* no temporary file is left */
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s.tmp", bp_append_log_path(log));
    assert_int_equal(access(tmp, F_OK), -1);
    bp_append_log_free(log);
    /* what survived the rewrites is exactly the 10 un-acked appends */
    log = bp_append_log_open(&p, err, sizeof(err));
    assert_non_null(log);
    assert_int_equal(bp_append_log_recovering(log), 10);
    assert_int_equal(bp_append_log_finalized(log, "streams/live", 3990, err, sizeof(err)), 0);
    assert_int_equal(state_of(log, "id-3989"), BP_APPEND_LOG_STORED);
    assert_int_equal(state_of(log, "id-3990"), BP_APPEND_LOG_NOT_STORED);
    assert_int_equal(state_of(log, "id-3979"), BP_APPEND_LOG_UNKNOWN);   /* acked: trimmed */
    bp_append_log_free(log);
    (void)base_mem;
}

/* Reads the whole file. */
static uint8_t *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void
put_file(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    fclose(f);
}

/* The truth after a crash with the file cut at `cut` bytes, when A holds 5 rows and B 1: a
 * message may be answered STORED only if it truly is (m1 m2 m3 m4, whose appends are whole and
 * below 5), and never a message whose record is lost; m5 and m6 never are. */
static void
check_cut(size_t cut)
{
    (void)cut;
    bp_append_log_t *log = open_log();
    /* the torn record is cut off; the file then ends on a whole record */
    assert_int_equal((uint64_t)file_len(log), bp_append_log_size(log));
    int rc = bp_append_log_finalized(log, "streams/A", 5, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(bp_append_log_finalized(log, "streams/B", 1, err, sizeof(err)), 0);
    const char *ids[] = { "m1", "m2", "m3", "m4", "m5", "m6" };
    for (size_t i = 0; i < 6; i++) {
        enum bp_append_log_state s = state_of(log, ids[i]);
        if (i >= 4)
            assert_int_not_equal(s, BP_APPEND_LOG_STORED);
        assert_int_not_equal(s, BP_APPEND_LOG_PENDING);
    }
    /* and the log takes new appends after the cut */
    struct bp_append_log_msg m = msg("after", 1, 0, 1);
    write_ok(log, "streams/C", 0, &m, 1);
    bp_append_log_free(log);
}

static void
crash_at_every_byte(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    write_scenario(log);
    char path[512];
    snprintf(path, sizeof(path), "%s", bp_append_log_path(log));
    bp_append_log_free(log);
    size_t len;
    uint8_t *whole = slurp(path, &len);
    size_t stored_seen = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        put_file(path, whole, cut);
        check_cut(cut);
        log = open_log();
        if (bp_append_log_finalized(log, "streams/A", 5, err, sizeof(err)) == 0 &&
            state_of(log, "m1") == BP_APPEND_LOG_STORED)
            stored_seen++;
        bp_append_log_free(log);
    }
    /* the whole file (and every cut past m1's record) still answers m1 stored */
    assert_true(stored_seen > 0);
    free(whole);
}

static void
corrupt_middle_refused_torn_tail_cut(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    write_scenario(log);
    char path[512];
    snprintf(path, sizeof(path), "%s", bp_append_log_path(log));
    bp_append_log_free(log);
    size_t len;
    uint8_t *whole = slurp(path, &len);
    /* a flipped byte in the second append record (well inside the file) */
    uint8_t *bad = malloc(len);
    memcpy(bad, whole, len);
    bad[len / 2] ^= 0x40;
    put_file(path, bad, len);
    struct bp_append_log_params p = params();
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "corrupt record"));
    /* the file is left as it was for the operator */
    size_t len2;
    uint8_t *after = slurp(path, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(after, bad, len);
    free(after);
    /* garbage after the last record (a torn write): cut, the rest kept */
    memcpy(bad, whole, len);
    bad[len - 3] ^= 0x40;
    put_file(path, bad, len);
    log = open_log();
    assert_true(bp_append_log_size(log) < len);
    assert_int_equal(bp_append_log_finalized(log, "streams/A", 5, err, sizeof(err)), 0);
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_STORED);
    bp_append_log_free(log);
    free(bad);
    free(whole);
}

/* Sets the version byte of the record at off and makes its CRC right again. */
static void
set_version(uint8_t *b, size_t off, uint8_t v)
{
    uint32_t l = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16;
    b[off + 8] = v;
    uint8_t *tmp = malloc(4 + l);
    memcpy(tmp, b + off, 4);
    memcpy(tmp + 4, b + off + 8, l);
    uint32_t c = bp_append_log_crc32c(tmp, 4 + l);
    for (int i = 0; i < 4; i++)
        b[off + 4 + i] = (uint8_t)(c >> (8 * i));
    free(tmp);
}

static void
other_pipeline_worker_version_refused(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    write_scenario(log);
    char path[512];
    snprintf(path, sizeof(path), "%s", bp_append_log_path(log));
    bp_append_log_free(log);
    struct bp_append_log_params p = params();
    p.pipeline = "other/ds/sub";
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "another pipeline"));
    /* worker 1 has a file of its own: a new one */
    p = params();
    p.worker = 1;
    log = bp_append_log_open(&p, err, sizeof(err));
    assert_non_null(log);
    assert_int_equal(bp_append_log_recovering(log), 0);
    assert_non_null(strstr(bp_append_log_path(log), "appends-1.log"));
    bp_append_log_free(log);
    /* worker 0's file copied under worker 1's name: refused */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp %s %s/appends-1.log", path, dir);
    assert_int_equal(system(cmd), 0);
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "worker 0"));
    /* an append record of format version 2 after the header (its CRC made right) */
    size_t len;
    uint8_t *b = slurp(path, &len);
    uint8_t *orig = malloc(len);
    memcpy(orig, b, len);
    size_t second = 8 + ((uint32_t)b[0] | (uint32_t)b[1] << 8);
    set_version(b, second, 2);
    put_file(path, b, len);
    p = params();
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "format version 2 at byte"));
    /* a header of format version 2 */
    memcpy(b, orig, len);
    set_version(b, 0, 2);
    put_file(path, b, len);
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "format version 2 (this build reads 1)"));
    free(orig);
    /* not an append log at all: refused and never cut */
    put_file(path, (const uint8_t *)"hello, this is some other file\n", 31);
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_non_null(strstr(err, "not an append log"));
    free(b);
    b = slurp(path, &len);
    assert_int_equal(len, 31);
    free(b);
}

static void
cut_inside_an_append_and_duplicates(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    /* d delivered twice before the crash: appended at [0,2) and again at [10,12) */
    struct bp_append_log_msg a[] = { msg("d", 2, 0, 2) };
    struct bp_append_log_msg f[] = { msg("f", 4, 0, 4) };
    write_ok(log, "streams/S", 0, a, 1);
    write_ok(log, "streams/S", 2, f, 1);
    write_ok(log, "streams/S", 10, a, 1);
    /* s yields 3 rows: the append of its third was never recorded (the crash came first) */
    struct bp_append_log_msg sp[] = { msg("s", 3, 0, 2) };
    write_ok(log, "streams/S", 12, sp, 1);
    bp_append_log_free(log);
    log = open_log();
    /* a row count inside f's append (BigQuery never does this: appends are whole) is still
     * answered row by row: rows 0 and 1 of f stored, 2 and 3 not */
    assert_int_equal(bp_append_log_finalized(log, "streams/S", 4, err, sizeof(err)), 0);
    struct bp_append_log_answer ans;
    bp_append_log_lookup(log, "f", 1, &ans);
    assert_int_equal(ans.state, BP_APPEND_LOG_PARTIAL);
    assert_int_equal(ans.stored[0] & 0xf, 0x3);
    /* d: its first copy is stored (the second is not): stored */
    assert_int_equal(state_of(log, "d"), BP_APPEND_LOG_STORED);
    assert_int_equal(state_of(log, "d"), BP_APPEND_LOG_STORED);
    bp_append_log_free(log);
    /* with every recorded row of s stored, s is still only partly stored */
    log = open_log();
    assert_int_equal(bp_append_log_finalized(log, "streams/S", 4, err, sizeof(err)), 0);
    bp_append_log_free(log);
    teardown(state);
    setup(state);
    log = open_log();
    write_ok(log, "streams/S", 0, sp, 1);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_finalized(log, "streams/S", 2, err, sizeof(err)), 0);
    bp_append_log_lookup(log, "s", 1, &ans);
    assert_int_equal(ans.state, BP_APPEND_LOG_PARTIAL);
    assert_int_equal(ans.row_total, 3);
    assert_int_equal(ans.stored[0] & 7, 3);
    bp_append_log_free(log);
}

static void
overlapping_record_voids_the_failed_one(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    /* g at [0,2) failed (OUT_OF_RANGE); then h was appended at [0,3): g claims nothing */
    struct bp_append_log_msg g[] = { msg("g", 2, 0, 2) };
    struct bp_append_log_msg h[] = { msg("h", 3, 0, 3) };
    write_ok(log, "streams/S", 0, g, 1);
    write_ok(log, "streams/S", 0, h, 1);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_finalized(log, "streams/S", 3, err, sizeof(err)), 0);
    assert_int_equal(state_of(log, "g"), BP_APPEND_LOG_UNKNOWN);
    assert_int_equal(state_of(log, "h"), BP_APPEND_LOG_STORED);
    bp_append_log_free(log);

    /* the voided record stays void once the voiding one is acked and the file rewritten */
    teardown(state);
    setup(state);
    log = open_log();
    struct bp_append_log_msg k[] = { msg("k", 1, 0, 1) };
    write_ok(log, "streams/S", 0, g, 1);
    write_ok(log, "streams/S", 0, h, 1);
    write_ok(log, "streams/S", 3, k, 1);
    assert_int_equal(bp_append_log_acked(log, "h", 1, err, sizeof(err)), 0);
    assert_int_equal(bp_append_log_compact(log, err, sizeof(err)), 0);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_finalized(log, "streams/S", 4, err, sizeof(err)), 0);
    assert_int_equal(state_of(log, "g"), BP_APPEND_LOG_UNKNOWN);
    assert_int_equal(state_of(log, "k"), BP_APPEND_LOG_STORED);
    bp_append_log_free(log);
}

static void
bad_arguments_refused(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    uint64_t size = bp_append_log_size(log);
    struct bp_append_log_msg m = msg("x", 2, 1, 2);   /* rows past row_total */
    assert_int_equal(bp_append_log_write(log, "s", 0, &m, 1, err, sizeof(err)), -1);
    m = msg("x", 1, 0, 1);
    assert_int_equal(bp_append_log_write(log, "s", -1, &m, 1, err, sizeof(err)), -1);
    assert_int_equal(bp_append_log_write(log, "", 0, &m, 1, err, sizeof(err)), -1);
    assert_int_equal(bp_append_log_write(log, "s", 0, &m, 0, err, sizeof(err)), -1);
    assert_int_equal(bp_append_log_write(log, "s", INT64_MAX, &m, 1, err, sizeof(err)), -1);
    m.id_len = 0;
    assert_int_equal(bp_append_log_write(log, "s", 0, &m, 1, err, sizeof(err)), -1);
    assert_int_equal(bp_append_log_size(log), size);
    /* this process's stream cannot be "finalized" into the recovered state */
    m = msg("x", 1, 0, 1);
    write_ok(log, "s", 0, &m, 1);
    assert_int_equal(bp_append_log_finalized(log, "s", 1, err, sizeof(err)), -1);
    bp_append_log_free(log);
}

static void
memory_cap_refuses_writes(void **state)
{
    (void)state;
    struct bp_append_log_params p = params();
    p.max_mem = 16 * 1024;
    bp_append_log_t *log = bp_append_log_open(&p, err, sizeof(err));
    assert_non_null(log);
    char id[32];
    int refused = 0;
    for (int i = 0; i < 1000 && !refused; i++) {
        snprintf(id, sizeof(id), "mem-%d", i);
        struct bp_append_log_msg m = msg(id, 1, 0, 1);
        uint64_t size = bp_append_log_size(log);
        if (bp_append_log_write(log, "s", i, &m, 1, err, sizeof(err)) != 0) {
            refused = 1;
            assert_non_null(strstr(err, "memory cap"));
            assert_int_equal(bp_append_log_size(log), size);   /* nothing written */
        }
        assert_true(bp_append_log_mem(log) <= p.max_mem);
    }
    assert_true(refused);
    bp_append_log_free(log);
}

/* A disk that fills up: the file size limit makes write() fail with EFBIG. */
static void
write_error_refuses_and_recovers(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    struct bp_append_log_msg m1 = msg("w1", 1, 0, 1), m2 = msg("w2", 1, 0, 1);
    write_ok(log, "s", 0, &m1, 1);
    uint64_t size = bp_append_log_size(log);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = size + 10;   /* part of the next record fits */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = bp_append_log_write(log, "s", 1, &m2, 1, err, sizeof(err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "write"));
    /* the partial record was cut off: the file ends on a whole record */
    assert_int_equal((uint64_t)file_len(log), size);
    /* once the disk has room again, writes go on */
    write_ok(log, "s", 1, &m2, 1);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_recovering(log), 2);
    bp_append_log_free(log);
}

static void
read_only_folder(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        /* root writes through the mode bits: the folder's permissions prove nothing here */
        char sub[300];
        snprintf(sub, sizeof(sub), "%s/file", dir);
        put_file(sub, (const uint8_t *)"x", 1);
        struct bp_append_log_params p = params();
        p.dir = sub;   /* a file where the folder should be */
        assert_null(bp_append_log_open(&p, err, sizeof(err)));
        assert_non_null(strstr(err, "Not a directory"));
        return;
    }
    assert_int_equal(chmod(dir, 0500), 0);
    struct bp_append_log_params p = params();
    assert_null(bp_append_log_open(&p, err, sizeof(err)));
    assert_int_equal(chmod(dir, 0700), 0);
}

static void
expire_drops_old_records(void **state)
{
    (void)state;
    bp_append_log_t *log = open_log();
    write_scenario(log);
    bp_append_log_free(log);
    log = open_log();
    assert_int_equal(bp_append_log_recovering(log), 5);
    bp_append_log_expire(log, time(NULL) + 3600);
    assert_int_equal(bp_append_log_recovering(log), 5);
    bp_append_log_expire(log, time(NULL) + 8 * 86400);
    assert_int_equal(bp_append_log_recovering(log), 0);
    assert_null(bp_append_log_unfinalized(log, 0));
    assert_int_equal(state_of(log, "m1"), BP_APPEND_LOG_UNKNOWN);
    bp_append_log_free(log);
}


/* ---- a model run: a simulated BigQuery and Pub/Sub, crashes, and the log's answers checked
 * against what the simulated table really holds ---- */

#define NMSG 40
#define NSTREAM 64

static int answers[BP_APPEND_LOG_PARTIAL + 1];   /* how often each answer came: all must */

struct sim {
    unsigned seed;
    uint32_t total[NMSG];        /* rows each message yields */
    uint8_t truth[NMSG];         /* bit i: row i is in the table (any stream) */
    int delivered[NMSG], acked[NMSG];
    char names[NSTREAM][32];
    int64_t end[NSTREAM];        /* the server's row count per stream */
    int nstreams;
    struct { int m; uint8_t rows; } queue[4 * NMSG];   /* rows to append (bit i: row i) */
    int nq;
};

static unsigned
rnd(struct sim *s, unsigned n)
{
    s->seed = s->seed * 1103515245u + 12345u;
    return (s->seed >> 16) % n;
}

static int
stream_index(struct sim *s, const char *name)
{
    for (int i = 0; i < s->nstreams; i++)
        if (strcmp(s->names[i], name) == 0)
            return i;
    assert_true(s->nstreams < NSTREAM);
    snprintf(s->names[s->nstreams], sizeof(s->names[0]), "%s", name);
    s->end[s->nstreams] = 0;
    return s->nstreams++;
}

static uint8_t
all_rows(const struct sim *s, int m)
{
    return (uint8_t)((1u << s->total[m]) - 1);
}

/* After a restart: every recovered stream finalized with the server's count, then each
 * delivered, unacked message asked about: the answer must be exactly the table's truth. */
static void
sim_recover(struct sim *s, bp_append_log_t *log)
{
    const char *name;
    while ((name = bp_append_log_unfinalized(log, 0)) != NULL) {
        char copy[64];
        snprintf(copy, sizeof(copy), "%s", name);
        int k = stream_index(s, copy);
        assert_int_equal(bp_append_log_finalized(log, copy, s->end[k], err, sizeof(err)), 0);
    }
    char id[16];
    for (int m = 0; m < NMSG; m++) {
        if (!s->delivered[m] || s->acked[m])
            continue;
        snprintf(id, sizeof(id), "msg-%d", m);
        struct bp_append_log_answer a;
        bp_append_log_lookup(log, id, strlen(id), &a);
        uint8_t truth = s->truth[m];
        answers[a.state]++;
        switch (a.state) {
        case BP_APPEND_LOG_STORED:
            assert_int_equal(truth, all_rows(s, m));
            assert_int_equal(bp_append_log_acked(log, id, strlen(id), err, sizeof(err)), 0);
            s->acked[m] = 1;
            continue;
        case BP_APPEND_LOG_PARTIAL:
            assert_int_equal(a.row_total, s->total[m]);
            assert_int_equal(a.stored[0] & all_rows(s, m), truth);
            assert_true(truth != 0 && truth != all_rows(s, m));
            break;
        case BP_APPEND_LOG_NOT_STORED:
        case BP_APPEND_LOG_UNKNOWN:
            assert_int_equal(truth, 0);
            break;
        default:
            fail_msg("msg-%d: pending after every stream was finalized", m);
        }
        s->queue[s->nq].m = m;
        s->queue[s->nq++].rows = (uint8_t)(all_rows(s, m) & ~truth);
    }
}

/* One append of up to 3 queued items (the last one's rows possibly split, the rest requeued)
 * to stream k; returns 1 when the process "crashed" after writing its record. */
static int
sim_append(struct sim *s, bp_append_log_t *log, int k, int *next)
{
    struct bp_append_log_msg e[8];
    char ids[8][16];
    int taken[8], n = 0;
    uint8_t sent[8];
    uint32_t rows = 0;
    while (n < 3 && s->nq > 0) {
        int m = s->queue[0].m;
        uint8_t want = s->queue[0].rows;
        memmove(s->queue, s->queue + 1, (size_t)--s->nq * sizeof(s->queue[0]));
        /* the lowest run of wanted rows; with a coin, only its first row (a split) */
        int first = __builtin_ctz(want), len = 0;
        while (first + len < 8 && (want >> (first + len) & 1))
            len++;
        if (len > 1 && rnd(s, 2))
            len = 1;
        uint8_t part = (uint8_t)(((1u << len) - 1) << first);
        if (want & ~part) {
            memmove(s->queue + 1, s->queue, (size_t)s->nq++ * sizeof(s->queue[0]));
            s->queue[0].m = m;
            s->queue[0].rows = (uint8_t)(want & ~part);
        }
        snprintf(ids[n], sizeof(ids[n]), "msg-%d", m);
        e[n] = msg(ids[n], s->total[m], (uint32_t)first, (uint32_t)len);
        taken[n] = m;
        sent[n] = part;
        rows += (uint32_t)len;
        n++;
    }
    if (n == 0)
        return 0;
    write_ok(log, s->names[k], *next, e, (size_t)n);
    unsigned r = rnd(s, 100);
    if (r < 75) {
        /* written: the server holds the rows; acks go out for messages now whole */
        assert_int_equal(s->end[k], *next);
        s->end[k] += rows;
        *next += (int)rows;
        for (int i = 0; i < n; i++) {
            int m = taken[i];
            s->truth[m] |= sent[i];
            if (s->truth[m] == all_rows(s, m) && !s->acked[m] && rnd(s, 10) < 8) {
                assert_int_equal(bp_append_log_acked(log, ids[i], strlen(ids[i]), err,
                                                     sizeof(err)), 0);
                s->acked[m] = 1;
            }
        }
        return 0;
    }
    if (r < 90) {
        /* refused for sure (an error reply): the rows go back to the queue, to be sent next
         * or after the others; the stream's next append reuses the offsets */
        int front = (int)rnd(s, 2);
        for (int i = n - 1; i >= 0; i--) {
            int at = front ? 0 : s->nq;
            if (front)
                memmove(s->queue + 1, s->queue, (size_t)s->nq * sizeof(s->queue[0]));
            s->nq++;
            s->queue[at].m = taken[i];
            s->queue[at].rows = sent[i];
        }
        return 0;
    }
    return 1;   /* killed after the record's sync, before the append went out */
}

static void
model_run(void **state)
{
    (void)state;
    /* the allocation-failure sweep runs this binary once per sampled N: a few seeds there
     * (the sweep looks for clean failures, the normal and ASan runs check the answers) */
    unsigned seeds = getenv("BP_ALLOC_FAIL_AT") || getenv("BP_ALLOC_COUNT") ? 3 : 30;
    for (unsigned seed = 1; seed <= seeds; seed++) {
        struct sim s;
        memset(&s, 0, sizeof(s));
        s.seed = seed;
        for (int m = 0; m < NMSG; m++)
            s.total[m] = 1 + rnd(&s, 3);
        struct bp_append_log_params p = params();
        p.compact_min = 64;
        for (int gen = 0; gen < 8; gen++) {
            bp_append_log_t *log = bp_append_log_open(&p, err, sizeof(err));
            if (!log)
                fail_msg("seed %u gen %d: %s", seed, gen, err);
            s.nq = 0;
            sim_recover(&s, log);
            /* new deliveries */
            for (int m = 0; m < NMSG; m++) {
                if (!s.delivered[m] && rnd(&s, 4) == 0) {
                    s.delivered[m] = 1;
                    s.queue[s.nq].m = m;
                    s.queue[s.nq++].rows = all_rows(&s, m);
                }
            }
            char name[32];
            int ks[2], next[2] = { 0, 0 }, crashed = 0;
            for (int j = 0; j < 2; j++) {
                snprintf(name, sizeof(name), "g%d-s%d", gen, j);
                ks[j] = stream_index(&s, name);
            }
            for (int step = 0; step < 12 && !crashed; step++) {
                int j = (int)rnd(&s, 2);
                crashed = sim_append(&s, log, ks[j], &next[j]);
                if (!crashed && rnd(&s, 5) == 0)
                    assert_int_equal(bp_append_log_compact(log, err, sizeof(err)), 0);
            }
            char path[512];
            snprintf(path, sizeof(path), "%s", bp_append_log_path(log));
            bp_append_log_free(log);
            if (rnd(&s, 2)) {
                /* killed in the middle of writing a further record: a torn tail */
                FILE *f = fopen(path, "ab");
                assert_non_null(f);
                for (unsigned i = 1 + rnd(&s, 24); i > 0; i--)
                    fputc((int)rnd(&s, 256), f);
                fclose(f);
            }
        }
        teardown(state);
        setup(state);
    }
    print_message("model: %d stored, %d partly, %d not stored, %d unknown\n",
                  answers[BP_APPEND_LOG_STORED], answers[BP_APPEND_LOG_PARTIAL],
                  answers[BP_APPEND_LOG_NOT_STORED], answers[BP_APPEND_LOG_UNKNOWN]);
    assert_true(answers[BP_APPEND_LOG_STORED] > 0 && answers[BP_APPEND_LOG_PARTIAL] > 0 &&
                answers[BP_APPEND_LOG_NOT_STORED] > 0 && answers[BP_APPEND_LOG_UNKNOWN] > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_is_the_standard_one),
        cmocka_unit_test_setup_teardown(write_file_mode_and_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(trim_and_compact, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_at_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_middle_refused_torn_tail_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(other_pipeline_worker_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(cut_inside_an_append_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(overlapping_record_voids_the_failed_one, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_arguments_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_cap_refuses_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(write_error_refuses_and_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(expire_drops_old_records, setup, teardown),
        cmocka_unit_test_setup_teardown(model_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
