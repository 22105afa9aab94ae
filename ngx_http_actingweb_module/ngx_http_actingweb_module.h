
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 */


#ifndef _NGX_HTTP_ACTINGWEB_MODULE_H_INCLUDED_
#define _NGX_HTTP_ACTINGWEB_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>


/* the module's release; debian/changelog carries the same version */
#define NGX_HTTP_ACTINGWEB_VERSION        "0.4.0"
#define NGX_HTTP_ACTINGWEB_SPEC_VERSION   "1.4"
#define NGX_HTTP_ACTINGWEB_ID_LEN         32
#define NGX_HTTP_ACTINGWEB_SECRET_LEN     40
#define NGX_HTTP_ACTINGWEB_NAME_MAX       255
#define NGX_HTTP_ACTINGWEB_JSON_DEPTH     64
#define NGX_HTTP_ACTINGWEB_SEGMENTS_MAX   32

/* option tags served in /meta/actingweb/supported: only what is built */
#define NGX_HTTP_ACTINGWEB_SUPPORTED                                      \
    "callbackcompression,nestedproperties,subscriptionresync,"            \
    "subscriptions,trust,trustpermissions"


typedef struct ngx_http_actingweb_redis_s  ngx_http_actingweb_redis_t;
typedef struct ngx_http_actingweb_cluster_s  ngx_http_actingweb_cluster_t;
typedef struct ngx_http_actingweb_curl_s   ngx_http_actingweb_curl_t;
typedef struct ngx_http_actingweb_ctx_s    ngx_http_actingweb_ctx_t;
typedef struct ngx_http_actingweb_peer_call_s  ngx_http_actingweb_peer_call_t;


/*
 * actingweb_status metrics: counters and gauges in shared memory, one
 * slot each, summed over all workers; kept across reloads (status.c)
 */
typedef enum {
    NGX_HTTP_ACTINGWEB_M_REDIS_COMMANDS = 0,
    NGX_HTTP_ACTINGWEB_M_REDIS_TIMEOUTS,
    NGX_HTTP_ACTINGWEB_M_REDIS_UNAVAILABLE,
    NGX_HTTP_ACTINGWEB_M_REDIS_CONNECTS,
    NGX_HTTP_ACTINGWEB_M_REDIS_DISCONNECTS,
    NGX_HTTP_ACTINGWEB_M_AUTH_CACHE_HITS,
    NGX_HTTP_ACTINGWEB_M_AUTH_KDF_RUNS,
    NGX_HTTP_ACTINGWEB_M_PEER_OK,            /* the peer answered */
    NGX_HTTP_ACTINGWEB_M_PEER_TIMEOUT,
    NGX_HTTP_ACTINGWEB_M_PEER_FAILED,        /* unreachable, bad answer */
    NGX_HTTP_ACTINGWEB_M_PEER_REFUSED,       /* URL or address policy */
    NGX_HTTP_ACTINGWEB_M_CALLBACK_SENT,      /* delivered (2xx) */
    NGX_HTTP_ACTINGWEB_M_CALLBACK_FAILED,    /* one attempt failed */
    NGX_HTTP_ACTINGWEB_M_CALLBACK_RETRIED,
    NGX_HTTP_ACTINGWEB_M_CALLBACK_DROPPED,   /* given up */
    NGX_HTTP_ACTINGWEB_M_CALLBACK_DOWNGRADED,  /* high sent as low */
    NGX_HTTP_ACTINGWEB_M_CALLBACK_REDIS,     /* delivery's commands */
    NGX_HTTP_ACTINGWEB_M_CIRCUIT_OPENED,
    NGX_HTTP_ACTINGWEB_M_CIRCUITS_OPEN,      /* gauges from here on */
    NGX_HTTP_ACTINGWEB_M_CIRCUITS_HALF_OPEN,
    NGX_HTTP_ACTINGWEB_M_OUTBOX_DEPTH,
    NGX_HTTP_ACTINGWEB_M_MAX
} ngx_http_actingweb_metric_e;


typedef enum {
    NGX_HTTP_ACTINGWEB_H_REDIS = 0,          /* command round trip */
    NGX_HTTP_ACTINGWEB_H_PEER,               /* peer call */
    NGX_HTTP_ACTINGWEB_H_MAX
} ngx_http_actingweb_histogram_e;


#define NGX_HTTP_ACTINGWEB_BUCKETS        14     /* the last is +Inf */
#define NGX_HTTP_ACTINGWEB_CLASSES        6      /* 1xx..5xx, other */
#define NGX_HTTP_ACTINGWEB_ENDPOINTS      12     /* EP_FACTORY..EP_OTHER */


typedef struct {
    ngx_atomic_t                    bucket[NGX_HTTP_ACTINGWEB_BUCKETS];
    ngx_atomic_t                    sum_ms;
} ngx_http_actingweb_histogram_t;


typedef struct {
    ngx_atomic_uint_t               magic;           /* layout check */
    ngx_atomic_t                    m[NGX_HTTP_ACTINGWEB_M_MAX];
    ngx_atomic_t                    requests[NGX_HTTP_ACTINGWEB_ENDPOINTS]
                                            [NGX_HTTP_ACTINGWEB_CLASSES];
    ngx_http_actingweb_histogram_t  h[NGX_HTTP_ACTINGWEB_H_MAX];
} ngx_http_actingweb_metrics_t;


/* actingweb_secret_key: AES-256-GCM keys for trust secrets at rest */
typedef struct {
    ngx_uint_t                      id;              /* 1..255 */
    u_char                          key[32];
} ngx_http_actingweb_secret_key_t;


/* a Redis Cluster seed node, resolved at configuration time */
typedef struct {
    ngx_str_t                       addr;            /* as configured */
    ngx_str_t                       host;            /* NUL-terminated IP */
    ngx_int_t                       port;
} ngx_http_actingweb_redis_seed_t;


typedef struct {
    ngx_str_t                       redis_addr;
    ngx_str_t                       redis_host;      /* NUL-terminated IP */
    ngx_str_t                       redis_unix;      /* NUL-terminated */
    ngx_int_t                       redis_port;
    ngx_str_t                       redis_password;
    ngx_int_t                       redis_db;
    ngx_str_t                       redis_prefix;
    ngx_msec_t                      redis_timeout;
    ngx_array_t                    *redis_seeds;     /* cluster, of seed */

    ngx_msec_t                      callback_timeout;
    ngx_uint_t                      callback_concurrency;
    size_t                          callback_max_payload;
    ngx_uint_t                      callback_retries;
    ngx_msec_t                      callback_circuit;

    ngx_flag_t                      used;            /* any actingweb; */
    ngx_array_t                    *locations;       /* of conf ctx * */

    ngx_array_t                    *peer_special;    /* refused ranges */
    ngx_flag_t                      peer_pin;        /* connect to the
                                                        checked address */
    void                           *auto_pool;       /* "default", ours */
    ngx_flag_t                      no_threads;      /* poll, select */

    /* per worker, set up in init_process */
    ngx_http_actingweb_redis_t     *redis;           /* single Redis */
    ngx_http_actingweb_cluster_t   *cluster;         /* or a cluster */
    ngx_http_actingweb_curl_t      *curl;
    void                           *outbox;          /* outbox.c */
    u_char                         *auth_cache;
    u_char                         *auth_fails;
    u_char                         *auth_buckets;
    void                           *auth_md;         /* EVP_MD, fetched */

    ngx_array_t                    *secret_keys;     /* first: current */
    u_char                          index_key[32];   /* trustsec HMAC */

    ngx_flag_t                      metrics_used;    /* actingweb_status */
    ngx_shm_zone_t                 *metrics_zone;
    ngx_http_actingweb_metrics_t   *metrics;         /* in metrics_zone */
} ngx_http_actingweb_main_conf_t;


typedef struct {
    ngx_flag_t                      enable;
    ngx_flag_t                      status;
    ngx_str_t                       prefix;          /* factory path */

    ngx_str_t                       base_url;
    ngx_str_t                       type;
    ngx_str_t                       desc;
    ngx_str_t                       version;
    ngx_str_t                       info;
    size_t                          max_value_size;  /* UNSET: body max */

    ngx_str_t                       peer_location;
    ngx_msec_t                      peer_timeout;
    ngx_msec_t                      peer_deadline;
    ngx_uint_t                      fanout_concurrency;
    ngx_array_t                    *auto_approve;    /* of ngx_str_t */
    ngx_str_t                       default_relationship;
    ngx_array_t                    *peer_rules;      /* allow/deny */
    ngx_array_t                    *acl;             /* actingweb_acl */
    ngx_flag_t                      peer_open;       /* "allow all" first */
    ngx_uint_t                      change_log;      /* events kept */
    ngx_uint_t                      subscriptions_max;   /* per peer */

    ngx_flag_t                      devtest;
    ngx_flag_t                      error_json;      /* server level */
    void                           *thread_pool;     /* for key derivation */
} ngx_http_actingweb_loc_conf_t;


typedef enum {
    NGX_HTTP_ACTINGWEB_EP_FACTORY = 0,
    NGX_HTTP_ACTINGWEB_EP_ROOT,
    NGX_HTTP_ACTINGWEB_EP_META,
    NGX_HTTP_ACTINGWEB_EP_PROPERTIES,
    NGX_HTTP_ACTINGWEB_EP_TRUST,
    NGX_HTTP_ACTINGWEB_EP_PEERINFO,
    NGX_HTTP_ACTINGWEB_EP_AWPROXY,
    NGX_HTTP_ACTINGWEB_EP_FANOUT,
    NGX_HTTP_ACTINGWEB_EP_PERMISSIONS,
    NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS,
    NGX_HTTP_ACTINGWEB_EP_CALLBACKS,
    NGX_HTTP_ACTINGWEB_EP_DEVTEST,
    NGX_HTTP_ACTINGWEB_EP_OTHER
} ngx_http_actingweb_endpoint_e;


/* who the request authenticated as */
typedef enum {
    NGX_HTTP_ACTINGWEB_AUTH_NONE = 0,
    NGX_HTTP_ACTINGWEB_AUTH_BASIC,
    NGX_HTTP_ACTINGWEB_AUTH_BEARER,
    NGX_HTTP_ACTINGWEB_AUTH_INVALID          /* unparsable header */
} ngx_http_actingweb_auth_e;


/* the actor record as read from Redis */
typedef struct {
    ngx_str_t                       creator;
    ngx_str_t                       pwhash;
    ngx_str_t                       trustee_root;
} ngx_http_actingweb_actor_t;


typedef enum {
    NGX_HTTP_ACTINGWEB_ACTOR_UNKNOWN = 0,
    NGX_HTTP_ACTINGWEB_ACTOR_FOUND,
    NGX_HTTP_ACTINGWEB_ACTOR_MISSING,
    NGX_HTTP_ACTINGWEB_ACTOR_FAILED
} ngx_http_actingweb_actor_state_e;


/* what a route needs before its endpoint runs (route table, handler.c) */
typedef enum {
    NGX_HTTP_ACTINGWEB_ACCESS_NONE = 0,      /* no actor: the factory */
    NGX_HTTP_ACTINGWEB_ACCESS_PUBLIC,        /* the actor must exist */
    NGX_HTTP_ACTINGWEB_ACCESS_CREATOR,       /* creator or trustee */
    NGX_HTTP_ACTINGWEB_ACCESS_PEER           /* also a peer, by its trust */
} ngx_http_actingweb_access_e;


/* who the access step let in */
typedef enum {
    NGX_HTTP_ACTINGWEB_ROLE_NONE = 0,        /* public access */
    NGX_HTTP_ACTINGWEB_ROLE_CREATOR,         /* Basic, creator's passphrase */
    NGX_HTTP_ACTINGWEB_ROLE_TRUSTEE,         /* Bearer, trustee passphrase */
    NGX_HTTP_ACTINGWEB_ROLE_PEER             /* Bearer, a trust's secret */
} ngx_http_actingweb_role_e;


typedef ngx_int_t (*ngx_http_actingweb_step_pt)(ngx_http_request_t *r);

/* called in the worker when a check that went off the loop is done */
typedef void (*ngx_http_actingweb_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc);

/* the end of a trust the server opens itself: 201, or an error */
typedef ngx_int_t (*ngx_http_actingweb_trust_done_pt)(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);


struct ngx_http_actingweb_ctx_s {
    ngx_uint_t                      method;          /* after _method */
    ngx_http_actingweb_endpoint_e   endpoint;
    ngx_str_t                       actor_id;
    ngx_str_t                      *segs;            /* below endpoint */
    ngx_uint_t                      nsegs;

    ngx_str_t                       body;
    unsigned                        fast:1;          /* auth_known write */

    ngx_http_actingweb_auth_e       auth;
    ngx_str_t                       user;
    ngx_str_t                       pass;

    ngx_http_actingweb_actor_t      actor;
    ngx_http_actingweb_actor_state_e  actor_state;

    ngx_http_actingweb_role_e       role;            /* set by access.c */
    cJSON                          *peer;            /* ROLE_PEER: trust */
    void                           *access;          /* access.c state */

    ngx_http_actingweb_step_pt      next;            /* the endpoint */
    cJSON                          *value;           /* parsed PUT body */
    ngx_uint_t                      retries;
    ngx_pool_cleanup_t             *attempt;         /* .data: CAS try pool */
    void                           *data;            /* handler state */

    ngx_str_t                       peer_url;        /* of a peer call */
    ngx_str_t                       peer_authorization;
    ngx_str_t                       peer_host;       /* its Host */
    ngx_http_actingweb_peer_call_t *peer_call;       /* in its subrequest */
    ngx_http_actingweb_peer_call_t *peer_calls;      /* this request's */
    ngx_msec_t                      deadline;        /* of peer work */

    unsigned                        responded:1;     /* sent our own */
    unsigned                        error_body:1;    /* replace nginx's */
    unsigned                        error_sent:1;
    unsigned                        worker:1;        /* outbox.c's own */
    unsigned                        peer_host_sent:1;  /* was evaluated */
    ngx_str_t                       error_json;
};


extern ngx_module_t  ngx_http_actingweb_module;


/* handler.c */
ngx_int_t ngx_http_actingweb_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_actor_url(ngx_http_request_t *r,
    ngx_str_t *id, ngx_str_t *url);

/* json.c */
ngx_int_t ngx_http_actingweb_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);
ngx_int_t ngx_http_actingweb_send_json(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *json);
ngx_int_t ngx_http_actingweb_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);
ngx_int_t ngx_http_actingweb_send_no_content(ngx_http_request_t *r);
cJSON *ngx_http_actingweb_json_parse(ngx_http_request_t *r, u_char *data,
    size_t len, const char **err);
ngx_int_t ngx_http_actingweb_json_print(ngx_http_request_t *r, cJSON *json,
    ngx_str_t *out);
void ngx_http_actingweb_json_release(ngx_pool_t *pool,
    ngx_pool_cleanup_t *mark);
ngx_int_t ngx_http_actingweb_json_guard(ngx_http_request_t *r, cJSON *json);
ngx_int_t ngx_http_actingweb_json_str(cJSON *obj, const char *name,
    ngx_str_t *out);
ngx_int_t ngx_http_actingweb_json_add_str(ngx_http_request_t *r, cJSON *obj,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_actingweb_set_location(ngx_http_request_t *r,
    ngx_str_t *url);
ngx_table_elt_t *ngx_http_actingweb_header(ngx_http_request_t *r,
    const char *key, const char *value);
ngx_int_t ngx_http_actingweb_filter_init(ngx_conf_t *cf);

/* jsonv.c */
ngx_int_t ngx_http_actingweb_json_valid(u_char *p, size_t len,
    const char **err);

/* util.c */
ngx_int_t ngx_http_actingweb_random_hex(u_char *dst, size_t len);
ngx_int_t ngx_http_actingweb_utf8_valid(u_char *p, size_t len);
ngx_int_t ngx_http_actingweb_unescape(ngx_pool_t *pool, u_char *src,
    size_t len, ngx_str_t *dst, ngx_uint_t form);
ngx_int_t ngx_http_actingweb_valid_name(ngx_str_t *name);
ngx_int_t ngx_http_actingweb_valid_id(ngx_str_t *id);
ngx_int_t ngx_http_actingweb_watch(ngx_event_t *ev, ngx_uint_t on);
void ngx_http_actingweb_release(ngx_connection_t *c);
ngx_int_t ngx_http_actingweb_is_form(ngx_http_request_t *r, ngx_str_t *body);
ngx_int_t ngx_http_actingweb_form_parse(ngx_http_request_t *r,
    ngx_str_t *body, cJSON **out, const char **err);
ngx_table_elt_t *ngx_http_actingweb_header_in(ngx_http_request_t *r,
    const char *name);

/* auth.c */
void ngx_http_actingweb_auth_parse(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx);
ngx_int_t ngx_http_actingweb_auth_creator(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_http_actingweb_done_pt done);
ngx_int_t ngx_http_actingweb_auth_trustee(ngx_http_actingweb_ctx_t *ctx);
ngx_int_t ngx_http_actingweb_auth_hash(ngx_http_request_t *r,
    ngx_str_t *passphrase, ngx_str_t *out, ngx_http_actingweb_done_pt done);
ngx_int_t ngx_http_actingweb_auth_reply(ngx_http_request_t *r,
    ngx_int_t rc);
ngx_int_t ngx_http_actingweb_auth_known(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx);
ngx_int_t ngx_http_actingweb_cross_site(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err);
void ngx_http_actingweb_auth_exit(ngx_http_actingweb_main_conf_t *amcf);
char *ngx_http_actingweb_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_actingweb_thread_pool_check(ngx_cycle_t *cycle);
char *ngx_http_actingweb_thread_pool_merge(ngx_conf_t *cf,
    ngx_http_actingweb_loc_conf_t *prev, ngx_http_actingweb_loc_conf_t *conf);

/* actor.c */
ngx_int_t ngx_http_actingweb_factory(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_actor(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_meta(ngx_http_request_t *r);

/* devtest.c */
ngx_int_t ngx_http_actingweb_devtest(ngx_http_request_t *r);

/* module.c */
ngx_uint_t ngx_http_actingweb_acl_allows(ngx_http_request_t *r,
    ngx_str_t *rel, ngx_uint_t endpoint, ngx_uint_t method);

/* peerops.c */
ngx_int_t ngx_http_actingweb_peerinfo(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_awproxy(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_awproxy_call(ngx_http_request_t *r,
    ngx_str_t *peerid, ngx_str_t *path);
ngx_int_t ngx_http_actingweb_fanout(ngx_http_request_t *r);

/* permissions.c */
ngx_int_t ngx_http_actingweb_perm_trust(ngx_http_request_t *r,
    ngx_str_t *rel, ngx_str_t *peerid);
ngx_int_t ngx_http_actingweb_permissions(ngx_http_request_t *r);
/* peer.c: the address policy, for peer calls and curl.c */
ngx_uint_t ngx_http_actingweb_peer_allowed(
    ngx_http_actingweb_main_conf_t *amcf,
    ngx_http_actingweb_loc_conf_t *alcf, struct sockaddr *sa);

ngx_int_t ngx_http_actingweb_perm_check(ngx_http_request_t *r, cJSON *rec,
    const char *name, const char *op);

/* trust.c */
ngx_int_t ngx_http_actingweb_trust(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_trust_hash(ngx_http_request_t *r,
    ngx_str_t *secret, ngx_str_t *out);
cJSON *ngx_http_actingweb_trust_record(ngx_http_request_t *r, u_char *data,
    size_t len, const char **err);
char *ngx_http_actingweb_secret_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_actingweb_trust_revoke_all(ngx_http_request_t *r,
    ngx_http_actingweb_step_pt done);
ngx_int_t ngx_http_actingweb_trust_open(ngx_http_request_t *r,
    ngx_str_t *url, ngx_str_t *rel, ngx_http_actingweb_trust_done_pt done);

/* subscriptions.c */
ngx_int_t ngx_http_actingweb_subscriptions(ngx_http_request_t *r);

/* callbacks.c: the subscriber's side */
ngx_int_t ngx_http_actingweb_callbacks(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_outsub_create(ngx_http_request_t *r);
ngx_int_t ngx_http_actingweb_outsub_delete(ngx_http_request_t *r,
    ngx_str_t *peerid, ngx_str_t *subid);

/* properties.c */
ngx_int_t ngx_http_actingweb_properties(ngx_http_request_t *r);

/* status.c */
char *ngx_http_actingweb_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_actingweb_metrics_zone(ngx_conf_t *cf,
    ngx_http_actingweb_main_conf_t *amcf);
ngx_int_t ngx_http_actingweb_metrics_init(ngx_conf_t *cf);
void ngx_http_actingweb_metric_observe(ngx_http_actingweb_main_conf_t *amcf,
    ngx_uint_t histogram, ngx_msec_t ms);
ngx_uint_t ngx_http_actingweb_log_event(ngx_uint_t event);
void ngx_http_actingweb_log_actor(ngx_http_request_t *r);


/* failures that come in floods: logged once, then summed up per second */
typedef enum {
    NGX_HTTP_ACTINGWEB_EV_503 = 0,           /* never logged one by one */
    NGX_HTTP_ACTINGWEB_EV_REDIS_TIMEOUT,
    NGX_HTTP_ACTINGWEB_EV_PEER_TIMEOUT,
    NGX_HTTP_ACTINGWEB_EV_MAX
} ngx_http_actingweb_event_e;


/* counters (and gauges, with a negative n) of every worker, one slot */

static ngx_inline void
ngx_http_actingweb_metric_add(ngx_http_actingweb_main_conf_t *amcf,
    ngx_uint_t metric, ngx_atomic_int_t n)
{
    if (amcf->metrics) {
        (void) ngx_atomic_fetch_add(&amcf->metrics->m[metric], n);
    }
}


#define ngx_http_actingweb_metric_inc(amcf, metric)                           \
    ngx_http_actingweb_metric_add(amcf, metric, 1)


#endif /* _NGX_HTTP_ACTINGWEB_MODULE_H_INCLUDED_ */
