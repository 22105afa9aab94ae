
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Callback delivery (the outbox), docs/operations.md "Callback delivery".
 *
 * A write that marks an actor's pending work (scripts.c, "pending" in the
 * actor hash) also indexes the actor in one of a few bucket sets in Redis
 * (<prefix>:cbq:{<n>}, n from the actor id: no single hot key) and queues
 * it in its own worker, which claims it at once.  Quiet workers, other
 * nginx instances and a restarted nginx find indexed work with a scan
 * whose period backs off from 100 ms to 2 s while nothing is found.
 *
 * Claiming takes a lease on the actor (script cb_claim): one worker of
 * the fleet delivers a change; a lease whose worker died expires and is
 * taken over.  The claimed subscriptions are polled exactly as a client
 * polls them (ngx_http_actingweb_sub_refresh): new diffs are stored,
 * numbered and filtered by the same code, then the lease is released
 * (cb_release) and the new diffs are POSTed to the subscribers (one
 * POST per peer and change event: the most specific subscription's), one
 * subscription's in sequence order, at most actingweb_callback_concurrency
 * calls at a time per worker.  Delivery is at most once: the diffs stay
 * pollable whatever happens to a callback.
 *
 * Redis work outside client requests runs on a worker request: a request
 * structure with its own pool, a connection without a socket, and the
 * configuration of the actingweb location that wrote (found by the actor
 * URL stored in the index).  Redis ops on it get the usual timeouts and
 * cleanups; it is never sent anything and never finalized: its cleanups
 * run and its pool is destroyed when the job ends.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_OUTBOX_BUCKETS     16
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MIN    100
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MAX    2000
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_COUNT  "32"
#define NGX_HTTP_ACTINGWEB_OUTBOX_LEASE       "30000"     /* ms */
#define NGX_HTTP_ACTINGWEB_OUTBOX_CLAIMS      64
#define NGX_HTTP_ACTINGWEB_OUTBOX_ANSWER_MAX  4096
#define NGX_HTTP_ACTINGWEB_BREAKER_FAILS      5
#define NGX_HTTP_ACTINGWEB_RETRY_DELAY        1000
#define NGX_HTTP_ACTINGWEB_TAGS_TTL           3600000   /* ms */
#define NGX_HTTP_ACTINGWEB_TAGS_TTL_FAILED    60000


typedef enum {
    NGX_HTTP_ACTINGWEB_BREAKER_CLOSED = 0,
    NGX_HTTP_ACTINGWEB_BREAKER_OPENED,
    NGX_HTTP_ACTINGWEB_BREAKER_PROBING       /* half open, one call out */
} ngx_http_actingweb_breaker_e;


/* what the peer's /meta/actingweb/supported said about compression */
typedef enum {
    NGX_HTTP_ACTINGWEB_TAGS_UNKNOWN = 0,
    NGX_HTTP_ACTINGWEB_TAGS_FETCHING,
    NGX_HTTP_ACTINGWEB_TAGS_PLAIN,
    NGX_HTTP_ACTINGWEB_TAGS_GZIP             /* callbackcompression */
} ngx_http_actingweb_tags_e;


typedef struct ngx_http_actingweb_outbox_s  ngx_http_actingweb_outbox_t;


typedef struct {
    ngx_str_node_t                   sn;         /* by id, in ob->tree */
    ngx_queue_t                      queue;
    ngx_queue_t                      waiting;    /* sends, for the tags */
    ngx_http_actingweb_outbox_t     *outbox;
    ngx_http_actingweb_breaker_e     state;
    ngx_http_actingweb_tags_e        tags;
    ngx_uint_t                       fails;
    ngx_uint_t                       inrun;      /* sends in a dedup */
    ngx_msec_t                       until;      /* open until */
    ngx_msec_t                       tags_until; /* known until */
    size_t                           len;
    u_char                           id[1];      /* peer id */
} ngx_http_actingweb_peer_state_t;


typedef struct {
    ngx_queue_t                      queue;
    size_t                           len;
    u_char                           member[1];  /* the actor URL */
} ngx_http_actingweb_candidate_t;


/* one subscription's callbacks, sent one after the other */
typedef struct {
    ngx_queue_t                      queue;      /* run, ready, waiting */
    ngx_queue_t                      all;        /* in ob->sends */
    ngx_http_actingweb_outbox_t     *outbox;
    ngx_http_actingweb_peer_state_t *peer;
    ngx_str_t                        url;
    ngx_str_t                        baseuri;    /* url's start */
    ngx_str_t                        authorization;
    ngx_str_t                        member;     /* the actor URL */
    ngx_str_t                        subid;
    ngx_str_t                       *bodies;
    ngx_uint_t                      *seqs;       /* per body; the first */
    ngx_uint_t                      *events;     /* 2 per body: ms, n */
    u_char                          *downgraded; /* nok: answered 2xx */
    ngx_uint_t                       specific;   /* subscription's depth */
    ngx_uint_t                       order;      /* in the run */
    ngx_uint_t                       n;
    ngx_uint_t                       next;
    ngx_uint_t                       nok;
    ngx_uint_t                       tries;
    ngx_event_t                      retry;
    ngx_connection_t                 dummy;      /* retry's ev->data */
    unsigned                         queued:1;
} ngx_http_actingweb_sends_t;


/* a worker request's job: one scan, or one claimed actor */
typedef struct {
    ngx_http_actingweb_ctx_t         ctx;        /* first: r's ctx */
    ngx_event_t                      gone;       /* frees the request */
    ngx_http_request_t              *request;
    ngx_http_actingweb_outbox_t     *outbox;
    ngx_str_t                        member;
    ngx_str_t                        pending;    /* event id claimed */
    ngx_str_t                        actor_url;
    ngx_str_t                       *subs;       /* subid, peer id, ... */
    ngx_pool_cleanup_t              *mark;       /* before this poll's */
    ngx_queue_t                      run;        /* this run's sends */
    ngx_uint_t                       nsubs;
    ngx_uint_t                       i;
} ngx_http_actingweb_claim_t;


struct ngx_http_actingweb_outbox_s {
    ngx_http_actingweb_main_conf_t  *amcf;
    ngx_log_t                       *log;
    ngx_connection_t                 dummy;      /* timers' ev->data */
    ngx_connection_t                 conn;       /* worker requests' */
    ngx_http_request_t               idle;       /* conn.data */
    ngx_event_t                      kick;
    ngx_event_t                      scan;
    ngx_msec_t                       scan_every;
    ngx_queue_t                      candidates;
    ngx_queue_t                      ready;      /* of sends */
    ngx_queue_t                      peers;
    ngx_rbtree_t                     tree;       /* of peers */
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      sends;      /* all of them */
    ngx_uint_t                       claims;     /* in flight */
    ngx_uint_t                       calls;      /* POSTs in flight */
    ngx_uint_t                       found;      /* by the last scan */
    ngx_uint_t                       scans;      /* replies awaited */
    u_char                           owner[NGX_HTTP_ACTINGWEB_ID_LEN + 1];
};


static ngx_http_conf_ctx_t *ngx_http_actingweb_outbox_locate(
    ngx_http_actingweb_outbox_t *ob, ngx_str_t *member, ngx_str_t *host,
    ngx_str_t *id);
static ngx_http_actingweb_claim_t *ngx_http_actingweb_outbox_request(
    ngx_http_actingweb_outbox_t *ob, ngx_http_conf_ctx_t *cf,
    ngx_str_t *host, ngx_str_t *id);
static void ngx_http_actingweb_outbox_free(ngx_http_request_t *r);
static void ngx_http_actingweb_outbox_gone(ngx_event_t *ev);
static ngx_int_t ngx_http_actingweb_outbox_bucket(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_uint_t n);
static void ngx_http_actingweb_outbox_id(ngx_str_t *member, ngx_str_t *id);
static ngx_int_t ngx_http_actingweb_outbox_index(ngx_http_request_t *r,
    const char *cmd, ngx_str_t *member);
static void ngx_http_actingweb_outbox_ignore(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_outbox_add(ngx_http_actingweb_outbox_t *ob,
    u_char *member, size_t len);
static void ngx_http_actingweb_outbox_kick(ngx_event_t *ev);
static void ngx_http_actingweb_outbox_scan(ngx_event_t *ev);
static void ngx_http_actingweb_outbox_scanned(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_outbox_rearm(ngx_http_actingweb_outbox_t *ob);
static ngx_int_t ngx_http_actingweb_outbox_claim(
    ngx_http_actingweb_outbox_t *ob, ngx_str_t *member);
static void ngx_http_actingweb_outbox_claimed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_outbox_next_sub(ngx_http_request_t *r);
static void ngx_http_actingweb_outbox_refreshed(ngx_http_request_t *r,
    ngx_int_t rc, cJSON *rec, cJSON *trust, cJSON *diffs, ngx_uint_t seen);
static ngx_int_t ngx_http_actingweb_outbox_payload(ngx_http_request_t *r,
    cJSON *rec, cJSON *entry, ngx_str_t *url, ngx_str_t *out,
    u_char *downgraded);
static void ngx_http_actingweb_outbox_dedup(ngx_http_actingweb_claim_t *cl);
static ngx_uint_t ngx_http_actingweb_outbox_wins(
    ngx_http_actingweb_sends_t *sd, ngx_http_actingweb_sends_t *other,
    ngx_uint_t i);
static void ngx_http_actingweb_outbox_release(ngx_http_request_t *r);
static void ngx_http_actingweb_outbox_released(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_outbox_done(ngx_http_request_t *r);
static ngx_http_actingweb_peer_state_t *ngx_http_actingweb_outbox_peer(
    ngx_http_actingweb_outbox_t *ob, ngx_str_t *id);
static void ngx_http_actingweb_outbox_state(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_peer_state_t *ps, ngx_uint_t state);
static void ngx_http_actingweb_outbox_shared(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *peer, ngx_str_t *circuit, ngx_msec_t now);
static ngx_msec_t ngx_http_actingweb_outbox_now(void);
static void ngx_http_actingweb_outbox_circuit(ngx_http_actingweb_sends_t *sd,
    ngx_msec_t until);
static ngx_http_actingweb_claim_t *ngx_http_actingweb_outbox_actor(
    ngx_http_actingweb_sends_t *sd, ngx_str_t *id);
static ngx_uint_t ngx_http_actingweb_outbox_breaker(
    ngx_http_actingweb_outbox_t *ob, ngx_http_actingweb_peer_state_t *ps,
    ngx_uint_t ok, ngx_msec_t wait);
static ngx_int_t ngx_http_actingweb_outbox_tags(
    ngx_http_actingweb_peer_state_t *ps, ngx_str_t *baseuri);
static void ngx_http_actingweb_outbox_tagged(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body);
static void ngx_http_actingweb_outbox_pump(ngx_http_actingweb_outbox_t *ob);
static void ngx_http_actingweb_outbox_sent(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body);
static void ngx_http_actingweb_outbox_retry(ngx_event_t *ev);
static void ngx_http_actingweb_outbox_clear(ngx_http_actingweb_sends_t *sd);
static void ngx_http_actingweb_outbox_sends_free(
    ngx_http_actingweb_sends_t *sd);


ngx_int_t
ngx_http_actingweb_outbox_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_http_actingweb_outbox_t  *ob;

    ob = ngx_pcalloc(cycle->pool, sizeof(ngx_http_actingweb_outbox_t));
    if (ob == NULL) {
        return NGX_ERROR;
    }

    ob->amcf = amcf;
    ob->log = cycle->log;
    ob->dummy.fd = (ngx_socket_t) -1;
    ob->scan_every = NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MIN;

    ngx_queue_init(&ob->candidates);
    ngx_queue_init(&ob->ready);
    ngx_queue_init(&ob->peers);
    ngx_queue_init(&ob->sends);
    ngx_rbtree_init(&ob->tree, &ob->sentinel, ngx_str_rbtree_insert_value);

    ob->conn.fd = (ngx_socket_t) -1;
    ob->conn.log = cycle->log;
    ob->conn.data = &ob->idle;
    ob->idle.main = &ob->idle;

    /* the lease owner: this worker, unique in the fleet */

    if (ngx_http_actingweb_random_hex(ob->owner, NGX_HTTP_ACTINGWEB_ID_LEN)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ob->owner[NGX_HTTP_ACTINGWEB_ID_LEN] = '\0';

    ob->kick.handler = ngx_http_actingweb_outbox_kick;
    ob->kick.data = &ob->dummy;
    ob->kick.log = cycle->log;
    ob->kick.cancelable = 1;

    ob->scan.handler = ngx_http_actingweb_outbox_scan;
    ob->scan.data = &ob->dummy;
    ob->scan.log = cycle->log;
    ob->scan.cancelable = 1;

    amcf->outbox = ob;

    /* work left by a stopped nginx is found by the first scan */

    ngx_add_timer(&ob->scan, ob->scan_every);

    return NGX_OK;
}


void
ngx_http_actingweb_outbox_exit(ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_queue_t                      *q;
    ngx_http_actingweb_outbox_t      *ob;
    ngx_http_actingweb_sends_t       *sd;
    ngx_http_actingweb_peer_state_t  *ps;

    ob = amcf->outbox;
    if (ob == NULL) {
        return;
    }

    if (ob->kick.timer_set) {
        ngx_del_timer(&ob->kick);
    }

    if (ob->kick.posted) {
        ngx_delete_posted_event(&ob->kick);
    }

    if (ob->scan.timer_set) {
        ngx_del_timer(&ob->scan);
    }

    /* the candidates stay indexed in Redis for the next worker */

    while (!ngx_queue_empty(&ob->candidates)) {
        q = ngx_queue_head(&ob->candidates);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_actingweb_candidate_t, queue));
    }

    while (!ngx_queue_empty(&ob->sends)) {
        q = ngx_queue_head(&ob->sends);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, all);
        ngx_http_actingweb_outbox_sends_free(sd);
    }

    while (!ngx_queue_empty(&ob->peers)) {
        q = ngx_queue_head(&ob->peers);
        ngx_queue_remove(q);
        ps = ngx_queue_data(q, ngx_http_actingweb_peer_state_t, queue);

        /* the shared gauges count this worker's circuits no more */
        ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_CLOSED);
        ngx_free(ps);
    }

    amcf->outbox = NULL;
}


/* after a write that marked pending work (properties.c) */

void
ngx_http_actingweb_outbox_mark(ngx_http_request_t *r)
{
    ngx_str_t                        url;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (amcf->outbox == NULL
        || ngx_http_actingweb_actor_url(r, &ctx->actor_id, &url) != NGX_OK)
    {
        return;
    }

    /* indexed first: if this worker dies, another one finds it */

    if (ngx_http_actingweb_outbox_index(r, "SADD", &url) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "actingweb: callbacks of a write not indexed; "
                      "they go out with the next write");
    }

    ngx_http_actingweb_outbox_add(amcf->outbox, url.data, url.len);
}


static void
ngx_http_actingweb_outbox_add(ngx_http_actingweb_outbox_t *ob,
    u_char *member, size_t len)
{
    ngx_queue_t                     *q;
    ngx_http_actingweb_candidate_t  *cd;

    /* a burst of writes to one actor is one claim */

    for (q = ngx_queue_head(&ob->candidates);
         q != ngx_queue_sentinel(&ob->candidates);
         q = ngx_queue_next(q))
    {
        cd = ngx_queue_data(q, ngx_http_actingweb_candidate_t, queue);

        if (cd->len == len && ngx_memcmp(cd->member, member, len) == 0) {
            return;
        }
    }

    cd = ngx_alloc(sizeof(ngx_http_actingweb_candidate_t) + len, ob->log);
    if (cd == NULL) {
        return;
    }

    cd->len = len;
    ngx_memcpy(cd->member, member, len);
    ngx_queue_insert_tail(&ob->candidates, &cd->queue);

    if (!ob->kick.posted) {
        ngx_post_event(&ob->kick, &ngx_posted_events);
    }
}


static void
ngx_http_actingweb_outbox_kick(ngx_event_t *ev)
{
    ngx_str_t                        member;
    ngx_queue_t                     *q;
    ngx_connection_t                *c;
    ngx_http_actingweb_outbox_t     *ob;
    ngx_http_actingweb_candidate_t  *cd;

    c = ev->data;
    ob = (ngx_http_actingweb_outbox_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_outbox_t, dummy));

    while (!ngx_queue_empty(&ob->candidates)
           && ob->claims < NGX_HTTP_ACTINGWEB_OUTBOX_CLAIMS)
    {
        q = ngx_queue_head(&ob->candidates);
        ngx_queue_remove(q);
        cd = ngx_queue_data(q, ngx_http_actingweb_candidate_t, queue);

        member.data = cd->member;
        member.len = cd->len;

        (void) ngx_http_actingweb_outbox_claim(ob, &member);

        ngx_free(cd);
    }
}


/* a bucket set of the index: <prefix>:cbq:{<n>} */

static ngx_int_t
ngx_http_actingweb_outbox_bucket(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_uint_t n)
{
    u_char                          *p, *last;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    p = ngx_pnalloc(r->pool, amcf->redis_prefix.len + sizeof(":cbq:{}")
                             + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%V:cbq:{%ui}", &amcf->redis_prefix, n);

    return ngx_http_actingweb_redis_arg(a, p, last - p);
}


/* the actor id: the last segment of its URL */

static void
ngx_http_actingweb_outbox_id(ngx_str_t *member, ngx_str_t *id)
{
    u_char  *p;

    p = member->data + member->len;

    while (p > member->data && p[-1] != '/') {
        p--;
    }

    id->data = p;
    id->len = member->data + member->len - p;
}


static ngx_int_t
ngx_http_actingweb_outbox_index(ngx_http_request_t *r, const char *cmd,
    ngx_str_t *member)
{
    ngx_str_t                         id;
    ngx_http_actingweb_redis_args_t  *a;

    ngx_http_actingweb_outbox_id(member, &id);

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_redis_arg(a, (u_char *) cmd, ngx_strlen(cmd))
           != NGX_OK
        || ngx_http_actingweb_outbox_bucket(r, a,
               ngx_crc32_short(id.data, id.len)
               % NGX_HTTP_ACTINGWEB_OUTBOX_BUCKETS)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, member->data, member->len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_command(r, a,
                                            ngx_http_actingweb_outbox_ignore);
}


static void
ngx_http_actingweb_outbox_ignore(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    return;
}


/*
 * The location that wrote: the actor URL's path names it (its factory
 * prefix, or its actingweb_base_url); Host comes from the URL too, for
 * actor URLs without actingweb_base_url.  NULL: no such location here.
 */

static ngx_http_conf_ctx_t *
ngx_http_actingweb_outbox_locate(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *member, ngx_str_t *host, ngx_str_t *id)
{
    u_char                          *p, *path, *last;
    ngx_str_t                        prefix;
    ngx_uint_t                       i;
    ngx_http_conf_ctx_t            **loc;
    ngx_http_actingweb_loc_conf_t   *alcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ob->amcf;

    ngx_http_actingweb_outbox_id(member, id);

    if (!ngx_http_actingweb_valid_id(id) || amcf->locations == NULL)
    {
        return NULL;
    }

    last = id->data - 1;                       /* the '/' before the id */

    p = ngx_strlcasestrn(member->data, last, (u_char *) "://", 3 - 1);
    if (p == NULL) {
        return NULL;
    }

    host->data = p + 3;
    path = ngx_strlchr(host->data, last + 1, '/');
    host->len = path - host->data;

    prefix.data = path;
    prefix.len = last - path;

    loc = amcf->locations->elts;

    for (i = 0; i < amcf->locations->nelts; i++) {
        alcf = loc[i]->loc_conf[ngx_http_actingweb_module.ctx_index];

        if (alcf->base_url.len) {
            if (alcf->base_url.len == (size_t) (last - member->data)
                && ngx_strncmp(alcf->base_url.data, member->data,
                               alcf->base_url.len) == 0)
            {
                return loc[i];
            }

            continue;
        }

        if (alcf->prefix.len == prefix.len
            && ngx_strncmp(alcf->prefix.data, prefix.data, prefix.len) == 0)
        {
            return loc[i];
        }
    }

    return NULL;
}


/* a worker request in location cf, for the actor id (may be empty) */

static ngx_http_actingweb_claim_t *
ngx_http_actingweb_outbox_request(ngx_http_actingweb_outbox_t *ob,
    ngx_http_conf_ctx_t *cf, ngx_str_t *host, ngx_str_t *id)
{
    ngx_pool_t                  *pool;
    ngx_table_elt_t             *h;
    ngx_http_request_t          *r;
    ngx_http_actingweb_claim_t  *cl;

    pool = ngx_create_pool(4096, ob->log);
    if (pool == NULL) {
        return NULL;
    }

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    cl = ngx_pcalloc(pool, sizeof(ngx_http_actingweb_claim_t));
    h = ngx_pcalloc(pool, sizeof(ngx_table_elt_t));

    if (r == NULL || cl == NULL || h == NULL) {
        goto failed;
    }

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    cl->ctx.segs = ngx_pcalloc(pool, sizeof(ngx_str_t));
    h->value.data = ngx_pstrdup(pool, host);
    cl->ctx.actor_id.data = ngx_pstrdup(pool, id);

    if (r->ctx == NULL || cl->ctx.segs == NULL
        || (host->len && h->value.data == NULL)
        || (id->len && cl->ctx.actor_id.data == NULL))
    {
        goto failed;
    }

    /* no socket: nothing is ever sent on it, and it is never finalized */

    r->pool = pool;
    r->connection = &ob->conn;
    r->main = r;
    r->count = 1;
    r->signature = NGX_HTTP_MODULE;
    r->main_conf = cf->main_conf;
    r->srv_conf = cf->srv_conf;
    r->loc_conf = cf->loc_conf;

    h->value.len = host->len;
    r->headers_in.host = host->len ? h : NULL;

    cl->ctx.actor_id.len = id->len;
    cl->ctx.nsegs = 1;
    cl->ctx.worker = 1;
    ngx_queue_init(&cl->run);
    cl->request = r;
    cl->outbox = ob;

    cl->gone.handler = ngx_http_actingweb_outbox_gone;
    cl->gone.data = &ob->dummy;
    cl->gone.log = ob->log;

    ngx_http_set_ctx(r, &cl->ctx, ngx_http_actingweb_module);

    return cl;

failed:

    ngx_destroy_pool(pool);

    return NULL;
}


/*
 * The end of a worker request: Redis ops still out let go of it, and the
 * pool goes from the event loop, as callers up the stack may still read
 * it (a poll's handler runs inside the poll).
 */

static void
ngx_http_actingweb_outbox_free(ngx_http_request_t *r)
{
    ngx_http_cleanup_t          *cln;
    ngx_http_actingweb_claim_t  *cl;

    for (cln = r->cleanup; cln; cln = cln->next) {
        if (cln->handler) {
            cln->handler(cln->data);
            cln->handler = NULL;
        }
    }

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ngx_post_event(&cl->gone, &ngx_posted_events);
}


static void
ngx_http_actingweb_outbox_gone(ngx_event_t *ev)
{
    ngx_http_actingweb_claim_t  *cl;

    cl = (ngx_http_actingweb_claim_t *)
             ((u_char *) ev - offsetof(ngx_http_actingweb_claim_t, gone));

    ngx_destroy_pool(cl->request->pool);
}


/* a scan of every bucket: a few random members of each */

static void
ngx_http_actingweb_outbox_scan(ngx_event_t *ev)
{
    ngx_str_t                         none;
    ngx_uint_t                        b;
    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_http_conf_ctx_t             **loc;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_outbox_t      *ob;
    ngx_http_actingweb_redis_args_t  *a;

    c = ev->data;
    ob = (ngx_http_actingweb_outbox_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_outbox_t, dummy));

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ob->scans || !ngx_http_actingweb_redis_connected(ob->amcf)
        || ob->amcf->locations == NULL)
    {
        ngx_http_actingweb_outbox_rearm(ob);
        return;
    }

    /* any location's worker request will do for the index */

    loc = ob->amcf->locations->elts;
    ngx_str_null(&none);

    cl = ngx_http_actingweb_outbox_request(ob, loc[0], &none, &none);
    if (cl == NULL) {
        ngx_http_actingweb_outbox_rearm(ob);
        return;
    }

    r = cl->request;
    ob->found = 0;

    for (b = 0; b < NGX_HTTP_ACTINGWEB_OUTBOX_BUCKETS; b++) {
        a = ngx_http_actingweb_redis_args(r, 3);

        if (a == NULL
            || ngx_http_actingweb_redis_arg(a, (u_char *) "SRANDMEMBER", 11)
               != NGX_OK
            || ngx_http_actingweb_outbox_bucket(r, a, b) != NGX_OK
            || ngx_http_actingweb_redis_arg(a,
                   (u_char *) NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_COUNT,
                   sizeof(NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_COUNT) - 1)
               != NGX_OK
            || ngx_http_actingweb_redis_command(r, a,
                                     ngx_http_actingweb_outbox_scanned)
               != NGX_OK)
        {
            break;
        }

        ob->scans++;
    }

    if (ob->scans == 0) {
        ngx_http_actingweb_outbox_free(r);
        ngx_http_actingweb_outbox_rearm(ob);
    }
}


static void
ngx_http_actingweb_outbox_scanned(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    size_t                        i;
    ngx_http_actingweb_claim_t   *cl;
    ngx_http_actingweb_outbox_t  *ob;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ob = cl->outbox;

    if (status == NGX_HTTP_ACTINGWEB_REDIS_OK
        && reply->type == REDIS_REPLY_ARRAY)
    {
        for (i = 0; i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                ngx_http_actingweb_outbox_add(ob,
                                      (u_char *) reply->element[i]->str,
                                      reply->element[i]->len);
                ob->found++;
            }
        }
    }

    if (--ob->scans) {
        return;
    }

    /* the last bucket's answer: the request goes, the next scan is set */

    ngx_http_actingweb_outbox_free(r);

    ob->scan_every = ob->found ? NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MIN
                               : ngx_min(ob->scan_every * 2,
                                         NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MAX);

    ngx_http_actingweb_outbox_rearm(ob);
}


static void
ngx_http_actingweb_outbox_rearm(ngx_http_actingweb_outbox_t *ob)
{
    if (ngx_exiting || ngx_terminate || ngx_quit || ob->scan.timer_set) {
        return;
    }

    ngx_add_timer(&ob->scan, ob->scan_every);
}


static ngx_int_t
ngx_http_actingweb_outbox_claim(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *member)
{
    u_char                           *p;
    ngx_str_t                         id, host;
    ngx_http_request_t               *r;
    ngx_http_conf_ctx_t              *cf;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_redis_args_t  *a;

    if (ngx_exiting || ngx_terminate) {
        return NGX_DECLINED;
    }

    cf = ngx_http_actingweb_outbox_locate(ob, member, &host, &id);
    if (cf == NULL) {
        /* the instances of a fleet serve the same locations: drop it */

        ngx_log_error(NGX_LOG_WARN, ob->log, 0,
                      "actingweb: callbacks for \"%V\" dropped: no such "
                      "location here", member);

        cf = ob->amcf->locations ? ((ngx_http_conf_ctx_t **)
                                    ob->amcf->locations->elts)[0] : NULL;
        ngx_str_null(&host);
        ngx_str_null(&id);

        cl = cf ? ngx_http_actingweb_outbox_request(ob, cf, &host, &id)
                : NULL;

        if (cl) {
            (void) ngx_http_actingweb_outbox_index(cl->request, "SREM",
                                                   member);
            ngx_http_actingweb_outbox_free(cl->request);
        }

        return NGX_DECLINED;
    }

    cl = ngx_http_actingweb_outbox_request(ob, cf, &host, &id);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    r = cl->request;
    p = ngx_pnalloc(r->pool, member->len);
    a = ngx_http_actingweb_redis_args(r, 7);

    if (p == NULL || a == NULL) {
        goto failed;
    }

    cl->member.data = p;
    cl->member.len = member->len;
    ngx_memcpy(p, member->data, member->len);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN * 2);
    if (p == NULL) {
        goto failed;
    }

    /* a probe of a shared open circuit has its call's time, and then some */

    if (ngx_http_actingweb_redis_key(r, a, &id, "actor") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "subs") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "circuits") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ob->owner,
                                        NGX_HTTP_ACTINGWEB_ID_LEN) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p,
               ngx_sprintf(p, "%uM", ngx_http_actingweb_outbox_now()) - p)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a,
               (u_char *) NGX_HTTP_ACTINGWEB_OUTBOX_LEASE,
               sizeof(NGX_HTTP_ACTINGWEB_OUTBOX_LEASE) - 1) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + NGX_INT_T_LEN,
               ngx_sprintf(p + NGX_INT_T_LEN, "%M",
                           ob->amcf->callback_timeout + 1000)
               - p - NGX_INT_T_LEN)
           != NGX_OK)
    {
        goto failed;
    }

    if (ngx_http_actingweb_redis_script(r, NGX_HTTP_ACTINGWEB_SCRIPT_CB_CLAIM,
                                        a, ngx_http_actingweb_outbox_claimed)
        != NGX_OK)
    {
        goto failed;
    }

    ob->claims++;

    return NGX_OK;

failed:

    ngx_destroy_pool(r->pool);

    return NGX_ERROR;
}


static void
ngx_http_actingweb_outbox_claimed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    size_t                       i;
    ngx_str_t                    circuit;
    ngx_msec_t                   now;
    ngx_http_actingweb_claim_t  *cl;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK) {
        /* still indexed: a later scan tries again */
        ngx_http_actingweb_outbox_done(r);
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        /* nothing pending (any more): out of the index */
        (void) ngx_http_actingweb_outbox_index(r, "SREM", &cl->member);
        ngx_http_actingweb_outbox_done(r);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || ngx_http_actingweb_reply_str(r, reply->element[0], &cl->pending)
           != NGX_OK)
    {
        /* leased by a live worker: it releases and sees new work */
        ngx_http_actingweb_outbox_done(r);
        return;
    }

    cl->nsubs = (reply->elements - 1) / 3;
    cl->subs = ngx_pcalloc(r->pool, sizeof(ngx_str_t) * 2 * (cl->nsubs + 1));

    if (cl->subs == NULL) {
        ngx_http_actingweb_outbox_done(r);
        return;
    }

    now = ngx_http_actingweb_outbox_now();

    for (i = 0; i < cl->nsubs; i++) {
        if (ngx_http_actingweb_reply_str(r, reply->element[3 * i + 1],
                                         &cl->subs[2 * i])
            != NGX_OK
            || ngx_http_actingweb_reply_str(r, reply->element[3 * i + 2],
                                            &cl->subs[2 * i + 1])
               != NGX_OK
            || ngx_http_actingweb_reply_str(r, reply->element[3 * i + 3],
                                            &circuit)
               != NGX_OK)
        {
            cl->nsubs = i;
            break;
        }

        ngx_http_actingweb_outbox_shared(cl->outbox, &cl->subs[2 * i + 1],
                                         &circuit, now);
    }

    ngx_http_actingweb_outbox_next_sub(r);
}


/* the claimed subscriptions, one after the other, then the release */

static void
ngx_http_actingweb_outbox_next_sub(ngx_http_request_t *r)
{
    ngx_queue_t                 *q;
    ngx_http_actingweb_ctx_t    *ctx;
    ngx_http_actingweb_claim_t  *cl;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    while (cl->i < cl->nsubs) {
        ctx->segs[0] = cl->subs[2 * cl->i + 1];
        cl->mark = r->pool->cleanup;

        if (ngx_http_actingweb_sub_refresh(r, &cl->subs[2 * cl->i],
                                      ngx_http_actingweb_outbox_refreshed)
            == NGX_DONE)
        {
            return;
        }

        cl->i++;
    }

    /* every subscription polled: this run's callbacks go */

    ngx_http_actingweb_outbox_dedup(cl);

    while (!ngx_queue_empty(&cl->run)) {
        q = ngx_queue_head(&cl->run);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&cl->outbox->ready, q);
    }

    ngx_http_actingweb_outbox_pump(cl->outbox);

    ngx_http_actingweb_outbox_release(r);
}


static void
ngx_http_actingweb_outbox_refreshed(ngx_http_request_t *r, ngx_int_t rc,
    cJSON *rec, cJSON *trust, cJSON *diffs, ngx_uint_t seen)
{
    u_char                          *p;
    cJSON                           *entry, *seq;
    size_t                           len;
    ngx_int_t                        ms, en;
    ngx_str_t                        peer, baseuri, secret, url, *body, s;
    ngx_uint_t                       n, i;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_sends_t      *sd;
    ngx_http_actingweb_outbox_t     *ob;
    ngx_http_actingweb_main_conf_t  *amcf;
    static const char               *specific[] = {
        "target", "subtarget", "resource"
    };

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ob = cl->outbox;
    amcf = ob->amcf;

    peer = cl->subs[2 * cl->i + 1];
    cl->i++;

    if (rc != NGX_OK || rec == NULL || trust == NULL) {
        goto next;
    }

    /* the diffs this run made (a client's poll may have made others) */

    n = 0;

    cJSON_ArrayForEach(entry, diffs) {
        seq = cJSON_GetObjectItemCaseSensitive(entry, "sequence");

        if (cJSON_IsNumber(seq) && seq->valuedouble > (double) seen) {
            n++;
        }
    }

    if (n == 0
        || ngx_http_actingweb_json_str(trust, "baseuri", &baseuri) != NGX_OK
        || ngx_http_actingweb_json_str(trust, "secret", &secret) != NGX_OK
        || ngx_http_actingweb_actor_url(r, &ctx->actor_id, &url) != NGX_OK)
    {
        goto next;
    }

    /* <baseuri>/callbacks/subscriptions/<our id>/<subid> */

    len = sizeof(ngx_http_actingweb_sends_t) + baseuri.len
          + sizeof("/callbacks/subscriptions//") + ctx->actor_id.len
          + cl->subs[2 * (cl->i - 1)].len + sizeof("Bearer ") + secret.len
          + peer.len + n * (sizeof(ngx_str_t) + 3 * sizeof(ngx_uint_t) + 1)
          + cl->member.len + cl->subs[2 * (cl->i - 1)].len;

    sd = ngx_calloc(len, ob->log);
    if (sd == NULL) {
        goto next;
    }

    sd->outbox = ob;
    ngx_queue_insert_tail(&ob->sends, &sd->all);
    sd->bodies = (ngx_str_t *) (sd + 1);
    sd->seqs = (ngx_uint_t *) (sd->bodies + n);
    sd->events = sd->seqs + n;
    sd->downgraded = (u_char *) (sd->events + 2 * n);

    p = sd->downgraded + n;
    sd->member.data = p;
    p = ngx_cpymem(p, cl->member.data, cl->member.len);
    sd->member.len = cl->member.len;
    sd->subid.data = p;
    p = ngx_cpymem(p, cl->subs[2 * (cl->i - 1)].data,
                   cl->subs[2 * (cl->i - 1)].len);
    sd->subid.len = cl->subs[2 * (cl->i - 1)].len;

    sd->url.data = p;
    p = ngx_sprintf(p, "%V/callbacks/subscriptions/%V/%V", &baseuri,
                    &ctx->actor_id, &cl->subs[2 * (cl->i - 1)]);
    sd->url.len = p - sd->url.data;
    sd->baseuri.data = sd->url.data;
    sd->baseuri.len = baseuri.len;
    *p++ = '\0';

    sd->authorization.data = p;
    p = ngx_sprintf(p, "Bearer %V", &secret);
    sd->authorization.len = p - sd->authorization.data;

    sd->peer = ngx_http_actingweb_outbox_peer(ob, &peer);

    sd->order = cl->i;

    /* properties < properties/x < properties/x/y: the deeper one wins */

    for (i = 0; i < 3; i++) {
        if (ngx_http_actingweb_json_str(rec, specific[i], &s)
            == NGX_OK && s.len)
        {
            sd->specific++;

            for (p = s.data; p < s.data + s.len; p++) {
                sd->specific += (*p == '/');
            }
        }
    }

    i = 0;

    cJSON_ArrayForEach(entry, diffs) {
        seq = cJSON_GetObjectItemCaseSensitive(entry, "sequence");

        if (!cJSON_IsNumber(seq) || seq->valuedouble <= (double) seen) {
            continue;
        }

        body = &sd->bodies[i];

        if (ngx_http_actingweb_outbox_payload(r, rec, entry, &url, body,
                                              &sd->downgraded[i])
            != NGX_OK)
        {
            continue;
        }

        /* out of the worker request's pool: it goes before the calls end */

        p = ngx_alloc(body->len + 1, ob->log);
        if (p == NULL) {
            continue;
        }

        ngx_memcpy(p, body->data, body->len);
        p[body->len] = '\0';
        body->data = p;

        if (sd->downgraded[i]) {
            ngx_http_actingweb_metric_inc(amcf,
                                     NGX_HTTP_ACTINGWEB_M_CALLBACK_DOWNGRADED);
        }

        sd->seqs[i] = (ngx_uint_t) seq->valuedouble;

        /* the event as two numbers: "<ms>-<n>" */

        if (ngx_http_actingweb_json_str(entry, NGX_HTTP_ACTINGWEB_SUB_EVENT,
                                        &s) == NGX_OK
            && (p = ngx_strlchr(s.data, s.data + s.len, '-')) != NULL)
        {
            ms = ngx_atoi(s.data, p - s.data);
            en = ngx_atoi(p + 1, s.data + s.len - p - 1);

            if (ms != NGX_ERROR && en != NGX_ERROR) {
                sd->events[2 * i] = ms;
                sd->events[2 * i + 1] = en;
            }
        }

        ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH);
        i++;
    }

    sd->n = i;

    if (sd->peer == NULL || sd->n == 0) {
        ngx_http_actingweb_outbox_sends_free(sd);
        goto next;
    }

    sd->dummy.fd = (ngx_socket_t) -1;
    sd->retry.handler = ngx_http_actingweb_outbox_retry;
    sd->retry.data = &sd->dummy;
    sd->retry.log = ob->log;
    sd->retry.cancelable = 1;

    /* ready when the run has polled every subscription */

    ngx_queue_insert_tail(&cl->run, &sd->queue);
    sd->queued = 1;

next:

    /* this poll's JSON goes now, not with the run's request */

    ngx_http_actingweb_json_release(r->pool, cl->mark);

    ngx_http_actingweb_outbox_next_sub(r);
}


/*
 * The spec's callback: {"id", "subscriptionid", "target", "subtarget"?,
 * "resource"?, "sequence", "timestamp", "granularity", "data" | "url"}
 * ("type" and "url" for a resync); a high one above
 * actingweb_callback_max_payload goes as low.
 */

static ngx_int_t
ngx_http_actingweb_outbox_payload(ngx_http_request_t *r, cJSON *rec,
    cJSON *entry, ngx_str_t *url, ngx_str_t *out, u_char *downgraded)
{
    u_char                          *p;
    cJSON                           *cb, *item, *data;
    ngx_str_t                        s, gran;
    ngx_uint_t                       i;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_main_conf_t  *amcf;
    static const char               *copy[] = {
        "subscriptionid", "target", "subtarget", "resource", NULL
    };

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    *downgraded = 0;

    cb = cJSON_CreateObject();
    if (cb == NULL || ngx_http_actingweb_json_guard(r, cb) != NGX_OK
        || ngx_http_actingweb_json_add_str(r, cb, "id", &ctx->actor_id)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; copy[i]; i++) {
        if (ngx_http_actingweb_json_str(rec, copy[i], &s) == NGX_OK
            && ngx_http_actingweb_json_add_str(r, cb, copy[i], &s) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    cJSON_ArrayForEach(item, entry) {
        if (ngx_strcmp(item->string, "data") != 0
            && ngx_strcmp(item->string, NGX_HTTP_ACTINGWEB_SUB_EVENT) != 0)
        {
            cJSON_AddItemReferenceToObject(cb, item->string, item);
        }
    }

    if (ngx_http_actingweb_json_str(rec, "granularity", &gran) != NGX_OK) {
        ngx_str_set(&gran, "high");
    }

    data = cJSON_GetObjectItemCaseSensitive(entry, "data");

    if (data && gran.len == 4 && ngx_strncmp(gran.data, "high", 4) == 0) {
        if (ngx_http_actingweb_json_add_str(r, cb, "granularity", &gran)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        cJSON_AddItemReferenceToObject(cb, "data", data);

        if (ngx_http_actingweb_json_print(r, cb, out) != NGX_OK) {
            return NGX_ERROR;
        }

        if (out->len <= amcf->callback_max_payload) {
            return NGX_OK;
        }

        cJSON_DeleteItemFromObjectCaseSensitive(cb, "data");
        cJSON_DeleteItemFromObjectCaseSensitive(cb, "granularity");
        *downgraded = 1;
    }

    if (data) {
        /* low: where the diff is, <actor>/subscriptions/<peer>/<sub>/<seq> */

        item = cJSON_GetObjectItemCaseSensitive(entry, "sequence");

        ngx_str_set(&gran, "low");

        if (ngx_http_actingweb_json_str(rec, "subscriptionid", &s) != NGX_OK
            || !cJSON_IsNumber(item))
        {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, url->len + sizeof("/subscriptions///")
                                 + ctx->segs[0].len + s.len + NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.len = ngx_sprintf(p, "%V/subscriptions/%V/%V/%ui%Z", url,
                            &ctx->segs[0], &s, (ngx_uint_t) item->valuedouble)
                - p - 1;
        s.data = p;

        if (ngx_http_actingweb_json_add_str(r, cb, "url", &s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_actingweb_json_add_str(r, cb, "granularity", &gran)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_json_print(r, cb, out);
}


/*
 * One POST per peer and change (the spec: no duplicate callbacks, the
 * most specific subscription wins): a body whose event another of the
 * run's subscriptions of the same peer also has, and wins, is not sent.
 * Its diff stays pollable, and uncleared.
 */

static void
ngx_http_actingweb_outbox_dedup(ngx_http_actingweb_claim_t *cl)
{
    ngx_uint_t                   i, j, drop;
    ngx_queue_t                 *q, *o, *next;
    ngx_http_actingweb_sends_t  *sd, *other;

    /* only a peer with several sends in the run has any to drop */

    for (q = ngx_queue_head(&cl->run);
         q != ngx_queue_sentinel(&cl->run);
         q = ngx_queue_next(q))
    {
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        sd->peer->inrun = 0;
    }

    for (q = ngx_queue_head(&cl->run);
         q != ngx_queue_sentinel(&cl->run);
         q = ngx_queue_next(q))
    {
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        sd->peer->inrun++;
    }

    for (q = ngx_queue_head(&cl->run);
         q != ngx_queue_sentinel(&cl->run);
         q = next)
    {
        next = ngx_queue_next(q);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);

        if (sd->peer->inrun < 2) {
            continue;
        }

        for (i = 0, j = 0; i < sd->n; i++) {
            drop = 0;

            for (o = ngx_queue_head(&cl->run);
                 o != ngx_queue_sentinel(&cl->run) && !drop;
                 o = ngx_queue_next(o))
            {
                other = ngx_queue_data(o, ngx_http_actingweb_sends_t, queue);

                drop = (other != sd && other->peer == sd->peer
                        && ngx_http_actingweb_outbox_wins(sd, other, i));
            }

            if (drop) {
                ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->outbox->log, 0,
                               "actingweb: callback %V/%ui: a more specific "
                               "subscription has it", &sd->subid,
                               sd->seqs[i]);

                ngx_free(sd->bodies[i].data);
                ngx_http_actingweb_metric_add(cl->outbox->amcf,
                                       NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH, -1);
                continue;
            }

            sd->bodies[j] = sd->bodies[i];
            sd->seqs[j] = sd->seqs[i];
            sd->events[2 * j] = sd->events[2 * i];
            sd->events[2 * j + 1] = sd->events[2 * i + 1];
            sd->downgraded[j] = sd->downgraded[i];
            j++;
        }

        sd->n = j;

        if (sd->n == 0) {
            ngx_http_actingweb_outbox_sends_free(sd);
        }
    }
}


/* other has body i's event too, and is more specific (or as, and first) */

static ngx_uint_t
ngx_http_actingweb_outbox_wins(ngx_http_actingweb_sends_t *sd,
    ngx_http_actingweb_sends_t *other, ngx_uint_t i)
{
    ngx_uint_t  j;

    if (sd->events[2 * i] == 0
        || other->specific < sd->specific
        || (other->specific == sd->specific && other->order > sd->order))
    {
        return 0;
    }

    for (j = 0; j < other->n; j++) {
        if (other->events[2 * j] == sd->events[2 * i]
            && other->events[2 * j + 1] == sd->events[2 * i + 1])
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_actingweb_outbox_release(ngx_http_request_t *r)
{
    ngx_str_t                         id;
    ngx_http_actingweb_ctx_t         *ctx;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_redis_args_t  *a;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    id = ctx->actor_id;

    a = ngx_http_actingweb_redis_args(r, 3);

    if (a == NULL
        || ngx_http_actingweb_redis_key(r, a, &id, "actor") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, cl->outbox->owner,
                                        NGX_HTTP_ACTINGWEB_ID_LEN) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, cl->pending.data,
                                        cl->pending.len) != NGX_OK
        || ngx_http_actingweb_redis_script(r,
                                      NGX_HTTP_ACTINGWEB_SCRIPT_CB_RELEASE, a,
                                      ngx_http_actingweb_outbox_released)
           != NGX_OK)
    {
        /* the lease expires; the work stays indexed */
        ngx_http_actingweb_outbox_done(r);
    }
}


static void
ngx_http_actingweb_outbox_released(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_http_actingweb_claim_t  *cl;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status == NGX_HTTP_ACTINGWEB_REDIS_OK
        && reply->type == REDIS_REPLY_INTEGER)
    {
        if (reply->integer == 1) {
            /* writes came meanwhile: once more */
            ngx_http_actingweb_outbox_add(cl->outbox, cl->member.data,
                                          cl->member.len);

        } else {
            (void) ngx_http_actingweb_outbox_index(r, "SREM", &cl->member);
        }
    }

    ngx_http_actingweb_outbox_done(r);
}


static void
ngx_http_actingweb_outbox_done(ngx_http_request_t *r)
{
    ngx_http_actingweb_claim_t   *cl;
    ngx_http_actingweb_outbox_t  *ob;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ob = cl->outbox;

    ngx_http_actingweb_outbox_free(r);

    ob->claims--;

    if (!ngx_queue_empty(&ob->candidates) && !ob->kick.posted) {
        ngx_post_event(&ob->kick, &ngx_posted_events);
    }
}


/*
 * The circuit breaker of a peer (this worker's view); a tree, since a
 * publisher may have thousands of subscribers.
 */

static ngx_http_actingweb_peer_state_t *
ngx_http_actingweb_outbox_peer(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *id)
{
    uint32_t                          hash;
    ngx_str_node_t                   *sn;
    ngx_http_actingweb_peer_state_t  *ps;

    hash = ngx_crc32_short(id->data, id->len);

    sn = ngx_str_rbtree_lookup(&ob->tree, id, hash);
    if (sn) {
        return (ngx_http_actingweb_peer_state_t *) sn;
    }

    ps = ngx_calloc(sizeof(ngx_http_actingweb_peer_state_t) + id->len,
                    ob->log);
    if (ps == NULL) {
        return NULL;
    }

    ps->len = id->len;
    ps->outbox = ob;
    ngx_memcpy(ps->id, id->data, id->len);
    ngx_queue_init(&ps->waiting);
    ngx_queue_insert_tail(&ob->peers, &ps->queue);

    ps->sn.node.key = hash;
    ps->sn.str.data = ps->id;
    ps->sn.str.len = id->len;
    ngx_rbtree_insert(&ob->tree, &ps->sn.node);

    return ps;
}


/* a peer's circuit changes state: the gauges of open and half-open ones */

static void
ngx_http_actingweb_outbox_state(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_peer_state_t *ps, ngx_uint_t state)
{
    static const ngx_int_t  gauge[] = {
        -1,                                          /* closed */
        NGX_HTTP_ACTINGWEB_M_CIRCUITS_OPEN,
        NGX_HTTP_ACTINGWEB_M_CIRCUITS_HALF_OPEN
    };

    if (ps->state == state) {
        return;
    }

    if (gauge[ps->state] >= 0) {
        ngx_http_actingweb_metric_add(ob->amcf, gauge[ps->state], -1);
    }

    if (gauge[state] >= 0) {
        ngx_http_actingweb_metric_add(ob->amcf, gauge[state], 1);
    }

    ps->state = state;
}


/*
 * A call's result on the peer's breaker; returns the time it opened for,
 * 1 if it closed, 0 if its state stays.
 */

static ngx_msec_t
ngx_http_actingweb_outbox_breaker(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_peer_state_t *ps, ngx_uint_t ok, ngx_msec_t wait)
{
    ngx_uint_t  closed;

    if (ok) {
        closed = (ps->state != NGX_HTTP_ACTINGWEB_BREAKER_CLOSED);

        if (closed) {
            ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                          "actingweb: callbacks to peer %*s: circuit closed",
                          ps->len, ps->id);
        }

        ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_CLOSED);
        ps->fails = 0;
        return closed;
    }

    ps->fails++;

    if (wait == 0
        && ps->state == NGX_HTTP_ACTINGWEB_BREAKER_CLOSED
        && ps->fails < NGX_HTTP_ACTINGWEB_BREAKER_FAILS)
    {
        return 0;
    }

    if (wait == 0) {
        wait = ob->amcf->callback_circuit;
    }

    if (ps->state != NGX_HTTP_ACTINGWEB_BREAKER_OPENED) {
        ngx_http_actingweb_metric_inc(ob->amcf,
                                      NGX_HTTP_ACTINGWEB_M_CIRCUIT_OPENED);

        ngx_log_error(NGX_LOG_WARN, ob->log, 0,
                      "actingweb: callbacks to peer %*s: circuit open for "
                      "%M ms after %ui failures", ps->len, ps->id, wait,
                      ps->fails);
    }

    ngx_http_actingweb_outbox_state(ob, ps, NGX_HTTP_ACTINGWEB_BREAKER_OPENED);
    ps->until = ngx_current_msec + wait;

    return wait;
}


/*
 * What the claim read of a peer's circuit in Redis (another worker or
 * instance may have opened it): "" closed, "<ms>" open until then,
 * "probe" this worker probes it.
 */

static void
ngx_http_actingweb_outbox_shared(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *peer, ngx_str_t *circuit, ngx_msec_t now)
{
    ngx_int_t                         until;
    ngx_http_actingweb_peer_state_t  *ps;

    ps = ngx_http_actingweb_outbox_peer(ob, peer);
    if (ps == NULL || ps->state == NGX_HTTP_ACTINGWEB_BREAKER_PROBING) {
        return;
    }

    if (circuit->len == 0) {
        if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_OPENED) {
            /* another worker's probe closed it */
            ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_CLOSED);
            ps->fails = 0;
        }

        return;
    }

    if (circuit->len == sizeof("probe") - 1
        && ngx_strncmp(circuit->data, "probe", circuit->len) == 0)
    {
        /* open with the time passed: the next call is the probe */
        ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_OPENED);
        ps->until = ngx_current_msec;
        return;
    }

    until = ngx_atoi(circuit->data, circuit->len);

    if (until == NGX_ERROR || (ngx_msec_t) until <= now) {
        return;
    }

    if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_CLOSED) {
        ngx_log_error(NGX_LOG_INFO, ob->log, 0,
                      "actingweb: callbacks to peer %*s: circuit open for "
                      "%M ms (shared)", ps->len, ps->id,
                      (ngx_msec_t) until - now);
    }

    ngx_http_actingweb_outbox_state(ob, ps, NGX_HTTP_ACTINGWEB_BREAKER_OPENED);
    ps->until = ngx_current_msec + ((ngx_msec_t) until - now);
}


/*
 * Wall-clock ms: shared with other hosts, unlike ngx_current_msec.  (Not
 * "ngx_timeofday()->msec": the macro's cast makes that pointer arithmetic.)
 */

static ngx_msec_t
ngx_http_actingweb_outbox_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_msec_t) tp->sec * 1000 + tp->msec;
}


/* starts calls while there is room: one per subscription at a time */

static void
ngx_http_actingweb_outbox_pump(ngx_http_actingweb_outbox_t *ob)
{
    ngx_queue_t                      *q;
    ngx_http_actingweb_sends_t       *sd;
    ngx_http_actingweb_peer_state_t  *ps;
    ngx_http_actingweb_curl_post_t    post;
    ngx_http_actingweb_main_conf_t   *amcf;

    amcf = ob->amcf;

    while (!ngx_queue_empty(&ob->ready)
           && ob->calls < amcf->callback_concurrency)
    {
        q = ngx_queue_head(&ob->ready);
        ngx_queue_remove(q);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        sd->queued = 0;
        ps = sd->peer;

        if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_PROBING
            || (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_OPENED
                && (ngx_msec_int_t) (ps->until - ngx_current_msec) > 0))
        {
            /* not now: the diffs stay pollable */
            ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED,
                                          sd->n - sd->next);
            ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
                                          -(ngx_int_t) (sd->n - sd->next));
            ngx_http_actingweb_outbox_sends_free(sd);
            continue;
        }

        if (ps->tags != NGX_HTTP_ACTINGWEB_TAGS_FETCHING
            && (ps->tags == NGX_HTTP_ACTINGWEB_TAGS_UNKNOWN
                || (ngx_msec_int_t) (ps->tags_until - ngx_current_msec) <= 0)
            && ngx_http_actingweb_outbox_tags(ps, &sd->baseuri) == NGX_OK)
        {
            ob->calls++;
        }

        if (ps->tags == NGX_HTTP_ACTINGWEB_TAGS_FETCHING) {
            /* back to ready when the peer's tags are known */
            ngx_queue_insert_tail(&ps->waiting, &sd->queue);
            sd->queued = 1;
            continue;
        }

        if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_OPENED) {
            ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_PROBING);
        }

        ngx_memzero(&post, sizeof(ngx_http_actingweb_curl_post_t));

        post.url = sd->url;
        post.authorization = sd->authorization;
        post.body = sd->bodies[sd->next];
        post.downgraded = sd->downgraded[sd->next];
        post.gzip = (ps->tags == NGX_HTTP_ACTINGWEB_TAGS_GZIP);
        post.timeout = amcf->callback_timeout;
        post.max_body = NGX_HTTP_ACTINGWEB_OUTBOX_ANSWER_MAX;
        post.handler = ngx_http_actingweb_outbox_sent;
        post.data = sd;

        if (ngx_http_actingweb_curl_post(amcf, &post) != NGX_OK) {
            ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED,
                                          sd->n - sd->next);
            ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
                                          -(ngx_int_t) (sd->n - sd->next));
            ngx_http_actingweb_outbox_sends_free(sd);
            continue;
        }

        ob->calls++;
    }
}


/*
 * The peer's option tags: one GET of <baseuri>/meta/actingweb/supported
 * per peer and worker, kept for an hour (a minute if it failed: plain
 * bodies until then, which every receiver takes).
 */

static ngx_int_t
ngx_http_actingweb_outbox_tags(ngx_http_actingweb_peer_state_t *ps,
    ngx_str_t *baseuri)
{
    u_char                          *p;
    ngx_int_t                        rc;
    ngx_http_actingweb_curl_post_t   get;

    p = ngx_alloc(baseuri->len + sizeof("/meta/actingweb/supported"),
                  ps->outbox->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&get, sizeof(ngx_http_actingweb_curl_post_t));

    get.url.data = p;
    get.url.len = ngx_sprintf(p, "%V/meta/actingweb/supported%Z", baseuri)
                  - p - 1;
    get.get = 1;
    get.timeout = ps->outbox->amcf->callback_timeout;
    get.max_body = NGX_HTTP_ACTINGWEB_OUTBOX_ANSWER_MAX;
    get.handler = ngx_http_actingweb_outbox_tagged;
    get.data = ps;

    /* curl copies the URL */

    rc = ngx_http_actingweb_curl_post(ps->outbox->amcf, &get);

    ngx_free(p);

    if (rc != NGX_OK) {
        ps->tags = NGX_HTTP_ACTINGWEB_TAGS_PLAIN;
        ps->tags_until = ngx_current_msec + NGX_HTTP_ACTINGWEB_TAGS_TTL_FAILED;
        return NGX_ERROR;
    }

    ps->tags = NGX_HTTP_ACTINGWEB_TAGS_FETCHING;

    return NGX_OK;
}


static void
ngx_http_actingweb_outbox_tagged(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body)
{
    ngx_http_actingweb_peer_state_t *ps = data;

    u_char                       *p, *last, *t;
    ngx_queue_t                  *q;
    ngx_http_actingweb_outbox_t  *ob;

    ob = ps->outbox;
    ob->calls--;

    if (rc == NGX_ABORT) {
        /* exiting: outbox_exit frees the waiting sends */
        return;
    }

    ps->tags = NGX_HTTP_ACTINGWEB_TAGS_PLAIN;
    ps->tags_until = ngx_current_msec + NGX_HTTP_ACTINGWEB_TAGS_TTL_FAILED;

    if (rc == NGX_OK && status == 200) {
        ps->tags_until = ngx_current_msec + NGX_HTTP_ACTINGWEB_TAGS_TTL;

        /* "a,b,c" (maybe quoted, maybe with blanks) */

        p = body->data;
        last = p + body->len;

        while (p < last) {
            while (p < last && (*p == ',' || *p == ' ' || *p == '"'
                                || *p == '\t' || *p == '\r' || *p == '\n'))
            {
                p++;
            }

            t = p;

            while (p < last && *p != ',' && *p != ' ' && *p != '"'
                   && *p != '\t' && *p != '\r' && *p != '\n')
            {
                p++;
            }

            if (p - t == sizeof("callbackcompression") - 1
                && ngx_strncmp(t, "callbackcompression", p - t) == 0)
            {
                ps->tags = NGX_HTTP_ACTINGWEB_TAGS_GZIP;
                break;
            }
        }
    }

    while (!ngx_queue_empty(&ps->waiting)) {
        q = ngx_queue_head(&ps->waiting);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ob->ready, q);
    }

    ngx_http_actingweb_outbox_pump(ob);
}


static void
ngx_http_actingweb_outbox_sent(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *retry_after, ngx_str_t *body)
{
    ngx_http_actingweb_sends_t *sd = data;

    ngx_int_t                         n;
    ngx_msec_t                        wait;
    ngx_uint_t                        ok;
    ngx_http_actingweb_outbox_t      *ob;
    ngx_http_actingweb_main_conf_t   *amcf;

    ob = sd->outbox;
    amcf = ob->amcf;
    ob->calls--;

    if (rc == NGX_ABORT) {
        /* exiting: outbox_exit frees what is left */
        ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH, -1);
        sd->next = sd->n;
        ngx_http_actingweb_outbox_sends_free(sd);
        return;
    }

    ok = (rc == NGX_OK && status >= 200 && status < 300);
    wait = 0;

    if (rc == NGX_OK && (status == 429 || status == 503)
        && retry_after->len)
    {
        n = ngx_atoi(retry_after->data, retry_after->len);

        if (n != NGX_ERROR) {
            wait = (ngx_msec_t) ngx_min(n, 3600) * 1000;
        }
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_INFO, ob->log, 0,
                      "actingweb: callback to \"%V\" failed: %ui",
                      &sd->url, status);
    }

    wait = ngx_http_actingweb_outbox_breaker(ob, sd->peer, ok, wait);

    if (wait && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        /* for the other workers and instances: open until, or closed */
        ngx_http_actingweb_outbox_circuit(sd,
                               ok ? 0 : ngx_http_actingweb_outbox_now() + wait);
    }

    if (!ok && sd->tries < amcf->callback_retries
        && sd->peer->state == NGX_HTTP_ACTINGWEB_BREAKER_CLOSED)
    {
        /* configured retries: 1 s, 2 s, 4 s, ... */

        ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_CALLBACK_RETRIED);
        ngx_add_timer(&sd->retry,
                      NGX_HTTP_ACTINGWEB_RETRY_DELAY << ngx_min(sd->tries, 10));
        sd->tries++;

        ngx_http_actingweb_outbox_pump(ob);
        return;
    }

    if (ok) {
        ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_CALLBACK_SENT);
        sd->seqs[sd->nok++] = sd->seqs[sd->next];

    } else {
        ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED);
    }

    ngx_http_actingweb_metric_add(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH, -1);
    sd->next++;
    sd->tries = 0;

    if (sd->next < sd->n) {
        ngx_queue_insert_tail(&ob->ready, &sd->queue);
        sd->queued = 1;

    } else {
        ngx_http_actingweb_outbox_sends_free(sd);
    }

    ngx_http_actingweb_outbox_pump(ob);
}


static void
ngx_http_actingweb_outbox_retry(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_sends_t  *sd;

    c = ev->data;
    sd = (ngx_http_actingweb_sends_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_sends_t, dummy));

    ngx_queue_insert_tail(&sd->outbox->ready, &sd->queue);
    sd->queued = 1;

    ngx_http_actingweb_outbox_pump(sd->outbox);
}


/* the diffs of callbacks answered 2xx are cleared, as the spec asks */

static void
ngx_http_actingweb_outbox_clear(ngx_http_actingweb_sends_t *sd)
{
    u_char                           *p;
    ngx_str_t                         id;
    ngx_uint_t                        i;
    ngx_http_request_t               *r;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_redis_args_t  *a;

    cl = ngx_http_actingweb_outbox_actor(sd, &id);
    if (cl == NULL) {
        return;
    }

    r = cl->request;
    a = ngx_http_actingweb_redis_args(r, 3 + sd->nok);
    p = ngx_pnalloc(r->pool, sd->subid.len + sd->nok * NGX_INT_T_LEN);

    /* the arguments live in the request's pool: sd goes now */

    if (a == NULL || p == NULL
        || ngx_http_actingweb_redis_key(r, a, &id, "subs") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "diffs") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p, sd->subid.len) != NGX_OK)
    {
        goto done;
    }

    p = ngx_cpymem(p, sd->subid.data, sd->subid.len);

    for (i = 0; i < sd->nok; i++) {
        if (ngx_http_actingweb_redis_arg(a, p,
                ngx_sprintf(p, "%ui", sd->seqs[i]) - p)
            != NGX_OK)
        {
            goto done;
        }

        p += NGX_INT_T_LEN;
    }

    /* a failure leaves the diffs for the subscriber's poll */

    (void) ngx_http_actingweb_redis_script(r,
                                       NGX_HTTP_ACTINGWEB_SCRIPT_CB_CLEARED,
                                       a, ngx_http_actingweb_outbox_ignore);

done:

    ngx_http_actingweb_outbox_free(r);
}


/* a peer's circuit opened (until, ms) or closed (0) */

static void
ngx_http_actingweb_outbox_circuit(ngx_http_actingweb_sends_t *sd,
    ngx_msec_t until)
{
    u_char                           *p;
    ngx_str_t                         id;
    ngx_http_request_t               *r;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_redis_args_t  *a;

    cl = ngx_http_actingweb_outbox_actor(sd, &id);
    if (cl == NULL) {
        return;
    }

    r = cl->request;
    a = ngx_http_actingweb_redis_args(r, 3);
    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);

    /* a failure leaves this worker's breaker only */

    if (a != NULL && p != NULL
        && ngx_http_actingweb_redis_key(r, a, &id, "circuits") == NGX_OK
        && ngx_http_actingweb_redis_arg(a, sd->peer->id, sd->peer->len)
           == NGX_OK
        && ngx_http_actingweb_redis_arg(a, p, ngx_sprintf(p, "%M", until) - p)
           == NGX_OK)
    {
        (void) ngx_http_actingweb_redis_script(r,
                                       NGX_HTTP_ACTINGWEB_SCRIPT_CB_CIRCUIT,
                                       a, ngx_http_actingweb_outbox_ignore);
    }

    ngx_http_actingweb_outbox_free(r);
}


/* a worker request for the actor of sd, for a command of its own */

static ngx_http_actingweb_claim_t *
ngx_http_actingweb_outbox_actor(ngx_http_actingweb_sends_t *sd,
    ngx_str_t *id)
{
    ngx_str_t             host;
    ngx_http_conf_ctx_t  *cf;

    cf = ngx_http_actingweb_outbox_locate(sd->outbox, &sd->member, &host, id);
    if (cf == NULL) {
        return NULL;
    }

    return ngx_http_actingweb_outbox_request(sd->outbox, cf, &host, id);
}


static void
ngx_http_actingweb_outbox_sends_free(ngx_http_actingweb_sends_t *sd)
{
    ngx_uint_t  i;

    if (sd->nok && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_http_actingweb_outbox_clear(sd);
    }

    if (sd->queued) {
        ngx_queue_remove(&sd->queue);
    }

    ngx_queue_remove(&sd->all);

    if (sd->retry.timer_set) {
        ngx_del_timer(&sd->retry);
    }

    for (i = 0; i < sd->n; i++) {
        ngx_free(sd->bodies[i].data);
    }

    ngx_free(sd);
}
