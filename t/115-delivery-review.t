# Callback delivery edge cases found in review: A (this server) publishes
# with a short change log; B's callbacks are logged by a sink (204), F's
# answer 500 so F's diffs are never cleared.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_CBLOG} ||= "/tmp/aw115-$$.log";
unlink $ENV{TEST_NGINX_CBLOG};

END { unlink $ENV{TEST_NGINX_CBLOG} if $ENV{TEST_NGINX_CBLOG} }

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    log_format cb escape=none '\$request_uri|\$request_body';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location ~ ^/b/[0-9a-f]+/callbacks/ {
            access_log \$TEST_NGINX_CBLOG cb;
            client_body_buffer_size 64k;
            rewrite ^ /sink break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT;
        }
        location = /sink { access_log off; return 204; }
        location ~ ^/[bf]/[0-9a-f]+/meta/actingweb/supported\$ {
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
        actingweb_change_log 3;
    }
    location = /status { actingweb_status; }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

sub put {
    my ($name, $value) = @_;
    my $port = main::wait_for_server();
    return HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/a/" . main::captured('a') . "/properties/$name",
        { headers => { Authorization => main::basic_auth('alice', 'pa'),
                       'Content-Type' => 'application/json' },
          content => $value })->{status};
}

sub status {
    my ($field) = @_;
    my $port = main::wait_for_server();
    my $s = HTTP::Tiny->new->get("http://127.0.0.1:$port/status")->{content};
    return $s =~ /"$field":(\d+)/ ? $1 : -1;
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



=== TEST 3: F subscribes high to everything
--- request
POST /a/{{a}}/subscriptions/{{f}}
{"target": "properties", "granularity": "high"}
--- more_headers
Authorization: Bearer {{sf}}
--- error_code: 201
--- capture
subf = json:subscriptionid



=== TEST 4: F never clears: at actingweb_change_log diffs its runs make no progress, and do not spin on Redis
--- init
for my $v (1 .. 5) {
    Test::More::is(main::put('x', $v), 204, "PUT $v");
}
for (1 .. 100) {
    last if main::status('callbacks_failed') >= 3;
    select undef, undef, undef, 0.1;
}
select undef, undef, undef, 0.5;
my $before = main::status('callbacks_redis_commands');
select undef, undef, undef, 1;
my $after = main::status('callbacks_redis_commands');
Test::More::cmp_ok($after - $before, '<', 200,
                   "no busy loop (Redis commands: $before, then $after)");
--- request
GET /a/{{a}}/subscriptions/{{f}}/{{subf}}
--- more_headers
Authorization: Bearer {{sf}}
--- response_body_json
{"...": 1, "sequence": 3, "data": [{"...": 1, "sequence": 1}, {"...": 1}, {"...": 1, "sequence": 3}]}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: B subscribes high to x
--- request
POST /a/{{a}}/subscriptions/{{b}}
{"target": "properties", "subtarget": "x", "granularity": "high"}
--- more_headers
Authorization: Bearer {{s}}
--- error_code: 201
--- capture
subb = json:subscriptionid



=== TEST 6: a diff a poll made gets one callback, also when a burst of other writes runs the actor's delivery many times (runs of one worker may overlap)
--- config
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
    }
    location = /status { actingweb_status; }
--- init
main::redis_cmd('XADD', "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('a')
                . '}:changes', '*', 'path', '["x"]', 'op', 'set', 'value', '8');
my $port = main::wait_for_server();
my $a = main::captured('a');
my $res = HTTP::Tiny->new->get(
    "http://127.0.0.1:$port/a/$a/subscriptions/" . main::captured('b') . '/'
    . main::captured('subb'),
    { headers => { Authorization => 'Bearer ' . main::captured('s') } });
Test::More::like($res->{content}, qr/"sequence":1,"timestamp":"[^"]+","data":8/,
                 'the poll made the diff');
require IO::Socket::INET;
my $auth = main::basic_auth('alice', 'pa');
for my $round (1 .. 3) {
    my @s;
    for my $i (1 .. 20) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die;
        push @s, $s;
    }
    for my $s (@s) {
        print $s "PUT /a/$a/properties/y HTTP/1.0\r\nAuthorization: $auth\r\n"
                 . "Content-Type: application/json\r\nContent-Length: 1\r\n\r\n1";
    }
    for my $s (@s) { local $/; my $r = <$s>; }
}
select undef, undef, undef, 1;
my @l = grep { /"sequence":1,/ } main::sink_lines(1);
Test::More::is(scalar @l, 1, 'one callback for the diff') or Test::More::diag(join "\n", @l);
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,/
--- no_error_log
[error]
[alert]
[crit]
