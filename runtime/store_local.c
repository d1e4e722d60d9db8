/* store_local.c - the local kind of store: exactly what the cloud store would send, as files.
 *   DIR/bigquery/<table>.ndjson          one insertAll rows[] entry per line, appended per batch
 *   DIR/gcs/<bucket>/<object name>       archive objects, written to an unnamed file (O_TMPFILE;
 *                                        a hidden temp file where the file system lacks it) and
 *                                        linked into place, so a crash never leaves a half object
 *                                        under a final name, and an existing name is never
 *                                        overwritten (link fails with EEXIST, as GCS answers 412
 *                                        to ifGenerationMatch=0): a _1, _2... suffix is added.
 * A backfill makes an object per folder per couple of events, so the kernel's work per object
 * counts: mkdir of a folder not known to exist, open, write, linkat, close. Every path is taken
 * relative to a descriptor of DIR/gcs/<bucket> (the kernel walks only the object's own part of
 * it), the unnamed file is linked by its descriptor (AT_EMPTY_PATH) where the kernel allows it
 * instead of through /proc/self/fd, and folders this store made or found are remembered (hashes
 * only: a folder removed since, or a false hit, shows as ENOENT and is made again). The archive
 * hands objects over in chunks of 64 KB or whole (archive.c), so writes go to the descriptor
 * without a stdio buffer. */
#include "log.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct table_file {
    char *name;
    int fd;
};

/* Folders known to exist, as 64-bit hashes of their root-relative paths, direct-mapped (a new
 * folder takes its slot's place, so the table stays KNOWN_DIRS * 8 bytes and in cache): a hit
 * skips the mkdir; a wrong one (a folder removed since; hash collisions of 64 bits aside) costs
 * an ENOENT and the mkdir after all. A live stream's few hundred folders all fit; a backfill's
 * tens of thousands mostly do not, and there a slot is one cache line, not a mkdir. */
#define KNOWN_DIRS 4096

struct store_local {
    struct bp_store base;
    char *dir;
    char *gcs_root;            /* DIR/gcs/<bucket> */
    int root_fd;               /* a descriptor of gcs_root: object paths are relative to it */
    struct table_file *tables;
    size_t ntables;
    unsigned long tmp_seq;
    int sync;                  /* fsync objects before linking them (bp_store_local_set_sync) */
    int tmpfile;               /* the file system takes O_TMPFILE + linkat (probed at creation) */
    int flink;                 /* linkat(fd, "", AT_EMPTY_PATH) links an unnamed file */
    uint64_t *known;           /* KNOWN_DIRS slots, 0 = empty */
};

struct bp_object {
    struct store_local *s;
    int fd;
    char *tmp;                 /* the hidden temp file's relative name; NULL for an unnamed file */
    char name[];               /* the object's name, relative to root_fd */
};

static uint64_t
path_hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* Whether the folder (p, n) is remembered; with add, remembers it. */
static int
known_dir(struct store_local *s, const char *p, size_t n, int add)
{
    uint64_t h = path_hash(p, n), *slot = &s->known[h & (KNOWN_DIRS - 1)];
    if (*slot == h)
        return 1;
    if (add)
        *slot = h;
    return add;
}

/* mkdir -p of the root-relative folder tmp (modified in place, restored): the deepest folder
 * first, its parents only when it is missing (or not known to exist), so a new hour folder of
 * a known day costs one call, not one per level. */
static int
mkdir_rel(struct store_local *s, char *tmp)
{
    size_t n = strlen(tmp);
    if (mkdirat(s->root_fd, tmp, 0755) == 0 || errno == EEXIST) {
        known_dir(s, tmp, n, 1);
        return 0;
    }
    char *slash = strrchr(tmp, '/');
    if (errno != ENOENT || !slash || slash == tmp)
        return -1;
    *slash = '\0';
    int rc = mkdir_rel(s, tmp);
    *slash = '/';
    if (rc != 0)
        return -1;
    if (mkdirat(s->root_fd, tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    known_dir(s, tmp, n, 1);
    return 0;
}

/* mkdir -p of the folder of the root-relative name (dirlen bytes of it), unless it is known. */
static int
folder_for(struct store_local *s, const char *name, size_t dirlen, int force)
{
    if (dirlen == 0 || (!force && known_dir(s, name, dirlen, 0)))
        return 0;
    char tmp[4096];
    if (dirlen >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, name, dirlen);
    tmp[dirlen] = '\0';
    return mkdir_rel(s, tmp);
}

/* mkdir -p for the directory part of an absolute or cwd-relative path (table files, the root). */
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
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
        *p = '/';
        if (rc != 0)
            return -1;
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
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

/* The file of a new object in the root-relative folder (dir, "" for the root): an unnamed one, or
 * the hidden temp file tmp (root-relative) created; -1 with errno. */
static int
open_file(struct store_local *s, const char *dir, const char *tmp)
{
    if (tmp)
        return openat(s->root_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    return openat(s->root_fd, *dir ? dir : ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
}

static struct bp_object *
local_object_open(struct bp_store *bs, const char *name, char *err, size_t errlen)
{
    struct store_local *s = (struct store_local *)bs;
    size_t nlen = strlen(name);
    const char *slash = strrchr(name, '/');
    size_t dirlen = slash ? (size_t)(slash - name) : 0;
    char dir[4096], tmp[4200];
    if (nlen >= sizeof(dir)) {
        snprintf(err, errlen, "%s/%s: %s", s->gcs_root, name, strerror(ENAMETOOLONG));
        return NULL;
    }
    memcpy(dir, name, dirlen);
    dir[dirlen] = '\0';
    if (!s->tmpfile)
        snprintf(tmp, sizeof(tmp), "%s%s.%s.tmp.%ld.%lu", dir, dirlen ? "/" : "",
                 slash ? slash + 1 : name, (long)getpid(), ++s->tmp_seq);
    /* a folder this store made or found is not made again; a backfill's object is mostly the
     * first of its hour, so an unknown folder is made first rather than tried and failed */
    int fd = -1;
    for (int force = 0; force < 2 && fd < 0; force++) {
        if (folder_for(s, name, dirlen, force) != 0) {
            snprintf(err, errlen, "cannot create the folder of %s/%s: %s", s->gcs_root, name,
                     strerror(errno));
            return NULL;
        }
        fd = open_file(s, dir, s->tmpfile ? NULL : tmp);
        if (fd < 0 && errno != ENOENT)
            break;
    }
    if (fd < 0) {
        if (s->tmpfile)
            snprintf(err, errlen, "%s/%s (unnamed): %s", s->gcs_root, name, strerror(errno));
        else
            snprintf(err, errlen, "%s/%s: %s", s->gcs_root, tmp, strerror(errno));
        return NULL;
    }
    struct bp_object *o = bp_xmalloc(sizeof(*o) + nlen + 1);
    o->s = s;
    o->fd = fd;
    o->tmp = s->tmpfile ? NULL : bp_xstrdup(tmp);
    memcpy(o->name, name, nlen + 1);
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
    free(o->tmp);
    free(o);
}

/* Gives the file of o the root-relative name `to`: a link of its temp name, or of its
 * descriptor: by AT_EMPTY_PATH where the kernel allows it to this process (probed), else
 * through /proc/self/fd (AT_EMPTY_PATH used to need CAP_DAC_READ_SEARCH). */
static int
link_as(const struct bp_object *o, const char *to)
{
    const struct store_local *s = o->s;
    if (o->tmp)
        return linkat(s->root_fd, o->tmp, s->root_fd, to, 0);
    if (s->flink)
        return linkat(o->fd, "", s->root_fd, to, AT_EMPTY_PATH);
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
    return linkat(AT_FDCWD, proc, s->root_fd, to, AT_SYMLINK_FOLLOW);
}

/* Links o's file under its name, adding _N before ".json" while the name exists. */
static int
link_unique(const struct bp_object *o, char *used, size_t usedlen)
{
    const char *final = o->name;
    size_t flen = strlen(final);
    const char *dot = flen > 5 && strcmp(final + flen - 5, ".json") == 0 ? final + flen - 5 : NULL;
    for (int n = 0; n < 10000; n++) {
        if (n == 0) {
            size_t k = flen < usedlen ? flen : usedlen - 1;
            memcpy(used, final, k);
            used[k] = '\0';
        } else if (dot)
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
        snprintf(msg, sizeof(msg), "%s/%s: %s", o->s->gcs_root, o->name, strerror(errno));
    else if (bp_log_level() >= BP_LOG_DEBUG)
        bp_log(BP_LOG_DEBUG, "archive", "finished %s/%s", o->s->gcs_root, used);
    /* errors of a file's writes were reported by write(); close only releases it */
    close(o->fd);
    if (o->tmp)
        unlinkat(o->s->root_fd, o->tmp, 0);
    object_free(o);
    done(arg, rc, rc ? msg : NULL, NULL, 0);
    return rc;
}

static void
local_object_abort(struct bp_object *o)
{
    close(o->fd);
    if (o->tmp)
        unlinkat(o->s->root_fd, o->tmp, 0);
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
    if (s->root_fd >= 0)
        close(s->root_fd);
    free(s->known);
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

/* Whether an unnamed file in the root can be linked into place: O_TMPFILE needs the file
 * system's support (ext4, xfs, btrfs, tmpfs) and the link AT_EMPTY_PATH (s->flink: Linux 6.10
 * allows it for a file this process opened) or /proc. */
static int
tmpfile_works(struct store_local *s)
{
    char name[64];
    snprintf(name, sizeof(name), ".probe.%ld", (long)getpid());
    int fd = open_file(s, "", NULL);
    if (fd < 0)
        return 0;
    s->flink = linkat(fd, "", s->root_fd, name, AT_EMPTY_PATH) == 0;
    int ok = s->flink;
    if (!ok) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ok = linkat(AT_FDCWD, proc, s->root_fd, name, AT_SYMLINK_FOLLOW) == 0;
    }
    if (ok)
        unlinkat(s->root_fd, name, 0);
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
    s->root_fd = open(s->gcs_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->root_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", s->gcs_root, strerror(errno));
        local_destroy(&s->base);
        return NULL;
    }
    s->known = bp_xcalloc(KNOWN_DIRS, sizeof(*s->known));
    s->tmpfile = tmpfile_works(s);
    return &s->base;
}

/* Whether objects are written as unnamed files (on where the file system allows it, the
 * default) or as hidden temp files; tests turn it off to cover both. */
void
bp_store_local_set_tmpfile(struct bp_store *bs, int on)
{
    struct store_local *s = (struct store_local *)bs;
    s->tmpfile = on && tmpfile_works(s);
}
