#!/usr/bin/env perl
#
# bench.pl MODULE.so NGINX_BINARY [GROUP...]  -- run by `./build.sh bench`
#
# Measures ngx_http_actingweb_module with wrk against a plain
# `return 200` location on the same nginx, then again with Redis behind
# a latency proxy, to show that a worker does not wait on Redis (group
# "http").  Group "trust": trust handshakes between actors of one server,
# one client against many.  Group "slowpeer": property reads while trust
# initiations wait on a peer that takes 2 s per answer.  Group "peerops":
# fan-out to 10, 100 and 1000 peers that take 100 ms each, and AwProxy
# against a direct peer read.  Group "subs": property writes with 0, 10,
# 100 and 1000 subscriptions on the actor, and polls of a subscription
# holding 1000 diffs.  Group "delivery": callbacks to 10 subscribers that
# take 200 ms, to 1000 fast ones, the delivery rate, and
# PUTs while delivery runs.  Group "rss": the worker's memory before,
# during and after 1,000,000 mixed requests.  No GROUP: all.
# See docs/performance.md.
#
# Environment:
#   BENCH_SECONDS=10      duration of each wrk run
#   BENCH_DELAY_MS=5      latency the proxy adds in EACH direction
#   BENCH_PROXY_CONNS=256 wrk connections for the second round through
#                         the proxy (the first uses 64, like the others)
#   BENCH_FLOOD_RATE=2000 wrong-passphrase requests per second sent
#                         during the flood row
#   BENCH_TRUST_HANDSHAKES=2000 handshakes with BENCH_TRUST_CLIENTS
#   BENCH_TRUST_SERIAL=200 handshakes with one client, before those
#   BENCH_TRUST_CLIENTS=16 concurrent clients of the handshake run
#   BENCH_TRUST_ACTORS=64 actors on each side of the handshakes
#   BENCH_SLOW_MS=2000    time the slow peer takes per answer
#   BENCH_SLOW_PENDING=20 trust initiations kept waiting on it
#   BENCH_SLOW_CONNS=16   wrk connections of the slow-peer rows
#   BENCH_SLOW_ROUNDS=3   rounds of (without, with) slow-peer runs
#   BENCH_FANOUT_DELAY_MS=100 time each peer's resource takes (peerops)
#   BENCH_FANOUT_RUNS=20  fan-outs per size and concurrency
#   BENCH_DELIVERY_SLOW_MS=200 time the slow subscribers take per callback
#   BENCH_DELIVERY_PEERS=10 slow subscribers
#   BENCH_DELIVERY_SUBS=1000 fast subscribers (one subscription each)
#   BENCH_DELIVERY_RUNS=10 changes timed per scenario
#   BENCH_DELIVERY_WRITES=20 changes at once for the delivery rate
#   BENCH_DELIVERY_BURSTS=3  times that is timed (callbacks over the sum)
#   BENCH_FANOUT_SERIAL=10 runs of the serial calls to 10 peers
#   BENCH_FANOUT_MAX=1000 the largest fan-out (peers on B)
#   BENCH_SUBS_MAX=1000   the most subscriptions on one actor (subs)
#   BENCH_SUBS_ROUNDS=3   rounds of PUT runs over the sizes (subs)
#   BENCH_SUBS_DIFFS=1000 diffs the polled subscription holds (subs)
#   BENCH_RSS_REQUESTS=1000000 mixed requests of the rss group
#   BENCH_RSS_SLICES=10   wrk runs they are split in, memory read after each
#   BENCH_KEEP=1          keep the temp dir (logs, configs) afterwards

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(sha256);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP qw(decode_json encode_json);
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

use lib dirname(abs_path(__FILE__));
use LatencyProxy;

my $SECONDS     = env_int('BENCH_SECONDS',     10);
my $DELAY_MS    = env_int('BENCH_DELAY_MS',    5);
my $PROXY_CONNS = env_int('BENCH_PROXY_CONNS', 256);
my $CONNS       = 64;
my $FLOOD_RATE  = env_int('BENCH_FLOOD_RATE', 2000);
my $THREADS     = 2;

my $TRUST_HS      = env_int('BENCH_TRUST_HANDSHAKES', 2000);
my $TRUST_SERIAL  = env_int('BENCH_TRUST_SERIAL',     200);
my $TRUST_CLIENTS = env_int('BENCH_TRUST_CLIENTS',    16);
my $TRUST_ACTORS  = env_int('BENCH_TRUST_ACTORS',     64);
my $SLOW_MS       = env_int('BENCH_SLOW_MS',       2000);
my $SLOW_PENDING  = env_int('BENCH_SLOW_PENDING',  20);
my $SLOW_CONNS    = env_int('BENCH_SLOW_CONNS',    16);
my $SLOW_ROUNDS   = env_int('BENCH_SLOW_ROUNDS',   3);
my $FANOUT_DELAY_MS = env_int('BENCH_FANOUT_DELAY_MS', 100);
my $FANOUT_RUNS     = env_int('BENCH_FANOUT_RUNS',     20);
my $FANOUT_SERIAL   = env_int('BENCH_FANOUT_SERIAL',   10);
my $FANOUT_MAX      = env_int('BENCH_FANOUT_MAX',      1000);
my $SUBS_MAX    = env_int('BENCH_SUBS_MAX',    1000);
my $SUBS_ROUNDS = env_int('BENCH_SUBS_ROUNDS', 3);
my $SUBS_DIFFS  = env_int('BENCH_SUBS_DIFFS',  1000);

my $DELIVERY_SLOW_MS = env_int('BENCH_DELIVERY_SLOW_MS', 200);
my $DELIVERY_PEERS   = env_int('BENCH_DELIVERY_PEERS',   10);
my $DELIVERY_SUBS    = env_int('BENCH_DELIVERY_SUBS',    1000);
my $DELIVERY_RUNS    = env_int('BENCH_DELIVERY_RUNS',    10);
my $DELIVERY_WRITES  = env_int('BENCH_DELIVERY_WRITES',  20);
my $DELIVERY_BURSTS  = env_int('BENCH_DELIVERY_BURSTS',  3);

my $RSS_REQUESTS = env_int('BENCH_RSS_REQUESTS', 1000000);
my $RSS_SLICES   = env_int('BENCH_RSS_SLICES',   10);

my @GROUPS = qw(http trust slowpeer peerops subs delivery rss);

my $CREATOR    = 'bench';
my $PASSPHRASE = 'benchpass';
my $AUTH       = 'Basic ' . encode_base64("$CREATOR:$PASSPHRASE", '');

# the exact command, for the report (build.sh execs us, so this is it)
my $COMMAND = join ' ',
    (map { "$_=$ENV{$_}" } grep { defined $ENV{$_} }
        qw(BENCH_SECONDS BENCH_DELAY_MS BENCH_PROXY_CONNS
           BENCH_TRUST_HANDSHAKES BENCH_TRUST_SERIAL BENCH_TRUST_CLIENTS
           BENCH_TRUST_ACTORS BENCH_SLOW_MS BENCH_SLOW_PENDING
           BENCH_SLOW_CONNS BENCH_SLOW_ROUNDS BENCH_FANOUT_DELAY_MS
           BENCH_FANOUT_RUNS BENCH_FANOUT_SERIAL BENCH_FANOUT_MAX
           BENCH_SUBS_MAX BENCH_SUBS_ROUNDS BENCH_SUBS_DIFFS
           BENCH_DELIVERY_SLOW_MS BENCH_DELIVERY_PEERS BENCH_DELIVERY_SUBS
           BENCH_DELIVERY_RUNS BENCH_DELIVERY_WRITES BENCH_DELIVERY_BURSTS
           BENCH_RSS_REQUESTS BENCH_RSS_SLICES)),
    'perl', $0, @ARGV;

my $MAIN_PID = $$;
# the machine is shared: what else ran on it when we started
my ($LOADAVG) = (do { local @ARGV = '/proc/loadavg'; <> } // '?')
    =~ /^(\S+ \S+ \S+)/;
my %PROCS;          # pid => name, everything we started and must stop
my %STATUS;         # pid => wait status, once reaped
my $TMP;            # the temp dir
my $INTERRUPTED;    # the name of the signal that stopped us
my %SIGNUM = (HUP => 1, INT => 2, TERM => 15);

# ---------------------------------------------------------------------------

sub usage {
    die "usage: $0 /abs/path/ngx_http_actingweb_module.so /usr/sbin/nginx "
        . "[@GROUPS]\n"
        . "(normally run as ./build.sh bench [GROUP...]; BENCH_SECONDS=N "
        . "to shorten)\n";
}

sub env_int {
    my ($name, $default) = @_;
    my $v = $ENV{$name} // return $default;
    $v =~ /^[1-9][0-9]*$/ or die "$name must be a positive integer\n";
    return $v;
}

sub uniq {
    my %seen;
    return grep { !$seen{$_}++ } @_;
}

sub say_ { print STDERR "bench: @_\n" }

# A free loopback port.  There is a window between closing this socket and
# the server binding it, harmless on a machine that is not busy binding.
sub free_port {
    my $s = IO::Socket::INET->new(
        Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
        ReuseAddr => 1,
    ) or die "no free port: $!\n";
    return $s->sockport;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!\n";
    print $fh $text;
    close $fh or die "$file: $!\n";
}

sub tail {
    my ($file, $n) = @_;
    my @l = split /\n/, slurp($file);
    splice @l, 0, @l - $n if @l > $n;
    return join '', map { "    $_\n" } @l;
}

# first line of `cmd` (stdout and stderr), for version strings
sub capture_line {
    my @cmd = @_;
    my $pid = open my $fh, '-|';
    die "fork: $!\n" unless defined $pid;
    if (!$pid) {
        $SIG{$_} = "DEFAULT" for qw(INT TERM HUP PIPE);
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    my $line = <$fh> // '';
    1 while <$fh>;
    close $fh;
    chomp $line;
    return $line;
}

# ---------------------------------------------------------------------------
# processes

# fork + exec, output to $log; the pid is remembered for cleanup
sub spawn {
    my ($name, $log, @cmd) = @_;
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $PROCS{$pid} = $name;
    return $pid;
}

sub alive {
    my ($pid) = @_;
    return 0 unless $PROCS{$pid};
    return 1 if waitpid($pid, WNOHANG) == 0;
    $STATUS{$pid} = $?;
    delete $PROCS{$pid};
    return 0;
}

# children of $pid (nginx workers): found in /proc, read before the master
# is killed so that they can be killed too if it comes to that
sub children_of {
    my ($pid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat);
        push @kids, $1 if $s =~ /^(\d+) \(.*\) \S (\d+)/s && $2 == $pid;
    }
    return @kids;
}

# polite signal, a grace period, then KILL
sub stop {
    my ($pid, $sig, $grace) = @_;
    return unless alive($pid);
    my @kids = children_of($pid);
    kill $sig, $pid;
    my $until = time + $grace;
    sleep 0.05 while alive($pid) && time < $until;
    if (alive($pid)) {
        say_ "$PROCS{$pid} ($pid) ignored $sig, sending KILL";
        kill 'KILL', $pid;
        waitpid $pid, 0;
        delete $PROCS{$pid};
    }
    kill 'KILL', grep { kill 0, $_ } @kids;
}

# nginx first (it talks to the others), then wrk, the proxy, Redis
sub cleanup {
    return unless $$ == $MAIN_PID;
    local ($?, $!, $@);    # keep the exit status END is about to use
    local @SIG{qw(INT TERM HUP)} = ('IGNORE') x 3;    # finish the job
    my %rank = (wrk => 1, 'latency-proxy' => 2, 'redis-server' => 3);
    for my $pid (sort { ($rank{ $PROCS{$a} } // 0)
                        <=> ($rank{ $PROCS{$b} } // 0) } keys %PROCS) {
        my $name = $PROCS{$pid} // next;
        stop($pid, $name =~ /^nginx/ ? 'QUIT' : 'TERM',
            $name =~ /^nginx/ ? 10 : 5);
    }
}

END {
    if (defined $MAIN_PID && $$ == $MAIN_PID) {
        cleanup();
        if ($TMP && -d $TMP) {
            if ($ENV{BENCH_KEEP}) {
                say_ "kept $TMP";
            } else {
                remove_tree($TMP);
            }
        }
        $? = 128 + $SIGNUM{$INTERRUPTED} if $INTERRUPTED;    # as a shell
    }
}

# Ctrl-C and friends: die, so that END stops what we started.  The flag
# makes the per-scenario eval re-throw instead of carrying on.
for my $sig (keys %SIGNUM) {
    $SIG{$sig} = sub { $INTERRUPTED = $sig; die "interrupted by SIG$sig\n" };
}
$SIG{PIPE} = 'IGNORE';

# ---------------------------------------------------------------------------
# Redis: a minimal RESP client, enough for PING and INFO

sub redis_connect {
    my ($port) = @_;
    return IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2);
}

sub redis_call {
    my ($s, @args) = @_;
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    my ($line, $reply);
    {
        # a stuck Redis (or proxy) must not hang the benchmark
        local $SIG{ALRM} = sub { die "redis did not answer @args\n" };
        alarm 5;
        print $s $req;
        $line = <$s>;
        if (defined $line && $line =~ /^\$(\d+)/) {
            read $s, $reply, $1 + 2;
            substr($reply, -2, 2, '');
        }
        alarm 0;
    }
    defined $line or die "redis closed the connection\n";
    if (!defined $reply && $line !~ /^\$-1/) {
        ($reply = $line) =~ s/^.|\r\n$//g;
        die "redis: $reply\n" if $line =~ /^-/;
    }
    return $reply;
}

sub redis_commands_processed {
    my ($port) = @_;
    my $s = redis_connect($port) or return;
    my $info = redis_call($s, 'INFO', 'stats');
    return $info =~ /total_commands_processed:(\d+)/ ? $1 : undef;
}

sub start_redis {
    my $dir = "$TMP/redis";
    mkdir $dir or die "$dir: $!\n";
    my $port = free_port();
    my $pid  = spawn('redis-server', "$dir/redis.log",
        'redis-server', '--bind', '127.0.0.1', '--port', $port,
        '--dir', $dir, '--save', '', '--appendonly', 'no',
        '--daemonize', 'no');

    for (1 .. 100) {
        my $s = redis_connect($port);
        return $port if $s && eval { redis_call($s, 'PING') eq 'PONG' };
        alive($pid) or last;
        sleep 0.05;
    }
    die "redis-server did not start:\n" . tail("$dir/redis.log", 10);
}

# The proxy listens on a socket opened here, before the fork, so that
# it is ready as soon as this returns.  It connects to the upstream port
# for each connection it accepts: that need not listen yet.  Returns
# { port, pid }.
sub start_proxy {
    my ($upstream_port, $delay) = @_;
    my $lsn = IO::Socket::INET->new(
        Listen => 1024, LocalAddr => '127.0.0.1', LocalPort => 0,
        ReuseAddr => 1,
    ) or die "proxy listen: $!\n";

    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        eval {
            LatencyProxy::run(listen => $lsn, host => '127.0.0.1',
                port => $upstream_port, delay => $delay);
        };
        warn "latency proxy: $@";
        POSIX::_exit(1);    # not exit: END belongs to the parent
    }
    $PROCS{$pid} = 'latency-proxy';
    my $port = $lsn->sockport;
    close $lsn;
    return { port => $port, pid => $pid };
}

# median round trip of PING, to show what the proxy really adds
sub ping_ms {
    my ($port) = @_;
    my $s = redis_connect($port) or die "connect $port: $!\n";
    my @t;
    for (1 .. 21) {
        my $t0 = time;
        redis_call($s, 'PING') eq 'PONG' or die "PING through $port\n";
        push @t, (time - $t0) * 1000;
    }
    @t = sort { $a <=> $b } @t;
    return $t[@t / 2];
}

# ---------------------------------------------------------------------------
# nginx

# $servers: a function of the port that returns the server blocks;
# without it, /plain and the module on /; $prefix: the Redis prefix
# (bench), another one for servers that are not of the same fleet
sub start_nginx {
    my ($name, $module, $bin, $redis_port, $servers, $prefix) = @_;
    $prefix //= 'bench';
    my $dir = "$TMP/$name";
    mkdir $dir or die "$dir: $!\n";
    my $port = free_port();
    $servers //= sub {
        my ($p) = @_;
        return <<"EOF";
    server {
        listen 127.0.0.1:$p;
        location = /plain { return 200 "ok"; }
        location / { actingweb; }
    }
EOF
    };
    my $server_conf = $servers->($port);

    # every path in the temp dir: Debian's compiled-in defaults point at
    # /var/lib/nginx and /run, which a benchmark has no business touching
    my $temps = join '', map { "    ${_}_temp_path $dir/$_;\n" }
        qw(client_body proxy fastcgi uwsgi scgi);

    spew("$dir/nginx.conf", <<"EOF");
load_module $module;
worker_processes 1;
master_process on;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log notice;

events { worker_connections 4096; }

http {
    access_log off;
$temps
    actingweb_redis 127.0.0.1:$redis_port;
    actingweb_redis_prefix $prefix;

$server_conf}
EOF

    # -e: the error log before the config is read (else /var/log/nginx)
    my $pid = spawn($name, "$dir/stderr.log", $bin, '-p', "$dir/",
        '-c', "$dir/nginx.conf", '-e', "$dir/error.log");

    my $http = HTTP::Tiny->new(timeout => 2);
    for (1 .. 100) {
        my $r = $http->get("http://127.0.0.1:$port/plain");
        return { name => $name, port => $port, pid => $pid,
                 dir => $dir, log => "$dir/error.log" }
            if $r->{status} == 200;
        alive($pid) or last;
        sleep 0.05;
    }
    die "$name did not start:\n" . tail("$dir/stderr.log", 10)
        . tail("$dir/error.log", 10);
}

# ---------------------------------------------------------------------------
# the actor and the one-off checks

sub create_actor {
    my ($ngx) = @_;
    my $base = "http://127.0.0.1:$ngx->{port}";
    my $http = HTTP::Tiny->new(timeout => 5);

    my $r = $http->post("$base/", {
        headers => { 'Content-Type' => 'application/json' },
        content => encode_json({ creator => $CREATOR,
                                 passphrase => $PASSPHRASE }),
    });
    $r->{status} == 201
        or die "POST / answered $r->{status}, not 201: $r->{content}\n";
    my $j  = eval { decode_json($r->{content}) } // {};
    my $id = $j->{id} // '';
    $id =~ /^[0-9a-f]{32}$/
        or die "POST / gave no 32-hex id: $r->{content}\n";

    $r = $http->put("$base/$id/properties/name", {
        headers => { Authorization => $AUTH,
                     'Content-Type' => 'text/plain' },
        content => 'hello',
    });
    $r->{status} == 204
        or die "PUT name answered $r->{status}, not 204: $r->{content}\n";
    return $id;
}

# one request as wrk will send it; dies with what was wrong
sub check_once {
    my ($ngx, $sc) = @_;
    my %headers = %{ $sc->{headers} || {} };
    my $r = HTTP::Tiny->new(timeout => 5)->request(
        $sc->{method}, "http://127.0.0.1:$ngx->{port}$sc->{path}",
        { headers => \%headers,
          defined $sc->{body} ? (content => $sc->{body}) : () });
    my $want = $sc->{expect_status};
    $r->{status} == $want
        or die "check: $sc->{method} $sc->{path} answered $r->{status}, "
             . "not $want: $r->{content}\n";
    if (defined $sc->{expect_body} && $r->{content} ne $sc->{expect_body}) {
        die "check: $sc->{method} $sc->{path} body is '$r->{content}', "
          . "not '$sc->{expect_body}'\n";
    }
}

# ---------------------------------------------------------------------------
# wrk

sub to_ms {
    my ($v, $unit) = @_;
    return $v / 1000 if $unit eq 'us';
    return $v        if $unit eq 'ms';
    return $v * 1000 if $unit eq 's';
    return $v * 60000 if $unit eq 'm';
    die "wrk: unknown unit '$unit'\n";
}

# runs wrk, returns { rps, p50, p99, requests, bad } or dies
sub run_wrk {
    my ($ngx, $sc, $conns) = @_;
    # wrk wants at least one connection per thread
    my $threads = $conns < $THREADS ? $conns : $THREADS;
    my @cmd = ('wrk', "-t$threads", "-c$conns", "-d${SECONDS}s",
        '--latency', '--timeout', '5s');

    for my $h (sort keys %{ $sc->{headers} || {} }) {
        push @cmd, '-H', "$h: $sc->{headers}{$h}";
    }

    # wrk has no option for a method or a body: a Lua script it is
    my $lua = '';
    $lua .= "wrk.method = \"$sc->{method}\"\n" if $sc->{method} ne 'GET';
    $lua .= "wrk.body = \"$sc->{body}\"\n" if defined $sc->{body};
    if ($lua ne '') {
        my $file = "$TMP/$sc->{key}.lua";
        spew($file, $lua);
        push @cmd, '-s', $file;
    }
    push @cmd, "http://127.0.0.1:$ngx->{port}$sc->{path}";

    # output to a file and a polling wait, not a pipe: a signal handler
    # runs at once in sleep(), while a blocked read defers it until wrk
    # is done
    my $log = "$TMP/$sc->{key}-c$conns.wrk.txt";
    spew($log, "@cmd\n");
    my $pid = spawn('wrk', $log, @cmd);
    sleep 0.1 while alive($pid);
    my $rc  = delete $STATUS{$pid};
    my $out = slurp($log);
    die "wrk exited with status " . ($rc >> 8) . ":\n$out" if $rc;

    my %r;
    $r{rps}      = $1 if $out =~ /^Requests\/sec:\s*([\d.]+)/m;
    $r{requests} = $1 if $out =~ /^\s*(\d+) requests in/m;
    $r{p50} = to_ms($1, $2) if $out =~ /^\s*50%\s+([\d.]+)(us|ms|s|m)\b/m;
    $r{p99} = to_ms($1, $2) if $out =~ /^\s*99%\s+([\d.]+)(us|ms|s|m)\b/m;
    for (qw(rps requests p50 p99)) {
        defined $r{$_} or die "could not read '$_' in wrk output:\n$out";
    }

    # everything that is not a good answer, counted together
    $r{non2xx} = $out =~ /Non-2xx or 3xx responses:\s*(\d+)/ ? $1 : 0;
    $r{sockerr} = 0;
    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+),
                 \s timeout \s (\d+)/x)
    {
        $r{sockerr} = $1 + $2 + $3 + $4;
    }
    $r{bad} = $r{non2xx} + $r{sockerr};
    $r{requests} > 0 or die "wrk completed no request:\n$out";

    # a few errors when wrk stops mid-request are noise; more is a bug
    if ($r{bad} > $r{requests} / 1000) {
        die sprintf "%d non-2xx and %d socket errors in %d requests:\n%s",
            $r{non2xx}, $r{sockerr}, $r{requests}, $out;
    }
    return \%r;
}

# A client sending wrong passphrases (all different) at about
# $FLOOD_RATE req/s: wrk's delay() paces each of its connections.
# Returns the pid and its log; stop_flood() reads the rate it reached.
sub start_flood {
    my ($ngx, $id) = @_;
    my $conns = 20;
    my $auths = join ",\n", map {
        '"Basic ' . encode_base64("$CREATOR:wrong-$_", '') . '"'
    } 1 .. 5000;
    my $file = "$TMP/flood.lua";
    spew($file, <<"LUA");
local auths = {
$auths
}
local i = 0
request = function()
    i = i % #auths + 1
    return wrk.format("GET", "/$id/properties/name",
                      { Authorization = auths[i] })
end
delay = function() return ${\ int($conns * 1000 / $FLOOD_RATE) } end
LUA
    my $log = "$TMP/flood.wrk.txt";
    my @cmd = ('wrk', '-t1', "-c$conns", '-d' . ($SECONDS + 5) . 's',
        '-s', $file, "http://127.0.0.1:$ngx->{port}/");
    spew($log, "@cmd\n");
    my $pid = spawn('wrk-flood', $log, @cmd);
    sleep 1;    # past the burst the failure bound allows
    return { pid => $pid, log => $log };
}

sub stop_flood {
    my ($f) = @_;
    stop($f->{pid}, 'INT', 5);
    delete $STATUS{$f->{pid}};
    my $out = slurp($f->{log});
    return $out =~ /^Requests\/sec:\s*([\d.]+)/m ? $1 : undef;
}

# ---------------------------------------------------------------------------
# the report

sub fmt_ms {
    my ($v) = @_;
    return sprintf '%.2f', $v if $v < 10;
    return sprintf '%.1f', $v if $v < 100;
    return sprintf '%.0f', $v;
}

# rows of cells: scenario, conns, req/s, p50, p99, vs plain, redis cmds/req
sub table_rows {
    my ($results, $plain_rps) = @_;
    my @rows;
    for my $r (@$results) {
        if ($r->{error}) {
            push @rows, [ $r->{label}, $r->{conns}, 'FAILED', '-', '-',
                          '-', '-' ];
            next;
        }
        push @rows, [
            $r->{label}, $r->{conns}, sprintf('%.0f', $r->{rps}),
            fmt_ms($r->{p50}), fmt_ms($r->{p99}),
            $plain_rps ? sprintf('%.2f', $r->{rps} / $plain_rps) : '-',
            defined $r->{cmds} ? sprintf('%.1f', $r->{cmds}) : '-',
        ];
    }
    return @rows;
}

my @HEAD = ('scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'vs plain',
            'redis cmds/req');

sub text_table {
    my ($head, @rows) = @_;
    my @w = map { length } @$head;
    for my $row (@rows) {
        $w[$_] = length $row->[$_] > $w[$_] ? length $row->[$_] : $w[$_]
            for 0 .. $#$row;
    }
    my $fmt = join('  ', "%-$w[0]s", map { "%$w[$_]s" } 1 .. $#w) . "\n";
    return join '', map { sprintf $fmt, @$_ } $head, @rows;
}

sub md_table {
    my ($head, @rows) = @_;
    my $t = '| ' . join(' | ', @$head) . " |\n";
    $t .= '|' . join('|', ':---', map { '---:' } 1 .. $#$head) . "|\n";
    $t .= '| ' . join(' | ', @$_) . " |\n" for @rows;
    return $t;
}

# warnings and worse from an nginx error log, counted per distinct text
sub log_problems {
    my ($file) = @_;
    my (%count, @order);
    for (split /\n/, slurp($file)) {
        next unless /\[(warn|error|crit|alert|emerg)\]/;
        # drop the timestamp and pid#tid so that repeats collapse
        (my $key = $_) =~ s/^\S+ \S+ (\[\w+\]) \d+#\d+: (\*\d+ )?/$1 /;
        push @order, $key unless $count{$key}++;
    }
    return map { [ $count{$_}, $_ ] } @order;
}

# ---------------------------------------------------------------------------
# the groups: each starts its own nginx (one at a time: they would compete
# for the cores), stops it, and returns a section of the report:
# { title, head, rows, note, problems }

my @NGINX;    # every nginx started, for the error logs

# everything but Redis, which the next group uses too: before the error
# logs are read (shutdown may log) and before the next nginx starts
sub stop_group {
    my %rank = map { $_ => $PROCS{$_} =~ /^nginx/ ? 0 : 1 } keys %PROCS;
    for my $pid (sort { $rank{$a} <=> $rank{$b} } keys %PROCS) {
        my $name = $PROCS{$pid} // next;
        next if $name eq 'redis-server';
        stop($pid, $name =~ /^nginx/ ? 'QUIT' : 'TERM',
            $name =~ /^nginx/ ? 10 : 5);
        delete $STATUS{$pid};
    }
}

sub group_problems {
    my ($from) = @_;
    return map { log_problems($_->{log}) } @NGINX[$from .. $#NGINX];
}

sub group_http {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;

    my $direct = start_nginx('nginx-direct', $module, $bin, $redis);
    push @NGINX, $direct;
    say_ "nginx on 127.0.0.1:$direct->{port}, Redis direct";

    my $id = create_actor($direct);
    say_ "actor $id";

    my %auth = (Authorization => $AUTH);
    my @scenarios = (
        { key => 'plain', label => 'GET /plain (return 200)',
          method => 'GET', path => '/plain',
          expect_status => 200, expect_body => 'ok' },
        { key => 'prop', label => 'GET /<id>/properties/name (auth)',
          method => 'GET', path => "/$id/properties/name",
          headers => \%auth, expect_status => 200, expect_body => 'hello' },
        { key => 'meta', label => 'GET /<id>/meta/id',
          method => 'GET', path => "/$id/meta/id",
          expect_status => 200, expect_body => $id },
        { key => 'put', label => 'PUT /<id>/properties/name (auth)',
          method => 'PUT', path => "/$id/properties/name", body => 'world',
          headers => { %auth, 'Content-Type' => 'text/plain' },
          expect_status => 204 },
    );

    my @results;
    my $run = sub {
        my ($ngx, $sc, $conns, $label) = @_;
        my %res = (label => $label, conns => $conns);
        say_ "$label: $conns connections, ${SECONDS}s";
        eval {
            check_once($ngx, $sc);
            my $before = redis_commands_processed($redis);
            my $w = run_wrk($ngx, $sc, $conns);
            my $after = redis_commands_processed($redis);
            %res = (%res, %$w);
            # -1: the INFO that took $before counts itself
            $res{cmds} = ($after - $before - 1) / $w->{requests}
                if defined $before && defined $after && $sc->{key} ne 'plain';
            say_ sprintf '  %.0f req/s, p50 %s ms, p99 %s ms', $w->{rps},
                fmt_ms($w->{p50}), fmt_ms($w->{p99});
            1;
        } or do {
            die $@ if $INTERRUPTED;
            ($res{error} = $@) =~ s/\s+$//;
            say_ "  FAILED: $res{error}";
        };
        push @results, \%res;
    };

    $run->($direct, $_, $CONNS, $_->{label}) for @scenarios;

    # the property GET again while wrong passphrases flood the same worker
    my $flood_rps;
    {
        my $flood = start_flood($direct, $id);
        my %sc = (%{ $scenarios[1] }, key => 'prop-flood');
        $sc{expect_body} = 'world' unless $results[3]{error};
        $run->($direct, \%sc, $CONNS,
               "GET /<id>/properties/name + wrong-passphrase flood");
        $flood_rps = stop_flood($flood);
    }

    # The same reads with Redis "far away".  A failure to set that up
    # fails these rows only: the table of the others is still worth having.
    my @far = map {
        my %sc = %$_;
        $sc{key} .= '-proxy';
        # the PUT run left "world" behind, if it ran
        $sc{expect_body} = 'world'
            if $_->{key} eq 'prop' && !$results[3]{error};
        ($sc{label} = $_->{label}) =~ s/^(\S+ \S+)/$1 +${DELAY_MS}ms/;
        \%sc;
    } @scenarios[1, 2];

    my ($far, %ping);
    eval {
        my $proxy = start_proxy($redis, $DELAY_MS / 1000)->{port};
        %ping = (direct => ping_ms($redis), proxy => ping_ms($proxy));
        say_ sprintf 'latency proxy on 127.0.0.1:%d: PING %.2f ms direct, '
            . '%.2f ms through it', $proxy, $ping{direct}, $ping{proxy};

        # one nginx at a time: they would compete for the two cores
        stop($direct->{pid}, 'QUIT', 10);
        $far = start_nginx('nginx-proxy', $module, $bin, $proxy);
        push @NGINX, $far;
        say_ "nginx on 127.0.0.1:$far->{port}, Redis via the proxy";
        1;
    } or do {
        die $@ if $INTERRUPTED;
        (my $err = $@) =~ s/\s+$//;
        say_ "latency proxy setup FAILED: $err";
        for my $conns (uniq($CONNS, $PROXY_CONNS)) {
            push @results, map { +{ label => $_->{label}, conns => $conns,
                                    error => "proxy setup: $err" } } @far;
        }
        @far = ();
    };
    # both connection counts: with Redis 10 ms away, throughput should
    # grow with the number of requests in flight, not stop at a ceiling
    for my $conns (uniq($CONNS, $PROXY_CONNS)) {
        $run->($far, $_, $conns, $_->{label}) for @far;
    }

    stop_group();

    my ($plain) = grep { !$_->{error} } $results[0];

    # what to compare the +Nms rows with: the ceiling of a worker that
    # blocks on Redis, and the one set by the connections (Little's law)
    my $rtt = %ping ? $ping{proxy} : 2 * $DELAY_MS;
    my $note = sprintf "Rows marked +%dms: Redis behind a proxy adding %d ms "
        . "in each direction%s. A worker that waited on Redis would stay "
        . "below 1000/%.1f = %.0f req/s there (one round trip per "
        . "request); with C connections each waiting at least %.1f ms, "
        . "no server can exceed C/%.1f ms: %s.\n",
        $DELAY_MS, $DELAY_MS,
        %ping ? sprintf(' (PING: %.2f ms direct, %.2f ms through the proxy)',
                        $ping{direct}, $ping{proxy}) : '',
        $rtt, 1000 / $rtt, $rtt, $rtt,
        join(', ', map { sprintf '%.0f req/s at %d', $_ * 1000 / $rtt, $_ }
                       uniq($CONNS, $PROXY_CONNS));
    my @errs = grep { !$_->{error} && $_->{bad} } @results;
    $note .= "\nwrk errors (non-2xx, socket): " . (@errs
        ? join('; ', map { "$_->{label} c$_->{conns}: $_->{non2xx} non-2xx, "
                           . "$_->{sockerr} socket of $_->{requests}" } @errs)
        : 'none in the runs above') . ".\n";
    $note .= sprintf "\nThe flood row: a second wrk sent wrong passphrases "
        . "(5000 different ones) to the same actor and worker at %s req/s "
        . "(target %d) during the run.\n",
        defined $flood_rps ? sprintf('%.0f', $flood_rps) : '?', $FLOOD_RATE;
    $note .= "\nredis cmds/req: Redis's total_commands_processed per "
        . "request; the calls a Lua script makes count too, so it is not "
        . "the number of round trips.\n";

    return {
        title    => 'HTTP: reads and writes against plain nginx',
        head     => \@HEAD,
        rows     => [ table_rows(\@results, $plain ? $plain->{rps} : undef) ],
        note     => $note,
        failed   => [ map { [ $_->{label}, $_->{error} ] }
                      grep { $_->{error} } @results ],
        problems => [ group_problems($first) ],
    };
}

# ---------------------------------------------------------------------------
# trust: clients in forked processes

# A minimal HTTP/1.1 keep-alive client for the trust clients.  HTTP::Tiny
# writes a request's header and body separately; Nagle's algorithm then
# holds the body until the server's delayed ACK, 40 ms per POST or PUT.
# Here: one write per request, TCP_NODELAY, one connection per host:port
# in %$conns.  Enough for nginx's answers: Content-Length, chunked, or
# none for 204.
sub client_request {
    my ($conns, $method, $url, $headers, $body) = @_;
    my ($hp, $path) = $url =~ m{^http://([^/]+)(/.*)$}
        or die "not an http URL: $url\n";
    my $s = $conns->{$hp} //= do {
        my $c = IO::Socket::INET->new(PeerAddr => $hp, Timeout => 10)
            or die "connect $hp: $!\n";
        setsockopt $c, IPPROTO_TCP, TCP_NODELAY, 1;
        $c;
    };
    $body //= '';
    my $req = "$method $path HTTP/1.1\r\nHost: $hp\r\n"
        . join('', map { "$_: $headers->{$_}\r\n" } sort keys %$headers)
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";

    local $SIG{ALRM} = sub { die "$method $url: no answer in 30 s\n" };
    alarm 30;
    for (my $off = 0; $off < length $req;) {
        my $n = syswrite $s, $req, length($req) - $off, $off;
        defined $n or die "$method $url: write: $!\n";
        $off += $n;
    }
    my $buf = '';
    my $more = sub {
        my $n = sysread $s, $buf, 65536, length $buf;
        defined $n or die "$method $url: read: $!\n";
        $n or die "$method $url: connection closed\n";
    };
    $more->() until $buf =~ /\r\n\r\n/;
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    $buf = $rest;
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})}
        or die "$method $url: not HTTP: $head\n";
    my $content = '';
    if ($head =~ /^Content-Length:\s*(\d+)/mi) {
        my $len = $1;
        $more->() while length $buf < $len;
        $content = substr $buf, 0, $len;
    } elsif ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
        while (1) {
            $more->() until $buf =~ /\r\n/;
            $buf =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//
                or die "$method $url: bad chunk\n";
            my $size = hex $1;
            if ($size == 0) {    # no trailers from nginx
                $more->() while length $buf < 2;
                last;
            }
            $more->() while length $buf < $size + 2;
            $content .= substr $buf, 0, $size;
            substr($buf, 0, $size + 2, '');
        }
    } elsif ($status != 204 && $status != 304) {
        die "$method $url: an answer without length\n";
    }
    alarm 0;
    if ($head =~ /^Connection:\s*close/mi) {
        close $s;
        delete $conns->{$hp};
    }
    return { status => $status, content => $content };
}

# Runs $work->($http, $item) for every item of @$items in up to $clients
# forked processes (item i in process i % $clients).  $work returns one
# line; if it dies, its process stops and fan_out_wait() dies with that
# error.  fan_out_wait() returns the lines in item order.
sub fan_out_start {
    my ($name, $clients, $items, $work) = @_;
    my @kids;
    for my $k (0 .. $clients - 1) {
        my @mine = grep { $_ % $clients == $k } 0 .. $#$items;
        last unless @mine;
        my $file = "$TMP/$name-$k.out";
        my $pid = fork // die "fork: $!\n";
        if (!$pid) {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
            my $ok = eval {
                my $http = {};    # client_request's connections
                open my $fh, '>', $file or die "$file: $!\n";
                for my $i (@mine) {
                    my $line = $work->($http, $items->[$i]);
                    print $fh "$i\t$line\n";
                }
                close $fh or die "$file: $!\n";
                1;
            };
            spew("$file.err", $@) unless $ok;
            POSIX::_exit($ok ? 0 : 1);    # not exit: END is the parent's
        }
        $PROCS{$pid} = "$name-client";
        push @kids, [ $pid, $file ];
    }
    return { name => $name, kids => \@kids };
}

sub fan_out_wait {
    my ($f) = @_;
    # polling, not waitpid: a signal must get through at once
    sleep 0.02 while grep { alive($_->[0]) } @{ $f->{kids} };
    my @lines;
    for my $kid (@{ $f->{kids} }) {
        my ($pid, $file) = @$kid;
        if (my $rc = delete $STATUS{$pid}) {
            die "$f->{name}: " . (slurp("$file.err") || "status $rc\n");
        }
        for (split /\n/, slurp($file)) {
            my ($i, $line) = split /\t/, $_, 2;
            $lines[$i] = $line;
        }
    }
    return @lines;
}

sub fan_out {
    return fan_out_wait(fan_out_start(@_));
}

# one request from a client; dies unless the status is $want
sub call {
    my ($http, $method, $url, $auth, $body, $want) = @_;
    my %h;
    $h{Authorization} = $auth if $auth;
    $h{'Content-Type'} = 'application/json' if defined $body;
    my $r = client_request($http, $method, $url, \%h, $body);
    !defined $want || $r->{status} == $want
        or die "$method $url answered $r->{status}, not $want: "
             . "$r->{content}\n";
    return $r;
}

# The worker's credential cache is direct-mapped (4096 slots, auth.c):
# two actors whose credentials share a slot evict each other, and every
# request of theirs then derives the key again.  The slot, as auth.c
# computes it, to leave such actors out; the kdf counters of
# actingweb_status show whether that still holds.
sub cache_slot {
    my ($id) = @_;
    my $in = sprintf '%d:%s%d:%s%d:%s', length $id, $id, length $CREATOR,
        $CREATOR, length $PASSPHRASE, $PASSPHRASE;
    return unpack('V', sha256($in)) % 4096;
}

# $n actors on $base in parallel; with $warm, one authenticated read
# each, so that this worker has verified the creator's credentials and
# the runs that follow measure trust, not key derivation (and actors
# whose cache slot another one has are dropped: a few more are made)
sub create_actors {
    my ($base, $n, $warm) = @_;
    my $make = $warm ? $n + int($n / 8) + 4 : $n;
    my @ids = fan_out('create', $TRUST_CLIENTS, [ 1 .. $make ], sub {
        my ($http) = @_;
        my $r = call($http, 'POST', "$base/", undef,
            encode_json({ creator => $CREATOR, passphrase => $PASSPHRASE }),
            201);
        my $id = (eval { decode_json($r->{content}) } // {})->{id} // '';
        $id =~ /^[0-9a-f]{32}$/ or die "POST / gave no id: $r->{content}\n";
        call($http, 'GET', "$base/$id/trust", $AUTH, undef, 200) if $warm;
        return $id;
    });
    return @ids unless $warm;
    my %n;
    $n{ cache_slot($_) }++ for @ids;
    @ids = grep { $n{ cache_slot($_) } == 1 } @ids;
    @ids >= $n or die "too many actors share a credential cache slot\n";
    return @ids[0 .. $n - 1];
}

# a counter of the worker's actingweb_status
sub worker_counter {
    my ($ngx, $name) = @_;
    my $r = HTTP::Tiny->new(timeout => 5)
        ->get("http://127.0.0.1:$ngx->{port}/_status");
    my $j = $r->{status} == 200 ? eval { decode_json($r->{content}) } : undef;
    return ref $j eq 'HASH' ? $j->{$name} : undef;
}

# the server blocks for trust: actors on / with their own public URL,
# loopback peers allowed, the peer location; with $slow, a second server
# whose public URL is a proxy in front of it
sub trust_servers {
    my ($slow) = @_;
    my $peer = <<'EOF';
        location = /_actingweb_peer {
            internal;
            proxy_pass $actingweb_peer_url;
            proxy_pass_request_headers off;
            proxy_set_header Host $actingweb_peer_host;
            proxy_set_header Authorization $actingweb_peer_authorization;
            proxy_set_header Content-Type application/json;
            subrequest_output_buffer_size 64k;
        }
EOF
    my $server = sub {
        my ($port, $public) = @_;
        return <<"EOF";
    server {
        listen 127.0.0.1:$port;
        location = /plain { return 200 "ok"; }
        location = /_status { actingweb_status; }
        location / {
            actingweb;
            actingweb_base_url http://127.0.0.1:$public;
            actingweb_peer_allow 127.0.0.1;
        }
$peer    }
EOF
    };
    return sub {
        my ($port) = @_;
        my $conf = $server->($port, $port);
        $conf .= $server->($slow->{port}, $slow->{public}) if $slow;
        return $conf;
    };
}

# nearest-rank percentile of a sorted list
sub pct {
    my ($sorted, $p) = @_;
    my $k = int(@$sorted * $p / 100 + 0.999999) - 1;
    $k = 0 if $k < 0;
    return $sorted->[$k];
}

sub handshakes {
    my ($label, $ngx, $clients, $pairs, $redis) = @_;
    my $base = "http://127.0.0.1:$ngx->{port}";
    say_ sprintf '%s: %d handshakes, %d client(s)', $label, scalar @$pairs,
        $clients;
    my $kdf = worker_counter($ngx, 'auth_kdf_runs');
    my $before = redis_commands_processed($redis);
    my @lines = fan_out('handshake', $clients, $pairs, sub {
        my ($http, $p) = @_;
        my ($a, $b) = @$p;
        my $t0 = time;
        call($http, 'POST', "$base/$a/trust", $AUTH,
            encode_json({ url => "$base/$b", relationship => 'friend' }),
            201);
        my $t1 = time;
        call($http, 'PUT', "$base/$b/trust/friend/$a", $AUTH,
            '{"approved":true}', 204);
        return join ' ', $t0, $t1, time;
    });
    my $after = redis_commands_processed($redis);
    my $kdf_after = worker_counter($ngx, 'auth_kdf_runs');

    my ($start, $end, @full, @init) = (9e99, 0);
    for (@lines) {
        my ($t0, $t1, $t2) = split ' ';
        $start = $t0 if $t0 < $start;
        $end   = $t2 if $t2 > $end;
        push @full, ($t2 - $t0) * 1000;
        push @init, ($t1 - $t0) * 1000;
    }
    @full = sort { $a <=> $b } @full;
    @init = sort { $a <=> $b } @init;
    my %r = (label => $label, clients => $clients, n => scalar @lines,
        rate => @lines / ($end - $start),
        full50 => pct(\@full, 50), full99 => pct(\@full, 99),
        init50 => pct(\@init, 50), init99 => pct(\@init, 99));
    # -1: the INFO that took $before counts itself
    $r{cmds} = ($after - $before - 1) / @lines
        if defined $before && defined $after;
    $r{kdf} = $kdf_after - $kdf if defined $kdf && defined $kdf_after;
    say_ sprintf '  %.0f handshakes/s, full p50 %s ms p99 %s ms, initiate '
        . 'p50 %s ms p99 %s ms', $r{rate}, map { fmt_ms($r{$_}) }
        qw(full50 full99 init50 init99);
    return \%r;
}

# both sides approved, on both sides: the handshakes really completed
sub verify_trust {
    my ($base, $pairs) = @_;
    fan_out('verify', $TRUST_CLIENTS, $pairs, sub {
        my ($http, $p) = @_;
        for ([ @$p ], [ reverse @$p ]) {
            my ($me, $peer) = @$_;
            my $r = call($http, 'GET', "$base/$me/trust/friend/$peer", $AUTH,
                undef, 200);
            my $j = eval { decode_json($r->{content}) } // {};
            $j->{approved} && $j->{peer_approved} && $j->{verified}
                or die "$me/trust/friend/$peer is not approved on both "
                     . "sides: $r->{content}\n";
        }
        return 'ok';
    });
}

my @TRUST_HEAD = ('run', 'clients', 'handshakes', 'handshakes/s',
    'full p50 ms', 'full p99 ms', 'initiate p50 ms', 'initiate p99 ms',
    'vs serial', 'redis cmds/hs', 'key derivations');

sub group_trust {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;
    my $ngx = start_nginx('nginx-trust', $module, $bin, $redis,
        trust_servers());
    push @NGINX, $ngx;
    my $base = "http://127.0.0.1:$ngx->{port}";
    say_ "nginx on 127.0.0.1:$ngx->{port}, trust";

    # M actors on each side, and rounds of M pairs: in round r, A_i and
    # B_(i+r mod M).  Every pair once, and the handshakes that run at the
    # same time (neighbours in the list) have actors of their own.
    my $m = $TRUST_ACTORS;
    my $n = $TRUST_SERIAL + $TRUST_HS;
    $n <= $m * $m or die "$n handshakes need more than $m actors a side\n";
    my $t = time;
    my @ids = create_actors($base, 2 * $m, 1);
    say_ sprintf '%d actors in %.1f s', 2 * $m, time - $t;
    my @pairs = map {
        my ($r, $i) = (int($_ / $m), $_ % $m);
        [ $ids[$i], $ids[$m + ($i + $r) % $m] ]
    } 0 .. $n - 1;

    my $serial = handshakes('serial', $ngx, 1,
        [ @pairs[0 .. $TRUST_SERIAL - 1] ], $redis);
    my $conc = handshakes('concurrent', $ngx, $TRUST_CLIENTS,
        [ @pairs[$TRUST_SERIAL .. $#pairs] ], $redis);
    verify_trust($base, \@pairs);
    say_ "all $n trusts approved on both sides";

    stop_group();

    my @rows = map {
        [ $_->{label}, $_->{clients}, $_->{n}, sprintf('%.0f', $_->{rate}),
          (map { fmt_ms($_) } @$_{qw(full50 full99 init50 init99)}),
          sprintf('%.2f', $_->{rate} / $serial->{rate}),
          defined $_->{cmds} ? sprintf('%.0f', $_->{cmds}) : '-',
          $_->{kdf} // '-' ]
    } $serial, $conc;

    my $note = "A handshake: POST /<A>/trust {\"url\": <B>, \"relationship\": "
        . "\"friend\"} as A's creator (201: A read B's /meta, B verified A "
        . "with a reverse GET), then PUT /<B>/trust/friend/<A> "
        . "{\"approved\": true} as B's creator (204: B notified A). Both "
        . "actors on one server of one nginx with one worker, every peer "
        . "call a subrequest back into that worker. $m actors on each "
        . "side, each pair once (in rounds, so that concurrent handshakes "
        . "have different actors). \"full\" is initiate + approve as one "
        . "client sees it, \"initiate\" the POST alone; handshakes/s is "
        . "handshakes over the time from the first request to the last "
        . "answer. The creators' credentials were verified once before the "
        . "runs; key derivations: the worker's auth_kdf_runs during the "
        . "run. Afterwards every trust was read back on both sides: "
        . "approved, peer_approved and verified.\n";

    return {
        title    => 'Trust handshakes, one worker',
        head     => \@TRUST_HEAD,
        rows     => \@rows,
        note     => $note,
        failed   => [],
        problems => [ group_problems($first) ],
    };
}

my @SLOW_HEAD = ('scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms',
    'p99 ms per round', 'p99 vs without');

sub group_slowpeer {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;

    # the peer: a second server of the same nginx, whose public URL is a
    # proxy adding half of BENCH_SLOW_MS in each direction
    my $slow_port = free_port();
    my $proxy = start_proxy($slow_port, $SLOW_MS / 2000);
    my $ngx = start_nginx('nginx-slowpeer', $module, $bin, $redis,
        trust_servers({ port => $slow_port, public => $proxy->{port} }));
    push @NGINX, $ngx;
    my $base = "http://127.0.0.1:$ngx->{port}";
    my $peer = "http://127.0.0.1:$proxy->{port}";
    say_ "nginx on 127.0.0.1:$ngx->{port}, the slow peer on "
        . "127.0.0.1:$proxy->{port} (proxy to $slow_port)";

    my $id = create_actor($ngx);
    my @as = create_actors($base, $SLOW_PENDING, 1);
    # each initiation waits on two peer answers (meta, trust): peers
    # enough for a wrk run, in each round
    my $per = int(($SECONDS + 5) * 1000 / (2 * $SLOW_MS)) + 4;
    my @bs = create_actors("http://127.0.0.1:$slow_port",
        $SLOW_ROUNDS * $SLOW_PENDING * $per, 0);
    say_ sprintf 'actor %s, %d initiators, %d peers', $id, scalar @as,
        scalar @bs;

    my %sc = (key => 'prop-slow', method => 'GET',
        path => "/$id/properties/name", headers => { Authorization => $AUTH },
        expect_status => 200, expect_body => 'hello');
    my $label = 'GET /<id>/properties/name (auth)';
    check_once($ngx, \%sc);

    # Rounds of (without, with): a p99 on this shared machine moves by a
    # factor of several between runs of the same thing, so one pair
    # would show noise; the median of the rounds shows the effect.
    my (@without, @with, %status, @dur, @pending);
    for my $round (1 .. $SLOW_ROUNDS) {
        say_ "$label, round $round, no peer call pending: $SLOW_CONNS "
            . "connections";
        $sc{key} = "prop-slow-$round";
        push @without, run_wrk($ngx, \%sc, $SLOW_CONNS);

        # the initiators: one each, one initiation after the other, until
        # told to stop
        my $stop = "$TMP/slowpeer-$round.stop";
        my @items = map {
            my $k = (($round - 1) * $SLOW_PENDING + $_) * $per;
            [ $as[$_], [ @bs[$k .. $k + $per - 1] ] ]
        } 0 .. $#as;
        my $f = fan_out_start("slowpeer-$round", $SLOW_PENDING, \@items,
            sub {
                my ($http, $item) = @_;
                my ($a, $bs) = @$item;
                my @done;
                for my $b (@$bs) {
                    last if -e $stop;
                    my $t0 = time;
                    my $r = call($http, 'POST', "$base/$a/trust", $AUTH,
                        encode_json({ url => "$peer/$b",
                                      relationship => 'friend' }));
                    push @done, join ':', $r->{status}, $t0, time;
                }
                return join ' ', @done;
            });
        sleep 1;    # every initiator has its first request out
        say_ "$label, round $round, $SLOW_PENDING initiations to a "
            . "${SLOW_MS} ms peer pending: $SLOW_CONNS connections";
        $sc{key} = "prop-slow-pending-$round";
        my $w0 = time;
        push @with, run_wrk($ngx, \%sc, $SLOW_CONNS);
        my $w1 = time;
        spew($stop, '');
        my @lines = fan_out_wait($f);

        # how many were in flight during the wrk run, on average, and
        # how long one took
        my $overlap = 0;
        for my $done (map { split ' ' } grep { defined } @lines) {
            my ($st, $t0, $t1) = split /:/, $done;
            $status{$st}++;
            push @dur, $t1 - $t0;
            my $o = ($t1 < $w1 ? $t1 : $w1) - ($t0 > $w0 ? $t0 : $w0);
            $overlap += $o if $o > 0;
        }
        push @pending, $overlap / ($w1 - $w0);
        say_ sprintf '  p99 %s ms without, %s ms with %.1f pending',
            fmt_ms($without[-1]{p99}), fmt_ms($with[-1]{p99}), $pending[-1];
    }
    @dur = sort { $a <=> $b } @dur;

    stop_group();

    my $median = sub {
        my ($runs, $k) = @_;
        my @v = sort { $a <=> $b } map { $_->{$k} } @$runs;
        return $v[$#v / 2];
    };
    my $p99_without = $median->(\@without, 'p99');
    my @rows = map {
        my ($name, $runs) = @$_;
        [ $name, $SLOW_CONNS, sprintf('%.0f', $median->($runs, 'rps')),
          fmt_ms($median->($runs, 'p50')), fmt_ms($median->($runs, 'p99')),
          join(' / ', map { fmt_ms($_->{p99}) } @$runs),
          sprintf('%.2f', $median->($runs, 'p99') / $p99_without) ]
    } [ "$label, no peer call pending", \@without ],
      [ "$label, initiations to a ${SLOW_MS} ms peer pending", \@with ];

    my $note = sprintf "The slow peer: actors on a second server of the "
        . "same nginx whose public URL is a LatencyProxy adding %d ms in "
        . "each direction, so each peer call takes at least %d ms and an "
        . "initiation (meta, then trust) at least %d ms. In each of %d "
        . "rounds, wrk ran without, then with %d clients each initiating "
        . "one trust after the other toward it; initiations pending during "
        . "the wrk runs, on average: %s. Initiations: %s; duration p50 "
        . "%.2f s, max %.2f s. req/s, p50 and p99: the median of the "
        . "rounds.\n",
        $SLOW_MS / 2, $SLOW_MS, 2 * $SLOW_MS, $SLOW_ROUNDS, $SLOW_PENDING,
        join(' / ', map { sprintf '%.1f', $_ } @pending),
        join(', ', map { "$status{$_} x $_" } sort keys %status) || 'none',
        @dur ? (pct(\@dur, 50), $dur[-1]) : (0, 0);

    return {
        title    => 'Property reads while peers are slow, one worker',
        head     => \@SLOW_HEAD,
        rows     => \@rows,
        note     => $note,
        failed   => [],
        problems => [ group_problems($first) ],
    };
}

# ---------------------------------------------------------------------------
# peerops: fan-out and AwProxy, between A (one server) and B (another
# server of the same nginx, one worker) whose "slow" resource answers
# after $FANOUT_DELAY_MS

my @FANOUT_HEAD = ('peers', 'concurrency', 'runs', 'fan-out p50 ms',
    'fan-out p99 ms', 'serial ms', 'serial / fan-out p50', 'succeeded');

my @AWPROXY_HEAD = ('scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms',
    'added p50 ms', 'added p99 ms', 'req/s vs direct');

# A on /a/ (actingweb_fanout_concurrency at its default, 64) and on /c/
# (the same actors, 1000); B on its own server, where
# /b/<id>/slow waits on a port that never answers and gives up after
# $FANOUT_DELAY_MS: a delay made by nginx's own timer, no extra process
sub peerops_servers {
    my ($b_port, $silent_port, $dir) = @_;
    my $d = $FANOUT_DELAY_MS;
    my $peer = <<'EOF';
        location = /_actingweb_peer {
            internal;
            proxy_pass $actingweb_peer_url;
            proxy_pass_request_headers off;
            proxy_set_header Host $actingweb_peer_host;
            proxy_set_header Authorization $actingweb_peer_authorization;
            proxy_set_header Content-Type application/json;
            subrequest_output_buffer_size 64k;
        }
EOF
    return sub {
        my ($port) = @_;
        return <<"EOF";
    server {
        listen 127.0.0.1:$port;
        location = /plain { return 200 "ok"; }
        location /a/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$port/a;
            actingweb_peer_allow 127.0.0.1;
        }
        location /pp/ {
            proxy_pass http://127.0.0.1:$b_port/b/;
        }
        location /c/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$port/c;
            actingweb_peer_allow 127.0.0.1;
            actingweb_fanout_concurrency 1000;
        }
$peer    }
    server {
        # 1000 connections from A at once: the default backlog (511)
        # drops SYNs, which come back after the 1 s retransmission timer
        listen 127.0.0.1:$b_port backlog=4096;
        location = /plain { return 200 "ok"; }
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$b_port/b;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
        location ~ ^/b/[0-9a-f]+/slow\$ {
            proxy_pass http://127.0.0.1:$silent_port;
            proxy_connect_timeout ${d}ms;
            proxy_read_timeout ${d}ms;
            error_page 502 504 = \@slow;
            # the timeouts are the point, not errors
            error_log $dir/slow-error.log crit;
        }
        location \@slow {
            default_type application/json;
            return 200 '{"slow":true}';
        }
$peer    }
EOF
    };
}

# the connections nginx made to the silent port, closed; the listen
# queue (4096 at most) must not fill up between runs
sub drain_silent {
    my ($lsn) = @_;
    $lsn->blocking(0);
    while (my $c = $lsn->accept) { close $c; }
}

# milliseconds of $n runs of $fn (which dies on a wrong answer), with the
# silent port drained after each
sub timed_runs {
    my ($n, $lsn, $fn) = @_;
    my @t;
    for (1 .. $n) {
        my $t0 = time;
        $fn->();
        push @t, (time - $t0) * 1000;
        drain_silent($lsn);
    }
    return [ sort { $a <=> $b } @t ];
}

sub group_peerops {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;
    my @sizes = grep { $_ <= $FANOUT_MAX } 10, 100, 1000;
    push @sizes, $FANOUT_MAX unless grep { $_ == $FANOUT_MAX } @sizes;
    my $nb = $sizes[-1];

    my $silent = IO::Socket::INET->new(
        Listen => 4096, LocalAddr => '127.0.0.1', LocalPort => 0,
        ReuseAddr => 1,
    ) or die "silent listen: $!\n";
    my $b_port = free_port();
    my $ngx = start_nginx('nginx-peerops', $module, $bin, $redis,
        peerops_servers($b_port, $silent->sockport, "$TMP/nginx-peerops"));
    push @NGINX, $ngx;
    my $a = "http://127.0.0.1:$ngx->{port}/a";
    my $c = "http://127.0.0.1:$ngx->{port}/c";
    my $b = "http://127.0.0.1:$b_port/b";
    say_ "nginx on 127.0.0.1:$ngx->{port} (A) and 127.0.0.1:$b_port (B), "
        . "peerops";

    # one A per fan-out size; the B actors are shared: A_n trusts B_1..n
    my $t = time;
    my @as = create_actors($a, scalar @sizes, 1);
    my @bs = create_actors($b, $nb, 0);
    say_ sprintf '%d + %d actors in %.1f s', scalar @as, $nb, time - $t;
    $t = time;
    my @pairs = map { my $i = $_; map { [ $as[$i], $bs[$_] ] }
                      0 .. $sizes[$i] - 1 } 0 .. $#sizes;
    my @secrets = fan_out('peerops-trust', $TRUST_CLIENTS, \@pairs, sub {
        my ($http, $p) = @_;
        my $r = call($http, 'POST', "$a/$p->[0]/trust", $AUTH,
            encode_json({ url => "$b/$p->[1]", relationship => 'friend' }),
            201);
        my $j = eval { decode_json($r->{content}) } // {};
        $j->{approved} && $j->{peer_approved} && $j->{secret}
            or die "trust $p->[0] -> $p->[1] not approved at once: "
                 . "$r->{content}\n";
        return $j->{secret};
    });
    say_ sprintf '%d trusts (auto-approved) in %.1f s', scalar @pairs,
        time - $t;

    my $http = {};
    my $slow_ok = sub {
        my ($r) = @_;
        $r->{content} =~ /^\{\s*"slow"\s*:\s*true\s*\}$/
            or die "slow resource answered '$r->{content}'\n";
    };

    # what one call costs: the resource directly, then through AwProxy
    my $k = 0;
    my $direct = timed_runs($FANOUT_RUNS, $silent, sub {
        $slow_ok->(call($http, 'GET', "$b/$bs[$k++ % $nb]/slow", undef,
                        undef, 200));
    });
    my $single = timed_runs($FANOUT_RUNS, $silent, sub {
        $slow_ok->(call($http, 'GET',
            "$a/$as[0]/awproxy/$bs[$k++ % $sizes[0]]/slow", $AUTH, undef,
            200));
    });
    # and what an application calling ten peers one after the other waits
    my $serial10 = timed_runs($FANOUT_SERIAL, $silent, sub {
        $slow_ok->(call($http, 'GET', "$a/$as[0]/awproxy/$bs[$_]/slow",
                        $AUTH, undef, 200)) for 0 .. $sizes[0] - 1;
    });
    say_ sprintf 'one call: %s ms direct, %s ms through AwProxy (p50); '
        . '%d in a row: %s ms', fmt_ms(pct($direct, 50)),
        fmt_ms(pct($single, 50)), $sizes[0], fmt_ms(pct($serial10, 50));

    my @rows;
    for my $i (0 .. $#sizes) {
        my $n = $sizes[$i];
        for my $loc ([ $a, 64 ], [ $c, 1000 ]) {
            my ($base, $conc) = @$loc;
            my $url = "$base/$as[$i]/fanout";
            my $bad = 0;
            my $one = sub {
                my $r = call($http, 'POST', $url, $AUTH,
                    '{"method":"GET","path":"slow"}', 200);
                my $j = eval { decode_json($r->{content}) } // {};
                ($j->{count} // -1) == $n
                    or die "fan-out to $n peers: count $j->{count}\n";
                $bad += $n - $j->{succeeded};
            };
            timed_runs(1, $silent, $one);    # warm-up, not counted
            $bad = 0;
            my $ts = timed_runs($FANOUT_RUNS, $silent, $one);
            my $serial = $n * pct($single, 50);
            push @rows, [ $n, $conc, scalar @$ts, fmt_ms(pct($ts, 50)),
                fmt_ms(pct($ts, 99)),
                ($n == $sizes[0] ? fmt_ms(pct($serial10, 50)) . ' measured'
                                 : fmt_ms($serial) . ' computed'),
                sprintf('%.1f', ($n == $sizes[0] ? pct($serial10, 50)
                                                 : $serial) / pct($ts, 50)),
                sprintf('%d / %d', $n * @$ts - $bad, $n * @$ts) ];
            say_ sprintf 'fan-out to %d peers, concurrency %d: p50 %s ms, '
                . 'p99 %s ms', $n, $conc, fmt_ms(pct($ts, 50)),
                fmt_ms(pct($ts, 99));
        }
    }

    # AwProxy against the same read done directly with the trust's token
    call($http, 'PUT', "$b/$bs[0]/properties/x", $AUTH, '{"v":1}');
    my %direct = (key => 'awproxy-direct', method => 'GET',
        path => "/b/$bs[0]/properties/x",
        headers => { Authorization => "Bearer $secrets[0]" },
        expect_status => 200, expect_body => '{"v":1}');
    my %proxied = (key => 'awproxy', method => 'GET',
        path => "/a/$as[0]/awproxy/$bs[0]/properties/x",
        headers => { Authorization => $AUTH },
        expect_status => 200, expect_body => '{"v":1}');
    my %plain = (%direct, key => 'awproxy-plain',
        path => "/pp/$bs[0]/properties/x");
    my $bngx = { %$ngx, port => $b_port };
    my @aw;
    # 1 connection: the latency one call adds; 64: what the worker can do
    for my $conns (uniq(1, $CONNS)) {
        my $d0;
        for ([ \%direct, $bngx, 'GET /<B>/properties/x (Bearer), direct' ],
             [ \%plain, $ngx,
               'GET /pp/<B>/properties/x (Bearer), plain proxy_pass' ],
             [ \%proxied, $ngx,
               'GET /<A>/awproxy/<B>/properties/x (Basic)' ])
        {
            my ($sc, $on, $label) = @$_;
            check_once($on, $sc);
            say_ "$label: $conns connection(s), ${SECONDS}s";
            my $w = run_wrk($on, { %$sc, key => "$sc->{key}-$conns" },
                            $conns);
            say_ sprintf '  %.0f req/s, p50 %s ms, p99 %s ms', $w->{rps},
                fmt_ms($w->{p50}), fmt_ms($w->{p99});
            $d0 //= $w;
            push @aw, [ $label, $conns, $w, $d0 ];
        }
    }

    stop_group();
    close $silent;

    my @awrows = map {
        my ($label, $conns, $w, $d0) = @$_;
        [ $label, $conns, sprintf('%.0f', $w->{rps}), fmt_ms($w->{p50}),
          fmt_ms($w->{p99}),
          $w == $d0 ? '-' : sprintf('%.2f', $w->{p50} - $d0->{p50}),
          $w == $d0 ? '-' : sprintf('%.2f', $w->{p99} - $d0->{p99}),
          sprintf('%.2f', $w->{rps} / $d0->{rps}) ]
    } @aw;

    my $note = sprintf "POST /<A>/fanout {\"method\":\"GET\",\"path\":"
        . "\"slow\"} as A's creator, A trusting N actors of B (auto-"
        . "approved); each peer's /slow answers after %d ms (nginx proxies "
        . "it to a port that never answers, with proxy_read_timeout %dms "
        . "and error_page 504 = a JSON 200). Both servers in one nginx "
        . "with one worker. One call to /slow took %s ms (p50, max %s) "
        . "directly and %s ms (p50, max %s) through AwProxy, %d runs each; "
        . "%d of them in a row: %s ms (p50 of %d runs). serial: that "
        . "measured sum for %d peers, N x the AwProxy call's p50 for more. "
        . "Fan-out p99 of %d runs is their maximum. succeeded: peers that "
        . "answered 2xx in time, over all runs.\n",
        $FANOUT_DELAY_MS, $FANOUT_DELAY_MS,
        fmt_ms(pct($direct, 50)), fmt_ms($direct->[-1]),
        fmt_ms(pct($single, 50)), fmt_ms($single->[-1]), $FANOUT_RUNS,
        $sizes[0], fmt_ms(pct($serial10, 50)), $FANOUT_SERIAL, $sizes[0],
        $FANOUT_RUNS;
    my $awnote = "The same property of B read directly with the trust's "
        . "token, and through A's AwProxy with A's creator's Basic auth "
        . "(A checks the credentials, finds the trust, calls B with the "
        . "Bearer over a new connection: proxy_pass with a variable keeps "
        . "none alive). The plain proxy_pass row: A's server passes the "
        . "client's request and Bearer on to B with nginx's proxy module "
        . "alone, also over a new connection each time: what proxying "
        . "costs without the module's work on A. wrk -t$THREADS (one "
        . "thread for one connection), ${SECONDS} s each; added and "
        . "req/s vs direct: against the direct read with as many "
        . "connections.\n";

    return [
        { title => 'Fan-out to peers that take '
              . "$FANOUT_DELAY_MS ms, one worker",
          head => \@FANOUT_HEAD, rows => \@rows, note => $note,
          failed => [], problems => [ group_problems($first) ] },
        { title => 'AwProxy against a direct peer read, one worker',
          head => \@AWPROXY_HEAD, rows => \@awrows, note => $awnote,
          failed => [], problems => [] },
    ];
}

# ---------------------------------------------------------------------------
# subs: property writes on actors with 0, 10, 100 and 1000 subscriptions,
# and polls of a subscription that holds 1000 diffs.  A's actors on /a/ of
# one server, the subscriber B on a second server of the same nginx (one
# worker); the script plays B, with the trust's secret as its Bearer.

my @SUBS_PUT_HEAD = ('scenario', 'subscriptions', 'conns', 'req/s',
    'req/s per round', 'p50 ms', 'p99 ms', 'p99 ms per round',
    'req/s vs none', 'p99 vs none', 'redis cmds/req', 'script ms/req');

my @SUBS_POLL_HEAD = ('scenario', 'diffs', 'conns', 'req/s', 'p50 ms',
    'p99 ms', 'answer bytes', 'redis cmds/req', 'script ms/req');

# the peer location, exactly as the trust groups configure it
sub subs_peer_location {
    my ($loc) = trust_servers()->(0)
        =~ /^( +location = \/_actingweb_peer \{.*?^ +\}\n)/ms
        or die "no peer location in trust_servers\n";
    return $loc;
}

sub subs_servers {
    my ($b_port) = @_;
    my $peer = subs_peer_location();
    my $max = $SUBS_MAX + 10;
    return sub {
        my ($port) = @_;
        return <<"EOF";
    server {
        listen 127.0.0.1:$port;
        location = /plain { return 200 "ok"; }
        location /a/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$port/a;
            actingweb_peer_allow 127.0.0.1;
            actingweb_subscriptions_max $max;
        }
$peer    }
    server {
        listen 127.0.0.1:$b_port;
        location = /plain { return 200 "ok"; }
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$b_port/b;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
$peer    }
EOF
    };
}

# microseconds Redis spent in scripts so far (the calls they make
# included), from INFO commandstats
sub redis_script_usec {
    my ($port) = @_;
    my $s = redis_connect($port) or return;
    my $info = redis_call($s, 'INFO', 'commandstats');
    my $usec = 0;
    $usec += $1
        while $info =~ /^cmdstat_eval(?:sha)?:calls=\d+,usec=(\d+)/mg;
    return $usec;
}

# a wrk run with Redis's command count and script time around it
sub subs_wrk {
    my ($ngx, $sc, $conns, $redis) = @_;
    check_once($ngx, $sc);
    my $us0 = redis_script_usec($redis);
    my $before = redis_commands_processed($redis);
    my $w = run_wrk($ngx, $sc, $conns);
    my $after = redis_commands_processed($redis);
    my $us1 = redis_script_usec($redis);
    # -1: the INFO that took $before counts itself
    $w->{cmds} = ($after - $before - 1) / $w->{requests}
        if defined $before && defined $after;
    $w->{script_ms} = ($us1 - $us0) / 1000 / $w->{requests}
        if defined $us0 && defined $us1;
    say_ sprintf '  %.0f req/s, p50 %s ms, p99 %s ms, %.1f redis cmds/req, '
        . '%.3f ms in scripts/req', $w->{rps}, fmt_ms($w->{p50}),
        fmt_ms($w->{p99}), $w->{cmds} // -1, $w->{script_ms} // -1;
    return $w;
}

# one request, timed, with the Redis commands it took
sub subs_timed_call {
    my ($redis, @call) = @_;
    my $before = redis_commands_processed($redis);
    my $t0 = time;
    my $r = call(@call);
    my $ms = (time - $t0) * 1000;
    my $after = redis_commands_processed($redis);
    return ($r, $ms, $after - $before - 1);
}

sub group_subs {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;
    my @sizes = uniq(0, grep { $_ < $SUBS_MAX } 10, 100, 1000);
    push @sizes, $SUBS_MAX unless grep { $_ == $SUBS_MAX } @sizes;

    my $b_port = free_port();
    my $ngx = start_nginx('nginx-subs', $module, $bin, $redis,
        subs_servers($b_port));
    push @NGINX, $ngx;
    my $abase = "http://127.0.0.1:$ngx->{port}/a";
    my $bbase = "http://127.0.0.1:$b_port/b";
    say_ "nginx on 127.0.0.1:$ngx->{port} (A) and 127.0.0.1:$b_port (B), "
        . 'subs';

    # one A per size, one more for the polls; one B subscribes to all
    my $t = time;
    my @as = create_actors($abase, @sizes + 1, 1);
    my ($bid) = create_actors($bbase, 1, 0);
    my $http = {};
    my %secret;
    for my $id (@as) {
        my $r = call($http, 'POST', "$abase/$id/trust", $AUTH,
            encode_json({ url => "$bbase/$bid", relationship => 'friend' }),
            201);
        my $j = eval { decode_json($r->{content}) } // {};
        $j->{approved} && $j->{peer_approved} && $j->{secret}
            or die "trust $id -> $bid not approved at once: "
                 . "$r->{content}\n";
        $secret{$id} = "Bearer $j->{secret}";
    }
    my $subscribe = sub {
        my ($h, $id) = @_;
        my $r = call($h, 'POST', "$abase/$id/subscriptions/$bid",
            $secret{$id}, '{"target":"properties"}', 201);
        my $j = eval { decode_json($r->{content}) } // {};
        return $j->{subscriptionid}
            // die "no subscriptionid: $r->{content}\n";
    };
    my %subs;
    for my $i (0 .. $#sizes) {
        my $id = $as[$i];
        $subs{$id} = [ fan_out("subs-$sizes[$i]", $TRUST_CLIENTS,
            [ ($id) x $sizes[$i] ], $subscribe) ];
    }
    say_ sprintf '%d actors, %d subscriptions in %.1f s', @as + 1,
        scalar(map { @$_ } values %subs), time - $t;

    # every subscription turns a write into a diff: one write, one poll
    # of each, then the writes of the runs
    for my $id (@as[0 .. $#sizes]) {
        next unless @{ $subs{$id} };
        call($http, 'PUT', "$abase/$id/properties/name", $AUTH,
            '"check"', 204);
        fan_out('subs-check', $TRUST_CLIENTS, $subs{$id}, sub {
            my ($h, $s) = @_;
            my $r = call($h, 'GET', "$abase/$id/subscriptions/$bid/$s",
                $secret{$id}, undef, 200);
            my $j = eval { decode_json($r->{content}) } // {};
            my $d = ref $j->{data} eq 'ARRAY' ? $j->{data}[-1] : undef;
            $d && ref $d->{data} eq 'HASH'
                && ($d->{data}{name} // '') eq 'check'
                or die "subscription $s made no diff: $r->{content}\n";
            return 'ok';
        });
    }

    # the PUT, in rounds over the sizes (a shared machine drifts), and
    # once with one connection: the latency one writer sees
    my (%runs, %one);
    for my $round (0 .. $SUBS_ROUNDS) {
        for my $i (0 .. $#sizes) {
            my $n = $sizes[$i];
            my $conns = $round ? $CONNS : 1;
            my %sc = (key => "subs-put-$n-$round", method => 'PUT',
                path => "/a/$as[$i]/properties/name", body => 'world',
                headers => { Authorization => $AUTH,
                             'Content-Type' => 'text/plain' },
                expect_status => 204);
            say_ "PUT, $n subscriptions, $conns connection(s), "
                . ($round ? "round $round" : 'one writer');
            my $w = subs_wrk($ngx, \%sc, $conns, $redis);
            if ($round) {
                push @{ $runs{$n} }, $w;
            } else {
                $one{$n} = $w;
            }
        }
    }

    # the polls: writes in batches of a poll's page (128 events), each
    # batch polled, until the subscription holds $SUBS_DIFFS diffs
    my $pa = $as[-1];
    $http = {};    # nginx closed the idle one during the runs
    my $ps = $subscribe->($http, $pa);
    my $purl = "$abase/$pa/subscriptions/$bid/$ps";
    my ($written, @made) = (0);
    while ($written < $SUBS_DIFFS) {
        my $k = $SUBS_DIFFS - $written < 128 ? $SUBS_DIFFS - $written : 128;
        for (1 .. $k) {
            $written++;
            call($http, 'PUT', "$abase/$pa/properties/p", $AUTH,
                encode_json({ n => $written, text => 'x' x 20 }), 204);
        }
        my ($r, $ms, $cmds) = subs_timed_call($redis, $http, 'GET', $purl,
            $secret{$pa}, undef, 200);
        my $j = eval { decode_json($r->{content}) } // {};
        ($j->{sequence} // -1) == $written
            or die "poll after $written writes: sequence $j->{sequence}\n";
        push @made, [ $k, $ms, $cmds, scalar @{ $j->{data} } ];
    }
    say_ sprintf '%d diffs made by %d polls: %s ms', $written,
        scalar @made, join ' / ', map { fmt_ms($_->[1]) } @made;
    # a second subscription, polled with nothing new: no diffs
    my $es = $subscribe->($http, $pa);

    my @polls;
    for my $p ([ $ps, $SUBS_DIFFS ], [ $es, 0 ]) {
        my ($s, $n) = @$p;
        my $r = call($http, 'GET', "$abase/$pa/subscriptions/$bid/$s",
            $secret{$pa}, undef, 200);
        my $j = eval { decode_json($r->{content}) } // {};
        @{ $j->{data} } == $n
            or die "poll of $s: " . @{ $j->{data} } . " diffs, not $n\n";
        for my $conns (uniq(1, $CONNS)) {
            my %sc = (key => "subs-poll-$n-$conns", method => 'GET',
                path => "/a/$pa/subscriptions/$bid/$s",
                headers => { Authorization => $secret{$pa} },
                expect_status => 200);
            say_ "poll, $n diffs, $conns connection(s)";
            push @polls, [ $n, $conns, subs_wrk($ngx, \%sc, $conns, $redis),
                           length $r->{content} ];
        }
    }

    # and clearing them, once
    my (undef, $clear_ms, $clear_cmds) = subs_timed_call($redis, $http,
        'PUT', $purl, $secret{$pa}, encode_json({ sequence => $written }),
        204);
    my $r = call($http, 'GET', $purl, $secret{$pa}, undef, 200);
    my $j = eval { decode_json($r->{content}) } // {};
    @{ $j->{data} } == 0
        or die 'after clearing: ' . @{ $j->{data} } . " diffs left\n";
    say_ sprintf 'cleared %d diffs in %s ms, %d redis commands', $written,
        fmt_ms($clear_ms), $clear_cmds;

    stop_group();

    my $median = sub {
        my ($list, $k) = @_;
        my @v = sort { $a <=> $b } map { $_->{$k} } @$list;
        return $v[$#v / 2];
    };
    my ($rps0, $p990) = map { $median->($runs{0}, $_) } qw(rps p99);
    my @rows;
    for my $n (@sizes) {
        my $w1 = $one{$n};
        push @rows, [ 'PUT /<A>/properties/name (Basic)', $n, 1,
            sprintf('%.0f', $w1->{rps}), '-', fmt_ms($w1->{p50}),
            fmt_ms($w1->{p99}), '-',
            sprintf('%.2f', $w1->{rps} / $one{0}{rps}),
            sprintf('%.2f', $w1->{p99} / $one{0}{p99}),
            sprintf('%.1f', $w1->{cmds} // -1),
            sprintf('%.3f', $w1->{script_ms} // -1) ];
    }
    for my $n (@sizes) {
        my $rs = $runs{$n};
        my ($rps, $p50, $p99) = map { $median->($rs, $_) } qw(rps p50 p99);
        push @rows, [ 'PUT /<A>/properties/name (Basic)', $n, $CONNS,
            sprintf('%.0f', $rps),
            join(' / ', map { sprintf '%.0f', $_->{rps} } @$rs),
            fmt_ms($p50), fmt_ms($p99),
            join(' / ', map { fmt_ms($_->{p99}) } @$rs),
            sprintf('%.2f', $rps / $rps0), sprintf('%.2f', $p99 / $p990),
            sprintf('%.1f', $median->($rs, 'cmds') // -1),
            sprintf('%.3f', $median->($rs, 'script_ms') // -1) ];
    }
    my @prows = map {
        my ($n, $conns, $w, $len) = @$_;
        [ 'GET /<A>/subscriptions/<B>/<sub> (Bearer)', $n, $conns,
          sprintf('%.0f', $w->{rps}), fmt_ms($w->{p50}), fmt_ms($w->{p99}),
          $len, sprintf('%.0f', $w->{cmds} // -1),
          sprintf('%.3f', $w->{script_ms} // -1) ]
    } @polls;

    my $note = sprintf "PUT of a text property as A's creator; A holds N "
        . "subscriptions of B to target properties (all matching every "
        . "write; before the runs one write made a diff in each of them). "
        . "The 1-connection rows: one run of %d s each; the %d-connection "
        . "rows: %d rounds over the sizes, the median (and each round) "
        . "shown; vs none: against N = 0 with as many connections.\n",
        $SECONDS, $CONNS, $SUBS_ROUNDS;
    my $pnote = sprintf "B polls one subscription that holds %d diffs "
        . "not cleared (each {\"p\":{\"n\":i,\"text\":<20 chars>}}), and "
        . "one that holds none; no writes during the runs, so the polls "
        . "only read what is stored. The %d diffs were made by %d polls, "
        . "one after each batch of up to 128 writes (a poll's page): %s "
        . "ms each, %s redis commands. Clearing all %d with PUT "
        . "{\"sequence\":%d} took %s ms and %d redis commands (one "
        . "request). redis cmds/req: total_commands_processed per "
        . "request; the calls inside a Lua script count, the round trips "
        . "are fewer. script ms/req: the time Redis spent in scripts "
        . "(INFO commandstats, eval and evalsha) per request. With %d "
        . "connections the requests still in flight when wrk stops count "
        . "in Redis but not in wrk: both per-request figures are then a "
        . "little high.\n",
        $SUBS_DIFFS, $written, scalar @made,
        join(' / ', map { fmt_ms($_->[1]) } @made),
        join(' / ', map { $_->[2] } @made),
        $written, $written, fmt_ms($clear_ms), $clear_cmds, $CONNS;

    return [
        { title => 'Property writes with subscriptions, one worker',
          head => \@SUBS_PUT_HEAD, rows => \@rows, note => $note,
          failed => [], problems => [ group_problems($first) ] },
        { title => 'Polling a subscription, one worker',
          head => \@SUBS_POLL_HEAD, rows => \@prows, note => $pnote,
          failed => [], problems => [] },
    ];
}

# ---------------------------------------------------------------------------
# delivery: callbacks from a publisher A (one nginx, one worker) to
# subscribers on B (another nginx, one worker) whose /callbacks are sinks
# that log the time they answered: right away (/b/), or after
# $DELIVERY_SLOW_MS (/s/, a port that never answers and
# proxy_read_timeout)

my @DELIVERY_HEAD = ('scenario', 'runs', 'callbacks per run',
    'last callback p50 ms', 'last callback max ms', 'callbacks/s',
    'sent / failed');

my @DELIVERY_PUT_HEAD = ('scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms',
    'req/s vs quiet', 'callbacks/s meanwhile');

sub delivery_publisher_servers {
    return sub {
        my ($port) = @_;
        return <<"EOF";
    server {
        listen 127.0.0.1:$port;
        location = /plain { return 200 "ok"; }
        location = /_status { actingweb_status; }
        location /a/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$port/a;
            actingweb_peer_allow 127.0.0.1;
            actingweb_subscriptions_max 1000;
            actingweb_change_log 10000;
        }
        location = /_actingweb_peer {
            internal;
            proxy_pass \$actingweb_peer_url;
            proxy_pass_request_headers off;
            proxy_set_header Host \$actingweb_peer_host;
            proxy_set_header Authorization \$actingweb_peer_authorization;
            proxy_set_header Content-Type application/json;
            subrequest_output_buffer_size 64k;
        }
    }
EOF
    };
}

sub delivery_sink_servers {
    my ($silent_port, $dir) = @_;
    my $d = $DELIVERY_SLOW_MS;
    return sub {
        my ($port) = @_;
        my $actors = join '', map { <<"EOF" } qw(b s);
        location /$_/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:$port/$_;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
EOF
        return <<"EOF";
    log_format cb '\$msec \$request_uri';
    server {
        # 1000 callbacks may connect at once
        listen 127.0.0.1:$port backlog=4096;
        location = /plain { return 200 "ok"; }
$actors
        location ~ ^/b/[0-9a-f]+/callbacks/ {
            access_log $dir/cb.log cb buffer=64k flush=100ms;
            return 204;
        }
        location ~ ^/s/[0-9a-f]+/callbacks/ {
            proxy_pass http://127.0.0.1:$silent_port;
            proxy_connect_timeout ${d}ms;
            proxy_read_timeout ${d}ms;
            error_page 502 504 = \@ok;
            # the timeouts are the point, not errors
            error_log $dir/slow-error.log crit;
        }
        location \@ok {
            access_log $dir/cb.log cb buffer=64k flush=100ms;
            return 204;
        }
        location = /_actingweb_peer {
            internal;
            proxy_pass \$actingweb_peer_url;
            proxy_pass_request_headers off;
            proxy_set_header Host \$actingweb_peer_host;
            proxy_set_header Authorization \$actingweb_peer_authorization;
            proxy_set_header Content-Type application/json;
            subrequest_output_buffer_size 64k;
        }
    }
EOF
    };
}

# waits (60 s at most) for $n callbacks to /$loc/ in the sink's log after
# byte $from; returns the time of the last one and the offset read to.
# The log is read on from where the last wait ended, not again from its
# start: a burst logs 100,000 lines, and rereading them every 20 ms took
# the machine's CPU from the nginx being measured.
sub sink_wait {
    my ($file, $loc, $from, $n) = @_;
    my $deadline = time + 60;
    my ($seen, $last, $pos, $part) = (0, 0, $from, '');
    open my $fh, '<', $file or die "$file: $!\n";
    seek $fh, $pos, 0;
    while (1) {
        while (defined(my $l = <$fh>)) {
            if ($l !~ /\n\z/) {
                # half a line: the rest comes with the next flush
                $part .= $l;
                next;
            }
            $l = $part . $l;
            $part = '';
            $pos = tell $fh;
            if ($l =~ m{^(\S+) /$loc/}) {
                $seen++;
                $last = $1 if $1 > $last;
            }
        }
        return ($last, $pos) if $seen >= $n;
        time < $deadline
            or die sprintf "%d of %d callbacks to /%s/ in 60 s\n",
                $seen, $n, $loc;
        sleep 0.02;
        seek $fh, $pos, 0;
        $part = '';
    }
}

sub delivery_counters {
    my ($ngx) = @_;
    return map { worker_counter($ngx, $_) // 0 }
        qw(callbacks_sent callbacks_failed);
}

sub group_delivery {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;

    my $silent = IO::Socket::INET->new(
        Listen => 4096, LocalAddr => '127.0.0.1', LocalPort => 0,
        ReuseAddr => 1,
    ) or die "silent listen: $!\n";
    my $bdir = "$TMP/nginx-delivery-b";
    my $bngx = start_nginx('nginx-delivery-b', $module, $bin, $redis,
        delivery_sink_servers($silent->sockport, $bdir), 'benchsub');
    push @NGINX, $bngx;
    my $angx = start_nginx('nginx-delivery-a', $module, $bin, $redis,
        delivery_publisher_servers());
    push @NGINX, $angx;
    my $pa = "http://127.0.0.1:$angx->{port}/a";
    my $pb = "http://127.0.0.1:$bngx->{port}/b";
    my $s = "http://127.0.0.1:$bngx->{port}/s";
    my $log = "$bdir/cb.log";
    say_ "nginx on 127.0.0.1:$angx->{port} (A, publisher) and "
        . "127.0.0.1:$bngx->{port} (B, subscribers), delivery";

    # A: one publisher with 10 slow subscribers, one with 1000 fast ones
    # (one subscription each: a peer gets one POST per change, however
    # many of its subscriptions the change matches), one without any
    # (the PUT target)
    my $peers = $DELIVERY_PEERS;
    my $t = time;
    my ($aslow, $afan, $aquiet, $amany) = create_actors($pa, 4, 1);
    my @ss = create_actors($s, $peers, 0);
    my @bs = create_actors($pb, $DELIVERY_SUBS, 0);
    my @bm = create_actors($pb, $peers, 0);
    my @pairs = ((map { [ $aslow, "$s/$_" ] } @ss),
                 (map { [ $afan, "$pb/$_" ] } @bs),
                 (map { [ $amany, "$pb/$_" ] } @bm));
    my @secrets = fan_out('delivery-trust', $TRUST_CLIENTS, \@pairs, sub {
        my ($http, $p) = @_;
        my $r = call($http, 'POST', "$pa/$p->[0]/trust", $AUTH,
            encode_json({ url => $p->[1], relationship => 'friend' }), 201);
        my $j = eval { decode_json($r->{content}) } // {};
        $j->{approved} && $j->{peer_approved} && $j->{secret}
            or die "trust $p->[0] -> $p->[1] not approved at once: "
                 . "$r->{content}\n";
        return $j->{secret};
    });
    # the subscriptions, made by the peers with their Bearer: one per
    # pair, and for $amany $DELIVERY_SUBS across the $peers of @bm (one
    # POST per peer and change: the issue's "1,000 subscriptions across 10
    # sink peers")
    my $subscribe = sub {
        my ($http, $i) = @_;
        my ($pub, $url) = @{ $pairs[$i] };
        my ($peer) = $url =~ m{/([0-9a-f]+)$};
        my $r = client_request($http, 'POST',
            "$pa/$pub/subscriptions/$peer",
            { Authorization => "Bearer $secrets[$i]",
              'Content-Type' => 'application/json' },
            '{"target":"properties","granularity":"high"}');
        $r->{status} == 201
            or die "subscribing answered $r->{status}: $r->{content}\n";
        return 1;
    };
    my @subs = 0 .. $#pairs - @bm;
    fan_out('delivery-subscribe', $TRUST_CLIENTS, \@subs, $subscribe);
    my $per = int($DELIVERY_SUBS / $peers) || 1;
    my @many = map { my $i = $_; map { $i } 1 .. $per }
               (@pairs - @bm) .. $#pairs;
    fan_out('delivery-subscribe-many', $TRUST_CLIENTS, \@many, $subscribe);
    my $nfan = @bs;
    say_ sprintf '%d actors, %d trusts, %d subscriptions in %.1f s',
        4 + $peers * 2 + $nfan, scalar @pairs, @subs + @many, time - $t;

    my $http = {};
    my $logpos = 0;
    my $v = 0;
    # $runs times: $writes PUTs to $pub, then the time until the sink
    # answered the last of the $n callbacks each makes, and the counters
    my $measure = sub {
        my ($pub, $loc, $n, $runs, $writes) = @_;
        my ($s0, $f0) = delivery_counters($angx);
        my (@t, $total);
        for (1 .. $runs) {
            my $t0 = time;
            for (1 .. $writes) {
                $v++;
                call($http, 'PUT', "$pa/$pub/properties/v", $AUTH, $v, 204);
            }
            (my $last, $logpos) = sink_wait($log, $loc, $logpos, $n * $writes);
            push @t, ($last - $t0) * 1000;
            $total += $n * $writes;
            drain_silent($silent);
        }
        my ($s1, $f1) = delivery_counters($angx);
        my $sum = 0;
        $sum += $_ for @t;
        return { t => [ sort { $a <=> $b } @t ], n => $total,
                 rate => $total * 1000 / $sum,
                 sent => $s1 - $s0, failed => $f1 - $f0 };
    };

    my @rows;
    my $row = sub {
        my ($label, $m, $per_run) = @_;
        push @rows, [ $label, scalar @{ $m->{t} }, $per_run,
            fmt_ms(pct($m->{t}, 50)), fmt_ms($m->{t}[-1]),
            sprintf('%.0f', $m->{rate}), "$m->{sent} / $m->{failed}" ];
        say_ sprintf '%s: p50 %s ms, max %s ms, %.0f callbacks/s',
            $label, fmt_ms(pct($m->{t}, 50)), fmt_ms($m->{t}[-1]),
            $m->{rate};
    };

    $measure->($aslow, 's', $peers, 1, 1);    # warm-up, not counted
    $row->("one change, $peers subscribers answering after "
           . "$DELIVERY_SLOW_MS ms",
        $measure->($aslow, 's', $peers, $DELIVERY_RUNS, 1), $peers);
    $measure->($afan, 'b', $nfan, 1, 1);
    $row->("one change, $nfan fast subscribers",
        $measure->($afan, 'b', $nfan, $DELIVERY_RUNS, 1), $nfan);
    $measure->($amany, 'b', scalar @bm, 1, 1);
    $row->(sprintf('one change, %d subscriptions of %d fast subscribers '
                   . '(one POST per subscriber)', scalar @many, scalar @bm),
        $measure->($amany, 'b', scalar @bm, $DELIVERY_RUNS, 1), scalar @bm);
    my $burst = $measure->($afan, 'b', $nfan, $DELIVERY_BURSTS,
                           $DELIVERY_WRITES);
    $row->("$DELIVERY_WRITES changes at once, $nfan subscribers "
           . '(delivery rate)', $burst, $nfan * $DELIVERY_WRITES);

    # PUTs to an actor without subscriptions: quiet, then while A
    # delivers a backlog sized to outlast the wrk run
    my %put = (key => 'delivery-put', method => 'PUT',
        path => "/a/$aquiet/properties/p", body => 'world',
        headers => { Authorization => $AUTH, 'Content-Type' => 'text/plain' },
        expect_status => 204);
    check_once($angx, \%put);
    say_ "PUT, quiet: $CONNS connections, ${SECONDS}s";
    my $quiet = run_wrk($angx, \%put, $CONNS);
    my $backlog = int($burst->{rate} * ($SECONDS + 5) / $nfan) + 1;
    say_ "PUT while delivering $backlog changes x $nfan subscribers";
    for (1 .. $backlog) {
        $v++;
        call($http, 'PUT', "$pa/$afan/properties/v", $AUTH, $v, 204);
    }
    my ($s0) = delivery_counters($angx);
    my $t0 = time;
    my $busy = run_wrk($angx, { %put, key => 'delivery-put-busy' }, $CONNS);
    my ($s1) = delivery_counters($angx);
    my $during = ($s1 - $s0) / (time - $t0);
    # the rest of the backlog stays in Redis: nginx stops with the calls
    # in flight done
    my @puts = (
        [ 'PUT /<A>/properties/p, no delivery', $CONNS,
          sprintf('%.0f', $quiet->{rps}), fmt_ms($quiet->{p50}),
          fmt_ms($quiet->{p99}), '1.00', '-' ],
        [ 'PUT /<A>/properties/p, A delivering at full rate', $CONNS,
          sprintf('%.0f', $busy->{rps}), fmt_ms($busy->{p50}),
          fmt_ms($busy->{p99}),
          sprintf('%.2f', $busy->{rps} / $quiet->{rps}),
          sprintf('%.0f', $during) ],
    );
    say_ sprintf 'PUT %.0f req/s quiet, %.0f req/s while delivering '
        . '%.0f callbacks/s', $quiet->{rps}, $busy->{rps}, $during;

    stop_group();
    close $silent;

    my $note = sprintf "A publishes (one nginx, one worker, "
        . "actingweb_callback_concurrency at its default, 16); its "
        . "subscribers are actors of B (another nginx, one worker) whose "
        . "/callbacks locations are sinks: answering 204 at once, or after "
        . "%d ms (proxied to a port that never answers, proxy_read_timeout "
        . "%dms, error_page 504 = a 204). Subscriptions are high, to "
        . "/properties. last callback: from the PUT (sent with Basic auth, "
        . "answered 204) until the sink answered the last callback it "
        . "caused, by the sink's access log (\$msec); max is over the "
        . "runs. callbacks/s: callbacks over the sum of those times. "
        . "sent / failed: A's callbacks_sent and callbacks_failed over "
        . "the runs.\n", $DELIVERY_SLOW_MS, $DELIVERY_SLOW_MS;
    my $putnote = "wrk -t$THREADS -c$CONNS, ${SECONDS} s: PUTs to an actor "
        . "of A without subscriptions; in the second run A also delivers "
        . "a backlog of $backlog changes to $nfan subscribers (made just "
        . "before, sized to outlast the run). callbacks/s meanwhile: "
        . "A's callbacks_sent over the run.\n";
    return [
        { title => 'Callback delivery, one worker', head => \@DELIVERY_HEAD,
          rows => \@rows, note => $note, failed => [],
          problems => [ group_problems($first) ] },
        { title => 'Property writes while callbacks are delivered, '
              . 'one worker',
          head => \@DELIVERY_PUT_HEAD, rows => \@puts, note => $putnote,
          failed => [], problems => [] },
    ];
}

# ---------------------------------------------------------------------------
# rss: the worker's memory over $RSS_REQUESTS mixed requests, in
# $RSS_SLICES wrk runs.  The servers of `subs`; A on /a/ with a few
# properties, a trust with B (B's server approves at once) and one
# subscription of B on A; C on /a/ takes the wrong passphrases.  wrk
# cycles through ten kinds of request, counts the answers by status and
# stops each thread after its share of the slice.

my @RSS_HEAD = ('after', 'requests', 'req/s', 'VmRSS kB', 'VmHWM kB',
    'RSS change kB', 'heap kB', 'anon kB', 'redis used_memory kB',
    'redis keys');

# the worker of nginx $ngx: its VmRSS and VmHWM in kB
sub rss_worker_mem {
    my ($ngx) = @_;
    my @kids = children_of($ngx->{pid});
    @kids == 1 or die "nginx has " . @kids . " children, not one worker\n";
    my $st = slurp("/proc/$kids[0]/status");
    my ($rss) = $st =~ /^VmRSS:\s*(\d+) kB/m;
    my ($hwm) = $st =~ /^VmHWM:\s*(\d+) kB/m;
    defined $rss && defined $hwm or die "no VmRSS in /proc/$kids[0]\n";
    # where it is: malloc's main heap, and anonymous maps (thread stacks,
    # the other threads' malloc arenas)
    my ($heap, $anon, $name) = (0, 0, '');
    for (split /\n/, slurp("/proc/$kids[0]/smaps")) {
        if (/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/) {
            $name = $1;
        } elsif (/^Rss:\s+(\d+)/) {
            $heap += $1 if $name eq '[heap]';
            $anon += $1 if $name eq '';
        }
    }
    return { pid => $kids[0], rss => $rss, hwm => $hwm, heap => $heap,
             anon => $anon };
}

sub rss_redis_mem {
    my ($port) = @_;
    my $s = redis_connect($port) or die "connect redis: $!\n";
    my ($used) = redis_call($s, 'INFO', 'memory') =~ /^used_memory:(\d+)/m;
    return { used => int(($used // 0) / 1024),
             keys => redis_call($s, 'DBSIZE') };
}

# the wrk script; markers: one file per thread, made when it has done
# its share, so that the caller can stop wrk then (wrk itself would
# wait for the end of -d)
sub rss_lua {
    my ($p) = @_;
    my $wrong = join ",\n", map {
        '"Basic ' . encode_base64("$CREATOR:wrong-$_", '') . '"'
    } 1 .. 2000;
    return <<"LUA";
local A, C, B, S = "/a/$p->{a}", "/a/$p->{c}", "$p->{b}", "$p->{sub}"
local basic = { Authorization = "$AUTH" }
local bearer = { Authorization = "$p->{bearer}" }
local wrong = {
$wrong
}
local sizes = { 10, 200, 2000, 8000 }
local bodies = {}
for k, n in ipairs(sizes) do bodies[k] = string.rep("x", n) end
local poll = A .. "/subscriptions/" .. B .. "/" .. S

local share, marker, threads = 0, "", {}
tid = 0    -- a global: setup() sets it in each thread
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
function init(args)
    share = tonumber(args[1])
    marker = args[2] .. "-" .. tid
end

local i, k, w, seq = 0, 0, 0, 0
local kinds = {
    function() return wrk.format("GET", A .. "/properties/name", basic) end,
    function()
        k = k % #sizes + 1
        return wrk.format("PUT", A .. "/properties/p" .. k,
            { Authorization = basic.Authorization,
              ["Content-Type"] = "text/plain" }, bodies[k])
    end,
    function() return wrk.format("GET", A .. "/properties/p" .. k, basic) end,
    function() return wrk.format("GET", A .. "/trust", basic) end,
    function()
        return wrk.format("GET", A .. "/trust/friend/" .. B, bearer)
    end,
    function() return wrk.format("GET", poll, bearer) end,
    function() return wrk.format("GET", A .. "/meta") end,
    function() return wrk.format("GET", A .. "/properties", basic) end,
    function()
        w = w % #wrong + 1
        return wrk.format("GET", C .. "/properties/name",
            { Authorization = wrong[w] })
    end,
    function()
        return wrk.format("PUT", poll,
            { Authorization = bearer.Authorization,
              ["Content-Type"] = "application/json" },
            '{"sequence":' .. seq .. '}')
    end,
}
function request()
    i = i % #kinds + 1
    return kinds[i]()
end

counts, answered = {}, 0
local stopped = false
function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
    answered = answered + 1
    -- the newest sequence a poll showed: what the next clear clears
    if body and string.find(body, '"sequence"', 1, true) then
        for n in string.gmatch(body, '"sequence":(%d+)') do
            n = tonumber(n)
            if n > seq then seq = n end
        end
    end
    if answered >= share and not stopped then
        stopped = true
        local f = io.open(marker, "w")
        if f then f:close() end
        wrk.thread:stop()
    end
end

-- the answers of all threads, for the caller
function done(summary, latency, requests)
    for _, t in ipairs(threads) do
        for status, n in pairs(t:get("counts")) do
            io.write(string.format("status %d %d\\n", status, n))
        end
    end
end
LUA
}

# one slice: wrk until each thread has $share answers; returns
# { requests, rps, counts => { status => n } }
sub rss_slice {
    my ($ngx, $lua, $n, $conns, $label) = @_;
    my $share = int(($n + $THREADS - 1) / $THREADS);
    my $marker = "$TMP/rss-$label.done";
    my $log = "$TMP/rss-$label.wrk.txt";
    # long enough for any slice; we stop wrk when the markers are there
    my @cmd = ('wrk', "-t$THREADS", "-c$conns", '-d3600s', '--timeout',
        '10s', '-s', $lua, "http://127.0.0.1:$ngx->{port}/", '--',
        $share, $marker);
    spew($log, "@cmd\n");
    my $t0 = time;
    my $pid = spawn('wrk', $log, @cmd);
    while (alive($pid)) {
        last if $THREADS == grep { -e "$marker-$_" } 1 .. $THREADS;
        # a script that does not load: wrk goes on with GET / for -d
        die "wrk: " . slurp($log) if slurp($log) =~ /\Q$lua\E:/;
        sleep 0.05;
    }
    my $secs = time - $t0;
    stop($pid, 'INT', 10);
    delete $STATUS{$pid};
    my $out = slurp($log);
    my %counts;
    $counts{$1} += $2 while $out =~ /^status (\d+) (\d+)$/mg;
    my $total = 0;
    $total += $_ for values %counts;
    $total >= $n or die "wrk answered $total of $n requests:\n$out";
    my $err = $out =~ /Socket errors: connect (\d+), read (\d+), write (\d+),
                       \s timeout \s (\d+)/x ? $1 + $2 + $3 + $4 : 0;
    # a tenth are the wrong passphrases (403, then 429 once the actor's
    # derivations are used up); a tenth are polls of the one subscription
    # from all connections, answered 409 when they keep colliding; the
    # rest must succeed
    my $bad = $err;
    $bad += $counts{$_} for grep { !/^(200|204|403|409|429)$/ } keys %counts;
    my $refused = ($counts{403} // 0) + ($counts{429} // 0);
    $bad <= $total / 1000 && abs($refused - $total / 10) < $conns * 2
        && ($counts{409} // 0) <= $total / 10 + $conns
        or die "unexpected answers (" . join(', ', map { "$_: $counts{$_}" }
            sort keys %counts) . ", $err socket errors):\n$out";
    return { requests => $total, rps => $total / $secs,
             counts => \%counts };
}

sub group_rss {
    my ($module, $bin, $redis) = @_;
    my $first = @NGINX;
    my $b_port = free_port();
    my $ngx = start_nginx('nginx-rss', $module, $bin, $redis,
        subs_servers($b_port));
    push @NGINX, $ngx;
    my $abase = "http://127.0.0.1:$ngx->{port}/a";
    my $bbase = "http://127.0.0.1:$b_port/b";
    say_ "nginx on 127.0.0.1:$ngx->{port} (A) and 127.0.0.1:$b_port (B), "
        . 'rss';

    my ($a, $c) = create_actors($abase, 2, 1);
    my ($bid) = create_actors($bbase, 1, 0);
    my $http = {};
    my $r = call($http, 'POST', "$abase/$a/trust", $AUTH,
        encode_json({ url => "$bbase/$bid", relationship => 'friend' }), 201);
    my $j = eval { decode_json($r->{content}) } // {};
    $j->{approved} && $j->{peer_approved} && $j->{secret}
        or die "trust $a -> $bid not approved at once: $r->{content}\n";
    my $bearer = "Bearer $j->{secret}";
    $r = call($http, 'POST', "$abase/$a/subscriptions/$bid", $bearer,
        '{"target":"properties"}', 201);
    my $sub = (eval { decode_json($r->{content}) } // {})->{subscriptionid}
        // die "no subscriptionid: $r->{content}\n";
    for my $k ('name', 1 .. 4) {
        call($http, 'PUT', "$abase/$a/properties/" . ($k =~ /\d/ ? "p$k" : $k),
            $AUTH, encode_json("v$k"), 204);
    }
    # each kind once, as wrk will send it
    my $poll = "$abase/$a/subscriptions/$bid/$sub";
    call($http, 'GET', "$abase/$a/trust", $AUTH, undef, 200);
    call($http, 'GET', "$abase/$a/trust/friend/$bid", $bearer, undef, 200);
    call($http, 'GET', "$abase/$a/meta", undef, undef, 200);
    call($http, 'GET', "$abase/$a/properties", $AUTH, undef, 200);
    $j = decode_json(call($http, 'GET', $poll, $bearer, undef, 200)
        ->{content});
    call($http, 'PUT', $poll, $bearer,
        encode_json({ sequence => $j->{sequence} }), 204);
    $http = {};

    my $lua = "$TMP/rss.lua";
    spew($lua, rss_lua({ a => $a, c => $c, b => $bid, sub => $sub,
                         bearer => $bearer }));
    my $slice = int($RSS_REQUESTS / $RSS_SLICES);
    my @points = ([ 'setup', 0, undef, rss_worker_mem($ngx),
                    rss_redis_mem($redis) ]);
    say_ sprintf 'worker %d: VmRSS %d kB, VmHWM %d kB after setup',
        @{ $points[0][3] }{qw(pid rss hwm)};
    my ($done, %counts) = (0);
    for my $s (1 .. $RSS_SLICES) {
        my $w = rss_slice($ngx, $lua, $slice, $CONNS, $s);
        $done += $w->{requests};
        $counts{$_} += $w->{counts}{$_} for keys %{ $w->{counts} };
        my $m = rss_worker_mem($ngx);
        push @points, [ "slice $s", $done, $w->{rps}, $m,
                        rss_redis_mem($redis) ];
        say_ sprintf 'slice %d: %d requests, %.0f req/s, VmRSS %d kB, '
            . 'VmHWM %d kB', $s, $done, $w->{rps}, $m->{rss}, $m->{hwm};
    }
    # and once more after a pause: what an idle worker keeps
    sleep 2;
    push @points, [ 'idle 2 s', $done, undef, rss_worker_mem($ngx),
                    rss_redis_mem($redis) ];
    # the subscription still answers, with what is left since the last
    # clear
    call({}, 'GET', $poll, $bearer, undef, 200);

    stop_group();

    my @rows;
    my $prev;
    for my $p (@points) {
        my ($label, $n, $rps, $m, $rd) = @$p;
        push @rows, [ $label, $n, defined $rps ? sprintf('%.0f', $rps) : '-',
            $m->{rss}, $m->{hwm},
            defined $prev ? sprintf('%+d', $m->{rss} - $prev) : '-',
            $m->{heap}, $m->{anon}, $rd->{used}, $rd->{keys} ];
        $prev = $m->{rss};
    }
    my $note = sprintf "One worker, %d wrk connections, %d slices of %d "
        . "requests. Each cycle of ten: GET a property, PUT one of p1..p4 "
        . "(10, 200, 2000, 8000 bytes), GET it, GET /trust (Basic), GET "
        . "/trust/friend/<B> (B's Bearer), poll B's subscription (Bearer), "
        . "GET /meta, GET /properties, a wrong passphrase on a second "
        . "actor (2000 different ones), and a clear of the subscription "
        . "up to the newest sequence seen. Answers: %s. RSS change: "
        . "against the row above; heap: malloc's main heap, anon: other "
        . "anonymous maps (thread stacks and arenas), both Rss from "
        . "/proc/<pid>/smaps.\n", $CONNS, $RSS_SLICES, $slice,
        join(', ', map { "$_: $counts{$_}" } sort keys %counts);
    return { title => 'Worker memory over mixed requests, one worker',
             head => \@RSS_HEAD, rows => \@rows, note => $note,
             failed => [], problems => [ group_problems($first) ] };
}

# ---------------------------------------------------------------------------

sub main {
    @ARGV >= 2 or usage();
    my ($module, $bin, @want) = @ARGV;
    for my $g (@want) {
        grep { $_ eq $g } @GROUPS or usage();
    }
    my %want = map { $_ => 1 } @want ? @want : @GROUPS;
    -f $module or die "no module at $module (./build.sh build)\n";
    -x $bin    or die "no nginx binary at $bin\n";
    for my $tool (qw(wrk redis-server)) {
        grep { -x "$_/$tool" } split /:/, $ENV{PATH}
            or die "$tool is not installed (./build.sh deps)\n";
    }
    $module = abs_path($module);

    $TMP = tempdir('actingweb-bench.XXXXXX', TMPDIR => 1);
    # workers run as nobody when the master is root: they must get in
    chmod 0755, $TMP;

    my %ver = (
        nginx => capture_line($bin, '-v'),
        redis => capture_line('redis-server', '--version'),
        wrk   => capture_line('wrk', '-v'),
    );
    $ver{nginx} =~ s/^nginx version: //;
    $ver{redis} =~ s/^Redis server v=(\S+).*/redis $1/;
    $ver{wrk}   =~ s/ Copyright.*//;

    my $redis = start_redis();
    say_ "redis-server on 127.0.0.1:$redis";

    # http's setup failing aborts the run, as it always did; the others
    # fail their own section only
    my @sections;
    push @sections, group_http($module, $bin, $redis) if $want{http};
    for ([ trust => \&group_trust, 'Trust handshakes, one worker' ],
         [ slowpeer => \&group_slowpeer,
           'Property reads while peers are slow, one worker' ],
         [ peerops => \&group_peerops, 'Peer operations, one worker' ],
         [ subs => \&group_subs, 'Subscriptions, one worker' ],
         [ delivery => \&group_delivery, 'Callback delivery, one worker' ],
         [ rss => \&group_rss,
           'Worker memory over mixed requests, one worker' ])
    {
        my ($g, $fn, $title) = @$_;
        next unless $want{$g};
        my $first = @NGINX;
        my $sec = eval { $fn->($module, $bin, $redis) } || do {
            die $@ if $INTERRUPTED;
            (my $err = $@) =~ s/\s+$//;
            say_ "$g FAILED: $err";
            stop_group();
            +{ title => $title, head => [], rows => [], note => '',
               failed => [ [ $title, $err ] ],
               problems => [ group_problems($first) ] };
        };
        # a group may return several sections
        push @sections, ref $sec eq 'ARRAY' ? @$sec : $sec;
    }

    cleanup();

    my $md = "# Benchmark: last run\n\n"
        . '- date: ' . strftime('%Y-%m-%d %H:%M:%S %z', localtime) . "\n"
        . "- versions: $ver{nginx}, $ver{redis}, $ver{wrk}\n"
        . '- machine: ' . machine() . "\n"
        . '- load average before the run: ' . $LOADAVG . "\n"
        . "- command: `$COMMAND`\n"
        . "- wrk: -t$THREADS, ${SECONDS}s per run, --latency\n";
    my $failed = 0;
    for my $s (@sections) {
        print "\n== $s->{title}\n\n";
        $md .= "\n## $s->{title}\n\n";
        if (@{ $s->{rows} }) {
            print text_table($s->{head}, @{ $s->{rows} }), "\n", $s->{note};
            $md .= md_table($s->{head}, @{ $s->{rows} }) . "\n" . $s->{note};
        }
        if (my @p = @{ $s->{problems} }) {
            print "\nnginx error log (warn and worse, count x line):\n";
            printf "  %5d x %s\n", @$_ for @p;
            $md .= "\nnginx error log, warn and worse (count x line):\n\n"
                . join('', map { sprintf "    %5d x %s\n", @$_ } @p);
        }
        for my $f (@{ $s->{failed} }) {
            $failed++;
            print "\n$f->[0] FAILED:\n",
                map { "    $_\n" } split /\n/, $f->[1];
            $md .= "\n$f->[0] FAILED:\n\n"
                . join('', map { "    $_\n" } split /\n/, $f->[1]);
        }
    }
    my $out = dirname(abs_path(__FILE__)) . '/last-run.md';
    spew($out, $md);
    say_ "wrote $out";

    if ($failed) {
        say_ "$failed scenario(s) FAILED";
        exit 1;
    }
    exit 0;
}

sub machine {
    my ($model) = slurp('/proc/cpuinfo') =~ /^model name\s*:\s*(.*)$/m;
    my $cpus = () = slurp('/proc/cpuinfo') =~ /^processor\s*:/mg;
    chomp(my $kernel = capture_line('uname', '-r'));
    return sprintf '%d CPUs (%s), Linux %s, everything on loopback',
        $cpus, $model // 'unknown', $kernel;
}

# errors outside a scenario: say so plainly, exit 1 (not some errno)
eval { main(); 1 } or do {
    die $@ if $INTERRUPTED;
    print STDERR "bench: error: $@";
    exit 1;
};
