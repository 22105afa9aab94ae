
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * The factory (POST <factory>/), the actor root (GET, DELETE) and /meta.
 * The actor is loaded and the caller checked by the access
 * step (access.c) before these run.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_PASS_MAX   1024
#define NGX_HTTP_ACTINGWEB_URL_MAX    2048


typedef struct {
    ngx_str_t                        id;
    ngx_str_t                        creator;
    ngx_str_t                        passphrase;
    ngx_str_t                        trustee_root;
    ngx_str_t                        pwhash;
} ngx_http_actingweb_new_actor_t;


static ngx_int_t ngx_http_actingweb_factory_input(ngx_http_request_t *r,
    ngx_http_actingweb_new_actor_t *na, const char **err);
static ngx_int_t ngx_http_actingweb_json_string(cJSON *in, const char *name,
    ngx_str_t *out, size_t max, const char **err);
static void ngx_http_actingweb_factory_hashed(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_actingweb_factory_store(ngx_http_request_t *r);
static void ngx_http_actingweb_factory_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_actor_get(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_actor_delete(ngx_http_request_t *r);
static void ngx_http_actingweb_actor_deleted(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_uint_t ngx_http_actingweb_meta_known(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_send_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *text);


static ngx_str_t  ngx_http_actingweb_text_type =
    ngx_string("text/plain; charset=utf-8");


ngx_int_t
ngx_http_actingweb_factory(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    const char                       *err;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_new_actor_t   *na;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    na = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_new_actor_t));
    if (na == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    err = NULL;
    rc = ngx_http_actingweb_factory_input(r, na, &err);

    if (rc != NGX_OK) {
        return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR
                               : ngx_http_actingweb_send_error(r, rc, err);
    }

    na->id.data = ngx_pnalloc(r->pool, NGX_HTTP_ACTINGWEB_ID_LEN);
    if (na->id.data == NULL
        || ngx_http_actingweb_random_hex(na->id.data,
                                         NGX_HTTP_ACTINGWEB_ID_LEN)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    na->id.len = NGX_HTTP_ACTINGWEB_ID_LEN;

    if (na->passphrase.len == 0) {
        na->passphrase.data = ngx_pnalloc(r->pool,
                                          NGX_HTTP_ACTINGWEB_SECRET_LEN);
        if (na->passphrase.data == NULL
            || ngx_http_actingweb_random_hex(na->passphrase.data,
                                             NGX_HTTP_ACTINGWEB_SECRET_LEN)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        na->passphrase.len = NGX_HTTP_ACTINGWEB_SECRET_LEN;
    }

    ctx->data = na;

    /* the hash is derived in the thread pool: the store waits for it */

    rc = ngx_http_actingweb_auth_hash(r, &na->passphrase, &na->pwhash,
                                      ngx_http_actingweb_factory_hashed);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_factory_store(r);
}


static void
ngx_http_actingweb_factory_hashed(ngx_http_request_t *r, ngx_int_t rc)
{
    rc = (rc == NGX_OK) ? ngx_http_actingweb_factory_store(r)
                        : NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_actingweb_factory_store(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         created;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_new_actor_t   *na;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    na = ctx->data;

    created.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (created.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    created.len = ngx_sprintf(created.data, "%T", ngx_time()) - created.data;

    a = ngx_http_actingweb_redis_args(r, 5);

    if (a == NULL
        || ngx_http_actingweb_redis_key(r, a, &na->id, "actor") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, na->creator.data, na->creator.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, na->pwhash.data, na->pwhash.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, na->trustee_root.data,
                                        na->trustee_root.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, created.data, created.len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r, NGX_HTTP_ACTINGWEB_SCRIPT_CREATE,
                                         a, ngx_http_actingweb_factory_done);

    return ngx_http_actingweb_redis_started(r, rc);
}


/* optional JSON or form body: creator, passphrase, trustee_root */

static ngx_int_t
ngx_http_actingweb_factory_input(ngx_http_request_t *r,
    ngx_http_actingweb_new_actor_t *na, const char **err)
{
    u_char                    *p, *last;
    cJSON                     *in;
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ngx_str_set(&na->creator, "creator");

    if (ctx->body.len == 0) {
        return NGX_OK;
    }

    in = NULL;

    if (ngx_http_actingweb_is_form(r, &ctx->body)) {
        rc = ngx_http_actingweb_form_parse(r, &ctx->body, &in, err);
        if (rc != NGX_OK) {
            return rc == NGX_ERROR ? NGX_ERROR : NGX_HTTP_BAD_REQUEST;
        }

    } else {
        in = ngx_http_actingweb_json_parse(r, ctx->body.data, ctx->body.len,
                                           err);
        if (in == NULL) {
            return NGX_HTTP_BAD_REQUEST;
        }

        if (!cJSON_IsObject(in)) {
            *err = "body must be a JSON object";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    rc = ngx_http_actingweb_json_string(in, "creator", &na->creator,
                                        NGX_HTTP_ACTINGWEB_NAME_MAX, err);
    if (rc != NGX_OK) {
        return rc;
    }

    if (na->creator.len == 0) {
        ngx_str_set(&na->creator, "creator");
    }

    last = na->creator.data + na->creator.len;

    for (p = na->creator.data; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == ':') {
            *err = "creator must not contain \":\" or control characters";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    rc = ngx_http_actingweb_json_string(in, "passphrase", &na->passphrase,
                                        NGX_HTTP_ACTINGWEB_PASS_MAX, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_actingweb_json_string(in, "trustee_root", &na->trustee_root,
                                        NGX_HTTP_ACTINGWEB_URL_MAX, err);
    if (rc != NGX_OK) {
        return rc;
    }

    if (na->trustee_root.len == 0) {
        return NGX_OK;
    }

    if (!((na->trustee_root.len > 7
           && ngx_strncasecmp(na->trustee_root.data, (u_char *) "http://", 7)
              == 0)
          || (na->trustee_root.len > 8
              && ngx_strncasecmp(na->trustee_root.data,
                                 (u_char *) "https://", 8) == 0)))
    {
        *err = "trustee_root must be an http:// or https:// URL";
        return NGX_HTTP_BAD_REQUEST;
    }

    last = na->trustee_root.data + na->trustee_root.len;

    for (p = na->trustee_root.data; p < last; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            *err = "trustee_root must not contain spaces or control "
                   "characters";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    return NGX_OK;
}


/* an optional string member; absent or null leaves *out untouched */

static ngx_int_t
ngx_http_actingweb_json_string(cJSON *in, const char *name, ngx_str_t *out,
    size_t max, const char **err)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(in, name);

    if (item == NULL || cJSON_IsNull(item)) {
        return NGX_OK;
    }

    if (!cJSON_IsString(item)) {
        *err = ngx_strcmp(name, "creator") == 0
               ? "creator must be a string"
               : ngx_strcmp(name, "passphrase") == 0
                 ? "passphrase must be a string"
                 : "trustee_root must be a string";
        return NGX_HTTP_BAD_REQUEST;
    }

    out->data = (u_char *) item->valuestring;
    out->len = ngx_strlen(item->valuestring);

    if (out->len > max) {
        *err = "value too long";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


static void
ngx_http_actingweb_factory_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                           *out;
    ngx_int_t                        rc;
    ngx_str_t                        url;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_new_actor_t  *na;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    na = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        /* 128 random bits collided, or the script misbehaved */
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "actor could not be created, "
                                           "try again");
        goto done;
    }

    out = cJSON_CreateObject();

    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
        || ngx_http_actingweb_actor_url(r, &na->id, &url) != NGX_OK
        || ngx_http_actingweb_set_location(r, &url) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_http_actingweb_json_add_str(r, out, "id", &na->id);
    ngx_http_actingweb_json_add_str(r, out, "creator", &na->creator);
    ngx_http_actingweb_json_add_str(r, out, "passphrase", &na->passphrase);

    if (na->trustee_root.len) {
        ngx_http_actingweb_json_add_str(r, out, "trustee_root",
                                        &na->trustee_root);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "actingweb actor created \"%V\"", &na->id);

    rc = ngx_http_actingweb_send_json(r, NGX_HTTP_CREATED, out);

done:

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_actingweb_actor(ngx_http_request_t *r)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    /* every peer is told first (the credentials were read and checked) */

    if (ctx->method == NGX_HTTP_DELETE) {
        return ngx_http_actingweb_trust_revoke_all(r,
                                             ngx_http_actingweb_actor_delete);
    }

    return ngx_http_actingweb_actor_get(r);
}


static ngx_int_t
ngx_http_actingweb_actor_get(ngx_http_request_t *r)
{
    cJSON                     *out;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    out = cJSON_CreateObject();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the passphrase is stored hashed: it cannot be shown again */

    ngx_http_actingweb_json_add_str(r, out, "id", &ctx->actor_id);
    cJSON_AddItemToObject(out, "creator",
        cJSON_CreateString((char *) ctx->actor.creator.data));

    if (ctx->actor.trustee_root.len) {
        cJSON_AddItemToObject(out, "trustee_root",
            cJSON_CreateString((char *) ctx->actor.trustee_root.data));
    }

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}


static ngx_int_t
ngx_http_actingweb_actor_delete(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    a = ngx_http_actingweb_redis_args(r, 8);
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* every key of the actor, declared: the script deletes KEYS only */

    for (i = 0; ngx_http_actingweb_actor_keys[i]; i++) {
        if (ngx_http_actingweb_redis_key(r, a, &ctx->actor_id,
                                         ngx_http_actingweb_actor_keys[i])
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_actingweb_redis_creds(r, a) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                      NGX_HTTP_ACTINGWEB_SCRIPT_ACTOR_DELETE,
                                      a, ngx_http_actingweb_actor_deleted);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_actor_deleted(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);

    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == -2) {
        rc = ngx_http_actingweb_access_changed(r);
        if (rc == NGX_DONE) {
            return;
        }

    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: actor \"%V\" deleted", &ctx->actor_id);
        rc = ngx_http_actingweb_send_no_content(r);

    } else {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "actor not found");
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * /meta: readable without credentials; unknown and unsupported optional
 * paths are 404 without asking Redis.
 */

ngx_int_t
ngx_http_actingweb_meta_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan)
{
    if (!ngx_http_actingweb_meta_known(r)) {
        plan->load = NGX_HTTP_ACTINGWEB_LOAD_NONE;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_actingweb_meta_known(ngx_http_request_t *r)
{
    ngx_str_t                      *s;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    s = ctx->segs;

    if (ctx->nsegs == 0) {
        return 1;
    }

    if (ctx->nsegs == 1) {
        return ngx_strcmp(s[0].data, "id") == 0
               || ngx_strcmp(s[0].data, "type") == 0
               || ngx_strcmp(s[0].data, "version") == 0
               || ngx_strcmp(s[0].data, "desc") == 0
               || (ngx_strcmp(s[0].data, "info") == 0 && alcf->info.len);
    }

    return ctx->nsegs == 2 && ngx_strcmp(s[0].data, "actingweb") == 0
           && (ngx_strcmp(s[1].data, "version") == 0
               || ngx_strcmp(s[1].data, "supported") == 0
               || ngx_strcmp(s[1].data, "formats") == 0);
}


ngx_int_t
ngx_http_actingweb_meta(ngx_http_request_t *r)
{
    cJSON                          *out, *aw;
    ngx_str_t                      *s, v, url;
    ngx_http_actingweb_ctx_t       *ctx;
    ngx_http_actingweb_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    s = ctx->segs;

    if (ctx->actor_state != NGX_HTTP_ACTINGWEB_ACTOR_FOUND) {
        /* the plan found no such path */
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "meta path not supported");
    }

    if (ctx->nsegs == 0) {
        out = cJSON_CreateObject();
        if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_actingweb_json_add_str(r, out, "id", &ctx->actor_id);
        ngx_http_actingweb_json_add_str(r, out, "type", &alcf->type);
        ngx_http_actingweb_json_add_str(r, out, "version", &alcf->version);
        ngx_http_actingweb_json_add_str(r, out, "desc", &alcf->desc);

        if (alcf->info.len) {
            ngx_http_actingweb_json_add_str(r, out, "info", &alcf->info);
        }

        if (ctx->actor.trustee_root.len) {
            cJSON_AddItemToObject(out, "trustee_root",
                cJSON_CreateString((char *) ctx->actor.trustee_root.data));
        }

        aw = cJSON_AddObjectToObject(out, "actingweb");
        if (aw == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddStringToObject(aw, "version",
                                NGX_HTTP_ACTINGWEB_SPEC_VERSION);
        cJSON_AddStringToObject(aw, "supported",
                                NGX_HTTP_ACTINGWEB_SUPPORTED);
        cJSON_AddStringToObject(aw, "formats", "json");

        return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
    }

    if (ctx->nsegs == 2) {
        if (ngx_strcmp(s[1].data, "version") == 0) {
            ngx_str_set(&v, NGX_HTTP_ACTINGWEB_SPEC_VERSION);

        } else if (ngx_strcmp(s[1].data, "supported") == 0) {
            ngx_str_set(&v, NGX_HTTP_ACTINGWEB_SUPPORTED);

        } else {
            ngx_str_set(&v, "json");
        }

        return ngx_http_actingweb_send_text(r, NGX_HTTP_OK, &v);
    }

    if (ngx_strcmp(s[0].data, "id") == 0) {
        return ngx_http_actingweb_send_text(r, NGX_HTTP_OK, &ctx->actor_id);
    }

    if (ngx_strcmp(s[0].data, "type") == 0) {
        return ngx_http_actingweb_send_text(r, NGX_HTTP_OK, &alcf->type);
    }

    if (ngx_strcmp(s[0].data, "version") == 0) {
        return ngx_http_actingweb_send_text(r, NGX_HTTP_OK, &alcf->version);
    }

    if (ngx_strcmp(s[0].data, "desc") == 0) {
        return ngx_http_actingweb_send_text(r, NGX_HTTP_OK, &alcf->desc);
    }

    /* info: the spec asks for a redirect to the page */

    url = alcf->info;

    if (ngx_http_actingweb_set_location(r, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_send_text(r, NGX_HTTP_MOVED_TEMPORARILY, &url);
}


static ngx_int_t
ngx_http_actingweb_send_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *text)
{
    return ngx_http_actingweb_send(r, status, &ngx_http_actingweb_text_type,
                                   text->data, text->len);
}

