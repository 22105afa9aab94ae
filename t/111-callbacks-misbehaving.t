# Callback delivery to subscribers that misbehave: S answers after 3 s
# (the callback timeout is 500 ms), E answers 500 until a file exists,
# R answers 429 with Retry-After: 1, X answers 200 with a garbage body and
# H with a 5 MB body.  G, a good subscriber on the same server, gets every
# change in order all the same; E's circuit opens after 5 failures, stays
# open for actingweb_callback_circuit (1 s), and closes at the first
# probe that succeeds; R's opens for its Retry-After.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use IO::Socket::INET ();
use HTTP::Tiny ();


# a port that accepts and never answers
my $silent = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, ReuseAddr => 1)
    or die "no silent port: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $silent->sockport;
$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_CBLOG} ||= "/tmp/aw111-$$.log";
$ENV{TEST_NGINX_EOK} ||= "/tmp/aw111-$$.ok";
$ENV{TEST_NGINX_BIGDIR} ||= "/tmp/aw111-$$";
unlink $ENV{TEST_NGINX_CBLOG}, $ENV{TEST_NGINX_EOK};
mkdir $ENV{TEST_NGINX_BIGDIR};
{
    open my $fh, '>', "$ENV{TEST_NGINX_BIGDIR}/big" or die "big: $!";
    print $fh 'x' x (5 * 1024 * 1024);
    close $fh;
}

END {
    unlink $ENV{TEST_NGINX_CBLOG}, $ENV{TEST_NGINX_EOK},
           "$ENV{TEST_NGINX_BIGDIR}/big";
    rmdir $ENV{TEST_NGINX_BIGDIR};
}

my $peer = peer_location();

my $actors = join '', map { <<"CONF" } qw(g s e r x h);
        location /$_/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/$_;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
CONF

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    actingweb_callback_timeout 500ms;
    actingweb_callback_circuit 1s;
    log_format cb111 escape=none '\$request_uri|\$request_body';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
$actors
        location ~ ^/g/[0-9a-f]+/callbacks/ {
            access_log \$TEST_NGINX_CBLOG cb111;
            client_body_buffer_size 64k;
            rewrite ^ /sink break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT;
        }
        location = /sink { access_log off; return 204; }
        # the sink logs bodies: no callbackcompression, plain ones
        location ~ ^/g/[0-9a-f]+/meta/actingweb/supported\$ {
            return 200 "subscriptions,trust";
        }
        location ~ ^/s/[0-9a-f]+/callbacks/ {
            access_log off;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_SILENT_PORT;
            proxy_read_timeout 3s;
            error_log /dev/null crit;
        }
        location ~ ^/e/[0-9a-f]+/callbacks/ {
            access_log off;
            if (-f \$TEST_NGINX_EOK) { return 204; }
            return 500;
        }
        location ~ ^/r/[0-9a-f]+/callbacks/ {
            access_log off;
            add_header Retry-After 1 always;
            return 429;
        }
        location ~ ^/x/[0-9a-f]+/callbacks/ {
            access_log off;
            default_type application/json;
            return 200 "\\x00{{{not json";
        }
        location ~ ^/h/[0-9a-f]+/callbacks/ {
            access_log off;
            proxy_method GET;
            rewrite ^ /big break;
            proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT;
        }
        location = /big { access_log off; root \$TEST_NGINX_BIGDIR; }
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

# the worker's counters once $re matches them (20 s at most)
sub status_like {
    my ($re) = @_;
    my $c = '';
    for (1 .. 200) {
        $c = HTTP::Tiny->new->get("http://127.0.0.1:"
                                  . "$ENV{TEST_NGINX_SERVER_PORT}/status")
                 ->{content};
        last if $c =~ $re;
        select undef, undef, undef, 0.1;
    }
    return $c;
}

sub put {
    my ($n) = @_;
    main::wait_for_server();
    my $res = HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/"
        . main::captured('a') . "/properties/v",
        { headers => { Authorization => main::basic_auth('alice', 'pa'),
                       'Content-Type' => 'application/json' },
          content => $n });
    Test::More::is($res->{status}, 204, "PUT v $n");
}

run_tests();

__DATA__

=== TEST 1: A (publisher); G, S, E, R, X, H (subscribers)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 map { "POST /tob/$_/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}" }
     qw(g s e r x h)]
--- more_headers
--- error_code eval
[(201) x 7]
--- capture eval
["a = json:id", map { "$_ = json:id" } qw(g s e r x h)]



=== TEST 2: trusts and a high subscription to everything from each
--- request eval
[map { "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/$_/{{$_}}\", \"relationship\": \"friend\"}" } qw(g s e r x h)]
--- error_code eval
[(201) x 6]
--- capture eval
[map { "s$_ = json:secret" } qw(g s e r x h)]



=== TEST 3: the subscriptions
--- request eval
[map { "POST /a/{{a}}/subscriptions/{{$_}}\n{\"target\": \"properties\", \"granularity\": \"high\"}" } qw(g s e r x h)]
--- more_headers eval
[map { "Authorization: Bearer {{s$_}}" } qw(g s e r x h)]
--- error_code eval
[(201) x 6]



=== TEST 4: G gets every change, in order, while the others misbehave; E's circuit opens, then closes when E answers again; R's opens for its Retry-After
--- init
my ($aid, $gid) = map { main::captured($_) } qw(a g);
main::put($_) for 1 .. 6;
my @l = main::sink_lines(6, 200);
Test::More::is(scalar @l, 6, 'G got six callbacks') or Test::More::diag(join "\n", @l);
my @seq = map { /"sequence":(\d+)/ ? $1 : 0 } @l;
Test::More::is_deeply([sort { $a <=> $b } @seq], [1 .. 6], 'each change once');
Test::More::like($l[0], qr{^/g/$gid/callbacks/subscriptions/$aid/[0-9a-f]+\|\{"id":"$aid",.*"data":\{"v":}, 'a high callback');
# E: 5 failures open its circuit (S's time out: theirs too); X and H
# answered 200
my $c = main::status_like(qr/"outbox_depth":0/);
Test::More::like($c, qr/"callbacks_sent":18,/, 'G, X and H: 18 sent');
# (at least 3: a circuit whose 1 s ran out meanwhile may have opened
# again after a failed probe, depending on timing)
Test::More::like($c, qr/"circuit_opened":[3-9],/, 'E, S and R opened');
# E answers again; after its second (1 s) the next change is a probe
open my $fh, '>', $ENV{TEST_NGINX_EOK} or die;
close $fh;
select undef, undef, undef, 1.2;
main::put(7);
Test::More::is(scalar main::sink_lines(7, 200), 7, 'G got the seventh');
# probes: E's succeeds (with G, X and H: 4 more sent); S's and R's fail
# and open their circuits again
$c = main::status_like(qr/"callbacks_sent":22,.*"outbox_depth":0/);
Test::More::like($c, qr/"callbacks_sent":22,/, 'and E its probe: closed');
--- request
GET /status
--- response_body_like eval
qr/"callbacks_failed":\d+,"callbacks_retried":0,"callbacks_dropped":0,"callbacks_downgraded":0,"callbacks_redis_commands":\d+,"circuit_opened":[5-9],"circuits_open":\d+,"circuits_half_open":\d+,"outbox_depth":0/
--- error_log eval
["actingweb: callbacks to peer {{e}}: circuit open for 1000 ms after 5 failures",
 "actingweb: callbacks to peer {{s}}: circuit open for 1000 ms after 5 failures",
 "actingweb: callbacks to peer {{r}}: circuit open for 1000 ms after 1 failures",
 "actingweb: callbacks to peer {{e}}: circuit closed"]
--- no_error_log
[error]
[alert]
[crit]
