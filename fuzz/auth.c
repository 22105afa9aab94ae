
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the Authorization header (ngx_http_actingweb_auth_parse:
 * Basic with base64 user:pass, Bearer).
 */


#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *end;
    ngx_http_actingweb_fuzz_t   f;

    ngx_http_actingweb_fuzz_request(&f);

    f.r->headers_in.authorization = ngx_http_actingweb_fuzz_header(&f,
                                        "Authorization", data, size);
    end = f.r->headers_in.authorization->value.data + size;

    ngx_http_actingweb_auth_parse(f.r, f.ctx);

    switch (f.ctx->auth) {

    case NGX_HTTP_ACTINGWEB_AUTH_BASIC:
        ngx_http_actingweb_fuzz_assert(f.ctx->user.data + f.ctx->user.len
                                       < f.ctx->pass.data);
        ngx_http_actingweb_fuzz_assert(f.ctx->pass.len < size);
        break;

    case NGX_HTTP_ACTINGWEB_AUTH_BEARER:
        ngx_http_actingweb_fuzz_assert(f.ctx->pass.len > 0);
        ngx_http_actingweb_fuzz_assert(f.ctx->pass.data + f.ctx->pass.len
                                       == end);
        break;

    default:
        ngx_http_actingweb_fuzz_assert(f.ctx->auth
                                       == NGX_HTTP_ACTINGWEB_AUTH_INVALID);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
