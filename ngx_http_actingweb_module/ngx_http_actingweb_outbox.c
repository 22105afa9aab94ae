
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
 * taken over.  The claim also reads what the run needs: a page of change
 * events from the oldest cursor, and every subscription's fields, trust
 * and circuit.  A run then makes all subscriptions' diffs at once, with
 * the code a poll uses (subscriptions.c, sub_event_diff), stores them with
 * one script (cb_store), releases the lease (cb_release) and POSTs the
 * callbacks (one POST per peer and change event: the most specific
 * subscription's), one subscription's in sequence order, at most
 * actingweb_callback_concurrency calls at a time per worker.  The 2xx
 * ones are cleared by one script (cb_cleared) when the run's calls are
 * done.  Delivery is at most once: the diffs stay pollable whatever
 * happens to a callback.
 *
 * Redis work outside client requests runs on a worker request: a request
 * structure with its own pool, a connection without a socket, and the
 * configuration of the actingweb location that wrote (found by the actor
 * URL stored in the index).  Redis ops on it get the usual timeouts and
 * cleanups; it is never sent anything (ngx_http_actingweb_send refuses)
 * and never finalized: its cleanups run and its pool is destroyed when
 * the job ends.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_OUTBOX_BUCKETS     16
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MIN    100
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_MAX    2000
#define NGX_HTTP_ACTINGWEB_OUTBOX_SCAN_COUNT  "32"
#define NGX_HTTP_ACTINGWEB_OUTBOX_CLAIMS      64
#define NGX_HTTP_ACTINGWEB_OUTBOX_PAGE        128       /* events a run */
#define NGX_HTTP_ACTINGWEB_OUTBOX_UNSENT      "128"     /* a run, a sub */
#define NGX_HTTP_ACTINGWEB_OUTBOX_BUDGET      (2 * 1024 * 1024)
#define NGX_HTTP_ACTINGWEB_OUTBOX_DIFFS       "8192"    /* a run, about */
#define NGX_HTTP_ACTINGWEB_OUTBOX_FIELDS      18        /* a sub, claimed */
#define NGX_HTTP_ACTINGWEB_GZIP_MIN           1024      /* the spec's 1KB */
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
    /* the actor whose circuits record opened it (claims of others: none) */
    u_char                           by[NGX_HTTP_ACTINGWEB_ID_LEN];
    u_char                          *trust_text; /* the cache is of */
    size_t                           trust_len;
    cJSON                           *trust;      /* parsed, secret open */
    size_t                           len;
    u_char                           id[1];      /* peer id */
} ngx_http_actingweb_peer_state_t;


typedef struct {
    ngx_queue_t                      queue;
    size_t                           len;
    u_char                           member[1];  /* the actor URL */
} ngx_http_actingweb_candidate_t;


/*
 * What is left of a run while its callbacks go: the 2xx ones, cleared by
 * one script at its end; and the bodies not yet started.  The actor's
 * next run waits until those are started: under a backlog the next run
 * takes many changes at once instead of one (runs cost Redis work for
 * every subscription), and it would not be sent sooner anyway.
 */
typedef struct {
    ngx_queue_t                      queue;      /* in ob->runs */
    ngx_queue_t                      done;       /* of sends, with nok */
    ngx_uint_t                       refs;       /* the run, its sends */
    ngx_uint_t                       unstarted;  /* bodies */
    ngx_str_t                        member;
    unsigned                         claiming:1; /* not yet stored */
    unsigned                         again:1;    /* a claim waits */
} ngx_http_actingweb_clears_t;


/* one subscription's callbacks, sent one after the other */
typedef struct {
    ngx_queue_t                      queue;      /* run, ready, waiting */
    ngx_queue_t                      all;        /* in ob->sends */
    ngx_http_actingweb_outbox_t     *outbox;
    ngx_http_actingweb_clears_t     *clears;
    ngx_http_actingweb_loc_conf_t   *policy;     /* the actor's location */
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
    ngx_uint_t                       started;    /* bodies */
    ngx_uint_t                       tries;
    ngx_event_t                      retry;
    ngx_connection_t                 dummy;      /* retry's ev->data */
    unsigned                         queued:1;
    unsigned                         gzip:1;     /* its accept_encoding */
} ngx_http_actingweb_sends_t;


/* a change event of a run, read once for all subscriptions */
typedef struct {
    ngx_http_actingweb_sub_event_t   event;      /* while the reply lives */
    ngx_str_t                        id;
    ngx_str_t                        ts;         /* as diffs show it */
} ngx_http_actingweb_run_event_t;


/*
 * The subscriptions whose diffs are alike (outbox_diff): each event's
 * diff, printed once; "" when it gives none
 */
typedef struct {
    ngx_uint_t                       hash;
    ngx_str_t                        key;
    const char                     **at;
    cJSON                           *trust;
    ngx_str_t                       *data;       /* per event */
} ngx_http_actingweb_run_class_t;


/* a diff to send: stored unsent by a poll, or new */
typedef struct {
    ngx_uint_t                       seq;
    ngx_uint_t                       event;      /* its index + 1, or 0 */
    ngx_str_t                        ts;
    ngx_str_t                        data;       /* JSON; "": a resync */
    ngx_str_t                        url;        /* a resync's */
} ngx_http_actingweb_run_diff_t;


/* one subscription in a run */
typedef struct {
    cJSON                           *trust;      /* the peer's, cached */
    ngx_http_actingweb_peer_state_t *ps;
    ngx_str_t                        subid;
    ngx_str_t                        peer;
    ngx_str_t                        granularity;
    const char                      *at[3];      /* target, subtarget.. */
    ngx_str_t                        cursor;     /* as the run saw it */
    ngx_str_t                        newcursor;
    ngx_uint_t                       sequence;   /* as the run saw it */
    ngx_uint_t                       cleared;
    ngx_uint_t                       notified;
    ngx_uint_t                       upto;       /* notified, then new */
    ngx_uint_t                       nnew;       /* new diffs, the last */
    ngx_array_t                      diffs;      /* of run_diff_t */
    ngx_http_actingweb_run_class_t  *class;
    unsigned                         skip:1;
    unsigned                         trimmed:1;
    unsigned                         lastresync:1;
    unsigned                         included:1; /* in the store */
    unsigned                         gzip:1;     /* its accept_encoding */
} ngx_http_actingweb_run_sub_t;


/* a worker request's job: one scan, or one claimed actor (a run) */
typedef struct {
    ngx_http_actingweb_ctx_t         ctx;        /* first: r's ctx */
    ngx_event_t                      gone;       /* frees the request */
    ngx_queue_t                      live;       /* in ob->live */
    ngx_http_request_t              *request;
    ngx_http_actingweb_outbox_t     *outbox;
    ngx_http_actingweb_clears_t     *clears;
    ngx_str_t                        member;
    ngx_str_t                        pending;    /* event id claimed */
    ngx_str_t                        newest;     /* event id, for resyncs */
    ngx_http_actingweb_run_event_t  *events;
    ngx_http_actingweb_run_sub_t    *subs;
    ngx_array_t                      classes;    /* of run_class_t * */
    ngx_queue_t                      run;        /* this run's sends */
    ngx_uint_t                       nevents;
    ngx_uint_t                       nsubs;
    unsigned                         more:1;     /* left for a next run */
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
    ngx_queue_t                      runs;       /* of clears_t */
    ngx_uint_t                       claims;     /* in flight */
    ngx_uint_t                       calls;      /* POSTs in flight */
    ngx_uint_t                       found;      /* by the last scan */
    ngx_uint_t                       scans;      /* replies awaited */
    ngx_msec_t                       exit_at;    /* stop sending then */
    ngx_queue_t                      live;       /* worker requests */
    unsigned                         exiting:1;  /* outbox_exit began */
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
static ngx_int_t ngx_http_actingweb_outbox_events(ngx_http_request_t *r,
    redisReply *events, long long count);
static ngx_int_t ngx_http_actingweb_outbox_sub(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, redisReply **f, ngx_str_t *circuit);
static ngx_int_t ngx_http_actingweb_outbox_stored(ngx_http_request_t *r,
    ngx_str_t *text, ngx_http_actingweb_run_diff_t *d);
static cJSON *ngx_http_actingweb_outbox_trust(ngx_http_request_t *r,
    ngx_http_actingweb_peer_state_t *ps, redisReply *text);
static void ngx_http_actingweb_outbox_untrust(
    ngx_http_actingweb_peer_state_t *ps);
static ngx_int_t ngx_http_actingweb_outbox_make(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_outbox_diff(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_uint_t k);
static ngx_int_t ngx_http_actingweb_outbox_class(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs);
static ngx_int_t ngx_http_actingweb_outbox_resync(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs);
static ngx_int_t ngx_http_actingweb_outbox_store(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_outbox_entry(ngx_http_request_t *r,
    ngx_http_actingweb_run_diff_t *d, ngx_str_t *out);
static u_char *ngx_http_actingweb_outbox_escape(u_char *dst, ngx_str_t *s);
static void ngx_http_actingweb_outbox_saved(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
static void ngx_http_actingweb_outbox_sends(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_uint_t order);
static ngx_int_t ngx_http_actingweb_outbox_head(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_str_t *head);
static ngx_int_t ngx_http_actingweb_outbox_body(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_str_t *head, ngx_str_t *url,
    ngx_http_actingweb_run_diff_t *d, ngx_str_t *out, u_char *downgraded);
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
    ngx_str_t *actor, ngx_http_actingweb_peer_state_t *ps, ngx_str_t *circuit,
    ngx_msec_t now);
static ngx_msec_t ngx_http_actingweb_outbox_now(void);
static void ngx_http_actingweb_outbox_circuit(ngx_http_actingweb_sends_t *sd,
    ngx_msec_t until);
static ngx_http_actingweb_claim_t *ngx_http_actingweb_outbox_actor(
    ngx_http_actingweb_outbox_t *ob, ngx_str_t *member, ngx_str_t *id);
static ngx_uint_t ngx_http_actingweb_outbox_breaker(
    ngx_http_actingweb_outbox_t *ob, ngx_http_actingweb_peer_state_t *ps,
    ngx_uint_t ok, ngx_msec_t wait);
static ngx_int_t ngx_http_actingweb_outbox_tags(
    ngx_http_actingweb_peer_state_t *ps, ngx_http_actingweb_sends_t *sd);
static void ngx_http_actingweb_outbox_tagged(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body);
static ngx_uint_t ngx_http_actingweb_outbox_stopping(
    ngx_http_actingweb_outbox_t *ob);
static void ngx_http_actingweb_outbox_pump(ngx_http_actingweb_outbox_t *ob);
static void ngx_http_actingweb_outbox_exiting(
    ngx_http_actingweb_outbox_t *ob);
static void ngx_http_actingweb_outbox_sent(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body);
static void ngx_http_actingweb_outbox_retry(ngx_event_t *ev);
static ngx_msec_t ngx_http_actingweb_outbox_lease(
    ngx_http_actingweb_outbox_t *ob);
static ngx_uint_t ngx_http_actingweb_outbox_busy(
    ngx_http_actingweb_outbox_t *ob, ngx_http_actingweb_clears_t *cs);
static void ngx_http_actingweb_outbox_started(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs, ngx_uint_t n);
static void ngx_http_actingweb_outbox_clears_put(
    ngx_http_actingweb_outbox_t *ob, ngx_http_actingweb_clears_t *cs);
static void ngx_http_actingweb_outbox_clear(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs);
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
    ngx_queue_init(&ob->runs);
    ngx_queue_init(&ob->live);
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
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_outbox_t      *ob;
    ngx_http_actingweb_sends_t       *sd;
    ngx_http_actingweb_clears_t      *cs;
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

    ob->exiting = 1;

    while (!ngx_queue_empty(&ob->sends)) {
        q = ngx_queue_head(&ob->sends);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, all);
        ngx_http_actingweb_outbox_sends_free(sd);
    }

    /*
     * Worker requests still waiting for Redis (a scan, a claim, a clear):
     * their ops let go of them (the request cleanups), then the pools go,
     * before Redis closes; and the runs they held
     */

    while (!ngx_queue_empty(&ob->live)) {
        q = ngx_queue_head(&ob->live);
        cl = ngx_queue_data(q, ngx_http_actingweb_claim_t, live);

        if (cl->gone.posted) {
            ngx_delete_posted_event(&cl->gone);
        }

        ngx_http_actingweb_outbox_free(cl->request);
        ngx_delete_posted_event(&cl->gone);

        if (cl->clears) {
            ngx_http_actingweb_outbox_clears_put(ob, cl->clears);
            cl->clears = NULL;
        }

        ngx_queue_remove(&cl->live);
        ngx_destroy_pool(cl->request->pool);
    }

    while (!ngx_queue_empty(&ob->runs)) {
        q = ngx_queue_head(&ob->runs);
        cs = ngx_queue_data(q, ngx_http_actingweb_clears_t, queue);
        cs->refs = 1;
        ngx_http_actingweb_outbox_clears_put(ob, cs);
    }

    while (!ngx_queue_empty(&ob->peers)) {
        q = ngx_queue_head(&ob->peers);
        ngx_queue_remove(q);
        ps = ngx_queue_data(q, ngx_http_actingweb_peer_state_t, queue);

        /* the shared gauges count this worker's circuits no more */
        ngx_http_actingweb_outbox_state(ob, ps,
                                        NGX_HTTP_ACTINGWEB_BREAKER_CLOSED);
        ngx_http_actingweb_outbox_untrust(ps);
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

    ngx_queue_insert_tail(&ob->live, &cl->live);

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

    if (!cl->gone.posted) {
        ngx_post_event(&cl->gone, &ngx_posted_events);
    }
}


static void
ngx_http_actingweb_outbox_gone(ngx_event_t *ev)
{
    ngx_http_actingweb_claim_t  *cl;

    cl = (ngx_http_actingweb_claim_t *)
             ((u_char *) ev - offsetof(ngx_http_actingweb_claim_t, gone));

    ngx_queue_remove(&cl->live);
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

    if (ngx_http_actingweb_outbox_stopping(ob)) {
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
    if (ngx_http_actingweb_outbox_stopping(ob) || ob->scan.timer_set) {
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
    ngx_queue_t                      *q;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_clears_t      *cs;
    ngx_http_actingweb_loc_conf_t    *alcf;
    ngx_http_actingweb_redis_args_t  *a;

    if (ngx_http_actingweb_outbox_stopping(ob)) {
        return NGX_DECLINED;
    }

    for (q = ngx_queue_head(&ob->runs);
         q != ngx_queue_sentinel(&ob->runs);
         q = ngx_queue_next(q))
    {
        cs = ngx_queue_data(q, ngx_http_actingweb_clears_t, queue);

        if (ngx_http_actingweb_outbox_busy(ob, cs)
            && cs->member.len == member->len
            && ngx_memcmp(cs->member.data, member->data, member->len) == 0)
        {
            /* after this worker's last run: its claim, its bodies started */
            cs->again = 1;
            return NGX_OK;
        }
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
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    p = ngx_pnalloc(r->pool, member->len);
    a = ngx_http_actingweb_redis_args(r, 15);

    if (p == NULL || a == NULL) {
        goto failed;
    }

    cl->clears = ngx_alloc(sizeof(ngx_http_actingweb_clears_t) + member->len,
                           ob->log);
    if (cl->clears == NULL) {
        goto failed;
    }

    ngx_queue_init(&cl->clears->done);
    ngx_queue_insert_tail(&ob->runs, &cl->clears->queue);
    cl->clears->refs = 1;
    cl->clears->unstarted = 0;
    cl->clears->claiming = 1;
    cl->clears->again = 0;
    cl->clears->member.data = (u_char *) (cl->clears + 1);
    cl->clears->member.len = member->len;
    ngx_memcpy(cl->clears->member.data, member->data, member->len);

    cl->member.data = p;
    cl->member.len = member->len;
    ngx_memcpy(p, member->data, member->len);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN * 6);
    if (p == NULL) {
        goto failed;
    }

    /* a probe of a shared open circuit has its call's time, and then some */

    if (ngx_http_actingweb_redis_key(r, a, &id, "actor") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "subs") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "circuits") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "trust") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "changes") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "diffs") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, ob->owner,
                                        NGX_HTTP_ACTINGWEB_ID_LEN) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p,
               ngx_sprintf(p, "%uM", ngx_http_actingweb_outbox_now()) - p)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + 4 * NGX_INT_T_LEN,
               ngx_sprintf(p + 4 * NGX_INT_T_LEN, "%M",
                           ngx_http_actingweb_outbox_lease(ob))
               - p - 4 * NGX_INT_T_LEN)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + NGX_INT_T_LEN,
               ngx_sprintf(p + NGX_INT_T_LEN, "%M",
                           ob->amcf->callback_timeout + 1000)
               - p - NGX_INT_T_LEN)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + 2 * NGX_INT_T_LEN,
               ngx_sprintf(p + 2 * NGX_INT_T_LEN, "%ui",
                           (ngx_uint_t) NGX_HTTP_ACTINGWEB_OUTBOX_PAGE + 1)
               - p - 2 * NGX_INT_T_LEN)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a,
               (u_char *) NGX_HTTP_ACTINGWEB_OUTBOX_UNSENT,
               sizeof(NGX_HTTP_ACTINGWEB_OUTBOX_UNSENT) - 1) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + 3 * NGX_INT_T_LEN,
               ngx_sprintf(p + 3 * NGX_INT_T_LEN, "%ui", alcf->change_log)
               - p - 3 * NGX_INT_T_LEN)
           != NGX_OK
        || ngx_http_actingweb_redis_arg(a,
               (u_char *) NGX_HTTP_ACTINGWEB_OUTBOX_DIFFS,
               sizeof(NGX_HTTP_ACTINGWEB_OUTBOX_DIFFS) - 1) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, p + 5 * NGX_INT_T_LEN,
               ngx_sprintf(p + 5 * NGX_INT_T_LEN, "%uz",
                           (size_t) NGX_HTTP_ACTINGWEB_OUTBOX_BUDGET)
               - p - 5 * NGX_INT_T_LEN)
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

    if (cl->clears) {
        ngx_queue_remove(&cl->clears->queue);
        ngx_free(cl->clears);
    }

    ngx_destroy_pool(r->pool);

    return NGX_ERROR;
}


/*
 * The claim's reply: {pending event id, {event...}, newest event id or
 * nil, {subscription...}}, a subscription being 8 fields: record,
 * circuit, trust, trimmed, last diff a resync, first and last unsent
 * sequence, {unsent diff...}.  The run's diffs are made here for all of
 * the actor's subscriptions at once, while the reply lives, then one
 * script stores them.
 */

static void
ngx_http_actingweb_outbox_claimed(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    size_t                         i;
    ngx_str_t                      circuit;
    ngx_msec_t                     now;
    redisReply                    *subs;
    ngx_http_actingweb_claim_t    *cl;
    ngx_http_actingweb_run_sub_t  *rs;

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

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5
        || reply->element[1]->type != REDIS_REPLY_ARRAY
        || reply->element[3]->type != REDIS_REPLY_ARRAY
        || reply->element[4]->type != REDIS_REPLY_INTEGER
        || ngx_http_actingweb_reply_str(r, reply->element[0], &cl->pending)
           != NGX_OK
        || ngx_http_actingweb_reply_str(r, reply->element[2], &cl->newest)
           != NGX_OK)
    {
        /* leased by a live worker: it releases and sees new work */
        ngx_http_actingweb_outbox_done(r);
        return;
    }

    subs = reply->element[3];
    cl->nsubs = subs->elements / NGX_HTTP_ACTINGWEB_OUTBOX_FIELDS;
    cl->subs = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_run_sub_t)
                                    * (cl->nsubs + 1));

    if (cl->subs == NULL
        || ngx_http_actingweb_outbox_events(r, reply->element[1],
                                            reply->element[4]->integer)
           != NGX_OK)
    {
        ngx_http_actingweb_outbox_release(r);
        return;
    }

    now = ngx_http_actingweb_outbox_now();

    for (i = 0; i < cl->nsubs; i++) {
        rs = &cl->subs[i];

        if (ngx_http_actingweb_outbox_sub(r, rs,
                      &subs->element[NGX_HTTP_ACTINGWEB_OUTBOX_FIELDS * i],
                      &circuit)
            != NGX_OK)
        {
            rs->skip = 1;
            continue;
        }

        ngx_http_actingweb_outbox_shared(cl->outbox, &cl->ctx.actor_id,
                                         rs->ps, &circuit, now);
    }

    if (ngx_http_actingweb_outbox_make(r) != NGX_OK
        || ngx_http_actingweb_outbox_store(r) != NGX_OK)
    {
        ngx_http_actingweb_outbox_release(r);
    }
}


/* the page of events (count asked), read once for every subscription */

static ngx_int_t
ngx_http_actingweb_outbox_events(ngx_http_request_t *r, redisReply *events,
    long long count)
{
    size_t                           i;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_run_event_t  *ev;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    cl->nevents = events->elements;
    cl->more = ((long long) events->elements >= count);
    cl->events = ngx_pcalloc(r->pool, sizeof(ngx_http_actingweb_run_event_t)
                                      * (cl->nevents + 1));
    if (cl->events == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < cl->nevents; i++) {
        ev = &cl->events[i];

        /* a broken event makes no diffs, as in a poll; NGX_ERROR: no id */

        if (ngx_http_actingweb_sub_event_init(r, events->element[i],
                                              &ev->event)
            == NGX_ERROR
            || ngx_http_actingweb_reply_str(r, ev->event.id, &ev->id)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ev->ts.data = ngx_pnalloc(r->pool, NGX_HTTP_ACTINGWEB_SUB_TIME_LEN);
        if (ev->ts.data == NULL) {
            return NGX_ERROR;
        }

        ev->ts.len = ngx_http_actingweb_sub_time(ev->ts.data, ev->id.data,
                                                 ev->id.len)
                     - ev->ts.data;
    }

    return NGX_OK;
}


/*
 * One subscription of the claim's reply, out of the reply: id, peer id,
 * cursor, sequence, cleared, notified, target, subtarget, resource,
 * granularity, gzip, circuit, trust, trimmed, last a resync, first
 * unsent, notified after the unsent, {unsent...}
 */

static ngx_int_t
ngx_http_actingweb_outbox_sub(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, redisReply **f, ngx_str_t *circuit)
{
    size_t                          i;
    ngx_str_t                       s[3];
    ngx_http_actingweb_claim_t     *cl;
    ngx_http_actingweb_run_diff_t  *d;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    for (i = 3; i < 6; i++) {
        if (f[i]->type != REDIS_REPLY_INTEGER || f[i]->integer < 0) {
            return NGX_ERROR;
        }
    }

    for (i = 13; i < 17; i++) {
        if (f[i]->type != REDIS_REPLY_INTEGER || f[i]->integer < 0) {
            return NGX_ERROR;
        }
    }

    if (f[12]->type != REDIS_REPLY_STRING
        || f[17]->type != REDIS_REPLY_ARRAY
        || ngx_http_actingweb_reply_str(r, f[0], &rs->subid) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[1], &rs->peer) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[2], &rs->cursor) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[6], &s[0]) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[7], &s[1]) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[8], &s[2]) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[9], &rs->granularity) != NGX_OK
        || ngx_http_actingweb_reply_str(r, f[11], circuit) != NGX_OK
        || rs->subid.len == 0 || rs->peer.len == 0)
    {
        return NGX_ERROR;
    }

    rs->at[0] = (char *) s[0].data;
    rs->at[1] = s[1].len ? (char *) s[1].data : NULL;
    rs->at[2] = s[1].len && s[2].len ? (char *) s[2].data : NULL;

    rs->sequence = (ngx_uint_t) f[3]->integer;
    rs->cleared = (ngx_uint_t) f[4]->integer;
    rs->notified = (ngx_uint_t) f[5]->integer;
    rs->gzip = (f[10]->type == REDIS_REPLY_INTEGER && f[10]->integer == 1);
    rs->trimmed = (f[13]->integer != 0);
    rs->lastresync = (f[14]->integer != 0);
    rs->upto = (ngx_uint_t) f[16]->integer;
    rs->newcursor = rs->cursor;

    rs->ps = ngx_http_actingweb_outbox_peer(cl->outbox, &rs->peer);
    rs->trust = rs->ps ? ngx_http_actingweb_outbox_trust(r, rs->ps, f[12])
                       : NULL;

    if (rs->trust == NULL
        || ngx_array_init(&rs->diffs, r->pool, f[17]->elements + 1,
                          sizeof(ngx_http_actingweb_run_diff_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* diffs a poll stored after the last run: their callbacks are due */

    for (i = 0; i < f[17]->elements; i++) {
        if (ngx_http_actingweb_reply_str(r, f[17]->element[i], &s[0])
            != NGX_OK
            || s[0].len == 0)
        {
            /* cleared meanwhile */
            continue;
        }

        d = ngx_array_push(&rs->diffs);
        if (d == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(d, sizeof(ngx_http_actingweb_run_diff_t));

        d->seq = (ngx_uint_t) f[15]->integer + i;

        if (ngx_http_actingweb_outbox_stored(r, &s[0], d) != NGX_OK) {
            rs->diffs.nelts--;
        }
    }

    return NGX_OK;
}


/*
 * The peer's trust record, parsed (its secret opened) once per worker
 * and kept while Redis holds the same text: a run has one per
 * subscription, and most runs have the same ones as the last.
 */

static cJSON *
ngx_http_actingweb_outbox_trust(ngx_http_request_t *r,
    ngx_http_actingweb_peer_state_t *ps, redisReply *text)
{
    u_char      *p;
    cJSON       *trust, *copy, *parsed;
    ngx_str_t    perm;
    const char  *err;

    if (ps->trust && ps->trust_len == text->len
        && ngx_memcmp(ps->trust_text, text->str, text->len) == 0)
    {
        return ps->trust;
    }

    trust = ngx_http_actingweb_trust_record(r, (u_char *) text->str,
                                            text->len, &err);
    if (trust == NULL) {
        return NULL;
    }

    /*
     * The record in the pool goes with the run: the cache has a copy,
     * with its permissions parsed and owned (permissions.c would keep a
     * reference to a tree in the pool)
     */

    copy = cJSON_Duplicate(trust, 1);
    p = ngx_alloc(text->len, r->connection->log);

    if (copy && ngx_http_actingweb_json_str(trust, "perm", &perm) == NGX_OK) {
        parsed = perm.len ? ngx_http_actingweb_json_parse(r, perm.data,
                                                          perm.len, &err)
                          : NULL;
        parsed = parsed ? cJSON_Duplicate(parsed, 1) : cJSON_CreateNull();

        if (parsed == NULL) {
            cJSON_Delete(copy);
            copy = NULL;

        } else {
            cJSON_AddItemToObject(copy, "_perm", parsed);
        }
    }

    if (copy == NULL || p == NULL) {
        cJSON_Delete(copy);

        if (p) {
            ngx_free(p);
        }

        return trust;
    }

    ngx_http_actingweb_outbox_untrust(ps);

    ngx_memcpy(p, text->str, text->len);
    ps->trust_text = p;
    ps->trust_len = text->len;
    ps->trust = copy;

    return copy;
}


static void
ngx_http_actingweb_outbox_untrust(ngx_http_actingweb_peer_state_t *ps)
{
    if (ps->trust) {
        cJSON_Delete(ps->trust);
        ngx_free(ps->trust_text);
        ps->trust = NULL;
        ps->trust_text = NULL;
        ps->trust_len = 0;
    }
}


/* a stored diff's fields, for its callback */

static ngx_int_t
ngx_http_actingweb_outbox_stored(ngx_http_request_t *r, ngx_str_t *text,
    ngx_http_actingweb_run_diff_t *d)
{
    cJSON       *entry, *data;
    const char  *err;

    entry = ngx_http_actingweb_json_parse(r, text->data, text->len, &err);

    if (!cJSON_IsObject(entry)
        || ngx_http_actingweb_json_str(entry, "timestamp", &d->ts) != NGX_OK)
    {
        return NGX_ERROR;
    }

    data = cJSON_GetObjectItemCaseSensitive(entry, "data");

    if (data) {
        return ngx_http_actingweb_json_print(r, data, &d->data);
    }

    /* a resync */

    return ngx_http_actingweb_json_str(entry, "url", &d->url);
}


/*
 * The new diffs of every subscription, as a poll makes them (bounded by
 * actingweb_change_log).  A run makes at most OUTBOX_BUDGET bytes of
 * diffs; the subscriptions left over wait for the next run.
 */

static ngx_int_t
ngx_http_actingweb_outbox_make(ngx_http_request_t *r)
{
    size_t                           budget;
    ngx_uint_t                       i, j, k, pending, progress;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_run_sub_t    *rs;
    ngx_http_actingweb_loc_conf_t   *alcf;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    budget = 0;
    progress = 0;

    for (i = 0; i < cl->nsubs; i++) {
        rs = &cl->subs[i];

        if (rs->skip) {
            continue;
        }

        if (budget > NGX_HTTP_ACTINGWEB_OUTBOX_BUDGET) {
            rs->skip = 1;
            cl->more = 1;
            continue;
        }

        for (j = 0; j < rs->diffs.nelts; j++) {
            budget += ((ngx_http_actingweb_run_diff_t *)
                       rs->diffs.elts)[j].data.len;
        }

        if (rs->upto < rs->sequence) {
            /* more unsent diffs than a page: those first */
            cl->more = 1;
            continue;
        }

        pending = rs->sequence - rs->cleared;

        if (rs->trimmed) {
            /* the cursor was trimmed away: events were lost, start over */

            if (cl->newest.len == 0 || pending >= alcf->change_log) {
                /*
                 * full: the cursor stays where it was lost, so the resync
                 * is made once the subscriber clears some (moved now, the
                 * lost events would leave no trace)
                 */
                continue;
            }

            rs->newcursor = cl->newest;

            if (rs->lastresync) {
                /* one resync waiting uncleared says it already */
                continue;
            }

            if (ngx_http_actingweb_outbox_resync(r, rs) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (pending >= alcf->change_log) {
            /* takes no more: cb_claim's page need not have its cursor */
            continue;
        }

        /* the cursor's own event, then the ones after it */

        for (k = 0; k < cl->nevents; k++) {
            if (cl->events[k].id.len == rs->cursor.len
                && ngx_strncmp(cl->events[k].id.data, rs->cursor.data,
                               rs->cursor.len) == 0)
            {
                break;
            }
        }

        if (k == cl->nevents) {
            /* beyond this page (a poll moved it on): a later run */
            cl->more = 1;
            continue;
        }

        for (k++; k < cl->nevents && pending < alcf->change_log; k++) {
            if (budget > NGX_HTTP_ACTINGWEB_OUTBOX_BUDGET) {
                /* large values: the rest of the page is the next run's */
                cl->more = 1;
                break;
            }

            switch (ngx_http_actingweb_outbox_diff(r, rs, k)) {

            case NGX_OK:
                pending++;
                budget += ((ngx_http_actingweb_run_diff_t *)
                           rs->diffs.elts)[rs->diffs.nelts - 1].data.len;
                break;

            case NGX_DECLINED:
                break;

            default:
                return NGX_ERROR;
            }

            rs->newcursor = cl->events[k].id;
        }
    }

    for (i = 0; !progress && i < cl->nsubs; i++) {
        rs = &cl->subs[i];
        progress = !rs->skip
                   && (rs->diffs.nelts || rs->upto != rs->notified
                       || rs->newcursor.data != rs->cursor.data);
    }

    if (!progress) {
        /*
         * Nothing moved (the oldest cursor's subscription was left out):
         * another run now would do the same; the next write tries again
         */
        cl->more = 0;
    }

    return NGX_OK;
}


/*
 * Event k as rs's next diff: NGX_OK (pushed), NGX_DECLINED (none), or
 * NGX_ERROR.  A diff depends only on the event, the subscription's path
 * and the trust's relationship and permissions (sub_event_diff): the
 * subscriptions of one such class share each event's printed diff.
 */

static ngx_int_t
ngx_http_actingweb_outbox_diff(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_uint_t k)
{
    cJSON                           *diff;
    ngx_int_t                        rc;
    ngx_str_t                       *data;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_run_diff_t   *d;
    ngx_http_actingweb_run_class_t  *c;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (rs->class == NULL
        && ngx_http_actingweb_outbox_class(r, rs) != NGX_OK)
    {
        return NGX_ERROR;
    }

    c = rs->class;
    data = &c->data[k];

    if (data->data == NULL) {
        rc = ngx_http_actingweb_sub_event_diff(r, &cl->events[k].event,
                                               c->at, c->trust, &diff);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            if (ngx_http_actingweb_json_print(r, diff, data) != NGX_OK) {
                return NGX_ERROR;
            }

        } else {
            ngx_str_set(data, "");
        }
    }

    if (data->len == 0) {
        return NGX_DECLINED;
    }

    d = ngx_array_push(&rs->diffs);
    if (d == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(d, sizeof(ngx_http_actingweb_run_diff_t));

    d->seq = rs->sequence + ++rs->nnew;
    d->ts = cl->events[k].ts;
    d->data = *data;
    d->event = k + 1;

    return NGX_OK;
}


/* rs's class: target, subtarget, resource, relationship, permissions */

static ngx_int_t
ngx_http_actingweb_outbox_class(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs)
{
    u_char                          *p;
    size_t                           len;
    ngx_str_t                        part[5];
    ngx_uint_t                       i, hash;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_run_class_t  *c, **cs;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    len = 0;

    for (i = 0; i < 5; i++) {
        if (i < 3) {
            part[i].data = (u_char *) rs->at[i];
            part[i].len = rs->at[i] ? ngx_strlen(rs->at[i]) : 0;

        } else if (ngx_http_actingweb_json_str(rs->trust,
                                               i == 3 ? "relationship"
                                                      : "perm",
                                               &part[i])
                   != NGX_OK)
        {
            ngx_str_null(&part[i]);
        }

        len += part[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < 5; i++) {
        len = ngx_cpymem(p + len, part[i].data, part[i].len) - p;
        p[len++] = '\x01';
    }

    hash = ngx_hash_key(p, len);

    if (cl->classes.elts == NULL
        && ngx_array_init(&cl->classes, r->pool, 4,
                          sizeof(ngx_http_actingweb_run_class_t *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    cs = cl->classes.elts;

    for (i = 0; i < cl->classes.nelts; i++) {
        if (cs[i]->hash == hash && cs[i]->key.len == len
            && ngx_memcmp(cs[i]->key.data, p, len) == 0)
        {
            rs->class = cs[i];
            return NGX_OK;
        }
    }

    c = ngx_palloc(r->pool, sizeof(ngx_http_actingweb_run_class_t));
    cs = ngx_array_push(&cl->classes);

    if (c == NULL || cs == NULL) {
        return NGX_ERROR;
    }

    *cs = c;
    c->hash = hash;
    c->key.data = p;
    c->key.len = len;
    c->at = rs->at;
    c->trust = rs->trust;
    c->data = ngx_pcalloc(r->pool, sizeof(ngx_str_t) * (cl->nevents + 1));

    if (c->data == NULL) {
        return NGX_ERROR;
    }

    rs->class = c;

    return NGX_OK;
}


/* the spec's resync diff in place of the lost ones */

static ngx_int_t
ngx_http_actingweb_outbox_resync(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs)
{
    ngx_http_actingweb_claim_t     *cl;
    ngx_http_actingweb_run_diff_t  *d;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    d = ngx_array_push(&rs->diffs);
    if (d == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(d, sizeof(ngx_http_actingweb_run_diff_t));

    d->seq = rs->sequence + ++rs->nnew;
    d->ts.data = ngx_pnalloc(r->pool, NGX_HTTP_ACTINGWEB_SUB_TIME_LEN);

    if (d->ts.data == NULL
        || ngx_http_actingweb_sub_resync_url(r, rs->at, &d->url) != NGX_OK)
    {
        return NGX_ERROR;
    }

    d->ts.len = ngx_http_actingweb_sub_time(d->ts.data, cl->newest.data,
                                            cl->newest.len)
                - d->ts.data;

    return NGX_OK;
}


/*
 * One script stores every subscription's new diffs, moves its cursor and
 * its "notified" mark; ARGV per subscription: id, cursor and sequence
 * seen, new cursor, notified before the new diffs, notified seen, how
 * many, the diffs.
 */

static ngx_int_t
ngx_http_actingweb_outbox_store(ngx_http_request_t *r)
{
    u_char                           *p;
    ngx_str_t                         entry;
    ngx_uint_t                        i, j, n;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_run_sub_t     *rs;
    ngx_http_actingweb_run_diff_t    *d;
    ngx_http_actingweb_redis_args_t  *a;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    n = 2;

    for (i = 0; i < cl->nsubs; i++) {
        rs = &cl->subs[i];

        rs->included = !rs->skip
                       && (rs->nnew || rs->upto != rs->notified
                           || rs->newcursor.data != rs->cursor.data);

        if (rs->included) {
            n += 7 + rs->nnew;
        }
    }

    if (n == 2) {
        /* nothing new for anyone */
        ngx_http_actingweb_outbox_release(r);
        return NGX_OK;
    }

    a = ngx_http_actingweb_redis_args(r, n);

    if (a == NULL
        || ngx_http_actingweb_redis_key(r, a, &cl->ctx.actor_id, "subs")
           != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &cl->ctx.actor_id, "diffs")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < cl->nsubs; i++) {
        rs = &cl->subs[i];

        if (!rs->included) {
            continue;
        }

        p = ngx_pnalloc(r->pool, 4 * NGX_INT_T_LEN);

        if (p == NULL
            || ngx_http_actingweb_redis_arg(a, rs->subid.data, rs->subid.len)
               != NGX_OK
            || ngx_http_actingweb_redis_arg(a, rs->cursor.data,
                                            rs->cursor.len) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, p,
                   ngx_sprintf(p, "%ui", rs->sequence) - p) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, rs->newcursor.data,
                                            rs->newcursor.len) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, p + NGX_INT_T_LEN,
                   ngx_sprintf(p + NGX_INT_T_LEN, "%ui", rs->upto)
                   - p - NGX_INT_T_LEN) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, p + 2 * NGX_INT_T_LEN,
                   ngx_sprintf(p + 2 * NGX_INT_T_LEN, "%ui", rs->notified)
                   - p - 2 * NGX_INT_T_LEN) != NGX_OK
            || ngx_http_actingweb_redis_arg(a, p + 3 * NGX_INT_T_LEN,
                   ngx_sprintf(p + 3 * NGX_INT_T_LEN, "%ui", rs->nnew)
                   - p - 3 * NGX_INT_T_LEN) != NGX_OK)
        {
            return NGX_ERROR;
        }

        d = rs->diffs.elts;

        for (j = rs->diffs.nelts - rs->nnew; j < rs->diffs.nelts; j++) {
            if (ngx_http_actingweb_outbox_entry(r, &d[j], &entry) != NGX_OK
                || ngx_http_actingweb_redis_arg(a, entry.data, entry.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return ngx_http_actingweb_redis_script(r,
                                         NGX_HTTP_ACTINGWEB_SCRIPT_CB_STORE,
                                         a, ngx_http_actingweb_outbox_saved);
}


/* a diff as stored, and as a poll shows it (sub_entry, sub_resync) */

static ngx_int_t
ngx_http_actingweb_outbox_entry(ngx_http_request_t *r,
    ngx_http_actingweb_run_diff_t *d, ngx_str_t *out)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, sizeof("{\"sequence\":,\"timestamp\":\"\","
                                    "\"type\":\"resync\",\"url\":\"\"}")
                             + NGX_INT_T_LEN + d->ts.len + d->data.len
                             + 6 * d->url.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_sprintf(p, "{\"sequence\":%ui,\"timestamp\":\"%V\",",
                    d->seq, &d->ts);

    if (d->data.len) {
        p = ngx_sprintf(p, "\"data\":%V}", &d->data);

    } else {
        p = ngx_cpymem(p, "\"type\":\"resync\",\"url\":\"",
                       sizeof("\"type\":\"resync\",\"url\":\"") - 1);
        p = ngx_http_actingweb_outbox_escape(p, &d->url);
        *p++ = '"';
        *p++ = '}';
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* a JSON string's content: quotes, backslashes and controls escaped */

static u_char *
ngx_http_actingweb_outbox_escape(u_char *dst, ngx_str_t *s)
{
    u_char         c, *p, *last;
    static u_char  hex[] = "0123456789abcdef";

    for (p = s->data, last = p + s->len; p < last; p++) {
        c = *p;

        if (c == '"' || c == '\\') {
            *dst++ = '\\';
            *dst++ = c;

        } else if (c < 0x20) {
            dst = ngx_cpymem(dst, "\\u00", 4);
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];

        } else {
            *dst++ = c;
        }
    }

    return dst;
}


/*
 * The store's answer, per subscription: 1 stored, -1 a poll moved it
 * meanwhile (its diffs get their callbacks in the next run), 0 gone.
 * The stored ones' callbacks go now.
 */

static void
ngx_http_actingweb_outbox_saved(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    ngx_uint_t                     i, k;
    ngx_queue_t                   *q;
    ngx_http_actingweb_claim_t    *cl;
    ngx_http_actingweb_sends_t    *sd;
    ngx_http_actingweb_run_sub_t  *rs;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (status != NGX_HTTP_ACTINGWEB_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        ngx_log_error(NGX_LOG_ERR, cl->outbox->log, 0,
                      "actingweb: callbacks of \"%V\" not stored; they go "
                      "out with the next write", &cl->member);
        ngx_http_actingweb_outbox_release(r);
        return;
    }

    k = 0;

    for (i = 0; i < cl->nsubs; i++) {
        rs = &cl->subs[i];

        if (!rs->included) {
            continue;
        }

        if (k >= reply->elements
            || reply->element[k]->type != REDIS_REPLY_INTEGER)
        {
            break;
        }

        switch (reply->element[k++]->integer) {

        case 1:
            if (rs->diffs.nelts) {
                ngx_http_actingweb_outbox_sends(r, rs, i);
            }

            break;

        case -1:
            cl->more = 1;
            break;

        default:
            break;
        }
    }

    /* every subscription stored: this run's callbacks go */

    ngx_http_actingweb_outbox_dedup(cl);

    while (!ngx_queue_empty(&cl->run)) {
        q = ngx_queue_head(&cl->run);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&cl->outbox->ready, q);

        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        cl->clears->unstarted += sd->n;
    }

    cl->clears->claiming = 0;

    ngx_http_actingweb_outbox_pump(cl->outbox);

    ngx_http_actingweb_outbox_release(r);
}


/* the callbacks of one subscription, in sequence order */

static void
ngx_http_actingweb_outbox_sends(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_uint_t order)
{
    u_char                          *p;
    size_t                           len;
    ngx_str_t                        baseuri, secret, head, url, *id;
    ngx_int_t                        ms, en;
    ngx_uint_t                       i, n;
    ngx_http_actingweb_claim_t      *cl;
    ngx_http_actingweb_sends_t      *sd;
    ngx_http_actingweb_outbox_t     *ob;
    ngx_http_actingweb_run_diff_t   *d;
    ngx_http_actingweb_main_conf_t  *amcf;

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    ob = cl->outbox;
    amcf = ob->amcf;
    n = rs->diffs.nelts;
    d = rs->diffs.elts;

    if (ngx_http_actingweb_json_str(rs->trust, "baseuri", &baseuri)
        != NGX_OK
        || ngx_http_actingweb_json_str(rs->trust, "secret", &secret)
           != NGX_OK
        || ngx_http_actingweb_actor_url(r, &cl->ctx.actor_id, &url)
           != NGX_OK
        || ngx_http_actingweb_outbox_head(r, rs, &head) != NGX_OK)
    {
        return;
    }

    /* <baseuri>/callbacks/subscriptions/<our id>/<subid> */

    len = sizeof(ngx_http_actingweb_sends_t) + baseuri.len
          + sizeof("/callbacks/subscriptions//") + cl->ctx.actor_id.len
          + rs->subid.len + sizeof("Bearer ") + secret.len
          + n * (sizeof(ngx_str_t) + 3 * sizeof(ngx_uint_t) + 1)
          + cl->member.len + rs->subid.len;

    sd = ngx_calloc(len, ob->log);
    if (sd == NULL) {
        return;
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
    p = ngx_cpymem(p, rs->subid.data, rs->subid.len);
    sd->subid.len = rs->subid.len;

    sd->url.data = p;
    p = ngx_sprintf(p, "%V/callbacks/subscriptions/%V/%V", &baseuri,
                    &cl->ctx.actor_id, &rs->subid);
    sd->url.len = p - sd->url.data;
    sd->baseuri.data = sd->url.data;
    sd->baseuri.len = baseuri.len;
    *p++ = '\0';

    sd->authorization.data = p;
    p = ngx_sprintf(p, "Bearer %V", &secret);
    sd->authorization.len = p - sd->authorization.data;

    sd->peer = rs->ps;
    sd->policy = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);
    sd->order = order;
    sd->gzip = rs->gzip;

    /* properties < properties/x < properties/x/y: the deeper one wins */

    for (i = 0; i < 3 && rs->at[i]; i++) {
        sd->specific++;

        for (p = (u_char *) rs->at[i]; *p; p++) {
            sd->specific += (*p == '/');
        }
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_actingweb_outbox_body(r, rs, &head, &url, &d[i],
                                           &sd->bodies[sd->n],
                                           &sd->downgraded[sd->n])
            != NGX_OK)
        {
            continue;
        }

        if (sd->downgraded[sd->n]) {
            ngx_http_actingweb_metric_inc(amcf,
                                     NGX_HTTP_ACTINGWEB_M_CALLBACK_DOWNGRADED);
        }

        sd->seqs[sd->n] = d[i].seq;

        /* the event as two numbers "<ms>-<n>", for one POST per event */

        if (d[i].event) {
            id = &cl->events[d[i].event - 1].id;
            p = ngx_strlchr(id->data, id->data + id->len, '-');

            ms = p ? ngx_atoi(id->data, p - id->data) : NGX_ERROR;
            en = p ? ngx_atoi(p + 1, id->data + id->len - p - 1)
                   : NGX_ERROR;

            if (ms != NGX_ERROR && en != NGX_ERROR) {
                sd->events[2 * sd->n] = ms;
                sd->events[2 * sd->n + 1] = en;
            }
        }

        ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH);
        sd->n++;
    }

    if (sd->n == 0) {
        ngx_http_actingweb_outbox_sends_free(sd);
        return;
    }

    sd->dummy.fd = (ngx_socket_t) -1;
    sd->retry.handler = ngx_http_actingweb_outbox_retry;
    sd->retry.data = &sd->dummy;
    sd->retry.log = ob->log;
    sd->retry.cancelable = 1;

    sd->clears = cl->clears;
    sd->clears->refs++;

    /* ready when the whole run is known (outbox_dedup) */

    ngx_queue_insert_tail(&cl->run, &sd->queue);
    sd->queued = 1;
}


/*
 * The start of every callback of rs: {"id", "subscriptionid", "target",
 * "subtarget"?, "resource"? without the closing brace
 */

static ngx_int_t
ngx_http_actingweb_outbox_head(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_str_t *head)
{
    u_char                      *p;
    size_t                       len;
    ngx_str_t                    s;
    ngx_uint_t                   i;
    ngx_http_actingweb_claim_t  *cl;
    static const char           *names[] = {
        "target", "subtarget", "resource"
    };

    cl = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    len = sizeof("{\"id\":\"\",\"subscriptionid\":\"\"")
          + 6 * (cl->ctx.actor_id.len + rs->subid.len);

    for (i = 0; i < 3 && rs->at[i]; i++) {
        len += sizeof(",\"subtarget\":\"\"") + 6 * ngx_strlen(rs->at[i]);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    head->data = p;

    p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = ngx_http_actingweb_outbox_escape(p, &cl->ctx.actor_id);
    p = ngx_cpymem(p, "\",\"subscriptionid\":\"",
                   sizeof("\",\"subscriptionid\":\"") - 1);
    p = ngx_http_actingweb_outbox_escape(p, &rs->subid);
    *p++ = '"';

    for (i = 0; i < 3 && rs->at[i]; i++) {
        s.data = (u_char *) rs->at[i];
        s.len = ngx_strlen(rs->at[i]);

        p = ngx_sprintf(p, ",\"%s\":\"", names[i]);
        p = ngx_http_actingweb_outbox_escape(p, &s);
        *p++ = '"';
    }

    head->len = p - head->data;

    return NGX_OK;
}


/*
 * The spec's callback, out of the pool (it outlives the run): high with
 * "data", low with the diff's "url", or a resync; a high one above
 * actingweb_callback_max_payload goes as low.
 */

static ngx_int_t
ngx_http_actingweb_outbox_body(ngx_http_request_t *r,
    ngx_http_actingweb_run_sub_t *rs, ngx_str_t *head, ngx_str_t *url,
    ngx_http_actingweb_run_diff_t *d, ngx_str_t *out, u_char *downgraded)
{
    u_char                          *p;
    size_t                           len;
    ngx_str_t                        gran, low;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    *downgraded = 0;

    gran = rs->granularity;

    if (gran.len != 3 || ngx_strncmp(gran.data, "low", 3) != 0) {
        ngx_str_set(&gran, "high");
    }

    len = head->len + sizeof(",\"sequence\":,\"timestamp\":\"\","
                             "\"granularity\":\"high\",\"data\":}")
          + NGX_INT_T_LEN + d->ts.len + d->data.len;

    if (d->data.len && gran.len == 4) {
        if (len <= amcf->callback_max_payload + NGX_INT_T_LEN + 1) {
            p = ngx_alloc(len, r->connection->log);
            if (p == NULL) {
                return NGX_ERROR;
            }

            out->data = p;
            p = ngx_sprintf(p, "%V,\"sequence\":%ui,\"timestamp\":\"%V\","
                            "\"granularity\":\"high\",\"data\":%V}",
                            head, d->seq, &d->ts, &d->data);
            out->len = p - out->data;

            if (out->len <= amcf->callback_max_payload) {
                return NGX_OK;
            }

            ngx_free(out->data);
        }

        *downgraded = 1;
    }

    if (d->data.len) {
        /* low: where the diff is, <actor>/subscriptions/<peer>/<sub>/<seq> */

        ngx_str_set(&gran, "low");

        low.data = ngx_pnalloc(r->pool, url->len + sizeof("/subscriptions///")
                                        + rs->peer.len + rs->subid.len
                                        + NGX_INT_T_LEN);
        if (low.data == NULL) {
            return NGX_ERROR;
        }

        low.len = ngx_sprintf(low.data, "%V/subscriptions/%V/%V/%ui", url,
                              &rs->peer, &rs->subid, d->seq)
                  - low.data;
        url = &low;
    } else {
        url = &d->url;
    }

    /* low, or a resync (its url for the whole state) */

    len = head->len + sizeof(",\"sequence\":,\"timestamp\":\"\","
                             "\"type\":\"resync\",\"url\":\"\","
                             "\"granularity\":\"high\"}")
          + NGX_INT_T_LEN + d->ts.len + 6 * url->len;

    p = ngx_alloc(len, r->connection->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_sprintf(p, "%V,\"sequence\":%ui,\"timestamp\":\"%V\",", head,
                    d->seq, &d->ts);

    if (d->data.len == 0) {
        p = ngx_cpymem(p, "\"type\":\"resync\",",
                       sizeof("\"type\":\"resync\",") - 1);
    }

    p = ngx_cpymem(p, "\"url\":\"", sizeof("\"url\":\"") - 1);
    p = ngx_http_actingweb_outbox_escape(p, url);
    p = ngx_sprintf(p, "\",\"granularity\":\"%V\"}", &gran);
    out->len = p - out->data;

    return NGX_OK;
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

    a = ngx_http_actingweb_redis_args(r, 4);

    /* work left for a next run keeps the pending mark */

    if (a == NULL
        || ngx_http_actingweb_redis_key(r, a, &id, "actor") != NGX_OK
        || ngx_http_actingweb_redis_arg(a, cl->outbox->owner,
                                        NGX_HTTP_ACTINGWEB_ID_LEN) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, cl->pending.data,
                                        cl->pending.len) != NGX_OK
        || ngx_http_actingweb_redis_arg(a, (u_char *) (cl->more ? "1" : "0"),
                                        1) != NGX_OK
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

    if (cl->clears) {
        cl->clears->claiming = 0;
        ngx_http_actingweb_outbox_started(ob, cl->clears, 0);
        ngx_http_actingweb_outbox_clears_put(ob, cl->clears);
        cl->clears = NULL;
    }

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
 * What the claim of an actor read of a peer's circuit in Redis (another
 * worker or instance may have opened it): "" closed, "<ms>" open until
 * then, "probe" this worker probes it.
 */

static void
ngx_http_actingweb_outbox_shared(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *actor, ngx_http_actingweb_peer_state_t *ps, ngx_str_t *circuit,
    ngx_msec_t now)
{
    ngx_int_t  until;

    if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_PROBING) {
        return;
    }

    if (circuit->len == 0) {
        if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_OPENED
            && actor->len == NGX_HTTP_ACTINGWEB_ID_LEN
            && ngx_memcmp(ps->by, actor->data, actor->len) == 0)
        {
            /*
             * another worker's probe closed it (only the actor whose
             * record opened it says so: the others have none)
             */
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
        ngx_memcpy(ps->by, actor->data,
                   ngx_min(actor->len, NGX_HTTP_ACTINGWEB_ID_LEN));
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
    ngx_memcpy(ps->by, actor->data,
               ngx_min(actor->len, NGX_HTTP_ACTINGWEB_ID_LEN));
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


/*
 * No new work (scans, claims, re-claims, shared circuit writes) once the
 * worker stops; what it sent is still cleared (clears_put, sends_free)
 */

static ngx_uint_t
ngx_http_actingweb_outbox_stopping(ngx_http_actingweb_outbox_t *ob)
{
    return ob->exiting || ngx_exiting || ngx_terminate || ngx_quit;
}


/* starts calls while there is room: one per subscription at a time */

static void
ngx_http_actingweb_outbox_pump(ngx_http_actingweb_outbox_t *ob)
{
    ngx_uint_t                        zip;
    ngx_queue_t                      *q;
    ngx_http_actingweb_sends_t       *sd;
    ngx_http_actingweb_peer_state_t  *ps;
    ngx_http_actingweb_curl_post_t    post;
    ngx_http_actingweb_main_conf_t   *amcf;

    amcf = ob->amcf;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_actingweb_outbox_exiting(ob);
    }

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
            ngx_http_actingweb_metric_add(amcf,
                                          NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED,
                                          sd->n - sd->next);
            ngx_http_actingweb_metric_add(amcf,
                                          NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
                                          -(ngx_int_t) (sd->n - sd->next));
            ngx_http_actingweb_outbox_sends_free(sd);
            continue;
        }

        /*
         * The spec compresses bodies above 1 KB for receivers that take
         * it: the subscription's accept_encoding says so, or the peer's
         * option tags (asked once, for the first such body)
         */

        zip = (sd->bodies[sd->next].len >= NGX_HTTP_ACTINGWEB_GZIP_MIN);

        if (zip && !sd->gzip
            && ps->tags != NGX_HTTP_ACTINGWEB_TAGS_FETCHING
            && (ps->tags == NGX_HTTP_ACTINGWEB_TAGS_UNKNOWN
                || (ngx_msec_int_t) (ps->tags_until - ngx_current_msec) <= 0)
            && ngx_http_actingweb_outbox_tags(ps, sd) == NGX_OK)
        {
            ob->calls++;
        }

        if (zip && !sd->gzip && ps->tags == NGX_HTTP_ACTINGWEB_TAGS_FETCHING)
        {
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

        if (sd->next >= sd->started) {
            sd->started = sd->next + 1;
            ngx_http_actingweb_outbox_started(ob, sd->clears, 1);
        }

        post.url = sd->url;
        post.authorization = sd->authorization;
        post.body = sd->bodies[sd->next];
        post.downgraded = sd->downgraded[sd->next];
        post.gzip = zip && (sd->gzip
                            || ps->tags == NGX_HTTP_ACTINGWEB_TAGS_GZIP);
        post.timeout = amcf->callback_timeout;
        post.max_body = NGX_HTTP_ACTINGWEB_OUTBOX_ANSWER_MAX;
        post.policy = sd->policy;
        post.handler = ngx_http_actingweb_outbox_sent;
        post.data = sd;

        if (ngx_http_actingweb_curl_post(amcf, &post) != NGX_OK) {
            if (ps->state == NGX_HTTP_ACTINGWEB_BREAKER_PROBING) {
                /* no probe went: the next callback to the peer probes */
                ngx_http_actingweb_outbox_state(ob, ps,
                                            NGX_HTTP_ACTINGWEB_BREAKER_OPENED);
            }

            ngx_http_actingweb_metric_add(amcf,
                                          NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED,
                                          sd->n - sd->next);
            ngx_http_actingweb_metric_add(amcf,
                                          NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
                                          -(ngx_int_t) (sd->n - sd->next));
            ngx_http_actingweb_outbox_sends_free(sd);
            continue;
        }

        ob->calls++;
    }
}


/*
 * A graceful stop or reload: the old worker goes on sending the callbacks
 * its runs made, for at most the callback timeout; then the rest are
 * dropped (their diffs stay pollable), so that slow subscribers cannot
 * hold the old worker for long.
 */

static void
ngx_http_actingweb_outbox_exiting(ngx_http_actingweb_outbox_t *ob)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_http_actingweb_sends_t  *sd;

    if (ob->exit_at == 0) {
        ob->exit_at = ngx_current_msec + ob->amcf->callback_timeout;
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - ob->exit_at) < 0
        && !ngx_terminate)
    {
        return;
    }

    n = 0;

    while (!ngx_queue_empty(&ob->ready)) {
        q = ngx_queue_head(&ob->ready);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);

        n += sd->n - sd->next;
        ngx_http_actingweb_metric_add(ob->amcf,
                                      NGX_HTTP_ACTINGWEB_M_CALLBACK_DROPPED,
                                      sd->n - sd->next);
        ngx_http_actingweb_metric_add(ob->amcf,
                                      NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
                                      -(ngx_int_t) (sd->n - sd->next));
        ngx_http_actingweb_outbox_sends_free(sd);
    }

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                      "actingweb: exiting: %ui callbacks not sent (their "
                      "diffs stay pollable)", n);
    }
}


/*
 * The peer's option tags: one GET of <baseuri>/meta/actingweb/supported
 * per peer and worker, kept for an hour (a minute if it failed: plain
 * bodies until then, which every receiver takes).
 */

static ngx_int_t
ngx_http_actingweb_outbox_tags(ngx_http_actingweb_peer_state_t *ps,
    ngx_http_actingweb_sends_t *sd)
{
    u_char                          *p;
    ngx_int_t                        rc;
    ngx_str_t                       *baseuri;
    ngx_http_actingweb_curl_post_t   get;

    baseuri = &sd->baseuri;

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
    get.policy = sd->policy;
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
    ngx_str_t                         id;
    ngx_msec_t                        wait;
    ngx_uint_t                        ok;
    ngx_http_actingweb_outbox_t      *ob;
    ngx_http_actingweb_main_conf_t   *amcf;

    ob = sd->outbox;
    amcf = ob->amcf;
    ob->calls--;

    if (rc == NGX_ABORT) {
        /* exiting: outbox_exit frees what is left */
        ngx_http_actingweb_metric_add(amcf,
                                      NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH, -1);
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

    if (wait && !ok) {
        /* recorded in this actor's circuits: its claims may close it */
        ngx_http_actingweb_outbox_id(&sd->member, &id);
        ngx_memcpy(sd->peer->by, id.data,
                   ngx_min(id.len, NGX_HTTP_ACTINGWEB_ID_LEN));
    }

    if (wait && !ngx_http_actingweb_outbox_stopping(ob)) {
        /* for the other workers and instances: open until, or closed */
        ngx_http_actingweb_outbox_circuit(sd,
                               ok ? 0 : ngx_http_actingweb_outbox_now() + wait);
    }

    if (!ok && sd->tries < amcf->callback_retries
        && sd->peer->state == NGX_HTTP_ACTINGWEB_BREAKER_CLOSED)
    {
        /* configured retries: 1 s, 2 s, 4 s, ... */

        ngx_http_actingweb_metric_inc(amcf,
                                      NGX_HTTP_ACTINGWEB_M_CALLBACK_RETRIED);
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
        ngx_http_actingweb_metric_inc(amcf,
                                      NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED);
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


/*
 * A claim's lease: a run holds it for three Redis commands (claim, store,
 * release), each bounded by actingweb_redis_timeout; a worker that died
 * holding it delays the actor's callbacks by that much.  The store checks
 * what the run read, so a lease that ran out mid-run sends nothing twice.
 */

static ngx_msec_t
ngx_http_actingweb_outbox_lease(ngx_http_actingweb_outbox_t *ob)
{
    return ngx_max(5 * ob->amcf->redis_timeout, 2000);
}


/*
 * A run holds the actor's next claim in this worker while it is being
 * claimed and stored, and while more of its bodies wait than the calls
 * that may be in flight (so the next run is ready before they are gone)
 */

static ngx_uint_t
ngx_http_actingweb_outbox_busy(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs)
{
    return cs->claiming || cs->unstarted > ob->amcf->callback_concurrency;
}


/* n bodies of a run started (or dropped): a claim waiting for it goes */

static void
ngx_http_actingweb_outbox_started(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs, ngx_uint_t n)
{
    if (cs == NULL) {
        return;
    }

    cs->unstarted -= ngx_min(n, cs->unstarted);

    if (cs->again && !ngx_http_actingweb_outbox_busy(ob, cs)) {
        cs->again = 0;

        if (!ngx_http_actingweb_outbox_stopping(ob)) {
            ngx_http_actingweb_outbox_add(ob, cs->member.data,
                                          cs->member.len);
        }
    }
}


/* a run or one of its sends is done: the last one clears the 2xx diffs */

static void
ngx_http_actingweb_outbox_clears_put(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs)
{
    ngx_queue_t                 *q;
    ngx_http_actingweb_sends_t  *sd;

    if (--cs->refs) {
        return;
    }

    ngx_queue_remove(&cs->queue);

    if (cs->again && !ngx_http_actingweb_outbox_stopping(ob)) {
        ngx_http_actingweb_outbox_add(ob, cs->member.data, cs->member.len);
    }

    /*
     * A worker that is stopping gracefully still clears what it sent (it
     * waits for Redis's answer); one that has begun to exit does not
     */

    if (!ngx_queue_empty(&cs->done) && !ob->exiting && !ngx_terminate) {
        ngx_http_actingweb_outbox_clear(ob, cs);
    }

    while (!ngx_queue_empty(&cs->done)) {
        q = ngx_queue_head(&cs->done);
        ngx_queue_remove(q);
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        ngx_free(sd);
    }

    ngx_free(cs);
}


/*
 * The diffs of callbacks answered 2xx are cleared, as the spec asks: one
 * script for the run; ARGV: subscription id, how many, sequences, ...
 */

static void
ngx_http_actingweb_outbox_clear(ngx_http_actingweb_outbox_t *ob,
    ngx_http_actingweb_clears_t *cs)
{
    u_char                           *p;
    ngx_str_t                         id;
    ngx_uint_t                        i, n;
    ngx_queue_t                      *q;
    ngx_http_request_t               *r;
    ngx_http_actingweb_claim_t       *cl;
    ngx_http_actingweb_sends_t       *sd;
    ngx_http_actingweb_redis_args_t  *a;

    cl = ngx_http_actingweb_outbox_actor(ob, &cs->member, &id);
    if (cl == NULL) {
        return;
    }

    r = cl->request;
    n = 2;

    for (q = ngx_queue_head(&cs->done);
         q != ngx_queue_sentinel(&cs->done);
         q = ngx_queue_next(q))
    {
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);
        n += 2 + sd->nok;
    }

    a = ngx_http_actingweb_redis_args(r, n);
    p = ngx_pnalloc(r->pool, n * NGX_INT_T_LEN);

    /* the arguments live in the request's pool: the sends go now */

    if (a == NULL || p == NULL
        || ngx_http_actingweb_redis_key(r, a, &id, "subs") != NGX_OK
        || ngx_http_actingweb_redis_key(r, a, &id, "diffs") != NGX_OK)
    {
        goto done;
    }

    for (q = ngx_queue_head(&cs->done);
         q != ngx_queue_sentinel(&cs->done);
         q = ngx_queue_next(q))
    {
        sd = ngx_queue_data(q, ngx_http_actingweb_sends_t, queue);

        if (ngx_http_actingweb_redis_arg(a, sd->subid.data, sd->subid.len)
            != NGX_OK
            || ngx_http_actingweb_redis_arg(a, p,
                                   ngx_sprintf(p, "%ui", sd->nok) - p)
               != NGX_OK)
        {
            goto done;
        }

        p += NGX_INT_T_LEN;

        for (i = 0; i < sd->nok; i++) {
            if (ngx_http_actingweb_redis_arg(a, p,
                    ngx_sprintf(p, "%ui", sd->seqs[i]) - p)
                != NGX_OK)
            {
                goto done;
            }

            p += NGX_INT_T_LEN;
        }
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

    cl = ngx_http_actingweb_outbox_actor(sd->outbox, &sd->member, &id);
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


/* a worker request for the actor at member, for a command of its own */

static ngx_http_actingweb_claim_t *
ngx_http_actingweb_outbox_actor(ngx_http_actingweb_outbox_t *ob,
    ngx_str_t *member, ngx_str_t *id)
{
    ngx_str_t             host;
    ngx_http_conf_ctx_t  *cf;

    cf = ngx_http_actingweb_outbox_locate(ob, member, &host, id);
    if (cf == NULL) {
        return NULL;
    }

    return ngx_http_actingweb_outbox_request(ob, cf, &host, id);
}


static void
ngx_http_actingweb_outbox_sends_free(ngx_http_actingweb_sends_t *sd)
{
    ngx_uint_t                    i;
    ngx_http_actingweb_outbox_t  *ob;
    ngx_http_actingweb_clears_t  *cs;

    ob = sd->outbox;

    if (sd->queued) {
        ngx_queue_remove(&sd->queue);
        sd->queued = 0;
    }

    ngx_queue_remove(&sd->all);

    if (sd->retry.timer_set) {
        ngx_del_timer(&sd->retry);
    }

    for (i = 0; i < sd->n; i++) {
        ngx_free(sd->bodies[i].data);
    }

    cs = sd->clears;

    if (cs == NULL) {
        ngx_free(sd);
        return;
    }

    if (sd->n > sd->started) {
        ngx_http_actingweb_outbox_started(ob, cs, sd->n - sd->started);
    }

    sd->n = 0;

    /* its 2xx sequences wait for the run's one clear */

    if (sd->nok && !ob->exiting && !ngx_terminate) {
        ngx_queue_insert_tail(&cs->done, &sd->queue);

    } else {
        ngx_free(sd);
    }

    ngx_http_actingweb_outbox_clears_put(ob, cs);
}
