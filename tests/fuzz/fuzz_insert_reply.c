/* Fuzz target: the insertAll reply parser (parse_insert_errors, static in store_cloud.c: the file
 * is compiled into this target so the parser is fuzzed as it is, without exporting it). */
#include "../../runtime/store_cloud.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bp_row_error *errs = NULL;
    char **reasons = NULL;
    char err[1200];
    size_t nrows = size ? (size_t)data[0] % 8 + 1 : 1;   /* rows the request "sent" */
    long n = parse_insert_errors((const char *)data, size, nrows, &errs, &reasons, err,
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
