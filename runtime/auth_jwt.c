/* auth_jwt.c - the wire formats of auth.c: base64url, form bodies, the RS256-signed JWT, the URLs
 * of the token endpoints and the parsing of their replies. Kept apart from the credential state
 * machine so each file stays short and the signing can be tested against OpenSSL's verifier alone.
 * Nothing here logs: most inputs are secrets. */
#include "auth.h"

#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* JWTs of service-account keys stay under 2 KB; this only bounds a corrupt input. */
#define JWT_PART_MAX (64 * 1024)

/* Returns `len` bytes as unpadded base64url (RFC 7515 §2) in a malloc'd string, NULL when the
 * input is too large. EVP_EncodeBlock writes standard base64; we translate its alphabet. */
char *
bp_auth_base64url(const void *data, size_t len)
{
    if (len > JWT_PART_MAX)
        return NULL;
    char *out = bp_xmalloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

static int
unreserved(unsigned char c, const char *keep)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    if (c == '-' || c == '.' || c == '_' || c == '~')
        return 1;
    return c && keep && strchr(keep, c) != NULL;
}

/* Percent-encodes `s` for a form body or a query value (RFC 3986 unreserved characters, plus
 * those in `keep`, stay as they are). The size is computed first so a secret is never left behind
 * in a realloc'd block. */
static char *
urlencode(const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += unreserved(*p, keep) ? 1 : 3;
    char *out = bp_xmalloc(n + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p, keep)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Wipes a NUL-terminated secret, then frees it. NULL is fine. */
void
bp_auth_wipe_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* An encrypted PEM would make OpenSSL prompt on the terminal; refusing the passphrase fails it. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Decodes an unencrypted PEM RSA private key (PKCS#8 or PKCS#1). Returns a key the caller frees
 * with EVP_PKEY_free (which clears its private numbers), or NULL. */
struct evp_pkey_st *
bp_auth_rsa_key(const char *pem)
{
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio) {
        key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
    }
    if (key && EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    /* A failed decode leaves errors queued; the next OpenSSL user must not see them. */
    ERR_clear_error();
    return key;
}

/* Signs base64url(header).base64url(claims) with RSASSA-PKCS1-v1_5 over SHA-256 (JWS "RS256").
 * On success *jwt owns the compact token (a secret: wipe it) and 0 is returned; -1 otherwise,
 * with OpenSSL's error queue cleared so no later caller reports a stale error. */
int
bp_auth_jwt_sign(struct evp_pkey_st *key, const char *header_json, const char *claims_json,
                 char **jwt)
{
    int rc = -1;
    char *h = NULL, *c = NULL, *input = NULL, *sig64 = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = NULL;

    *jwt = NULL;
    h = bp_auth_base64url(header_json, strlen(header_json));
    c = bp_auth_base64url(claims_json, strlen(claims_json));
    if (!h || !c)
        goto fail;
    size_t inlen = strlen(h) + 1 + strlen(c);
    input = bp_xmalloc(inlen + 1);
    memcpy(input, h, strlen(h));
    input[strlen(h)] = '.';
    memcpy(input + strlen(h) + 1, c, strlen(c) + 1);

    md = EVP_MD_CTX_new();
    /* An RSA key's default padding is PKCS#1 v1.5, which is what RS256 means. */
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        goto fail;
    if (EVP_DigestSign(md, NULL, &siglen, (unsigned char *)input, inlen) != 1 || siglen == 0)
        goto fail;
    sig = bp_xmalloc(siglen);
    if (EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, inlen) != 1)
        goto fail;
    sig64 = bp_auth_base64url(sig, siglen);
    if (!sig64)
        goto fail;

    size_t s64len = strlen(sig64);
    *jwt = bp_xmalloc(inlen + 1 + s64len + 1);
    memcpy(*jwt, input, inlen);
    (*jwt)[inlen] = '.';
    memcpy(*jwt + inlen + 1, sig64, s64len + 1);
    rc = 0;
fail:
    if (rc != 0)
        ERR_clear_error();
    EVP_MD_CTX_free(md);
    /* Header and claims are public; the signature turns them into a credential. */
    free(h);
    free(c);
    free(input);
    if (sig)
        OPENSSL_cleanse(sig, siglen);
    free(sig);
    bp_auth_wipe_free(sig64);
    return rc;
}

/* Formats an error message into err (NULL or 0-size err is fine). Shared with auth.c. */
void
bp_auth_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


/* Sizes the result first: a secret formatted here is never left behind by a realloc. */
static char *fmt_alloc(const char *fmt, ...) BP_PRINTF(1, 2);
static char *
fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = bp_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Joins scopes given space- or comma-separated with single spaces (the JWT's form); NULL or blank
 * gives BP_AUTH_DEFAULT_SCOPES. */
char *
bp_auth_scopes_normalise(const char *scopes)
{
    static const char seps[] = " ,\t\r\n";
    if (!scopes || strspn(scopes, seps) == strlen(scopes))
        return bp_xstrdup(BP_AUTH_DEFAULT_SCOPES);
    char *out = bp_xmalloc(strlen(scopes) + 1), *o = out;
    for (const char *p = scopes + strspn(scopes, seps); *p; p += strspn(p, seps)) {
        size_t n = strcspn(p, seps);
        if (o != out)
            *o++ = ' ';
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o = '\0';
    return out;
}

/* The signed assertion of the JWT bearer grant: header {"alg":"RS256","typ":"JWT"[,"kid"]},
 * claims iss, scope, aud, iat = now, exp = now + lifetime. Returns 0 with *jwt owned by the caller
 * (a secret), or -1 (invalid UTF-8 in a claim, or signing failed). */
int
bp_auth_jwt_assertion(struct evp_pkey_st *key, const char *key_id, const char *email,
                      const char *scopes, const char *aud, double now, long lifetime, char **jwt)
{
    json_int_t iat = (json_int_t)floor(now);
    json_t *hdr = json_pack("{s:s,s:s}", "alg", "RS256", "typ", "JWT");
    json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", email, "scope", scopes, "aud", aud,
                               "iat", iat, "exp", iat + (json_int_t)lifetime);
    char *h = NULL, *c = NULL;
    int rc = -1;
    *jwt = NULL;
    if (hdr && key_id && json_object_set_new(hdr, "kid", json_string(key_id)) != 0)
        goto fail;
    if (hdr)
        h = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (claims)
        c = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (h && c)
        rc = bp_auth_jwt_sign(key, h, c, jwt);
fail:
    free(h);
    free(c);
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* The form body of the refresh_token grant (authorized_user credentials). A secret. */
char *
bp_auth_refresh_form(const char *client_id, const char *client_secret, const char *refresh_token)
{
    char *id = urlencode(client_id, NULL);
    char *secret = urlencode(client_secret, NULL);
    char *refresh = urlencode(refresh_token, NULL);
    char *body = fmt_alloc("grant_type=refresh_token&client_id=%s&client_secret=%s&"
                           "refresh_token=%s", id, secret, refresh);
    free(id);
    bp_auth_wipe_free(secret);
    bp_auth_wipe_free(refresh);
    return body;
}

/* The token endpoint from an override: "host:port" or "scheme://host[:port][/]" get the path
 * /token (the emulator's), a URL with a longer path is taken as is. NULL when malformed. */
char *
bp_auth_token_url(const char *url)
{
    if (!url || !*url || strpbrk(url, " \t\r\n"))
        return NULL;
    const char *sep = strstr(url, "://");
    if (sep && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return NULL;
    const char *host = sep ? sep + 3 : url, *path = strchr(host, '/');
    if (!*host || path == host)
        return NULL;
    const char *scheme = sep ? "" : "http://";
    if (path && strcmp(path, "/") != 0)
        return fmt_alloc("%s%s", scheme, url);
    int n = path ? (int)(path - url) : (int)strlen(url);
    return fmt_alloc("%s%.*s/token", scheme, n, url);
}

/* "http://host[:port]" from GCE_METADATA_HOST's host[:port] (a leading http:// and trailing
 * slashes are tolerated). NULL when it is not a plain host. */
char *
bp_auth_metadata_base(const char *host)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]";
    if (strncmp(host, "http://", 7) == 0)
        host += 7;
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '/')
        n--;
    if (n == 0 || strspn(host, ok) < n)
        return NULL;
    return fmt_alloc("http://%.*s", (int)n, host);
}

/* The metadata server's token URL; it takes the scopes comma-separated (':' and '/' may stay as
 * they are in a query). */
char *
bp_auth_metadata_url(const char *base, const char *scopes)
{
    char *commas = bp_xstrdup(scopes);
    for (char *p = commas; *p; p++)
        if (*p == ' ')
            *p = ',';
    char *q = urlencode(commas, ":/,");
    char *url = fmt_alloc("%s/computeMetadata/v1/instance/service-accounts/default/token"
                          "?scopes=%s", base, q);
    free(commas);
    free(q);
    return url;
}

/* A token goes into an HTTP header: printable ASCII without spaces, and not absurdly long. */
static int
token_ok(json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!s || n == 0 || n > 16384 || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Parses a 2xx token reply {"access_token","expires_in","token_type"} (of the OAuth endpoint or the
 * metadata server). expires_in may be a number or a numeric string; a reply without it gets one
 * hour. Returns 0 with *token owned by the caller (a secret), or -1 with a message in err that
 * never quotes the body. */
int
bp_auth_parse_token(const char *body, size_t len, char **token, double *expires_in,
                    const char *endpoint, char *err, size_t errlen)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *tok = json_object_get(root, "access_token"), *exp = json_object_get(root, "expires_in");
    const char *type = json_string_value(json_object_get(root, "token_type"));
    double secs = 3600;
    char *end = NULL;
    int rc = -1;

    *token = NULL;
    if (!json_is_object(root)) {
        bp_auth_set_err(err, errlen, "token reply of %s is not a JSON object", endpoint);
        goto fail;
    }
    if (!token_ok(tok)) {
        bp_auth_set_err(err, errlen, "token reply of %s: access_token is missing or not a printable "
                "string", endpoint);
        goto fail;
    }
    if (type && strcasecmp(type, "Bearer") != 0) {
        bp_auth_set_err(err, errlen, "token reply of %s: token_type is not Bearer", endpoint);
        goto fail;
    }
    if (json_is_number(exp))
        secs = json_number_value(exp);
    else if (json_is_string(exp))
        secs = strtod(json_string_value(exp), &end);
    if ((exp && !json_is_number(exp) && !(json_is_string(exp) && end && !*end)) ||
        !(secs > 0 && secs < 1e9)) {
        bp_auth_set_err(err, errlen, "token reply of %s: expires_in is not a positive number", endpoint);
        goto fail;
    }
    *token = bp_xstrdup(json_string_value(tok));
    *expires_in = secs;
    rc = 0;
fail:
    if (json_is_string(tok))
        OPENSSL_cleanse((char *)json_string_value(tok), json_string_length(tok));
    json_decref(root);
    return rc;
}

/* Copies a server-written string for an error message: printable ASCII, truncated, and withheld
 * entirely when it quotes one of our secrets or anything shaped like a JWT ("eyJ" = '{"'). */
static void
sanitise(char *dst, size_t n, const char *src, const char *const *secrets, size_t nsecrets)
{
    dst[0] = '\0';
    if (!src)
        return;
    int quotes = strstr(src, "eyJ") != NULL;
    for (size_t i = 0; i < nsecrets; i++)
        if (secrets[i] && strlen(secrets[i]) >= 4 && strstr(src, secrets[i]))
            quotes = 1;
    if (quotes) {
        snprintf(dst, n, "(withheld: it quotes a credential)");
        return;
    }
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
    if (src[i] && n > 4)
        memcpy(dst + n - 4, "...", 4);
}

/* The message of a failed token request: endpoint, status and, when the body is Google's OAuth
 * error {"error":"invalid_grant","error_description":...} or an API error {"error":{"status",
 * "message"}}, its code and description, sanitised (see sanitise) against `secrets`. */
void
bp_auth_describe_error(long status, const char *body, size_t len, const char *const *secrets,
                       size_t nsecrets, const char *endpoint, char *err, size_t errlen)
{
    char code[64], desc[200];
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    const char *c = NULL, *d = NULL;
    if (json_is_string(e)) {
        c = json_string_value(e);
        d = json_string_value(json_object_get(root, "error_description"));
    } else if (json_is_object(e)) {
        c = json_string_value(json_object_get(e, "status"));
        d = json_string_value(json_object_get(e, "message"));
    }
    sanitise(code, sizeof(code), c, secrets, nsecrets);
    sanitise(desc, sizeof(desc), d, secrets, nsecrets);
    json_decref(root);
    bp_auth_set_err(err, errlen, "token request to %s failed: HTTP %ld%s%s%s%s", endpoint, status,
            code[0] ? " " : "", code, desc[0] ? ": " : "", desc);
}
