
/*
 * Copyright (C) The ngx_http_actingweb_module authors
 *
 * Lua scripts: every change that touches more than one key, or that must
 * check and write in one step, runs as one script.  All keys of a script
 * share the actor's hash tag, so they live in one Redis Cluster slot, and
 * every key a script touches is passed in KEYS.
 *
 * Redis does not roll a script back: a command that fails after a write
 * leaves that write in place.  So each script does everything that can
 * fail (reads, type checks) before its first write, and writes the change
 * event first, before the value it describes.
 *
 * Key layout (docs/operations.md):
 *     <prefix>:{<id>}:actor     hash: creator, pw, trustee_root, created,
 *                               devtest_twin
 *     <prefix>:{<id>}:props     hash: name -> "t<text>" or "j<json>"
 *     <prefix>:{<id>}:changes   stream of change events (capped)
 *     <prefix>:{<id>}:trust     hash: peer id -> trust record (JSON)
 *     <prefix>:{<id>}:trustsec  hash: SHA-256 of a trust secret -> peer id
 *     <prefix>:{<id>}:subs      hash: subscription id -> record (JSON)
 *     <prefix>:{<id>}:diffs     hash: "<subscription id>:<seq>" -> diff
 *     <prefix>:{<id>}:outsubs   hash: subscription id -> our subscription
 *                               at a peer (JSON, "callback": true)
 *     <prefix>:{<id>}:remote    hash: peer id -> our copy of its data
 *     <prefix>:{<id>}:applied   stream of applied changes (capped)
 */


#include "ngx_http_actingweb_redis.h"

#include <openssl/sha.h>


/*
 * The change hook: each property write appends one event (path as a JSON
 * array of names, op, JSON value) in the same script as the write, so an
 * event exists exactly when the write happened, and trims the stream to
 * the newest ARGV[3] (actingweb_change_log) events.  Subscriptions turn
 * events into diffs when they are polled, so a write costs the same with
 * any number of subscribers.  When the actor has subscriptions that want
 * callbacks ("cbsubs" in its hash), the write also marks the newest event
 * as pending for callback delivery and the script returns 2 instead of 1
 * (the request then queues the actor in the outbox, outbox.c).
 */

#define NGX_HTTP_ACTINGWEB_LUA_EMIT                                           \
    "local cb = 1\n"                                                          \
    "local function emit(path, op, value)\n"                                  \
    "  local id = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], '*',\n"      \
    "                        'path', path, 'op', op, 'value', value)\n"       \
    "  if redis.call('HEXISTS', KEYS[1], 'cbsubs') == 1 then\n"               \
    "    redis.call('HSET', KEYS[1], 'pending', id)\n"                        \
    "    cb = 2\n"                                                            \
    "  end\n"                                                                 \
    "end\n"

/*
 * Every write starts with ARGV[1] = creator and ARGV[2] = the stored
 * passphrase hash the request's credentials were verified against: the
 * write happens only if both are still current (0: no actor, -2: changed).
 */

#define NGX_HTTP_ACTINGWEB_LUA_AUTH                                           \
    "local a = redis.call('HMGET', KEYS[1], 'creator', 'pw')\n"               \
    "if not a[1] then return 0 end\n"                                         \
    "if a[1] ~= ARGV[1] or a[2] ~= ARGV[2] then return -2 end\n"

/*
 * Property writes (KEYS: actor, props, changes): a props or changes key of
 * another type would make a write fail halfway; refuse before writing.
 */

#define NGX_HTTP_ACTINGWEB_LUA_TYPES                                          \
    "for i, want in ipairs({'hash', 'stream'}) do\n"                          \
    "  local t = redis.call('TYPE', KEYS[i + 1]).ok\n"                        \
    "  if t ~= 'none' and t ~= want then\n"                                   \
    "    return redis.error_reply('WRONGTYPE ' .. KEYS[i + 1] ..\n"           \
    "                             ' is a ' .. t .. ', not a ' .. want)\n"     \
    "  end\n"                                                                 \
    "end\n"

/* the property write scripts start with these */

#define NGX_HTTP_ACTINGWEB_LUA_PROP                                           \
    NGX_HTTP_ACTINGWEB_LUA_EMIT                                               \
    NGX_HTTP_ACTINGWEB_LUA_AUTH                                               \
    NGX_HTTP_ACTINGWEB_LUA_TYPES


/*
 * Drops one subscription record and its diffs that were not cleared;
 * "cbsubs" counts the actor's subscriptions that want callbacks.
 */

#define NGX_HTTP_ACTINGWEB_LUA_SUB_DROP                                       \
    "local function unlist(subpeer, peer, id)\n"                              \
    "  local out = {}\n"                                                      \
    "  local list = redis.call('HGET', subpeer, peer) or ''\n"                \
    "  for s in string.gmatch(list, '%S+') do\n"                              \
    "    if s ~= id then out[#out + 1] = s end\n"                             \
    "  end\n"                                                                 \
    "  if #out == 0 then redis.call('HDEL', subpeer, peer)\n"                 \
    "  else redis.call('HSET', subpeer, peer, table.concat(out, ' ')) end\n"  \
    "end\n"                                                                   \
    "local function drop(actor, subs, diffs, rec)\n"                          \
    "  for i = rec.cleared + 1, rec.sequence do\n"                            \
    "    redis.call('HDEL', diffs, rec.subscriptionid .. ':' .. i)\n"         \
    "  end\n"                                                                 \
    "  redis.call('HDEL', subs, rec.subscriptionid)\n"                        \
    "  if rec.granularity ~= 'none'\n"                                        \
    "     and redis.call('EXISTS', actor) == 1\n"                             \
    "     and redis.call('HINCRBY', actor, 'cbsubs', -1) <= 0 then\n"         \
    "    redis.call('HDEL', actor, 'cbsubs')\n"                               \
    "  end\n"                                                                 \
    "end\n"


/*
 * Every key of an actor: the suffixes of <prefix>:{<id>}:<suffix>.  Actor
 * delete passes all of them as KEYS and deletes exactly those, so a new
 * kind of per-actor data needs a fixed key name added here (a hash keyed
 * by peer, say, rather than one key per peer).
 */

const char  *ngx_http_actingweb_actor_keys[] = {
    "actor",                                 /* must stay first: auth */
    "props",
    "changes",
    "trust",
    "trustsec",
    "subs",
    "subpeer",
    "diffs",
    "outsubs",
    "remote",
    "applied",
    "circuits",
    NULL
};


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

    /* KEYS: ngx_http_actingweb_actor_keys (actor first); ARGV: creator,
       pw */
    { "actor_delete",
      NGX_HTTP_ACTINGWEB_LUA_AUTH
      "redis.call('DEL', unpack(KEYS))\n"
      "return 1\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: creator, pw, change log, name,
       stored, path, value */
    { "prop_set",
      NGX_HTTP_ACTINGWEB_LUA_PROP
      "emit(ARGV[6], 'set', ARGV[7])\n"
      "redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])\n"
      "return cb\n",
      "" },

    /*
     * KEYS: actor, props, changes; ARGV: creator, pw, change log, name,
     * had ("0"/"1"), old stored, new stored, path, op, value
     * returns -1 when the value changed since it was read
     */
    { "prop_cas",
      NGX_HTTP_ACTINGWEB_LUA_PROP
      "local cur = redis.call('HGET', KEYS[2], ARGV[4])\n"
      "if ARGV[5] == '1' then\n"
      "  if cur ~= ARGV[6] then return -1 end\n"
      "elseif cur then return -1 end\n"
      "emit(ARGV[8], ARGV[9], ARGV[10])\n"
      "redis.call('HSET', KEYS[2], ARGV[4], ARGV[7])\n"
      "return cb\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: creator, pw, change log, name,
       path */
    { "prop_del",
      NGX_HTTP_ACTINGWEB_LUA_PROP
      "if redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then\n"
      "  emit(ARGV[5], 'delete', '\"\"')\n"
      "  redis.call('HDEL', KEYS[2], ARGV[4])\n"
      "end\n"
      "return cb\n",
      "" },

    /* KEYS: actor, props, changes; ARGV: creator, pw, change log */
    { "prop_del_all",
      NGX_HTTP_ACTINGWEB_LUA_PROP
      "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
      "  emit('[]', 'delete', '\"\"')\n"
      "  redis.call('DEL', KEYS[2])\n"
      "end\n"
      "return cb\n",
      "" },

    /* KEYS: actor, props, changes;
       ARGV: creator, pw, change log, value, name1, stored1, ... */
    { "prop_post",
      NGX_HTTP_ACTINGWEB_LUA_PROP
      "emit('[]', 'merge', ARGV[4])\n"
      "for i = 5, #ARGV, 2 do\n"
      "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
      "end\n"
      "return cb\n",
      "" },

    /*
     * A trust and its secret index change together.  The record keeps the
     * hash of its secret ("_sh") so that a replaced or deleted trust takes
     * its index entry along.  Anybody may ask for a trust, so a request
     * from outside (ARGV[5]: its baseuri) replaces an existing trust only
     * when it was verified and comes from the same baseuri.
     *
     * KEYS: actor, trust, trustsec; ARGV: peer id, record, secret hash,
     * "1" if the new record is verified, baseuri or "" (our own request)
     * returns 0: no actor, -1: secret in use by another peer, -2: would
     * replace a trust it may not, 1: stored
     */
    { "trust_put",
      "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
      "local owner = redis.call('HGET', KEYS[3], ARGV[3])\n"
      "if owner and owner ~= ARGV[1] then return -1 end\n"
      "local old = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "local rec = old and cjson.decode(old)\n"
      "if rec and ARGV[5] ~= ''\n"
      "   and (ARGV[4] ~= '1' or rec.baseuri ~= ARGV[5]) then\n"
      "  return -2\n"
      "end\n"
      "local sh = rec and rec._sh\n"
      "if sh and sh ~= ARGV[3] then redis.call('HDEL', KEYS[3], sh) end\n"
      "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
      "redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])\n"
      "return 1\n",
      "" },

    /*
     * The peer's subscriptions go with the trust, ours at the peer and
     * our copy of its data too.
     * KEYS: actor, trust, trustsec, subs, diffs, subpeer, outsubs, remote;
     * ARGV: peer id, secret
     * hash or "" (only that trust, not one that replaced it meanwhile)
     * returns 0: none, -1: another trust now, 1: deleted
     */
    { "trust_del",
      NGX_HTTP_ACTINGWEB_LUA_SUB_DROP
      "local old = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if not old then return 0 end\n"
      "local okd, orec = pcall(cjson.decode, old)\n"
      "local sh = okd and type(orec) == 'table' and orec._sh or nil\n"
      "if ARGV[2] ~= '' and sh ~= ARGV[2] then return -1 end\n"
      "local gone = {}\n"
      "local list = redis.call('HGET', KEYS[6], ARGV[1]) or ''\n"
      "for id in string.gmatch(list, '%S+') do\n"
      "  local v = redis.call('HGET', KEYS[4], id)\n"
      "  local ok, rec = pcall(cjson.decode, v or '')\n"
      "  if ok and type(rec) == 'table' and rec.peerid == ARGV[1] then\n"
      "    gone[#gone + 1] = rec\n"
      "  elseif not ok then\n"
      "    redis.call('HDEL', KEYS[4], id)\n"
      "  end\n"
      "end\n"
      "local outgone = {}\n"
      "local out = redis.call('HGETALL', KEYS[7])\n"
      "for i = 1, #out, 2 do\n"
      "  local ok, rec = pcall(cjson.decode, out[i + 1])\n"
      "  if not ok or type(rec) ~= 'table' or rec.peerid == ARGV[1] then\n"
      "    outgone[#outgone + 1] = out[i]\n"
      "  end\n"
      "end\n"
      "if sh then redis.call('HDEL', KEYS[3], sh) end\n"
      "redis.call('HDEL', KEYS[2], ARGV[1])\n"
      "redis.call('HDEL', KEYS[6], ARGV[1])\n"
      "for _, rec in ipairs(gone) do\n"
      "  drop(KEYS[1], KEYS[4], KEYS[5], rec)\n"
      "end\n"
      "for _, id in ipairs(outgone) do\n"
      "  redis.call('HDEL', KEYS[7], id)\n"
      "end\n"
      "redis.call('HDEL', KEYS[8], ARGV[1])\n"
      "return 1\n",
      "" },

    /*
     * Changes fields of one trust (a JSON object of them); returns the
     * record as it was, or nil when there is none (of that relationship).
     * KEYS: trust; ARGV: peer id, fields, relationship or ""
     */
    { "trust_set",
      "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
      "if not old then return false end\n"
      "local rec = cjson.decode(old)\n"
      "if ARGV[3] ~= '' and rec.relationship ~= ARGV[3] then\n"
      "  return false\n"
      "end\n"
      "for k, v in pairs(cjson.decode(ARGV[2])) do rec[k] = v end\n"
      "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))\n"
      "return old\n",
      "" },

    /* KEYS: trust, trustsec; ARGV: secret hash; the record or nil */
    { "trust_auth",
      "local p = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if not p then return false end\n"
      "return redis.call('HGET', KEYS[1], p)\n",
      "" },

    /* one field of the actor (devtest_twin); KEYS: actor; ARGV: creator,
       pw, field, value */
    { "actor_set",
      NGX_HTTP_ACTINGWEB_LUA_AUTH
      "redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])\n"
      "return 1\n",
      "" },

    /*
     * A peer's subscription, its cursor at the newest change event (one
     * is added to an empty stream so that the cursor always names an
     * event: a cursor that is gone from the stream means trimmed events).
     * The peer's subscription ids are listed in subpeer (bounded, and what
     * a trust's deletion reads, whatever other peers have).
     * KEYS: actor, trust, subs, changes, subpeer; ARGV: peer id,
     * subscription id, record (JSON), "1" if it wants callbacks, change
     * log, most subscriptions per peer
     * returns 0: no actor, -1: no approved trust, -2: id taken, -3: the
     * peer has too many, 1: stored
     */
    { "sub_create",
      "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
      "local t = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if not t or cjson.decode(t).approved ~= true then return -1 end\n"
      "if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return -2 end\n"
      "local list = redis.call('HGET', KEYS[5], ARGV[1]) or ''\n"
      "local n = 0\n"
      "for _ in string.gmatch(list, '%S+') do n = n + 1 end\n"
      "if n >= tonumber(ARGV[6]) then return -3 end\n"
      "local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)\n"
      "local rec = cjson.decode(ARGV[3])\n"
      "if last[1] then\n"
      "  rec.cursor = last[1][1]\n"
      "else\n"
      "  rec.cursor = redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[5], '*',\n"
      "                          'path', '[]', 'op', 'none', 'value', 'null')\n"
      "end\n"
      "redis.call('HSET', KEYS[3], ARGV[2], cjson.encode(rec))\n"
      "redis.call('HSET', KEYS[5], ARGV[1],\n"
      "           list == '' and ARGV[2] or list .. ' ' .. ARGV[2])\n"
      "if ARGV[4] == '1' then\n"
      "  redis.call('HINCRBY', KEYS[1], 'cbsubs', 1)\n"
      "end\n"
      "return 1\n",
      "" },

    /*
     * What a poll needs: the record, the peer's trust, the diffs not yet
     * cleared, and the events from the cursor on (the cursor's own first;
     * when it is gone, the newest event id instead, for a resync).
     * KEYS: trust, subs, changes, diffs; ARGV: subscription id, peer id,
     * how many events
     * returns nil (no such subscription of that peer) or
     * {record, trust, {diff...}, {event...}, newest id or false}
     */
    { "sub_pending",
      "local s = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if not s then return false end\n"
      "local rec = cjson.decode(s)\n"
      "if rec.peerid ~= ARGV[2] then return false end\n"
      "local t = redis.call('HGET', KEYS[1], ARGV[2])\n"
      "if not t then return false end\n"
      "local names, stored = {}, {}\n"
      "for i = rec.cleared + 1, rec.sequence do\n"
      "  names[#names + 1] = ARGV[1] .. ':' .. i\n"
      "end\n"
      "for i = 1, #names, 256 do\n"
      "  local got = redis.call('HMGET', KEYS[4],\n"
      "                         unpack(names, i, math.min(i + 255, #names)))\n"
      "  for _, v in ipairs(got) do stored[#stored + 1] = v or '' end\n"
      "end\n"
      "local ev = redis.call('XRANGE', KEYS[3], rec.cursor, '+',\n"
      "                      'COUNT', ARGV[3])\n"
      "local newest = false\n"
      "if ev[1] == nil or ev[1][1] ~= rec.cursor then\n"
      "  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)\n"
      "  if last[1] then newest = last[1][1] end\n"
      "  ev = {}\n"
      "end\n"
      "return {s, t, stored, ev, newest}\n",
      "" },

    /*
     * Stores the diffs a poll made, numbered on from the sequence it saw,
     * and moves the cursor: only if no other poll did so meanwhile.
     * KEYS: subs, diffs; ARGV: subscription id, cursor seen, sequence
     * seen, new cursor, diff 1, diff 2, ...
     * returns 0: gone, -1: changed meanwhile, 1: stored
     */
    { "sub_store",
      "local s = redis.call('HGET', KEYS[1], ARGV[1])\n"
      "if not s then return 0 end\n"
      "local rec = cjson.decode(s)\n"
      "if rec.cursor ~= ARGV[2] or rec.sequence ~= tonumber(ARGV[3]) then\n"
      "  return -1\n"
      "end\n"
      "for i = 5, #ARGV do\n"
      "  redis.call('HSET', KEYS[2],\n"
      "             ARGV[1] .. ':' .. (rec.sequence + i - 4),\n"
      "             ARGV[i])\n"
      "end\n"
      "rec.sequence = rec.sequence + #ARGV - 4\n"
      "rec.cursor = ARGV[4]\n"
      "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))\n"
      "return 1\n",
      "" },

    /*
     * KEYS: subs, diffs; ARGV: subscription id, peer id, sequence
     * returns nil (no such subscription of that peer) or {record, diff}
     */
    { "sub_diff",
      "local s = redis.call('HGET', KEYS[1], ARGV[1])\n"
      "if not s or cjson.decode(s).peerid ~= ARGV[2] then return false end\n"
      "return {s, redis.call('HGET', KEYS[2], ARGV[1] .. ':' .. ARGV[3])}\n",
      "" },

    /*
     * Clears the diffs up to a sequence (at most the current one).
     * KEYS: subs, diffs; ARGV: subscription id, peer id, sequence
     * returns 0: no such subscription of that peer, 1: cleared
     */
    { "sub_clear",
      "local s = redis.call('HGET', KEYS[1], ARGV[1])\n"
      "if not s then return 0 end\n"
      "local rec = cjson.decode(s)\n"
      "if rec.peerid ~= ARGV[2] then return 0 end\n"
      "local upto = math.min(tonumber(ARGV[3]), rec.sequence)\n"
      "if upto <= rec.cleared then return 1 end\n"
      "for i = rec.cleared + 1, upto do\n"
      "  redis.call('HDEL', KEYS[2], ARGV[1] .. ':' .. i)\n"
      "end\n"
      "rec.cleared = upto\n"
      "redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))\n"
      "return 1\n",
      "" },

    /*
     * KEYS: actor, subs, diffs, subpeer; ARGV: subscription id, peer id
     * returns 0: no such subscription of that peer, 1: deleted
     */
    { "sub_delete",
      NGX_HTTP_ACTINGWEB_LUA_SUB_DROP
      "local s = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if not s then return 0 end\n"
      "local rec = cjson.decode(s)\n"
      "if rec.peerid ~= ARGV[2] then return 0 end\n"
      "drop(KEYS[1], KEYS[2], KEYS[3], rec)\n"
      "unlist(KEYS[4], ARGV[2], ARGV[1])\n"
      "return 1\n",
      "" },

    /* KEYS: subs, outsubs; returns {inbound records, outbound records} */
    { "sub_list",
      "return {redis.call('HVALS', KEYS[1]), redis.call('HVALS', KEYS[2])}\n",
      "" },

    /*
     * The subscriber's side (callbacks.c): our subscription at a peer,
     * our copy of the peer's data and the trust with the peer.
     * KEYS: trust, outsubs, remote; ARGV: subscription id, peer id
     * returns {record or false, copy or false, trust or false}
     */
    { "outsub_get",
      "local s = redis.call('HGET', KEYS[2], ARGV[1])\n"
      "if s and cjson.decode(s).peerid ~= ARGV[2] then s = false end\n"
      "return {s, redis.call('HGET', KEYS[3], ARGV[2]),\n"
      "        redis.call('HGET', KEYS[1], ARGV[2])}\n",
      "" },

    /*
     * Stores what a callback, a poll or a baseline applied: the record
     * and the copy, only if neither changed since they were read, and
     * appends each applied change to the stream.
     * KEYS: actor, trust, outsubs, remote, applied; ARGV: subscription
     * id, peer id, sequence seen ("new": must not exist), record, copy
     * seen ("" none), copy, stream length, path (JSON), then per change:
     * sequence, type, data
     * returns 0: gone, -1: changed meanwhile, -2: id taken, -3: no
     * trust, 1: stored
     */
    { "outsub_apply",
      "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
      "if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return -3 end\n"
      "local s = redis.call('HGET', KEYS[3], ARGV[1])\n"
      "if ARGV[3] == 'new' then\n"
      "  if s then return -2 end\n"
      "else\n"
      "  if not s then return 0 end\n"
      "  local rec = cjson.decode(s)\n"
      "  if rec.peerid ~= ARGV[2] then return 0 end\n"
      "  if rec.sequence ~= tonumber(ARGV[3]) then return -1 end\n"
      "end\n"
      "if (redis.call('HGET', KEYS[4], ARGV[2]) or '') ~= ARGV[5] then\n"
      "  return -1\n"
      "end\n"
      "redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])\n"
      "redis.call('HSET', KEYS[4], ARGV[2], ARGV[6])\n"
      "for i = 9, #ARGV, 3 do\n"
      "  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*',\n"
      "             'peerid', ARGV[2], 'subscriptionid', ARGV[1],\n"
      "             'sequence', ARGV[i], 'type', ARGV[i + 1],\n"
      "             'path', ARGV[8], 'data', ARGV[i + 2])\n"
      "end\n"
      "return 1\n",
      "" },

    /*
     * Drops our subscription at a peer; the copy of the peer's data goes
     * with the last one.
     * KEYS: outsubs, remote; ARGV: subscription id, peer id
     * returns 0: none, 1: deleted
     */
    { "outsub_delete",
      "local s = redis.call('HGET', KEYS[1], ARGV[1])\n"
      "if not s or cjson.decode(s).peerid ~= ARGV[2] then return 0 end\n"
      "redis.call('HDEL', KEYS[1], ARGV[1])\n"
      "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do\n"
      "  if cjson.decode(v).peerid == ARGV[2] then return 1 end\n"
      "end\n"
      "redis.call('HDEL', KEYS[2], ARGV[2])\n"
      "return 1\n",
      "" },

    /*
     * Callback delivery claims an actor's pending work with a lease
     * ("cblease": "<owner> <expiry ms>"); an expired lease (its worker
     * died) is taken over.  The claim also reads what the run needs: the
     * events from the oldest cursor on, and per subscription that wants
     * callbacks its record, the peer's circuit and trust, and the diffs a
     * poll stored since the last run ("notified" on: their callbacks are
     * still due).  A subscription with actingweb_change_log diffs
     * uncleared takes no more, so its cursor does not hold the others'.
     * KEYS: actor, subs, circuits, trust, changes, diffs; ARGV: owner,
     * now (ms), lease (ms), probe lease (ms), events, unsent per
     * subscription, change log, diffs per run (the events read are fewer
     * when many subscriptions share them: a run's work is bounded), bytes
     * of events per run (at least one event after the cursor's)
     * returns nil: nothing pending, 0: leased by a live owner, or
     * {pending event id, {event...} (at most count), newest event id or
     * false, {id, peer
     * id, cursor, sequence, cleared, notified, target, subtarget,
     * resource, granularity, gzip in its accept_encoding (0/1), circuit,
     * trust, trimmed (0/1), last diff a resync (0/1), first unsent
     * sequence, notified after the unsent, {unsent diff...}, ...}, count}
     * circuit: "" closed, "<ms>" open until then (some worker's breaker
     * opened it), "probe": it was open and the time has passed: this
     * claim probes (half open), the others skip the peer for the probe
     * lease
     */
    { "cb_claim",
      "local p = redis.call('HGET', KEYS[1], 'pending')\n"
      "if not p then return false end\n"
      "local l = redis.call('HGET', KEYS[1], 'cblease')\n"
      "if l then\n"
      "  local o, e = string.match(l, '^(%S+) (%d+)$')\n"
      "  if o and o ~= ARGV[1] and tonumber(e) > tonumber(ARGV[2]) then\n"
      "    return 0\n"
      "  end\n"
      "end\n"
      "redis.call('HSET', KEYS[1], 'cblease',\n"
      "           ARGV[1] .. ' ' .. (tonumber(ARGV[2]) + tonumber(ARGV[3])))\n"
      "local function older(a, b)\n"
      "  local am, an = string.match(a, '^(%d+)-(%d+)$')\n"
      "  local bm, bn = string.match(b, '^(%d+)-(%d+)$')\n"
      "  if not am or not bm then return false end\n"
      "  am, an, bm, bn = tonumber(am), tonumber(an), tonumber(bm),\n"
      "                   tonumber(bn)\n"
      "  return am < bm or (am == bm and an < bn)\n"
      "end\n"
      "local function str(x) return type(x) == 'string' and x or '' end\n"
      "local first = redis.call('XRANGE', KEYS[5], '-', '+', 'COUNT', 1)[1]\n"
      "local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]\n"
      "local subs, circ, trusts, from = {}, {}, {}, nil\n"
      "local now, page = tonumber(ARGV[2]), tonumber(ARGV[6])\n"
      "for _, v in ipairs(redis.call('HVALS', KEYS[2])) do\n"
      "  local rec = cjson.decode(v)\n"
      "  local id = rec.peerid\n"
      "  if rec.granularity ~= 'none' and type(rec.cursor) == 'string' then\n"
      "    local t = trusts[id]\n"
      "    if t == nil then\n"
      "      t = redis.call('HGET', KEYS[4], id) or false\n"
      "      trusts[id] = t\n"
      "    end\n"
      "    local c = circ[id]\n"
      "    if t and not c then\n"
      "      c = redis.call('HGET', KEYS[3], id) or ''\n"
      "      if c ~= '' and tonumber(c) <= now then\n"
      "        redis.call('HSET', KEYS[3], id, now + tonumber(ARGV[4]))\n"
      "        c = 'probe'\n"
      "      end\n"
      "      circ[id] = c\n"
      "    end\n"
      "    if t then\n"
      "      local trimmed = first == nil or older(rec.cursor, first[1])\n"
      "      if not trimmed\n"
      "         and rec.sequence - rec.cleared < tonumber(ARGV[7])\n"
      "         and (from == nil or older(rec.cursor, from)) then\n"
      "        from = rec.cursor\n"
      "      end\n"
      "      local lr = 0\n"
      "      if trimmed and rec.sequence > rec.cleared then\n"
      "        local d = redis.call('HGET', KEYS[6], rec.subscriptionid ..\n"
      "                             ':' .. rec.sequence)\n"
      "        if d and string.find(d, '\"type\":\"resync\"', 1, true) then\n"
      "          lr = 1\n"
      "        end\n"
      "      end\n"
      "      local base = math.max(rec.notified or rec.sequence, rec.cleared)\n"
      "      local upto = math.min(rec.sequence, base + page)\n"
      "      local unsent = {}\n"
      "      if upto > base then\n"
      "        local names = {}\n"
      "        for i = base + 1, upto do\n"
      "          names[#names + 1] = rec.subscriptionid .. ':' .. i\n"
      "        end\n"
      "        unsent = redis.call('HMGET', KEYS[6], unpack(names))\n"
      "      end\n"
      "      local ae, n = 0, #subs\n"
      "      if type(rec.accept_encoding) == 'table' then\n"
      "        for _, e in ipairs(rec.accept_encoding) do\n"
      "          if e == 'gzip' then ae = 1 end\n"
      "        end\n"
      "      end\n"
      "      subs[n + 1] = str(rec.subscriptionid)\n"
      "      subs[n + 2] = id\n"
      "      subs[n + 3] = rec.cursor\n"
      "      subs[n + 4] = rec.sequence\n"
      "      subs[n + 5] = rec.cleared\n"
      "      subs[n + 6] = rec.notified or rec.sequence\n"
      "      subs[n + 7] = str(rec.target)\n"
      "      subs[n + 8] = str(rec.subtarget)\n"
      "      subs[n + 9] = str(rec.resource)\n"
      "      subs[n + 10] = str(rec.granularity)\n"
      "      subs[n + 11] = ae\n"
      "      subs[n + 12] = c\n"
      "      subs[n + 13] = t\n"
      "      subs[n + 14] = trimmed and 1 or 0\n"
      "      subs[n + 15] = lr\n"
      "      subs[n + 16] = base + 1\n"
      "      subs[n + 17] = upto > base and upto or base\n"
      "      subs[n + 18] = unsent\n"
      "    end\n"
      "  end\n"
      "end\n"
      "local count = math.min(tonumber(ARGV[5]),\n"
      "  math.max(9, math.floor(tonumber(ARGV[8]) / math.max(#subs / 18, 1))\n"
      "              + 1))\n"
      "local ev = {}\n"
      "if from then\n"
      "  ev = redis.call('XRANGE', KEYS[5], from, '+', 'COUNT', count)\n"
      "  local size = 0\n"
      "  for i, e in ipairs(ev) do\n"
      "    for _, f in ipairs(e[2]) do size = size + #f end\n"
      "    if size > tonumber(ARGV[9]) and i > 2 then\n"
      "      for j = #ev, i, -1 do ev[j] = nil end\n"
      "      count = #ev\n"
      "      break\n"
      "    end\n"
      "  end\n"
      "end\n"
      "return {p, ev, last and last[1] or false, subs, count}\n",
      "" },

    /*
     * A run's new diffs, for all subscriptions at once: each one's are
     * numbered on from the sequence the run saw, its cursor moves and
     * "notified" says the run has seen them; only if no poll moved the
     * subscription, or another run, meanwhile.  KEYS: subs, diffs; ARGV
     * per subscription: id, cursor seen, sequence seen, new cursor,
     * notified before the new diffs, notified seen, how many, diff 1, ...
     * returns per subscription 0: gone, -1: moved meanwhile, 1: stored
     */
    { "cb_store",
      "local out, i = {}, 1\n"
      "while i <= #ARGV do\n"
      "  local n = tonumber(ARGV[i + 6])\n"
      "  local s = redis.call('HGET', KEYS[1], ARGV[i])\n"
      "  if not s then\n"
      "    out[#out + 1] = 0\n"
      "  else\n"
      "    local rec = cjson.decode(s)\n"
      "    if rec.cursor ~= ARGV[i + 1]\n"
      "       or rec.sequence ~= tonumber(ARGV[i + 2])\n"
      "       or (rec.notified or rec.sequence) ~= tonumber(ARGV[i + 5])\n"
      "    then\n"
      "      out[#out + 1] = -1\n"
      "    else\n"
      "      for j = 1, n do\n"
      "        redis.call('HSET', KEYS[2],\n"
      "                   ARGV[i] .. ':' .. (rec.sequence + j),\n"
      "                   ARGV[i + 6 + j])\n"
      "      end\n"
      "      rec.sequence = rec.sequence + n\n"
      "      rec.cursor = ARGV[i + 3]\n"
      "      rec.notified = tonumber(ARGV[i + 4]) + n\n"
      "      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(rec))\n"
      "      out[#out + 1] = 1\n"
      "    end\n"
      "  end\n"
      "  i = i + 7 + n\n"
      "end\n"
      "return out\n",
      "" },

    /*
     * The claimed work is done: the lease goes, and the pending mark if
     * no write came meanwhile and the run left nothing for a next one.
     * KEYS: actor; ARGV: owner, event id claimed, "1": work left
     * returns 1: more work, 0: done
     */
    { "cb_release",
      "local l = redis.call('HGET', KEYS[1], 'cblease')\n"
      "if l and string.match(l, '^(%S+) ') == ARGV[1] then\n"
      "  redis.call('HDEL', KEYS[1], 'cblease')\n"
      "end\n"
      "local p = redis.call('HGET', KEYS[1], 'pending')\n"
      "if not p then return 0 end\n"
      "if p == ARGV[2] and ARGV[3] ~= '1' then\n"
      "  redis.call('HDEL', KEYS[1], 'pending')\n"
      "  return 0\n"
      "end\n"
      "return 1\n",
      "" },

    /*
     * Callbacks answered 2xx are cleared (the spec: "it MUST be cleared"):
     * their diffs go, and the cleared mark moves over the diffs gone from
     * its place on; a diff that failed stays until the subscriber polls
     * and clears it.  KEYS: subs, diffs; ARGV: subscription id, how many,
     * sequences, subscription id, ...
     */
    { "cb_cleared",
      "local i = 1\n"
      "while i <= #ARGV do\n"
      "  local id, n = ARGV[i], tonumber(ARGV[i + 1])\n"
      "  local s = redis.call('HGET', KEYS[1], id)\n"
      "  if s then\n"
      "    local rec = cjson.decode(s)\n"
      "    for j = i + 2, i + 1 + n do\n"
      "      redis.call('HDEL', KEYS[2], id .. ':' .. ARGV[j])\n"
      "    end\n"
      "    local c = rec.cleared\n"
      "    while c < rec.sequence\n"
      "          and redis.call('HEXISTS', KEYS[2], id .. ':' .. (c + 1))\n"
      "              == 0 do\n"
      "      c = c + 1\n"
      "    end\n"
      "    if c ~= rec.cleared then\n"
      "      rec.cleared = c\n"
      "      redis.call('HSET', KEYS[1], id, cjson.encode(rec))\n"
      "    end\n"
      "  end\n"
      "  i = i + 2 + n\n"
      "end\n"
      "return 1\n",
      "" },

    /*
     * A peer's circuit, for the other workers and instances: open until
     * (ms), or closed ("0": the field goes).  KEYS: circuits; ARGV: peer
     * id, until
     */
    { "cb_circuit",
      "if ARGV[2] == '0' then\n"
      "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
      "else\n"
      "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
      "end\n"
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
