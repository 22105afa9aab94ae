
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * A worker-level HTTP client: libcurl's multi_socket API driven by nginx
 * events and timers, for peer calls that must outlive the request that
 * caused them (callback delivery).  curl owns its sockets; nginx only gets
 * a connection structure around each fd so the event module can watch it.
 * Events are level-triggered, as for Redis.
 *
 * A transfer is a POST (its body gzip-encoded if asked) or a GET with its
 * own timeout, only http and https, no redirects; the answer's status,
 * Retry-After and at most max_body bytes of body go to the owner's
 * handler.  curl keeps one connection cache for
 * the worker, so calls to the same peer reuse connections.  Each transfer
 * holds a non-cancelable guard timer: a graceful shutdown or a reload
 * waits for the calls in flight (at most their timeout) instead of
 * dropping them; at exit the rest are answered NGX_ABORT and freed.
 */


#include "ngx_http_actingweb_redis.h"

#include <curl/curl.h>
#include <zlib.h>


struct ngx_http_actingweb_curl_s {
    CURLM                          *multi;
    ngx_connection_t                dummy;     /* timer's ev->data */
    ngx_event_t                     timer;
    ngx_log_t                      *log;
    ngx_http_actingweb_main_conf_t *amcf;
    ngx_queue_t                     transfers;
    ngx_queue_t                     free;      /* idle easy handles */
    ngx_uint_t                      active;
    ngx_uint_t                      nfree;
    z_stream                        zs;        /* reused: deflateReset */
    unsigned                        zinit:1;
    int                             running;
};


typedef struct {
    CURL                           *easy;
    struct curl_slist              *headers;
    ngx_http_actingweb_curl_t      *curl;
    ngx_http_actingweb_curl_pt      handler;
    void                           *data;
    ngx_event_t                     guard;
    ngx_connection_t                dummy;     /* guard's ev->data */
    ngx_queue_t                     queue;
    size_t                          max_body;
    ngx_http_actingweb_loc_conf_t  *policy;    /* may we connect there */
    ngx_str_t                       body;      /* the answer's, malloc */
    ngx_str_t                       retry_after;
    u_char                          ra[32];
} ngx_http_actingweb_curl_xfer_t;


static curl_socket_t ngx_http_actingweb_curl_open(void *data,
    curlsocktype purpose, struct curl_sockaddr *address);
#if (LIBCURL_VERSION_NUM >= 0x075000)
static int ngx_http_actingweb_curl_prereq(void *data, char *primary,
    char *local, int primary_port, int local_port);
#endif
static int ngx_http_actingweb_curl_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_actingweb_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_actingweb_curl_timeout(ngx_event_t *ev);
static void ngx_http_actingweb_curl_event(ngx_event_t *ev);
static void ngx_http_actingweb_curl_check(ngx_http_actingweb_curl_t *cu);
static size_t ngx_http_actingweb_curl_write(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static size_t ngx_http_actingweb_curl_header(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static void ngx_http_actingweb_curl_guard(ngx_event_t *ev);
static ngx_int_t ngx_http_actingweb_curl_gzip(ngx_http_actingweb_curl_t *cu,
    ngx_str_t *in, ngx_str_t *out);
static void ngx_http_actingweb_curl_finish(ngx_http_actingweb_curl_xfer_t *x,
    ngx_int_t rc, ngx_uint_t status);
static ngx_http_actingweb_curl_xfer_t *ngx_http_actingweb_curl_get(
    ngx_http_actingweb_curl_t *cu);
static void ngx_http_actingweb_curl_put(ngx_http_actingweb_curl_xfer_t *x);


ngx_int_t
ngx_http_actingweb_curl_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf)
{
    curl_version_info_data     *info;
    ngx_http_actingweb_curl_t  *cu;

    /* once per process; nginx workers are single-threaded */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "actingweb: curl_global_init() failed");
        return NGX_ERROR;
    }

    info = curl_version_info(CURLVERSION_NOW);

    if (!(info->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "actingweb: libcurl %s resolves names synchronously; "
                      "peer URLs with host names could stall a worker",
                      info->version);
    }

    cu = ngx_pcalloc(cycle->pool, sizeof(ngx_http_actingweb_curl_t));
    if (cu == NULL) {
        return NGX_ERROR;
    }

    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        return NGX_ERROR;
    }

    cu->log = cycle->log;
    cu->amcf = amcf;
    ngx_queue_init(&cu->transfers);
    ngx_queue_init(&cu->free);
    cu->dummy.fd = (ngx_socket_t) -1;

    cu->timer.handler = ngx_http_actingweb_curl_timeout;
    cu->timer.data = &cu->dummy;
    cu->timer.log = cycle->log;
    cu->timer.cancelable = 1;

    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_actingweb_curl_socket);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_actingweb_curl_timer);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long) amcf->callback_concurrency);
    curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS,
                      (long) amcf->callback_concurrency);

    amcf->curl = cu;

    return NGX_OK;
}


void
ngx_http_actingweb_curl_exit(ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_queue_t                     *q;
    ngx_http_actingweb_curl_t       *cu;
    ngx_http_actingweb_curl_xfer_t  *x;

    cu = amcf->curl;
    if (cu == NULL) {
        return;
    }

    /* what shutdown did not wait for: the owners hear of it, then free */

    while (!ngx_queue_empty(&cu->transfers)) {
        q = ngx_queue_head(&cu->transfers);
        x = ngx_queue_data(q, ngx_http_actingweb_curl_xfer_t, queue);
        ngx_http_actingweb_curl_finish(x, NGX_ABORT, 0);
    }

    while (!ngx_queue_empty(&cu->free)) {
        q = ngx_queue_head(&cu->free);
        x = ngx_queue_data(q, ngx_http_actingweb_curl_xfer_t, queue);
        ngx_queue_remove(q);
        curl_easy_cleanup(x->easy);
        ngx_free(x);
    }

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (cu->timer.posted) {
        ngx_delete_posted_event(&cu->timer);
    }

    /* closes curl's sockets through CURL_POLL_REMOVE callbacks */

    curl_multi_cleanup(cu->multi);
    curl_global_cleanup();

    if (cu->zinit) {
        deflateEnd(&cu->zs);
    }

    amcf->curl = NULL;
}


static int
ngx_http_actingweb_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_http_actingweb_curl_t  *cu = userp;

    ngx_connection_t  *c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_http_actingweb_release(c);
            curl_multi_assign(cu->multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, cu->log);
        if (c == NULL) {
            return -1;
        }

        c->data = cu;
        c->read->handler = ngx_http_actingweb_curl_event;
        c->write->handler = ngx_http_actingweb_curl_event;
        c->read->log = cu->log;
        c->write->log = cu->log;

        curl_multi_assign(cu->multi, s, c);
    }

    if (ngx_http_actingweb_watch(c->read, what & CURL_POLL_IN) != NGX_OK
        || ngx_http_actingweb_watch(c->write, what & CURL_POLL_OUT)
           != NGX_OK)
    {
        return -1;
    }

    return 0;
}


static int
ngx_http_actingweb_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_actingweb_curl_t  *cu = userp;

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (timeout_ms < 0) {
        return 0;
    }

    /*
     * curl must not be re-entered from its own callback: even "now" goes
     * through the event loop.
     */

    if (timeout_ms == 0) {
        if (!cu->timer.posted) {
            ngx_post_event(&cu->timer, &ngx_posted_events);
        }

        return 0;
    }

    ngx_add_timer(&cu->timer, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_http_actingweb_curl_timeout(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_actingweb_curl_t  *cu;

    c = ev->data;
    cu = (ngx_http_actingweb_curl_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_curl_t, dummy));

    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0,
                             &cu->running);

    ngx_http_actingweb_curl_check(cu);
}


static void
ngx_http_actingweb_curl_event(ngx_event_t *ev)
{
    int                         mask;
    ngx_socket_t                fd;
    ngx_connection_t           *c;
    ngx_http_actingweb_curl_t  *cu;

    c = ev->data;
    cu = c->data;
    fd = c->fd;

    mask = ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN;

    if (ev->error || c->close) {
        mask |= CURL_CSELECT_ERR;
    }

    /* may close the socket and free c: use the saved fd only */

    curl_multi_socket_action(cu->multi, fd, mask, &cu->running);

    ngx_http_actingweb_curl_check(cu);
}


/* finished transfers go to their owners */

static void
ngx_http_actingweb_curl_check(ngx_http_actingweb_curl_t *cu)
{
    int                              left;
    long                             status;
    CURL                            *easy;
    CURLMsg                         *msg;
    ngx_http_actingweb_curl_xfer_t  *x;

    while ((msg = curl_multi_info_read(cu->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        x = NULL;
        status = 0;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &x);

        if (msg->data.result != CURLE_OK
            && msg->data.result != CURLE_WRITE_ERROR)
        {
            ngx_log_error(NGX_LOG_INFO, cu->log, 0,
                          "actingweb: peer call failed: %s",
                          curl_easy_strerror(msg->data.result));

            ngx_http_actingweb_curl_finish(x, NGX_ERROR, 0);
            continue;
        }

        /* a body beyond max_body was cut short (WRITE_ERROR): status holds */

        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

        ngx_http_actingweb_curl_finish(x, NGX_OK, (ngx_uint_t) status);
    }
}


/*
 * POST url with body (copied); authorization and content_encoding may be
 * empty.  The handler runs once, from the event loop, never from here.
 */

ngx_int_t
ngx_http_actingweb_curl_post(ngx_http_actingweb_main_conf_t *amcf,
    ngx_http_actingweb_curl_post_t *p)
{
    u_char                          *hdr;
    CURL                            *easy;
    ngx_str_t                        body;
    struct curl_slist               *l;
    ngx_http_actingweb_curl_t       *cu;
    ngx_http_actingweb_curl_xfer_t  *x;

    cu = amcf->curl;
    if (cu == NULL) {
        return NGX_ERROR;
    }

    x = ngx_http_actingweb_curl_get(cu);
    if (x == NULL) {
        return NGX_ERROR;
    }

    easy = x->easy;
    x->handler = p->handler;
    x->data = p->data;
    x->max_body = p->max_body;

    l = curl_slist_append(NULL, p->get ? "Accept: text/plain"
                                       : "Content-Type: application/json");
    x->headers = l;

    /* no "Expect: 100-continue" round trip for larger bodies */
    l = l ? curl_slist_append(l, "Expect:") : NULL;

    if (l && p->authorization.len) {
        hdr = ngx_alloc(p->authorization.len + sizeof("Authorization: "),
                        cu->log);
        if (hdr == NULL) {
            l = NULL;

        } else {
            *ngx_sprintf(hdr, "Authorization: %V", &p->authorization) = '\0';
            l = curl_slist_append(l, (char *) hdr);
            ngx_free(hdr);
        }
    }

    if (l && p->downgraded) {
        l = curl_slist_append(l, "X-ActingWeb-Granularity-Downgraded: true");
    }

    body = p->body;

    if (l && p->gzip) {
        l = (ngx_http_actingweb_curl_gzip(cu, &p->body, &body) == NGX_OK)
            ? curl_slist_append(l, "Content-Encoding: gzip") : NULL;
    }

    if (l == NULL
        || curl_easy_setopt(easy, CURLOPT_URL, (char *) p->url.data)
           != CURLE_OK)
    {
        goto failed;
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, x->headers);

    if (p->get) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);

    } else {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) body.len);
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, (char *) body.data);
    }

    if (body.data != p->body.data) {
        ngx_free(body.data);
        body = p->body;
    }

#if (LIBCURL_VERSION_NUM >= 0x075500)
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
                     (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) p->timeout);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) p->timeout);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                     ngx_http_actingweb_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION,
                     ngx_http_actingweb_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "ngx_http_actingweb_module");

    /*
     * The peer address policy, on the address curl connects to: a name
     * that resolved to a public address when the trust was made may
     * point anywhere now (DNS rebinding)
     */

    x->policy = p->policy;

    if (p->policy) {
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                         ngx_http_actingweb_curl_open);
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, x);

#if (LIBCURL_VERSION_NUM >= 0x075000)
        /* a connection from the cache was opened for another location */
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION,
                         ngx_http_actingweb_curl_prereq);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, x);
#endif
    }

    if (curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
        goto failed;
    }

    x->dummy.fd = (ngx_socket_t) -1;
    x->guard.handler = ngx_http_actingweb_curl_guard;
    x->guard.data = &x->dummy;
    x->guard.log = cu->log;

    /* not cancelable: shutdown waits for the call (curl times it out) */

    ngx_add_timer(&x->guard, p->timeout + 1000);

    ngx_queue_insert_tail(&cu->transfers, &x->queue);
    cu->active++;

    return NGX_OK;

failed:

    if (body.data != p->body.data) {
        ngx_free(body.data);
    }

    curl_slist_free_all(x->headers);
    x->headers = NULL;
    ngx_http_actingweb_curl_put(x);

    return NGX_ERROR;
}


/*
 * An easy handle with its transfer structure, from the worker's free list
 * if there is one: a reused handle keeps its buffers, and new ones are
 * a malloc storm at thousands of callbacks a second.
 */

static ngx_http_actingweb_curl_xfer_t *
ngx_http_actingweb_curl_get(ngx_http_actingweb_curl_t *cu)
{
    CURL                            *easy;
    ngx_queue_t                     *q;
    ngx_http_actingweb_curl_xfer_t  *x;

    if (!ngx_queue_empty(&cu->free)) {
        q = ngx_queue_head(&cu->free);
        ngx_queue_remove(q);
        cu->nfree--;

        return ngx_queue_data(q, ngx_http_actingweb_curl_xfer_t, queue);
    }

    x = ngx_alloc(sizeof(ngx_http_actingweb_curl_xfer_t), cu->log);
    if (x == NULL) {
        return NULL;
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_free(x);
        return NULL;
    }

    ngx_memzero(x, sizeof(ngx_http_actingweb_curl_xfer_t));
    x->easy = easy;
    x->curl = cu;

    return x;
}


/*
 * Back to the free list, reset (every option is set again for the next
 * transfer), up to the concurrency limit; beyond it, freed.
 */

static void
ngx_http_actingweb_curl_put(ngx_http_actingweb_curl_xfer_t *x)
{
    CURL                       *easy;
    ngx_http_actingweb_curl_t  *cu;

    cu = x->curl;
    easy = x->easy;

    if (cu->nfree >= cu->amcf->callback_concurrency) {
        curl_easy_cleanup(easy);
        ngx_free(x);
        return;
    }

    curl_easy_reset(easy);

    ngx_memzero(x, sizeof(ngx_http_actingweb_curl_xfer_t));
    x->easy = easy;
    x->curl = cu;

    ngx_queue_insert_head(&cu->free, &x->queue);
    cu->nfree++;
}


ngx_uint_t
ngx_http_actingweb_curl_active(ngx_http_actingweb_main_conf_t *amcf)
{
    return amcf->curl ? amcf->curl->active : 0;
}


static size_t
ngx_http_actingweb_curl_write(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_actingweb_curl_xfer_t *x = userdata;

    u_char  *p;
    size_t   n;

    n = size * nmemb;

    if (x->body.len + n > x->max_body) {
        return 0;                        /* enough: ends the transfer */
    }

    p = ngx_alloc(x->body.len + n + 1, x->curl->log);
    if (p == NULL) {
        return 0;
    }

    if (x->body.len) {
        ngx_memcpy(p, x->body.data, x->body.len);
        ngx_free(x->body.data);
    }

    ngx_memcpy(p + x->body.len, ptr, n);
    x->body.data = p;
    x->body.len += n;
    p[x->body.len] = '\0';

    return n;
}


static size_t
ngx_http_actingweb_curl_header(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_actingweb_curl_xfer_t *x = userdata;

    u_char  *p, *last;
    size_t   n;

    n = size * nmemb;
    p = (u_char *) ptr;
    last = p + n;

    if (n > sizeof("Retry-After:") - 1
        && ngx_strncasecmp(p, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1) == 0)
    {
        p += sizeof("Retry-After:") - 1;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                            || last[-1] == ' '))
        {
            last--;
        }

        x->retry_after.len = ngx_min((size_t) (last - p), sizeof(x->ra));
        x->retry_after.data = x->ra;
        ngx_memcpy(x->ra, p, x->retry_after.len);
    }

    return n;
}


/* curl's socket for a connection: only to an address the policy allows */

static curl_socket_t
ngx_http_actingweb_curl_open(void *data, curlsocktype purpose,
    struct curl_sockaddr *address)
{
    ngx_http_actingweb_curl_xfer_t *x = data;

    u_char  text[NGX_SOCKADDR_STRLEN];
    size_t  len;

    if (purpose != CURLSOCKTYPE_IPCXN
        || !ngx_http_actingweb_peer_allowed(x->curl->amcf, x->policy,
                                            &address->addr))
    {
        len = ngx_sock_ntop(&address->addr, address->addrlen, text,
                            NGX_SOCKADDR_STRLEN, 0);

        ngx_log_error(NGX_LOG_WARN, x->curl->log, 0,
                      "actingweb: callback address %*s refused by "
                      "actingweb_peer_allow/deny", len, text);

        return CURL_SOCKET_BAD;
    }

    return socket(address->family, address->socktype, address->protocol);
}


#if (LIBCURL_VERSION_NUM >= 0x075000)

/* before each request, on a new or a reused connection: the same rules */

static int
ngx_http_actingweb_curl_prereq(void *data, char *primary, char *local,
    int primary_port, int local_port)
{
    ngx_http_actingweb_curl_xfer_t *x = data;

    size_t                len;
    struct sockaddr      *sa;
    struct sockaddr_in    sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6   sin6;
#endif

    len = ngx_strlen(primary);
    sa = NULL;

    ngx_memzero(&sin, sizeof(struct sockaddr_in));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = ngx_inet_addr((u_char *) primary, len);

    if (sin.sin_addr.s_addr != INADDR_NONE) {
        sa = (struct sockaddr *) &sin;
    }

#if (NGX_HAVE_INET6)
    ngx_memzero(&sin6, sizeof(struct sockaddr_in6));
    sin6.sin6_family = AF_INET6;

    if (sa == NULL
        && ngx_inet6_addr((u_char *) primary, len, sin6.sin6_addr.s6_addr)
           == NGX_OK)
    {
        sa = (struct sockaddr *) &sin6;
    }
#endif

    if (sa && ngx_http_actingweb_peer_allowed(x->curl->amcf, x->policy, sa))
    {
        return CURL_PREREQFUNC_OK;
    }

    ngx_log_error(NGX_LOG_WARN, x->curl->log, 0,
                  "actingweb: callback address %s refused by "
                  "actingweb_peer_allow/deny", primary);

    return CURL_PREREQFUNC_ABORT;
}

#endif


/*
 * A gzip member (RFC 1952) of the body, malloc'ed.  One deflate state per
 * worker, reset for each body: a new one is some 270 KB to allocate and
 * clear, per callback.  memLevel 5 keeps the hash that each reset clears
 * at 8 KB; callbacks are small.
 */

static ngx_int_t
ngx_http_actingweb_curl_gzip(ngx_http_actingweb_curl_t *cu, ngx_str_t *in,
    ngx_str_t *out)
{
    int        rc;
    u_char    *p;
    size_t     n;
    z_stream  *zs;

    zs = &cu->zs;

    if (cu->zinit) {
        if (deflateReset(zs) != Z_OK) {
            return NGX_ERROR;
        }

    } else {
        ngx_memzero(zs, sizeof(z_stream));

        /* 16 + window bits: a gzip header and trailer around the deflate */

        if (deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                         MAX_WBITS + 16, 5, Z_DEFAULT_STRATEGY)
            != Z_OK)
        {
            return NGX_ERROR;
        }

        cu->zinit = 1;
    }

    n = deflateBound(zs, in->len);

    p = ngx_alloc(n, cu->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    zs->next_in = in->data;
    zs->avail_in = in->len;
    zs->next_out = p;
    zs->avail_out = n;

    rc = deflate(zs, Z_FINISH);
    n = zs->total_out;

    if (rc != Z_STREAM_END) {
        ngx_free(p);
        return NGX_ERROR;
    }

    out->data = p;
    out->len = n;

    return NGX_OK;
}


/* curl's own timeout should have ended the call: end it here if not */

static void
ngx_http_actingweb_curl_guard(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_actingweb_curl_xfer_t  *x;

    c = ev->data;
    x = (ngx_http_actingweb_curl_xfer_t *)
            ((u_char *) c - offsetof(ngx_http_actingweb_curl_xfer_t, dummy));

    ngx_http_actingweb_curl_finish(x, NGX_ERROR, 0);
}


static void
ngx_http_actingweb_curl_finish(ngx_http_actingweb_curl_xfer_t *x,
    ngx_int_t rc, ngx_uint_t status)
{
    ngx_http_actingweb_curl_t  *cu;

    cu = x->curl;

    if (x->guard.timer_set) {
        ngx_del_timer(&x->guard);
    }

    ngx_queue_remove(&x->queue);
    cu->active--;

    curl_multi_remove_handle(cu->multi, x->easy);
    curl_slist_free_all(x->headers);

    x->handler(x->data, rc, status, &x->retry_after, &x->body);

    if (x->body.data) {
        ngx_free(x->body.data);
    }

    ngx_http_actingweb_curl_put(x);
}
