# /properties: get, put, nested paths, POST collections, deletes, value
# types, and the change events each write leaves in Redis.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();

# every block talks to the same actor as its creator
block_defaults(
    config       => "    location /aw/ { actingweb; }\n",
    more_headers => "Authorization: {{basic:alice:pw}}\n",
);

run_tests();

__DATA__

=== TEST 1: create the actor
--- request
POST /aw/
{"creator": "alice", "passphrase": "pw"}
--- error_code: 201
--- capture
id = json:id



=== TEST 2: empty properties are {} (200), a missing one 404
--- request eval
["GET /aw/{{id}}/properties", "GET /aw/{{id}}/properties/nothing"]
--- error_code eval
[200, 404]
--- response_body_json eval
['{}', '{"error": {"code": 404, "message": "property not found"}}']



=== TEST 3: PUT text, read it back raw as text/plain
--- request eval
["PUT /aw/{{id}}/properties/greeting\nhello world",
 "GET /aw/{{id}}/properties/greeting"]
--- error_code eval
[204, 200]
--- response_body eval
["", "hello world"]
--- response_headers eval
["", "Content-Type: text/plain; charset=utf-8"]



=== TEST 4: text stays byte for byte, whitespace and UTF-8 included
--- request eval
["PUT /aw/{{id}}/properties/poem\nGrüße,  世界 🌍\ttab \r\n end",
 "GET /aw/{{id}}/properties/poem"]
--- more_headers
Authorization: {{basic:alice:pw}}
Content-Type: text/plain; charset=utf-8
--- error_code eval
[204, 200]
--- response_body eval
["", "Grüße,  世界 🌍\ttab \r\n end"]



=== TEST 5: a JSON body is stored as JSON and comes back as JSON
--- request eval
["PUT /aw/{{id}}/properties/loc\n{ \"lat\" : 59.9, \"tags\": [\"a\", \"b\"] }",
 "GET /aw/{{id}}/properties/loc"]
--- error_code eval
[204, 200]
--- response_body eval
["", '{ "lat" : 59.9, "tags": ["a", "b"] }']
--- response_headers eval
["", "Content-Type: application/json"]



=== TEST 6: text/plain keeps JSON-looking text as text
--- request
PUT /aw/{{id}}/properties/looksjson
{"a":1}
--- more_headers
Authorization: {{basic:alice:pw}}
Content-Type: text/plain
--- error_code: 204



=== TEST 7: GET all: text as strings, JSON values embedded
--- request
GET /aw/{{id}}/properties
--- response_body_json
{"greeting": "hello world", "poem": "Grüße,  世界 🌍\ttab \r\n end",
 "loc": {"lat": 59.9, "tags": ["a", "b"]}, "looksjson": "{\"a\":1}"}



=== TEST 8: numbers, booleans and JSON strings keep their JSON form
--- request eval
["PUT /aw/{{id}}/properties/n\n4", "GET /aw/{{id}}/properties/n",
 "PUT /aw/{{id}}/properties/b\ntrue", "GET /aw/{{id}}/properties/b",
 "PUT /aw/{{id}}/properties/s\n\"quoted\"", "GET /aw/{{id}}/properties/s"]
--- error_code eval
[204, 200, 204, 200, 204, 200]
--- response_body eval
["", "4", "", "true", "", '"quoted"']



=== TEST 9: nested PUT creates objects and deep-merges, siblings stay
--- request eval
["PUT /aw/{{id}}/properties/location/latitude\n{\"hours\": 3}",
 "PUT /aw/{{id}}/properties/location/latitude\n{\"minutes\": 1}",
 "PUT /aw/{{id}}/properties/location/longitude/deg\n10",
 "PUT /aw/{{id}}/properties/location/latitude/hours\n5"]
--- error_code eval
[204, 204, 204, 204]



=== TEST 10: ... the merged result
--- request
GET /aw/{{id}}/properties/location
--- response_body_json
{"latitude": {"hours": 5, "minutes": 1}, "longitude": {"deg": 10}}



=== TEST 11: nested GET walks objects and arrays; strings come back as text
--- request eval
["GET /aw/{{id}}/properties/location/latitude",
 "GET /aw/{{id}}/properties/location/latitude/minutes",
 "GET /aw/{{id}}/properties/loc/tags/1",
 "GET /aw/{{id}}/properties/location/nothing",
 "GET /aw/{{id}}/properties/loc/tags/7",
 "GET /aw/{{id}}/properties/greeting/deeper"]
--- error_code eval
[200, 200, 200, 404, 404, 404]
--- response_body eval
['{"hours":5,"minutes":1}', "1", "b",
 '{"error":{"code":404,"message":"property not found"}}',
 '{"error":{"code":404,"message":"property not found"}}',
 '{"error":{"code":404,"message":"property not found"}}']
--- response_headers eval
["Content-Type: application/json", "Content-Type: application/json",
 "Content-Type: text/plain; charset=utf-8", "", "", ""]



=== TEST 12: nested PUT through a text value or a non-object is 409
--- request eval
["PUT /aw/{{id}}/properties/greeting/x\n1",
 "PUT /aw/{{id}}/properties/loc/tags/x\n1",
 "GET /aw/{{id}}/properties/loc"]
--- error_code eval
[409, 409, 200]
--- response_body_json eval
['{"error": {"code": 409, "message": "property holds text, not a JSON object"}}',
 '{"error": {"code": 409, "message": "path crosses a value that is not a JSON object"}}',
 '{"lat": 59.9, "tags": ["a", "b"]}']



=== TEST 13: nested DELETE removes one member; missing paths are 404
--- request eval
["DELETE /aw/{{id}}/properties/location/latitude/hours",
 "GET /aw/{{id}}/properties/location/latitude",
 "DELETE /aw/{{id}}/properties/location/latitude/hours",
 "DELETE /aw/{{id}}/properties/nothing/x"]
--- error_code eval
[204, 200, 404, 404]
--- response_body eval
["", '{"minutes":1}',
 '{"error":{"code":404,"message":"property not found"}}',
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 14: DELETE one property: 204, also when it does not exist
--- request eval
["DELETE /aw/{{id}}/properties/poem", "GET /aw/{{id}}/properties/poem",
 "DELETE /aw/{{id}}/properties/poem"]
--- error_code eval
[204, 404, 204]



=== TEST 15: POST a JSON collection: 201 echoing it; strings stored as text
--- request
POST /aw/{{id}}/properties
{"data1": {"str1": "initial"}, "data2": "initial", "count": 3, "uni": "Ωmega ✓"}
--- error_code: 201
--- response_headers
Content-Type: application/json
--- response_body_json
{"data1": {"str1": "initial"}, "data2": "initial", "count": 3, "uni": "Ωmega ✓"}



=== TEST 16: POSTed values read back individually
--- request eval
["GET /aw/{{id}}/properties/data2", "GET /aw/{{id}}/properties/data1/str1",
 "GET /aw/{{id}}/properties/count", "GET /aw/{{id}}/properties/uni"]
--- response_body eval
["initial", "initial", "3", "Ωmega ✓"]



=== TEST 17: POST form-encoded
--- request
POST /aw/{{id}}/properties
f1=hello+there&f2=%C3%A6%C3%B8%C3%A5&empty=
--- more_headers
Authorization: {{basic:alice:pw}}
Content-Type: application/x-www-form-urlencoded
--- error_code: 201
--- response_body_json
{"f1": "hello there", "f2": "æøå", "empty": ""}



=== TEST 18: POST is all-or-nothing: one bad name stores nothing
--- request eval
["POST /aw/{{id}}/properties\n{\"ok1\": 1, \"bad/name\": 2}",
 "POST /aw/{{id}}/properties\n{\"ok2\": 1, \"ok2\": 2}",
 "POST /aw/{{id}}/properties\n{}",
 "POST /aw/{{id}}/properties\n[1]",
 "GET /aw/{{id}}/properties/ok1",
 "GET /aw/{{id}}/properties/ok2"]
--- error_code eval
[400, 400, 400, 400, 404, 404]
--- response_body_json eval
['{"error": {"code": 400, "message": "invalid property name: names are 1-255 bytes of UTF-8 without \"/\" or control characters"}}',
 '{"error": {"code": 400, "message": "duplicate property name"}}',
 '{"error": {"code": 400, "message": "no properties given"}}',
 '{"error": {"code": 400, "message": "body must be a JSON object of properties"}}',
 '{"error": {"code": 404, "message": "property not found"}}',
 '{"error": {"code": 404, "message": "property not found"}}']



=== TEST 19: POST below /properties and PUT on /properties are 405
--- request eval
["POST /aw/{{id}}/properties/x\n{}", "PUT /aw/{{id}}/properties\n{}"]
--- error_code eval
[405, 405]
--- response_headers eval
["Allow: GET, HEAD, PUT, DELETE", "Allow: GET, HEAD, POST, DELETE"]



=== TEST 20: every write left a change event in the actor's stream
--- request
GET /aw/{{id}}/properties/count
--- response_body: 3
--- init
my $key = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . ActingWeb::Test::captured('id')
          . "}:changes";
my $ev = ActingWeb::Test::redis_cmd('XREVRANGE', $key, '+', '-', 'COUNT', 30);
my @ev = map { +{ @{ $_->[1] } } } @$ev;
my ($post) = grep { $_->{op} eq 'merge' && $_->{value} =~ /f1/ } @ev;
die "no merge event for the form POST\n" unless $post;
my ($del) = grep { $_->{op} eq 'delete' && $_->{path} eq '["poem"]' } @ev;
die "no delete event for poem\n" unless $del && $del->{value} eq '""';
my ($nested) = grep { $_->{path} eq '["location","latitude","hours"]' } @ev;
die "no nested event\n" unless $nested;
my @del_poem = grep { $_->{path} eq '["poem"]' && $_->{op} eq 'delete' } @ev;
die "a DELETE of a missing property made an event\n" if @del_poem != 1;



=== TEST 21: _method=PUT override on POST; never on GET (no CSRF by link)
--- request eval
["POST /aw/{{id}}/properties/ov?_method=PUT\nvia-arg",
 "GET /aw/{{id}}/properties/ov",
 "GET /aw/{{id}}/properties/ov?_method=DELETE",
 "GET /aw/{{id}}/properties/ov",
 "POST /aw/{{id}}/properties/ov2?_method=FROB\nx",
 "POST /aw/{{id}}/properties/ov?_method=DELETE",
 "GET /aw/{{id}}/properties/ov"]
--- error_code eval
[204, 200, 400, 200, 400, 204, 404]
--- response_body eval
["", "via-arg",
 '{"error":{"code":400,"message":"method override needs a POST request"}}',
 "via-arg",
 '{"error":{"code":400,"message":"unsupported method override"}}', "",
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 22: X-HTTP-Method-Override: DELETE
--- request eval
["POST /aw/{{id}}/properties/count", "GET /aw/{{id}}/properties/count"]
--- more_headers
Authorization: {{basic:alice:pw}}
X-HTTP-Method-Override: DELETE
--- error_code eval
[204, 404]



=== TEST 23: HEAD gives headers only
--- request
HEAD /aw/{{id}}/properties/data2
--- response_headers
Content-Type: text/plain; charset=utf-8
Content-Length: 7
--- response_body chomp



=== TEST 24: without credentials 401; wrong ones 403; nothing changes
--- request eval
["PUT /aw/{{id}}/properties/data2\nhacked", "DELETE /aw/{{id}}/properties",
 "POST /aw/{{id}}/properties\n{\"x\":1}", "GET /aw/{{id}}/properties",
 "GET /aw/{{id}}/properties/data2"]
--- more_headers eval
["", "Authorization: {{basic:alice:wrong}}", "", "Authorization: {{basic:eve:pw}}",
 "Authorization: {{basic:alice:pw}}"]
--- error_code eval
[401, 403, 401, 403, 200]
--- response_body eval
[qr/authentication required/, qr/access denied/, qr/authentication required/,
 qr/access denied/, "initial"]



=== TEST 25: DELETE /properties removes all; GET is {} again
--- request eval
["DELETE /aw/{{id}}/properties", "GET /aw/{{id}}/properties"]
--- error_code eval
[204, 200]
--- response_body eval
["", "{}"]



=== TEST 26: another actor's credentials do not open this actor
--- request eval
["POST /aw/\n{\"creator\": \"alice\", \"passphrase\": \"other\"}",
 "GET /aw/{{id}}/properties"]
--- more_headers eval
["", "Authorization: {{basic:alice:other}}"]
--- error_code eval
[201, 403]



=== TEST 27: a write with credentials this worker verified skips the actor read
--- config
    location /aw/ { actingweb; }
--- init
# a read verifies the credentials (and the worker remembers them)
my $port = ActingWeb::Test::wait_for_server();
my $res = HTTP::Tiny->new->get(
    "http://127.0.0.1:$port/aw/" . ActingWeb::Test::captured('id')
    . "/properties",
    { headers => { Authorization => ActingWeb::Test::basic_auth('alice',
                                                                'pw') } });
die "warm-up GET: $res->{status}\n" unless $res->{status} == 200;
--- request
PUT /aw/{{id}}/properties/fast
yes
--- error_code: 204
--- error_log
actingweb write with remembered credentials



=== TEST 28: passphrase changed in Redis: remembered credentials no longer write
--- config
    location /aw/ { actingweb; }
--- init
# give alice's actor the passphrase hash of another actor ("other")
my $p = $ENV{TEST_NGINX_REDIS_PREFIX};
my $me = ActingWeb::Test::captured('id');
my ($other) = grep { $_ ne "{$me}:actor" } grep { /:actor$/ }
              ActingWeb::Test::redis_keys();
my $hash = ActingWeb::Test::redis_cmd('HGET', "$p:$other", 'pw');
ActingWeb::Test::redis_cmd('HSET', "$p:{$me}:actor", 'pw', $hash);
--- request eval
["PUT /aw/{{id}}/properties/fast\nstolen", "GET /aw/{{id}}/properties/fast",
 "DELETE /aw/{{id}}/properties/fast", "POST /aw/{{id}}/properties\n{\"x\":1}",
 "GET /aw/{{id}}/properties/fast"]
--- more_headers eval
["Authorization: {{basic:alice:pw}}", "Authorization: {{basic:alice:other}}",
 "Authorization: {{basic:alice:pw}}", "Authorization: {{basic:alice:pw}}",
 "Authorization: {{basic:alice:other}}"]
--- error_code eval
[403, 200, 403, 403, 200]
--- response_body eval
[qr/access denied/, "yes", qr/access denied/, qr/access denied/, "yes"]



=== TEST 29: a second actor for the failure blocks
--- request
POST /aw/
{"creator": "alice", "passphrase": "pw"}
--- more_headers
--- error_code: 201
--- capture
id2 = json:id



=== TEST 30: ... with a plain and a JSON property
--- request
POST /aw/{{id2}}/properties
{"x": "old", "j": {"a": 1}}
--- error_code: 201



=== TEST 31: the change stream cannot be written (wrong type): every write is 500 JSON and changes nothing
--- init
# XADD fails on a string: the value write used to come first and stay
my $k = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . captured('id2') . "}:changes";
redis_cmd('DEL', $k);
redis_cmd('SET', $k, 'not a stream');
--- request eval
["PUT /aw/{{id2}}/properties/x\nnew",
 "PUT /aw/{{id2}}/properties/j/a\n2",
 "PUT /aw/{{id2}}/properties/fresh\nnew",
 "POST /aw/{{id2}}/properties\n{\"x\": \"posted\"}",
 "DELETE /aw/{{id2}}/properties/x",
 "DELETE /aw/{{id2}}/properties"]
--- error_code eval
[500, 500, 500, 500, 500, 500]
--- response_body eval
[('{"error":{"code":500,"message":"storage error"}}') x 6]
--- error_log eval
qr/actingweb: redis error: WRONGTYPE \S+:changes is a string, not a stream/
--- no_error_log
[alert]
[crit]



=== TEST 32: ... and nothing was left half-written
--- request
GET /aw/{{id2}}/properties
--- response_body_json
{"x": "old", "j": {"a": 1}}
--- init
my $p = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . captured('id2') . "}";
my $v = redis_cmd('GET', "$p:changes");
die "changes became '$v'\n" unless $v eq 'not a stream';
my %props = redis_cmd('HGETALL', "$p:props");
die "props changed: @{[ %props ]}\n"
    unless join(',', map { "$_=$props{$_}" } sort keys %props)
           eq 'j=j{"a":1},x=told';
redis_cmd('DEL', "$p:changes");



=== TEST 33: the properties hash has the wrong type: writes are 500 JSON and add no event
--- init
my $p = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . captured('id2') . "}";
$main::events = redis_cmd('XLEN', "$p:changes");
redis_cmd('RENAME', "$p:props", "$p:props-saved");
redis_cmd('SET', "$p:props", 'not a hash');
--- request eval
["PUT /aw/{{id2}}/properties/x\nnew",
 "POST /aw/{{id2}}/properties\n{\"x\": \"posted\"}",
 "DELETE /aw/{{id2}}/properties/x",
 "DELETE /aw/{{id2}}/properties"]
--- error_code eval
[500, 500, 500, 500]
--- response_body eval
[('{"error":{"code":500,"message":"storage error"}}') x 4]
--- error_log eval
qr/actingweb: redis error: WRONGTYPE \S+:props is a string, not a hash/
--- no_error_log
[alert]
[crit]



=== TEST 34: ... no event was added, the string is untouched
--- request
GET /aw/{{id2}}/properties/x
--- response_body: old
--- init
my $p = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . captured('id2') . "}";
my $n = redis_cmd('XLEN', "$p:changes");
die "events: $n, want 0\n" if $n;
my $v = redis_cmd('GET', "$p:props");
die "props became '$v'\n" unless $v eq 'not a hash';
redis_cmd('DEL', "$p:props");
redis_cmd('RENAME', "$p:props-saved", "$p:props");
