/* httpd.h - the operator's HTTP listener (http.listen / --http ADDR:PORT): GET /metrics,
 * /healthz, /readyz and POST /reload, served by libmicrohttpd on the runtime's libev loop. */
#ifndef BP_HTTPD_H
#define BP_HTTPD_H

#include <ev.h>
#include <sys/socket.h>

#include "buf.h"
#include "common.h"

struct bp_httpd;

/* What the listener asks of the runtime. Every call is made from a callback of the loop given
 * to bp_httpd_new, between batches; ctx is passed back as is. */
struct bp_httpd_ops {
    void *ctx;
    const char *pipeline;       /* named in the log of POST /reload */
    /* GET /metrics: the exposition appended to out; 0, or -1 when out's maximum was reached. */
    int (*render_metrics)(void *ctx, bp_buf_t *out);
    /* GET /readyz: 1, or 0 with the reason in why. */
    int (*ready)(void *ctx, char *why, size_t whylen);
    /* 1 while the process drains (POST /reload is then refused). */
    int (*draining)(void *ctx);
    /* POST /reload: 0 swapped, 1 waiting for the tables' patch, -1 kept with the reason in err
     * (bp_rt_reload_err). */
    int (*reload)(void *ctx, char *err, size_t errlen);
    /* The generation of the scripts running now. */
    int (*generation)(void *ctx);
};

/* Parses "HOST:PORT", "[IPV6]:PORT" or ":PORT" (= every IPv4 address) into ss; HOST may be a
 * name (resolved now, blocking: start-up only). Sets *is_v6. Returns 0, or -1 with err set. */
int bp_httpd_parse_addr(const char *addr, struct sockaddr_storage *ss, int *is_v6, char *err,
                        size_t errlen) BP_WUR;

/* Listens on addr and answers from loop (never blocking it), through ops (copied; every
 * callback must be set, and ops->pipeline outlive the listener). Returns the listener, or NULL
 * with err set (bad address, port in use). */
struct bp_httpd *bp_httpd_new(const struct bp_httpd_ops *ops, struct ev_loop *loop,
                              const char *addr, char *err, size_t errlen);
/* The port listened on (the real one when addr asked for port 0). */
int bp_httpd_port(const struct bp_httpd *h);
/* Closes the listener and every connection; stops its watchers. NULL is fine. */
void bp_httpd_free(struct bp_httpd *h);

#endif
