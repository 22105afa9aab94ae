# Callback delivery end to end, with a subscriber that is down for a
# while: A (this server) publishes, B (the real subscriber side, on a
# second server in the same nginx) subscribes "high".  B is down (503 for
# everything) while A writes six changes: their callbacks fail and A's
# circuit for B opens (for 1 s).  B comes back; one more write: its
# callback has a sequence gap, B fills it by polling A and ends with
# every change, each applied once, in order.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Socket::INET ();
use HTTP::Tiny ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_B_UP} ||= "/tmp/aw113-$$.up";
$ENV{TEST_NGINX_B_LOG} ||= "/tmp/aw113-$$.log";
unlink $ENV{TEST_NGINX_B_LOG};

# B is up while this file exists
open my $up, '>', $ENV{TEST_NGINX_B_UP} or die "$ENV{TEST_NGINX_B_UP}: $!";
close $up;

END { unlink grep { defined } @ENV{qw(TEST_NGINX_B_UP TEST_NGINX_B_LOG)} }

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    actingweb_callback_circuit 1s;
    log_format aw113 escape=none
        '\$status \$request_method \$uri \$http_content_encoding';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location /b/ {
            access_log \$TEST_NGINX_B_LOG aw113;
            if (!-f \$TEST_NGINX_B_UP) {
                return 503;
            }
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
        actingweb_auto_approve friend;
    }
    location = /status { actingweb_status; }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:bob:pb}}\n",
);

# B's applied stream as "sequence type data"
sub applied {
    my @out;
    my $k = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('b')
            . "}:applied";
    for my $e (main::redis_cmd('XRANGE', $k, '-', '+')) {
        my %f = @{ $e->[1] };
        push @out, "$f{sequence} $f{type} $f{data}";
    }
    return \@out;
}

# until B's stream has $n entries (10 s at most)
sub applied_n {
    my ($n) = @_;
    my $l;
    for (1 .. 100) {
        $l = applied();
        last if @$l >= $n;
        select undef, undef, undef, 0.1;
    }
    return $l;
}

# until /status matches (10 s at most)
sub status_like {
    my ($re) = @_;
    my $port = main::wait_for_server();
    for (1 .. 100) {
        return 1 if HTTP::Tiny->new->get("http://127.0.0.1:$port/status")
                    ->{content} =~ $re;
        select undef, undef, undef, 0.1;
    }
    return 0;
}

# B's log lines matching $re
sub b_log {
    my ($re) = @_;
    open my $fh, '<', $ENV{TEST_NGINX_B_LOG} or return ();
    return grep { /$re/ } map { chomp; $_ } <$fh>;
}

# a value whose callback is over 1 KB: the spec compresses those
our $big = 'x' x 1100;

# sets (or removes) "accept_encoding" in A's record of B's subscription
sub sub_encoding {
    my ($enc) = @_;
    my $k = "$ENV{TEST_NGINX_REDIS_PREFIX}:{" . main::captured('a') . "}:subs";
    my ($rec) = main::redis_cmd('HGET', $k, main::captured('sub'));
    Test::More::like($rec, qr/"accept_encoding":\["gzip"\]/,
        'B asked for gzip when it subscribed') unless defined $enc;
    $rec =~ s/,"accept_encoding":\[[^\]]*\]//;
    $rec =~ s/\}$/,"accept_encoding":$enc}/ if defined $enc;
    main::redis_cmd('HSET', $k, main::captured('sub'), $rec);
}

sub put {
    my ($name, $value) = @_;
    my $port = main::wait_for_server();
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/a/" . main::captured('a')
        . "/properties/$name",
        { headers => { Authorization => main::basic_auth('alice', 'pa'),
                       'Content-Type' => 'application/json' },
          content => $value });
    Test::More::is($res->{status}, 204, "PUT $name");
}

run_tests();

__DATA__

=== TEST 1: A (publisher) and B (subscriber)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}"]
--- more_headers
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "b = json:id"]



=== TEST 2: B asks A for a friend trust (approved) and subscribes high to A's properties
--- request eval
["POST /tob/b/{{b}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{a}}\", \"relationship\": \"friend\"}",
 "POST /tob/b/{{b}}/subscriptions\n{\"peerid\": \"{{a}}\", \"target\": \"properties\", \"granularity\": \"high\"}"]
--- error_code eval
[201, 204]
--- response_body_json eval
['{"...": 1, "approved": true, "peer_approved": true}', undef]
--- capture eval
["", "sub = header:Location ~ /([0-9a-f]{32})\$"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: B is up: the first change arrives by callback
--- init
# as a subscriber that did not send "accept_encoding" (the reference):
# A asks B's option tags
main::sub_encoding(undef);
main::put('k1', qq{"$main::big"});
my $l = main::applied_n(2);
Test::More::is_deeply($l, ['0 baseline {}', qq{1 diff {"k1":"$main::big"}}],
    'applied');
# B advertises callbackcompression: A asked once, then sent gzip
Test::More::is_deeply([main::b_log(qr{/meta/})],
    ["200 GET /b/" . main::captured('b') . "/meta/actingweb/supported "],
    'the tags, fetched once');
Test::More::is_deeply([main::b_log(qr{/callbacks/})],
    ["204 POST /b/" . main::captured('b') . "/callbacks/subscriptions/"
     . main::captured('a') . "/" . main::captured('sub') . " gzip"],
    'the callback: gzip');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,"callbacks_failed":0,/
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: B is down: six changes, their callbacks fail, the circuit opens; B is back: one more change, B fills the gap by polling A
--- init
unlink $ENV{TEST_NGINX_B_UP};
main::put("k$_", $_) for 2 .. 7;
main::status_like(qr/"callbacks_sent":0,"callbacks_failed":6,.*"outbox_depth":0/);
Test::More::is(scalar @{ main::applied() }, 2, 'nothing applied meanwhile');
open my $up, '>', $ENV{TEST_NGINX_B_UP} or die $!;
close $up;
# the circuit opened before the last failure was counted: 1 s ago at least
select undef, undef, undef, 1.5;
main::put('k8', '8');
my $l = main::applied_n(9);
Test::More::is_deeply($l,
    ['0 baseline {}', qq{1 diff {"k1":"$main::big"}},
     map({ "$_ diff {\"k$_\":$_}" } 2 .. 8)],
    'every change, once each, in order');
# under 1 KB: not compressed, whatever the peer takes
my @cb = main::b_log(qr{/callbacks/subscriptions/});
Test::More::unlike($cb[-1], qr/ gzip$/, 'a small callback is sent plain');
main::status_like(qr/"callbacks_sent":1,/);
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,"callbacks_failed":6,.*"circuit_opened":1,.*"outbox_depth":0/
--- error_log
actingweb: callbacks to peer {{b}}: circuit open for 1000 ms after 5 failures
actingweb: callbacks to peer {{b}}: circuit closed
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: B's copy has every change
--- request
GET /tob/b/{{b}}/callbacks/subscriptions/{{a}}/{{sub}}
--- error_code: 200
--- response_body_json eval
qq{{"...": 1, "subscriptionid": "{{sub}}", "sequence": 8, "data": {"k1": "$main::big", "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8}}}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: nothing applied twice later; A's diffs were cleared by B's poll and the callback
--- init
select undef, undef, undef, 0.5;
Test::More::is(scalar @{ main::applied() }, 9, 'still nine entries');
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub}}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 200
--- response_body_json
{"...": 1, "sequence": 8, "data": []}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: a subscription that asked for gzip gets its large callbacks compressed without A asking for B's option tags
--- init
main::sub_encoding('["gzip"]');
main::put('k9', qq{"$main::big"});
my $l = main::applied_n(10);
Test::More::is($l->[-1], qq{9 diff {"k9":"$main::big"}}, 'applied');
Test::More::is(scalar(() = main::b_log(qr{/meta/})), 1,
    'no new question for the tags (the last was in another worker)');
my @cb = main::b_log(qr{/callbacks/subscriptions/});
Test::More::like($cb[-1], qr/ gzip$/, 'gzip');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_sent":1,"callbacks_failed":0,/
--- no_error_log
[error]
[alert]
[crit]
