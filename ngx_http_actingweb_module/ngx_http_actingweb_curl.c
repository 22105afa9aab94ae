
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * A worker-level HTTP client: libcurl's multi_socket API driven by nginx
 * events and timers, for peer calls that must outlive the request that
 * caused them (callback delivery).  curl owns its sockets; nginx only gets
 * a connection structure around each fd so the event module can watch it.
 * Events are level-triggered, as for Redis.
 */


#include "ngx_http_actingweb_redis.h"

#include <curl/curl.h>


struct ngx_http_actingweb_curl_s {
    CURLM                          *multi;
    ngx_connection_t                dummy;     /* timer's ev->data */
    ngx_event_t                     timer;
    ngx_log_t                      *log;
    ngx_http_actingweb_main_conf_t *amcf;
    int                             running;
};


static int ngx_http_actingweb_curl_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_actingweb_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_actingweb_curl_timeout(ngx_event_t *ev);
static void ngx_http_actingweb_curl_event(ngx_event_t *ev);
static void ngx_http_actingweb_curl_check(ngx_http_actingweb_curl_t *cu);


ngx_int_t
ngx_http_actingweb_curl_init(ngx_cycle_t *cycle,
    ngx_http_actingweb_main_conf_t *amcf)
{
    curl_version_info_data     *info;
    ngx_http_actingweb_curl_t  *cu;

    /* once per process; nginx workers are single-threaded */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "actingweb: curl_global_init() failed");
        return NGX_ERROR;
    }

    info = curl_version_info(CURLVERSION_NOW);

    if (!(info->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "actingweb: libcurl %s resolves names synchronously; "
                      "peer URLs with host names could stall a worker",
                      info->version);
    }

    cu = ngx_pcalloc(cycle->pool, sizeof(ngx_http_actingweb_curl_t));
    if (cu == NULL) {
        return NGX_ERROR;
    }

    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        return NGX_ERROR;
    }

    cu->log = cycle->log;
    cu->amcf = amcf;
    cu->dummy.fd = (ngx_socket_t) -1;

    cu->timer.handler = ngx_http_actingweb_curl_timeout;
    cu->timer.data = &cu->dummy;
    cu->timer.log = cycle->log;
    cu->timer.cancelable = 1;

    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_actingweb_curl_socket);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_actingweb_curl_timer);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long) amcf->callback_concurrency);

    amcf->curl = cu;

    return NGX_OK;
}


void
ngx_http_actingweb_curl_exit(ngx_http_actingweb_main_conf_t *amcf)
{
    ngx_http_actingweb_curl_t  *cu;

    cu = amcf->curl;
    if (cu == NULL) {
        return;
    }

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (cu->timer.posted) {
        ngx_delete_posted_event(&cu->timer);
    }

    /* closes curl's sockets through CURL_POLL_REMOVE callbacks */

    curl_multi_cleanup(cu->multi);
    curl_global_cleanup();

    amcf->curl = NULL;
}


static int
ngx_http_actingweb_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_http_actingweb_curl_t  *cu = userp;

    ngx_connection_t  *c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_http_actingweb_release(c);
            curl_multi_assign(cu->multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, cu->log);
        if (c == NULL) {
            return -1;
        }

        c->data = cu;
        c->read->handler = ngx_http_actingweb_curl_event;
        c->write->handler = ngx_http_actingweb_curl_event;
        c->read->log = cu->log;
        c->write->log = cu->log;

        curl_multi_assign(cu->multi, s, c);
    }

    if (ngx_http_actingweb_watch(c->read, what & CURL_POLL_IN) != NGX_OK
        || ngx_http_actingweb_watch(c->write, what & CURL_POLL_OUT)
           != NGX_OK)
    {
        return -1;
    }

    return 0;
}


static int
ngx_http_actingweb_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_actingweb_curl_t  *cu = userp;

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (timeout_ms < 0) {
        return 0;
    }

    /*
     * curl must not be re-entered from its own callback: even "now" goes
     * through the event loop.
     */

    if (timeout_ms == 0) {
        if (!cu->timer.posted) {
            ngx_post_event(&cu->timer, &ngx_posted_events);
        }

        return 0;
    }

    ngx_add_timer(&cu->timer, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_http_actingweb_curl_timeout(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_actingweb_curl_t  *cu;

    c = ev->data;
    cu = (ngx_http_actingweb_curl_t *)
             ((u_char *) c - offsetof(ngx_http_actingweb_curl_t, dummy));

    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0,
                             &cu->running);

    ngx_http_actingweb_curl_check(cu);
}


static void
ngx_http_actingweb_curl_event(ngx_event_t *ev)
{
    int                         mask;
    ngx_socket_t                fd;
    ngx_connection_t           *c;
    ngx_http_actingweb_curl_t  *cu;

    c = ev->data;
    cu = c->data;
    fd = c->fd;

    mask = ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN;

    if (ev->error || c->close) {
        mask |= CURL_CSELECT_ERR;
    }

    /* may close the socket and free c: use the saved fd only */

    curl_multi_socket_action(cu->multi, fd, mask, &cu->running);

    ngx_http_actingweb_curl_check(cu);
}


/* finished transfers; their owners are added with callback delivery */

static void
ngx_http_actingweb_curl_check(ngx_http_actingweb_curl_t *cu)
{
    int        left;
    CURL      *easy;
    CURLMsg   *msg;

    while ((msg = curl_multi_info_read(cu->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;

        if (msg->data.result != CURLE_OK) {
            ngx_log_error(NGX_LOG_INFO, cu->log, 0,
                          "actingweb: peer call failed: %s",
                          curl_easy_strerror(msg->data.result));
        }

        curl_multi_remove_handle(cu->multi, easy);
        curl_easy_cleanup(easy);
    }
}
