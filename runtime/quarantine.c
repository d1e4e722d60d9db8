/* quarantine.c - the suspects file (state_dir/suspects). One line per message that overran the
 * scripts' time budget: "<unix time> <kind> <fnv64 of the payload> <payload bytes> <id>".
 *
 * Why a file: a script stuck in compiled code cannot be interrupted (LuaJIT runs no hooks in
 * traces), so the watchdog ends the process; the message is then redelivered (Pub/Sub) or re-read
 * (a file source re-reads its file: same name and line give the same id). Without a record that
 * survives the restart, it would kill every new process too. The file is append-only, one write()
 * per line (O_APPEND keeps the lines of several workers whole), so the count of lines for a
 * message is how many times it was delivered without completing.
 *
 * A record matches a message only when the id AND the payload's hash and length match: file ids
 * are "<basename>:<line>", and another file of the same name must not be dead-lettered for it.
 * Records older than a week (Pub/Sub's longest retention) are dropped when the file is opened.
 *
 * Records of kind D count something else: deliveries of a message whose dead-letter row the
 * dead-letter table refused (batch.c), so that such a message is set aside after a bounded
 * number of attempts instead of looping. They carry the id only (hash and length 0: the row
 * refused holds a cut of the payload, not the payload), are kept apart from the others, and
 * never make a message a script suspect. */
#include "quarantine.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_AGE (7 * 86400L)
#define MAX_ENTRIES 100000

struct suspect {
    char *id;
    size_t id_len;
    uint64_t dhash;
    size_t dlen;
    int count;
    int refused;          /* a record of kind D (bp_quarantine_refusals) */
};

struct bp_quarantine {
    char path[4096];
    struct suspect *v;
    size_t n, cap;
    uint32_t *index;      /* open addressing on fnv(id): entry index + 1, 0 = empty */
    size_t index_cap;     /* power of two, > 2 n */
    ino_t ino;            /* the file read so far, and how far (bp_quarantine_refresh) */
    off_t loaded;
};

static void
reindex(struct bp_quarantine *q)
{
    free(q->index);
    q->index_cap = 64;
    while (q->index_cap <= q->n * 2)
        q->index_cap *= 2;
    q->index = bp_xcalloc(q->index_cap, sizeof(*q->index));
    for (size_t i = 0; i < q->n; i++) {
        size_t s = bp_fnv64(q->v[i].id, q->v[i].id_len) & (q->index_cap - 1);
        while (q->index[s])
            s = (s + 1) & (q->index_cap - 1);
        q->index[s] = (uint32_t)i + 1;
    }
}

/* The entry with this id and a payload of this hash and length, or NULL. The payload's hash is
 * computed only when the id is known (data != NULL: hash data[0..dlen) then; else dhash). */
static struct suspect *
find(const struct bp_quarantine *q, const char *id, size_t id_len, const char *data,
     uint64_t dhash, size_t dlen, int refused)
{
    if (!q->index_cap)
        return NULL;
    int hashed = data == NULL;
    size_t s = bp_fnv64(id, id_len) & (q->index_cap - 1);
    for (; q->index[s]; s = (s + 1) & (q->index_cap - 1)) {
        struct suspect *e = &q->v[q->index[s] - 1];
        if (e->refused != refused || e->id_len != id_len || e->dlen != dlen ||
            memcmp(e->id, id, id_len) != 0)
            continue;
        if (!hashed) {
            dhash = bp_fnv64(data, dlen);
            hashed = 1;
        }
        if (e->dhash == dhash)
            return e;
    }
    return NULL;
}

/* Counts one more delivery of (id, payload); the index is rebuilt when it gets half full. */
static void
remember(struct bp_quarantine *q, const char *id, size_t id_len, uint64_t dhash, size_t dlen,
         int refused)
{
    struct suspect *e = find(q, id, id_len, NULL, dhash, dlen, refused);
    if (e) {
        e->count++;
        return;
    }
    if (q->n >= MAX_ENTRIES)
        return;
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->v = bp_xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->n++] = (struct suspect){ bp_xstrndup(id, id_len), id_len, dhash, dlen, 1, refused };
    if (q->n * 2 >= q->index_cap)
        reindex(q);
    else {
        size_t s = bp_fnv64(id, id_len) & (q->index_cap - 1);
        while (q->index[s])
            s = (s + 1) & (q->index_cap - 1);
        q->index[s] = (uint32_t)q->n;
    }
}

/* Parses one line into the table. Returns 1 when kept, 0 when expired or malformed. */
static int
parse_line(struct bp_quarantine *q, char *line, time_t now)
{
    long when;
    char kind;
    unsigned long long dhash;
    size_t dlen;
    int off = 0;
    if (sscanf(line, "%ld %c %llx %zu %n", &when, &kind, &dhash, &dlen, &off) != 4 || !off)
        return 0;
    if (now - when > MAX_AGE)
        return 0;
    char *id = line + off;
    size_t len = strcspn(id, "\n");
    if (!len)
        return 0;
    remember(q, id, len, (uint64_t)dhash, dlen, kind == BP_SUSPECT_REFUSED);
    return 1;
}

static void
clear(struct bp_quarantine *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i].id);
    q->n = 0;
    if (q->index)
        memset(q->index, 0, q->index_cap * sizeof(*q->index));
}

/* Reads the file; when some records expired, writes back the others (temp file + rename). */
static int
load(struct bp_quarantine *q, char *err, size_t errlen)
{
    FILE *f = fopen(q->path, "r");
    if (!f)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", q->path, strerror(errno)), -1);
    char *line = NULL, *kept = NULL;
    size_t cap = 0, kept_len = 0, dropped = 0;
    ssize_t len;
    time_t now = time(NULL);
    while ((len = getline(&line, &cap, f)) > 0) {
        if (parse_line(q, line, now)) {
            kept = bp_xrealloc(kept, kept_len + (size_t)len + 1);
            memcpy(kept + kept_len, line, (size_t)len);
            kept_len += (size_t)len;
        } else {
            dropped++;
        }
    }
    fclose(f);
    free(line);
    if (dropped) {
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", q->path, (long)getpid());
        FILE *o = fopen(tmp, "w");
        if (o && fwrite(kept ? kept : "", 1, kept_len, o) == kept_len && fclose(o) == 0)
            (void)rename(tmp, q->path);
        else if (o)
            (void)unlink(tmp);
    }
    free(kept);
    return 0;
}

static int
mkdir_p(char *dir)
{
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(dir, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* Where the suspects file lives unless state_dir says otherwise: systemd's $STATE_DIRECTORY,
 * $XDG_STATE_HOME/bepipe-lua, ~/.local/state/bepipe-lua, else /tmp/bepipe-lua-<uid>; all work
 * unprivileged. */
void
bp_quarantine_default_dir(char *out, size_t outlen)
{
    const char *s = getenv("STATE_DIRECTORY"), *x = getenv("XDG_STATE_HOME"),
               *home = getenv("HOME");
    if (s && *s)
        snprintf(out, outlen, "%.*s", (int)strcspn(s, ":"), s);
    else if (x && *x == '/')
        snprintf(out, outlen, "%s/bepipe-lua", x);
    else if (home && *home == '/')
        snprintf(out, outlen, "%s/.local/state/bepipe-lua", home);
    else
        snprintf(out, outlen, "/tmp/bepipe-lua-%ld", (long)getuid());
}

/* Creates dir (mode 0700, parents too) and loads dir/suspects. Returns the table, or NULL with
 * err set when the folder cannot be made or the file not read. Start-up only. */
struct bp_quarantine *
bp_quarantine_open(const char *dir, char *err, size_t errlen)
{
    struct bp_quarantine *q = bp_xcalloc(1, sizeof(*q));
    char d[4000];
    snprintf(d, sizeof(d), "%s", dir);
    snprintf(q->path, sizeof(q->path), "%s/suspects", d);
    if (mkdir_p(d) != 0) {
        snprintf(err, errlen, "state_dir %s: %s", d, strerror(errno));
        goto fail;
    }
    /* the first pass drops expired records from the file; the table is then read afresh */
    if (load(q, err, errlen) != 0)
        goto fail;
    clear(q);
    if (bp_quarantine_refresh(q) != 0) {
        snprintf(err, errlen, "%s: %s", q->path, strerror(errno));
        goto fail;
    }
    return q;
fail:
    bp_quarantine_free(q);
    return NULL;
}

/* Reads the records appended since the last call (by this process or another worker sharing the
 * folder); a file replaced meanwhile (pruned at another worker's start) is read again whole. A
 * line still being written is left for the next call. Returns 0, or -1 (errno). */
int
bp_quarantine_refresh(struct bp_quarantine *q)
{
    FILE *f = fopen(q->path, "r");
    struct stat st;
    if (!f)
        return errno == ENOENT ? 0 : -1;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return -1;
    }
    if (st.st_ino != q->ino || st.st_size < q->loaded) {
        clear(q);
        q->ino = st.st_ino;
        q->loaded = 0;
    }
    if (st.st_size == q->loaded || fseeko(f, q->loaded, SEEK_SET) != 0) {
        fclose(f);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    time_t now = time(NULL);
    while ((len = getline(&line, &cap, f)) > 0 && line[len - 1] == '\n') {
        (void)parse_line(q, line, now);
        q->loaded += len;
    }
    free(line);
    fclose(f);
    return 0;
}

/* Frees the table (the file stays). NULL-safe. */
void
bp_quarantine_free(struct bp_quarantine *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i].id);
    free(q->v);
    free(q->index);
    free(q);
}

/* Suspects known; 0 means the runtime can skip the look-ups altogether. */
size_t
bp_quarantine_count(const struct bp_quarantine *q)
{
    return q ? q->n : 0;
}

/* The suspects file's path, for log lines and reasons. */
const char *
bp_quarantine_path(const struct bp_quarantine *q)
{
    return q->path;
}

/* How many deliveries of m did not complete (0: not a suspect). Hashes the payload only when the
 * id is known. */
int
bp_quarantine_attempts(const struct bp_quarantine *q, const bp_msg_t *m)
{
    if (!q || !q->n || !m->id_len)
        return 0;
    struct suspect *e = find(q, m->id, m->id_len, m->data ? m->data : "", 0, m->len, 0);
    return e ? e->count : 0;
}

/* One record (kind BP_SUSPECT_*) as a line of the suspects file, into line (at least
 * BP_QUARANTINE_LINE bytes). Returns its length. Formats only: safe on any thread. */
static size_t
format_record(int kind, const char *id, size_t id_len, uint64_t dhash, size_t dlen, char *line)
{
    size_t idn = id_len < 400 ? id_len : 400;
    int n = snprintf(line, BP_QUARANTINE_LINE, "%ld %c %016llx %zu ", (long)time(NULL), kind,
                     (unsigned long long)dhash, dlen);
    for (size_t i = 0; i < idn; i++)   /* one record per line, whatever the id holds */
        line[n++] = id[i] == '\n' || id[i] == '\r' ? '?' : id[i];
    line[n++] = '\n';
    return (size_t)n;
}

/* One record of m (kind BP_SUSPECT_*) as a line of the suspects file, into line (at least
 * BP_QUARANTINE_LINE bytes). Returns its length. Formats only: safe on any thread. */
size_t
bp_quarantine_format(const bp_msg_t *m, int kind, char *line)
{
    return format_record(kind, m->id, m->id_len, bp_fnv64(m->data, m->len), m->len, line);
}

/* Appends records made by bp_quarantine_format (len bytes of whole lines) with one write and
 * one fsync, so they survive the _exit that may follow. The table in memory learns them at the
 * next bp_quarantine_refresh, like the records of other workers. Runs on the loop thread after a
 * batch, or on the watchdog thread while the loop thread is stuck in Lua, never both at once.
 * Returns 0, or -1 (errno) when the file cannot be written. */
int
bp_quarantine_append(struct bp_quarantine *q, const char *lines, size_t len)
{
    if (!len)
        return 0;
    int fd = open(q->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = write(fd, lines, len) == (ssize_t)len ? 0 : -1;
    if (fsync(fd) != 0)
        rc = -1;
    close(fd);
    return rc;
}

/* Records m (kind BP_SUSPECT_*) at once: bp_quarantine_format + bp_quarantine_append. */
int
bp_quarantine_add(struct bp_quarantine *q, const bp_msg_t *m, int kind)
{
    char line[BP_QUARANTINE_LINE];
    size_t n = bp_quarantine_format(m, kind, line);
    return bp_quarantine_append(q, line, n);
}

/* Deliveries of the message id whose dead-letter row was refused, as recorded so far (by this
 * process or another worker sharing state_dir): the file is read up to date first. NULL-safe
 * (0). Loop thread only. */
int
bp_quarantine_refusals(struct bp_quarantine *q, const char *id, size_t id_len)
{
    if (!q || !id_len)
        return 0;
    if (bp_quarantine_refresh(q) != 0)
        bp_log(BP_LOG_WARN, "quarantine", "%s: %s", q->path, strerror(errno));
    if (id_len > 400)
        id_len = 400;       /* as recorded */
    struct suspect *e = find(q, id, id_len, NULL, 0, 0, 1);
    return e ? e->count : 0;
}

/* Records one more refused dead letter of the message id (kind D), appended and synced: the
 * next delivery, here or in another worker, counts it. Returns 0, or -1 (errno). */
int
bp_quarantine_add_refusal(struct bp_quarantine *q, const char *id, size_t id_len)
{
    char line[BP_QUARANTINE_LINE];
    size_t n = format_record(BP_SUSPECT_REFUSED, id, id_len, 0, 0, line);
    return bp_quarantine_append(q, line, n);
}
