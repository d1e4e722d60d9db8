/* testmode.h - `bepipe-lua test PIPELINE EVENTS`: route/validate/map offline, print each outcome. */
#ifndef BP_TESTMODE_H
#define BP_TESTMODE_H

#include "lua_host.h"
#include "schema.h"
#include <stdio.h>

int bp_testmode_run(struct bp_lua_host *h, const struct bp_schema_set *schemas,
                    const char *events_path, FILE *out);
int bp_testmode_check_samples(struct bp_lua_host *h, const struct bp_schema_set *schemas,
                              const char *events_path, FILE *out);

#endif
