
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 */


#ifndef _NGX_HTTP_ACTINGWEB_REDIS_H_INCLUDED_
#define _NGX_HTTP_ACTINGWEB_REDIS_H_INCLUDED_


#include "ngx_http_actingweb_module.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef enum {
    NGX_HTTP_ACTINGWEB_REDIS_OK = 0,
    NGX_HTTP_ACTINGWEB_REDIS_DOWN,        /* not connected, or lost */
    NGX_HTTP_ACTINGWEB_REDIS_TIMEOUT,     /* no reply in redis_timeout */
    NGX_HTTP_ACTINGWEB_REDIS_ERROR        /* Redis answered an error */
} ngx_http_actingweb_redis_status_e;


/*
 * Called once per command with the reply (valid only during the call)
 * or with reply == NULL and a status other than OK.  The request is
 * alive when this runs; ops whose request went away are dropped.
 */
typedef void (*ngx_http_actingweb_redis_handler_pt)(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);


/* Lua scripts, see ngx_http_actingweb_scripts.c */
typedef enum {
    NGX_HTTP_ACTINGWEB_SCRIPT_CREATE = 0,
    NGX_HTTP_ACTINGWEB_SCRIPT_ACTOR_DELETE,
    NGX_HTTP_ACTINGWEB_SCRIPT_PROP_SET,
    NGX_HTTP_ACTINGWEB_SCRIPT_PROP_CAS,
    NGX_HTTP_ACTINGWEB_SCRIPT_PROP_DEL,
    NGX_HTTP_ACTINGWEB_SCRIPT_PROP_DEL_ALL,
    NGX_HTTP_ACTINGWEB_SCRIPT_PROP_POST,
    NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_PUT,
    NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_DEL,
    NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_SET,
    NGX_HTTP_ACTINGWEB_SCRIPT_TRUST_AUTH,
    NGX_HTTP_ACTINGWEB_SCRIPT_ACTOR_SET,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_CREATE,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_PENDING,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_STORE,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_DIFF,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_CLEAR,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_DELETE,
    NGX_HTTP_ACTINGWEB_SCRIPT_SUB_LIST,
    NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_GET,
    NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_APPLY,
    NGX_HTTP_ACTINGWEB_SCRIPT_OUTSUB_DELETE,
    NGX_HTTP_ACTINGWEB_SCRIPT_CB_CLAIM,
    NGX_HTTP_ACTINGWEB_SCRIPT_CB_STORE,
    NGX_HTTP_ACTINGWEB_SCRIPT_CB_RELEASE,
    NGX_HTTP_ACTINGWEB_SCRIPT_CB_CLEARED,
    NGX_HTTP_ACTINGWEB_SCRIPT_CB_CIRCUIT,
    NGX_HTTP_ACTINGWEB_SCRIPT_N
} ngx_http_actingweb_script_e;


typedef struct {
    const char                     *name;
    const char                     *source;
    u_char                          sha1[41];
} ngx_http_actingweb_script_t;


/* argument vector built in the request pool */
typedef struct {
    ngx_array_t                     argv;       /* of const char * */
    ngx_array_t                     argvlen;    /* of size_t */
    ngx_uint_t                      nkeys;
} ngx_http_actingweb_redis_args_t;


extern ngx_http_actingweb_script_t  ngx_http_actingweb_scripts[];
extern const char                  *ngx_http_actingweb_actor_keys[];


ngx_int_t ngx_http_actingweb_redis_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf);
void ngx_http_actingweb_redis_exit(ngx_http_actingweb_main_conf_t *amcf);

ngx_http_actingweb_redis_args_t *ngx_http_actingweb_redis_args(
    ngx_http_request_t *r, ngx_uint_t n);
ngx_int_t ngx_http_actingweb_redis_arg(ngx_http_actingweb_redis_args_t *a,
    u_char *data, size_t len);
ngx_int_t ngx_http_actingweb_redis_key(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ngx_str_t *id, const char *suffix);
ngx_int_t ngx_http_actingweb_redis_keys(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a, ...);
ngx_int_t ngx_http_actingweb_redis_creds(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a);

ngx_int_t ngx_http_actingweb_redis_command(ngx_http_request_t *r,
    ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler);
ngx_int_t ngx_http_actingweb_redis_script(ngx_http_request_t *r,
    ngx_http_actingweb_script_e script, ngx_http_actingweb_redis_args_t *a,
    ngx_http_actingweb_redis_handler_pt handler);

ngx_int_t ngx_http_actingweb_redis_reply_error(ngx_http_request_t *r,
    ngx_http_actingweb_redis_status_e status, redisReply *reply);
ngx_int_t ngx_http_actingweb_redis_connected(
    ngx_http_actingweb_main_conf_t *amcf);

ngx_int_t ngx_http_actingweb_redis_started(ngx_http_request_t *r,
    ngx_int_t rc);
ngx_int_t ngx_http_actingweb_reply_str(ngx_http_request_t *r,
    redisReply *reply, ngx_str_t *out);

ngx_int_t ngx_http_actingweb_scripts_init(ngx_log_t *log);

/* one connection (a node of a cluster), for cluster.c */
ngx_http_actingweb_redis_t *ngx_http_actingweb_redis_node(
    ngx_http_actingweb_main_conf_t *amcf, ngx_str_t *addr, ngx_str_t *host,
    ngx_int_t port, ngx_http_actingweb_cluster_t *cluster);
void ngx_http_actingweb_redis_start(ngx_http_actingweb_redis_t *rd);
void ngx_http_actingweb_redis_close(ngx_http_actingweb_redis_t *rd);
ngx_int_t ngx_http_actingweb_redis_ready(ngx_http_actingweb_redis_t *rd);
ngx_int_t ngx_http_actingweb_redis_raw(ngx_http_actingweb_redis_t *rd,
    redisCallbackFn *fn, void *data, int argc, const char **argv,
    const size_t *argvlen);

/* cluster.c: Redis Cluster, slot map and routing */
ngx_int_t ngx_http_actingweb_cluster_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf);
void ngx_http_actingweb_cluster_exit(ngx_http_actingweb_main_conf_t *amcf);
ngx_http_actingweb_redis_t *ngx_http_actingweb_cluster_route(
    ngx_http_actingweb_cluster_t *cl, ngx_http_actingweb_redis_args_t *a,
    ngx_int_t script);
ngx_int_t ngx_http_actingweb_cluster_redirect(
    ngx_http_actingweb_cluster_t *cl, redisReply *reply,
    ngx_http_actingweb_redis_t **to, ngx_uint_t *ask);
void ngx_http_actingweb_cluster_up(ngx_http_actingweb_cluster_t *cl);
void ngx_http_actingweb_cluster_down(ngx_http_actingweb_cluster_t *cl);
ngx_int_t ngx_http_actingweb_cluster_connected(
    ngx_http_actingweb_cluster_t *cl);
ngx_uint_t ngx_http_actingweb_cluster_slot(u_char *key, size_t len);

/* subscriptions.c: diffs for callback delivery (outbox.c) */

#define NGX_HTTP_ACTINGWEB_SUB_TIME_LEN  sizeof("1970-01-01T00:00:00.000000Z")

typedef struct {
    redisReply                      *id;         /* "<ms>-<n>" */
    cJSON                           *path;       /* NULL: no diffs */
    redisReply                      *value;      /* as written */
    cJSON                           *parsed;     /* value, on first need */
    unsigned                         del:1;
    unsigned                         broken:1;
} ngx_http_actingweb_sub_event_t;

ngx_int_t ngx_http_actingweb_sub_event_init(ngx_http_request_t *r,
    redisReply *ev, ngx_http_actingweb_sub_event_t *e);
ngx_int_t ngx_http_actingweb_sub_event_diff(ngx_http_request_t *r,
    ngx_http_actingweb_sub_event_t *e, const char **at, cJSON *trust,
    cJSON **diff);
u_char *ngx_http_actingweb_sub_time(u_char *buf, u_char *id, size_t len);
ngx_int_t ngx_http_actingweb_sub_resync_url(ngx_http_request_t *r,
    const char **at, ngx_str_t *url);

/* outbox.c: callback delivery */
void ngx_http_actingweb_outbox_mark(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_outbox_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf);
void ngx_http_actingweb_outbox_exit(ngx_http_actingweb_main_conf_t *amcf);

/* trust.c: the actor's trust records */
ngx_int_t ngx_http_actingweb_trust_all(ngx_http_request_t *r,
    ngx_http_actingweb_redis_handler_pt handler);
ngx_int_t ngx_http_actingweb_trust_get(ngx_http_request_t *r,
    ngx_str_t *peerid, ngx_http_actingweb_redis_handler_pt handler);

/*
 * How an endpoint's own Redis work fits with the actor read (access.c):
 * decided per request by the route's plan function.
 */
typedef enum {
    NGX_HTTP_ACTINGWEB_LOAD_ACTOR = 0,       /* actor read, then endpoint */
    NGX_HTTP_ACTINGWEB_LOAD_NONE,            /* endpoint only refuses */
    NGX_HTTP_ACTINGWEB_LOAD_WRITE,           /* remembered creds skip it */
    NGX_HTTP_ACTINGWEB_LOAD_PIPELINE         /* endpoint read sent along */
} ngx_http_actingweb_load_e;


typedef struct {
    ngx_http_actingweb_access_e          access;    /* the route's, or */
    ngx_http_actingweb_load_e            load;
    ngx_http_actingweb_redis_args_t     *args;      /* PIPELINE: the read */
    ngx_http_actingweb_redis_handler_pt  handler;   /* and its reply */
} ngx_http_actingweb_plan_t;


typedef ngx_int_t (*ngx_http_actingweb_plan_pt)(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan);


/* access.c: the access step between the handler and every endpoint */
ngx_int_t ngx_http_actingweb_access(ngx_http_request_t *r,
    ngx_http_actingweb_access_e access, ngx_http_actingweb_plan_pt plan,
    ngx_http_actingweb_step_pt endpoint);
ngx_int_t ngx_http_actingweb_access_changed(ngx_http_request_t *r);

/* endpoint plans, named in the route table */
ngx_int_t ngx_http_actingweb_meta_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan);
ngx_int_t ngx_http_actingweb_properties_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan);
ngx_int_t ngx_http_actingweb_trust_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan);
ngx_int_t ngx_http_actingweb_devtest_plan(ngx_http_request_t *r,
    ngx_http_actingweb_plan_t *plan);

/* curl.c: the worker-level HTTP client lives beside Redis */

/* rc: NGX_OK (status set), NGX_ERROR (no answer), NGX_ABORT (exiting) */
typedef void (*ngx_http_actingweb_curl_pt)(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *retry_after, ngx_str_t *body);

typedef struct {
    ngx_str_t                       url;        /* NUL-terminated */
    ngx_str_t                       authorization;
    ngx_str_t                       body;
    ngx_msec_t                      timeout;
    size_t                          max_body;   /* of the answer kept */
    unsigned                        downgraded:1;  /* high sent as low */
    unsigned                        gzip:1;     /* Content-Encoding: gzip */
    unsigned                        get:1;      /* a GET, no body */
    ngx_http_actingweb_loc_conf_t  *policy;     /* actingweb_peer_allow */
    ngx_http_actingweb_curl_pt      handler;
    void                           *data;
} ngx_http_actingweb_curl_post_t;

ngx_int_t ngx_http_actingweb_curl_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf);
void ngx_http_actingweb_curl_exit(ngx_http_actingweb_main_conf_t *amcf);
ngx_int_t ngx_http_actingweb_curl_post(ngx_http_actingweb_main_conf_t *amcf,
    ngx_http_actingweb_curl_post_t *p);
ngx_uint_t ngx_http_actingweb_curl_active(
    ngx_http_actingweb_main_conf_t *amcf);


#endif /* _NGX_HTTP_ACTINGWEB_REDIS_H_INCLUDED_ */
