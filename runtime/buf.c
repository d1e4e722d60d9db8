/* buf.c - growable buffer. Growth doubles to amortise appends; the cap turns runaway input
 * (a huge line, a huge response) into an error the caller handles, not an OOM kill. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void
bp_buf_init(bp_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void
bp_buf_free(bp_buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Makes room for `extra` more bytes. Returns 0, or -1 when that would pass b->max or malloc fails. */
int
bp_buf_reserve(bp_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return -1;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
bp_buf_append(bp_buf_t *b, const void *p, size_t n)
{
    if (bp_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
bp_buf_append_str(bp_buf_t *b, const char *s)
{
    return bp_buf_append(b, s, strlen(s));
}

/* Drops the first n bytes (a consumed prefix), keeping the rest at the front. */
void
bp_buf_consume(bp_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
