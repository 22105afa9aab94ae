
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * In-request peer calls: an in-memory subrequest to the internal location
 * named by actingweb_peer_location, which proxies to $actingweb_peer_url.
 * TLS, resolver, keepalive and upstream tuning stay nginx's own.
 *
 * A call never blocks and always ends in exactly one run of its handler,
 * in the parent request: with the peer's status and (strictly checked)
 * JSON, or with an error (bad URL, address refused, DNS, connection,
 * timeout, answer too big).  Before anything is sent, the target address
 * is checked against actingweb_peer_allow / actingweb_peer_deny (host
 * names are resolved first with nginx's resolver), because an anonymous
 * POST /trust/<rel> makes this server fetch a URL the caller chose.  The
 * proxy then gets the checked address in the URL, not the name, and the
 * name as $actingweb_peer_host (for Host and the TLS name).
 *
 * The subrequest gets none of the client's headers or body: its headers
 * are rebuilt empty, so only what the peer location sets is sent.
 */


#include "ngx_http_actingweb_peer.h"


#define NGX_HTTP_ACTINGWEB_URL_MAX   2048


typedef struct {
    ngx_cidr_t                       cidr;
    ngx_uint_t                       deny;        /* 1: deny, 0: allow */
    ngx_uint_t                       all;
} ngx_http_actingweb_peer_rule_t;


static ngx_int_t ngx_http_actingweb_peer_check(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, struct sockaddr *sa);
static ngx_uint_t ngx_http_actingweb_peer_match(ngx_cidr_t *cidr,
    struct sockaddr *sa);
static void ngx_http_actingweb_peer_resolved(ngx_resolver_ctx_t *rctx);
static ngx_int_t ngx_http_actingweb_peer_pin(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, ngx_resolver_addr_t *addr);
static ngx_int_t ngx_http_actingweb_peer_start(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_peer_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_actingweb_peer_resume(ngx_http_request_t *r);
static void ngx_http_actingweb_peer_metrics(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_peer_fail(ngx_http_actingweb_peer_call_t *pc,
    ngx_http_actingweb_peer_error_e error, const char *message);
static void ngx_http_actingweb_peer_timeout(ngx_event_t *ev);
static void ngx_http_actingweb_peer_cleanup(void *data);


/* special-purpose ranges, refused unless a rule allows them */

static char  *ngx_http_actingweb_peer_special[] = {
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
#if (NGX_HAVE_INET6)
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    "64:ff9b::/96", "2002::/16",                /* NAT64, 6to4: IPv4 */
    "fec0::/10", "100::/64",
#endif
    NULL
};


static ngx_str_t  ngx_http_actingweb_methods[] = {
    ngx_string("GET"), ngx_string("POST"), ngx_string("PUT"),
    ngx_string("DELETE")
};


/*
 * Starts a call.  NGX_OK: the handler runs later; NGX_DECLINED: refused
 * at once (pc->error, pc->message set, the handler does not run);
 * NGX_ERROR: out of memory.
 */

ngx_int_t
ngx_http_actingweb_peer_call(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                       rc;
    ngx_msec_t                      timeout;
    ngx_addr_t                      addr;
    ngx_msec_int_t                  left;
    ngx_http_cleanup_t             *cln;
    ngx_resolver_ctx_t             *rctx, temp;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    pc->request = r;
    pc->start = ngx_current_msec;
    ngx_str_null(&pc->target);

    if (ngx_http_actingweb_peer_url_valid(pc) != NGX_OK) {
        pc->error = NGX_HTTP_ACTINGWEB_PEER_BAD_URL;
        pc->message = "peer URL must be an absolute http:// or https:// URL";
        return NGX_DECLINED;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_actingweb_peer_cleanup;
    cln->data = pc;

    pc->timer.handler = ngx_http_actingweb_peer_timeout;
    pc->timer.data = r->connection;
    pc->timer.log = r->connection->log;

    /* bounded by actingweb_peer_timeout and by the request's deadline */

    timeout = alcf->peer_timeout;

    if (ctx->deadline) {
        left = (ngx_msec_int_t) (ctx->deadline - ngx_current_msec);

        if (left <= 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "actingweb: peer \"%V\" not called: the "
                          "request's deadline passed", &pc->url);
            pc->error = NGX_HTTP_ACTINGWEB_PEER_TIMEOUT;
            pc->message = "peer did not answer in time";
            return NGX_DECLINED;
        }

        if ((ngx_msec_t) left < timeout) {
            timeout = left;
        }
    }

    /* an IP literal is checked now; a name once it resolved */

    if (ngx_parse_addr(r->pool, &addr, pc->host.data, pc->host.len)
        == NGX_OK)
    {
        rc = ngx_http_actingweb_peer_check(r, pc, addr.sockaddr);
        if (rc != NGX_OK) {
            return rc;
        }

        goto start;
    }

    if (alcf->peer_open) {
        goto start;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    temp.name = pc->host;
    rctx = ngx_resolve_start(clcf->resolver, &temp);

    if (rctx == NULL) {
        return NGX_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: no resolver to check peer host \"%V\" "
                      "(set \"resolver\", or \"actingweb_peer_allow all\")",
                      &pc->host);
        pc->error = NGX_HTTP_ACTINGWEB_PEER_RESOLVE;
        pc->message = "peer host names cannot be resolved here";
        return NGX_DECLINED;
    }

    rctx->name = pc->host;
    rctx->handler = ngx_http_actingweb_peer_resolved;
    rctx->data = pc;
    rctx->timeout = clcf->resolver_timeout;

    pc->resolving = rctx;
    pc->next = ctx->peer_calls;
    ctx->peer_calls = pc;

    pc->timeout = timeout;
    ngx_add_timer(&pc->timer, timeout);

    if (!pc->finish) {
        r->read_event_handler = ngx_http_test_reading;
    }

    /* a cached answer calls peer_resolved() before this returns */

    pc->starting = 1;
    rc = ngx_resolve_name(rctx);
    pc->starting = 0;

    if (rc != NGX_OK) {
        /* the context was freed */
        pc->resolving = NULL;
        ngx_http_actingweb_peer_fail(pc, NGX_HTTP_ACTINGWEB_PEER_RESOLVE,
                                     "peer host name could not be resolved");
    }

    return NGX_OK;

start:

    pc->next = ctx->peer_calls;
    ctx->peer_calls = pc;

    pc->timeout = timeout;
    ngx_add_timer(&pc->timer, timeout);

    /* a client that goes away is noticed at once, not at the answer */

    if (!pc->finish) {
        r->read_event_handler = ngx_http_test_reading;
    }

    if (ngx_http_actingweb_peer_start(r, pc) != NGX_OK) {
        ctx->peer_calls = pc->next;
        ngx_del_timer(&pc->timer);
        cln->handler = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * peer_call() as an endpoint step: NGX_DONE, and the handler runs, later
 * or at once with a refusal as a failed call; or a 500 to answer.
 */

ngx_int_t
ngx_http_actingweb_peer_run(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t  rc;

    rc = ngx_http_actingweb_peer_call(r, pc);

    if (rc == NGX_OK) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->done = 1;
    pc->handled = 1;
    ngx_http_actingweb_peer_metrics(r, pc);
    pc->handler(r, pc);

    return NGX_DONE;
}


/* scheme://host[:port][/path]; no user info, spaces or control bytes */

ngx_int_t
ngx_http_actingweb_peer_url_valid(ngx_http_actingweb_peer_call_t *pc)
{
    u_char     *p, *last, *host, *end;
    ngx_int_t   port;

    p = pc->url.data;
    last = p + pc->url.len;

    if (pc->url.len > NGX_HTTP_ACTINGWEB_URL_MAX) {
        return NGX_ERROR;
    }

    for (end = p; end < last; end++) {
        if (*end <= 0x20 || *end >= 0x7f) {
            return NGX_ERROR;
        }
    }

    if (pc->url.len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        p += 7;
        pc->port = 80;

    } else if (pc->url.len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        p += 8;
        pc->port = 443;

    } else {
        return NGX_ERROR;
    }

    end = p;
    while (end < last && *end != '/' && *end != '?' && *end != '#') {
        if (*end == '@' || *end == '\\') {
            return NGX_ERROR;
        }

        end++;
    }

    host = p;

    if (host < end && *host == '[') {
        p = ngx_strlchr(host, end, ']');
        if (p == NULL) {
            return NGX_ERROR;
        }

        pc->host.data = host + 1;
        pc->host.len = p - host - 1;
        p++;

    } else {
        p = ngx_strlchr(host, end, ':');
        if (p == NULL) {
            p = end;
        }

        pc->host.data = host;
        pc->host.len = p - host;
    }

    if (pc->host.len == 0) {
        return NGX_ERROR;
    }

    /* the Host header proxy_pass would send: the port unless default */

    pc->authority = host;
    pc->rest = end;
    pc->host_header.data = host;
    pc->host_header.len = p - host;

    if (p < end) {
        if (*p != ':' || p + 1 == end) {
            return NGX_ERROR;
        }

        port = ngx_atoi(p + 1, end - p - 1);
        if (port < 1 || port > 65535) {
            return NGX_ERROR;
        }

        if (port != pc->port) {
            pc->host_header.len = end - host;
        }

        pc->port = (in_port_t) port;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_peer_check(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, struct sockaddr *sa)
{
    u_char                           text[NGX_SOCKADDR_STRLEN];
    size_t                           len;
    ngx_http_actingweb_loc_conf_t   *alcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (ngx_http_actingweb_peer_allowed(amcf, alcf, sa)) {
        return NGX_OK;
    }

    len = ngx_sock_ntop(sa, NGX_SOCKADDRLEN, text, NGX_SOCKADDR_STRLEN, 0);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "actingweb: peer address %*s of \"%V\" refused by "
                  "actingweb_peer_allow/deny", len, text, &pc->host);

    pc->error = NGX_HTTP_ACTINGWEB_PEER_DENIED;
    pc->message = "peer address not allowed on this server";

    return NGX_DECLINED;
}


/*
 * May location alcf call address sa?  Its first matching
 * actingweb_peer_allow/deny rule decides; without one the special ranges
 * are refused.  Peer calls and callback delivery (curl.c) both ask.
 */

ngx_uint_t
ngx_http_actingweb_peer_allowed(ngx_http_actingweb_main_conf_t *amcf,
    ngx_http_actingweb_loc_conf_t *alcf, struct sockaddr *sa)
{
    ngx_uint_t                       i;
    ngx_http_actingweb_peer_rule_t  *rule;

    if (alcf->peer_rules) {
        rule = alcf->peer_rules->elts;

        for (i = 0; i < alcf->peer_rules->nelts; i++) {
            if (rule[i].all
                || ngx_http_actingweb_peer_match(&rule[i].cidr, sa))
            {
                return !rule[i].deny;
            }
        }
    }

    rule = amcf->peer_special->elts;

    for (i = 0; i < amcf->peer_special->nelts; i++) {
        if (ngx_http_actingweb_peer_match(&rule[i].cidr, sa)) {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_actingweb_peer_match(ngx_cidr_t *cidr, struct sockaddr *sa)
{
    u_char               *p;
    in_addr_t             a;
    ngx_uint_t            i;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        p = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            /* ::ffff:a.b.c.d is that IPv4 address */
            a = htonl((in_addr_t) p[12] << 24 | p[13] << 16 | p[14] << 8
                      | p[15]);
            goto v4;
        }

        if (cidr->family != AF_INET6) {
            return 0;
        }

        for (i = 0; i < 16; i++) {
            if ((p[i] & cidr->u.in6.mask.s6_addr[i])
                != cidr->u.in6.addr.s6_addr[i])
            {
                return 0;
            }
        }

        return 1;
#endif

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        a = sin->sin_addr.s_addr;
        goto v4;

    default:
        return 0;
    }

v4:

    if (cidr->family != AF_INET) {
        return 0;
    }

    return (a & cidr->u.in.mask) == cidr->u.in.addr;
}


static void
ngx_http_actingweb_peer_resolved(ngx_resolver_ctx_t *rctx)
{
    ngx_uint_t                       i;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_actingweb_peer_call_t  *pc;
    ngx_http_actingweb_main_conf_t  *amcf;

    pc = rctx->data;
    r = pc->request;
    c = r->connection;

    pc->resolving = NULL;

    if (rctx->state || rctx->naddrs == 0) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "actingweb: peer host \"%V\" could not be resolved "
                      "(%i: %s)", &pc->host, rctx->state,
                      ngx_resolver_strerror(rctx->state));
        ngx_resolve_name_done(rctx);
        ngx_http_actingweb_peer_fail(pc, NGX_HTTP_ACTINGWEB_PEER_RESOLVE,
                                     "peer host name could not be resolved");
        goto done;
    }

    /* every address must pass: the proxy may use any of them */

    for (i = 0; i < rctx->naddrs; i++) {
        if (ngx_http_actingweb_peer_check(r, pc, rctx->addrs[i].sockaddr)
            != NGX_OK)
        {
            ngx_resolve_name_done(rctx);
            ngx_http_actingweb_peer_fail(pc, pc->error, pc->message);
            goto done;
        }
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->peer_pin
        && ngx_http_actingweb_peer_pin(r, pc, &rctx->addrs[0]) != NGX_OK)
    {
        ngx_resolve_name_done(rctx);
        ngx_http_actingweb_peer_fail(pc, NGX_HTTP_ACTINGWEB_PEER_CONFIG,
                                     "peer call could not be started");
        goto done;
    }

    ngx_resolve_name_done(rctx);

    if (ngx_http_actingweb_peer_start(r, pc) != NGX_OK) {
        ngx_http_actingweb_peer_fail(pc, NGX_HTTP_ACTINGWEB_PEER_CONFIG,
                                     "peer call could not be started");
    }

done:

    if (!pc->starting) {
        ngx_http_run_posted_requests(c);
    }
}


/*
 * The URL proxy_pass gets: the checked address in place of the name, so
 * that nothing resolves the name again (DNS rebinding: a name may answer
 * a public address to the check and a private one a moment later).  The
 * name still goes to the peer as $actingweb_peer_host (Host, TLS name).
 * The resolver rotates a name's addresses; the first is taken.
 */

static ngx_int_t
ngx_http_actingweb_peer_pin(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, ngx_resolver_addr_t *addr)
{
    u_char          *p, text[NGX_SOCKADDR_STRLEN];
    size_t           len, head, tail;
    ngx_sockaddr_t   sa;

    if (addr->socklen > sizeof(ngx_sockaddr_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&sa, addr->sockaddr, addr->socklen);
    ngx_inet_set_port(&sa.sockaddr, pc->port);

    /* with the port: IPv6 comes in brackets, as a URL needs it */

    len = ngx_sock_ntop(&sa.sockaddr, addr->socklen, text,
                        NGX_SOCKADDR_STRLEN, 1);

    head = pc->authority - pc->url.data;
    tail = pc->url.data + pc->url.len - pc->rest;

    p = ngx_pnalloc(r->pool, head + len + tail);
    if (p == NULL) {
        return NGX_ERROR;
    }

    pc->target.data = p;
    p = ngx_cpymem(p, pc->url.data, head);
    p = ngx_cpymem(p, text, len);
    p = ngx_cpymem(p, pc->rest, tail);
    pc->target.len = p - pc->target.data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb peer \"%V\" pinned to \"%V\"",
                   &pc->host, &pc->target);

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_peer_start(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    u_char                         *p;
    ngx_buf_t                      *b;
    ngx_uint_t                      m;
    ngx_list_t                      headers;
    ngx_chain_t                    *cl;
    ngx_http_request_t             *sr;
    ngx_http_request_body_t        *rb;
    ngx_http_actingweb_ctx_t       *sctx;
    ngx_http_post_subrequest_t     *ps;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    /* everything is allocated first: a started subrequest cannot fail */

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_ctx_t));
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));

    if (ps == NULL || sctx == NULL || rb == NULL
        || ngx_list_init(&headers, r->pool, 2, sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (pc->body.len) {
        b = ngx_calloc_buf(r->pool);
        cl = ngx_alloc_chain_link(r->pool);
        if (b == NULL || cl == NULL) {
            return NGX_ERROR;
        }

        b->pos = pc->body.data;
        b->last = pc->body.data + pc->body.len;
        b->start = b->pos;
        b->end = b->last;
        b->memory = 1;
        b->last_buf = 1;
        b->last_in_chain = 1;

        cl->buf = b;
        cl->next = NULL;

        rb->bufs = cl;
    }

    /* what $actingweb_peer_url and $actingweb_peer_authorization give */

    sctx->peer_call = pc;
    sctx->peer_url = pc->target.len ? pc->target : pc->url;
    sctx->peer_host = pc->host_header;

    if (pc->authorization.len) {
        /* our own credentials at our own server (devtest twins) */
        sctx->peer_authorization = pc->authorization;

    } else if (pc->secret.len) {
        p = ngx_pnalloc(r->pool, sizeof("Bearer ") - 1 + pc->secret.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        sctx->peer_authorization.data = p;
        p = ngx_cpymem(p, "Bearer ", sizeof("Bearer ") - 1);
        p = ngx_cpymem(p, pc->secret.data, pc->secret.len);
        sctx->peer_authorization.len = p - sctx->peer_authorization.data;
    }

    ps->handler = ngx_http_actingweb_peer_done;
    ps->data = pc;

    if (ngx_http_subrequest(r, &alcf->peer_location, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    pc->sr = sr;

    switch (pc->method) {
    case NGX_HTTP_POST:
        m = 1;
        break;
    case NGX_HTTP_PUT:
        m = 2;
        break;
    case NGX_HTTP_DELETE:
        m = 3;
        break;
    default:
        m = 0;
        pc->method = NGX_HTTP_GET;
        break;
    }

    sr->method = pc->method;
    sr->method_name = ngx_http_actingweb_methods[m];

    /* nothing of the client's request goes to the peer */

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));
    sr->headers_in.headers = headers;
    sr->headers_in.headers.last = &sr->headers_in.headers.part;
    sr->headers_in.keep_alive_n = -1;
    sr->request_body = rb;

    if (pc->body.len) {
        sr->headers_in.content_length_n = pc->body.len;

    } else if (pc->method == NGX_HTTP_POST || pc->method == NGX_HTTP_PUT) {
        sr->headers_in.content_length_n = 0;

    } else {
        sr->headers_in.content_length_n = -1;
    }

    ngx_http_set_ctx(sr, sctx, ngx_http_actingweb_module);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb peer call %V %V via \"%V\"",
                   &sr->method_name, &pc->url, &alcf->peer_location);

    return NGX_OK;
}


/*
 * Runs inside the subrequest's finalization: only records the outcome
 * and wakes the parent.  NGX_OK keeps nginx from sending an error page
 * of its own into the client's stream (and from running this twice).
 */

static ngx_int_t
ngx_http_actingweb_peer_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_actingweb_peer_call_t *pc = data;

    ngx_buf_t                      *b;
    ngx_http_request_t             *r;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_actingweb_ctx_t       *sctx;
    ngx_http_postponed_request_t  **pp;
    ngx_http_actingweb_loc_conf_t  *alcf;

    static ngx_uint_t               warned;

    r = sr->parent;

    if (pc->finished) {
        return NGX_OK;
    }

    pc->finished = 1;

    /* another location may use $actingweb_peer_host, this one not */

    sctx = ngx_http_get_module_ctx(sr, ngx_http_actingweb_module);

    if (pc->target.len && sr->upstream && sctx && !sctx->peer_host_sent
        && !warned)
    {
        warned = 1;
        alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: peer location \"%V\" does not send "
                      "$actingweb_peer_host: peers get their address as "
                      "Host (add \"proxy_set_header Host "
                      "$actingweb_peer_host\")", &alcf->peer_location);
    }

    /*
     * Its output went to memory, so it holds no place in the parent's
     * output: taken out of the parent's postponed list and made the
     * connection's active request, nginx finalizes it at once (releasing
     * its reference) even while other calls of this request run.
     */

    for (pp = &r->postponed; *pp; pp = &(*pp)->next) {
        if ((*pp)->request == sr) {
            *pp = (*pp)->next;
            break;
        }
    }

    sr->connection->data = sr;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    r->write_event_handler = ngx_http_actingweb_peer_resume;

    if (pc->done) {
        return NGX_OK;
    }

    pc->done = 1;
    pc->status = sr->headers_out.status;
    b = sr->out ? sr->out->buf : NULL;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb peer call done rc:%i status:%ui body:%uz",
                   rc, pc->status, b ? (size_t) (b->last - b->pos) : 0);

    if (pc->timed_out) {
        if (ngx_http_actingweb_log_event(
                                        NGX_HTTP_ACTINGWEB_EV_PEER_TIMEOUT))
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "actingweb: peer \"%V\" did not answer in %M ms",
                          &pc->url, pc->timeout);
        }

        pc->error = NGX_HTTP_ACTINGWEB_PEER_TIMEOUT;
        pc->message = "peer did not answer in time";
        return NGX_OK;
    }

    if (sr->upstream == NULL) {
        alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: peer location \"%V\" does not proxy "
                      "(it needs \"proxy_pass $actingweb_peer_url\")",
                      &alcf->peer_location);
        pc->error = NGX_HTTP_ACTINGWEB_PEER_CONFIG;
        pc->message = "peer calls are not configured on this server";
        return NGX_OK;
    }

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT && pc->status == 0) {
        pc->error = NGX_HTTP_ACTINGWEB_PEER_TIMEOUT;
        pc->message = "peer did not answer in time";
        return NGX_OK;
    }

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST && pc->finish) {
        /*
         * our client left while the proxy waited; the flow must still
         * run to its end (take back what it stored), so the request is
         * not torn down here: the answer will simply not be delivered
         */
        r->connection->error = 0;
        pc->error = NGX_HTTP_ACTINGWEB_PEER_FAILED;
        pc->message = "client closed the connection";
        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(sr, ngx_http_core_module);

    if (rc == NGX_ERROR && pc->status
        && ((b && b->last == b->end)
            || (b == NULL
                && sr->headers_out.content_length_n
                   > (off_t) clcf->subrequest_output_buffer_size)))
    {
        /*
         * The in-memory filter refused the body ("too big subrequest
         * response"); nginx marks the client connection failed for any
         * filter error, although only the subrequest's output failed.
         */
        r->connection->error = 0;
        pc->error = NGX_HTTP_ACTINGWEB_PEER_TOO_BIG;
        pc->message = "peer answer too large";
        return NGX_OK;
    }

    if (pc->status == 0 || rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        pc->error = NGX_HTTP_ACTINGWEB_PEER_FAILED;
        pc->message = "peer could not be reached";
        return NGX_OK;
    }

    if (b && b->last > b->pos) {
        pc->answer.data = b->pos;
        pc->answer.len = b->last - b->pos;
    }

    pc->error = NGX_HTTP_ACTINGWEB_PEER_OK;

    if (pc->answer.len) {
        pc->json = ngx_http_actingweb_json_parse(r, pc->answer.data,
                                                 pc->answer.len,
                                                 &pc->message);
        pc->message = NULL;
    }

    return NGX_OK;
}


/* the parent's write handler while calls run: hand each result over */

static void
ngx_http_actingweb_peer_resume(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_peer_call_t  *pc;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx == NULL) {
        return;
    }

    for ( ;; ) {
        for (pc = ctx->peer_calls; pc; pc = pc->next) {
            if (pc->done && !pc->handled && (pc->finished || pc->sr == NULL))
            {
                break;
            }
        }

        if (pc == NULL) {
            return;
        }

        pc->handled = 1;
        ngx_http_actingweb_peer_metrics(r, pc);

        /*
         * The handler may finalize the request: it does so only after the
         * last outstanding call, so nothing below touches it afterwards.
         */

        if (ngx_http_actingweb_peer_busy(r) == 0) {
            r->write_event_handler = ngx_http_request_empty_handler;
            r->read_event_handler = ngx_http_block_reading;
            pc->handler(r, pc);
            return;
        }

        pc->handler(r, pc);
    }
}


static void
ngx_http_actingweb_peer_metrics(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_uint_t                       m;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    switch (pc->error) {
    case NGX_HTTP_ACTINGWEB_PEER_OK:
        m = NGX_HTTP_ACTINGWEB_M_PEER_OK;
        break;
    case NGX_HTTP_ACTINGWEB_PEER_TIMEOUT:
        m = NGX_HTTP_ACTINGWEB_M_PEER_TIMEOUT;
        break;
    case NGX_HTTP_ACTINGWEB_PEER_BAD_URL:
    case NGX_HTTP_ACTINGWEB_PEER_DENIED:
        m = NGX_HTTP_ACTINGWEB_M_PEER_REFUSED;
        break;
    default:
        m = NGX_HTTP_ACTINGWEB_M_PEER_FAILED;
        break;
    }

    ngx_http_actingweb_metric_inc(amcf, m);

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_BAD_URL
        && pc->error != NGX_HTTP_ACTINGWEB_PEER_DENIED)
    {
        ngx_http_actingweb_metric_observe(amcf, NGX_HTTP_ACTINGWEB_H_PEER,
                                          ngx_current_msec - pc->start);
    }
}


/* calls of this request whose handler has not run yet */

ngx_uint_t
ngx_http_actingweb_peer_busy(ngx_http_request_t *r)
{
    ngx_uint_t                       n;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_peer_call_t  *pc;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    n = 0;

    for (pc = ctx->peer_calls; pc; pc = pc->next) {
        if (!pc->handled) {
            n++;
        }
    }

    return n;
}


/* an error before any subrequest ran: handed over through the parent */

static void
ngx_http_actingweb_peer_fail(ngx_http_actingweb_peer_call_t *pc,
    ngx_http_actingweb_peer_error_e error, const char *message)
{
    ngx_http_request_t  *r;

    r = pc->request;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pc->done = 1;
    pc->error = error;
    pc->message = message;

    r->write_event_handler = ngx_http_actingweb_peer_resume;
    ngx_http_post_request(r, NULL);
}


/*
 * actingweb_peer_timeout passed.  A subrequest cannot be cancelled, so
 * the upstream is treated exactly as its own timer would: the event is
 * marked timed out and its handler runs, nginx closes the connection and
 * ends the subrequest (504), and peer_done() reports the timeout.
 */

static void
ngx_http_actingweb_peer_timeout(ngx_event_t *ev)
{
    ngx_event_t                     *uev;
    ngx_connection_t                *c, *uc;
    ngx_http_upstream_t             *u;
    ngx_http_actingweb_peer_call_t  *pc;

    pc = (ngx_http_actingweb_peer_call_t *)
             ((u_char *) ev - offsetof(ngx_http_actingweb_peer_call_t, timer));

    c = pc->request->connection;
    pc->timed_out = 1;

    if (pc->resolving) {
        ngx_resolve_name_done(pc->resolving);
        pc->resolving = NULL;
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "actingweb: peer host \"%V\" not resolved in time",
                      &pc->host);
        ngx_http_actingweb_peer_fail(pc, NGX_HTTP_ACTINGWEB_PEER_TIMEOUT,
                                     "peer did not answer in time");
        goto done;
    }

    u = pc->sr ? pc->sr->upstream : NULL;

    if (u == NULL || u->peer.connection == NULL) {
        /* not connecting yet (the proxy may be resolving): look again */
        ngx_add_timer(&pc->timer, 100);
        return;
    }

    /* no next address with fresh proxy timeouts: this call is over */

    u->peer.tries = 1;

    uc = u->peer.connection;
    uev = u->request_sent ? uc->read : uc->write;

    if (uev->timer_set) {
        ngx_del_timer(uev);
    }

    uev->timedout = 1;
    uev->handler(uev);

done:

    ngx_http_run_posted_requests(c);
}


/* the request goes away: no timer or resolver query may outlive it */

static void
ngx_http_actingweb_peer_cleanup(void *data)
{
    ngx_http_actingweb_peer_call_t  *pc = data;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->resolving) {
        ngx_resolve_name_done(pc->resolving);
        pc->resolving = NULL;
    }
}


/*
 * The request's deadline for all its peer work (asyncio.wait_for in the
 * reference's document): "?deadline=<ms>" or "X-ActingWeb-Deadline:
 * <ms>", at most actingweb_peer_deadline, which is also the default.
 */

ngx_int_t
ngx_http_actingweb_peer_deadline(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err)
{
    ngx_int_t                       ms;
    ngx_str_t                       v;
    ngx_table_elt_t                *h;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    ms = (ngx_int_t) alcf->peer_deadline;

    if (ngx_http_arg(r, (u_char *) "deadline", 8, &v) != NGX_OK) {
        h = ngx_http_actingweb_header_in(r, "X-ActingWeb-Deadline");
        v.len = 0;

        if (h) {
            v = h->value;
        }
    }

    if (v.len) {
        ms = ngx_atoi(v.data, v.len);

        if (ms <= 0) {
            *err = "deadline must be a positive number of milliseconds";
            return NGX_HTTP_BAD_REQUEST;
        }

        if ((ngx_msec_t) ms > alcf->peer_deadline) {
            ms = (ngx_int_t) alcf->peer_deadline;
        }
    }

    ctx->deadline = ngx_current_msec + (ngx_msec_t) ms;

    if (ctx->deadline == 0) {
        ctx->deadline = 1;
    }

    return NGX_OK;
}


/* what a call's failure becomes for our own client */

ngx_uint_t
ngx_http_actingweb_peer_status(ngx_http_actingweb_peer_call_t *pc)
{
    switch (pc->error) {

    case NGX_HTTP_ACTINGWEB_PEER_OK:
        return pc->status;

    case NGX_HTTP_ACTINGWEB_PEER_BAD_URL:
        return NGX_HTTP_BAD_REQUEST;

    case NGX_HTTP_ACTINGWEB_PEER_DENIED:
        return NGX_HTTP_FORBIDDEN;

    case NGX_HTTP_ACTINGWEB_PEER_TIMEOUT:
        return NGX_HTTP_GATEWAY_TIME_OUT;

    case NGX_HTTP_ACTINGWEB_PEER_CONFIG:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:
        return NGX_HTTP_BAD_GATEWAY;
    }
}


/*
 * The absolute URL this server gives peers for an actor: never from the
 * client's Host header (a client could make us hand out its address).
 * actingweb_base_url, else the server's first name and the local port.
 */

ngx_int_t
ngx_http_actingweb_self_url(ngx_http_request_t *r, ngx_str_t *id,
    ngx_str_t *url)
{
    u_char                         *p;
    size_t                          len;
    ngx_str_t                       scheme, host;
    ngx_uint_t                      port, dflt;
    ngx_http_core_srv_conf_t       *cscf;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    if (alcf->base_url.len) {
        len = alcf->base_url.len + 1 + id->len;
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        url->data = p;
        p = ngx_cpymem(p, alcf->base_url.data, alcf->base_url.len);
        *p++ = '/';
        p = ngx_cpymem(p, id->data, id->len);
        url->len = p - url->data;

        return NGX_OK;
    }

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
    host = cscf->server_name;

    if (host.len == 0 || ngx_strlchr(host.data, host.data + host.len, '*')
        || host.data[0] == '~' || host.data[0] == '.')
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: no public URL for peers: set "
                      "\"actingweb_base_url\" or a plain \"server_name\"");
        return NGX_DECLINED;
    }

    if (ngx_connection_local_sockaddr(r->connection, NULL, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    port = ngx_inet_get_port(r->connection->local_sockaddr);

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
        dflt = 443;
    } else
#endif
    {
        ngx_str_set(&scheme, "http://");
        dflt = 80;
    }

    len = scheme.len + host.len + sizeof(":65535") - 1 + alcf->prefix.len
          + 1 + id->len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    url->data = p;
    p = ngx_cpymem(p, scheme.data, scheme.len);
    p = ngx_cpymem(p, host.data, host.len);

    if (port != dflt) {
        p = ngx_sprintf(p, ":%ui", port);
    }

    p = ngx_cpymem(p, alcf->prefix.data, alcf->prefix.len);

    if (p[-1] != '/') {
        *p++ = '/';
    }

    p = ngx_cpymem(p, id->data, id->len);
    url->len = p - url->data;

    return NGX_OK;
}


/* actingweb_peer_allow / actingweb_peer_deny CIDR | all */

char *
ngx_http_actingweb_peer_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_int_t                        rc;
    ngx_str_t                       *value;
    ngx_http_actingweb_peer_rule_t  *rule;

    value = cf->args->elts;

    if (alcf->peer_rules == NULL || alcf->peer_rules == NGX_CONF_UNSET_PTR) {
        alcf->peer_rules = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_actingweb_peer_rule_t));
        if (alcf->peer_rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(alcf->peer_rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_actingweb_peer_rule_t));

    rule->deny = (value[0].data[15] == 'd');     /* actingweb_peer_deny */

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "all", 3) == 0) {
        rule->all = 1;
        return NGX_CONF_OK;
    }

    rc = ngx_ptocidr(&value[1], &rule->cidr);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address or network \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "low address bits of %V are meaningless",
                           &value[1]);
    }

    return NGX_CONF_OK;
}


/*
 * Calls to host names connect to the checked address only when some peer
 * location sends $actingweb_peer_host as Host: before, the peer would be
 * named by its address (virtual hosts break).  Configs written before it
 * keep connecting by name, re-resolved by proxy_pass, with a warning.
 */

ngx_int_t
ngx_http_actingweb_peer_pin_init(ngx_conf_t *cf)
{
    ngx_uint_t                       i, url;
    ngx_http_variable_t             *v;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_actingweb_module);

    /* the variables some directive uses, lowercase */

    v = cmcf->variables.elts;
    url = 0;

    for (i = 0; i < cmcf->variables.nelts; i++) {
        if (v[i].name.len == sizeof("actingweb_peer_url") - 1
            && ngx_strncmp(v[i].name.data, "actingweb_peer_url",
                           v[i].name.len) == 0)
        {
            url = 1;

        } else if (v[i].name.len == sizeof("actingweb_peer_host") - 1
                   && ngx_strncmp(v[i].name.data, "actingweb_peer_host",
                                  v[i].name.len) == 0)
        {
            amcf->peer_pin = 1;
        }
    }

    if (url && !amcf->peer_pin) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "actingweb: no peer location sends "
                           "\"proxy_set_header Host $actingweb_peer_host\": "
                           "peer host names are resolved again by proxy_pass "
                           "after their check (open to DNS rebinding)");
    }

    return NGX_OK;
}


/* rules are inherited as a whole; "allow all" first skips name lookups */

ngx_int_t
ngx_http_actingweb_peer_rules_merge(ngx_conf_t *cf,
    ngx_http_actingweb_loc_conf_t *prev, ngx_http_actingweb_loc_conf_t *conf)
{
    ngx_uint_t                       i;
    ngx_str_t                        s;
    ngx_http_actingweb_peer_rule_t  *rule;
    ngx_http_actingweb_main_conf_t  *amcf;

    ngx_conf_merge_ptr_value(conf->peer_rules, prev->peer_rules, NULL);

    conf->peer_open = 0;

    if (conf->peer_rules) {
        rule = conf->peer_rules->elts;
        conf->peer_open = (rule[0].all && !rule[0].deny);
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_actingweb_module);

    if (amcf->peer_special) {
        return NGX_OK;
    }

    amcf->peer_special = ngx_array_create(cf->pool, 16,
                                       sizeof(ngx_http_actingweb_peer_rule_t));
    if (amcf->peer_special == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; ngx_http_actingweb_peer_special[i]; i++) {
        rule = ngx_array_push(amcf->peer_special);
        if (rule == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(rule, sizeof(ngx_http_actingweb_peer_rule_t));
        rule->deny = 1;

        s.data = (u_char *) ngx_http_actingweb_peer_special[i];
        s.len = ngx_strlen(s.data);

        if (ngx_ptocidr(&s, &rule->cidr) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
