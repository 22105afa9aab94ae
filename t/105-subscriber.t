# Subscriptions, the subscriber side: B subscribes at A (both actors of
# one server, one worker), takes the baseline, gets callbacks posted by
# the test as A would send them (high, low, gaps, duplicates, resync,
# gzip), catches up by polling, and keeps its copy of A's data and the
# stream of applied changes in Redis.  Bad callbacks change nothing.  The
# main subscription is "none", so that A's own delivery does not race the
# callbacks the test posts; the last blocks let A deliver by itself.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Compress::Gzip qw(gzip $GzipError);

block_defaults(
    http_config => <<'CONF',
    actingweb_peer_timeout 5s;
CONF
    config => <<'CONF',
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
        actingweb_auto_approve friend;
        client_max_body_size 64k;
    }
    location = /_actingweb_peer {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_pass_request_headers off;
        proxy_set_header Host $actingweb_peer_host;
        proxy_set_header Authorization $actingweb_peer_authorization;
        proxy_set_header Content-Type application/json;
        subrequest_output_buffer_size 64k;
    }
CONF
    more_headers => "Authorization: {{basic:bob:pb}}\n",
);

sub key { "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured($_[0]) . "}:$_[1]" }

# the applied stream of B as [sequence, type, data] triples
sub applied {
    my @out;
    my @e = main::redis_cmd('XRANGE', key('b', 'applied'), '-', '+');
    for my $e (@e) {
        my %f = @{ $e->[1] };
        push @out, "$f{sequence} $f{type} $f{data}";
    }
    return \@out;
}

sub gz { my $in = shift; my $out; gzip(\$in => \$out) or die $GzipError; $out }

our $cb = '"POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n';

run_tests();

__DATA__

=== TEST 1: A (publisher), B (subscriber), C (another peer of B)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /a/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}",
 "POST /a/\n{\"creator\": \"carol\", \"passphrase\": \"pc\"}"]
--- more_headers
--- error_code eval
[201, 201, 201]
--- capture eval
["a = json:id", "b = json:id", "c = json:id"]



=== TEST 2: B asks A and C for friend trusts (both approve); A writes before B subscribes
--- request eval
["POST /a/{{b}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}\", \"relationship\": \"friend\"}",
 "POST /a/{{b}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{c}}\", \"relationship\": \"friend\"}",
 "PUT /a/{{a}}/properties/x\n{\"k\": \"v0\", \"n\": 1}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: {{basic:bob:pb}}", "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[201, 201, 204]
--- response_body_json eval
['{"...": 1, "approved": true, "peer_approved": true}',
 '{"...": 1, "approved": true, "peer_approved": true}',
 undef]
--- capture eval
["s = json:secret", "cs = json:secret", ""]



=== TEST 3: subscribing: bad bodies, a peer without trust, a peer's token: refused
--- request eval
["POST /a/{{b}}/subscriptions\n{\"target\": \"properties\"}",
 "POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\"}",
 "POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\", \"resource\": \"r\"}",
 "POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\", \"granularity\": \"all\"}",
 "POST /a/{{b}}/subscriptions\n[1]",
 "POST /a/{{b}}/subscriptions\n{\"peerid\": \"0123456789abcdef0123456789abcdef\", \"target\": \"properties\"}",
 "POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\"}"]
--- more_headers eval
[("Authorization: {{basic:bob:pb}}") x 6, "Authorization: Bearer {{s}}"]
--- error_code eval
[400, 400, 400, 400, 400, 404, 403]
--- response_body_json eval
['{"error": {"code": 400, "message": "\"peerid\" is required (an actor id)"}}',
 '{"error": {"code": 400, "message": "~target"}}',
 '{"error": {"code": 400, "message": "~a resource needs a subtarget"}}',
 '{"error": {"code": 400, "message": "~granularity"}}',
 '{"error": {"code": 400, "message": "body must be a JSON object"}}',
 '{"error": {"code": 404, "message": "no trust with this peer"}}',
 '{"error": {"code": 403, "message": "~."}}']
--- init
Test::More::is(main::redis_cmd('EXISTS', main::key('b', 'outsubs')), 0, 'no record');



=== TEST 4: B subscribes at A: 204, Location at A; the baseline is B's copy
--- request
POST /a/{{b}}/subscriptions
{"peerid": "{{a}}", "target": "properties", "subtarget": "", "granularity": "none"}
--- error_code: 204
--- response_headers_like
Location: http://127.0.0.1:\d+/a/[0-9a-f]{32}/subscriptions/[0-9a-f]{32}/[0-9a-f]{32}$
--- capture
sub = header:Location ~ /([0-9a-f]{32})$



=== TEST 5: both sides list it (callback true at B); B reads its copy
--- request eval
["GET /a/{{b}}/subscriptions",
 "GET /a/{{a}}/subscriptions",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:bob:pb}}", "Authorization: {{basic:bob:pb}}"]
--- response_body_json eval
['{"id": "{{b}}", "data": [{"peerid": "{{a}}", "subscriptionid": "{{sub}}", "target": "properties", "subtarget": null, "resource": null, "granularity": "none", "sequence": 0, "callback": true}]}',
 '{"id": "{{a}}", "data": [{"peerid": "{{b}}", "subscriptionid": "{{sub}}", "target": "properties", "subtarget": null, "resource": null, "granularity": "none", "sequence": 0, "callback": false}]}',
 '{"id": "{{b}}", "peerid": "{{a}}", "data": {"properties": {"x": {"k": "v0", "n": 1}}}}',
 '{"id": "{{b}}", "peerid": "{{a}}", "subscriptionid": "{{sub}}", "target": "properties", "subtarget": null, "resource": null, "granularity": "none", "sequence": 0, "callback": true, "data": {"x": {"k": "v0", "n": 1}}}']
--- init
Test::More::is_deeply(main::applied(), ['0 baseline {"x":{"k":"v0","n":1}}'], 'baseline in the stream');



=== TEST 6: A's creator writes three times (diffs 1, 2, 3 at A once polled)
--- request eval
["PUT /a/{{a}}/properties/y\n1",
 "PUT /a/{{a}}/properties/x/k\n\"v1\"",
 "PUT /a/{{a}}/properties/y\n2"]
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code eval
[204, 204, 204]



=== TEST 7: callback 1 applies; callback 3 (2 missing) polls A, applies 2 then 3 once each, clears A's diffs
--- request eval
[eval $main::cb . '{\"id\": \"{{a}}\", \"subscriptionid\": \"{{sub}}\", \"target\": \"properties\", \"sequence\": 1, \"timestamp\": \"2026-01-01 00:00:00.000000\", \"granularity\": \"high\", \"data\": {\"y\": 1}}"',
 eval $main::cb . '{\"id\": \"{{a}}\", \"subscriptionid\": \"{{sub}}\", \"target\": \"properties\", \"sequence\": 3, \"granularity\": \"high\", \"data\": {\"y\": 2}}"',
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub}}"]
--- more_headers
Authorization: Bearer {{s}}
--- error_code eval
[204, 204, 200]
--- response_body_json eval
[undef, undef, '{"...": 1, "sequence": 3, "data": []}']
--- init
Test::More::is(scalar @{ main::applied() }, 1, 'only the baseline before');



=== TEST 8: B's copy and stream: 1, 2, 3 once each, in order; a duplicate changes nothing
--- request eval
["GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}",
 eval $main::cb . '{\"sequence\": 2, \"data\": {\"y\": \"dup\"}}"',
 eval $main::cb . '{\"sequence\": 3, \"data\": {\"y\": \"dup\"}}"',
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: Bearer {{s}}",
 "Authorization: Bearer {{s}}", "Authorization: {{basic:bob:pb}}"]
--- error_code eval
[200, 204, 204, 200]
--- response_body_json eval
['{"...": 1, "sequence": 3, "data": {"x": {"k": "v1", "n": 1}, "y": 2}}',
 undef, undef,
 '{"...": 1, "sequence": 3, "data": {"x": {"k": "v1", "n": 1}, "y": 2}}']
--- init
Test::More::is_deeply(main::applied(),
    ['0 baseline {"x":{"k":"v0","n":1}}', '1 diff {"y":1}',
     '2 diff {"x":{"k":"v1"}}', '3 diff {"y":2}'], 'applied once each');



=== TEST 9: polling by B's creator: A deleted a name and added one
--- request eval
["DELETE /a/{{a}}/properties/y",
 "PUT /a/{{a}}/properties/z\n{\"deep\": [1, 2]}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
[("Authorization: {{basic:alice:pa}}") x 2, ("Authorization: {{basic:bob:pb}}") x 3]
--- error_code eval
[204, 204, 200, 200, 200]
--- response_body_json eval
[undef, undef,
 '{"sequence": 5, "applied": 2}',
 '{"sequence": 5, "applied": 0}',
 '{"...": 1, "sequence": 5, "data": {"x": {"k": "v1", "n": 1}, "z": {"deep": [1, 2]}}}']



=== TEST 10: low granularity: the callback has a url at A, B fetches the diff
--- request eval
["PUT /a/{{a}}/properties/x/n\n7",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub}}",
 eval $main::cb . '{\"sequence\": 6, \"granularity\": \"low\", \"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}/subscriptions/{{b}}/{{sub}}/6\"}"',
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub}}"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", ("Authorization: Bearer {{s}}") x 2,
 "Authorization: {{basic:bob:pb}}", "Authorization: Bearer {{s}}"]
--- error_code eval
[204, 200, 204, 200, 200]
--- response_body_json eval
[undef, '{"...": 1, "sequence": 6}', undef,
 '{"...": 1, "sequence": 6, "data": {"x": {"k": "v1", "n": 7}, "z": {"deep": [1, 2]}}}',
 '{"...": 1, "sequence": 6, "data": []}']



=== TEST 11: gzip-encoded callback; again in two gzip members (RFC 1952): a duplicate
--- request eval
[$main::cb =~ s/^"//r =~ s/\\n$/\n/r =~ s/\{\{(\w+)\}\}/{{$1}}/gr . main::gz('{"sequence": 7, "data": {"g": "zipped"}}'),
 $main::cb =~ s/^"//r =~ s/\\n$/\n/r . main::gz('{"sequence": 7, ') . main::gz('"data": {"g": "zipped"}}')]
--- more_headers
Authorization: Bearer {{s}}
Content-Encoding: gzip
--- error_code eval
[204, 204]



=== TEST 12: bad callbacks: clear JSON errors
--- init
Test::More::like(main::applied()->[-1], qr/^7 diff \{"g":"zipped"\}$/, 'inflated and applied');
--- request eval
["POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{c}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/0123456789abcdef0123456789abcdef\n{\"sequence\": 8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": ",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": \"8\", \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": -8, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8.5, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 1e300, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 9007199254740992, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 0, \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"type\": \"other\", \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"subscriptionid\": \"0123456789abcdef0123456789abcdef\", \"data\": {}}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"url\": \"http://127.0.0.1:1/elsewhere\"}",
 "POST /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"url\": 5}",
 "POST /a/{{b}}/callbacks/other/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "PUT /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}\n{\"sequence\": 8, \"data\": {}}",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
["", "Authorization: Bearer {{cs}}", "Authorization: Bearer wrongwrongwrong",
 "Authorization: Bearer {{cs}}", ("Authorization: Bearer {{s}}") x 16]
--- error_code eval
[401, 403, 403, 404, 404, (400) x 12, 404, 405, 403]
--- response_body_json eval
['{"error": {"code": 401, "message": "~."}}',
 '{"error": {"code": 403, "message": "this token is not for that peer"}}',
 '{"error": {"code": 403, "message": "access denied"}}',
 '{"error": {"code": 404, "message": "no such subscription"}}',
 '{"error": {"code": 404, "message": "no such subscription"}}',
 '{"error": {"code": 400, "message": "~."}}',
 ('{"error": {"code": 400, "message": "\"sequence\" must be an integer from 1 to 2^53-1"}}') x 6,
 '{"error": {"code": 400, "message": "a diff has \"data\" (high) or \"url\" (low)"}}',
 '{"error": {"code": 400, "message": "\"type\" is \"diff\", \"resync\" or \"permission\""}}',
 '{"error": {"code": 400, "message": "\"subscriptionid\" is not the one in the URL"}}',
 '{"error": {"code": 400, "message": "\"url\" is not at the publisher"}}',
 '{"error": {"code": 400, "message": "\"url\" must be a string"}}',
 '{"error": {"code": 404, "message": "no such callback"}}',
 '{"error": {"code": 405, "message": "method not allowed"}}',
 '{"error": {"code": 403, "message": "only the creator reads the copy of a peer\'s data"}}']



=== TEST 13: bad gzip: a bomb, garbage, truncated, garbage after a member, an unknown encoding
--- request eval
[$main::cb =~ s/^"//r =~ s/\\n$/\n/r . main::gz('{"sequence": 8, "data": {"b": "' . ('0' x 2_000_000) . '"}}'),
 $main::cb =~ s/^"//r =~ s/\\n$/\n/r . "not gzip at all",
 $main::cb =~ s/^"//r =~ s/\\n$/\n/r . substr(main::gz('{"sequence": 8, "data": {}}'), 0, 20),
 $main::cb =~ s/^"//r =~ s/\\n$/\n/r . main::gz('{"sequence": 8, "data": {}}') . "trailing",
 $main::cb =~ s/^"//r =~ s/\\n$/\n/r . '{"sequence": 8, "data": {}}']
--- more_headers eval
[("Authorization: Bearer {{s}}\nContent-Encoding: gzip") x 4,
 "Authorization: Bearer {{s}}\nContent-Encoding: br"]
--- error_code eval
[413, 400, 400, 400, 415]
--- response_body_json eval
['{"error": {"code": 413, "message": "inflated body is too large"}}',
 ('{"error": {"code": 400, "message": "body is not valid gzip"}}') x 3,
 '{"error": {"code": 415, "message": "Content-Encoding must be gzip or none"}}']
--- init
Test::More::is(scalar @{ main::applied() }, 8, 'nothing applied by the bad callbacks');



=== TEST 13b: a plain body over client_max_body_size
--- request eval
$main::cb =~ s/^"//r =~ s/\\n$/\n/r . '{"sequence": 8, "data": {"b": "' . ('0' x 100_000) . '"}}'
--- more_headers
Authorization: Bearer {{s}}
--- error_code: 413
--- response_body_json
{"error": {"code": 413, "message": "~."}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]
[crit]



=== TEST 14: nothing changed by the bad callbacks
--- request
GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}
--- response_body_json
{"...": 1, "sequence": 7, "data": {"x": {"k": "v1", "n": 7}, "z": {"deep": [1, 2]}, "g": "zipped"}}
--- init
Test::More::is(scalar @{ main::applied() }, 8, 'stream unchanged');



=== TEST 15: a resync callback: B fetches the url and takes over the sequence; a permission callback is acknowledged
--- request eval
[eval $main::cb . '{\"sequence\": 9, \"type\": \"resync\", \"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}/properties\"}"',
 eval $main::cb . '{\"type\": \"permission\", \"data\": {}}"',
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
[("Authorization: Bearer {{s}}") x 2, "Authorization: {{basic:bob:pb}}"]
--- error_code eval
[204, 204, 200]
--- response_body_json eval
[undef, undef, '{"...": 1, "sequence": 9, "data": {"x": {"k": "v1", "n": 7}, "z": {"deep": [1, 2]}}}']
--- init
Test::More::is(scalar @{ main::applied() }, 8, 'before');



=== TEST 16: B's creator deletes it: gone at A and at B, with the copy
--- request eval
["DELETE /a/{{b}}/subscriptions/{{a}}/{{sub}}",
 "GET /a/{{a}}/subscriptions",
 "GET /a/{{b}}/subscriptions",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}",
 "DELETE /a/{{b}}/subscriptions/{{a}}/{{sub}}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: {{basic:alice:pa}}",
 ("Authorization: {{basic:bob:pb}}") x 3]
--- error_code eval
[204, 200, 200, 200, 404]
--- response_body_json eval
[undef, '{"id": "{{a}}", "data": []}', '{"id": "{{b}}", "data": []}',
 '{"id": "{{b}}", "peerid": "{{a}}", "data": {}}',
 '{"error": {"code": 404, "message": "no such subscription"}}']
--- init
Test::More::like(main::applied()->[-1], qr/^9 resync \{"x":/, 'resync in the stream');



=== TEST 17: subscribing again (subtarget x, low); A deletes B's record at B (local only)
--- request eval
["POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\", \"subtarget\": \"x\", \"granularity\": \"low\"}",
 "GET /a/{{b}}/callbacks/subscriptions/{{a}}"]
--- error_code eval
[204, 200]
--- response_body_json eval
[undef, '{"id": "{{b}}", "peerid": "{{a}}", "data": {"properties": {"x": {"k": "v1", "n": 7}}}}']
--- capture eval
['sub2 = header:Location ~ /([0-9a-f]{32})$', ""]



=== TEST 18: the publisher's delete at B is local: A keeps its record
--- request eval
["DELETE /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub2}}",
 "GET /a/{{b}}/subscriptions",
 "GET /a/{{a}}/subscriptions/{{b}}",
 "DELETE /a/{{a}}/subscriptions/{{b}}/{{sub2}}"]
--- more_headers eval
["Authorization: Bearer {{s}}", "Authorization: {{basic:bob:pb}}",
 "Authorization: {{basic:alice:pa}}", "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[204, 200, 200, 204]
--- response_body_json eval
[undef, '{"id": "{{b}}", "data": []}',
 '{"id": "{{a}}", "peerid": "{{b}}", "data": [{"...": 1, "subscriptionid": "{{sub2}}", "callback": false}]}',
 undef]



=== TEST 18b: end to end: B subscribes to x with "high"; A delivers by itself
--- request
POST /a/{{b}}/subscriptions
{"peerid": "{{a}}", "target": "properties", "subtarget": "x", "granularity": "high"}
--- more_headers
Authorization: {{basic:bob:pb}}
--- error_code: 204
--- capture
sub3 = header:Location ~ /([0-9a-f]{32})$



=== TEST 18c: A's creator writes x: the write answers at once
--- request
PUT /a/{{a}}/properties/x
{"e2e": true}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 204
--- wait: 0.5



=== TEST 18d: B's copy has the change, applied once, with no poll by anybody
--- request
GET /a/{{b}}/callbacks/subscriptions/{{a}}/{{sub3}}
--- more_headers
Authorization: {{basic:bob:pb}}
--- error_code: 200
--- response_body_json
{"...": 1, "subscriptionid": "{{sub3}}", "granularity": "high", "sequence": 1, "data": {"...": 1, "e2e": true}}



=== TEST 19: deleting the trust drops B's subscriptions at A and its copy
--- request eval
["POST /a/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\"}",
 "DELETE /a/{{b}}/trust/friend/{{a}}",
 "GET /a/{{b}}/subscriptions"]
--- error_code eval
[204, 204, 200]
--- response_body_json eval
[undef, undef, '{"id": "{{b}}", "data": []}']



=== TEST 20: nothing of A is left at B
--- request
GET /a/{{b}}/callbacks/subscriptions/{{a}}
--- error_code: 404
--- response_body_json
{"error": {"code": 404, "message": "no trust with this peer"}}
--- init
Test::More::is(main::redis_cmd('HLEN', main::key('b', 'outsubs')), 0, 'no outbound records');
Test::More::is(main::redis_cmd('HEXISTS', main::key('b', 'remote'), main::captured('a')), 0, 'no copy');
