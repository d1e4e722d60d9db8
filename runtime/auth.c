/* auth.c - Application Default Credentials and the token life cycle, as a state machine around
 * one request/response pair: bp_auth_needs_refresh says when, bp_auth_refresh_request builds the
 * request, http.c sends it, bp_auth_refresh_done digests the reply. No I/O here but reading the key
 * file at start-up, so the module is testable without a network and never blocks the loop.
 *
 * Secrets (private key, client secret, refresh token, access token, assertion) are wiped before
 * their memory is freed, and no error message quotes a value read from a key file or a reply body
 * except a sanitised error description that does not contain one of them. */
#include "auth.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_TOKEN_URL "https://oauth2.googleapis.com/token"
#define DEFAULT_METADATA_HOST "metadata.google.internal"
#define FORM_CTYPE "Content-Type: application/x-www-form-urlencoded"
#define JWT_GRANT "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
/* The JWT exchange allows at most one hour. */
#define JWT_LIFETIME 3600
/* Key files are a few KB; a larger one is not a key file, and we refuse to slurp it. */
#define KEY_FILE_MAX (1024 * 1024)

struct bp_auth {
    enum bp_auth_kind kind;
    char *source;          /* where the credentials came from, for messages (never a secret) */
    char *scopes;          /* space-separated, normalised */
    char *project;         /* key file's project_id, or NULL */
    char *quota_project;   /* $GOOGLE_CLOUD_QUOTA_PROJECT or the file's quota_project_id */
    char *token_url;       /* OAuth token endpoint of key-file credentials (also the JWT aud) */
    /* service account */
    char *client_email;
    char *key_id;          /* private_key_id, or NULL: the JWT then has no kid */
    EVP_PKEY *key;
    /* authorized user */
    char *client_id;
    char *client_secret;   /* secret */
    char *refresh_token;   /* secret */
    /* metadata server */
    char *metadata_base;   /* http://host[:port] */
    /* the token and the refresh state */
    char *token;           /* secret */
    double expiry;         /* monotonic second the token stops being valid */
    double lifetime;       /* expires_in of the token, for the refresh margin */
    int in_flight;
    double flight_start;
    int failures;          /* consecutive failed refreshes, for the backoff */
    double retry_at;       /* no refresh starts before this after a failure */
};


static char *
concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = bp_xmalloc(la + lb + lc + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

/* Jansson keeps strings in its own heap blocks; overwriting one in place before json_decref is the
 * only way to keep a secret from lingering in freed memory. */
static void
wipe_json_string(json_t *obj, const char *field)
{
    json_t *v = json_object_get(obj, field);
    if (json_is_string(v))
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

/* Copies field `name` of a key file into *out. A missing optional field leaves *out NULL. */
static int
get_field(json_t *root, const char *name, int required, const char *path, char **out,
          char *err, size_t errlen)
{
    json_t *v = json_object_get(root, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        bp_auth_set_err(err, errlen, "credentials file %s: missing field \"%s\"", path, name);
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        bp_auth_set_err(err, errlen, "credentials file %s: field \"%s\" is not a non-empty string", path,
                name);
        return -1;
    }
    *out = bp_xstrdup(json_string_value(v));
    return 0;
}

static int
load_service_account(struct bp_auth *a, json_t *root, const char *path, char *err, size_t errlen)
{
    char *pem = NULL;
    int rc = -1;
    if (get_field(root, "client_email", 1, path, &a->client_email, err, errlen) != 0 ||
        get_field(root, "private_key", 1, path, &pem, err, errlen) != 0 ||
        get_field(root, "private_key_id", 0, path, &a->key_id, err, errlen) != 0 ||
        get_field(root, "token_uri", 0, path, &a->token_url, err, errlen) != 0 ||
        get_field(root, "project_id", 0, path, &a->project, err, errlen) != 0)
        goto fail;
    a->key = bp_auth_rsa_key(pem);
    if (!a->key) {
        bp_auth_set_err(err, errlen, "credentials file %s: field \"private_key\" is not an unencrypted "
                "PEM RSA private key", path);
        goto fail;
    }
    a->kind = BP_AUTH_SERVICE_ACCOUNT;
    rc = 0;
fail:
    bp_auth_wipe_free(pem);
    return rc;
}

static int
load_authorized_user(struct bp_auth *a, json_t *root, const char *path, char *err,
                     size_t errlen)
{
    if (get_field(root, "client_id", 1, path, &a->client_id, err, errlen) != 0 ||
        get_field(root, "client_secret", 1, path, &a->client_secret, err, errlen) != 0 ||
        get_field(root, "refresh_token", 1, path, &a->refresh_token, err, errlen) != 0 ||
        get_field(root, "token_uri", 0, path, &a->token_url, err, errlen) != 0)
        return -1;
    a->kind = BP_AUTH_AUTHORIZED_USER;
    return 0;
}

/* A key readable by group or others is one `ls` away from a leak: warn as ssh does, naming the
 * file and the fix, but go on (a mounted secret may have no better mode to offer). */
static void
warn_if_exposed(const char *path, const struct stat *st)
{
    if (!(st->st_mode & (S_IRWXG | S_IRWXO)))
        return;
    bp_log(BP_LOG_WARN, "auth", "credentials file %s is accessible by %s (mode %04o): other "
           "users may read the key; run chmod 600 %s", path,
           (st->st_mode & S_IRWXO) ? "others" : "its group",
           (unsigned)(st->st_mode & 07777), path);
}

/* Reads the whole file into a malloc'd buffer (wiped by the caller). Returns its length or -1.
 * read(2), not stdio: a FILE keeps its own buffer, which would be freed holding the key. */
static long
read_key_file(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        bp_auth_set_err(err, errlen, "credentials file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    warn_if_exposed(path, &st);
    char *buf = bp_xmalloc(KEY_FILE_MAX + 1);
    size_t n = 0;
    int bad = 0;
    while (n < KEY_FILE_MAX + 1) {
        ssize_t r = read(fd, buf + n, KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            bad = r < 0;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (bad || n > KEY_FILE_MAX) {
        bp_auth_set_err(err, errlen, "credentials file %s: %s", path,
                bad ? "read error" : "larger than 1 MB, not a key file");
        OPENSSL_cleanse(buf, n);
        free(buf);
        return -1;
    }
    *out = buf;
    return (long)n;
}

/* jansson's allocator while a key file is parsed: its lexer grows a buffer by copying the text
 * read so far, and json_decref frees the string values, so every block it frees is wiped first
 * (glibc's malloc_usable_size gives the block's size). */
static void
wiping_free(void *p)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

/* json_loadb with the wiping allocator; pair with decref_wiped. */
static json_t *
load_wiped(const char *buf, size_t n, json_error_t *jerr)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    json_set_alloc_funcs(malloc, wiping_free);
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, jerr);
    json_set_alloc_funcs(m, f);
    return root;
}

static void
decref_wiped(json_t *root)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    json_set_alloc_funcs(malloc, wiping_free);
    json_decref(root);
    json_set_alloc_funcs(m, f);
}

/* Loads a service_account or authorized_user JSON file into `a`. The parser's own error text is
 * never shown: jansson quotes the text near the error, which may be part of the private key. */
static int
load_key_file(struct bp_auth *a, const char *path, char *err, size_t errlen)
{
    char *buf;
    long n = read_key_file(path, &buf, err, errlen);
    if (n < 0)
        return -1;
    json_error_t jerr;
    json_t *root = load_wiped(buf, (size_t)n, &jerr);
    OPENSSL_cleanse(buf, (size_t)n);
    free(buf);
    int rc = -1;
    if (!json_is_object(root)) {
        if (root)
            bp_auth_set_err(err, errlen, "credentials file %s: not a JSON object", path);
        else
            bp_auth_set_err(err, errlen, "credentials file %s: not valid JSON (line %d, column %d)", path,
                    jerr.line, jerr.column);
        goto fail;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    a->source = bp_xstrdup(path);
    if (type && strcmp(type, "service_account") == 0) {
        rc = load_service_account(a, root, path, err, errlen);
    } else if (type && strcmp(type, "authorized_user") == 0) {
        rc = load_authorized_user(a, root, path, err, errlen);
    } else if (!type) {
        bp_auth_set_err(err, errlen, "credentials file %s: missing field \"type\" (service_account or "
                "authorized_user)", path);
    } else {
        /* The type is not a secret, but only a short printable one is worth quoting. */
        int show = strlen(type) <= 40 && strspn(type, "abcdefghijklmnopqrstuvwxyz_") ==
                   strlen(type);
        bp_auth_set_err(err, errlen, "credentials file %s: unsupported credentials type \"%s\" (expected "
                "service_account or authorized_user)", path, show ? type : "?");
    }
    if (rc == 0 && get_field(root, "quota_project_id", 0, path, &a->quota_project, err,
                             errlen) != 0)
        rc = -1;
    if (rc == 0 && !a->token_url)
        a->token_url = bp_xstrdup(DEFAULT_TOKEN_URL);
    /* The assertion or refresh token goes there: only an http(s) URL will do. */
    if (rc == 0 && strncmp(a->token_url, "https://", 8) != 0 &&
        strncmp(a->token_url, "http://", 7) != 0) {
        bp_auth_set_err(err, errlen, "credentials file %s: field \"token_uri\" is not an http(s) URL", path);
        rc = -1;
    }
fail:
    if (root) {
        wipe_json_string(root, "private_key");
        wipe_json_string(root, "client_secret");
        wipe_json_string(root, "refresh_token");
        decref_wiped(root);
    }
    return rc;
}

/* The metadata server needs no file: it is the last resort of ADC. GCE_METADATA_HOST (or the older
 * GCE_METADATA_IP) names host[:port]; http is implied, but a leading http:// is tolerated. */
static int
use_metadata(struct bp_auth *a, char *err, size_t errlen)
{
    const char *var = "GCE_METADATA_HOST", *host = getenv(var);
    if (!host || !*host) {
        var = "GCE_METADATA_IP";
        host = getenv(var);
    }
    if (!host || !*host) {
        var = NULL;
        host = DEFAULT_METADATA_HOST;
    }
    a->metadata_base = bp_auth_metadata_base(host);
    if (!a->metadata_base) {
        bp_auth_set_err(err, errlen, "%s: not a host[:port]", var ? var : "metadata host");
        return -1;
    }
    a->source = concat("metadata server ", a->metadata_base, "");
    a->kind = BP_AUTH_METADATA;
    return 0;
}

/* gcloud's well-known file: $CLOUDSDK_CONFIG, else $HOME/.config/gcloud. NULL when neither is set. */
static char *
well_known_file(void)
{
    const char *dir = getenv("CLOUDSDK_CONFIG"), *home = getenv("HOME");
    if (dir && *dir)
        return concat(dir, "/", "application_default_credentials.json");
    if (home && *home)
        return concat(home, "/.config/gcloud/", "application_default_credentials.json");
    return NULL;
}

/* Finds credentials in ADC order: key_file (may be NULL), $GOOGLE_APPLICATION_CREDENTIALS, gcloud's
 * well-known file, then the metadata server (never probed: its first refresh tells). A named file
 * that is missing or broken is an error, not a reason to fall through. `none` forces
 * BP_AUTH_NONE (emulators). scopes: space- or comma-separated, NULL for cloud-platform. Returns
 * a new object owned by the caller, or NULL with a message in err. */
struct bp_auth *
bp_auth_new(const char *key_file, int none, const char *scopes, char *err, size_t errlen)
{
    struct bp_auth *a = bp_xcalloc(1, sizeof(*a));
    const char *env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    char *known = NULL;
    int rc;

    a->scopes = bp_auth_scopes_normalise(scopes);
    if (none) {
        a->kind = BP_AUTH_NONE;
        a->source = bp_xstrdup("none");
        rc = 0;
    } else if (key_file && *key_file) {
        rc = load_key_file(a, key_file, err, errlen);
    } else if (env && *env) {
        rc = load_key_file(a, env, err, errlen);
    } else if ((known = well_known_file()) && access(known, F_OK) == 0) {
        rc = load_key_file(a, known, err, errlen);
    } else {
        rc = use_metadata(a, err, errlen);
    }
    free(known);
    if (rc != 0) {
        bp_auth_free(a);
        return NULL;
    }
    const char *quota = getenv("GOOGLE_CLOUD_QUOTA_PROJECT");
    if (quota && *quota) {
        free(a->quota_project);
        a->quota_project = bp_xstrdup(quota);
    }
    return a;
}

static void
drop_token(struct bp_auth *a)
{
    bp_auth_wipe_free(a->token);
    a->token = NULL;
    a->expiry = a->lifetime = 0;
}

/* Frees everything, wiping the secrets first (EVP_PKEY_free clears the RSA private numbers). */
void
bp_auth_free(struct bp_auth *a)
{
    if (!a)
        return;
    drop_token(a);
    bp_auth_wipe_free(a->client_secret);
    bp_auth_wipe_free(a->refresh_token);
    EVP_PKEY_free(a->key);
    free(a->source);
    free(a->scopes);
    free(a->project);
    free(a->quota_project);
    free(a->token_url);
    free(a->client_email);
    free(a->key_id);
    free(a->client_id);
    free(a->metadata_base);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

/* What kind of credentials bp_auth_new found. */
enum bp_auth_kind
bp_auth_kind(const struct bp_auth *a)
{
    return a->kind;
}

/* A static name of the kind ("none", "service_account", ...), for logs. */
const char *
bp_auth_kind_name(enum bp_auth_kind kind)
{
    static const char *const names[] = { "none", "service_account", "authorized_user",
                                         "metadata" };
    return (unsigned)kind < BP_ARRAY_LEN(names) ? names[kind] : "?";
}

/* Where the credentials came from: the key file's path, "metadata server http://..." or "none".
 * Safe to log; owned by `a`. */
const char *
bp_auth_source(const struct bp_auth *a)
{
    return a->source;
}

/* The key file's project_id, or NULL (authorized_user and metadata credentials have none). */
const char *
bp_auth_project(const struct bp_auth *a)
{
    return a->project;
}

/* The quota project to send as x-goog-user-project, or NULL. */
const char *
bp_auth_quota_project(const struct bp_auth *a)
{
    return a->quota_project;
}

/* Points the OAuth token exchange of key-file credentials at another endpoint (an emulator):
 * "host:port" or "http://host:port" get the path /token, a URL with a path is used as is. The URL
 * is also the JWT's aud. A no-op returning 0 for metadata and none credentials, whose endpoints
 * come from GCE_METADATA_HOST. Returns 0, or -1 with a message in err. */
int
bp_auth_set_token_url(struct bp_auth *a, const char *url, char *err, size_t errlen)
{
    if (a->kind != BP_AUTH_SERVICE_ACCOUNT && a->kind != BP_AUTH_AUTHORIZED_USER)
        return 0;
    char *full = bp_auth_token_url(url);
    if (!full) {
        bp_auth_set_err(err, errlen, "token URL: not http(s)://host[:port][/path] or host:port");
        return -1;
    }
    free(a->token_url);
    a->token_url = full;
    return 0;
}

/* The current access token (the Authorization header's value after "Bearer "), or NULL when there
 * is none or it has expired. Owned by `a`, valid until the next refresh_done/invalidate/free. */
const char *
bp_auth_token(const struct bp_auth *a, double now)
{
    if (!a->token || now >= a->expiry)
        return NULL;
    return a->token;
}

/* The second at which the next refresh should start, on the caller's monotonic clock like every
 * `now` here (a wall clock stepped back would keep an expired token; forward, drop a good one)
 * (a time <= now means now; INFINITY
 * for none credentials), so the caller can arm a timer instead of polling. It is the expiry minus
 * 300 s, or half the lifetime when that is less (a 60 s token refreshes at 30 s); after a failed
 * refresh, the end of its backoff; while a refresh is in flight, not before it is taken as lost. */
double
bp_auth_refresh_at(const struct bp_auth *a)
{
    if (a->kind == BP_AUTH_NONE)
        return INFINITY;
    double t = 0;
    if (a->token) {
        double margin = BP_AUTH_REFRESH_MARGIN;
        if (margin > a->lifetime / 2)
            margin = a->lifetime / 2;
        t = a->expiry - margin;
    }
    if (a->retry_at > t)
        t = a->retry_at;
    if (a->in_flight && a->flight_start + BP_AUTH_INFLIGHT_MAX > t)
        t = a->flight_start + BP_AUTH_INFLIGHT_MAX;
    return t;
}

/* True when a refresh should start now (see bp_auth_refresh_at). */
int
bp_auth_needs_refresh(const struct bp_auth *a, double now)
{
    return now >= bp_auth_refresh_at(a);
}

/* What a refresh talks to, for error messages. */
static const char *
endpoint(const struct bp_auth *a)
{
    return a->kind == BP_AUTH_METADATA ? a->metadata_base : a->token_url;
}

static void
request_init(struct bp_auth_request *req, const char *method, char *url)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->url = url;
}

static int
service_account_request(struct bp_auth *a, double wall, struct bp_auth_request *req, char *err,
                        size_t errlen)
{
    char *jwt = NULL;
    if (bp_auth_jwt_assertion(a->key, a->key_id, a->client_email, a->scopes, a->token_url, wall,
                              JWT_LIFETIME, &jwt) != 0) {
        bp_auth_set_err(err, errlen, "credentials file %s: signing the JWT with private_key failed",
                a->source);
        return -1;
    }
    request_init(req, "POST", bp_xstrdup(a->token_url));
    req->headers[req->nheaders++] = bp_xstrdup(FORM_CTYPE);
    /* base64url and '.' are unreserved: the assertion needs no percent-encoding. */
    req->body = concat(JWT_GRANT, jwt, "");
    req->body_len = strlen(req->body);
    bp_auth_wipe_free(jwt);
    return 0;
}

static void
authorized_user_request(struct bp_auth *a, struct bp_auth_request *req)
{
    request_init(req, "POST", bp_xstrdup(a->token_url));
    req->headers[req->nheaders++] = bp_xstrdup(FORM_CTYPE);
    req->body = bp_auth_refresh_form(a->client_id, a->client_secret, a->refresh_token);
    req->body_len = strlen(req->body);
}

static void
metadata_request(struct bp_auth *a, struct bp_auth_request *req)
{
    request_init(req, "GET", bp_auth_metadata_url(a->metadata_base, a->scopes));
    req->headers[req->nheaders++] = bp_xstrdup("Metadata-Flavor: Google");
}

/* Builds the HTTP request of a refresh into *req (owned by the caller: bp_auth_request_free, also
 * after a failure) and marks a refresh in flight until bp_auth_refresh_done. now is the
 * monotonic clock of every other call; wall the epoch seconds a JWT's iat/exp claims carry.
 * Fails when the
 * credentials are none, a refresh is already in flight, or signing fails. Returns 0 or -1. */
int
bp_auth_refresh_request(struct bp_auth *a, double now, double wall, struct bp_auth_request *req,
                        char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    if (a->kind == BP_AUTH_NONE) {
        bp_auth_set_err(err, errlen, "no credentials to refresh (auth is none)");
        return -1;
    }
    if (a->in_flight && now < a->flight_start + BP_AUTH_INFLIGHT_MAX) {
        bp_auth_set_err(err, errlen, "a token refresh is already in flight");
        return -1;
    }
    switch (a->kind) {
    case BP_AUTH_SERVICE_ACCOUNT:
        if (service_account_request(a, wall, req, err, errlen) != 0)
            return -1;
        break;
    case BP_AUTH_AUTHORIZED_USER:
        authorized_user_request(a, req);
        break;
    default:
        metadata_request(a, req);
        break;
    }
    a->in_flight = 1;
    a->flight_start = now;
    return 0;
}

/* Frees a request, wiping its body (assertion or refresh token). NULL and zeroed requests are fine. */
void
bp_auth_request_free(struct bp_auth_request *req)
{
    if (!req)
        return;
    free(req->url);
    for (size_t i = 0; i < req->nheaders; i++)
        free(req->headers[i]);
    if (req->body)
        OPENSSL_cleanse(req->body, req->body_len);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

/* Feeds the reply of the request bp_auth_refresh_request built: HTTP status (0 when no reply came:
 * timeout, reset), body, and for the metadata server whether the reply carried the header
 * Metadata-Flavor: Google. On 2xx caches the token; its lifetime counts from when the request was
 * built, to err on the early side. On failure the current token (if still valid) is kept, err says
 * why without any secret, and the next refresh waits 1, 2, 4 ... 60 s. Clears the in-flight mark
 * either way. Returns 0 or -1. */
int
bp_auth_refresh_done(struct bp_auth *a, double now, long status, const char *body, size_t len,
                     int metadata_flavor_ok, char *err, size_t errlen)
{
    double start = a->in_flight && a->flight_start <= now ? a->flight_start : now;
    char *token = NULL;
    double expires_in = 0;
    a->in_flight = 0;
    if (a->kind == BP_AUTH_NONE) {
        bp_auth_set_err(err, errlen, "no credentials to refresh (auth is none)");
        return -1;
    }
    if (status == 0) {
        bp_auth_set_err(err, errlen, "token request to %s got no reply", endpoint(a));
        goto fail;
    }
    if (a->kind == BP_AUTH_METADATA && !metadata_flavor_ok) {
        bp_auth_set_err(err, errlen, "reply of %s (HTTP %ld) lacks the header Metadata-Flavor: Google: "
                "not a metadata server", endpoint(a), status);
        goto fail;
    }
    if (status < 200 || status > 299) {
        const char *secrets[] = { a->refresh_token, a->client_secret, a->token };
        bp_auth_describe_error(status, body, len, secrets, BP_ARRAY_LEN(secrets), endpoint(a),
                               err, errlen);
        goto fail;
    }
    if (bp_auth_parse_token(body, len, &token, &expires_in, endpoint(a), err, errlen) != 0)
        goto fail;
    drop_token(a);
    a->token = token;
    a->lifetime = expires_in;
    a->expiry = start + expires_in;
    a->failures = 0;
    a->retry_at = 0;
    return 0;
fail:
    if (a->failures < 30)
        a->failures++;
    double delay = ldexp(1.0, a->failures - 1);
    a->retry_at = now + (delay < BP_AUTH_BACKOFF_MAX ? delay : BP_AUTH_BACKOFF_MAX);
    return -1;
}

/* A request got 401: drops the token so bp_auth_needs_refresh turns true (unless a refresh is
 * already in flight or backing off); the caller retries that request once with the new token. */
void
bp_auth_invalidate(struct bp_auth *a)
{
    drop_token(a);
}
