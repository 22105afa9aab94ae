# /meta: every path of the spec's table, readable without credentials.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

block_defaults(config => <<'CONF');
    location /aw/ {
        actingweb;
        actingweb_type urn:actingweb:example.org:meta-test;
        actingweb_desc "Meta test actor";
        actingweb_version 2.5.1;
        actingweb_info https://example.org/about;
    }
    location /plain/ {
        actingweb;
    }
CONF

run_tests();

__DATA__

=== TEST 1: create an actor
--- request
POST /aw/
{"trustee_root": "https://trustee.example/app/t1"}
--- error_code: 201
--- capture
id = json:id



=== TEST 2: /meta as JSON, nested actingweb object, no credentials needed
--- request
GET /aw/{{id}}/meta
--- response_headers
Content-Type: application/json
--- response_body_json
{"id": "{{id}}", "type": "urn:actingweb:example.org:meta-test",
 "version": "2.5.1", "desc": "Meta test actor",
 "info": "https://example.org/about",
 "trustee_root": "https://trustee.example/app/t1",
 "actingweb": {"version": "1.4", "supported": "callbackcompression,nestedproperties,subscriptionresync,subscriptions,trust,trustpermissions",
               "formats": "json"}}



=== TEST 3: the text leaves
--- request eval
["GET /aw/{{id}}/meta/id", "GET /aw/{{id}}/meta/type",
 "GET /aw/{{id}}/meta/version", "GET /aw/{{id}}/meta/desc",
 "GET /aw/{{id}}/meta/actingweb/version",
 "GET /aw/{{id}}/meta/actingweb/supported",
 "GET /aw/{{id}}/meta/actingweb/formats"]
--- response_body eval
["{{id}}", "urn:actingweb:example.org:meta-test", "2.5.1",
 "Meta test actor", "1.4", "callbackcompression,nestedproperties,subscriptionresync,subscriptions,trust,trustpermissions", "json"]
--- response_headers eval
[("Content-Type: text/plain; charset=utf-8") x 7]



=== TEST 4: /meta/info redirects to the configured page
--- request
GET /aw/{{id}}/meta/info
--- error_code: 302
--- response_headers
Location: https://example.org/about



=== TEST 5: unsupported and unknown meta paths are 404 (spec MUST)
--- request eval
["GET /aw/{{id}}/meta/raml", "GET /aw/{{id}}/meta/trusttypes",
 "GET /aw/{{id}}/meta/actingweb", "GET /aw/{{id}}/meta/nothing/here",
 "GET /aw/{{id}}/meta/id/more"]
--- error_code eval
[404, 404, 404, 404, 404]
--- response_body eval
[('{"error":{"code":404,"message":"meta path not supported"}}') x 5]



=== TEST 6: defaults where nothing is configured; no info, no trustee_root
--- request
POST /plain/
--- error_code: 201
--- capture
plain = json:id



=== TEST 7: default meta
--- request eval
["GET /plain/{{plain}}/meta", "GET /plain/{{plain}}/meta/info"]
--- error_code eval
[200, 404]
--- response_body_json eval
['{"id": "{{plain}}", "type": "urn:actingweb:actingweb.org:nginx",
   "version": "1.0", "desc": "ActingWeb actor",
   "actingweb": {"version": "1.4", "supported": "callbackcompression,nestedproperties,subscriptionresync,subscriptions,trust,trustpermissions",
                 "formats": "json"}}',
 '{"error": {"code": 404, "message": "meta path not supported"}}']



=== TEST 8: unknown actor 404; writes are 405; bad credentials are ignored
--- request eval
["GET /aw/0123456789abcdef0123456789abcdef/meta",
 "PUT /aw/{{id}}/meta/id\nx",
 "GET /aw/{{id}}/meta/id"]
--- more_headers eval
["", "", "Authorization: Basic Zm9vOmJhcg=="]
--- error_code eval
[404, 405, 200]
--- response_headers eval
["", "Allow: GET, HEAD", ""]



=== TEST 9: HEAD /meta/id
--- request
HEAD /aw/{{id}}/meta/id
--- response_headers
Content-Length: 32
Content-Type: text/plain; charset=utf-8
--- response_body chomp



=== TEST 10: devtest ping only where enabled
--- config
    location /aw/ {
        actingweb;
        actingweb_devtest on;
    }
--- request
GET /aw/{{id}}/devtest/ping
--- error_code: 204
