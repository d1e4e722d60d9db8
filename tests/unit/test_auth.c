/* Unit tests: credentials discovery (ADC order), key-file errors, the RS256 JWT (checked with
 * OpenSSL's verifier and a public key only), the refresh state machine (margins, in flight,
 * backoff, 401), the three request shapes, and that no secret reaches an error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

#define T0 1700000000.25   /* a wall-clock "now"; iat must come out as its floor */
#define TOKEN_URL "https://oauth2.example.test/token"
#define EMAIL "bp@test-project.iam.gserviceaccount.com"
#define SCOPES "https://www.googleapis.com/auth/pubsub https://www.googleapis.com/auth/bigquery"
#define JWT_PREFIX "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
#define ACCESS "ya29.a0AfB_byC-access-SECRET"
#define REFRESH "1//0gREFRESH-SECRET+/=x"
#define CLIENT_SECRET "d-FL95Q19q7MQmFpd7hHD0Ty"

static EVP_PKEY *g_key;      /* generated once: RSA keygen is the slow part, more so under valgrind */
static char g_dir[PATH_MAX];

/* ---- helpers ---- */

static char *
tmp_path(const char *name)
{
    char *p = malloc(strlen(g_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", g_dir, name);
    return p;
}

static char *
write_text(const char *name, const char *text)
{
    char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static char *
write_json(const char *name, json_t *o)
{
    char *path = tmp_path(name);
    assert_int_equal(json_dump_file(o, path, 0), 0);
    json_decref(o);
    return path;
}

static char *
pem_of(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = strndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

/* A complete service-account key file as a JSON object the test may still edit. */
static json_t *
sa_json(const char *project)
{
    char *pem = pem_of(g_key);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "service_account", "project_id",
                          project, "private_key_id", "key-id-1", "private_key", pem,
                          "client_email", EMAIL, "client_id", "1234", "token_uri", TOKEN_URL);
    free(pem);
    return o;
}

static json_t *
au_json(void)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "authorized_user", "client_id",
                     "123.apps.googleusercontent.com", "client_secret", CLIENT_SECRET,
                     "refresh_token", REFRESH, "quota_project_id", "quota-proj");
}

/* Every test starts from an environment with no credentials at all. */
static void
clean_env(void)
{
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    unsetenv("GCE_METADATA_HOST");
    unsetenv("GCE_METADATA_IP");
    unsetenv("CLOUDSDK_CONFIG");
    unsetenv("GOOGLE_CLOUD_QUOTA_PROJECT");
    char *home = tmp_path("emptyhome");
    setenv("HOME", home, 1);
    free(home);
}

static unsigned char *
b64url_decode(const char *s, size_t n, size_t *outlen)
{
    size_t padded = (n + 3) / 4 * 4;
    char *t = calloc(padded + 1, 1);
    for (size_t i = 0; i < padded; i++)
        t[i] = i >= n ? '=' : s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    unsigned char *out = calloc(padded / 4 * 3 + 1, 1);
    int r = EVP_DecodeBlock(out, (unsigned char *)t, (int)padded);
    assert_true(r >= 0);
    *outlen = (size_t)r - (padded - n);
    out[*outlen] = '\0';
    free(t);
    return out;
}

static json_t *
decode_part(const char *s, size_t n)
{
    size_t len;
    unsigned char *raw = b64url_decode(s, n, &len);
    json_t *o = json_loadb((char *)raw, len, 0, NULL);
    free(raw);
    assert_non_null(o);
    return o;
}

static struct bp_auth *
new_auth(const char *key_file, const char *scopes)
{
    char err[512] = "";
    struct bp_auth *a = bp_auth_new(key_file, 0, scopes, err, sizeof(err));
    if (!a)
        fail_msg("bp_auth_new: %s", err);
    return a;
}

static void
expect_new_error(const char *key_file, const char *want1, const char *want2, const char *never)
{
    char err[512] = "";
    struct bp_auth *a = bp_auth_new(key_file, 0, NULL, err, sizeof(err));
    assert_null(a);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
    if (never)
        assert_null(strstr(err, never));
}

/* Runs one refresh to completion with a token reply; returns refresh_done's result. */
static int
refresh_with(struct bp_auth *a, double now, long status, const char *body, int flavor, char *err,
             size_t errlen)
{
    struct bp_auth_request req;
    char e[512];
    if (bp_auth_refresh_request(a, now, now, &req, e, sizeof(e)) != 0)
        fail_msg("refresh_request: %s", e);
    bp_auth_request_free(&req);
    return bp_auth_refresh_done(a, now, status, body, body ? strlen(body) : 0, flavor, err, errlen);
}

static int
unlink_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int
group_setup(void **state)
{
    (void)state;
    g_key = EVP_RSA_gen(2048);
    strcpy(g_dir, "/tmp/bp_test_auth_XXXXXX");
    if (!g_key || !mkdtemp(g_dir))
        return -1;
    char *home = tmp_path("emptyhome");
    mkdir(home, 0700);
    free(home);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_key);
    return nftw(g_dir, unlink_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- tests ---- */

static void
wire_helpers(void **state)
{
    (void)state;
    static const struct { const char *in; size_t n; const char *out; } v[] = {
        { "", 0, "" }, { "f", 1, "Zg" }, { "fo", 2, "Zm8" }, { "foo", 3, "Zm9v" },
        { "\xfb\xff", 2, "-_8" }, { "\xfb\xef\xbe", 3, "----" },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *s = bp_auth_base64url(v[i].in, v[i].n);
        assert_string_equal(s, v[i].out);
        free(s);
    }
    char *s = bp_auth_scopes_normalise("  a,b\t c  ");
    assert_string_equal(s, "a b c");
    free(s);
    s = bp_auth_scopes_normalise(" ");
    assert_string_equal(s, BP_AUTH_DEFAULT_SCOPES);
    free(s);
    s = bp_auth_scopes_normalise(NULL);
    assert_string_equal(s, BP_AUTH_DEFAULT_SCOPES);
    free(s);
    assert_string_equal(bp_auth_kind_name(BP_AUTH_METADATA), "metadata");
    struct bp_auth_request req;
    memset(&req, 0, sizeof(req));
    bp_auth_request_free(&req);
    bp_auth_request_free(NULL);
    bp_auth_free(NULL);
}

static void
service_account_jwt(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("sa.json", sa_json("test-project"));
    struct bp_auth *a = new_auth(path, SCOPES);
    assert_int_equal(bp_auth_kind(a), BP_AUTH_SERVICE_ACCOUNT);
    assert_string_equal(bp_auth_project(a), "test-project");
    assert_string_equal(bp_auth_source(a), path);
    assert_null(bp_auth_quota_project(a));
    assert_null(bp_auth_token(a, T0));
    assert_true(bp_auth_needs_refresh(a, T0));

    struct bp_auth_request req;
    char err[512];
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, TOKEN_URL);
    assert_int_equal(req.nheaders, 1);
    assert_string_equal(req.headers[0], "Content-Type: application/x-www-form-urlencoded");
    assert_int_equal(req.body_len, strlen(req.body));
    assert_memory_equal(req.body, JWT_PREFIX, strlen(JWT_PREFIX));

    /* Three base64url parts, no padding, nothing to percent-encode. */
    const char *jwt = req.body + strlen(JWT_PREFIX);
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    assert_int_equal(strspn(jwt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
                     strlen(jwt));

    json_t *h = decode_part(jwt, (size_t)(dot1 - jwt));
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "key-id-1");
    assert_int_equal(json_object_size(h), 3);
    json_decref(h);
    json_t *c = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    assert_string_equal(json_string_value(json_object_get(c, "iss")), EMAIL);
    assert_string_equal(json_string_value(json_object_get(c, "scope")), SCOPES);
    assert_string_equal(json_string_value(json_object_get(c, "aud")), TOKEN_URL);
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1700000000 + 3600);
    json_decref(c);

    /* The signature verifies with the public half alone, and not over altered claims. */
    unsigned char *der = NULL;
    int derlen = i2d_PUBKEY(g_key, &der);
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, derlen);
    OPENSSL_free(der);
    assert_non_null(pub);
    size_t siglen;
    unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &siglen);
    assert_int_equal(siglen, 256);
    char *signed_part = strndup(jwt, (size_t)(dot2 - jwt));
    for (int tamper = 0; tamper < 2; tamper++) {
        if (tamper)
            signed_part[dot1 - jwt + 5] ^= 1;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
        int ok = EVP_DigestVerify(md, sig, siglen, (unsigned char *)signed_part,
                                  strlen(signed_part));
        assert_int_equal(ok, tamper ? 0 : 1);
        EVP_MD_CTX_free(md);
    }
    free(signed_part);
    free(sig);
    EVP_PKEY_free(pub);

    /* One refresh at a time. */
    assert_false(bp_auth_needs_refresh(a, T0 + 1));
    struct bp_auth_request req2;
    assert_int_equal(bp_auth_refresh_request(a, T0 + 1, T0 + 1, &req2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "in flight"));
    bp_auth_request_free(&req2);
    bp_auth_request_free(&req);
    assert_null(req.body);
    bp_auth_free(a);

    /* Without private_key_id the header has no kid; without token_uri the default is used. */
    json_t *o = sa_json("p");
    json_object_del(o, "private_key_id");
    json_object_del(o, "token_uri");
    free(path);
    path = write_json("sa-nokid.json", o);
    a = new_auth(path, NULL);
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_string_equal(req.url, "https://oauth2.googleapis.com/token");
    jwt = req.body + strlen(JWT_PREFIX);
    h = decode_part(jwt, (size_t)(strchr(jwt, '.') - jwt));
    assert_null(json_object_get(h, "kid"));
    json_decref(h);
    c = decode_part(strchr(jwt, '.') + 1, (size_t)(strrchr(jwt, '.') - strchr(jwt, '.') - 1));
    assert_string_equal(json_string_value(json_object_get(c, "scope")), BP_AUTH_DEFAULT_SCOPES);
    assert_string_equal(json_string_value(json_object_get(c, "aud")),
                        "https://oauth2.googleapis.com/token");
    json_decref(c);
    bp_auth_request_free(&req);
    bp_auth_free(a);
    free(path);
}

static void
token_url_override(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("sa.json", sa_json("test-project"));
    struct bp_auth *a = new_auth(path, SCOPES);
    char err[512];
    static const struct { const char *in, *out; } v[] = {
        { "127.0.0.1:8085", "http://127.0.0.1:8085/token" },
        { "http://localhost:9/", "http://localhost:9/token" },
        { "https://emu.test", "https://emu.test/token" },
        { "http://emu.test:1/oauth2/v4/token", "http://emu.test:1/oauth2/v4/token" },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(bp_auth_set_token_url(a, v[i].in, err, sizeof(err)), 0);
        struct bp_auth_request req;
        double t = T0 + 200.0 * (double)i;
        assert_int_equal(bp_auth_refresh_request(a, t, t, &req, err,
                                                 sizeof(err)), 0);
        assert_string_equal(req.url, v[i].out);
        /* The aud claim follows the endpoint. */
        const char *jwt = req.body + strlen(JWT_PREFIX);
        const char *d1 = strchr(jwt, '.');
        json_t *c = decode_part(d1 + 1, (size_t)(strchr(d1 + 1, '.') - d1 - 1));
        assert_string_equal(json_string_value(json_object_get(c, "aud")), v[i].out);
        json_decref(c);
        bp_auth_request_free(&req);
        assert_int_equal(bp_auth_refresh_done(a, T0 + 200.0 * (double)i, 0, NULL, 0, 0, err,
                                              sizeof(err)), -1);
    }
    static const char *const bad[] = { "", "ftp://x/token", "http:///token", "a b", NULL };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bp_auth_set_token_url(a, bad[i], err, sizeof(err)), -1);
    bp_auth_free(a);
    free(path);

    /* Metadata credentials keep their own endpoint. */
    setenv("GCE_METADATA_HOST", "127.0.0.1:8089", 1);
    a = new_auth(NULL, NULL);
    assert_int_equal(bp_auth_set_token_url(a, "127.0.0.1:1", err, sizeof(err)), 0);
    struct bp_auth_request req;
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_memory_equal(req.url, "http://127.0.0.1:8089/", 22);
    bp_auth_request_free(&req);
    bp_auth_free(a);
}

/* The JWT's claims carry the wall clock; expiry, margins and backoff count on the caller's
 * monotonic clock, so a wall clock stepped by hours neither keeps an expired token nor drops a
 * good one. */
static void
jwt_claims_on_the_wall_clock_expiry_on_the_monotonic(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("sa.json", sa_json("test-project"));
    struct bp_auth *a = new_auth(path, SCOPES);
    const double mono = 500.0;   /* seconds since boot, nothing like an epoch */
    struct bp_auth_request req;
    char err[512];
    assert_int_equal(bp_auth_refresh_request(a, mono, T0, &req, err, sizeof(err)), 0);
    const char *jwt = req.body + strlen(JWT_PREFIX);
    const char *dot1 = strchr(jwt, '.'), *dot2 = strchr(dot1 + 1, '.');
    json_t *c = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1700000000 + 3600);
    json_decref(c);
    bp_auth_request_free(&req);
    const char *body = "{\"access_token\":\"" ACCESS "\",\"expires_in\":3599}";
    assert_int_equal(bp_auth_refresh_done(a, mono + 1, 200, body, strlen(body), 0, err,
                                          sizeof(err)), 0);
    assert_non_null(bp_auth_token(a, mono + 3598.9));   /* counted from the request */
    assert_null(bp_auth_token(a, mono + 3599));
    assert_true(bp_auth_refresh_at(a) == mono + 3299);
    bp_auth_free(a);
    free(path);
}

static void
token_lifetime_and_margins(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("sa.json", sa_json("test-project"));
    struct bp_auth *a = new_auth(path, SCOPES);
    char err[512];

    /* A one-hour token: refreshed 300 s before it expires, usable until then. */
    assert_int_equal(refresh_with(a, T0, 200, "{\"access_token\":\"" ACCESS "\",\"expires_in\":3599,"
                                  "\"token_type\":\"Bearer\"}", 0, err, sizeof(err)), 0);
    assert_string_equal(bp_auth_token(a, T0), ACCESS);
    assert_false(bp_auth_needs_refresh(a, T0));
    assert_false(bp_auth_needs_refresh(a, T0 + 3599 - 301));
    assert_true(bp_auth_needs_refresh(a, T0 + 3599 - 300));
    assert_true(bp_auth_refresh_at(a) == T0 + 3299);
    assert_non_null(bp_auth_token(a, T0 + 3598.9));
    assert_null(bp_auth_token(a, T0 + 3599));

    /* A 60 s token (the emulator's short ones): refreshed at half its life, not at once. */
    double t = T0 + 4000;
    assert_int_equal(refresh_with(a, t, 200, "{\"access_token\":\"short\",\"expires_in\":60}", 0,
                                  err, sizeof(err)), 0);
    assert_string_equal(bp_auth_token(a, t), "short");
    assert_false(bp_auth_needs_refresh(a, t + 29.9));
    assert_true(bp_auth_needs_refresh(a, t + 30));

    /* The lifetime counts from when the request was built, not when the reply came. */
    struct bp_auth_request req;
    assert_int_equal(bp_auth_refresh_request(a, t + 30, t + 30, &req, err, sizeof(err)), 0);
    bp_auth_request_free(&req);
    /* In flight: no second refresh, though the token is about to expire... */
    assert_false(bp_auth_needs_refresh(a, t + 31));
    assert_false(bp_auth_needs_refresh(a, t + 30 + BP_AUTH_INFLIGHT_MAX - 1));
    /* ...until the request is taken as lost. */
    assert_true(bp_auth_needs_refresh(a, t + 30 + BP_AUTH_INFLIGHT_MAX));
    const char *body = "{\"access_token\":\"str\",\"expires_in\":\"120\",\"token_type\":\"bearer\"}";
    assert_int_equal(bp_auth_refresh_done(a, t + 40, 200, body, strlen(body), 0, err, sizeof(err)),
                     0);
    assert_string_equal(bp_auth_token(a, t + 40), "str");
    assert_null(bp_auth_token(a, t + 150));
    assert_false(bp_auth_needs_refresh(a, t + 89));
    assert_true(bp_auth_needs_refresh(a, t + 90));

    /* A reply without expires_in is taken as one hour. */
    assert_int_equal(refresh_with(a, t + 100, 200, "{\"access_token\":\"noexp\"}", 0, err,
                                  sizeof(err)), 0);
    assert_non_null(bp_auth_token(a, t + 100 + 3599));
    assert_null(bp_auth_token(a, t + 100 + 3600));

    /* 401 elsewhere: the token is dropped and a refresh is due at once. */
    bp_auth_invalidate(a);
    assert_null(bp_auth_token(a, t + 101));
    assert_true(bp_auth_needs_refresh(a, t + 101));
    /* Invalidating during a refresh does not start a second one. */
    assert_int_equal(bp_auth_refresh_request(a, t + 101, t + 101, &req, err, sizeof(err)), 0);
    bp_auth_request_free(&req);
    bp_auth_invalidate(a);
    assert_false(bp_auth_needs_refresh(a, t + 102));
    body = "{\"access_token\":\"again\"}";
    assert_int_equal(bp_auth_refresh_done(a, t + 102, 200, body, strlen(body), 0, err, sizeof(err)),
                     0);
    assert_string_equal(bp_auth_token(a, t + 102), "again");
    bp_auth_free(a);
    free(path);
}

static void
error_replies_keep_secrets_out(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("au.json", au_json());
    struct bp_auth *a = new_auth(path, NULL);
    char err[512];
    double t = T0;

    /* Google's OAuth error: code and description, the endpoint, the status. */
    assert_int_equal(refresh_with(a, t, 400, "{\"error\":\"invalid_grant\",\"error_description\":"
                                  "\"Bad Request\"}", 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "HTTP 400 invalid_grant: Bad Request"));
    assert_non_null(strstr(err, "https://oauth2.googleapis.com/token"));
    assert_null(bp_auth_token(a, t));
    /* Backoff: 1 s, then 2 s, then it resets on success. */
    assert_false(bp_auth_needs_refresh(a, t + 0.5));
    assert_true(bp_auth_needs_refresh(a, t + 1));
    t += 1;
    assert_int_equal(refresh_with(a, t, 503, "<html>oops " REFRESH "</html>", 0, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "HTTP 503"));
    assert_null(strstr(err, "SECRET"));
    assert_false(bp_auth_needs_refresh(a, t + 1.9));
    assert_true(bp_auth_needs_refresh(a, t + 2));
    t += 2;
    assert_int_equal(refresh_with(a, t, 200, "{\"access_token\":\"" ACCESS "\",\"expires_in\":3600}",
                                  0, err, sizeof(err)), 0);
    assert_true(bp_auth_refresh_at(a) == t + 3300);

    /* A description that quotes the refresh token, the client secret, the access token or a JWT
     * is withheld; a failure keeps the valid token. */
    static const char *const quoting[] = {
        "{\"error\":\"invalid_grant\",\"error_description\":\"Token " REFRESH " revoked\"}",
        "{\"error\":\"invalid_client\",\"error_description\":\"secret " CLIENT_SECRET "\"}",
        "{\"error\":\"" ACCESS "\"}",
        "{\"error\":\"invalid_grant\",\"error_description\":\"bad eyJhbGciOiJSUzI1NiJ9.e30.c2ln\"}",
    };
    for (size_t i = 0; i < sizeof(quoting) / sizeof(quoting[0]); i++) {
        t += 100;
        assert_int_equal(refresh_with(a, t, 400, quoting[i], 0, err, sizeof(err)), -1);
        assert_null(strstr(err, "SECRET"));
        assert_null(strstr(err, CLIENT_SECRET));
        assert_null(strstr(err, "eyJ"));
        assert_non_null(strstr(err, "withheld"));
        assert_string_equal(bp_auth_token(a, t), ACCESS);
    }

    /* An API-style error body. */
    t += 100;
    assert_int_equal(refresh_with(a, t, 401, "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\","
                                  "\"message\":\"Request had invalid credentials.\"}}", 0, err,
                                  sizeof(err)), -1);
    assert_non_null(strstr(err, "HTTP 401 UNAUTHENTICATED: Request had invalid credentials."));

    /* Bad 2xx replies: the message never quotes the body. */
    static const char *const bad_ok[] = {
        "<html>" ACCESS "</html>",
        "{\"access_token\":\"ya29.SECRET\\r\\nX-Injected: 1\",\"expires_in\":3600}",
        "{\"access_token\":\"ya29.SECRET\",\"expires_in\":3600,\"token_type\":\"MAC\"}",
        "{\"access_token\":\"ya29.SECRET\",\"expires_in\":-5}",
        "{\"access_token\":\"ya29.SECRET\",\"expires_in\":\"soon\"}",
        "{\"access_token\":\"\"}",
        "{\"expires_in\":3600}",
    };
    for (size_t i = 0; i < sizeof(bad_ok) / sizeof(bad_ok[0]); i++) {
        t += 100;
        assert_int_equal(refresh_with(a, t, 200, bad_ok[i], 0, err, sizeof(err)), -1);
        assert_null(strstr(err, "SECRET"));
        assert_non_null(strstr(err, "token reply of https://oauth2.googleapis.com/token"));
    }
    t += 100;
    assert_int_equal(refresh_with(a, t, 0, NULL, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "got no reply"));
    bp_auth_free(a);
    free(path);
}

static void
authorized_user_request(void **state)
{
    (void)state;
    clean_env();
    char *path = write_json("au.json", au_json());
    struct bp_auth *a = new_auth(path, SCOPES);
    assert_int_equal(bp_auth_kind(a), BP_AUTH_AUTHORIZED_USER);
    assert_null(bp_auth_project(a));
    assert_string_equal(bp_auth_quota_project(a), "quota-proj");
    struct bp_auth_request req;
    char err[512];
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://oauth2.googleapis.com/token");
    assert_int_equal(req.nheaders, 1);
    assert_string_equal(req.headers[0], "Content-Type: application/x-www-form-urlencoded");
    assert_string_equal(req.body, "grant_type=refresh_token&client_id=123.apps.googleusercontent"
                        ".com&client_secret=" CLIENT_SECRET "&refresh_token=1%2F%2F0gREFRESH-"
                        "SECRET%2B%2F%3Dx");
    assert_int_equal(req.body_len, strlen(req.body));
    bp_auth_request_free(&req);
    const char *body = "{\"access_token\":\"u\",\"expires_in\":3599,\"scope\":\"x\","
                       "\"token_type\":\"Bearer\"}";
    assert_int_equal(bp_auth_refresh_done(a, T0, 200, body, strlen(body), 0, err, sizeof(err)), 0);
    assert_string_equal(bp_auth_token(a, T0 + 1), "u");
    bp_auth_free(a);

    setenv("GOOGLE_CLOUD_QUOTA_PROJECT", "env-quota", 1);
    a = new_auth(path, NULL);
    assert_string_equal(bp_auth_quota_project(a), "env-quota");
    bp_auth_free(a);
    free(path);
}

static void
metadata_request_and_flavor(void **state)
{
    (void)state;
    clean_env();
    setenv("GCE_METADATA_HOST", "127.0.0.1:8089", 1);
    struct bp_auth *a = new_auth(NULL, SCOPES);
    assert_int_equal(bp_auth_kind(a), BP_AUTH_METADATA);
    assert_string_equal(bp_auth_source(a), "metadata server http://127.0.0.1:8089");
    assert_null(bp_auth_project(a));
    struct bp_auth_request req;
    char err[512];
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.url, "http://127.0.0.1:8089/computeMetadata/v1/instance/service-"
                        "accounts/default/token?scopes=https://www.googleapis.com/auth/pubsub,"
                        "https://www.googleapis.com/auth/bigquery");
    assert_int_equal(req.nheaders, 1);
    assert_string_equal(req.headers[0], "Metadata-Flavor: Google");
    assert_null(req.body);
    assert_int_equal(req.body_len, 0);
    bp_auth_request_free(&req);
    /* A reply without Metadata-Flavor: Google is not from a metadata server. */
    const char *body = "{\"access_token\":\"" ACCESS "\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    assert_int_equal(bp_auth_refresh_done(a, T0, 200, body, strlen(body), 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Metadata-Flavor"));
    assert_null(strstr(err, "SECRET"));
    assert_null(bp_auth_token(a, T0));
    assert_int_equal(refresh_with(a, T0 + 1, 200, body, 1, err, sizeof(err)), 0);
    assert_string_equal(bp_auth_token(a, T0 + 1), ACCESS);
    bp_auth_free(a);

    /* GCE_METADATA_IP is the older name; the default is metadata.google.internal. */
    unsetenv("GCE_METADATA_HOST");
    setenv("GCE_METADATA_IP", "169.254.169.254", 1);
    a = new_auth(NULL, NULL);
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), 0);
    assert_string_equal(req.url, "http://169.254.169.254/computeMetadata/v1/instance/service-"
                        "accounts/default/token?scopes=https://www.googleapis.com/auth/"
                        "cloud-platform");
    bp_auth_request_free(&req);
    bp_auth_free(a);
    unsetenv("GCE_METADATA_IP");
    a = new_auth(NULL, NULL);
    assert_string_equal(bp_auth_source(a), "metadata server http://metadata.google.internal");
    bp_auth_free(a);
    setenv("GCE_METADATA_HOST", "http://[::1]:8089/", 1);
    a = new_auth(NULL, NULL);
    assert_string_equal(bp_auth_source(a), "metadata server http://[::1]:8089");
    bp_auth_free(a);
    setenv("GCE_METADATA_HOST", "evil/path?x", 1);
    expect_new_error(NULL, "GCE_METADATA_HOST", "host[:port]", NULL);
}

static void
adc_order(void **state)
{
    (void)state;
    clean_env();
    char *explicit = write_json("explicit.json", sa_json("proj-explicit"));
    char *gac = write_json("gac.json", sa_json("proj-gac"));
    char *home = tmp_path("home");
    char *gcloud = tmp_path("home/.config/gcloud");
    char *cfg = tmp_path("home/.config");
    mkdir(home, 0700);
    mkdir(cfg, 0700);
    mkdir(gcloud, 0700);
    char *known = write_json("home/.config/gcloud/application_default_credentials.json",
                             au_json());
    setenv("GOOGLE_APPLICATION_CREDENTIALS", gac, 1);
    setenv("HOME", home, 1);
    setenv("GCE_METADATA_HOST", "127.0.0.1:8089", 1);

    struct bp_auth *a = new_auth(explicit, NULL);   /* 1: the explicit file */
    assert_string_equal(bp_auth_project(a), "proj-explicit");
    bp_auth_free(a);
    a = new_auth(NULL, NULL);                        /* 2: GOOGLE_APPLICATION_CREDENTIALS */
    assert_string_equal(bp_auth_project(a), "proj-gac");
    assert_string_equal(bp_auth_source(a), gac);
    bp_auth_free(a);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", "", 1);  /* empty = unset */
    a = new_auth(NULL, NULL);                        /* 3: gcloud's well-known file */
    assert_int_equal(bp_auth_kind(a), BP_AUTH_AUTHORIZED_USER);
    assert_string_equal(bp_auth_source(a), known);
    bp_auth_free(a);
    setenv("CLOUDSDK_CONFIG", g_dir, 1);             /* gcloud's config dir moved: no file there */
    a = new_auth(NULL, NULL);                        /* 4: the metadata server */
    assert_int_equal(bp_auth_kind(a), BP_AUTH_METADATA);
    bp_auth_free(a);
    setenv("CLOUDSDK_CONFIG", gcloud, 1);
    a = new_auth(NULL, NULL);
    assert_int_equal(bp_auth_kind(a), BP_AUTH_AUTHORIZED_USER);
    bp_auth_free(a);

    /* `none` wins over everything: no token, no refresh ever. */
    setenv("GOOGLE_APPLICATION_CREDENTIALS", gac, 1);
    char err[512];
    a = bp_auth_new(explicit, 1, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(bp_auth_kind(a), BP_AUTH_NONE);
    assert_null(bp_auth_token(a, T0));
    assert_false(bp_auth_needs_refresh(a, T0));
    assert_true(isinf(bp_auth_refresh_at(a)));
    struct bp_auth_request req;
    assert_int_equal(bp_auth_refresh_request(a, T0, T0, &req, err, sizeof(err)), -1);
    bp_auth_request_free(&req);
    bp_auth_free(a);

    /* A named file that is missing is an error, not a fall-through to the next source. */
    char *missing = tmp_path("missing.json");
    setenv("GOOGLE_APPLICATION_CREDENTIALS", missing, 1);
    expect_new_error(NULL, missing, "No such file", NULL);
    expect_new_error(missing, missing, "No such file", NULL);
    free(missing);
    free(explicit);
    free(gac);
    free(home);
    free(cfg);
    free(gcloud);
    free(known);
}

static void
bad_key_files(void **state)
{
    (void)state;
    clean_env();
    char *p;

    p = write_text("trunc.json", "{\"type\":\"service_account\",\"private_key\":\"-----BEGIN "
                   "PRIVATE KEY-----\\nMIIsecretKEYBYTES");
    expect_new_error(p, p, "not valid JSON", "secretKEYBYTES");
    free(p);
    p = write_text("empty.json", "");
    expect_new_error(p, p, "not valid JSON", NULL);
    free(p);
    p = write_text("array.json", "[1,2]");
    expect_new_error(p, p, "not a JSON object", NULL);
    free(p);

    json_t *o = sa_json("x");
    json_object_set_new(o, "type", json_string("external_account"));
    p = write_json("ext.json", o);
    expect_new_error(p, p, "unsupported credentials type \"external_account\"", NULL);
    free(p);
    o = sa_json("x");
    json_object_del(o, "type");
    p = write_json("notype.json", o);
    expect_new_error(p, p, "missing field \"type\"", NULL);
    free(p);

    static const char *const required[] = { "private_key", "client_email" };
    for (size_t i = 0; i < 2; i++) {
        o = sa_json("x");
        json_object_del(o, required[i]);
        p = write_json("missing.json", o);
        char want[64];
        snprintf(want, sizeof(want), "missing field \"%s\"", required[i]);
        expect_new_error(p, p, want, "BEGIN");
        free(p);
    }
    o = sa_json("x");
    json_object_set_new(o, "private_key", json_string("-----BEGIN PRIVATE KEY-----\nnotakeyXYZ\n"
                                                      "-----END PRIVATE KEY-----\n"));
    p = write_json("badpem.json", o);
    expect_new_error(p, p, "\"private_key\" is not", "notakeyXYZ");
    free(p);
    o = sa_json("x");
    json_object_set_new(o, "private_key", json_integer(42));
    p = write_json("numkey.json", o);
    expect_new_error(p, "\"private_key\" is not a non-empty string", NULL, NULL);
    free(p);

    /* An EC key is a valid PEM but cannot sign RS256. */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(ec);
    char *pem = pem_of(ec);
    EVP_PKEY_free(ec);
    o = sa_json("x");
    json_object_set_new(o, "private_key", json_string(pem));
    free(pem);
    p = write_json("ec.json", o);
    expect_new_error(p, "\"private_key\" is not", "RSA", "BEGIN");
    free(p);

    o = sa_json("x");
    json_object_set_new(o, "token_uri", json_string("file:///etc/passwd"));
    p = write_json("fileuri.json", o);
    expect_new_error(p, "\"token_uri\" is not an http(s) URL", NULL, NULL);
    free(p);

    o = au_json();
    json_object_del(o, "refresh_token");
    p = write_json("au-norefresh.json", o);
    expect_new_error(p, p, "missing field \"refresh_token\"", CLIENT_SECRET);
    free(p);
    o = au_json();
    json_object_set_new(o, "client_secret", json_string(""));
    p = write_json("au-emptysecret.json", o);
    expect_new_error(p, "\"client_secret\" is not a non-empty string", NULL, REFRESH);
    free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wire_helpers),
        cmocka_unit_test(service_account_jwt),
        cmocka_unit_test(jwt_claims_on_the_wall_clock_expiry_on_the_monotonic),
        cmocka_unit_test(token_url_override),
        cmocka_unit_test(token_lifetime_and_margins),
        cmocka_unit_test(error_replies_keep_secrets_out),
        cmocka_unit_test(authorized_user_request),
        cmocka_unit_test(metadata_request_and_flavor),
        cmocka_unit_test(adc_order),
        cmocka_unit_test(bad_key_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
