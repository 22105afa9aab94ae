# /trust between two servers in one nginx (A on the test port, B on a
# second one) and between actors of one server: initiate, verify, approve,
# notify, delete; peer tokens; failing peers leave no half trust; the
# address policy refuses a target before connecting.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Socket::INET ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();

# a peer that accepts connections and never answers
our $Silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                    LocalPort => 0, ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $Silent->sockport;

# a port nothing listens on
$ENV{TEST_NGINX_DEAD_PORT} = free_port();

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 2s;
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
            actingweb_peer_allow 127.0.0.1;
        }
$peer
    }
CONF
    config => <<"CONF",
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
        actingweb_auto_approve partner;
    }
    location /n/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/n;
        resolver 127.0.0.1:\$TEST_NGINX_DEAD_PORT;
        resolver_timeout 1s;
    }
    location /d/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/d;
    }
    location /m/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/m;
        actingweb_peer_allow all;
        actingweb_peer_location /nowhere;
    }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
    location /fake/ {
        return 200 "not json";
    }
    location /fail/ {
        return 500 '{"error":"boom"}';
    }
    location /evil/ {
        default_type application/json;
        return 200 '{"verification_token":"T"}';
    }
    location /big/ {
        root html;
    }
$peer
CONF
);

# nothing was left in Redis's secret index of A or B
sub is_trust_index_empty {
    for my $id (captured('a'), captured('b')) {
        Test::More::is(ActingWeb::Test::redis_cmd('HLEN',
            "$ENV{TEST_NGINX_REDIS_PREFIX}:{$id}:trustsec"), 0,
            "no secret index entries for $id");
    }
}

sub drain_silent {
    $Silent->blocking(0);
    while (my $c = $Silent->accept) { close $c; }
}

# the refused calls never connected to the silent peer
sub no_connection_pending {
    $Silent->blocking(0);
    my $c = $Silent->accept;
    Test::More::ok(!$c, 'no connection reached the refused address');
}

run_tests();

__DATA__

=== TEST 1: actors A (this server) and B (the other server)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}"]
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "b = json:id"]



=== TEST 2: A initiates a friend trust with B: 201, Location, record
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}", "relationship": "friend", "desc": "hi"}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 201
--- response_headers
Location: http://127.0.0.1:$ServerPort/a/{{a}}/trust/friend/{{b}}
--- response_body_json
{"id": "{{a}}", "peerid": "{{b}}",
 "baseuri": "http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}",
 "type": "urn:actingweb:actingweb.org:nginx", "relationship": "friend",
 "secret": "~^[0-9a-f]{40}$", "desc": "hi", "approved": true,
 "peer_approved": false, "verified": true,
 "verification_token": "~^[0-9a-f]{40}$",
 "verificationToken": "~^[0-9a-f]{40}$"}
--- capture
secret = json:secret



=== TEST 3: B has it verified, waiting for its own approval (202)
--- request
GET /tob/b/{{b}}/trust/friend/{{a}}
--- more_headers
Authorization: {{basic:bob:pb}}
--- error_code: 202
--- response_body_json
{"id": "{{b}}", "peerid": "{{a}}",
 "baseuri": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}",
 "type": "urn:actingweb:actingweb.org:nginx", "relationship": "friend",
 "secret": "{{secret}}", "desc": "hi", "approved": false,
 "peer_approved": true, "verified": true,
 "verification_token": "{{ANY}}", "verificationToken": "{{ANY}}"}



=== TEST 4: A's token on B before B approved: 403; on A: its record
--- request eval
["GET /tob/b/{{b}}/trust/friend/{{a}}", "GET /a/{{a}}/trust/friend/{{b}}"]
--- more_headers
Authorization: Bearer {{secret}}
--- error_code eval
[403, 200]



=== TEST 5: B approves; A hears of it (peer_approved)
--- request eval
["PUT /tob/b/{{b}}/trust/friend/{{a}}\n{\"approved\": true}",
 "GET /a/{{a}}/trust/friend/{{b}}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[204, 200]
--- response_body_json eval
[undef, '{"...": 1, "approved": true, "peer_approved": true}']



=== TEST 6: the token works on B now, only on its own path
--- request eval
["GET /tob/b/{{b}}/trust/friend/{{a}}",
 "GET /tob/b/{{b}}/trust/friend/0123456789abcdef0123456789abcdef",
 "GET /tob/b/{{b}}/trust/partner/{{a}}",
 "PUT /tob/b/{{b}}/trust/friend/{{a}}\n{\"approved\": false}",
 "GET /tob/b/{{b}}/trust"]
--- more_headers
Authorization: Bearer {{secret}}
--- error_code eval
[200, 403, 404, 403, 403]



=== TEST 7: wrong secrets and no credentials change nothing
--- request eval
["GET /a/{{a}}/trust/friend/{{b}}", "DELETE /a/{{a}}/trust/friend/{{b}}",
 "DELETE /a/{{a}}/trust/friend/{{b}}", "GET /a/{{a}}/trust/friend/{{b}}"]
--- more_headers eval
["Authorization: Bearer 0000000000000000000000000000000000000000",
 "Authorization: Bearer 0000000000000000000000000000000000000000",
 "", "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[403, 403, 401, 200]



=== TEST 8: listing and filters
--- request eval
["GET /a/{{a}}/trust", "GET /a/{{a}}/trust/friend",
 "GET /a/{{a}}/trust?peerid={{b}}", "GET /a/{{a}}/trust?relationship=admin",
 "GET /a/{{a}}/trust/partner"]
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_json eval
['[{"...": 1, "peerid": "{{b}}"}]', '[{"...": 1, "peerid": "{{b}}"}]',
 '[{"...": 1, "peerid": "{{b}}"}]', '[]', '[]']



=== TEST 9: A deletes: B is told first, both sides are gone, the token is dead
--- request eval
["DELETE /a/{{a}}/trust/friend/{{b}}", "GET /a/{{a}}/trust/friend/{{b}}",
 "GET /tob/b/{{b}}/trust/friend/{{a}}", "GET /tob/b/{{b}}/trust/friend/{{a}}",
 "GET /tob/b/{{b}}/properties"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:bob:pb}}", "Authorization: Bearer {{secret}}",
 "Authorization: Bearer {{secret}}"]
--- error_code eval
[204, 404, 404, 403, 403]



=== TEST 10: two actors of this server: partner is approved at once (201)
--- init
main::is_trust_index_empty();
--- request eval
["POST /a/\n{\"creator\": \"carol\", \"passphrase\": \"pc\"}"]
--- error_code eval
[201]
--- capture
c = json:id



=== TEST 11: A and C through this server's own URL, one worker
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{c}}\", \"relationship\": \"partner\"}",
 "GET /a/{{c}}/trust/partner/{{a}}"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:carol:pc}}"]
--- error_code eval
[201, 200]
--- response_body_json eval
['{"...": 1, "peerid": "{{c}}", "approved": true, "peer_approved": true}',
 '{"...": 1, "peerid": "{{a}}", "approved": true, "peer_approved": true}']
--- capture eval
["csecret = json:secret", ""]



=== TEST 12: C's token reads C's record on A; C deletes as the peer
--- request eval
["GET /a/{{a}}/trust/partner/{{c}}", "DELETE /a/{{a}}/trust/partner/{{c}}",
 "GET /a/{{a}}/trust/partner/{{c}}"]
--- more_headers eval
["Authorization: Bearer {{csecret}}", "Authorization: Bearer {{csecret}}",
 "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[200, 204, 404]



=== TEST 13: C deletes its side with ?peer=true (no call to A)
--- request eval
["DELETE /a/{{c}}/trust/partner/{{a}}?peer=true",
 "GET /a/{{c}}/trust"]
--- more_headers
Authorization: {{basic:carol:pc}}
--- error_code eval
[204, 200]
--- response_body_json eval
[undef, "[]"]



=== TEST 14: peer down: 502
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_DEAD_PORT}}/b/x"}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 502
--- response_body_json
{"error": {"code": 502, "message": "peer could not be reached"}}
--- error_log
connect() failed
--- no_error_log
[alert]
[crit]



=== TEST 15: peer answers non-JSON, or 500: 408, and no trust is left
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/fake/x\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/fail/x\"}",
 "GET /a/{{a}}/trust"]
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code eval
[408, 408, 200]
--- response_body_json eval
['{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}', "[]"]



=== TEST 16: peer never answers: 504 within actingweb_peer_timeout
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SILENT_PORT}}/b/x"}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 504
--- response_body_json
{"error": {"code": 504, "message": "peer did not answer in time"}}
--- timeout: 10
--- error_log
did not answer in 2000 ms
--- no_error_log
[alert]
[crit]



=== TEST 17: a peer answer larger than the buffer: 502, no trust
--- user_files eval
">>> big/meta\n{\"id\":\"0123456789abcdef0123456789abcdef\",\"type\":\"t\",\"pad\":\"" . ("x" x 200000) . "\"}"
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/big"}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 502
--- response_body_json
{"error": {"code": 502, "message": "peer answer too large"}}
--- error_log
too big subrequest response
--- no_error_log
[alert]
[crit]



=== TEST 18: an actor where loopback is refused; no half trust on A
--- request eval
["POST /d/\n{\"creator\": \"dave\", \"passphrase\": \"pd\"}",
 "GET /a/{{a}}/trust"]
--- more_headers eval
["", "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[201, 200]
--- response_body_json eval
['{"...": 1}', "[]"]
--- capture eval
["d = json:id", ""]



=== TEST 19: denied target, creator's and anonymous requests alike
--- request eval
["POST /d/{{d}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SILENT_PORT}}/b/x\"}",
 "POST /d/{{d}}/trust/friend\n{\"baseuri\": \"http://127.0.0.1:{{env:TEST_NGINX_SILENT_PORT}}/b/x1\", \"id\": \"x1\", \"type\": \"t\", \"secret\": \"s3cr3t\", \"verify\": \"v\"}",
 "GET /d/{{d}}/trust"]
--- more_headers eval
["Authorization: {{basic:dave:pd}}", "", "Authorization: {{basic:dave:pd}}"]
--- error_code eval
[403, 403, 200]
--- response_body_json eval
['{"error": {"code": 403, "message": "peer address not allowed on this server"}}',
 '{"error": {"code": 403, "message": "peer address not allowed on this server"}}',
 "[]"]
--- init
main::drain_silent();



=== TEST 20: a peer location that does not proxy: 500 and one [error]
--- init
main::no_connection_pending();
--- request eval
["POST /m/\n{\"creator\": \"mo\", \"passphrase\": \"pm\"}"]
--- error_code eval
[201]
--- capture
m = json:id



=== TEST 21: the misconfiguration is named
--- request
POST /m/{{m}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}"}
--- more_headers
Authorization: {{basic:mo:pm}}
--- error_code: 500
--- response_body_json
{"error": {"code": 500, "message": "peer calls are not configured on this server"}}
--- error_log
peer location "/nowhere" does not proxy



=== TEST 22: bad trust requests: 400 and nothing stored
--- request eval
["POST /a/{{a}}/trust\n{\"relationship\": \"friend\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"ftp://x/y\"}",
 "POST /a/{{a}}/trust\n[1]",
 "POST /a/{{a}}/trust/friend\n{\"baseuri\": \"http://127.0.0.1/x\", \"id\": \"a b\", \"type\": \"t\", \"secret\": \"s\"}",
 "POST /a/{{a}}/trust/friend\n{\"baseuri\": \"http://127.0.0.1/x\", \"id\": \"{{a}}\", \"type\": \"t\", \"secret\": \"s\"}",
 "GET /a/{{a}}/trust"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}", "", "",
 "Authorization: {{basic:alice:pa}}"]
--- error_code eval
[400, 400, 400, 400, 400, 200]
--- response_body_json eval
['{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}', "[]"]



=== TEST 23: A and B again (friend); before B approves, A's token is refused on B's properties
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}\", \"relationship\": \"friend\"}",
 "GET /tob/b/{{b}}/properties"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: Bearer {{ANY}}"]
--- error_code eval
[201, 403]
--- capture eval
["secret2 = json:secret", ""]



=== TEST 24: B approves: A's token reads and writes B's properties (friend), nothing else
--- request eval
["PUT /tob/b/{{b}}/trust/friend/{{a}}\n{\"approved\": true}",
 "PUT /tob/b/{{b}}/properties/note\nfrom a",
 "GET /tob/b/{{b}}/properties/note",
 "GET /tob/b/{{b}}",
 "GET /tob/b/{{b}}/trust",
 "DELETE /tob/b/{{b}}/trust/friend/0123456789abcdef0123456789abcdef"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}", "Authorization: Bearer {{secret2}}",
 "Authorization: Bearer {{secret2}}", "Authorization: Bearer {{secret2}}",
 "Authorization: Bearer {{secret2}}", "Authorization: Bearer {{secret2}}"]
--- error_code eval
[204, 204, 200, 403, 403, 403]
--- response_body_like eval
["^\$", "^\$", "^from a\$", "access denied", "access denied",
 "this token is not for this peer"]



=== TEST 25: an associate (A with C, C approves) may only read
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{c}}\", \"relationship\": \"associate\"}",
 "PUT /a/{{c}}/trust/associate/{{a}}\n{\"approved\": true}",
 "PUT /a/{{c}}/properties/p\n1"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:carol:pc}}",
 "Authorization: {{basic:carol:pc}}"]
--- error_code eval
[201, 204, 204]
--- capture eval
["secret3 = json:secret", "", ""]



=== TEST 26: the associate's token: GET yes, PUT no
--- request eval
["GET /a/{{c}}/properties/p", "PUT /a/{{c}}/properties/p\n2",
 "GET /a/{{c}}/properties/p"]
--- more_headers eval
["Authorization: Bearer {{secret3}}", "Authorization: Bearer {{secret3}}",
 "Authorization: Bearer {{secret3}}"]
--- error_code eval
[200, 403, 200]
--- response_body eval
["1", '{"error":{"code":403,"message":"not allowed for this relationship"}}', "1"]



=== TEST 27: an anonymous request cannot replace a verified trust
--- request eval
["POST /tob/b/{{b}}/trust/friend\n{\"baseuri\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}\", \"id\": \"{{a}}\", \"type\": \"t\", \"secret\": \"attackersecret\"}",
 "GET /tob/b/{{b}}/trust/friend/{{a}}",
 "GET /tob/b/{{b}}/properties/note"]
--- more_headers eval
["", "Authorization: {{basic:bob:pb}}", "Authorization: Bearer attackersecret"]
--- error_code eval
[403, 200, 403]
--- response_body_json eval
['{"error": {"code": 403, "message": "a trust with this peer exists: a new request must be verified and come from the same baseuri"}}',
 '{"...": 1, "secret": "{{secret2}}"}', undef]



=== TEST 27b: verified from another baseuri: refused; A itself asking again replaces both sides
--- request eval
["POST /tob/b/{{b}}/trust/friend\n{\"baseuri\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/evil/{{a}}\", \"id\": \"{{a}}\", \"type\": \"t\", \"secret\": \"evilsecret\", \"verify\": \"T\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}\", \"relationship\": \"friend\"}",
 "GET /tob/b/{{b}}/trust/friend/{{a}}"]
--- more_headers eval
["", "Authorization: {{basic:alice:pa}}", "Authorization: {{basic:bob:pb}}"]
--- error_code eval
[403, 201, 202]
--- response_body_json eval
['{"error": {"code": 403, "message": "a trust with this peer exists: a new request must be verified and come from the same baseuri"}}',
 '{"...": 1, "peerid": "{{b}}"}',
 '{"...": 1, "baseuri": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}", "verified": true, "approved": false}']



=== TEST 28: deleting A tells B and C first: their trusts with A are gone
--- request eval
["DELETE /a/{{a}}", "GET /tob/b/{{b}}/trust", "GET /a/{{c}}/trust"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:bob:pb}}",
 "Authorization: {{basic:carol:pc}}"]
--- error_code eval
[204, 200, 200]
--- response_body_json eval
[undef, "[]", "[]"]



=== TEST 29: a client that leaves during a peer call: no alert, nothing left
--- request eval
["POST /a/\n{\"creator\": \"gil\", \"passphrase\": \"pg\"}"]
--- error_code eval
[201]
--- capture
g = json:id



=== TEST 30: (the client gives up after 0.5 s on a silent peer)
--- init
main::drain_silent();
--- request
POST /a/{{g}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SILENT_PORT}}/b/x"}
--- more_headers
Authorization: {{basic:gil:pg}}
--- timeout: 0.5
--- abort
--- ignore_response
--- wait: 0.5
--- no_error_log
[alert]
[crit]
[error]



=== TEST 31: gil has no trust; the worker serves on
--- request
GET /a/{{g}}/trust
--- more_headers
Authorization: {{basic:gil:pg}}
--- error_code: 200
--- response_body_json
[]



=== TEST 32: a peer name that does not resolve: 502 in time, nothing stored
--- request eval
["POST /n/\n{\"creator\": \"nina\", \"passphrase\": \"pn\"}"]
--- error_code eval
[201]
--- capture
n = json:id



=== TEST 33: (the resolver of that location does not answer)
--- request
POST /n/{{n}}/trust
{"url": "http://peer.example.invalid/a/0123456789abcdef0123456789abcdef"}
--- more_headers
Authorization: {{basic:nina:pn}}
--- error_code: 502
--- response_body_json
{"error": {"code": 502, "message": "peer host name could not be resolved"}}
--- error_log
could not be resolved
--- no_error_log
[alert]
[crit]



=== TEST 34: nina has no trust
--- request
GET /n/{{n}}/trust
--- more_headers
Authorization: {{basic:nina:pn}}
--- error_code: 200
--- response_body_json
[]
