
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Small helpers: random ids, UTF-8 checks, percent-decoding, names, forms,
 * request headers.
 */


#include "ngx_http_actingweb_module.h"

#include <openssl/rand.h>


/* len hex digits of OpenSSL randomness; dst gets len bytes */

ngx_int_t
ngx_http_actingweb_random_hex(u_char *dst, size_t len)
{
    u_char  raw[64];

    if (len > 2 * sizeof(raw) || len % 2) {
        return NGX_ERROR;
    }

    if (RAND_bytes(raw, (int) (len / 2)) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(dst, raw, len / 2);

    return NGX_OK;
}


/* strict: no overlong forms, no surrogates, nothing above U+10FFFF */

ngx_int_t
ngx_http_actingweb_utf8_valid(u_char *p, size_t len)
{
    u_char      c, *last;
    uint32_t    u;
    ngx_uint_t  n, i;

    last = p + len;

    while (p < last) {
        c = *p++;

        if (c < 0x80) {
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            u = c & 0x1f;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            u = c & 0x0f;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            u = c & 0x07;

        } else {
            return 0;
        }

        if ((size_t) (last - p) < n) {
            return 0;
        }

        for (i = 0; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return 0;
            }

            u = (u << 6) | (p[i] & 0x3f);
        }

        p += n;

        if ((n == 2 && u < 0x800)
            || (n == 3 && u < 0x10000)
            || (u >= 0xd800 && u <= 0xdfff)
            || u > 0x10ffff)
        {
            return 0;
        }
    }

    return 1;
}


/* percent-decoding; "+" is a space in forms; bad escapes are errors */

ngx_int_t
ngx_http_actingweb_unescape(ngx_pool_t *pool, u_char *src, size_t len,
    ngx_str_t *dst, ngx_uint_t form)
{
    u_char      *d, *last;
    ngx_int_t    hi, lo;

    d = ngx_pnalloc(pool, len + 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    dst->data = d;
    last = src + len;

    while (src < last) {

        if (*src == '%') {
            if (last - src < 3) {
                return NGX_DECLINED;
            }

            hi = ngx_hextoi(src + 1, 1);
            lo = ngx_hextoi(src + 2, 1);

            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                return NGX_DECLINED;
            }

            *d++ = (u_char) ((hi << 4) | lo);
            src += 3;
            continue;
        }

        *d++ = (form && *src == '+') ? ' ' : *src;
        src++;
    }

    dst->len = d - dst->data;
    *d = '\0';

    return NGX_OK;
}


/* a property name or path segment */

ngx_int_t
ngx_http_actingweb_valid_name(ngx_str_t *name)
{
    u_char  *p, *last;

    if (name->len == 0 || name->len > NGX_HTTP_ACTINGWEB_NAME_MAX) {
        return 0;
    }

    if ((name->len == 1 && name->data[0] == '.')
        || (name->len == 2 && name->data[0] == '.' && name->data[1] == '.'))
    {
        return 0;
    }

    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '/') {
            return 0;
        }
    }

    return ngx_http_actingweb_utf8_valid(name->data, name->len);
}


/* ids made by this module are 32 lowercase hex digits */

ngx_int_t
ngx_http_actingweb_valid_id(ngx_str_t *id)
{
    u_char  *p, *last;

    if (id->len != NGX_HTTP_ACTINGWEB_ID_LEN) {
        return 0;
    }

    last = id->data + id->len;

    for (p = id->data; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* application/x-www-form-urlencoded into a JSON object of strings */

ngx_int_t
ngx_http_actingweb_form_parse(ngx_http_request_t *r, ngx_str_t *body,
    cJSON **out, const char **err)
{
    u_char     *p, *last, *amp, *eq;
    cJSON      *obj, *s;
    ngx_str_t   key, value;

    obj = cJSON_CreateObject();
    if (obj == NULL || ngx_http_actingweb_json_guard(r, obj) != NGX_OK) {
        *err = "out of memory";
        return NGX_ERROR;
    }

    p = body->data;
    last = p + body->len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (amp == p) {
            p++;
            continue;
        }

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        if (ngx_http_actingweb_unescape(r->pool, p, eq - p, &key, 1)
            != NGX_OK
            || ngx_http_actingweb_unescape(r->pool,
                                           eq < amp ? eq + 1 : amp,
                                           eq < amp ? amp - eq - 1 : 0,
                                           &value, 1)
               != NGX_OK)
        {
            *err = "malformed form data";
            return NGX_DECLINED;
        }

        if (ngx_strlen(key.data) != key.len
            || !ngx_http_actingweb_utf8_valid(key.data, key.len)
            || !ngx_http_actingweb_utf8_valid(value.data, value.len)
            || ngx_strlen(value.data) != value.len)
        {
            *err = "form data is not valid UTF-8 text";
            return NGX_DECLINED;
        }

        s = cJSON_CreateString((char *) value.data);
        if (s == NULL) {
            *err = "out of memory";
            return NGX_ERROR;
        }

        /* key.data is NUL-terminated by ngx_http_actingweb_unescape() */

        cJSON_AddItemToObject(obj, (char *) key.data, s);

        p = amp + 1;
    }

    *out = obj;

    return NGX_OK;
}


/*
 * A form body?  "curl -d '{...}'" labels JSON as a form, so a body that
 * starts with "{" is taken as JSON whatever its Content-Type says.
 */

ngx_int_t
ngx_http_actingweb_is_form(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char     *p, *last;
    ngx_str_t  *ct;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    ct = &r->headers_in.content_type->value;

    if (ct->len < sizeof("application/x-www-form-urlencoded") - 1
        || ngx_strncasecmp(ct->data,
                           (u_char *) "application/x-www-form-urlencoded",
                           sizeof("application/x-www-form-urlencoded") - 1)
           != 0)
    {
        return 0;
    }

    last = body->data + body->len;

    for (p = body->data; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            return *p != '{';
        }
    }

    return 1;
}


/*
 * Foreign sockets (hiredis, curl) in nginx's event loop: level-triggered
 * registration, because those libraries read at most a chunk per call.
 */

ngx_int_t
ngx_http_actingweb_watch(ngx_event_t *ev, ngx_uint_t on)
{
    ngx_int_t  event;

    event = ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        return ngx_add_event(ev, event, NGX_LEVEL_EVENT);
    }

    if (!on && ev->active) {
        return ngx_del_event(ev, event, 0);
    }

    return NGX_OK;
}


/* stops watching a socket its library is about to close (it owns the fd) */

void
ngx_http_actingweb_release(ngx_connection_t *c)
{
    (void) ngx_http_actingweb_watch(c->read, 0);
    (void) ngx_http_actingweb_watch(c->write, 0);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/* the first request header of that name (case-insensitive), or NULL */

ngx_table_elt_t *
ngx_http_actingweb_header_in(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}
