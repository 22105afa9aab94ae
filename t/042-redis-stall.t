# Logs under failure: a 5 s Redis stall (CLIENT PAUSE) under 64 concurrent
# clients writes a few lines (the event, a summary per second), not one
# per request; every line of the module starts with "actingweb:" and
# names the actor where there is one.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();
use POSIX ();
use Time::HiRes ();

our $Clients = 64;
our $Stall = 5;
our $Id = '0123456789abcdef0123456789abcdef';

sub servroot {
    my $root = eval { Test::Nginx::Socket::server_root() };
    return $root // $ENV{TEST_NGINX_SERVER_ROOT} // 't/servroot';
}

sub log_text {
    open my $fh, '<', servroot() . '/logs/error.log' or return '';
    local $/;
    return <$fh>;
}

# $Clients processes sending requests until the stall is over; the
# statuses seen
sub load {
    my ($port) = @_;
    my @kids;
    pipe my $rd, my $wr or die "pipe: $!";
    my $end = Time::HiRes::time() + $Stall + 0.5;
    for (1 .. $Clients) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $http = HTTP::Tiny->new(timeout => 10);
            my %st;
            while (Time::HiRes::time() < $end) {
                my $res = $http->get("http://127.0.0.1:$port/aw/$Id/meta");
                $st{$res->{status}}++;
            }
            print $wr join(' ', %st), "\n";
            close $wr;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    close $wr;
    my %seen;
    while (my $line = <$rd>) {
        my %st = split ' ', $line;
        $seen{$_} += $st{$_} for keys %st;
    }
    waitpid $_, 0 for @kids;
    return \%seen;
}

log_level('notice');
worker_connections(1024);

block_defaults(config => <<'CONF');
    location /aw/ { actingweb; }
CONF

run_tests();

__DATA__

=== TEST 1: a 5 s Redis stall at 64 clients: fewer than 20 log lines
--- timeout: 30
--- init
my $port = ActingWeb::Test::wait_for_server();
my $before = length main::log_text();
ActingWeb::Test::redis_cmd('CLIENT', 'PAUSE', $main::Stall * 1000, 'ALL');
my $st = main::load($port);
my $log = substr main::log_text(), $before;
my @lines = grep { /\[(?:notice|warn|error|crit|alert|emerg)\]/ }
            split /\n/, $log;
Test::More::ok($st->{503}, "requests answered 503 during the stall: "
               . join(', ', map { "$_: $st->{$_}" } sort keys %$st));
Test::More::cmp_ok(scalar(@lines), '<', 20, 'log lines during the stall')
    or Test::More::diag(join "\n", @lines);
Test::More::ok((grep { /actingweb: \d+ requests answered 503 in the last second/ } @lines),
               'a summary line');
Test::More::is((grep { !/actingweb: / } @lines), 0,
               'every line is the module\'s')
    or Test::More::diag(join "\n", grep { !/actingweb: / } @lines);
Test::More::ok((grep { /did not answer in \d+ ms.*, actor: $main::Id/ }
                @lines), 'the timeout names the actor');
--- request
GET /aw/0123456789abcdef0123456789abcdef/meta
--- error_code: 404
--- no_error_log
[alert]
[crit]
