# Callback delivery (the outbox): A (this server) publishes; B and F are
# subscribers on a second server in the same nginx whose /callbacks
# locations are sinks: B's proxies to a 204 and logs what it got (URI,
# Authorization, downgrade header, body) to a file this test reads; F's
# answers 500.  High and low callbacks, a payload above
# actingweb_callback_max_payload sent as low, F's circuit opening without
# hurting B, polling after missed callbacks, and work left pending in
# Redis by a stopped publisher delivered by the next one.  B's two
# subscriptions overlap: a write to x is one POST to B, for the more
# specific one.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Socket::INET ();
use HTTP::Tiny ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_CBLOG} ||= "/tmp/aw110-$$.log";
unlink $ENV{TEST_NGINX_CBLOG};

END { unlink $ENV{TEST_NGINX_CBLOG} if $ENV{TEST_NGINX_CBLOG} }

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    actingweb_callback_max_payload 300;
    log_format cb escape=none
        '\$request_uri|\$http_authorization|\$http_x_actingweb_granularity_downgraded|\$request_body';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location ~ ^/b/[0-9a-f]+/callbacks/ {
            access_log \$TEST_NGINX_CBLOG cb;
            client_body_buffer_size 64k;
            rewrite ^ /sink break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT;
        }
        location = /sink { access_log off; return 204; }
        # the sink logs bodies: no callbackcompression, plain ones
        location ~ ^/b/[0-9a-f]+/meta/actingweb/supported\$ {
            return 200 "subscriptions,trust";
        }
        location ~ ^/f/[0-9a-f]+/callbacks/ { access_log off; return 500; }
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
        location /f/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/f;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
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
    # a second location (TEST 9-10)
    location /c/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/c;
        actingweb_peer_allow 127.0.0.1;
    }
    location = /status { actingweb_status; }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

sub key { "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured($_[1] // 'a') . "}:$_[0]" }

# PUT <loc>/<actor of loc>/properties/<name> with a JSON value, as alice
sub put {
    my ($loc, $name, $value) = @_;
    my $port = main::wait_for_server();
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/$loc/" . main::captured($loc)
        . "/properties/$name",
        { headers => { Authorization => main::basic_auth('alice', 'pa'),
                       'Content-Type' => 'application/json' },
          content => $value });
    Test::More::is($res->{status}, 204, "PUT $loc $name");
}

# until /status matches $re (10 s at most)
sub status_until {
    my ($re) = @_;
    my $port = main::wait_for_server();
    for (1 .. 100) {
        last if HTTP::Tiny->new->get("http://127.0.0.1:$port/status")
                    ->{content} =~ $re;
        select undef, undef, undef, 0.1;
    }
}

run_tests();

__DATA__

=== TEST 1: A (publisher), B and F (subscribers)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}",
 "POST /tob/f/\n{\"creator\": \"fred\", \"passphrase\": \"pf\"}"]
--- more_headers
--- error_code eval
[201, 201, 201]
--- capture eval
["a = json:id", "b = json:id", "f = json:id"]



=== TEST 2: trusts A-B and A-F, friends
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}\", \"relationship\": \"friend\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/f/{{f}}\", \"relationship\": \"friend\"}"]
--- error_code eval
[201, 201]
--- capture eval
["s = json:secret", "sf = json:secret"]



=== TEST 3: B subscribes high to everything and low to x; F high to everything
--- request eval
["POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"granularity\": \"high\"}",
 "POST /a/{{a}}/subscriptions/{{b}}\n{\"target\": \"properties\", \"subtarget\": \"x\", \"granularity\": \"low\"}",
 "POST /a/{{a}}/subscriptions/{{f}}\n{\"target\": \"properties\", \"granularity\": \"high\"}"]
--- more_headers eval
["Authorization: Bearer {{s}}", "Authorization: Bearer {{s}}",
 "Authorization: Bearer {{sf}}"]
--- error_code eval
[201, 201, 201]
--- capture eval
["sub1 = json:subscriptionid", "sub2 = json:subscriptionid",
 "subf = json:subscriptionid"]



=== TEST 4: writes answer at once; callbacks follow; F's fail and its circuit opens after 5 without hurting B
--- init
my $port = main::wait_for_server();
my $a = main::captured('a');
my $h = { Authorization => main::basic_auth('alice', 'pa'),
          'Content-Type' => 'application/json' };
my @w = (['x', '{"y": 1}'], ['z', '2'], ['big', '"' . ('v' x 400) . '"'],
         ['z', '3'], ['z', '4']);
for my $w (@w) {
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/a/$a/properties/$w->[0]",
        { headers => $h, content => $w->[1] });
    Test::More::is($res->{status}, 204, "PUT $w->[0]");
}
main::sink_lines(5);
# and F's five have failed (no timing: up to 10 s)
for (1 .. 100) {
    last if HTTP::Tiny->new->get("http://127.0.0.1:$port/status")->{content}
            =~ /"callbacks_failed":5,.*"outbox_depth":0/;
    select undef, undef, undef, 0.1;
}
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":5,"callbacks_failed":5,"callbacks_retried":0,"callbacks_dropped":0,"callbacks_downgraded":2,"callbacks_redis_commands":\d+,"circuit_opened":1,"circuits_open":1,"circuits_half_open":0,"outbox_depth":0/
--- error_log
actingweb: callbacks to peer {{f}}: circuit open for 60000 ms after 5 failures
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: B got each change once, in order: high with data, low with url, the big one downgraded; x only for the subscription to x
--- init
my @l = main::sink_lines(5);
my ($aid, $bid, $s, $sub1, $sub2) = map { main::captured($_) } qw(a b s sub1 sub2);
my $port = $ENV{TEST_NGINX_SERVER_PORT};
Test::More::is(scalar @l, 5, 'five callbacks to B') or Test::More::diag(join "\n", @l);
# one subscription's callbacks of separate writes may cross on the way
my @high = sort { ($a =~ /"sequence":(\d+)/)[0] <=> ($b =~ /"sequence":(\d+)/)[0] }
           grep { m{/$sub1\|} } @l;
my @low = grep { m{/$sub2\|} } @l;
# the write to x is one POST: the low one (properties/x beats properties)
Test::More::is(scalar @high, 4, 'four high, none for x');
Test::More::like($high[0], qr{^/b/$bid/callbacks/subscriptions/$aid/$sub1\|Bearer $s\|\|\{"id":"$aid","subscriptionid":"$sub1","target":"properties","sequence":2,"timestamp":"[^"]+Z","granularity":"high","data":\{"z":2\}\}$}, 'high callback');
Test::More::like($high[1], qr{\|true\|\{.*"sequence":3,.*"url":"http://127.0.0.1:$port/a/$aid/subscriptions/$bid/$sub1/3","granularity":"low"\}$}, 'above the limit: low, with the header');
Test::More::like($high[3], qr{"sequence":5,.*"data":\{"z":4\}}, 'last');
Test::More::is(scalar @low, 1, 'one low');
Test::More::like($low[0], qr{\|\|\{"id":"$aid","subscriptionid":"$sub2","target":"properties","subtarget":"x","sequence":1,"timestamp":"[^"]+","url":"http://127.0.0.1:$port/a/$aid/subscriptions/$bid/$sub2/1","granularity":"low"\}$}, 'low callback');
--- request
GET /a/{{a}}/subscriptions/{{f}}/{{subf}}
--- more_headers
Authorization: Bearer {{sf}}
--- response_body_json
{"...": 1, "sequence": 5, "data": [{"...": 1, "sequence": 1}, {"...": 1}, {"...": 1}, {"...": 1}, {"...": 1, "sequence": 5, "data": {"z": 4}}]}



=== TEST 5b: callbacks answered 2xx are cleared (the spec: "it MUST be cleared"); F's failed ones stay (above); x's diff of the broader subscription, not sent, stays
--- request eval
["GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub1}}/2",
 "GET /a/{{a}}/subscriptions/{{b}}/{{sub2}}"]
--- more_headers
Authorization: Bearer {{s}}
--- error_code eval
[200, 404, 200]
--- response_body_json eval
['{"...": 1, "sequence": 1, "data": [{"sequence": 1, "timestamp": "~Z$", "data": {"x": {"y": 1}}}]}',
 '{"error": {"code": 404, "message": "no such diff (cleared, or not made yet)"}}',
 '{"...": 1, "sequence": 1, "data": []}']
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: a stopped publisher left work in Redis (a change, the mark, the index): the next one delivers it
--- init
my $k = main::key('changes');
main::redis_cmd('XADD', $k, '*', 'path', '["w"]', 'op', 'set', 'value', '7');
main::redis_cmd('HSET', main::key('actor'), 'pending', 'x');
my $url = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/" . main::captured('a');
my $n = 0;
# the bucket: crc32(id) % 16, as nginx computes it
require Compress::Zlib;
$n = Compress::Zlib::crc32(main::captured('a')) % 16;
main::redis_cmd('SADD', "$ENV{TEST_NGINX_REDIS_PREFIX}:cbq:{$n}", $url);
my @l = main::sink_lines(6);
Test::More::is(scalar @l, 6, 'the left-over change was delivered');
Test::More::like($l[-1], qr{"sequence":6,.*"data":\{"w":7\}}, 'with the next sequence');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,/
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: a poll that came first took the change into a diff: its callback still goes (the run sends diffs stored since the last one)
--- init
main::redis_cmd('XADD', main::key('changes'), '*', 'path', '["w"]', 'op', 'set',
                'value', '8');
my $port = main::wait_for_server();
my $res = HTTP::Tiny->new->get(
    "http://127.0.0.1:$port/a/" . main::captured('a') . '/subscriptions/'
    . main::captured('b') . '/' . main::captured('sub1'),
    { headers => { Authorization => 'Bearer ' . main::captured('s') } });
Test::More::like($res->{content}, qr/"sequence":7,"timestamp":"[^"]+","data":\{"w":8\}/,
                 'the poll made the diff');
main::redis_cmd('HSET', main::key('actor'), 'pending', 'y');
require Compress::Zlib;
my $n = Compress::Zlib::crc32(main::captured('a')) % 16;
main::redis_cmd('SADD', "$ENV{TEST_NGINX_REDIS_PREFIX}:cbq:{$n}",
                "http://127.0.0.1:$port/a/" . main::captured('a'));
my @l = main::sink_lines(7);
Test::More::is(scalar @l, 7, 'its callback was sent');
Test::More::like($l[-1], qr{"sequence":7,.*"data":\{"w":8\}}, 'that diff');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,/
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: callbacks obey actingweb_peer_allow/deny too: without the allow line, loopback is refused at connect (a name may point elsewhere since the trust was made)
--- config
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
    }
    location = /status { actingweb_status; }
--- init
main::put('a', 'z', '9');
main::status_until(qr/"callbacks_failed":[1-9]/);
select undef, undef, undef, 0.3;
my @l = main::sink_lines(8);
Test::More::is(scalar @l, 7, 'nothing reached B');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":0,"callbacks_failed":[1-9]/
--- error_log
actingweb: callback address 127.0.0.1 refused by actingweb_peer_allow/deny
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9: a second location /c/ (allowed for now): its actor C
--- request
POST /c/
{"creator": "alice", "passphrase": "pa"}
--- more_headers
--- error_code: 201
--- capture
c = json:id
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9b: C trusts B
--- request
POST /c/{{c}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}", "relationship": "friend"}
--- error_code: 201
--- capture
sc = json:secret
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9c: B subscribes to C's properties
--- request
POST /c/{{c}}/subscriptions/{{b}}
{"target": "properties", "granularity": "high"}
--- more_headers
Authorization: Bearer {{sc}}
--- error_code: 201
--- no_error_log
[error]
[alert]
[crit]



=== TEST 10: /c/ without the allow line: C's callback may not ride on the connection A's callback opened to the same address (checked before each request, not only at connect)
--- config
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
    }
    location /c/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/c;
    }
    location = /status { actingweb_status; }
--- init
# failed: C's refused callback, and F's (its circuit is open since TEST 4,
# or its probe fails)
main::put('a', 'z', '10');
main::sink_lines(8);
main::put('c', 'z', '11');
main::status_until(qr/"callbacks_sent":1,"callbacks_failed":2,/);
select undef, undef, undef, 0.3;
my @l = main::sink_lines(9);
Test::More::is(scalar @l, 8, "A's callback only");
Test::More::like($l[-1], qr{"data":\{"z":10\}}, "A's");
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,"callbacks_failed":2,/
--- error_log
actingweb: callback address 127.0.0.1 refused by actingweb_peer_allow/deny
--- no_error_log
[error]
[alert]
[crit]
