# The application-facing peer operations: peer info, AwProxy and fan-out
# with deadlines, between A (this server) and ten actors on B (a second
# server in the same nginx); slow, failing, garbage and huge answers.

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

sub drain_silent {
    $Silent->blocking(0);
    while (my $c = $Silent->accept) { close $c; }
}

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
        # a resource that answers after 0.5 s (a silent upstream times out)
        location ~ ^/b/[0-9a-f]+/slow\$ {
            proxy_pass http://127.0.0.1:\$TEST_NGINX_SILENT_PORT;
            proxy_connect_timeout 500ms;
            proxy_read_timeout 500ms;
            error_page 502 504 = \@slow;
        }
        location \@slow {
            default_type application/json;
            return 200 '{"slow":true}';
        }
        location ~ ^/b/[0-9a-f]+/echo\$ {
            default_type application/json;
            return 200 '{"x":"\$http_x_secret","auth":"\$http_authorization","cookie":"\$http_cookie","args":"\$args","len":"\$content_length"}';
        }
        location ~ ^/b/[0-9a-f]+/garbage\$ {
            return 200 "<html>nope</html>";
        }
        location ~ ^/b/[0-9a-f]+/big\$ {
            root html;
            try_files /big.json =404;
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
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

run_tests();

__DATA__

=== TEST 1: A, and ten actors on B, each trusting A (auto-approved)
--- init
main::drain_silent();
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 map { "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}" } 1..10]
--- more_headers
--- error_code eval
[(201) x 11]
--- capture eval
["a = json:id", map { "b$_ = json:id" } 1..10]



=== TEST 2: A initiates the ten trusts; B approves each at once (201)
--- request eval
[map { "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b$_}}\", \"relationship\": \"friend\"}" } 1..10]
--- error_code eval
[(201) x 10]
--- response_body_json eval
[map { '{"...": 1, "approved": true, "peer_approved": true}' } 1..10]
--- capture eval
["s1 = json:secret", map { "" } 2..10]



=== TEST 3: peer info, by peer id and by URL
--- request eval
["GET /a/{{a}}/peerinfo/{{b1}}",
 "GET /a/{{a}}/peerinfo?url={{uri:http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b2}}}}",
 "GET /a/{{a}}/peerinfo/0123456789abcdef0123456789abcdef",
 "GET /a/{{a}}/peerinfo?url={{uri:http://10.1.2.3/x}}",
 "GET /a/{{a}}/peerinfo"]
--- error_code eval
[200, 200, 404, 403, 400]
--- response_body_json eval
['{"...": 1, "id": "{{b1}}", "actingweb": {"...": 1}}',
 '{"...": 1, "id": "{{b2}}"}',
 '{"error": {"code": 404, "message": "no trust with this peer"}}',
 '{"error": {"code": 403, "message": "peer address not allowed on this server"}}',
 '{"error": "{{ANY}}"}']



=== TEST 4: AwProxy: create, change, read, delete a property on B1
--- request eval
["PUT /a/{{a}}/awproxy/{{b1}}/properties/color\n{\"r\": 1}",
 "GET /a/{{a}}/awproxy/{{b1}}/properties/color",
 "GET /a/{{a}}/awproxy/{{b1}}/properties/nothing",
 "DELETE /a/{{a}}/awproxy/{{b1}}/properties/color",
 "GET /a/{{a}}/awproxy/{{b1}}/properties"]
--- error_code eval
[204, 200, 404, 204, 200]
--- response_body_json eval
[undef, '{"r": 1}', '{"error": {"code": 404, "message": "property not found"}}',
 undef, '{}']



=== TEST 5: AwProxy sends the trust's token, the body and the query, never the client's headers
--- request
POST /a/{{a}}/awproxy/{{b1}}/echo?q=1&w=2
{"k": "v"}
--- more_headers
Authorization: {{basic:alice:pa}}
X-Secret: leak
Cookie: session=leak
--- error_code: 200
--- response_body_json
{"x": "", "auth": "~^Bearer [0-9a-f]{40}$", "cookie": "", "args": "q=1&w=2", "len": "10"}



=== TEST 6: AwProxy errors: no trust, garbage, too big, bad body
--- user_files eval
">>> big.json\n{\"pad\":\"" . ("x" x 200000) . "\"}"
--- request eval
["GET /a/{{a}}/awproxy/0123456789abcdef0123456789abcdef/properties",
 "GET /a/{{a}}/awproxy/{{b1}}/garbage",
 "GET /a/{{a}}/awproxy/{{b1}}/big",
 "PUT /a/{{a}}/awproxy/{{b1}}/properties/x\n{bad",
 "GET /a/{{a}}/awproxy"]
--- error_code eval
[404, 502, 502, 400, 404]
--- response_body_json eval
['{"error": {"code": 404, "message": "no trust with this peer"}}',
 '{"error": {"code": 502, "message": "peer answered with something that is not JSON"}}',
 '{"error": {"code": 502, "message": "peer answer too large"}}',
 '{"error": "{{ANY}}"}', '{"error": "{{ANY}}"}']
--- no_error_log
[alert]
[crit]



=== TEST 7: AwProxy to a slow resource with a shorter deadline: 504 at once
--- request
GET /a/{{a}}/awproxy/{{b1}}/slow?deadline=200
--- error_code: 504
--- response_body_json
{"error": {"code": 504, "message": "peer did not answer in time"}}
--- error_log eval
qr/peer "[^"]+\/slow\?deadline=200" (?:did not answer in \d+ ms|not called: the request's deadline passed)/
--- no_error_log
[alert]
[crit]



=== TEST 8: fan-out to ten peers that each take 0.5 s, 2 s deadline: all succeed (serial could not)
--- init
main::drain_silent();
--- request
POST /a/{{a}}/fanout
{"method": "GET", "path": "slow"}
--- more_headers
Authorization: {{basic:alice:pa}}
X-ActingWeb-Deadline: 2000
--- timeout: 4
--- error_code: 200
--- response_body_json eval
'{"count": 10, "succeeded": 10, "results": {' . CORE::join(", ", map { "\"{{b$_}}\": {\"status\": 200, \"body\": {\"slow\": true}}" } 1..10) . '}}'
--- no_error_log
[alert]
[crit]



=== TEST 9: fan-out past its deadline: every peer's error is there, in time
--- init
main::drain_silent();
--- request
POST /a/{{a}}/fanout?deadline=200
{"method": "GET", "path": "slow"}
--- error_code: 200
--- response_body_json eval
'{"count": 10, "succeeded": 0, "results": {' . CORE::join(", ", map { "\"{{b$_}}\": {\"error\": {\"code\": 504, \"message\": \"peer did not answer in time\"}}" } 1..10) . '}}'
--- no_error_log
[alert]
[crit]



=== TEST 10: fan-out where some peers have the property: each peer's own answer
--- request eval
["PUT /a/{{a}}/awproxy/{{b3}}/properties/x\n{\"v\": 3}",
 "POST /a/{{a}}/fanout\n{\"path\": \"properties/x\", \"relationship\": \"friend\"}",
 "POST /a/{{a}}/fanout\n{\"path\": \"properties/x\", \"relationship\": \"partner\"}"]
--- error_code eval
[204, 200, 200]
--- response_body_json eval
[undef,
 '{"count": 10, "succeeded": 1, "results": {"...": 1, "{{b3}}": {"status": 200, "body": {"v": 3}}, "{{b4}}": {"status": 404, "body": {"error": {"code": 404, "message": "property not found"}}}}}',
 '{"count": 0, "succeeded": 0, "results": {}}']



=== TEST 11: fan-out writes: a PUT with a body to every peer
--- request eval
["POST /a/{{a}}/fanout\n{\"method\": \"PUT\", \"path\": \"properties/greeting\", \"body\": {\"hi\": \"all\"}}",
 "GET /tob/b/{{b7}}/properties/greeting"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}", "Authorization: {{basic:bob:pb}}"]
--- error_code eval
[200, 200]
--- response_body_json eval
['{"count": 10, "succeeded": 10, "results": {"...": 1, "{{b7}}": {"status": 204}}}',
 '{"hi": "all"}']



=== TEST 12: bad fan-out requests and deadlines
--- request eval
["POST /a/{{a}}/fanout\n{\"method\": \"PATCH\", \"path\": \"x\"}",
 "POST /a/{{a}}/fanout\n{\"path\": \"../x\"}",
 "POST /a/{{a}}/fanout\n{\"path\": \"/x\"}",
 "POST /a/{{a}}/fanout\n[]",
 "POST /a/{{a}}/fanout?deadline=abc\n{\"path\": \"x\"}",
 "POST /a/{{a}}/fanout/x\n{\"path\": \"x\"}"]
--- error_code eval
[400, 400, 400, 400, 400, 404]
--- response_body_json eval
[map { '{"error": "{{ANY}}"}' } 1..6]



=== TEST 13: only the creator: no credentials 401
--- request eval
["GET /a/{{a}}/peerinfo/{{b1}}", "POST /a/{{a}}/fanout\n{\"path\": \"x\"}"]
--- more_headers
--- error_code eval
[401, 401]



=== TEST 14: B1's creator sets permissions for A: 201, then 200; GET shows them
--- request eval
["POST /tob/b/{{b1}}/properties\n{\"open\": 1, \"hidden\": 2, \"other\": 3, \"notes1\": 4}",
 "PUT /tob/b/{{b1}}/trust/friend/{{a}}/permissions\n{\"properties\": {\"patterns\": [\"op*\"], \"operations\": [\"read\"]}}",
 "PUT /tob/b/{{b1}}/trust/friend/{{a}}/permissions\n{\"properties\": {\"patterns\": [\"open\", \"notes*\"], \"excluded_patterns\": [\"hidden\"], \"operations\": [\"read\"]}}",
 "GET /tob/b/{{b1}}/trust/friend/{{a}}/permissions",
 "PUT /tob/b/{{b1}}/trust/friend/{{a}}/permissions\n{\"properties\": {\"patterns\": \"open\"}}",
 "GET /tob/b/{{b1}}/trust/friend/0123456789abcdef0123456789abcdef/permissions",
 "GET /tob/b/{{b1}}/meta/actingweb/supported"]
--- more_headers
Authorization: {{basic:bob:pb}}
--- error_code eval
[201, 201, 200, 200, 400, 404, 200]
--- response_body_json eval
[undef, undef, undef,
 '{"properties": {"patterns": ["open", "notes*"], "excluded_patterns": ["hidden"], "operations": ["read"]}}',
 '{"error": "{{ANY}}"}', '{"error": {"code": 404, "message": "no such trust"}}', undef]
--- response_body_like eval
["", "^\$", "^\$", "", "", "", "^callbackcompression,nestedproperties,subscriptionresync,subscriptions,trust,trustpermissions\$"]



=== TEST 15: A's token on B1: denied exactly where the patterns say
--- request eval
["GET /tob/b/{{b1}}/properties/open", "GET /tob/b/{{b1}}/properties/hidden",
 "PUT /tob/b/{{b1}}/properties/open\n5", "GET /tob/b/{{b1}}/properties/other",
 "GET /tob/b/{{b1}}/properties/notes1", "GET /tob/b/{{b1}}/properties",
 "DELETE /tob/b/{{b1}}/properties", "GET /tob/b/{{b1}}/permissions/{{a}}",
 "GET /tob/b/{{b1}}/permissions/{{b2}}"]
--- more_headers
Authorization: Bearer {{s1}}
--- error_code eval
[200, 403, 403, 200, 200, 200, 403, 200, 403]
--- response_body_json eval
["1", '{"error": {"code": 403, "message": "not allowed by this trust\'s permissions"}}',
 '{"error": {"code": 403, "message": "not allowed by this trust\'s permissions"}}',
 "3", "4", '{"open": 1, "other": 3, "notes1": 4, "greeting": {"hi": "all"}}',
 '{"error": {"code": 403, "message": "not allowed by this trust\'s permissions"}}',
 '{"properties": {"patterns": ["open", "notes*"], "excluded_patterns": ["hidden"], "operations": ["read"]}}',
 '{"error": "{{ANY}}"}']



=== TEST 16: permissions removed: the relationship's default again
--- request eval
["DELETE /tob/b/{{b1}}/trust/friend/{{a}}/permissions",
 "GET /tob/b/{{b1}}/trust/friend/{{a}}/permissions"]
--- more_headers
Authorization: {{basic:bob:pb}}
--- error_code eval
[204, 404]



=== TEST 17: A's token reads "hidden" again; its own permissions are gone
--- request eval
["GET /tob/b/{{b1}}/properties/hidden", "GET /tob/b/{{b1}}/permissions/{{a}}"]
--- more_headers
Authorization: Bearer {{s1}}
--- error_code eval
[200, 404]
--- response_body eval
["2", '{"error":{"code":404,"message":"no permissions set"}}']
