
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * actingweb_status: counters of the worker that answers, as JSON or, with
 * ?format=prometheus, as Prometheus text.
 */


#include "ngx_http_actingweb_redis.h"


typedef struct {
    const char                     *name;
    const char                     *help;
    size_t                          offset;
} ngx_http_actingweb_counter_t;


#define NGX_HTTP_ACTINGWEB_COUNTER(name, help)                                \
    { #name, help, offsetof(ngx_http_actingweb_stats_t, name) }


static ngx_int_t ngx_http_actingweb_status_handler(ngx_http_request_t *r);


static ngx_http_actingweb_counter_t  ngx_http_actingweb_counters[] = {
    NGX_HTTP_ACTINGWEB_COUNTER(requests, "actor requests handled"),
    NGX_HTTP_ACTINGWEB_COUNTER(errors_4xx, "client error responses"),
    NGX_HTTP_ACTINGWEB_COUNTER(errors_5xx, "server error responses"),
    NGX_HTTP_ACTINGWEB_COUNTER(redis_commands, "Redis commands sent"),
    NGX_HTTP_ACTINGWEB_COUNTER(redis_timeouts, "Redis commands timed out"),
    NGX_HTTP_ACTINGWEB_COUNTER(redis_unavailable,
                               "requests refused while Redis was down"),
    NGX_HTTP_ACTINGWEB_COUNTER(redis_connects, "Redis connections made"),
    NGX_HTTP_ACTINGWEB_COUNTER(redis_disconnects, "Redis connections lost"),
    NGX_HTTP_ACTINGWEB_COUNTER(auth_cache_hits,
                               "credentials found in the worker cache"),
    NGX_HTTP_ACTINGWEB_COUNTER(auth_kdf_runs, "passphrase hashes computed"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_sent, "callbacks answered 2xx"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_failed,
                               "callbacks failed or skipped (open circuit)"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_retried, "callback retries"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_downgraded,
                               "high callbacks sent as low (payload size)"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_circuit_open,
                               "peer circuits opened"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_pending,
                               "callbacks made and not yet sent (gauge)"),
    NGX_HTTP_ACTINGWEB_COUNTER(callbacks_redis_commands,
                               "Redis commands of callback delivery"),
    { NULL, NULL, 0 }
};


char *
ngx_http_actingweb_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->enable != NGX_CONF_UNSET || alcf->status != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    alcf->status = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_actingweb_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_actingweb_status_handler(ngx_http_request_t *r)
{
    u_char                          *p, *start;
    cJSON                           *out;
    ngx_int_t                        rc;
    ngx_str_t                        fmt, type;
    ngx_uint_t                       v, connected;
    ngx_http_actingweb_counter_t    *cn;
    ngx_http_actingweb_main_conf_t  *amcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_actingweb_header(r, "Allow", "GET, HEAD") == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_actingweb_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    connected = ngx_http_actingweb_redis_connected(amcf);

    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK
        && fmt.len == 10 && ngx_strncmp(fmt.data, "prometheus", 10) == 0)
    {
        start = ngx_pnalloc(r->pool, 8192);
        if (start == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = start;

        for (cn = ngx_http_actingweb_counters; cn->name; cn++) {
            v = *(ngx_uint_t *) ((u_char *) &amcf->stats + cn->offset);
            p = ngx_sprintf(p, "# HELP actingweb_%s_total %s\n"
                               "# TYPE actingweb_%s_total counter\n"
                               "actingweb_%s_total{pid=\"%P\"} %ui\n",
                            cn->name, cn->help, cn->name, cn->name,
                            ngx_pid, v);
        }

        p = ngx_sprintf(p, "# HELP actingweb_redis_up Redis connection "
                           "ready\n# TYPE actingweb_redis_up gauge\n"
                           "actingweb_redis_up{pid=\"%P\"} %ui\n",
                        ngx_pid, connected);

        p = ngx_sprintf(p, "# HELP actingweb_info module version\n"
                           "# TYPE actingweb_info gauge\n"
                           "actingweb_info{pid=\"%P\",version=\""
                           NGX_HTTP_ACTINGWEB_VERSION "\"} 1\n",
                        ngx_pid);

        ngx_str_set(&type, "text/plain; version=0.0.4");

        return ngx_http_actingweb_send(r, NGX_HTTP_OK, &type, start,
                                       p - start);
    }

    out = cJSON_CreateObject();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(out, "version", NGX_HTTP_ACTINGWEB_VERSION);
    cJSON_AddNumberToObject(out, "pid", (double) ngx_pid);
    cJSON_AddBoolToObject(out, "redis_up", connected ? 1 : 0);

    for (cn = ngx_http_actingweb_counters; cn->name; cn++) {
        v = *(ngx_uint_t *) ((u_char *) &amcf->stats + cn->offset);
        cJSON_AddNumberToObject(out, cn->name, (double) v);
    }

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}
