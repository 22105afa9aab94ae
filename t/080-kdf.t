# Key derivation off the event loop (actingweb_thread_pool) and the bound on
# repeated authentication failures.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

# nginx's thread pools need epoll (or kqueue, eventport); under poll and
# select the module hashes inline, which the rest of the suite covers
if (($ENV{TEST_NGINX_EVENT_TYPE} // '') =~ /^(?:poll|select)$/) {
    plan(skip_all => "thread pools need epoll, not $ENV{TEST_NGINX_EVENT_TYPE}");
}

block_defaults(
    main_config => "thread_pool kdf threads=1;\n",
    config      => <<'CONF');
    location /aw/ { actingweb; actingweb_thread_pool kdf; }
    location = /status { actingweb_status; }
CONF

run_tests();

__DATA__

=== TEST 1: a thread pool no thread_pool directive defines is refused
--- main_config
--- config
    location /aw/ { actingweb; actingweb_thread_pool nope; }
--- must_die
--- error_log
unknown thread pool "nope"



=== TEST 2: without any thread pool directive the default pool is used
--- main_config
--- config
    location /aw/ { actingweb; }
--- request eval
["POST /aw/\n{\"creator\": \"d\", \"passphrase\": \"pw-default\"}"]
--- error_code eval
[201]
--- response_body_json eval
['{"id": "{{ANY}}", "creator": "d", "passphrase": "pw-default"}']
--- error_log
actingweb key derivation done



=== TEST 3: an actor is created and checked in a named pool
--- request
POST /aw/
{"creator": "k", "passphrase": "right-one"}
--- error_code: 201
--- response_body_json
{"id": "~^[0-9a-f]{32}$", "creator": "k", "passphrase": "right-one"}
--- capture
kid = json:id



=== TEST 4: right credentials pass, wrong ones are 403
--- request eval
["GET /aw/{{kid}}", "GET /aw/{{kid}}", "GET /aw/{{kid}}/properties"]
--- more_headers eval
["Authorization: " . basic_auth("k", "right-one"),
 "Authorization: " . basic_auth("k", "wrong-one"),
 "Authorization: " . basic_auth("k", "right-one")]
--- error_code eval
[200, 403, 200]
--- response_body_json eval
['{"id": "{{kid}}", "creator": "k"}',
 '{"error": {"code": 403, "message": "access denied"}}',
 '{}']



=== TEST 5: the same wrong credential again is answered without a new hash
--- request eval
["GET /aw/{{kid}}", "GET /aw/{{kid}}", "GET /aw/{{kid}}",
 "GET /aw/{{kid}}", "GET /aw/{{kid}}", "GET /status"]
--- more_headers eval
[("Authorization: " . basic_auth("k", "same-wrong")) x 3,
 ("Authorization: " . basic_auth("nobody", "same-wrong")) x 2, ""]
--- error_code eval
[403, 403, 403, 403, 403, 200]
--- response_body_json eval
[('{"error": {"code": 403, "message": "access denied"}}') x 5,
 '{"version": "{{ANY}}", "redis_up": true, "requests": 5, "errors_4xx": 5,
   "errors_5xx": 0, "redis_commands": 5, "redis_timeouts": 0,
   "redis_unavailable": 0, "redis_connects": 1, "redis_disconnects": 0,
   "auth_cache_hits": 0, "auth_kdf_runs": 2, "...": null}']



=== TEST 6: many different wrong passphrases hit the actor's bound: 429
The first 10 derivations are always run; a token comes back per second,
so of the next 15 most are refused without one.
--- request eval
[map({ "GET /aw/{{kid}}/properties" } 1 .. 25), "GET /status"]
--- more_headers eval
[map({ "Authorization: " . basic_auth("k", "guess-$_") } 1 .. 25), ""]
--- error_code_like eval
[(qr/^403$/) x 10, (qr/^(403|429)$/) x 14, qr/^429$/, qr/^200$/]
--- response_body_like eval
[(qr/^\{"error":\{"code":403,"message":"access denied"\}\}$/) x 10,
 (qr/"code":(403|429)/) x 14,
 qr/^\{"error":\{"code":429,"message":"too many failed authentications, try later"\}\}$/,
 qr/"auth_kdf_runs":1\d\b/]
--- response_headers eval
[("") x 24, "Retry-After: 1\nContent-Type: application/json", ""]



=== TEST 7: a second actor
--- request
POST /aw/
{"creator": "k2", "passphrase": "other"}
--- error_code: 201
--- capture
k2 = json:id



=== TEST 8: the bound is per actor: another actor is still checked
--- request eval
[map({ "GET /aw/{{kid}}" } 1 .. 25), "GET /aw/{{k2}}", "GET /aw/{{k2}}"]
--- more_headers eval
[map({ "Authorization: " . basic_auth("k", "g-$_") } 1 .. 25),
 "Authorization: " . basic_auth("k2", "g-1"),
 "Authorization: " . basic_auth("k2", "other")]
--- error_code_like eval
[(qr/^403$/) x 10, (qr/^(403|429)$/) x 14, qr/^429$/, qr/^403$/,
 qr/^200$/]
--- response_body_like eval
[(qr/access denied/) x 10, (qr/"code":4/) x 14, qr/too many failed/,
 qr/access denied/, qr/"creator":"k2"/]



=== TEST 9: remembered right credentials are not held up by the bound
--- request eval
["GET /aw/{{kid}}/properties",
 map({ "GET /aw/{{kid}}/properties" } 1 .. 25),
 "GET /aw/{{kid}}/properties"]
--- more_headers eval
["Authorization: " . basic_auth("k", "right-one"),
 map({ "Authorization: " . basic_auth("k", "x-$_") } 1 .. 25),
 "Authorization: " . basic_auth("k", "right-one")]
--- error_code_like eval
[qr/^200$/, (qr/^403$/) x 10, (qr/^(403|429)$/) x 14, qr/^429$/, qr/^200$/]
--- response_body_like eval
[qr/^\{\}$/, (qr/access denied/) x 10, (qr/"code":4/) x 14,
 qr/too many failed/, qr/^\{\}$/]



=== TEST 10: clients that go away while hashes are derived leave no error
--- raw_request eval
CORE::join("", map({ "POST /aw/ HTTP/1.1\r\nHost: localhost\r\n"
               . "Content-Type: application/json\r\nContent-Length: 35\r\n"
               . "\r\n{\"creator\":\"gone\",\"passphrase\":\"p\"}" } 1 .. 40))
--- timeout: 0.05s
--- abort
--- ignore_response
--- wait: 1
