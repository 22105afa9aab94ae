package ActingWeb::Test;

# Test helper for ngx_http_actingweb_module.  Every .t file starts with
#
#     use lib 't/lib';
#     use ActingWeb::Test;
#
# and then uses the normal Test::Nginx::Socket API (run_tests(), sections,
# ...) plus the helpers below.  It works unchanged with the real
# Test::Nginx::Socket (CPAN) and with our compat runner (t/lib/compat),
# which is picked automatically when the real one is not installed, or
# forced with TEST_NGINX_COMPAT=1.  See t/lib/README.md.
#
# What it adds:
#   * defaults: Redis host/port env vars, no_shuffle(), repeat_each(1),
#     a per-file Redis key prefix in $TEST_NGINX_REDIS_PREFIX, and a plan
#     ("no_plan") when the file declared none before run_tests();
#   * a block preprocessor that injects the actingweb_redis* directives
#     into --- http_config, adds a default --- no_error_log and expands
#     {{...}} placeholders;
#   * --- capture: values taken from a response, usable in later blocks;
#   * --- response_body_json: structural JSON comparison;
#   * redis_cmd() & co. for looking at or changing Redis state.
#
# How it plugs into the runner (both runners behave the same here, which
# was checked against the real Test::Nginx sources):
#   * block preprocessors run lazily, for each block right before it runs
#     (after all earlier blocks ran), so values captured by earlier blocks
#     can be substituted into a block's sections at that point.  Section
#     filters such as "eval" run earlier, for all blocks at once, so Perl
#     code in "eval" sections cannot read captured values directly; it can
#     return strings containing {{name}} instead, which are expanded later.
#   * add_response_body_check() callbacks get ($block, $body, $req_idx,
#     $repeated_req_idx, $dry_run) after the built-in checks of each
#     response.  They do not get the headers, so for "header:" captures we
#     wrap the runner's internal check_error_code($block, $res, ...), which
#     both runners call with the HTTP::Response before the body checks.
#   * a preprocessor can skip a block by setting its SKIP section.
#   * "--- init" code is evaluated in package Test::Nginx::Util and "eval"
#     sections in package Test::Base::Filter: the helpers are aliased into
#     both so they can be called there without a package name.

use strict;
use warnings;

use B ();
use Cwd ();
use File::Basename ();
use File::Spec ();
use IO::Socket::INET ();
use JSON::PP ();
use MIME::Base64 ();
use Scalar::Util ();

# ---- choose the runner ----------------------------------------------------

BEGIN {
    my $compat = Cwd::abs_path(File::Spec->catdir(
        File::Basename::dirname(File::Spec->rel2abs(__FILE__)),
        File::Spec->updir, 'compat'));
    my $use_compat = $ENV{TEST_NGINX_COMPAT};
    if (!$use_compat && !$INC{'Test/Nginx/Socket.pm'}) {
        eval { require Test::Nginx::Socket; 1 } or do {
            die $@ unless $@ =~ m{^Can't locate Test/Nginx/Socket\.pm };
            $use_compat = 1;
        };
    }
    if ($use_compat && !$INC{'Test/Nginx/Socket.pm'}) {
        unshift @INC, $compat;
        require Test::Nginx::Socket;
    }
}

our @EXPORT = qw(
    run_tests no_actingweb_defaults captured basic_auth
    redis_cmd redis_key redis_keys redis_cleanup wait_for_server
    block_defaults free_port peer_location start_instance stop_instance
    sink_lines
);

# Export our helpers, then let Test::Nginx::Socket export its API (and
# Test::Base's: plan, blocks, ...) into the caller, exactly as if the test
# said "use Test::Nginx::Socket @args".  Our run_tests wins because the
# exporter skips names the caller already has.
sub import {
    my ($class, @args) = @_;
    my $caller = caller;
    {
        no strict 'refs';
        *{"${caller}::$_"} = \&{"${class}::$_"} for @EXPORT;
    }
    @_ = ('Test::Nginx::Socket', @args);
    goto &{ Test::Nginx::Socket->can('import') };
}

# ---- defaults -------------------------------------------------------------

$ENV{TEST_NGINX_REDIS_HOST} ||= '127.0.0.1';
$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;

# One key prefix per test file and process, so that files (and parallel
# runs) cannot see each other's data.  Always recomputed: a child test run
# started from a test must not inherit (and then wipe) its parent's prefix.
# Kept within what actingweb_redis_prefix accepts (1-64 characters of
# A-Z a-z 0-9 _ - . :).
our $RedisPrefix = do {
    (my $base = File::Basename::basename($0)) =~ s/\.[^.]*$//;
    $base =~ s/[^A-Za-z0-9_.-]/_/g;
    "awt:" . substr($base, 0, 40) . ":$$";
};
$ENV{TEST_NGINX_REDIS_PREFIX} = $RedisPrefix;

# Injected at the top of --- http_config (variables are expanded by the
# runner); each line is left out when the block sets that directive.
our %DefaultHttpConfig = (
    actingweb_redis =>
        'actingweb_redis $TEST_NGINX_REDIS_HOST:$TEST_NGINX_REDIS_PORT;',
    actingweb_redis_prefix =>
        'actingweb_redis_prefix $TEST_NGINX_REDIS_PREFIX;',
);

# Used as --- no_error_log when a block has neither error_log nor
# no_error_log (set to undef to turn off).
our $DefaultNoErrorLog = "[error]\n[alert]\n[crit]\n[emerg]\n";

our $UseDefaults = 1;

# Call before run_tests() in files that run plain nginx without the
# ActingWeb directives (the harness self-tests).  Per block, a
# "--- no_actingweb_defaults" section does the same.
sub no_actingweb_defaults () { $UseDefaults = 0 }

Test::Nginx::Socket::no_shuffle();    # captures need the file order
Test::Nginx::Socket::repeat_each(1);

sub run_tests () {
    Test::More::plan('no_plan') unless Test::More->builder->has_plan;
    if ($UseDefaults) {
        # start from a clean slate (the module under test talks to Redis)
        eval { redis_cleanup(); 1 }
            or Test::More::diag("ActingWeb::Test: $@");
    }
    Test::Nginx::Socket::run_tests();
}

# ---- Redis ----------------------------------------------------------------

my ($Redis, $RedisUsed);

sub _redis () {
    return $Redis if $Redis;
    require Redis;
    my $server = "$ENV{TEST_NGINX_REDIS_HOST}:$ENV{TEST_NGINX_REDIS_PORT}";
    $Redis = eval {
        Redis->new(server => $server, reconnect => 0, cnx_timeout => 2,
                   read_timeout => 10, write_timeout => 10);
    } or die "cannot connect to Redis at $server "
             . "(TEST_NGINX_REDIS_HOST/PORT): $@";
    $RedisUsed = 1;
    return $Redis;
}

# redis_cmd('SET', redis_key('x'), 1), redis_cmd('HGETALL', $key), ...
# Returns what Redis.pm returns (a list in list context: use scalar() or
# an array ref where a single value is expected).  Keys are NOT prefixed
# automatically: build them with redis_key().
sub redis_cmd (@) {
    my ($cmd, @args) = @_;
    my $method = lc $cmd;
    return _redis()->$method(@args);
}

# redis_key('actor', $id) -> "<prefix>:actor:<id>"
sub redis_key (@) { join ':', $RedisPrefix, @_ }

# Keys under this file's prefix matching a glob pattern (default "*"),
# sorted, returned WITHOUT the "<prefix>:" part.
sub redis_keys (;$) {
    my $pattern = @_ ? shift : '*';
    my ($cursor, %seen) = (0);
    do {
        ($cursor, my $keys) = redis_cmd('SCAN', $cursor,
                                        MATCH => "$RedisPrefix:$pattern",
                                        COUNT => 1000);
        $seen{$_} = 1 for @$keys;
    } while ($cursor);
    return map { substr $_, length($RedisPrefix) + 1 } sort keys %seen;
}

# Delete every key of this file's prefix; returns how many were deleted.
sub redis_cleanup () {
    my @keys = map { "$RedisPrefix:$_" } redis_keys('*');
    redis_cmd('DEL', @keys) if @keys;
    return scalar @keys;
}

my $OrigPid = $$;

END {
    if ($$ == $OrigPid && $RedisUsed && !$ENV{TEST_NGINX_NO_CLEAN}) {
        local ($?, $@);
        eval { redis_cleanup() };
    }
}

# ---- placeholders -----------------------------------------------------------

our %Captured;

sub captured ($) {
    my ($name) = @_;
    return $Captured{$name} if exists $Captured{$name};
    die "ActingWeb::Test: nothing was captured as '$name'\n";
}

# Sections every block of a file gets unless it has its own, e.g.
#     block_defaults(config => "location /aw/ { actingweb; }\n");
# (a block preprocessor, so placeholders in the values are expanded too)
sub block_defaults (@) {
    my %defaults = @_;
    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;
        for my $name (sort keys %defaults) {
            $block->set_value($name => $defaults{$name})
                unless defined $block->$name;
        }
    });
}

# For clients started from "--- init": the runner's own requests wait for
# nginx to listen, theirs must too (nginx under valgrind starts slowly).
# Returns the server port.
# a free loopback port, for a second server whose port must stay the same
# for the whole file (captured URLs name it)
sub free_port {
    require IO::Socket::INET;
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    return $s->sockport;
}

# the internal location peer calls go through, as docs/example.conf has it
# (its https lines aside); extra directive lines may be given
sub peer_location {
    my $extra = join '', map { "        $_\n" } @_;
    return <<'CONF' . $extra . "    }\n";
    location = /_actingweb_peer {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_pass_request_headers off;
        proxy_set_header Host $actingweb_peer_host;
        proxy_set_header Authorization $actingweb_peer_authorization;
        proxy_set_header Content-Type application/json;
        subrequest_output_buffer_size 64k;
CONF
}

# Another nginx (one worker) on the test's Redis and prefix, in $dir, with
# the http-level text $http (its server blocks); it must serve
# "location = /status { actingweb_status; }" on $port.  For fleet tests:
# instances of one fleet.  stop_instance($dir) stops it (QUIT).
sub start_instance {
    my ($dir, $port, $http) = @_;
    require Cwd;
    require HTTP::Tiny;
    mkdir $dir;
    mkdir "$dir/logs";
    my $load = join '', map { "load_module $_;\n" }
                        split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print $fh <<"CONF";
${load}daemon on;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    actingweb_redis $ENV{TEST_NGINX_REDIS_HOST}:$ENV{TEST_NGINX_REDIS_PORT};
    actingweb_redis_prefix $ENV{TEST_NGINX_REDIS_PREFIX};
$http
}
CONF
    close $fh;
    my $bin = $ENV{TEST_NGINX_BINARY} // 'nginx';
    $bin = Cwd::abs_path($bin) if $bin =~ m{/};
    system($bin, '-p', "$dir/", '-c', "$dir/nginx.conf") == 0
        or die "instance in $dir did not start: "
             . `cat $dir/logs/error.log`;
    for (1 .. 100) {
        return if HTTP::Tiny->new->get(
            "http://127.0.0.1:$port/status")->{status} == 200;
        select undef, undef, undef, 0.05;
    }
    die "instance in $dir does not answer";
}

sub stop_instance {
    my ($dir) = @_;
    open my $fh, '<', "$dir/nginx.pid" or return;
    my $pid = <$fh>;
    close $fh;
    chomp $pid;
    return unless $pid =~ /^\d+$/;
    kill 'QUIT', $pid;
    for (1 .. 100) {
        last unless kill 0, $pid;
        select undef, undef, undef, 0.05;
    }
    unlink "$dir/nginx.pid";
}

# The lines of the callback tests' sink log ($ENV{TEST_NGINX_CBLOG}) once
# there are at least $n of them: $tries tenths of a second at most (100)
sub sink_lines {
    my ($n, $tries) = @_;
    my @l;
    for (1 .. ($tries || 100)) {
        if (open my $fh, '<', $ENV{TEST_NGINX_CBLOG}) {
            @l = <$fh>;
            chomp @l;
        }
        last if @l >= $n;
        select undef, undef, undef, 0.1;
    }
    return @l;
}

sub wait_for_server () {
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    for (1 .. 400) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 1);
        return $port if $s;
        select undef, undef, undef, 0.05;
    }
    die "nginx is not listening on port $port\n";
}

sub basic_auth ($$) {
    my ($user, $pass) = @_;
    return 'Basic ' . MIME::Base64::encode_base64("$user:$pass", '');
}

sub _uri_escape ($) {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

# Value of the placeholder text between "{{" and "}}" (already expanded
# itself), or undef when the text is not placeholder syntax at all (it is
# then left alone).  Problems are pushed onto @$errs.
sub _resolve ($$) {
    my ($arg, $errs) = @_;
    $arg =~ s/^\s+|\s+$//g;
    return '{{ANY}}' if $arg eq 'ANY';        # JSON wildcard, kept as is
    return '{{' if $arg eq 'LBRACES';         # escape for a literal "{{"
    if ($arg =~ /^env:(\w+)$/) {
        return $ENV{$1} if defined $ENV{$1};
        push @$errs, "{{env:$1}}: environment variable $1 is not set";
        return '';
    }
    return basic_auth($1, $2) if $arg =~ /^basic:([^:]*):(.*)$/s;
    return _uri_escape($1) if $arg =~ /^uri:(.*)$/s;
    if ($arg =~ /^[A-Za-z_][\w.-]*$/) {
        return $Captured{$arg} if exists $Captured{$arg};
        push @$errs, "unknown placeholder {{$arg}}: no earlier block "
                   . "captured a value with that name";
        return '';
    }
    return undef;
}

# Index just past the "}}" closing a "{{" (nesting allowed), or -1.
sub _closing ($$) {
    my ($s, $pos) = @_;
    my $depth = 1;
    while (1) {
        my $open = index $s, '{{', $pos;
        my $close = index $s, '}}', $pos;
        return -1 if $close < 0;
        if ($open >= 0 && $open < $close) {
            ($depth, $pos) = ($depth + 1, $open + 2);
        } else {
            ($depth, $pos) = ($depth - 1, $close + 2);
            return $pos if $depth == 0;
        }
    }
}

sub _expand ($$$);

# Expand placeholders in a string, innermost first ({{basic:u:{{pass}}}}).
# Substituted values are not rescanned.  $quote: quotemeta the values
# (for sections holding regular expressions).
sub _expand ($$$) {
    my ($s, $quote, $errs) = @_;
    my $out = '';
    while ((my $i = index $s, '{{') >= 0) {
        my $end = _closing($s, $i + 2);
        last if $end < 0;
        $out .= substr $s, 0, $i;
        my $inner = substr $s, $i + 2, $end - $i - 4;
        my $val = _resolve(_expand($inner, 0, $errs), $errs);
        $out .= !defined $val ? "{{$inner}}"
              : $quote        ? quotemeta $val
              :                 $val;
        $s = substr $s, $end;
    }
    return $out . $s;
}

sub _expand_deep ($$$);
sub _expand_deep ($$$) {
    my ($v, $quote, $errs) = @_;
    return $v unless defined $v;
    my $ref = ref $v;
    return _expand($v, $quote, $errs) if !$ref;
    return [ map { _expand_deep($_, $quote, $errs) } @$v ]
        if $ref eq 'ARRAY';
    return { map { $_ => _expand_deep($v->{$_}, $quote, $errs) } keys %$v }
        if $ref eq 'HASH';    # request packets: {value => ..., ...}
    if ($ref eq 'Regexp') {
        # in qr// write \{\{name\}\} (Perl warns about a bare "{{")
        (my $re = "$v") =~ s/\\\{\\\{(.*?)\\\}\\\}/{{$1}}/g;
        return $v if $re !~ /\{\{/;
        $re = _expand($re, 1, $errs);
        return qr/$re/;
    }
    return $v;
}

# Sections whose values are never expanded.  Everything else is, including
# values produced by "eval" filters and sections added by preprocessors.
my %NoExpand = map { $_ => 1 } qw(
    name description seq_num is_filtered blocks_object original_values
    capture init skip_eval SKIP ONLY LAST
);

# ---- the block preprocessor -------------------------------------------------

sub _preprocess {
    my ($block) = @_;
    my $name = "$0 " . $block->name;

    if ($UseDefaults && !defined $block->no_actingweb_defaults) {
        my $http = $block->http_config // '';
        my $seen = $http . ($block->config // '');
        my $add = '';
        for my $d (sort keys %DefaultHttpConfig) {
            $add .= "    $DefaultHttpConfig{$d}\n"
                if defined $DefaultHttpConfig{$d} && $seen !~ /\b$d\b/;
        }
        $block->set_value(http_config => $add . $http) if length $add;
    }

    if (defined $DefaultNoErrorLog && !defined $block->no_error_log
        && !defined $block->error_log && !defined $block->must_die)
    {
        $block->set_value(no_error_log => $DefaultNoErrorLog);
    }

    # Sections live in the block hash as array refs (Test::Base::Block
    # internals, the same for both runners).
    my @errs;
    for my $sec (sort keys %$block) {
        next if $sec =~ /^_/ || $NoExpand{$sec}
             || ref $block->{$sec} ne 'ARRAY';
        my $quote = $sec =~ /_(?:un)?like$/ ? 1 : 0;
        my @vals = map { _expand_deep($_, $quote, \@errs) } $block->$sec;
        $block->set_value($sec, @vals);
    }
    if (@errs) {
        # one failure listing the problems; the block itself is not run
        Test::More::fail("$name - placeholders (block not run)");
        Test::More::diag(join "\n", @errs);
        $block->set_value(SKIP => 1);
    }
}

# ---- response checks: captures and JSON ------------------------------------

our $LastResponse;    # HTTP::Response of the response being checked
my $HaveHeaderHook;

{
    # see the note at the top: lets "header:" captures see the headers
    no strict 'refs';
    no warnings qw(redefine prototype);
    my $sym = 'Test::Nginx::Socket::check_error_code';
    if (defined &$sym) {
        my $orig = \&$sym;
        my $wrap = sub { $LastResponse = $_[1]; goto &$orig };
        Scalar::Util::set_prototype(\&$wrap, prototype $orig);
        *$sym = $wrap;
        $HaveHeaderHook = 1;
    }
}

# How many responses a block gets; a non-array --- capture or
# --- response_body_json applies to the last one.
sub _n_responses ($) {
    my ($block) = @_;
    return 1 if defined $block->raw_request;
    for my $v ($block->pipelined_requests, $block->request) {
        return scalar @$v if ref $v eq 'ARRAY';
    }
    return 1;
}

sub _for_response ($$$) {
    my ($v, $idx, $block) = @_;
    return undef unless defined $v;
    return $v->[$idx] if ref $v eq 'ARRAY';
    return $idx == _n_responses($block) - 1 ? $v : undef;
}

my $JSON = JSON::PP->new->allow_nonref->canonical;

# A JSON value as a string: strings and numbers as they are, true/false,
# objects and arrays as canonical JSON.
sub _json_scalar ($) {
    my ($v) = @_;
    return $v ? 'true' : 'false' if JSON::PP::is_bool($v);
    return ref $v ? $JSON->encode($v) : $v;
}

# (value, error) for a capture spec applied to a response body
sub _extract ($$) {
    my ($how, $body) = @_;
    my $re;
    $re = $1 if $how !~ /^regex:/ && $how =~ s/\s+~\s+(.*)$//;
    my $val;
    if ($how =~ /^json:\s*(.*)$/) {
        my $path = $1;
        my $doc = eval { $JSON->decode($body // '') };
        return (undef, "response is not JSON: $@") if $@;
        my $at = '$';
        for my $seg (grep { length } split /\./, $path) {
            if (ref $doc eq 'HASH' && exists $doc->{$seg}) {
                $doc = $doc->{$seg};
            } elsif (ref $doc eq 'ARRAY' && $seg =~ /^\d+$/
                     && $seg < @$doc) {
                $doc = $doc->[$seg];
            } else {
                return (undef, "no \"$seg\" under $at in: $body");
            }
            $at .= ".$seg";
        }
        return (undef, "$at is null") unless defined $doc;
        $val = _json_scalar($doc);
    } elsif ($how =~ /^header:\s*(\S+)$/) {
        return (undef, "header captures need the check_error_code hook, "
                       . "which this Test::Nginx version lacks")
            unless $HaveHeaderHook;
        $val = $LastResponse ? $LastResponse->header($1) : undef;
        return (undef, "no $1 header in the response") unless defined $val;
    } elsif ($how =~ /^regex:(.*)$/s) {
        ($re, $val) = ($1, $body);
    } elsif ($how eq 'body') {
        $val = $body;
    } else {
        return (undef, "unknown capture kind (json:, header:, regex:, "
                       . "body)");
    }
    if (defined $re) {
        return (undef, "/$re/ does not match: " . ($val // '(undef)'))
            unless defined $val && $val =~ /$re/s;
        $val = $#+ >= 1 ? $1 : $&;
    }
    return ($val, undef);
}

sub _captures ($$$$) {
    my ($block, $body, $idx, $dry_run) = @_;
    my $spec = _for_response($block->capture, $idx, $block);
    return unless defined $spec;
    my $name = $block->name;
    for my $line (split /\n/, $spec) {
        next if $line =~ /^\s*(?:#|$)/;
        my ($var, $how) = $line =~ /^\s*([A-Za-z_][\w.-]*)\s*=\s*(.*?)\s*$/;
        if (!defined $var) {
            Test::More::fail("$name - bad --- capture line: $line");
            next;
        }
      SKIP: {
            Test::More::skip("$name - capture $var: $dry_run", 1)
                if $dry_run;
            my ($val, $err) = _extract($how, $body);
            if (defined $err) {
                delete $Captured{$var};    # never reuse a stale value
                Test::More::fail("$name - capture $var = $how");
                Test::More::diag($err);
            } else {
                $Captured{$var} = $val;
                Test::More::pass("$name - capture $var = $how");
            }
        }
    }
}

# JSON values with their JSON type kept: objects and arrays as hashes and
# arrays, everything else as ActingWeb::Test::Leaf [type, value].  The type
# of numbers has to be read before anything stringifies them.
sub _typed ($);
sub _typed ($) {
    my ($v) = @_;
    my $leaf = sub { bless [@_], 'ActingWeb::Test::Leaf' };
    return $leaf->('null') unless defined $v;
    return $leaf->('bool', $v ? 1 : 0) if JSON::PP::is_bool($v);
    return { map { $_ => _typed($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return [ map { _typed($_) } @$v ] if ref $v eq 'ARRAY';
    my $flags = B::svref_2object(\$v)->FLAGS;
    my $num = $flags & (B::SVp_IOK | B::SVp_NOK) && !($flags & B::SVp_POK);
    return $leaf->($num ? 'num' : 'str', $v);
}

sub _untyped ($);
sub _untyped ($) {
    my ($v) = @_;
    return { map { $_ => _untyped($v->{$_}) } keys %$v } if ref $v eq 'HASH';
    return [ map { _untyped($_) } @$v ] if ref $v eq 'ARRAY';
    my ($type, $val) = @$v;
    return $type eq 'null' ? undef
         : $type eq 'bool' ? ($val ? JSON::PP::true : JSON::PP::false)
         : $type eq 'num'  ? 0 + $val
         :                   "$val";
}

sub _show ($) { $JSON->encode(_untyped(shift)) }

sub _is_leaf ($) { ref $_[0] eq 'ActingWeb::Test::Leaf' }

# Compare expected and actual typed JSON; differences go to @$errs.
# Expected strings "{{ANY}}" match anything, "~REGEX" matches scalars whose
# text matches, and an object key "..." allows extra keys.
sub _json_cmp ($$$$);
sub _json_cmp ($$$$) {
    my ($want, $got, $at, $errs) = @_;
    return if @$errs >= 20;
    if (_is_leaf($want) && $want->[0] eq 'str') {
        my $s = $want->[1];
        return if $s eq '{{ANY}}';
        if ($s =~ /^~(.*)$/s) {
            my $re = $1;
            if (!_is_leaf($got) || $got->[0] eq 'null') {
                push @$errs, "$at: expected a value matching /$re/, got "
                           . _show($got);
            } elsif ("$got->[1]" !~ /$re/) {
                push @$errs, "$at: " . _show($got)
                           . " does not match /$re/";
            }
            return;
        }
    }
    if (ref $want eq 'HASH') {
        return push @$errs, "$at: expected an object, got " . _show($got)
            unless ref $got eq 'HASH';
        for my $k (sort keys %$want) {
            next if $k eq '...';
            if (exists $got->{$k}) {
                _json_cmp($want->{$k}, $got->{$k}, "$at.$k", $errs);
            } else {
                push @$errs, "$at: key \"$k\" is missing";
            }
        }
        if (!exists $want->{'...'}) {
            push @$errs, "$at: unexpected key \"$_\""
                for grep { !exists $want->{$_} } sort keys %$got;
        }
        return;
    }
    if (ref $want eq 'ARRAY') {
        return push @$errs, "$at: expected an array, got " . _show($got)
            unless ref $got eq 'ARRAY';
        push @$errs, "$at: expected " . @$want . " elements, got "
                   . @$got if @$want != @$got;
        my $n = @$want < @$got ? @$want : @$got;
        _json_cmp($want->[$_], $got->[$_], "$at\[$_]", $errs)
            for 0 .. $n - 1;
        return;
    }
    my $same = _is_leaf($got) && $got->[0] eq $want->[0]
        && ($want->[0] eq 'null'
            || ($want->[0] eq 'num' ? $got->[1] == $want->[1]
                                    : $got->[1] eq $want->[1]));
    push @$errs, "$at: expected " . _show($want) . ", got " . _show($got)
        unless $same;
}

sub _check_json ($$$$) {
    my ($block, $body, $idx, $dry_run) = @_;
    my $want = _for_response($block->response_body_json, $idx, $block);
    return unless defined $want;
    my $desc = $block->name . " - response_body_json (req $idx)";
  SKIP: {
        Test::More::skip("$desc: $dry_run", 1) if $dry_run;
        my ($w, $g);
        if (!eval { $w = _typed($JSON->decode($want)); 1 }) {
            Test::More::fail($desc);
            Test::More::diag("--- response_body_json is not JSON: $@");
            last SKIP;
        }
        if (!eval { $g = _typed($JSON->decode($body // '')); 1 }) {
            Test::More::fail($desc);
            Test::More::diag("response is not JSON: $@\nbody: "
                             . ($body // '(none)'));
            last SKIP;
        }
        my @errs;
        _json_cmp($w, $g, '$', \@errs);
        Test::More::ok(!@errs, $desc) or Test::More::diag(
            join("\n", @errs), "\nexpected: ", _show($w), "\n     got: ",
            _show($g));
    }
}

Test::Nginx::Socket::add_block_preprocessor(sub { _preprocess(@_) });

Test::Nginx::Socket::add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry_run) = @_;
    _check_json($block, $body, $idx, $dry_run);
    _captures($block, $body, $idx, $dry_run);
});

# make the helpers callable unqualified in --- init and eval sections
for my $pkg (qw(Test::Nginx::Util Test::Base::Filter)) {
    no strict 'refs';
    for my $f (qw(captured basic_auth redis_cmd redis_key redis_keys
                  redis_cleanup)) {
        *{"${pkg}::$f"} = \&{$f} unless defined &{"${pkg}::$f"};
    }
}

1;
