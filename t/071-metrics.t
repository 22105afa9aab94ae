# Metrics in shared memory: with two workers, the totals of
# actingweb_status are those of the whole server (whichever worker
# answers the scrape) and survive a reload (HUP).
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();
use POSIX ();

master_on();
workers(2);

our $Clients = 4;
our $PerClient = 50;

sub servroot {
    my $root = eval { Test::Nginx::Socket::server_root() };
    return $root // $ENV{TEST_NGINX_SERVER_ROOT} // 't/servroot';
}

sub log_text {
    open my $fh, '<', servroot() . '/logs/error.log' or return '';
    local $/;
    return <$fh>;
}

sub get {
    my ($port, $path) = @_;
    return HTTP::Tiny->new(timeout => 10)
        ->get("http://127.0.0.1:$port$path");
}

# the sum of all actingweb_requests_total series in a scrape
sub scraped_total {
    my ($port) = @_;
    my $res = get($port, '/status?format=prometheus');
    die "scrape: $res->{status}\n" unless $res->{status} == 200;
    my $sum = 0;
    $sum += $1 while $res->{content} =~
        /^actingweb_requests_total\{[^}]*\} (\d+)$/mg;
    return $sum;
}

# $Clients processes, $PerClient requests each; the worker pids seen
sub load {
    my ($port) = @_;
    my @kids;
    pipe my $rd, my $wr or die "pipe: $!";
    for (1 .. $Clients) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my %pids;
            for (1 .. $PerClient) {
                my $res = get($port,
                    '/aw/0123456789abcdef0123456789abcdef/meta');
                $pids{$res->{headers}{'x-worker'} // '?'} = 1
                    if $res->{status} == 404;
            }
            print $wr join(' ', keys %pids), "\n";
            close $wr;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    close $wr;
    my %seen;
    while (my $line = <$rd>) {
        $seen{$_} = 1 for split ' ', $line;
    }
    waitpid $_, 0 for @kids;
    return keys %seen;
}

sub reload_and_wait {
    my $pidfile = servroot() . '/logs/nginx.pid';
    for (1 .. 100) {
        last if -s $pidfile;
        select undef, undef, undef, 0.05;
    }
    open my $fh, '<', $pidfile or die "no pid file $pidfile: $!";
    chomp(my $master = <$fh>);
    my $before = () = log_text() =~ /worker process \d+ exited/g;
    kill 'HUP', $master or die "HUP $master: $!";
    for (1 .. 200) {
        my $now = () = log_text() =~ /worker process \d+ exited/g;
        return if $now - $before >= 2;
        select undef, undef, undef, 0.05;
    }
    die "old workers did not exit after HUP\n";
}

block_defaults(config => <<'CONF');
    location /aw/ { actingweb; add_header X-Worker $pid always; }
    location = /status { actingweb_status; }
CONF

run_tests();

__DATA__

=== TEST 1: two workers under load: the totals equal the requests sent
--- init
my $port = ActingWeb::Test::wait_for_server();
my @pids = main::load($port);
Test::More::cmp_ok(scalar(@pids), '>=', 2, "both workers answered (@pids)");
my $want = $main::Clients * $main::PerClient;
# every scrape, whichever worker answers it, has the same total
for (1 .. 4) {
    Test::More::is(main::scraped_total($port), $want, "scrape $_: total");
}
--- request
GET /status
--- response_body_json
{"redis_up": true, "requests": 200, "errors_4xx": 200, "errors_5xx": 0,
 "endpoints": {"meta": {"4xx": 200}}, "...": null}



=== TEST 2: the counters survive a reload
--- init
my $port = ActingWeb::Test::wait_for_server();
main::load($port);
my $want = $main::Clients * $main::PerClient;
Test::More::is(main::scraped_total($port), $want, "total before HUP");
main::reload_and_wait();
Test::More::is(main::scraped_total($port), $want, "total after HUP");
--- request
GET /status
--- response_body_like: "requests":200,
