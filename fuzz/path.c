
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the request path (ngx_http_actingweb_parse_path: splitting
 * the raw URI, percent-decoding each segment, names, ids, routes).  The
 * first line of the input is the location's prefix, the rest the URI.
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_handler.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc;
    ngx_str_t                   prefix, uri;
    ngx_uint_t                  i;
    const char                 *err;
    ngx_http_actingweb_fuzz_t   f;

    if (!ngx_http_actingweb_fuzz_split(data, size, &prefix, &uri)) {
        return 0;
    }

    ngx_http_actingweb_fuzz_request(&f);

    f.alcf->prefix.data = ngx_http_actingweb_fuzz_copy(&f, prefix.data,
                                                       prefix.len);
    f.alcf->prefix.len = prefix.len;

    f.r->unparsed_uri.data = ngx_http_actingweb_fuzz_copy(&f, uri.data,
                                                          uri.len);
    f.r->unparsed_uri.len = uri.len;
    f.r->uri = f.r->unparsed_uri;
    f.r->valid_unparsed_uri = (size && data[0] & 1);

    err = NULL;
    rc = ngx_http_actingweb_parse_path(f.r, f.ctx, &err);

    if (rc == NGX_OK) {
        ngx_http_actingweb_fuzz_assert(f.ctx->endpoint
                                       <= NGX_HTTP_ACTINGWEB_EP_OTHER);
        ngx_http_actingweb_fuzz_assert(f.ctx->nsegs
                                       <= NGX_HTTP_ACTINGWEB_SEGMENTS_MAX);

        for (i = 0; i < f.ctx->nsegs; i++) {
            ngx_http_actingweb_fuzz_assert(
                ngx_http_actingweb_valid_name(&f.ctx->segs[i]));
            ngx_http_actingweb_fuzz_assert(
                f.ctx->segs[i].data[f.ctx->segs[i].len] == '\0');
        }

        if (f.ctx->endpoint != NGX_HTTP_ACTINGWEB_EP_FACTORY) {
            ngx_http_actingweb_fuzz_assert(
                ngx_http_actingweb_valid_id(&f.ctx->actor_id));
        }

    } else {
        ngx_http_actingweb_fuzz_assert(rc == NGX_ERROR || err != NULL);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
