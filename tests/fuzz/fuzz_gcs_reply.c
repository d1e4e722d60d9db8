/* Fuzz target: the GCS upload reply checker (runtime/gcs_reply.c). Besides memory safety it checks
 * that no reply is accepted unless it really names our bucket, object and size. */
#include <stdint.h>
#include <string.h>

#include "gcs_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[160];
    const char *body = (const char *)data;
    if (bp_gcs_reply_check(body, size, "backend_events_data", "output/order/x.json", 12, NULL, err,
                           sizeof(err)) == 0) {
        /* accepted: the reply must contain the names we asked about */
        if (!memmem(body, size, "backend_events_data", 19) &&
            !memmem(body, size, "\\u", 2))
            __builtin_trap();
    }
    (void)bp_gcs_reply_check(body, size, "b", "n", 0, "1B2M2Y8AsgTpgAmY7PhCfg==", err,
                             sizeof(err));
    return 0;
}
