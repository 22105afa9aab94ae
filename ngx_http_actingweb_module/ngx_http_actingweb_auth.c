
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
 *
 * Key derivations run in nginx's thread pool (actingweb_thread_pool), so a
 * flood of wrong passphrases does not stall the worker; the request goes
 * on when the result is back.  Failures are bounded per worker: a wrong
 * credential is remembered (with the stored hash it failed against) and
 * answered 403 without a new derivation, and each actor has a small bucket
 * of derivations for unknown credentials (FAIL_BURST, refilled at
 * FAIL_RATE per second; a right credential gives its token back); with
 * the bucket empty, unknown credentials are answered 429.
 */


#include "ngx_http_actingweb_module.h"

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>


#define NGX_HTTP_ACTINGWEB_KDF_ITER      4096
#define NGX_HTTP_ACTINGWEB_SALT_LEN      16
#define NGX_HTTP_ACTINGWEB_DK_LEN        32
#define NGX_HTTP_ACTINGWEB_CACHE_SLOTS   4096
#define NGX_HTTP_ACTINGWEB_DIGEST_LEN    32
#define NGX_HTTP_ACTINGWEB_HASH_MAX      128
#define NGX_HTTP_ACTINGWEB_FAIL_SLOTS    1024
#define NGX_HTTP_ACTINGWEB_BUCKET_SLOTS  1024
#define NGX_HTTP_ACTINGWEB_FAIL_BURST    10
#define NGX_HTTP_ACTINGWEB_FAIL_RATE     1       /* tokens per second */


typedef struct {
    u_char                           key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];
    u_char                           hash[NGX_HTTP_ACTINGWEB_HASH_MAX];
    size_t                           len;
} ngx_http_actingweb_cred_t;

/* a credential that failed against the stored hash ending in tag */
typedef struct {
    u_char                           key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];
    u_char                           tag[2 * NGX_HTTP_ACTINGWEB_DK_LEN];
} ngx_http_actingweb_fail_t;


/* derivations for unknown credentials left to an actor */
typedef struct {
    ngx_msec_t                       last;
    ngx_uint_t                       tokens;    /* in 1/1000 */
} ngx_http_actingweb_bucket_t;


/* one key derivation; a copy of everything the thread reads */
typedef struct {
    ngx_http_request_t              *request;  /* NULL: went away */
    ngx_http_cleanup_t              *cleanup;
    ngx_http_actingweb_done_pt       done;
    ngx_str_t                       *out;      /* new hash, or NULL */
    ngx_int_t                        iter;
    ngx_int_t                        rc;
    ngx_uint_t                       forbid;   /* wrong user: 403 */
    u_char                          *pass;
    size_t                           pass_len;
    u_char                           salt[NGX_HTTP_ACTINGWEB_SALT_LEN];
    u_char                           want[NGX_HTTP_ACTINGWEB_DK_LEN];
    u_char                           got[NGX_HTTP_ACTINGWEB_DK_LEN];
    u_char                           key[NGX_HTTP_ACTINGWEB_DIGEST_LEN];
} ngx_http_actingweb_kdf_t;


/* a passphrase used as trustee bearer must carry more than 80 bits */
#define NGX_HTTP_ACTINGWEB_TRUSTEE_MIN   13


static ngx_int_t ngx_http_actingweb_auth_verify(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user, ngx_uint_t forbid,
    ngx_http_actingweb_done_pt done);
static ngx_int_t ngx_http_actingweb_kdf_parse(ngx_http_request_t *r,
    ngx_str_t *stored, ngx_http_actingweb_kdf_t *job);
static ngx_int_t ngx_http_actingweb_kdf_start(ngx_http_request_t *r,
    ngx_http_actingweb_kdf_t *job);
static void ngx_http_actingweb_kdf_run(void *data, ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_http_actingweb_kdf_event(ngx_event_t *ev);
static void ngx_http_actingweb_kdf_cleanup(void *data);
#endif
static ngx_int_t ngx_http_actingweb_kdf_result(ngx_http_request_t *r,
    ngx_http_actingweb_kdf_t *job);
static ngx_http_actingweb_fail_t *ngx_http_actingweb_fail_slot(
    ngx_http_request_t *r, u_char *key, ngx_str_t *stored);
static ngx_http_actingweb_bucket_t *ngx_http_actingweb_bucket(
    ngx_http_request_t *r, ngx_str_t *id);
static ngx_int_t ngx_http_actingweb_auth_alloc(ngx_http_request_t *r);
static ngx_http_actingweb_cred_t *ngx_http_actingweb_cache_slot(
    ngx_http_request_t *r, ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user,
    ngx_str_t *pass, u_char *key);
static ngx_int_t ngx_http_actingweb_same_origin(ngx_http_request_t *r,
    ngx_str_t *origin);
static void ngx_http_actingweb_origin(ngx_str_t *url, ngx_str_t *out);


/* Sec-Fetch-Site values that are not cross-site */
static ngx_str_t  ngx_http_actingweb_fetch_sites[] = {
    ngx_string("same-origin"),
    ngx_string("same-site"),
    ngx_string("none"),
    ngx_null_string
};


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
 * A page on another site can make a browser POST a form to an actor
 * (?_method=DELETE or PUT) with the Basic credentials it has cached for
 * this server.  A write with Basic credentials is refused (403) when the
 * browser marks it cross-site: "Sec-Fetch-Site: cross-site", or, without
 * a known Sec-Fetch-Site, an Origin that is not this server ("null" too).
 * Same-site requests pass, and so do clients that send neither header.
 * Browsers never add Bearer tokens, and the factory takes no credentials.
 */

ngx_int_t
ngx_http_actingweb_cross_site(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, const char **err)
{
    ngx_int_t         rc;
    ngx_str_t         v, *site;
    ngx_table_elt_t  *h;

    if (!(ctx->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_DELETE))
        || ctx->endpoint == NGX_HTTP_ACTINGWEB_EP_FACTORY
        || r->headers_in.authorization == NULL)
    {
        return NGX_OK;
    }

    v = r->headers_in.authorization->value;

    if (v.len < 6 || ngx_strncasecmp(v.data, (u_char *) "Basic ", 6) != 0) {
        return NGX_OK;
    }

    h = ngx_http_actingweb_header_in(r, "Sec-Fetch-Site");

    if (h) {
        v = h->value;

        for (site = ngx_http_actingweb_fetch_sites; site->len; site++) {
            if (v.len == site->len
                && ngx_strncasecmp(v.data, site->data, v.len) == 0)
            {
                return NGX_OK;
            }
        }

        if (v.len == 10
            && ngx_strncasecmp(v.data, (u_char *) "cross-site", 10) == 0)
        {
            goto refuse;
        }
    }

    h = ngx_http_actingweb_header_in(r, "Origin");
    if (h == NULL) {
        return NGX_OK;
    }

    v = h->value;

    rc = ngx_http_actingweb_same_origin(r, &v);
    if (rc != 0) {
        return rc == 1 ? NGX_OK : NGX_ERROR;
    }

refuse:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "actingweb: cross-site write with Basic credentials "
                  "refused (\"%V: %V\")", &h->key, &v);

    *err = "cross-site request with Basic credentials refused";

    return NGX_HTTP_FORBIDDEN;
}


/*
 * 1 when an Origin is this server: the origin of actingweb_base_url, or
 * the request's own scheme and Host; 0 when not, NGX_ERROR on failure
 */

static ngx_int_t
ngx_http_actingweb_same_origin(ngx_http_request_t *r, ngx_str_t *origin)
{
    ngx_str_t  url, own, theirs;

    if (ngx_http_actingweb_actor_url(r, NULL, &url) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_actingweb_origin(&url, &own);
    ngx_http_actingweb_origin(origin, &theirs);

    /* "null" (sandboxed frames, some redirects) never matches */

    return theirs.len == own.len
           && ngx_strncasecmp(theirs.data, own.data, own.len) == 0;
}


/* scheme://host[:port] of a URL, without a port that is the default */

static void
ngx_http_actingweb_origin(ngx_str_t *url, ngx_str_t *out)
{
    u_char  *p, *last;

    *out = *url;
    last = url->data + url->len;

    p = ngx_strlcasestrn(url->data, last, (u_char *) "://", 3 - 1);
    if (p == NULL) {
        return;
    }

    p = ngx_strlchr(p + 3, last, '/');
    if (p) {
        out->len = p - url->data;
    }

    if (out->len > 12
        && ngx_strncasecmp(out->data, (u_char *) "https://", 8) == 0
        && ngx_strncmp(out->data + out->len - 4, ":443", 4) == 0)
    {
        out->len -= 4;

    } else if (out->len > 10
               && ngx_strncasecmp(out->data, (u_char *) "http://", 7) == 0
               && ngx_strncmp(out->data + out->len - 3, ":80", 3) == 0)
    {
        out->len -= 3;
    }
}


/*
 * Needs ctx->actor.  Returns NGX_OK, or the status to answer with:
 * 401 without usable credentials, 403 with wrong ones, 429 while the
 * actor's failure bound is reached; or NGX_AGAIN while the check runs in
 * the thread pool, then done() gets the result in the worker.
 */

ngx_int_t
ngx_http_actingweb_auth_creator(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_http_actingweb_done_pt done)
{
    ngx_str_t  trustee = ngx_string("trustee");

    switch (ctx->auth) {

    case NGX_HTTP_ACTINGWEB_AUTH_BASIC:

        /*
         * a wrong creator name costs a derivation like a wrong passphrase,
         * so that the answer time does not tell whether the name is right
         */

        return ngx_http_actingweb_auth_verify(r, ctx, &ctx->user,
                   ctx->user.len != ctx->actor.creator.len
                   || ngx_strncmp(ctx->user.data, ctx->actor.creator.data,
                                  ctx->user.len) != 0,
                   done);

    case NGX_HTTP_ACTINGWEB_AUTH_BEARER:

        if (ngx_http_actingweb_auth_trustee(ctx)) {
            return ngx_http_actingweb_auth_verify(r, ctx, &trustee, 0, done);
        }

        return NGX_HTTP_FORBIDDEN;

    default:
        return NGX_HTTP_UNAUTHORIZED;
    }
}


static ngx_int_t
ngx_http_actingweb_auth_verify(ngx_http_request_t *r,
    ngx_http_actingweb_ctx_t *ctx, ngx_str_t *user, ngx_uint_t forbid,
    ngx_http_actingweb_done_pt done)
{
    ngx_int_t                        rc;
    ngx_str_t                       *h;
    ngx_msec_t                       now;
    ngx_http_actingweb_cred_t       *slot;
    ngx_http_actingweb_fail_t       *fail;
    ngx_http_actingweb_bucket_t     *b;
    ngx_http_actingweb_kdf_t         job;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    h = &ctx->actor.pwhash;

    ngx_memzero(&job, sizeof(ngx_http_actingweb_kdf_t));

    slot = ngx_http_actingweb_cache_slot(r, ctx, user, &ctx->pass, job.key);
    if (slot == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!forbid
        && ngx_memcmp(slot->key, job.key, sizeof(job.key)) == 0
        && slot->len == h->len
        && CRYPTO_memcmp(slot->hash, h->data, h->len) == 0)
    {
        ngx_http_actingweb_metric_inc(amcf,
                                   NGX_HTTP_ACTINGWEB_M_AUTH_CACHE_HITS);
        return NGX_OK;
    }

    fail = ngx_http_actingweb_fail_slot(r, job.key, h);

    if (fail && ngx_memcmp(fail->key, job.key, sizeof(job.key)) == 0) {
        return NGX_HTTP_FORBIDDEN;
    }

    b = ngx_http_actingweb_bucket(r, &ctx->actor_id);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_current_msec;
    b->tokens += (now - b->last) * NGX_HTTP_ACTINGWEB_FAIL_RATE;
    b->last = now;

    if (b->tokens > NGX_HTTP_ACTINGWEB_FAIL_BURST * 1000) {
        b->tokens = NGX_HTTP_ACTINGWEB_FAIL_BURST * 1000;
    }

    if (b->tokens < 1000) {
        return NGX_HTTP_TOO_MANY_REQUESTS;
    }

    b->tokens -= 1000;

    rc = ngx_http_actingweb_kdf_parse(r, h, &job);
    if (rc != NGX_OK) {
        return rc;
    }

    job.forbid = forbid;
    job.done = done;
    job.pass = ctx->pass.data;
    job.pass_len = ctx->pass.len;

    return ngx_http_actingweb_kdf_start(r, &job);
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

    if (amcf->auth_cache == NULL
        && ngx_http_actingweb_auth_alloc(r) != NGX_OK)
    {
        return NULL;
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


static ngx_int_t
ngx_http_actingweb_auth_alloc(ngx_http_request_t *r)
{
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    amcf->auth_cache = ngx_pcalloc(ngx_cycle->pool,
                                   NGX_HTTP_ACTINGWEB_CACHE_SLOTS
                                   * sizeof(ngx_http_actingweb_cred_t));
    amcf->auth_fails = ngx_pcalloc(ngx_cycle->pool,
                                   NGX_HTTP_ACTINGWEB_FAIL_SLOTS
                                   * sizeof(ngx_http_actingweb_fail_t));
    amcf->auth_buckets = ngx_pcalloc(ngx_cycle->pool,
                                     NGX_HTTP_ACTINGWEB_BUCKET_SLOTS
                                     * sizeof(ngx_http_actingweb_bucket_t));

    if (amcf->auth_cache == NULL || amcf->auth_fails == NULL
        || amcf->auth_buckets == NULL)
    {
        amcf->auth_cache = NULL;
        return NGX_ERROR;
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    /* fetched once: an implicit fetch per digest takes global locks */
    amcf->auth_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#endif

    return NGX_OK;
}


/* the slot for a cache key; it holds a failure only with this tag */

static ngx_http_actingweb_fail_t *
ngx_http_actingweb_fail_slot(ngx_http_request_t *r, u_char *key,
    ngx_str_t *stored)
{
    uint32_t                         idx;
    ngx_http_actingweb_fail_t       *f;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->auth_fails == NULL || stored->len < sizeof(f->tag)) {
        return NULL;
    }

    ngx_memcpy(&idx, key + sizeof(uint32_t), sizeof(uint32_t));
    f = (ngx_http_actingweb_fail_t *) amcf->auth_fails
        + idx % NGX_HTTP_ACTINGWEB_FAIL_SLOTS;

    if (ngx_memcmp(f->tag, stored->data + stored->len - sizeof(f->tag),
                   sizeof(f->tag))
        != 0)
    {
        /* another stored hash: what failed then may be right now */
        ngx_memcpy(f->tag, stored->data + stored->len - sizeof(f->tag),
                   sizeof(f->tag));
        ngx_memzero(f->key, sizeof(f->key));
    }

    return f;
}


/*
 * An actor's bucket, found by its id: actors that collide share one (a
 * reset on collision would let alternating requests lift the bound).
 * Unused slots (last 0) fill up on their first refill.
 */

static ngx_http_actingweb_bucket_t *
ngx_http_actingweb_bucket(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t                       h;
    ngx_http_actingweb_bucket_t     *b;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (amcf->auth_buckets == NULL || id->len != NGX_HTTP_ACTINGWEB_ID_LEN) {
        return NULL;
    }

    h = ngx_hash_key(id->data, id->len);
    b = (ngx_http_actingweb_bucket_t *) amcf->auth_buckets
        + h % NGX_HTTP_ACTINGWEB_BUCKET_SLOTS;

    return b;
}


/* stored: "pbkdf2-sha256$<iterations>$<salt hex>$<key hex>" */

static ngx_int_t
ngx_http_actingweb_kdf_parse(ngx_http_request_t *r, ngx_str_t *stored,
    ngx_http_actingweb_kdf_t *job)
{
    u_char     *p, *last, *d1, *d2;
    ngx_int_t   iter, i, v;

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
        v = ngx_hextoi(d1 + 1 + 2 * i, 2);
        if (v == NGX_ERROR) {
            goto invalid;
        }
        job->salt[i] = (u_char) v;
    }

    for (i = 0; i < NGX_HTTP_ACTINGWEB_DK_LEN; i++) {
        v = ngx_hextoi(d2 + 1 + 2 * i, 2);
        if (v == NGX_ERROR) {
            goto invalid;
        }
        job->want[i] = (u_char) v;
    }

    job->iter = iter;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "actingweb: stored passphrase hash is malformed");

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * Runs the derivation in the location's thread pool (NGX_AGAIN, done()
 * follows) or, without one, here (the result).  The task and a copy of the
 * passphrase are malloc()ed: a request that goes away meanwhile only
 * clears job->request, and the completion frees them.
 */

static ngx_int_t
ngx_http_actingweb_kdf_start(ngx_http_request_t *r,
    ngx_http_actingweb_kdf_t *job)
{
#if (NGX_THREADS)
    ngx_thread_task_t               *task;
    ngx_http_cleanup_t              *cln;
    ngx_http_actingweb_kdf_t        *j;
    ngx_http_actingweb_loc_conf_t   *alcf;
    ngx_http_actingweb_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_actingweb_module);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);

    if (alcf->thread_pool && !amcf->no_threads && job->done) {
        cln = ngx_http_cleanup_add(r, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        task = ngx_alloc(sizeof(ngx_thread_task_t)
                         + sizeof(ngx_http_actingweb_kdf_t) + job->pass_len,
                         r->connection->log);
        if (task == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memzero(task, sizeof(ngx_thread_task_t));

        j = (ngx_http_actingweb_kdf_t *) (task + 1);
        *j = *job;
        j->pass = (u_char *) (j + 1);
        ngx_memcpy(j->pass, job->pass, job->pass_len);
        j->request = r;
        j->cleanup = cln;

        task->ctx = j;
        task->handler = ngx_http_actingweb_kdf_run;
        task->event.handler = ngx_http_actingweb_kdf_event;
        task->event.data = task;
        task->event.log = ngx_cycle->log;

        if (ngx_thread_task_post(alcf->thread_pool, task) == NGX_OK) {
            cln->handler = ngx_http_actingweb_kdf_cleanup;
            cln->data = j;

            return NGX_AGAIN;
        }

        /* queue full: the error is logged, derive here instead */
        ngx_free(task);
    }
#endif

    ngx_http_actingweb_kdf_run(job, r->connection->log);

    return ngx_http_actingweb_kdf_result(r, job);
}


/* in a pool thread (or inline): touches nothing but the job */

static void
ngx_http_actingweb_kdf_run(void *data, ngx_log_t *log)
{
    ngx_http_actingweb_kdf_t *job = data;

    if (PKCS5_PBKDF2_HMAC((const char *) job->pass, (int) job->pass_len,
                          job->salt, sizeof(job->salt), (int) job->iter,
                          EVP_sha256(), sizeof(job->got), job->got)
        != 1)
    {
        job->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (job->out) {
        job->rc = NGX_OK;

    } else if (CRYPTO_memcmp(job->got, job->want, sizeof(job->got)) != 0
               || job->forbid)
    {
        job->rc = NGX_HTTP_FORBIDDEN;

    } else {
        job->rc = NGX_OK;
    }
}


#if (NGX_THREADS)

static void
ngx_http_actingweb_kdf_event(ngx_event_t *ev)
{
    ngx_int_t                  rc;
    ngx_thread_task_t         *task;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_actingweb_kdf_t  *job;

    task = ev->data;
    job = task->ctx;
    r = job->request;

    if (r == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "actingweb key derivation for a closed request");
        ngx_free(task);
        return;
    }

    job->cleanup->handler = NULL;
    c = r->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "actingweb key derivation done: %i", job->rc);

    rc = ngx_http_actingweb_kdf_result(r, job);

    job->done(r, rc);

    ngx_free(task);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_actingweb_kdf_cleanup(void *data)
{
    ngx_http_actingweb_kdf_t *job = data;

    job->request = NULL;
}

#endif


/* back in the worker: a new hash, or remember how a check went */

static ngx_int_t
ngx_http_actingweb_kdf_result(ngx_http_request_t *r,
    ngx_http_actingweb_kdf_t *job)
{
    u_char                          *p;
    uint32_t                         idx;
    ngx_str_t                       *h;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_cred_t       *slot;
    ngx_http_actingweb_fail_t       *fail;
    ngx_http_actingweb_bucket_t     *b;
    ngx_http_actingweb_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_actingweb_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_actingweb_module);

    if (job->out) {
        if (job->rc != NGX_OK) {
            return NGX_ERROR;
        }

        job->out->data = ngx_pnalloc(r->pool,
                                     sizeof("pbkdf2-sha256$$$")
                                     + NGX_INT_T_LEN + 2 * sizeof(job->salt)
                                     + 2 * sizeof(job->got));
        if (job->out->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(job->out->data, "pbkdf2-sha256$%i$", job->iter);
        p = ngx_hex_dump(p, job->salt, sizeof(job->salt));
        *p++ = '$';
        p = ngx_hex_dump(p, job->got, sizeof(job->got));

        job->out->len = p - job->out->data;

        return NGX_OK;
    }

    ngx_http_actingweb_metric_inc(amcf, NGX_HTTP_ACTINGWEB_M_AUTH_KDF_RUNS);
    h = &ctx->actor.pwhash;

    if (job->rc == NGX_HTTP_FORBIDDEN) {
        fail = ngx_http_actingweb_fail_slot(r, job->key, h);
        if (fail) {
            ngx_memcpy(fail->key, job->key, sizeof(job->key));
        }

        return job->rc;
    }

    if (job->rc != NGX_OK) {
        return job->rc;
    }

    /* a right credential does not count against the actor */

    b = ngx_http_actingweb_bucket(r, &ctx->actor_id);
    if (b && b->tokens < NGX_HTTP_ACTINGWEB_FAIL_BURST * 1000) {
        b->tokens += 1000;
    }

    ngx_memcpy(&idx, job->key, sizeof(uint32_t));
    slot = (ngx_http_actingweb_cred_t *) amcf->auth_cache
           + idx % NGX_HTTP_ACTINGWEB_CACHE_SLOTS;

    if (h->len <= NGX_HTTP_ACTINGWEB_HASH_MAX) {
        ngx_memcpy(slot->key, job->key, sizeof(job->key));
        ngx_memcpy(slot->hash, h->data, h->len);
        slot->len = h->len;
    }

    return NGX_OK;
}


/*
 * A new actor's passphrase hash into *out: NGX_OK, NGX_ERROR, or NGX_AGAIN
 * while it is derived in the thread pool, then done() follows.
 */

ngx_int_t
ngx_http_actingweb_auth_hash(ngx_http_request_t *r, ngx_str_t *passphrase,
    ngx_str_t *out, ngx_http_actingweb_done_pt done)
{
    ngx_http_actingweb_kdf_t  job;

    ngx_memzero(&job, sizeof(ngx_http_actingweb_kdf_t));

    if (RAND_bytes(job.salt, sizeof(job.salt)) != 1) {
        return NGX_ERROR;
    }

    job.iter = NGX_HTTP_ACTINGWEB_KDF_ITER;
    job.out = out;
    job.done = done;
    job.pass = passphrase->data;
    job.pass_len = passphrase->len;

    return ngx_http_actingweb_kdf_start(r, &job);
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

    if (rc == NGX_HTTP_TOO_MANY_REQUESTS) {
        if (ngx_http_actingweb_header(r, "Retry-After", "1") == NULL) {
            return NGX_ERROR;
        }

        return ngx_http_actingweb_send_error(r, rc,
                                             "too many failed "
                                             "authentications, try later");
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


/* actingweb_thread_pool NAME: nginx refuses names no thread_pool defines */

char *
ngx_http_actingweb_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_actingweb_loc_conf_t *alcf = conf;

    ngx_str_t  *value;

    if (alcf->thread_pool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

#if (NGX_THREADS)

    alcf->thread_pool = ngx_thread_pool_add(cf, &value[1]);
    if (alcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

#else

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"%V\" is ignored: nginx is built without threads, "
                       "key derivation runs on the event loop", &cmd->name);
    alcf->thread_pool = NULL;

#endif

    return NGX_CONF_OK;
}


/* without the directive, actingweb locations use the "default" pool */

char *
ngx_http_actingweb_thread_pool_merge(ngx_conf_t *cf,
    ngx_http_actingweb_loc_conf_t *prev, ngx_http_actingweb_loc_conf_t *conf)
{
#if (NGX_THREADS)
    ngx_http_actingweb_main_conf_t  *amcf;
#endif

    ngx_conf_merge_ptr_value(conf->thread_pool, prev->thread_pool, NULL);

#if (NGX_THREADS)

    if (conf->thread_pool == NULL && conf->enable == 1) {

        conf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (conf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }

        amcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_actingweb_module);
        amcf->auto_pool = conf->thread_pool;
    }

#endif

    return NGX_CONF_OK;
}


#if (NGX_THREADS)

/* ngx_thread_pool.c's conf (not in its header) */
typedef struct {
    ngx_array_t                      pools;
} ngx_http_actingweb_thread_pools_t;

extern ngx_module_t  ngx_thread_pool_module;

#endif


/*
 * After the whole configuration is read (the events block may follow the
 * http block): nginx's thread pools need an event method that threads can
 * wake (epoll, kqueue, eventport).  Under poll or select the default pool
 * this module asked for would stop every worker from starting, so it is
 * taken back and key derivation runs inline there.
 */

ngx_int_t
ngx_http_actingweb_thread_pool_check(ngx_cycle_t *cycle)
{
#if (NGX_THREADS)
    void                              **pools;
    ngx_uint_t                          i;
    ngx_event_conf_t                   *ecf;
    ngx_http_actingweb_main_conf_t     *amcf;
    ngx_http_actingweb_thread_pools_t  *tcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_actingweb_module);

    if (amcf == NULL || amcf->auto_pool == NULL
        || ngx_get_conf(cycle->conf_ctx, ngx_events_module) == NULL)
    {
        return NGX_OK;
    }

    ecf = ngx_event_get_conf(cycle->conf_ctx, ngx_event_core_module);

    if (ecf == NULL || ecf->name == NULL
        || (ngx_strcmp(ecf->name, "poll") != 0
            && ngx_strcmp(ecf->name, "select") != 0))
    {
        return NGX_OK;
    }

    tcf = (ngx_http_actingweb_thread_pools_t *)
              ngx_get_conf(cycle->conf_ctx, ngx_thread_pool_module);

    if (tcf) {
        pools = tcf->pools.elts;

        for (i = 0; i < tcf->pools.nelts; i++) {
            if (pools[i] == amcf->auto_pool) {
                ngx_memmove(&pools[i], &pools[i + 1],
                            (tcf->pools.nelts - i - 1) * sizeof(void *));
                tcf->pools.nelts--;
                break;
            }
        }
    }

    amcf->no_threads = 1;

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "actingweb: \"use %s\" cannot wake from threads: "
                  "passphrase hashing runs in the workers", ecf->name);
#endif

    return NGX_OK;
}
