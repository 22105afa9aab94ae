
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * cJSON glue: request bodies in, JSON and text responses out, JSON errors,
 * and a header/body filter that replaces nginx's own HTML error pages with
 * JSON for requests handled by this module (413 from a chunked body, 500
 * from a failed allocation...).
 */


#include "ngx_http_actingweb_module.h"


static void ngx_http_actingweb_json_cleanup(void *data);
static ngx_int_t ngx_http_actingweb_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_http_actingweb_before_location(ngx_http_request_t *r,
    ngx_http_actingweb_loc_conf_t *alcf);
static ngx_int_t ngx_http_actingweb_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_actingweb_error_json(ngx_http_request_t *r,
    ngx_uint_t status, const char *message, ngx_str_t *out);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_str_t  ngx_http_actingweb_json_type =
    ngx_string("application/json");


ngx_int_t
ngx_http_actingweb_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len)
{
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_chain_t                      out;
    ngx_http_actingweb_ctx_t        *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    if (ctx) {
        if (ctx->worker) {
            /* outbox.c's worker request has no client to answer */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "actingweb: an answer (%ui) on a worker request",
                          status);
            return NGX_ERROR;
        }

        ctx->responded = 1;
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        (void) ngx_http_actingweb_log_event(NGX_HTTP_ACTINGWEB_EV_503);
    }

    r->headers_out.status = status;

    if (len == 0) {
        r->header_only = 1;
        r->headers_out.content_length_n = 0;

        if (status == NGX_HTTP_NO_CONTENT) {
            r->headers_out.content_length_n = -1;
        }

        return ngx_http_send_header(r);
    }

    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_actingweb_send_json(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *json)
{
    ngx_str_t  out;

    if (ngx_http_actingweb_json_print(r, json, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_send(r, status, &ngx_http_actingweb_json_type,
                                   out.data, out.len);
}


ngx_int_t
ngx_http_actingweb_send_no_content(ngx_http_request_t *r)
{
    return ngx_http_actingweb_send(r, NGX_HTTP_NO_CONTENT, NULL, NULL, 0);
}


ngx_int_t
ngx_http_actingweb_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_str_t  out;

    if (ngx_http_actingweb_error_json(r, status, message, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the body of a failed request is not worth reading */

    if (r == r->main && !r->discard_body && r->request_body == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
    }

    if (status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        r->keepalive = 0;
    }

    return ngx_http_actingweb_send(r, status, &ngx_http_actingweb_json_type,
                                   out.data, out.len);
}


static ngx_int_t
ngx_http_actingweb_error_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *message, ngx_str_t *out)
{
    cJSON  *json, *err;

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_ERROR;
    }

    err = cJSON_AddObjectToObject(json, "error");

    if (err == NULL
        || cJSON_AddNumberToObject(err, "code", (double) status) == NULL
        || cJSON_AddStringToObject(err, "message", message) == NULL
        || ngx_http_actingweb_json_print(r, json, out) != NGX_OK)
    {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    cJSON_Delete(json);

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_json_print(ngx_http_request_t *r, cJSON *json,
    ngx_str_t *out)
{
    char    *s;
    size_t   len;

    s = cJSON_PrintUnformatted(json);
    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, len);
    out->len = len;

    cJSON_free(s);

    return NGX_OK;
}


/*
 * Parses a (not NUL-terminated) body; the tree is freed with the request
 * pool.  Returns NULL with *err set for input that is not strict RFC 8259
 * JSON in UTF-8 or is nested too deeply (ngx_http_actingweb_json_valid).
 */

cJSON *
ngx_http_actingweb_json_parse(ngx_http_request_t *r, u_char *data, size_t len,
    const char **err)
{
    cJSON               *json;
    ngx_pool_cleanup_t  *cln;

    if (len == 0) {
        *err = "empty body";
        return NULL;
    }

    if (ngx_http_actingweb_json_valid(data, len, err) != NGX_OK) {

        /* the clearer reason, whatever the JSON error it ran into first */

        if (!ngx_http_actingweb_utf8_valid(data, len)) {
            *err = "body is not valid UTF-8";
        }

        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        *err = "out of memory";
        return NULL;
    }

    json = cJSON_ParseWithLength((const char *) data, len);
    if (json == NULL) {
        *err = "malformed JSON";
        return NULL;
    }

    cln->handler = ngx_http_actingweb_json_cleanup;
    cln->data = json;

    return json;
}


/* ties a tree built in C to the request pool */

ngx_int_t
ngx_http_actingweb_json_guard(ngx_http_request_t *r, cJSON *json)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_actingweb_json_cleanup;
    cln->data = json;

    return NGX_OK;
}


static void
ngx_http_actingweb_json_cleanup(void *data)
{
    cJSON_Delete(data);
}


/*
 * Frees the trees tied to the pool since mark (its cleanup list's head
 * then), before the pool goes: a long-lived request's pool would hold
 * them all.  Nothing may use them after this.
 */

void
ngx_http_actingweb_json_release(ngx_pool_t *pool, ngx_pool_cleanup_t *mark)
{
    ngx_pool_cleanup_t  *c;

    for (c = pool->cleanup; c && c != mark; c = c->next) {
        if (c->handler == ngx_http_actingweb_json_cleanup) {
            cJSON_Delete(c->data);
            c->handler = NULL;
        }
    }
}


ngx_table_elt_t *
ngx_http_actingweb_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = value ? ngx_strlen(value) : 0;

    return h;
}


ngx_int_t
ngx_http_actingweb_set_location(ngx_http_request_t *r, ngx_str_t *url)
{
    ngx_table_elt_t  *h;

    h = ngx_http_actingweb_header(r, "Location", NULL);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value = *url;
    r->headers_out.location = h;

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_actingweb_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_actingweb_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_header_filter(ngx_http_request_t *r)
{
    const char                     *msg;
    ngx_uint_t                      status;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_loc_conf_t  *alcf;

    if (r != r->main || r->headers_out.status < 400) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx == NULL) {
        /* nginx may refuse a request before our handler runs (413) */

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
        if (alcf == NULL
            || (alcf->enable != 1
                && !ngx_http_actingweb_before_location(r, alcf)))
        {
            return ngx_http_next_header_filter(r);
        }

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_ctx_t));
        if (ctx == NULL) {
            return ngx_http_next_header_filter(r);
        }

        ngx_http_set_ctx(r, ctx, ngx_http_actingweb_module);
    }

    if (ctx->responded) {
        return ngx_http_next_header_filter(r);
    }

    /* nginx is sending an error page of its own for an actor request */

    status = r->headers_out.status;

    switch (status) {
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        msg = "request body too large";
        break;
    case NGX_HTTP_REQUEST_TIME_OUT:
        msg = "request body not received in time";
        break;
    case NGX_HTTP_BAD_REQUEST:
        msg = "malformed request";
        break;
    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        msg = "request URI too long";
        break;
    default:
        msg = status >= 500 ? "internal error" : "request failed";
        break;
    }

    if (ngx_http_actingweb_error_json(r, status, msg, &ctx->error_json)
        != NGX_OK)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx->error_body = 1;

    r->headers_out.content_type = ngx_http_actingweb_json_type;
    r->headers_out.content_type_len = ngx_http_actingweb_json_type.len;
    r->headers_out.content_length_n = ctx->error_json.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


/*
 * actingweb_error_json: a request nginx refused while reading its request
 * line or headers never reached a location; it still has the server's
 * own configuration
 */

static ngx_uint_t
ngx_http_actingweb_before_location(ngx_http_request_t *r,
    ngx_http_actingweb_loc_conf_t *alcf)
{
    ngx_http_core_srv_conf_t  *cscf;

    if (alcf->error_json != 1) {
        return 0;
    }

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    return r->loc_conf == cscf->ctx->loc_conf;
}


static ngx_int_t
ngx_http_actingweb_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    ngx_http_actingweb_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx == NULL || !ctx->error_body) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's HTML, send the JSON once; flushes must go on */

    if (in == NULL) {
        return ngx_http_next_body_filter(r, NULL);
    }

    if (ctx->error_sent) {
        return NGX_OK;
    }

    ctx->error_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error_json.data;
    b->last = ctx->error_json.data + ctx->error_json.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* obj[name] = copy of an ngx_str_t (cJSON wants NUL-terminated input) */

ngx_int_t
ngx_http_actingweb_json_add_str(ngx_http_request_t *r, cJSON *obj,
    const char *name, ngx_str_t *value)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, value->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, value->data, value->len);
    p[value->len] = '\0';

    return cJSON_AddStringToObject(obj, name, (char *) p) ? NGX_OK
                                                          : NGX_ERROR;
}


/* a string member as an ngx_str_t into the tree: NGX_OK, or NGX_DECLINED */

ngx_int_t
ngx_http_actingweb_json_str(cJSON *obj, const char *name, ngx_str_t *out)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!cJSON_IsString(item)) {
        return NGX_DECLINED;
    }

    out->data = (u_char *) item->valuestring;
    out->len = ngx_strlen(out->data);

    return NGX_OK;
}
