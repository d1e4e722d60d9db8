/* insert_reply.h - reading the insertErrors of a tabledata.insertAll reply. */
#ifndef BP_INSERT_REPLY_H
#define BP_INSERT_REPLY_H

#include "common.h"
#include "store.h"

/* Reads the insertErrors of an insertAll reply (body[0..len), a request of nrows rows). Rows
 * whose first reason is "invalid" (a bad row: its dead letter) go to *errs, each reason a string
 * in *reasons (errs[i].reason == reasons[i]; the caller frees every reasons[i], then both
 * arrays). Any other reason ("stopped", "backendError", "timeout") or an index that names no row
 * sent fails the whole reply: it is retried through redelivery, and insertId de-duplication
 * absorbs the rows that did land. Returns the number of errs (0: every row stored), or -1 with
 * err set and nothing to free. Pure: no I/O; safe anywhere. */
long bp_insert_reply_errors(const char *body, size_t len, size_t nrows,
                            struct bp_row_error **errs, char ***reasons, char *err,
                            size_t errlen) BP_WUR;

#endif
