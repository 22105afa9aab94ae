
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: an application/x-www-form-urlencoded body
 * (ngx_http_actingweb_is_form, ngx_http_actingweb_form_parse).  Every
 * member of what it makes is a string of valid UTF-8.
 */


#include "fuzz.h"


static const u_char  ngx_http_actingweb_fuzz_form_type[] =
    "application/x-www-form-urlencoded";


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                      *obj, *item;
    ngx_int_t                   rc;
    ngx_str_t                   body;
    const char                 *err;
    ngx_http_actingweb_fuzz_t   f;

    ngx_http_actingweb_fuzz_request(&f);

    f.r->headers_in.content_type = ngx_http_actingweb_fuzz_header(&f,
        "Content-Type", ngx_http_actingweb_fuzz_form_type,
        sizeof(ngx_http_actingweb_fuzz_form_type) - 1);

    body.data = ngx_http_actingweb_fuzz_copy(&f, data, size);
    body.len = size;

    (void) ngx_http_actingweb_is_form(f.r, &body);

    obj = NULL;
    err = NULL;
    rc = ngx_http_actingweb_form_parse(f.r, &body, &obj, &err);

    if (rc == NGX_OK) {
        ngx_http_actingweb_fuzz_assert(cJSON_IsObject(obj));

        cJSON_ArrayForEach(item, obj) {
            ngx_http_actingweb_fuzz_assert(cJSON_IsString(item));
            ngx_http_actingweb_fuzz_assert(
                ngx_http_actingweb_utf8_valid((u_char *) item->valuestring,
                                              strlen(item->valuestring)));
            ngx_http_actingweb_fuzz_assert(
                ngx_http_actingweb_utf8_valid((u_char *) item->string,
                                              strlen(item->string)));
        }

    } else {
        ngx_http_actingweb_fuzz_assert(err != NULL);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
