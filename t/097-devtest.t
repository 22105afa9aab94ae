# /devtest with actingweb_devtest on: ping, and the reference's proxy
# endpoints (a "twin" actor at our own factory, trusted as a friend, and
# its properties through the trust); a failing step leaves nothing.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

my $peer = <<'CONF';
        internal;
        proxy_pass_request_headers off;
        proxy_set_header Host $actingweb_peer_host;
        proxy_set_header Authorization $actingweb_peer_authorization;
        proxy_set_header Content-Type application/json;
        subrequest_output_buffer_size 64k;
CONF

# one server; /bad/ calls through a peer location that refuses the
# twin's approval (PUT <twin>/trust/friend/<actor>) with a 403
block_defaults(
    http_config => <<'CONF',
    actingweb_peer_timeout 5s;
    map $actingweb_peer_url $devtest_peer {
        volatile;
        "~/trust/friend/[0-9a-f]+$"
            http://127.0.0.1:$TEST_NGINX_SERVER_PORT/refuse;
        default $actingweb_peer_url;
    }
CONF
    config => <<"CONF",
    location /aw/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/aw;
        actingweb_peer_allow 127.0.0.1;
        actingweb_devtest on;
    }
    location /bad/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/aw;
        actingweb_peer_allow 127.0.0.1;
        actingweb_devtest on;
        actingweb_peer_location /_peer_bad;
    }
    location /noproxy/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/aw;
        actingweb_peer_allow 127.0.0.1;
        actingweb_devtest on;
        actingweb_peer_location /_peer_none;
    }
    location /off/ {
        actingweb;
    }
    location = /_actingweb_peer {
        proxy_pass \$actingweb_peer_url;
$peer
    }
    location = /_peer_bad {
        proxy_pass \$devtest_peer;
$peer
    }
    location = /_peer_none {
        internal;
        return 200 '{}';
    }
    location = /refuse {
        default_type application/json;
        return 403 '{"error":{"code":403,"message":"refused"}}';
    }
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

sub actors {
    return scalar grep { /^\{[0-9a-f]{32}\}:actor$/ } redis_keys('*');
}

run_tests();

__DATA__

=== TEST 1: two actors, A and B
--- request eval
["POST /aw/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /aw/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}"]
--- more_headers
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "b = json:id"]



=== TEST 2: no twin yet: 404; ping still open
--- request eval
["GET /aw/{{a}}/devtest/proxy/properties",
 "PUT /aw/{{a}}/devtest/proxy/properties/x\n1",
 "GET /aw/{{a}}/devtest/ping"]
--- more_headers eval
["Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 ""]
--- error_code eval
[404, 404, 204]
--- response_body_json eval
['{"error": {"code": 404, "message": "no twin: POST devtest/proxy/create first"}}',
 '{"error": {"code": 404, "message": "no twin: POST devtest/proxy/create first"}}',
 undef]



=== TEST 3: create: a twin at our factory, trusted, with the properties
--- request
POST /aw/{{a}}/devtest/proxy/create
{"color": "red", "n": 1}
--- error_code: 200
--- response_body_json
{"...": 1, "id": "~^[0-9a-f]{32}$", "type": "{{ANY}}",
 "trustee_root": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/aw/{{a}}",
 "actingweb": {"...": 1}}
--- response_headers_like
Location: ^http://127\.0\.0\.1:\d+/aw/[0-9a-f]{32}$
--- capture
twin = json:id
twin_url = header:Location



=== TEST 4: the trust, approved on both sides; the twin's creator
--- init
my $p = $ENV{TEST_NGINX_REDIS_PREFIX};
my ($a, $t) = (captured('a'), captured('twin'));
my $rec = redis_cmd('HGET', "$p:{$t}:trust", $a);
Test::More::like($rec, qr/"approved":true/, "twin approved");
Test::More::like($rec, qr/"peer_approved":true/, "twin: A approved");
Test::More::is(redis_cmd('HGET', "$p:{$a}:actor", 'devtest_twin'), $t,
               'twin remembered');
Test::More::is(redis_cmd('HGET', "$p:{$t}:actor", 'creator'), 'trustee',
               'twin creator');
--- request
GET /aw/{{a}}/trust
--- response_body_json
[{"...": 1, "peerid": "{{twin}}", "relationship": "friend",
  "baseuri": "{{twin_url}}", "approved": true, "peer_approved": true,
  "verified": true}]



=== TEST 5: the twin's properties through the proxy
--- request eval
["GET /aw/{{a}}/devtest/proxy/properties",
 "PUT /aw/{{a}}/devtest/proxy/properties/color\n\"blue\"",
 "GET /aw/{{a}}/devtest/proxy/properties",
 "DELETE /aw/{{a}}/devtest/proxy/properties",
 "GET /aw/{{a}}/devtest/proxy/properties"]
--- error_code eval
[200, 204, 200, 204, 200]
--- response_body_json eval
['{"color": "red", "n": 1}',
 undef,
 '{"color": "blue", "n": 1}',
 undef,
 '{}']



=== TEST 6: a name that needs escaping reaches the twin as that name
--- request eval
["PUT /aw/{{a}}/devtest/proxy/properties/a%20b%3F\n{\"x\": [1]}",
 "GET /aw/{{a}}/devtest/proxy/properties"]
--- error_code eval
[204, 200]
--- response_body_json eval
[undef, '{"a b?": {"x": [1]}}']



=== TEST 7: who may call, which methods and paths
--- request eval
["GET /aw/{{a}}/devtest/proxy/properties",
 "GET /aw/{{a}}/devtest/proxy/properties",
 "POST /aw/{{a}}/devtest/proxy/create\n{}",
 "POST /aw/{{a}}/devtest/proxy/properties\n{}",
 "GET /aw/{{a}}/devtest/proxy/create",
 "GET /aw/{{a}}/devtest/proxy/nothing",
 "GET /aw/{{a}}/devtest/proxy/properties/a/b",
 "POST /aw/{{a}}/devtest/proxy/create\n[1]",
 "GET /off/{{a}}/devtest/proxy/properties",
 "GET /off/{{a}}/devtest/ping",
 "POST /aw/{{a}}/devtest/ping"]
--- more_headers eval
["",
 "Authorization: {{basic:alice:wrong}}",
 "",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: {{basic:alice:pa}}",
 "",
 ""]
--- error_code eval
[401, 403, 401, 405, 405, 404, 404, 400, 404, 404, 405]
--- response_body_json eval
['{"error": {"code": 401, "...": 1}}',
 '{"error": {"code": 403, "...": 1}}',
 '{"error": {"code": 401, "...": 1}}',
 '{"error": {"code": 405, "message": "method not allowed"}}',
 '{"error": {"code": 405, "message": "method not allowed"}}',
 '{"error": {"code": 404, "message": "devtest path not supported"}}',
 '{"error": {"code": 404, "message": "devtest path not supported"}}',
 '{"error": {"code": 400, "...": 1}}',
 '{"error": {"code": 404, "message": "endpoint not supported"}}',
 '{"error": {"code": 404, "message": "endpoint not supported"}}',
 '{"error": {"code": 405, "message": "method not allowed"}}']



=== TEST 8: the twin refuses to approve: 502, the twin and both trusts gone
--- init
Test::More::is(main::actors(), 3, 'A, B and the twin');
--- request eval
["POST /bad/{{b}}/devtest/proxy/create\n{\"x\": 1}",
 "GET /aw/{{b}}/trust",
 "GET /aw/{{b}}/devtest/proxy/properties"]
--- error_code eval
[502, 200, 404]
--- response_body_json eval
['{"error": {"code": 502, "message": "the twin did not approve the trust"}}',
 '[]',
 '{"error": {"code": 404, "message": "no twin: POST devtest/proxy/create first"}}']



=== TEST 9: still three actors, and no trust left at any twin
--- init
Test::More::is(main::actors(), 3, 'no twin left behind');
Test::More::is(scalar(grep { /:trust$/ } redis_keys('*')), 2,
               'only A and its twin have trusts');
--- request
GET /aw/{{a}}/devtest/ping
--- more_headers
--- error_code: 204



=== TEST 10: peer calls not configured: the first step fails, no twin
--- request
POST /noproxy/{{b}}/devtest/proxy/create
{"x": 1}
--- error_code: 500
--- response_body_json
{"error": {"code": 500, "message": "peer calls are not configured on this server"}}
--- error_log
does not proxy
--- no_error_log
[alert]
[crit]



=== TEST 11: still three actors
--- init
Test::More::is(main::actors(), 3, 'no twin');
--- request
GET /aw/{{a}}/devtest/ping
--- more_headers
--- error_code: 204
