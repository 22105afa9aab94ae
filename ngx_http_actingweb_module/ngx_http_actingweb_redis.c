
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * One hiredis async connection per worker, driven by nginx events.
 *
 * hiredis owns the socket: nginx only gets a connection structure around
 * the fd so that the event module can watch it.  Events are registered
 * level-triggered because redisAsyncHandleRead() reads at most 16k per
 * call and an edge-triggered registration would stall on larger replies.
 *
 * Each command is an op record allocated outside the request pool: the
 * request may be finalized before Redis answers, and hiredis will still
 * call back with the op as private data.  Every op has a timer; when it
 * fires the request gets an error at once and the connection, which is
 * evidently stuck, is reset so that its pending ops are released.
 *
 * Request commands go out only on a connection whose set-up (AUTH,
 * SELECT, SCRIPT LOAD, PING) has succeeded: commands queued behind a
 * failing SELECT would run in the wrong database.  Ops that arrive while
 * connecting are held here and sent when PING answers; a set-up failure
 * answers them 503 with its cause.
 *
 * With Redis Cluster (ngx_http_actingweb_cluster.c) there is one such
 * connection per node: an op goes to the node that serves its key's slot
 * and follows MOVED, ASK and TRYAGAIN replies there, a bounded number of
 * times, before its handler sees any answer.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE        0
#define NGX_HTTP_ACTINGWEB_REDIS_CONNECTING        1
#define NGX_HTTP_ACTINGWEB_REDIS_READY             2

#define NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MIN       50
#define NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MAX       1000

#define NGX_HTTP_ACTINGWEB_REDIS_CAUSE             160

#define NGX_HTTP_ACTINGWEB_REDIS_REDIRECTS         8
#define NGX_HTTP_ACTINGWEB_REDIS_TRYAGAIN          25     /* ms, times n */


struct ngx_http_actingweb_redis_s {
    redisAsyncContext                   *ac;
    ngx_connection_t                    *conn;
    ngx_connection_t                     dummy;      /* timers' ev->data */
    ngx_event_t                          reconnect;
    ngx_event_t                          connect_timer;
    ngx_event_t                          reset;
    ngx_queue_t                          held;       /* ops while connecting */
    ngx_msec_t                           backoff;
    ngx_uint_t                           state;
    ngx_log_t                           *log;
    const char                          *reset_why;
    ngx_http_actingweb_main_conf_t      *amcf;
    ngx_str_t                            addr;       /* for messages */
    ngx_str_t                            host;       /* NUL-terminated */
    ngx_str_t                            path;       /* unix socket */
    ngx_int_t                            port;
    ngx_http_actingweb_cluster_t        *cluster;    /* NULL: single */
    u_char                               cause[NGX_HTTP_ACTINGWEB_REDIS_CAUSE];
    unsigned                             exiting:1;
    unsigned                             down_logged:1;
};


typedef struct {
    ngx_http_request_t                  *request;    /* NULL: gone */
    ngx_http_actingweb_redis_handler_pt  handler;
    ngx_http_actingweb_redis_t          *redis;
    ngx_http_cleanup_t                  *cleanup;
    ngx_http_actingweb_redis_args_t     *args;
    ngx_int_t                            script;     /* -1: command */
    ngx_event_t                          timer;
    ngx_msec_t                           start;      /* for the latency */
    ngx_event_t                          retry;      /* after TRYAGAIN */
    ngx_queue_t                          queue;      /* in rd->held */
    ngx_uint_t                           redirects;
    unsigned                             held:1;     /* not sent yet */
    unsigned                             done:1;     /* handler ran */
    unsigned                             retried:1;  /* after NOSCRIPT */
    unsigned                             asking:1;   /* ASK: ASKING first */
    unsigned                             waiting:1;  /* retry timer set */
} ngx_http_actingweb_redis_op_t;


static void ngx_http_actingweb_redis_connect(ngx_http_actingweb_redis_t *rd);
static ngx_uint_t ngx_http_actingweb_redis_level(
    ngx_http_actingweb_redis_t *rd);
static void ngx_http_actingweb_redis_schedule(ngx_http_actingweb_redis_t *rd);
static void ngx_http_actingweb_redis_flush_held(
    ngx_http_actingweb_redis_t *rd);
static void ngx_http_actingweb_redis_fail_held(
    ngx_http_actingweb_redis_t *rd);
static void ngx_http_actingweb_redis_op_fail(
    ngx_http_actingweb_redis_op_t *op);
static void ngx_http_actingweb_redis_do_reset(ngx_http_actingweb_redis_t *rd,
    const char *why);
static void ngx_http_actingweb_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_actingweb_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_actingweb_redis_reset_handler(ngx_event_t *ev);
static void ngx_http_actingweb_redis_connected_cb(const redisAsyncContext *ac,
    int status);
static void ngx_http_actingweb_redis_disconnected_cb(
    const redisAsyncContext *ac, int status);
static void ngx_http_actingweb_redis_setup_reply(redisAsyncContext *ac,
    void *rep, void *privdata);
static void ngx_http_actingweb_redis_read_handler(ngx_event_t *ev);
static void ngx_http_actingweb_redis_write_handler(ngx_event_t *ev);
static void ngx_http_actingweb_redis_add_read(void *privdata);
static void ngx_http_actingweb_redis_del_read(void *privdata);
static void ngx_http_actingweb_redis_add_write(void *privdata);
static void ngx_http_actingweb_redis_del_write(void *privdata);
static void ngx_http_actingweb_redis_cleanup(void *privdata);
static ngx_int_t ngx_http_actingweb_redis_submit(ngx_http_request_t *r,
    ngx_int_t script, ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler);
static ngx_int_t ngx_http_actingweb_redis_dispatch(
    ngx_http_actingweb_redis_op_t *op);
static ngx_int_t ngx_http_actingweb_redis_send(
    ngx_http_actingweb_redis_op_t *op);
static ngx_int_t ngx_http_actingweb_redis_forward(
    ngx_http_actingweb_redis_op_t *op, ngx_http_actingweb_redis_t *to,
    ngx_uint_t ask, ngx_uint_t later);
static void ngx_http_actingweb_redis_op_retry(ngx_event_t *ev);
static void ngx_http_actingweb_redis_reply(redisAsyncContext *ac, void *rep,
    void *privdata);
static void ngx_http_actingweb_redis_op_timeout(ngx_event_t *ev);
static void ngx_http_actingweb_redis_op_cleanup(void *data);


ngx_int_t
ngx_http_actingweb_redis_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_http_actingweb_redis_t  *rd;

    if (ngx_http_actingweb_scripts_init(cycle->log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (amcf->redis_seeds) {
        return ngx_http_actingweb_cluster_init(cycle, amcf);
    }

    rd = ngx_http_actingweb_redis_node(amcf, &amcf->redis_addr,
                                       &amcf->redis_host, amcf->redis_port,
                                       NULL);
    if (rd == NULL) {
        return NGX_ERROR;
    }

    rd->path = amcf->redis_unix;

    amcf->redis = rd;

    ngx_http_actingweb_redis_start(rd);

    return NGX_OK;
}


/* one connection's state, in the cycle pool; ngx_cycle is this worker's */

ngx_http_actingweb_redis_t *
ngx_http_actingweb_redis_node(ngx_http_actingweb_main_conf_t *amcf,
    ngx_str_t *addr, ngx_str_t *host, ngx_int_t port,
    ngx_http_actingweb_cluster_t *cluster)
{
    ngx_http_actingweb_redis_t  *rd;

    rd = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_actingweb_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    rd->log = ngx_cycle->log;
    rd->amcf = amcf;
    rd->addr = *addr;
    rd->host = *host;
    rd->port = port;
    rd->cluster = cluster;
    rd->backoff = NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MIN;
    rd->dummy.fd = (ngx_socket_t) -1;

    rd->reconnect.handler = ngx_http_actingweb_redis_reconnect_handler;
    rd->reconnect.data = &rd->dummy;
    rd->reconnect.log = rd->log;
    rd->reconnect.cancelable = 1;

    rd->connect_timer.handler = ngx_http_actingweb_redis_connect_timeout;
    rd->connect_timer.data = &rd->dummy;
    rd->connect_timer.log = rd->log;
    rd->connect_timer.cancelable = 1;

    rd->reset.handler = ngx_http_actingweb_redis_reset_handler;
    rd->reset.data = &rd->dummy;
    rd->reset.log = rd->log;

    ngx_queue_init(&rd->held);

    return rd;
}


void
ngx_http_actingweb_redis_start(ngx_http_actingweb_redis_t *rd)
{
    /*
     * The cached time may be the master's, from before this worker
     * started: a slow start (valgrind, a large configuration) would
     * otherwise see the connect timer expire on the first pass through
     * the event loop.
     */

    ngx_time_update();

    ngx_http_actingweb_redis_connect(rd);
}


void
ngx_http_actingweb_redis_exit(ngx_http_actingweb_main_conf_t *amcf)
{
    if (amcf->cluster) {
        ngx_http_actingweb_cluster_exit(amcf);
        return;
    }

    if (amcf->redis) {
        ngx_http_actingweb_redis_close(amcf->redis);
        amcf->redis = NULL;
    }
}


void
ngx_http_actingweb_redis_close(ngx_http_actingweb_redis_t *rd)
{
    ngx_queue_t                    *q;
    redisAsyncContext              *ac;
    ngx_http_actingweb_redis_op_t  *op;

    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    if (rd->reset.posted) {
        ngx_delete_posted_event(&rd->reset);
    }

    /* like the ops in hiredis below: freed without an answer */

    while (!ngx_queue_empty(&rd->held)) {
        q = ngx_queue_head(&rd->held);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_actingweb_redis_op_t, queue);

        if (op->timer.timer_set) {
            ngx_del_timer(&op->timer);
        }

        op->cleanup->handler = NULL;
        ngx_free(op);
    }

    if (rd->ac) {
        /* pending callbacks run with NULL replies and free their ops */
        ac = rd->ac;
        rd->ac = NULL;
        redisAsyncFree(ac);
    }
}


ngx_int_t
ngx_http_actingweb_redis_ready(ngx_http_actingweb_redis_t *rd)
{
    return rd->state == NGX_HTTP_ACTINGWEB_REDIS_READY;
}


/* a command of the module's own on a ready connection (cluster.c) */

ngx_int_t
ngx_http_actingweb_redis_raw(ngx_http_actingweb_redis_t *rd,
    redisCallbackFn *fn, void *data, int argc, const char **argv,
    const size_t *argvlen)
{
    if (rd->ac == NULL || rd->state != NGX_HTTP_ACTINGWEB_REDIS_READY) {
        return NGX_DECLINED;
    }

    if (redisAsyncCommandArgv(rd->ac, fn, data, argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_redis_connected(ngx_http_actingweb_main_conf_t *amcf)
{
    if (amcf->cluster) {
        return ngx_http_actingweb_cluster_connected(amcf->cluster);
    }

    return amcf->redis
           && amcf->redis->state == NGX_HTTP_ACTINGWEB_REDIS_READY;
}


static void
ngx_http_actingweb_redis_connect(ngx_http_actingweb_redis_t *rd)
{
    size_t                           len;
    ngx_uint_t                       i;
    const char                      *argv[3];
    ngx_connection_t                *c;
    redisAsyncContext               *ac;
    ngx_http_actingweb_main_conf_t  *amcf;
    size_t                           argvlen[3];
    u_char                           db[NGX_INT_T_LEN];

    amcf = rd->amcf;

    /* a new attempt: its own failure, if any, will be the cause */
    rd->cause[0] = '\0';

    if (rd->path.len) {
        ac = redisAsyncConnectUnix((char *) rd->path.data);

    } else {
        ac = redisAsyncConnect((char *) rd->host.data, (int) rd->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "actingweb: redis context allocation failed");
        ngx_http_actingweb_redis_schedule(rd);
        return;
    }

    if (ac->err) {
        ngx_log_error(ngx_http_actingweb_redis_level(rd), rd->log,
                      0, "actingweb: redis connect to \"%V\" failed: %s",
                      &rd->addr, ac->errstr);
        rd->down_logged = 1;
        redisAsyncFree(ac);
        ngx_http_actingweb_redis_schedule(rd);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_actingweb_redis_schedule(rd);
        return;
    }

    c->data = rd;
    c->read->handler = ngx_http_actingweb_redis_read_handler;
    c->write->handler = ngx_http_actingweb_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->data = rd;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_actingweb_redis_add_read;
    ac->ev.delRead = ngx_http_actingweb_redis_del_read;
    ac->ev.addWrite = ngx_http_actingweb_redis_add_write;
    ac->ev.delWrite = ngx_http_actingweb_redis_del_write;
    ac->ev.cleanup = ngx_http_actingweb_redis_cleanup;

    rd->ac = ac;
    rd->conn = c;
    rd->state = NGX_HTTP_ACTINGWEB_REDIS_CONNECTING;

    redisAsyncSetConnectCallback(ac, ngx_http_actingweb_redis_connected_cb);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_actingweb_redis_disconnected_cb);

    /*
     * hiredis 0.14 registers no event for a pending connect: queueing the
     * set-up commands adds the write event that completes it.  Requests
     * that arrive meanwhile are held until PING answers.
     */

    if (amcf->redis_password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) amcf->redis_password.data;
        argvlen[1] = amcf->redis_password.len;

        redisAsyncCommandArgv(ac, ngx_http_actingweb_redis_setup_reply,
                              (void *) "AUTH", 2, argv, argvlen);
    }

    if (amcf->redis_db) {
        len = ngx_sprintf(db, "%i", amcf->redis_db) - db;

        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = len;

        redisAsyncCommandArgv(ac, ngx_http_actingweb_redis_setup_reply,
                              (void *) "SELECT", 2, argv, argvlen);
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_SCRIPT_N; i++) {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = ngx_http_actingweb_scripts[i].source;
        argvlen[2] = ngx_strlen(ngx_http_actingweb_scripts[i].source);

        redisAsyncCommandArgv(ac, ngx_http_actingweb_redis_setup_reply,
                              (void *) "SCRIPT LOAD", 3, argv, argvlen);
    }

    argv[0] = "PING";
    argvlen[0] = 4;

    redisAsyncCommandArgv(ac, ngx_http_actingweb_redis_setup_reply, NULL,
                          1, argv, argvlen);

    /* ... or with the connect timer, whichever comes first */

    ngx_add_timer(&rd->connect_timer, amcf->redis_timeout);
}


/* the first failure is an error; retries while down are only info */

static ngx_uint_t
ngx_http_actingweb_redis_level(ngx_http_actingweb_redis_t *rd)
{
    return rd->down_logged ? NGX_LOG_INFO : NGX_LOG_ERR;
}


static void
ngx_http_actingweb_redis_schedule(ngx_http_actingweb_redis_t *rd)
{
    rd->state = NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE;

    ngx_http_actingweb_redis_fail_held(rd);

    if (rd->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (rd->cluster) {
        ngx_http_actingweb_cluster_down(rd->cluster);
    }

    if (rd->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&rd->reconnect, rd->backoff);

    rd->backoff *= 2;
    if (rd->backoff > NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MAX) {
        rd->backoff = NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MAX;
    }
}


static void
ngx_http_actingweb_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_redis_t  *rd;

    c = ev->data;
    rd = (ngx_http_actingweb_redis_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_redis_t, dummy));

    if (rd->exiting || ngx_exiting || rd->ac) {
        return;
    }

    ngx_http_actingweb_redis_connect(rd);
}


static void
ngx_http_actingweb_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_redis_t  *rd;

    c = ev->data;
    rd = (ngx_http_actingweb_redis_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_redis_t, dummy));

    if (rd->state != NGX_HTTP_ACTINGWEB_REDIS_READY) {
        ngx_http_actingweb_redis_do_reset(rd, "connect timed out");
    }
}


static void
ngx_http_actingweb_redis_reset_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_redis_t  *rd;

    c = ev->data;
    rd = (ngx_http_actingweb_redis_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_redis_t, dummy));

    ngx_http_actingweb_redis_do_reset(rd, rd->reset_why);
}


/* never called from inside a hiredis callback: it frees the context */

static void
ngx_http_actingweb_redis_do_reset(ngx_http_actingweb_redis_t *rd,
    const char *why)
{
    redisAsyncContext  *ac;

    if (rd->reset.posted) {
        ngx_delete_posted_event(&rd->reset);
    }

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    ac = rd->ac;
    if (ac == NULL) {
        return;
    }

    ngx_log_error(ngx_http_actingweb_redis_level(rd), rd->log, 0,
                  "actingweb: redis \"%V\" %s, reconnecting",
                  &rd->addr, why);
    rd->down_logged = 1;

    rd->state = NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE;

    /* cleared first: the disconnect callback then knows it is ours */

    rd->ac = NULL;

    redisAsyncFree(ac);

    rd->conn = NULL;

    ngx_http_actingweb_redis_schedule(rd);
}


static void
ngx_http_actingweb_redis_connected_cb(const redisAsyncContext *ac,
    int status)
{
    ngx_http_actingweb_redis_t  *rd;

    rd = ac->data;

    if (status == REDIS_OK) {
        ngx_http_actingweb_metric_inc(rd->amcf,
                                      NGX_HTTP_ACTINGWEB_M_REDIS_CONNECTS);
        return;
    }

    /* hiredis frees the context right after this callback */

    ngx_log_error(ngx_http_actingweb_redis_level(rd), rd->log, 0,
                  "actingweb: redis connect to \"%V\" failed: %s",
                  &rd->addr, ac->errstr);
    rd->down_logged = 1;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    rd->ac = NULL;
    rd->conn = NULL;

    ngx_http_actingweb_redis_schedule(rd);
}


static void
ngx_http_actingweb_redis_disconnected_cb(const redisAsyncContext *ac,
    int status)
{
    ngx_http_actingweb_redis_t  *rd;

    rd = ac->data;

    ngx_http_actingweb_metric_inc(rd->amcf,
                                  NGX_HTTP_ACTINGWEB_M_REDIS_DISCONNECTS);

    if (rd->ac != ac) {
        return;                          /* our own reset or exit */
    }

    if (!rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "actingweb: redis \"%V\" connection lost: %s",
                      &rd->addr,
                      ac->errstr[0] ? ac->errstr : "closed by server");
        rd->down_logged = 1;
    }

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    rd->ac = NULL;
    rd->conn = NULL;

    ngx_http_actingweb_redis_schedule(rd);
}


static void
ngx_http_actingweb_redis_setup_reply(redisAsyncContext *ac, void *rep,
    void *privdata)
{
    u_char                      *p;
    redisReply                  *reply = rep;
    const char                  *cmd;
    ngx_http_actingweb_redis_t  *rd;

    rd = ac->data;

    /* going away, or an earlier set-up command already failed */

    if (reply == NULL || rd->exiting || rd->ac != ac
        || rd->state != NGX_HTTP_ACTINGWEB_REDIS_CONNECTING)
    {
        return;
    }

    cmd = privdata ? privdata : "PING";

    if (reply->type == REDIS_REPLY_ERROR) {
        p = ngx_snprintf(rd->cause, NGX_HTTP_ACTINGWEB_REDIS_CAUSE - 1,
                         "Redis %s failed: %*s", cmd, (size_t) reply->len,
                         reply->str);
        *p = '\0';

        ngx_log_error(ngx_http_actingweb_redis_level(rd), rd->log, 0,
                      "actingweb: redis \"%V\" %s", &rd->addr,
                      rd->cause + sizeof("Redis ") - 1);
        rd->down_logged = 1;

        /* nothing more goes out on it; held ops get the cause now */

        rd->state = NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE;
        ngx_http_actingweb_redis_fail_held(rd);

        /* the context cannot be freed from inside its own callback */

        rd->reset_why = "set-up failed";

        if (!rd->reset.posted) {
            ngx_post_event(&rd->reset, &ngx_posted_events);
        }

        return;
    }

    if (privdata != NULL) {
        return;
    }

    /* PING answered: everything before it succeeded */

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    if (rd->down_logged) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "actingweb: redis \"%V\" connected",
                      &rd->addr);
    }

    rd->state = NGX_HTTP_ACTINGWEB_REDIS_READY;
    rd->backoff = NGX_HTTP_ACTINGWEB_REDIS_BACKOFF_MIN;
    rd->down_logged = 0;

    ngx_http_actingweb_redis_flush_held(rd);

    if (rd->cluster) {
        ngx_http_actingweb_cluster_up(rd->cluster);
    }
}


static void
ngx_http_actingweb_redis_flush_held(ngx_http_actingweb_redis_t *rd)
{
    ngx_queue_t                    *q;
    ngx_http_actingweb_redis_op_t  *op;

    while (!ngx_queue_empty(&rd->held)
           && rd->state == NGX_HTTP_ACTINGWEB_REDIS_READY)
    {
        q = ngx_queue_head(&rd->held);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_actingweb_redis_op_t, queue);
        op->held = 0;

        if (ngx_http_actingweb_redis_send(op) != NGX_OK) {
            ngx_http_actingweb_redis_op_fail(op);
        }
    }
}


/* the connection went down before its set-up finished */

static void
ngx_http_actingweb_redis_fail_held(ngx_http_actingweb_redis_t *rd)
{
    ngx_queue_t                    *q;
    ngx_http_actingweb_redis_op_t  *op;

    while (!ngx_queue_empty(&rd->held)) {
        q = ngx_queue_head(&rd->held);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_actingweb_redis_op_t, queue);
        op->held = 0;

        ngx_http_actingweb_redis_op_fail(op);
    }
}


/* answers an op that never reached Redis, and frees it */

static void
ngx_http_actingweb_redis_op_fail(ngx_http_actingweb_redis_op_t *op)
{
    ngx_connection_t                     *c;
    ngx_http_request_t                   *r;
    ngx_http_actingweb_redis_handler_pt   handler;

    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }

    op->cleanup->handler = NULL;
    ngx_http_actingweb_metric_inc(op->redis->amcf,
                                  NGX_HTTP_ACTINGWEB_M_REDIS_UNAVAILABLE);

    r = op->request;
    c = r->connection;
    handler = op->handler;

    ngx_free(op);

    handler(r, NGX_HTTP_ACTINGWEB_REDIS_DOWN, NULL);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_actingweb_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    if (c->close) {
        /* worker shutdown timeout: release pending ops now */
        c->close = 0;
        ngx_http_actingweb_redis_do_reset(rd, "closed by worker shutdown");
        return;
    }

    /* may free the context and the connection: touch nothing after */

    redisAsyncHandleRead(rd->ac);
}


static void
ngx_http_actingweb_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_actingweb_redis_t  *rd;

    c = ev->data;
    rd = c->data;

    redisAsyncHandleWrite(rd->ac);
}


static void
ngx_http_actingweb_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (ngx_http_actingweb_watch(c->read, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "actingweb: redis read event failed");
    }
}


static void
ngx_http_actingweb_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    (void) ngx_http_actingweb_watch(c->read, 0);
}


static void
ngx_http_actingweb_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (ngx_http_actingweb_watch(c->write, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "actingweb: redis write event failed");
    }
}


static void
ngx_http_actingweb_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    (void) ngx_http_actingweb_watch(c->write, 0);
}


/* called by hiredis before it closes the fd, which it owns */

static void
ngx_http_actingweb_redis_cleanup(void *privdata)
{
    ngx_connection_t            *c = privdata;
    ngx_http_actingweb_redis_t  *rd;

    if (c == NULL) {
        return;
    }

    rd = c->data;

    if (rd->conn == c) {
        rd->conn = NULL;
    }

    ngx_http_actingweb_release(c);
}


ngx_http_actingweb_redis_args_t *
ngx_http_actingweb_redis_args(ngx_http_request_t *r, ngx_uint_t n)
{
    ngx_uint_t                        i;
    ngx_http_actingweb_redis_args_t  *a;

    a = ngx_palloc(r->pool, sizeof(ngx_http_actingweb_redis_args_t));
    if (a == NULL) {
        return NULL;
    }

    /* three leading slots for EVALSHA <sha1> <numkeys> */

    if (ngx_array_init(&a->argv, r->pool, n + 3, sizeof(char *)) != NGX_OK
        || ngx_array_init(&a->argvlen, r->pool, n + 3, sizeof(size_t))
           != NGX_OK)
    {
        return NULL;
    }

    for (i = 0; i < 3; i++) {
        if (ngx_http_actingweb_redis_arg(a, NULL, 0) != NGX_OK) {
            return NULL;
        }
    }

    a->nkeys = 0;

    return a;
}


ngx_int_t
ngx_http_actingweb_redis_arg(ngx_http_actingweb_redis_args_t *a,
    u_char *data, size_t len)
{
    size_t       *l;
    const char  **p;

    p = ngx_array_push(&a->argv);
    l = ngx_array_push(&a->argvlen);

    if (p == NULL || l == NULL) {
        return NGX_ERROR;
    }

    *p = data ? (const char *) data : "";
    *l = len;

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_redis_key(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_str_t *id, const char *suffix)
{
    u_char                          *p, *last;
    size_t                           len;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    /* <prefix>:{<id>}:<suffix>, one hash slot per actor */

    len = amcf->redis_prefix.len + id->len + ngx_strlen(suffix) + 4;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%V:{%V}:%s", &amcf->redis_prefix, id, suffix);

    a->nkeys++;

    return ngx_http_actingweb_redis_arg(a, p, last - p);
}


/* the current actor's keys with these suffixes, NULL-terminated */

ngx_int_t
ngx_http_actingweb_redis_keys(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ...)
{
    va_list                    args;
    ngx_int_t                  rc;
    const char                *suffix;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    rc = NGX_OK;

    va_start(args, a);

    while (rc == NGX_OK && (suffix = va_arg(args, const char *)) != NULL) {
        rc = ngx_http_actingweb_redis_key(r, a, &ctx->actor_id, suffix);
    }

    va_end(args);

    return rc;
}


/* ARGV[1..2] of every write script: who writes, and the hash checked */

ngx_int_t
ngx_http_actingweb_redis_creds(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ngx_http_actingweb_redis_arg(a, ctx->actor.creator.data,
                                     ctx->actor.creator.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_redis_arg(a, ctx->actor.pwhash.data,
                                        ctx->actor.pwhash.len);
}


ngx_int_t
ngx_http_actingweb_redis_command(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler)
{
    return ngx_http_actingweb_redis_submit(r, -1, a, handler);
}


ngx_int_t
ngx_http_actingweb_redis_script(ngx_http_request_t *r,
    ngx_http_actingweb_script_e script, ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler)
{
    size_t       *argvlen;
    u_char       *p;
    const char  **argv;

    argv = a->argv.elts;
    argvlen = a->argvlen.elts;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = (const char *) ngx_http_actingweb_scripts[script].sha1;
    argvlen[1] = 40;
    argv[2] = (const char *) p;
    argvlen[2] = ngx_sprintf(p, "%ui", a->nkeys) - p;

    return ngx_http_actingweb_redis_submit(r, script, a, handler);
}


/*
 * Returns NGX_OK when the command is on its way, NGX_DECLINED when Redis
 * is down (the caller answers 503 at once), NGX_ERROR on memory failure.
 */

static ngx_int_t
ngx_http_actingweb_redis_submit(ngx_http_request_t *r, ngx_int_t script,
    ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler)
{
    ngx_http_cleanup_t              *cln;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_redis_t      *rd;
    ngx_http_actingweb_redis_op_t   *op;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    rd = amcf->cluster ? ngx_http_actingweb_cluster_route(amcf->cluster, a,
                                                          script)
                       : amcf->redis;

    if (rd == NULL || rd->ac == NULL
        || rd->state == NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE)
    {
        ngx_http_actingweb_metric_inc(amcf,
                                      NGX_HTTP_ACTINGWEB_M_REDIS_UNAVAILABLE);
        return NGX_DECLINED;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    op = ngx_calloc(sizeof(ngx_http_actingweb_redis_op_t),
                    r->connection->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->request = r;
    op->handler = handler;
    op->redis = rd;
    op->cleanup = cln;
    op->args = a;
    op->script = script;
    op->start = ngx_current_msec;

    op->timer.handler = ngx_http_actingweb_redis_op_timeout;
    op->timer.data = r->connection;
    op->timer.log = r->connection->log;

    op->retry.handler = ngx_http_actingweb_redis_op_retry;
    op->retry.data = r->connection;
    op->retry.log = r->connection->log;

    if (ngx_http_actingweb_redis_dispatch(op) != NGX_OK) {
        ngx_free(op);
        ngx_http_actingweb_metric_inc(amcf,
                                      NGX_HTTP_ACTINGWEB_M_REDIS_UNAVAILABLE);
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_actingweb_redis_op_cleanup;
    cln->data = op;

    /*
     * Not cancelable on purpose: a graceful shutdown waits for the reply
     * (or the timeout) instead of cutting the client off.
     */

    ngx_add_timer(&op->timer, amcf->redis_timeout);

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    ngx_http_actingweb_metric_inc(amcf, (ctx && ctx->worker)
                                  ? NGX_HTTP_ACTINGWEB_M_CALLBACK_REDIS
                                  : NGX_HTTP_ACTINGWEB_M_REDIS_COMMANDS);

    return NGX_OK;
}


/* sends the op on its node now, or holds it while the node connects */

static ngx_int_t
ngx_http_actingweb_redis_dispatch(ngx_http_actingweb_redis_op_t *op)
{
    ngx_http_actingweb_redis_t  *rd;

    rd = op->redis;

    if (rd->ac == NULL || rd->state == NGX_HTTP_ACTINGWEB_REDIS_DOWN_STATE) {
        return NGX_DECLINED;
    }

    if (rd->state == NGX_HTTP_ACTINGWEB_REDIS_CONNECTING) {
        ngx_queue_insert_tail(&rd->held, &op->queue);
        op->held = 1;
        return NGX_OK;
    }

    return ngx_http_actingweb_redis_send(op);
}


static ngx_int_t
ngx_http_actingweb_redis_send(ngx_http_actingweb_redis_op_t *op)
{
    size_t        *argvlen;
    ngx_uint_t     skip;
    const char   **argv;
    static size_t  asking_len = 6;
    static char   *asking = "ASKING";

    /* after ASK: the target serves the one next command of a migration */

    if (op->asking
        && redisAsyncCommandArgv(op->redis->ac, NULL, NULL, 1,
                                 (const char **) &asking, &asking_len)
           != REDIS_OK)
    {
        return NGX_ERROR;
    }

    argv = op->args->argv.elts;
    argvlen = op->args->argvlen.elts;
    skip = op->script < 0 ? 3 : 0;

    if (redisAsyncCommandArgv(op->redis->ac, ngx_http_actingweb_redis_reply,
                              op, (int) (op->args->argv.nelts - skip),
                              argv + skip, argvlen + skip)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_actingweb_redis_reply(redisAsyncContext *ac, void *rep,
    void *privdata)
{
    redisReply                         *reply = rep;
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_actingweb_redis_t         *rd;
    ngx_int_t                           rc;
    ngx_uint_t                          ask;
    ngx_http_actingweb_redis_t         *to;
    ngx_http_actingweb_redis_op_t      *op = privdata;
    ngx_http_actingweb_redis_status_e   status;

    rd = op->redis;

    r = op->request;

    if (r == NULL || op->done || rd->exiting) {
        if (r && !op->done) {
            op->cleanup->handler = NULL;
        }

        if (op->timer.timer_set) {
            ngx_del_timer(&op->timer);
        }

        ngx_free(op);
        return;
    }

    /* Redis Cluster: the key is served elsewhere, or not right now */

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && rd->cluster) {
        rc = ngx_http_actingweb_cluster_redirect(rd->cluster, reply, &to,
                                                 &ask);

        if (rc == NGX_OK || rc == NGX_AGAIN) {
            if (ngx_http_actingweb_redis_forward(op, rc == NGX_OK ? to : rd,
                                                 ask, rc == NGX_AGAIN)
                == NGX_OK)
            {
                return;
            }

            reply = NULL;

        } else if (rc == NGX_BUSY) {
            reply = NULL;                /* failing over: 503, not 500 */
        }
    }

    /* the script cache was flushed (or Redis failed over): send source */

    if (reply != NULL
        && reply->type == REDIS_REPLY_ERROR
        && op->script >= 0
        && !op->retried
        && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        const char  **argv = op->args->argv.elts;
        size_t       *argvlen = op->args->argvlen.elts;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "actingweb redis NOSCRIPT for \"%s\", sending source",
                       ngx_http_actingweb_scripts[op->script].name);

        op->retried = 1;
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_actingweb_scripts[op->script].source;
        argvlen[1] = ngx_strlen(argv[1]);

        if (ngx_http_actingweb_redis_send(op) == NGX_OK) {
            return;
        }

        reply = NULL;
    }

    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }

    op->cleanup->handler = NULL;
    op->done = 1;

    if (reply == NULL) {
        status = NGX_HTTP_ACTINGWEB_REDIS_DOWN;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        status = NGX_HTTP_ACTINGWEB_REDIS_ERROR;

    } else {
        status = NGX_HTTP_ACTINGWEB_REDIS_OK;
    }

    if (reply) {
        ngx_http_actingweb_metric_observe(rd->amcf,
                                          NGX_HTTP_ACTINGWEB_H_REDIS,
                                          ngx_current_msec - op->start);
    }

    c = r->connection;

    op->handler(r, status, reply);

    ngx_free(op);

    ngx_http_run_posted_requests(c);
}


/* a redirect: the chain is bounded, the op timer bounds it in time too */

static ngx_int_t
ngx_http_actingweb_redis_forward(ngx_http_actingweb_redis_op_t *op,
    ngx_http_actingweb_redis_t *to, ngx_uint_t ask, ngx_uint_t later)
{
    if (++op->redirects > NGX_HTTP_ACTINGWEB_REDIS_REDIRECTS) {
        ngx_log_error(NGX_LOG_ERR, op->request->connection->log, 0,
                      later ? "actingweb: redis cluster still answered "
                              "TRYAGAIN (a slot migrating) after %d "
                              "redirects"
                            : "actingweb: redis cluster redirected a "
                              "command more than %d times",
                      NGX_HTTP_ACTINGWEB_REDIS_REDIRECTS);
        return NGX_ERROR;
    }

    op->redis = to;
    op->asking = ask;

    if (later) {
        op->waiting = 1;
        ngx_add_timer(&op->retry,
                      NGX_HTTP_ACTINGWEB_REDIS_TRYAGAIN * op->redirects);
        return NGX_OK;
    }

    return ngx_http_actingweb_redis_dispatch(op);
}


static void
ngx_http_actingweb_redis_op_retry(ngx_event_t *ev)
{
    ngx_http_actingweb_redis_op_t  *op;

    op = (ngx_http_actingweb_redis_op_t *)
             ((u_char *) ev - offsetof(ngx_http_actingweb_redis_op_t, retry));

    op->waiting = 0;

    if (ngx_http_actingweb_redis_dispatch(op) != NGX_OK) {
        ngx_http_actingweb_redis_op_fail(op);
    }
}


static void
ngx_http_actingweb_redis_op_timeout(ngx_event_t *ev)
{
    ngx_connection_t                     *c;
    ngx_http_request_t                   *r;
    ngx_http_actingweb_redis_t           *rd;
    ngx_http_actingweb_redis_op_t        *op;
    ngx_http_actingweb_redis_handler_pt   handler;

    op = (ngx_http_actingweb_redis_op_t *)
             ((u_char *) ev - offsetof(ngx_http_actingweb_redis_op_t, timer));

    r = op->request;
    rd = op->redis;
    c = r->connection;
    handler = op->handler;

    op->done = 1;
    op->request = NULL;
    op->cleanup->handler = NULL;

    ngx_http_actingweb_metric_inc(rd->amcf,
                                  NGX_HTTP_ACTINGWEB_M_REDIS_TIMEOUTS);

    if (ngx_http_actingweb_log_event(NGX_HTTP_ACTINGWEB_EV_REDIS_TIMEOUT)) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "actingweb: redis \"%V\" did not answer in %M ms",
                      &rd->addr, rd->amcf->redis_timeout);
    }

    if (op->waiting) {
        ngx_del_timer(&op->retry);
        ngx_free(op);

    } else if (op->held) {
        /* still ours: the connect timer deals with the connection */
        ngx_queue_remove(&op->queue);
        ngx_free(op);

    } else if (!rd->reset.posted && rd->ac) {
        /* hiredis still holds the op: it is freed when its callback runs */
        rd->reset_why = "timed out";
        ngx_post_event(&rd->reset, &ngx_posted_events);
    }

    handler(r, NGX_HTTP_ACTINGWEB_REDIS_TIMEOUT, NULL);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_actingweb_redis_op_cleanup(void *data)
{
    ngx_http_actingweb_redis_op_t  *op = data;

    /* the request is being freed before Redis answered */

    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }

    if (op->waiting) {
        ngx_del_timer(&op->retry);
        ngx_free(op);
        return;
    }

    if (op->held) {
        ngx_queue_remove(&op->queue);
        ngx_free(op);
        return;
    }

    op->request = NULL;
}


ngx_int_t
ngx_http_actingweb_redis_reply_error(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply)
{
    u_char                          *p;
    ngx_http_actingweb_redis_t      *rd;
    ngx_http_actingweb_main_conf_t  *amcf;

    switch (status) {

    case NGX_HTTP_ACTINGWEB_REDIS_TIMEOUT:
        return ngx_http_actingweb_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "storage did not answer in "
                                             "time, try again");

    case NGX_HTTP_ACTINGWEB_REDIS_ERROR:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "actingweb: redis error: %*s",
                      (size_t) reply->len, reply->str);
        return ngx_http_actingweb_send_error(r,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             "storage error");

    default:
        amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
        rd = amcf->redis;

        if (rd == NULL || rd->cause[0] == '\0') {
            return ngx_http_actingweb_send_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "storage unavailable, "
                                             "try again");
        }

        /* a set-up failure is named: it will not go away by itself */

        p = ngx_pnalloc(r->pool, sizeof("storage unavailable: ")
                                 + NGX_HTTP_ACTINGWEB_REDIS_CAUSE);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_sprintf(p, "storage unavailable: %s", rd->cause) = '\0';

        return ngx_http_actingweb_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             (const char *) p);
    }
}


/* what an endpoint returns after trying to send a command */

ngx_int_t
ngx_http_actingweb_redis_started(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc == NGX_OK) {
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_actingweb_redis_reply_error(r,
                                   NGX_HTTP_ACTINGWEB_REDIS_DOWN, NULL);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* copies a bulk string reply into the request pool (nil: empty) */

ngx_int_t
ngx_http_actingweb_reply_str(ngx_http_request_t *r, redisReply *reply,
    ngx_str_t *out)
{
    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        ngx_str_null(out);
        return reply && reply->type == REDIS_REPLY_NIL ? NGX_OK
                                                        : NGX_DECLINED;
    }

    out->data = ngx_pnalloc(r->pool, reply->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, reply->str, reply->len);
    out->data[reply->len] = '\0';
    out->len = reply->len;

    return NGX_OK;
}
