
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: a peer's callback (POST /callbacks/subscriptions/<peer>/
 * <sub>) as the subscriber parses it: the body, gzip-inflated up to the
 * body limit when it says so (ngx_http_actingweb_cb_inflate), then the
 * checks of ngx_http_actingweb_cb_payload (strict JSON, type, sequence,
 * data or url); a diff or resync with data is applied to an empty copy
 * (ngx_http_actingweb_cb_apply), twice: the second time it merges.
 *
 * The first byte chooses, the rest is the body:
 *   bits 0-1  0: plain; 1: the rest gzipped here; 2: the rest as it is,
 *             labelled gzip (inflate's error paths); 3: "identity"
 *   bits 2-3  client_max_body_size: 0 (the 16 MB default), 1 MB, 4 KB, 64
 *   bits 4-5  the length of the subscription's path, 1 to 3 (0: 3)
 *   bit 6     1: gzipped as two members, the halves (RFC 1952 allows it)
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_callbacks.c"


static void ngx_http_actingweb_fuzz_gzip(ngx_http_actingweb_fuzz_t *f,
    ngx_str_t *in, ngx_str_t *out, ngx_uint_t members);
static void ngx_http_actingweb_fuzz_apply(ngx_http_actingweb_fuzz_t *f,
    ngx_uint_t depth);


static ngx_str_t  ngx_http_actingweb_fuzz_subid = ngx_string("sub1");


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    off_t                        caps[] = { 0, 1024 * 1024, 4096, 64 };
    size_t                       max;
    ngx_str_t                    rest, body, inflated, peerid;
    ngx_uint_t                   how, rc;
    const char                  *msg;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_actingweb_fuzz_t    f;

    if (size == 0) {
        return 0;
    }

    ngx_http_actingweb_fuzz_request(&f);

    /* the body limit cb_inflate() reads: nginx's core module conf */

    ngx_http_core_module.ctx_index = 1;
    clcf = ngx_pcalloc(f.pool, sizeof(ngx_http_core_loc_conf_t));
    ngx_http_actingweb_fuzz_assert(clcf != NULL);
    clcf->client_max_body_size = caps[(data[0] >> 2) & 3];
    f.r->loc_conf[ngx_http_core_module.ctx_index] = clcf;

    max = clcf->client_max_body_size ? (size_t) clcf->client_max_body_size
                                     : NGX_HTTP_ACTINGWEB_CB_INFLATE;

    ngx_str_set(&peerid, "peer1");
    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_cb_state(f.r, NGX_HTTP_ACTINGWEB_CB_CALLBACK,
                                    &peerid, &ngx_http_actingweb_fuzz_subid)
        == NGX_OK);

    how = data[0] & 3;
    rest.data = ngx_http_actingweb_fuzz_copy(&f, data + 1, size - 1);
    rest.len = size - 1;

    if (how == 1) {
        ngx_http_actingweb_fuzz_gzip(&f, &rest, &body,
                                     (data[0] & 0x40) ? 2 : 1);

    } else {
        body = rest;
    }

    if (how == 1 || how == 2) {
        ngx_http_actingweb_fuzz_header(&f, "Content-Encoding",
                                       (u_char *) "gzip", 4);

        inflated = body;
        msg = NULL;
        rc = ngx_http_actingweb_cb_inflate(f.r, &inflated, &msg);

        /* never more than the limit; our own gzip comes back as it was */

        ngx_http_actingweb_fuzz_assert(
            rc == 0 || rc == NGX_HTTP_BAD_REQUEST
            || rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        ngx_http_actingweb_fuzz_assert(rc != 0 || inflated.len <= max);
        ngx_http_actingweb_fuzz_assert(rc == 0 || msg != NULL);

        if (how == 1) {
            ngx_http_actingweb_fuzz_assert(
                rest.len > max ? rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
                               : rc == 0 && inflated.len == rest.len
                                 && ngx_memcmp(inflated.data, rest.data,
                                               rest.len) == 0);
        }

    } else if (how == 3) {
        ngx_http_actingweb_fuzz_header(&f, "Content-Encoding",
                                       (u_char *) "identity", 8);
    }

    f.ctx->body = body;
    msg = NULL;

    rc = ngx_http_actingweb_cb_payload(f.r, &msg);

    ngx_http_actingweb_fuzz_assert(rc != NGX_HTTP_INTERNAL_SERVER_ERROR);
    ngx_http_actingweb_fuzz_assert(rc == 0 || msg != NULL);

    if (rc == 0) {
        ngx_http_actingweb_fuzz_apply(&f, (data[0] >> 4) & 3);

        /* the same change again: an object merges into the first */
        ngx_http_actingweb_fuzz_apply(&f, (data[0] >> 4) & 3);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}


/* in, gzip-wrapped (the encoding a publisher sends), in 1 or 2 members */

static void
ngx_http_actingweb_fuzz_gzip(ngx_http_actingweb_fuzz_t *f, ngx_str_t *in,
    ngx_str_t *out, ngx_uint_t members)
{
    size_t      part;
    z_stream    z;
    ngx_uint_t  i;

    ngx_memzero(&z, sizeof(z_stream));

    ngx_http_actingweb_fuzz_assert(
        deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS,
                     8, Z_DEFAULT_STRATEGY) == Z_OK);

    out->len = 2 * deflateBound(&z, in->len);
    out->data = ngx_pnalloc(f->pool, out->len);
    ngx_http_actingweb_fuzz_assert(out->data != NULL);

    z.next_in = in->data;
    z.next_out = out->data;
    z.avail_out = out->len;

    for (i = 0; i < members; i++) {
        part = (members == 1) ? in->len
               : (i == 0) ? in->len / 2 : in->len - in->len / 2;
        z.avail_in = part;

        ngx_http_actingweb_fuzz_assert(deflate(&z, Z_FINISH)
                                       == Z_STREAM_END);
        ngx_http_actingweb_fuzz_assert(deflateReset(&z) == Z_OK);
    }

    out->len = z.next_out - out->data;
    deflateEnd(&z);
}


/*
 * The accepted callback's data into the copy at a path of 1 to 3 names,
 * as cb_step() would; the copy stays an object, the first change to the
 * empty copy puts the data there as it is
 */

static void
ngx_http_actingweb_fuzz_apply(ngx_http_actingweb_fuzz_t *f, ngx_uint_t depth)
{
    cJSON                    *type, *data, *parent, *node;
    double                    seq;
    ngx_str_t                 a, b;
    ngx_uint_t                empty, nelts;
    const char               *names[] = { "properties", "sub", "res" };
    ngx_http_actingweb_cb_t  *st;

    st = ngx_http_actingweb_cb_get(f->r);

    type = cJSON_GetObjectItemCaseSensitive(st->in, "type");
    data = cJSON_GetObjectItemCaseSensitive(st->in, "data");

    if (data == NULL
        || (type && ngx_strcmp(type->valuestring, "permission") == 0))
    {
        return;
    }

    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_cb_seq(st->in, &seq) == NGX_OK && seq >= 1);

    empty = (st->copy == NULL);

    if (empty) {
        st->copy = cJSON_CreateObject();
        st->path = cJSON_CreateStringArray(names, depth ? depth : 3);
        ngx_http_actingweb_fuzz_assert(st->copy && st->path);
        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_json_guard(f->r, st->copy) == NGX_OK);
        ngx_http_actingweb_fuzz_assert(
            ngx_http_actingweb_json_guard(f->r, st->path) == NGX_OK);
    }

    nelts = st->changes.nelts;

    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_cb_apply(f->r, seq,
                                    type ? type->valuestring : "diff", data)
        == NGX_OK);

    ngx_http_actingweb_fuzz_assert(st->seq == seq);
    ngx_http_actingweb_fuzz_assert(st->changes.nelts == nelts + 3);
    ngx_http_actingweb_fuzz_assert(cJSON_IsObject(st->copy));

    if (!empty) {
        return;
    }

    parent = ngx_http_actingweb_cb_node(st->copy, st->path, 0);
    ngx_http_actingweb_fuzz_assert(cJSON_IsObject(parent));

    node = cJSON_GetObjectItemCaseSensitive(parent,
               cJSON_GetArrayItem(st->path, depth ? depth - 1 : 2)
               ->valuestring);

    if (cJSON_IsString(data) && data->valuestring[0] == '\0'
        && (type == NULL || ngx_strcmp(type->valuestring, "diff") == 0))
    {
        ngx_http_actingweb_fuzz_assert(node == NULL);
        return;
    }

    /* printed alike (cJSON_Compare() is not right for duplicate names) */

    ngx_http_actingweb_fuzz_assert(node != NULL);
    ngx_http_actingweb_fuzz_assert(
        ngx_http_actingweb_json_print(f->r, node, &a) == NGX_OK
        && ngx_http_actingweb_json_print(f->r, data, &b) == NGX_OK
        && a.len == b.len && ngx_memcmp(a.data, b.data, a.len) == 0);
}
