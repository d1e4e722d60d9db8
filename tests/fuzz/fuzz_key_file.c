/* Fuzz target: service-account and authorized_user key files (bp_auth_new loading a path), then
 * building a refresh request from what loaded (signs a JWT for a service account). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    char err[1024];
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/bp-fuzz-key-%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    struct bp_auth *a = bp_auth_new(path, 0, NULL, err, sizeof(err));
    if (a) {
        struct bp_auth_request req;
        if (bp_auth_refresh_request(a, 1000.0, 1000.0, &req, err, sizeof(err)) == 0)
            bp_auth_request_free(&req);
        bp_auth_free(a);
    }
    return 0;
}
