
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the body of a trust request from a peer (POST
 * /<id>/trust/<rel>, JSON or a form): the checks of
 * ngx_http_actingweb_trust_receive() on it, URL parser included.  The
 * first byte picks the Content-Type (odd: a form).
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_trust.c"


static const u_char  ngx_http_actingweb_fuzz_trust_form[] =
    "application/x-www-form-urlencoded";


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                       *in;
    ngx_str_t                    body, baseuri;
    const char                  *err;
    ngx_http_actingweb_fuzz_t    f;
    ngx_http_actingweb_trust_t  *ts;

    if (size == 0) {
        return 0;
    }

    ngx_http_actingweb_fuzz_request(&f);

    ts = ngx_pcalloc(f.pool, sizeof(ngx_http_actingweb_trust_t));
    ngx_http_actingweb_fuzz_assert(ts != NULL);
    f.ctx->data = ts;

    if (data[0] & 1) {
        f.r->headers_in.content_type = ngx_http_actingweb_fuzz_header(&f,
            "Content-Type", ngx_http_actingweb_fuzz_trust_form,
            sizeof(ngx_http_actingweb_fuzz_trust_form) - 1);
    }

    body.data = ngx_http_actingweb_fuzz_copy(&f, data + 1, size - 1);
    body.len = size - 1;

    in = NULL;

    if (body.len && ngx_http_actingweb_is_form(f.r, &body)) {
        (void) ngx_http_actingweb_form_parse(f.r, &body, &in, &err);

    } else if (body.len) {
        in = ngx_http_actingweb_json_parse(f.r, body.data, body.len, &err);
    }

    if (cJSON_IsObject(in)
        && ngx_http_actingweb_trust_str(f.r, in, "baseuri", &baseuri,
                                        NGX_HTTP_ACTINGWEB_TURL_MAX, 1)
           == NGX_OK
        && ngx_http_actingweb_trust_str(f.r, in, "id", &ts->peerid,
                                        NGX_HTTP_ACTINGWEB_PEERID_MAX, 1)
           == NGX_OK
        && ngx_http_actingweb_trust_str(f.r, in, "secret", &ts->secret,
                                        NGX_HTTP_ACTINGWEB_REL_MAX * 4, 1)
           == NGX_OK
        && ngx_http_actingweb_trust_str(f.r, in, "desc", &ts->desc,
                                        NGX_HTTP_ACTINGWEB_DESC_MAX, 0)
           == NGX_OK)
    {
        while (baseuri.len && baseuri.data[baseuri.len - 1] == '/') {
            baseuri.len--;
        }

        (void) ngx_http_actingweb_trust_url(&baseuri);
        (void) ngx_http_actingweb_trust_token(&ts->peerid,
                                              NGX_HTTP_ACTINGWEB_PEERID_MAX);
        (void) ngx_http_actingweb_trust_token(&ts->secret,
                                              NGX_HTTP_ACTINGWEB_REL_MAX * 4);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
