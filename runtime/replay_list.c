/* replay_list.c - which archive objects a replay reads, and the identity of each (see replay.h):
 * local folders walked in name order, the folder hour taken from the name's .../YYYY/MM/DD/HH/
 * part, the selection by hour, dead-letter folder and --resume FILE, and the message ids. */
#include "log.h"
#include "quarantine.h"
#include "replay.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int
digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return 0;
    return 1;
}

static long
num(const char *p, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static double
utc(long y, long mo, long d, long h, long mi, long s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)y - 1900;
    tm.tm_mon = (int)mo - 1;
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)s;
    return (double)timegm(&tm);
}

/* See replay.h. Fractions of a second are ignored: the selection is by hour. */
int
bp_replay_parse_time(const char *s, double *out)
{
    size_t n = strlen(s);
    long f[6] = {0, 1, 1, 0, 0, 0};
    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return -1;
    f[0] = num(s, 4), f[1] = num(s + 5, 2), f[2] = num(s + 8, 2);
    const char *p = s + 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        for (int i = 3; i < 6 && digits(p, 2); i++) {
            f[i] = num(p, 2);
            p += 2;
            if (*p != ':' || i == 5)
                break;
            p++;
        }
        if (p == s + 11)
            return -1;
        if (*p == '.')
            for (p++; isdigit((unsigned char)*p); p++)
                ;
    }
    double off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2)) {
        off = (double)(num(p + 1, 2) * 3600 + num(p + 4, 2) * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 ||
        f[5] > 60)
        return -1;
    *out = utc(f[0], f[1], f[2], f[3], f[4], f[5]) - off;
    return 0;
}

/* The folder hour of an archive name ".../TYPE/YYYY/MM/DD/HH/FILE", and TYPE (a pointer into
 * name, its length in *type_len). Returns the hour's start, or -1 for a name not laid out so. */
static double
folder_hour(const char *name, const char **type, size_t *type_len)
{
    const char *seg[7];
    size_t len[7];
    int n = 0;
    const char *end = name + strlen(name);
    /* the last seven '/'-separated parts, from the end: FILE, HH, DD, MM, YYYY, TYPE */
    while (n < 6) {
        const char *slash = end;
        while (slash > name && slash[-1] != '/')
            slash--;
        seg[n] = slash;
        len[n] = (size_t)(end - slash);
        n++;
        if (slash == name)
            break;
        end = slash - 1;
    }
    if (n < 6 || len[1] != 2 || len[2] != 2 || len[3] != 2 || len[4] != 4 ||
        !digits(seg[1], 2) || !digits(seg[2], 2) || !digits(seg[3], 2) || !digits(seg[4], 4))
        return -1;
    long h = num(seg[1], 2), d = num(seg[2], 2), mo = num(seg[3], 2);
    if (h > 23 || d < 1 || d > 31 || mo < 1 || mo > 12)
        return -1;
    *type = seg[5];
    *type_len = len[5];
    return utc(num(seg[4], 4), mo, d, h, 0, 0);
}

/* Whether path has a '/'-separated part equal to part. */
static int
has_part(const char *path, const char *part)
{
    size_t n = strlen(part);
    for (const char *p = path; (p = strstr(p, part)) != NULL; p += n)
        if ((p == path || p[-1] == '/') && (p[n] == '/' || p[n] == '\0'))
            return 1;
    return 0;
}

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* See replay.h. */
int
bp_replay_list_load_resume(struct bp_replay_list *l, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, have = 0;
    ssize_t n;
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "--resume %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;   /* a torn last line of a crash is never a whole identity */
        if (l->ndone == have) {
            have = have ? have * 2 : 64;
            l->done_keys = bp_xrealloc(l->done_keys, have * sizeof(*l->done_keys));
        }
        l->done_keys[l->ndone++] = bp_xstrdup(line);
    }
    free(line);
    fclose(f);
    if (l->ndone)
        qsort(l->done_keys, l->ndone, sizeof(*l->done_keys), cmp_str);
    return 0;
}

/* Whether the selection keeps an object of that name found under source. */
static int
selected(struct bp_replay_list *l, const struct bp_replay_opts *o, const char *dead_prefix,
         const char *source, const char *name, double hour, const char *type, size_t type_len)
{
    if (hour >= 0 && dead_prefix && *dead_prefix && type_len == strlen(dead_prefix) &&
        memcmp(type, dead_prefix, type_len) == 0 && !has_part(source, dead_prefix)) {
        l->dead_folder++;   /* dead letters are replayed only when asked for by name */
        return 0;
    }
    /* nor messages set aside (set_aside.c): their lines are records about a refused dead letter,
     * not events */
    if (hour >= 0 && type_len == strlen(BP_QUARANTINE_FOLDER) &&
        memcmp(type, BP_QUARANTINE_FOLDER, type_len) == 0 &&
        !has_part(source, BP_QUARANTINE_FOLDER)) {
        l->dead_folder++;
        return 0;
    }
    if ((o->has_since || o->has_until) &&
        (hour < 0 || (o->has_since && hour + 3600 <= o->since) ||
         (o->has_until && hour >= o->until))) {
        l->out_of_range++;
        return 0;
    }
    (void)name;
    return 1;
}

static struct bp_replay_obj *
push(struct bp_replay_list *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = bp_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    struct bp_replay_obj *ob = &l->v[l->n++];
    memset(ob, 0, sizeof(*ob));
    return ob;
}

/* The identity of a local file: its real path, size and mtime (a file rewritten in place is a new
 * object, as a new generation is in GCS). */
static char *
local_key(const char *path, uint64_t *size, char *err, size_t errlen)
{
    struct stat st;
    char *real = realpath(path, NULL);
    if (!real || stat(real, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        free(real);
        return NULL;
    }
    size_t n = strlen(real) + 64;
    char *key = bp_xmalloc(n);
    snprintf(key, n, "%s#%" PRIu64 ":%ld.%09ld", real, (uint64_t)st.st_size,
             (long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    *size = (uint64_t)st.st_size;
    free(real);
    return key;
}

/* See replay.h. */
int
bp_replay_list_add(struct bp_replay_list *l, const struct bp_replay_opts *o,
                   const char *dead_prefix, const char *source, const char *bucket,
                   const char *name, const char *generation, uint64_t size, char *err,
                   size_t errlen)
{
    const char *type = "";
    size_t type_len = 0;
    double hour = folder_hour(name, &type, &type_len);
    char *key;
    if (!selected(l, o, dead_prefix, source, name, hour, type, type_len))
        return 0;
    if (bucket) {
        size_t n = strlen(bucket) + strlen(name) + strlen(generation) + 8;
        key = bp_xmalloc(n);
        snprintf(key, n, "gs://%s/%s#%s", bucket, name, generation);
    } else if (!(key = local_key(name, &size, err, errlen))) {
        return -1;
    }
    if (l->ndone && bsearch(&key, l->done_keys, l->ndone, sizeof(char *), cmp_str)) {
        l->resumed++;
        free(key);
        return 0;
    }
    struct bp_replay_obj *ob = push(l);
    ob->key = key;
    ob->bucket = bucket ? bp_xstrdup(bucket) : NULL;
    ob->name = bp_xstrdup(name);
    ob->generation = generation ? bp_xstrdup(generation) : NULL;
    ob->size = size;
    ob->hour = hour;
    if (bucket) {
        size_t n = strlen(bucket) + strlen(name) + 8;
        ob->label = bp_xmalloc(n);
        snprintf(ob->label, n, "gs://%s/%s", bucket, name);
    } else {
        ob->label = bp_xstrdup(name);
    }
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    /* <= 60 + 1 + 16 bytes, so "<idbase>:<line>" stays far below BigQuery's 128 */
    snprintf(ob->idbase, sizeof(ob->idbase), "%.60s@%016" PRIx64, base, fnv1a(key));
    l->bytes += size;
    return 0;
}

static int
archive_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && strcmp(name + n - 5, ".json") == 0) ||
                              (n > 7 && strcmp(name + n - 7, ".ndjson") == 0));
}

/* Collects the archive files under dir into *v (paths allocated). */
static int
walk(const char *dir, char ***v, size_t *n, size_t *cap, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t plen = strlen(dir) + strlen(e->d_name) + 2;
        char *p = bp_xmalloc(plen);
        struct stat st;
        snprintf(p, plen, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = walk(p, v, n, cap, err, errlen);
        } else if (S_ISREG(st.st_mode) && archive_file(e->d_name)) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 64;
                *v = bp_xrealloc(*v, *cap * sizeof(**v));
            }
            (*v)[(*n)++] = p;
            continue;
        }
        free(p);
    }
    closedir(d);
    return rc;
}

/* See replay.h. */
int
bp_replay_list_scan(struct bp_replay_list *l, const struct bp_replay_opts *o,
                    const char *dead_prefix, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return bp_replay_list_add(l, o, dead_prefix, path, NULL, path, NULL, 0, err, errlen);
    char **files = NULL;
    size_t n = 0, cap = 0;
    int rc = walk(path, &files, &n, &cap, err, errlen);
    if (rc == 0 && n)
        qsort(files, n, sizeof(*files), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = bp_replay_list_add(l, o, dead_prefix, path, NULL, files[i], NULL, 0, err,
                                    errlen);
        free(files[i]);
    }
    free(files);
    return rc;
}

/* See replay.h. */
int
bp_replay_split_gs(const char *s, char **bucket, char **prefix)
{
    if (strncmp(s, "gs://", 5) != 0)
        return 0;
    const char *b = s + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen == 0)
        return -1;
    *bucket = bp_xstrndup(b, blen);
    *prefix = bp_xstrdup(slash ? slash + 1 : "");
    return 1;
}

/* See replay.h. */
void
bp_replay_list_print(const struct bp_replay_list *l, FILE *out)
{
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "%s\t%" PRIu64 "\n", l->v[i].label, l->v[i].size);
    fprintf(out, "dry run: %zu objects, %" PRIu64 " bytes would be replayed; left out: %lu "
            "finished (--resume), %lu outside --since/--until, %lu in the dead-letter folder\n",
            l->n, l->bytes, l->resumed, l->out_of_range, l->dead_folder);
    fflush(out);
}

/* Frees the objects and the --resume identities; l is empty after (NULL is fine). */
void
bp_replay_list_free(struct bp_replay_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].label);
        free(l->v[i].bucket);
        free(l->v[i].name);
        free(l->v[i].generation);
        free(l->v[i].key);
    }
    free(l->v);
    for (size_t i = 0; i < l->ndone; i++)
        free(l->done_keys[i]);
    free(l->done_keys);
    memset(l, 0, sizeof(*l));
}
