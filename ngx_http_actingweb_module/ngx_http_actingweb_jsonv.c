
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Strict RFC 8259 check of a JSON text before cJSON builds the tree.  cJSON
 * accepts "01", "1.", "-.5", raw control characters in strings, lone
 * surrogates, a byte order mark and any byte below 0x21 as white space, and
 * a PUT stores its body as sent: without this pass one such value would make
 * GET /properties unparsable.  One pass over the bytes, no allocation; the
 * open containers are kept in a small stack on the C stack.
 */


#include "ngx_http_actingweb_module.h"


#define ngx_http_actingweb_jsonv_digit(c)  ((c) >= '0' && (c) <= '9')


static u_char *ngx_http_actingweb_jsonv_space(u_char *p, u_char *last);
static u_char *ngx_http_actingweb_jsonv_string(u_char *p, u_char *last,
    const char **err);
static u_char *ngx_http_actingweb_jsonv_number(u_char *p, u_char *last,
    const char **err);
static ngx_int_t ngx_http_actingweb_jsonv_hex4(u_char *p, u_char *last,
    uint32_t *u);


/* bytes that end a run of plain string bytes: '"', '\\', < 0x20, >= 0x80 */

static const u_char  ngx_http_actingweb_jsonv_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x20 '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,    /* 0x50 '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};


/*
 * NGX_OK if data is exactly one RFC 8259 JSON text in UTF-8, with at most
 * NGX_HTTP_ACTINGWEB_JSON_DEPTH open containers and no "\u0000" (cJSON keeps
 * strings NUL-terminated and would cut them there); NGX_DECLINED with *err
 * set otherwise.
 */

ngx_int_t
ngx_http_actingweb_json_valid(u_char *p, size_t len, const char **err)
{
    u_char      *last, close[NGX_HTTP_ACTINGWEB_JSON_DEPTH];
    size_t       n;
    ngx_uint_t   depth;
    const char  *lit;

    last = p + len;
    depth = 0;

    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        *err = "malformed JSON: byte order mark";
        return NGX_DECLINED;
    }

value:

    p = ngx_http_actingweb_jsonv_space(p, last);

    if (p == last) {
        goto malformed;
    }

    switch (*p) {

    case '{':
    case '[':
        if (depth == NGX_HTTP_ACTINGWEB_JSON_DEPTH) {
            *err = "JSON nested too deeply";
            return NGX_DECLINED;
        }

        close[depth++] = (u_char) (*p == '{' ? '}' : ']');

        p = ngx_http_actingweb_jsonv_space(p + 1, last);

        if (p < last && *p == close[depth - 1]) {
            p++;
            depth--;
            goto next;
        }

        if (close[depth - 1] == '}') {
            goto member;
        }

        goto value;

    case '"':
        p = ngx_http_actingweb_jsonv_string(p + 1, last, err);
        break;

    case 't':
    case 'f':
    case 'n':
        lit = (*p == 't') ? "true" : (*p == 'f') ? "false" : "null";
        n = ngx_strlen(lit);

        if ((size_t) (last - p) < n || ngx_strncmp(p, lit, n) != 0) {
            goto malformed;
        }

        p += n;
        break;

    default:
        if (*p != '-' && !ngx_http_actingweb_jsonv_digit(*p)) {
            goto malformed;
        }

        p = ngx_http_actingweb_jsonv_number(p, last, err);
        break;
    }

    if (p == NULL) {
        return NGX_DECLINED;
    }

next:

    p = ngx_http_actingweb_jsonv_space(p, last);

    if (depth == 0) {
        if (p != last) {
            *err = "malformed JSON: data after the value";
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    if (p == last) {
        goto malformed;
    }

    if (*p == close[depth - 1]) {
        p++;
        depth--;
        goto next;
    }

    if (*p != ',') {
        goto malformed;
    }

    p = ngx_http_actingweb_jsonv_space(p + 1, last);

    if (close[depth - 1] == ']') {
        goto value;
    }

member:

    /* p is at the name of an object member, after any white space */

    if (p == last || *p != '"') {
        goto malformed;
    }

    p = ngx_http_actingweb_jsonv_string(p + 1, last, err);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p = ngx_http_actingweb_jsonv_space(p, last);

    if (p == last || *p != ':') {
        goto malformed;
    }

    p++;

    goto value;

malformed:

    *err = "malformed JSON";
    return NGX_DECLINED;
}


/* the four white space bytes of RFC 8259, no others */

static u_char *
ngx_http_actingweb_jsonv_space(u_char *p, u_char *last)
{
    while (p < last
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    return p;
}


/* p is past the opening quote; returns the byte after the closing one */

static u_char *
ngx_http_actingweb_jsonv_string(u_char *p, u_char *last, const char **err)
{
    u_char    *s;
    uint32_t   u, lo;

    for ( ;; ) {

        while (p < last && !ngx_http_actingweb_jsonv_stop[*p]) {
            p++;
        }

        if (p == last) {
            *err = "malformed JSON: unterminated string";
            return NULL;
        }

        if (*p == '"') {
            return p + 1;
        }

        if (*p >= 0x80) {

            /* valid UTF-8 splits into runs of bytes >= 0x80 that are whole */

            for (s = p; p < last && *p >= 0x80; p++) { /* void */ }

            if (!ngx_http_actingweb_utf8_valid(s, p - s)) {
                *err = "body is not valid UTF-8";
                return NULL;
            }

            continue;
        }

        if (*p != '\\') {
            *err = "malformed JSON: control character in a string";
            return NULL;
        }

        if (++p == last) {
            *err = "malformed JSON: unterminated string";
            return NULL;
        }

        switch (*p) {

        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p++;
            continue;

        case 'u':
            break;

        default:
            *err = "malformed JSON: bad escape in a string";
            return NULL;
        }

        if (ngx_http_actingweb_jsonv_hex4(p + 1, last, &u) != NGX_OK) {
            *err = "malformed JSON: \\u needs four hex digits";
            return NULL;
        }

        p += 5;

        if (u == 0) {
            *err = "\\u0000 is not supported in JSON strings";
            return NULL;
        }

        if (u < 0xd800 || u > 0xdfff) {
            continue;
        }

        /* a high surrogate must be followed by an escaped low one */

        if (u > 0xdbff
            || last - p < 2 || p[0] != '\\' || p[1] != 'u'
            || ngx_http_actingweb_jsonv_hex4(p + 2, last, &lo) != NGX_OK
            || lo < 0xdc00 || lo > 0xdfff)
        {
            *err = "malformed JSON: unpaired surrogate in a \\u escape";
            return NULL;
        }

        p += 6;
    }
}


/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */

static u_char *
ngx_http_actingweb_jsonv_number(u_char *p, u_char *last, const char **err)
{
    if (*p == '-') {
        p++;
    }

    if (p == last || !ngx_http_actingweb_jsonv_digit(*p)) {
        goto bad;
    }

    if (*p++ == '0') {
        if (p < last && ngx_http_actingweb_jsonv_digit(*p)) {
            goto bad;
        }

    } else {
        while (p < last && ngx_http_actingweb_jsonv_digit(*p)) {
            p++;
        }
    }

    if (p < last && *p == '.') {
        if (++p == last || !ngx_http_actingweb_jsonv_digit(*p)) {
            goto bad;
        }

        while (p < last && ngx_http_actingweb_jsonv_digit(*p)) {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        if (++p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || !ngx_http_actingweb_jsonv_digit(*p)) {
            goto bad;
        }

        while (p < last && ngx_http_actingweb_jsonv_digit(*p)) {
            p++;
        }
    }

    /* "1.5.2", "1e5e5", "1-2": still a number gone wrong */

    if (p == last
        || !(*p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
    {
        return p;
    }

bad:

    *err = "malformed JSON: bad number";
    return NULL;
}


static ngx_int_t
ngx_http_actingweb_jsonv_hex4(u_char *p, u_char *last, uint32_t *u)
{
    u_char      c;
    ngx_uint_t  i;

    if (last - p < 4) {
        return NGX_ERROR;
    }

    *u = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else {
            c |= 0x20;

            if (c < 'a' || c > 'f') {
                return NGX_ERROR;
            }

            c = (u_char) (c - 'a' + 10);
        }

        *u = (*u << 4) | c;
    }

    return NGX_OK;
}
