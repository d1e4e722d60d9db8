/* grpc_channel.c - gRPC client channel: calls and streams over the connections of grpc_conn.c,
 * an nghttp2 session each, on the libev loop (grpc_channel.h).
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
 * GOAWAY's last stream id, trailers as frames, and the flow-control windows, in two files.
 *
 * Lifetimes: a stream lives in its connection's list from open until freed. It is freed once the
 * caller is done with it (on_done ran, or it cancelled) and nghttp2 no longer refers to it
 * (the HTTP/2 stream closed, or the session is gone). on_done and on_writable run from
 * bp_grpc_dispatch(), at the end of each loop callback; on_message as nghttp2 hands over a
 * stream's data, inside the ev_io callback; none inside an API call. */
#include "grpc_channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "grpc_conn.h"

/* Runs bp_grpc_dispatch from the loop soon (a 0 s timer): after an API call, or from inside
 * nghttp2's callbacks, where calling the caller back is not allowed (grpc_conn.h). */
void
bp_grpc_kick(struct bp_grpc_channel *ch)
{
    if (!ev_is_active(&ch->kick))
        ev_timer_start(ch->loop, &ch->kick);
}

/* ---- stream ends ---------------------------------------------------------------------- */

/* Records the stream's final status (the first one wins), queues its on_done (grpc_conn.h). */
void
bp_grpc_stream_finish(struct bp_grpc_stream *s, int code, const char *msg, int new_connection)
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
    bp_grpc_kick(s->ch);
}

/* Ends an HTTP/2 stream this side gives up on (deadline, bad reply, cancel). */
static void
stream_reset(struct bp_grpc_stream *s)
{
    if (s->h2_open && s->conn && s->conn->h2) {
        if (nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL) != 0)
            s->conn->draining = 1;   /* cannot even queue a reset: let the connection go */
        bp_grpc_kick(s->ch);
    }
}

static void
stream_unlink(struct bp_grpc_stream *s)
{
    struct bp_grpc_conn *c = s->conn;
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
stream_link(struct bp_grpc_conn *c, struct bp_grpc_stream *s)
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

/* Off a connection whose session goes (grpc_conn.h). */
void
bp_grpc_stream_detach(struct bp_grpc_stream *s)
{
    s->h2_open = 0;
    stream_unlink(s);
    if (!s->queued_done)
        stream_free(s);  /* released, or the channel is going: no callback for it */
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bp_grpc_stream *s = w->data;
    struct bp_grpc_channel *ch = s->ch;
    bp_grpc_stream_finish(s, BP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded", 0);
    stream_reset(s);
    bp_grpc_dispatch(ch);
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
        bp_grpc_kick(s->ch);
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
        bp_grpc_stream_finish(s, rc, s->reader.error, 0);
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
        bp_grpc_stream_finish(s, BP_GRPC_INTERNAL, "reply ended in the middle of a message", 0);
    } else if (s->grpc_status >= 0) {
        bp_grpc_stream_finish(s, s->grpc_status, s->grpc_message ? s->grpc_message : "", 0);
    } else if (error_code != NGHTTP2_NO_ERROR) {
        int refused = error_code == NGHTTP2_REFUSED_STREAM;
        snprintf(msg, sizeof msg, refused && s->conn && s->conn->draining ?
                 "connection draining (GOAWAY): stream not processed" :
                 "stream reset by the server (HTTP/2 error %u)", error_code);
        bp_grpc_stream_finish(s, bp_grpc_code_from_h2_error(error_code), msg, refused);
    } else if (s->http_status != 200 && s->http_status != 0) {
        snprintf(msg, sizeof msg, "HTTP %ld without grpc-status", s->http_status);
        bp_grpc_stream_finish(s, bp_grpc_code_from_http_status(s->http_status), msg, 0);
    } else {
        bp_grpc_stream_finish(s, BP_GRPC_UNKNOWN, "reply without grpc-status", 0);
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
    struct bp_grpc_conn *c = user;
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
    } else if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        /* its stream limit is known: the streams waiting for it go (bp_grpc_dispatch) */
        c->settings_seen = 1;
        bp_grpc_kick(c->ch);
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        /* streams up to last_stream_id go on; nghttp2 closes later ones as REFUSED_STREAM */
        c->draining = 1;
        c->ch->stats.goaways++;
        if (c->ch->conn == c)
            c->ch->conn = NULL;
        bp_grpc_kick(c->ch);
    }
    return 0;
}

/* A client session on c whose callbacks are this file's, with the settings a gRPC client
 * sends. Returns 0, or -1 when nghttp2 cannot make one (out of memory). Runs from the loop. */
int
bp_grpc_session_new(struct bp_grpc_conn *c)
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
    return 0;
}

/* ---- streams -------------------------------------------------------------------------- */

/* Submits the stream's HEADERS on its ready connection (grpc_conn.h). */
void
bp_grpc_stream_submit(struct bp_grpc_stream *s)
{
    struct bp_grpc_conn *c = s->conn;
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
        bp_grpc_stream_finish(s, id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? BP_GRPC_UNAVAILABLE :
                      BP_GRPC_INTERNAL, nghttp2_strerror(id), 1);
        return;
    }
    s->id = id;
    s->h2_open = 1;
    ch->stats.streams++;
    bp_grpc_kick(ch);
}

/* Whether c may take one more stream now: a server takes so many a connection
 * (SETTINGS_MAX_CONCURRENT_STREAMS; Google's front ends 100), and a call over that would wait in
 * nghttp2's queue behind calls that may never end (each table's AppendRows stays open across
 * batches). Until the server's SETTINGS come, one stream at a time. */
int
bp_grpc_conn_has_room(const struct bp_grpc_conn *c)
{
    if (c->draining || c->state == C_CLOSED)
        return 0;
    uint32_t max = 1;
    if (c->state == C_READY && c->settings_seen)
        max = nghttp2_session_get_remote_settings(c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    uint32_t n = 0;
    for (const struct bp_grpc_stream *s = c->streams; s; s = s->next)
        n += s->id != 0 && s->h2_open;
    return n < max;
}

/* The connection new streams go to: the current one, unless it drains or its server's stream
 * limit is known and reached; then another one with room, or a new one. */
static struct bp_grpc_conn *
channel_conn(struct bp_grpc_channel *ch)
{
    struct bp_grpc_conn *c = ch->conn;
    if (c && !c->draining && c->state != C_CLOSED &&
        (!c->settings_seen || bp_grpc_conn_has_room(c)))
        return c;
    for (c = ch->conns; c; c = c->next)
        if (c != ch->conn && !c->draining && c->state != C_CLOSED &&
            (!c->settings_seen || bp_grpc_conn_has_room(c)))
            return ch->conn = c;
    return ch->conn = bp_grpc_conn_new(ch);
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
    struct bp_grpc_conn *c = channel_conn(ch);
    stream_link(c, s);
    if (c->state == C_READY && bp_grpc_conn_has_room(c))
        bp_grpc_stream_submit(s);
    else if (c->state == C_CLOSED)
        bp_grpc_stream_finish(s, c->fail_code, c->fail_msg, 1);
    bp_grpc_kick(ch);
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
            return -3;   /* no on_writable would follow: the caller's backoff decides */
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
    bp_grpc_kick(s->ch);
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
    bp_grpc_kick(s->ch);
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
    bp_grpc_kick(s->ch);   /* dispatch frees it once nghttp2 lets go (or skips its on_done) */
}

/* Cancel, and no new call on s's connection (grpc_channel.h). */
void
bp_grpc_stream_abandon(struct bp_grpc_stream *s)
{
    if (!s->released && s->conn)
        s->conn->draining = 1;      /* dispatch frees it once its streams are gone */
    bp_grpc_stream_cancel(s);
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

/* Flushes connections, moves streams off draining ones, calls the callers back and frees what
 * is done (grpc_conn.h). The only place a callback runs; not re-entered. */
void
bp_grpc_dispatch(struct bp_grpc_channel *ch)
{
    if (ch->dispatching)
        return;
    ch->dispatching = 1;
    for (int round = 0; round < 8; round++) {
        /* streams opened on a connection that drains before sending them move to a new one */
        for (struct bp_grpc_conn *c = ch->conns; c; c = c->next) {
            if (c->state != C_CLOSED && c->state != C_READY)
                continue;
            if (c->state == C_READY)
                (void)bp_grpc_conn_flush(c);
            if (c->state != C_CLOSED)
                bp_grpc_conn_set_events(c);
        }
        for (struct bp_grpc_conn *c = ch->conns; c; c = c->next) {
            for (struct bp_grpc_stream *s = c->streams, *nx; s; s = nx) {
                nx = s->next;
                int waiting = !s->id && !s->finished && !s->released;
                if (waiting && c->state == C_READY && bp_grpc_conn_has_room(c)) {
                    bp_grpc_stream_submit(s);
                } else if (waiting && c->state != C_CLOSED &&
                           (c->draining || (c->state == C_READY && c->settings_seen))) {
                    /* its connection drains, or is full (the server's limit reached): another */
                    stream_unlink(s);
                    struct bp_grpc_conn *nc = channel_conn(ch);
                    stream_link(nc, s);
                    if (nc->state == C_READY && bp_grpc_conn_has_room(nc))
                        bp_grpc_stream_submit(s);
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
        for (struct bp_grpc_conn **pc = &ch->conns; *pc;) {
            struct bp_grpc_conn *c = *pc;
            /* (an idle connection other than the current one too: opened when the current
             * one was full) */
            if (c->state == C_CLOSED || (!c->streams && c->state == C_READY &&
                                         (c->draining || c != ch->conn))) {
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
                bp_grpc_conn_free(c);
            } else {
                pc = &c->next;
            }
        }
        if (!ch->done)
            break;
    }
    ch->dispatching = 0;
    if (ch->done)
        bp_grpc_kick(ch);
}

static void
kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    bp_grpc_dispatch(w->data);
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
        struct bp_grpc_conn *c = ch->conns;
        ch->conns = c->next;
        bp_grpc_conn_free(c);
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
