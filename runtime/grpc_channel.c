/* grpc_channel.c - gRPC client channel: an nghttp2 session per connection on the libev loop
 * (grpc_channel.h).
 *
 * Why not the libcurl multi handle that carries every REST call (http.c): Debian 12's libcurl
 * 7.88.1 cannot keep an h2c prior-knowledge connection across calls. Measured here (7.88.1-10
 * +deb12u15, one multi handle, 50 sequential 10-byte POSTs to a Node http2 h2c server):
 * 49 of 50 failed with "Error in the HTTP2 framing layer" (curl #10634, fixed only in 8.0), and
 * keeping the connection is the whole point (Google caps AppendRows connections per project). A
 * long-lived upload paused with CURL_READFUNC_PAUSE did not spin in that build (15 messages over
 * 3 s: 32 read callbacks, 0.04 s CPU), but a server's RST_STREAM came back only as "partial
 * file" (CURLE_PARTIAL_FILE, the HTTP/2 error code lost) and a GOAWAY not at all, while gRPC
 * needs both to tell "retry on a new connection" from a failure; trailers come only at the end
 * of the transfer through the header callback, and flow control would rest on curl_easy_pause,
 * whose HTTP/2 handling is another 7.88 bug (#10751). nghttp2 is the library libcurl itself uses
 * for HTTP/2 (libnghttp2-dev, 1.52 in Debian 12): driving it directly gives per-stream RST codes,
 * GOAWAY's last stream id, trailers as frames, and the flow-control windows, in ~one file.
 *
 * TLS is OpenSSL (what Debian's libcurl uses) with the checks http.c asks libcurl for: the
 * system CA store plus an optional CA file, the peer's certificate verified, the host name
 * checked (SSL_set1_host), SNI, and ALPN "h2" required.
 *
 * Lifetimes: a stream lives in its connection's list from open until freed. It is freed once the
 * caller is done with it (on_done ran, or it cancelled) and nghttp2 no longer refers to it
 * (the HTTP/2 stream closed, or the session is gone). Everything that calls the caller back runs
 * from dispatch(), at the end of each loop callback, never inside an API call. */
#include "grpc_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum conn_state { C_CONNECTING, C_TLS, C_READY, C_CLOSED };

struct conn {
    struct bp_grpc_channel *ch;
    struct conn *next;
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    ev_io io;
    ev_timer connect_timer;
    enum conn_state state;
    int draining;               /* GOAWAY came, or it failed: no new streams */
    int want_write;             /* TLS asked to be called again when writable */
    uint8_t *out;               /* bytes nghttp2 produced that the socket did not take yet */
    size_t out_len, out_off;
    struct bp_grpc_stream *streams;
    int fail_code;              /* why it closed, for the streams still on it */
    char fail_msg[160];
};

struct bp_grpc_stream {
    struct bp_grpc_channel *ch;
    struct conn *conn;
    struct bp_grpc_stream *next, *prev;    /* in conn->streams */
    struct bp_grpc_stream *done_next;      /* in ch->done */
    int32_t id;                            /* HTTP/2 stream id, 0 before it is submitted */
    char *path, *token, *params;
    char timeout[16];
    double timeout_s;
    struct bp_grpc_stream_cbs cbs;
    void *arg;
    uint8_t *q;                            /* framed messages not yet given to nghttp2 */
    size_t q_len, q_off, q_cap;
    unsigned half_closed : 1, deferred : 1, refused : 1, notify_writable : 1;
    unsigned h2_open : 1, finished : 1, released : 1, queued_done : 1;
    struct bp_grpc_reader reader;
    long http_status;
    int grpc_status;                       /* -1 until a grpc-status came */
    int bad_status;                        /* it was malformed (then UNKNOWN) */
    void (*free_arg)(void *arg);           /* frees arg when on_done will not run (unary) */
    char *grpc_message;
    uint8_t *details;
    size_t details_len;
    int code;                              /* the final status, once finished */
    char *message;
    int new_connection;
    ev_timer deadline;
};

struct bp_grpc_channel {
    struct ev_loop *loop;
    char *host, *authority, *user_agent;
    int port, tls;
    double connect_timeout;
    size_t max_reply, max_queued;
    SSL_CTX *ssl_ctx;
    struct conn *conn;                     /* the one new streams go to, or NULL */
    struct conn *conns;                    /* every connection, draining ones included */
    struct bp_grpc_stream *done, **done_tail;
    ev_timer kick;                         /* 0 s: flush and dispatch after an API call */
    int dispatching;
    struct bp_grpc_stats stats;
};

static void dispatch(struct bp_grpc_channel *ch);
static void conn_service(struct conn *c, int readable);
static void stream_submit(struct bp_grpc_stream *s);

static void
kick(struct bp_grpc_channel *ch)
{
    if (!ev_is_active(&ch->kick))
        ev_timer_start(ch->loop, &ch->kick);
}

/* ---- stream ends ---------------------------------------------------------------------- */

/* Records the stream's final status (the first one wins) and queues its on_done. */
static void
stream_finish(struct bp_grpc_stream *s, int code, const char *msg, int new_connection)
{
    if (s->finished)
        return;
    s->finished = 1;
    s->code = code;
    s->message = bp_xstrdup(msg ? msg : "");
    s->new_connection = new_connection;
    ev_timer_stop(s->ch->loop, &s->deadline);
    if (s->released)
        return;
    s->queued_done = 1;
    s->done_next = NULL;
    *s->ch->done_tail = s;
    s->ch->done_tail = &s->done_next;
    if (code != BP_GRPC_OK)
        s->ch->stats.stream_failures++;
    kick(s->ch);
}

/* Ends an HTTP/2 stream this side gives up on (deadline, bad reply, cancel). */
static void
stream_reset(struct bp_grpc_stream *s)
{
    if (s->h2_open && s->conn && s->conn->h2) {
        if (nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL) != 0)
            s->conn->draining = 1;   /* cannot even queue a reset: let the connection go */
        kick(s->ch);
    }
}

static void
stream_unlink(struct bp_grpc_stream *s)
{
    struct conn *c = s->conn;
    if (!c)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->conn = NULL;
}

static void
stream_link(struct conn *c, struct bp_grpc_stream *s)
{
    s->conn = c;
    s->prev = NULL;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
}

static void
stream_free(struct bp_grpc_stream *s)
{
    stream_unlink(s);
    ev_timer_stop(s->ch->loop, &s->deadline);
    if (s->token)
        OPENSSL_cleanse(s->token, strlen(s->token));
    free(s->token);
    free(s->path);
    free(s->params);
    free(s->q);
    bp_grpc_reader_free(&s->reader);
    free(s->grpc_message);
    free(s->details);
    free(s->message);
    if (s->free_arg)
        s->free_arg(s->arg);
    free(s);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bp_grpc_stream *s = w->data;
    struct bp_grpc_channel *ch = s->ch;
    stream_finish(s, BP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded", 0);
    stream_reset(s);
    dispatch(ch);
}

/* ---- connections ---------------------------------------------------------------------- */

static void
conn_set_events(struct conn *c)
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

/* Closes the connection: its unfinished streams end with code (UNAVAILABLE: a retry on a new
 * connection is safe to try) and the session goes; the connection is freed by dispatch. */
static void
conn_fail(struct conn *c, int code, const char *msg)
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
        stream_finish(s, code, msg, 1);
    }
    kick(c->ch);
}

static void
conn_free(struct conn *c)
{
    while (c->streams) {
        struct bp_grpc_stream *s = c->streams;
        s->h2_open = 0;
        stream_unlink(s);
        if (!s->queued_done)
            stream_free(s);  /* released, or the channel is going: no callback for it */
    }
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
conn_recv(struct conn *c, uint8_t *buf, size_t n, char *msg, size_t msglen)
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
conn_send(struct conn *c, const uint8_t *buf, size_t n, char *msg, size_t msglen)
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
static int
conn_flush(struct conn *c)
{
    char msg[160];
    for (;;) {
        while (c->out_off < c->out_len) {
            ssize_t w = conn_send(c, c->out + c->out_off, c->out_len - c->out_off, msg, sizeof msg);
            if (w == -1)
                return 0;
            if (w == -2) {
                conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
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
            conn_fail(c, BP_GRPC_INTERNAL, msg);
            return -1;
        }
        if (n == 0)
            break;
        /* data is nghttp2's until the next mem_send: keep a copy of what the socket leaves */
        uint8_t *copy = realloc(c->out, (size_t)n);
        if (!copy) {
            conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        memcpy(copy, data, (size_t)n);
        c->out = copy;
        c->out_len = (size_t)n;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        c->out_len == 0 && c->state == C_READY) {
        /* both sides sent GOAWAY and nothing is left: a clean end */
        conn_fail(c, BP_GRPC_UNAVAILABLE, "connection closed after GOAWAY");
        return -1;
    }
    return 0;
}

static void
conn_read(struct conn *c)
{
    uint8_t buf[16384];
    char msg[160];
    for (int i = 0; i < 64 && c->state == C_READY; i++) {   /* then let other watchers run */
        ssize_t r = conn_recv(c, buf, sizeof buf, msg, sizeof msg);
        if (r == -1)
            return;
        if (r == -2 || r == 0) {
            conn_fail(c, BP_GRPC_UNAVAILABLE, r == 0 ? "connection closed by the server" : msg);
            return;
        }
        c->ch->stats.bytes_received += (unsigned long)r;
        ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)r);
        if (used < 0) {
            snprintf(msg, sizeof msg, "HTTP/2 protocol error: %s", nghttp2_strerror((int)used));
            conn_fail(c, BP_GRPC_INTERNAL, msg);
            return;
        }
    }
}

/* ---- nghttp2 callbacks (they only record; dispatch calls the caller) ------------------- */

static ssize_t
data_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
             nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)id;
    (void)user;
    struct bp_grpc_stream *s = src->ptr;
    if (s->finished)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* resets the stream */
    size_t have = s->q_len - s->q_off;
    if (have == 0) {
        if (s->half_closed) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < length ? have : length;
    memcpy(buf, s->q + s->q_off, n);
    s->q_off += n;
    if (s->q_off == s->q_len)
        s->q_off = s->q_len = 0;
    if (s->refused && s->q_len - s->q_off < s->ch->max_queued / 2) {
        s->refused = 0;
        s->notify_writable = 1;
        kick(s->ch);
    }
    if (s->q_len == s->q_off && s->half_closed)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int
on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct bp_grpc_stream *s = arg;
    if (s->released || s->finished)
        return 1;
    if (s->cbs.on_message)
        s->cbs.on_message(s, msg, len, s->arg);
    return s->released || s->finished;
}

static int
on_data_chunk_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                 void *user)
{
    (void)flags;
    (void)user;
    struct bp_grpc_stream *s = nghttp2_session_get_stream_user_data(h2, id);
    if (!s || s->finished || s->released)
        return 0;
    int rc = bp_grpc_reader_feed(&s->reader, data, len, on_message, s);
    if (rc > 1) {
        stream_finish(s, rc, s->reader.error, 0);
        stream_reset(s);
    }
    return 0;
}

static int
header_is(const uint8_t *name, size_t namelen, const char *want)
{
    return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

static int
on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
             const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct bp_grpc_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!s || s->finished)
        return 0;
    const char *v = (const char *)value;
    if (header_is(name, namelen, ":status")) {
        long st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (v[i] >= '0' && v[i] <= '9' ? v[i] - '0' : 0);
        s->http_status = st;
    } else if (header_is(name, namelen, "grpc-status")) {
        int code = bp_grpc_parse_status(v, valuelen);
        s->grpc_status = code >= 0 ? code : BP_GRPC_UNKNOWN;
        if (code < 0) {
            s->bad_status = 1;
            free(s->grpc_message);
            s->grpc_message = bp_xstrdup("malformed grpc-status");
        }
    } else if (header_is(name, namelen, "grpc-message") && !s->bad_status) {
        free(s->grpc_message);
        s->grpc_message = bp_grpc_percent_decode(v, valuelen < 4096 ? valuelen : 4096);
    } else if (header_is(name, namelen, "grpc-status-details-bin")) {
        free(s->details);
        s->details = NULL;
        if (bp_grpc_base64_decode(v, valuelen, &s->details, &s->details_len) != 0)
            s->details_len = 0;   /* undecodable details: the status and message still stand */
    }
    return 0;
}

/* The call's status once the server has ended its side (error_code 0) or the HTTP/2 stream is
 * gone (error_code from RST_STREAM, or a GOAWAY that refused it): the trailers', or one from how
 * it ended. The first status recorded wins. */
static void
stream_end_from_server(struct bp_grpc_stream *s, uint32_t error_code)
{
    char msg[160];
    if (s->finished || s->released)
        return;
    if (s->grpc_status >= 0 && bp_grpc_reader_partial(&s->reader)) {
        stream_finish(s, BP_GRPC_INTERNAL, "reply ended in the middle of a message", 0);
    } else if (s->grpc_status >= 0) {
        stream_finish(s, s->grpc_status, s->grpc_message ? s->grpc_message : "", 0);
    } else if (error_code != NGHTTP2_NO_ERROR) {
        int refused = error_code == NGHTTP2_REFUSED_STREAM;
        snprintf(msg, sizeof msg, refused && s->conn && s->conn->draining ?
                 "connection draining (GOAWAY): stream not processed" :
                 "stream reset by the server (HTTP/2 error %u)", error_code);
        stream_finish(s, bp_grpc_code_from_h2_error(error_code), msg, refused);
    } else if (s->http_status != 200 && s->http_status != 0) {
        snprintf(msg, sizeof msg, "HTTP %ld without grpc-status", s->http_status);
        stream_finish(s, bp_grpc_code_from_http_status(s->http_status), msg, 0);
    } else {
        stream_finish(s, BP_GRPC_UNKNOWN, "reply without grpc-status", 0);
    }
}

static int
on_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t error_code, void *user)
{
    (void)user;
    struct bp_grpc_stream *s = nghttp2_session_get_stream_user_data(h2, id);
    if (!s)
        return 0;
    s->h2_open = 0;
    stream_end_from_server(s, error_code);   /* (already finished when the server ended first) */
    return 0;
}

static int
on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
    struct conn *c = user;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        /* The server ended its side: the call is over even while ours is open (a bidi stream
         * the server closes, a status before the client half-closed). gRPC clients then reset
         * the stream, or HTTP/2 would keep it half-open - and the caller waiting - forever. */
        struct bp_grpc_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (s && !s->finished && !s->released) {
            stream_end_from_server(s, NGHTTP2_NO_ERROR);
            if (s->h2_open && nghttp2_session_get_stream_local_close(h2, s->id) == 0 &&
                nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR) != 0)
                c->draining = 1;
        }
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* streams up to last_stream_id go on; nghttp2 closes later ones as REFUSED_STREAM */
        c->draining = 1;
        c->ch->stats.goaways++;
        if (c->ch->conn == c)
            c->ch->conn = NULL;
        kick(c->ch);
    }
    return 0;
}

/* ---- connecting ----------------------------------------------------------------------- */

static int
conn_start_h2(struct conn *c)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    int rc = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return -1;
    /* no push; a 1 MiB window per stream; a header list cap against a hostile server */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, BP_ARRAY_LEN(iv)) != 0)
        return -1;
    c->state = C_READY;
    ev_timer_stop(c->ch->loop, &c->connect_timer);
    c->ch->stats.connections++;
    for (struct bp_grpc_stream *s = c->streams; s; s = s->next)
        if (!s->id && !s->finished)
            stream_submit(s);
    return 0;
}

static void
conn_tls_step(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            conn_fail(c, BP_GRPC_UNAVAILABLE, "the server did not agree to HTTP/2 (ALPN h2)");
            return;
        }
        c->want_write = 0;
        if (conn_start_h2(c) != 0)
            conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot start an HTTP/2 session");
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
    conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
}

static void
conn_connected(struct conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", c->ch->authority,
                 strerror(soerr ? soerr : errno));
        conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* best effort */
    if (!c->ch->tls) {
        if (conn_start_h2(c) != 0)
            conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot start an HTTP/2 session");
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
        conn_fail(c, BP_GRPC_RESOURCE_EXHAUSTED, "cannot set up TLS");
        return;
    }
    conn_tls_step(c);
}

/* One pass over a connection: progress the connect, read, write, arm the watcher. */
static void
conn_service(struct conn *c, int readable)
{
    if (c->state == C_CONNECTING)
        conn_connected(c);
    else if (c->state == C_TLS)
        conn_tls_step(c);
    if (c->state == C_READY && readable)
        conn_read(c);
    if (c->state == C_READY)
        (void)conn_flush(c);   /* a failure closed c and queued its streams' ends */
    if (c->state != C_CLOSED)
        conn_set_events(c);
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = w->data;
    struct bp_grpc_channel *ch = c->ch;
    conn_service(c, (revents & EV_READ) != 0);
    dispatch(ch);
}

static void
connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;
    struct bp_grpc_channel *ch = c->ch;
    conn_fail(c, BP_GRPC_UNAVAILABLE, "connect timed out");
    dispatch(ch);
}

/* A new connection, connecting. Failures before the first byte (resolution, socket) close it at
 * once: its streams end from dispatch, like any other failure. */
static struct conn *
conn_new(struct bp_grpc_channel *ch)
{
    struct conn *c = bp_xcalloc(1, sizeof(*c));
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
        conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
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
        conn_fail(c, BP_GRPC_UNAVAILABLE, msg);
        return c;
    }
    c->state = C_CONNECTING;
    ev_timer_start(ch->loop, &c->connect_timer);
    conn_set_events(c);
    return c;
}

/* ---- streams -------------------------------------------------------------------------- */

static void
stream_submit(struct bp_grpc_stream *s)
{
    struct conn *c = s->conn;
    struct bp_grpc_channel *ch = s->ch;
    char auth[4096 + 8];
    nghttp2_nv nv[10];
    size_t n = 0;
#define NV(k, v) \
    nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), \
                           NGHTTP2_NV_FLAG_NONE}
    NV(":method", "POST");
    NV(":scheme", ch->tls ? "https" : "http");
    NV(":path", s->path);
    NV(":authority", ch->authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    if (ch->user_agent)
        NV("user-agent", ch->user_agent);
    if (s->timeout[0])
        NV("grpc-timeout", s->timeout);
    if (s->params)
        NV("x-goog-request-params", s->params);
    if (s->token) {
        snprintf(auth, sizeof auth, "Bearer %s", s->token);
        NV("authorization", auth);
    }
#undef NV
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = data_read_cb};
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, n, &dp, s);
    OPENSSL_cleanse(auth, sizeof auth);
    if (id < 0) {
        stream_finish(s, id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? BP_GRPC_UNAVAILABLE :
                      BP_GRPC_INTERNAL, nghttp2_strerror(id), 1);
        return;
    }
    s->id = id;
    s->h2_open = 1;
    ch->stats.streams++;
    kick(ch);
}

/* The connection new streams go to: the current one, or a new one. */
static struct conn *
channel_conn(struct bp_grpc_channel *ch)
{
    if (!ch->conn || ch->conn->draining)
        ch->conn = conn_new(ch);
    return ch->conn;
}

/* Opens a call (grpc_channel.h). */
struct bp_grpc_stream *
bp_grpc_stream_open(struct bp_grpc_channel *ch, const char *path,
                    const struct bp_grpc_call_opts *opts, const struct bp_grpc_stream_cbs *cbs,
                    void *arg)
{
    if (!path || path[0] != '/' || strlen(path) > 1024)
        return NULL;
    struct bp_grpc_stream *s = bp_xcalloc(1, sizeof(*s));
    s->ch = ch;
    s->path = bp_xstrdup(path);
    s->cbs = *cbs;
    s->arg = arg;
    s->grpc_status = -1;
    bp_grpc_reader_init(&s->reader, ch->max_reply);
    ev_timer_init(&s->deadline, deadline_cb, 0, 0);
    s->deadline.data = s;
    if (opts) {
        if (opts->bearer_token && strlen(opts->bearer_token) < 4096)
            s->token = bp_xstrdup(opts->bearer_token);
        if (opts->request_params)
            s->params = bp_xstrdup(opts->request_params);
        if (opts->timeout > 0 &&
            bp_grpc_timeout_format(opts->timeout, s->timeout, sizeof s->timeout) > 0) {
            ev_timer_set(&s->deadline, opts->timeout, 0);
            ev_timer_start(ch->loop, &s->deadline);
        }
    }
    struct conn *c = channel_conn(ch);
    stream_link(c, s);
    if (c->state == C_READY)
        stream_submit(s);
    else if (c->state == C_CLOSED)
        stream_finish(s, c->fail_code, c->fail_msg, 1);
    kick(ch);
    return s;
}

/* Queues one framed message (grpc_channel.h). */
int
bp_grpc_stream_send(struct bp_grpc_stream *s, const void *msg, size_t len)
{
    if (s->half_closed || s->finished || s->released || len > UINT32_MAX)
        return -1;
    size_t have = s->q_len - s->q_off;
    if (have >= s->ch->max_queued) {
        s->refused = 1;
        return -2;
    }
    if (s->q_off && s->q_off == s->q_len)
        s->q_off = s->q_len = 0;
    if (s->q_off > s->q_cap / 2) {           /* reclaim what nghttp2 took before growing */
        memmove(s->q, s->q + s->q_off, have);
        s->q_off = 0;
        s->q_len = have;
    }
    size_t need = s->q_len + BP_GRPC_PREFIX + len;
    if (need > s->q_cap) {
        size_t cap = s->q_cap ? s->q_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *q = realloc(s->q, cap);
        if (!q)
            return -2;
        s->q = q;
        s->q_cap = cap;
    }
    bp_grpc_prefix(s->q + s->q_len, (uint32_t)len);
    if (len)
        memcpy(s->q + s->q_len + BP_GRPC_PREFIX, msg, len);
    s->q_len += BP_GRPC_PREFIX + len;
    if (s->deferred && s->h2_open && s->conn && s->conn->h2) {
        s->deferred = 0;
        (void)nghttp2_session_resume_data(s->conn->h2, s->id);  /* fails only if s closed */
    }
    kick(s->ch);
    return 0;
}

/* Unsent bytes (grpc_channel.h). */
size_t
bp_grpc_stream_queued(const struct bp_grpc_stream *s)
{
    return s->q_len - s->q_off;
}

/* Half-close (grpc_channel.h). */
void
bp_grpc_stream_close_send(struct bp_grpc_stream *s)
{
    if (s->half_closed)
        return;
    s->half_closed = 1;
    if (s->deferred && s->h2_open && s->conn && s->conn->h2) {
        s->deferred = 0;
        (void)nghttp2_session_resume_data(s->conn->h2, s->id);
    }
    kick(s->ch);
}

/* Cancel: no callback afterwards (grpc_channel.h). */
void
bp_grpc_stream_cancel(struct bp_grpc_stream *s)
{
    if (s->released)
        return;
    s->released = 1;
    ev_timer_stop(s->ch->loop, &s->deadline);
    if (!s->finished)
        stream_reset(s);
    s->finished = 1;
    kick(s->ch);     /* dispatch frees it once nghttp2 lets go (or skips its queued on_done) */
}

/* ---- dispatch: the only place the caller is called back -------------------------------- */

static void
dispatch_done(struct bp_grpc_channel *ch)
{
    while (ch->done) {
        struct bp_grpc_stream *s = ch->done;
        ch->done = s->done_next;
        if (!ch->done)
            ch->done_tail = &ch->done;
        s->queued_done = 0;
        if (!s->released) {
            s->released = 1;
            s->free_arg = NULL;     /* on_done owns arg now */
            struct bp_grpc_status st = {
                .code = s->code, .message = s->message ? s->message : "",
                .details = s->details_len ? s->details : NULL, .details_len = s->details_len,
                .http_status = s->http_status, .new_connection = s->new_connection,
            };
            if (s->cbs.on_done)
                s->cbs.on_done(s, &st, s->arg);
        }
        if (!s->conn || !s->h2_open)
            stream_free(s);
    }
}

static void
dispatch(struct bp_grpc_channel *ch)
{
    if (ch->dispatching)
        return;
    ch->dispatching = 1;
    for (int round = 0; round < 8; round++) {
        /* streams opened on a connection that drains before sending them move to a new one */
        for (struct conn *c = ch->conns; c; c = c->next) {
            if (c->state != C_CLOSED && c->state != C_READY)
                continue;
            if (c->state == C_READY)
                (void)conn_flush(c);
            if (c->state != C_CLOSED)
                conn_set_events(c);
        }
        for (struct conn *c = ch->conns; c; c = c->next) {
            for (struct bp_grpc_stream *s = c->streams, *nx; s; s = nx) {
                nx = s->next;
                if (c->draining && c->state != C_CLOSED && !s->id && !s->finished &&
                    !s->released) {
                    stream_unlink(s);
                    struct conn *nc = channel_conn(ch);
                    stream_link(nc, s);
                    if (nc->state == C_READY)
                        stream_submit(s);
                } else if (s->notify_writable && !s->released && !s->finished) {
                    s->notify_writable = 0;
                    if (s->cbs.on_writable)
                        s->cbs.on_writable(s, s->arg);
                } else if (s->released && !s->h2_open && !s->queued_done) {
                    stream_free(s);
                }
            }
        }
        dispatch_done(ch);
        /* closed connections, and draining ones with nothing left on them, go */
        for (struct conn **pc = &ch->conns; *pc;) {
            struct conn *c = *pc;
            if (c->state == C_CLOSED || (c->draining && !c->streams && c->state == C_READY)) {
                if (c->state == C_CLOSED && c->streams) {
                    int busy = 0;
                    for (struct bp_grpc_stream *s = c->streams; s; s = s->next)
                        busy |= s->queued_done;
                    if (busy) {
                        pc = &c->next;
                        continue;
                    }
                }
                *pc = c->next;
                if (ch->conn == c)
                    ch->conn = NULL;
                conn_free(c);
            } else {
                pc = &c->next;
            }
        }
        if (!ch->done)
            break;
    }
    ch->dispatching = 0;
    if (ch->done)
        kick(ch);
}

static void
kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    dispatch(w->data);
}

/* ---- unary ---------------------------------------------------------------------------- */

struct unary {
    bp_grpc_unary_fn done;
    void *arg;
    uint8_t *reply;
    size_t reply_len;
    int messages;
};

static void
unary_message(struct bp_grpc_stream *s, const uint8_t *msg, size_t len, void *arg)
{
    (void)s;
    struct unary *u = arg;
    if (u->messages++ == 0) {
        u->reply = malloc(len ? len : 1);
        if (u->reply) {
            memcpy(u->reply, msg, len);
            u->reply_len = len;
        }
    }
}

static void
unary_done(struct bp_grpc_stream *s, const struct bp_grpc_status *st, void *arg)
{
    (void)s;
    struct unary *u = arg;
    struct bp_grpc_status fixed = *st;
    if (st->code == BP_GRPC_OK && (u->messages != 1 || !u->reply)) {
        fixed.code = u->messages != 1 ? BP_GRPC_INTERNAL : BP_GRPC_RESOURCE_EXHAUSTED;
        fixed.message = u->messages == 0 ? "unary reply without a message" :
                        u->messages > 1 ? "unary reply with several messages" : "out of memory";
    }
    u->done(u->arg, &fixed, fixed.code == BP_GRPC_OK ? u->reply : NULL,
            fixed.code == BP_GRPC_OK ? u->reply_len : 0);
    free(u->reply);
    free(u);
}

static void
unary_free(void *arg)
{
    struct unary *u = arg;
    free(u->reply);
    free(u);
}

/* One request, one reply (grpc_channel.h). Its state goes in unary_done, or with the stream
 * (free_arg) when the caller cancels it or frees the channel first. */
struct bp_grpc_stream *
bp_grpc_unary(struct bp_grpc_channel *ch, const char *path, const struct bp_grpc_call_opts *opts,
              const void *msg, size_t len, bp_grpc_unary_fn done, void *arg)
{
    struct unary *u = bp_xcalloc(1, sizeof(*u));
    u->done = done;
    u->arg = arg;
    static const struct bp_grpc_stream_cbs cbs = {unary_message, NULL, unary_done};
    struct bp_grpc_stream *s = bp_grpc_stream_open(ch, path, opts, &cbs, u);
    if (!s) {
        free(u);
        return NULL;
    }
    s->free_arg = unary_free;
    if (bp_grpc_stream_send(s, msg, len) != 0) {
        bp_grpc_stream_cancel(s);   /* frees u with s */
        return NULL;
    }
    bp_grpc_stream_close_send(s);
    return s;
}

/* ---- the channel ---------------------------------------------------------------------- */

/* A channel (grpc_channel.h). */
struct bp_grpc_channel *
bp_grpc_channel_new(struct ev_loop *loop, const struct bp_grpc_channel_opts *opts, char *err,
                    size_t errlen)
{
    if (!opts->host || !opts->host[0] || opts->port <= 0 || opts->port > 65535) {
        snprintf(err, errlen, "gRPC endpoint needs a host and a port");
        return NULL;
    }
    struct bp_grpc_channel *ch = bp_xcalloc(1, sizeof(*ch));
    ch->loop = loop;
    ch->host = bp_xstrdup(opts->host);
    ch->port = opts->port;
    ch->tls = opts->tls;
    ch->connect_timeout = opts->connect_timeout > 0 ? opts->connect_timeout : 10.0;
    ch->max_reply = opts->max_reply ? opts->max_reply : (size_t)16 << 20;
    ch->max_queued = opts->max_queued ? opts->max_queued : (size_t)8 << 20;
    ch->user_agent = opts->user_agent ? bp_xstrdup(opts->user_agent) : NULL;
    char authority[300];
    int ipv6 = strchr(opts->host, ':') != NULL;
    if (opts->tls && opts->port == 443)
        snprintf(authority, sizeof authority, "%s", opts->host);
    else
        snprintf(authority, sizeof authority, ipv6 ? "[%s]:%d" : "%s:%d", opts->host, opts->port);
    ch->authority = bp_xstrdup(authority);
    ch->done_tail = &ch->done;
    ev_timer_init(&ch->kick, kick_cb, 0, 0);
    ch->kick.data = ch;
    if (opts->tls) {
        static const unsigned char alpn[] = "\x02h2";
        ch->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!ch->ssl_ctx || SSL_CTX_set_default_verify_paths(ch->ssl_ctx) != 1 ||
            SSL_CTX_set_min_proto_version(ch->ssl_ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_set_alpn_protos(ch->ssl_ctx, alpn, sizeof alpn - 1) != 0) {
            snprintf(err, errlen, "cannot set up TLS for %s", ch->authority);
            goto fail;
        }
        if (opts->ca_file && SSL_CTX_load_verify_locations(ch->ssl_ctx, opts->ca_file, NULL) != 1) {
            snprintf(err, errlen, "cannot read CA file %s", opts->ca_file);
            goto fail;
        }
        SSL_CTX_set_verify(ch->ssl_ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(ch->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    return ch;
fail:
    bp_grpc_channel_free(ch);
    return NULL;
}

/* Frees everything without callbacks (grpc_channel.h). */
void
bp_grpc_channel_free(struct bp_grpc_channel *ch)
{
    if (!ch)
        return;
    ev_timer_stop(ch->loop, &ch->kick);
    while (ch->done) {
        struct bp_grpc_stream *s = ch->done;
        ch->done = s->done_next;
        s->queued_done = 0;
        if (!s->conn)
            stream_free(s);
    }
    while (ch->conns) {
        struct conn *c = ch->conns;
        ch->conns = c->next;
        conn_free(c);
    }
    if (ch->ssl_ctx)
        SSL_CTX_free(ch->ssl_ctx);
    free(ch->host);
    free(ch->authority);
    free(ch->user_agent);
    free(ch);
}

/* Counters (grpc_channel.h). */
const struct bp_grpc_stats *
bp_grpc_channel_stats(const struct bp_grpc_channel *ch)
{
    return &ch->stats;
}
