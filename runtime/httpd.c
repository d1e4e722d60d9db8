/* httpd.c - /metrics, /healthz, /readyz and POST /reload on the runtime's own loop.
 *
 * How libmicrohttpd is driven: MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD, i.e. MHD
 * keeps its listen socket and connections in an epoll set of its own and never runs a thread;
 * the loop watches that one epoll fd (an epoll fd is readable while any socket in it is ready)
 * with an ev_io, and an ev_timer carries MHD_get_timeout() (connection timeouts, and 0 when
 * MHD still has buffered work: its sockets are edge-triggered). Both call MHD_run(), which does
 * not block. Why this and not the alternatives: an internal thread would read the runtime's
 * counters and run a reload concurrently with the loop (the runtime has no locks, on purpose);
 * MHD_get_fdset + select-style integration means re-registering every fd with libev on every
 * turn; the epoll fd is one watcher that never changes.
 *
 * Every answer is computed at once inside MHD_run (nothing waits on I/O), so a request costs the
 * loop the time to render it. A slow or hostile client cannot stall the pipeline: sockets are
 * non-blocking, at most MAX_CONNECTIONS are accepted, an idle or trickling connection is closed
 * after IDLE_TIMEOUT seconds, and a request's headers must fit in CONN_MEMORY bytes. */
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "timefmt.h"

#include <microhttpd.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONNECTIONS 32
#define IDLE_TIMEOUT 10                  /* seconds */
#define CONN_MEMORY (32 * 1024)          /* per connection: request line, headers */
#define METRICS_MAX (16 * 1024 * 1024)   /* an exposition larger than this is refused */

struct bp_httpd {
    struct bp_httpd_ops ops;
    struct ev_loop *loop;
    struct MHD_Daemon *d;
    ev_io io;               /* MHD's epoll fd */
    ev_timer timer;         /* MHD_get_timeout() */
    int port;
    double log_at;          /* MHD's messages: one a second at most (clients can cause them) */
    unsigned long log_dropped;
};

/* After every MHD_run: the timer says when MHD must run again even without socket activity. */
static void
rearm(struct bp_httpd *h)
{
    MHD_UNSIGNED_LONG_LONG ms;
    ev_timer_stop(h->loop, &h->timer);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        ev_timer_set(&h->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct bp_httpd *h = w->data;
    (void)loop;
    (void)revents;
    (void)MHD_run(h->d);
    rearm(h);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_httpd *h = w->data;
    (void)loop;
    (void)revents;
    (void)MHD_run(h->d);
    rearm(h);
}

/* Queues status + body (copied, or taken when own is set: it is then malloc'd). Returns MHD's
 * verdict; MHD_NO closes the connection. */
static enum MHD_Result
answer(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len,
       int own, const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (own)
            free(body);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES && allow)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* A short text/plain answer (allow: the Allow header of a 405, or NULL). */
static enum MHD_Result
text(struct MHD_Connection *conn, unsigned status, const char *allow, const char *fmt, ...)
    BP_PRINTF(4, 5);

static enum MHD_Result
text(struct MHD_Connection *conn, unsigned status, const char *allow, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1;
    return answer(conn, status, "text/plain; charset=utf-8", body, len, 0, allow);
}

static enum MHD_Result
metrics(struct bp_httpd *h, struct MHD_Connection *conn)
{
    bp_buf_t b;
    bp_buf_init(&b, METRICS_MAX);
    if (h->ops.render_metrics(h->ops.ctx, &b) != 0) {
        bp_buf_free(&b);
        bp_log(BP_LOG_ERROR, "httpd", "/metrics larger than %d bytes; not served", METRICS_MAX);
        return text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "exposition too large\n");
    }
    /* the buffer is malloc'd: MHD frees it once sent */
    return answer(conn, MHD_HTTP_OK, BP_METRICS_CONTENT_TYPE, b.data, b.len, 1, NULL);
}

/* POST /reload: what SIGHUP does, answered with the outcome (Fluent Bit's /api/v2/reload). */
static enum MHD_Result
reload(struct bp_httpd *h, struct MHD_Connection *conn)
{
    char err[4096];
    if (h->ops.draining(h->ops.ctx))
        return text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "draining: no reload\n");
    bp_log(BP_LOG_INFO, "httpd", "POST /reload: reloading %s", h->ops.pipeline);
    int rc = h->ops.reload(h->ops.ctx, err, sizeof(err));
    int gen = h->ops.generation(h->ops.ctx);
    if (rc < 0)
        return text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                    "reload failed, generation %d keeps running: %s\n", gen, err);
    if (rc > 0)     /* --update-tables: the swap waits for the tables' patch */
        return text(conn, MHD_HTTP_ACCEPTED, NULL, "reload accepted: generation %d runs once "
                    "its tables are patched (see the log)\n", gen + 1);
    return text(conn, MHD_HTTP_OK, NULL, "reloaded: generation %d\n", gen);
}

static int
is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* One request, once its body (if any) has been read and dropped. */
static enum MHD_Result
route(struct bp_httpd *h, struct MHD_Connection *conn, const char *url, const char *method)
{
    char why[512];
    if (strcmp(url, "/reload") == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
            return text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "POST", "use POST\n");
        return reload(h, conn);
    }
    int known = strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0 ||
                strcmp(url, "/readyz") == 0;
    if (!known)
        return text(conn, MHD_HTTP_NOT_FOUND, NULL,
                    "not found: /metrics /healthz /readyz /reload\n");
    if (!is_get(method))
        return text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, HEAD", "use GET\n");
    if (strcmp(url, "/metrics") == 0)
        return metrics(h, conn);
    /* answered from the loop itself: a loop that is stuck cannot answer, which is the signal */
    if (strcmp(url, "/healthz") == 0)
        return text(conn, MHD_HTTP_OK, NULL, "ok\n");
    if (h->ops.ready(h->ops.ctx, why, sizeof(why)))
        return text(conn, MHD_HTTP_OK, NULL, "ready\n");
    return text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "not ready: %s\n", why);
}

/* MHD calls this once with the headers, then per chunk of body, then once more with none. A
 * body (POST /reload needs none) is read and dropped; the answer comes on the last call. */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = cls;     /* any non-NULL mark: the headers of this request were seen */
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    return route(cls, conn, url, method);
}

/* MHD's own messages (bind errors, bad requests) into our log; a client sending garbage must
 * not be able to flood it, so at most one line a second. */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct bp_httpd *h = cls;
    char line[512];
    double now = bp_time_mono();
    if (h->log_at > 0 && now - h->log_at < 1.0) {
        h->log_dropped++;
        return;
    }
    h->log_at = now;
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    if (h->log_dropped)
        bp_log(BP_LOG_WARN, "httpd", "%s (and %lu more not logged)", line, h->log_dropped);
    else
        bp_log(BP_LOG_WARN, "httpd", "%s", line);
    h->log_dropped = 0;
}

static int
split_host_port(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(close - addr - 1), addr + 1);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -1;   /* an IPv6 address needs its brackets */
        snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
    }
    snprintf(port, portlen, "%s", colon + 1);
    char *end;
    long p = strtol(port, &end, 10);
    return *port && !*end && p >= 0 && p <= 65535 ? 0 : -1;
}

/* "HOST:PORT" / "[V6]:PORT" / ":PORT" -> a socket address (see httpd.h). */
int
bp_httpd_parse_addr(const char *addr, struct sockaddr_storage *ss, int *is_v6, char *err,
                    size_t errlen)
{
    char host[256], port[16];
    if (split_host_port(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "http.listen '%s' is not ADDR:PORT (e.g. 127.0.0.1:9464, "
                 "[::1]:9464)", addr);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_family = *host ? AF_UNSPEC : AF_INET;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "http.listen '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *is_v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

/* Starts the daemon in external epoll mode and hooks its epoll fd and timeout into loop; logs
 * the port. Returns the listener, or NULL with err set. */
struct bp_httpd *
bp_httpd_new(const struct bp_httpd_ops *ops, struct ev_loop *loop, const char *addr, char *err,
             size_t errlen)
{
    struct sockaddr_storage ss;
    int v6;
    if (bp_httpd_parse_addr(addr, &ss, &v6, err, errlen) != 0)
        return NULL;
    struct bp_httpd *h = bp_xcalloc(1, sizeof(*h));
    h->ops = *ops;
    h->loop = loop;
    uint16_t port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                             : ((struct sockaddr_in *)&ss)->sin_port);
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0), port,
                            NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,   /* must be first */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                            /* no SO_REUSEPORT: a second process on the port must fail */
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)0,
                            MHD_OPTION_END);
    const union MHD_DaemonInfo *efd = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD)
                                           : NULL;
    if (!efd) {
        snprintf(err, errlen, "http.listen %s: cannot listen there (address in use or not "
                 "local? see the log above)", addr);
        bp_httpd_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : port;
    ev_io_init(&h->io, on_io, efd->epoll_fd, EV_READ);
    h->io.data = h;
    ev_io_start(loop, &h->io);
    ev_timer_init(&h->timer, on_timer, 0., 0.);
    h->timer.data = h;
    rearm(h);
    bp_log(BP_LOG_INFO, "httpd", "listening on %s (port %d): /metrics /healthz /readyz "
           "POST /reload", addr, h->port);
    return h;
}

/* The bound port (useful with port 0). */
int
bp_httpd_port(const struct bp_httpd *h)
{
    return h->port;
}

/* Watchers first, then MHD closes its sockets; no callback runs after this. */
void
bp_httpd_free(struct bp_httpd *h)
{
    if (!h)
        return;
    if (h->d) {
        ev_io_stop(h->loop, &h->io);
        ev_timer_stop(h->loop, &h->timer);
        MHD_stop_daemon(h->d);
    }
    free(h);
}
