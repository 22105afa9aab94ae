
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Fuzz target: what comes from peers.  The first line is a URL the module
 * would call (ngx_http_actingweb_peer_url_valid: from a trust body or a
 * peer's record), the rest a peer's answer to a trust request: JSON, then
 * the members ngx_http_actingweb_trust_asked() reads.  The first 17 bytes
 * also make an address and a rule for the CIDR match of peer rules.
 */


#include "fuzz.h"

#include "../ngx_http_actingweb_module/ngx_http_actingweb_peer.c"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                           *json;
    ngx_str_t                        url, answer, id;
    ngx_cidr_t                       cidr;
    ngx_int_t                        rc;
    const char                      *err;
    struct sockaddr_in               sin;
    struct sockaddr_in6              sin6;
    ngx_http_actingweb_fuzz_t        f;
    ngx_http_actingweb_peer_call_t   pc;

    if (size >= 17) {
        ngx_memzero(&cidr, sizeof(ngx_cidr_t));
        ngx_memzero(&sin, sizeof(struct sockaddr_in));
        ngx_memzero(&sin6, sizeof(struct sockaddr_in6));

        cidr.family = (data[0] & 1) ? AF_INET6 : AF_INET;
        ngx_memcpy(&cidr.u.in6.addr, data + 1, 16);
        ngx_memcpy(&cidr.u.in6.mask, data + 1, 16);
        if (cidr.family == AF_INET) {
            ngx_memcpy(&cidr.u.in.addr, data + 1, 4);
            ngx_memcpy(&cidr.u.in.mask, data + 5, 4);
        }

        sin.sin_family = AF_INET;
        ngx_memcpy(&sin.sin_addr, data + 9, 4);
        sin6.sin6_family = AF_INET6;
        ngx_memcpy(&sin6.sin6_addr, data + 1, 16);

        (void) ngx_http_actingweb_peer_match(&cidr, (struct sockaddr *) &sin);
        (void) ngx_http_actingweb_peer_match(&cidr,
                                             (struct sockaddr *) &sin6);
    }

    if (!ngx_http_actingweb_fuzz_split(data, size, &url, &answer)) {
        return 0;
    }

    ngx_http_actingweb_fuzz_request(&f);

    ngx_memzero(&pc, sizeof(ngx_http_actingweb_peer_call_t));
    pc.url.data = ngx_http_actingweb_fuzz_copy(&f, url.data, url.len);
    pc.url.len = url.len;

    rc = ngx_http_actingweb_peer_url_valid(&pc);

    if (rc == NGX_OK) {
        ngx_http_actingweb_fuzz_assert(pc.host.len > 0);
        ngx_http_actingweb_fuzz_assert(pc.host.data >= pc.url.data
                                       && pc.host.data + pc.host.len
                                          <= pc.url.data + pc.url.len);
    }

    json = answer.len ? ngx_http_actingweb_json_parse(f.r,
                            ngx_http_actingweb_fuzz_copy(&f, answer.data,
                                                         answer.len),
                            answer.len, &err)
                      : NULL;

    if (cJSON_IsObject(json)
        && ngx_http_actingweb_json_str(json, "id", &id) == NGX_OK)
    {
        ngx_http_actingweb_fuzz_assert(id.data[id.len] == '\0');
        (void) ngx_http_actingweb_json_str(json, "type", &id);
        (void) ngx_http_actingweb_json_str(json, "secret", &id);
    }

    ngx_http_actingweb_fuzz_done(&f);

    return 0;
}
