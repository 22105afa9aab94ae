
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Shared set-up of the libFuzzer targets: nginx's globals, a pool and a
 * bare request (pool, connection, log, headers, module ctx and confs), as
 * much of a request as the parsers touch.  A target that includes one of
 * the module's .c files (for its static functions) is linked without that
 * file's object (see ./build.sh fuzz).
 */


#ifndef _NGX_HTTP_ACTINGWEB_FUZZ_H_INCLUDED_
#define _NGX_HTTP_ACTINGWEB_FUZZ_H_INCLUDED_


#include "ngx_http_actingweb_module.h"

#include <stdlib.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    ngx_pool_t                      *pool;
    ngx_http_request_t              *r;
    ngx_http_actingweb_ctx_t        *ctx;
    ngx_http_actingweb_main_conf_t  *amcf;
    ngx_http_actingweb_loc_conf_t   *alcf;
} ngx_http_actingweb_fuzz_t;


static ngx_log_t         ngx_http_actingweb_fuzz_log;
static ngx_open_file_t   ngx_http_actingweb_fuzz_file;


/* failure of an invariant of the code under test: a crash for libFuzzer */

#define ngx_http_actingweb_fuzz_assert(cond)                              \
    if (!(cond)) {                                                        \
        fprintf(stderr, "fuzz: invariant failed: %s (%s:%d)\n", #cond,    \
                __FILE__, __LINE__);                                      \
        abort();                                                          \
    }


static void
ngx_http_actingweb_fuzz_init(void)
{
    static ngx_uint_t  done;

    if (done) {
        return;
    }

    done = 1;

    ngx_pagesize = getpagesize();
    for (ngx_pagesize_shift = 0; (1 << ngx_pagesize_shift) < ngx_pagesize;
         ngx_pagesize_shift++) { /* void */ }
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    ngx_time_init();

    /* the index nginx would give the module when it loads it */
    ngx_http_actingweb_module.ctx_index = 0;

    /* only "stderr"-level messages, i.e. none of the module's */
    ngx_http_actingweb_fuzz_file.fd = ngx_stderr;
    ngx_http_actingweb_fuzz_log.file = &ngx_http_actingweb_fuzz_file;
    ngx_http_actingweb_fuzz_log.log_level = NGX_LOG_STDERR;
}


/* a request whose pool is freed by ngx_http_actingweb_fuzz_done() */

static void
ngx_http_actingweb_fuzz_request(ngx_http_actingweb_fuzz_t *f)
{
    ngx_pool_t          *pool;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    ngx_http_actingweb_fuzz_init();

    pool = ngx_create_pool(4096, &ngx_http_actingweb_fuzz_log);
    ngx_http_actingweb_fuzz_assert(pool != NULL);

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    f->ctx = ngx_pcalloc(pool, sizeof(ngx_http_actingweb_ctx_t));
    f->amcf = ngx_pcalloc(pool, sizeof(ngx_http_actingweb_main_conf_t));
    f->alcf = ngx_pcalloc(pool, sizeof(ngx_http_actingweb_loc_conf_t));
    ngx_http_actingweb_fuzz_assert(r && c && f->ctx && f->amcf && f->alcf);

    c->log = &ngx_http_actingweb_fuzz_log;
    c->pool = pool;

    r->pool = pool;
    r->connection = c;
    r->main = r;
    r->method = NGX_HTTP_GET;

    /* ngx_http_actingweb_module.ctx_index is 0 when it is not loaded */
    r->ctx = ngx_pcalloc(pool, sizeof(void *) * 64);
    r->main_conf = ngx_pcalloc(pool, sizeof(void *) * 64);
    r->loc_conf = ngx_pcalloc(pool, sizeof(void *) * 64);
    ngx_http_actingweb_fuzz_assert(r->ctx && r->main_conf && r->loc_conf);

    r->ctx[ngx_http_actingweb_module.ctx_index] = f->ctx;
    r->main_conf[ngx_http_actingweb_module.ctx_index] = f->amcf;
    r->loc_conf[ngx_http_actingweb_module.ctx_index] = f->alcf;

    ngx_http_actingweb_fuzz_assert(
        ngx_list_init(&r->headers_in.headers, pool, 4,
                      sizeof(ngx_table_elt_t)) == NGX_OK);
    ngx_http_actingweb_fuzz_assert(
        ngx_list_init(&r->headers_out.headers, pool, 4,
                      sizeof(ngx_table_elt_t)) == NGX_OK);

    f->pool = pool;
    f->r = r;
}


/* a request header; the value is a copy, not NUL-terminated */

static ngx_table_elt_t *
ngx_http_actingweb_fuzz_header(ngx_http_actingweb_fuzz_t *f,
    const char *key, const u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&f->r->headers_in.headers);
    ngx_http_actingweb_fuzz_assert(h != NULL);

    ngx_memzero(h, sizeof(ngx_table_elt_t));
    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = ngx_pnalloc(f->pool, len ? len : 1);
    ngx_http_actingweb_fuzz_assert(h->value.data != NULL);
    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;

    return h;
}


/*
 * A copy of the input in a buffer of exactly its size (ASan sees a read
 * past the end), in the request pool.
 */

static u_char *
ngx_http_actingweb_fuzz_copy(ngx_http_actingweb_fuzz_t *f,
    const uint8_t *data, size_t size)
{
    u_char  *p;

    p = ngx_pnalloc(f->pool, size ? size : 1);
    ngx_http_actingweb_fuzz_assert(p != NULL);

    return ngx_cpymem(p, data, size) - size;
}


static void
ngx_http_actingweb_fuzz_done(ngx_http_actingweb_fuzz_t *f)
{
    ngx_destroy_pool(f->pool);
}


/*
 * Splits the input at the first "\n" (0 when there is none): the targets
 * that take two inputs (a pattern and a name, a path and a value).
 */

static ngx_uint_t
ngx_http_actingweb_fuzz_split(const uint8_t *data, size_t size,
    ngx_str_t *a, ngx_str_t *b)
{
    const uint8_t  *nl;

    nl = memchr(data, '\n', size);
    if (nl == NULL) {
        return 0;
    }

    a->data = (u_char *) data;
    a->len = nl - data;
    b->data = (u_char *) nl + 1;
    b->len = size - a->len - 1;

    return 1;
}


#endif /* _NGX_HTTP_ACTINGWEB_FUZZ_H_INCLUDED_ */
