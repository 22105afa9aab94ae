package Test::Nginx::Compat::Server;

# nginx process and configuration management for the compat runner
# (t/lib/compat/Test/Nginx/Socket.pm).  Private to that runner: test files
# must not use this module directly, because it does not exist when the
# real Test::Nginx from CPAN is installed.
#
# Behaviour mirrored from the real Test::Nginx::Util (facts read from the
# openresty/test-nginx sources; the code below is our own):
#   * nginx.conf is regenerated and nginx restarted for every block that
#     has a "--- config" section; a block without one reuses the running
#     server.
#   * servroot (t/servroot, or $TEST_NGINX_SERVROOT) has conf/, logs/ and
#     html/; conf, logs, html and *_temp/*_cache are wiped before each start.
#   * "$TEST_NGINX_FOO" in main_config / http_config / config /
#     post_main_config / user_files is replaced by the environment value;
#     an undefined variable aborts the run.  TEST_NGINX_RAND_PORT_<n> gets a
#     free random port, fixed for the duration of one block.
#   * daemon on, master_process off (TEST_NGINX_MASTER_PROCESS), one worker,
#     error_log at debug level (TEST_NGINX_LOG_LEVEL), listen on 1984
#     (TEST_NGINX_SERVER_PORT / TEST_NGINX_PORT), server_name localhost,
#     client_max_body_size 30M and a default "location /" serving html/.
#   * TEST_NGINX_LOAD_MODULES: load_module lines, emitted after main_config.
#   * TEST_NGINX_USE_VALGRIND: nginx runs in the foreground under valgrind
#     and is stopped at the end of each block.
#   * Stopping: QUIT, wait up to timeout() seconds, then KILL.

use strict;
use warnings;

use Cwd ();
use Exporter 'import';
use File::Path qw(make_path remove_tree);
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(bail_out);

sub _find_in_path {
    my ($prog) = @_;
    return $prog if $prog =~ m{/};
    for my $dir (split /:/, $ENV{PATH} || '') {
        next if $dir eq '';
        my $f = "$dir/$prog";
        return $f if -f $f && -x _;
    }
    return undef;
}

# ---- settings (changed through the API functions in Socket.pm) ----------

our $NginxBinary = $ENV{TEST_NGINX_BINARY}
    || _find_in_path('nginx') || '/usr/sbin/nginx';
our $Workers           = 1;
our $WorkerConnections = 64;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
    || 1984;
our $ClientPort = $ENV{TEST_NGINX_CLIENT_PORT} || $ENV{TEST_NGINX_PORT}
    || $ServerPort;
our $NoRootLocation    = 0;
our $SleepTime         = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
our $EventType         = $ENV{TEST_NGINX_EVENT_TYPE};
our $LoadModules       = $ENV{TEST_NGINX_LOAD_MODULES};
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};
our $Randomize         = $ENV{TEST_NGINX_RANDOMIZE};
our $ForceRestart      = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
    ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $ConfigPreamble    = '';
our @EnvToNginx;
our @CleanupHandlers;

if (defined $WorkerUser && $WorkerUser !~ /^\w+(?:\s+\w+)?$/) {
    die "bad TEST_NGINX_WORKER_USER value: $WorkerUser\n";
}

srand($$ ^ time);

if ($Randomize) {
    $ServerPort = $ClientPort = free_port({}) or die "no free port\n";
}

our $ServRoot = $Randomize
    ? File::Spec->rel2abs("t/servroot_$ServerPort")
    : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

our $NginxVersion;      # e.g. 1.022001 for 1.22.1
our $NginxConfigureArgs = '';
our $ChildPid;          # nginx pid when we run it in the foreground
our $PrevConfig;        # last "--- config" used to start nginx
our $ErrLogPos = 0;     # error.log offset already checked
our $ValgrindLogs = '';

# ---- small helpers --------------------------------------------------------

sub bail_out {
    my @msg = @_;
    cleanup();
    Test::More::BAIL_OUT(join '', @msg);
}

# Block accessors return () in list context when a section is absent:
# always call them in scalar context when passing them on.
sub parse_time {
    my ($t) = @_;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s$/;
    return $t;
}

sub free_port {
    my ($used) = @_;
    for (1 .. 1000) {
        my $port = 1985 + int rand(65535 - 1985);
        next if $used->{$port} || $port == $ServerPort;
        my $s = IO::Socket::INET->new(
            LocalAddr => $ServerAddr, LocalPort => $port,
            Proto => 'tcp', ReuseAddr => 1,
        ) or next;
        close $s;
        return $port;
    }
    return undef;
}

sub _port_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(
        LocalAddr => '0.0.0.0', LocalPort => $port, Proto => 'tcp',
        ReuseAddr => 1, Listen => 1,
    ) or return 0;
    close $s;
    return 1;
}

sub nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("cannot run \"$NginxBinary -V\" (set TEST_NGINX_BINARY?): "
                 . ($out // $!));
    }
    if ($out =~ m{nginx/(\d+)\.(\d+)\.(\d+)}) {
        $NginxVersion = sprintf '%d.%03d%03d', $1, $2, $3;
    } else {
        bail_out("cannot parse the output of \"$NginxBinary -V\": $out");
    }
    $NginxConfigureArgs = $1 if $out =~ /^configure arguments: (.*)$/m;
    return $NginxVersion;
}

# Replace $TEST_NGINX_* in a config text.  $ports holds the random ports
# picked for this block so that all sections agree on them.
sub expand_env {
    my ($text, $name, $ports) = @_;
    return $text unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            if (!defined $ports->{$var}) {
                my %used = map { $_ => 1 } values %$ports;
                $ports->{$var} = free_port(\%used)
                    // bail_out("$name - no free port for $var");
            }
            $val = $ports->{$var};
        } elsif (defined $ENV{$var}) {
            $val = $ENV{$var};
        } else {
            bail_out("$name - environment variable $var is not defined");
        }
        $val;
    }ge;
    return $text;
}

# ---- server root and nginx.conf -------------------------------------------

sub setup_server_root {
    if (-d $ServRoot) {
        remove_tree($ConfDir, $HtmlDir, $LogDir,
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        make_path($d) unless -d $d;
        # workers may run as another user when master_process is on
        chmod 0755, $d;
    }
    # Same default page as the real runner, so "GET /" behaves alike.
    _write_file("$HtmlDir/index.html",
        '<html><head><title>It works!</title></head>'
        . '<body>It works!</body></html>');
}

sub _write_file {
    my ($path, $data) = @_;
    if ($path =~ m{^(.*)/[^/]+$} && !-d $1) {
        make_path($1);
    }
    open my $fh, '>', $path or bail_out("cannot write $path: $!");
    binmode $fh;
    print {$fh} $data;
    close $fh;
}

# "--- user_files": ">>> name [touch-date]" headers followed by the content,
# or (with eval) [[name, content, date], ...].
sub write_user_files {
    my ($block, $ports) = @_;
    my $files = $block->user_files;
    return unless defined $files;
    my @list;
    if (ref $files eq 'ARRAY') {
        @list = @$files;
    } else {
        my $cur;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                $cur = [$1, '', $2];
                push @list, $cur;
            } elsif ($cur) {
                $cur->[1] .= $line;
            }
        }
    }
    for my $f (@list) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        _write_file($path, expand_env($body // '', $block->name, $ports));
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("cannot touch $path");
        }
    }
}

sub _has_module {
    my ($mod) = @_;
    nginx_version();
    return $NginxConfigureArgs !~ /--without-http_${mod}_module\b/;
}

sub write_config {
    my ($block, $config, $ports) = @_;
    my $name = $block->name;

    my $main  = expand_env($block->main_config // '', $name, $ports);
    my $http  = expand_env($block->http_config // '', $name, $ports);
    my $post  = expand_env($block->post_main_config // '', $name, $ports);
    my $sname = $block->server_name // $ServerName;
    my $level = $block->log_level || $LogLevel;
    my $errlog = $block->error_log_file || $ErrLogFile;
    my $daemon = $UseValgrind ? 'off' : 'on';

    # like the real runner, load_module lines come after main_config
    if ($LoadModules) {
        $main .= join '', map { "\nload_module $_;" }
                          grep { length } split /\s+/, $LoadModules;
    }

    # Keep temp files inside servroot (distribution builds point them at
    # e.g. /var/lib/nginx, unusable for non-root runs).  Skipped when the
    # block sets the directive itself.
    my $temps = '';
    for my $t (['client_body', 1], ['proxy', _has_module('proxy')],
               ['fastcgi', _has_module('fastcgi')],
               ['uwsgi', _has_module('uwsgi')],
               ['scgi', _has_module('scgi')])
    {
        my ($what, $ok) = @$t;
        next if !$ok || $http =~ /\b${what}_temp_path\b/;
        $temps .= "    ${what}_temp_path $ServRoot/${what}_temp;\n";
    }

    my $envs = join '', map { "env $_;\n" }
        qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS),
        map { /\s/ ? "'$_'" : $_ } @EnvToNginx;

    (my $qname = $sname) =~ s/(['\\])/\\$1/g;

    my $root = $NoRootLocation ? '' : <<"EOT";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
EOT

    my $events = $EventType ? "    use $EventType;\n" : '';
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0             ? "user root;\n"
             : '';

    my $conf = <<"EOT";
# generated by the Test::Nginx compat runner for: $name
worker_processes  $Workers;
daemon $daemon;
master_process $MasterProcess;
error_log $errlog $level;
pid $PidFile;
$envs
$main

http {
    access_log $AccLogFile;
    default_type text/plain;
    keepalive_timeout 68;
$temps
$http

    server {
        listen $ServerPort;
        server_name '$qname';
        client_max_body_size 30M;

$ConfigPreamble
$config
$root    }
}

$post

events {
    accept_mutex off;
    worker_connections $WorkerConnections;
$events}
$user
EOT
    _write_file($ConfFile, $conf);
}

# ---- process control ------------------------------------------------------

sub is_running {
    my ($pid) = @_;
    return 0 unless $pid && kill(0, $pid);
    # A zombie still "exists" for kill 0; treat it as stopped (PID 1 in a
    # container does not always reap orphaned daemons promptly).
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        return 0 if $stat =~ /^\d+ \(.*\) [ZX]/s;
    }
    return 1;
}

sub read_pid {
    open my $fh, '<', $PidFile or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)/;
    return $1;
}

# QUIT, wait up to timeout() seconds, then KILL (the process group too when
# the process leads one, as our valgrind children do).
sub kill_process {
    my ($pid, $what) = @_;
    return unless is_running($pid);
    kill 'QUIT', $pid;
    my $deadline = time + $Timeout;
    while (time < $deadline) {
        waitpid($pid, WNOHANG);
        return unless is_running($pid);
        sleep 0.02;
    }
    warn "$what - nginx $pid still running after QUIT, sending KILL\n";
    my $grp = getpgrp($pid);
    kill 'KILL', (defined $grp && $grp == $pid ? -$pid : $pid);
    for (1 .. 100) {
        waitpid($pid, WNOHANG);
        last unless is_running($pid);
        sleep 0.02;
    }
}

sub stop_nginx {
    my ($what) = @_;
    my $pid = read_pid();
    $pid = $ChildPid if !$pid && $ChildPid;
    kill_process($pid, $what) if $pid;
    if ($ChildPid) {
        kill_process($ChildPid, $what) if is_running($ChildPid);
        waitpid($ChildPid, WNOHANG);
        undef $ChildPid;
    }
    unlink $PidFile;
}

sub nginx_running {
    my $pid = read_pid();
    return $pid && is_running($pid);
}

sub _valgrind_cmd {
    my ($cmd) = @_;
    my $opts = $UseValgrind =~ /^\d+$/
        ? '--tool=memcheck --leak-check=full --show-leak-kinds=definite'
          . ' --errors-for-leak-kinds=definite'
        : $UseValgrind;
    # valgrind.suppress is looked up in the current directory (the project
    # root, as for the real runner) and next to the t/ directory.
    my ($supp) = grep { -f } 'valgrind.suppress',
        File::Spec->catfile(_t_parent(), 'valgrind.suppress');
    $supp = $supp ? "--suppressions=" . Cwd::abs_path($supp) : '';
    return "valgrind -q --num-callers=100 --gen-suppressions=all"
         . " --log-file=$LogDir/valgrind.%p.log $opts $supp $cmd";
}

sub _t_parent {
    my $dir = Cwd::abs_path((File::Spec->splitpath(
        File::Spec->rel2abs($0)))[1]) // '.';
    return File::Spec->catdir($dir, File::Spec->updir);
}

# Start nginx for a block.  Returns the exit status of the start command
# (0 on success); only non-zero when $may_fail (the "--- must_die" case),
# otherwise failures abort the run like the real runner does.
sub start_nginx {
    my ($name, $may_fail) = @_;
    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile";

    if ($UseValgrind && !$may_fail) {
        # nginx runs in the foreground here, so a failed bind() would only
        # show up as a dead child while requests reach whoever holds the
        # port: make sure it is free first.
        my $deadline = time + 30;
        until (_port_free($ServerPort)) {
            bail_out("$name - port $ServerPort is in use by another "
                     . "process (another test run?)") if time > $deadline;
            sleep 0.2;
        }
        $cmd = _valgrind_cmd($cmd);
        my $pid = fork;
        bail_out("$name - fork failed: $!") unless defined $pid;
        if ($pid == 0) {
            setpgrp(0, 0);
            exec "exec $cmd" or POSIX::_exit(127);
        }
        $ChildPid = $pid;
        sleep $SleepTime;
        return 0;
    }

    my $waited = 0;
    my $tries = 0;
    while (1) {
        my $errf = File::Temp->new;
        system("$cmd >/dev/null 2>" . $errf->filename);
        my $status = $?;
        my $err = do { local (@ARGV, $/) = ($errf->filename); <> } // '';
        print STDERR $err if length $err;
        return $status if $may_fail || $status == 0;
        # retry only when the port is still held by a previous server
        if ($err =~ /Address already in use|could not bind/ && $waited < 30) {
            my $delay = 0.1 * ++$tries;
            $delay = 1 if $delay > 1;
            sleep $delay;
            $waited += $delay;
            next;
        }
        $err =~ s/\s+$//;
        $err =~ s/\n/; /g;    # TAP shows one line of a bail-out reason
        my $hint = $err =~ /invalid event type/
            ? " (TEST_NGINX_EVENT_TYPE=$EventType: this nginx binary was"
              . " built without that event module)" : '';
        bail_out("$name - cannot start nginx with \"$cmd\" "
                 . "(status $status): $err$hint");
    }
}

# Lines of error.log written since the last call (all of it when
# check_accum_error_log is on).  Sleeps a little first so that lines
# logged after the response was sent are there.
sub error_log_lines {
    sleep $SleepTime * 3;
    open my $fh, '<', $ErrLogFile or return [];
    seek $fh, $ErrLogPos, 0 if !$CheckAccumErrLog && $ErrLogPos;
    my @lines = <$fh>;
    $ErrLogPos = tell $fh unless $CheckAccumErrLog;
    close $fh;
    return \@lines;
}

sub access_log_lines {
    sleep $SleepTime * 3;
    open my $fh, '<', $AccLogFile or return [];
    my @lines = <$fh>;
    return \@lines;
}

# After a valgrind-run block: stop nginx so that valgrind prints its leak
# report, and return whatever valgrind logged ('' when clean).
sub finish_valgrind_block {
    my ($name) = @_;
    return '' unless $UseValgrind && $ChildPid;
    stop_nginx($name);
    my $out = '';
    for my $f (sort glob "$LogDir/valgrind.*.log") {
        open my $fh, '<', $f or next;
        local $/;
        my $text = <$fh> // '';
        $out .= $text;
        unlink $f;
    }
    return $out;
}

sub cleanup {
    for my $h (@CleanupHandlers) {
        $h->();
    }
    @CleanupHandlers = ();
    stop_nginx('cleanup') if $ChildPid;
}

my $OrigPid = $$;

END {
    if ($$ == $OrigPid) {
        local $?;
        cleanup();
        if (!$ENV{TEST_NGINX_NO_CLEAN} || $UseValgrind) {
            stop_nginx('END') if -f $PidFile;
        }
        if ($Randomize && $ServRoot =~ m{/t/servroot_\d+$}) {
            remove_tree($ServRoot);
        }
    }
}

1;
