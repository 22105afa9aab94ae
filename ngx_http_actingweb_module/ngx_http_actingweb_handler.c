
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Content handler: splits <factory>/<actor id>/<endpoint>/..., applies the
 * method override, reads the body and hands the request to the access
 * step (access.c), which runs the endpoint once the request is allowed:
 * handler -> access -> endpoint -> Redis / peer -> response.
 *
 * Convention: an endpoint returns NGX_DONE when it went asynchronous (it
 * then calls ngx_http_finalize_request() itself, exactly once), or the
 * result of sending a response, which is finalized here.
 */


#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"


/* one entry per ngx_http_actingweb_endpoint_e, in its order */

typedef struct {
    ngx_str_t                        name;       /* segment after the id */
    ngx_uint_t                       methods;
    const char                      *allow;
    ngx_http_actingweb_access_e      access;     /* for every method but */
    ngx_uint_t                       open;       /* these: ACCESS_PUBLIC */
    ngx_http_actingweb_plan_pt       plan;       /* NULL: LOAD_ACTOR */
    ngx_http_actingweb_step_pt       handler;
} ngx_http_actingweb_route_t;


static ngx_int_t ngx_http_actingweb_parse_path(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err);
static ngx_int_t ngx_http_actingweb_split(ngx_http_request_t *r,
    ngx_str_t *path, ngx_uint_t raw, ngx_array_t *segs);
static ngx_int_t ngx_http_actingweb_method(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err);
static ngx_int_t ngx_http_actingweb_allowed(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err);
static void ngx_http_actingweb_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_join_body(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx);
static ngx_int_t ngx_http_actingweb_dispatch(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_not_allowed(ngx_http_request_t *r,
    const char *allow, const char **err);


static ngx_http_actingweb_route_t  ngx_http_actingweb_routes[] = {

    /* NGX_HTTP_ACTINGWEB_EP_FACTORY */
    { ngx_null_string, NGX_HTTP_POST, "POST",
      NGX_HTTP_ACTINGWEB_ACCESS_NONE, 0, NULL,
      ngx_http_actingweb_factory },

    /* NGX_HTTP_ACTINGWEB_EP_ROOT */
    { ngx_null_string, NGX_HTTP_GET|NGX_HTTP_DELETE, "GET, HEAD, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_CREATOR, 0, NULL,
      ngx_http_actingweb_actor },

    /* NGX_HTTP_ACTINGWEB_EP_META */
    { ngx_string("meta"), NGX_HTTP_GET, "GET, HEAD",
      NGX_HTTP_ACTINGWEB_ACCESS_PUBLIC, 0, ngx_http_actingweb_meta_plan,
      ngx_http_actingweb_meta },

    /* NGX_HTTP_ACTINGWEB_EP_PROPERTIES */
    { ngx_string("properties"),
      NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, PUT, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_PEER, 0,
      ngx_http_actingweb_properties_plan, ngx_http_actingweb_properties },

    /* NGX_HTTP_ACTINGWEB_EP_TRUST: access per path, see trust_plan */
    { ngx_string("trust"),
      NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, PUT, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_PEER, 0, ngx_http_actingweb_trust_plan,
      ngx_http_actingweb_trust },

    /* NGX_HTTP_ACTINGWEB_EP_PEERINFO: a peer's /meta (peerops.c) */
    { ngx_string("peerinfo"), NGX_HTTP_GET, "GET, HEAD",
      NGX_HTTP_ACTINGWEB_ACCESS_CREATOR, 0, NULL,
      ngx_http_actingweb_peerinfo },

    /* NGX_HTTP_ACTINGWEB_EP_AWPROXY: a call on a peer's resource */
    { ngx_string("awproxy"),
      NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, PUT, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_CREATOR, 0, NULL,
      ngx_http_actingweb_awproxy },

    /* NGX_HTTP_ACTINGWEB_EP_FANOUT: one call to every peer at once */
    { ngx_string("fanout"), NGX_HTTP_POST, "POST",
      NGX_HTTP_ACTINGWEB_ACCESS_CREATOR, 0, NULL,
      ngx_http_actingweb_fanout },

    /* NGX_HTTP_ACTINGWEB_EP_PERMISSIONS: a peer's own permissions */
    { ngx_string("permissions"), NGX_HTTP_GET, "GET, HEAD",
      NGX_HTTP_ACTINGWEB_ACCESS_PEER, 0, NULL,
      ngx_http_actingweb_permissions },

    /* NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS: the publisher side */
    { ngx_string("subscriptions"),
      NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, PUT, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_PEER, 0, NULL,
      ngx_http_actingweb_subscriptions },

    /* NGX_HTTP_ACTINGWEB_EP_CALLBACKS: the subscriber side */
    { ngx_string("callbacks"), NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_PEER, 0, NULL,
      ngx_http_actingweb_callbacks },

    /* NGX_HTTP_ACTINGWEB_EP_DEVTEST: configuration switches it on; access
       per path, see devtest_plan */
    { ngx_string("devtest"),
      NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE,
      "GET, HEAD, PUT, POST, DELETE",
      NGX_HTTP_ACTINGWEB_ACCESS_CREATOR, 0, ngx_http_actingweb_devtest_plan,
      ngx_http_actingweb_devtest },

    /* NGX_HTTP_ACTINGWEB_EP_OTHER */
    { ngx_null_string, 0, NULL, NGX_HTTP_ACTINGWEB_ACCESS_NONE, 0, NULL,
      NULL }
};


ngx_int_t
ngx_http_actingweb_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    const char                      *err;
    ngx_http_actingweb_ctx_t        *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_actingweb_module);
    ngx_http_actingweb_log_actor(r);

    err = NULL;
    rc = ngx_http_actingweb_parse_path(r, ctx, &err);

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, rc, err);
    }

    rc = ngx_http_actingweb_method(r, ctx, &err);

    if (rc == NGX_OK) {
        rc = ngx_http_actingweb_allowed(r, ctx, &err);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_actingweb_cross_site(r, ctx, &err);
    }

    if (rc == NGX_OK
        && (ctx->endpoint >= NGX_HTTP_ACTINGWEB_EP_TRUST
            || (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_ROOT
                && ctx->method == NGX_HTTP_DELETE)))
    {
        /* endpoints that call peers: their deadline starts now */
        rc = ngx_http_actingweb_peer_deadline(r, ctx, &err);
    }

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, rc, err);
    }

    if ((ctx->method & (NGX_HTTP_POST|NGX_HTTP_PUT))
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        /* too large a Content-Length was refused before (JSON filter) */

        r->request_body_in_single_buf = 1;
        r->request_body_in_clean_file = 1;

        rc = ngx_http_read_client_request_body(r,
                                           ngx_http_actingweb_body_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            /*
             * nginx's own error response closes the connection when the
             * body was left unread (the JSON filter rewrites the page);
             * answering here with keepalive on would run the rest of a
             * malformed body as the next request
             */
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    r->main->count++;

    rc = ngx_http_actingweb_dispatch(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    return NGX_DONE;
}


static void
ngx_http_actingweb_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    rc = ngx_http_actingweb_join_body(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_actingweb_dispatch(r);

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* one contiguous copy, also of a body nginx spilled to a temp file */

static ngx_int_t
ngx_http_actingweb_join_body(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->body.data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    ctx->body.len = p - ctx->body.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_dispatch(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t     *ctx;
    ngx_http_actingweb_route_t   *route;
    ngx_http_actingweb_access_e   access;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb dispatch endpoint:%d actor:\"%V\" segs:%ui",
                   ctx->endpoint, &ctx->actor_id, ctx->nsegs);

    /* allowed() let only routes with a handler through */

    route = &ngx_http_actingweb_routes[ctx->endpoint];

    access = (ctx->method & route->open) ? NGX_HTTP_ACTINGWEB_ACCESS_PUBLIC
                                         : route->access;

    return ngx_http_actingweb_access(r, access, route->plan, route->handler);
}


/* methods each endpoint takes; anything else is 405 with Allow */

static ngx_int_t
ngx_http_actingweb_allowed(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err)
{
    ngx_http_actingweb_route_t     *route;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    route = &ngx_http_actingweb_routes[ctx->endpoint];

    if (route->handler == NULL
        || (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_DEVTEST && !alcf->devtest))
    {
        *err = "endpoint not supported";
        return NGX_HTTP_NOT_FOUND;
    }

    if (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_FACTORY
        && ctx->method == NGX_HTTP_GET)
    {
        *err = "no factory page here; POST to create an actor";
        return NGX_HTTP_NOT_FOUND;
    }

    if (!(ctx->method & route->methods)) {
        return ngx_http_actingweb_not_allowed(r, route->allow, err);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_not_allowed(ngx_http_request_t *r, const char *allow,
    const char **err)
{
    if (ngx_http_actingweb_header(r, "Allow", allow) == NULL) {
        return NGX_ERROR;
    }

    *err = "method not allowed";

    return NGX_HTTP_NOT_ALLOWED;
}


/*
 * The spec requires "_method=<METHOD>" wherever a method other than GET
 * or POST is used (HTML forms cannot send them); POST may also use
 * X-HTTP-Method-Override.  HEAD is served as GET without a body.
 */

static ngx_int_t
ngx_http_actingweb_method(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err)
{
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    ctx->method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_POST))) {
        return NGX_OK;
    }

    value.len = 0;

    if (ngx_http_arg(r, (u_char *) "_method", 7, &value) != NGX_OK) {
        value.len = 0;
    }

    if (value.len == 0 && r->method == NGX_HTTP_POST) {
        h = ngx_http_actingweb_header_in(r, "X-HTTP-Method-Override");
        if (h) {
            value = h->value;
        }
    }

    if (value.len == 0) {
        return NGX_OK;
    }

    /*
     * Only a POST is overridden: a link or an image must not delete or
     * write with the Basic credentials a browser has cached (CSRF).
     */

    if (r->method != NGX_HTTP_POST
        && !(value.len == 3
             && ngx_strncasecmp(value.data, (u_char *) "GET", 3) == 0))
    {
        *err = "method override needs a POST request";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (value.len == 3 && ngx_strncasecmp(value.data, (u_char *) "GET", 3)
                          == 0)
    {
        ctx->method = NGX_HTTP_GET;

    } else if (value.len == 3
               && ngx_strncasecmp(value.data, (u_char *) "PUT", 3) == 0)
    {
        ctx->method = NGX_HTTP_PUT;

    } else if (value.len == 4
               && ngx_strncasecmp(value.data, (u_char *) "POST", 4) == 0)
    {
        ctx->method = NGX_HTTP_POST;

    } else if (value.len == 6
               && ngx_strncasecmp(value.data, (u_char *) "DELETE", 6) == 0)
    {
        ctx->method = NGX_HTTP_DELETE;

    } else {
        *err = "unsupported method override";
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb method override \"%V\" -> %ui",
                   &value, ctx->method);

    return NGX_OK;
}


/*
 * Segments are split on the raw URI and decoded one by one, so that
 * "%2F" inside a name is seen (and refused) instead of silently becoming
 * a path separator, and ".." is refused instead of being resolved.
 */

static ngx_int_t
ngx_http_actingweb_parse_path(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err)
{
    u_char                         *q;
    ngx_int_t                       rc;
    ngx_str_t                       path, *seg, *pre;
    ngx_uint_t                      i, raw, n;
    ngx_array_t                     segs, prefix;
    ngx_http_actingweb_route_t     *rt;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    if (r->valid_unparsed_uri && r == r->main) {
        path = r->unparsed_uri;
        q = ngx_strlchr(path.data, path.data + path.len, '?');
        if (q) {
            path.len = q - path.data;
        }

        raw = 1;

    } else {
        path = r->uri;
        raw = 0;
    }

    if (ngx_array_init(&segs, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&prefix, r->pool, 2, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_actingweb_split(r, &path, raw, &segs);
    if (rc != NGX_OK) {
        *err = "invalid path";
        return rc == NGX_ERROR ? NGX_ERROR : NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_actingweb_split(r, &alcf->prefix, 0, &prefix) != NGX_OK) {
        return NGX_ERROR;
    }

    seg = segs.elts;
    pre = prefix.elts;

    if (segs.nelts < prefix.nelts) {
        *err = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    for (i = 0; i < prefix.nelts; i++) {
        if (seg[i].len != pre[i].len
            || ngx_strncmp(seg[i].data, pre[i].data, pre[i].len) != 0)
        {
            *err = "not found";
            return NGX_HTTP_NOT_FOUND;
        }
    }

    seg += prefix.nelts;
    n = segs.nelts - prefix.nelts;

    if (n > NGX_HTTP_ACTINGWEB_SEGMENTS_MAX) {
        *err = "path has too many segments";
        return NGX_HTTP_BAD_REQUEST;
    }

    for (i = 0; i < n; i++) {
        if (!ngx_http_actingweb_valid_name(&seg[i])) {
            *err = "invalid path segment: names are 1-255 bytes of UTF-8 "
                   "without \"/\" or control characters, and not \".\" "
                   "or \"..\"";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (n == 0) {
        ctx->endpoint = NGX_HTTP_ACTINGWEB_EP_FACTORY;
        return NGX_OK;
    }

    ctx->actor_id = seg[0];

    if (!ngx_http_actingweb_valid_id(&ctx->actor_id)) {
        *err = "actor not found";
        return NGX_HTTP_NOT_FOUND;
    }

    if (n == 1) {
        ctx->endpoint = NGX_HTTP_ACTINGWEB_EP_ROOT;
        return NGX_OK;
    }

    ctx->endpoint = NGX_HTTP_ACTINGWEB_EP_OTHER;

    for (rt = ngx_http_actingweb_routes;
         rt < ngx_http_actingweb_routes + NGX_HTTP_ACTINGWEB_EP_OTHER;
         rt++)
    {
        if (rt->name.len
            && seg[1].len == rt->name.len
            && ngx_strncmp(seg[1].data, rt->name.data, rt->name.len) == 0)
        {
            ctx->endpoint = rt - ngx_http_actingweb_routes;
            break;
        }
    }

    ctx->segs = seg + 2;
    ctx->nsegs = n - 2;

    return NGX_OK;
}


/* empty segments ("//", trailing "/") are skipped */

static ngx_int_t
ngx_http_actingweb_split(ngx_http_request_t *r, ngx_str_t *path,
    ngx_uint_t raw, ngx_array_t *segs)
{
    u_char     *p, *last, *slash;
    ngx_str_t  *seg;

    p = path->data;
    last = p + path->len;

    while (p < last) {
        slash = ngx_strlchr(p, last, '/');
        if (slash == NULL) {
            slash = last;
        }

        if (slash > p) {
            if (segs->nelts > 4 * NGX_HTTP_ACTINGWEB_SEGMENTS_MAX) {
                return NGX_DECLINED;
            }

            seg = ngx_array_push(segs);
            if (seg == NULL) {
                return NGX_ERROR;
            }

            if (raw) {
                switch (ngx_http_actingweb_unescape(r->pool, p, slash - p,
                                                    seg, 0))
                {
                case NGX_OK:
                    break;
                case NGX_DECLINED:
                    return NGX_DECLINED;
                default:
                    return NGX_ERROR;
                }

            } else {
                /* segments are NUL-terminated in both cases */
                seg->len = slash - p;
                seg->data = ngx_pnalloc(r->pool, seg->len + 1);
                if (seg->data == NULL) {
                    return NGX_ERROR;
                }

                ngx_memcpy(seg->data, p, seg->len);
                seg->data[seg->len] = '\0';
            }
        }

        p = slash + 1;
    }

    return NGX_OK;
}


/* <factory URL>[/<id>]: actingweb_base_url, or scheme://Host/prefix */

ngx_int_t
ngx_http_actingweb_actor_url(ngx_http_request_t *r, ngx_str_t *id,
    ngx_str_t *url)
{
    u_char                         *p;
    size_t                          len;
    ngx_str_t                       scheme, host;
    ngx_http_core_srv_conf_t       *cscf;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    ngx_str_null(&scheme);
    ngx_str_null(&host);

    if (alcf->base_url.len == 0) {
#if (NGX_HTTP_SSL)
        if (r->connection->ssl) {
            ngx_str_set(&scheme, "https://");
        } else
#endif
        {
            ngx_str_set(&scheme, "http://");
        }

        if (r->headers_in.host) {
            host = r->headers_in.host->value;

        } else {
            cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
            host = cscf->server_name;
        }
    }

    len = alcf->base_url.len + scheme.len + host.len + alcf->prefix.len
          + 1 + (id ? id->len : 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    url->data = p;

    if (alcf->base_url.len) {
        p = ngx_cpymem(p, alcf->base_url.data, alcf->base_url.len);

    } else {
        p = ngx_cpymem(p, scheme.data, scheme.len);
        p = ngx_cpymem(p, host.data, host.len);
        p = ngx_cpymem(p, alcf->prefix.data, alcf->prefix.len);
    }

    if (id) {
        *p++ = '/';
        p = ngx_cpymem(p, id->data, id->len);
    }

    url->len = p - url->data;

    return NGX_OK;
}
