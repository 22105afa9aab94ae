
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 */


#ifndef _NGX_HTTP_ACTINGWEB_PEER_H_INCLUDED_
#define _NGX_HTTP_ACTINGWEB_PEER_H_INCLUDED_


#include "ngx_http_actingweb_module.h"


typedef enum {
    NGX_HTTP_ACTINGWEB_PEER_OK = 0,       /* the peer answered (any status) */
    NGX_HTTP_ACTINGWEB_PEER_BAD_URL,      /* not an http(s) URL we can call */
    NGX_HTTP_ACTINGWEB_PEER_DENIED,       /* address refused by policy */
    NGX_HTTP_ACTINGWEB_PEER_RESOLVE,      /* host name did not resolve */
    NGX_HTTP_ACTINGWEB_PEER_FAILED,       /* connection failed or broke */
    NGX_HTTP_ACTINGWEB_PEER_TIMEOUT,      /* actingweb_peer_timeout passed */
    NGX_HTTP_ACTINGWEB_PEER_TOO_BIG,      /* over subrequest_output_buffer */
    NGX_HTTP_ACTINGWEB_PEER_BAD_JSON,     /* answer is not strict JSON */
    NGX_HTTP_ACTINGWEB_PEER_CONFIG        /* peer location not usable */
} ngx_http_actingweb_peer_error_e;


typedef struct ngx_http_actingweb_peer_call_s  ngx_http_actingweb_peer_call_t;

/*
 * Runs in the parent request once the call ended (never inside the
 * subrequest's finalization), exactly once per call; the handler owns the
 * request from there: it finalizes it or starts more work.
 */
typedef void (*ngx_http_actingweb_peer_handler_pt)(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);


struct ngx_http_actingweb_peer_call_s {
    /* filled in by the caller */
    ngx_uint_t                       method;      /* NGX_HTTP_GET, ... */
    ngx_str_t                        url;         /* absolute http(s) */
    ngx_str_t                        secret;      /* Bearer; empty: none */
    ngx_str_t                        authorization;  /* whole header
                                                     value, instead of
                                                     the Bearer secret */
    ngx_str_t                        body;        /* JSON; empty: none */
    ngx_http_actingweb_peer_handler_pt  handler;
    void                            *data;
    unsigned                         finish:1;    /* even if the client
                                                     leaves */

    /* the outcome */
    ngx_http_actingweb_peer_error_e  error;
    ngx_uint_t                       status;      /* the peer's, if OK */
    ngx_str_t                        answer;      /* raw body */
    cJSON                           *json;        /* strict JSON or NULL */
    const char                      *message;     /* for errors */

    /* internal */
    ngx_http_request_t              *request;
    ngx_http_request_t              *sr;
    ngx_http_actingweb_peer_call_t  *next;
    ngx_resolver_ctx_t              *resolving;
    ngx_str_t                        host;
    ngx_str_t                        host_header; /* $actingweb_peer_host */
    u_char                          *authority;   /* in url: host[:port] */
    u_char                          *rest;        /* after the authority */
    ngx_str_t                        target;      /* url with the checked
                                                     address, or empty */
    in_port_t                        port;
    ngx_event_t                      timer;
    ngx_msec_t                       timeout;
    ngx_msec_t                       start;       /* for the latency */
    unsigned                         done:1;      /* outcome known */
    unsigned                         handled:1;   /* handler ran */
    unsigned                         timed_out:1;
    unsigned                         finished:1;  /* subrequest ended */
    unsigned                         starting:1;  /* inside peer_call */
};


ngx_int_t ngx_http_actingweb_peer_call(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
ngx_int_t ngx_http_actingweb_peer_run(ngx_http_request_t *r,
    ngx_http_actingweb_peer_call_t *pc);
ngx_int_t ngx_http_actingweb_peer_url_valid(
    ngx_http_actingweb_peer_call_t *pc);
ngx_uint_t ngx_http_actingweb_peer_busy(ngx_http_request_t *r);
ngx_uint_t ngx_http_actingweb_peer_status(ngx_http_actingweb_peer_call_t *pc);
ngx_int_t ngx_http_actingweb_peer_deadline(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err);
ngx_int_t ngx_http_actingweb_self_url(ngx_http_request_t *r, ngx_str_t *id,
    ngx_str_t *url);

char *ngx_http_actingweb_peer_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_actingweb_peer_pin_init(ngx_conf_t *cf);
ngx_int_t ngx_http_actingweb_peer_rules_merge(ngx_conf_t *cf,
    ngx_http_actingweb_loc_conf_t *prev, ngx_http_actingweb_loc_conf_t *conf);


#endif /* _NGX_HTTP_ACTINGWEB_PEER_H_INCLUDED_ */
