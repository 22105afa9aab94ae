
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Metrics in a shared memory zone, summed over all workers and kept
 * across reloads, and actingweb_status, which serves them as JSON or,
 * with ?format=prometheus, as Prometheus text.  Each counter is one
 * atomic slot: no lock, no per-worker copies to add up.
 */


#include "ngx_http_actingweb_redis.h"


#define NGX_HTTP_ACTINGWEB_METRICS_MAGIC                                      \
    (0x61770000 + sizeof(ngx_http_actingweb_metrics_t))

#define NGX_HTTP_ACTINGWEB_METRICS_SIZE   (64 * 1024)


typedef struct {
    const char                     *family;
    const char                     *label;          /* NULL: none */
    const char                     *help;
    const char                     *json;           /* key in the JSON */
    ngx_uint_t                      gauge;
} ngx_http_actingweb_metric_t;


static ngx_int_t ngx_http_actingweb_metrics_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_http_actingweb_metrics_log(ngx_http_request_t *r);
static ngx_int_t ngx_http_actingweb_status_handler(ngx_http_request_t *r);
static u_char *ngx_http_actingweb_status_prometheus(u_char *p,
    ngx_http_actingweb_metrics_t *mt, ngx_uint_t connected);
static u_char *ngx_http_actingweb_status_head(u_char *p, const char *family,
    const char *help, const char *type);
static ngx_int_t ngx_http_actingweb_status_json(ngx_http_request_t *r,
    ngx_http_actingweb_metrics_t *mt, ngx_uint_t connected);
static void ngx_http_actingweb_log_summary(ngx_event_t *ev);
static u_char *ngx_http_actingweb_log_error(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);


/* this worker's flood counters: one summary line per second at most */

typedef struct {
    ngx_event_t                     timer;
    ngx_connection_t                dummy;           /* timer's ev->data */
    ngx_uint_t                      count[NGX_HTTP_ACTINGWEB_EV_MAX];
    ngx_uint_t                      active[NGX_HTTP_ACTINGWEB_EV_MAX];
} ngx_http_actingweb_flood_t;


static ngx_http_actingweb_flood_t  ngx_http_actingweb_flood;
static ngx_http_log_handler_pt     ngx_http_actingweb_log_next;


/* in ngx_http_actingweb_metric_e order */

static ngx_http_actingweb_metric_t  ngx_http_actingweb_metrics[] = {
    { "redis_commands_total", NULL, "Redis commands sent",
      "redis_commands", 0 },
    { "redis_timeouts_total", NULL, "Redis commands timed out",
      "redis_timeouts", 0 },
    { "redis_unavailable_total", NULL,
      "requests refused while Redis was down", "redis_unavailable", 0 },
    { "redis_connects_total", NULL, "Redis connections made",
      "redis_connects", 0 },
    { "redis_disconnects_total", NULL, "Redis connections lost",
      "redis_disconnects", 0 },
    { "auth_cache_hits_total", NULL, "credentials found in the worker cache",
      "auth_cache_hits", 0 },
    { "auth_kdf_runs_total", NULL, "passphrase hashes computed",
      "auth_kdf_runs", 0 },
    { "peer_calls_total", "outcome=\"ok\"", "peer calls by outcome",
      "peer_calls_ok", 0 },
    { "peer_calls_total", "outcome=\"timeout\"", NULL,
      "peer_calls_timeout", 0 },
    { "peer_calls_total", "outcome=\"failed\"", NULL,
      "peer_calls_failed", 0 },
    { "peer_calls_total", "outcome=\"refused\"", NULL,
      "peer_calls_refused", 0 },
    { "callbacks_total", "outcome=\"sent\"",
      "callback deliveries by outcome", "callbacks_sent", 0 },
    { "callbacks_total", "outcome=\"failed\"", NULL,
      "callbacks_failed", 0 },
    { "callbacks_total", "outcome=\"retried\"", NULL,
      "callbacks_retried", 0 },
    { "callbacks_total", "outcome=\"dropped\"", NULL,
      "callbacks_dropped", 0 },
    { "callbacks_total", "outcome=\"downgraded\"", NULL,
      "callbacks_downgraded", 0 },
    { "callback_redis_commands_total", NULL,
      "Redis commands of callback delivery", "callbacks_redis_commands", 0 },
    { "circuit_opened_total", NULL, "circuit breakers opened",
      "circuit_opened", 0 },
    { "circuits", "state=\"open\"", "peer circuits by state",
      "circuits_open", 1 },
    { "circuits", "state=\"half_open\"", NULL, "circuits_half_open", 1 },
    { "outbox_depth", NULL, "callbacks waiting for delivery",
      "outbox_depth", 1 }
};


/* in ngx_http_actingweb_endpoint_e order */

static const char  *ngx_http_actingweb_endpoint_names[] = {
    "factory", "root", "meta", "properties", "trust", "peerinfo",
    "awproxy", "fanout", "permissions", "subscriptions", "devtest", "other"
};


static const char  *ngx_http_actingweb_class_names[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"
};


/* upper bounds in ms; the last bucket is +Inf */

static ngx_msec_t  ngx_http_actingweb_bounds[] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


static const char  *ngx_http_actingweb_histograms[][2] = {
    { "redis_latency_seconds", "Redis command round trip" },
    { "peer_latency_seconds", "peer call duration" }
};


/* called when the configuration uses actingweb or actingweb_status */

ngx_int_t
ngx_http_actingweb_metrics_zone(ngx_conf_t *cf,
    ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_str_t        name = ngx_string("actingweb_metrics");
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, &name,
                                     NGX_HTTP_ACTINGWEB_METRICS_SIZE,
                                     &ngx_http_actingweb_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_actingweb_metrics_init_zone;
    shm_zone->data = amcf;

    amcf->metrics_zone = shm_zone;

    return NGX_OK;
}


/* data: the previous cycle's metrics after a reload, counted on from */

static ngx_int_t
ngx_http_actingweb_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t                 *shpool;
    ngx_http_actingweb_metrics_t    *mt;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = shm_zone->data;
    mt = data;

    if (mt == NULL || mt->magic != NGX_HTTP_ACTINGWEB_METRICS_MAGIC) {
        /* a new zone, or one left by a build with another layout */

        shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        mt = ngx_slab_calloc(shpool, sizeof(ngx_http_actingweb_metrics_t));
        if (mt == NULL) {
            return NGX_ERROR;
        }

        mt->magic = NGX_HTTP_ACTINGWEB_METRICS_MAGIC;
    }

    shm_zone->data = mt;
    amcf->metrics = mt;

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_metrics_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_actingweb_metrics_log;

    return NGX_OK;
}


/* every actor request once, when it ends: by endpoint and status class */

static ngx_int_t
ngx_http_actingweb_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                       status, cls;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_main_conf_t  *amcf;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    if (amcf->metrics == NULL) {
        return NGX_OK;
    }

    /* as the access log has it: 499 for a client that went away */

    status = r->err_status ? r->err_status : r->headers_out.status;
    cls = status / 100;
    cls = (cls >= 1 && cls <= 5) ? cls - 1 : NGX_HTTP_ACTINGWEB_CLASSES - 1;

    (void) ngx_atomic_fetch_add(
                          &amcf->metrics->requests[ctx->endpoint][cls], 1);

    return NGX_OK;
}


void
ngx_http_actingweb_metric_observe(ngx_http_actingweb_main_conf_t *amcf,
    ngx_uint_t histogram, ngx_msec_t ms)
{
    ngx_uint_t                       i;
    ngx_http_actingweb_histogram_t  *h;

    if (amcf->metrics == NULL) {
        return;
    }

    h = &amcf->metrics->h[histogram];

    for (i = 0; i < NGX_HTTP_ACTINGWEB_BUCKETS - 1; i++) {
        if (ms <= ngx_http_actingweb_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum_ms, ms);
}


char *
ngx_http_actingweb_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    if (alcf->enable != NGX_CONF_UNSET || alcf->status != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    alcf->status = 1;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_actingweb_module);
    amcf->metrics_used = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_actingweb_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_actingweb_status_handler(ngx_http_request_t *r)
{
    u_char                          *p, *start;
    ngx_int_t                        rc;
    ngx_str_t                        fmt, type;
    ngx_uint_t                       connected;
    ngx_http_actingweb_metrics_t    *mt;
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
    mt = amcf->metrics;

    if (mt == NULL) {
        return ngx_http_actingweb_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "metrics not available");
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK
        && fmt.len == 10 && ngx_strncmp(fmt.data, "prometheus", 10) == 0)
    {
        start = ngx_pnalloc(r->pool, 16384);
        if (start == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_http_actingweb_status_prometheus(start, mt, connected);

        p = ngx_cpymem(p, "# HELP actingweb_info module version\n"
                          "# TYPE actingweb_info gauge\n"
                          "actingweb_info{version=\""
                          NGX_HTTP_ACTINGWEB_VERSION "\"} 1\n",
                       sizeof("# HELP actingweb_info module version\n"
                              "# TYPE actingweb_info gauge\n"
                              "actingweb_info{version=\""
                              NGX_HTTP_ACTINGWEB_VERSION "\"} 1\n") - 1);

        ngx_str_set(&type, "text/plain; version=0.0.4");

        return ngx_http_actingweb_send(r, NGX_HTTP_OK, &type, start,
                                       p - start);
    }

    return ngx_http_actingweb_status_json(r, mt, connected);
}


/* fits in 16k: ~60 request lines, 19 metrics, 2 histograms */

static u_char *
ngx_http_actingweb_status_prometheus(u_char *p,
    ngx_http_actingweb_metrics_t *mt, ngx_uint_t connected)
{
    ngx_uint_t                       i, j, n, sum;
    ngx_http_actingweb_metric_t     *m;
    ngx_http_actingweb_histogram_t  *h;

    p = ngx_http_actingweb_status_head(p, "requests_total",
                                       "actor requests answered, by "
                                       "endpoint and status class",
                                       "counter");

    for (i = 0; i < NGX_HTTP_ACTINGWEB_ENDPOINTS; i++) {
        for (j = 0; j < NGX_HTTP_ACTINGWEB_CLASSES; j++) {
            n = mt->requests[i][j];

            if (n) {
                p = ngx_sprintf(p, "actingweb_requests_total{endpoint=\"%s\","
                                   "code=\"%s\"} %ui\n",
                                ngx_http_actingweb_endpoint_names[i],
                                ngx_http_actingweb_class_names[j], n);
            }
        }
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_M_MAX; i++) {
        m = &ngx_http_actingweb_metrics[i];

        if (m->help) {
            p = ngx_http_actingweb_status_head(p, m->family, m->help,
                                               m->gauge ? "gauge"
                                                        : "counter");
        }

        p = ngx_sprintf(p, "actingweb_%s%s%s%s %i\n", m->family,
                        m->label ? "{" : "", m->label ? m->label : "",
                        m->label ? "}" : "", (ngx_int_t) mt->m[i]);
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_H_MAX; i++) {
        h = &mt->h[i];

        p = ngx_http_actingweb_status_head(p,
                                           ngx_http_actingweb_histograms[i][0],
                                           ngx_http_actingweb_histograms[i][1],
                                           "histogram");
        sum = 0;

        for (j = 0; j < NGX_HTTP_ACTINGWEB_BUCKETS; j++) {
            sum += h->bucket[j];

            if (j < NGX_HTTP_ACTINGWEB_BUCKETS - 1) {
                n = ngx_http_actingweb_bounds[j];
                p = ngx_sprintf(p, "actingweb_%s_bucket{le=\"%ui.%03ui\"} "
                                   "%ui\n",
                                ngx_http_actingweb_histograms[i][0],
                                n / 1000, n % 1000, sum);

            } else {
                p = ngx_sprintf(p, "actingweb_%s_bucket{le=\"+Inf\"} %ui\n",
                                ngx_http_actingweb_histograms[i][0], sum);
            }
        }

        n = h->sum_ms;

        p = ngx_sprintf(p, "actingweb_%s_sum %ui.%03ui\n"
                           "actingweb_%s_count %ui\n",
                        ngx_http_actingweb_histograms[i][0],
                        n / 1000, n % 1000,
                        ngx_http_actingweb_histograms[i][0], sum);
    }

    p = ngx_http_actingweb_status_head(p, "redis_up",
                                       "Redis connection of the answering "
                                       "worker ready", "gauge");

    return ngx_sprintf(p, "actingweb_redis_up %ui\n", connected);
}


static u_char *
ngx_http_actingweb_status_head(u_char *p, const char *family,
    const char *help, const char *type)
{
    return ngx_sprintf(p, "# HELP actingweb_%s %s\n"
                          "# TYPE actingweb_%s %s\n",
                       family, help, family, type);
}


static ngx_int_t
ngx_http_actingweb_status_json(ngx_http_request_t *r,
    ngx_http_actingweb_metrics_t *mt, ngx_uint_t connected)
{
    cJSON       *out, *eps, *ep;
    ngx_uint_t   i, j, n, total, e4, e5;

    out = cJSON_CreateObject();
    if (out == NULL || ngx_http_actingweb_json_guard(r, out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(out, "version", NGX_HTTP_ACTINGWEB_VERSION);

    eps = cJSON_CreateObject();
    if (eps == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    total = 0;
    e4 = 0;
    e5 = 0;

    for (i = 0; i < NGX_HTTP_ACTINGWEB_ENDPOINTS; i++) {
        ep = NULL;

        for (j = 0; j < NGX_HTTP_ACTINGWEB_CLASSES; j++) {
            n = mt->requests[i][j];

            if (n == 0) {
                continue;
            }

            if (ep == NULL) {
                ep = cJSON_AddObjectToObject(eps,
                                     ngx_http_actingweb_endpoint_names[i]);
                if (ep == NULL) {
                    cJSON_Delete(eps);
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }
            }

            cJSON_AddNumberToObject(ep, ngx_http_actingweb_class_names[j],
                                    (double) n);
            total += n;
            e4 += (j == 3) ? n : 0;
            e5 += (j == 4) ? n : 0;
        }
    }

    cJSON_AddBoolToObject(out, "redis_up", connected ? 1 : 0);
    cJSON_AddNumberToObject(out, "requests", (double) total);
    cJSON_AddNumberToObject(out, "errors_4xx", (double) e4);
    cJSON_AddNumberToObject(out, "errors_5xx", (double) e5);
    cJSON_AddItemToObject(out, "endpoints", eps);

    for (i = 0; i < NGX_HTTP_ACTINGWEB_M_MAX; i++) {
        cJSON_AddNumberToObject(out, ngx_http_actingweb_metrics[i].json,
                                (double) (ngx_int_t) mt->m[i]);
    }

    return ngx_http_actingweb_send_json(r, NGX_HTTP_OK, out);
}


/*
 * Counts a failure that may come once per request while Redis or a peer
 * stalls.  Returns 1 when the caller logs its own line: the first of its
 * kind after a quiet second.  The rest go into a summary once a second.
 */

ngx_uint_t
ngx_http_actingweb_log_event(ngx_uint_t event)
{
    ngx_uint_t                   first;
    ngx_http_actingweb_flood_t  *fl;

    fl = &ngx_http_actingweb_flood;

    first = !fl->active[event] && event != NGX_HTTP_ACTINGWEB_EV_503;

    if (first) {
        fl->active[event] = 1;

    } else {
        fl->count[event]++;
    }

    if (!fl->timer.timer_set && !ngx_exiting) {
        fl->timer.handler = ngx_http_actingweb_log_summary;
        fl->dummy.fd = (ngx_socket_t) -1;
        fl->timer.data = &fl->dummy;
        fl->timer.log = ngx_cycle->log;
        fl->timer.cancelable = 1;
        ngx_add_timer(&fl->timer, 1000);
    }

    return first;
}


static void
ngx_http_actingweb_log_summary(ngx_event_t *ev)
{
    u_char                      *p, *last;
    ngx_uint_t                   i, any;
    ngx_http_actingweb_flood_t  *fl;
    u_char                       buf[NGX_MAX_ERROR_STR];

    static const char  *what[] = {
        NULL, "Redis commands timed out", "peer calls timed out"
    };

    fl = &ngx_http_actingweb_flood;

    any = 0;
    p = buf;
    last = buf + sizeof(buf);

    p = ngx_slprintf(p, last, "%ui requests answered 503",
                     fl->count[NGX_HTTP_ACTINGWEB_EV_503]);

    for (i = 0; i < NGX_HTTP_ACTINGWEB_EV_MAX; i++) {
        if (fl->count[i] == 0) {
            /* a quiet second: the next one is logged again */
            fl->active[i] = 0;
            continue;
        }

        any = 1;

        if (i != NGX_HTTP_ACTINGWEB_EV_503) {
            p = ngx_slprintf(p, last, ", %ui more %s", fl->count[i],
                             what[i]);
        }

        fl->count[i] = 0;
    }

    if (any) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "actingweb: %*s in the last second", p - buf, buf);

        if (!ngx_exiting) {
            ngx_add_timer(ev, 1000);
        }
    }
}


/* error log lines of an actor request name the actor */

void
ngx_http_actingweb_log_actor(ngx_http_request_t *r)
{
    if (r->log_handler == ngx_http_actingweb_log_error) {
        return;
    }

    ngx_http_actingweb_log_next = r->log_handler;
    r->log_handler = ngx_http_actingweb_log_error;
}


static u_char *
ngx_http_actingweb_log_error(ngx_http_request_t *r, ngx_http_request_t *sr,
    u_char *buf, size_t len)
{
    u_char                    *p;
    ngx_http_actingweb_ctx_t  *ctx;

    p = ngx_http_actingweb_log_next(r, sr, buf, len);

    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (ctx && ngx_http_actingweb_valid_id(&ctx->actor_id)) {
        p = ngx_snprintf(p, len - (p - buf), ", actor: %V", &ctx->actor_id);
    }

    return p;
}
