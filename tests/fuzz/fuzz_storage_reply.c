/* Fuzz target: the Storage Write API's replies (runtime/proto_msg.c, through protobuf-c): byte 0
 * picks the decoder (AppendRowsResponse with 1..8 rows sent, WriteStream, FinalizeWriteStream
 * response, google.rpc.Status) and the rest is the message. A decoded reply's row indexes must
 * be below the rows sent, and an updated_schema must give a writer schema or a clean refusal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto_desc.h"
#include "proto_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[300], msg[64];
    if (size == 0)
        return 0;
    unsigned pick = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (pick % 4) {
    case 0: {
        struct bp_append_reply r;
        size_t nrows = (pick >> 2) % 8 + 1;
        if (bp_proto_append_reply_decode(p, n, nrows, &r, err, sizeof(err)) != 0) {
            if (r.message || r.row_errors || r.updated_schema || r.write_stream || r.schema_error)
                __builtin_trap();   /* a refused reply leaves nothing behind */
            return 0;
        }
        for (size_t i = 0; i < r.nrow_errors; i++)
            if (r.row_errors[i].index >= nrows || !r.row_errors[i].message)
                __builtin_trap();
        if (!r.write_stream || (r.has_error && !r.message) || (r.updated_schema && r.schema_error))
            __builtin_trap();   /* a schema is either taken or dropped with its reason */
        if (r.updated_schema) {
            bp_buf_t b;
            bp_buf_init(&b, 1 << 20);
            (void)!bp_proto_descriptor(r.updated_schema, &b, err, sizeof(err));
            bp_buf_free(&b);
        }
        bp_proto_append_reply_free(&r);
        return 0;
    }
    case 1: {
        char *name = NULL;
        struct bp_schema *s = NULL;
        if (bp_proto_write_stream_decode(p, n, &name, &s, err, sizeof(err)) == 0) {
            if (!name || !name[0])
                __builtin_trap();
            free(name);
            bp_schema_free(s);
        } else if (s) {
            __builtin_trap();
        }
        return 0;
    }
    case 2: {
        int64_t rows;
        (void)!bp_proto_finalize_reply_decode(p, n, &rows, err, sizeof(err));
        return 0;
    }
    default: {
        int code, sc;
        if (bp_proto_status_decode(p, n, &code, msg, sizeof(msg), &sc, err, sizeof(err)) == 0 &&
            strlen(msg) >= sizeof(msg))
            __builtin_trap();
        return 0;
    }
    }
}
