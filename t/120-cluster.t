# Redis Cluster (actingweb_redis_cluster): a local cluster of 3 primaries
# and 3 replicas (t/lib/redis-cluster.sh) in a directory of its own.
# Actors on every shard, properties, trust and a subscription between
# actors on different shards; callbacks of a high subscription across
# shards to a sink under /b/ that logs them (each sequence once), work
# left in the index found by the scan, and delivery waiting out TRYAGAIN
# (the publisher's slot migrating) and CLUSTERDOWN (its slot unassigned);
# a slot migrated by hand (ASK while it migrates, MOVED after);
# redis-cli --cluster reshard under load; a primary killed: its shard
# answers 503 JSON, the others keep serving (and delivering the callbacks
# of their writes), and after the replica's promotion the module follows
# and the data written before is there.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use File::Temp ();
use HTTP::Tiny ();
use IO::Socket::INET ();
use JSON::PP ();
use MIME::Base64 ();
use Time::HiRes ();

my $Script = 't/lib/redis-cluster.sh';

sub have_cluster {
    my $v = `redis-server --version 2>/dev/null` // '';
    return 0 unless $v =~ /v=(\d+)\./ && $1 >= 5;
    return system('redis-cli --version >/dev/null 2>&1') == 0;
}

unless (have_cluster()) {
    plan(skip_all => 'redis-server/redis-cli with cluster support needed');
}

sub port_free {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => shift, ReuseAddr => 1);
    return defined $s;
}

# six ports whose cluster bus ports (+10000) are free as well
our @Ports;
for my $try (1 .. 50) {
    my $base = 20000 + int(rand(25000));
    my @p = ($base .. $base + 5);
    next if grep { !port_free($_) || !port_free($_ + 10000) } @p;
    @Ports = @p;
    last;
}
die "no free ports for the cluster\n" unless @Ports;

our $Dir = File::Temp::tempdir('aw-cluster-XXXXXX', TMPDIR => 1,
                               CLEANUP => 1);
my $Parent = $$;

system($Script, 'start', $Dir, @Ports) == 0
    or die "could not start the cluster\n";

END {
    system($Script, 'stop', $Dir) if $$ == $Parent && $Dir;
}

$ENV{TEST_NGINX_C1} = $Ports[0];
$ENV{TEST_NGINX_C2} = $Ports[1];
# what the callback sink under /b/ got, one line a callback
$ENV{TEST_NGINX_CBLOG} = "$Dir/callbacks.log";

# the seeds replace actingweb_redis; redis_cmd() is not used here
$ActingWeb::Test::DefaultHttpConfig{actingweb_redis} = undef;

block_defaults(
    http_config => <<'CONF',
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1 127.0.0.1:$TEST_NGINX_C2;
    actingweb_redis_timeout 3s;
    actingweb_peer_timeout 5s;
    log_format cb escape=none
        '$request_uri|$http_authorization|$request_body';
CONF
    config => <<'CONF',
    # /b/'s actors subscribe; their callbacks go to a sink that logs them
    location ~ ^/b/[0-9a-f]+/callbacks/ {
        access_log $TEST_NGINX_CBLOG cb;
        client_body_buffer_size 64k;
        rewrite ^ /sink break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
    location = /sink { access_log off; return 204; }
    location /b/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/b;
        actingweb_peer_allow 127.0.0.1;
        actingweb_auto_approve friend;
    }
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
        actingweb_auto_approve friend;
    }
    location = /_actingweb_peer {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_pass_request_headers off;
        proxy_set_header Host $actingweb_peer_host;
        proxy_set_header Authorization $actingweb_peer_authorization;
        proxy_set_header Content-Type application/json;
        subrequest_output_buffer_size 64k;
    }
    location = /status { actingweb_status; }
CONF
);

# ---- helpers for --- init -------------------------------------------------

my $Http = HTTP::Tiny->new(timeout => 10);

sub url { "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/a/" . shift }

sub auth ($) {
    return { Authorization => 'Basic '
             . MIME::Base64::encode_base64("$_[0]:pw", '') };
}

sub cli {
    my ($port, @args) = @_;
    my @out = `redis-cli -p $port @args 2>&1`;
    chomp @out;
    return wantarray ? @out : $out[0];
}

# CRC16 (XMODEM) of the hash tag, mod 16384
sub slot {
    my ($key) = @_;
    $key = $1 if $key =~ /\{([^}]+)\}/;
    my $crc = 0;
    for my $c (unpack 'C*', $key) {
        $crc ^= $c << 8;
        for (1 .. 8) {
            $crc = $crc & 0x8000 ? (($crc << 1) ^ 0x1021) : ($crc << 1);
            $crc &= 0xffff;
        }
    }
    return $crc % 16384;
}

# node id and port of the primary serving a slot, from any live node
sub owner {
    my ($slot) = @_;
    for my $p (@Ports) {
        my @nodes = cli($p, 'cluster', 'nodes');
        next unless @nodes && $nodes[0] =~ /^[0-9a-f]{40} /;
        for (@nodes) {
            my ($id, $addr, $flags, undef, undef, undef, undef, undef,
                @ranges) = split ' ';
            next unless $flags =~ /master/ && $flags !~ /fail/;
            for my $r (@ranges) {
                next if $r =~ /^\[/;
                my ($lo, $hi) = split /-/, $r;
                $hi //= $lo;
                return ($id, $addr =~ /:(\d+)@/) if $slot >= $lo
                                                 && $slot <= $hi;
            }
        }
        last;
    }
    die "no primary for slot $slot\n";
}

sub create_actor {
    my ($creator, $loc) = @_;
    my $to = $loc ? "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/$loc/"
                  : url('');
    my $res = $Http->post($to, {
        headers => { 'Content-Type' => 'application/json' },
        content => qq({"creator": "$creator", "passphrase": "pw"}) });
    die "create: $res->{status} $res->{content}\n" unless $res->{status} == 201;
    return JSON::PP::decode_json($res->{content})->{id};
}

# actors until each primary serves one: {{s0}}, {{s1}}, {{s2}} (creator
# "c<n>"), and {{r}} on one of the 300 lowest slots (moved by the reshard)
our %Shard;
sub actors_per_shard {
    my (%seen, $r);
    for my $n (1 .. 400) {
        my $id = create_actor("c$n");
        my (undef, $port) = owner(slot($id));
        $seen{$port} //= [$id, "c$n"];
        $r //= [$id, "c$n"] if slot($id) < 300;
        last if keys %seen == 3 && $r;
    }
    die "actors do not cover 3 shards\n" unless keys %seen == 3 && $r;
    my $i = 0;
    for my $port (sort keys %seen) {
        $ActingWeb::Test::Captured{"s$i"} = $seen{$port}[0];
        $ActingWeb::Test::Captured{"s${i}c"} = $seen{$port}[1];
        $Shard{"s$i"} = $port;
        $i++;
    }
    $ActingWeb::Test::Captured{r} = $r->[0];
    $ActingWeb::Test::Captured{rc} = $r->[1];
}

# begins moving one slot from its primary to another: keys stay where
# they are until migrate_keys()
our %Mig;
sub start_migration {
    my ($id) = @_;
    my $slot = slot($id);
    my ($src, $sport) = owner($slot);
    my ($dst, $dport);
    for my $p (@Ports) {
        next if $p == $sport;
        next unless cli($p, 'role') eq 'master';
        $dport = $p;
        $dst = cli($p, 'cluster', 'myid');
        last;
    }
    cli($dport, 'cluster', 'setslot', $slot, 'importing', $src) eq 'OK'
        or die "importing failed\n";
    cli($sport, 'cluster', 'setslot', $slot, 'migrating', $dst) eq 'OK'
        or die "migrating failed\n";
    %Mig = (slot => $slot, src => $src, sport => $sport, dst => $dst,
            dport => $dport);
}

sub migrate_keys {
    my @keys = cli($Mig{sport}, 'cluster', 'getkeysinslot', $Mig{slot},
                   1000);
    for my $k (grep { length } @keys) {
        my $r = cli($Mig{sport}, 'migrate', '127.0.0.1', $Mig{dport},
                    "'$k'", 0, 5000);
        die "migrate $k: $r\n" unless $r eq 'OK';
    }
    Test::More::ok(scalar(@keys) > 0, "migrated " . @keys . " keys");
}

sub finish_migration {
    for my $p (@Ports) {
        next unless cli($p, 'role') eq 'master';
        cli($p, 'cluster', 'setslot', $Mig{slot}, 'node', $Mig{dst});
    }
}

# resharding with redis-cli while a child writes and reads {{r}}
sub reshard_under_load {
    my ($id, $creator) = (captured('r'), captured('rc'));
    my ($src, $sport) = owner(slot($id));
    my $dst;
    for my $p (@Ports) {
        next if $p == $sport || cli($p, 'role') ne 'master';
        $dst = cli($p, 'cluster', 'myid');
        last;
    }

    my $log = "$Dir/load.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $out, '>', $log or die;
        my $http = HTTP::Tiny->new(timeout => 10);
        my ($n, $bad) = (0, 0);
        while (!-e "$Dir/stop") {
            $n++;
            my $res = $http->put(url("$id/properties/count"),
                                 { headers => auth($creator),
                                   content => "$n" });
            $bad++, print $out "PUT $res->{status} $res->{content}\n"
                unless $res->{status} == 204;
            $res = $http->get(url("$id/properties/count"),
                              { headers => auth($creator) });
            $bad++, print $out "GET $res->{status} $res->{content}\n"
                unless $res->{status} == 200 && $res->{content} eq "$n";
        }
        print $out "requests $n bad $bad\n";
        close $out;
        exit 0;
    }

    Time::HiRes::sleep(0.3);
    my $t0 = Time::HiRes::time();
    my $rc = system("redis-cli --cluster reshard 127.0.0.1:$sport "
                    . "--cluster-from $src --cluster-to $dst "
                    . "--cluster-slots 3000 --cluster-yes "
                    . ">$Dir/reshard.log 2>&1");
    my $took = Time::HiRes::time() - $t0;
    Time::HiRes::sleep(0.3);
    open my $stop, '>', "$Dir/stop" or die;
    close $stop;
    waitpid $pid, 0;

    open my $in, '<', $log or die;
    my @lines = <$in>;
    Test::More::is($rc, 0, 'redis-cli --cluster reshard succeeded');
    Test::More::like($lines[-1] // '', qr/^requests \d+ bad 0$/,
                     'no request failed during the reshard')
        or Test::More::diag(@lines[0 .. ($#lines < 9 ? $#lines : 9)]);
    my (undef, $now) = owner(slot($id));
    Test::More::isnt($now, $sport, "the actor's slot moved");
    Test::More::diag(sprintf "reshard of 3000 slots: %.1f s, %s",
                     $took, $lines[-1] // '');
}

# kills the primary of {{s1}}; returns when its replica serves
our ($Killed, $Promoted);
# an actor on another shard than {{s1}}'s, which must keep serving: {{up}}
sub pick_up {
    my $port = (owner(slot(captured('s1'))))[1];
    for my $n (1 .. 100) {
        my $id = create_actor("u$n");
        next if (owner(slot($id)))[1] == $port;
        $ActingWeb::Test::Captured{up} = $id;
        $ActingWeb::Test::Captured{upc} = "u$n";
        last;
    }
}

sub kill_primary {
    my $port = (owner(slot(captured('s1'))))[1];
    open my $f, '<', "$Dir/$port/redis.pid" or die;
    chomp(my $pid = <$f>);
    kill 'KILL', $pid;
    unlink "$Dir/$port/redis.pid";
    $Killed = $port;
    $ENV{TEST_NGINX_KILLED} = $port;
}

sub wait_failover {
    my $t0 = Time::HiRes::time();
    my $slot = slot(captured('s1'));
    my $port;
    for (1 .. 300) {
        $port = eval { (owner($slot))[1] };
        last if $port && $port != $Killed;
        Time::HiRes::sleep(0.1);
    }
    die "no failover\n" unless $port && $port != $Killed;
    my $t1 = Time::HiRes::time();

    # the module follows: the first 200 after the promotion
    my $id = captured('s1');
    my $res;
    for (1 .. 300) {
        $res = $Http->get(url("$id/properties/greeting"),
                          { headers => auth(captured('s1c')) });
        last if $res->{status} == 200;
        Test::More::like($res->{content}, qr/^\{"error":\{"code":503,/,
                         'JSON 503 meanwhile') if $res->{status} != 200
                                                   && $_ == 1;
        Time::HiRes::sleep(0.1);
    }
    my $t2 = Time::HiRes::time();
    Test::More::is($res->{status}, 200, 'served again after the failover');
    Test::More::cmp_ok($t2 - $t1, '<', 15,
                       'followed the promotion within seconds');
    Test::More::diag(sprintf "promotion %.1f s after the kill, module "
                     . "served %.1f s after the promotion",
                     $t1 - $t0, $t2 - $t1);
}

# ---- callback delivery ----------------------------------------------------

# redis-cli in cluster mode (follows MOVED), arguments quoted for the shell
sub ccli {
    my @q = map { my $a = $_; $a =~ s/'/'\\''/g; "'$a'" } @_;
    for my $p (@Ports) {
        next unless (cli($p, 'role'))[0] eq 'master';
        return cli($p, '-c', @q);
    }
    die "no primary to send to\n";
}

sub akey { "$ENV{TEST_NGINX_REDIS_PREFIX}:{$_[1]}:$_[0]" }

# the subscriber {{b}} under /b/: on another shard than {{s0}}'s
sub pick_subscriber {
    my $port = (owner(slot(captured('s0'))))[1];
    for my $n (1 .. 100) {
        my $id = create_actor("b$n", 'b');
        next if (owner(slot($id)))[1] == $port;
        $ActingWeb::Test::Captured{b} = $id;
        return;
    }
    die "no subscriber on another shard\n";
}

# the sink's lines once there are at least $n of them (30 s at most)
sub callbacks {
    my ($n) = @_;
    my @l;
    for (1 .. 300) {
        if (open my $fh, '<', $ENV{TEST_NGINX_CBLOG}) {
            @l = <$fh>;
            chomp @l;
        }
        last if @l >= $n;
        Time::HiRes::sleep(0.1);
    }
    return @l;
}

# the sink's lines are sequences 1 to $n, each once
sub each_once {
    my ($n, @l) = @_;
    my %seq;
    $seq{$_}++ for map { /"sequence":(\d+)/ } @l;
    Test::More::is_deeply(\%seq, { map { $_ => 1 } 1 .. $n },
                          "sequences 1 to $n, each once");
}

# {{s0}}'s callback of a sequence to {{b}}, with that diff (or another
# publisher's: the names of its id, b, its subscription and secret)
sub callback_re {
    my ($seq, $data, @names) = @_;
    my ($s0, $b, $sub, $secret) = map { captured($_) }
                                  @names ? @names : qw(s0 b bsub bs);
    return qr{^/b/$b/callbacks/subscriptions/$s0/$sub\|Bearer[ ]$secret\|
              \{"id":"$s0","subscriptionid":"$sub","target":"properties",
              "sequence":$seq,"timestamp":"[^"]+Z","granularity":"high",
              "data":\Q$data\E\}$}x;
}

# work a stopped publisher left: a change, the pending mark; and the index
sub leave_change {
    my ($name, $value) = @_;
    my $s0 = captured('s0');
    Test::More::like(ccli('XADD', akey('changes', $s0), '*', 'path',
                          qq(["$name"]), 'op', 'set', 'value', $value),
                     qr/^\d+-\d+$/, 'XADD');
    Test::More::like(ccli('HSET', akey('actor', $s0), 'pending', $name),
                     qr/^[01]$/, 'HSET');
}

sub index_actor {
    my $s0 = captured('s0');
    require Compress::Zlib;
    my $n = Compress::Zlib::crc32($s0) % 16;
    Test::More::is(ccli('SADD', "$ENV{TEST_NGINX_REDIS_PREFIX}:cbq:{$n}",
                        url($s0)), '1', 'SADD');
}

# a node's count of an error reply it gave (INFO errorstats)
sub errors_given {
    my ($port, $name) = @_;
    for (cli($port, 'info', 'errorstats')) {
        return $1 if /^errorstat_$name:count=(\d+)/;
    }
    return 0;
}

# b polls its subscription at s0
sub poll_b {
    return $Http->get(url(join '/', captured('s0'), 'subscriptions',
                          captured('b'), captured('bsub')),
                      { headers => { Authorization => 'Bearer '
                                     . captured('bs') } });
}

# until b's subscription has no diff left (30 s at most): the 2xx
# callbacks are cleared when the run's calls are done
sub wait_cleared {
    for (1 .. 300) {
        last if poll_b()->{content} =~ /"data":\[\]/;
        Time::HiRes::sleep(0.1);
    }
}

sub put_s0 {
    my ($name, $value, $actor) = @_;
    $actor //= 's0';
    my $res = $Http->put(url(captured($actor) . "/properties/$name"),
                         { headers => auth(captured("${actor}c")),
                           content => $value });
    Test::More::is($res->{status}, 204, "PUT $name")
        or Test::More::diag($res->{content});
}

# waits (30 s at most) until a node gave an error reply $n times
sub wait_errors {
    my ($port, $name, $n) = @_;
    for (1 .. 300) {
        return 1 if errors_given($port, $name) >= $n;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

run_tests();

__DATA__

=== TEST 1: an actor on the cluster
--- request
POST /a/
{"creator": "alice", "passphrase": "pw"}
--- error_code: 201
--- response_body_json
{"id": "~^[0-9a-f]{32}$", "creator": "alice", "passphrase": "pw"}
--- capture
a = json:id



=== TEST 2: actors on each of the three shards
--- init
main::actors_per_shard();
--- request
GET /a/{{a}}/properties
--- more_headers
Authorization: {{basic:alice:pw}}
--- error_code: 200
--- response_body_json
{}



=== TEST 3: properties on every shard, one round trip each
--- request eval
["PUT /a/{{s0}}/properties/greeting\nhello 0",
 "PUT /a/{{s1}}/properties/greeting\nhello 1",
 "PUT /a/{{s2}}/properties/greeting\nhello 2",
 "GET /a/{{s0}}/properties/greeting",
 "GET /a/{{s1}}/properties/greeting",
 "GET /a/{{s2}}/properties/greeting",
 "GET /a/{{s1}}/properties"]
--- more_headers eval
["Authorization: {{basic:{{s0c}}:pw}}", "Authorization: {{basic:{{s1c}}:pw}}",
 "Authorization: {{basic:{{s2c}}:pw}}", "Authorization: {{basic:{{s0c}}:pw}}",
 "Authorization: {{basic:{{s1c}}:pw}}", "Authorization: {{basic:{{s2c}}:pw}}",
 "Authorization: {{basic:{{s1c}}:pw}}"]
--- error_code eval
[204, 204, 204, 200, 200, 200, 200]
--- response_body eval
["", "", "", "hello 0", "hello 1", "hello 2", '{"greeting":"hello 1"}']



=== TEST 4: trust between actors on different shards
--- request eval
["POST /a/{{s0}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/a/{{s1}}\", \"relationship\": \"friend\"}",
 "GET /a/{{s1}}/trust/friend/{{s0}}"]
--- more_headers eval
["Authorization: {{basic:{{s0c}}:pw}}", "Authorization: {{basic:{{s1c}}:pw}}"]
--- error_code eval
[201, 200]
--- response_body_json eval
['{"...": 1, "peerid": "{{s1}}", "approved": true, "peer_approved": true}',
 '{"...": 1, "peerid": "{{s0}}", "approved": true, "peer_approved": true}']
--- capture eval
["secret = json:secret", ""]



=== TEST 5: a subscription across shards: s1 subscribes at s0, sees a diff
--- request eval
["POST /a/{{s0}}/subscriptions/{{s1}}\n{\"target\": \"properties\"}",
 "PUT /a/{{s0}}/properties/news\nfresh"]
--- more_headers eval
["Authorization: Bearer {{secret}}", "Authorization: {{basic:{{s0c}}:pw}}"]
--- error_code eval
[201, 204]
--- capture eval
["sub = json:subscriptionid", ""]



=== TEST 6: ... polled by s1
--- init
main::pick_subscriber();
--- request
GET /a/{{s0}}/subscriptions/{{s1}}/{{sub}}
--- more_headers
Authorization: Bearer {{secret}}
--- error_code: 200
--- response_body_json
{"...": 1, "data": [{"...": 1, "sequence": 1, "data": {"news": "fresh"}}]}



=== TEST 6b: callbacks on the cluster: b (under /b/, another shard) trusts s0
--- request
POST /a/{{s0}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/b/{{b}}", "relationship": "friend"}
--- more_headers
Authorization: {{basic:{{s0c}}:pw}}
--- error_code: 201
--- response_body_json
{"...": 1, "peerid": "{{b}}", "approved": true, "peer_approved": true}
--- capture
bs = json:secret



=== TEST 6c: ... and subscribes high
--- request
POST /a/{{s0}}/subscriptions/{{b}}
{"target": "properties", "granularity": "high"}
--- more_headers
Authorization: Bearer {{bs}}
--- error_code: 201
--- response_body_json
{"...": 1, "subscriptionid": "~^[0-9a-f]+$", "granularity": "high"}
--- capture
bsub = json:subscriptionid



=== TEST 6d: five writes on s0: five callbacks to b, each sequence once, cleared after the 2xx
--- init
my $t0 = Time::HiRes::time();
main::put_s0('n', $_) for 1 .. 5;
my @l = main::callbacks(5);
Test::More::diag(sprintf "5 writes and their callbacks across shards: "
                 . "%.2f s", Time::HiRes::time() - $t0);
Test::More::is(scalar @l, 5, 'five callbacks') or Test::More::diag(@l);
main::each_once(5, @l);
for my $line (@l) {
    my ($n) = $line =~ /"sequence":(\d+)/;
    Test::More::like($line, main::callback_re($n, qq({"n":$n})),
                     "callback $n");
}
main::wait_cleared();
--- request
GET /a/{{s0}}/subscriptions/{{b}}/{{bsub}}
--- more_headers
Authorization: Bearer {{bs}}
--- error_code: 200
--- response_body_json
{"...": 1, "sequence": 5, "data": []}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6e: work left in Redis (a change, the mark, the index): the scan finds it on the cluster
--- init
main::leave_change('w', '7');
main::index_actor();
my @l = main::callbacks(6);
Test::More::is(scalar @l, 6, 'the left-over change was delivered');
Test::More::like($l[-1], main::callback_re(6, '{"w":7}'), 'once, as 6');
--- request
GET /status
--- error_code: 200
--- response_body_like eval
qr/"callbacks_sent":1,"callbacks_failed":0,/
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6f: TRYAGAIN during delivery: s0's slot migrating (cb_claim names a key that is not there); delivered once the slot has moved
--- init
my $s0 = main::captured('s0');
my (undef, $sport) = main::owner(main::slot($s0));
my $before = main::errors_given($sport, 'TRYAGAIN');
main::start_migration($s0);
# the write's keys are all there: it runs; cb_claim also names the
# actor's circuits hash, which does not exist: on a migrating slot Redis
# answers TRYAGAIN to a command with some of its keys there, some not
main::put_s0('t', '1');
my $t0 = Time::HiRes::time();
Test::More::ok(main::wait_errors($sport, 'TRYAGAIN', $before + 20),
               'TRYAGAIN for the claims');
Time::HiRes::sleep(1);
my $n = main::errors_given($sport, 'TRYAGAIN') - $before;
my $t1 = Time::HiRes::time();
Test::More::is(scalar(main::callbacks(0)), 6, 'nothing sent meanwhile');
main::migrate_keys();
main::finish_migration();
my $t2 = Time::HiRes::time();
my @l = main::callbacks(7);
Test::More::is(scalar @l, 7, 'delivered after the migration');
Test::More::like($l[-1], main::callback_re(7, '{"t":1}'), 'once, as 7');
Test::More::diag(sprintf "TRYAGAIN: %d replies in %.1f s; delivered "
                 . "%.2f s after the migration ended", $n, $t1 - $t0,
                 Time::HiRes::time() - $t2);
# each claim is retried 8 times with growing pauses, then given up and
# found again by the scan: a few a second, not a hot loop
Test::More::cmp_ok($n / ($t1 - $t0), '<', 100, 'TRYAGAIN replies a second');
main::wait_cleared();
--- request
GET /a/{{s0}}/subscriptions/{{b}}/{{bsub}}
--- more_headers
Authorization: Bearer {{bs}}
--- error_code: 200
--- response_body_json
{"...": 1, "sequence": 7, "data": []}
--- error_log
actingweb: redis cluster still answered TRYAGAIN (a slot migrating) after 8 redirects
--- no_error_log
[alert]
[crit]



=== TEST 6g: CLUSTERDOWN during delivery: s0's slot not served (CLUSTER DELSLOTS) while the scan finds work; served again (ADDSLOTS): delivered
--- init
my $s0 = main::captured('s0');
my $slot = main::slot($s0);
my (undef, $port) = main::owner($slot);
main::leave_change('u', '9');
my $before = main::errors_given($port, 'CLUSTERDOWN');
Test::More::is(main::cli($port, 'cluster', 'delslots', $slot), 'OK',
               'DELSLOTS');
main::index_actor();
my $t0 = Time::HiRes::time();
Test::More::ok(main::wait_errors($port, 'CLUSTERDOWN', $before + 1),
               'CLUSTERDOWN for the claim');
my $res = main::poll_b();
Test::More::is($res->{status}, 503, 'a poll meanwhile: 503');
Test::More::like($res->{content},
                 qr/^\{"error":\{"code":503,"message":"storage unavailable/,
                 '... JSON');
Time::HiRes::sleep(2);
my $n = main::errors_given($port, 'CLUSTERDOWN') - $before;
my $t1 = Time::HiRes::time();
Test::More::is(scalar(main::callbacks(0)), 7, 'nothing sent meanwhile');
Test::More::is(main::cli($port, 'cluster', 'addslots', $slot), 'OK',
               'ADDSLOTS');
my $t2 = Time::HiRes::time();
my @l = main::callbacks(8);
Test::More::is(scalar @l, 8, 'delivered when the slot is served again');
Test::More::like($l[-1], main::callback_re(8, '{"u":9}'), 'as 8');
main::each_once(8, @l);
Test::More::diag(sprintf "CLUSTERDOWN: %d replies in %.1f s; delivered "
                 . "%.2f s after ADDSLOTS", $n, $t1 - $t0,
                 Time::HiRes::time() - $t2);
Test::More::cmp_ok($n / ($t1 - $t0), '<', 100,
                   'CLUSTERDOWN replies a second');
main::wait_cleared();
--- request
GET /a/{{s0}}/subscriptions/{{b}}/{{bsub}}
--- more_headers
Authorization: Bearer {{bs}}
--- error_code: 200
--- response_body_json
{"...": 1, "sequence": 8, "data": []}
--- error_log
actingweb: redis cluster: CLUSTERDOWN Hash slot not served
--- no_error_log
[alert]
[crit]



=== TEST 7: s2's slot migrating, keys still at the source: served there
--- init
main::start_migration(ActingWeb::Test::captured('s2'));
--- request eval
["GET /a/{{s2}}/properties/greeting", "PUT /a/{{s2}}/properties/greeting\nhello again"]
--- more_headers
Authorization: {{basic:{{s2c}}:pw}}
--- error_code eval
[200, 204]
--- response_body eval
["hello 2", ""]



=== TEST 8: keys moved, slot still migrating: ASK, followed
--- init
main::migrate_keys();
--- request eval
["GET /a/{{s2}}/properties/greeting", "PUT /a/{{s2}}/properties/greeting\nhello asked",
 "GET /a/{{s2}}/properties"]
--- more_headers
Authorization: {{basic:{{s2c}}:pw}}
--- error_code eval
[200, 204, 200]
--- response_body eval
["hello again", "", '{"greeting":"hello asked"}']



=== TEST 9: migration finished: MOVED, followed, map refreshed
--- init
main::finish_migration();
--- request eval
["GET /a/{{s2}}/properties/greeting", "PUT /a/{{s2}}/properties/greeting\nhello moved",
 "GET /a/{{s2}}/properties/greeting"]
--- more_headers
Authorization: {{basic:{{s2c}}:pw}}
--- error_code eval
[200, 204, 200]
--- response_body eval
["hello asked", "", "hello moved"]



=== TEST 10: redis-cli --cluster reshard while requests run: no errors
--- init
main::reshard_under_load();
main::pick_up();
--- request
GET /a/{{r}}/properties/count
--- more_headers
Authorization: {{basic:{{rc}}:pw}}
--- error_code: 200
--- response_body_like: ^\d+$



=== TEST 10b: b trusts up too (up: on another shard than s1's)
--- request
POST /a/{{up}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_SERVER_PORT}}/b/{{b}}", "relationship": "friend"}
--- more_headers
Authorization: {{basic:{{upc}}:pw}}
--- error_code: 201
--- response_body_json
{"...": 1, "peerid": "{{b}}", "approved": true, "peer_approved": true}
--- capture
ubs = json:secret



=== TEST 10c: ... and subscribes high at up
--- request
POST /a/{{up}}/subscriptions/{{b}}
{"target": "properties", "granularity": "high"}
--- more_headers
Authorization: Bearer {{ubs}}
--- error_code: 201
--- response_body_json
{"...": 1, "subscriptionid": "~^[0-9a-f]+$", "granularity": "high"}
--- capture
ubsub = json:subscriptionid



=== TEST 11: a primary killed: its shard 503 JSON, the others serve; a write's own worker delivers its callbacks meanwhile
--- init
main::kill_primary();
my $t0 = Time::HiRes::time();
# the scan waits until every slot has a primary again; the writing
# worker claims and delivers at once on a shard that is up
main::put_s0('cb', '1', 'up');
my @l = main::callbacks(9);
Test::More::diag(sprintf "a callback on a live shard %.2f s after the "
                 . "kill of another", Time::HiRes::time() - $t0);
Test::More::is(scalar @l, 9, "up's callback went during the failover");
Test::More::like($l[-1], main::callback_re(1, '{"cb":1}',
                                           qw(up b ubsub ubs)), 'as 1');
--- request eval
["GET /a/{{s1}}/properties/greeting", "GET /a/{{up}}/properties",
 "PUT /a/{{up}}/properties/x\n1", "GET /a/{{s1}}/properties"]
--- more_headers eval
["Authorization: {{basic:{{s1c}}:pw}}", "Authorization: {{basic:{{upc}}:pw}}",
 "Authorization: {{basic:{{upc}}:pw}}", "Authorization: {{basic:{{s1c}}:pw}}"]
--- error_code eval
[503, 200, 204, 503]
--- response_body_like eval
['^\\{"error":\\{"code":503,"message":"storage unavailable',
 '^\\{"cb":1\\}$', '^$',
 '^\\{"error":\\{"code":503,"message":"storage unavailable']
--- no_error_log
[alert]
[crit]



=== TEST 12: the replica promoted: followed, the data written before is there
--- init
main::wait_failover();
my $sub = main::captured('ubsub');
main::each_once(2, grep { m{/$sub\|} } main::callbacks(10));
--- request eval
["GET /a/{{s1}}/properties/greeting", "PUT /a/{{s1}}/properties/greeting\nafter"]
--- more_headers
Authorization: {{basic:{{s1c}}:pw}}
--- error_code eval
[200, 204]
--- response_body eval
["hello 1", ""]
--- no_error_log
[alert]
[crit]



=== TEST 13: actingweb_redis_cluster and actingweb_redis exclude each other
--- http_config
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1;
    actingweb_redis 127.0.0.1:6379;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis" directive is duplicate: actingweb_redis_cluster is set



=== TEST 14: ... in either order
--- http_config
    actingweb_redis 127.0.0.1:6379;
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_cluster" directive is duplicate: actingweb_redis is set



=== TEST 15: a cluster has database 0 only
--- http_config
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1;
    actingweb_redis_db 1;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
actingweb_redis_db: Redis Cluster has only database 0



=== TEST 16: a seed that is not an address
--- http_config
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1 127.0.0.1:99999;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
actingweb_redis "127.0.0.1:99999": invalid port
