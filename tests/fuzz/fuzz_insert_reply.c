/* Fuzz target: the insertAll reply parser (bp_insert_reply_errors, runtime/insert_reply.c). */
#include <stdint.h>
#include <stdlib.h>

#include "insert_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bp_row_error *errs = NULL;
    char **reasons = NULL;
    char err[1200];
    size_t nrows = size ? (size_t)data[0] % 8 + 1 : 1;   /* rows the request "sent" */
    long n = bp_insert_reply_errors((const char *)data, size, nrows, &errs, &reasons, err,
                                    sizeof(err));
    for (long i = 0; i < n; i++) {
        if (errs[i].index >= nrows || errs[i].reason != reasons[i])
            __builtin_trap();
        free(reasons[i]);
    }
    free(reasons);
    free(errs);
    return 0;
}
