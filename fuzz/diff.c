
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the diff of a property write for a subscription
 * (ngx_http_actingweb_sub_shape).  Input lines: the subscription's
 * subtarget and resource (empty: none), the write's path (a JSON array),
 * its value (JSON); the first byte of the first line set to "-" makes the
 * write a delete.
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_subscriptions.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                      *path, *value, *diff;
    ngx_str_t                   l[4], rest;
    ngx_int_t                   rc;
    ngx_uint_t                  i, ns, del;
    const char                 *err, *sub[2];
    ngx_http_actingweb_fuzz_t   f;

    rest.data = (u_char *) data;
    rest.len = size;

    for (i = 0; i < 3; i++) {
        if (!ngx_http_actingweb_fuzz_split(rest.data, rest.len, &l[i], &rest))
        {
            return 0;
        }
    }

    l[3] = rest;

    ngx_http_actingweb_fuzz_request(&f);

    del = (l[0].len && l[0].data[0] == '-');
    if (del) {
        l[0].data++;
        l[0].len--;
    }

    ns = 0;

    for (i = 0; i < 2 && l[i].len; i++) {
        sub[i] = (char *) ngx_pnalloc(f.pool, l[i].len + 1);
        ngx_http_actingweb_fuzz_assert(sub[i] != NULL);
        ngx_memcpy((u_char *) sub[i], l[i].data, l[i].len);
        ((u_char *) sub[i])[l[i].len] = '\0';
        ns++;
    }

    path = ngx_http_actingweb_json_parse(f.r,
               ngx_http_actingweb_fuzz_copy(&f, l[2].data, l[2].len),
               l[2].len, &err);
    value = ngx_http_actingweb_json_parse(f.r,
               ngx_http_actingweb_fuzz_copy(&f, l[3].data, l[3].len),
               l[3].len, &err);

    if (cJSON_IsArray(path) && value) {
        diff = NULL;
        rc = ngx_http_actingweb_sub_shape(path, del, value, sub, ns, &diff);

        if (rc == NGX_OK) {
            ngx_http_actingweb_fuzz_assert(diff != NULL);
            cJSON_Delete(diff);

        } else {
            ngx_http_actingweb_fuzz_assert(rc == NGX_DECLINED);
        }
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
