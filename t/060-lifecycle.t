# Worker lifecycle with a master process: graceful reload (HUP) with Redis
# up, with Redis down, and with a Redis command in flight.  Old workers
# must exit cleanly: no "[alert] ... open socket #N left in connection",
# and new workers connect by themselves.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

# The blocks race real timeouts against Redis and signals: under valgrind
# nginx is many times slower, so timeouts and waits are $Slow times longer.
our $Slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 1;

use IO::Socket::INET ();
use POSIX ();

master_on();
workers(2);

our $BlackHole = IO::Socket::INET->new(Listen => 64,
    LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1)
    or die "listen: $!";
$ENV{TEST_NGINX_BLACKHOLE_PORT} = $BlackHole->sockport;
{
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die "listen: $!";
    $ENV{TEST_NGINX_CLOSED_PORT} = $s->sockport;
}

sub servroot {
    my $root = eval { Test::Nginx::Socket::server_root() };
    return $root // $ENV{TEST_NGINX_SERVER_ROOT} // 't/servroot';
}

sub log_text {
    open my $fh, '<', servroot() . '/logs/error.log' or return '';
    local $/;
    return <$fh>;
}

# HUP the master and wait until every old worker has exited
sub reload_and_wait {
    my ($old_workers) = @_;
    my $pidfile = servroot() . '/logs/nginx.pid';
    # nginx listens before it writes the pid file (slowly under valgrind)
    ActingWeb::Test::wait_for_server();
    for (1 .. 100 * $Slow) {
        last if -s $pidfile;
        select undef, undef, undef, 0.05;
    }
    open my $fh, '<', $pidfile or die "no pid file $pidfile: $!";
    chomp(my $master = <$fh>);
    my $before = () = log_text() =~ /worker process \d+ exited/g;
    kill 'HUP', $master or die "HUP $master: $!";
    for (1 .. 600 * $Slow) {
        my $now = () = log_text() =~ /worker process \d+ exited/g;
        return if $now - $before >= $old_workers;
        select undef, undef, undef, 0.05;
    }
    die "old workers did not exit after HUP\n";
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(timeout => 3 * $Slow);
    if (defined(my $http = $block->http_config)) {
        $http =~ s/actingweb_redis_timeout (\d+)ms/
                   'actingweb_redis_timeout ' . $1 * $Slow . 'ms'/e;
        $block->set_value(http_config => $http);
    }
    $block->set_value(config => <<'CONF');
    location /aw/ { actingweb; }
    location = /plain { return 200 "ok\n"; }
CONF
});

run_tests();

__DATA__

=== TEST 1: HUP with Redis up: old workers exit cleanly, new ones serve
--- init
main::reload_and_wait(2);
--- request
POST /aw/
--- error_code: 201
--- no_error_log
[alert]
[crit]
[emerg]
open socket



=== TEST 2: HUP with Redis down: no alert, requests still get JSON 503
--- http_config
    actingweb_redis 127.0.0.1:$TEST_NGINX_CLOSED_PORT;
--- init
main::reload_and_wait(2);
--- request
POST /aw/
--- error_code: 503
--- response_body: {"error":{"code":503,"message":"storage unavailable, try again"}}
--- no_error_log
[alert]
[crit]
open socket



=== TEST 3: HUP while a request waits on Redis: the old worker finishes it
--- http_config
    actingweb_redis 127.0.0.1:$TEST_NGINX_BLACKHOLE_PORT;
    actingweb_redis_timeout 500ms;
--- init
my $port = ActingWeb::Test::wait_for_server();
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $out = qx{curl -s -X POST http://127.0.0.1:$port/aw/};
    open my $fh, '>', main::servroot() . '/html/inflight.txt' or die $!;
    print {$fh} $out;
    close $fh;
    POSIX::_exit(0);
}
select undef, undef, undef, 0.1 * $main::Slow;
main::reload_and_wait(2);
waitpid $pid, 0;
--- request
GET /inflight.txt
--- response_body_like: ^\{"error":\{"code":503,"message":"storage (did not answer in time|unavailable), try again"\}\}$
--- no_error_log
[alert]
[crit]
open socket
--- error_log eval
qr/actingweb: redis .*(did not answer in \d+ ms|connect timed out)/
