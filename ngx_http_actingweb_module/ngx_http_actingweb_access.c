
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * The access step, run by the handler between routing and the endpoint:
 * load the actor, authenticate (creator, trustee, later peer), authorize,
 * and leave the result in ctx->actor and ctx->role.  What each endpoint
 * and method needs is in the route table (handler.c); how the endpoint's
 * own Redis work fits with the actor read is its plan:
 *
 *   LOAD_NONE      the endpoint only refuses (404, 405): no actor read
 *   LOAD_ACTOR     read the actor, then run the endpoint
 *   LOAD_WRITE     a creator write: credentials this worker verified
 *                  before skip the actor read; the write script checks
 *                  them and the endpoint calls access_changed() on -2
 *   LOAD_PIPELINE  the endpoint's read goes out together with the actor
 *                  read (one round trip); its reply handler runs only
 *                  after access allowed the request
 */


#include "ngx_http_actingweb_redis.h"

#include <openssl/crypto.h>


typedef struct {
    ngx_http_actingweb_access_e           access;
    ngx_http_actingweb_redis_handler_pt   piped;   /* endpoint's reply */
} ngx_http_actingweb_access_state_t;


static ngx_int_t ngx_http_actingweb_access_load(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_actor_command(ngx_http_request_t *r,
    ngx_http_actingweb_redis_handler_pt handler);
static void ngx_http_actingweb_actor_stash(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_access_loaded(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_access_piped(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_access_check(ngx_http_request_t *r,
    ngx_int_t *rc);
static ngx_int_t ngx_http_actingweb_access_peer(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx);
static void ngx_http_actingweb_access_verified(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_http_actingweb_role_e ngx_http_actingweb_access_role(
    ngx_http_actingweb_ctx_t *ctx);
static ngx_int_t ngx_http_actingweb_access_trust(ngx_http_request_t *r);
static void ngx_http_actingweb_access_trusted(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_access_acl(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **msg);
static ngx_int_t ngx_http_actingweb_access_perm(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx);


ngx_int_t
ngx_http_actingweb_access(ngx_http_request_t *r,
    ngx_http_actingweb_access_e access, ngx_http_actingweb_plan_pt plan_pt,
    ngx_http_actingweb_step_pt endpoint)
{
    ngx_int_t                           rc;
    ngx_http_actingweb_ctx_t           *ctx;
    ngx_http_actingweb_plan_t           plan;
    ngx_http_actingweb_access_state_t  *st;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ctx->next = endpoint;
    ctx->role = NGX_HTTP_ACTINGWEB_ROLE_NONE;

    ngx_memzero(&plan, sizeof(ngx_http_actingweb_plan_t));
    plan.load = NGX_HTTP_ACTINGWEB_LOAD_ACTOR;
    plan.access = access;

    if (plan_pt && plan_pt(r, &plan) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    access = plan.access;

    if (access == NGX_HTTP_ACTINGWEB_ACCESS_NONE
        || plan.load == NGX_HTTP_ACTINGWEB_LOAD_NONE)
    {
        return endpoint(r);
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_access_state_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->access = access;
    ctx->access = st;

    ngx_http_actingweb_auth_parse(r, ctx);

    if (access == NGX_HTTP_ACTINGWEB_ACCESS_PEER
        && ctx->auth == NGX_HTTP_ACTINGWEB_AUTH_BEARER)
    {
        return ngx_http_actingweb_access_trust(r);
    }

    if (access >= NGX_HTTP_ACTINGWEB_ACCESS_CREATOR
        && plan.load == NGX_HTTP_ACTINGWEB_LOAD_WRITE
        && ngx_http_actingweb_auth_known(r, ctx) == NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "actingweb write with remembered credentials");
        ctx->fast = 1;
        ctx->role = ngx_http_actingweb_access_role(ctx);

        return endpoint(r);
    }

    /* no values are read for an answer that can only be 404 or 401 */

    if (plan.load != NGX_HTTP_ACTINGWEB_LOAD_PIPELINE
        || (access >= NGX_HTTP_ACTINGWEB_ACCESS_CREATOR
            && ctx->auth != NGX_HTTP_ACTINGWEB_AUTH_BASIC
            && ctx->auth != NGX_HTTP_ACTINGWEB_AUTH_BEARER))
    {
        return ngx_http_actingweb_access_load(r);
    }

    st->piped = plan.handler;
    ctx->actor_state = NGX_HTTP_ACTINGWEB_ACTOR_UNKNOWN;

    rc = ngx_http_actingweb_actor_command(r, ngx_http_actingweb_actor_stash);

    if (rc == NGX_OK) {
        rc = ngx_http_actingweb_redis_command(r, plan.args,
                                           ngx_http_actingweb_access_piped);
    }

    return ngx_http_actingweb_redis_started(r, rc);
}


/*
 * A write script found another creator or passphrase hash than the one
 * sent: after remembered credentials, run the access step again with the
 * actor read; after a full check, the actor changed in between.
 */

ngx_int_t
ngx_http_actingweb_access_changed(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->fast) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "actingweb credentials changed, checking again");
        ctx->fast = 0;
        return ngx_http_actingweb_access_load(r);
    }

    return ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                         "actor changed meanwhile, "
                                         "try again");
}


static ngx_int_t
ngx_http_actingweb_access_load(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_actingweb_actor_command(r,
                                          ngx_http_actingweb_access_loaded);

    return ngx_http_actingweb_redis_started(r, rc);
}


static ngx_int_t
ngx_http_actingweb_actor_command(ngx_http_request_t *r,
    ngx_http_actingweb_redis_handler_pt handler)
{
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_redis_args(r, 5);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, (u_char *) "HMGET", 5) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "actor", NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "creator", 7) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "pw", 2) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "trustee_root", 12)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_command(r, a, handler);
}


/* keeps the record in ctx; errors are answered by the piped reply */

static void
ngx_http_actingweb_actor_stash(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ctx->actor_state = NGX_HTTP_ACTINGWEB_ACTOR_FAILED;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
    {
        return;
    }

    if (reply->element[0]->type != REDIS_REPLY_STRING) {
        ctx->actor_state = NGX_HTTP_ACTINGWEB_ACTOR_MISSING;
        return;
    }

    if (ngx_http_actingweb_reply_str(r, reply->element[0],
                                     &ctx->actor.creator) == NGX_OK
        && ngx_http_actingweb_reply_str(r, reply->element[1],
                                        &ctx->actor.pwhash) == NGX_OK
        && ngx_http_actingweb_reply_str(r, reply->element[2],
                                        &ctx->actor.trustee_root) == NGX_OK)
    {
        ctx->actor_state = NGX_HTTP_ACTINGWEB_ACTOR_FOUND;
    }
}


static void
ngx_http_actingweb_access_loaded(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    ngx_http_actingweb_actor_stash(r, status, reply);

    switch (ngx_http_actingweb_access_check(r, &rc)) {

    case NGX_OK:
        rc = ctx->next(r);
        break;

    case NGX_AGAIN:
        return;

    default: /* refused */
        break;
    }

    if (rc == NGX_DONE) {
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * The endpoint's reply, right after the actor's: handed on if access
 * allows.  When the credentials need a key derivation first, the reply
 * cannot be kept (it is valid only in this call): the endpoint then runs
 * as after a plain actor read and sends its read again.
 */

static void
ngx_http_actingweb_access_piped(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                           rc;
    ngx_http_actingweb_ctx_t           *ctx;
    ngx_http_actingweb_access_state_t  *st;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->access;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    switch (ngx_http_actingweb_access_check(r, &rc)) {

    case NGX_OK:
        st->piped(r, status, reply);
        return;

    case NGX_AGAIN:
        return;

    default: /* refused */
        break;
    }

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * After the actor record arrived: NGX_OK to go on (ctx->role set),
 * NGX_AGAIN while the credentials are checked off the event loop (then
 * access_verified() continues), or NGX_DECLINED when a refusal (404, 401,
 * 403, 429, 503) was sent, its result in *rc.
 */

static ngx_int_t
ngx_http_actingweb_access_check(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_int_t                           a;
    ngx_http_actingweb_ctx_t           *ctx;
    ngx_http_actingweb_access_state_t  *st;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->access;

    switch (ctx->actor_state) {

    case NGX_HTTP_ACTINGWEB_ACTOR_FOUND:
        break;

    case NGX_HTTP_ACTINGWEB_ACTOR_MISSING:
        *rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "actor not found");
        return NGX_DECLINED;

    default:
        *rc = ngx_http_actingweb_redis_reply_error(r,
                                     NGX_HTTP_ACTINGWEB_REDIS_DOWN, NULL);
        return NGX_DECLINED;
    }

    if (st->access == NGX_HTTP_ACTINGWEB_ACCESS_PUBLIC) {
        return NGX_OK;
    }

    if (ctx->auth == NGX_HTTP_ACTINGWEB_AUTH_BEARER
        && !ngx_http_actingweb_auth_trustee(ctx))
    {
        a = ngx_http_actingweb_access_peer(r, ctx);

    } else {
        a = ngx_http_actingweb_auth_creator(r, ctx,
                                        ngx_http_actingweb_access_verified);
    }

    if (a == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (a != NGX_OK) {
        *rc = ngx_http_actingweb_auth_reply(r, a);
        return NGX_DECLINED;
    }

    ctx->role = ngx_http_actingweb_access_role(ctx);

    return NGX_OK;
}


/*
 * A Bearer token that is neither a trust secret of this actor (see
 * access_trust) nor the trustee's passphrase.
 */

static ngx_int_t
ngx_http_actingweb_access_peer(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx)
{
    ctx->peer = NULL;

    return NGX_HTTP_FORBIDDEN;
}


/* credentials checked off the event loop: continue or refuse */

static void
ngx_http_actingweb_access_verified(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (rc == NGX_OK) {
        ctx->role = ngx_http_actingweb_access_role(ctx);
        rc = ctx->next(r);

    } else {
        rc = ngx_http_actingweb_auth_reply(r, rc);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_http_actingweb_role_e
ngx_http_actingweb_access_role(ngx_http_actingweb_ctx_t *ctx)
{
    return ctx->auth == NGX_HTTP_ACTINGWEB_AUTH_BEARER
           ? NGX_HTTP_ACTINGWEB_ROLE_TRUSTEE : NGX_HTTP_ACTINGWEB_ROLE_CREATOR;
}


/*
 * A Bearer token where peers may come: the secret index is asked (by the
 * token's SHA-256) in the same round trip as the actor read.  A match is
 * compared in constant time with the stored secret; then the request is
 * the peer's (ctx->peer, ROLE_PEER) and the relationship's ACL decides.
 * No match: the token may still be the trustee's passphrase.
 */

static ngx_int_t
ngx_http_actingweb_access_trust(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         hash;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_trust_hash(r, &ctx->pass, &hash) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "trust", "trustsec", NULL)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, hash.data, hash.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->actor_state = NGX_HTTP_ACTINGWEB_ACTOR_UNKNOWN;

    rc = ngx_http_actingweb_actor_command(r, ngx_http_actingweb_actor_stash);

    if (rc == NGX_OK) {
        rc = ngx_http_actingweb_redis_script(r,
                                        NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_AUTH,
                                        a, ngx_http_actingweb_access_trusted);
    }

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_access_trusted(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                     *rec, *secret;
    ngx_int_t                  rc;
    const char                *err;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    rec = NULL;

    if (ctx->actor_state == NGX_HTTP_ACTINGWEB_ACTOR_FOUND
        && reply->type == REDIS_REPLY_STRING)
    {
        rec = ngx_http_actingweb_trust_record(r, (u_char *) reply->str,
                                              reply->len, &err);
    }

    secret = cJSON_GetObjectItemCaseSensitive(rec, "secret");

    if (cJSON_IsString(secret)
        && ngx_strlen(secret->valuestring) == ctx->pass.len
        && CRYPTO_memcmp(secret->valuestring, ctx->pass.data, ctx->pass.len)
           == 0)
    {
        ctx->peer = rec;
        ctx->role = NGX_HTTP_ACTINGWEB_ROLE_PEER;

        rc = ngx_http_actingweb_access_acl(r, ctx, &err);

        rc = (rc == NGX_OK) ? ctx->next(r)
                            : ngx_http_actingweb_send_error(r, rc, err);

        goto done;
    }

    switch (ngx_http_actingweb_access_check(r, &rc)) {

    case NGX_OK:
        rc = ctx->next(r);
        break;

    case NGX_AGAIN:
        return;

    default: /* refused */
        break;
    }

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * What a peer may do here.  /trust checks the peer against the path
 * itself (a token works only on its own /trust/<rel>/<peer>, approved or
 * not), /subscriptions here (only its own /subscriptions/<peer>...);
 * elsewhere we must have approved the trust, and the relationship's
 * ACL (actingweb_acl, else the defaults of the reference) names the
 * methods per endpoint.  Returns NGX_OK or the refusal's status.
 */

static ngx_int_t
ngx_http_actingweb_access_acl(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **msg)
{
    cJSON      *rel, *peerid;
    ngx_str_t   name;

    if (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_TRUST
        || ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_PERMISSIONS)
    {
        return NGX_OK;
    }

    /*
     * /callbacks/subscriptions/<peer>/... takes only that peer's token;
     * the subscription we asked for is all the permission it needs
     */

    if (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_CALLBACKS) {
        peerid = cJSON_GetObjectItemCaseSensitive(ctx->peer, "peerid");

        if (ctx->nsegs < 2
            || !cJSON_IsString(peerid)
            || ngx_strlen(peerid->valuestring) != ctx->segs[1].len
            || ngx_strncmp(peerid->valuestring, ctx->segs[1].data,
                           ctx->segs[1].len) != 0)
        {
            *msg = "this token is not for that peer";
            return NGX_HTTP_FORBIDDEN;
        }

        return NGX_OK;
    }

    /*
     * everything under /subscriptions/<peer> is that peer's own; it may
     * list its subscriptions before we approved it (as the reference)
     */

    if (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS) {
        peerid = cJSON_GetObjectItemCaseSensitive(ctx->peer, "peerid");

        if (ctx->nsegs == 0
            || !cJSON_IsString(peerid)
            || ngx_strlen(peerid->valuestring) != ctx->segs[0].len
            || ngx_strncmp(peerid->valuestring, ctx->segs[0].data,
                           ctx->segs[0].len) != 0)
        {
            *msg = "this token is not for that peer";
            return NGX_HTTP_FORBIDDEN;
        }
    }

    if (!(ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS
          && ctx->nsegs == 1 && ctx->method == NGX_HTTP_GET)
        && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ctx->peer,
                                                          "approved")))
    {
        *msg = "trust not approved";
        return NGX_HTTP_FORBIDDEN;
    }

    /* this trust's own permissions first (deny, allow), then the ACL */

    if (ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_PROPERTIES) {
        switch (ngx_http_actingweb_access_perm(r, ctx)) {

        case NGX_OK:
            return NGX_OK;

        case NGX_DECLINED:
            *msg = "not allowed by this trust's permissions";
            return NGX_HTTP_FORBIDDEN;

        case NGX_ERROR:
            *msg = "internal error";
            return NGX_HTTP_INTERNAL_SERVER_ERROR;

        default: /* no rule */
            break;
        }
    }

    rel = cJSON_GetObjectItemCaseSensitive(ctx->peer, "relationship");

    if (cJSON_IsString(rel)) {
        name.data = (u_char *) rel->valuestring;
        name.len = ngx_strlen(name.data);

        if (ngx_http_actingweb_acl_allows(r, &name, ctx->endpoint,
                                          ctx->method))
        {
            return NGX_OK;
        }
    }

    *msg = "not allowed for this relationship";

    return NGX_HTTP_FORBIDDEN;
}


/* the property path as "a/b/c" (NULL: the whole collection, written) */

static ngx_int_t
ngx_http_actingweb_access_perm(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx)
{
    u_char      *name, *p;
    size_t       len;
    ngx_uint_t   i;
    const char  *op;

    op = (ctx->method == NGX_HTTP_GET) ? "read" : "write";

    if (ctx->nsegs == 0) {
        if (ctx->method == NGX_HTTP_GET) {
            /* readable names are filtered by the endpoint */
            return NGX_AGAIN;
        }

        return ngx_http_actingweb_perm_check(r, ctx->peer, NULL, op);
    }

    len = 0;

    for (i = 0; i < ctx->nsegs; i++) {
        len += ctx->segs[i].len + 1;
    }

    name = ngx_pnalloc(r->pool, len);
    if (name == NULL) {
        return NGX_ERROR;
    }

    p = name;

    for (i = 0; i < ctx->nsegs; i++) {
        if (i) {
            *p++ = '/';
        }

        p = ngx_cpymem(p, ctx->segs[i].data, ctx->segs[i].len);
    }

    *p = '\0';

    return ngx_http_actingweb_perm_check(r, ctx->peer, (char *) name, op);
}
