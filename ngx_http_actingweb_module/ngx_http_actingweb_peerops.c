
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * The peer operations of the reference's "async operations" document for
 * applications, as HTTP on the actor (creator or trustee):
 *
 *   GET  /peerinfo/<peer>, /peerinfo?url=<actor>   get_peer_info: /meta
 *   ANY  /awproxy/<peer>/<path>[?query]   AwProxy get/create/change/
 *                                         delete_resource on the peer
 *   POST /fanout {method, path, body, relationship, approved}
 *                                         the same call to every peer,
 *                                         concurrently, one JSON answer
 *
 * Every call goes through the peer client (peer.c): never blocking, with
 * the trust's secret as Bearer and nothing of the client's request but
 * the JSON body; bounded by actingweb_peer_timeout and the request's
 * deadline (?deadline= or X-ActingWeb-Deadline).
 */


#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"


typedef struct {
    ngx_str_t                        peerid;
    ngx_str_t                        path;        /* after the peer root */
    cJSON                           *trust;       /* our record of it */

    /* fan-out */
    ngx_uint_t                       method;
    ngx_str_t                        body;
    ngx_str_t                        rel;
    ngx_uint_t                       approved;    /* only approved */
    cJSON                           *peers;
    cJSON                           *results;
    ngx_uint_t                       next;
    ngx_uint_t                       pending;
    ngx_uint_t                       ok;
    ngx_uint_t                       starting;
} ngx_http_actingweb_peerop_t;


static void ngx_http_actingweb_peerinfo_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_awproxy_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_peerop_trust(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply,
    ngx_int_t *rc);
static ngx_int_t ngx_http_actingweb_peerop_call(ngx_http_request_t *r,
    ngx_uint_t method, ngx_str_t *base, ngx_str_t *path, ngx_str_t *args,
    ngx_str_t *secret, ngx_str_t *body, cJSON *peer);
static void ngx_http_actingweb_peerop_answer(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_peerop_path(ngx_http_request_t *r,
    ngx_str_t *segs, ngx_uint_t n, ngx_str_t *path);
static ngx_int_t ngx_http_actingweb_peerop_relative(ngx_str_t *path);
static void ngx_http_actingweb_fanout_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_fanout_next(ngx_http_request_t *r);
static void ngx_http_actingweb_fanout_one(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static cJSON *ngx_http_actingweb_peerop_result(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);


#define ngx_http_actingweb_peerop_state(r)                                    \
    ((ngx_http_actingweb_peerop_t *)                                          \
     ((ngx_http_actingweb_ctx_t *)                                            \
      ngx_http_get_module_ctx(r, ngx_http_actingweb_module))->data)


/* GET /peerinfo/<peer>: the trusted peer's /meta; ?url=: any actor's */

ngx_int_t
ngx_http_actingweb_peerinfo(ngx_http_request_t *r)
{
    ngx_str_t                     url, meta = ngx_string("/meta");
    ngx_http_actingweb_ctx_t     *ctx;
    ngx_http_actingweb_peerop_t  *po;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    po = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peerop_t));
    if (po == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = po;

    if (ctx->nsegs == 1) {
        po->peerid = ctx->segs[0];
        return ngx_http_actingweb_trust_get(r, &po->peerid,
                                          ngx_http_actingweb_peerinfo_got);
    }

    if (ctx->nsegs > 1
        || ngx_http_arg(r, (u_char *) "url", 3, &url) != NGX_OK
        || url.len == 0)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "give a peer id "
                                             "(/peerinfo/<peer>) or an "
                                             "actor URL (?url=)");
    }

    if (ngx_http_actingweb_unescape(r->pool, url.data, url.len, &url, 1)
        != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "url is not a valid URL");
    }

    while (url.len && url.data[url.len - 1] == '/') {
        url.len--;
    }

    return ngx_http_actingweb_peerop_call(r, NGX_HTTP_GET, &url, &meta, NULL,
                                          NULL, NULL, NULL);
}


static void
ngx_http_actingweb_peerinfo_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                     rc;
    ngx_str_t                     base, meta = ngx_string("/meta");
    ngx_http_actingweb_peerop_t  *po;

    po = ngx_http_actingweb_peerop_state(r);

    if (ngx_http_actingweb_peerop_trust(r, status, reply, &rc) != NGX_OK) {
        goto done;
    }

    (void) ngx_http_actingweb_json_str(po->trust, "baseuri", &base);

    rc = ngx_http_actingweb_peerop_call(r, NGX_HTTP_GET, &base, &meta, NULL,
                                        NULL, NULL, NULL);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * /awproxy/<peer>/<path>: the method, the JSON body and the query string
 * go to <peer baseuri>/<path> with the trust's secret; the peer's status
 * and JSON come back.
 */

ngx_int_t
ngx_http_actingweb_awproxy(ngx_http_request_t *r)
{
    ngx_str_t                  path;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs < 1) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "give a peer: "
                                             "/awproxy/<peer>/<path>");
    }

    if (ngx_http_actingweb_peerop_path(r, ctx->segs + 1, ctx->nsegs - 1,
                                       &path)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_awproxy_call(r, &ctx->segs[0], &path);
}


/* the request's method, body and query on <peer baseuri><path> */

ngx_int_t
ngx_http_actingweb_awproxy_call(ngx_http_request_t *r, ngx_str_t *peerid,
    ngx_str_t *path)
{
    const char                   *err;
    ngx_http_actingweb_ctx_t     *ctx;
    ngx_http_actingweb_peerop_t  *po;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    po = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peerop_t));
    if (po == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = po;
    po->peerid = *peerid;
    po->path = *path;

    if (ctx->body.len
        && ngx_http_actingweb_json_parse(r, ctx->body.data, ctx->body.len,
                                         &err) == NULL)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    return ngx_http_actingweb_trust_get(r, &po->peerid,
                                        ngx_http_actingweb_awproxy_got);
}


static void
ngx_http_actingweb_awproxy_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                     rc;
    ngx_str_t                     base, secret;
    ngx_http_actingweb_ctx_t     *ctx;
    ngx_http_actingweb_peerop_t  *po;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    po = ctx->data;

    if (ngx_http_actingweb_peerop_trust(r, status, reply, &rc) != NGX_OK) {
        goto done;
    }

    (void) ngx_http_actingweb_json_str(po->trust, "baseuri", &base);
    (void) ngx_http_actingweb_json_str(po->trust, "secret", &secret);

    rc = ngx_http_actingweb_peerop_call(r, ctx->method, &base, &po->path,
                                        &r->args, &secret, &ctx->body, NULL);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}



/* NGX_OK with po->trust, or NGX_DECLINED with the answer's result in rc */

static ngx_int_t
ngx_http_actingweb_peerop_trust(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply,
    ngx_int_t *rc)
{
    ngx_str_t                     v;
    const char                   *err;
    ngx_http_actingweb_peerop_t  *po;

    po = ngx_http_actingweb_peerop_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        *rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        return NGX_DECLINED;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        po->trust = ngx_http_actingweb_trust_record(r,
                                                    (u_char *) reply->str,
                                                    reply->len, &err);
    }

    if (po->trust == NULL
        || ngx_http_actingweb_json_str(po->trust, "baseuri", &v) != NGX_OK
        || ngx_http_actingweb_json_str(po->trust, "secret", &v) != NGX_OK)
    {
        *rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                            "no trust with this peer");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * One call to <base><path>[?args]: its result is the answer
 * (peerop_answer), or, with a peer record, one fan-out result.  Returns
 * what an endpoint returns.
 */

static ngx_int_t
ngx_http_actingweb_peerop_call(ngx_http_request_t *r, ngx_uint_t method,
    ngx_str_t *base, ngx_str_t *path, ngx_str_t *args, ngx_str_t *secret,
    ngx_str_t *body, cJSON *peer)
{
    u_char                          *p;
    ngx_http_actingweb_peer_call_t  *pc;

    pc = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peer_call_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->method = method;
    pc->data = peer;
    pc->handler = peer ? ngx_http_actingweb_fanout_one
                       : ngx_http_actingweb_peerop_answer;

    if (secret) {
        pc->secret = *secret;
    }

    if (body && body->len
        && (method == NGX_HTTP_POST || method == NGX_HTTP_PUT))
    {
        pc->body = *body;
    }

    pc->url.len = base->len + path->len
                  + ((args && args->len) ? 1 + args->len : 0);
    pc->url.data = ngx_pnalloc(r->pool, pc->url.len);
    if (pc->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(pc->url.data, base->data, base->len);
    p = ngx_cpymem(p, path->data, path->len);

    if (args && args->len) {
        *p++ = '?';
        ngx_memcpy(p, args->data, args->len);
    }

    return ngx_http_actingweb_peer_run(r, pc);
}


/* the peer's status and JSON, or a JSON error of ours */

static void
ngx_http_actingweb_peerop_answer(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                  rc;
    ngx_uint_t                 status;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        rc = ngx_http_actingweb_send_error(r,
                                       ngx_http_actingweb_peer_status(pc),
                                       pc->message);
        goto done;
    }

    status = pc->status;

    if (pc->answer.len == 0) {
        rc = (status == NGX_HTTP_NO_CONTENT || status < 200)
             ? ngx_http_actingweb_send_no_content(r)
             : ngx_http_actingweb_send(r, status, NULL, NULL, 0);
        goto done;
    }

    if (pc->json == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: peer \"%V\" answered %ui with non-JSON",
                      &pc->url, status);
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                           "peer answered with something "
                                           "that is not JSON");
        goto done;
    }

    /* the peer's own JSON error bodies pass as they are */

    ctx->responded = 1;
    rc = ngx_http_actingweb_send_json(r, status, pc->json);

done:

    ngx_http_finalize_request(r, rc);
}


/* decoded segments, escaped again: "/" + seg + "/" + seg ... */

static ngx_int_t
ngx_http_actingweb_peerop_path(ngx_http_request_t *r, ngx_str_t *segs,
    ngx_uint_t n, ngx_str_t *path)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; i < n; i++) {
        len += 1 + segs[i].len
               + 2 * ngx_escape_uri(NULL, segs[i].data, segs[i].len,
                                    NGX_ESCAPE_URI_COMPONENT);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    path->data = p;

    for (i = 0; i < n; i++) {
        *p++ = '/';
        p = (u_char *) ngx_escape_uri(p, segs[i].data, segs[i].len,
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    path->len = p - path->data;

    return NGX_OK;
}


/*
 * POST /fanout {"method": "GET", "path": "properties/x", "body": ...,
 * "relationship": "friend", "approved": true}: every trusted peer
 * (of that relationship; only those we approved unless "approved" is
 * false) at once, at most actingweb_fanout_concurrency in flight.
 */

ngx_int_t
ngx_http_actingweb_fanout(ngx_http_request_t *r)
{
    cJSON                            *in, *item;
    ngx_str_t                         m;
    const char                       *err;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_peerop_t      *po;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "fanout has no sub-paths");
    }

    po = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peerop_t));
    if (po == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = po;

    err = "body must be a JSON object";
    in = ctx->body.len ? ngx_http_actingweb_json_parse(r, ctx->body.data,
                                                       ctx->body.len, &err)
                       : NULL;

    if (!cJSON_IsObject(in)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    po->method = NGX_HTTP_GET;

    if (ngx_http_actingweb_json_str(in, "method", &m) == NGX_OK) {
        if (m.len == 3 && ngx_strncmp(m.data, "GET", 3) == 0) {
            po->method = NGX_HTTP_GET;

        } else if (m.len == 4 && ngx_strncmp(m.data, "POST", 4) == 0) {
            po->method = NGX_HTTP_POST;

        } else if (m.len == 3 && ngx_strncmp(m.data, "PUT", 3) == 0) {
            po->method = NGX_HTTP_PUT;

        } else if (m.len == 6 && ngx_strncmp(m.data, "DELETE", 6) == 0) {
            po->method = NGX_HTTP_DELETE;

        } else {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "method must be GET, POST, "
                                                 "PUT or DELETE");
        }

    } else if (cJSON_GetObjectItemCaseSensitive(in, "method")) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "method must be a string");
    }

    if (ngx_http_actingweb_json_str(in, "path", &po->path) != NGX_OK
        || ngx_http_actingweb_peerop_relative(&po->path) != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "path must be a relative path "
                                             "below the peer's root, e.g. "
                                             "\"properties/x\"");
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "relationship");

    if (item && ngx_http_actingweb_json_str(in, "relationship", &po->rel)
                != NGX_OK)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "relationship must be a "
                                             "string");
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "approved");
    po->approved = 1;

    if (item) {
        if (!cJSON_IsBool(item)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "approved must be true or "
                                                 "false");
        }

        po->approved = cJSON_IsTrue(item) ? 1 : 0;
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "body");

    if (item && !cJSON_IsNull(item)
        && ngx_http_actingweb_json_print(r, item, &po->body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_trust_all(r, ngx_http_actingweb_fanout_listed);
}


static void
ngx_http_actingweb_fanout_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                        *rec, *rel;
    size_t                        i;
    ngx_int_t                     rc;
    const char                   *err;
    ngx_http_actingweb_peerop_t  *po;

    po = ngx_http_actingweb_peerop_state(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    po->peers = cJSON_CreateArray();
    po->results = cJSON_CreateObject();

    if (po->peers == NULL
        || ngx_http_actingweb_json_guard(r, po->peers) != NGX_OK
        || po->results == NULL
        || ngx_http_actingweb_json_guard(r, po->results) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        rec = ngx_http_actingweb_trust_record(r,
                                       (u_char *) reply->element[i]->str,
                                       reply->element[i]->len, &err);
        if (rec == NULL) {
            continue;
        }

        if (po->approved
            && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec,
                                                              "approved")))
        {
            continue;
        }

        rel = cJSON_GetObjectItemCaseSensitive(rec, "relationship");

        if (po->rel.len
            && !(cJSON_IsString(rel)
                 && ngx_strlen(rel->valuestring) == po->rel.len
                 && ngx_strncmp(rel->valuestring, po->rel.data,
                                po->rel.len) == 0))
        {
            continue;
        }

        cJSON_AddItemReferenceToArray(po->peers, rec);
    }

    rc = ngx_http_actingweb_fanout_next(r);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* starts calls up to the bound; answers once none is left */

static ngx_int_t
ngx_http_actingweb_fanout_next(ngx_http_request_t *r)
{
    cJSON                           *rec, *out;
    ngx_int_t                        rc;
    ngx_str_t                        base, secret, peerid, path;
    ngx_uint_t                       n;
    ngx_http_actingweb_peerop_t     *po;
    ngx_http_actingweb_loc_conf_t   *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    po = ngx_http_actingweb_peerop_state(r);
    n = (ngx_uint_t) cJSON_GetArraySize(po->peers);

    while (po->pending < alcf->fanout_concurrency && po->next < n) {
        rec = cJSON_GetArrayItem(po->peers, (int) po->next++);

        if (ngx_http_actingweb_json_str(rec, "baseuri", &base) != NGX_OK
            || ngx_http_actingweb_json_str(rec, "secret", &secret)
               != NGX_OK
            || ngx_http_actingweb_json_str(rec, "peerid", &peerid)
               != NGX_OK)
        {
            continue;
        }

        path.len = 1 + po->path.len;
        path.data = ngx_pnalloc(r->pool, path.len);
        if (path.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        path.data[0] = '/';
        ngx_memcpy(path.data + 1, po->path.data, po->path.len);

        po->pending++;
        po->starting = 1;

        rc = ngx_http_actingweb_peerop_call(r, po->method, &base, &path,
                                            NULL, &secret, &po->body, rec);
        po->starting = 0;

        if (rc != NGX_DONE) {
            return rc;
        }
    }

    if (po->pending) {
        return NGX_DONE;
    }

    out = cJSON_CreateObject();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddNumberToObject(out, "count", (double) n);
    cJSON_AddNumberToObject(out, "succeeded", (double) po->ok);
    cJSON_AddItemReferenceToObject(out, "results", po->results);

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}


static void
ngx_http_actingweb_fanout_one(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    cJSON                        *res;
    ngx_int_t                     rc;
    ngx_str_t                     peerid;
    ngx_http_actingweb_peerop_t  *po;

    po = ngx_http_actingweb_peerop_state(r);
    po->pending--;

    res = ngx_http_actingweb_peerop_result(r, pc);

    if (res
        && ngx_http_actingweb_json_str(pc->data, "peerid", &peerid)
           == NGX_OK)
    {
        cJSON_AddItemToObject(po->results, (char *) peerid.data, res);

    } else {
        cJSON_Delete(res);
    }

    if (pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
        && pc->status >= 200 && pc->status <= 299)
    {
        po->ok++;
    }

    if (po->starting) {
        /* refused at once, inside fanout_next(): it goes on by itself */
        return;
    }

    rc = ngx_http_actingweb_fanout_next(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* {"status": N, "body": ...} or {"error": {"code": N, "message": ...}} */

static cJSON *
ngx_http_actingweb_peerop_result(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    cJSON  *res, *err;

    res = cJSON_CreateObject();
    if (res == NULL) {
        return NULL;
    }

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        err = cJSON_AddObjectToObject(res, "error");
        if (err) {
            cJSON_AddNumberToObject(err, "code",
                       (double) ngx_http_actingweb_peer_status(pc));
            cJSON_AddStringToObject(err, "message", pc->message);
        }

        return res;
    }

    cJSON_AddNumberToObject(res, "status", (double) pc->status);

    if (pc->json) {
        cJSON_AddItemToObject(res, "body", cJSON_Duplicate(pc->json, 1));

    } else if (pc->answer.len) {
        err = cJSON_AddObjectToObject(res, "error");
        if (err) {
            cJSON_AddNumberToObject(err, "code", NGX_HTTP_BAD_GATEWAY);
            cJSON_AddStringToObject(err, "message",
                                    "peer answered with something that is "
                                    "not JSON");
        }
    }

    return res;
}


/* "properties/x", "resources/a/b?x=1": no scheme, "..", "\" or blanks */

static ngx_int_t
ngx_http_actingweb_peerop_relative(ngx_str_t *path)
{
    u_char  *p, *last;

    if (path->len == 0 || path->len > 2048 || path->data[0] == '/') {
        return NGX_DECLINED;
    }

    last = path->data + path->len;

    for (p = path->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '\\' || *p == '#') {
            return NGX_DECLINED;
        }

        if (*p == '.' && p + 1 < last && p[1] == '.'
            && (p == path->data || p[-1] == '/')
            && (p + 2 == last || p[2] == '/' || p[2] == '?'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}

