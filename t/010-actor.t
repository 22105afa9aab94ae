# Factory, actor root (GET/DELETE) and creator authentication.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

run_tests();

__DATA__

=== TEST 1: module loads; a factory location answers
--- config
    location /aw/ { actingweb; }
--- request
GET /aw/
--- error_code: 404
--- response_body_json
{"error": {"code": 404, "message": "no factory page here; POST to create an actor"}}
--- response_headers
Content-Type: application/json



=== TEST 2: create an actor with JSON: 201, absolute Location, id/creator/passphrase
--- config
    location /aw/ { actingweb; }
--- request
POST /aw/
{"creator": "alice@example.com", "passphrase": "s3cret!"}
--- more_headers
Content-Type: application/json
--- error_code: 201
--- response_headers_like
Location: http://localhost(:\d+)?/aw/[0-9a-f]{32}
Content-Type: application/json
--- response_body_json
{"id": "~^[0-9a-f]{32}$", "creator": "alice@example.com", "passphrase": "s3cret!"}
--- capture
alice = json:id
alice_url = header:Location



=== TEST 3: the Location header is the actor URL
--- config
    location /aw/ { actingweb; }
--- request
GET /aw/{{alice}}
--- more_headers
Authorization: {{basic:alice@example.com:s3cret!}}
--- response_body_json
{"id": "{{alice}}", "creator": "alice@example.com"}
--- response_headers
Content-Type: application/json



=== TEST 4: no body: creator "creator" and a generated 40-hex passphrase
--- config
    location /aw/ { actingweb; }
--- request
POST /aw/
--- error_code: 201
--- response_body_json
{"id": "~^[0-9a-f]{32}$", "creator": "creator", "passphrase": "~^[0-9a-f]{40}$"}
--- capture
anon = json:id
anon_pass = json:passphrase



=== TEST 5: the generated passphrase works for the creator
--- config
    location /aw/ { actingweb; }
--- request
GET /aw/{{anon}}
--- more_headers
Authorization: {{basic:creator:{{anon_pass}}}}
--- response_body_json
{"id": "{{anon}}", "creator": "creator"}



=== TEST 6: form-encoded creation with trustee_root
--- config
    location /aw/ { actingweb; }
--- request
POST /aw/
creator=bob&passphrase=pa%26ss+word&trustee_root=https%3A%2F%2Fpeer.example%2Fapp%2Fx
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 201
--- response_body_json
{"id": "{{ANY}}", "creator": "bob", "passphrase": "pa&ss word",
 "trustee_root": "https://peer.example/app/x"}
--- capture
bob = json:id



=== TEST 7: form-encoded credentials were decoded (space, &)
--- config
    location /aw/ { actingweb; }
--- request
GET /aw/{{bob}}
--- more_headers
Authorization: {{basic:bob:pa&ss word}}
--- response_body_json
{"id": "{{bob}}", "creator": "bob", "trustee_root": "https://peer.example/app/x"}



=== TEST 8: creators need not be unique
--- config
    location /aw/ { actingweb; }
--- request
POST /aw/
{"creator": "alice@example.com", "passphrase": "other"}
--- error_code: 201
--- response_body_json
{"id": "~^[0-9a-f]{32}$", "creator": "alice@example.com", "passphrase": "other"}



=== TEST 9: wrong types and values are 400 and create nothing
--- config
    location /aw/ { actingweb; }
--- init
$main::keys_before = () = ActingWeb::Test::redis_keys();
--- request eval
[
 "POST /aw/\n{\"creator\": 42}",
 "POST /aw/\n{\"passphrase\": [\"x\"]}",
 "POST /aw/\n{\"trustee_root\": \"ftp://x\"}",
 "POST /aw/\n{\"creator\": \"a:b\"}",
 "POST /aw/\n[1,2]",
 "POST /aw/\n{\"creator\": ",
 "POST /aw/\n\"just a string\"",
]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]
--- response_body_json eval
[
 '{"error": {"code": 400, "message": "creator must be a string"}}',
 '{"error": {"code": 400, "message": "passphrase must be a string"}}',
 '{"error": {"code": 400, "message": "trustee_root must be an http:// or https:// URL"}}',
 '{"error": {"code": 400, "message": "creator must not contain \":\" or control characters"}}',
 '{"error": {"code": 400, "message": "body must be a JSON object"}}',
 '{"error": {"code": 400, "message": "malformed JSON"}}',
 '{"error": {"code": 400, "message": "body must be a JSON object"}}',
]



=== TEST 10: ... and nothing was stored by them
--- config
    location = /keys {
        return 200 "checked in init\n";
    }
--- init
my @keys = ActingWeb::Test::redis_keys();
die "400s stored keys: @keys\n" if @keys != $main::keys_before;
--- request
GET /keys
--- response_body
checked in init



=== TEST 11: GET actor: no credentials 401 with WWW-Authenticate
--- config
    location /aw/ { actingweb; }
--- request
GET /aw/{{alice}}
--- error_code: 401
--- response_headers
WWW-Authenticate: Basic realm="ActingWeb"
Content-Type: application/json
--- response_body_json
{"error": {"code": 401, "message": "authentication required"}}



=== TEST 12: wrong passphrase, wrong user, malformed header, unknown scheme
--- config
    location /aw/ { actingweb; }
--- request eval
["GET /aw/{{alice}}", "GET /aw/{{alice}}", "GET /aw/{{alice}}", "GET /aw/{{alice}}"]
--- more_headers eval
[
 "Authorization: {{basic:alice\@example.com:wrong}}",
 "Authorization: {{basic:mallory:s3cret!}}",
 "Authorization: Basic !!!notbase64",
 "Authorization: Digest foo",
]
--- error_code eval
[403, 403, 401, 401]



=== TEST 13: unknown or malformed actor ids are 404 before any auth
--- config
    location /aw/ { actingweb; }
--- request eval
["GET /aw/0123456789abcdef0123456789abcdef", "GET /aw/not-an-id",
 "DELETE /aw/0123456789abcdef0123456789abcdef", "GET /aw/ABCDEF0123456789ABCDEF0123456789"]
--- error_code eval
[404, 404, 404, 404]
--- response_body_json eval
[
 '{"error": {"code": 404, "message": "actor not found"}}',
 '{"error": {"code": 404, "message": "actor not found"}}',
 '{"error": {"code": 404, "message": "actor not found"}}',
 '{"error": {"code": 404, "message": "actor not found"}}',
]



=== TEST 14: other methods on the actor root and the factory are 405 with Allow
--- config
    location /aw/ { actingweb; }
--- request eval
["PUT /aw/{{alice}}\nx", "PATCH /aw/", "OPTIONS /aw/{{alice}}"]
--- error_code eval
[405, 405, 405]
--- response_headers eval
["Allow: GET, HEAD, DELETE", "Allow: POST", "Allow: GET, HEAD, DELETE"]



=== TEST 15: DELETE needs the creator
--- config
    location /aw/ { actingweb; }
--- request eval
["DELETE /aw/{{alice}}", "DELETE /aw/{{alice}}"]
--- more_headers eval
["", "Authorization: {{basic:alice\@example.com:nope}}"]
--- error_code eval
[401, 403]



=== TEST 16: DELETE by the creator: 204, then 404 everywhere
--- config
    location /aw/ { actingweb; }
--- request eval
["PUT /aw/{{alice}}/properties/x\nvalue",
 "DELETE /aw/{{alice}}",
 "GET /aw/{{alice}}",
 "GET /aw/{{alice}}/meta",
 "GET /aw/{{alice}}/properties"]
--- more_headers
Authorization: {{basic:alice@example.com:s3cret!}}
--- error_code eval
[204, 204, 404, 404, 404]



=== TEST 17: every key of the deleted actor is gone from Redis
--- config
    location = /t { return 200 "checked in init\n"; }
--- init
my $id = ActingWeb::Test::captured('alice');
my @left = grep { /\Q$id\E/ } ActingWeb::Test::redis_keys();
die "keys left after DELETE: @left\n" if @left;
my @bob = grep { /\Q${\ ActingWeb::Test::captured('bob')}\E/ }
          ActingWeb::Test::redis_keys();
die "bob's actor key is missing\n" unless grep { /:actor$/ } @bob;
--- request
GET /t
--- response_body
checked in init



=== TEST 18: _method=DELETE on a POST deletes (spec: method override)
--- config
    location /aw/ { actingweb; }
--- request eval
["POST /aw/{{bob}}?_method=DELETE", "GET /aw/{{bob}}"]
--- more_headers
Authorization: {{basic:bob:pa&ss word}}
--- error_code eval
[204, 404]



=== TEST 19: trustee creator: a strong passphrase works as Bearer, a weak one never
--- config
    location /aw/ { actingweb; }
--- request
POST /aw/
{"creator": "trustee", "passphrase": "0123456789abcdefXYZ"}
--- error_code: 201
--- capture
tr = json:id



=== TEST 20: trustee Bearer
--- config
    location /aw/ { actingweb; }
--- request eval
["GET /aw/{{tr}}", "GET /aw/{{tr}}", "GET /aw/{{tr}}"]
--- more_headers eval
["Authorization: Bearer 0123456789abcdefXYZ", "Authorization: Bearer wrong-but-long-enough", "Authorization: Bearer short"]
--- error_code eval
[200, 403, 403]



=== TEST 21: base URL from actingweb_base_url
--- config
    location /aw/ {
        actingweb;
        actingweb_base_url https://actors.example.org/app/;
    }
--- request
POST /aw/
--- error_code: 201
--- response_headers_like
Location: https://actors\.example\.org/app/[0-9a-f]{32}$
