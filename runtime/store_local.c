/* store_local.c - the local kind of store: exactly what the cloud store would send, as files.
 *   DIR/bigquery/<table>.ndjson          one insertAll rows[] entry per line, appended per batch
 *   DIR/gcs/<bucket>/<object name>       archive objects, written to an unnamed file (O_TMPFILE;
 *                                        a hidden temp file where the file system lacks it) and
 *                                        linked into place, so a crash never leaves a half object
 *                                        under a final name, and an existing name is never
 *                                        overwritten (link fails with EEXIST, as GCS answers 412
 *                                        to ifGenerationMatch=0): a _1, _2... suffix is added.
 * A backfill makes an object per folder per couple of events, so the syscalls per object count:
 * mkdir of the folder, open, write, close, linkat (the temp file's way adds getpid, link and
 * unlink, and a directory entry created and removed). The archive hands objects over in chunks
 * of 64 KB or whole (archive.c), so writes go to the descriptor without a stdio buffer. */
#include "log.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct table_file {
    char *name;
    int fd;
};

struct store_local {
    struct bp_store base;
    char *dir;
    char *gcs_root;            /* DIR/gcs/<bucket> */
    struct table_file *tables;
    size_t ntables;
    unsigned long tmp_seq;
    int sync;                  /* fsync objects before linking them (bp_store_local_set_sync) */
    int tmpfile;               /* the file system takes O_TMPFILE + linkat (probed at creation) */
};

struct bp_object {
    struct store_local *s;
    int fd;
    char *tmp_path;            /* NULL for an unnamed (O_TMPFILE) file */
    char *final_path;
};

/* mkdir -p of tmp (modified in place, restored): the deepest folder first, its parents only when
 * it is missing, so a new hour folder of an existing day costs one call, not one per level. */
static int
mkdir_p(char *tmp)
{
    if (mkdir(tmp, 0755) == 0 || errno == EEXIST)
        return 0;
    char *slash = strrchr(tmp, '/');
    if (errno != ENOENT || !slash || slash == tmp)
        return -1;
    *slash = '\0';
    int rc = mkdir_p(tmp);
    *slash = '/';
    if (rc != 0)
        return -1;
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* mkdir -p for the directory part of path. */
static int
mkdirs_for(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return 0;
    *slash = '\0';
    return mkdir_p(tmp);
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
table_fd(struct store_local *s, const char *table)
{
    for (size_t i = 0; i < s->ntables; i++)
        if (strcmp(s->tables[i].name, table) == 0)
            return s->tables[i].fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/bigquery/%s.ndjson", s->dir, table);
    if (mkdirs_for(path) != 0)
        return -1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    s->tables = bp_xrealloc(s->tables, (s->ntables + 1) * sizeof(*s->tables));
    s->tables[s->ntables].name = bp_xstrdup(table);
    s->tables[s->ntables].fd = fd;
    s->ntables++;
    return fd;
}

static int
local_rows_put(struct bp_store *bs, const char *table, const char *entries, size_t len,
               size_t nrows, bp_store_done_fn done, void *arg)
{
    struct store_local *s = (struct store_local *)bs;
    (void)nrows;
    int fd = table_fd(s, table);
    /* One write per batch: with O_APPEND a batch is never interleaved with another writer's. */
    if (fd < 0 || write_all(fd, entries, len) != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s/bigquery/%s.ndjson: %s", s->dir, table, strerror(errno));
        done(arg, -1, msg, NULL, 0);
        return -1;
    }
    done(arg, 0, NULL, NULL, 0);
    return 0;
}

/* An unnamed file in the folder of final (O_TMPFILE), or -1 with errno. */
static int
open_unnamed(const char *final)
{
    char dir[4096];
    const char *slash = strrchr(final, '/');
    if ((size_t)(slash - final) >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, final, (size_t)(slash - final));
    dir[slash - final] = '\0';
    return open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
}

static struct bp_object *
local_object_open(struct bp_store *bs, const char *name, char *err, size_t errlen)
{
    struct store_local *s = (struct store_local *)bs;
    char final[4096], tmp[4200];
    snprintf(final, sizeof(final), "%s/%s", s->gcs_root, name);
    /* one mkdir, the deepest level (EEXIST when the folder exists): a backfill's object is
     * mostly the first of its hour, and trying the file first cost a failed open for each */
    if (mkdirs_for(final) != 0) {
        snprintf(err, errlen, "cannot create the folder of %s: %s", final, strerror(errno));
        return NULL;
    }
    int fd;
    if (s->tmpfile) {
        fd = open_unnamed(final);
        snprintf(tmp, sizeof(tmp), "%s (unnamed)", final);
    } else {
        const char *base = strrchr(final, '/') + 1;
        snprintf(tmp, sizeof(tmp), "%.*s.%s.tmp.%ld.%lu", (int)(base - final), final, base,
                 (long)getpid(), ++s->tmp_seq);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return NULL;
    }
    struct bp_object *o = bp_xcalloc(1, sizeof(*o));
    o->s = s;
    o->fd = fd;
    o->tmp_path = s->tmpfile ? NULL : bp_xstrdup(tmp);
    o->final_path = bp_xstrdup(final);
    return o;
}

static int
local_object_write(struct bp_object *o, const void *p, size_t n)
{
    return write_all(o->fd, p, n);
}

static void
object_free(struct bp_object *o)
{
    free(o->tmp_path);
    free(o->final_path);
    free(o);
}

/* Gives the file of o the name `to`: a link of its temp name, or of its descriptor through
 * /proc/self/fd (linkat's AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH). */
static int
link_as(const struct bp_object *o, const char *to)
{
    if (o->tmp_path)
        return link(o->tmp_path, to);
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, to, AT_SYMLINK_FOLLOW);
}

/* Links o's file under its final name, adding _N before ".json" while the name exists. */
static int
link_unique(const struct bp_object *o, char *used, size_t usedlen)
{
    const char *final = o->final_path;
    size_t flen = strlen(final);
    const char *dot = flen > 5 && strcmp(final + flen - 5, ".json") == 0 ? final + flen - 5 : NULL;
    for (int n = 0; n < 10000; n++) {
        if (n == 0)
            snprintf(used, usedlen, "%s", final);
        else if (dot)
            snprintf(used, usedlen, "%.*s_%d.json", (int)(dot - final), final, n);
        else
            snprintf(used, usedlen, "%s_%d", final, n);
        if (link_as(o, used) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

static int
local_object_finish(struct bp_object *o, bp_store_done_fn done, void *arg)
{
    char used[4200], msg[4400];
    int rc = 0;
    if (o->s->sync && fsync(o->fd) != 0)
        rc = -1;
    /* the link comes after the last write: a crash before it leaves no final name */
    if (rc == 0 && link_unique(o, used, sizeof(used)) != 0)
        rc = -1;
    if (rc != 0)
        snprintf(msg, sizeof(msg), "%s: %s", o->final_path, strerror(errno));
    else
        bp_log(BP_LOG_DEBUG, "archive", "finished %s", used);
    /* errors of a file's writes were reported by write(); close only releases it */
    close(o->fd);
    if (o->tmp_path)
        unlink(o->tmp_path);
    object_free(o);
    done(arg, rc, rc ? msg : NULL, NULL, 0);
    return rc;
}

static void
local_object_abort(struct bp_object *o)
{
    close(o->fd);
    if (o->tmp_path)
        unlink(o->tmp_path);
    object_free(o);
}

static size_t
local_pending(struct bp_store *bs)
{
    (void)bs;
    return 0;   /* every write completes inside its call */
}

static void
local_destroy(struct bp_store *bs)
{
    struct store_local *s = (struct store_local *)bs;
    if (!s)
        return;
    for (size_t i = 0; i < s->ntables; i++) {
        close(s->tables[i].fd);
        free(s->tables[i].name);
    }
    free(s->tables);
    free(s->dir);
    free(s->gcs_root);
    free(s);
}

static const struct bp_store_ops local_ops = {
    .kind = "local",
    .rows_put = local_rows_put,
    .object_open = local_object_open,
    .object_write = local_object_write,
    .object_finish = local_object_finish,
    .object_abort = local_object_abort,
    .pending = local_pending,
    .destroy = local_destroy,
};

/* Whether objects are fsynced before they are linked into place (the default). Without it a
 * crash of the process still never leaves a half object under a final name (the link comes
 * after the last write), only a power cut can; a source that never acks (a file, which can be
 * read again) does not need more, and fsync was most of the cost of a small object. */
void
bp_store_local_set_sync(struct bp_store *bs, int sync)
{
    ((struct store_local *)bs)->sync = sync;
}

/* Whether an unnamed file in root can be linked into place: O_TMPFILE needs the file system's
 * support (ext4, xfs, btrfs, tmpfs) and the link needs /proc. */
static int
tmpfile_works(const char *root)
{
    char probe[4200], name[4300];
    snprintf(probe, sizeof(probe), "%s/x", root);
    int fd = open_unnamed(probe);
    if (fd < 0)
        return 0;
    snprintf(name, sizeof(name), "%s/.probe.%ld", root, (long)getpid());
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int ok = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0;
    if (ok)
        unlink(name);
    close(fd);
    return ok;
}

/* Creates the local store under dir (created if missing). Returns it, or NULL with err set. */
struct bp_store *
bp_store_local_new(const char *dir, const char *bucket, char *err, size_t errlen)
{
    char probe[4096];
    snprintf(probe, sizeof(probe), "%s/gcs/%s/x", dir, bucket);
    if (mkdirs_for(probe) != 0) {
        snprintf(err, errlen, "cannot create %s/gcs/%s: %s", dir, bucket, strerror(errno));
        return NULL;
    }
    struct store_local *s = bp_xcalloc(1, sizeof(*s));
    s->base.ops = &local_ops;
    s->sync = 1;
    s->dir = bp_xstrdup(dir);
    snprintf(probe, sizeof(probe), "%s/gcs/%s", dir, bucket);
    s->gcs_root = bp_xstrdup(probe);
    s->tmpfile = tmpfile_works(s->gcs_root);
    return &s->base;
}

/* Whether objects are written as unnamed files (on where the file system allows it, the
 * default) or as hidden temp files; tests turn it off to cover both. */
void
bp_store_local_set_tmpfile(struct bp_store *bs, int on)
{
    struct store_local *s = (struct store_local *)bs;
    s->tmpfile = on && tmpfile_works(s->gcs_root);
}
