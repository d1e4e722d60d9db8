/* httpd.h - the operator's HTTP listener (http.listen / --http ADDR:PORT): GET /metrics,
 * /healthz, /readyz and POST /reload, served by libmicrohttpd on the runtime's libev loop. */
#ifndef BP_HTTPD_H
#define BP_HTTPD_H

#include <ev.h>
#include <sys/socket.h>

#include "common.h"

struct bp_rt;
struct bp_httpd;

/* Parses "HOST:PORT", "[IPV6]:PORT" or ":PORT" (= every IPv4 address) into ss; HOST may be a
 * name (resolved now, blocking: start-up only). Sets *is_v6. Returns 0, or -1 with err set. */
int bp_httpd_parse_addr(const char *addr, struct sockaddr_storage *ss, int *is_v6, char *err,
                        size_t errlen) BP_WUR;

/* Listens on addr and answers from loop (never blocking it). The runtime is read (metrics,
 * readiness) and reloaded (POST /reload) from inside loop callbacks, between batches. Returns
 * the listener, or NULL with err set (bad address, port in use). */
struct bp_httpd *bp_httpd_new(struct bp_rt *rt, struct ev_loop *loop, const char *addr,
                              char *err, size_t errlen);
/* The port listened on (the real one when addr asked for port 0). */
int bp_httpd_port(const struct bp_httpd *h);
/* Closes the listener and every connection; stops its watchers. NULL is fine. */
void bp_httpd_free(struct bp_httpd *h);

#endif
