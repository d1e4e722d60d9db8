/* quarantine.h - the suspects file: messages that were running when a script overran its time
 * budget, so that after a restart they are dead-lettered on sight instead of looping forever. */
#ifndef BP_QUARANTINE_H
#define BP_QUARANTINE_H

#include "bp_ffi.h"
#include "common.h"

struct bp_quarantine;

/* Kinds of record: the event was interrupted by the time budget (and dead-lettered), or it was
 * still running when the watchdog ended the process; or the dead-letter table refused the
 * message's dead-letter row (counted apart: such a message is no script suspect). */
enum { BP_SUSPECT_TIMEOUT = 'T', BP_SUSPECT_KILLED = 'K', BP_SUSPECT_REFUSED = 'D' };

/* The archive folder (under the archive prefix) of messages set aside (set_aside.c). */
#define BP_QUARANTINE_FOLDER "quarantine"

struct bp_quarantine *bp_quarantine_open(const char *dir, char *err, size_t errlen);
void bp_quarantine_free(struct bp_quarantine *q);
size_t bp_quarantine_count(const struct bp_quarantine *q);
const char *bp_quarantine_path(const struct bp_quarantine *q);
int bp_quarantine_attempts(const struct bp_quarantine *q, const bp_msg_t *m);
int bp_quarantine_refresh(struct bp_quarantine *q) BP_WUR;
int bp_quarantine_add(struct bp_quarantine *q, const bp_msg_t *m, int kind) BP_WUR;

/* The longest record line (an id is cut at 400 bytes). */
#define BP_QUARANTINE_LINE 512
size_t bp_quarantine_format(const bp_msg_t *m, int kind, char *line);
int bp_quarantine_append(struct bp_quarantine *q, const char *lines, size_t len) BP_WUR;
void bp_quarantine_default_dir(char *out, size_t outlen);
int bp_quarantine_refusals(struct bp_quarantine *q, const char *id, size_t id_len);
int bp_quarantine_add_refusal(struct bp_quarantine *q, const char *id, size_t id_len) BP_WUR;

#endif
