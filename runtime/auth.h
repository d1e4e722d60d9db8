/* auth.h - Google credentials (Application Default Credentials) as a pure state machine: it finds
 * the credentials, builds the HTTP request of a token refresh and digests its response, but does no
 * network I/O itself (http.c sends the request). Secrets never leave it except the access token
 * (bp_auth_token) and the request body it builds; errors name files and fields, never values. */
#ifndef BP_AUTH_H
#define BP_AUTH_H

#include "common.h"

/* What kind of credentials Application Default Credentials found. */
enum bp_auth_kind {
    BP_AUTH_NONE,             /* emulator: no token at all */
    BP_AUTH_SERVICE_ACCOUNT,  /* key file: RS256 JWT exchanged for a token */
    BP_AUTH_AUTHORIZED_USER,  /* gcloud user credentials: refresh_token grant */
    BP_AUTH_METADATA,         /* GCE/GKE/Cloud Run metadata server */
};

/* Scopes used when the caller passes none: covers Pub/Sub, BigQuery and GCS. */
#define BP_AUTH_DEFAULT_SCOPES "https://www.googleapis.com/auth/cloud-platform"
/* Google's clients re-mint a token this long before it expires. */
#define BP_AUTH_REFRESH_MARGIN 300.0
/* A refresh with no bp_auth_refresh_done after this long is taken as lost, and a new one may start. */
#define BP_AUTH_INFLIGHT_MAX 120.0
/* Failed refreshes back off 1, 2, 4 ... seconds, at most this long. */
#define BP_AUTH_BACKOFF_MAX 60.0

struct bp_auth;

/* One token request, owned by the caller until bp_auth_request_free (which wipes the body: it
 * holds the assertion or the refresh token). method is static; the rest is heap. */
struct bp_auth_request {
    const char *method;       /* "POST" or "GET" */
    char *url;
    char *headers[4];         /* "Name: value" */
    size_t nheaders;
    char *body;               /* NULL for GET */
    size_t body_len;
};

struct bp_auth *bp_auth_new(const char *key_file, int none, const char *scopes,
                            char *err, size_t errlen) BP_WUR;
void bp_auth_free(struct bp_auth *a);
enum bp_auth_kind bp_auth_kind(const struct bp_auth *a);
const char *bp_auth_kind_name(enum bp_auth_kind kind);
const char *bp_auth_source(const struct bp_auth *a);
const char *bp_auth_project(const struct bp_auth *a);
const char *bp_auth_quota_project(const struct bp_auth *a);
int bp_auth_set_token_url(struct bp_auth *a, const char *url, char *err, size_t errlen) BP_WUR;

const char *bp_auth_token(const struct bp_auth *a, double now);
double bp_auth_refresh_at(const struct bp_auth *a);
int bp_auth_needs_refresh(const struct bp_auth *a, double now);
int bp_auth_refresh_request(struct bp_auth *a, double now, double wall,
                            struct bp_auth_request *req, char *err, size_t errlen) BP_WUR;
void bp_auth_request_free(struct bp_auth_request *req);
int bp_auth_refresh_done(struct bp_auth *a, double now, long status, const char *body, size_t len,
                         int metadata_flavor_ok, char *err, size_t errlen) BP_WUR;
void bp_auth_invalidate(struct bp_auth *a);

/* auth_jwt.c: the wire formats of the token endpoints (encodings, JWT, form bodies, URLs, replies).
 * Used by auth.c; exported so the tests can reach them. Strings returned are malloc'd. */
struct evp_pkey_st;
void bp_auth_set_err(char *err, size_t errlen, const char *fmt, ...) BP_PRINTF(3, 4);
char *bp_auth_base64url(const void *data, size_t len);
void bp_auth_wipe_free(char *s);
char *bp_auth_scopes_normalise(const char *scopes);
struct evp_pkey_st *bp_auth_rsa_key(const char *pem);
int bp_auth_jwt_sign(struct evp_pkey_st *key, const char *header_json, const char *claims_json,
                     char **jwt) BP_WUR;
int bp_auth_jwt_assertion(struct evp_pkey_st *key, const char *key_id, const char *email,
                          const char *scopes, const char *aud, double now, long lifetime,
                          char **jwt) BP_WUR;
char *bp_auth_refresh_form(const char *client_id, const char *client_secret,
                           const char *refresh_token);
char *bp_auth_token_url(const char *url);
char *bp_auth_metadata_base(const char *host);
char *bp_auth_metadata_url(const char *base, const char *scopes);
int bp_auth_parse_token(const char *body, size_t len, char **token, double *expires_in,
                        const char *endpoint, char *err, size_t errlen) BP_WUR;
void bp_auth_describe_error(long status, const char *body, size_t len,
                            const char *const *secrets, size_t nsecrets, const char *endpoint,
                            char *err, size_t errlen);

#endif
