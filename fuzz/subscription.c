
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the body of a subscription request (POST
 * /<id>/subscriptions/<peer>): JSON, then the checks of
 * ngx_http_actingweb_sub_create() on target, subtarget and resource.
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_subscriptions.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                      *in, *item, *sub, *res;
    ngx_str_t                   name;
    const char                 *err;
    ngx_http_actingweb_fuzz_t   f;

    ngx_http_actingweb_fuzz_request(&f);

    in = size ? ngx_http_actingweb_json_parse(f.r,
                    ngx_http_actingweb_fuzz_copy(&f, data, size), size, &err)
              : NULL;

    item = cJSON_GetObjectItemCaseSensitive(in, "target");

    if (cJSON_IsObject(in) && cJSON_IsString(item)) {
        name.data = (u_char *) item->valuestring;
        name.len = ngx_strlen(name.data);

        if (ngx_http_actingweb_valid_name(&name)
            && ngx_http_actingweb_sub_name(in, "subtarget", &sub) == NGX_OK
            && ngx_http_actingweb_sub_name(in, "resource", &res) == NGX_OK)
        {
            ngx_http_actingweb_fuzz_assert(sub == NULL
                                           || cJSON_IsString(sub));
            ngx_http_actingweb_fuzz_assert(res == NULL
                                           || cJSON_IsString(res));
        }
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
