/* grpc_frame.h - the bytes of gRPC over HTTP/2 that do not need a connection: status codes and
 * which of them are worth a retry, the 5-byte length prefix of every message (a reader that
 * reassembles messages from DATA chunks of any size, with a cap against a hostile server), the
 * trailer values (grpc-status digits, percent-encoded grpc-message, base64 grpc-status-details-bin)
 * and grpc-timeout. Pure functions: no I/O, no loop; grpc_channel.c uses them, and the unit tests
 * and the fuzz target drive them directly. The wire rules are grpc's doc/PROTOCOL-HTTP2.md. */
#ifndef BP_GRPC_FRAME_H
#define BP_GRPC_FRAME_H

#include <stdint.h>

#include "common.h"

/* google.rpc.Code, as grpc-status carries it. */
enum bp_grpc_code {
    BP_GRPC_OK = 0,
    BP_GRPC_CANCELLED = 1,
    BP_GRPC_UNKNOWN = 2,
    BP_GRPC_INVALID_ARGUMENT = 3,
    BP_GRPC_DEADLINE_EXCEEDED = 4,
    BP_GRPC_NOT_FOUND = 5,
    BP_GRPC_ALREADY_EXISTS = 6,
    BP_GRPC_PERMISSION_DENIED = 7,
    BP_GRPC_RESOURCE_EXHAUSTED = 8,
    BP_GRPC_FAILED_PRECONDITION = 9,
    BP_GRPC_ABORTED = 10,
    BP_GRPC_OUT_OF_RANGE = 11,
    BP_GRPC_UNIMPLEMENTED = 12,
    BP_GRPC_INTERNAL = 13,
    BP_GRPC_UNAVAILABLE = 14,
    BP_GRPC_DATA_LOSS = 15,
    BP_GRPC_UNAUTHENTICATED = 16,
};

/* Bytes of the prefix in front of every message: compressed flag, then big-endian length. */
#define BP_GRPC_PREFIX 5

/* The code's name ("UNAVAILABLE"), or "UNKNOWN_CODE" for one outside 0..16.
 * Static string. */
const char *bp_grpc_code_name(int code);

/* Whether a call that ended with code is worth repeating as it is, under the caller's one retry
 * policy (api.h's bp_backoff): UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, INTERNAL,
 * DEADLINE_EXCEEDED and CANCELLED - the list Google's BigQuery Storage clients retry. A caller
 * that cancelled a call itself does not retry it: it knows. */
int bp_grpc_retryable(int code);

/* The status of a stream an HTTP/2 RST_STREAM (or GOAWAY) ended before any grpc-status, from its
 * error code, as PROTOCOL-HTTP2.md maps them: REFUSED_STREAM -> UNAVAILABLE (the server never
 * processed it: always safe to retry), CANCEL -> CANCELLED, ENHANCE_YOUR_CALM ->
 * RESOURCE_EXHAUSTED, INADEQUATE_SECURITY -> PERMISSION_DENIED, anything else -> INTERNAL. */
int bp_grpc_code_from_h2_error(uint32_t h2_error);

/* The status of a reply without grpc-status whose :status is not 200 (a proxy or load balancer
 * answered): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 /
 * 502 / 503 / 504 UNAVAILABLE, anything else UNKNOWN. */
int bp_grpc_code_from_http_status(long status);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void bp_grpc_prefix(uint8_t out[BP_GRPC_PREFIX], uint32_t len);

/* Reassembles messages from a stream's DATA bytes, however the server splits them. A message
 * longer than max fails the reader (a hostile server announcing 4 GiB gets an error, not an
 * allocation); a set compressed flag fails it too (the client never offers grpc-accept-encoding,
 * so a compressed message is a protocol error). Only a message split across chunks is copied. */
struct bp_grpc_reader {
    uint8_t hdr[BP_GRPC_PREFIX];
    size_t hdr_have;
    uint8_t *msg;          /* the message being reassembled, or NULL */
    size_t len, have, max;
    int code;              /* 0, or the failure's status code; the reader then takes nothing */
    char error[96];        /* the failure, for the status message */
};

/* Called once per complete message; msg is valid only during the call. Returns 0 to go on, non-0
 * to stop feeding (the rest of the chunk is dropped: the caller is ending the stream). */
typedef int (*bp_grpc_msg_fn)(void *arg, const uint8_t *msg, size_t len);

void bp_grpc_reader_init(struct bp_grpc_reader *r, size_t max);
/* Frees the partial message; the reader may be initialized again. A zeroed reader is fine. */
void bp_grpc_reader_free(struct bp_grpc_reader *r);
/* Feeds n bytes, calling fn (synchronously) for every message they complete. Returns 0, 1 when fn
 * asked to stop, or a status code (r->code, with r->error) once the reader failed: length over
 * max, compressed flag, no memory. A failed reader returns its code again without reading. */
int bp_grpc_reader_feed(struct bp_grpc_reader *r, const uint8_t *p, size_t n, bp_grpc_msg_fn fn,
                        void *arg) BP_WUR;
/* Whether the stream ended in the middle of a message (a truncated reply: an error even when
 * grpc-status says OK). */
int bp_grpc_reader_partial(const struct bp_grpc_reader *r);

/* grpc-status's value: 1 to 3 ASCII digits, no sign, no spaces, at most 999. Returns the code
 * (which may be outside 0..16: the caller keeps it, as the spec says) or -1 when malformed. */
int bp_grpc_parse_status(const char *v, size_t len);

/* grpc-message's value percent-decoded into a new NUL-terminated string (malloc). A '%' not
 * followed by two hex digits is kept as it is (the spec: decode leniently); a decoded NUL becomes
 * '?' so the result stays a C string. NULL only when out of memory. */
char *bp_grpc_percent_decode(const char *v, size_t len);

/* grpc-status-details-bin's value, base64 with or without padding, into a new buffer (*out,
 * *outlen; malloc, at least 1 byte). Returns 0, or -1 when it is not base64 (or out of memory). */
int bp_grpc_base64_decode(const char *v, size_t len, uint8_t **out, size_t *outlen) BP_WUR;

/* grpc-timeout's value for a deadline seconds from now: at most 8 digits and the finest unit
 * that fits (n, u, m, S, M, H), rounded up so the server never gives up first. Returns the
 * length written, or -1 when seconds is not positive and finite or out is under 10 bytes. */
int bp_grpc_timeout_format(double seconds, char *out, size_t outlen);

#endif
