# Two nginx instances on one Redis (same prefix, same actingweb_base_url):
# writes to either make callbacks, and each callback arrives once.  The
# test's nginx is instance 1 and the subscriber B; instance 2 is started
# by TEST 4 with its own configuration and stopped by TEST 5.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();
use IO::Socket::INET ();

$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_A2_PORT} ||= free_port();
$ENV{TEST_NGINX_CBLOG} ||= "/tmp/aw112-$$.log";
$ENV{TEST_NGINX_B_SLOW} ||= "/tmp/aw112-$$.slow";
unlink $ENV{TEST_NGINX_B_SLOW};

# a port that takes connections and never answers: B's slow sink (TEST 8)
our $Silent = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                    LocalPort => 0, ReuseAddr => 1)
    or die "silent listen: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $Silent->sockport;
our $Dir = "/tmp/aw112-$$";
unlink $ENV{TEST_NGINX_CBLOG};

END {
    main::stop_second();
    unlink $ENV{TEST_NGINX_CBLOG}, $ENV{TEST_NGINX_B_SLOW};
    system 'rm', '-rf', $Dir if -d $Dir;
}

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    log_format cb112 escape=none '\$request_uri|\$request_body';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location ~ ^/b/[0-9a-f]+/callbacks/ {
            access_log \$TEST_NGINX_CBLOG cb112;
            client_body_buffer_size 64k;
            # TEST 8: each callback takes 500 ms
            if (-f \$TEST_NGINX_B_SLOW) {
                rewrite ^ /slow break;
            }
            rewrite ^ /sink break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT;
        }
        location = /sink { access_log off; return 204; }
        location = /slow {
            access_log off;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_SILENT_PORT;
            proxy_read_timeout 500ms;
            error_page 504 = \@ok;
            error_log /dev/null crit;
        }
        location \@ok { return 204; }
        # the sink logs bodies: no callbackcompression, plain ones
        location ~ ^/b/[0-9a-f]+/meta/actingweb/supported\$ {
            return 200 "subscriptions,trust";
        }
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
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
    location = /status { actingweb_status; }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

# instance 2: the same /a/ location and public URL, its own port
sub start_second {
    my ($extra) = @_;
    $extra //= '';
    start_instance($Dir, $ENV{TEST_NGINX_A2_PORT}, <<"CONF");
$extra
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_A2_PORT};
        location /a/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a;
            actingweb_peer_allow 127.0.0.1;
        }
        location = /status { actingweb_status; }
    }
CONF
}

sub stop_second { stop_instance($Dir) }

# until the 2xx diffs of B's subscription are cleared (10 s at most): the
# clears of an old worker may come after its last callback's answer
sub cleared {
    my $url = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/"
              . main::captured('a') . '/subscriptions/' . main::captured('b')
              . '/' . main::captured('sub');
    for (1 .. 100) {
        last if HTTP::Tiny->new->get($url,
                    { headers => { Authorization => 'Bearer '
                                                    . main::captured('s') } })
                    ->{content} =~ /"data":\[\]/;
        select undef, undef, undef, 0.1;
    }
}

# the counters of instance $port once pending is 0
sub settled {
    my ($port) = @_;
    my $c = '';
    for (1 .. 100) {
        $c = HTTP::Tiny->new->get("http://127.0.0.1:$port/status")->{content};
        last if $c =~ /"outbox_depth":0/;
        select undef, undef, undef, 0.1;
    }
    return $c;
}

# Under valgrind TESTs 5-8 are skipped: they race a plain instance 2
# against the test's nginx, many times slower there.
run_tests();

__DATA__

=== TEST 1: A (publisher), B (subscriber)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}"]
--- more_headers
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "b = json:id"]



=== TEST 2: trust A-B
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}", "relationship": "friend"}
--- error_code: 201
--- capture
s = json:secret



=== TEST 3: B subscribes high to everything
--- request
POST /a/{{a}}/subscriptions/{{b}}
{"target": "properties", "granularity": "high"}
--- more_headers
Authorization: Bearer {{s}}
--- error_code: 201
--- capture
sub = json:subscriptionid



=== TEST 4: 20 writes, to instance 1 and 2 in turn: 20 callbacks, each sequence once
--- init
main::wait_for_server();
main::start_second();
my $aid = main::captured("a");
my $h = { Authorization => main::basic_auth('alice', 'pa'),
          'Content-Type' => 'application/json' };
for my $i (1 .. 20) {
    my $port = $i % 2 ? $ENV{TEST_NGINX_SERVER_PORT} : $ENV{TEST_NGINX_A2_PORT};
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/a/$aid/properties/v",
        { headers => $h, content => $i });
    Test::More::is($res->{status}, 204, "PUT $i to port $port");
}
main::sink_lines(20);
my $c1 = main::settled($ENV{TEST_NGINX_SERVER_PORT});
my $c2 = main::settled($ENV{TEST_NGINX_A2_PORT});
# anything sent twice would be in the log by now
select undef, undef, undef, 0.5;
my @l = main::sink_lines(20);
my @seq = sort { $a <=> $b } map { /"sequence":(\d+)/ ? $1 : 0 } @l;
Test::More::is_deeply(\@seq, [1 .. 20], 'each sequence once')
    or Test::More::diag("@seq");
my ($s1) = $c1 =~ /"callbacks_sent":(\d+)/;
my ($s2) = $c2 =~ /"callbacks_sent":(\d+)/;
Test::More::is($s1 + $s2, 20, "20 sent in all ($s1 + $s2)");
# (which instance wins a claim is timing: slowed down by the sanitizers,
# the test's nginx may win them all)
Test::More::ok($s2 > 0, 'instance 2 delivered some')
    unless $ENV{TEST_NGINX_SANITIZE};
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub}}
--- more_headers
Authorization: Bearer {{s}}
--- response_body_json
{"...": 1, "sequence": 20, "data": []}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: instance 2 stops cleanly, with nothing wrong in its log
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND}
--- init
main::stop_second();
my $log = do { local (@ARGV, $/) = "$main::Dir/logs/error.log"; <> } // '';
Test::More::unlike($log, qr/\[(error|alert|crit|emerg)\]/, 'instance 2 log');
--- request
GET /status
--- response_body_like: "redis_up":true
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: reloads of instance 2 while it delivers (its old worker finishes the calls in flight, the new one takes the rest): each callback still arrives once
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND}
--- init
main::wait_for_server();
main::start_second();
my $aid = main::captured("a");
my $h = { Authorization => main::basic_auth('alice', 'pa'),
          'Content-Type' => 'application/json' };
open my $fh, '<', "$main::Dir/nginx.pid" or die $!;
my $pid = <$fh>;
chomp $pid;
for my $i (21 .. 80) {
    kill 'HUP', $pid if $i % 20 == 0;
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$ENV{TEST_NGINX_A2_PORT}/a/$aid/properties/v",
        { headers => $h, content => $i });
    Test::More::is($res->{status}, 204, "PUT $i");
}
main::sink_lines(80);
main::settled($ENV{TEST_NGINX_A2_PORT});
main::settled($ENV{TEST_NGINX_SERVER_PORT});
select undef, undef, undef, 0.5;
main::cleared();
my @l = main::sink_lines(80);
my @seq = sort { $a <=> $b } map { /"sequence":(\d+)/ ? $1 : 0 } @l;
Test::More::is_deeply(\@seq, [1 .. 80], 'each sequence once')
    or Test::More::diag("@seq");
main::stop_second();
my $log = do { local (@ARGV, $/) = "$main::Dir/logs/error.log"; <> } // '';
Test::More::unlike($log, qr/\[(error|alert|crit|emerg)\]/, 'instance 2 log');
Test::More::like($log, qr/signal 1 \(SIGHUP\) received/, 'reloaded');
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub}}
--- more_headers
Authorization: Bearer {{s}}
--- response_body_like: "sequence":80,
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: a claim lease held by another live worker holds the actor's callbacks; once it has expired (its worker died), the next write's claim takes it over and both changes go
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND}
--- init
main::wait_for_server();
my $aid = main::captured("a");
my $k = "$ENV{TEST_NGINX_REDIS_PREFIX}:{$aid}:actor";
my $h = { Authorization => main::basic_auth('alice', 'pa'),
          'Content-Type' => 'application/json' };
my $put = sub {
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/$aid/properties/v",
        { headers => $h, content => $_[0] });
    Test::More::is($res->{status}, 204, "PUT $_[0]");
};
main::redis_cmd('HSET', $k, 'cblease',
                'someone ' . int((time + 600) * 1000));
$put->(81);
select undef, undef, undef, 1;
Test::More::is(scalar(my @l = main::sink_lines(81)), 80, 'held by the lease');
main::redis_cmd('HSET', $k, 'cblease', 'someone ' . int((time - 1) * 1000));
$put->(82);
my @seq = sort { $a <=> $b }
          map { /"sequence":(\d+)/ ? $1 : 0 } main::sink_lines(82);
Test::More::is_deeply([ @seq[80, 81] ], [81, 82], 'both, once');
Test::More::is(scalar @seq, 82, 'nothing twice');
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub}}
--- more_headers
Authorization: Bearer {{s}}
--- response_body_like: "sequence":82,
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: a graceful stop while a slow subscriber has callbacks queued: the old worker sends for at most the callback timeout, then drops the rest, and exits
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND}
--- init
main::wait_for_server();
main::start_second("    actingweb_callback_concurrency 1;\n"
                   . "    actingweb_callback_timeout 2s;");
open my $slow, '>', $ENV{TEST_NGINX_B_SLOW} or die $!;
close $slow;
my $aid = main::captured("a");
my $k = "$ENV{TEST_NGINX_REDIS_PREFIX}:{$aid}:actor";
my $h = { Authorization => main::basic_auth('alice', 'pa'),
          'Content-Type' => 'application/json' };
# a foreign lease holds the first nine (no instance claims them); once it
# has expired, the last write's claim in instance 2 takes all ten at once
main::redis_cmd('HSET', $k, 'cblease',
                'someone ' . int((time + 600) * 1000));
for my $i (83 .. 92) {
    main::redis_cmd('HSET', $k, 'cblease', 'someone ' . int((time - 1) * 1000))
        if $i == 92;
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$ENV{TEST_NGINX_A2_PORT}/a/$aid/properties/v",
        { headers => $h, content => $i });
    Test::More::is($res->{status}, 204, "PUT $i");
}
select undef, undef, undef, 0.3;
open my $fh, '<', "$main::Dir/nginx.pid" or die $!;
my $pid = <$fh>;
chomp $pid;
main::stop_second();
Test::More::ok(!kill(0, $pid), 'instance 2 exited');
unlink $ENV{TEST_NGINX_B_SLOW};
my $log = do { local (@ARGV, $/) = "$main::Dir/logs/error.log"; <> } // '';
Test::More::like($log, qr/actingweb: exiting: \d+ callbacks not sent/,
                 'the rest dropped') or Test::More::diag($log);
Test::More::unlike($log, qr/\[(error|alert|crit|emerg)\]/, 'instance 2 log');
--- request
GET /a/{{a}}/subscriptions/{{b}}/{{sub}}
--- more_headers
Authorization: Bearer {{s}}
--- response_body_like: "sequence":92,
--- no_error_log
[error]
[alert]
[crit]
