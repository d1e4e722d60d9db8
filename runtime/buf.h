/* buf.h - growable byte buffer with a hard maximum (sizes driven by outside data are capped). */
#ifndef BP_BUF_H
#define BP_BUF_H

#include "common.h"

typedef struct bp_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;   /* appends that would pass this fail with -1 */
} bp_buf_t;

void bp_buf_init(bp_buf_t *b, size_t max);
void bp_buf_free(bp_buf_t *b);
int bp_buf_reserve(bp_buf_t *b, size_t extra) BP_WUR;
int bp_buf_append(bp_buf_t *b, const void *p, size_t n) BP_WUR;
int bp_buf_append_str(bp_buf_t *b, const char *s) BP_WUR;
void bp_buf_consume(bp_buf_t *b, size_t n);

static inline void
bp_buf_reset(bp_buf_t *b)
{
    b->len = 0;
}

#endif
