/* endpoints.h - base URLs of the three APIs: Google's hosts, or an emulator named by the
 * environment (PUBSUB_EMULATOR_HOST=host:port; STORAGE_EMULATOR_HOST and BIGQUERY_EMULATOR_HOST
 * as http://host:port, host:port, or a full base URL with its path) or by pipeline.lua. */
#ifndef BP_ENDPOINTS_H
#define BP_ENDPOINTS_H

#include "common.h"

struct bp_endpoints {
    char *pubsub;            /* ".../v1" */
    char *bigquery;          /* ".../bigquery/v2" */
    char *storage;           /* ".../storage/v1" */
    char *upload;            /* ".../upload/storage/v1" */
    int pubsub_emulated, bigquery_emulated, storage_emulated;
};

/* What an endpoint setting takes, for messages. */
#define BP_ENDPOINT_EXPECT "an http:// or https:// URL, or HOST:PORT"

int bp_endpoint_valid(const char *v);
int bp_endpoints_init(struct bp_endpoints *e, const char *pubsub, const char *bigquery,
                      const char *storage, char *err, size_t errlen) BP_WUR;
/* The BigQuery Storage Write API's gRPC endpoint: explicit (endpoints.bigquery_storage, may be
 * NULL), else $BIGQUERY_STORAGE_EMULATOR_HOST (HOST:PORT, h2c with prior knowledge, *emulated
 * 1), else bigquerystorage.googleapis.com:443 (TLS, *emulated 0). *host is malloc'd. Returns 0,
 * or -1 with err naming the setting or variable whose value is not HOST:PORT. */
int bp_endpoint_storage_write(const char *explicit_value, char **host, int *port, int *emulated,
                              char *err, size_t errlen) BP_WUR;
void bp_endpoints_free(struct bp_endpoints *e);
char *bp_url_escape(const char *s, int keep_slash);

#endif
