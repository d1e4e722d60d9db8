/* http.c - libcurl multi on libev, after curl's evhiperfifo example without its bugs:
 *  - one owner struct per socket with an embedded ev_io, attached with curl_multi_assign;
 *  - one ev_timer for CURLMOPT_TIMERFUNCTION, which only arms the timer (curl calls it from
 *    inside curl_multi_add_handle, where acting would recurse into the multi API);
 *  - after every socket_action the finished transfers are drained from curl_multi_info_read
 *    and their done callbacks run only then, outside libcurl, so they may start new requests.
 * Connections are reused (the multi handle keeps a pool), HTTP/2 is used where TLS offers it
 * (multiplexing), responses are decompressed (Accept-Encoding), TLS peers are always verified. */
#include "http.h"
#include "log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct bp_http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    char *ca_file;
    char *user_agent;
    long connect_timeout_ms;
    long stall_timeout_ms;
    int fail_sends;           /* test hook: sends left to fail */
    size_t active;
    struct bp_http_req *reqs; /* in flight: curl 7.88 cannot list a multi's handles */
    int in_check;             /* guards against re-entering check_done */
};

struct sock {
    ev_io io;
    curl_socket_t fd;
    struct bp_http *h;
};

struct bp_http_req {
    struct bp_http *h;
    struct bp_http_req *next, *prev;
    CURL *easy;
    struct curl_slist *headers;
    char *method;
    char *url;
    char *body_owned;
    const char *body;
    size_t body_len;
    long timeout_ms;
    int long_poll;               /* silent until it has news: no stall guard */
    int raw_encoding;            /* the caller set Accept-Encoding: the body is left as sent */
    bp_buf_t resp;
    char *location;
    char *range;
    int metadata_flavor;
    int truncated;
    bp_http_done_fn done;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    struct bp_http_result result;
};

static void check_done(struct bp_http *h);

static void
unlink_req(struct bp_http *h, struct bp_http_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (h->reqs == r)
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_http *h = w->data;
    int running;
    (void)loop;
    (void)revents;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the timer. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct bp_http *h = userp;
    (void)multi;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* 0 means "as soon as possible": let the loop call us on its next iteration */
        ev_timer_set(&h->timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sock *s = (struct sock *)w;
    struct bp_http *h = s->h;
    int running;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
                 (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    (void)loop;
    curl_multi_socket_action(h->multi, s->fd, action, &running);
    check_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: keeps one ev_io per socket in step with what curl wants. */
static int
sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct bp_http *h = userp;
    struct sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(h->loop, &s->io);
            curl_multi_assign(h->multi, fd, NULL);
            free(s);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (!s) {
        s = bp_xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->h = h;
        ev_io_init(&s->io, on_io, fd, events);
        curl_multi_assign(h->multi, fd, s);
    } else {
        ev_io_stop(h->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(h->loop, &s->io);
    return 0;
}

/* A body past its cap is cut off here: the bytes that fit are kept, and the short return
 * makes libcurl end the transfer at once (CURLE_WRITE_ERROR), so a hostile or broken server's
 * endless reply costs neither memory past the cap nor the time to read the rest. check_done
 * reports it as the HTTP status with body_truncated set, which every caller counts as a failed
 * attempt (bp_api_failed). */
static size_t
write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct bp_http_req *r = userp;
    size_t len = size * n;
    if (r->truncated)
        return 0;
    if (bp_buf_append(&r->resp, p, len) != 0) {
        size_t room = r->resp.max > r->resp.len ? r->resp.max - r->resp.len : 0;
        if (room < len && bp_buf_append(&r->resp, p, room) != 0)
            room = 0;
        r->truncated = 1;
        return room < len ? room : len - 1;
    }
    return len;
}

static char *
header_value(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    return bp_xstrndup(v, (size_t)(end - v));
}

static size_t
header_cb(char *p, size_t size, size_t n, void *userp)
{
    struct bp_http_req *r = userp;
    size_t len = size * n;
    char *v;
    if ((v = header_value(p, len, "location"))) {
        free(r->location);
        r->location = v;
    } else if ((v = header_value(p, len, "range"))) {
        free(r->range);
        r->range = v;
    } else if ((v = header_value(p, len, "metadata-flavor"))) {
        r->metadata_flavor = strcmp(v, "Google") == 0;
        free(v);
    } else if ((v = header_value(p, len, "content-length"))) {
        /* size the body buffer once instead of doubling it (pull replies are ~700 KB) */
        unsigned long long clen = strtoull(v, NULL, 10);
        if (clen > 0 && clen <= r->resp.max && bp_buf_reserve(&r->resp, (size_t)clen) != 0)
            r->truncated = 1;
        free(v);
    }
    return len;
}

static void
req_free(struct bp_http_req *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->url);
    free(r->body_owned);
    free(r->location);
    free(r->range);
    bp_buf_free(&r->resp);
    free(r);
}

/* Runs the done callbacks of finished transfers. Completions are collected first, because a
 * callback may add new handles, which must not happen while we walk curl's message queue. */
static void
check_done(struct bp_http *h)
{
    if (h->in_check)
        return;
    h->in_check = 1;
    CURLMsg *msg;
    int left;
    struct bp_http_req *done[64];
    size_t n;
    do {
        n = 0;
        while (n < BP_ARRAY_LEN(done) && (msg = curl_multi_info_read(h->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct bp_http_req *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->result.transport_error = msg->data.result;
            curl_multi_remove_handle(h->multi, msg->easy_handle);
            unlink_req(h, r);
            h->active--;
            done[n++] = r;
        }
        for (size_t i = 0; i < n; i++) {
            struct bp_http_req *r = done[i];
            struct bp_http_result *res = &r->result;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res->status);
            curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &res->seconds);
            if (r->truncated) {
                /* our own cut (write_cb), not a broken exchange: the status stands, and
                 * body_truncated says why the call failed */
                res->transport_error = 0;
            } else if (res->transport_error) {
                res->error = r->errbuf[0] ? r->errbuf
                                          : curl_easy_strerror((CURLcode)res->transport_error);
                res->status = 0;
            }
            res->body = r->resp.data ? r->resp.data : "";
            res->body_len = r->resp.len;
            res->body_truncated = r->truncated;
            res->location = r->location;
            res->range = r->range;
            res->metadata_flavor = r->metadata_flavor;
            bp_log(BP_LOG_DEBUG, "http", "%s %s -> %ld (%.3f s)%s%s", r->method, r->url,
                   res->status, res->seconds, res->error ? " " : "", res->error ? res->error : "");
            r->done(r, r->arg);
            req_free(r);
        }
    } while (n == BP_ARRAY_LEN(done));
    h->in_check = 0;
}

/* Creates the HTTP engine on loop. Returns it, or NULL with err set. */
struct bp_http *
bp_http_new(struct ev_loop *loop, const struct bp_http_opts *opts, char *err, size_t errlen)
{
    static int global_done;   /* curl_global_init is process-wide and not thread-safe */
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
            snprintf(err, errlen, "curl_global_init failed");
            return NULL;
        }
        global_done = 1;
    }
    struct bp_http *h = bp_xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        snprintf(err, errlen, "curl_multi_init failed");
        free(h);
        return NULL;
    }
    h->ca_file = opts && opts->ca_file ? bp_xstrdup(opts->ca_file) : NULL;
    h->user_agent = bp_xstrdup(opts && opts->user_agent ? opts->user_agent : "bepipe-lua");
    h->connect_timeout_ms = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
    h->stall_timeout_ms = 60000;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* No cap per host: with one (it was 16) a request past it queues until a connection is
     * free, and over HTTP/1.1 a connection is busy for a whole long-poll or a hung request. The
     * daemon's own limits (pulls, batches, uploads in flight) bound the connections. */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    ev_timer_init(&h->timer, on_timer, 0., 0.);
    h->timer.data = h;
    return h;
}

/* Cancels what is in flight (without callbacks) and frees the engine. STYLE: easy handles first,
 * then the multi handle, while the loop still exists. */
void
bp_http_free(struct bp_http *h)
{
    if (!h)
        return;
    while (h->reqs) {
        struct bp_http_req *r = h->reqs;
        unlink_req(h, r);
        curl_multi_remove_handle(h->multi, r->easy);
        req_free(r);
    }
    curl_multi_cleanup(h->multi);
    ev_timer_stop(h->loop, &h->timer);
    free(h->ca_file);
    free(h->user_agent);
    free(h);
}

/* Requests in flight. */
size_t
bp_http_active(const struct bp_http *h)
{
    return h->active;
}

/* A request not yet sent: add headers and a body, then bp_http_req_send (or cancel). */
struct bp_http_req *
bp_http_req_new(struct bp_http *h, const char *method, const char *url)
{
    struct bp_http_req *r = bp_xcalloc(1, sizeof(*r));
    r->h = h;
    r->method = bp_xstrdup(method);
    r->url = bp_xstrdup(url);
    r->timeout_ms = 60000;
    bp_buf_init(&r->resp, 16 * 1024 * 1024);
    return r;
}

int
bp_http_req_header(struct bp_http_req *r, const char *header)
{
    /* a caller that asks for an encoding itself (ranges of a gzip object's stored bytes) gets
     * the bytes as they come: curl decoding them would break ranges of a compressed stream */
    if (strncasecmp(header, "Accept-Encoding:", 16) == 0)
        r->raw_encoding = 1;
    struct curl_slist *l = curl_slist_append(r->headers, header);
    if (!l)
        return -1;
    r->headers = l;
    return 0;
}

/* The request owns body from now on (freed with the request). */
void
bp_http_req_body_take(struct bp_http_req *r, char *body, size_t len)
{
    free(r->body_owned);
    r->body_owned = body;
    r->body = body;
    r->body_len = len;
}

/* The body stays the caller's and must outlive the request (retries resend the same bytes). */
void
bp_http_req_body_ref(struct bp_http_req *r, const char *body, size_t len)
{
    r->body = body;
    r->body_len = len;
}

void
bp_http_req_limits(struct bp_http_req *r, long timeout_ms, size_t max_response)
{
    r->timeout_ms = timeout_ms;
    r->resp.max = max_response;
}

/* Marks a long-poll (a Pub/Sub pull): the server rightly says nothing until it has messages or
 * its own hold ends (about 90 s), so only the total timeout bounds it, not the stall guard. */
void
bp_http_req_long_poll(struct bp_http_req *r)
{
    r->long_poll = 1;
}

/* Starts the transfer; done(req, arg) runs once when it ends, in any way. Returns 0, or -1 (the
 * request is freed, done is not called). */
int
bp_http_req_send(struct bp_http_req *r, bp_http_done_fn done, void *arg)
{
    struct bp_http *h = r->h;
    CURL *e = h->fail_sends > 0 ? NULL : curl_easy_init();
    if (h->fail_sends > 0)
        h->fail_sends--;
    if (!e)
        goto fail;
    r->easy = e;
    r->done = done;
    r->arg = arg;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    /* below 1 byte/s for the stall time, i.e. silent both ways: a server that accepted the
     * request and never answers frees it before the total timeout (90 s for a long-poll) */
    long stall_s = (h->stall_timeout_ms + 999) / 1000;
    if (!r->long_poll && stall_s * 1000 < r->timeout_ms) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
    }
    if (r->raw_encoding)
        curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    else
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  /* gzip/deflate, decoded by curl */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Waiting for a connection to tell whether it multiplexes is worth it only where TLS's
     * ALPN tells within the connect timeout. Over plain http curl learns it from the first
     * response, so every request would queue behind a first one that never gets answered. */
    if (strncasecmp(r->url, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    /* no "Expect: 100-continue" round trip on large bodies */
    if (bp_http_req_header(r, "Expect:") != 0)
        goto fail;
    if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
        if (r->body || strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        }
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
        goto fail;
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->active++;
    return 0;
fail:
    bp_log(BP_LOG_ERROR, "http", "cannot start %s %s", r->method, r->url);
    req_free(r);
    return -1;
}

/* Frees a request that was never sent. */
void
bp_http_req_cancel(struct bp_http_req *r)
{
    req_free(r);
}

/* See http.h: curl's low-speed check at 1 byte/s, which counts silence in both directions. */
void
bp_http_set_stall_timeout(struct bp_http *h, long stall_ms)
{
    h->stall_timeout_ms = stall_ms > 0 ? stall_ms : 60000;
}

/* Test hook (http.h): makes the next n sends fail as curl_easy_init failing would. */
void
bp_http_test_fail_sends(struct bp_http *h, int n)
{
    h->fail_sends = n;
}

/* The outcome, valid inside the done callback. */
const struct bp_http_result *
bp_http_req_result(const struct bp_http_req *r)
{
    return &r->result;
}
