/* alloc.c - allocation wrappers for small fixed-size objects: on OOM there is nothing sensible to
 * do for them, so we abort with a message. Allocations whose size comes from outside data do not
 * come here: they go through bp_buf (capped) and fail softly. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
oom(size_t n)
{
    fprintf(stderr, "bepipe-lua: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
bp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *
bp_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *
bp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *
bp_xstrdup(const char *s)
{
    return bp_xstrndup(s, strlen(s));
}

char *
bp_xstrndup(const char *s, size_t n)
{
    char *p = bp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
