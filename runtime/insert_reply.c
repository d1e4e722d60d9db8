/* insert_reply.c - the insertErrors of a tabledata.insertAll reply (insert_reply.h), read with
 * jansson: a reply is small (capped at 64 KB + 4 KB a row) and read once per request. Its own
 * file so that the fuzz target links it as the store uses it. */
#include "insert_reply.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long
bp_insert_reply_errors(const char *body, size_t len, size_t nrows, struct bp_row_error **errs,
                       char ***reasons, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "insertAll reply is not a JSON object: %s", je.text);
        json_decref(root);
        return -1;
    }
    json_t *ie = json_object_get(root, "insertErrors");
    size_t n = json_is_array(ie) ? json_array_size(ie) : 0;
    *errs = n ? bp_xcalloc(n, sizeof(**errs)) : NULL;
    *reasons = n ? bp_xcalloc(n, sizeof(char *)) : NULL;
    long out = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ie, i);
        json_t *idx = json_object_get(e, "index");
        json_t *first = json_array_get(json_object_get(e, "errors"), 0);
        const char *reason = json_string_value(json_object_get(first, "reason"));
        const char *message = json_string_value(json_object_get(first, "message"));
        const char *location = json_string_value(json_object_get(first, "location"));
        if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
            (size_t)json_integer_value(idx) >= nrows) {
            snprintf(err, errlen, "insertAll reply names a row that was not sent");
            goto fail;
        }
        if (!reason || strcmp(reason, "invalid") != 0) {
            snprintf(err, errlen, "row %lld: %s: %s", (long long)json_integer_value(idx),
                     reason ? reason : "error", message ? message : "");
            goto fail;
        }
        char text[1024];
        snprintf(text, sizeof(text), "%s%s%s%s%s", reason, message ? ": " : "",
                 message ? message : "", location ? " at " : "", location ? location : "");
        (*reasons)[out] = bp_xstrdup(text);
        (*errs)[out].index = (size_t)json_integer_value(idx);
        (*errs)[out].reason = (*reasons)[out];
        out++;
    }
    json_decref(root);
    return out;
fail:
    for (long k = 0; k < out; k++)
        free((*reasons)[k]);
    free(*reasons);
    free(*errs);
    *reasons = NULL;
    *errs = NULL;
    json_decref(root);
    return -1;
}
