/* tables_create.h - `--create-tables`: dataset and tables from ddl/ before pulling starts. */
#ifndef BP_TABLES_CREATE_H
#define BP_TABLES_CREATE_H

#include "common.h"

struct bp_api;
typedef void (*bp_tables_done_fn)(void *arg, int status);

void bp_tables_create(struct bp_api *api, const char *base, const char *project,
                      const char *dataset, char **bodies, size_t n, bp_tables_done_fn done,
                      void *arg);

#endif
