
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: the callback bodies and stored diffs that callback
 * delivery writes as text (ngx_http_actingweb_outbox_head, _entry, _body,
 * _escape) must be strict JSON for any names, URLs and data.  Input
 * lines: subscription id, target, subtarget, resource (empty: none),
 * granularity, the actor URL, then the diff's data (JSON; anything else
 * makes a resync whose url is that text).  The first byte of the input
 * picks the payload limit (a low one downgrades high bodies).
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_outbox.c"


static void ngx_http_actingweb_fuzz_strict(ngx_str_t *s);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                         limit, downgraded, *p;
    cJSON                         *json;
    ngx_str_t                      l[7], rest, head, entry, body, url;
    ngx_uint_t                     i;
    const char                    *err;
    ngx_http_actingweb_fuzz_t      f;
    ngx_http_actingweb_claim_t    *cl;
    ngx_http_actingweb_run_sub_t   rs;
    ngx_http_actingweb_run_diff_t  d;

    if (size == 0) {
        return 0;
    }

    limit = data[0];
    rest.data = (u_char *) data + 1;
    rest.len = size - 1;

    for (i = 0; i < 6; i++) {
        if (!ngx_http_actingweb_fuzz_split(rest.data, rest.len, &l[i], &rest))
        {
            return 0;
        }

        /* names and URLs come from Redis as checked UTF-8 */
        if (!ngx_http_actingweb_utf8_valid(l[i].data, l[i].len)
            || ngx_strlchr(l[i].data, l[i].data + l[i].len, '\0'))
        {
            return 0;
        }
    }

    l[6] = rest;

    ngx_http_actingweb_fuzz_request(&f);

    cl = ngx_pcalloc(f.pool, sizeof(ngx_http_actingweb_claim_t));
    ngx_http_actingweb_fuzz_assert(cl != NULL);
    ngx_str_set(&cl->ctx.actor_id, "0123456789abcdef0123456789abcdef");
    f.r->ctx[ngx_http_actingweb_module.ctx_index] = &cl->ctx;
    f.amcf->callback_max_payload = (limit & 1) ? 64 + limit : 256 * 1024;

    ngx_memzero(&rs, sizeof(ngx_http_actingweb_run_sub_t));
    ngx_memzero(&d, sizeof(ngx_http_actingweb_run_diff_t));

    rs.subid = l[0];
    rs.peer = l[0];
    rs.granularity = l[4];

    for (i = 0; i < 3; i++) {
        rs.at[i] = NULL;

        if (l[i + 1].len) {
            p = ngx_pnalloc(f.pool, l[i + 1].len + 1);
            ngx_http_actingweb_fuzz_assert(p != NULL);
            *ngx_cpymem(p, l[i + 1].data, l[i + 1].len) = '\0';
            rs.at[i] = (char *) p;
        }
    }

    if (rs.at[0] == NULL) {
        rs.at[1] = NULL;
    }

    if (rs.at[1] == NULL) {
        rs.at[2] = NULL;
    }

    url = l[5];

    d.seq = limit;
    ngx_str_set(&d.ts, "2026-12-01T00:00:00.000000Z");

    json = ngx_http_actingweb_json_parse(f.r,
               ngx_http_actingweb_fuzz_copy(&f, l[6].data, l[6].len),
               l[6].len, &err);

    if (json) {
        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_json_print(f.r, json, &d.data) == NGX_OK);

    } else if (ngx_http_actingweb_utf8_valid(l[6].data, l[6].len)
               && !ngx_strlchr(l[6].data, l[6].data + l[6].len, '\0'))
    {
        d.url = l[6];

    } else {
        ngx_http_actingweb_fuzz_done(&f);
        return 0;
    }

    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_outbox_head(f.r, &rs, &head) == NGX_OK);

    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_outbox_entry(f.r, &d, &entry) == NGX_OK);
    ngx_http_actingweb_fuzz_strict(&entry);

    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_outbox_body(f.r, &rs, &head, &url, &d, &body,
                                       &downgraded) == NGX_OK);
    ngx_http_actingweb_fuzz_strict(&body);

    /* a high body above the limit went as low */
    ngx_http_actingweb_fuzz_assert(
        d.data.len == 0 || downgraded
        || body.len <= f.amcf->callback_max_payload
        || (rs.granularity.len == 3
            && ngx_strncmp(rs.granularity.data, "low", 3) == 0));

    ngx_free(body.data);
    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}


static void
ngx_http_actingweb_fuzz_strict(ngx_str_t *s)
{
    const char  *err;

    if (ngx_http_actingweb_json_valid(s->data, s->len, &err) != NGX_OK) {
        fprintf(stderr, "fuzz: not JSON (%s): %.*s\n", err, (int) s->len,
                s->data);
        abort();
    }
}
