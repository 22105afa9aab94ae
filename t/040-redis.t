# Redis failures: down at start, lost and back (no reload), hung, slow,
# script cache flushed.  Each gives a fast JSON 503 and the worker
# recovers by itself.  Also: one worker keeps serving while an actor
# request waits on a Redis that does not answer.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

# The blocks race real timeouts against Redis and signals: under valgrind
# nginx is many times slower, so every timeout and delay is $Slow times
# longer there.
our $Slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 1;

# "300ms", "2s" or seconds, scaled by $Slow
sub slow {
    my ($t) = @_;
    my ($n, $unit) = $t =~ /^([\d.]+)(ms|s)?$/ or die "bad time $t";
    return $n * $Slow . ($unit // '');
}

use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();

# A Redis of our own, so that stopping it does not disturb other files.
our $Dir = File::Temp->newdir;
our $Port = free_port();
our $Mine = $$;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;

# A port that accepts connections (kernel backlog) and never answers:
# a hung Redis, and an upstream that makes /delay take its read timeout.
our $BlackHole = IO::Socket::INET->new(Listen => 64,
    LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_BLACKHOLE_PORT} = $BlackHole->sockport;

# A port nothing listens on.
$ENV{TEST_NGINX_CLOSED_PORT} = free_port();

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die "listen: $!";
    return $s->sockport;
}

# A second one with two databases only: "actingweb_redis_db 5" fails.
our $SmallPort = free_port();
$ENV{TEST_NGINX_SMALL_REDIS_PORT} = $SmallPort;

sub redis_start {
    my ($port, $name, @extra) = @_ ? @_ : ($Port, 'redis');
    system('redis-server', '--bind', '127.0.0.1', '--port', $port,
           '--save', '', '--appendonly', 'no', '--daemonize', 'yes',
           '--enable-debug-command', 'yes', @extra,
           '--dir', "$Dir", '--pidfile', "$Dir/$name.pid",
           '--logfile', "$Dir/$name.log") == 0 or die "redis-server failed";
    for (1 .. 100) {
        return if qx{redis-cli -p $port ping 2>/dev/null} =~ /PONG/;
        select undef, undef, undef, 0.05;
    }
    die "redis-server did not come up on $port\n";
}

our $Password;

sub redis_cli {
    local $ENV{REDISCLI_AUTH} = $Password if $Password;
    system('redis-cli', '-p', $Port, @_);
}

# run code in a child after a delay, without waiting for it
sub later {
    my ($delay, $code) = @_;
    my $pid = fork // die "fork: $!";
    return if $pid;
    select undef, undef, undef, $delay;
    $code->();
    POSIX::_exit(0);
}

# A Redis that records what it is sent, answers the connection set-up
# (+OK to anything else) and never answers EVALSHA: shows that a command
# really is in flight.
our $HungLog = "$Dir/hung.log";
our $HungPid;
{
    my $l = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "listen: $!";
    $ENV{TEST_NGINX_HUNG_PORT} = $l->sockport;
    $HungPid = fork // die "fork: $!";
    if ($HungPid == 0) {
        my $sel = IO::Select->new($l);
        my (%buf, %hung);
        while (my @ready = $sel->can_read) {
            for my $s (@ready) {
                if ($s == $l) { $sel->add($l->accept); next }
                my $n = sysread $s, $buf{$s}, 65536, length($buf{$s} // '');
                if (!$n) {
                    $sel->remove($s); delete $buf{$s}; delete $hung{$s};
                    close $s; next;
                }
                open my $fh, '>>', $HungLog or die $!;
                # whole commands (arrays of bulk strings) only
                while ($buf{$s} =~ /\A\*(\d+)\r\n/) {
                    my ($argc, $pos, @argv) = ($1, length $&);
                    for (1 .. $argc) {
                        last unless substr($buf{$s}, $pos) =~ /\A\$(\d+)\r\n/
                            && length($buf{$s}) >= $pos + length($&) + $1 + 2;
                        push @argv, substr $buf{$s}, $pos + length($&), $1;
                        $pos += length($&) + $1 + 2;
                    }
                    last if @argv < $argc;
                    substr($buf{$s}, 0, $pos) = '';
                    print {$fh} "@argv[0 .. ($argc > 1 ? 1 : 0)]\n";
                    # Redis answers in order: nothing after a hung EVAL
                    # (callback delivery's scans send commands too)
                    $hung{$s} = 1 if $argv[0] =~ /^EVAL/i;
                    syswrite $s, "+OK\r\n" unless $hung{$s};
                }
                close $fh;
            }
        }
        POSIX::_exit(0);
    }
}

# until the worker finished its connection set-up (its last command is
# the PING; nginx under valgrind takes seconds to get there)
sub worker_ready {
    ActingWeb::Test::wait_for_server();
    for (1 .. 100 * $Slow) {
        # PING ends the set-up; callback delivery may have sent more since
        return if grep { /\bcmd=/ && !/\bcmd=(?:client|auth|select|script|hello)/ }
                       split /\n/, qx{redis-cli -p $Port client list};
        select undef, undef, undef, 0.05;
    }
    die "the worker did not connect to Redis\n";
}

# true once Redis stops answering (inside DEBUG SLEEP)
sub redis_busy {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $port // $Port) or return 0;
    print {$s} "PING\r\n";
    return !IO::Select->new($s)->can_read(0.05);
}

redis_start();
redis_start($SmallPort, 'small', '--databases', '2');
END {
    return unless $$ == $Mine;
    kill 'KILL', $HungPid if $HungPid;
    redis_cli('shutdown', 'nosave') if $Port;
    system('redis-cli', '-p', $SmallPort, 'shutdown', 'nosave');
}

add_block_preprocessor(sub {
    my $block = shift;
    my $redis = $block->redis // "127.0.0.1:\$TEST_NGINX_OWN_REDIS_PORT";
    my $extra = $block->redis_extra // '';
    my $timeout = $block->redis_timeout // '300ms';
    chomp $redis;
    chomp $timeout;
    $timeout = slow($timeout);
    $block->set_value(timeout => slow($block->timeout // 3));
    $block->set_value(wait => slow($block->wait)) if defined $block->wait;
    $block->set_value(http_config => <<"CONF");
    actingweb_redis $redis;
    actingweb_redis_timeout $timeout;
    $extra
CONF
    my $delay = slow('1200ms');
    $block->set_value(config => <<"CONF");
    location /aw/ { actingweb; }
    location = /plain { return 200 "ok\n"; }
    location = /delay {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_BLACKHOLE_PORT;
        proxy_read_timeout $delay;
    }
CONF
});

run_tests();

__DATA__

=== TEST 1: Redis up: an actor is created
--- request
POST /aw/
--- error_code: 201



=== TEST 2: Redis down from the start: 503 JSON at once, no alert
--- redis: 127.0.0.1:$TEST_NGINX_CLOSED_PORT
--- request
POST /aw/
--- error_code: 503
--- response_body: {"error":{"code":503,"message":"storage unavailable, try again"}}
--- response_headers
Content-Type: application/json
--- error_log eval
qr/actingweb: redis connect to "127\.0\.0\.1:\d+" failed/
--- no_error_log
[alert]
[crit]



=== TEST 3: ... for every endpoint
--- redis: 127.0.0.1:$TEST_NGINX_CLOSED_PORT
--- request eval
["GET /aw/0123456789abcdef0123456789abcdef/meta",
 "GET /aw/0123456789abcdef0123456789abcdef/properties",
 "DELETE /aw/0123456789abcdef0123456789abcdef"]
--- error_code eval
[503, 503, 503]
--- response_body eval
[('{"error":{"code":503,"message":"storage unavailable, try again"}}') x 3]
--- no_error_log
[alert]
[crit]



=== TEST 4: Redis that never answers: 503 within actingweb_redis_timeout
--- redis: 127.0.0.1:$TEST_NGINX_BLACKHOLE_PORT
--- request
POST /aw/
--- error_code: 503
--- response_body_like: ^\{"error":\{"code":503,"message":"storage (did not answer in time|unavailable), try again"\}\}$
--- error_log eval
qr/actingweb: redis .*(did not answer in \d+ ms|connect timed out)/
--- no_error_log
[alert]
[crit]



=== TEST 5: one worker keeps serving while an actor request waits on Redis
--- redis: 127.0.0.1:$TEST_NGINX_HUNG_PORT
--- redis_timeout: 2s
--- init
# an actor request whose command has reached a Redis that never answers
unlink $main::HungLog;
my $port = ActingWeb::Test::wait_for_server();
main::later(0, sub {
    qx{curl -s -o /dev/null -X POST http://127.0.0.1:$port/aw/};
});
my $sent = '';
for (1 .. 100 * $main::Slow) {
    $sent = do { local (@ARGV, $/) = $main::HungLog; <> } // ''
        if -e $main::HungLog;
    last if $sent =~ /EVALSHA/;
    select undef, undef, undef, 0.02;
}
die "the actor request never reached Redis\n" unless $sent =~ /EVALSHA/;
--- request
GET /plain
--- response_body
ok
--- wait: 2
--- error_log eval
qr/actingweb: redis .*(did not answer in \d+ ms|connect timed out)/
--- no_error_log
[alert]
[crit]



=== TEST 6: Redis goes away and comes back: 503, then served again, no reload
--- init
main::redis_cli('shutdown', 'nosave');
main::later(main::slow(0.6), \&main::redis_start);
--- request eval
["POST /aw/", "GET /delay", "POST /aw/"]
--- error_code eval
[503, 504, 201]
--- response_body eval
['{"error":{"code":503,"message":"storage unavailable, try again"}}',
 qr/Gateway/, qr/"id":"[0-9a-f]{32}"/]
--- no_error_log
[alert]
[crit]



=== TEST 7: slow Redis (DEBUG SLEEP): 503 in time, the connection is reset and works again
--- init
main::worker_ready();
main::later(0, sub { main::redis_cli('debug', 'sleep', main::slow(0.8)) });
for (1 .. 50) { last if main::redis_busy(); select undef, undef, undef, 0.02 }
--- request eval
["POST /aw/", "GET /delay", "POST /aw/"]
--- error_code eval
[503, 504, 201]
--- response_body eval
# "unavailable" when a command of callback delivery's scan timed out first
[qr/^\{"error":\{"code":503,"message":"storage (did not answer in time|unavailable), try again"\}\}$/,
 qr/Gateway/, qr/"id":"[0-9a-f]{32}"/]
--- no_error_log
[alert]
[crit]



=== TEST 8: script cache flushed: NOSCRIPT falls back to EVAL
--- init
main::later(main::slow(0.3), sub { main::redis_cli('script', 'flush') });
--- request eval
["POST /aw/", "GET /delay", "POST /aw/"]
--- error_code eval
[201, 504, 201]
--- no_error_log
[alert]
[crit]



=== TEST 9: the NOSCRIPT fallback is logged (debug) on the request that hit it
--- init
main::worker_ready();
main::redis_cli('script', 'flush');
--- request
POST /aw/
--- error_code: 201
--- error_log
actingweb redis NOSCRIPT for "create", sending source



=== TEST 10: a non-zero actingweb_redis_db is selected on connect
--- redis_extra: actingweb_redis_db 3;
--- request
POST /aw/
--- error_code: 201
--- capture
db3 = json:id
--- init
main::redis_cli('-n', '3', 'flushdb');



=== TEST 11: ... the actor went to db 3, not db 0
--- redis_extra: actingweb_redis_db 3;
--- init
my $id = ActingWeb::Test::captured('db3');
my $n3 = qx{redis-cli -p $main::Port -n 3 --scan --pattern '*$id*'};
my $n0 = qx{redis-cli -p $main::Port -n 0 --scan --pattern '*$id*'};
die "not in db 3\n" unless $n3 =~ /actor/;
die "found in db 0\n" if $n0 =~ /actor/;
--- request
GET /plain
--- response_body
ok



=== TEST 12: Redis with a password: actingweb_redis_password authenticates
--- redis_extra: actingweb_redis_password s3kr1t;
--- init
# set after the worker connected: it is refused once, then reconnects
main::redis_cli('config', 'set', 'requirepass', 's3kr1t');
$main::Password = 's3kr1t';
main::redis_cli('client', 'kill', 'type', 'normal');
--- request eval
["GET /delay", "POST /aw/"]
--- error_code eval
[504, 201]
--- no_error_log
[alert]
[crit]



=== TEST 13: a wrong password: 503 JSON naming the cause, logged once, no alert
--- redis_extra: actingweb_redis_password wrong;
--- request
POST /aw/
--- error_code: 503
--- response_body_like: ^\{"error":\{"code":503,"message":"storage unavailable: Redis AUTH failed: WRONGPASS [^"]*"\}\}$
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/^\[error\] \d+#\d+: actingweb: redis "127\.0\.0\.1:\d+" AUTH failed: WRONGPASS [^\n]*\n\z/
--- no_error_log
[alert]
[crit]



=== TEST 14: a database Redis does not have: a request waits for SELECT, gets 503 with the cause
--- redis: 127.0.0.1:$TEST_NGINX_SMALL_REDIS_PORT
--- redis_extra: actingweb_redis_db 5;
--- redis_timeout: 10s
--- timeout: 20
--- init
# While Redis sleeps, the worker's next reconnect (back-off at most 1 s)
# hangs with SELECT unanswered: the request arrives then.  It used to be
# queued behind SELECT and run in db 0 when SELECT failed.
system('redis-cli', '-p', $main::SmallPort, 'flushall');
ActingWeb::Test::wait_for_server();
my $sleep = $main::Slow > 1 ? 6 : 3;
main::later(0, sub {
    system('redis-cli', '-p', $main::SmallPort, 'debug', 'sleep', $sleep);
});
for (1 .. 100) {
    last if main::redis_busy($main::SmallPort);
    select undef, undef, undef, 0.02;
}
select undef, undef, undef, $sleep / 2;
--- request
POST /aw/
--- error_code: 503
--- response_body: {"error":{"code":503,"message":"storage unavailable: Redis SELECT failed: ERR DB index is out of range"}}
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/^\[error\] \d+#\d+: actingweb: redis "127\.0\.0\.1:\d+" SELECT failed: ERR DB index is out of range\n\z/
--- no_error_log
[alert]
[crit]



=== TEST 15: ... and so do requests between reconnects
--- redis: 127.0.0.1:$TEST_NGINX_SMALL_REDIS_PORT
--- redis_extra: actingweb_redis_db 5;
--- redis_timeout: 10s
--- request eval
["POST /aw/", "POST /aw/", "GET /aw/0123456789abcdef0123456789abcdef/meta"]
--- error_code eval
[503, 503, 503]
--- response_body eval
[('{"error":{"code":503,"message":"storage unavailable: Redis SELECT failed: ERR DB index is out of range"}}') x 3]
--- no_error_log
[alert]
[crit]



=== TEST 16: ... and nothing was written to db 0 (or db 1)
--- redis: 127.0.0.1:$TEST_NGINX_SMALL_REDIS_PORT
--- init
my $keys = qx{redis-cli -p $main::SmallPort -n 0 dbsize}
         + qx{redis-cli -p $main::SmallPort -n 1 dbsize};
die "$keys keys written despite the failed SELECT\n" if $keys;
--- request
GET /plain
--- response_body
ok
