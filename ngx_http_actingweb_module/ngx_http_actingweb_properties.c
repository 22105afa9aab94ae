
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * /properties: GET (all, one, nested), PUT (one, nested deep-merge),
 * POST (collections, all-or-nothing), DELETE (all, one, nested).
 *
 * Values are stored with a one-byte tag so that what was written comes
 * back the same way: "t" + raw text, or "j" + JSON.  Writes run as Lua
 * scripts that also append the change event (see scripts.c).  Nested
 * writes read the value, change it in C, and store it with a check-and-set
 * script; a concurrent change makes them start over, so no write is lost.
 * Each attempt's copies of the value live in a pool of their own, freed
 * when the attempt ends: a request holds one attempt's worth at most.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_CAS_RETRIES   64


static ngx_http_actingweb_redis_args_t *ngx_http_actingweb_prop_read_args(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_prop_read(ngx_http_request_t *r);
static void ngx_http_actingweb_prop_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_prop_pair(ngx_http_request_t *r,
    redisReply *all, size_t i,
    redisReply **k, redisReply **s);
static ngx_int_t ngx_http_actingweb_prop_get_all(ngx_http_request_t *r,
    redisReply *all);
static ngx_int_t ngx_http_actingweb_prop_get(ngx_http_request_t *r,
    ngx_str_t *stored);
static ngx_int_t ngx_http_actingweb_prop_put(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_prop_nested(ngx_http_request_t *r,
    ngx_str_t *stored, ngx_uint_t had);
static ngx_int_t ngx_http_actingweb_prop_delete(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_prop_post(ngx_http_request_t *r);
static void ngx_http_actingweb_prop_written(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_prop_body(ngx_http_request_t *r,
    cJSON **value, ngx_str_t *stored, const char **err);
static ngx_uint_t ngx_http_actingweb_prop_looks_json(ngx_str_t *body);
static ngx_int_t ngx_http_actingweb_prop_store(ngx_pool_t *pool,
    cJSON *value, u_char tag, ngx_str_t *stored);
static ngx_int_t ngx_http_actingweb_prop_tag(ngx_pool_t *pool, u_char tag,
    u_char *data, size_t len, ngx_str_t *stored);
static ngx_int_t ngx_http_actingweb_prop_fits(ngx_http_request_t *r,
    ngx_str_t *stored);
static ngx_pool_t *ngx_http_actingweb_prop_attempt(ngx_http_request_t *r);
static void ngx_http_actingweb_prop_release(ngx_http_actingweb_ctx_t *ctx);
static void ngx_http_actingweb_prop_cleanup(void *data);
static cJSON *ngx_http_actingweb_prop_decode(ngx_http_request_t *r,
    u_char *data, size_t len);
static cJSON *ngx_http_actingweb_prop_walk(cJSON *node, ngx_str_t *segs,
    ngx_uint_t n);
static void ngx_http_actingweb_prop_merge(cJSON *into, cJSON *from);
static ngx_int_t ngx_http_actingweb_prop_path(ngx_http_request_t *r,
    ngx_pool_t *pool, ngx_uint_t n, ngx_str_t *out);
static ngx_int_t ngx_http_actingweb_prop_keys(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a);
static ngx_int_t ngx_http_actingweb_prop_send_value(ngx_http_request_t *r,
    cJSON *value);
static int ngx_http_actingweb_prop_cmp(const void *a, const void *b);


static ngx_str_t  ngx_http_actingweb_json_type = ngx_string("application/json");
static ngx_str_t  ngx_http_actingweb_text_type =
    ngx_string("text/plain; charset=utf-8");


/*
 * Reads go out together with the actor read (one round trip, no Lua);
 * plain writes and deletes may skip the actor read (the script checks the
 * credentials); nested writes read the value first like a GET.
 */

ngx_int_t
ngx_http_actingweb_properties_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    switch (ctx->method) {

    case NGX_HTTP_GET:
        break;

    case NGX_HTTP_PUT:
        if (ctx->nsegs == 0) {
            plan->load = NGX_HTTP_ACTINGWEB_LOAD_NONE;
            return NGX_OK;
        }

        if (ctx->nsegs == 1) {
            plan->load = NGX_HTTP_ACTINGWEB_LOAD_WRITE;
            return NGX_OK;
        }

        break;

    case NGX_HTTP_DELETE:
        if (ctx->nsegs <= 1) {
            plan->load = NGX_HTTP_ACTINGWEB_LOAD_WRITE;
            return NGX_OK;
        }

        break;

    default: /* POST */
        plan->load = ctx->nsegs == 0 ? NGX_HTTP_ACTINGWEB_LOAD_WRITE
                                     : NGX_HTTP_ACTINGWEB_LOAD_NONE;
        return NGX_OK;
    }

    plan->args = ngx_http_actingweb_prop_read_args(r);
    if (plan->args == NULL) {
        return NGX_ERROR;
    }

    plan->load = NGX_HTTP_ACTINGWEB_LOAD_PIPELINE;
    plan->handler = ngx_http_actingweb_prop_got;

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_properties(ngx_http_request_t *r)
{
    ngx_table_elt_t           *h;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    switch (ctx->method) {

    case NGX_HTTP_GET:
        return ngx_http_actingweb_prop_read(r);

    case NGX_HTTP_PUT:
        if (ctx->nsegs == 0) {
            break;
        }

        if (ctx->nsegs == 1) {
            return ngx_http_actingweb_prop_put(r);
        }

        return ngx_http_actingweb_prop_read(r);

    case NGX_HTTP_DELETE:
        if (ctx->nsegs <= 1) {
            return ngx_http_actingweb_prop_delete(r);
        }

        return ngx_http_actingweb_prop_read(r);

    default: /* POST */
        if (ctx->nsegs == 0) {
            return ngx_http_actingweb_prop_post(r);
        }

        break;
    }

    h = ngx_http_actingweb_header(r, "Allow", ctx->nsegs == 0
                                             ? "GET, HEAD, POST, DELETE"
                                             : "GET, HEAD, PUT, DELETE");
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->nsegs == 0) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "PUT needs a property name");
    }

    return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "POST is only accepted on "
                                         "/properties");
}


/* the value (or all of them); alone, or pipelined by access.c */

static ngx_http_actingweb_redis_args_t *
ngx_http_actingweb_prop_read_args(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a,
                                        (u_char *) (ctx->nsegs ? "HGET"
                                                               : "HGETALL"),
                                        ctx->nsegs ? 4 : 7)
           != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "props", NULL) != NGX_OK
        || (ctx->nsegs
            && ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                            ctx->segs[0].len) != NGX_OK))
    {
        return NULL;
    }

    return a;
}


static ngx_int_t
ngx_http_actingweb_prop_read(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_prop_read_args(r);
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_command(r, a, ngx_http_actingweb_prop_got);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_prop_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_str_t                  stored;
    ngx_pool_t                *pool;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (ctx->nsegs == 0) {
        rc = ngx_http_actingweb_prop_get_all(r, reply);
        goto done;
    }

    /* a nested write may be one of many attempts: copy into its pool */

    pool = ctx->method == NGX_HTTP_GET ? r->pool
                                       : ngx_http_actingweb_prop_attempt(r);

    if (pool == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_str_null(&stored);

    } else if (ngx_http_actingweb_prop_tag(pool, 0, (u_char *) reply->str,
                                           reply->len, &stored)
               != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (ctx->method == NGX_HTTP_GET) {
        rc = stored.len ? ngx_http_actingweb_prop_get(r, &stored)
                        : ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                                    "property not found");
        goto done;
    }

    rc = ngx_http_actingweb_prop_nested(r, &stored, stored.len != 0);

    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_actingweb_prop_release(ctx);

done:

    ngx_http_finalize_request(r, rc);
}


/* name and stored value at i of an HGETALL reply; 0: not usable */

static ngx_int_t
ngx_http_actingweb_prop_pair(ngx_http_request_t *r, redisReply *all,
    size_t i, redisReply **k, redisReply **s)
{
    ngx_http_actingweb_ctx_t  *ctx;

    *k = all->element[i];
    *s = all->element[i + 1];

    if ((*k)->type != REDIS_REPLY_STRING
        || (*s)->type != REDIS_REPLY_STRING || (*s)->len == 0)
    {
        return 0;
    }

    /* a peer sees only what its trust's permissions let it read */

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    return ctx->peer == NULL
           || ngx_http_actingweb_perm_check(r, ctx->peer, (*k)->str, "read")
              != NGX_DECLINED;
}


/*
 * All properties as one JSON object, assembled as text: stored JSON goes
 * in as it was written (no re-printing), text values as JSON strings.
 */

static ngx_int_t
ngx_http_actingweb_prop_get_all(ngx_http_request_t *r, redisReply *all)
{
    u_char      *buf, *p, *v;
    size_t       len, i, vlen;
    ngx_uint_t   first;
    redisReply  *k, *s;

    if (all->type != REDIS_REPLY_ARRAY) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{}") - 1;

    for (i = 0; i + 1 < all->elements; i += 2) {
        if (!ngx_http_actingweb_prop_pair(r, all, i, &k, &s)) {
            continue;
        }

        v = (u_char *) s->str + 1;
        vlen = s->len - 1;

        len += sizeof("\"\":,") - 1 + k->len
               + ngx_escape_json(NULL, (u_char *) k->str, k->len) + vlen;

        if (s->str[0] != 'j') {
            len += sizeof("\"\"") - 1 + ngx_escape_json(NULL, v, vlen);
        }
    }

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = buf;
    *p++ = '{';
    first = 1;

    for (i = 0; i + 1 < all->elements; i += 2) {
        if (!ngx_http_actingweb_prop_pair(r, all, i, &k, &s)) {
            continue;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;

        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, (u_char *) k->str, k->len);
        *p++ = '"';
        *p++ = ':';

        v = (u_char *) s->str + 1;
        vlen = s->len - 1;

        if (s->str[0] == 'j') {
            p = ngx_cpymem(p, v, vlen);

        } else {
            *p++ = '"';
            p = (u_char *) ngx_escape_json(p, v, vlen);
            *p++ = '"';
        }
    }

    *p++ = '}';

    return ngx_http_actingweb_send(r, NGX_HTTP_OK,
                                   &ngx_http_actingweb_json_type,
                                   buf, p - buf);
}


static ngx_int_t
ngx_http_actingweb_prop_get(ngx_http_request_t *r, ngx_str_t *stored)
{
    cJSON                     *root, *node;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs == 1) {
        /* the stored bytes as they are: no parsing on the hot path */
        return ngx_http_actingweb_send(r, NGX_HTTP_OK,
                                       stored->data[0] == 't'
                                       ? &ngx_http_actingweb_text_type
                                       : &ngx_http_actingweb_json_type,
                                       stored->data + 1, stored->len - 1);
    }

    if (stored->data[0] != 'j') {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "property not found");
    }

    root = ngx_http_actingweb_prop_decode(r, stored->data, stored->len);
    if (root == NULL || ngx_http_actingweb_json_guard(r, root) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    node = ngx_http_actingweb_prop_walk(root, ctx->segs + 1, ctx->nsegs - 1);
    if (node == NULL) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "property not found");
    }

    return ngx_http_actingweb_prop_send_value(r, node);
}


/* strings go out as text, everything else as JSON */

static ngx_int_t
ngx_http_actingweb_prop_send_value(ngx_http_request_t *r, cJSON *value)
{
    ngx_str_t  out;

    if (cJSON_IsString(value)) {
        return ngx_http_actingweb_send(r, NGX_HTTP_OK,
                                       &ngx_http_actingweb_text_type,
                                       (u_char *) value->valuestring,
                                       ngx_strlen(value->valuestring));
    }

    if (ngx_http_actingweb_json_print(r, value, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_send(r, NGX_HTTP_OK,
                                   &ngx_http_actingweb_json_type,
                                   out.data, out.len);
}


/* PUT /properties/<name>: replaces the value */

static ngx_int_t
ngx_http_actingweb_prop_put(ngx_http_request_t *r)
{
    cJSON                            *value;
    ngx_int_t                         rc;
    ngx_str_t                         stored, path, event;
    const char                       *err;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    rc = ngx_http_actingweb_prop_body(r, &value, &stored, &err);
    if (rc != NGX_OK) {
        return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR
                               : ngx_http_actingweb_send_error(r, rc, err);
    }

    if (!ngx_http_actingweb_prop_fits(r, &stored)) {
        return ngx_http_actingweb_send_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "property value too large");
    }

    a = ngx_http_actingweb_redis_args(r, 8);

    /* a JSON body is already the event's JSON value; text gets quoted */

    if (stored.data[0] == 'j') {
        event.data = stored.data + 1;
        event.len = stored.len - 1;

    } else if (ngx_http_actingweb_json_print(r, value, &event) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (a == NULL
        || ngx_http_actingweb_prop_path(r, r->pool, 1, &path) != NGX_OK
        || ngx_http_actingweb_prop_keys(r, a) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, stored.data, stored.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, path.data, path.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, event.data, event.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_PROP_SET,
                                         a, ngx_http_actingweb_prop_written);

    return ngx_http_actingweb_redis_started(r, rc);
}


/*
 * Nested PUT or DELETE on /properties/<name>/<a>/<b>: change the JSON in
 * C and write it back only if nobody changed it in between.  The body is
 * parsed once per request; each attempt's trees are freed at once and its
 * texts live in the attempt's pool, so retries under contention do not
 * pile up memory.
 */

static ngx_int_t
ngx_http_actingweb_prop_nested(ngx_http_request_t *r, ngx_str_t *stored,
    ngx_uint_t had)
{
    cJSON                            *root, *node, *child, *value, *diff;
    ngx_int_t                         rc;
    ngx_str_t                         next, path, event, *seg;
    ngx_uint_t                        i, n, status;
    ngx_pool_t                       *pool;
    const char                       *err, *op;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    pool = ctx->attempt->data;
    seg = ctx->segs;
    n = ctx->nsegs;
    value = NULL;
    root = NULL;
    diff = NULL;
    status = ctx->method == NGX_HTTP_PUT ? NGX_HTTP_CONFLICT
                                         : NGX_HTTP_NOT_FOUND;

    if (ctx->method == NGX_HTTP_PUT) {
        if (ctx->value == NULL) {
            rc = ngx_http_actingweb_prop_body(r, &value, &next, &err);
            if (rc != NGX_OK) {
                return rc == NGX_ERROR
                       ? NGX_HTTP_INTERNAL_SERVER_ERROR
                       : ngx_http_actingweb_send_error(r, rc, err);
            }

            ctx->value = value;
        }

        value = ctx->value;
    }

    if (had && stored->data[0] != 'j') {
        return ngx_http_actingweb_send_error(r, status,
                                   "property holds text, not a JSON object");
    }

    if (!had && ctx->method != NGX_HTTP_PUT) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "property not found");
    }

    root = had ? ngx_http_actingweb_prop_decode(r, stored->data, stored->len)
               : cJSON_CreateObject();
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!cJSON_IsObject(root)) {
        rc = ngx_http_actingweb_send_error(r, status,
                                           "property is not a JSON object");
        goto done;
    }

    /* walk to the parent of the last name, creating objects for PUT */

    node = root;

    for (i = 1; i + 1 < n; i++) {
        child = cJSON_GetObjectItemCaseSensitive(node, (char *) seg[i].data);

        if (child == NULL && ctx->method == NGX_HTTP_PUT) {
            child = cJSON_AddObjectToObject(node, (char *) seg[i].data);
            if (child == NULL) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }
        }

        if (child == NULL || !cJSON_IsObject(child)) {
            rc = ngx_http_actingweb_send_error(r, status,
                                   child ? "path crosses a value that is "
                                           "not a JSON object"
                                         : "property not found");
            goto done;
        }

        node = child;
    }

    child = cJSON_GetObjectItemCaseSensitive(node, (char *) seg[n - 1].data);

    if (ctx->method == NGX_HTTP_DELETE) {
        if (child == NULL) {
            rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                               "property not found");
            goto done;
        }

        cJSON_DeleteItemFromObjectCaseSensitive(node,
                                                (char *) seg[n - 1].data);
        diff = cJSON_CreateString("");
        op = "delete";

    } else {
        /* the write is the diff, before it is merged into the tree */
        diff = cJSON_Duplicate(value, 1);
        op = "set";

        if (child && cJSON_IsObject(child) && cJSON_IsObject(value)) {
            ngx_http_actingweb_prop_merge(child, value);

        } else if (child) {
            /* ..InObject sets the member name; the body has none */
            cJSON_ReplaceItemInObjectCaseSensitive(node,
                                                   (char *) seg[n - 1].data,
                                                   cJSON_Duplicate(value, 1));

        } else {
            cJSON_AddItemToObject(node, (char *) seg[n - 1].data,
                                  cJSON_Duplicate(value, 1));
        }
    }

    if (diff == NULL
        || ngx_http_actingweb_prop_store(pool, root, 'j', &next) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    /* merges can grow a value past any one body: nothing is written */

    if (ctx->method == NGX_HTTP_PUT
        && !ngx_http_actingweb_prop_fits(r, &next))
    {
        rc = ngx_http_actingweb_send_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "property value too large");
        goto done;
    }

    a = ngx_http_actingweb_redis_args(r, 11);

    if (a == NULL
        || ngx_http_actingweb_prop_path(r, pool, n, &path) != NGX_OK
        || ngx_http_actingweb_prop_store(pool, diff, 0, &event) != NGX_OK
        || ngx_http_actingweb_prop_keys(r, a) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, seg[0].data, seg[0].len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) (had ? "1" : "0"), 1)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, stored->data, stored->len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, next.data, next.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, path.data, path.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) op, ngx_strlen(op))
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, event.data, event.len) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_PROP_CAS,
                                         a, ngx_http_actingweb_prop_written);

    rc = ngx_http_actingweb_redis_started(r, rc);

done:

    /* everything needed was printed into the attempt's pool */

    cJSON_Delete(root);
    cJSON_Delete(diff);

    return rc;
}


/* objects merge recursively; anything else in from replaces */

static void
ngx_http_actingweb_prop_merge(cJSON *into, cJSON *from)
{
    cJSON  *item, *cur;

    for (item = from->child; item; item = item->next) {
        cur = cJSON_GetObjectItemCaseSensitive(into, item->string);

        if (cur && cJSON_IsObject(cur) && cJSON_IsObject(item)) {
            ngx_http_actingweb_prop_merge(cur, item);

        } else if (cur) {
            cJSON_ReplaceItemInObjectCaseSensitive(into, item->string,
                                                   cJSON_Duplicate(item, 1));

        } else {
            cJSON_AddItemToObject(into, item->string,
                                  cJSON_Duplicate(item, 1));
        }
    }
}


static ngx_int_t
ngx_http_actingweb_prop_delete(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         path;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    a = ngx_http_actingweb_redis_args(r, 5);

    if (a == NULL || ngx_http_actingweb_prop_keys(r, a) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->nsegs == 0) {
        rc = ngx_http_actingweb_redis_script(r,
                                      NGX_HTTP_ACTINGWEB_SCRIPT_PROP_DEL_ALL,
                                      a, ngx_http_actingweb_prop_written);

        return ngx_http_actingweb_redis_started(r, rc);
    }

    if (ngx_http_actingweb_prop_path(r, r->pool, 1, &path) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, path.data, path.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_PROP_DEL,
                                         a, ngx_http_actingweb_prop_written);

    return ngx_http_actingweb_redis_started(r, rc);
}


/*
 * POST /properties: a JSON object or a form; every name is checked before
 * anything is written, then all are written by one script.
 */

static ngx_int_t
ngx_http_actingweb_prop_post(ngx_http_request_t *r)
{
    cJSON                            *in, *item;
    ngx_int_t                         rc;
    ngx_str_t                         stored, event, name, *names;
    ngx_uint_t                        n, i;
    const char                       *err;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    err = NULL;
    in = NULL;

    if (ctx->body.len == 0) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "empty body: send a JSON "
                                             "object of properties");
    }

    if (ngx_http_actingweb_is_form(r, &ctx->body)) {
        rc = ngx_http_actingweb_form_parse(r, &ctx->body, &in, &err);
        if (rc != NGX_OK) {
            return rc == NGX_ERROR
                   ? NGX_HTTP_INTERNAL_SERVER_ERROR
                   : ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                   err);
        }

    } else {
        in = ngx_http_actingweb_json_parse(r, ctx->body.data, ctx->body.len,
                                           &err);
        if (in == NULL) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 err);
        }

        if (!cJSON_IsObject(in)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "body must be a JSON "
                                                 "object of properties");
        }
    }

    n = cJSON_GetArraySize(in);

    if (n == 0) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "no properties given");
    }

    names = ngx_palloc(r->pool, n * sizeof(ngx_str_t));
    if (names == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    i = 0;

    for (item = in->child; item; item = item->next) {
        name.data = (u_char *) item->string;
        name.len = ngx_strlen(item->string);

        if (!ngx_http_actingweb_valid_name(&name)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid property name: names are "
                                       "1-255 bytes of UTF-8 without \"/\" "
                                       "or control characters");
        }

        names[i++] = name;
    }

    ngx_qsort(names, n, sizeof(ngx_str_t), ngx_http_actingweb_prop_cmp);

    for (i = 1; i < n; i++) {
        if (names[i].len == names[i - 1].len
            && ngx_memcmp(names[i].data, names[i - 1].data, names[i].len)
               == 0)
        {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "duplicate property name");
        }
    }

    a = ngx_http_actingweb_redis_args(r, 5 + 2 * n);

    if (a == NULL
        || ngx_http_actingweb_prop_keys(r, a) != NGX_OK
        || ngx_http_actingweb_json_print(r, in, &event) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, event.data, event.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* strings are stored as text, as a PUT of plain text would be */

    for (item = in->child; item; item = item->next) {
        if (ngx_http_actingweb_prop_store(r->pool, item,
                                          cJSON_IsString(item) ? 't' : 'j',
                                          &stored)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (!ngx_http_actingweb_prop_fits(r, &stored)) {
            return ngx_http_actingweb_send_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "property value too large");
        }

        if (ngx_http_actingweb_redis_arg(a, (u_char *) item->string,
                                         ngx_strlen(item->string)) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, stored.data, stored.len)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->data = in;

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_PROP_POST,
                                         a, ngx_http_actingweb_prop_written);

    return ngx_http_actingweb_redis_started(r, rc);
}


static int
ngx_http_actingweb_prop_cmp(const void *a, const void *b)
{
    const ngx_str_t  *x = a, *y = b;

    int  rc;

    rc = ngx_memcmp(x->data, y->data, ngx_min(x->len, y->len));

    return rc ? rc : (x->len > y->len) - (x->len < y->len);
}


static void
ngx_http_actingweb_prop_written(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    /* the script has its arguments: a retry starts from a fresh read */

    ngx_http_actingweb_prop_release(ctx);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (reply->integer == 0) {
        /* deleted after we authenticated */
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "actor not found");
        goto done;
    }

    if (reply->integer == -2) {
        rc = ngx_http_actingweb_access_changed(r);
        if (rc == NGX_DONE) {
            return;
        }

        goto done;
    }

    if (reply->integer == -1) {
        if (++ctx->retries < NGX_HTTP_ACTINGWEB_CAS_RETRIES) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "actingweb property changed meanwhile, "
                           "retry %ui", ctx->retries);

            rc = ngx_http_actingweb_prop_read(r);
            if (rc == NGX_DONE) {
                return;
            }

            goto done;
        }

        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                           "property is being changed "
                                           "concurrently, try again");
        goto done;
    }

    if (reply->integer == 2) {
        /* subscribers want callbacks: the outbox takes it from here */
        ngx_http_actingweb_outbox_mark(r);
    }

    if (ctx->method == NGX_HTTP_POST) {
        rc = ngx_http_actingweb_send_json(r, NGX_HTTP_CREATED, ctx->data);

    } else {
        rc = ngx_http_actingweb_send_no_content(r);
    }

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * The body of a PUT as a value: JSON when declared so, text for text types;
 * otherwise JSON when it starts with "{" or "[", else JSON if it is valid
 * JSON and text if not.  JSON must be strict RFC 8259: it is stored as sent.
 */

static ngx_int_t
ngx_http_actingweb_prop_body(ngx_http_request_t *r, cJSON **value,
    ngx_str_t *stored, const char **err)
{
    cJSON                     *json;
    ngx_str_t                  ct;
    ngx_uint_t                 is_json, is_text;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->body.len == 0) {
        *err = "empty body: send the value";
        return NGX_HTTP_BAD_REQUEST;
    }

    is_json = 0;
    is_text = 0;

    if (r->headers_in.content_type) {
        ct = r->headers_in.content_type->value;

        if (ct.len >= 16
            && ngx_strncasecmp(ct.data, (u_char *) "application/json", 16)
               == 0)
        {
            is_json = 1;

        } else if (ngx_strlcasestrn(ct.data, ct.data + ct.len,
                                    (u_char *) "+json", 5 - 1))
        {
            is_json = 1;

        } else if (ct.len >= 5
                   && ngx_strncasecmp(ct.data, (u_char *) "text/", 5) == 0)
        {
            is_text = 1;
        }
    }

    json = NULL;

    if (!is_text) {
        json = ngx_http_actingweb_json_parse(r, ctx->body.data,
                                             ctx->body.len, err);
        if (json == NULL
            && (is_json || ngx_http_actingweb_prop_looks_json(&ctx->body)))
        {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    if (json == NULL) {
        if (!ngx_http_actingweb_utf8_valid(ctx->body.data, ctx->body.len)) {
            *err = "body is not valid UTF-8";
            return NGX_HTTP_BAD_REQUEST;
        }

        if (ngx_strlchr(ctx->body.data, ctx->body.data + ctx->body.len, '\0'))
        {
            *err = "text values cannot contain NUL characters";
            return NGX_HTTP_BAD_REQUEST;
        }

        if (ngx_http_actingweb_prop_tag(r->pool, 't', ctx->body.data,
                                        ctx->body.len, stored)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        *value = cJSON_CreateString((char *) stored->data + 1);
        if (*value == NULL || ngx_http_actingweb_json_guard(r, *value)
                              != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    *value = json;

    /* as sent: re-printing would round numbers beyond 15 digits */

    return ngx_http_actingweb_prop_tag(r->pool, 'j', ctx->body.data,
                                       ctx->body.len, stored);
}


/*
 * An object or array was meant (blanks and a BOM, which cJSON used to skip,
 * do not make it text): storing it as text would hide the client's error.
 */

static ngx_uint_t
ngx_http_actingweb_prop_looks_json(ngx_str_t *body)
{
    u_char  *p, *last;

    p = body->data;
    last = p + body->len;

    if (body->len >= 3 && ngx_strncmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3;
    }

    while (p < last && *p <= ' ') {
        p++;
    }

    return p < last && (*p == '{' || *p == '[');
}


/*
 * "t" + the text of a string, "j" + JSON, or (tag 0) JSON alone; printed
 * straight into the pool, with no second copy in the request pool
 */

static ngx_int_t
ngx_http_actingweb_prop_store(ngx_pool_t *pool, cJSON *value, u_char tag,
    ngx_str_t *stored)
{
    char       *json;
    ngx_int_t   rc;

    if (tag == 't') {
        return ngx_http_actingweb_prop_tag(pool, 't',
                                           (u_char *) value->valuestring,
                                           ngx_strlen(value->valuestring),
                                           stored);
    }

    json = cJSON_PrintUnformatted(value);
    if (json == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_actingweb_prop_tag(pool, tag, (u_char *) json,
                                     ngx_strlen(json), stored);

    cJSON_free(json);

    return rc;
}


/*
 * tag byte (0: none) + value, NUL-terminated (cJSON reads text values as
 * C strings)
 */

static ngx_int_t
ngx_http_actingweb_prop_tag(ngx_pool_t *pool, u_char tag, u_char *data,
    size_t len, ngx_str_t *stored)
{
    size_t  n;

    n = tag ? 1 : 0;

    stored->data = ngx_pnalloc(pool, n + len + 1);
    if (stored->data == NULL) {
        return NGX_ERROR;
    }

    if (tag) {
        stored->data[0] = tag;
    }

    ngx_memcpy(stored->data + n, data, len);
    stored->len = n + len;
    stored->data[stored->len] = '\0';

    return NGX_OK;
}


/* whether a stored value (tag + value) is within actingweb_max_value_size */

static ngx_int_t
ngx_http_actingweb_prop_fits(ngx_http_request_t *r, ngx_str_t *stored)
{
    size_t                          max;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    max = alcf->max_value_size;

    if (max == NGX_CONF_UNSET_SIZE) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        max = (size_t) clcf->client_max_body_size;
    }

    /* 0, as for client_max_body_size: no limit */

    return max == 0 || stored->len - 1 <= max;
}


/* a new pool for this attempt of a nested write, the last one released */

static ngx_pool_t *
ngx_http_actingweb_prop_attempt(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    cln = ctx->attempt;

    if (cln == NULL) {
        /* frees the pool of an attempt the request did not see end */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_http_actingweb_prop_cleanup;
        cln->data = NULL;
        ctx->attempt = cln;
    }

    ngx_http_actingweb_prop_release(ctx);

    cln->data = ngx_create_pool(4096, r->connection->log);

    return cln->data;
}


static void
ngx_http_actingweb_prop_release(ngx_http_actingweb_ctx_t *ctx)
{
    if (ctx->attempt) {
        ngx_http_actingweb_prop_cleanup(ctx->attempt->data);
        ctx->attempt->data = NULL;
    }
}


static void
ngx_http_actingweb_prop_cleanup(void *data)
{
    if (data) {
        ngx_destroy_pool(data);
    }
}


/* a stored value as a cJSON tree (caller owns it) */

static cJSON *
ngx_http_actingweb_prop_decode(ngx_http_request_t *r, u_char *data,
    size_t len)
{
    u_char  *s;
    cJSON   *v;

    if (len && data[0] == 'j') {
        v = cJSON_ParseWithLength((const char *) data + 1, len - 1);
        if (v) {
            return v;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: stored property is not valid JSON");
    }

    s = ngx_pnalloc(r->pool, len);
    if (s == NULL) {
        return NULL;
    }

    if (len) {
        ngx_memcpy(s, data + 1, len - 1);
        s[len - 1] = '\0';

    } else {
        s[0] = '\0';
    }

    return cJSON_CreateString((char *) s);
}


/* objects by member name, arrays by decimal index */

static cJSON *
ngx_http_actingweb_prop_walk(cJSON *node, ngx_str_t *segs, ngx_uint_t n)
{
    ngx_int_t   idx;
    ngx_uint_t  i;

    for (i = 0; i < n && node; i++) {

        if (cJSON_IsObject(node)) {
            node = cJSON_GetObjectItemCaseSensitive(node,
                                                    (char *) segs[i].data);
            continue;
        }

        if (cJSON_IsArray(node)) {
            idx = ngx_atoi(segs[i].data, segs[i].len);
            node = (idx == NGX_ERROR || idx >= cJSON_GetArraySize(node))
                   ? NULL : cJSON_GetArrayItem(node, (int) idx);
            continue;
        }

        return NULL;
    }

    return node;
}


/* the first n path segments as a JSON array, for the change event */

static ngx_int_t
ngx_http_actingweb_prop_path(ngx_http_request_t *r, ngx_pool_t *pool,
    ngx_uint_t n, ngx_str_t *out)
{
    cJSON                     *arr, *s;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    arr = cJSON_CreateArray();
    if (arr == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        s = cJSON_CreateString((char *) ctx->segs[i].data);
        if (s == NULL) {
            cJSON_Delete(arr);
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(arr, s);
    }

    rc = ngx_http_actingweb_prop_store(pool, arr, 0, out);

    cJSON_Delete(arr);

    return rc;
}


/* KEYS and first ARGV of every property write script */

static ngx_int_t
ngx_http_actingweb_prop_keys(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a)
{
    u_char                         *p;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);

    if (p == NULL
        || ngx_http_actingweb_redis_keys(r, a, "actor", "props", "changes",
                                         NULL)
           != NGX_OK
        || ngx_http_actingweb_redis_creds(r, a) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* ARGV[3]: how many change events the stream keeps */

    return ngx_http_actingweb_redis_arg(a, p,
                                        ngx_sprintf(p, "%ui",
                                                    alcf->change_log) - p);
}
