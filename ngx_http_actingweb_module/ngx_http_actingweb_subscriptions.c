
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * /subscriptions, the publisher side (spec "Subscriptions", checklist
 * §1.5, §3.5-§3.7):
 *
 *   GET    /subscriptions[?peerid=&target=&subtarget=&resource=]  creator
 *   POST   /subscriptions/<peer> {target, subtarget, resource, granularity}
 *   GET    /subscriptions/<peer>                 the peer or the creator
 *   GET    /subscriptions/<peer>/<sub>           diffs not yet cleared
 *   GET    /subscriptions/<peer>/<sub>/<seq>     one diff, repeatable
 *   PUT    /subscriptions/<peer>/<sub> {sequence}   clear up to it
 *   DELETE /subscriptions/<peer>/<sub>
 *
 * A property write only appends one change event to the actor's stream
 * (scripts.c), whatever the number of subscribers.  A subscription keeps
 * a cursor into that stream; a poll reads the events after the cursor,
 * turns them into this subscription's diffs here (shaped below its path,
 * filtered by the peer's permissions: the same events give the same
 * diffs), and one script stores them with the next sequence numbers and
 * moves the cursor, unless another poll did so first (then the poll
 * starts over).  A cursor that is no longer in the stream (trimmed by
 * actingweb_change_log) gives one "resync" diff instead.
 *
 * Callback delivery (outbox.c) makes the same diffs for all of an
 * actor's subscriptions at once, with the event and diff functions
 * below (ngx_http_actingweb_sub_event_init, _event_diff).  A subscription
 * record's "notified" is the last sequence delivery has seen: diffs a
 * poll stored after it still get their callbacks.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_SUB_RETRIES   16
#define NGX_HTTP_ACTINGWEB_SUB_PAGE      128   /* events read per poll */
#define NGX_HTTP_ACTINGWEB_SEQ_MAX       9007199254740991LL    /* 2^53-1 */


typedef struct {
    ngx_str_t                        subid;
    ngx_uint_t                       seq;        /* /<seq> */
    cJSON                           *rec;        /* the record, parsed */
    ngx_str_t                        cursor;     /* as the poll saw it */
    ngx_uint_t                       sequence;   /* as the poll saw it */
    cJSON                           *data;       /* the answer's diffs */
    cJSON                           *trust;      /* the peer's */
    ngx_uint_t                       retries;
} ngx_http_actingweb_sub_t;


static ngx_int_t ngx_http_actingweb_sub_list(ngx_http_request_t *r);
static void ngx_http_actingweb_sub_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_filter(ngx_http_request_t *r,
    cJSON *rec, const char *name, ngx_str_t *want);
static cJSON *ngx_http_actingweb_sub_view(ngx_http_request_t *r, cJSON *rec,
    ngx_uint_t peer);
static ngx_int_t ngx_http_actingweb_sub_create(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_sub_name(cJSON *in, const char *name,
    cJSON **out);
static void ngx_http_actingweb_sub_created(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_poll(ngx_http_request_t *r);
static void ngx_http_actingweb_sub_pending(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_materialize(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_shape(cJSON *path, ngx_uint_t del,
    cJSON *value, const char **sub, ngx_uint_t ns, cJSON **out);
static ngx_int_t ngx_http_actingweb_sub_readable(ngx_http_request_t *r,
    cJSON *trust, const char **names, ngx_uint_t n);
static ngx_int_t ngx_http_actingweb_sub_entry(ngx_http_request_t *r,
    ngx_uint_t seq, redisReply *id, cJSON *data, cJSON **out);
static ngx_uint_t ngx_http_actingweb_sub_last_resync(cJSON *data);
static ngx_int_t ngx_http_actingweb_sub_resync(ngx_http_request_t *r,
    ngx_uint_t seq, redisReply *id, cJSON **out);
static void ngx_http_actingweb_sub_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_answer(ngx_http_request_t *r,
    cJSON *diff);
static ngx_int_t ngx_http_actingweb_sub_one(ngx_http_request_t *r);
static void ngx_http_actingweb_sub_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_int_t ngx_http_actingweb_sub_clear(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_sub_delete(ngx_http_request_t *r);
static void ngx_http_actingweb_sub_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static ngx_http_actingweb_redis_args_t *ngx_http_actingweb_sub_args(
    ngx_http_request_t *r, ngx_uint_t n, ...);
static ngx_int_t ngx_http_actingweb_sub_num(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_uint_t n);
static cJSON *ngx_http_actingweb_sub_parse(ngx_http_request_t *r,
    redisReply *reply);
static ngx_uint_t ngx_http_actingweb_sub_uint(cJSON *rec, const char *name);
static void ngx_http_actingweb_sub_at(cJSON *rec, const char **at);
static ngx_uint_t ngx_http_actingweb_sub_encodings(cJSON *enc);
static const char *ngx_http_actingweb_sub_str(cJSON *rec, const char *name);


ngx_int_t
ngx_http_actingweb_subscriptions(ngx_http_request_t *r)
{
    ngx_int_t                  n;
    ngx_table_elt_t           *h;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_sub_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = st;

    if (ctx->nsegs > 3) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "not found");
    }

    if (ctx->nsegs >= 2) {
        st->subid = ctx->segs[1];
    }

    switch (ctx->method) {

    case NGX_HTTP_GET:
        if (ctx->nsegs <= 1) {
            return ngx_http_actingweb_sub_list(r);
        }

        if (ctx->nsegs == 2) {
            return ngx_http_actingweb_sub_poll(r);
        }

        /* digits only, no sign, below 2^53 */

        n = ngx_atoi(ctx->segs[2].data, ctx->segs[2].len);

        if (n == NGX_ERROR || ctx->segs[2].len > 15
            || n > NGX_HTTP_ACTINGWEB_SEQ_MAX)
        {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "sequence must be a "
                                                 "non-negative integer");
        }

        st->seq = n;

        return ngx_http_actingweb_sub_one(r);

    case NGX_HTTP_POST:
        if (ctx->nsegs == 0) {
            return ngx_http_actingweb_outsub_create(r);
        }

        if (ctx->nsegs == 1) {
            return ngx_http_actingweb_sub_create(r);
        }

        break;

    case NGX_HTTP_PUT:
        if (ctx->nsegs == 2) {
            return ngx_http_actingweb_sub_clear(r);
        }

        break;

    default: /* DELETE */
        if (ctx->nsegs == 2) {
            return ngx_http_actingweb_sub_delete(r);
        }

        break;
    }

    h = ngx_http_actingweb_header(r, "Allow",
                                  ctx->nsegs == 0 ? "GET, HEAD"
                                  : ctx->nsegs == 1 ? "GET, HEAD, POST"
                                  : ctx->nsegs == 2 ? "GET, HEAD, PUT, DELETE"
                                  : "GET, HEAD");
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "method not allowed");
}


/* GET /subscriptions and /subscriptions/<peer>, with query filters */

static ngx_int_t
ngx_http_actingweb_sub_list(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_redis_args_t  *a;

    /* the peers' subscriptions here and ours at peers (callbacks.c) */

    a = ngx_http_actingweb_sub_args(r, 2, "subs", "outsubs", NULL);
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_LIST,
                                         a, ngx_http_actingweb_sub_listed);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_sub_listed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                     *out, *data, *rec, *view;
    size_t                     i;
    ngx_int_t                  rc;
    ngx_str_t                  want[4];
    ngx_uint_t                 k;
    redisReply                *in, *list;
    ngx_http_actingweb_ctx_t  *ctx;

    static const char  *names[] = {
        "peerid", "target", "subtarget", "resource"
    };

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    /* query values are percent-encoded; the path's peer overrides */

    for (k = 0; k < 4; k++) {
        if (ngx_http_arg(r, (u_char *) names[k], ngx_strlen(names[k]),
                         &want[k])
            != NGX_OK)
        {
            want[k].len = 0;
            continue;
        }

        if (want[k].len
            && ngx_http_actingweb_unescape(r->pool, want[k].data, want[k].len,
                                           &want[k], 1)
               != NGX_OK)
        {
            rc = ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "malformed query");
            goto done;
        }
    }

    if (ctx->nsegs == 1) {
        want[0] = ctx->segs[0];
    }

    out = cJSON_CreateObject();

    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, out, "id", &ctx->actor_id)
           != NGX_OK
        || (ctx->nsegs == 1
            && ngx_http_actingweb_json_add_str(r, out, "peerid", &want[0])
               != NGX_OK)
        || (data = cJSON_AddArrayToObject(out, "data")) == NULL)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    /* the inbound records, then the outbound ones */

    in = reply->element[0];
    list = reply->element[1];

    for (i = 0; i < in->elements + list->elements; i++) {
        rec = ngx_http_actingweb_sub_parse(r, i < in->elements
                                              ? in->element[i]
                                              : list->element[i
                                                          - in->elements]);
        if (rec == NULL) {
            continue;
        }

        for (k = 0; k < 4; k++) {
            if (!ngx_http_actingweb_sub_filter(r, rec, names[k], &want[k])) {
                break;
            }
        }

        if (k < 4) {
            continue;
        }

        view = ngx_http_actingweb_sub_view(r, rec, 1);
        if (view == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        cJSON_AddItemToArray(data, view);
    }

    rc = ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);

done:

    ngx_http_finalize_request(r, rc);
}


/* a record passes a filter when the filter is empty or names its value */

static ngx_int_t
ngx_http_actingweb_sub_filter(ngx_http_request_t *r, cJSON *rec,
    const char *name, ngx_str_t *want)
{
    const char  *v;

    if (want->len == 0) {
        return 1;
    }

    v = ngx_http_actingweb_sub_str(rec, name);

    return v && ngx_strlen(v) == want->len
           && ngx_strncmp(v, want->data, want->len) == 0;
}


/*
 * What clients see of a record (not the cursor or the cleared mark); the
 * caller owns the object
 */

static cJSON *
ngx_http_actingweb_sub_view(ngx_http_request_t *r, cJSON *rec,
    ngx_uint_t peer)
{
    cJSON       *view, *item;
    ngx_uint_t   i;

    static const char  *names[] = {
        "peerid", "subscriptionid", "target", "subtarget", "resource",
        "granularity", "sequence", NULL
    };

    view = cJSON_CreateObject();
    if (view == NULL) {
        return NULL;
    }

    for (i = peer ? 0 : 1; names[i]; i++) {
        item = cJSON_GetObjectItemCaseSensitive(rec, names[i]);

        item = item ? cJSON_Duplicate(item, 1) : cJSON_CreateNull();
        if (item == NULL) {
            cJSON_Delete(view);
            return NULL;
        }

        cJSON_AddItemToObject(view, names[i], item);
    }

    /* "callback": true marks ours at a peer (callbacks.c) */

    if (peer
        && cJSON_AddBoolToObject(view, "callback",
                                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                                     rec, "callback")))
           == NULL)
    {
        cJSON_Delete(view);
        return NULL;
    }

    return view;
}


/* POST /subscriptions/<peer>: only that peer, with its own token */

static ngx_int_t
ngx_http_actingweb_sub_create(ngx_http_request_t *r)
{
    u_char                           *p;
    cJSON                            *in, *rec, *item, *sub, *res, *enc;
    ngx_int_t                         rc;
    ngx_str_t                         text, name;
    const char                       *err, *gran, *names[2];
    ngx_uint_t                        n;
    ngx_http_actingweb_sub_t         *st;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_loc_conf_t    *alcf;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (ctx->role != NGX_HTTP_ACTINGWEB_ROLE_PEER) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                             "only the peer itself "
                                             "subscribes, with its token");
    }

    err = "body must be a JSON object";
    in = ctx->body.len ? ngx_http_actingweb_json_parse(r, ctx->body.data,
                                                       ctx->body.len, &err)
                       : NULL;

    if (!cJSON_IsObject(in)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "target");

    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "\"target\" is required");
    }

    name.data = (u_char *) item->valuestring;
    name.len = ngx_strlen(name.data);

    if (!ngx_http_actingweb_valid_name(&name)
        || ngx_http_actingweb_sub_name(in, "subtarget", &sub) != NGX_OK
        || ngx_http_actingweb_sub_name(in, "resource", &res) != NGX_OK
        || (res && sub == NULL))
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "target, subtarget and resource are "
                                   "names (1-255 bytes, no \"/\"); a "
                                   "resource needs a subtarget");
    }

    item = cJSON_GetObjectItemCaseSensitive(in, "granularity");
    gran = "none";

    if (item && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item)
            || (ngx_strcmp(item->valuestring, "high") != 0
                && ngx_strcmp(item->valuestring, "low") != 0
                && ngx_strcmp(item->valuestring, "none") != 0))
        {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "granularity is \"high\", "
                                                 "\"low\" or \"none\"");
        }

        gran = item->valuestring;
    }

    /* the spec's compression hint: the encodings its callbacks may have */

    enc = cJSON_GetObjectItemCaseSensitive(in, "accept_encoding");

    if (cJSON_IsNull(enc)) {
        enc = NULL;
    }

    if (enc && !ngx_http_actingweb_sub_encodings(enc)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "accept_encoding is a list of "
                                             "at most 8 encoding names");
    }

    /* the spec: the peer must be allowed to read what it subscribes to */

    if (ngx_strcmp(name.data, "properties") == 0) {
        n = 0;

        if (sub) {
            names[n++] = sub->valuestring;
        }

        if (res) {
            names[n++] = res->valuestring;
        }

        rc = ngx_http_actingweb_sub_readable(r, ctx->peer, names, n);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            return ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                                 "this trust may not read "
                                                 "what it subscribes to");
        }
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_ACTINGWEB_ID_LEN);
    if (p == NULL
        || ngx_http_actingweb_random_hex(p, NGX_HTTP_ACTINGWEB_ID_LEN)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->subid.data = p;
    st->subid.len = NGX_HTTP_ACTINGWEB_ID_LEN;

    rec = cJSON_CreateObject();

    if (rec == NULL || ngx_http_actingweb_json_guard(r, rec) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "peerid", &ctx->segs[0])
           != NGX_OK
        || ngx_http_actingweb_json_add_str(r, rec, "subscriptionid",
                                           &st->subid) != NGX_OK
        || cJSON_AddStringToObject(rec, "target", (char *) name.data) == NULL
        || (sub ? cJSON_AddStringToObject(rec, "subtarget", sub->valuestring)
                : cJSON_AddNullToObject(rec, "subtarget")) == NULL
        || (res ? cJSON_AddStringToObject(rec, "resource", res->valuestring)
                : cJSON_AddNullToObject(rec, "resource")) == NULL
        || cJSON_AddStringToObject(rec, "granularity", gran) == NULL
        || cJSON_AddNumberToObject(rec, "sequence", 0) == NULL
        || cJSON_AddNumberToObject(rec, "cleared", 0) == NULL
        || cJSON_AddNumberToObject(rec, "notified", 0) == NULL
        || (enc && !cJSON_AddItemReferenceToObject(rec, "accept_encoding",
                                                   enc))
        || ngx_http_actingweb_json_print(r, rec, &text) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->rec = rec;

    a = ngx_http_actingweb_sub_args(r, 11, "actor", "trust", "subs",
                                    "changes", "subpeer", NULL);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, text.data, text.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *)
                                        (ngx_strcmp(gran, "none") ? "1" : "0"),
                                        1) != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, alcf->change_log) != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, alcf->subscriptions_max)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_CREATE,
                                         a, ngx_http_actingweb_sub_created);

    return ngx_http_actingweb_redis_started(r, rc);
}


/* an optional name: absent, null or "" is none; else a valid name */

static ngx_int_t
ngx_http_actingweb_sub_name(cJSON *in, const char *name, cJSON **out)
{
    cJSON      *item;
    ngx_str_t   s;

    item = cJSON_GetObjectItemCaseSensitive(in, name);
    *out = NULL;

    if (item == NULL || cJSON_IsNull(item)
        || (cJSON_IsString(item) && item->valuestring[0] == '\0'))
    {
        return NGX_OK;
    }

    if (!cJSON_IsString(item)) {
        return NGX_DECLINED;
    }

    s.data = (u_char *) item->valuestring;
    s.len = ngx_strlen(item->valuestring);

    if (!ngx_http_actingweb_valid_name(&s)) {
        return NGX_DECLINED;
    }

    *out = item;

    return NGX_OK;
}


static void
ngx_http_actingweb_sub_created(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    u_char                    *p;
    cJSON                     *view;
    ngx_int_t                  rc;
    ngx_str_t                  url, loc;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

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
        break;

    case 0:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "actor not found");
        goto done;

    case -1:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_FORBIDDEN,
                                           "trust gone or not approved");
        goto done;

    case -3:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                           "too many subscriptions for "
                                           "this peer "
                                           "(actingweb_subscriptions_max)");
        goto done;

    default:
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                           "subscription id in use, "
                                           "try again");
        goto done;
    }

    if (ngx_http_actingweb_actor_url(r, &ctx->actor_id, &url) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    loc.len = url.len + sizeof("/subscriptions//") - 1 + ctx->segs[0].len
              + st->subid.len;
    loc.data = ngx_pnalloc(r->pool, loc.len);
    if (loc.data == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    p = ngx_sprintf(loc.data, "%V/subscriptions/%V/%V", &url, &ctx->segs[0],
                    &st->subid);
    loc.len = p - loc.data;

    view = ngx_http_actingweb_sub_view(r, st->rec, 0);

    if (view == NULL || ngx_http_actingweb_json_guard(r, view) != NGX_OK
        || ngx_http_actingweb_set_location(r, &loc) != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_actingweb_send_json(r, NGX_HTTP_CREATED, view);

done:

    ngx_http_finalize_request(r, rc);
}


/* GET /subscriptions/<peer>/<sub>: turn pending events into diffs first */

static ngx_int_t
ngx_http_actingweb_sub_poll(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_sub_t         *st;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    a = ngx_http_actingweb_sub_args(r, 7, "trust", "subs", "changes",
                                    "diffs", NULL);

    /*
     * the cursor's own event comes first, then at most a page of events:
     * a poll's work is bounded, the rest waits for the next poll
     */

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, NGX_HTTP_ACTINGWEB_SUB_PAGE + 1)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                        NGX_HTTP_ACTINGWEB_SCRIPT_SUB_PENDING,
                                        a, ngx_http_actingweb_sub_pending);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_sub_pending(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t  rc;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");
        goto done;
    }

    rc = ngx_http_actingweb_sub_materialize(r, reply);

    if (rc == NGX_DONE) {
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * {record, trust, {stored diff...}, {event...}, newest id or nil}: the
 * events after the cursor become diffs (at most actingweb_change_log
 * diffs wait uncleared; the rest waits in the stream), then one script
 * stores them if the cursor did not move meanwhile.
 */

static ngx_int_t
ngx_http_actingweb_sub_materialize(ngx_http_request_t *r, redisReply *reply)
{
    cJSON                            *trust, *diff, *entry;
    size_t                            i;
    ngx_int_t                         rc;
    ngx_str_t                        *text;
    ngx_uint_t                        seq, pending;
    ngx_array_t                       texts;
    redisReply                       *stored, *events, *newest, *cursor;
    ngx_http_actingweb_sub_t         *st;
    const char                       *at[3];
    ngx_http_actingweb_sub_event_t    ev;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_loc_conf_t    *alcf;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5
        || reply->element[2]->type != REDIS_REPLY_ARRAY
        || reply->element[3]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->rec = ngx_http_actingweb_sub_parse(r, reply->element[0]);
    trust = ngx_http_actingweb_sub_parse(r, reply->element[1]);
    st->trust = trust;

    if (st->rec == NULL || trust == NULL
        || ngx_http_actingweb_sub_str(st->rec, "cursor") == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_actingweb_sub_at(st->rec, at);

    st->cursor.data = (u_char *) ngx_http_actingweb_sub_str(st->rec,
                                                             "cursor");
    st->cursor.len = ngx_strlen(st->cursor.data);
    st->sequence = ngx_http_actingweb_sub_uint(st->rec, "sequence");

    seq = st->sequence;
    pending = seq - ngx_http_actingweb_sub_uint(st->rec, "cleared");
    stored = reply->element[2];
    events = reply->element[3];
    newest = reply->element[4];

    st->data = cJSON_CreateArray();
    if (st->data == NULL
        || ngx_http_actingweb_json_guard(r, st->data) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < stored->elements; i++) {
        entry = ngx_http_actingweb_sub_parse(r, stored->element[i]);

        if (entry) {
            cJSON_AddItemReferenceToArray(st->data, entry);
        }
    }

    if (ngx_array_init(&texts, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cursor = NULL;

    if (newest->type == REDIS_REPLY_STRING && pending >= alcf->change_log) {
        /* full: the cursor stays lost, for a resync once some are cleared */

    } else if (newest->type == REDIS_REPLY_STRING
               && ngx_http_actingweb_sub_last_resync(st->data))
    {
        /* lost again: one resync waiting uncleared says it already */
        cursor = newest;

    } else if (newest->type == REDIS_REPLY_STRING) {
        /* the cursor was trimmed away: events were lost, start over */

        pending++;
        text = ngx_array_push(&texts);

        if (text == NULL
            || ngx_http_actingweb_sub_resync(r, ++seq, newest, &entry)
               != NGX_OK
            || ngx_http_actingweb_json_print(r, entry, text) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemReferenceToArray(st->data, entry);
        cursor = newest;
    }

    /* the first event is the cursor's own, already done */

    for (i = 1; i < events->elements && pending < alcf->change_log; i++) {

        rc = ngx_http_actingweb_sub_event_init(r, events->element[i], &ev);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cursor = ev.id;

        if (rc == NGX_OK) {
            rc = ngx_http_actingweb_sub_event_diff(r, &ev, at, trust, &diff);
            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        if (rc != NGX_OK) {
            continue;
        }

        text = ngx_array_push(&texts);

        if (text == NULL
            || ngx_http_actingweb_sub_entry(r, ++seq, cursor, diff, &entry)
               != NGX_OK
            || ngx_http_actingweb_json_print(r, entry, text) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemReferenceToArray(st->data, entry);
        pending++;
    }

    if (cursor == NULL) {
        /* nothing new */
        return ngx_http_actingweb_sub_answer(r, NULL);
    }

    /* ARGV: subscription id, cursor and sequence seen, new cursor, diffs */

    a = ngx_http_actingweb_sub_args(r, 6 + texts.nelts, "subs", "diffs",
                                    NULL);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, st->cursor.data, st->cursor.len)
           != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, st->sequence) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) cursor->str,
                                        cursor->len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = texts.elts;

    for (i = 0; i < texts.nelts; i++) {
        if (ngx_http_actingweb_redis_arg(a, text[i].data, text[i].len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_STORE,
                                         a, ngx_http_actingweb_sub_stored);

    return ngx_http_actingweb_redis_started(r, rc);
}


/*
 * One stream event, read once however many subscriptions turn it into
 * diffs: its path parsed, its value parsed on first need.  NGX_DECLINED:
 * not a property write (the empty stream's marker); NGX_ERROR: broken.
 */

ngx_int_t
ngx_http_actingweb_sub_event_init(ngx_http_request_t *r, redisReply *ev,
    ngx_http_actingweb_sub_event_t *e)
{
    size_t       i;
    redisReply  *f, *k, *v, *op;
    const char  *err;

    ngx_memzero(e, sizeof(ngx_http_actingweb_sub_event_t));

    if (ev->type != REDIS_REPLY_ARRAY || ev->elements != 2
        || ev->element[0]->type != REDIS_REPLY_STRING
        || ev->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_ERROR;
    }

    e->id = ev->element[0];
    f = ev->element[1];
    op = NULL;

    for (i = 0; i + 1 < f->elements; i += 2) {
        k = f->element[i];
        v = f->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }

        if (k->len == 4 && ngx_strncmp(k->str, "path", 4) == 0) {
            e->path = ngx_http_actingweb_json_parse(r, (u_char *) v->str,
                                                    v->len, &err);

        } else if (k->len == 5 && ngx_strncmp(k->str, "value", 5) == 0) {
            e->value = v;

        } else if (k->len == 2 && ngx_strncmp(k->str, "op", 2) == 0) {
            op = v;
        }
    }

    if (op == NULL || (op->len == 4 && ngx_strncmp(op->str, "none", 4) == 0)
        || !cJSON_IsArray(e->path) || e->value == NULL)
    {
        e->path = NULL;
        return NGX_DECLINED;
    }

    e->del = (op->len == 6 && ngx_strncmp(op->str, "delete", 6) == 0);

    return NGX_OK;
}


/*
 * One event as the diff of a subscription to at[] (target, subtarget or
 * NULL, resource or NULL) for the peer's trust: NGX_OK with *diff,
 * NGX_DECLINED when it gives none (another path, nothing left after the
 * peer's permissions, not a property event), NGX_ERROR.  It depends on
 * the event, the subscription's path and the trust's relationship and
 * permissions only (outbox.c relies on that).
 */

ngx_int_t
ngx_http_actingweb_sub_event_diff(ngx_http_request_t *r,
    ngx_http_actingweb_sub_event_t *e, const char **at, cJSON *trust,
    cJSON **diff)
{
    cJSON       *path, *item, *next;
    size_t       i;
    ngx_int_t    rc;
    ngx_uint_t   ns, nw;
    const char  *err, *sub[2], *names[2];

    if (e->path == NULL || at[0] == NULL
        || ngx_strcmp(at[0], "properties") != 0)
    {
        return NGX_DECLINED;
    }

    path = e->path;
    ns = 0;

    if ((sub[0] = at[1])) {
        ns++;

        if ((sub[1] = at[2])) {
            ns++;
        }
    }

    /* a write on another branch: its value is not even parsed */

    for (i = 0; i < ns && i < (size_t) cJSON_GetArraySize(path); i++) {
        item = cJSON_GetArrayItem(path, (int) i);

        if (cJSON_IsString(item) && ngx_strcmp(item->valuestring, sub[i]))
        {
            return NGX_DECLINED;
        }
    }

    if (e->parsed == NULL && !e->broken) {
        e->parsed = ngx_http_actingweb_json_parse(r, (u_char *) e->value->str,
                                                  e->value->len, &err);
        e->broken = (e->parsed == NULL);
    }

    if (e->parsed == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_http_actingweb_sub_shape(path, e->del, e->parsed, sub, ns,
                                      diff);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_actingweb_json_guard(r, *diff) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * The peer's permissions: the deeper of the write's and the
     * subscription's path names what changed; a write of several names
     * at once (POST) keeps the names the peer may read.
     */

    nw = cJSON_GetArraySize(path);

    if (nw == 0 && ns == 0 && cJSON_IsObject(*diff)) {
        for (item = (*diff)->child; item; item = next) {
            next = item->next;
            names[0] = item->string;

            rc = ngx_http_actingweb_sub_readable(r, trust, names, 1);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc != NGX_OK) {
                cJSON_Delete(cJSON_DetachItemViaPointer(*diff, item));
            }
        }

        return (*diff)->child ? NGX_OK : NGX_DECLINED;
    }

    if (nw >= ns) {
        const char  *w[NGX_HTTP_ACTINGWEB_SEGMENTS_MAX];

        for (i = 0; i < nw && i < NGX_HTTP_ACTINGWEB_SEGMENTS_MAX; i++) {
            w[i] = cJSON_GetArrayItem(path, i)->valuestring;
        }

        return ngx_http_actingweb_sub_readable(r, trust, w, i);
    }

    return ngx_http_actingweb_sub_readable(r, trust, sub, ns);
}


/*
 * The diff rules of the spec for /properties: the write's value shaped
 * like the data below the subscription's path (sub, ns names).  A write
 * above it gives the part at the subscription's path (nothing if the
 * value has no such part), a write below it is wrapped in the names in
 * between, "" stands for deleted.  NGX_DECLINED: no diff.
 */

static ngx_int_t
ngx_http_actingweb_sub_shape(cJSON *path, ngx_uint_t del, cJSON *value,
    const char **sub, ngx_uint_t ns, cJSON **out)
{
    cJSON       *node, *obj, *name;
    ngx_uint_t   i, nw;

    nw = cJSON_GetArraySize(path);

    for (i = 0; i < nw; i++) {
        name = cJSON_GetArrayItem(path, i);

        if (!cJSON_IsString(name)
            || (i < ns && ngx_strcmp(name->valuestring, sub[i]) != 0))
        {
            return NGX_DECLINED;
        }
    }

    if (nw <= ns) {
        node = value;

        for (i = nw; !del && i < ns; i++) {
            node = cJSON_IsObject(node)
                   ? cJSON_GetObjectItemCaseSensitive(node, sub[i]) : NULL;

            if (node == NULL) {
                return NGX_DECLINED;
            }
        }

        *out = del ? cJSON_CreateString("") : cJSON_Duplicate(node, 1);

        return *out ? NGX_OK : NGX_ERROR;
    }

    node = del ? cJSON_CreateString("") : cJSON_Duplicate(value, 1);

    for (i = nw; node && i-- > ns; /* void */) {
        obj = cJSON_CreateObject();

        if (obj == NULL) {
            cJSON_Delete(node);
            return NGX_ERROR;
        }

        cJSON_AddItemToObject(obj, cJSON_GetArrayItem(path, i)->valuestring,
                              node);
        node = obj;
    }

    *out = node;

    return node ? NGX_OK : NGX_ERROR;
}


/*
 * May this trust read the property at names[0]/names[1]/...?  A refusal
 * by its permissions on any part of the path refuses; an allowance
 * allows; without a rule the relationship's ACL for GET decides.
 */

static ngx_int_t
ngx_http_actingweb_sub_readable(ngx_http_request_t *r, cJSON *trust,
    const char **names, ngx_uint_t n)
{
    u_char      *name, *p;
    size_t       len;
    cJSON       *rel;
    ngx_str_t    s;
    ngx_int_t    rc;
    ngx_uint_t   i, allowed;

    len = 0;

    for (i = 0; i < n; i++) {
        len += ngx_strlen(names[i]) + 1;
    }

    name = ngx_pnalloc(r->pool, len + 1);
    if (name == NULL) {
        return NGX_ERROR;
    }

    p = name;
    allowed = 0;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = '/';
        }

        p = ngx_cpymem(p, names[i], ngx_strlen(names[i]));
        *p = '\0';

        rc = ngx_http_actingweb_perm_check(r, trust, (char *) name, "read");

        if (rc == NGX_DECLINED || rc == NGX_ERROR) {
            return rc;
        }

        if (rc == NGX_OK) {
            allowed = 1;
        }
    }

    if (allowed) {
        return NGX_OK;
    }

    rel = cJSON_GetObjectItemCaseSensitive(trust, "relationship");

    if (!cJSON_IsString(rel)) {
        return NGX_DECLINED;
    }

    s.data = (u_char *) rel->valuestring;
    s.len = ngx_strlen(rel->valuestring);

    return ngx_http_actingweb_acl_allows(r, &s,
                                         NGX_HTTP_ACTINGWEB_EP_PROPERTIES,
                                         NGX_HTTP_GET)
           ? NGX_OK : NGX_DECLINED;
}


/* {"sequence", "timestamp", "data"}; the time is the event's (its id) */

static ngx_int_t
ngx_http_actingweb_sub_entry(ngx_http_request_t *r, ngx_uint_t seq,
    redisReply *id, cJSON *data, cJSON **out)
{
    u_char  buf[NGX_HTTP_ACTINGWEB_SUB_TIME_LEN];
    cJSON  *entry;

    *ngx_http_actingweb_sub_time(buf, (u_char *) id->str, id->len) = '\0';

    entry = cJSON_CreateObject();

    if (entry == NULL || ngx_http_actingweb_json_guard(r, entry) != NGX_OK
        || cJSON_AddNumberToObject(entry, "sequence", (double) seq) == NULL
        || cJSON_AddStringToObject(entry, "timestamp", (char *) buf) == NULL)
    {
        return NGX_ERROR;
    }

    if (data) {
        /* data is guarded by the pool: the entry takes a reference */
        cJSON_AddItemReferenceToObject(entry, "data", data);
    }

    *out = entry;

    return NGX_OK;
}


/* the time of an event id "<ms>-<n>", as diffs show it */

u_char *
ngx_http_actingweb_sub_time(u_char *buf, u_char *id, size_t len)
{
    u_char     *dash;
    ngx_tm_t    tm;
    ngx_int_t   ms;

    dash = ngx_strlchr(id, id + len, '-');
    ms = ngx_atoi(id, dash ? (size_t) (dash - id) : len);

    if (ms == NGX_ERROR) {
        ms = 0;
    }

    ngx_gmtime(ms / 1000, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03d000Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (ms % 1000));
}


/*
 * The spec's resync: {"sequence", "timestamp", "type": "resync", "url"}
 * in place of the lost diffs; the subscriber GETs the url for the full
 * state and goes on from this sequence.
 */

static ngx_int_t
ngx_http_actingweb_sub_resync(ngx_http_request_t *r, ngx_uint_t seq,
    redisReply *id, cJSON **out)
{
    ngx_str_t                  url;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    const char  *at[3];

    ngx_http_actingweb_sub_at(st->rec, at);

    if (ngx_http_actingweb_sub_resync_url(r, at, &url) != NGX_OK
        || ngx_http_actingweb_sub_entry(r, seq, id, NULL, out) != NGX_OK
        || cJSON_AddStringToObject(*out, "type", "resync") == NULL
        || cJSON_AddStringToObject(*out, "url", (char *) url.data) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* <actor URL>/<target>[/<subtarget>[/<resource>]], escaped, with a NUL */

ngx_int_t
ngx_http_actingweb_sub_resync_url(ngx_http_request_t *r, const char **part,
    ngx_str_t *full)
{
    u_char                    *p;
    size_t                     len;
    ngx_str_t                  url;
    ngx_uint_t                 i;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ngx_http_actingweb_actor_url(r, &ctx->actor_id, &url) != NGX_OK) {
        return NGX_ERROR;
    }

    len = url.len;

    for (i = 0; i < 3 && part[i]; i++) {
        len += 1 + ngx_strlen(part[i])
               + 2 * ngx_escape_uri(NULL, (u_char *) part[i],
                                    ngx_strlen(part[i]),
                                    NGX_ESCAPE_URI_COMPONENT);
    }

    full->data = ngx_pnalloc(r->pool, len + 1);
    if (full->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(full->data, url.data, url.len);

    for (i = 0; i < 3 && part[i]; i++) {
        *p++ = '/';
        p = (u_char *) ngx_escape_uri(p, (u_char *) part[i],
                                      ngx_strlen(part[i]),
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    *p = '\0';
    full->len = p - full->data;

    return NGX_OK;
}


static void
ngx_http_actingweb_sub_stored(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (reply->integer == 0) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");
        goto done;
    }

    if (reply->integer == -1) {
        /* another poll stored these diffs first: read them again */

        if (++st->retries < NGX_HTTP_ACTINGWEB_SUB_RETRIES) {
            rc = ngx_http_actingweb_sub_poll(r);
            if (rc == NGX_DONE) {
                return;
            }

            goto done;
        }

        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_CONFLICT,
                                           "subscription is being polled "
                                           "concurrently, try again");
        goto done;
    }

    rc = ngx_http_actingweb_sub_answer(r, NULL);

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * The subscription with its diffs (diff NULL) or with one diff's fields
 * at the top level (GET .../<seq>)
 */

static ngx_int_t
ngx_http_actingweb_sub_answer(ngx_http_request_t *r, cJSON *diff)
{
    cJSON                     *out, *item, *last;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    out = ngx_http_actingweb_sub_view(r, st->rec, 1);

    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, out, "id", &ctx->actor_id)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_DeleteItemFromObjectCaseSensitive(out, "callback");
    cJSON_DeleteItemFromObjectCaseSensitive(out, "granularity");

    if (diff) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "sequence");

        cJSON_ArrayForEach(item, diff) {
            cJSON_AddItemReferenceToObject(out, item->string, item);
        }

        return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
    }

    /* the subscription's current sequence: its newest diff's */

    last = cJSON_GetArrayItem(st->data, cJSON_GetArraySize(st->data) - 1);
    item = cJSON_GetObjectItemCaseSensitive(last, "sequence");

    if (cJSON_IsNumber(item)) {
        cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(out,
                                                              "sequence"),
                             item->valuedouble);
    }

    cJSON_AddItemReferenceToObject(out, "data", st->data);

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}


/* GET /subscriptions/<peer>/<sub>/<seq> reads; it never clears */

static ngx_int_t
ngx_http_actingweb_sub_one(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_sub_t         *st;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    a = ngx_http_actingweb_sub_args(r, 5, "subs", "diffs", NULL);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, st->seq) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_DIFF,
                                         a, ngx_http_actingweb_sub_got);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_sub_got(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    cJSON                     *diff;
    ngx_int_t                  rc;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);
        goto done;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");
        goto done;
    }

    st->rec = ngx_http_actingweb_sub_parse(r, reply->element[0]);
    diff = reply->elements > 1
           ? ngx_http_actingweb_sub_parse(r, reply->element[1]) : NULL;

    if (st->rec == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    if (diff == NULL) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such diff (cleared, or not "
                                           "made yet)");
        goto done;
    }

    rc = ngx_http_actingweb_sub_answer(r, diff);

done:

    ngx_http_finalize_request(r, rc);
}


/* PUT /subscriptions/<peer>/<sub> {"sequence": N}: clear up to N */

static ngx_int_t
ngx_http_actingweb_sub_clear(ngx_http_request_t *r)
{
    cJSON                            *in, *seq;
    ngx_int_t                         rc;
    const char                       *err;
    ngx_http_actingweb_sub_t         *st;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    err = "body must be a JSON object";
    in = ctx->body.len ? ngx_http_actingweb_json_parse(r, ctx->body.data,
                                                       ctx->body.len, &err)
                       : NULL;

    if (!cJSON_IsObject(in)) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST, err);
    }

    seq = cJSON_GetObjectItemCaseSensitive(in, "sequence");

    if (!cJSON_IsNumber(seq) || seq->valuedouble < 0
        || seq->valuedouble > (double) NGX_HTTP_ACTINGWEB_SEQ_MAX
        || seq->valuedouble != (double) (int64_t) seq->valuedouble)
    {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "\"sequence\" must be a "
                                             "non-negative integer");
    }

    a = ngx_http_actingweb_sub_args(r, 5, "subs", "diffs", NULL);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK
        || ngx_http_actingweb_sub_num(r, a, (ngx_uint_t) seq->valuedouble)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_CLEAR,
                                         a, ngx_http_actingweb_sub_done);

    return ngx_http_actingweb_redis_started(r, rc);
}


/*
 * DELETE /subscriptions/<peer>/<sub>, by the peer or by the creator;
 * the subscriber is not told (that comes with callback delivery)
 */

static ngx_int_t
ngx_http_actingweb_sub_delete(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_actingweb_sub_t         *st;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    a = ngx_http_actingweb_sub_args(r, 6, "actor", "subs", "diffs",
                                    "subpeer", NULL);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, st->subid.data, st->subid.len)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ctx->segs[0].data,
                                        ctx->segs[0].len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_SUB_DELETE,
                                         a, ngx_http_actingweb_sub_done);

    return ngx_http_actingweb_redis_started(r, rc);
}


static void
ngx_http_actingweb_sub_done(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_int_t                  rc;
    ngx_http_actingweb_sub_t  *st;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    st = ctx->data;

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        rc = ngx_http_actingweb_redis_reply_error(r, status, reply);

    } else if (reply->type != REDIS_REPLY_INTEGER) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (reply->integer == 0 && ctx->method == NGX_HTTP_DELETE) {
        /* not the peer's here: maybe ours at the peer (callbacks.c) */
        rc = ngx_http_actingweb_outsub_delete(r, &ctx->segs[0], &st->subid);

        if (rc == NGX_DONE) {
            return;
        }

    } else if (reply->integer == 0) {
        rc = ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_FOUND,
                                           "no such subscription");

    } else {
        rc = ngx_http_actingweb_send_no_content(r);
    }

    ngx_http_finalize_request(r, rc);
}


/* a script's arguments with these keys of the actor, NULL-terminated */

static ngx_http_actingweb_redis_args_t *
ngx_http_actingweb_sub_args(ngx_http_request_t *r, ngx_uint_t n, ...)
{
    va_list                           args;
    const char                       *suffix;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_redis_args_t  *a;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    a = ngx_http_actingweb_redis_args(r, n);
    if (a == NULL) {
        return NULL;
    }

    va_start(args, n);

    while ((suffix = va_arg(args, const char *)) != NULL) {
        if (ngx_http_actingweb_redis_key(r, a, &ctx->actor_id, suffix)
            != NGX_OK)
        {
            a = NULL;
            break;
        }
    }

    va_end(args);

    return a;
}


static ngx_int_t
ngx_http_actingweb_sub_num(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_uint_t n)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_arg(a, p, ngx_sprintf(p, "%ui", n) - p);
}


/* a stored JSON object (records, trusts, diffs), or NULL */

static cJSON *
ngx_http_actingweb_sub_parse(ngx_http_request_t *r, redisReply *reply)
{
    cJSON       *json;
    const char  *err;

    if (reply->type != REDIS_REPLY_STRING || reply->len == 0) {
        return NULL;
    }

    json = ngx_http_actingweb_json_parse(r, (u_char *) reply->str,
                                         reply->len, &err);

    return cJSON_IsObject(json) ? json : NULL;
}


static ngx_uint_t
ngx_http_actingweb_sub_uint(cJSON *rec, const char *name)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsNumber(item) && item->valuedouble > 0
           ? (ngx_uint_t) item->valuedouble : 0;
}


static const char *
ngx_http_actingweb_sub_str(cJSON *rec, const char *name)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}


/* ["gzip", "br", ...]: at most 8 names of 1-32 bytes */

static ngx_uint_t
ngx_http_actingweb_sub_encodings(cJSON *enc)
{
    cJSON   *item;
    size_t   len;

    if (!cJSON_IsArray(enc) || cJSON_GetArraySize(enc) > 8) {
        return 0;
    }

    cJSON_ArrayForEach(item, enc) {
        if (!cJSON_IsString(item)) {
            return 0;
        }

        len = ngx_strlen(item->valuestring);

        if (len == 0 || len > 32) {
            return 0;
        }
    }

    return 1;
}


/* a record's path: target, subtarget or NULL, resource or NULL */

static void
ngx_http_actingweb_sub_at(cJSON *rec, const char **at)
{
    at[0] = ngx_http_actingweb_sub_str(rec, "target");
    at[1] = ngx_http_actingweb_sub_str(rec, "subtarget");
    at[2] = at[1] ? ngx_http_actingweb_sub_str(rec, "resource") : NULL;
}


/* the newest diff waiting uncleared is a resync */

static ngx_uint_t
ngx_http_actingweb_sub_last_resync(cJSON *data)
{
    cJSON  *last, *type;

    last = cJSON_GetArrayItem(data, cJSON_GetArraySize(data) - 1);
    type = cJSON_GetObjectItemCaseSensitive(last, "type");

    return cJSON_IsString(type) && ngx_strcmp(type->valuestring, "resync")
                                   == 0;
}
