
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: a request body as JSON (ngx_http_actingweb_json_parse: the
 * strict validator with its depth, UTF-8 and trailing data rules, then
 * cJSON).  Whatever the validator lets through, cJSON must parse, and the
 * tree must print as JSON the validator takes again.
 */


#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *p;
    cJSON                      *json;
    ngx_str_t                   out;
    const char                 *err;
    ngx_int_t                   valid;
    ngx_http_actingweb_fuzz_t   f;

    ngx_http_actingweb_fuzz_request(&f);

    p = ngx_http_actingweb_fuzz_copy(&f, data, size);

    err = NULL;
    valid = ngx_http_actingweb_json_valid(p, size, &err);
    ngx_http_actingweb_fuzz_assert(valid == NGX_OK || err != NULL);

    err = NULL;
    json = ngx_http_actingweb_json_parse(f.r, p, size, &err);

    if (valid == NGX_OK && size) {
        ngx_http_actingweb_fuzz_assert(json != NULL);
        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_utf8_valid(p, size));

        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_json_print(f.r, json, &out) == NGX_OK);

        err = NULL;
        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_json_valid(out.data, out.len, &err)
            == NGX_OK);

    } else {
        ngx_http_actingweb_fuzz_assert(json == NULL && err != NULL);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
