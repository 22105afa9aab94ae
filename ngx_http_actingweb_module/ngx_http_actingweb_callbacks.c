
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Subscriptions, the subscriber's side (spec "Subscriptions" and
 * "Callbacks", checklist §1.6, §3.5-§3.7):
 *
 *   POST   /subscriptions {peerid, target, subtarget, resource,
 *          granularity}          creator: subscribe at the peer, baseline
 *   POST   /callbacks/subscriptions/<peer>/<sub>
 *                                the peer: a callback; the creator: poll
 *   GET    /callbacks/subscriptions/<peer>[/<sub>]
 *                                creator: our copy of the peer's data
 *   DELETE /callbacks/subscriptions/<peer>/<sub>
 *                                creator: at the peer too; the peer: here
 *   DELETE /subscriptions/<peer>/<sub>, of ours: the same (from
 *          subscriptions.c)
 *
 * Our subscription keeps the last sequence applied.  A callback applies
 * its change when it is the next one, acknowledges a duplicate, and on a
 * gap polls the publisher and applies the missing diffs in order (a gap
 * the publisher cannot fill any more is closed by fetching the whole
 * target).  The changed copy, the record and the applied changes (for
 * applications, a stream) are stored by one script, only if the record
 * and the copy did not change since they were read (else the work starts
 * over).  A poll clears the publisher's diffs up to what was applied.
 */


#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"

#include <zlib.h>


#define NGX_HTTP_ACTINGWEB_CB_RETRIES    8
#define NGX_HTTP_ACTINGWEB_CB_SEQ_MAX    9007199254740991.0    /* 2^53-1 */
#define NGX_HTTP_ACTINGWEB_CB_INFLATE    (16 * 1024 * 1024)


typedef enum {
    NGX_HTTP_ACTINGWEB_CB_CALLBACK = 0,      /* the peer's POST */
    NGX_HTTP_ACTINGWEB_CB_SYNC,              /* the creator's POST */
    NGX_HTTP_ACTINGWEB_CB_CREATE,            /* POST /subscriptions */
    NGX_HTTP_ACTINGWEB_CB_READ,              /* GET */
    NGX_HTTP_ACTINGWEB_CB_DELETE             /* DELETE, by the creator */
} ngx_http_actingweb_cb_mode_e;


typedef struct {
    ngx_http_actingweb_cb_mode_e     mode;
    ngx_str_t                        peerid;
    ngx_str_t                        subid;
    cJSON                           *in;         /* callback or body */
    cJSON                           *rec;        /* our subscription */
    cJSON                           *path;       /* [target, sub, res] */
    ngx_str_t                        base;       /* of the trust */
    ngx_str_t                        secret;
    ngx_str_t                        copy_seen;  /* as read; "" none */
    cJSON                           *copy;       /* the peer's data */
    cJSON                           *baseline;   /* CREATE: or NULL */
    double                           seen;       /* sequence as read */
    double                           seq;        /* applied up to */
    ngx_array_t                      todo;       /* cJSON *, by sequence */
    ngx_uint_t                       next;
    ngx_array_t                      changes;    /* ngx_str_t triples */
    ngx_uint_t                       retries;
    ngx_uint_t                       status;     /* DELETE at the peer */
    unsigned                         polled:1;
    unsigned                         clear:1;    /* PUT at the end */
    unsigned                         based:1;    /* CREATE: fetched */
    unsigned                         gap:1;      /* fetch is a resync */
} ngx_http_actingweb_cb_t;


static ngx_int_t ngx_http_actingweb_cb_state(ngx_http_request_t *r,
    ngx_http_actingweb_cb_mode_e mode, ngx_str_t *peerid, ngx_str_t *subid);
static ngx_uint_t ngx_http_actingweb_cb_payload(ngx_http_request_t *r,
    const char **msg);
static ngx_uint_t ngx_http_actingweb_cb_inflate(ngx_http_request_t *r,
    ngx_str_t *body, const char **msg);
static ngx_int_t ngx_http_actingweb_cb_read(ngx_http_request_t *r);
static void ngx_http_actingweb_cb_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_cb_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_cb_step(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_cb_poll(ngx_http_request_t *r);
static void ngx_http_actingweb_cb_polled(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_cb_fetch(ngx_http_request_t *r,
    cJSON *url);
static void ngx_http_actingweb_cb_fetched(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_cb_apply(ngx_http_request_t *r,
    double seq, const char *type, cJSON *data);
static ngx_int_t ngx_http_actingweb_cb_merge(cJSON *node, cJSON *diff);
static cJSON *ngx_http_actingweb_cb_node(cJSON *copy, cJSON *path,
    ngx_uint_t create);
static ngx_int_t ngx_http_actingweb_cb_store(ngx_http_request_t *r);
static void ngx_http_actingweb_cb_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_cb_cleared(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_cb_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_cb_show(ngx_http_request_t *r);
static void ngx_http_actingweb_cb_subscribed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_cb_based(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static void ngx_http_actingweb_cb_unsubscribed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
static ngx_int_t ngx_http_actingweb_cb_drop(ngx_http_request_t *r);
static void ngx_http_actingweb_cb_dropped(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_cb_call(ngx_http_request_t *r,
    ngx_uint_t method, ngx_str_t *url, cJSON *body,
    ngx_http_actingweb_peer_handler_pt handler);
static ngx_int_t ngx_http_actingweb_cb_url(ngx_http_request_t *r,
    ngx_str_t *url, const char *fmt, cJSON *names);
static ngx_int_t ngx_http_actingweb_cb_failed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, const char *what);
static ngx_int_t ngx_http_actingweb_cb_seq(cJSON *obj, double *seq);
static ngx_int_t ngx_http_actingweb_cb_num(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, double n);
static ngx_int_t ngx_http_actingweb_cb_text(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, cJSON *json);
static int ngx_libc_cdecl ngx_http_actingweb_cb_order(const void *one,
    const void *two);


#define ngx_http_actingweb_cb_get(r)                                          \
    ((ngx_http_actingweb_cb_t *)                                              \
     ((ngx_http_actingweb_ctx_t *)                                            \
      ngx_http_get_module_ctx(r, ngx_http_actingweb_module))->data)


/* /callbacks/...: access.c let only <peer>'s own token or the creator in */

ngx_int_t
ngx_http_actingweb_callbacks(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_uint_t                     status;
    const char                    *msg;
    ngx_table_elt_t               *h;
    ngx_http_actingweb_ctx_t      *ctx;
    ngx_http_actingweb_cb_mode_e   mode;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->nsegs < 2 || ctx->nsegs > 3
        || ctx->segs[0].len != sizeof("subscriptions") - 1
        || ngx_strncmp(ctx->segs[0].data, "subscriptions",
                       sizeof("subscriptions") - 1) != 0)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "no such callback");
    }

    switch (ctx->method) {

    case NGX_HTTP_GET:
        mode = NGX_HTTP_ACTINGWEB_CB_READ;
        break;

    case NGX_HTTP_POST:
        mode = ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER
               ? NGX_HTTP_ACTINGWEB_CB_CALLBACK : NGX_HTTP_ACTINGWEB_CB_SYNC;
        break;

    default: /* DELETE */
        mode = NGX_HTTP_ACTINGWEB_CB_DELETE;
        break;
    }

    if (ctx->nsegs == 2 && mode != NGX_HTTP_ACTINGWEB_CB_READ) {
        h = ngx_http_actingweb_header(r, "Allow", "GET, HEAD");
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    if (mode == NGX_HTTP_ACTINGWEB_CB_READ
        && ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "only the creator reads the "
                                             "copy of a peer's data");
    }

    rc = ngx_http_actingweb_cb_state(r, mode, &ctx->segs[1],
                                     ctx->nsegs == 3 ? &ctx->segs[2] : NULL);
    if (rc != NGX_OK) {
        return rc;
    }

    if (mode == NGX_HTTP_ACTINGWEB_CB_CALLBACK) {
        status = ngx_http_actingweb_cb_payload(r, &msg);

        if (status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            return status;
        }

        if (status) {
            return ngx_http_actingweb_send_error(r, status, msg);
        }
    }

    if (mode == NGX_HTTP_ACTINGWEB_CB_DELETE
        && ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER)
    {
        /* the publisher ends it: only ours goes */
        return ngx_http_actingweb_cb_drop(r);
    }

    return ngx_http_actingweb_cb_read(r);
}


/*
 * POST /subscriptions {peerid, target, subtarget, resource, granularity}
 * by the creator (subscriptions.c routes it here)
 */

ngx_int_t
ngx_http_actingweb_outsub_create(ngx_http_request_t *r)
{
    cJSON                     *in, *item;
    ngx_int_t                  rc;
    ngx_str_t                  s, none = ngx_null_string;
    ngx_uint_t                 i;
    const char                *err;
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    static const char  *names[] = { "target", "subtarget", "resource" };

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "only the creator subscribes "
                                             "at peers");
    }

    err = "body must be a JSON object";
    in = ctx->body.len ? ngx_http_actingweb_json_parse(r, ctx->body.data,
                                                       ctx->body.len, &err)
                       : NULL;

    if (!cJSON_IsObject(in)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    if (ngx_http_actingweb_json_str(in, "peerid", &s) != NGX_OK
        || !ngx_http_actingweb_valid_id(&s))
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "\"peerid\" is required (an "
                                             "actor id)");
    }

    rc = ngx_http_actingweb_cb_state(r, NGX_HTTP_ACTINGWEB_CB_CREATE, &s,
                                     &none);
    if (rc != NGX_OK) {
        return rc;
    }

    st = ctx->data;
    st->in = in;

    /* the path: target, then the optional names ("" or null: none) */

    st->path = cJSON_CreateArray();
    if (st->path == NULL
        || ngx_http_actingweb_json_guard(r, st->path) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < 3; i++) {
        item = cJSON_GetObjectItemCaseSensitive(in, names[i]);

        if (i > 0
            && (item == NULL || cJSON_IsNull(item)
                || (cJSON_IsString(item) && item->valuestring[0] == '\0')))
        {
            continue;
        }

        s.data = cJSON_IsString(item) ? (u_char *) item->valuestring : NULL;
        s.len = s.data ? ngx_strlen(s.data) : 0;

        if (s.data == NULL || !ngx_http_actingweb_valid_name(&s)
            || (size_t) cJSON_GetArraySize(st->path) != i)
        {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "\"target\" is required; target, "
                                   "subtarget and resource are names "
                                   "(1-255 bytes, no \"/\"); a resource "
                                   "needs a subtarget");
        }

        item = cJSON_CreateString((char *) s.data);
        if (item == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemToArray(st->path, item);
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "granularity");

    if (item && !cJSON_IsNull(item)
        && (!cJSON_IsString(item)
            || (ngx_strcmp(item->valuestring, "high") != 0
                && ngx_strcmp(item->valuestring, "low") != 0
                && ngx_strcmp(item->valuestring, "none") != 0)))
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "granularity is \"high\", "
                                             "\"low\" or \"none\"");
    }

    return ngx_http_actingweb_cb_read(r);
}


/* DELETE /subscriptions/<peer>/<sub> of ours (subscriptions.c) */

ngx_int_t
ngx_http_actingweb_outsub_delete(ngx_http_request_t *r, ngx_str_t *peerid,
    ngx_str_t *subid)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    rc = ngx_http_actingweb_cb_state(r, NGX_HTTP_ACTINGWEB_CB_DELETE, peerid,
                                     subid);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->role == NGX_HTTP_ACTINGWEB_ROLE_PEER) {
        return ngx_http_actingweb_cb_drop(r);
    }

    return ngx_http_actingweb_cb_read(r);
}


static ngx_int_t
ngx_http_actingweb_cb_state(ngx_http_request_t *r,
    ngx_http_actingweb_cb_mode_e mode, ngx_str_t *peerid, ngx_str_t *subid)
{
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_cb_t));
    if (st == NULL
        || ngx_array_init(&st->todo, r->pool, 8, sizeof(cJSON *)) != NGX_OK
        || ngx_array_init(&st->changes, r->pool, 8, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->mode = mode;
    st->peerid = *peerid;

    if (subid) {
        st->subid = *subid;
    }

    ctx->data = st;

    return NGX_OK;
}


/*
 * The callback's body: {"sequence": N, "type"?, "data" | "url", ...};
 * gzip-encoded bodies are inflated first.  Checked before anything is
 * read, so a bad callback changes nothing.
 */

static ngx_uint_t
ngx_http_actingweb_cb_payload(ngx_http_request_t *r, const char **msg)
{
    cJSON                     *in, *type, *item;
    double                     seq;
    ngx_uint_t                 rc;
    ngx_str_t                  body, v;
    const char                *err;
    ngx_table_elt_t           *h;
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    body = ctx->body;

    h = ngx_http_actingweb_header_in(r, "Content-Encoding");

    if (h && h->value.len
        && !(h->value.len == 8
             && ngx_strncasecmp(h->value.data, (u_char *) "identity", 8)
                == 0))
    {
        if (!(h->value.len == 4
              && ngx_strncasecmp(h->value.data, (u_char *) "gzip", 4) == 0))
        {
            *msg = "Content-Encoding must be gzip or none";
            return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
        }

        rc = ngx_http_actingweb_cb_inflate(r, &body, msg);
        if (rc) {
            return rc;
        }
    }

    err = "body must be a JSON object";
    in = body.len ? ngx_http_actingweb_json_parse(r, body.data, body.len,
                                                  &err)
                  : NULL;

    if (!cJSON_IsObject(in)) {
        *msg = err;
        return NGX_HTTP_BAD_REQUEST;
    }

    type = cJSON_GetObjectItemCaseSensitive(in, "type");

    if (type && !(cJSON_IsString(type)
                  && (ngx_strcmp(type->valuestring, "diff") == 0
                      || ngx_strcmp(type->valuestring, "resync") == 0
                      || ngx_strcmp(type->valuestring, "permission") == 0)))
    {
        *msg = "\"type\" is \"diff\", \"resync\" or \"permission\"";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_actingweb_json_str(in, "subscriptionid", &v) == NGX_OK
        && (v.len != st->subid.len
            || ngx_strncmp(v.data, st->subid.data, v.len) != 0))
    {
        *msg = "\"subscriptionid\" is not the one in the URL";
        return NGX_HTTP_BAD_REQUEST;
    }

    st->in = in;

    if (type && ngx_strcmp(type->valuestring, "permission") == 0) {
        /* no sequence, nothing of the subscription: acknowledged */
        return 0;
    }

    if (ngx_http_actingweb_cb_seq(in, &seq) != NGX_OK || seq < 1) {
        *msg = "\"sequence\" must be an integer from 1 to 2^53-1";
        return NGX_HTTP_BAD_REQUEST;
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "url");

    if (item && !cJSON_IsString(item)) {
        *msg = "\"url\" must be a string";
        return NGX_HTTP_BAD_REQUEST;
    }

    if ((type == NULL || ngx_strcmp(type->valuestring, "diff") == 0)
        && item == NULL
        && cJSON_GetObjectItemCaseSensitive(in, "data") == NULL)
    {
        *msg = "a diff has \"data\" (high) or \"url\" (low)";
        return NGX_HTTP_BAD_REQUEST;
    }

    return 0;
}


/*
 * Content-Encoding: gzip, one member or more (RFC 1952), nothing after
 * them.  The inflated body is bounded like a plain one
 * (client_max_body_size; 16 MB when that is 0), so a small bomb is
 * refused before it grows.
 */

static ngx_uint_t
ngx_http_actingweb_cb_inflate(ngx_http_request_t *r, ngx_str_t *body,
    const char **msg)
{
    int                        zrc;
    u_char                    *out, *bigger;
    size_t                     size, max;
    z_stream                   z;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    max = clcf->client_max_body_size > 0
          ? (size_t) clcf->client_max_body_size
          : NGX_HTTP_ACTINGWEB_CB_INFLATE;

    if (body->len == 0) {
        *msg = "empty gzip body";
        return NGX_HTTP_BAD_REQUEST;
    }

    size = ngx_min(max, ngx_max(body->len * 4, 4096));

    out = ngx_pnalloc(r->pool, size);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&z, sizeof(z_stream));

    /* 16 + MAX_WBITS: a gzip header and trailer, nothing else */

    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    z.next_in = body->data;
    z.avail_in = body->len;
    z.next_out = out;
    z.avail_out = size;

    for ( ;; ) {
        zrc = inflate(&z, Z_NO_FLUSH);

        if (zrc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                break;
            }

            /* another member follows (or garbage: an error below) */

            if (inflateReset(&z) != Z_OK) {
                inflateEnd(&z);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            continue;
        }

        /* all input taken, room left, no end: truncated */

        if ((zrc != Z_OK && zrc != Z_BUF_ERROR)
            || (z.avail_out && z.avail_in == 0))
        {
            inflateEnd(&z);
            *msg = "body is not valid gzip";
            return NGX_HTTP_BAD_REQUEST;
        }

        if (z.avail_out == 0) {
            if (size >= max) {
                inflateEnd(&z);
                *msg = "inflated body is too large";
                return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
            }

            bigger = ngx_pnalloc(r->pool, ngx_min(max, size * 2));
            if (bigger == NULL) {
                inflateEnd(&z);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(bigger, out, size);
            ngx_pfree(r->pool, out);

            out = bigger;
            z.next_out = out + size;
            z.avail_out = ngx_min(max, size * 2) - size;
            size = ngx_min(max, size * 2);
        }
    }

    /* not z.total_out: inflateReset() zeroes it at each member */

    body->data = out;
    body->len = z.next_out - out;

    inflateEnd(&z);

    return 0;
}


/* the record, the copy and the trust, in one round trip */

static ngx_int_t
ngx_http_actingweb_cb_read(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_cb_t          *st;
    ngx_http_actingweb_redis_args_t  *a;

    st = ngx_http_actingweb_cb_get(r);

    a = ngx_http_actingweb_redis_args(r, 5);

    if (a == NULL
        || ngx_http_actingweb_redis_keys(r, a, "trust", "outsubs", "remote",
                                         NULL) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->peerid.data, st->peerid.len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_GET,
                                         a, ngx_http_actingweb_cb_got);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_cb_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                    *trust, *item, *rec;
    ngx_int_t                 rc;
    const char               *err;
    redisReply               *copy;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rec = NULL;
    trust = NULL;

    if (reply->element[0]->type == REDIS_REPLY_STRING) {
        rec = ngx_http_actingweb_json_parse(r,
                                      (u_char *) reply->element[0]->str,
                                      reply->element[0]->len, &err);
    }

    if (reply->element[2]->type == REDIS_REPLY_STRING) {
        trust = ngx_http_actingweb_json_parse(r,
                                      (u_char *) reply->element[2]->str,
                                      reply->element[2]->len, &err);
    }

    if (trust == NULL
        || ngx_http_actingweb_json_str(trust, "baseuri", &st->base) != NGX_OK
        || ngx_http_actingweb_json_str(trust, "secret", &st->secret)
           != NGX_OK)
    {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no trust with this peer");
        goto done;
    }

    while (st->base.len && st->base.data[st->base.len - 1] == '/') {
        st->base.len--;
    }

    /* the copy of the peer's data, an object; "" when there is none */

    copy = reply->element[1];
    st->copy_seen.len = 0;
    st->copy = NULL;

    if (copy->type == REDIS_REPLY_STRING) {
        st->copy_seen.data = (u_char *) copy->str;
        st->copy_seen.len = copy->len;

        if (ngx_http_actingweb_reply_str(r, copy, &st->copy_seen) != NGX_OK) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        st->copy = ngx_http_actingweb_json_parse(r, (u_char *) copy->str,
                                                 copy->len, &err);
    }

    if (!cJSON_IsObject(st->copy)) {
        st->copy = cJSON_CreateObject();

        if (st->copy == NULL
            || ngx_http_actingweb_json_guard(r, st->copy) != NGX_OK)
        {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }
    }

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_READ && st->subid.len == 0) {
        rc = ngx_http_actingweb_cb_show(r);
        goto done;
    }

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_CREATE) {
        if (!st->based) {
            rc = ngx_http_actingweb_cb_start(r);
            goto done;
        }

        /* subscribed: the baseline into the copy as read now */

        st->changes.nelts = 0;
        st->seq = 0;

        rc = ngx_http_actingweb_cb_apply(r, 0, "baseline", st->baseline)
             == NGX_OK ? ngx_http_actingweb_cb_store(r)
                       : NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    st->rec = rec;

    if (st->rec == NULL) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");
        goto done;
    }

    st->path = cJSON_GetObjectItemCaseSensitive(st->rec, "path");
    item = cJSON_GetObjectItemCaseSensitive(st->rec, "sequence");

    if (!cJSON_IsArray(st->path) || !cJSON_IsNumber(item)) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    st->seen = item->valuedouble;
    st->seq = st->seen;

    rc = ngx_http_actingweb_cb_start(r);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* what each mode does once the state is read */

static ngx_int_t
ngx_http_actingweb_cb_start(ngx_http_request_t *r)
{
    cJSON                    *body, *item, **e;
    ngx_str_t                 url;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    st->todo.nelts = 0;
    st->changes.nelts = 0;
    st->next = 0;
    st->polled = 0;
    st->clear = 0;
    st->gap = 0;

    switch (st->mode) {

    case NGX_HTTP_ACTINGWEB_CB_READ:
        return ngx_http_actingweb_cb_show(r);

    case NGX_HTTP_ACTINGWEB_CB_DELETE:
        if (ngx_http_actingweb_cb_url(r, &url, "/subscriptions/%V/%V", NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_cb_call(r, NGX_HTTP_DELETE, &url, NULL,
                                      ngx_http_actingweb_cb_unsubscribed);

    case NGX_HTTP_ACTINGWEB_CB_CREATE:

        /* {"id": us, target, and what else is set} (the reference) */

        body = cJSON_CreateObject();
        if (body == NULL || ngx_http_actingweb_json_guard(r, body) != NGX_OK
            || ngx_http_actingweb_json_add_str(r, body, "id",
                                               &((ngx_http_actingweb_ctx_t *)
                                                 ngx_http_get_module_ctx(r,
                                                 ngx_http_actingweb_module))
                                               ->actor_id) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemToObject(body, "target", cJSON_Duplicate(
                                  cJSON_GetArrayItem(st->path, 0), 1));

        if ((item = cJSON_GetArrayItem(st->path, 1))) {
            cJSON_AddItemToObject(body, "subtarget",
                                  cJSON_Duplicate(item, 1));
        }

        if ((item = cJSON_GetArrayItem(st->path, 2))) {
            cJSON_AddItemToObject(body, "resource", cJSON_Duplicate(item, 1));
        }

        item = cJSON_GetObjectItemCaseSensitive(st->in, "granularity");

        cJSON_AddStringToObject(body, "granularity",
                                cJSON_IsString(item) ? item->valuestring
                                                     : "high");

        /* the spec's hint: our callbacks may come gzip-encoded */

        item = cJSON_CreateArray();

        if (item) {
            cJSON_AddItemToArray(item, cJSON_CreateString("gzip"));
            cJSON_AddItemToObject(body, "accept_encoding", item);
        }

        if (ngx_http_actingweb_cb_url(r, &url, "/subscriptions/%V", NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_cb_call(r, NGX_HTTP_POST, &url, body,
                                          ngx_http_actingweb_cb_subscribed);

    case NGX_HTTP_ACTINGWEB_CB_SYNC:
        return ngx_http_actingweb_cb_poll(r);

    default: /* CALLBACK */
        item = cJSON_GetObjectItemCaseSensitive(st->in, "type");

        if (cJSON_IsString(item)
            && ngx_strcmp(item->valuestring, "permission") == 0)
        {
            return ngx_http_actingweb_send_no_content(r);
        }

        e = ngx_array_push(&st->todo);
        if (e == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *e = st->in;

        return ngx_http_actingweb_cb_step(r);
    }
}


/*
 * Applies the changes to do in order: duplicates are skipped, a gap is
 * filled by polling the publisher once, a gap that is left is closed by
 * fetching the whole target (a resync); a resync or a low-granularity
 * diff fetches its url.  Then the result is stored.
 */

static ngx_int_t
ngx_http_actingweb_cb_step(ngx_http_request_t *r)
{
    cJSON                    **e, *type, *url, *data, *last;
    double                     seq;
    ngx_http_actingweb_cb_t   *st;

    st = ngx_http_actingweb_cb_get(r);
    e = st->todo.elts;

    while (st->next < st->todo.nelts) {

        if (ngx_http_actingweb_cb_seq(e[st->next], &seq) != NGX_OK) {
            st->next++;
            continue;
        }

        type = cJSON_GetObjectItemCaseSensitive(e[st->next], "type");
        url = cJSON_GetObjectItemCaseSensitive(e[st->next], "url");
        data = cJSON_GetObjectItemCaseSensitive(e[st->next], "data");

        if (cJSON_IsString(type)
            && ngx_strcmp(type->valuestring, "resync") == 0)
        {
            if (seq <= st->seq) {
                st->next++;
                continue;
            }

            st->gap = 1;

            return ngx_http_actingweb_cb_fetch(r, url);
        }

        if (seq <= st->seq) {
            /* a duplicate: acknowledged, not applied again */
            st->next++;
            continue;
        }

        if (seq > st->seq + 1) {
            if (!st->polled) {
                return ngx_http_actingweb_cb_poll(r);
            }

            /* the publisher has not got the diffs in between any more */

            st->gap = 1;

            return ngx_http_actingweb_cb_fetch(r, NULL);
        }

        if (data == NULL) {
            if (!cJSON_IsString(url)) {
                /* nothing to apply: a gap, closed below */
                st->next++;
                continue;
            }

            st->clear = 1;

            return ngx_http_actingweb_cb_fetch(r, url);
        }

        if (ngx_http_actingweb_cb_apply(r, seq, "diff", data) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        st->next++;
    }

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_SYNC && st->polled) {
        /* the publisher's sequence may be ahead of what it still has */

        last = cJSON_GetObjectItemCaseSensitive(st->in, "sequence");

        if (cJSON_IsNumber(last) && last->valuedouble > st->seq) {
            st->gap = 1;
            return ngx_http_actingweb_cb_fetch(r, NULL);
        }
    }

    if (st->changes.nelts == 0) {
        return ngx_http_actingweb_cb_done(r);
    }

    return ngx_http_actingweb_cb_store(r);
}


/* GET <publisher>/subscriptions/<us>/<sub>: the diffs not cleared */

static ngx_int_t
ngx_http_actingweb_cb_poll(ngx_http_request_t *r)
{
    ngx_str_t                 url;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    st->polled = 1;
    st->clear = 1;

    if (ngx_http_actingweb_cb_url(r, &url, "/subscriptions/%V/%V", NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_cb_call(r, NGX_HTTP_GET, &url, NULL,
                                      ngx_http_actingweb_cb_polled);
}


static void
ngx_http_actingweb_cb_polled(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    cJSON                    *data, *item, **e;
    ngx_int_t                 rc;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    data = cJSON_GetObjectItemCaseSensitive(pc->json, "data");

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK || pc->status != NGX_HTTP_OK
        || !cJSON_IsArray(data))
    {
        rc = ngx_http_actingweb_cb_failed(r, pc, "polling the publisher");
        goto done;
    }

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_SYNC) {
        /* the publisher's sequence, to see a gap nothing fills */
        st->in = pc->json;
    }

    cJSON_ArrayForEach(item, data) {
        if (!cJSON_IsObject(item)) {
            continue;
        }

        e = ngx_array_push(&st->todo);
        if (e == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        *e = item;
    }

    /* what is left to do, with the polled diffs, by sequence */

    e = st->todo.elts;

    ngx_qsort(e + st->next, st->todo.nelts - st->next, sizeof(cJSON *),
              ngx_http_actingweb_cb_order);

    rc = ngx_http_actingweb_cb_step(r);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * GETs a url the publisher named (it must be below its baseuri: our
 * secret goes along), or with url NULL the whole target
 */

static ngx_int_t
ngx_http_actingweb_cb_fetch(ngx_http_request_t *r, cJSON *url)
{
    ngx_str_t                 u;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (url == NULL) {
        if (ngx_http_actingweb_cb_url(r, &u, "", st->path) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_cb_call(r, NGX_HTTP_GET, &u, NULL,
                                          ngx_http_actingweb_cb_fetched);
    }

    if (!cJSON_IsString(url)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "a change without \"data\" "
                                             "needs a \"url\"");
    }

    u.data = (u_char *) url->valuestring;
    u.len = ngx_strlen(u.data);

    if (u.len <= st->base.len
        || ngx_strncmp(u.data, st->base.data, st->base.len) != 0
        || u.data[st->base.len] != '/')
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "\"url\" is not at the "
                                             "publisher");
    }

    return ngx_http_actingweb_cb_call(r, NGX_HTTP_GET, &u, NULL,
                                      ngx_http_actingweb_cb_fetched);
}


static void
ngx_http_actingweb_cb_fetched(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    cJSON                    **e, *data, *last;
    double                     seq, s;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_http_actingweb_cb_t   *st;

    st = ngx_http_actingweb_cb_get(r);
    e = st->todo.elts;

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK
        || (pc->status != NGX_HTTP_OK
            && !(st->gap && pc->status == NGX_HTTP_NOT_FOUND)))
    {
        rc = ngx_http_actingweb_cb_failed(r, pc, "fetching from the "
                                                 "publisher");
        goto done;
    }

    if (!st->gap) {
        /* a low-granularity diff: the diff's own document */

        data = cJSON_GetObjectItemCaseSensitive(pc->json, "data");

        if (data == NULL
            || ngx_http_actingweb_cb_seq(e[st->next], &seq) != NGX_OK)
        {
            rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                               "the publisher's diff has "
                                               "no data");
            goto done;
        }

        rc = ngx_http_actingweb_cb_apply(r, seq, "diff", data);

        if (rc != NGX_OK) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        st->next++;
        rc = ngx_http_actingweb_cb_step(r);
        goto done;
    }

    /*
     * The whole state (404: none): it stands for every change known so
     * far, so the sequence goes to the highest one seen
     */

    seq = st->seq;

    for (i = st->next; i < st->todo.nelts; i++) {
        if (ngx_http_actingweb_cb_seq(e[i], &s) == NGX_OK && s > seq) {
            seq = s;
        }
    }

    last = cJSON_GetObjectItemCaseSensitive(st->in, "sequence");

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_SYNC && cJSON_IsNumber(last)
        && last->valuedouble > seq)
    {
        seq = last->valuedouble;
    }

    data = pc->status == NGX_HTTP_OK ? pc->json : NULL;

    if (ngx_http_actingweb_cb_apply(r, seq, "resync", data) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    st->gap = 0;
    st->next = st->todo.nelts;
    rc = ngx_http_actingweb_cb_step(r);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * One change into the copy at the subscription's path: a diff merges
 * ("" deletes), a resync or baseline replaces (NULL: none); it is noted
 * for the stream as sequence, type and data
 */

static ngx_int_t
ngx_http_actingweb_cb_apply(ngx_http_request_t *r, double seq,
    const char *type, cJSON *data)
{
    cJSON                    *parent, *node, *last, *dup;
    ngx_str_t                *c;
    const char               *name;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    c = ngx_array_push_n(&st->changes, 3);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c[0].data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (c[0].data == NULL) {
        return NGX_ERROR;
    }

    c[0].len = ngx_sprintf(c[0].data, "%L", (int64_t) seq) - c[0].data;
    c[1].data = (u_char *) type;
    c[1].len = ngx_strlen(type);

    if (data == NULL) {
        ngx_str_set(&c[2], "null");

    } else if (ngx_http_actingweb_json_print(r, data, &c[2]) != NGX_OK) {
        return NGX_ERROR;
    }

    st->seq = seq;

    last = cJSON_GetArrayItem(st->path, cJSON_GetArraySize(st->path) - 1);
    name = last->valuestring;

    parent = ngx_http_actingweb_cb_node(st->copy, st->path, 1);
    if (parent == NULL) {
        return NGX_ERROR;
    }

    node = cJSON_GetObjectItemCaseSensitive(parent, name);

    if (data == NULL
        || (ngx_strcmp(type, "diff") == 0 && cJSON_IsString(data)
            && data->valuestring[0] == '\0'))
    {
        cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
        return NGX_OK;
    }

    if (ngx_strcmp(type, "diff") == 0 && cJSON_IsObject(data)
        && cJSON_IsObject(node))
    {
        return ngx_http_actingweb_cb_merge(node, data);
    }

    dup = cJSON_Duplicate(data, 1);
    if (dup == NULL) {
        return NGX_ERROR;
    }

    /* the replacement gets the name: a duplicate may have none */

    if (node) {
        cJSON_ReplaceItemInObjectCaseSensitive(parent, name, dup);

    } else {
        cJSON_AddItemToObject(parent, name, dup);
    }

    return NGX_OK;
}


/* a diff's names into an object, depth first; "" deletes a name */

static ngx_int_t
ngx_http_actingweb_cb_merge(cJSON *node, cJSON *diff)
{
    cJSON  *item, *old, *dup;

    cJSON_ArrayForEach(item, diff) {
        old = cJSON_GetObjectItemCaseSensitive(node, item->string);

        if (cJSON_IsString(item) && item->valuestring[0] == '\0') {
            cJSON_DeleteItemFromObjectCaseSensitive(node, item->string);
            continue;
        }

        if (cJSON_IsObject(item) && cJSON_IsObject(old)) {
            if (ngx_http_actingweb_cb_merge(old, item) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        dup = cJSON_Duplicate(item, 1);
        if (dup == NULL) {
            return NGX_ERROR;
        }

        if (old) {
            cJSON_ReplaceItemInObjectCaseSensitive(node, item->string, dup);

        } else {
            cJSON_AddItemToObject(node, item->string, dup);
        }
    }

    return NGX_OK;
}


/*
 * The object that holds the last name of path (create: made on the way,
 * over anything that is not an object), or NULL
 */

static cJSON *
ngx_http_actingweb_cb_node(cJSON *copy, cJSON *path, ngx_uint_t create)
{
    cJSON       *node, *next, *name;
    ngx_uint_t   i, n;

    n = cJSON_GetArraySize(path);
    node = copy;

    for (i = 0; i + 1 < n; i++) {
        name = cJSON_GetArrayItem(path, i);
        next = cJSON_GetObjectItemCaseSensitive(node, name->valuestring);

        if (!cJSON_IsObject(next)) {
            if (!create) {
                return NULL;
            }

            if (next) {
                cJSON_DeleteItemFromObjectCaseSensitive(node,
                                                        name->valuestring);
            }

            next = cJSON_AddObjectToObject(node, name->valuestring);
            if (next == NULL) {
                return NULL;
            }
        }

        node = next;
    }

    return node;
}


/* one script: record, copy, stream; only if nothing changed meanwhile */

static ngx_int_t
ngx_http_actingweb_cb_store(ngx_http_request_t *r)
{
    cJSON                            *item;
    ngx_int_t                         rc;
    ngx_str_t                        *c;
    ngx_uint_t                        i;
    ngx_http_actingweb_cb_t          *st;
    ngx_http_actingweb_loc_conf_t    *alcf;
    ngx_http_actingweb_redis_args_t  *a;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    st = ngx_http_actingweb_cb_get(r);

    item = cJSON_GetObjectItemCaseSensitive(st->rec, "sequence");
    cJSON_SetNumberValue(item, st->seq);

    a = ngx_http_actingweb_redis_args(r, 13 + st->changes.nelts);

    if (a == NULL
        || ngx_http_actingweb_redis_keys(r, a, "actor", "trust", "outsubs",
                                         "remote", "applied", NULL)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->peerid.data, st->peerid.len)
           != NGX_OK
        || (st->mode == NGX_HTTP_ACTINGWEB_CB_CREATE
            ? ngx_http_actingweb_redis_arg(a, (u_char *) "new", 3)
            : ngx_http_actingweb_cb_num(r, a, st->seen)) != NGX_OK
        || ngx_http_actingweb_cb_text(r, a, st->rec) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->copy_seen.data,
                                        st->copy_seen.len) != NGX_OK
        || ngx_http_actingweb_cb_text(r, a, st->copy) != NGX_OK
        || ngx_http_actingweb_cb_num(r, a, (double) alcf->change_log)
           != NGX_OK
        || ngx_http_actingweb_cb_text(r, a, st->path) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    c = st->changes.elts;

    for (i = 0; i < st->changes.nelts; i++) {
        if (ngx_http_actingweb_redis_arg(a, c[i].data, c[i].len) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_actingweb_redis_script(r,
                                        NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_APPLY,
                                        a, ngx_http_actingweb_cb_stored);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_cb_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                 rc;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    switch (reply->integer) {

    case 1:
        rc = ngx_http_actingweb_cb_done(r);
        break;

    case -1:
        /* another callback or poll came first: start over from its state */

        if (++st->retries < NGX_HTTP_ACTINGWEB_CB_RETRIES) {
            rc = ngx_http_actingweb_cb_read(r);
            break;
        }

        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                           "subscription changed "
                                           "concurrently, try again");
        break;

    case -2:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                           "subscription id in use");
        break;

    case -3:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no trust with this peer");
        break;

    default:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");
        break;
    }

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Stored (or nothing to store).  After a poll the publisher's diffs up to
 * what we applied are cleared; its answer does not change ours.
 */

static ngx_int_t
ngx_http_actingweb_cb_done(ngx_http_request_t *r)
{
    u_char                    *p;
    cJSON                     *body, *out;
    ngx_str_t                  url, loc;
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_CREATE) {
        loc.len = st->base.len + sizeof("/subscriptions//") - 1
                  + ctx->actor_id.len + st->subid.len;
        loc.data = ngx_pnalloc(r->pool, loc.len);
        if (loc.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(loc.data, "%V/subscriptions/%V/%V", &st->base,
                        &ctx->actor_id, &st->subid);
        loc.len = p - loc.data;

        if (ngx_http_actingweb_set_location(r, &loc) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_no_content(r);
    }

    if (st->clear) {
        st->clear = 0;

        body = cJSON_CreateObject();

        if (body == NULL || ngx_http_actingweb_json_guard(r, body) != NGX_OK
            || cJSON_AddNumberToObject(body, "sequence", st->seq) == NULL
            || ngx_http_actingweb_cb_url(r, &url, "/subscriptions/%V/%V",
                                         NULL) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_cb_call(r, NGX_HTTP_PUT, &url, body,
                                          ngx_http_actingweb_cb_cleared);
    }

    if (st->mode == NGX_HTTP_ACTINGWEB_CB_SYNC) {
        out = cJSON_CreateObject();

        if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
            || cJSON_AddNumberToObject(out, "sequence", st->seq) == NULL
            || cJSON_AddNumberToObject(out, "applied",
                                       (double) st->changes.nelts / 3)
               == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
    }

    return ngx_http_actingweb_send_no_content(r);
}


static void
ngx_http_actingweb_cb_cleared(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t  rc;

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK
        || pc->status != NGX_HTTP_NO_CONTENT)
    {
        /* applied here anyway; the next poll clears them */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "actingweb: clearing diffs at the publisher failed: "
                      "%ui %s", ngx_http_actingweb_peer_status(pc),
                      pc->message ? pc->message : "");
    }

    rc = ngx_http_actingweb_cb_done(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * GET /callbacks/subscriptions/<peer>: {"id", "peerid", "data": copy};
 * with /<sub>: our subscription and "data", the part at its path
 */

static ngx_int_t
ngx_http_actingweb_cb_show(ngx_http_request_t *r)
{
    cJSON                     *out, *parent, *node, *last;
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    out = st->subid.len ? cJSON_Duplicate(st->rec, 1) : cJSON_CreateObject();

    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, out, "id", &ctx->actor_id)
           != NGX_OK
        || (st->subid.len == 0
            && ngx_http_actingweb_json_add_str(r, out, "peerid", &st->peerid)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_DeleteItemFromObjectCaseSensitive(out, "path");

    node = st->copy;

    if (st->subid.len) {
        last = cJSON_GetArrayItem(st->path, cJSON_GetArraySize(st->path) - 1);
        parent = ngx_http_actingweb_cb_node(st->copy, st->path, 0);
        node = parent && last
               ? cJSON_GetObjectItemCaseSensitive(parent, last->valuestring)
               : NULL;
    }

    if (node) {
        cJSON_AddItemReferenceToObject(out, "data", node);

    } else if (cJSON_AddNullToObject(out, "data") == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}


/* the publisher's 201 with the subscription id: then the baseline */

static void
ngx_http_actingweb_cb_subscribed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    cJSON                    *rec, *item;
    ngx_int_t                 rc;
    ngx_str_t                 subid, url;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        rc = ngx_http_actingweb_cb_failed(r, pc, "subscribing at the peer");
        goto done;
    }

    if (pc->status != NGX_HTTP_CREATED
        || ngx_http_actingweb_json_str(pc->json, "subscriptionid", &subid)
           != NGX_OK
        || !ngx_http_actingweb_valid_id(&subid))
    {
        rc = ngx_http_actingweb_cb_failed(r, pc, "subscribing at the peer");
        goto done;
    }

    st->subid = subid;

    /* our record: as the publisher's, "callback": true, our path */

    rec = cJSON_CreateObject();

    if (rec == NULL || ngx_http_actingweb_json_guard(r, rec) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "peerid", &st->peerid)
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "subscriptionid", &subid)
           != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    item = cJSON_GetArrayItem(st->path, 0);
    cJSON_AddStringToObject(rec, "target", item->valuestring);
    item = cJSON_GetArrayItem(st->path, 1);
    cJSON_AddItemToObject(rec, "subtarget", item ? cJSON_Duplicate(item, 1)
                                                 : cJSON_CreateNull());
    item = cJSON_GetArrayItem(st->path, 2);
    cJSON_AddItemToObject(rec, "resource", item ? cJSON_Duplicate(item, 1)
                                                : cJSON_CreateNull());
    item = cJSON_GetObjectItemCaseSensitive(st->in, "granularity");
    cJSON_AddStringToObject(rec, "granularity",
                            cJSON_IsString(item) ? item->valuestring
                                                 : "high");
    cJSON_AddNumberToObject(rec, "sequence", 0);
    cJSON_AddTrueToObject(rec, "callback");
    cJSON_AddItemToObject(rec, "path", cJSON_Duplicate(st->path, 1));

    st->rec = rec;

    /* the baseline: GET <publisher>/<target>[/<subtarget>[/<resource>]] */

    if (ngx_http_actingweb_cb_url(r, &url, "", st->path) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_actingweb_cb_call(r, NGX_HTTP_GET, &url, NULL,
                                    ngx_http_actingweb_cb_based);

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static void
ngx_http_actingweb_cb_based(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                 rc;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK
        || (pc->status != NGX_HTTP_OK && pc->status != NGX_HTTP_NOT_FOUND))
    {
        /* subscribed all the same: the first resync or poll catches up */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: baseline of a subscription at \"%V\" "
                      "failed: %ui %s", &st->peerid,
                      ngx_http_actingweb_peer_status(pc),
                      pc->message ? pc->message : "");
    }

    st->based = 1;
    st->baseline = (pc->error == NGX_HTTP_ACTINGWEB_PEER_OK
                    && pc->status == NGX_HTTP_OK)
                   ? pc->json : NULL;

    /* the copy may have changed since it was read: read it again */

    rc = ngx_http_actingweb_cb_read(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* DELETE at the publisher answered (or not): ours goes anyway */

static void
ngx_http_actingweb_cb_unsubscribed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc)
{
    ngx_int_t                 rc;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    st->status = ngx_http_actingweb_peer_status(pc);

    rc = ngx_http_actingweb_cb_drop(r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_actingweb_cb_drop(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_cb_t          *st;
    ngx_http_actingweb_redis_args_t  *a;

    st = ngx_http_actingweb_cb_get(r);

    a = ngx_http_actingweb_redis_args(r, 4);

    if (a == NULL
        || ngx_http_actingweb_redis_keys(r, a, "outsubs", "remote", NULL)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->peerid.data, st->peerid.len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                      NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_DELETE,
                                      a, ngx_http_actingweb_cb_dropped);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_cb_dropped(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                 rc;
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(r);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);

    } else if (reply->type != REDIS_REPLY_INTEGER) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (reply->integer == 0) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");

    } else if (st->status == 0 || (st->status >= 200 && st->status < 300)
               || st->status == NGX_HTTP_NOT_FOUND)
    {
        rc = ngx_http_actingweb_send_no_content(r);

    } else {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_GATEWAY,
                                           "deleted here; the publisher "
                                           "did not confirm");
    }

    ngx_http_finalize_request(r, rc);
}


/* a peer call with the trust's secret; what an endpoint step returns */

static ngx_int_t
ngx_http_actingweb_cb_call(ngx_http_request_t *r, ngx_uint_t method,
    ngx_str_t *url, cJSON *body, ngx_http_actingweb_peer_handler_pt handler)
{
    ngx_http_actingweb_cb_t         *st;
    ngx_http_actingweb_peer_call_t  *pc;

    st = ngx_http_actingweb_cb_get(r);

    pc = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_peer_call_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->method = method;
    pc->url = *url;
    pc->secret = st->secret;
    pc->handler = handler;

    if (body && ngx_http_actingweb_json_print(r, body, &pc->body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_peer_run(r, pc);
}


/*
 * <baseuri> + fmt with our id and the subscription id, or + the names
 * (percent-encoded, each after a "/")
 */

static ngx_int_t
ngx_http_actingweb_cb_url(ngx_http_request_t *r, ngx_str_t *url,
    const char *fmt, cJSON *names)
{
    u_char                    *p;
    cJSON                     *name;
    size_t                     len, n;
    ngx_http_actingweb_cb_t   *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    len = st->base.len + ngx_strlen(fmt) + ctx->actor_id.len + st->subid.len;

    cJSON_ArrayForEach(name, names) {
        n = ngx_strlen(name->valuestring);
        len += 1 + n + 2 * ngx_escape_uri(NULL, (u_char *) name->valuestring,
                                          n, NGX_ESCAPE_URI_COMPONENT);
    }

    url->data = ngx_pnalloc(r->pool, len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(url->data, "%V", &st->base);
    p = ngx_sprintf(p, fmt, &ctx->actor_id, &st->subid);

    cJSON_ArrayForEach(name, names) {
        *p++ = '/';
        p = (u_char *) ngx_escape_uri(p, (u_char *) name->valuestring,
                                      ngx_strlen(name->valuestring),
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    url->len = p - url->data;

    return NGX_OK;
}


/* a peer call that did not give what was needed, as our answer */

static ngx_int_t
ngx_http_actingweb_cb_failed(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc, const char *what)
{
    u_char  *msg, *p;

    msg = ngx_pnalloc(r->pool, 256);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pc->error != NGX_HTTP_ACTINGWEB_PEER_OK) {
        p = ngx_snprintf(msg, 255, "%s failed: %s", what,
                         pc->message ? pc->message : "no answer");
        *p = '\0';

        return ngx_http_actingweb_send_error(r,
                                          ngx_http_actingweb_peer_status(pc),
                                          (char *) msg);
    }

    /* the peer answered, but not as asked (the reference: 408) */

    p = ngx_snprintf(msg, 255, "%s failed: the peer answered %ui", what,
                     pc->status);
    *p = '\0';

    return ngx_http_actingweb_send_error(r, NGX_HTTP_REQUEST_TIME_OUT,
                                         (char *) msg);
}


/* a "sequence" from 0 to 2^53-1, an integer */

static ngx_int_t
ngx_http_actingweb_cb_seq(cJSON *obj, double *seq)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(obj, "sequence");

    if (!cJSON_IsNumber(item) || item->valuedouble < 0
        || item->valuedouble > NGX_HTTP_ACTINGWEB_CB_SEQ_MAX
        || item->valuedouble != (double) (int64_t) item->valuedouble)
    {
        return NGX_ERROR;
    }

    *seq = item->valuedouble;

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_cb_num(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, double n)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_arg(a, p, ngx_sprintf(p, "%L",
                                                          (int64_t) n) - p);
}


static ngx_int_t
ngx_http_actingweb_cb_text(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, cJSON *json)
{
    ngx_str_t  text;

    if (ngx_http_actingweb_json_print(r, json, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_arg(a, text.data, text.len);
}


static int ngx_libc_cdecl
ngx_http_actingweb_cb_order(const void *one, const void *two)
{
    double  a, b;

    a = 0;
    b = 0;

    (void) ngx_http_actingweb_cb_seq(*(cJSON **) one, &a);
    (void) ngx_http_actingweb_cb_seq(*(cJSON **) two, &b);

    return a < b ? -1 : a > b ? 1 : 0;
}
