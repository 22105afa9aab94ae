
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Creator authentication: HTTP Basic with the actor's creator name and
 * passphrase, stored as a salted PBKDF2-SHA256 hash.
 *
 * The key derivation is deliberately slow, so each worker remembers the
 * credentials it has verified: a slot, found by SHA-256 over (actor id,
 * user, passphrase), holds the stored hash they matched.  A request whose
 * stored hash is still that one needs no key derivation; a new passphrase
 * changes the stored hash, so old entries stop matching by themselves.
 * Writes use the same memory to skip reading the actor first: they send
 * the remembered hash along and the write script checks it (one round
 * trip), see ngx_http_actingweb_auth_known().
 */


#include "ngx_http_actingweb_module.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>


#define NGX_HTTP_ACTINGWEB_KDF_ITER      4096
#define NGX_HTTP_ACTINGWEB_SALT_LEN      16
#define NGX_HTTP_ACTINGWEB_DK_LEN        32
#define NGX_HTTP_ACTINGWEB_CACHE_SLOTS   4096
#define NGX_HTTP_ACTINGWEB_DIGEST_LEN    32
#define NGX_HTTP_ACTINGWEB_HASH_MAX      128


typedef struct {
    u_char                           key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];
    u_char                           hash[NGX_HTTP_ACTINGWEB_HASH_MAX];
    size_t                           len;
} ngx_http_actingweb_cred_t;

/* a passphrase used as trustee bearer must carry more than 80 bits */
#define NGX_HTTP_ACTINGWEB_TRUSTEE_MIN   13


static ngx_int_t ngx_http_actingweb_auth_verify(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user, ngx_str_t *pass);
static ngx_int_t ngx_http_actingweb_kdf_check(ngx_http_request_t *r,
    ngx_str_t *stored, ngx_str_t *pass);
static ngx_http_actingweb_cred_t *ngx_http_actingweb_cache_slot(
    ngx_http_request_t *r, ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user,
    ngx_str_t *pass, u_char *key);


void
ngx_http_actingweb_auth_parse(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx)
{
    u_char     *colon;
    ngx_str_t   v, decoded;

    if (r->headers_in.authorization == NULL) {
        ctx->auth = NGX_HTTP_ACTINGWEB_AUTH_NONE;
        return;
    }

    v = r->headers_in.authorization->value;
    ctx->auth = NGX_HTTP_ACTINGWEB_AUTH_INVALID;

    if (v.len > 6 && ngx_strncasecmp(v.data, (u_char *) "Basic ", 6) == 0) {
        v.data += 6;
        v.len -= 6;

        while (v.len && v.data[0] == ' ') {
            v.data++;
            v.len--;
        }

        decoded.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(v.len));
        if (decoded.data == NULL
            || ngx_decode_base64(&decoded, &v) != NGX_OK)
        {
            return;
        }

        colon = ngx_strlchr(decoded.data, decoded.data + decoded.len, ':');
        if (colon == NULL) {
            return;
        }

        ctx->user.data = decoded.data;
        ctx->user.len = colon - decoded.data;
        ctx->pass.data = colon + 1;
        ctx->pass.len = decoded.data + decoded.len - colon - 1;
        ctx->auth = NGX_HTTP_ACTINGWEB_AUTH_BASIC;

        return;
    }

    if (v.len > 7 && ngx_strncasecmp(v.data, (u_char *) "Bearer ", 7) == 0) {
        ctx->pass.data = v.data + 7;
        ctx->pass.len = v.len - 7;

        while (ctx->pass.len && ctx->pass.data[0] == ' ') {
            ctx->pass.data++;
            ctx->pass.len--;
        }

        if (ctx->pass.len) {
            ctx->auth = NGX_HTTP_ACTINGWEB_AUTH_BEARER;
        }
    }
}


/* spec: a strong passphrase of a "trustee" creator is a bearer token */

ngx_int_t
ngx_http_actingweb_auth_trustee(ngx_http_actingweb_ctx_t *ctx)
{
    return ctx->actor.creator.len == sizeof("trustee") - 1
           && ngx_strncmp(ctx->actor.creator.data, "trustee",
                          sizeof("trustee") - 1) == 0
           && ctx->pass.len >= NGX_HTTP_ACTINGWEB_TRUSTEE_MIN;
}


/*
 * Needs ctx->actor.  Returns NGX_OK, or the status to answer with:
 * 401 without usable credentials, 403 with wrong ones.
 */

ngx_int_t
ngx_http_actingweb_auth_creator(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_http_actingweb_done_pt done)
{
    ngx_str_t  trustee = ngx_string("trustee");

    switch (ctx->auth) {

    case NGX_HTTP_ACTINGWEB_AUTH_BASIC:
        if (ctx->user.len != ctx->actor.creator.len
            || ngx_strncmp(ctx->user.data, ctx->actor.creator.data,
                           ctx->user.len) != 0)
        {
            /*
             * as costly as a wrong passphrase (and never cached), so that
             * the answer time does not tell whether a creator name is right
             */
            (void) ngx_http_actingweb_kdf_check(r, &ctx->actor.pwhash,
                                                &ctx->pass);
            return NGX_HTTP_FORBIDDEN;
        }

        return ngx_http_actingweb_auth_verify(r, ctx, &ctx->user,
                                              &ctx->pass);

    case NGX_HTTP_ACTINGWEB_AUTH_BEARER:

        if (ngx_http_actingweb_auth_trustee(ctx)) {
            return ngx_http_actingweb_auth_verify(r, ctx, &trustee,
                                                  &ctx->pass);
        }

        return NGX_HTTP_FORBIDDEN;

    default:
        return NGX_HTTP_UNAUTHORIZED;
    }
}


static ngx_int_t
ngx_http_actingweb_auth_verify(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user, ngx_str_t *pass)
{
    ngx_int_t                        rc;
    ngx_str_t                       *h;
    ngx_http_actingweb_cred_t       *slot;
    ngx_http_actingweb_main_conf_t  *amcf;
    u_char                           key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    h = &ctx->actor.pwhash;

    slot = ngx_http_actingweb_cache_slot(r, ctx, user, pass, key);

    if (slot
        && ngx_memcmp(slot->key, key, sizeof(key)) == 0
        && slot->len == h->len
        && CRYPTO_memcmp(slot->hash, h->data, h->len) == 0)
    {
        amcf->stats.auth_cache_hits++;
        return NGX_OK;
    }

    amcf->stats.auth_kdf_runs++;

    rc = ngx_http_actingweb_kdf_check(r, h, pass);

    if (rc == NGX_OK && slot && h->len <= NGX_HTTP_ACTINGWEB_HASH_MAX) {
        ngx_memcpy(slot->key, key, sizeof(key));
        ngx_memcpy(slot->hash, h->data, h->len);
        slot->len = h->len;
    }

    return rc;
}


/*
 * For writes: if this worker verified these credentials before, fill
 * ctx->actor with the creator and the stored hash they matched, without
 * asking Redis.  The write script then checks both before it writes, so a
 * changed passphrase (or creator) refuses the write instead of trusting a
 * stale memory.  NGX_DECLINED: not known, read the actor first.
 */

ngx_int_t
ngx_http_actingweb_auth_known(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx)
{
    ngx_str_t                   user;
    ngx_http_actingweb_cred_t  *slot;
    u_char                      key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];

    if (ctx->auth == NGX_HTTP_ACTINGWEB_AUTH_BASIC) {
        user = ctx->user;

    } else if (ctx->auth == NGX_HTTP_ACTINGWEB_AUTH_BEARER
               && ctx->pass.len >= NGX_HTTP_ACTINGWEB_TRUSTEE_MIN)
    {
        ngx_str_set(&user, "trustee");

    } else {
        return NGX_DECLINED;
    }

    slot = ngx_http_actingweb_cache_slot(r, ctx, &user, &ctx->pass, key);

    if (slot == NULL || slot->len == 0
        || ngx_memcmp(slot->key, key, sizeof(key)) != 0)
    {
        return NGX_DECLINED;
    }

    ctx->actor.pwhash.data = ngx_pnalloc(r->pool, slot->len);
    if (ctx->actor.pwhash.data == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(ctx->actor.pwhash.data, slot->hash, slot->len);
    ctx->actor.pwhash.len = slot->len;
    ctx->actor.creator = user;

    return NGX_OK;
}


static ngx_http_actingweb_cred_t *
ngx_http_actingweb_cache_slot(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user, ngx_str_t *pass,
    u_char *key)
{
    u_char                          *buf, *p;
    size_t                           len;
    uint32_t                         idx;
    unsigned int                     mdlen;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->auth_cache == NULL) {
        amcf->auth_cache = ngx_pcalloc(ngx_cycle->pool,
                                       NGX_HTTP_ACTINGWEB_CACHE_SLOTS
                                       * sizeof(ngx_http_actingweb_cred_t));
        if (amcf->auth_cache == NULL) {
            return NULL;
        }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
        /* fetched once: an implicit fetch per digest takes global locks */
        amcf->auth_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#endif
    }

    /* length-prefixed fields, so that no two inputs collide */

    len = ctx->actor_id.len + user->len + pass->len + 3 * NGX_SIZE_T_LEN;

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_sprintf(buf, "%uz:%V%uz:%V%uz:%V",
                    ctx->actor_id.len, &ctx->actor_id, user->len, user,
                    pass->len, pass);

    if (EVP_Digest(buf, p - buf, key, &mdlen,
                   amcf->auth_md ? amcf->auth_md : EVP_sha256(), NULL)
        != 1)
    {
        return NULL;
    }

    ngx_memcpy(&idx, key, sizeof(uint32_t));

    return (ngx_http_actingweb_cred_t *) amcf->auth_cache
           + idx % NGX_HTTP_ACTINGWEB_CACHE_SLOTS;
}


/* stored: "pbkdf2-sha256$<iterations>$<salt hex>$<key hex>" */

static ngx_int_t
ngx_http_actingweb_kdf_check(ngx_http_request_t *r, ngx_str_t *stored,
    ngx_str_t *pass)
{
    u_char     *p, *last, *d1, *d2;
    ngx_int_t   iter, i, hi, lo;
    u_char      salt[NGX_HTTP_ACTINGWEB_SALT_LEN];
    u_char      want[NGX_HTTP_ACTINGWEB_DK_LEN];
    u_char      got[NGX_HTTP_ACTINGWEB_DK_LEN];

    p = stored->data;
    last = p + stored->len;

    if (stored->len < sizeof("pbkdf2-sha256$") - 1
        || ngx_strncmp(p, "pbkdf2-sha256$", sizeof("pbkdf2-sha256$") - 1)
           != 0)
    {
        goto invalid;
    }

    p += sizeof("pbkdf2-sha256$") - 1;

    d1 = ngx_strlchr(p, last, '$');
    if (d1 == NULL) {
        goto invalid;
    }

    iter = ngx_atoi(p, d1 - p);
    if (iter <= 0 || iter > 10000000) {
        goto invalid;
    }

    d2 = ngx_strlchr(d1 + 1, last, '$');
    if (d2 == NULL
        || d2 - d1 - 1 != 2 * NGX_HTTP_ACTINGWEB_SALT_LEN
        || last - d2 - 1 != 2 * NGX_HTTP_ACTINGWEB_DK_LEN)
    {
        goto invalid;
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_SALT_LEN; i++) {
        hi = ngx_hextoi(d1 + 1 + 2 * i, 2);
        if (hi == NGX_ERROR) {
            goto invalid;
        }
        salt[i] = (u_char) hi;
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_DK_LEN; i++) {
        lo = ngx_hextoi(d2 + 1 + 2 * i, 2);
        if (lo == NGX_ERROR) {
            goto invalid;
        }
        want[i] = (u_char) lo;
    }

    if (PKCS5_PBKDF2_HMAC((const char *) pass->data, (int) pass->len,
                          salt, sizeof(salt), (int) iter, EVP_sha256(),
                          sizeof(got), got)
        != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (CRYPTO_memcmp(got, want, sizeof(got)) != 0) {
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "actingweb: stored passphrase hash is malformed");

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_http_actingweb_auth_hash(ngx_http_request_t *r, ngx_str_t *passphrase,
    ngx_str_t *out)
{
    u_char  *p;
    u_char   salt[NGX_HTTP_ACTINGWEB_SALT_LEN];
    u_char   dk[NGX_HTTP_ACTINGWEB_DK_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1
        || PKCS5_PBKDF2_HMAC((const char *) passphrase->data,
                             (int) passphrase->len, salt, sizeof(salt),
                             NGX_HTTP_ACTINGWEB_KDF_ITER, EVP_sha256(),
                             sizeof(dk), dk)
           != 1)
    {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(r->pool, sizeof("pbkdf2-sha256$$$")
                                     + NGX_INT_T_LEN + 2 * sizeof(salt)
                                     + 2 * sizeof(dk));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, "pbkdf2-sha256$%d$",
                    NGX_HTTP_ACTINGWEB_KDF_ITER);
    p = ngx_hex_dump(p, salt, sizeof(salt));
    *p++ = '$';
    p = ngx_hex_dump(p, dk, sizeof(dk));

    out->len = p - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_actingweb_auth_reply(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_table_elt_t  *h;

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_http_actingweb_header(r, "WWW-Authenticate",
                                      "Basic realm=\"ActingWeb\"");
        if (h == NULL) {
            return NGX_ERROR;
        }

        r->headers_out.www_authenticate = h;

        return ngx_http_actingweb_send_error(r, rc,
                                             "authentication required");
    }

    if (rc == NGX_HTTP_FORBIDDEN) {
        return ngx_http_actingweb_send_error(r, rc, "access denied");
    }

    return ngx_http_actingweb_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "authentication failed");
}


void
ngx_http_actingweb_auth_exit(ngx_http_actingweb_main_conf_t *amcf)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    if (amcf->auth_md) {
        EVP_MD_free(amcf->auth_md);
        amcf->auth_md = NULL;
    }
#endif
}
