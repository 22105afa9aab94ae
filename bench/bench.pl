#!/usr/bin/env perl
#
# bench.pl MODULE.so NGINX_BINARY  -- run by `./build.sh bench`
#
# Measures ngx_http_actingweb_module with wrk against a plain
# `return 200` location on the same nginx, then again with Redis behind
# a latency proxy, to show that a worker does not wait on Redis.
# See docs/performance.md.
#
# Environment:
#   BENCH_SECONDS=10      duration of each wrk run
#   BENCH_DELAY_MS=5      latency the proxy adds in EACH direction
#   BENCH_PROXY_CONNS=256 wrk connections for the second round through
#                         the proxy (the first uses 64, like the others)
#   BENCH_FLOOD_RATE=2000 wrong-passphrase requests per second sent
#                         during the flood row
#   BENCH_KEEP=1          keep the temp dir (logs, configs) afterwards

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP qw(decode_json encode_json);
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);

use lib dirname(abs_path(__FILE__));
use LatencyProxy;

my $SECONDS     = env_int('BENCH_SECONDS',     10);
my $DELAY_MS    = env_int('BENCH_DELAY_MS',    5);
my $PROXY_CONNS = env_int('BENCH_PROXY_CONNS', 256);
my $CONNS       = 64;
my $FLOOD_RATE  = env_int('BENCH_FLOOD_RATE', 2000);
my $THREADS     = 2;

my $CREATOR    = 'bench';
my $PASSPHRASE = 'benchpass';
my $AUTH       = 'Basic ' . encode_base64("$CREATOR:$PASSPHRASE", '');

# the exact command, for the report (build.sh execs us, so this is it)
my $COMMAND = join ' ',
    (map { "$_=$ENV{$_}" } grep { defined $ENV{$_} }
        qw(BENCH_SECONDS BENCH_DELAY_MS BENCH_PROXY_CONNS)),
    'perl', $0, @ARGV;

my $MAIN_PID = $$;
my %PROCS;          # pid => name, everything we started and must stop
my %STATUS;         # pid => wait status, once reaped
my $TMP;            # the temp dir
my $INTERRUPTED;    # the name of the signal that stopped us
my %SIGNUM = (HUP => 1, INT => 2, TERM => 15);

# ---------------------------------------------------------------------------

sub usage {
    die "usage: $0 /abs/path/ngx_http_actingweb_module.so /usr/sbin/nginx\n"
        . "(normally run as ./build.sh bench; BENCH_SECONDS=N to shorten)\n";
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
# it is ready as soon as this returns.
sub start_proxy {
    my ($redis_port) = @_;
    my $lsn = IO::Socket::INET->new(
        Listen => 1024, LocalAddr => '127.0.0.1', LocalPort => 0,
        ReuseAddr => 1,
    ) or die "proxy listen: $!\n";

    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        eval {
            LatencyProxy::run(listen => $lsn, host => '127.0.0.1',
                port => $redis_port, delay => $DELAY_MS / 1000);
        };
        warn "latency proxy: $@";
        POSIX::_exit(1);    # not exit: END belongs to the parent
    }
    $PROCS{$pid} = 'latency-proxy';
    my $port = $lsn->sockport;
    close $lsn;
    return $port;
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

sub start_nginx {
    my ($name, $module, $bin, $redis_port) = @_;
    my $dir = "$TMP/$name";
    mkdir $dir or die "$dir: $!\n";
    my $port = free_port();

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
    actingweb_redis_prefix bench;

    server {
        listen 127.0.0.1:$port;
        location = /plain { return 200 "ok"; }
        location / { actingweb; }
    }
}
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
    my @cmd = ('wrk', "-t$THREADS", "-c$conns", "-d${SECONDS}s",
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
    my @rows = @_;
    my @w = map { length } @HEAD;
    for my $row (@rows) {
        $w[$_] = length $row->[$_] > $w[$_] ? length $row->[$_] : $w[$_]
            for 0 .. $#$row;
    }
    my $fmt = join('  ', "%-$w[0]s", map { "%$w[$_]s" } 1 .. $#w) . "\n";
    return join '', map { sprintf $fmt, @$_ } \@HEAD, @rows;
}

sub md_table {
    my @rows = @_;
    my $t = '| ' . join(' | ', @HEAD) . " |\n";
    $t .= '|' . join('|', ':---', map { '---:' } 1 .. $#HEAD) . "|\n";
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

sub main {
    @ARGV == 2 or usage();
    my ($module, $bin) = @ARGV;
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
    my $direct = start_nginx('nginx-direct', $module, $bin, $redis);
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
        my $proxy = start_proxy($redis);
        %ping = (direct => ping_ms($redis), proxy => ping_ms($proxy));
        say_ sprintf 'latency proxy on 127.0.0.1:%d: PING %.2f ms direct, '
            . '%.2f ms through it', $proxy, $ping{direct}, $ping{proxy};

        # one nginx at a time: they would compete for the two cores
        stop($direct->{pid}, 'QUIT', 10);
        $far = start_nginx('nginx-proxy', $module, $bin, $proxy);
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

    cleanup();    # before reading the logs: shutdown may log too

    my ($plain) = grep { !$_->{error} } $results[0];
    my @rows = table_rows(\@results, $plain ? $plain->{rps} : undef);
    my @problems = map { log_problems($_->{log}) } grep { $_ } $direct, $far;
    my $failed = grep { $_->{error} } @results;

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

    print "\n", text_table(@rows), "\n", $note;
    if (@problems) {
        print "\nnginx error log (warn and worse, count x line):\n";
        printf "  %5d x %s\n", @$_ for @problems;
    }

    my $md = "# Benchmark: last run\n\n"
        . '- date: ' . strftime('%Y-%m-%d %H:%M:%S %z', localtime) . "\n"
        . "- versions: $ver{nginx}, $ver{redis}, $ver{wrk}\n"
        . '- machine: ' . machine() . "\n"
        . "- command: `$COMMAND`\n"
        . "- wrk: -t$THREADS, ${SECONDS}s per run, --latency\n\n"
        . md_table(@rows) . "\n" . $note;
    if (@problems) {
        $md .= "\nnginx error log, warn and worse (count x line):\n\n"
            . join('', map { sprintf "    %5d x %s\n", @$_ } @problems);
    }
    for my $r (grep { $_->{error} } @results) {
        $md .= "\n$r->{label} FAILED:\n\n"
            . join('', map { "    $_\n" } split /\n/, $r->{error});
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
