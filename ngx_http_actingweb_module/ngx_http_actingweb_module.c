
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Directives, configuration, per-worker start and stop.
 */


#include "ngx_http_actingweb_module.h"
#include "ngx_http_actingweb_redis.h"
#include "ngx_http_actingweb_peer.h"


static ngx_int_t ngx_http_actingweb_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_actingweb_peer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_actingweb_peer_host_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_actingweb_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_actingweb_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_actingweb_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_actingweb_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_actingweb_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_actingweb_init_process(ngx_cycle_t *cycle);
static void ngx_http_actingweb_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_actingweb(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_actingweb_redis_addr(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_actingweb_redis_cluster(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_actingweb_base_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_actingweb_acl(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_actingweb_auto_approve(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_actingweb_check_positive_msec(ngx_conf_t *cf,
    void *post, void *data);
static char *ngx_http_actingweb_check_version(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_actingweb_check_token(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_actingweb_check_nonempty(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_actingweb_check_uri(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_actingweb_parse_redis(ngx_conf_t *cf,
    ngx_http_actingweb_main_conf_t *amcf, ngx_str_t *value);
static char *ngx_http_actingweb_resolve_redis(ngx_conf_t *cf,
    ngx_str_t *value, ngx_str_t *host, ngx_int_t *port);
static ngx_int_t ngx_http_actingweb_is_token(ngx_str_t *s);


static ngx_conf_post_t  ngx_http_actingweb_positive_msec_post =
    { ngx_http_actingweb_check_positive_msec };
static ngx_conf_post_t  ngx_http_actingweb_version_post =
    { ngx_http_actingweb_check_version };
static ngx_conf_post_t  ngx_http_actingweb_token_post =
    { ngx_http_actingweb_check_token };
static ngx_conf_post_t  ngx_http_actingweb_nonempty_post =
    { ngx_http_actingweb_check_nonempty };
static ngx_conf_post_t  ngx_http_actingweb_uri_post =
    { ngx_http_actingweb_check_uri };

static ngx_conf_num_bounds_t  ngx_http_actingweb_db_bounds =
    { ngx_conf_check_num_bounds, 0, 1023 };
static ngx_conf_num_bounds_t  ngx_http_actingweb_concurrency_bounds =
    { ngx_conf_check_num_bounds, 1, 10000 };
static ngx_conf_num_bounds_t  ngx_http_actingweb_retries_bounds =
    { ngx_conf_check_num_bounds, 0, 100 };
static ngx_conf_num_bounds_t  ngx_http_actingweb_change_log_bounds =
    { ngx_conf_check_num_bounds, 2, 100000 };


static ngx_command_t  ngx_http_actingweb_commands[] = {

    { ngx_string("actingweb"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_actingweb,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_base_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_base_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, base_url),
      NULL },

    { ngx_string("actingweb_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, type),
      &ngx_http_actingweb_nonempty_post },

    { ngx_string("actingweb_desc"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, desc),
      NULL },

    { ngx_string("actingweb_version"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, version),
      &ngx_http_actingweb_version_post },

    { ngx_string("actingweb_info"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, info),
      &ngx_http_actingweb_nonempty_post },

    { ngx_string("actingweb_max_value_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, max_value_size),
      NULL },

    { ngx_string("actingweb_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_redis_addr,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_redis_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_actingweb_redis_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_redis_password"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, redis_password),
      &ngx_http_actingweb_nonempty_post },

    { ngx_string("actingweb_redis_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, redis_db),
      &ngx_http_actingweb_db_bounds },

    { ngx_string("actingweb_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, redis_prefix),
      &ngx_http_actingweb_token_post },

    { ngx_string("actingweb_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, redis_timeout),
      &ngx_http_actingweb_positive_msec_post },

    { ngx_string("actingweb_peer_location"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, peer_location),
      &ngx_http_actingweb_uri_post },

    { ngx_string("actingweb_peer_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, peer_timeout),
      &ngx_http_actingweb_positive_msec_post },

    { ngx_string("actingweb_peer_deadline"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, peer_deadline),
      &ngx_http_actingweb_positive_msec_post },

    { ngx_string("actingweb_fanout_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, fanout_concurrency),
      &ngx_http_actingweb_concurrency_bounds },

    { ngx_string("actingweb_peer_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_peer_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_peer_deny"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_peer_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_acl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_actingweb_acl,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_change_log"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, change_log),
      &ngx_http_actingweb_change_log_bounds },

    { ngx_string("actingweb_subscriptions_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, subscriptions_max),
      &ngx_http_actingweb_concurrency_bounds },

    { ngx_string("actingweb_auto_approve"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_actingweb_auto_approve,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_default_relationship"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, default_relationship),
      &ngx_http_actingweb_token_post },

    { ngx_string("actingweb_callback_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, callback_timeout),
      &ngx_http_actingweb_positive_msec_post },

    { ngx_string("actingweb_callback_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, callback_concurrency),
      &ngx_http_actingweb_concurrency_bounds },

    { ngx_string("actingweb_callback_max_payload"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, callback_max_payload),
      NULL },

    { ngx_string("actingweb_callback_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, callback_retries),
      &ngx_http_actingweb_retries_bounds },

    { ngx_string("actingweb_callback_circuit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_actingweb_main_conf_t, callback_circuit),
      &ngx_http_actingweb_positive_msec_post },

    { ngx_string("actingweb_devtest"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, devtest),
      NULL },

    { ngx_string("actingweb_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_thread_pool,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_secret_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_actingweb_secret_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("actingweb_error_json"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_actingweb_loc_conf_t, error_json),
      NULL },

    { ngx_string("actingweb_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_actingweb_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


/*
 * Set on the subrequest of a peer call (per-subrequest ctx, because
 * subrequests share the parent's variable values); empty elsewhere.
 */

static ngx_http_variable_t  ngx_http_actingweb_variables[] = {

    { ngx_string("actingweb_peer_url"), NULL,
      ngx_http_actingweb_peer_variable,
      offsetof(ngx_http_actingweb_ctx_t, peer_url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("actingweb_peer_authorization"), NULL,
      ngx_http_actingweb_peer_variable,
      offsetof(ngx_http_actingweb_ctx_t, peer_authorization),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("actingweb_peer_host"), NULL,
      ngx_http_actingweb_peer_host_variable,
      offsetof(ngx_http_actingweb_ctx_t, peer_host),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_module_t  ngx_http_actingweb_module_ctx = {
    ngx_http_actingweb_add_variables,      /* preconfiguration */
    ngx_http_actingweb_postconfiguration,  /* postconfiguration */

    ngx_http_actingweb_create_main_conf,   /* create main configuration */
    ngx_http_actingweb_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_actingweb_create_loc_conf,    /* create location configuration */
    ngx_http_actingweb_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_actingweb_module = {
    NGX_MODULE_V1,
    &ngx_http_actingweb_module_ctx,        /* module context */
    ngx_http_actingweb_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_actingweb_thread_pool_check,  /* init module */
    ngx_http_actingweb_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_actingweb_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_actingweb_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_actingweb_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_actingweb_peer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* a peer location that sends it gets the peer's name as Host (peer.c) */

static ngx_int_t
ngx_http_actingweb_peer_host_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_actingweb_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx && ctx->peer_call) {
        ctx->peer_host_sent = 1;
    }

    return ngx_http_actingweb_peer_variable(r, v, data);
}


static ngx_int_t
ngx_http_actingweb_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_actingweb_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_actingweb_peer_pin_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_actingweb_filter_init(cf);
}


static void *
ngx_http_actingweb_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_actingweb_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->redis_addr = { 0, NULL };
     *     amcf->redis_password = { 0, NULL };
     *     amcf->redis_prefix = { 0, NULL };
     *     amcf->redis = NULL;
     *     amcf->curl = NULL;
     */

    amcf->redis_port = NGX_CONF_UNSET;
    amcf->redis_db = NGX_CONF_UNSET;
    amcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    amcf->callback_timeout = NGX_CONF_UNSET_MSEC;
    amcf->callback_concurrency = NGX_CONF_UNSET_UINT;
    amcf->callback_max_payload = NGX_CONF_UNSET_SIZE;
    amcf->callback_retries = NGX_CONF_UNSET_UINT;
    amcf->callback_circuit = NGX_CONF_UNSET_MSEC;

    return amcf;
}


static char *
ngx_http_actingweb_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_actingweb_main_conf_t *amcf = conf;

    ngx_str_t  addr = ngx_string("127.0.0.1:6379");

    if (amcf->redis_addr.len == 0) {
        if (ngx_http_actingweb_parse_redis(cf, amcf, &addr) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (amcf->redis_seeds && amcf->redis_db != NGX_CONF_UNSET
        && amcf->redis_db != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "actingweb_redis_db: Redis Cluster has only "
                           "database 0");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(amcf->redis_db, 0);
    ngx_conf_init_msec_value(amcf->redis_timeout, 1000);

    if (amcf->redis_prefix.len == 0) {
        ngx_str_set(&amcf->redis_prefix, "aw");
    }

    ngx_conf_init_msec_value(amcf->callback_timeout, 5000);
    ngx_conf_init_uint_value(amcf->callback_concurrency, 16);
    ngx_conf_init_size_value(amcf->callback_max_payload, 256 * 1024);
    ngx_conf_init_uint_value(amcf->callback_retries, 0);
    ngx_conf_init_msec_value(amcf->callback_circuit, 60000);

    if (amcf->used && amcf->secret_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "actingweb: no \"actingweb_secret_key\": trust "
                           "secrets are stored in clear text in Redis");
    }

    if ((amcf->used || amcf->metrics_used)
        && ngx_http_actingweb_metrics_zone(cf, amcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_actingweb_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_actingweb_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     alcf->prefix = { 0, NULL };
     *     alcf->base_url = { 0, NULL };
     *     alcf->type = { 0, NULL };
     *     ...
     */

    alcf->enable = NGX_CONF_UNSET;
    alcf->status = NGX_CONF_UNSET;
    alcf->max_value_size = NGX_CONF_UNSET_SIZE;
    alcf->peer_timeout = NGX_CONF_UNSET_MSEC;
    alcf->peer_deadline = NGX_CONF_UNSET_MSEC;
    alcf->fanout_concurrency = NGX_CONF_UNSET_UINT;
    alcf->auto_approve = NGX_CONF_UNSET_PTR;
    alcf->peer_rules = NGX_CONF_UNSET_PTR;
    alcf->acl = NGX_CONF_UNSET_PTR;
    alcf->change_log = NGX_CONF_UNSET_UINT;
    alcf->subscriptions_max = NGX_CONF_UNSET_UINT;
    alcf->devtest = NGX_CONF_UNSET;
    alcf->error_json = NGX_CONF_UNSET;
    alcf->thread_pool = NGX_CONF_UNSET_PTR;

    return alcf;
}


static char *
ngx_http_actingweb_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_actingweb_loc_conf_t *prev = parent;
    ngx_http_actingweb_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->status, prev->status, 0);

    ngx_conf_merge_str_value(conf->base_url, prev->base_url, "");
    ngx_conf_merge_str_value(conf->type, prev->type,
                             "urn:actingweb:actingweb.org:nginx");
    ngx_conf_merge_str_value(conf->desc, prev->desc, "ActingWeb actor");
    ngx_conf_merge_str_value(conf->version, prev->version, "1.0");
    ngx_conf_merge_str_value(conf->info, prev->info, "");

    /* left unset: the request's client_max_body_size applies */
    ngx_conf_merge_size_value(conf->max_value_size, prev->max_value_size,
                              NGX_CONF_UNSET_SIZE);

    ngx_conf_merge_str_value(conf->peer_location, prev->peer_location,
                             "/_actingweb_peer");
    ngx_conf_merge_msec_value(conf->peer_timeout, prev->peer_timeout, 10000);
    ngx_conf_merge_msec_value(conf->peer_deadline, prev->peer_deadline,
                              30000);
    ngx_conf_merge_uint_value(conf->fanout_concurrency,
                              prev->fanout_concurrency, 64);
    ngx_conf_merge_ptr_value(conf->auto_approve, prev->auto_approve, NULL);
    ngx_conf_merge_str_value(conf->default_relationship,
                             prev->default_relationship, "associate");

    ngx_conf_merge_ptr_value(conf->acl, prev->acl, NULL);
    ngx_conf_merge_uint_value(conf->change_log, prev->change_log, 1000);
    ngx_conf_merge_uint_value(conf->subscriptions_max,
                              prev->subscriptions_max, 64);

    if (ngx_http_actingweb_peer_rules_merge(cf, prev, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_value(conf->devtest, prev->devtest, 0);
    ngx_conf_merge_value(conf->error_json, prev->error_json, 0);

    return ngx_http_actingweb_thread_pool_merge(cf, prev, conf);
}


static char *
ngx_http_actingweb(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_http_conf_ctx_t            **ctx;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    if (alcf->enable != NGX_CONF_UNSET || alcf->status != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* actors live below the factory, so the location must be a prefix */

#if (NGX_PCRE)
    if (clcf->regex) {
        return "cannot be used in a regular expression location";
    }
#endif

    if (clcf->exact_match || clcf->named || clcf->noname) {
        return "can only be used in a prefix location";
    }

    alcf->enable = 1;
    alcf->prefix = clcf->name;

    /* "/app/" and "/app" both make "/app" the factory path */

    while (alcf->prefix.len && alcf->prefix.data[alcf->prefix.len - 1] == '/')
    {
        alcf->prefix.len--;
    }

    clcf->handler = ngx_http_actingweb_handler;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_actingweb_module);
    amcf->used = 1;

    /* callback delivery works in the configuration of the writer's one */

    if (amcf->locations == NULL) {
        amcf->locations = ngx_array_create(cf->pool, 4,
                                           sizeof(ngx_http_conf_ctx_t *));
        if (amcf->locations == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ctx = ngx_array_push(amcf->locations);
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    *ctx = cf->ctx;

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_redis_addr(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_actingweb_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    if (amcf->redis_addr.len) {
        return amcf->redis_seeds ? "is duplicate: actingweb_redis_cluster "
                                   "is set"
                                 : "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_actingweb_parse_redis(cf, amcf, &value[1]);
}


/* seed nodes: the slot map is read from whichever answers first */

static char *
ngx_http_actingweb_redis_cluster(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_actingweb_main_conf_t *amcf = conf;

    ngx_str_t                        *value;
    ngx_uint_t                        i;
    ngx_http_actingweb_redis_seed_t  *seed;

    if (amcf->redis_addr.len) {
        return amcf->redis_seeds ? "is duplicate"
                                 : "is duplicate: actingweb_redis is set";
    }

    value = cf->args->elts;

    amcf->redis_seeds = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                  sizeof(ngx_http_actingweb_redis_seed_t));
    if (amcf->redis_seeds == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        seed = ngx_array_push(amcf->redis_seeds);
        if (seed == NULL) {
            return NGX_CONF_ERROR;
        }

        seed->addr = value[i];

        if (ngx_http_actingweb_resolve_redis(cf, &value[i], &seed->host,
                                             &seed->port)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* for messages that name "the" Redis */

    amcf->redis_addr = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_parse_redis(ngx_conf_t *cf,
    ngx_http_actingweb_main_conf_t *amcf, ngx_str_t *value)
{
    u_char  *p;
    size_t   len;

    amcf->redis_addr = *value;

    if (value->len > 5 && ngx_strncmp(value->data, "unix:", 5) == 0) {
        len = value->len - 5;
        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(p, value->data + 5, len);
        p[len] = '\0';

        if (len == 0 || p[0] != '/') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "actingweb_redis \"%V\": unix socket path "
                               "must be absolute", value);
            return NGX_CONF_ERROR;
        }

        amcf->redis_unix.data = p;
        amcf->redis_unix.len = len;

        return NGX_CONF_OK;
    }

    return ngx_http_actingweb_resolve_redis(cf, value, &amcf->redis_host,
                                            &amcf->redis_port);
}


/* host:port to an IP literal and a port, once, in the master */

static char *
ngx_http_actingweb_resolve_redis(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *host, ngx_int_t *port)
{
    u_char     *p;
    size_t      len;
    ngx_url_t   u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    /* resolved here, once, so that workers never do blocking DNS */

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "actingweb_redis \"%V\": %s", value,
                           u.err ? u.err : "invalid address");
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0 || u.addrs[0].sockaddr->sa_family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "actingweb_redis \"%V\": no usable address",
                           value);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                        NGX_SOCKADDR_STRLEN, 0);
    p[len] = '\0';

    /* ngx_sock_ntop() brackets IPv6 addresses; hiredis wants them bare */

    if (len > 2 && p[0] == '[') {
        p[len - 1] = '\0';
        p++;
        len -= 2;
    }

    host->data = p;
    host->len = len;
    *port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_base_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_str_t  *value, url;

    if (alcf->base_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = value[1];

    if (!(url.len > 7 && ngx_strncasecmp(url.data, (u_char *) "http://", 7)
                         == 0)
        && !(url.len > 8
             && ngx_strncasecmp(url.data, (u_char *) "https://", 8) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "actingweb_base_url \"%V\" must be an absolute "
                           "http:// or https:// URL", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(url.data, url.data + url.len, '?')
        || ngx_strlchr(url.data, url.data + url.len, '#')
        || ngx_strlchr(url.data, url.data + url.len, ' '))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "actingweb_base_url \"%V\" must not contain "
                           "a query, a fragment or spaces", &value[1]);
        return NGX_CONF_ERROR;
    }

    while (url.data[url.len - 1] == '/') {
        url.len--;
    }

    alcf->base_url = url;

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_auto_approve(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_str_t   *value, *rel;
    ngx_uint_t   i;

    if (alcf->auto_approve != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        alcf->auto_approve = NULL;
        return NGX_CONF_OK;
    }

    alcf->auto_approve = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_str_t));
    if (alcf->auto_approve == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (!ngx_http_actingweb_is_token(&value[i])
            || ngx_strcmp(value[i].data, "off") == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid relationship \"%V\" in "
                               "actingweb_auto_approve", &value[i]);
            return NGX_CONF_ERROR;
        }

        rel = ngx_array_push(alcf->auto_approve);
        if (rel == NULL) {
            return NGX_CONF_ERROR;
        }

        *rel = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_check_positive_msec(ngx_conf_t *cf, void *post,
    void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms == 0) {
        return "must be greater than zero";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_check_version(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *v = data;

    u_char      *p, *last;
    ngx_uint_t   dots, digits;

    /* the spec allows "a.b" or "a.b.c" with numeric parts */

    dots = 0;
    digits = 0;
    last = v->data + v->len;

    for (p = v->data; p < last; p++) {

        if (*p >= '0' && *p <= '9') {
            digits++;
            continue;
        }

        if (*p == '.' && digits && dots < 2) {
            dots++;
            digits = 0;
            continue;
        }

        return "must be a version of the form a.b or a.b.c";
    }

    if (dots == 0 || digits == 0) {
        return "must be a version of the form a.b or a.b.c";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_check_token(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *s = data;

    if (!ngx_http_actingweb_is_token(s)) {
        return "must be 1-64 characters of a-z, A-Z, 0-9, \"_\", \"-\", "
               "\".\" or \":\"";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_check_nonempty(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *s = data;

    if (s->len == 0) {
        return "must not be empty";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_actingweb_check_uri(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *s = data;

    if (s->len == 0 || s->data[0] != '/') {
        return "must be a URI starting with \"/\"";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_actingweb_is_token(ngx_str_t *s)
{
    u_char  *p, *last;

    if (s->len == 0 || s->len > 64) {
        return 0;
    }

    last = s->data + s->len;

    for (p = s->data; p < last; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9')
            || *p == '_' || *p == '-' || *p == '.' || *p == ':')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_http_actingweb_init_process(ngx_cycle_t *cycle)
{
    ngx_http_actingweb_main_conf_t  *amcf;

    /* cache managers also run init_process; Test::Nginx runs SINGLE */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_actingweb_module);
    if (amcf == NULL || !amcf->used) {
        return NGX_OK;
    }

    /* the version of the code this worker runs: a reload keeps the .so */
    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "actingweb: module version " NGX_HTTP_ACTINGWEB_VERSION
                  " (ActingWeb " NGX_HTTP_ACTINGWEB_SPEC_VERSION ") started");

    if (ngx_http_actingweb_redis_init(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_actingweb_curl_init(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_actingweb_outbox_init(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_actingweb_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_actingweb_module);
    if (amcf == NULL) {
        return;
    }

    /* calls still out are answered first: the outbox then frees the rest */

    ngx_http_actingweb_curl_exit(amcf);
    ngx_http_actingweb_outbox_exit(amcf);
    ngx_http_actingweb_redis_exit(amcf);
    ngx_http_actingweb_auth_exit(amcf);
}


/*
 * actingweb_acl RELATIONSHIP ENDPOINT METHOD... | none: what peers of one
 * relationship may do on an endpoint, replacing the default for that pair
 */

typedef struct {
    ngx_str_t                       rel;
    ngx_uint_t                      endpoint;
    ngx_uint_t                      methods;
} ngx_http_actingweb_acl_t;


static char *
ngx_http_actingweb_acl(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_actingweb_acl_t  *acl;

    value = cf->args->elts;

    if (alcf->acl == NGX_CONF_UNSET_PTR || alcf->acl == NULL) {
        alcf->acl = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_http_actingweb_acl_t));
        if (alcf->acl == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    acl = ngx_array_push(alcf->acl);
    if (acl == NULL) {
        return NGX_CONF_ERROR;
    }

    acl->rel = value[1];
    acl->methods = 0;

    if (value[2].len == 10 && ngx_strncmp(value[2].data, "properties", 10)
                              == 0)
    {
        acl->endpoint = NGX_HTTP_ACTINGWEB_EP_PROPERTIES;

    } else if (value[2].len == 13
               && ngx_strncmp(value[2].data, "subscriptions", 13) == 0)
    {
        acl->endpoint = NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS;

    } else {
        return "has an unknown endpoint (known: properties, subscriptions)";
    }

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_strcmp(value[i].data, "GET") == 0) {
            acl->methods |= NGX_HTTP_GET;

        } else if (ngx_strcmp(value[i].data, "PUT") == 0) {
            acl->methods |= NGX_HTTP_PUT;

        } else if (ngx_strcmp(value[i].data, "POST") == 0) {
            acl->methods |= NGX_HTTP_POST;

        } else if (ngx_strcmp(value[i].data, "DELETE") == 0) {
            acl->methods |= NGX_HTTP_DELETE;

        } else if (ngx_strcmp(value[i].data, "none") != 0
                   || cf->args->nelts != 4)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid method \"%V\" in actingweb_acl "
                               "(GET, PUT, POST, DELETE, or none alone)",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (cf->args->nelts == 3) {
        return "needs methods, or \"none\"";
    }

    return NGX_CONF_OK;
}


/*
 * the reference's defaults: friend, partner, admin all; associate reads;
 * only friend may subscribe
 */

ngx_uint_t
ngx_http_actingweb_acl_allows(ngx_http_request_t *r, ngx_str_t *rel,
    ngx_uint_t endpoint, ngx_uint_t method)
{
    ngx_uint_t                      i;
    ngx_http_actingweb_acl_t       *acl;
    ngx_http_actingweb_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    if (alcf->acl) {
        acl = alcf->acl->elts;

        for (i = 0; i < alcf->acl->nelts; i++) {
            if (acl[i].endpoint == endpoint && acl[i].rel.len == rel->len
                && ngx_strncmp(acl[i].rel.data, rel->data, rel->len) == 0)
            {
                return (acl[i].methods & method) ? 1 : 0;
            }
        }
    }

    if (endpoint == NGX_HTTP_ACTINGWEB_EP_SUBSCRIPTIONS) {
        return rel->len == 6 && ngx_strncmp(rel->data, "friend", 6) == 0;
    }

    if (endpoint != NGX_HTTP_ACTINGWEB_EP_PROPERTIES) {
        return 0;
    }

    if ((rel->len == 6 && ngx_strncmp(rel->data, "friend", 6) == 0)
        || (rel->len == 7 && ngx_strncmp(rel->data, "partner", 7) == 0)
        || (rel->len == 5 && ngx_strncmp(rel->data, "admin", 5) == 0))
    {
        return 1;
    }

    return rel->len == 9 && ngx_strncmp(rel->data, "associate", 9) == 0
           && method == NGX_HTTP_GET;
}
