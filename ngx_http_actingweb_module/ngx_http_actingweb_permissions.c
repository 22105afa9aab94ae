
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Per-trust permissions (option tag "trustpermissions"):
 *
 *   GET|PUT|DELETE /trust/<rel>/<peer>/permissions   the creator's view
 *   GET /permissions/<peer>                          the peer's own
 *
 * {"properties": {"patterns": ["public/..."], "excluded_patterns": [...],
 *                 "operations": ["read", "write"]}}
 *
 * They are kept in the trust record itself ("perm", as JSON text), so the
 * access step that found the peer's trust has them without another round
 * trip.  On /properties a name matching an excluded pattern is refused,
 * one matching a pattern is allowed for the listed operations only, and
 * anything else falls back to the relationship's ACL (deny, then allow,
 * then the default).
 */


#include "ngx_http_actingweb_redis.h"

#include <fnmatch.h>


static void ngx_http_actingweb_perm_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_perm_set(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_perm_valid(cJSON *perm);
static cJSON *ngx_http_actingweb_perm_of(ngx_http_request_t *r, cJSON *rec);
static ngx_uint_t ngx_http_actingweb_perm_any(cJSON *list, const char *name);


/* the creator's GET, PUT and DELETE on /trust/<rel>/<peer>/permissions */

ngx_int_t
ngx_http_actingweb_perm_trust(ngx_http_request_t *r, ngx_str_t *rel,
    ngx_str_t *peerid)
{
    cJSON                            *in, *set;
    ngx_int_t                         rc;
    ngx_str_t                         text, fields;
    const char                       *err;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "a peer reads its permissions "
                                             "at /permissions/<id>");
    }

    ctx->data = rel;

    if (ctx->method == NGX_HTTP_GET) {
        return ngx_http_actingweb_trust_get(r, peerid,
                                            ngx_http_actingweb_perm_got);
    }

    if (ctx->method != NGX_HTTP_PUT && ctx->method != NGX_HTTP_DELETE) {
        if (ngx_http_actingweb_header(r, "Allow", "GET, HEAD, PUT, DELETE")
            == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    ngx_str_null(&text);

    if (ctx->method == NGX_HTTP_PUT) {
        err = "body must be a JSON object";
        in = ctx->body.len ? ngx_http_actingweb_json_parse(r, ctx->body.data,
                                                           ctx->body.len,
                                                           &err)
                           : NULL;

        if (!cJSON_IsObject(in)) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 err);
        }

        if (ngx_http_actingweb_perm_valid(in) != NGX_OK) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                    "permissions: an object of objects with "
                                    "\"patterns\", \"excluded_patterns\" "
                                    "and \"operations\" arrays of strings");
        }

        if (ngx_http_actingweb_json_print(r, in, &text) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* {"perm": "<the JSON as text>"}, "" for none */

    set = cJSON_CreateObject();
    if (set == NULL || ngx_http_actingweb_json_guard(r, set) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, set, "perm", &text) != NGX_OK
        || ngx_http_actingweb_json_print(r, set, &fields) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    a = ngx_http_actingweb_redis_args(r, 4);

    if (a == NULL
        || ngx_http_actingweb_redis_keys(r, a, "trust", NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, peerid->data, peerid->len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, fields.data, fields.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, rel->data, rel->len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET,
                                         a, ngx_http_actingweb_perm_set);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_perm_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                     *rec, *perm, *item;
    ngx_int_t                  rc;
    ngx_str_t                 *rel;
    const char                *err;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    rel = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    rec = NULL;

    if (reply->type == REDIS_REPLY_STRING) {
        rec = ngx_http_actingweb_json_parse(r, (u_char *) reply->str,
                                            reply->len, &err);
    }

    item = cJSON_GetObjectItemCaseSensitive(rec, "relationship");

    if (!cJSON_IsString(item)
        || ngx_strlen(item->valuestring) != rel->len
        || ngx_strncmp(item->valuestring, rel->data, rel->len) != 0)
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such trust");
        goto done;
    }

    perm = ngx_http_actingweb_perm_of(r, rec);

    rc = perm ? ngx_http_actingweb_send_json(r, NGX_HTTP_OK, perm)
              : ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                              "no permissions set");

done:

    ngx_http_finalize_request(r, rc);
}


/* after TRUST_SET: 201 for new permissions, 200 for changed, 204 gone */

static void
ngx_http_actingweb_perm_set(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                     *old;
    ngx_int_t                  rc;
    const char                *err;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such trust");
        goto done;
    }

    if (ctx->method == NGX_HTTP_DELETE) {
        rc = ngx_http_actingweb_send_no_content(r);
        goto done;
    }

    old = ngx_http_actingweb_json_parse(r, (u_char *) reply->str,
                                        reply->len, &err);

    rc = ngx_http_actingweb_send(r, ngx_http_actingweb_perm_of(r, old)
                                    ? NGX_HTTP_OK : NGX_HTTP_CREATED,
                                 NULL, NULL, 0);

done:

    ngx_http_finalize_request(r, rc);
}


/* GET /permissions/<peer>: the calling peer's own, with its own token */

ngx_int_t
ngx_http_actingweb_permissions(ngx_http_request_t *r)
{
    cJSON                     *perm, *peerid;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs != 1) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "give a peer id: "
                                             "/permissions/<peer>");
    }

    peerid = cJSON_GetObjectItemCaseSensitive(ctx->peer, "peerid");

    if (ctx->role != NGX_HTTP_ACTINGWEB_ROLE_PEER
        || !cJSON_IsString(peerid)
        || ngx_strlen(peerid->valuestring) != ctx->segs[0].len
        || ngx_strncmp(peerid->valuestring, ctx->segs[0].data,
                       ctx->segs[0].len) != 0)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "only the peer itself, with "
                                             "its token");
    }

    perm = ngx_http_actingweb_perm_of(r, ctx->peer);

    if (perm == NULL) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "no permissions set");
    }

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, perm);
}


/*
 * The decision for one property name (nested paths joined with "/"):
 * NGX_OK allowed, NGX_DECLINED refused, NGX_AGAIN no rule (use the ACL).
 * A write to the whole collection (name NULL) needs a pattern that
 * covers every name ("*") once there are property permissions at all.
 */

ngx_int_t
ngx_http_actingweb_perm_check(ngx_http_request_t *r, cJSON *rec,
    const char *name, const char *op)
{
    cJSON      *perm, *props;
    ngx_int_t   rc;

    perm = ngx_http_actingweb_perm_of(r, rec);
    props = cJSON_GetObjectItemCaseSensitive(perm, "properties");

    if (!cJSON_IsObject(props)) {
        return NGX_AGAIN;
    }

    if (name == NULL) {
        if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(props,
                                                    "excluded_patterns")))
        {
            return NGX_DECLINED;
        }

        rc = ngx_http_actingweb_perm_check(r, rec, "*", op);

        return rc == NGX_OK ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_http_actingweb_perm_any(
            cJSON_GetObjectItemCaseSensitive(props, "excluded_patterns"),
            name))
    {
        return NGX_DECLINED;
    }

    if (!ngx_http_actingweb_perm_any(
            cJSON_GetObjectItemCaseSensitive(props, "patterns"), name))
    {
        return NGX_AGAIN;
    }

    return ngx_http_actingweb_perm_any(
               cJSON_GetObjectItemCaseSensitive(props, "operations"), op)
           ? NGX_OK : NGX_DECLINED;
}


/* any glob of a JSON array matches (fnmatch: "*" also spans "/") */

static ngx_uint_t
ngx_http_actingweb_perm_any(cJSON *list, const char *name)
{
    cJSON  *p;

    cJSON_ArrayForEach(p, list) {
        if (cJSON_IsString(p) && fnmatch(p->valuestring, name, 0) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the parsed permissions of a trust record (cached in it), or NULL */

static cJSON *
ngx_http_actingweb_perm_of(ngx_http_request_t *r, cJSON *rec)
{
    cJSON       *text, *perm;
    const char  *err;

    perm = cJSON_GetObjectItemCaseSensitive(rec, "_perm");
    if (perm) {
        return cJSON_IsObject(perm) ? perm : NULL;
    }

    text = cJSON_GetObjectItemCaseSensitive(rec, "perm");

    if (!cJSON_IsString(text) || text->valuestring[0] == '\0') {
        return NULL;
    }

    perm = ngx_http_actingweb_json_parse(r, (u_char *) text->valuestring,
                                         ngx_strlen(text->valuestring), &err);

    if (!cJSON_IsObject(perm)) {
        return NULL;
    }

    /* the pool owns perm; the record keeps a reference for next time */

    cJSON_AddItemReferenceToObject(rec, "_perm", perm);

    return perm;
}


static ngx_int_t
ngx_http_actingweb_perm_valid(cJSON *perm)
{
    cJSON       *kind, *list, *s;
    ngx_uint_t   i;

    static const char  *lists[] = {
        "patterns", "excluded_patterns", "operations", NULL
    };

    cJSON_ArrayForEach(kind, perm) {
        if (!cJSON_IsObject(kind)) {
            return NGX_DECLINED;
        }

        for (i = 0; lists[i]; i++) {
            list = cJSON_GetObjectItemCaseSensitive(kind, lists[i]);

            if (list == NULL) {
                continue;
            }

            if (!cJSON_IsArray(list)) {
                return NGX_DECLINED;
            }

            cJSON_ArrayForEach(s, list) {
                if (!cJSON_IsString(s)) {
                    return NGX_DECLINED;
                }
            }
        }
    }

    return NGX_OK;
}
