/* grpc_channel.h - a gRPC client channel on the process's libev loop: one HTTP/2 connection to one
 * server (h2c with prior knowledge to an emulator, TLS + ALPN h2 with verified certificates to
 * Google), kept open across calls, carrying unary calls and bidirectional streams (BigQuery's
 * AppendRows). No threads, no second loop: an nghttp2 session per connection, fed from an ev_io.
 *
 * Callbacks (on_message, on_writable, on_done, a unary's done) run only from the loop - never
 * inside a call to this API - so a caller may call any function here from a callback, except
 * bp_grpc_channel_free. Message bytes handed to a callback are valid only during the call.
 *
 * Connection life: the first call connects; later calls reuse the connection. A GOAWAY from the
 * server drains it: streams it already accepted finish there (or fail UNAVAILABLE with
 * new_connection set when the server refused them), streams opened afterwards go to a new
 * connection. A dropped connection fails its streams with UNAVAILABLE; the next call reconnects.
 * Retries are the caller's: bp_grpc_retryable(status->code) says which codes are worth one under
 * the project's retry policy (api.h's bp_backoff).
 *
 * Name resolution is getaddrinfo, once per connection (not per call), on the loop: an emulator's
 * numeric address never waits; a name waits as long as the system resolver takes. */
#ifndef BP_GRPC_CHANNEL_H
#define BP_GRPC_CHANNEL_H

#include <ev.h>

#include "common.h"
#include "grpc_frame.h"

struct bp_grpc_channel;
struct bp_grpc_stream;

struct bp_grpc_channel_opts {
    const char *host;           /* name or numeric address */
    int port;
    int tls;                    /* 1: TLS + ALPN h2, certificate and host name verified */
    const char *ca_file;        /* extra CA bundle (a test server), or NULL for the system store */
    double connect_timeout;     /* seconds for TCP + TLS; 0 = 10 */
    size_t max_reply;           /* largest message taken from the server; 0 = 16 MiB */
    size_t max_queued;          /* unsent bytes a stream may hold before send refuses; 0 = 8 MiB */
    const char *user_agent;     /* or NULL */
};

/* A call's end. Valid only during on_done. */
struct bp_grpc_status {
    int code;                   /* enum bp_grpc_code (a server may send others: keep them) */
    const char *message;        /* grpc-message decoded, or this side's reason; never NULL */
    const uint8_t *details;     /* grpc-status-details-bin decoded (google.rpc.Status), or NULL */
    size_t details_len;
    long http_status;           /* :status, 0 when no headers came */
    int new_connection;         /* the connection failed or drains: a retry goes to a new one */
};

struct bp_grpc_call_opts {
    const char *bearer_token;   /* authorization: Bearer <token> (bp_auth_token), or NULL */
    const char *request_params; /* x-goog-request-params value (write_stream=...), or NULL */
    double timeout;             /* seconds: grpc-timeout and a local deadline; 0 = none */
};

struct bp_grpc_stream_cbs {
    /* One reply message (len may be 0). */
    void (*on_message)(struct bp_grpc_stream *s, const uint8_t *msg, size_t len, void *arg);
    /* bp_grpc_stream_send refused a message (queue full) and the queue has drained below half. */
    void (*on_writable)(struct bp_grpc_stream *s, void *arg);
    /* The stream ended, exactly once unless cancelled; the channel frees s right after. */
    void (*on_done)(struct bp_grpc_stream *s, const struct bp_grpc_status *st, void *arg);
};

struct bp_grpc_stats {
    unsigned long connections, connect_failures, goaways, streams, stream_failures;
    unsigned long bytes_sent, bytes_received;
};

/* A channel to opts->host:opts->port on loop (no connection yet: the first call opens it). The
 * strings are copied. Returns NULL with err filled when opts are unusable or TLS cannot be set
 * up (CA file unreadable). */
struct bp_grpc_channel *bp_grpc_channel_new(struct ev_loop *loop,
                                            const struct bp_grpc_channel_opts *opts,
                                            char *err, size_t errlen) BP_WUR;

/* Closes the connections and frees every stream still open without running its callbacks (the
 * caller drops its stream pointers). Not from inside a callback of this channel. NULL is fine. */
void bp_grpc_channel_free(struct bp_grpc_channel *ch);

const struct bp_grpc_stats *bp_grpc_channel_stats(const struct bp_grpc_channel *ch);

/* Opens a call to path ("/package.Service/Method") with the headers of opts (copied). Messages
 * go with bp_grpc_stream_send; nothing is sent before the connection is up. Never runs a callback
 * itself: even a connection that cannot be made is reported through on_done from the loop.
 * Returns NULL only when out of memory or path is not a path. */
struct bp_grpc_stream *bp_grpc_stream_open(struct bp_grpc_channel *ch, const char *path,
                                           const struct bp_grpc_call_opts *opts,
                                           const struct bp_grpc_stream_cbs *cbs, void *arg);

/* Queues one message (copied, framed with its 5-byte prefix). Returns 0; -1 when the stream has
 * half-closed or ended (the message is dropped: on_done tells the end); -2 when its queue holds
 * max_queued bytes or more (nothing queued: wait for on_writable, which then follows); -3 when
 * out of memory for it (nothing queued, no on_writable: try again later). A message over
 * 4 GiB - 1 is refused with -1. */
int bp_grpc_stream_send(struct bp_grpc_stream *s, const void *msg, size_t len) BP_WUR;

/* Bytes queued on s and not yet handed to the connection. */
size_t bp_grpc_stream_queued(const struct bp_grpc_stream *s);

/* Half-closes: END_STREAM follows the queued messages; replies still arrive. Idempotent. */
void bp_grpc_stream_close_send(struct bp_grpc_stream *s);

/* Ends the call at once (RST_STREAM CANCEL to the server when it had started); no callback of s
 * runs afterwards and s is freed by the channel: the caller drops the pointer. Safe from inside
 * any callback, s's own included (not after s's on_done: s is gone then). */
void bp_grpc_stream_cancel(struct bp_grpc_stream *s);

/* Like bp_grpc_stream_cancel, and the connection s is on takes no new call: the next one opens
 * a new connection. For a call whose replies did not come in time: its connection may be one the
 * server no longer serves (a half-open peer, flow-control windows that never reopen), and calls
 * opened on it again would wait as long. Calls already on it stay there until they end. */
void bp_grpc_stream_abandon(struct bp_grpc_stream *s);

/* A unary call's end: reply is the single reply message when st->code is OK, else NULL. A reply
 * of zero or several messages with status OK ends INTERNAL. */
typedef void (*bp_grpc_unary_fn)(void *arg, const struct bp_grpc_status *st, const uint8_t *reply,
                                 size_t reply_len);

/* One request message, one reply (CreateWriteStream, FinalizeWriteStream...): a stream that sends
 * msg and half-closes. done runs once from the loop unless the returned stream is cancelled.
 * Returns NULL (and done never runs) only when out of memory or path is not a path. */
struct bp_grpc_stream *bp_grpc_unary(struct bp_grpc_channel *ch, const char *path,
                                     const struct bp_grpc_call_opts *opts, const void *msg,
                                     size_t len, bp_grpc_unary_fn done, void *arg);

#endif
