/* grpc_conn.c - one HTTP/2 connection of a gRPC channel (grpc_conn.h): the socket (resolved
 * once, non-blocking connect with a timeout), TLS, and moving bytes between the socket and the
 * connection's nghttp2 session from an ev_io.
 *
 * TLS is OpenSSL (what Debian's libcurl uses) with the checks http.c asks libcurl for: the
 * system CA store plus an optional CA file, the peer's certificate verified, the host name
 * checked (SSL_set1_host; an address against the certificate's IP names), SNI for a name, and
 * ALPN "h2" required.
 *
 * Output is pulled from nghttp2 only as the socket takes it, so what waits here is at most one
 * of nghttp2's chunks; the streams' own queues hold the rest, capped (grpc_channel.h). */
#include "grpc_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static void conn_service(struct bp_grpc_conn *c, int readable);

/* Arms the connection's ev_io for what it waits for (grpc_conn.h). */
void
bp_grpc_conn_set_events(struct bp_grpc_conn *c)
{
    int ev = EV_READ;
    if (c->state == C_CONNECTING || c->want_write || c->out_len > c->out_off)
        ev |= EV_WRITE;
    if (c->state == C_CLOSED)
        ev = 0;
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == ev)
        return;
    ev_io_stop(c->ch->loop, &c->io);
    if (ev) {
        ev_io_set(&c->io, c->fd, ev);
        ev_io_start(c->ch->loop, &c->io);
    }
}

/* Closes the connection (grpc_conn.h): its unfinished streams end with code (UNAVAILABLE: a
 * retry on a new connection is safe to try) and the session goes; dispatch frees it. */
void
bp_grpc_conn_fail(struct bp_grpc_conn *c, int code, const char *msg)
{
    if (c->state == C_CLOSED)
        return;
    if (c->state != C_READY)
        c->ch->stats.connect_failures++;
    c->state = C_CLOSED;
    c->draining = 1;
    c->fail_code = code;
    snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
    if (c->ch->conn == c)
        c->ch->conn = NULL;
    ev_io_stop(c->ch->loop, &c->io);
    ev_timer_stop(c->ch->loop, &c->connect_timer);
    for (struct bp_grpc_stream *s = c->streams; s; s = s->next) {
        s->h2_open = 0;     /* the session goes below: it will not call back about s */
        bp_grpc_stream_finish(s, code, msg, 1);
    }
    bp_grpc_kick(c->ch);
}

/* Frees the connection, its session and the streams no callback is owed (grpc_conn.h). */
void
bp_grpc_conn_free(struct bp_grpc_conn *c)
{
    while (c->streams)
        bp_grpc_stream_detach(c->streams);
    ev_io_stop(c->ch->loop, &c->io);
    ev_timer_stop(c->ch->loop, &c->connect_timer);
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    free(c);
}

/* Reads: >0 bytes, 0 at EOF, -1 would block, -2 failed (msg filled). */
static ssize_t
conn_recv(struct bp_grpc_conn *c, uint8_t *buf, size_t n, char *msg, size_t msglen)
{
    if (!c->ssl) {
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r >= 0)
            return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return -1;
        snprintf(msg, msglen, "connection lost: %s", strerror(errno));
        return -2;
    }
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, (int)(n > 65536 ? 65536 : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return -1;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->want_write = 1;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    snprintf(msg, msglen, "TLS read failed: %s", ERR_reason_error_string(ERR_peek_error()) ?
             ERR_reason_error_string(ERR_peek_error()) : "connection lost");
    return -2;
}

/* Writes: >0 bytes taken, -1 would block, -2 failed. */
static ssize_t
conn_send(struct bp_grpc_conn *c, const uint8_t *buf, size_t n, char *msg, size_t msglen)
{
    if (!c->ssl) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return -1;
        snprintf(msg, msglen, "connection lost: %s", strerror(errno));
        return -2;
    }
    ERR_clear_error();
    int r = SSL_write(c->ssl, buf, (int)(n > 65536 ? 65536 : n));
    if (r > 0) {
        c->want_write = 0;
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->want_write = e == SSL_ERROR_WANT_WRITE;
        return -1;
    }
    snprintf(msg, msglen, "TLS write failed");
    return -2;
}

/* Hands nghttp2's output to the socket until it would block or nothing is left. The socket's
 * backlog bounds what is buffered here: nghttp2 is asked for more only once it is written. */
int
bp_grpc_conn_flush(struct bp_grpc_conn *c)
{
    char msg[160];
    for (;;) {
        while (c->out_off < c->out_len) {
            ssize_t w = conn_send(c, c->out + c->out_off, c->out_len - c->out_off, msg, sizeof msg);
            if (w == -1)
                return 0;
            if (w == -2) {
                bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
                return -1;
            }
            c->out_off += (size_t)w;
            c->ch->stats.bytes_sent += (unsigned long)w;
        }
        c->out_off = c->out_len = 0;
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            snprintf(msg, sizeof msg, "HTTP/2 send failed: %s", nghttp2_strerror((int)n));
            bp_grpc_conn_fail(c, BP_GRPC_INTERNAL, msg);
            return -1;
        }
        if (n == 0)
            break;
        /* data is nghttp2's until the next mem_send: keep a copy of what the socket leaves */
        uint8_t *copy = realloc(c->out, (size_t)n);
        if (!copy) {
            bp_grpc_conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        memcpy(copy, data, (size_t)n);
        c->out = copy;
        c->out_len = (size_t)n;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        c->out_len == 0 && c->state == C_READY) {
        /* both sides sent GOAWAY and nothing is left: a clean end */
        bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, "connection closed after GOAWAY");
        return -1;
    }
    return 0;
}

static void
conn_read(struct bp_grpc_conn *c)
{
    uint8_t buf[16384];
    char msg[160];
    for (int i = 0; i < 64 && c->state == C_READY; i++) {   /* then let other watchers run */
        ssize_t r = conn_recv(c, buf, sizeof buf, msg, sizeof msg);
        if (r == -1)
            return;
        if (r == -2 || r == 0) {
            bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE,
                              r == 0 ? "connection closed by the server" : msg);
            return;
        }
        c->ch->stats.bytes_received += (unsigned long)r;
        ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)r);
        if (used < 0) {
            snprintf(msg, sizeof msg, "HTTP/2 protocol error: %s", nghttp2_strerror((int)used));
            bp_grpc_conn_fail(c, BP_GRPC_INTERNAL, msg);
            return;
        }
    }
}

/* ---- connecting ----------------------------------------------------------------------- */

static int
conn_start_h2(struct bp_grpc_conn *c)
{
    if (bp_grpc_session_new(c) != 0)
        return -1;
    c->state = C_READY;
    ev_timer_stop(c->ch->loop, &c->connect_timer);
    c->ch->stats.connections++;
    for (struct bp_grpc_stream *s = c->streams; s; s = s->next)
        if (!s->id && !s->finished && bp_grpc_conn_has_room(c))
            bp_grpc_stream_submit(s);
    return 0;
}

static void
conn_tls_step(struct bp_grpc_conn *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE,
                              "the server did not agree to HTTP/2 (ALPN h2)");
            return;
        }
        c->want_write = 0;
        if (conn_start_h2(c) != 0)
            bp_grpc_conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot start an HTTP/2 session");
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->want_write = e == SSL_ERROR_WANT_WRITE;
        return;
    }
    char msg[160];
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        snprintf(msg, sizeof msg, "TLS: certificate not trusted: %s",
                 X509_verify_cert_error_string(vr));
    else
        snprintf(msg, sizeof msg, "TLS handshake failed: %s",
                 ERR_peek_error() ? ERR_reason_error_string(ERR_peek_error()) : "connection lost");
    bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
}

static void
conn_connected(struct bp_grpc_conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", c->ch->authority,
                 strerror(soerr ? soerr : errno));
        bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* best effort */
    if (!c->ch->tls) {
        if (conn_start_h2(c) != 0)
            bp_grpc_conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot start an HTTP/2 session");
        return;
    }
    c->state = C_TLS;
    c->ssl = SSL_new(c->ch->ssl_ctx);
    /* an address is checked against the certificate's IP names and never sent as SNI; a name
     * against its DNS names, and sent as SNI */
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, c->ch->host, addr) == 1 ||
                inet_pton(AF_INET6, c->ch->host, addr) == 1;
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 ||
        (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->ch->host) != 1 :
         SSL_set_tlsext_host_name(c->ssl, c->ch->host) != 1 ||
         SSL_set1_host(c->ssl, c->ch->host) != 1)) {
        bp_grpc_conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot set up TLS");
        return;
    }
    conn_tls_step(c);
}

/* One pass over a connection: progress the connect, read, write, arm the watcher. */
static void
conn_service(struct bp_grpc_conn *c, int readable)
{
    if (c->state == C_CONNECTING)
        conn_connected(c);
    else if (c->state == C_TLS)
        conn_tls_step(c);
    if (c->state == C_READY && readable)
        conn_read(c);
    if (c->state == C_READY)
        (void)bp_grpc_conn_flush(c);   /* a failure closed c and queued its streams' ends */
    if (c->state != C_CLOSED)
        bp_grpc_conn_set_events(c);
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct bp_grpc_conn *c = w->data;
    struct bp_grpc_channel *ch = c->ch;
    conn_service(c, (revents & EV_READ) != 0);
    bp_grpc_dispatch(ch);
}

static void
connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bp_grpc_conn *c = w->data;
    struct bp_grpc_channel *ch = c->ch;
    bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, "connect timed out");
    bp_grpc_dispatch(ch);
}

/* A new connection, connecting. Failures before the first byte (resolution, socket) close it at
 * once: its streams end from dispatch, like any other failure. */
struct bp_grpc_conn *
bp_grpc_conn_new(struct bp_grpc_channel *ch)
{
    struct bp_grpc_conn *c = bp_xcalloc(1, sizeof(*c));
    c->ch = ch;
    c->fd = -1;
    c->next = ch->conns;
    ch->conns = c;
    ev_init(&c->io, io_cb);
    c->io.data = c;
    ev_timer_init(&c->connect_timer, connect_timeout_cb, ch->connect_timeout, 0);
    c->connect_timer.data = c;
    char port[16], msg[200];
    snprintf(port, sizeof port, "%d", ch->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int gai = getaddrinfo(ch->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(msg, sizeof msg, "cannot resolve %s: %s", ch->host, gai_strerror(gai));
        bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
        return c;
    }
    int err = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            c->fd = fd;
            break;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", ch->authority, strerror(err));
        bp_grpc_conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
        return c;
    }
    c->state = C_CONNECTING;
    ev_timer_start(ch->loop, &c->connect_timer);
    bp_grpc_conn_set_events(c);
    return c;
}
