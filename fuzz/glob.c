
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: trust permissions (PUT /<id>/permissions/<peer>): the JSON
 * body checked by ngx_http_actingweb_perm_valid(), then its patterns
 * matched against a property name (ngx_http_actingweb_perm_any).  The
 * first line is the name, the rest the body.
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_permissions.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *name;
    cJSON                      *perm, *kind;
    ngx_str_t                   n, body;
    const char                 *err;
    ngx_http_actingweb_fuzz_t   f;

    if (!ngx_http_actingweb_fuzz_split(data, size, &n, &body)
        || body.len == 0)
    {
        return 0;
    }

    ngx_http_actingweb_fuzz_request(&f);

    name = ngx_pnalloc(f.pool, n.len + 1);
    ngx_http_actingweb_fuzz_assert(name != NULL);
    ngx_memcpy(name, n.data, n.len);
    name[n.len] = '\0';

    perm = ngx_http_actingweb_json_parse(f.r,
               ngx_http_actingweb_fuzz_copy(&f, body.data, body.len),
               body.len, &err);

    if (cJSON_IsObject(perm)
        && ngx_http_actingweb_perm_valid(perm) == NGX_OK)
    {
        cJSON_ArrayForEach(kind, perm) {
            (void) ngx_http_actingweb_perm_any(
                cJSON_GetObjectItemCaseSensitive(kind, "patterns"),
                (char *) name);
            (void) ngx_http_actingweb_perm_any(
                cJSON_GetObjectItemCaseSensitive(kind, "excluded_patterns"),
                (char *) name);
        }
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
