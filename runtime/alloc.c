/* alloc.c - allocation wrappers for small fixed-size objects: on OOM there is nothing sensible to
 * do for them, so we abort with a message. Allocations whose size comes from outside data do not
 * come here: they go through bp_buf (capped) and fail softly. */
#include "common.h"

#include <jansson.h>
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

/* Makes jansson allocate through bp_xmalloc: jansson 2.14's lexer does not check every allocation
 * (akheron/jansson#362: a failed append desyncs it, and a string then reads past the buffer), so
 * an OOM inside json_loadb could crash; through bp_xmalloc it stops with a clear message instead.
 * The replies it parses are capped (http.c), so this is the small-allocation rule of STYLE.md.
 * Call once at start-up, before any JSON is parsed. */
void
bp_alloc_json_init(void)
{
    json_set_alloc_funcs(bp_xmalloc, free);
}

/* zlib's allocation hooks (gz.c): allocations whose failure zlib reports (Z_MEM_ERROR), so the
 * compressor and inflater fail softly instead of aborting, through the same malloc as the rest of
 * the runtime (tests/alloc_fail injects failures there). */
void *
bp_zalloc(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return malloc((size_t)items * size);
}

void
bp_zfree(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}
