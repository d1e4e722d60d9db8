/* common.h - attributes and small helpers shared by every runtime file. */
#ifndef BP_COMMON_H
#define BP_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Functions whose result must be checked: the compiler keeps us honest about errors. */
#define BP_WUR __attribute__((warn_unused_result))
/* Symbols the Lua side reaches through ffi.C; everything else stays hidden. */
#define BP_EXPORT __attribute__((visibility("default")))
#define BP_UNUSED __attribute__((unused))
#define BP_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define BP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 64-bit FNV-1a of len bytes at p: the hash of the runtime's small tables (ids, suspects). */
static inline uint64_t
bp_fnv64(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* Small fixed allocations abort on OOM (STYLE: sizes driven by outside data are capped elsewhere). */
void *bp_xmalloc(size_t n);
void *bp_xcalloc(size_t n, size_t size);
void *bp_xrealloc(void *p, size_t n);
char *bp_xstrdup(const char *s);
char *bp_xstrndup(const char *s, size_t n);
/* zlib's zalloc/zfree (alloc.c): the runtime's malloc, failures returned as NULL. */
void *bp_zalloc(void *opaque, unsigned items, unsigned size);
void bp_zfree(void *opaque, void *p);
void bp_alloc_json_init(void);

#endif
