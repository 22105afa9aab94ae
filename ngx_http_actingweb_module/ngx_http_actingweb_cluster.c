
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Redis Cluster (actingweb_redis_cluster): the slot map and the routing
 * of commands to nodes, docs/operations.md "Redis Cluster".
 *
 * All keys of one command share one hash tag, so every command has one
 * slot.  Each worker keeps one connection (redis.c, with its set-up,
 * timeouts and reconnects) per node it knows: the seeds, the primaries of
 * the slot map and any node a MOVED or ASK named.  The map is read with
 * CLUSTER SLOTS from a ready node when the first node connects, soon
 * after a MOVED, and every second while a slot has no ready primary: a
 * failover is followed within about a second of the promotion, and only
 * the keys of the failed shard get 503 meanwhile.  Until the map is read
 * commands go to any node and follow MOVED from there.
 *
 * Node addresses from the cluster must be IP literals: a host name would
 * need a blocking resolver (cluster-preferred-endpoint-type ip).
 */


#include "ngx_http_actingweb_redis.h"

#include <arpa/inet.h>


#define NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS    16384
#define NGX_HTTP_ACTINGWEB_CLUSTER_NODES    256
#define NGX_HTTP_ACTINGWEB_CLUSTER_SOON     100      /* ms */
#define NGX_HTTP_ACTINGWEB_CLUSTER_POLL     1000     /* ms, a shard down */


typedef struct {
    ngx_queue_t                          queue;
    ngx_str_t                            host;       /* NUL-terminated */
    ngx_str_t                            addr;       /* host:port */
    ngx_int_t                            port;
    ngx_http_actingweb_redis_t          *redis;
} ngx_http_actingweb_cluster_node_t;


struct ngx_http_actingweb_cluster_s {
    ngx_http_actingweb_redis_t         **slots;
    ngx_http_actingweb_redis_t         **next;       /* the map being read */
    ngx_queue_t                          nodes;
    ngx_uint_t                           nnodes;
    ngx_http_actingweb_cluster_node_t   *asked;      /* CLUSTER SLOTS went */
    ngx_http_actingweb_main_conf_t      *amcf;
    ngx_log_t                           *log;
    ngx_connection_t                     dummy;      /* the timer's data */
    ngx_event_t                          refresh;
    unsigned                             loaded:1;
    unsigned                             reading:1;
    unsigned                             exiting:1;
};


static ngx_http_actingweb_cluster_node_t *ngx_http_actingweb_cluster_node(
    ngx_http_actingweb_cluster_t *cl, u_char *host, size_t len,
    ngx_int_t port);
static ngx_http_actingweb_redis_t *ngx_http_actingweb_cluster_any(
    ngx_http_actingweb_cluster_t *cl);
static void ngx_http_actingweb_cluster_later(ngx_http_actingweb_cluster_t *cl,
    ngx_msec_t delay);
static void ngx_http_actingweb_cluster_refresh(ngx_event_t *ev);
static void ngx_http_actingweb_cluster_read(ngx_http_actingweb_cluster_t *cl);
static void ngx_http_actingweb_cluster_slots(redisAsyncContext *ac,
    void *rep, void *privdata);
static ngx_int_t ngx_http_actingweb_cluster_range(
    ngx_http_actingweb_cluster_t *cl, redisReply *range);


ngx_int_t
ngx_http_actingweb_cluster_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf)
{
    size_t                            size;
    ngx_uint_t                        i;
    ngx_http_actingweb_cluster_t     *cl;
    ngx_http_actingweb_redis_seed_t  *seed;

    cl = ngx_pcalloc(cycle->pool, sizeof(ngx_http_actingweb_cluster_t));
    if (cl == NULL) {
        return NGX_ERROR;
    }

    size = NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS * sizeof(void *);

    cl->slots = ngx_pcalloc(cycle->pool, size);
    cl->next = ngx_pcalloc(cycle->pool, size);

    if (cl->slots == NULL || cl->next == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&cl->nodes);

    cl->amcf = amcf;
    cl->log = cycle->log;
    cl->dummy.fd = (ngx_socket_t) -1;

    cl->refresh.handler = ngx_http_actingweb_cluster_refresh;
    cl->refresh.data = &cl->dummy;
    cl->refresh.log = cycle->log;
    cl->refresh.cancelable = 1;

    amcf->cluster = cl;

    seed = amcf->redis_seeds->elts;

    for (i = 0; i < amcf->redis_seeds->nelts; i++) {
        if (ngx_http_actingweb_cluster_node(cl, seed[i].host.data,
                                            seed[i].host.len, seed[i].port)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_http_actingweb_cluster_exit(ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_queue_t                        *q;
    ngx_http_actingweb_cluster_t       *cl;
    ngx_http_actingweb_cluster_node_t  *node;

    cl = amcf->cluster;
    cl->exiting = 1;

    if (cl->refresh.timer_set) {
        ngx_del_timer(&cl->refresh);
    }

    for (q = ngx_queue_head(&cl->nodes);
         q != ngx_queue_sentinel(&cl->nodes);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_actingweb_cluster_node_t, queue);
        ngx_http_actingweb_redis_close(node->redis);
    }

    amcf->cluster = NULL;
}


/* CRC16-CCITT (XMODEM) of the hash tag, as Redis Cluster computes it */

ngx_uint_t
ngx_http_actingweb_cluster_slot(u_char *key, size_t len)
{
    size_t      s, e;
    ngx_uint_t  i, crc;

    for (s = 0; s < len && key[s] != '{'; s++) { /* void */ }

    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++) { /* void */ }

        if (e < len && e > s + 1) {
            key += s + 1;
            len = e - s - 1;
        }
    }

    crc = 0;

    while (len--) {
        crc ^= (ngx_uint_t) *key++ << 8;

        for (i = 0; i < 8; i++) {
            crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
        }
    }

    return crc & (NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS - 1);
}


/*
 * The node for a command: scripts have their first key after the three
 * EVALSHA slots, commands right after their name.  A slot whose node is
 * down keeps it: the shard's keys get 503 until the map changes.
 */

ngx_http_actingweb_redis_t *
ngx_http_actingweb_cluster_route(ngx_http_actingweb_cluster_t *cl,
    ngx_http_actingweb_redis_args_t *a, ngx_int_t script)
{
    size_t                      *argvlen;
    ngx_uint_t                   i;
    const char                 **argv;
    ngx_http_actingweb_redis_t  *rd;

    argv = a->argv.elts;
    argvlen = a->argvlen.elts;

    if (script >= 0) {
        i = a->nkeys ? 3 : 0;

    } else {
        i = a->argv.nelts > 4 ? 4 : 0;
    }

    if (i) {
        rd = cl->slots[ngx_http_actingweb_cluster_slot((u_char *) argv[i],
                                                       argvlen[i])];
        if (rd) {
            return rd;
        }
    }

    return ngx_http_actingweb_cluster_any(cl);
}


/* a ready node if there is one: it will redirect if need be */

static ngx_http_actingweb_redis_t *
ngx_http_actingweb_cluster_any(ngx_http_actingweb_cluster_t *cl)
{
    ngx_queue_t                        *q;
    ngx_http_actingweb_cluster_node_t  *node;

    for (q = ngx_queue_head(&cl->nodes);
         q != ngx_queue_sentinel(&cl->nodes);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_actingweb_cluster_node_t, queue);

        if (ngx_http_actingweb_redis_ready(node->redis)) {
            return node->redis;
        }
    }

    if (ngx_queue_empty(&cl->nodes)) {
        return NULL;
    }

    /* none ready: held there while it connects, or 503 */

    node = ngx_queue_data(ngx_queue_head(&cl->nodes),
                          ngx_http_actingweb_cluster_node_t, queue);

    return node->redis;
}


/*
 * An error reply of a node: NGX_OK with the node to send to (MOVED, ASK),
 * NGX_AGAIN to send again soon to the same (TRYAGAIN), NGX_BUSY when the
 * cluster cannot serve the slot now, NGX_DECLINED for any other error.
 */

ngx_int_t
ngx_http_actingweb_cluster_redirect(ngx_http_actingweb_cluster_t *cl,
    redisReply *reply, ngx_http_actingweb_redis_t **to, ngx_uint_t *ask)
{
    u_char                             *p, *last, *colon;
    size_t                              skip;
    ngx_int_t                           slot, port;
    ngx_http_actingweb_cluster_node_t  *node;

    p = (u_char *) reply->str;
    last = p + reply->len;

    if (reply->len > 6 && ngx_strncmp(p, "MOVED ", 6) == 0) {
        skip = 6;
        *ask = 0;

    } else if (reply->len > 4 && ngx_strncmp(p, "ASK ", 4) == 0) {
        skip = 4;
        *ask = 1;

    } else if (reply->len >= 8 && ngx_strncmp(p, "TRYAGAIN", 8) == 0) {
        return NGX_AGAIN;

    } else if ((reply->len >= 11 && ngx_strncmp(p, "CLUSTERDOWN", 11) == 0)
               || (reply->len >= 10 && ngx_strncmp(p, "MASTERDOWN", 10) == 0)
               || (reply->len >= 8 && ngx_strncmp(p, "READONLY", 8) == 0)
               || (reply->len >= 7 && ngx_strncmp(p, "LOADING", 7) == 0))
    {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "actingweb: redis cluster: %*s", reply->len, p);
        ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_SOON);
        return NGX_BUSY;

    } else {
        return NGX_DECLINED;
    }

    /* MOVED|ASK <slot> <ip>:<port> */

    p += skip;
    colon = ngx_strlchr(p, last, ' ');

    if (colon == NULL) {
        goto invalid;
    }

    slot = ngx_atoi(p, colon - p);
    p = colon + 1;

    for (colon = last - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    if (slot == NGX_ERROR || slot >= NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS
        || colon == p)
    {
        goto invalid;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);
    if (port < 1 || port > 65535) {
        goto invalid;
    }

    node = ngx_http_actingweb_cluster_node(cl, p, colon - p, port);
    if (node == NULL) {
        return NGX_BUSY;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                   "actingweb redis cluster: %s to %V",
                   *ask ? "asked" : "moved", &node->addr);

    if (!*ask) {
        cl->slots[slot] = node->redis;
        ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_SOON);
    }

    *to = node->redis;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "actingweb: redis cluster: invalid redirect \"%*s\"",
                  reply->len, reply->str);

    return NGX_BUSY;
}


/* the node at host:port, connecting to it if it is new */

static ngx_http_actingweb_cluster_node_t *
ngx_http_actingweb_cluster_node(ngx_http_actingweb_cluster_t *cl,
    u_char *host, size_t len, ngx_int_t port)
{
    u_char                              *p;
    ngx_queue_t                         *q;
    ngx_http_actingweb_cluster_node_t   *node;
    u_char                               buf[sizeof(struct in6_addr)];

    for (q = ngx_queue_head(&cl->nodes);
         q != ngx_queue_sentinel(&cl->nodes);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_actingweb_cluster_node_t, queue);

        if (node->port == port && node->host.len == len
            && ngx_strncmp(node->host.data, host, len) == 0)
        {
            return node;
        }
    }

    if (cl->nnodes >= NGX_HTTP_ACTINGWEB_CLUSTER_NODES
        || len == 0 || len >= NGX_INET6_ADDRSTRLEN)
    {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "actingweb: redis cluster node \"%*s:%i\" refused",
                      len, host, port);
        return NULL;
    }

    /* the host, NUL-terminated, then "host:port" for messages */

    p = ngx_pnalloc(ngx_cycle->pool, 2 * len + NGX_INT_T_LEN + 4);
    node = ngx_pcalloc(ngx_cycle->pool,
                       sizeof(ngx_http_actingweb_cluster_node_t));
    if (p == NULL || node == NULL) {
        return NULL;
    }

    node->host.data = p;
    node->host.len = len;
    p = ngx_cpymem(p, host, len);
    *p++ = '\0';

    if (inet_pton(AF_INET, (char *) node->host.data, buf) != 1
        && inet_pton(AF_INET6, (char *) node->host.data, buf) != 1)
    {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "actingweb: redis cluster node \"%V\" is not an IP "
                      "address (cluster-preferred-endpoint-type ip)",
                      &node->host);
        return NULL;
    }

    node->addr.data = p;
    node->addr.len = (ngx_strlchr(host, host + len, ':')
                      ? ngx_sprintf(p, "[%V]:%i", &node->host, port)
                      : ngx_sprintf(p, "%V:%i", &node->host, port))
                     - p;

    node->port = port;
    node->redis = ngx_http_actingweb_redis_node(cl->amcf, &node->addr,
                                                &node->host, port, cl);
    if (node->redis == NULL) {
        return NULL;
    }

    ngx_queue_insert_tail(&cl->nodes, &node->queue);
    cl->nnodes++;

    ngx_http_actingweb_redis_start(node->redis);

    return node;
}


/* a node became ready: the first one reads the map at once */

void
ngx_http_actingweb_cluster_up(ngx_http_actingweb_cluster_t *cl)
{
    if (cl->exiting) {
        return;
    }

    if (!cl->loaded) {
        ngx_http_actingweb_cluster_read(cl);
        return;
    }

    /* it may have come back as a replica */

    ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_SOON);
}


void
ngx_http_actingweb_cluster_down(ngx_http_actingweb_cluster_t *cl)
{
    if (!cl->exiting) {
        ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_SOON);
    }
}


/* every slot has a ready primary */

ngx_int_t
ngx_http_actingweb_cluster_connected(ngx_http_actingweb_cluster_t *cl)
{
    ngx_uint_t                   i;
    ngx_http_actingweb_redis_t  *rd, *last;

    if (!cl->loaded) {
        return 0;
    }

    last = NULL;

    for (i = 0; i < NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS; i++) {
        rd = cl->slots[i];

        if (rd == last) {
            continue;
        }

        if (rd == NULL || !ngx_http_actingweb_redis_ready(rd)) {
            return 0;
        }

        last = rd;
    }

    return 1;
}


/* a map read within delay, unless one is due sooner or under way */

static void
ngx_http_actingweb_cluster_later(ngx_http_actingweb_cluster_t *cl,
    ngx_msec_t delay)
{
    if (cl->reading || cl->exiting || ngx_exiting) {
        return;
    }

    if (cl->refresh.timer_set) {
        if ((ngx_msec_int_t) (cl->refresh.timer.key - ngx_current_msec)
            <= (ngx_msec_int_t) delay)
        {
            return;
        }

        ngx_del_timer(&cl->refresh);
    }

    ngx_add_timer(&cl->refresh, delay);
}


static void
ngx_http_actingweb_cluster_refresh(ngx_event_t *ev)
{
    ngx_connection_t              *c;
    ngx_http_actingweb_cluster_t  *cl;

    c = ev->data;
    cl = (ngx_http_actingweb_cluster_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_cluster_t, dummy));

    ngx_http_actingweb_cluster_read(cl);
}


/* CLUSTER SLOTS to the next ready node after the one asked last */

static void
ngx_http_actingweb_cluster_read(ngx_http_actingweb_cluster_t *cl)
{
    ngx_uint_t                          i;
    ngx_queue_t                        *q;
    ngx_http_actingweb_cluster_node_t  *node;
    static const char                  *argv[] = { "CLUSTER", "SLOTS" };
    static const size_t                 argvlen[] = { 7, 5 };

    if (cl->reading || cl->exiting) {
        return;
    }

    q = cl->asked ? &cl->asked->queue : ngx_queue_sentinel(&cl->nodes);

    for (i = 0; i <= cl->nnodes; i++) {
        q = ngx_queue_next(q);

        if (q == ngx_queue_sentinel(&cl->nodes)) {
            continue;
        }

        node = ngx_queue_data(q, ngx_http_actingweb_cluster_node_t, queue);

        if (ngx_http_actingweb_redis_raw(node->redis,
                                         ngx_http_actingweb_cluster_slots,
                                         cl, 2, argv, argvlen)
            == NGX_OK)
        {
            cl->reading = 1;
            cl->asked = node;
            return;
        }
    }

    /* none ready: each one that connects calls us */

    ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_POLL);
}


static void
ngx_http_actingweb_cluster_slots(redisAsyncContext *ac, void *rep,
    void *privdata)
{
    redisReply                    *reply = rep;
    ngx_uint_t                     i;
    ngx_http_actingweb_redis_t   **slots;
    ngx_http_actingweb_cluster_t  *cl = privdata;

    cl->reading = 0;

    if (cl->exiting) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "actingweb: redis cluster \"%V\" CLUSTER SLOTS "
                          "failed: %*s", &cl->asked->addr, reply->len,
                          reply->str);
        }

        ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_POLL);
        return;
    }

    ngx_memzero(cl->next, NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS * sizeof(void *));

    for (i = 0; i < reply->elements; i++) {
        if (ngx_http_actingweb_cluster_range(cl, reply->element[i])
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                          "actingweb: redis cluster \"%V\": unexpected "
                          "CLUSTER SLOTS reply", &cl->asked->addr);
            ngx_http_actingweb_cluster_later(cl,
                                             NGX_HTTP_ACTINGWEB_CLUSTER_POLL);
            return;
        }
    }

    slots = cl->slots;
    cl->slots = cl->next;
    cl->next = slots;

    if (!cl->loaded) {
        ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                      "actingweb: redis cluster slot map read from \"%V\", "
                      "%ui ranges", &cl->asked->addr, reply->elements);
    }

    cl->loaded = 1;

    /* a shard without a ready primary: look again until it has one */

    if (!ngx_http_actingweb_cluster_connected(cl)) {
        ngx_http_actingweb_cluster_later(cl, NGX_HTTP_ACTINGWEB_CLUSTER_POLL);
    }
}


/* [start, end, [ip, port, ...], replicas...] into cl->next */

static ngx_int_t
ngx_http_actingweb_cluster_range(ngx_http_actingweb_cluster_t *cl,
    redisReply *range)
{
    u_char                             *host;
    size_t                              len;
    long long                           s, start, end;
    redisReply                         *primary;
    ngx_http_actingweb_cluster_node_t  *node;

    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
        || range->element[0]->type != REDIS_REPLY_INTEGER
        || range->element[1]->type != REDIS_REPLY_INTEGER
        || range->element[2]->type != REDIS_REPLY_ARRAY
        || range->element[2]->elements < 2
        || range->element[2]->element[0]->type != REDIS_REPLY_STRING
        || range->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    start = range->element[0]->integer;
    end = range->element[1]->integer;

    if (start < 0 || end < start || end >= NGX_HTTP_ACTINGWEB_CLUSTER_SLOTS) {
        return NGX_ERROR;
    }

    primary = range->element[2];
    host = (u_char *) primary->element[0]->str;
    len = primary->element[0]->len;

    /* "" or "?": the node we asked, by the address we know it by */

    if (len == 0 || (len == 1 && host[0] == '?')) {
        host = cl->asked->host.data;
        len = cl->asked->host.len;
    }

    if (primary->element[1]->integer < 1
        || primary->element[1]->integer > 65535)
    {
        return NGX_OK;                   /* no address yet: unserved */
    }

    node = ngx_http_actingweb_cluster_node(cl, host, len,
                                  (ngx_int_t) primary->element[1]->integer);
    if (node == NULL) {
        return NGX_OK;                   /* those slots stay unserved */
    }

    for (s = start; s <= end; s++) {
        cl->next[s] = node->redis;
    }

    return NGX_OK;
}
