/* replay.h - `bepipe-lua replay`: archived NDJSON (gs://bucket/prefix or local files and folders)
 * read back through the same route/validate/map/schema path into the tables.
 *
 * Which objects (replay_list.c): every object under each SOURCE, in name order, but the
 * dead-letter folder (errors/) and quarantine/ (messages set aside, set_aside.c) unless the
 * SOURCE itself points into them (both count as dead_folder), objects whose folder hour
 * does not overlap [--since, --until), and objects --resume FILE lists as finished.
 * Message ids, used as insertIds (replay_list.c): "<basename>@<hash>:<line>", the hash a 64-bit
 * FNV-1a of the object's identity: gs://B/NAME#GENERATION, or for a local file its real path,
 * size and mtime; so the same object replayed twice gives the same insertIds and BigQuery drops
 * the second copy within its de-duplication window. */
#ifndef BP_REPLAY_H
#define BP_REPLAY_H

#include <stdio.h>

#include "common.h"
#include "source.h"

struct bp_replay_opts {
    char **sources;             /* gs://B/PREFIX, or local files and folders */
    size_t nsources;
    int has_since, has_until;
    double since, until;        /* unix seconds: folder hours overlapping [since, until) */
    int dry_run;                /* list what would be replayed, read nothing */
    const char *resume;         /* finished objects, one identity a line; NULL = none */
    double max_rate;            /* events/s; 0 = as fast as the sinks take them */
    int archive;                /* write the raw archive again (off: it came from there) */
    double progress_seconds;    /* plain progress line interval when stderr is not a terminal */
    int remote;                 /* a SOURCE is gs://: the Cloud Storage API is needed */
};

/* One object to replay. */
struct bp_replay_obj {
    char *label;                /* gs://B/NAME, or the path: for logs */
    char *bucket;               /* NULL for a local file */
    char *name;                 /* the object name, or the path */
    char *generation;           /* NULL for a local file */
    uint64_t size;
    double hour;                /* start of its folder hour (unix seconds), or -1 */
    char *key;                  /* identity, as --resume records it */
    char idbase[96];            /* message ids are "<idbase>:<line>" */
    unsigned long lines;        /* read so far */
    unsigned long pending;      /* lines handed on and not yet stored */
    int read_done, failed, finished;
};

/* The objects of a replay and what the selection left out. */
struct bp_replay_list {
    struct bp_replay_obj *v;
    size_t n, cap;
    uint64_t bytes;             /* of the selected objects */
    unsigned long out_of_range, dead_folder, resumed;
    char **done_keys;           /* --resume FILE's identities, sorted */
    size_t ndone;
};

/* ---- replay_list.c ---- */

/* "2025-03-01", "2025-03-01T12", "2025-03-01T12:30[:00][Z]" or RFC 3339 with an offset -> unix
 * seconds (UTC unless an offset is given). Returns 0, or -1 when s is none of these. */
int bp_replay_parse_time(const char *s, double *out) BP_WUR;

/* Reads the identities of finished objects from path (a missing file is an empty list).
 * Returns 0, or -1 with err set. */
int bp_replay_list_load_resume(struct bp_replay_list *l, const char *path, char *err,
                               size_t errlen) BP_WUR;

/* Adds the object (a gs:// object when bucket is set, else the local file at name) if the
 * selection keeps it. source is the SOURCE argument it was found under. Returns 0, or -1 with
 * err set (a local file that cannot be read). */
int bp_replay_list_add(struct bp_replay_list *l, const struct bp_replay_opts *o,
                       const char *dead_prefix, const char *source, const char *bucket,
                       const char *name, const char *generation, uint64_t size, char *err,
                       size_t errlen) BP_WUR;

/* Adds every archive file under the local path (a file, or a folder walked recursively: *.json
 * and *.ndjson, hidden files skipped), in name order. Returns 0, or -1 with err set. */
int bp_replay_list_scan(struct bp_replay_list *l, const struct bp_replay_opts *o,
                        const char *dead_prefix, const char *path, char *err,
                        size_t errlen) BP_WUR;

/* Splits "gs://B/PREFIX" (PREFIX may be empty). Returns 1 when s is a gs:// URL (bucket and
 * prefix allocated), 0 when it is not, -1 when it is one without a bucket. */
int bp_replay_split_gs(const char *s, char **bucket, char **prefix);

void bp_replay_list_free(struct bp_replay_list *l);

/* --dry-run's output: every selected object and its size, then the totals and what was left
 * out. */
void bp_replay_list_print(const struct bp_replay_list *l, FILE *out);

/* ---- source_replay.c ---- */

/* What a replay did, for the summary. */
struct bp_replay_counts {
    size_t objects, objects_done, objects_failed;
    unsigned long lines, skipped_resume, out_of_range, dead_folder;
    uint64_t bytes_total, bytes_read;
};

/* The replay source: lists the objects, then reads them one after the other as NDJSON, each line
 * a message with an ack slot; an object is recorded in --resume once all its lines are stored.
 * api/base: the Cloud Storage API and its ".../storage/v1" (NULL when every SOURCE is local).
 * Returns the source (it starts with ops->start), or NULL with err set. */
struct bp_source *bp_source_replay_new(struct bp_rt *rt, const struct bp_replay_opts *o,
                                       struct bp_api *api, const char *base, char *err,
                                       size_t errlen);
/* The counts of a replay source (s must be one). */
void bp_source_replay_counts(struct bp_source *s, struct bp_replay_counts *out);

/* ---- replay.c ---- */

/* Where a replay is. */
struct bp_replay_progress {
    size_t objects_read, objects, objects_done;
    unsigned long lines;
    uint64_t bytes_read, bytes_total;
    double seconds;             /* since reading started */
};

/* Prints p on stderr: bar = 1 as a progress bar redrawn in place (a terminal; the caller ends
 * the line with '\n' when done), else as a `replay: progress` log line. */
void bp_replay_progress_print(const struct bp_replay_progress *p, int bar);

/* The summary of a replay after its run: objects, lines, rows, dead letters, seconds, events/s,
 * on stderr through the log. */
void bp_replay_summary(struct bp_rt *rt);

#endif
