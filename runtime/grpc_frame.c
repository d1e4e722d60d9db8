/* grpc_frame.c - gRPC's message prefix and trailer values (grpc_frame.h). Pure: every input here
 * comes from a server, so every length is checked before it is used. */
#include "grpc_frame.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static const char *const code_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* Static name of a status code (grpc_frame.h). */
const char *
bp_grpc_code_name(int code)
{
    if (code >= 0 && (size_t)code < BP_ARRAY_LEN(code_names))
        return code_names[code];
    return "UNKNOWN_CODE";
}

/* Google's BigQuery Storage clients retry these (grpc_frame.h). */
int
bp_grpc_retryable(int code)
{
    switch (code) {
    case BP_GRPC_UNAVAILABLE:
    case BP_GRPC_RESOURCE_EXHAUSTED:
    case BP_GRPC_ABORTED:
    case BP_GRPC_INTERNAL:
    case BP_GRPC_DEADLINE_EXCEEDED:
    case BP_GRPC_CANCELLED:
        return 1;
    default:
        return 0;
    }
}

/* RST_STREAM / GOAWAY error code to a status (grpc_frame.h); the numbers are RFC 9113's. */
int
bp_grpc_code_from_h2_error(uint32_t h2_error)
{
    switch (h2_error) {
    case 0x7:  /* REFUSED_STREAM */
        return BP_GRPC_UNAVAILABLE;
    case 0x8:  /* CANCEL */
        return BP_GRPC_CANCELLED;
    case 0xb:  /* ENHANCE_YOUR_CALM */
        return BP_GRPC_RESOURCE_EXHAUSTED;
    case 0xc:  /* INADEQUATE_SECURITY */
        return BP_GRPC_PERMISSION_DENIED;
    default:
        return BP_GRPC_INTERNAL;
    }
}

/* A non-200 reply without grpc-status (grpc_frame.h). */
int
bp_grpc_code_from_http_status(long status)
{
    switch (status) {
    case 400: return BP_GRPC_INTERNAL;
    case 401: return BP_GRPC_UNAUTHENTICATED;
    case 403: return BP_GRPC_PERMISSION_DENIED;
    case 404: return BP_GRPC_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return BP_GRPC_UNAVAILABLE;
    default: return BP_GRPC_UNKNOWN;
    }
}

/* The 5-byte prefix (grpc_frame.h). */
void
bp_grpc_prefix(uint8_t out[BP_GRPC_PREFIX], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* An empty reader taking messages up to max bytes (grpc_frame.h). */
void
bp_grpc_reader_init(struct bp_grpc_reader *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

/* Frees the partial message (grpc_frame.h). */
void
bp_grpc_reader_free(struct bp_grpc_reader *r)
{
    free(r->msg);
    r->msg = NULL;
}

static int
reader_fail(struct bp_grpc_reader *r, int code, const char *what)
{
    r->code = code;
    snprintf(r->error, sizeof(r->error), "%s", what);
    bp_grpc_reader_free(r);
    return code;
}

/* Takes a complete prefix: checks the flag and the length against the cap. */
static int
reader_header(struct bp_grpc_reader *r)
{
    if (r->hdr[0] != 0)
        return reader_fail(r, BP_GRPC_INTERNAL, r->hdr[0] == 1 ?
                           "compressed message, none was offered" : "bad message flag byte");
    r->len = (size_t)r->hdr[1] << 24 | (size_t)r->hdr[2] << 16 | (size_t)r->hdr[3] << 8 | r->hdr[4];
    r->have = 0;
    if (r->len > r->max) {
        r->code = BP_GRPC_RESOURCE_EXHAUSTED;
        snprintf(r->error, sizeof(r->error), "reply message of %zu bytes over the %zu-byte cap",
                 r->len, r->max);
        return r->code;
    }
    return 0;
}

/* Reassembles messages from n bytes (grpc_frame.h). */
int
bp_grpc_reader_feed(struct bp_grpc_reader *r, const uint8_t *p, size_t n, bp_grpc_msg_fn fn,
                    void *arg)
{
    if (r->code)
        return r->code;
    while (n > 0 || (r->hdr_have == BP_GRPC_PREFIX && r->have == r->len)) {
        if (r->hdr_have < BP_GRPC_PREFIX) {
            size_t take = BP_GRPC_PREFIX - r->hdr_have;
            if (take > n)
                take = n;
            memcpy(r->hdr + r->hdr_have, p, take);
            r->hdr_have += take;
            p += take;
            n -= take;
            if (r->hdr_have < BP_GRPC_PREFIX)
                return 0;
            int rc = reader_header(r);
            if (rc)
                return rc;
        }
        const uint8_t *whole = NULL;
        if (r->have == 0 && n >= r->len) {
            whole = p;      /* the common case: the whole message is in this chunk, no copy */
            p += r->len;
            n -= r->len;
            r->have = r->len;
        } else if (r->have < r->len) {
            if (!r->msg && !(r->msg = malloc(r->len)))
                return reader_fail(r, BP_GRPC_RESOURCE_EXHAUSTED, "out of memory for a message");
            size_t take = r->len - r->have;
            if (take > n)
                take = n;
            memcpy(r->msg + r->have, p, take);
            r->have += take;
            p += take;
            n -= take;
            if (r->have < r->len)
                return 0;
            whole = r->msg;
        } else {
            whole = r->msg ? r->msg : p;   /* a zero-length message */
        }
        size_t len = r->len;
        r->hdr_have = 0;
        r->len = r->have = 0;
        int stop = fn(arg, whole, len);
        bp_grpc_reader_free(r);
        if (stop)
            return 1;
    }
    return 0;
}

/* Mid-message at the end of the stream (grpc_frame.h). */
int
bp_grpc_reader_partial(const struct bp_grpc_reader *r)
{
    return r->hdr_have > 0;
}

/* grpc-status digits (grpc_frame.h). */
int
bp_grpc_parse_status(const char *v, size_t len)
{
    if (len == 0 || len > 3)
        return -1;
    int code = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        code = code * 10 + (v[i] - '0');
    }
    return code;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Lenient percent-decoding of grpc-message (grpc_frame.h). */
char *
bp_grpc_percent_decode(const char *v, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < len && (hi = hexval(v[i + 1])) >= 0 &&
            (lo = hexval(v[i + 2])) >= 0) {
            char c = (char)(hi << 4 | lo);
            out[o++] = c ? c : '?';
            i += 2;
        } else {
            out[o++] = v[i] ? v[i] : '?';
        }
    }
    out[o] = '\0';
    return out;
}

/* base64 with or without padding, through OpenSSL's decoder (grpc_frame.h). */
int
bp_grpc_base64_decode(const char *v, size_t len, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    while (len > 0 && v[len - 1] == '=')
        len--;                          /* padding is optional: strip it and add it back */
    if (len % 4 == 1 || len > (size_t)1 << 28)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -1;                  /* EVP_DecodeBlock would skip blanks: be strict */
    }
    size_t pad = (4 - len % 4) % 4;
    char *in = malloc(len + pad + 1);
    uint8_t *dec = malloc((len + pad) / 4 * 3 + 1);
    if (!in || !dec) {
        free(in);
        free(dec);
        return -1;
    }
    memcpy(in, v, len);
    memset(in + len, '=', pad);
    int n = len + pad ? EVP_DecodeBlock(dec, (const unsigned char *)in, (int)(len + pad)) : 0;
    free(in);
    if (n < 0 || (size_t)n < pad) {
        free(dec);
        return -1;
    }
    *out = dec;
    *outlen = (size_t)n - pad;          /* EVP_DecodeBlock counts the padding's zero bytes */
    return 0;
}

/* grpc-timeout's value (grpc_frame.h). */
int
bp_grpc_timeout_format(double seconds, char *out, size_t outlen)
{
    static const struct { char unit; double per_second; } units[] = {
        {'n', 1e9}, {'u', 1e6}, {'m', 1e3}, {'S', 1}, {'M', 1.0 / 60}, {'H', 1.0 / 3600},
    };
    if (!(seconds > 0) || !isfinite(seconds) || outlen < 10)
        return -1;
    for (size_t i = 0; i < BP_ARRAY_LEN(units); i++) {
        double v = ceil(seconds * units[i].per_second);
        if (v <= 99999999.0)
            return snprintf(out, outlen, "%.0f%c", v, units[i].unit);
    }
    return snprintf(out, outlen, "99999999H");
}
