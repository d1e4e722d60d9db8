/* grpc_conn.h - inside the gRPC channel (not for other callers: they use grpc_channel.h): the
 * channel's, connection's and stream's structures, shared by grpc_channel.c (calls, streams,
 * nghttp2's callbacks, dispatch) and grpc_conn.c (socket, TLS, bytes in and out of a session).
 *
 * One rule holds across both: the caller is called back only from the loop - on_message from
 * the read path (nghttp2's data callback, inside the ev_io callback), on_writable and on_done
 * from bp_grpc_dispatch, which the loop callbacks (ev_io, timers) call last. Code inside an API
 * call or nghttp2's other callbacks only records, and asks for a dispatch with bp_grpc_kick. */
#ifndef BP_GRPC_CONN_H
#define BP_GRPC_CONN_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "grpc_channel.h"

enum bp_grpc_conn_state { C_CONNECTING, C_TLS, C_READY, C_CLOSED };

struct bp_grpc_conn {
    struct bp_grpc_channel *ch;
    struct bp_grpc_conn *next;
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    ev_io io;
    ev_timer connect_timer;
    enum bp_grpc_conn_state state;
    int draining;               /* GOAWAY came, or it failed: no new streams */
    int settings_seen;          /* the server's SETTINGS came: its stream limit is known */
    int want_write;             /* TLS asked to be called again when writable */
    uint8_t *out;               /* bytes nghttp2 produced that the socket did not take yet */
    size_t out_len, out_off;
    struct bp_grpc_stream *streams;
    int fail_code;              /* why it closed, for the streams still on it */
    char fail_msg[160];
};

struct bp_grpc_stream {
    struct bp_grpc_channel *ch;
    struct bp_grpc_conn *conn;
    struct bp_grpc_stream *next, *prev;    /* in conn->streams */
    struct bp_grpc_stream *done_next;      /* in ch->done */
    int32_t id;                            /* HTTP/2 stream id, 0 before it is submitted */
    char *path, *token, *params;
    char timeout[16];
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
    struct bp_grpc_conn *conn;                     /* the one new streams go to, or NULL */
    struct bp_grpc_conn *conns;                    /* every connection, draining ones included */
    struct bp_grpc_stream *done, **done_tail;
    ev_timer kick;                         /* 0 s: flush and dispatch after an API call */
    int dispatching;
    struct bp_grpc_stats stats;
};

/* grpc_conn.c */

/* A new connection of ch, connecting (name resolved here, on the loop), linked into ch->conns.
 * Never NULL: a failure to resolve or to start connecting leaves it closed, and its streams end
 * from the next dispatch like on any other failure. */
struct bp_grpc_conn *bp_grpc_conn_new(struct bp_grpc_channel *ch);
/* Closes c (once): every unfinished stream on it ends with code and msg and new_connection set;
 * c no longer takes streams and is freed by dispatch. Safe inside nghttp2's callbacks. */
void bp_grpc_conn_fail(struct bp_grpc_conn *c, int code, const char *msg);
/* Frees c and the streams on it no on_done is owed to; those queued for one are unlinked and
 * left to dispatch. c must be out of ch->conns. */
void bp_grpc_conn_free(struct bp_grpc_conn *c);
/* Writes what nghttp2 has to send until the socket would block. Returns 0, or -1 when c failed
 * (bp_grpc_conn_fail ran). Not from inside nghttp2's callbacks. */
int bp_grpc_conn_flush(struct bp_grpc_conn *c);
/* Arms c's ev_io: read always, write while output waits, the connect is pending or TLS asks. */
void bp_grpc_conn_set_events(struct bp_grpc_conn *c);

/* grpc_channel.c */

/* c's nghttp2 client session with the channel's callbacks and a gRPC client's SETTINGS queued.
 * Returns 0, or -1 when nghttp2 cannot make it (out of memory). */
int bp_grpc_session_new(struct bp_grpc_conn *c);
/* Records s's final status (the first call wins) and queues its on_done for dispatch. */
void bp_grpc_stream_finish(struct bp_grpc_stream *s, int code, const char *msg,
                           int new_connection);
/* Takes s off its connection, whose session is going: freed at once unless its on_done is still
 * queued (dispatch frees it then). */
void bp_grpc_stream_detach(struct bp_grpc_stream *s);
/* Sends s's HEADERS on its connection, which must be ready; a refusal ends s. */
void bp_grpc_stream_submit(struct bp_grpc_stream *s);
/* Whether c may take one more submitted stream: neither draining nor closed, and fewer open
 * streams than its server's SETTINGS_MAX_CONCURRENT_STREAMS (one until those SETTINGS came).
 * A stream beyond it waits unsubmitted; bp_grpc_dispatch moves it to another connection once
 * the limit is known and reached. */
int bp_grpc_conn_has_room(const struct bp_grpc_conn *c);
/* Flushes, moves streams off draining connections, calls back, frees. Only from the loop's
 * callbacks (never from an API call or inside nghttp2); not re-entered. */
void bp_grpc_dispatch(struct bp_grpc_channel *ch);
/* Asks for a dispatch from the loop soon. Safe anywhere. */
void bp_grpc_kick(struct bp_grpc_channel *ch);

#endif
