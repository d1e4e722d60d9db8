/* Fuzz target: OAuth token replies and metadata-server replies (bp_auth_refresh_done, and so
 * bp_auth_parse_token and bp_auth_describe_error). The first byte picks the HTTP status and the
 * credentials kind; the rest is the reply body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bp_auth *
metadata_auth(void)
{
    static struct bp_auth *a;
    char err[512];
    if (!a) {
        /* no key file anywhere: ADC falls through to the metadata server (never contacted) */
        unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
        setenv("CLOUDSDK_CONFIG", "/nonexistent", 1);
        setenv("GCE_METADATA_HOST", "127.0.0.1:1", 1);
        a = bp_auth_new(NULL, 0, NULL, err, sizeof(err));
        if (!a)
            abort();
    }
    return a;
}

static struct bp_auth *
user_auth(void)
{
    static struct bp_auth *a;
    char err[512];
    if (!a) {
        a = bp_auth_new(SRC_ROOT "/tests/fuzz/corpus/key_file/authorized_user.json", 0, NULL, err,
                        sizeof(err));
        if (!a)
            abort();
    }
    return a;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = { 200, 200, 200, 201, 400, 401, 403, 404, 500, 503, 0, 302 };
    char err[1024];
    if (size < 1)
        return 0;
    long status = statuses[data[0] % BP_ARRAY_LEN(statuses)];
    struct bp_auth *a = data[0] & 0x80 ? user_auth() : metadata_auth();
    int flavor = (data[0] & 0x40) == 0;
    if (bp_auth_refresh_done(a, 1000.0, status, (const char *)data + 1, size - 1, flavor, err,
                             sizeof(err)) == 0) {
        const char *t = bp_auth_token(a, 1000.0);
        if (t && strlen(t) == 0)
            __builtin_trap();   /* an empty token must never be accepted */
    }
    char *token = NULL;
    double expires = 0;
    if (bp_auth_parse_token((const char *)data + 1, size - 1, &token, &expires, "fuzz", err,
                            sizeof(err)) == 0)
        free(token);
    return 0;
}
