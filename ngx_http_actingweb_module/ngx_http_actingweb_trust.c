
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * /trust on both sides of every flow (spec "Trust", checklist §1.4, §3):
 *
 *   GET    /trust[?relationship=&peerid=&type=], /trust/<rel>   list
 *   POST   /trust {url, relationship, desc, type}     A initiates (creator)
 *   POST   /trust/<rel> {baseuri, id, type, secret, ...}   B receives
 *   GET    /trust/<rel>/<peer>       creator, or the peer (verification)
 *   POST   /trust/<rel>/<peer> {approved:true}   the peer approved us
 *   PUT    /trust/<rel>/<peer> {approved, desc, baseuri}   save, notify
 *   DELETE /trust/<rel>/<peer>[?peer=true]   notify the peer, then delete
 *   PUT|DELETE /trust/trustee                trustee_root
 *
 * Each flow is a chain of steps; every peer call and Redis command ends
 * in the next step, and the last one answers.  Our record is stored
 * before we ask the peer (it verifies us with a GET meanwhile) and taken
 * back when the peer refuses, so a failed handshake leaves nothing.
 */


#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>


#define NGX_HTTP_ACTINGWEB_GCM_NONCE  12
#define NGX_HTTP_ACTINGWEB_GCM_TAG    16


#define NGX_HTTP_ACTINGWEB_REL_MAX      64
#define NGX_HTTP_ACTINGWEB_PEERID_MAX   64
#define NGX_HTTP_ACTINGWEB_DESC_MAX     1024
#define NGX_HTTP_ACTINGWEB_TURL_MAX     2048


typedef struct {
    ngx_str_t                        rel;
    ngx_str_t                        peerid;
    ngx_str_t                        url;         /* the peer's root */
    ngx_str_t                        self;        /* our actor's root */
    ngx_str_t                        desc;
    ngx_str_t                        type;
    ngx_str_t                        secret;
    ngx_str_t                        sechash;
    ngx_str_t                        verify;
    ngx_str_t                        record;      /* as stored */
    cJSON                           *rec;         /* parsed record */
    ngx_uint_t                       status;      /* to answer with */
    const char                      *message;     /* error to answer */
    ngx_uint_t                       approved:1;
    ngx_uint_t                       notify:1;
    ngx_uint_t                       finish:1;

    /* a trust this server opens itself (trust_open): how it ends */
    ngx_http_actingweb_trust_done_pt  opened;
    void                            *owner;      /* its ctx->data */

    /* actor deletion: every peer is told first */
    cJSON                           *all;
    ngx_uint_t                       next;
    ngx_uint_t                       pending;
    ngx_http_actingweb_step_pt       done;
} ngx_http_actingweb_trust_t;


static ngx_int_t ngx_http_actingweb_trust_list(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_trust_initiate(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_trust_begin(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_meta(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_trust_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_trust_asked(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_trust_undone(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_trust_receive(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_verified(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_trust_one(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_trust_update(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_updated(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_trust_notified(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_trust_revoked(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_trust_remove(ngx_http_request_t *r);
static void ngx_http_actingweb_trust_removed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_trustee(ngx_http_request_t *r);
static void ngx_http_actingweb_revoke_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_revoke_next(ngx_http_request_t *r);
static void ngx_http_actingweb_revoke_one(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_trustee_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);

static ngx_int_t ngx_http_actingweb_trust_script(ngx_http_request_t *r,
    ngx_http_actingweb_script_e script, ngx_str_t *argv, ngx_uint_t argc,
    ngx_http_actingweb_redis_handler_pt handler);
static ngx_int_t ngx_http_actingweb_trust_call(ngx_http_request_t *r,
    ngx_uint_t method, ngx_str_t *base, ngx_str_t *path, cJSON *body,
    ngx_http_actingweb_peer_handler_pt handler);
static ngx_int_t ngx_http_actingweb_trust_new_record(ngx_http_request_t *r,
    ngx_uint_t approved, ngx_uint_t peer_approved, ngx_uint_t verified);
static ngx_int_t ngx_http_actingweb_trust_send(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *rec, ngx_uint_t location);
static cJSON *ngx_http_actingweb_trust_view(ngx_http_request_t *r,
    cJSON *rec);
static ngx_int_t ngx_http_actingweb_trust_fail(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, ngx_uint_t status,
    const char *message);
static ngx_int_t ngx_http_actingweb_trust_end(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);
static cJSON *ngx_http_actingweb_trust_body(ngx_http_request_t *r,
    ngx_int_t *rc);
static ngx_int_t ngx_http_actingweb_trust_str(ngx_http_request_t *r,
    cJSON *in, const char *name, ngx_str_t *out, size_t max,
    ngx_uint_t required);
static ngx_int_t ngx_http_actingweb_trust_token(ngx_str_t *s, size_t max);
static ngx_int_t ngx_http_actingweb_trust_owner(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_http_actingweb_trust_t *ts,
    ngx_int_t *rc);
static ngx_int_t ngx_http_actingweb_trust_url(ngx_str_t *url);
static ngx_int_t ngx_http_actingweb_trust_random(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_http_actingweb_trust_parse(ngx_http_request_t *r,
    redisReply *reply, cJSON **rec);
static ngx_int_t ngx_http_actingweb_trust_seal(ngx_http_request_t *r,
    cJSON *rec, ngx_str_t *peerid, ngx_str_t *secret);
static ngx_int_t ngx_http_actingweb_unhex(u_char *src, size_t n,
    u_char *dst);
static ngx_uint_t ngx_http_actingweb_trust_flag(cJSON *rec,
    const char *name);
static ngx_uint_t ngx_http_actingweb_trust_is(cJSON *rec, const char *name,
    ngx_str_t *value);
static ngx_uint_t ngx_http_actingweb_trust_auto(ngx_http_request_t *r,
    ngx_str_t *rel);


#define ngx_http_actingweb_trust_state(r)                                     \
    ((ngx_http_actingweb_trust_t *)                                           \
     ((ngx_http_actingweb_ctx_t *)                                            \
      ngx_http_get_module_ctx(r, ngx_http_actingweb_module))->data)


/*
 * Who may come, by path: /trust and /trust/<rel> are the creator's (and
 * trustee's), except POST /trust/<rel>, which anybody may send (the
 * reverse GET tells who it is); /trust/<rel>/<peer> also the peer.
 */

ngx_int_t
ngx_http_actingweb_trust_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs == 3 && ngx_strcmp(ctx->segs[2].data, "permissions") == 0)
    {
        plan->access = NGX_HTTP_ACTINGWEB_ACCESS_CREATOR;

    } else if (ctx->nsegs > 2) {
        plan->load = NGX_HTTP_ACTINGWEB_LOAD_NONE;

    } else if (ctx->nsegs == 1 && ctx->method == NGX_HTTP_POST) {
        plan->access = NGX_HTTP_ACTINGWEB_ACCESS_PUBLIC;

    } else if (ctx->nsegs < 2) {
        plan->access = NGX_HTTP_ACTINGWEB_ACCESS_CREATOR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_trust(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs == 3 && ngx_strcmp(ctx->segs[2].data, "permissions") == 0)
    {
        return ngx_http_actingweb_perm_trust(r, &ctx->segs[0],
                                             &ctx->segs[1]);
    }

    if (ctx->nsegs > 2) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "trust path not supported");
    }

    ts = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_trust_t));
    if (ts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = ts;

    if (ctx->nsegs >= 1) {
        ts->rel = ctx->segs[0];
    }

    if (ctx->nsegs == 2) {
        ts->peerid = ctx->segs[1];
    }

    if (ctx->nsegs == 1 && ngx_strcmp(ts->rel.data, "trustee") == 0
        && (ctx->method & (NGX_HTTP_PUT|NGX_HTTP_DELETE)))
    {
        return ngx_http_actingweb_trustee(r);
    }

    if ((ts->rel.len
         && ngx_http_actingweb_trust_token(&ts->rel,
                                           NGX_HTTP_ACTINGWEB_REL_MAX)
            != NGX_OK)
        || (ts->peerid.len
            && ngx_http_actingweb_trust_token(&ts->peerid,
                                              NGX_HTTP_ACTINGWEB_PEERID_MAX)
               != NGX_OK))
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "no such relationship");
    }

    if (ctx->nsegs == 2) {
        if (ts->peerid.len == ctx->actor_id.len
            && ngx_strncmp(ts->peerid.data, ctx->actor_id.data,
                           ts->peerid.len) == 0)
        {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "an actor has no trust "
                                                 "with itself");
        }

        switch (ctx->method) {
        case NGX_HTTP_PUT:
            return ngx_http_actingweb_trust_update(r);
        case NGX_HTTP_DELETE:
            return ngx_http_actingweb_trust_remove(r);
        default:
            return ngx_http_actingweb_trust_one(r);
        }
    }

    if (ctx->method == NGX_HTTP_GET) {
        return ngx_http_actingweb_trust_list(r);
    }

    if (ctx->method == NGX_HTTP_POST) {
        return ctx->nsegs == 0 ? ngx_http_actingweb_trust_initiate(r)
                               : ngx_http_actingweb_trust_receive(r);
    }

    if (ngx_http_actingweb_header(r, "Allow", "GET, HEAD, POST") == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "method not allowed");
}


/* GET /trust, GET /trust/<rel>: the creator's view, secrets included */

static ngx_int_t
ngx_http_actingweb_trust_list(ngx_http_request_t *r)
{
    return ngx_http_actingweb_trust_all(r, ngx_http_actingweb_trust_listed);
}


static void
ngx_http_actingweb_trust_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                       *out, *rec, *view;
    size_t                       i;
    ngx_int_t                    rc;
    ngx_str_t                    rel, peerid, type;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    rel = ts->rel;

    if (rel.len == 0
        && ngx_http_arg(r, (u_char *) "relationship", 12, &rel) != NGX_OK)
    {
        rel.len = 0;
    }

    if (ngx_http_arg(r, (u_char *) "peerid", 6, &peerid) != NGX_OK) {
        peerid.len = 0;
    }

    if (ngx_http_arg(r, (u_char *) "type", 4, &type) != NGX_OK) {
        type.len = 0;
    }

    /* query values are percent-encoded ("urn%3A...") */

    if ((rel.len && rel.data != ts->rel.data
         && ngx_http_actingweb_unescape(r->pool, rel.data, rel.len, &rel, 1)
            != NGX_OK)
        || (peerid.len
            && ngx_http_actingweb_unescape(r->pool, peerid.data, peerid.len,
                                           &peerid, 1) != NGX_OK)
        || (type.len
            && ngx_http_actingweb_unescape(r->pool, type.data, type.len,
                                           &type, 1) != NGX_OK))
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "malformed query");
        goto done;
    }

    out = cJSON_CreateArray();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    for (i = 0; i < reply->elements; i++) {
        if (ngx_http_actingweb_trust_parse(r, reply->element[i], &rec)
            != NGX_OK
            || rec == NULL)
        {
            continue;
        }

        if ((rel.len && !ngx_http_actingweb_trust_is(rec, "relationship",
                                                     &rel))
            || (peerid.len && !ngx_http_actingweb_trust_is(rec, "peerid",
                                                          &peerid))
            || (type.len && !ngx_http_actingweb_trust_is(rec, "type", &type)))
        {
            continue;
        }

        view = ngx_http_actingweb_trust_view(r, rec);
        if (view == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        cJSON_AddItemToArray(out, view);
    }

    rc = ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * POST /trust {url, relationship, desc, type}: A asks B.  1. B's /meta
 * (its id and type); 2. store our record (approved, verified); 3. POST it
 * to B's /trust/<rel>, B verifies us with a GET on it; 4. B's 201 means
 * B approved too; anything else takes our record back.
 */

static ngx_int_t
ngx_http_actingweb_trust_initiate(ngx_http_request_t *r)
{
    cJSON                          *in;
    ngx_int_t                       rc;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_trust_t     *ts;
    ngx_http_actingweb_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    ts = ctx->data;

    in = ngx_http_actingweb_trust_body(r, &rc);
    if (in == NULL) {
        return rc;
    }

    if (ngx_http_actingweb_trust_str(r, in, "url", &ts->url,
                                     NGX_HTTP_ACTINGWEB_TURL_MAX, 1) != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "relationship", &ts->rel,
                                        NGX_HTTP_ACTINGWEB_REL_MAX, 0)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "desc", &ts->desc,
                                        NGX_HTTP_ACTINGWEB_DESC_MAX, 0)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "type", &ts->type,
                                        NGX_HTTP_ACTINGWEB_DESC_MAX, 0)
           != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             ts->message);
    }

    if (ts->rel.len == 0) {
        ts->rel = alcf->default_relationship;
    }

    if (ngx_http_actingweb_trust_token(&ts->rel, NGX_HTTP_ACTINGWEB_REL_MAX)
        != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "relationship must be 1-64 "
                                             "letters, digits, \".\", \"_\" "
                                             "or \"-\"");
    }

    while (ts->url.len && ts->url.data[ts->url.len - 1] == '/') {
        ts->url.len--;
    }

    if (ngx_http_actingweb_trust_url(&ts->url) != NGX_OK) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "url must be the peer actor's "
                                             "http:// or https:// URL");
    }

    return ngx_http_actingweb_trust_begin(r);
}


/*
 * The same flow for this server's own use (devtest twins): a trust with
 * <url> as <rel>, then done() with 201, or with the error it would have
 * answered (our record is taken back then); done() returns what an
 * endpoint returns, and ctx->data is the caller's again when it runs.
 */

ngx_int_t
ngx_http_actingweb_trust_open(ngx_http_request_t *r, ngx_str_t *url,
    ngx_str_t *rel, ngx_http_actingweb_trust_done_pt done)
{
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ts = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_trust_t));
    if (ts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ts->url = *url;
    ts->rel = *rel;
    ts->opened = done;
    ts->owner = ctx->data;
    ts->finish = 1;

    ctx->data = ts;

    return ngx_http_actingweb_trust_begin(r);
}


static ngx_int_t
ngx_http_actingweb_trust_begin(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                    meta = ngx_string("/meta");
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    rc = ngx_http_actingweb_self_url(r, &ctx->actor_id, &ts->self);
    if (rc != NGX_OK) {
        return rc == NGX_ERROR
               ? NGX_HTTP_INTERNAL_SERVER_ERROR
               : ngx_http_actingweb_trust_end(r,
                                       NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "this server has no public URL for "
                                       "peers (actingweb_base_url)");
    }

    return ngx_http_actingweb_trust_call(r, NGX_HTTP_GET, &ts->url, &meta,
                                         NULL, ngx_http_actingweb_trust_meta);
}


static void
ngx_http_actingweb_trust_meta(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                    rc;
    ngx_str_t                    argv[5], type;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK || pc->status != NGX_HTTP_OK
        || !cJSON_IsObject(pc->json)
        || ngx_http_actingweb_json_str(pc->json, "id", &ts->peerid)
           != NGX_OK
        || ngx_http_actingweb_json_str(pc->json, "type", &type) != NGX_OK
        || type.len == 0
        || ngx_http_actingweb_trust_token(&ts->peerid,
                                          NGX_HTTP_ACTINGWEB_PEERID_MAX)
           != NGX_OK)
    {
        rc = ngx_http_actingweb_trust_fail(r, pc, NGX_HTTP_REQUEST_TIME_OUT,
                                           "peer's /meta gave no actor id "
                                           "and type");
        goto done;
    }

    if (ts->type.len
        && (ts->type.len != type.len
            || ngx_strncmp(ts->type.data, type.data, type.len) != 0))
    {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_BAD_REQUEST,
                                          "peer is not of the type asked "
                                          "for");
        goto done;
    }

    ts->type = type;

    if (ts->peerid.len == ctx->actor_id.len
        && ngx_strncmp(ts->peerid.data, ctx->actor_id.data,
                       ts->peerid.len) == 0)
    {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_BAD_REQUEST,
                                          "an actor cannot trust itself");
        goto done;
    }

    if (ngx_http_actingweb_trust_random(r, &ts->secret) != NGX_OK
        || ngx_http_actingweb_trust_random(r, &ts->verify) != NGX_OK
        || ngx_http_actingweb_trust_hash(r, &ts->secret, &ts->sechash)
           != NGX_OK
        || ngx_http_actingweb_trust_new_record(r, 1, 0, 1) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    argv[0] = ts->peerid;
    argv[1] = ts->record;
    argv[2] = ts->sechash;
    ngx_str_set(&argv[3], "1");
    ngx_str_null(&argv[4]);

    rc = ngx_http_actingweb_trust_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_PUT,
                                         argv, 5,
                                         ngx_http_actingweb_trust_stored);
    rc = ngx_http_actingweb_redis_started(r, rc);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* after TRUST_PUT, on either side */

static void
ngx_http_actingweb_trust_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                          *body;
    ngx_int_t                       rc;
    ngx_str_t                       path;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_trust_t     *ts;
    ngx_http_actingweb_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer == 0) {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_NOT_FOUND,
                                          "actor not found");
        goto done;
    }

    ts->approved = ngx_http_actingweb_trust_flag(ts->rec, "approved");

    if (reply->integer == -2) {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_FORBIDDEN,
                                          "a trust with this peer exists: "
                                          "a new request must be verified "
                                          "and come from the same "
                                          "baseuri");
        goto done;
    }

    if (reply->integer < 0) {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_FORBIDDEN,
                                          "trust secret refused");
        goto done;
    }

    if (ctx->nsegs == 1 && ts->opened == NULL) {
        /* we are B: the request is recorded */
        rc = ngx_http_actingweb_trust_send(r, ts->approved
                                              ? NGX_HTTP_CREATED
                                              : NGX_HTTP_ACCEPTED,
                                           ts->rec, 1);
        goto done;
    }

    /* we are A: now ask B */

    body = cJSON_CreateObject();
    if (body == NULL || ngx_http_actingweb_json_guard(r, body) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "baseuri", &ts->self)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "id", &ctx->actor_id)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "type", &alcf->type)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "secret", &ts->secret)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "desc", &ts->desc)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, body, "verify", &ts->verify)
           != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    path.len = sizeof("/trust/") - 1 + ts->rel.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_sprintf(path.data, "/trust/%V", &ts->rel);

    /*
     * our record exists now: the call runs to its end even if our client
     * leaves, so that a refusal still takes the record back
     */

    ts->finish = 1;

    rc = ngx_http_actingweb_trust_call(r, NGX_HTTP_POST, &ts->url, &path,
                                       body, ngx_http_actingweb_trust_asked);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_trust_asked(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                    rc;
    ngx_str_t                    argv[3];
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
        && (pc->status == NGX_HTTP_CREATED
            || pc->status == NGX_HTTP_ACCEPTED))
    {
        if (pc->status == NGX_HTTP_CREATED) {
            /* B approved at once */
            cJSON_ReplaceItemInObjectCaseSensitive(ts->rec, "peer_approved",
                                                   cJSON_CreateTrue());
            ngx_str_set(&argv[1], "{\"peer_approved\":true}");
            argv[0] = ts->peerid;
            ngx_str_null(&argv[2]);

            ts->status = NGX_HTTP_CREATED;

            rc = ngx_http_actingweb_trust_script(r,
                                        NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET,
                                        argv, 3,
                                        ngx_http_actingweb_trust_updated);
            rc = ngx_http_actingweb_redis_started(r, rc);
            goto done;
        }

        rc = ngx_http_actingweb_trust_send(r, NGX_HTTP_CREATED, ts->rec, 1);
        goto done;
    }

    /* B refused or could not be asked: take our record back first */

    if (pc->error == NGX_HTTP_ACTINGWEB_PEER_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: peer \"%V\" answered %ui to a trust "
                      "request", &ts->url, pc->status);
        ts->status = NGX_HTTP_REQUEST_TIME_OUT;
        ts->message = "peer did not accept the trust request";

    } else {
        ts->status = ngx_http_actingweb_peer_status(pc);
        ts->message = pc->message;
    }

    argv[0] = ts->peerid;
    argv[1] = ts->sechash;

    rc = ngx_http_actingweb_trust_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_DEL,
                                         argv, 2,
                                         ngx_http_actingweb_trust_undone);
    rc = ngx_http_actingweb_redis_started(r, rc);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_trust_undone(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                    rc;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: trust with \"%V\" could not be taken "
                      "back after the peer refused", &ts->peerid);
    }

    rc = ngx_http_actingweb_trust_end(r, ts->status, ts->message);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * POST /trust/<rel> from a would-be peer: check what it claims with the
 * reverse GET on its own record of us (Bearer: the secret it sent), then
 * store; approved at once when actingweb_auto_approve names <rel>.
 */

static ngx_int_t
ngx_http_actingweb_trust_receive(ngx_http_request_t *r)
{
    cJSON                       *in;
    ngx_int_t                    rc;
    ngx_str_t                    path, baseuri;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    in = ngx_http_actingweb_trust_body(r, &rc);
    if (in == NULL) {
        return rc;
    }

    if (ngx_http_actingweb_trust_str(r, in, "baseuri", &baseuri,
                                     NGX_HTTP_ACTINGWEB_TURL_MAX, 1) != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "id", &ts->peerid,
                                        NGX_HTTP_ACTINGWEB_PEERID_MAX, 1)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "type", &ts->type,
                                        NGX_HTTP_ACTINGWEB_DESC_MAX, 1)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "secret", &ts->secret,
                                        NGX_HTTP_ACTINGWEB_REL_MAX * 4, 1)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "desc", &ts->desc,
                                        NGX_HTTP_ACTINGWEB_DESC_MAX, 0)
           != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "verify", &ts->verify,
                                        NGX_HTTP_ACTINGWEB_REL_MAX * 4, 0)
           != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             ts->message);
    }

    while (baseuri.len && baseuri.data[baseuri.len - 1] == '/') {
        baseuri.len--;
    }

    ts->url = baseuri;

    if (ngx_http_actingweb_trust_url(&ts->url) != NGX_OK
        || ngx_http_actingweb_trust_token(&ts->peerid,
                                          NGX_HTTP_ACTINGWEB_PEERID_MAX)
           != NGX_OK
        || ngx_http_actingweb_trust_token(&ts->secret,
                                          NGX_HTTP_ACTINGWEB_REL_MAX * 4)
           != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "baseuri must be an http(s) "
                                             "URL; id and secret letters, "
                                             "digits, \".\", \"_\" or \"-\"");
    }

    if (ts->peerid.len == ctx->actor_id.len
        && ngx_strncmp(ts->peerid.data, ctx->actor_id.data,
                       ts->peerid.len) == 0)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "an actor cannot trust itself");
    }

    /* an actor's root is its factory's URL and its id */

    if (ts->url.len <= ts->peerid.len
        || ts->url.data[ts->url.len - ts->peerid.len - 1] != '/'
        || ngx_strncmp(ts->url.data + ts->url.len - ts->peerid.len,
                       ts->peerid.data, ts->peerid.len) != 0)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "baseuri must be the "
                                             "requester's root, ending in "
                                             "its id");
    }

    rc = ngx_http_actingweb_self_url(r, &ctx->actor_id, &ts->self);
    if (rc != NGX_OK) {
        return rc == NGX_ERROR
               ? NGX_HTTP_INTERNAL_SERVER_ERROR
               : ngx_http_actingweb_send_error(r,
                                       NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "this server has no public URL for "
                                       "peers (actingweb_base_url)");
    }

    ts->approved = ngx_http_actingweb_trust_auto(r, &ts->rel);

    if (ts->verify.len == 0) {
        /* nothing to verify with: stored as unverified */
        ngx_http_actingweb_peer_call_t  none;

        ngx_memzero(&none, sizeof(ngx_http_actingweb_peer_call_t));
        none.error = NGX_HTTP_ACTINGWEB_PEER_FAILED;
        ngx_http_actingweb_trust_verified(r, &none);
        return NGX_DONE;
    }

    path.len = sizeof("/trust//") - 1 + ts->rel.len + ctx->actor_id.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path.data, "/trust/%V/%V", &ts->rel, &ctx->actor_id);

    return ngx_http_actingweb_trust_call(r, NGX_HTTP_GET, &ts->url, &path,
                                         NULL,
                                         ngx_http_actingweb_trust_verified);
}


static void
ngx_http_actingweb_trust_verified(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                    rc;
    ngx_str_t                    argv[5];
    ngx_uint_t                   verified;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (pc->error == NGX_HTTP_ACTINGWEB_PEER_DENIED
        || pc->error == NGX_HTTP_ACTINGWEB_PEER_BAD_URL)
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                           pc->message);
        goto done;
    }

    verified = pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
               && pc->status == NGX_HTTP_OK
               && cJSON_IsObject(pc->json)
               && (ngx_http_actingweb_trust_is(pc->json, "verification_token",
                                               &ts->verify)
                   || ngx_http_actingweb_trust_is(pc->json,
                                                  "verificationToken",
                                                  &ts->verify));

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb trust request from \"%V\" verified:%ui",
                   &ts->peerid, verified);

    if (ngx_http_actingweb_trust_random(r, &ts->verify) != NGX_OK
        || ngx_http_actingweb_trust_hash(r, &ts->secret, &ts->sechash)
           != NGX_OK
        || ngx_http_actingweb_trust_new_record(r, ts->approved && verified,
                                               1, verified)
           != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    argv[0] = ts->peerid;
    argv[1] = ts->record;
    argv[2] = ts->sechash;

    if (verified) {
        ngx_str_set(&argv[3], "1");
    } else {
        ngx_str_set(&argv[3], "0");
    }

    argv[4] = ts->url;

    rc = ngx_http_actingweb_trust_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_PUT,
                                         argv, 5,
                                         ngx_http_actingweb_trust_stored);
    rc = ngx_http_actingweb_redis_started(r, rc);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * GET|POST /trust/<rel>/<peer>.  The peer itself (its token, for this
 * path only) reads our record of it to verify us, 200 once we approved,
 * 403 before; it POSTs {"approved":true} when it approved us.  The
 * creator reads: 200 approved, 202 waiting for our approval.
 */

static ngx_int_t
ngx_http_actingweb_trust_one(ngx_http_request_t *r)
{
    cJSON                       *in, *item;
    ngx_int_t                    rc;
    ngx_str_t                    argv[3];
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (ctx->peer) {
        if (ngx_http_actingweb_trust_owner(r, ctx, ts, &rc) != NGX_OK) {
            return rc;
        }

        if (ctx->method == NGX_HTTP_GET) {
            if (!ngx_http_actingweb_trust_flag(ctx->peer, "approved")) {
                return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                                     "trust not approved "
                                                     "yet");
            }

            return ngx_http_actingweb_trust_send(r, NGX_HTTP_OK, ctx->peer,
                                                 0);
        }

        /* POST: the peer tells us it approved */

        in = ngx_http_actingweb_trust_body(r, &rc);
        if (in == NULL) {
            return rc;
        }

        item = cJSON_GetObjectItemCaseSensitive(in, "approved");

        if (!cJSON_IsBool(item)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "\"approved\" must be "
                                                 "true or false");
        }

        argv[0] = ts->peerid;

        if (cJSON_IsTrue(item)) {
            ngx_str_set(&argv[1], "{\"peer_approved\":true}");
        } else {
            ngx_str_set(&argv[1], "{\"peer_approved\":false}");
        }

        argv[2] = ts->rel;
        ts->status = NGX_HTTP_NO_CONTENT;

        rc = ngx_http_actingweb_trust_script(r,
                                        NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET,
                                        argv, 3,
                                        ngx_http_actingweb_trust_updated);
        return ngx_http_actingweb_redis_started(r, rc);
    }

    if (ctx->method == NGX_HTTP_POST) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "only the peer notifies its "
                                             "approval");
    }

    return ngx_http_actingweb_trust_get(r, &ts->peerid,
                                        ngx_http_actingweb_trust_got);
}


/* the creator's GET, or the record read before a creator's DELETE */

static void
ngx_http_actingweb_trust_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                    rc;
    ngx_str_t                    path, secret;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (ngx_http_actingweb_trust_parse(r, reply, &ts->rec) == NGX_ERROR) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (ts->rec == NULL
        || !ngx_http_actingweb_trust_is(ts->rec, "relationship", &ts->rel))
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such trust");
        goto done;
    }

    if (ctx->method == NGX_HTTP_GET) {
        rc = ngx_http_actingweb_trust_send(r,
                         ngx_http_actingweb_trust_flag(ts->rec, "approved")
                         ? NGX_HTTP_OK : NGX_HTTP_ACCEPTED, ts->rec, 0);
        goto done;
    }

    /* DELETE by the creator: the peer first, unless it asked itself */

    if (ngx_http_arg(r, (u_char *) "peer", 4, &path) == NGX_OK
        && path.len == 4 && ngx_strncmp(path.data, "true", 4) == 0)
    {
        rc = ngx_http_actingweb_trust_remove(r);
        goto done;
    }

    if (ngx_http_actingweb_json_str(ts->rec, "baseuri", &ts->url)
        != NGX_OK
        || ngx_http_actingweb_json_str(ts->rec, "secret", &secret)
           != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ts->secret = secret;

    path.len = sizeof("/trust//") - 1 + ts->rel.len + ctx->actor_id.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_sprintf(path.data, "/trust/%V/%V", &ts->rel, &ctx->actor_id);

    rc = ngx_http_actingweb_trust_call(r, NGX_HTTP_DELETE, &ts->url, &path,
                                       NULL,
                                       ngx_http_actingweb_trust_revoked);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * PUT /trust/<rel>/<peer> {approved, desc, baseuri}: save first (the
 * peer may act on our approval at once), then tell the peer when we
 * approved just now; the answer does not wait for its success.
 */

static ngx_int_t
ngx_http_actingweb_trust_update(ngx_http_request_t *r)
{
    cJSON                       *in, *item, *set;
    ngx_int_t                    rc;
    ngx_str_t                    argv[3], baseuri;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (ctx->peer) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "a peer cannot change our "
                                             "trust");
    }

    in = ngx_http_actingweb_trust_body(r, &rc);
    if (in == NULL) {
        return rc;
    }

    set = cJSON_CreateObject();
    if (set == NULL || ngx_http_actingweb_json_guard(r, set) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "approved");

    if (item) {
        if (!cJSON_IsBool(item)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "\"approved\" must be "
                                                 "true or false");
        }

        ts->approved = cJSON_IsTrue(item) ? 1 : 0;
        ts->notify = ts->approved;
        cJSON_AddBoolToObject(set, "approved", ts->approved);
    }

    if (ngx_http_actingweb_trust_str(r, in, "desc", &ts->desc,
                                     NGX_HTTP_ACTINGWEB_DESC_MAX, 0) != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "baseuri", &baseuri,
                                        NGX_HTTP_ACTINGWEB_TURL_MAX, 0)
           != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             ts->message);
    }

    if (cJSON_GetObjectItemCaseSensitive(in, "desc")) {
        ngx_http_actingweb_json_add_str(r, set, "desc", &ts->desc);
    }

    if (baseuri.len) {
        while (baseuri.len && baseuri.data[baseuri.len - 1] == '/') {
            baseuri.len--;
        }

        if (ngx_http_actingweb_trust_url(&baseuri) != NGX_OK) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "baseuri must be an "
                                                 "http(s) URL");
        }

        ngx_http_actingweb_json_add_str(r, set, "baseuri", &baseuri);
        ts->url = baseuri;
    }

    if (ngx_http_actingweb_json_print(r, set, &argv[1]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = ts->peerid;
    argv[2] = ts->rel;
    ts->status = NGX_HTTP_NO_CONTENT;

    rc = ngx_http_actingweb_trust_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET,
                                         argv, 3,
                                         ngx_http_actingweb_trust_updated);

    return ngx_http_actingweb_redis_started(r, rc);
}


/* after TRUST_SET: the old record, or nil */

static void
ngx_http_actingweb_trust_updated(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                       *old, *body;
    ngx_int_t                    rc;
    ngx_str_t                    path;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (ngx_http_actingweb_trust_parse(r, reply, &old) == NGX_ERROR) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (old == NULL) {
        rc = ngx_http_actingweb_trust_end(r, NGX_HTTP_NOT_FOUND,
                                          "no such trust");
        goto done;
    }

    if (ts->status == NGX_HTTP_CREATED) {
        /* A: B approved at once, our record says so now */
        rc = ngx_http_actingweb_trust_send(r, NGX_HTTP_CREATED, ts->rec, 1);
        goto done;
    }

    if (!ts->notify || ngx_http_actingweb_trust_flag(old, "approved")) {
        rc = ngx_http_actingweb_send_no_content(r);
        goto done;
    }

    /* approved just now: tell the peer */

    if ((ts->url.len == 0
         && ngx_http_actingweb_json_str(old, "baseuri", &ts->url)
            != NGX_OK)
        || ngx_http_actingweb_json_str(old, "secret", &ts->secret)
           != NGX_OK)
    {
        rc = ngx_http_actingweb_send_no_content(r);
        goto done;
    }

    body = cJSON_CreateObject();
    if (body == NULL || ngx_http_actingweb_json_guard(r, body) != NGX_OK
        || cJSON_AddTrueToObject(body, "approved") == NULL)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    path.len = sizeof("/trust//") - 1 + ts->rel.len + ctx->actor_id.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_sprintf(path.data, "/trust/%V/%V", &ts->rel, &ctx->actor_id);

    rc = ngx_http_actingweb_trust_call(r, NGX_HTTP_POST, &ts->url, &path,
                                       body,
                                       ngx_http_actingweb_trust_notified);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        /* saved; only the notification could not go out */
        rc = ngx_http_actingweb_send_no_content(r);
    }

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_trust_notified(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK
        || pc->status < 200 || pc->status > 299)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: peer \"%V\" was not told of the approval "
                      "(%s, status %ui)", &ts->peerid,
                      pc->message ? pc->message : "answered", pc->status);
    }

    ngx_http_finalize_request(r, ngx_http_actingweb_send_no_content(r));
}


/* the peer's answer to our DELETE: 2xx or 404 both mean it is gone */

static void
ngx_http_actingweb_trust_revoked(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                    rc;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
        && ((pc->status >= 200 && pc->status <= 299)
            || pc->status == NGX_HTTP_NOT_FOUND))
    {
        rc = ngx_http_actingweb_trust_remove(r);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: peer \"%V\" did not confirm the trust "
                      "deletion (%s, status %ui), trust kept", &ts->peerid,
                      pc->message ? pc->message : "answered", pc->status);
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                           "peer could not be told; the "
                                           "trust is kept");
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * DELETE /trust/<rel>/<peer>: by the peer itself, or by the creator once
 * the peer knows (trust_got); the trust and its secret go together.
 */

static ngx_int_t
ngx_http_actingweb_trust_remove(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                    argv[2];
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (ctx->peer) {
        if (ngx_http_actingweb_trust_owner(r, ctx, ts, &rc) != NGX_OK) {
            return rc;
        }

    } else if (ts->rec == NULL) {
        /* the creator: read the record, tell the peer (trust_got) */

        return ngx_http_actingweb_trust_get(r, &ts->peerid,
                                            ngx_http_actingweb_trust_got);
    }

    argv[0] = ts->peerid;
    ngx_str_null(&argv[1]);

    rc = ngx_http_actingweb_trust_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_DEL,
                                         argv, 2,
                                         ngx_http_actingweb_trust_removed);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_trust_removed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                    rc;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);

    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: trust with \"%V\" deleted", &ts->peerid);
        rc = ngx_http_actingweb_send_no_content(r);

    } else {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such trust");
    }

    ngx_http_finalize_request(r, rc);
}


/* PUT /trust/trustee {trustee_root, creator}, DELETE /trust/trustee */

static ngx_int_t
ngx_http_actingweb_trustee(ngx_http_request_t *r)
{
    cJSON                            *in;
    ngx_int_t                         rc;
    ngx_str_t                         root, creator;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_trust_t       *ts;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    a = ngx_http_actingweb_redis_args(r, 6);
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->method == NGX_HTTP_DELETE) {
        if (ngx_http_actingweb_redis_arg(a, (u_char *) "HDEL", 4) != NGX_OK
            || ngx_http_actingweb_redis_keys(r, a, "actor", NULL) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, (u_char *) "trustee_root", 12)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto send;
    }

    in = ngx_http_actingweb_trust_body(r, &rc);
    if (in == NULL) {
        return rc;
    }

    if (ngx_http_actingweb_trust_str(r, in, "trustee_root", &root,
                                     NGX_HTTP_ACTINGWEB_TURL_MAX, 1) != NGX_OK
        || ngx_http_actingweb_trust_str(r, in, "creator", &creator,
                                        NGX_HTTP_ACTINGWEB_NAME_MAX, 0)
           != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             ts->message);
    }

    if (ngx_http_actingweb_trust_url(&root) != NGX_OK) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "trustee_root must be an "
                                             "http(s) URL");
    }

    if (ngx_http_actingweb_redis_arg(a, (u_char *) "HSET", 4) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "actor", NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) "trustee_root", 12)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, root.data, root.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* "creator" is accepted as the spec asks, but does not rename */

send:

    rc = ngx_http_actingweb_redis_command(r, a,
                                          ngx_http_actingweb_trustee_done);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_trustee_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t  rc;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);

    } else {
        rc = ngx_http_actingweb_send_no_content(r);
    }

    ngx_http_finalize_request(r, rc);
}


/* a trust script with the keys it declares, then its arguments */

static ngx_int_t
ngx_http_actingweb_trust_script(ngx_http_request_t *r,
    ngx_http_actingweb_script_e script, ngx_str_t *argv, ngx_uint_t argc,
    ngx_http_actingweb_redis_handler_pt handler)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_redis_args(r, 3 + argc);
    if (a == NULL) {
        return NGX_ERROR;
    }

    switch (script) {

    case NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET:
        rc = ngx_http_actingweb_redis_keys(r, a, "trust", NULL);
        break;

    case NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_AUTH:
        rc = ngx_http_actingweb_redis_keys(r, a, "trust", "trustsec", NULL);
        break;

    case NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_DEL:
        rc = ngx_http_actingweb_redis_keys(r, a, "actor", "trust",
                                           "trustsec", "subs", "diffs",
                                           "subpeer", "outsubs", "remote",
                                           NULL);
        break;

    default:
        rc = ngx_http_actingweb_redis_keys(r, a, "actor", "trust",
                                           "trustsec", NULL);
        break;
    }

    for (i = 0; rc == NGX_OK && i < argc; i++) {
        rc = ngx_http_actingweb_redis_arg(a, argv[i].data, argv[i].len);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_script(r, script, a, handler);
}


/*
 * A call to <base><path> with the trust's secret as Bearer (if any) and a
 * JSON body.  Returns what an endpoint returns: NGX_DONE when it runs, or
 * the result of answering a refusal at once.
 */

static ngx_int_t
ngx_http_actingweb_trust_call(ngx_http_request_t *r, ngx_uint_t method,
    ngx_str_t *base, ngx_str_t *path, cJSON *body,
    ngx_http_actingweb_peer_handler_pt handler)
{
    ngx_http_actingweb_trust_t      *ts;
    ngx_http_actingweb_peer_call_t  *pc;

    ts = ngx_http_actingweb_trust_state(r);

    /* one record per call: the request keeps a list of them */

    pc = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peer_call_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->method = method;
    pc->handler = handler;
    pc->finish = ts->finish;
    pc->url.len = base->len + path->len;
    pc->url.data = ngx_pnalloc(r->pool, pc->url.len);
    if (pc->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(pc->url.data, base->data, base->len), path->data,
               path->len);

    if (method != NGX_HTTP_GET || path->len > sizeof("/meta") - 1) {
        pc->secret = ts->secret;
    }

    if (body && ngx_http_actingweb_json_print(r, body, &pc->body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_peer_run(r, pc);
}


/* ts->record and ts->rec from what the flow has gathered */

static ngx_int_t
ngx_http_actingweb_trust_new_record(ngx_http_request_t *r,
    ngx_uint_t approved, ngx_uint_t peer_approved, ngx_uint_t verified)
{
    cJSON                     *rec;
    ngx_str_t                  created;
    ngx_http_actingweb_ctx_t  *ctx;
    ngx_http_actingweb_trust_t  *ts;
    u_char                     buf[NGX_TIME_T_LEN];

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    rec = cJSON_CreateObject();
    if (rec == NULL || ngx_http_actingweb_json_guard(r, rec) != NGX_OK) {
        return NGX_ERROR;
    }

    created.data = buf;
    created.len = ngx_sprintf(buf, "%T", ngx_time()) - buf;

    if (ngx_http_actingweb_json_add_str(r, rec, "peerid", &ts->peerid)
        != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "baseuri", &ts->url)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "type", &ts->type)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "relationship", &ts->rel)
           != NGX_OK
        || ngx_http_actingweb_trust_seal(r, rec, &ts->peerid, &ts->secret)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "desc", &ts->desc)
           != NGX_OK
        || cJSON_AddBoolToObject(rec, "approved", approved) == NULL
        || cJSON_AddBoolToObject(rec, "peer_approved", peer_approved) == NULL
        || cJSON_AddBoolToObject(rec, "verified", verified) == NULL
        || ngx_http_actingweb_json_add_str(r, rec, "verification_token",
                                           &ts->verify) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "created", &created)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "_sh", &ts->sechash)
           != NGX_OK
        || ngx_http_actingweb_json_print(r, rec, &ts->record) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a sealed secret: the views of this request show it in clear */

    if (!cJSON_HasObjectItem(rec, "secret")
        && ngx_http_actingweb_json_add_str(r, rec, "secret", &ts->secret)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ts->rec = rec;

    return NGX_OK;
}


/* the record as peers and the creator see it, with Location if asked */

static ngx_int_t
ngx_http_actingweb_trust_send(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *rec, ngx_uint_t location)
{
    cJSON                       *view;
    ngx_str_t                    url;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (ts->opened) {
        return ngx_http_actingweb_trust_end(r, status, NULL);
    }

    view = ngx_http_actingweb_trust_view(r, rec);
    if (view == NULL || ngx_http_actingweb_json_guard(r, view) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (location) {
        url.len = ts->self.len + sizeof("/trust//") - 1 + ts->rel.len
                  + ts->peerid.len;
        url.data = ngx_pnalloc(r->pool, url.len);
        if (url.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(url.data, "%V/trust/%V/%V", &ts->self, &ts->rel,
                    &ts->peerid);

        if (ngx_http_actingweb_set_location(r, &url) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_actingweb_send_json(r, status, view);
}


/* a new tree (the caller owns it): stored fields less internal ones */

static cJSON *
ngx_http_actingweb_trust_view(ngx_http_request_t *r, cJSON *rec)
{
    cJSON                     *view, *item;
    ngx_http_actingweb_ctx_t  *ctx;

    static const char  *fields[] = {
        "peerid", "baseuri", "type", "relationship", "secret", "desc",
        "approved", "peer_approved", "verified", "verification_token",
        NULL
    };
    const char        **f;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    view = cJSON_CreateObject();
    if (view == NULL) {
        return NULL;
    }

    if (ngx_http_actingweb_json_add_str(r, view, "id", &ctx->actor_id)
        != NGX_OK)
    {
        cJSON_Delete(view);
        return NULL;
    }

    for (f = fields; *f; f++) {
        item = cJSON_GetObjectItemCaseSensitive(rec, *f);
        if (item) {
            cJSON_AddItemToObject(view, *f, cJSON_Duplicate(item, 1));
        }
    }

    /* the spec's name for the token, beside the reference's */

    item = cJSON_GetObjectItemCaseSensitive(rec, "verification_token");
    if (item) {
        cJSON_AddItemToObject(view, "verificationToken",
                              cJSON_Duplicate(item, 1));
    }

    return view;
}


/* answers a failed peer call: the call's own error, or the given one */

static ngx_int_t
ngx_http_actingweb_trust_fail(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, ngx_uint_t status,
    const char *message)
{
    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        return ngx_http_actingweb_trust_end(r,
                                       ngx_http_actingweb_peer_status(pc),
                                       pc->message);
    }

    return ngx_http_actingweb_trust_end(r, status, message);
}


/* an error answer, or the end of a trust_open() flow (its caller's turn) */

static ngx_int_t
ngx_http_actingweb_trust_end(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    if (ts->opened == NULL) {
        return ngx_http_actingweb_send_error(r, status, message);
    }

    ctx->data = ts->owner;

    return ts->opened(r, status, message);
}


/* the request body as a JSON (or form) object; NULL: answered, see *rc */

static cJSON *
ngx_http_actingweb_trust_body(ngx_http_request_t *r, ngx_int_t *rc)
{
    cJSON                     *in;
    ngx_int_t                  frc;
    const char                *err;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    in = NULL;
    err = "body must be a JSON object";

    if (ctx->body.len && ngx_http_actingweb_is_form(r, &ctx->body)) {
        frc = ngx_http_actingweb_form_parse(r, &ctx->body, &in, &err);
        if (frc == NGX_ERROR) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NULL;
        }

    } else if (ctx->body.len) {
        in = ngx_http_actingweb_json_parse(r, ctx->body.data, ctx->body.len,
                                           &err);
    }

    if (!cJSON_IsObject(in)) {
        *rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
        return NULL;
    }

    return in;
}


/* a string member: NGX_OK (absent/null leaves out empty unless required) */

static ngx_int_t
ngx_http_actingweb_trust_str(ngx_http_request_t *r, cJSON *in,
    const char *name, ngx_str_t *out, size_t max, ngx_uint_t required)
{
    cJSON                       *item;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    item = cJSON_GetObjectItemCaseSensitive(in, name);

    if (item == NULL || cJSON_IsNull(item)) {
        if (required) {
            ts->message = ngx_pnalloc(r->pool, 64);
            if (ts->message) {
                ngx_sprintf((u_char *) ts->message, "\"%s\" is required%Z",
                            name);
            }

            return NGX_DECLINED;
        }

        ngx_str_null(out);
        return NGX_OK;
    }

    out->data = cJSON_IsString(item) ? (u_char *) item->valuestring : NULL;
    out->len = out->data ? ngx_strlen(out->data) : 0;

    if (out->data == NULL || out->len > max
        || (required && out->len == 0))
    {
        ts->message = ngx_pnalloc(r->pool, 64);
        if (ts->message) {
            ngx_sprintf((u_char *) ts->message,
                        "\"%s\" must be a string of 1-%uz bytes%Z",
                        name, max);
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A peer's token works only on its own /trust/<rel>/<peer>: NGX_OK, or
 * NGX_DECLINED with the refusal sent (*rc)
 */

static ngx_int_t
ngx_http_actingweb_trust_owner(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_http_actingweb_trust_t *ts,
    ngx_int_t *rc)
{
    if (!ngx_http_actingweb_trust_is(ctx->peer, "peerid", &ts->peerid)) {
        *rc = ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                            "this token is not for this "
                                            "peer");
        return NGX_DECLINED;
    }

    if (!ngx_http_actingweb_trust_is(ctx->peer, "relationship", &ts->rel)) {
        *rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "no such relationship");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* relationship names, peer ids and secrets: [A-Za-z0-9._-]{1,max} */

static ngx_int_t
ngx_http_actingweb_trust_token(ngx_str_t *s, size_t max)
{
    u_char  *p, *last;

    if (s->len == 0 || s->len > max) {
        return NGX_DECLINED;
    }

    last = s->data + s->len;

    for (p = s->data; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_trust_url(ngx_str_t *url)
{
    ngx_http_actingweb_peer_call_t  pc;

    /* the peer client's own parser decides what it can call */

    ngx_memzero(&pc, sizeof(ngx_http_actingweb_peer_call_t));
    pc.url = *url;

    return ngx_http_actingweb_peer_url_valid(&pc);
}


/*
 * hex SHA-256, or HMAC-SHA256 with actingweb_secret_key: the secret index
 * never holds a usable secret
 */

ngx_int_t
ngx_http_actingweb_trust_hash(ngx_http_request_t *r, ngx_str_t *secret,
    ngx_str_t *out)
{
    u_char                          md[EVP_MAX_MD_SIZE];
    unsigned int                    len;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->secret_keys) {
        /* keyed: a dump of Redis gives no offline guessing of secrets */
        if (HMAC(EVP_sha256(), amcf->index_key, sizeof(amcf->index_key),
                 secret->data, secret->len, md, &len)
            == NULL)
        {
            return NGX_ERROR;
        }

    } else if (EVP_Digest(secret->data, secret->len, md, &len,
                          EVP_sha256(), NULL)
               != 1)
    {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(r->pool, 2 * len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_hex_dump(out->data, md, len) - out->data;

    return NGX_OK;
}


/*
 * The secret as stored: "secret" in clear text, or with
 * actingweb_secret_key "secret_enc": base64(key id | nonce | AES-256-GCM
 * ciphertext | tag), the peer id as additional data (a sealed secret
 * cannot be moved to another trust record)
 */

static ngx_int_t
ngx_http_actingweb_trust_seal(ngx_http_request_t *r, cJSON *rec,
    ngx_str_t *peerid, ngx_str_t *secret)
{
    u_char                           *raw, *p;
    int                               n;
    ngx_int_t                         rc;
    ngx_str_t                         src, enc;
    EVP_CIPHER_CTX                   *cx;
    ngx_http_actingweb_secret_key_t  *k;
    ngx_http_actingweb_main_conf_t   *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->secret_keys == NULL) {
        return ngx_http_actingweb_json_add_str(r, rec, "secret", secret);
    }

    k = amcf->secret_keys->elts;

    raw = ngx_pnalloc(r->pool, 1 + NGX_HTTP_ACTINGWEB_GCM_NONCE + secret->len
                               + NGX_HTTP_ACTINGWEB_GCM_TAG);
    if (raw == NULL) {
        return NGX_ERROR;
    }

    raw[0] = (u_char) k->id;
    p = raw + 1;

    if (RAND_bytes(p, NGX_HTTP_ACTINGWEB_GCM_NONCE) != 1) {
        return NGX_ERROR;
    }

    cx = EVP_CIPHER_CTX_new();
    if (cx == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_EncryptInit_ex(cx, EVP_aes_256_gcm(), NULL, k->key, p) != 1
        || EVP_EncryptUpdate(cx, NULL, &n, peerid->data, (int) peerid->len)
           != 1
        || EVP_EncryptUpdate(cx, p + NGX_HTTP_ACTINGWEB_GCM_NONCE, &n,
                             secret->data, (int) secret->len)
           != 1
        || EVP_EncryptFinal_ex(cx, p + NGX_HTTP_ACTINGWEB_GCM_NONCE + n, &n)
           != 1
        || EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG,
                               NGX_HTTP_ACTINGWEB_GCM_TAG,
                               p + NGX_HTTP_ACTINGWEB_GCM_NONCE + secret->len)
           != 1)
    {
        goto done;
    }

    src.data = raw;
    src.len = 1 + NGX_HTTP_ACTINGWEB_GCM_NONCE + secret->len
              + NGX_HTTP_ACTINGWEB_GCM_TAG;

    enc.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(src.len));
    if (enc.data == NULL) {
        goto done;
    }

    ngx_encode_base64(&enc, &src);

    rc = ngx_http_actingweb_json_add_str(r, rec, "secret_enc", &enc);

done:

    EVP_CIPHER_CTX_free(cx);

    return rc;
}


/*
 * A stored trust record, parsed, with a sealed secret opened into
 * "secret" (in memory only).  NULL with *err for a record that does not
 * parse or whose secret does not open (unknown key id, altered).
 */

cJSON *
ngx_http_actingweb_trust_record(ngx_http_request_t *r, u_char *data,
    size_t len, const char **err)
{
    int                               n;
    cJSON                            *rec, *enc, *peerid;
    u_char                           *out;
    size_t                            plen;
    ngx_str_t                         src, raw;
    ngx_uint_t                        i;
    EVP_CIPHER_CTX                   *cx;
    ngx_http_actingweb_secret_key_t  *k;
    ngx_http_actingweb_main_conf_t   *amcf;

    rec = ngx_http_actingweb_json_parse(r, data, len, err);

    enc = cJSON_GetObjectItemCaseSensitive(rec, "secret_enc");
    if (!cJSON_IsString(enc)) {
        return rec;
    }

    *err = "trust secret cannot be decrypted";

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    peerid = cJSON_GetObjectItemCaseSensitive(rec, "peerid");

    if (amcf->secret_keys == NULL || !cJSON_IsString(peerid)) {
        goto failed;
    }

    src.data = (u_char *) enc->valuestring;
    src.len = ngx_strlen(src.data);

    raw.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(src.len));
    if (raw.data == NULL) {
        return NULL;
    }

    if (ngx_decode_base64(&raw, &src) != NGX_OK
        || raw.len < 1 + NGX_HTTP_ACTINGWEB_GCM_NONCE
                     + NGX_HTTP_ACTINGWEB_GCM_TAG)
    {
        goto failed;
    }

    k = amcf->secret_keys->elts;

    for (i = 0; i < amcf->secret_keys->nelts; i++) {
        if (k[i].id == raw.data[0]) {
            break;
        }
    }

    if (i == amcf->secret_keys->nelts) {
        goto failed;
    }

    plen = raw.len - 1 - NGX_HTTP_ACTINGWEB_GCM_NONCE
           - NGX_HTTP_ACTINGWEB_GCM_TAG;

    out = ngx_pnalloc(r->pool, plen + 1);
    if (out == NULL) {
        return NULL;
    }

    cx = EVP_CIPHER_CTX_new();
    if (cx == NULL) {
        return NULL;
    }

    if (EVP_DecryptInit_ex(cx, EVP_aes_256_gcm(), NULL, k[i].key,
                           raw.data + 1)
        != 1
        || EVP_DecryptUpdate(cx, NULL, &n, (u_char *) peerid->valuestring,
                             (int) ngx_strlen(peerid->valuestring))
           != 1
        || EVP_DecryptUpdate(cx, out, &n,
                             raw.data + 1 + NGX_HTTP_ACTINGWEB_GCM_NONCE,
                             (int) plen)
           != 1
        || EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG,
                               NGX_HTTP_ACTINGWEB_GCM_TAG,
                               raw.data + raw.len
                               - NGX_HTTP_ACTINGWEB_GCM_TAG)
           != 1
        || EVP_DecryptFinal_ex(cx, out + n, &n) != 1)
    {
        EVP_CIPHER_CTX_free(cx);
        goto failed;
    }

    EVP_CIPHER_CTX_free(cx);

    out[plen] = '\0';

    if (cJSON_AddStringToObject(rec, "secret", (char *) out) == NULL) {
        return NULL;
    }

    return rec;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "actingweb: trust secret of \"%s\" cannot be decrypted "
                  "(unknown key id or altered record)",
                  cJSON_IsString(peerid) ? peerid->valuestring : "?");

    return NULL;
}


/*
 * actingweb_secret_key FILE: lines "ID HEX", ID 1..255, HEX 64 hex digits
 * (32 bytes); the first line encrypts, every line decrypts its own id.
 * The index key is derived from the last line, the oldest key, so that a
 * rotation (a new first line) keeps the Bearer lookups working.
 */

char *
ngx_http_actingweb_secret_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_main_conf_t *amcf = conf;

    u_char                           *p, *end, *eol, *sp;
    ssize_t                           n;
    ngx_int_t                         id;
    ngx_str_t                        *value, name;
    ngx_file_t                        file;
    ngx_file_info_t                   fi;
    unsigned int                      len;
    ngx_http_actingweb_secret_key_t  *k;
    u_char                            key[32];
    u_char                            buf[4096];

    if (amcf->secret_keys != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_CONF_ERROR;
    }

    n = NGX_ERROR;

    if (ngx_fd_info(file.fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) < (off_t) sizeof(buf))
    {
        n = ngx_read_file(&file, buf, sizeof(buf), 0);
    }

    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read \"%V\" (at most 4k)", &name);
        return NGX_CONF_ERROR;
    }

    amcf->secret_keys = ngx_array_create(cf->pool, 2,
                                  sizeof(ngx_http_actingweb_secret_key_t));
    if (amcf->secret_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    k = NULL;

    for (p = buf, end = buf + n; p < end; p = eol + 1) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        while (eol > p && (eol[-1] == '\r' || eol[-1] == ' ')) {
            eol--;
        }

        if (eol == p || *p == '#') {
            eol = ngx_strlchr(p, end, '\n');
            if (eol == NULL) {
                break;
            }
            continue;
        }

        sp = ngx_strlchr(p, eol, ' ');
        id = sp ? ngx_atoi(p, sp - p) : NGX_ERROR;

        if (id < 1 || id > 255 || eol - sp - 1 != 64
            || ngx_http_actingweb_unhex(sp + 1, 32, key) != NGX_OK)
        {
            ngx_explicit_memzero(buf, sizeof(buf));
            ngx_explicit_memzero(key, sizeof(key));
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": each line must be \"ID HEX\" with "
                               "ID 1..255 and 64 hex digits", &name);
            return NGX_CONF_ERROR;
        }

        k = ngx_array_push(amcf->secret_keys);
        if (k == NULL) {
            return NGX_CONF_ERROR;
        }

        k->id = id;
        ngx_memcpy(k->key, key, 32);

        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            break;
        }
    }

    ngx_explicit_memzero(buf, sizeof(buf));
    ngx_explicit_memzero(key, sizeof(key));

    if (k == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" has no key",
                           &name);
        return NGX_CONF_ERROR;
    }

    if (HMAC(EVP_sha256(), k->key, 32,
             (u_char *) "actingweb trust index", 21, amcf->index_key, &len)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* n bytes from 2n hex digits */

static ngx_int_t
ngx_http_actingweb_unhex(u_char *src, size_t n, u_char *dst)
{
    ngx_int_t  v;

    while (n--) {
        v = ngx_hextoi(src, 2);
        if (v == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) v;
        src += 2;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_trust_random(ngx_http_request_t *r, ngx_str_t *out)
{
    out->data = ngx_pnalloc(r->pool, NGX_HTTP_ACTINGWEB_SECRET_LEN);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    out->len = NGX_HTTP_ACTINGWEB_SECRET_LEN;

    return ngx_http_actingweb_random_hex(out->data, out->len);
}


/* a stored record: NGX_OK with *rec (NULL for nil), or NGX_ERROR */

static ngx_int_t
ngx_http_actingweb_trust_parse(ngx_http_request_t *r, redisReply *reply,
    cJSON **rec)
{
    const char  *err;

    *rec = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_NIL) {
        return NGX_OK;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    *rec = ngx_http_actingweb_trust_record(r, (u_char *) reply->str,
                                           reply->len, &err);

    if (!cJSON_IsObject(*rec)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: stored trust record is damaged: %s", err);
        return NGX_ERROR;
    }

    return NGX_OK;
}



static ngx_uint_t
ngx_http_actingweb_trust_flag(cJSON *rec, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, name));
}


static ngx_uint_t
ngx_http_actingweb_trust_is(cJSON *rec, const char *name, ngx_str_t *value)
{
    ngx_str_t  s;

    return ngx_http_actingweb_json_str(rec, name, &s) == NGX_OK
           && s.len == value->len
           && ngx_strncmp(s.data, value->data, s.len) == 0;
}


static ngx_uint_t
ngx_http_actingweb_trust_auto(ngx_http_request_t *r, ngx_str_t *rel)
{
    ngx_str_t                      *s;
    ngx_uint_t                      i;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    if (alcf->auto_approve == NULL) {
        return 0;
    }

    s = alcf->auto_approve->elts;

    for (i = 0; i < alcf->auto_approve->nelts; i++) {
        if (s[i].len == rel->len
            && ngx_strncmp(s[i].data, rel->data, rel->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Before an actor is deleted, every peer is told (DELETE on its record of
 * us), at most actingweb_fanout_concurrency at a time; failures are
 * logged and do not stop the deletion.  Then done() runs.
 */


ngx_int_t
ngx_http_actingweb_trust_revoke_all(ngx_http_request_t *r,
    ngx_http_actingweb_step_pt done)
{
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_trust_t  *ts;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ts = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_trust_t));
    if (ts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ts->done = done;
    ctx->data = ts;

    return ngx_http_actingweb_trust_all(r, ngx_http_actingweb_revoke_listed);
}


static void
ngx_http_actingweb_revoke_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                       *rec;
    size_t                       i;
    ngx_int_t                    rc;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    ts->all = cJSON_CreateArray();
    if (ts->all == NULL
        || ngx_http_actingweb_json_guard(r, ts->all) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    for (i = 0; i < reply->elements; i++) {
        if (ngx_http_actingweb_trust_parse(r, reply->element[i], &rec)
            == NGX_OK && rec)
        {
            cJSON_AddItemReferenceToArray(ts->all, rec);
        }
    }

    rc = ngx_http_actingweb_revoke_next(r);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_actingweb_revoke_next(ngx_http_request_t *r)
{
    cJSON                           *rec;
    ngx_int_t                        rc;
    ngx_str_t                        base, rel, secret;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_trust_t      *ts;
    ngx_http_actingweb_peer_call_t  *pc;
    ngx_http_actingweb_loc_conf_t   *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ts = ctx->data;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    while (ts->pending < alcf->fanout_concurrency
           && ts->next < (ngx_uint_t) cJSON_GetArraySize(ts->all))
    {
        rec = cJSON_GetArrayItem(ts->all, (int) ts->next++);

        if (ngx_http_actingweb_json_str(rec, "baseuri", &base) != NGX_OK
            || ngx_http_actingweb_json_str(rec, "relationship", &rel)
               != NGX_OK
            || ngx_http_actingweb_json_str(rec, "secret", &secret)
               != NGX_OK)
        {
            continue;
        }

        pc = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peer_call_t));
        if (pc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        pc->method = NGX_HTTP_DELETE;
        pc->secret = secret;
        pc->finish = 1;        /* the actor goes even if the client leaves */
        pc->handler = ngx_http_actingweb_revoke_one;
        pc->url.len = base.len + sizeof("/trust//") - 1 + rel.len
                      + ctx->actor_id.len;
        pc->url.data = ngx_pnalloc(r->pool, pc->url.len);
        if (pc->url.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(pc->url.data, "%V/trust/%V/%V", &base, &rel,
                    &ctx->actor_id);

        rc = ngx_http_actingweb_peer_call(r, pc);

        if (rc == NGX_OK) {
            ts->pending++;
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: peer at \"%V\" not told of the actor's "
                      "deletion: %s", &base, pc->message);
    }

    if (ts->pending) {
        return NGX_DONE;
    }

    return ts->done(r);
}


static void
ngx_http_actingweb_revoke_one(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                    rc;
    ngx_http_actingweb_trust_t  *ts;

    ts = ngx_http_actingweb_trust_state(r);
    ts->pending--;

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK
        || ((pc->status < 200 || pc->status > 299)
            && pc->status != NGX_HTTP_NOT_FOUND))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: \"%V\" not told of the actor's deletion "
                      "(%s, status %ui)", &pc->url,
                      pc->message ? pc->message : "answered", pc->status);
    }

    rc = ngx_http_actingweb_revoke_next(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* every trust record of the actor (HVALS), for lists and fan-outs */

ngx_int_t
ngx_http_actingweb_trust_all(ngx_http_request_t *r,
    ngx_http_actingweb_redis_handler_pt handler)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_redis_args(r, 2);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, (u_char *) "HVALS", 5) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "trust", NULL) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_command(r, a, handler);

    return ngx_http_actingweb_redis_started(r, rc);
}


/* the trust record with one peer (HGET; nil when there is none) */

ngx_int_t
ngx_http_actingweb_trust_get(ngx_http_request_t *r, ngx_str_t *peerid,
    ngx_http_actingweb_redis_handler_pt handler)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, (u_char *) "HGET", 4) != NGX_OK
        || ngx_http_actingweb_redis_keys(r, a, "trust", NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, peerid->data, peerid->len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_command(r, a, handler);

    return ngx_http_actingweb_redis_started(r, rc);
}
