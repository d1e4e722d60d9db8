/* preflight.h - checks that the subscription, dataset, tables and bucket exist and that the
 * credentials give a token, before the first pull (preflight.c). */
#ifndef BP_PREFLIGHT_H
#define BP_PREFLIGHT_H

#include <ev.h>

#include "api.h"

struct bp_preflight;

/* ok = 1: every check passed (msg ""); ok = 0: msg is one line naming what is missing and how to
 * fix it. Runs once, from the loop; inside bp_preflight_start only when nothing was added. */
typedef void (*bp_preflight_done_fn)(void *arg, int ok, const char *msg);

struct bp_preflight *bp_preflight_new(struct ev_loop *loop, double timeout, const char *auth_hint,
                                      bp_preflight_done_fn done, void *arg);
void bp_preflight_add(struct bp_preflight *p, struct bp_api *api, const char *url,
                      const char *what, const char *fix, const char *role, int forbidden_ok);
void bp_preflight_start(struct bp_preflight *p);
void bp_preflight_free(struct bp_preflight *p);

#endif
