# /subscriptions, the publisher side: A (this server) publishes, B (an
# actor on a second server in the same nginx) subscribes at A with its
# trust token (the test plays B), A's creator writes properties and B
# polls the diffs; overlapping subscriptions, clearing, permissions, bad
# input, trust deletion, and a resync after the change log was trimmed.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Socket::INET ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend associate;
        }
$peer
    }
CONF
    config => <<"CONF",
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
    }
    location /r/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/r;
        actingweb_peer_allow 127.0.0.1;
        actingweb_change_log 3;
        actingweb_subscriptions_max 2;
    }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

sub key { "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('a') . "}:$_[0]" }

run_tests();

__DATA__

=== TEST 1: A and R (publishers), B, B2, B3 (subscribers)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /r/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 map { "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}" } 1..3]
--- more_headers
--- error_code eval
[(201) x 5]
--- capture eval
["a = json:id", "r = json:id", "b = json:id", "b2 = json:id", "b3 = json:id"]



=== TEST 2: trusts: A-B friend, A-B3 associate, R-B friend (both approved); B2 asks A (not approved by A)
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}\", \"relationship\": \"friend\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b3}}\", \"relationship\": \"associate\"}",
 "POST /r/{{r}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}\", \"relationship\": \"friend\"}",
 "POST /tob/b/{{b2}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}\", \"relationship\": \"friend\"}"]
--- more_headers eval
[("Authorization: {{basic:alice:pa}}") x 3, "Authorization: {{basic:bob:pb}}"]
--- error_code eval
[(201) x 4]
--- response_body_json eval
['{"...": 1, "approved": true, "peer_approved": true}',
 '{"...": 1, "approved": true, "peer_approved": true}',
 '{"...": 1, "approved": true, "peer_approved": true}',
 '{"...": 1, "approved": true, "peer_approved": false}']
--- capture eval
["s = json:secret", "s3 = json:secret", "rs = json:secret", "s2 = json:secret"]



=== TEST 3: A's creator keeps "hidden*" from B
--- request
PUT /a/{{a}}/trust/friend/{{b}}/permissions
{"properties": {"excluded_patterns": ["hidden*"]}}
--- error_code: 201



=== TEST 4: B subscribes three times, overlapping: 201, absolute Location, nulls
--- request eval
["POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"subtarget\": \"x\", \"granularity\": \"none\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"subtarget\": \"x\", \"resource\": \"y\", \"granularity\": \"high\"}"]
--- more_headers
Authorization: Bearer {{s}}
--- error_code eval
[201, 201, 201]
--- response_headers_like eval
["Location: http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/[0-9a-f]{32}/subscriptions/[0-9a-f]{32}/[0-9a-f]{32}",
 "Location: http://127.0.0.1:\\d+/a/.+/{{b}}/[0-9a-f]{32}",
 "Location: http://127.0.0.1:\\d+/a/.+/{{b}}/[0-9a-f]{32}"]
--- response_body_json eval
['{"subscriptionid": "~^[0-9a-f]{32}$", "target": "properties", "subtarget": null, "resource": null, "granularity": "none", "sequence": 0}',
 '{"subscriptionid": "~^[0-9a-f]{32}$", "target": "properties", "subtarget": "x", "resource": null, "granularity": "none", "sequence": 0}',
 '{"subscriptionid": "~^[0-9a-f]{32}$", "target": "properties", "subtarget": "x", "resource": "y", "granularity": "high", "sequence": 0}']
--- capture eval
["sub1 = json:subscriptionid", "sub2 = json:subscriptionid", "sub3 = json:subscriptionid"]



=== TEST 5: refused subscriptions: bad input, other peer's path, unapproved, associate, no auth, creator, hidden
--- request eval
["POST /a/{{a}}/subscriptions/{{b}}\n{\"subtarget\": \"x\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": ",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"granularity\": \"max\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"resource\": \"y\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n[1]",
 "POST /a/{{a}}/subscriptions/{{b2}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b2}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b3}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"subtarget\": \"hidden1\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"accept_encoding\": \"gzip\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"accept_encoding\": [\"gzip\", 1]}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"accept_encoding\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}"]
--- more_headers eval
[("Authorization: Bearer {{s}}") x 6, "Authorization: Bearer {{s2}}",
 "Authorization: Bearer {{s3}}", "", "Authorization: {{basic:alice:pa}}",
 ("Authorization: Bearer {{s}}") x 4]
--- error_code eval
[400, 400, 400, 400, 400, 403, 403, 403, 401, 403, 403, 400, 400, 400]
--- response_body_json eval
['{"error": {"code": 400, "message": "\"target\" is required"}}',
 '{"error": {"code": 400, "message": "{{ANY}}"}}',
 '{"error": {"code": 400, "message": "granularity is \"high\", \"low\" or \"none\""}}',
 '{"error": {"code": 400, "message": "~resource needs a subtarget"}}',
 '{"error": {"code": 400, "message": "body must be a JSON object"}}',
 '{"error": {"code": 403, "message": "this token is not for that peer"}}',
 '{"error": {"code": 403, "message": "trust not approved"}}',
 '{"error": {"code": 403, "message": "not allowed for this relationship"}}',
 '{"error": {"code": 401, "message": "{{ANY}}"}}',
 '{"error": {"code": 403, "message": "only the peer itself subscribes, with its token"}}',
 '{"error": {"code": 403, "message": "this trust may not read what it subscribes to"}}',
 ('{"error": {"code": 400, "message": "accept_encoding is a list of at most 8 encoding names"}}') x 3]



=== TEST 6: listing: creator all and filtered, the peer its own; another peer or a peer on the whole list: 403
--- request eval
["GET /a/{{a}}/subscriptions",
 "GET /a/{{a}}/subscriptions?subtarget=x&resource=y",
 "GET /a/{{a}}/subscriptions?peerid={{b2}}",
 "GET /a/{{a}}/subscriptions/{{b}}?subtarget=x",
 "GET /a/{{a}}/subscriptions/{{b}}",
 "GET /a/{{a}}/subscriptions",
 "GET /a/{{a}}/subscriptions/{{b2}}"]
--- more_headers eval
[("Authorization: {{basic:alice:pa}}") x 3, ("Authorization: Bearer {{s}}") x 3, "Authorization: Bearer {{s}}"]
--- error_code eval
[200, 200, 200, 200, 200, 403, 403]
--- response_body_json eval
['{"id": "{{a}}", "data": [{"...": 1}, {"...": 1}, {"...": 1}]}',
 '{"id": "{{a}}", "data": [{"peerid": "{{b}}", "subscriptionid": "{{sub3}}", "target": "properties", "subtarget": "x", "resource": "y", "granularity": "high", "sequence": 0, "callback": false}]}',
 '{"id": "{{a}}", "data": []}',
 '{"id": "{{a}}", "peerid": "{{b}}", "data": [{"...": 1, "subtarget": "x"}, {"...": 1, "subtarget": "x"}]}',
 '{"id": "{{a}}", "peerid": "{{b}}", "data": [{"...": 1}, {"...": 1}, {"...": 1}]}',
 '{"error": {"code": 403, "message": "this token is not for that peer"}}',
 '{"error": {"code": 403, "message": "this token is not for that peer"}}']



=== TEST 7: nothing written yet: no diffs, sequence 0
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}
--- more_headers
Authorization: Bearer {{s}}
--- response_body_json
{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub1}}", "target": "properties", "subtarget": null, "resource": null, "sequence": 0, "data": []}



=== TEST 8: A's creator writes: PUT, nested PUT, POST (with a hidden name), nested DELETE, hidden PUT, DELETE
--- request eval
["PUT /a/{{a}}/properties/x\n{\"y\": 1, \"z\": 2}",
 "PUT /a/{{a}}/properties/x/y\n5",
 "POST /a/{{a}}/properties\n{\"a\": \"b\", \"x\": {\"y\": 7}, \"hidden1\": \"no\"}",
 "DELETE /a/{{a}}/properties/x/y",
 "PUT /a/{{a}}/properties/hidden2\n\"s\"",
 "DELETE /a/{{a}}/properties/x"]
--- error_code eval
[204, 204, 201, 204, 204, 204]
--- init
# a subscription wants callbacks: writes mark the actor's pending work
Test::More::ok(!defined main::redis_cmd('HGET', main::key('actor'), 'pending'),
               'no pending mark before the writes');



=== TEST 9: each subscription gets its own shaped diffs with consecutive sequences; B never sees hidden*
--- init
# the mark may already be consumed by callback delivery (t/110)
Test::More::like(main::redis_cmd('HGET', main::key('actor'), 'pending') // '1-0',
                 qr/^\d+-\d+$/, 'writes marked pending callback work');
Test::More::is(main::redis_cmd('HGET', main::key('actor'), 'cbsubs'), 1,
               'one subscription wants callbacks');
--- request eval
["GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub3}}"]
--- more_headers
Authorization: Bearer {{s}}
--- response_body_json eval
['{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub1}}", "target": "properties", "subtarget": null, "resource": null, "sequence": 5, "data": [
  {"sequence": 1, "timestamp": "~^\\\\d{4}-\\\\d\\\\d-\\\\d\\\\dT\\\\d\\\\d:\\\\d\\\\d:\\\\d\\\\d\\\\.\\\\d{6}Z$", "data": {"x": {"y": 1, "z": 2}}},
  {"sequence": 2, "timestamp": "{{ANY}}", "data": {"x": {"y": 5}}},
  {"sequence": 3, "timestamp": "{{ANY}}", "data": {"a": "b", "x": {"y": 7}}},
  {"sequence": 4, "timestamp": "{{ANY}}", "data": {"x": {"y": ""}}},
  {"sequence": 5, "timestamp": "{{ANY}}", "data": {"x": ""}}]}',
 '{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub2}}", "target": "properties", "subtarget": "x", "resource": null, "sequence": 5, "data": [
  {"sequence": 1, "timestamp": "{{ANY}}", "data": {"y": 1, "z": 2}},
  {"sequence": 2, "timestamp": "{{ANY}}", "data": {"y": 5}},
  {"sequence": 3, "timestamp": "{{ANY}}", "data": {"y": 7}},
  {"sequence": 4, "timestamp": "{{ANY}}", "data": {"y": ""}},
  {"sequence": 5, "timestamp": "{{ANY}}", "data": ""}]}',
 '{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub3}}", "target": "properties", "subtarget": "x", "resource": "y", "sequence": 5, "data": [
  {"sequence": 1, "timestamp": "{{ANY}}", "data": 1},
  {"sequence": 2, "timestamp": "{{ANY}}", "data": 5},
  {"sequence": 3, "timestamp": "{{ANY}}", "data": 7},
  {"sequence": 4, "timestamp": "{{ANY}}", "data": ""},
  {"sequence": 5, "timestamp": "{{ANY}}", "data": ""}]}']



=== TEST 10: polling again gives the same diffs (stored, not made again); the creator may poll too
--- request eval
["GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}"]
--- more_headers eval
["Authorization: Bearer {{s}}", "Authorization: {{basic:alice:pa}}"]
--- response_body_json eval
['{"...": 1, "sequence": 5, "data": [{"sequence": 1, "timestamp": "{{ANY}}", "data": {"y": 1, "z": 2}}, {"...": 1}, {"...": 1}, {"...": 1}, {"sequence": 5, "timestamp": "{{ANY}}", "data": ""}]}',
 '{"...": 1, "sequence": 5, "data": [{"...": 1}, {"...": 1}, {"...": 1}, {"...": 1}, {"sequence": 5, "timestamp": "{{ANY}}", "data": ""}]}']
--- capture eval
["", "t1 = json:data.0.timestamp"]



=== TEST 11: one diff by its sequence, twice (a GET never clears); absent and bad sequences
--- request eval
["GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/1",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/1",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/6",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/abc",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/-1",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/99999999999999999999",
 "GET /a/{{a}}/subscriptions/{{b}}/0123456789abcdef0123456789abcdef/1"]
--- more_headers
Authorization: Bearer {{s}}
--- error_code eval
[200, 200, 404, 400, 400, 400, 404]
--- response_body_json eval
['{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub2}}", "target": "properties", "subtarget": "x", "resource": null, "sequence": 1, "timestamp": "{{t1}}", "data": {"y": 1, "z": 2}}',
 '{"id": "{{a}}", "peerid": "{{b}}", "subscriptionid": "{{sub2}}", "target": "properties", "subtarget": "x", "resource": null, "sequence": 1, "timestamp": "{{t1}}", "data": {"y": 1, "z": 2}}',
 '{"error": {"code": 404, "message": "no such diff (cleared, or not made yet)"}}',
 '{"error": {"code": 400, "message": "sequence must be a non-negative integer"}}',
 '{"error": {"code": 400, "message": "sequence must be a non-negative integer"}}',
 '{"error": {"code": 400, "message": "sequence must be a non-negative integer"}}',
 '{"error": {"code": 404, "message": "no such subscription"}}']



=== TEST 12: clearing: bad bodies, unknown ids, another peer change nothing; PUT {"sequence":3} clears 1-3
--- request eval
["PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": \"3\"}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": -1}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": 1.5}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": ",
 "PUT /a/{{a}}/subscriptions/{{b}}/0123456789abcdef0123456789abcdef\n{\"sequence\": 3}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": 3}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub2}}\n{\"sequence\": 3}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/3",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/4",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}"]
--- more_headers eval
[("Authorization: Bearer {{s}}") x 5, "Authorization: Bearer {{s3}}",
 ("Authorization: Bearer {{s}}") x 5]
--- error_code eval
[400, 400, 400, 400, 404, 403, 200, 204, 404, 200, 200]
--- response_body_json eval
['{"error": {"code": 400, "message": "\"sequence\" must be a non-negative integer"}}',
 '{"error": {"code": 400, "message": "\"sequence\" must be a non-negative integer"}}',
 '{"error": {"code": 400, "message": "\"sequence\" must be a non-negative integer"}}',
 '{"error": {"code": 400, "message": "{{ANY}}"}}',
 '{"error": {"code": 404, "message": "no such subscription"}}',
 '{"error": {"code": 403, "message": "this token is not for that peer"}}',
 '{"...": 1, "sequence": 5, "data": [{"...": 1}, {"...": 1}, {"...": 1}, {"...": 1}, {"...": 1}]}',
 undef,
 '{"error": {"code": 404, "message": "no such diff (cleared, or not made yet)"}}',
 '{"...": 1, "sequence": 4, "data": {"y": ""}}',
 '{"...": 1, "sequence": 5, "data": [{"sequence": 4, "timestamp": "{{ANY}}", "data": {"y": ""}}, {"sequence": 5, "timestamp": "{{ANY}}", "data": ""}]}']



=== TEST 13: new writes continue the numbers; everything cleared leaves "sequence" and no data
--- request eval
["PUT /a/{{a}}/properties/x\n{\"y\": \"again\"}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub3}}\n{\"sequence\": 5}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub3}}",
 "PUT /a/{{a}}/subscriptions/{{b}}/{{sub3}}\n{\"sequence\": 100}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub3}}"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", ("Authorization: Bearer {{s}}") x 4]
--- error_code eval
[204, 204, 200, 204, 200]
--- response_body_json eval
[undef, undef,
 '{"...": 1, "sequence": 6, "data": [{"sequence": 6, "timestamp": "{{ANY}}", "data": "again"}]}',
 undef,
 '{"...": 1, "sequence": 6, "data": []}']



=== TEST 14: another peer's token cannot read, clear or delete B's subscriptions
--- request eval
["GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}/1",
 "DELETE /a/{{a}}/subscriptions/{{b}}/{{sub1}}",
 "GET /a/{{a}}/subscriptions/{{b3}}/{{sub1}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}/1"]
--- more_headers eval
[("Authorization: Bearer {{s3}}") x 3, "Authorization: {{basic:alice:pa}}",
 "Authorization: Bearer {{s}}"]
--- error_code eval
[403, 403, 403, 404, 200]



=== TEST 15: DELETE by the peer, then by the creator; again: 404
--- request eval
["DELETE /a/{{a}}/subscriptions/{{b}}/{{sub3}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub3}}",
 "DELETE /a/{{a}}/subscriptions/{{b}}/{{sub3}}",
 "DELETE /a/{{a}}/subscriptions/{{b}}/{{sub2}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}/4",
 "GET /a/{{a}}/subscriptions"]
--- more_headers eval
[("Authorization: Bearer {{s}}") x 3, ("Authorization: {{basic:alice:pa}}") x 3]
--- error_code eval
[204, 404, 404, 204, 404, 200]
--- response_body_json eval
[undef, '{"error": {"code": 404, "message": "no such subscription"}}',
 '{"error": {"code": 404, "message": "no such subscription"}}', undef,
 '{"error": {"code": 404, "message": "no such subscription"}}',
 '{"id": "{{a}}", "data": [{"...": 1, "subscriptionid": "{{sub1}}"}]}']
--- init
# the subscription that wanted callbacks is gone: writes mark no more
main::redis_cmd('HDEL', main::key('actor'), 'pending');



=== TEST 16: no callback subscription left: writes do not mark pending work
--- request
PUT /a/{{a}}/properties/w
1
--- error_code: 204
--- init
Test::More::is(main::redis_cmd('HGET', main::key('actor'), 'cbsubs'), undef,
               'no callback subscriptions counted');



=== TEST 17: deleting the trust deletes B's subscriptions and their diffs
--- init
Test::More::ok(!defined main::redis_cmd('HGET', main::key('actor'), 'pending'),
               'no pending mark');
Test::More::ok(main::redis_cmd('HLEN', main::key('diffs')) > 0, 'diffs kept');
--- request eval
["DELETE /a/{{a}}/trust/friend/{{b}}",
 "GET /a/{{a}}/subscriptions",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}"]
--- error_code eval
[204, 200, 404]
--- response_body_json eval
[undef, '{"id": "{{a}}", "data": []}', undef]



=== TEST 18: nothing of them is left in Redis
--- init
Test::More::is(main::redis_cmd('HLEN', main::key('diffs')), 0, 'no diffs');
Test::More::is(main::redis_cmd('HLEN', main::key('subs')), 0, 'no subs');
--- request
GET /a/{{a}}/subscriptions
--- response_body_json
{"id": "{{a}}", "data": []}



=== TEST 19: R keeps 3 change events; B subscribes there
--- request
POST /r/{{r}}/subscriptions/{{b}}
{"target": "properties", "subtarget": "p"}
--- more_headers
Authorization: Bearer {{rs}}
--- error_code: 201
--- capture
rsub = json:subscriptionid



=== TEST 20: R writes 5 times: B's cursor was trimmed away: one resync diff
--- request eval
[map({ "PUT /r/{{r}}/properties/p\n$_" } 1..5),
 "GET /r/{{r}}/subscriptions/{{b}}/{{rsub}}",
 "GET /r/{{r}}/subscriptions/{{b}}/{{rsub}}"]
--- more_headers eval
[("Authorization: {{basic:alice:pa}}") x 5,
 ("Authorization: Bearer {{rs}}") x 2]
--- error_code eval
[(204) x 5, 200, 200]
--- response_body_json eval
[(undef) x 5,
 '{"...": 1, "sequence": 1, "data": [{"sequence": 1, "timestamp": "{{ANY}}", "type": "resync", "url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/r/{{r}}/properties/p"}]}',
 '{"...": 1, "sequence": 1, "data": [{"sequence": 1, "timestamp": "{{ANY}}", "type": "resync", "url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/r/{{r}}/properties/p"}]}']



=== TEST 21: after the resync, diffs go on from there; within the log no resync
--- request eval
["PUT /r/{{r}}/properties/p\n6",
 "PUT /r/{{r}}/properties/p\n7",
 "GET /r/{{r}}/subscriptions/{{b}}/{{rsub}}"]
--- more_headers eval
[("Authorization: {{basic:alice:pa}}") x 2, "Authorization: Bearer {{rs}}"]
--- error_code eval
[204, 204, 200]
--- response_body_json eval
[undef, undef,
 '{"...": 1, "sequence": 3, "data": [{"...": 1, "sequence": 1, "type": "resync"}, {"sequence": 2, "timestamp": "{{ANY}}", "data": 6}, {"sequence": 3, "timestamp": "{{ANY}}", "data": 7}]}']



=== TEST 22: polls that never clear: at most actingweb_change_log diffs wait, resyncs included
--- request eval
[(map({ (("PUT /r/{{r}}/properties/p\n$_") x 5, "GET /r/{{r}}/subscriptions/{{b}}/{{rsub}}") } 1..3))]
--- more_headers eval
[(map({ (("Authorization: {{basic:alice:pa}}") x 5, "Authorization: Bearer {{rs}}") } 1..3))]
--- error_code eval
[(map({ ((204) x 5, 200) } 1..3))]
--- response_body_json eval
[(map({ ((undef) x 5, '{"...": 1, "sequence": 3, "data": [{"...": 1}, {"...": 1}, {"...": 1}]}') } 1..3))]



=== TEST 23: a peer may hold actingweb_subscriptions_max subscriptions (2 here): then 429
--- request eval
["POST /r/{{r}}/subscriptions/{{b}}\n{\"target\": \"properties\"}",
 "POST /r/{{r}}/subscriptions/{{b}}\n{\"target\": \"properties\"}",
 "GET /r/{{r}}/subscriptions/{{b}}"]
--- more_headers
Authorization: Bearer {{rs}}
--- error_code eval
[201, 429, 200]
--- response_body_json eval
[undef,
 '{"error": {"code": 429, "message": "too many subscriptions for this peer (actingweb_subscriptions_max)"}}',
 '{"...": 1, "data": [{"...": 1}, {"...": 1}]}']



=== TEST 24: a damaged subscription record does not stop the trust's deletion
--- init
ActingWeb::Test::redis_cmd('HSET',
    "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('r') . "}:subs",
    main::captured('rsub'), 'not json');
--- request eval
["DELETE /r/{{r}}/trust/friend/{{b}}?peer=true", "GET /r/{{r}}/subscriptions"]
--- error_code eval
[204, 200]
--- response_body_json eval
[undef, '{"...": 1, "data": []}']




=== TEST 25: nothing of R's subscriptions with B is left in Redis
--- init
Test::More::is(ActingWeb::Test::redis_cmd('HLEN',
    "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('r') . "}:subs"), 0,
    'no subscription records left');
Test::More::is(ActingWeb::Test::redis_cmd('HLEN',
    "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('r') . "}:subpeer"), 0,
    'no per-peer index left');
--- request
GET /r/{{r}}/subscriptions
--- error_code: 200
