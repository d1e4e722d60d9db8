/* Unit test: the ffi.cdef block of scripts/bepipe/cdef.lua is the one in runtime/bp_ffi.h
 * (compared with whitespace folded), and the ABI numbers agree. STYLE: one source of truth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_ffi.h"

#ifndef SRC_ROOT
#define SRC_ROOT "."
#endif

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    return p;
}

/* The text between the markers with every whitespace run folded to one space. */
static char *
block(const char *text)
{
    const char *b = strstr(text, "BP_CDEF_BEGIN */");
    const char *e = strstr(text, "/* BP_CDEF_END");
    assert_non_null(b);
    assert_non_null(e);
    b += strlen("BP_CDEF_BEGIN */");
    char *out = malloc((size_t)(e - b) + 1);
    size_t o = 0;
    int sp = 0;
    for (const char *p = b; p < e; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            sp = 1;
            continue;
        }
        if (sp && o)
            out[o++] = ' ';
        sp = 0;
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}

static void
cdef_matches_header(void **state)
{
    (void)state;
    char *h = slurp(SRC_ROOT "/runtime/bp_ffi.h");
    char *l = slurp(SRC_ROOT "/scripts/bepipe/cdef.lua");
    char *hb = block(h), *lb = block(l);
    assert_string_equal(hb, lb);
    char abi[32];
    snprintf(abi, sizeof(abi), "ABI = %d", BP_FFI_ABI);
    assert_non_null(strstr(l, abi));
    assert_int_equal(bp_ffi_abi_version(), BP_FFI_ABI);
    free(h);
    free(l);
    free(hb);
    free(lb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cdef_matches_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
