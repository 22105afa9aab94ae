package Test::Nginx::Socket;

# A small stand-in for openresty's Test::Nginx::Socket (CPAN only, not in
# Debian).  It is used only when the real module is not installed: test
# files are plain Test::Nginx data-section files and must keep working
# unchanged under the real module.  See t/lib/README.md for what is
# supported and how this runner differs from the real one.
#
# Like the real module this is a Test::Base subclass ("use Test::Base
# -Base"), so blocks, sections, filters ("--- request eval"), --- ONLY,
# --- SKIP, --- LAST and plan() come from Test::Base itself.
#
# NOTE: "-Base" runs Spiffy's source filter over this file: a named sub
# written as "sub foo {" gets an implicit "my $self = shift;".  Every sub
# here therefore has a prototype, which the filter leaves alone.
#
# Facts about the real runner this one copies (own code, not its source):
#   * run_tests(): Test::Base::blocks() (this runs all section filters,
#     e.g. "eval", for ALL blocks up front), shuffled unless no_shuffle();
#     then, for each block just before it runs: every block preprocessor
#     (most recently added first), the name becomes "$0 <block name>",
#     and the block is run.
#   * per block: nginx (re)start, "--- init" (Perl code, evaluated in
#     package Test::Nginx::Util), then repeat_each() rounds of requests.
#   * per response, in this order: status code, raw_response_headers_like,
#     response_headers(_like), response_body_filters, response_body(_like)
#     and the add_response_body_check() callbacks, called as
#     ($block, $body, $req_idx, $repeated_req_idx, $dry_run).
#   * error.log is checked after every response of a multi-request block
#     and at the end; each check only sees the lines written since the
#     previous check ("--- wait" seconds are slept first).
#   * with several requests ("--- request eval [...]" or pipelined), the
#     error_code / response_* sections must be arrays (one per request).
#   * $ServerPort / $ServerPortForClient in expected bodies and headers are
#     replaced by the port numbers.

use Test::Base -Base;

use Digest::MD5 ();
use Digest::SHA ();
use HTTP::Response ();
use List::Util qw(shuffle);
use Test::LongString ();
use Text::Diff ();
use Time::HiRes qw(sleep);

use Test::Nginx::Compat::Server ();
use Test::Nginx::Compat::HTTP ();

our $VERSION = '0.01_compat';
our $IsCompat = 1;    # lets helpers tell the two runners apart

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each
    config_preamble worker_connections master_process_enabled
    no_long_string workers master_on master_off log_level no_shuffle
    no_root_location server_name server_addr server_root html_dir
    server_port server_port_for_client timeout check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check use_hup no_nginx_manager
);

our $RepeatEach = 1;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString = 0;
our @BlockPreprocessors;
our @ResponseBodyChecks;
our ($LastConfigBlock, $LastPorts);    # to restart a config-less block

# short alias for the settings package
BEGIN { *S:: = \%Test::Nginx::Compat::Server:: }

# ---- configuration API (same names and meaning as the real module) -------

sub repeat_each (@) {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle () { $NoShuffle = 1 }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $S::NoRootLocation = 1 }
sub check_accum_error_log () { $S::CheckAccumErrLog = 1 }
sub master_on () { $S::MasterProcess = 'on' }
sub master_off () { $S::MasterProcess = 'off' }
sub config_preamble ($) { $S::ConfigPreamble = shift }
sub server_root () { $S::ServRoot }
sub html_dir () { $S::HtmlDir }
sub bail_out (@) { S::bail_out(@_) }
sub add_cleanup_handler ($) { unshift @S::CleanupHandlers, shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub _accessor ($@) {
    my $ref = shift;
    $$ref = shift if @_;
    return $$ref;
}

sub workers (@) { _accessor(\$S::Workers, @_) }
sub log_level (@) { _accessor(\$S::LogLevel, @_) }
sub timeout (@) { _accessor(\$S::Timeout, @_) }
sub server_name (@) { _accessor(\$S::ServerName, @_) }
sub server_addr (@) { _accessor(\$S::ServerAddr, @_) }
sub server_port (@) { _accessor(\$S::ServerPort, @_) }
sub server_port_for_client (@) { _accessor(\$S::ClientPort, @_) }
sub worker_connections (@) { _accessor(\$S::WorkerConnections, @_) }

sub master_process_enabled (@) {
    $S::MasterProcess = $_[0] ? 'on' : 'off' if @_;
    return $S::MasterProcess;
}

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @S::EnvToNginx, $v;
    }
}

sub use_hup () { die "use_hup: not supported by the compat runner\n" }
sub no_nginx_manager () {
    die "no_nginx_manager: not supported by the compat runner\n";
}

# String comparison honouring no_long_string() and qr// expectations.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc)
        if ref $expected eq 'Regexp';
    my $ok = $NoLongString
        ? Test::More::is($got, $expected, $desc)
        : Test::LongString::is_string($got, $expected, $desc);
    if (!$ok && defined $got && defined $expected
        && ($got =~ /\n./ || $expected =~ /\n./))
    {
        Test::More::diag(Text::Diff::diff(\$expected, \$got, {
            STYLE => 'Unified', FILENAME_A => 'expected',
            FILENAME_B => 'got' }));
    }
    return $ok;
}

# ---- the block runner ------------------------------------------------------

sub run_tests () {
    S::nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $S::ServerPort;
    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
    }
    S::cleanup();
}

# "--- skip_eval: N: perl-code" and "--- skip_nginx: N: <op> x.y.z"
sub _skip_spec ($) {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - bad --- skip_eval: $spec");
        my ($n, $code) = ($1, $2);
        my $skip = eval $code;
        bail_out("$name - skip_eval failed: $@") if $@;
        return ($n, 'skip_eval') if $skip;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)
                  (?:\s*:\s*(.*?))?\s*$/x
            or bail_out("$name - bad --- skip_nginx: $spec");
        my ($n, $op, $why) = ($1, $2, $6);
        my $want = sprintf '%d.%03d%03d', $3, $4, $5;
        my $have = S::nginx_version();
        my $skip = $op eq '<'  ? $have < $want
                 : $op eq '<=' ? $have <= $want
                 : $op eq '>'  ? $have > $want
                 :               $have >= $want;
        return ($n, $why || "nginx version $op $3.$4.$5") if $skip;
    }
    return;
}

sub _start_for_block ($$$) {
    my ($block, $config, $ports) = @_;
    S::stop_nginx($block->name);
    S::setup_server_root();
    S::write_user_files($block, $ports);
    S::write_config($block, $config, $ports);
    $S::PrevConfig = $config;
    $LastConfigBlock = $block;
    $LastPorts = $ports;
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;    # a preprocessor may set it
    my $name = $block->name;

    my ($skip_n, $skip_why) = _skip_spec($block);
    if (defined $skip_n) {
        SKIP: { Test::More::skip("$name - $skip_why", $skip_n) }
        return;
    }

    my $ports = {};
    my $config = S::expand_env(scalar $block->config, $name, $ports);

    if (defined(my $must_die = $block->must_die)) {
        $config //= $S::PrevConfig // '';
        _start_for_block($block, $config, $ports);
        my $status = S::start_nginx($name, 1);
        if ($must_die =~ /^\d+$/) {
            Test::More::is($status >> 8, $must_die,
                           "$name - nginx exits with status $must_die");
        } else {
            Test::More::isnt($status, 0, "$name - nginx fails to start");
        }
        $S::ErrLogPos = 0;
        check_error_log($block, undef, 0);
        if ($status == 0) {
            warn "$name - nginx was expected to die but did not\n";
            S::stop_nginx($name);
        }
        undef $S::PrevConfig;
        return;
    }

    if (defined $config) {
        if ($S::ForceRestart || !S::nginx_running()
            || !defined $S::PrevConfig || $config ne $S::PrevConfig)
        {
            _start_for_block($block, $config, $ports);
            S::start_nginx($name, 0);
            sleep $S::SleepTime;
        }
    } elsif (!S::nginx_running()) {
        # no "--- config": reuse the previous server (restart it if it was
        # stopped, which happens after each block under valgrind)
        my $prev = $LastConfigBlock
            or bail_out("$name - no --- config section and no previous "
                        . "block to take it from");
        _start_for_block($prev, $S::PrevConfig, $LastPorts);
        S::start_nginx($name, 0);
        sleep $S::SleepTime;
    }

    if (defined(my $init = $block->init)) {
        # evaluated where the real runner evaluates it; $block is visible
        eval "package Test::Nginx::Util;\n#line 1 \"--- init\"\n$init\n;1"
            or bail_out("$name - init failed: $@");
    }

    $S::ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        run_test_helper($block, $rep);
    }

    if ($S::UseValgrind) {
        my $vg = S::finish_valgrind_block($name);
        if (length $vg) {
            Test::More::fail("$name - valgrind reported errors");
            Test::More::diag($vg);
        }
    }
}

# A failure that is not one of the usual per-response checks (so with an
# explicit plan the count is off too; Test::Builder's end-of-run handling
# is left on so that the exit status and the no_plan trailer stay right).
sub _fail_extra ($) {
    Test::More::fail(shift);
}

sub run_test_helper ($$) {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my @reqs = Test::Nginx::Compat::HTTP::requests_for_block($block);
    my $timeout = S::parse_time(scalar $block->timeout) // $S::Timeout;
    my $pipelined = defined $block->pipelined_requests;
    my $n_resp = $pipelined ? scalar @{ $block->pipelined_requests }
                            : scalar @reqs;
    my $need_array = $n_resp > 1;
    my $ignore = defined $block->ignore_response;
    my $wait = S::parse_time(scalar $block->wait);
    my $res;
    my $idx = 0;

    for my $r (0 .. $#reqs) {
        my $is_head = (join '', map { $_->{value} } @{ $reqs[$r] })
            =~ /^\s*HEAD\s/;
        my ($raw, $err) = Test::Nginx::Compat::HTTP::send_request(
            $block, $reqs[$r], $timeout);
        if (defined $err) {
            if ($err ne 'timeout') {
                _fail_extra("$name - $err");
            } elsif (!defined $block->abort) {
                _fail_extra("$name - client socket timed out "
                            . "(timeout ${timeout}s)");
            }
        }
        $raw //= '';

        for my $k (1 .. ($pipelined ? $n_resp : 1)) {
            my ($raw_headers, $left, $perr) = ('');
            if (!$ignore) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, 'OK', [], $raw);
                } else {
                    ($res, $raw_headers, $left, $perr) =
                        Test::Nginx::Compat::HTTP::parse_response(
                            $raw, $is_head);
                    _fail_extra("$name - $perr") if $perr;
                }
                check_error_code($block, $res, 0, $idx, $need_array);
                check_raw_response_headers($block, $raw_headers, 0, $idx,
                                           $need_array);
                check_response_headers($block, $res, $raw_headers, 0, $idx,
                                       $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, 0, $idx, $rep,
                                    $need_array);
            }
            $raw = $left // '';
            if ($r < $#reqs || ($pipelined && $k < $n_resp)) {
                sleep $wait if $wait;
                check_error_log($block, $res, $rep);
                check_access_log($block, $rep) unless $ignore;
            }
            $idx++;
        }
    }

    sleep $wait if $wait;
    check_error_log($block, $res, $rep);
    check_access_log($block, $rep) unless $ignore;
}

# ---- response checks -------------------------------------------------------

sub _indexed ($$$$) {
    my ($name, $value, $idx, $need_array) = @_;
    return $value->[$need_array ? $idx : 0] if ref $value eq 'ARRAY';
    bail_out("$name - several requests are sent, so the expected values "
             . "must be arrays with one entry per request (use eval)")
        if $need_array;
    return $value;
}

sub _ports ($) {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPortForClient\b/$S::ClientPort/g;
    $s =~ s/\$ServerPort\b/$S::ServerPort/g;
    return $s;
}

# Called by name (through the package symbol table) with the response as
# its 2nd argument, like the real runner's function of the same name;
# ActingWeb::Test relies on that to see response headers.
sub check_error_code ($$$$$) {
    my ($block, $res, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = _indexed($name, $block->error_code_like, $idx,
                           $need_array);
        Test::More::like($got, qr/$pat/sm,
                         "$name - status code like (req $idx)");
    } else {
        my $want = defined $block->error_code
            ? _indexed($name, $block->error_code, $idx, $need_array) : 200;
        Test::More::is($got, $want, "$name - status code (req $idx)");
    }
}

sub check_raw_response_headers ($$$$$) {
    my ($block, $raw, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $t (['like', \&Test::More::like], ['unlike', \&Test::More::unlike])
    {
        my $sec = "raw_response_headers_$t->[0]";
        next unless defined $block->$sec;
        my $pat = _indexed($name, $block->$sec, $idx, $need_array);
        $t->[1]->($raw, qr/$pat/s, "$name - $sec (req $idx)");
    }
}

# "Name: value" lines; "!Name" means "must be absent"
sub _header_lines ($) {
    my @out;
    for my $line (split /\n/, shift // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @out, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @out, [$k, $v // ''];
        }
    }
    return @out;
}

sub check_response_headers ($$$$$$) {
    my ($block, $res, $raw, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        for my $h (_header_lines(_indexed($name, $block->response_headers,
                                          $idx, $need_array)))
        {
            my ($k, $want) = @$h;
            if (!defined $want) {
                Test::More::unlike($raw, qr/^\s*\Q$k\E\s*:/msi,
                                   "$name - header $k absent (req $idx)");
                next;
            }
            my $got = $res ? $res->header($k) : undef;
            Test::More::is($got // '', _ports($want),
                           "$name - header $k (req $idx)");
        }
    } elsif (defined $block->response_headers_like) {
        for my $h (_header_lines(_indexed($name,
                       $block->response_headers_like, $idx, $need_array)))
        {
            my ($k, $pat) = @$h;
            my $got = $res ? $res->header($k) : undef;
            Test::More::like($got // '', qr/^$pat$/,
                             "$name - header $k like (req $idx)");
        }
    }
}

my %BodyFilters = (
    md5_hex => \&Digest::MD5::md5_hex, sha1_hex => \&Digest::SHA::sha1_hex,
    uc => sub { uc $_[0] }, lc => sub { lc $_[0] },
    ucfirst => sub { ucfirst $_[0] }, lcfirst => sub { lcfirst $_[0] },
    length => sub { length $_[0] },
);

sub transform_response_body ($$$) {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters && $res && defined $res->content;
    if (!ref $filters) {
        $filters = [split ' ', $filters];
    } elsif (ref $filters eq 'ARRAY' && ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$idx] // [];    # one list per request
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    my $body = $res->content;
    for my $f (@$filters) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilters{$f}
            or bail_out($block->name . " - unknown response body filter $f");
        $body = $code->($body);
    }
    $res->content($body);
}

sub check_response_body ($$$$$$) {
    my ($block, $res, $dry_run, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $body = $res ? $res->content : undef;
    if (defined $block->response_body) {
        my $want = _ports(_indexed($name, $block->response_body, $idx,
                                   $need_array));
        is_str($body, $want, "$name - response body (req $idx, rep $rep)");
    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $pat = _ports(_indexed($name, $like ? $block->response_body_like
                                               : $block->response_body_unlike,
                                  $idx, $need_array));
        my $desc = "$name - response body " . ($like ? '' : 'un')
                 . "like (req $idx, rep $rep)";
        $like ? Test::More::like($body, qr/$pat/s, $desc)
              : Test::More::unlike($body, qr/$pat/s, $desc);
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $body, $idx, $rep, $dry_run);
    }
}

# ---- log checks ------------------------------------------------------------

sub _patterns ($) {
    my $p = shift;
    return () unless defined $p;
    return ($p) if ref $p eq 'Regexp';
    return grep { defined } @$p if ref $p eq 'ARRAY';
    chomp $p;
    return grep { length } split /\n+/, $p;
}

sub _matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _mentions ($$) {
    my ($pats, $what) = @_;
    return grep { !ref $_ && index($_, $what) >= 0 } @$pats;
}

sub _check_lines ($$$$$) {
    my ($name, $what, $file, $lines, $rep) = @_;
    my ($want, $dont) = @$what;
    for my $pat (@$want) {
        my $ok = grep { _matches($_, $pat) } @$lines;
        Test::More::ok($ok, "$name - $file has a line matching "
                            . "\"$pat\" (rep $rep)")
            or Test::More::diag(scalar(@$lines) . " new lines in $file");
    }
    for my $pat (@$dont) {
        my @hits = grep { _matches($_, $pat) } @$lines;
        Test::More::ok(!@hits, "$name - $file has no line matching "
                               . "\"$pat\" (rep $rep)")
            or Test::More::diag("matching lines:\n",
                                join '', @hits[0 .. ($#hits > 9 ? 9
                                                               : $#hits)]);
    }
}

sub check_error_log ($$$) {
    my ($block, $res, $rep) = @_;
    my $name = $block->name;
    my @want = _patterns($block->error_log);
    my @dont = _patterns($block->no_error_log);
    my $lines = S::error_log_lines();

    if (defined(my $grep = $block->grep_error_log)) {
        $grep = $grep->[$rep] if ref $grep eq 'ARRAY';
        my $want = $block->grep_error_log_out;
        $want = $want->[$rep] if ref $want eq 'ARRAY';
        my $got = '';
        for my $l (@$lines) {
            $got .= "$&\n" if (ref $grep ? $l =~ $grep
                                         : $l =~ /\Q$grep\E/) && $& !~ /\n/;
        }
        is_str($got, $want, "$name - grep_error_log_out (rep $rep)");
    }

    _check_lines($name, [\@want, \@dont], 'error.log', $lines, $rep);

    for my $level (qw(alert crit emerg)) {
        next if _mentions([@want, @dont], "[$level");
        warn "WARNING: $name - $_" for grep { /\[$level\]/ } @$lines;
    }
    for my $l (@$lines) {
        _fail_extra("$name - $l") if $l =~ /\bAssertion .*?failed\b/;
    }
}

sub check_access_log ($$) {
    my ($block, $rep) = @_;
    my @want = _patterns($block->access_log);
    my @dont = _patterns($block->no_access_log);
    return unless @want || @dont;
    _check_lines($block->name, [\@want, \@dont], 'access.log',
                 S::access_log_lines(), $rep);
}

1;
