
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Lua scripts: every change that touches more than one key, or that must
 * check and write in one step, runs as one script.  All keys of a script
 * share the actor's hash tag, so they live in one Redis Cluster slot.
 *
 * Key layout (docs/operations.md):
 *     <prefix>:{<id>}:actor     hash: creator, pw, trustee_root, created
 *     <prefix>:{<id>}:props     hash: name -> "t<text>" or "j<json>"
 *     <prefix>:{<id>}:changes   stream of change events (capped)
 *     <prefix>:{<id>}:keys      set of further keys owned by the actor
 */


#include "ngx_http_actingweb_redis.h"

#include <openssl/sha.h>


/*
 * The change hook: each property write appends one event (path as a JSON
 * array of names, op, JSON value) in the same script as the write, so an
 * event exists exactly when the write happened.  Subscriptions turn these
 * into per-subscriber diffs; the stream is capped until they do.
 */

#define NGX_HTTP_ACTINGWEB_LUA_EMIT                                           \
    "local function emit(path, op, value)\n"                                  \
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '64', '*',\n"               \
    "             'path', path, 'op', op, 'value', value)\n"                  \
    "end\n"

#define NGX_HTTP_ACTINGWEB_LUA_ACTOR                                          \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"


ngx_http_actingweb_script_t  ngx_http_actingweb_scripts[] = {

    /* KEYS: actor; ARGV: creator, pw, trustee_root, created */
    { "create",
      "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
      "redis.call('HSET', KEYS[1], 'creator', ARGV[1], 'pw', ARGV[2],\n"
      "           'created', ARGV[4])\n"
      "if ARGV[3] ~= '' then\n"
      "  redis.call('HSET', KEYS[1], 'trustee_root', ARGV[3])\n"
      "end\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes, keys */
    { "actor_delete",
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "local extra = redis.call('SMEMBERS', KEYS[4])\n"
      "for i = 1, #extra do redis.call('DEL', extra[i]) end\n"
      "for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: name, stored, path, value */
    { "prop_set",
      NGX_HTTP_ACTINGWEB_LUA_EMIT
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
      "emit(ARGV[3], 'set', ARGV[4])\n"
      "return 1\n",
      "" },

    /*
     * KEYS: actor, props, changes;
     * ARGV: name, had ("0"/"1"), old stored, new stored, path, op, value
     * returns -1 when the value changed since it was read
     */
    { "prop_cas",
      NGX_HTTP_ACTINGWEB_LUA_EMIT
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if ARGV[2] == '1' then\n"
      "  if cur ~= ARGV[3] then return -1 end\n"
      "elseif cur then return -1 end\n"
      "redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])\n"
      "emit(ARGV[5], ARGV[6], ARGV[7])\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: name, path */
    { "prop_del",
      NGX_HTTP_ACTINGWEB_LUA_EMIT
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then\n"
      "  emit(ARGV[2], 'delete', '\"\"')\n"
      "end\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes */
    { "prop_del_all",
      NGX_HTTP_ACTINGWEB_LUA_EMIT
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "if redis.call('DEL', KEYS[2]) == 1 then\n"
      "  emit('[]', 'delete', '\"\"')\n"
      "end\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: value, name1, stored1, ... */
    { "prop_post",
      NGX_HTTP_ACTINGWEB_LUA_EMIT
      NGX_HTTP_ACTINGWEB_LUA_ACTOR
      "for i = 2, #ARGV, 2 do\n"
      "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
      "end\n"
      "emit('[]', 'merge', ARGV[1])\n"
      "return 1\n",
      "" },

    { NULL, NULL, "" }
};


ngx_int_t
ngx_http_actingweb_scripts_init(ngx_log_t *log)
{
    u_char       md[SHA_DIGEST_LENGTH];
    ngx_uint_t   i;

    for (i = 0; i < NGX_HTTP_ACTINGWEB_SCRIPT_N; i++) {

        if (ngx_http_actingweb_scripts[i].source == NULL) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "actingweb: script table is incomplete");
            return NGX_ERROR;
        }

        SHA1((const u_char *) ngx_http_actingweb_scripts[i].source,
             ngx_strlen(ngx_http_actingweb_scripts[i].source), md);

        ngx_hex_dump(ngx_http_actingweb_scripts[i].sha1, md,
                     SHA_DIGEST_LENGTH);
        ngx_http_actingweb_scripts[i].sha1[40] = '\0';
    }

    return NGX_OK;
}
