/* source.h - the contract between a source of events (a file, a Pub/Sub subscription) and the
 * runtime, in both directions, so a source never reaches into struct bp_rt and the runtime never
 * asks which kind of source it runs.
 *
 * The runtime calls a source through struct bp_source_ops; a source calls the runtime only
 * through the bp_rt_* functions declared below (struct bp_rt stays opaque here). Everything runs
 * on the one loop thread. */
#ifndef BP_SOURCE_H
#define BP_SOURCE_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "ack.h"
#include "bp_ffi.h"
#include "common.h"
#include "config.h"

struct bp_rt;
struct bp_source;
struct lua_State;

/* Counters a source keeps; the runtime reads them for the stats line and the summary. Fields a
 * kind of source does not have stay 0. */
struct bp_source_stats {
    unsigned long skipped;          /* blank lines (file) */
    unsigned long pulled, acked, nacked, extended;
    unsigned long pull_failures;    /* pull calls that brought nothing (after the API's retries) */
    unsigned long ack_rejected;     /* ack ids the server refused (dropped; redelivered) */
    unsigned long outstanding_bytes;    /* a gauge, for /metrics: bytes not yet acked or nacked */
};

struct bp_source_ops {
    const char *kind;               /* for logs only: the runtime never branches on it */
    /* Starts reading (files) or pulling. Returns 0, or -1 with err set; nothing is delivered
     * before it returns. */
    int (*start)(struct bp_source *s, char *err, size_t errlen);
    /* Every destination of the message in ack slot `slot` has answered: ok = all stored (ack
     * it), else nack it (redeliver). Called from the ack tracker, possibly inside
     * bp_rt_process (local stores answer synchronously). May be NULL (no acks to send). */
    void (*acked)(struct bp_source *s, uint32_t slot, int ok);
    /* Messages received and not yet acked or nacked: flow control and drain read it. */
    size_t (*outstanding)(struct bp_source *s);
    /* Calls of the source still in flight (pulls, acks): the drain waits for 0. */
    size_t (*in_flight)(struct bp_source *s);
    /* Messages whose ack was sent and not yet confirmed: the drain waits for them longer than
     * for the other calls (a pull may be a long-poll), within drain_seconds. May be NULL. */
    size_t (*acks_unconfirmed)(struct bp_source *s);
    /* Reading may go on (the runtime's pressure fell). */
    void (*resume)(struct bp_source *s);
    /* Stops reading for good (drain); queued acks are sent. Buffered complete lines of a file
     * are not delivered after this. */
    void (*stop)(struct bp_source *s);
    /* Drain timeout: every message still outstanding is nacked now. May be NULL. */
    void (*nack_all)(struct bp_source *s);
    void (*stats)(struct bp_source *s, struct bp_source_stats *out);
    void (*destroy)(struct bp_source *s);
};

struct bp_source {
    const struct bp_source_ops *ops;
};

/* ---- what a source may call (implemented by the runtime, rt.c) ---- */

/* Runs n messages through Lua and the sinks. The messages are lent: valid until this returns
 * (what a batch time cap leaves for later is copied). slots (or NULL for a source without acks)
 * are their ack slots from bp_ack_new; each slot's verdict comes back through ops->acked,
 * possibly before this returns, possibly after a later loop iteration. Returns 0, or -1 when a
 * sink failed for good (the source stops and calls bp_rt_source_failed). */
int bp_rt_process(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots,
                  size_t n) BP_WUR;
/* Counts one message as read and sends it straight to the dead letter (it never reaches Lua: a
 * line too long, data that is not base64): stage and reason as they will be stored. The slot
 * (or BP_ACK_NONE) gets its verdict as above. Returns 0, or -1 when a sink failed. */
int bp_rt_process_dead(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage,
                       const char *reason) BP_WUR;
/* Whether the sinks are behind: a source without flow control of its own should wait and look
 * again shortly (it is not called back). */
int bp_rt_sinks_busy(struct bp_rt *rt);
/* Whether a source with flow control of its own should not pull more now: the archive's
 * uploads are behind (pressure.c). It is resumed (ops->resume) once they catch up, and should
 * look again whenever its messages are acked. */
int bp_rt_pull_paused(struct bp_rt *rt);
/* The source has delivered everything it will (end of input): the runtime drains. */
void bp_rt_source_finished(struct bp_rt *rt);
/* The source cannot go on (read error, sink failure, a subscription that does not exist): the
 * runtime drains and the process exits non-zero. why is logged. */
void bp_rt_source_failed(struct bp_rt *rt, const char *why);
/* Whether the runtime is draining (a source that receives messages then nacks them at once). */
int bp_rt_draining(const struct bp_rt *rt);
/* One message acked `seconds` (monotonic) after it was received: the ack latency histogram of
 * /metrics (metrics.c). */
void bp_rt_observe_ack_latency(struct bp_rt *rt, double seconds);
/* Whether the runtime wants each acked message's id (bp_rt_message_acked): with
 * bigquery.exactly_once, the append log forgets a message once it is acked. */
int bp_rt_wants_acked_ids(const struct bp_rt *rt);
/* The message with this id was acked (its ack queued for Pub/Sub). */
void bp_rt_message_acked(struct bp_rt *rt, const char *id, size_t len);

struct ev_loop *bp_rt_loop(struct bp_rt *rt);
struct bp_ack *bp_rt_ack(struct bp_rt *rt);
/* The effective configuration; it may change on reload, so read it when needed, not once. */
const struct bp_config *bp_rt_config(const struct bp_rt *rt);

/* ---- the kinds of source ---- */

/* NDJSON from path ("-" = stdin), streamed from a regular file, pipe or terminal. Returns the
 * source (reading starts with ops->start), or NULL with err set. */
struct bp_source *bp_source_ndjson_new(struct bp_rt *rt, const char *path, char *err,
                                       size_t errlen);

struct bp_api;
/* Pulls subscription ("projects/P/subscriptions/S") through api at base ("…/v1"). Returns the
 * source (pulling starts with ops->start), or NULL with err set. */
struct bp_source *bp_source_pubsub_new(struct bp_rt *rt, struct bp_api *api, const char *base,
                                       const char *subscription, char *err, size_t errlen);

#endif
