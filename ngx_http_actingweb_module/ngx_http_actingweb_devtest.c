
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * /devtest, with actingweb_devtest on: the reference's debug endpoints,
 * for conformance suites (checklist §1.7); never on a public server.
 *
 *   GET    /devtest/ping                     204, no credentials
 *   POST   /devtest/proxy/create <json>      a twin (creator or trustee)
 *   GET|DELETE /devtest/proxy/properties     the twin's, with the trust's
 *   PUT    /devtest/proxy/properties/<name>  Bearer (as /awproxy does)
 *
 * The twin flow is the reference's (§3.8), all through the peer client:
 * POST <factory>/ {"creator":"trustee","trustee_root":<actor>}, GET
 * <twin>/meta, a friend trust from the actor (trust.c, as POST /trust),
 * PUT <twin>/trust/friend/<actor> {"approved":true} as the twin's trustee
 * (Basic trustee:<its passphrase>), POST <twin>/properties <json>, then
 * the twin's id goes into the actor's hash (devtest_twin).  A step that
 * fails deletes the twin, which revokes its trust with the actor: nothing
 * is left half done.
 */


#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"


typedef enum {
    NGX_HTTP_ACTINGWEB_DEVTEST_NONE = 0,
    NGX_HTTP_ACTINGWEB_DEVTEST_PING,
    NGX_HTTP_ACTINGWEB_DEVTEST_CREATE,
    NGX_HTTP_ACTINGWEB_DEVTEST_PROPS,          /* proxy/properties */
    NGX_HTTP_ACTINGWEB_DEVTEST_PROP            /* proxy/properties/<n> */
} ngx_http_actingweb_devtest_path_e;


typedef struct {
    ngx_str_t                        self;        /* the actor's root */
    ngx_str_t                        twin;        /* its id */
    ngx_str_t                        url;         /* its root */
    ngx_str_t                        basic;       /* as its trustee */
    cJSON                           *meta;        /* its /meta */
    ngx_uint_t                       fill:1;      /* properties given */
    ngx_uint_t                       status;      /* the error, after */
    const char                      *message;     /* the twin is gone */
} ngx_http_actingweb_devtest_t;


static ngx_http_actingweb_devtest_path_e ngx_http_actingweb_devtest_path(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_devtest_create(ngx_http_request_t *r);
static void ngx_http_actingweb_devtest_created(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_devtest_meta(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_devtest_trusted(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);
static void ngx_http_actingweb_devtest_approved(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_devtest_filled(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_devtest_remember(ngx_http_request_t *r);
static void ngx_http_actingweb_devtest_remembered(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_devtest_fail(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, const char *message);
static ngx_int_t ngx_http_actingweb_devtest_undo(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);
static void ngx_http_actingweb_devtest_undone(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_devtest_proxy(ngx_http_request_t *r);
static void ngx_http_actingweb_devtest_twin(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_devtest_call(ngx_http_request_t *r,
    ngx_uint_t method, ngx_str_t *base, const char *path, ngx_str_t *body,
    ngx_http_actingweb_peer_handler_pt handler);
static ngx_uint_t ngx_http_actingweb_devtest_failed(
    ngx_http_actingweb_peer_call_t *pc, ngx_uint_t expect);


/* by ngx_http_actingweb_devtest_path_e */

static struct {
    ngx_uint_t                       methods;
    const char                      *allow;
} ngx_http_actingweb_devtest_methods[] = {
    { 0, NULL },
    { NGX_HTTP_GET, "GET, HEAD" },
    { NGX_HTTP_POST, "POST" },
    { NGX_HTTP_GET|NGX_HTTP_DELETE, "GET, HEAD, DELETE" },
    { NGX_HTTP_PUT, "PUT" }
};


#define ngx_http_actingweb_devtest_state(r)                                   \
    ((ngx_http_actingweb_devtest_t *)                                         \
     ((ngx_http_actingweb_ctx_t *)                                            \
      ngx_http_get_module_ctx(r, ngx_http_actingweb_module))->data)


/* ping is open; the proxy is the creator's (route); the rest only 404s */

ngx_int_t
ngx_http_actingweb_devtest_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan)
{
    ngx_http_actingweb_ctx_t           *ctx;
    ngx_http_actingweb_devtest_path_e   path;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    path = ngx_http_actingweb_devtest_path(r);

    if (path == NGX_HTTP_ACTINGWEB_DEVTEST_PING) {
        plan->access = NGX_HTTP_ACTINGWEB_ACCESS_NONE;

    } else if (!(ctx->method
                 & ngx_http_actingweb_devtest_methods[path].methods))
    {
        plan->load = NGX_HTTP_ACTINGWEB_LOAD_NONE;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_devtest(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t           *ctx;
    ngx_http_actingweb_devtest_path_e   path;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    path = ngx_http_actingweb_devtest_path(r);

    if (path == NGX_HTTP_ACTINGWEB_DEVTEST_NONE) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "devtest path not supported");
    }

    if (!(ctx->method & ngx_http_actingweb_devtest_methods[path].methods)) {
        if (ngx_http_actingweb_header(r, "Allow",
                                ngx_http_actingweb_devtest_methods[path].allow)
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    switch (path) {

    case NGX_HTTP_ACTINGWEB_DEVTEST_PING:
        return ngx_http_actingweb_send_no_content(r);

    case NGX_HTTP_ACTINGWEB_DEVTEST_CREATE:
        return ngx_http_actingweb_devtest_create(r);

    default:
        return ngx_http_actingweb_devtest_proxy(r);
    }
}


static ngx_http_actingweb_devtest_path_e
ngx_http_actingweb_devtest_path(ngx_http_request_t *r)
{
    ngx_str_t                 *s;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    s = ctx->segs;

    if (ctx->nsegs == 1 && ngx_strcmp(s[0].data, "ping") == 0) {
        return NGX_HTTP_ACTINGWEB_DEVTEST_PING;
    }

    if (ctx->nsegs < 2 || ctx->nsegs > 3
        || ngx_strcmp(s[0].data, "proxy") != 0)
    {
        return NGX_HTTP_ACTINGWEB_DEVTEST_NONE;
    }

    if (ctx->nsegs == 2 && ngx_strcmp(s[1].data, "create") == 0) {
        return NGX_HTTP_ACTINGWEB_DEVTEST_CREATE;
    }

    if (ngx_strcmp(s[1].data, "properties") != 0) {
        return NGX_HTTP_ACTINGWEB_DEVTEST_NONE;
    }

    return ctx->nsegs == 2 ? NGX_HTTP_ACTINGWEB_DEVTEST_PROPS
                           : NGX_HTTP_ACTINGWEB_DEVTEST_PROP;
}


/* POST /devtest/proxy/create [<json object>]: first the factory */

static ngx_int_t
ngx_http_actingweb_devtest_create(ngx_http_request_t *r)
{
    cJSON                         *in, *out;
    ngx_int_t                      rc;
    ngx_str_t                      factory, body, creator;
    const char                    *err;
    ngx_http_actingweb_ctx_t      *ctx;
    ngx_http_actingweb_devtest_t  *dt;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    dt = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_devtest_t));
    if (dt == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = dt;

    if (ctx->body.len) {
        err = "body must be a JSON object";
        in = ngx_http_actingweb_json_parse(r, ctx->body.data, ctx->body.len,
                                           &err);
        if (!cJSON_IsObject(in)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 err);
        }

        dt->fill = (in->child != NULL);
    }

    rc = ngx_http_actingweb_self_url(r, &ctx->actor_id, &dt->self);
    if (rc != NGX_OK) {
        return rc == NGX_ERROR
               ? NGX_HTTP_INTERNAL_SERVER_ERROR
               : ngx_http_actingweb_send_error(r,
                                       NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "this server has no public URL for "
                                       "peers (actingweb_base_url)");
    }

    /* our factory: the actor's root less its id, "/" kept */

    factory.data = dt->self.data;
    factory.len = dt->self.len - ctx->actor_id.len;

    ngx_str_set(&creator, "trustee");

    out = cJSON_CreateObject();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, out, "creator", &creator)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, out, "trustee_root", &dt->self)
           != NGX_OK
        || ngx_http_actingweb_json_print(r, out, &body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_devtest_call(r, NGX_HTTP_POST, &factory, "",
                                           &body,
                                           ngx_http_actingweb_devtest_created);
}


static void
ngx_http_actingweb_devtest_created(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_str_t                      pass, cred;
    ngx_http_actingweb_devtest_t  *dt;

    dt = ngx_http_actingweb_devtest_state(r);

    if (ngx_http_actingweb_devtest_failed(pc, NGX_HTTP_CREATED)
        || ngx_http_actingweb_json_str(pc->json, "id", &dt->twin) != NGX_OK
        || ngx_http_actingweb_json_str(pc->json, "passphrase", &pass)
           != NGX_OK
        || !ngx_http_actingweb_valid_id(&dt->twin)
        || pass.len == 0)
    {
        /* no twin exists: nothing to take back */
        rc = ngx_http_actingweb_send_error(r,
                 pc->error ? ngx_http_actingweb_peer_status(pc)
                           : NGX_HTTP_BAD_GATEWAY,
                 pc->error ? pc->message
                           : "our factory did not create the twin");
        goto done;
    }

    /* "Basic base64(trustee:<passphrase>)": the twin's own trustee */

    cred.len = sizeof("trustee:") - 1 + pass.len;
    cred.data = ngx_pnalloc(r->pool, cred.len);
    dt->basic.len = sizeof("Basic ") - 1 + ngx_base64_encoded_length(cred.len);
    dt->basic.data = ngx_pnalloc(r->pool, dt->basic.len);

    if (cred.data == NULL || dt->basic.data == NULL
        || ngx_http_actingweb_self_url(r, &dt->twin, &dt->url) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_memcpy(ngx_cpymem(cred.data, "trustee:", sizeof("trustee:") - 1),
               pass.data, pass.len);

    p = ngx_cpymem(dt->basic.data, "Basic ", sizeof("Basic ") - 1);
    dt->basic.len = p - dt->basic.data;

    pass.data = p;
    ngx_encode_base64(&pass, &cred);
    dt->basic.len += pass.len;

    rc = ngx_http_actingweb_devtest_call(r, NGX_HTTP_GET, &dt->url, "/meta",
                                         NULL,
                                         ngx_http_actingweb_devtest_meta);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_devtest_meta(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                      rc;
    ngx_str_t                      rel = ngx_string("friend");
    ngx_http_actingweb_devtest_t  *dt;

    dt = ngx_http_actingweb_devtest_state(r);

    if (ngx_http_actingweb_devtest_failed(pc, NGX_HTTP_OK)) {
        rc = ngx_http_actingweb_devtest_fail(r, pc,
                                             "the twin's /meta failed");
        goto done;
    }

    dt->meta = pc->json;

    rc = ngx_http_actingweb_trust_open(r, &dt->url, &rel,
                                       ngx_http_actingweb_devtest_trusted);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* the trust is ours and asked for: the twin approves it as its trustee */

static ngx_int_t
ngx_http_actingweb_devtest_trusted(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    u_char                        *path;
    ngx_str_t                      body = ngx_string("{\"approved\":true}");
    ngx_http_actingweb_ctx_t      *ctx;
    ngx_http_actingweb_devtest_t  *dt;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    dt = ctx->data;

    if (status != NGX_HTTP_CREATED) {
        return ngx_http_actingweb_devtest_undo(r, status, message);
    }

    path = ngx_pnalloc(r->pool, sizeof("/trust/friend/") + ctx->actor_id.len);
    if (path == NULL) {
        return ngx_http_actingweb_devtest_undo(r,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             "out of memory");
    }

    *ngx_sprintf(path, "/trust/friend/%V", &ctx->actor_id) = '\0';

    return ngx_http_actingweb_devtest_call(r, NGX_HTTP_PUT, &dt->url,
                                        (const char *) path, &body,
                                        ngx_http_actingweb_devtest_approved);
}


static void
ngx_http_actingweb_devtest_approved(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                      rc;
    ngx_http_actingweb_ctx_t      *ctx;
    ngx_http_actingweb_devtest_t  *dt;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    dt = ctx->data;

    if (ngx_http_actingweb_devtest_failed(pc, NGX_HTTP_NO_CONTENT)) {
        rc = ngx_http_actingweb_devtest_fail(r, pc, "the twin did not "
                                             "approve the trust");
        goto done;
    }

    if (!dt->fill) {
        rc = ngx_http_actingweb_devtest_remember(r);
        goto done;
    }

    rc = ngx_http_actingweb_devtest_call(r, NGX_HTTP_POST, &dt->url,
                                         "/properties", &ctx->body,
                                         ngx_http_actingweb_devtest_filled);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_devtest_filled(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t  rc;

    if (ngx_http_actingweb_devtest_failed(pc, NGX_HTTP_NO_CONTENT)) {
        rc = ngx_http_actingweb_devtest_fail(r, pc, "the twin did not "
                                             "take the properties");

    } else {
        rc = ngx_http_actingweb_devtest_remember(r);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* devtest_twin in the actor's hash, if the actor and its creds still are */

static ngx_int_t
ngx_http_actingweb_devtest_remember(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_devtest_t     *dt;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    dt = ctx->data;

    a = ngx_http_actingweb_redis_args(r, 5);

    if (a == NULL
        || ngx_http_actingweb_redis_keys(r, a, "actor", NULL) != NGX_OK
        || ngx_http_actingweb_redis_creds(r, a) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "devtest_twin", 12)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, dt->twin.data, dt->twin.len)
           != NGX_OK)
    {
        return ngx_http_actingweb_devtest_undo(r,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             "out of memory");
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_ACTOR_SET,
                                         a,
                                         ngx_http_actingweb_devtest_remembered);
    if (rc != NGX_OK) {
        return ngx_http_actingweb_devtest_undo(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "storage unavailable");
    }

    return NGX_DONE;
}


static void
ngx_http_actingweb_devtest_remembered(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                      rc;
    ngx_http_actingweb_devtest_t  *dt;

    dt = ngx_http_actingweb_devtest_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_INTEGER)
    {
        rc = ngx_http_actingweb_devtest_undo(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "storage unavailable");

    } else if (reply->integer == 0) {
        rc = ngx_http_actingweb_devtest_undo(r, NGX_HTTP_NOT_FOUND,
                                             "actor not found");

    } else if (reply->integer != 1) {
        rc = ngx_http_actingweb_devtest_undo(r, NGX_HTTP_CONFLICT,
                                             "actor changed meanwhile, "
                                             "try again");

    } else if (ngx_http_actingweb_set_location(r, &dt->url) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: devtest twin \"%V\" created", &dt->twin);
        rc = ngx_http_actingweb_send_json(r, NGX_HTTP_OK, dt->meta);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* a call failed: its own error, or the peer's answer was not the one */

static ngx_int_t
ngx_http_actingweb_devtest_fail(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, const char *message)
{
    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        return ngx_http_actingweb_devtest_undo(r,
                                       ngx_http_actingweb_peer_status(pc),
                                       pc->message);
    }

    return ngx_http_actingweb_devtest_undo(r, NGX_HTTP_BAD_GATEWAY, message);
}


/* a step failed: the twin is deleted (with its trust), then the error */

static ngx_int_t
ngx_http_actingweb_devtest_undo(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_http_actingweb_ctx_t      *ctx;
    ngx_http_actingweb_devtest_t  *dt;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    dt = ctx->data;

    dt->status = status;
    dt->message = message;

    /* the clean-up runs even when the request's deadline has passed */
    ctx->deadline = 0;

    return ngx_http_actingweb_devtest_call(r, NGX_HTTP_DELETE, &dt->url, "",
                                           NULL,
                                           ngx_http_actingweb_devtest_undone);
}


static void
ngx_http_actingweb_devtest_undone(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_http_actingweb_devtest_t  *dt;

    dt = ngx_http_actingweb_devtest_state(r);

    if (ngx_http_actingweb_devtest_failed(pc, NGX_HTTP_NO_CONTENT)
        && !(pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
             && pc->status == NGX_HTTP_NOT_FOUND))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: devtest twin \"%V\" could not be deleted "
                      "after a failed step (%s, status %ui)", &dt->twin,
                      pc->message ? pc->message : "answered", pc->status);
    }

    ngx_http_finalize_request(r,
        ngx_http_actingweb_send_error(r, dt->status, dt->message));
}


/* the proxy paths: the same method, body and query on the twin */

static ngx_int_t
ngx_http_actingweb_devtest_proxy(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, (u_char *) "HGET", 4) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "actor", NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "devtest_twin", 12)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_command(r, a,
                                          ngx_http_actingweb_devtest_twin);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_devtest_twin(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    u_char                    *p;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  twin, path, *name;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (ngx_http_actingweb_reply_str(r, reply, &twin) != NGX_OK
        || twin.len == 0)
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no twin: POST "
                                           "devtest/proxy/create first");
        goto done;
    }

    /* "/properties[/<name>]", the name escaped again */

    name = (ctx->nsegs == 3) ? &ctx->segs[2] : NULL;

    len = sizeof("/properties/") - 1;
    if (name) {
        len += name->len + 2 * ngx_escape_uri(NULL, name->data, name->len,
                                              NGX_ESCAPE_URI_COMPONENT);
    }

    path.data = ngx_pnalloc(r->pool, len);
    if (path.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = ngx_cpymem(path.data, "/properties", sizeof("/properties") - 1);

    if (name) {
        *p++ = '/';
        p = (u_char *) ngx_escape_uri(p, name->data, name->len,
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    path.len = p - path.data;

    rc = ngx_http_actingweb_awproxy_call(r, &twin, &path);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * <base><path> as the twin's trustee (while it is being built, before
 * it is remembered: its end must run even if our client leaves).
 * Returns what an endpoint returns.
 */

static ngx_int_t
ngx_http_actingweb_devtest_call(ngx_http_request_t *r, ngx_uint_t method,
    ngx_str_t *base, const char *path, ngx_str_t *body,
    ngx_http_actingweb_peer_handler_pt handler)
{
    size_t                           len;
    ngx_http_actingweb_devtest_t    *dt;
    ngx_http_actingweb_peer_call_t  *pc;

    dt = ngx_http_actingweb_devtest_state(r);

    pc = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peer_call_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(path);

    pc->method = method;
    pc->handler = handler;
    pc->finish = 1;
    pc->authorization = dt->basic;

    if (body) {
        pc->body = *body;
    }

    pc->url.len = base->len + len;
    pc->url.data = ngx_pnalloc(r->pool, pc->url.len);
    if (pc->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(pc->url.data, base->data, base->len), path, len);

    return ngx_http_actingweb_peer_run(r, pc);
}


/* not the expected answer (any 2xx for 204), or no JSON where one is */

static ngx_uint_t
ngx_http_actingweb_devtest_failed(ngx_http_actingweb_peer_call_t *pc,
    ngx_uint_t expect)
{
    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        return 1;
    }

    if (expect == NGX_HTTP_NO_CONTENT) {
        return pc->status < 200 || pc->status > 299;
    }

    return pc->status != expect || !cJSON_IsObject(pc->json);
}
