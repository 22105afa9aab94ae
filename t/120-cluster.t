# Redis Cluster (actingweb_redis_cluster): a local cluster of 3 primaries
# and 3 replicas (t/lib/redis-cluster.sh) in a directory of its own.
# Actors on every shard, properties, trust and a subscription between
# actors on different shards; a slot migrated by hand (ASK while it
# migrates, MOVED after); redis-cli --cluster reshard under load; a
# primary killed: its shard answers 503 JSON, the others keep serving,
# and after the replica's promotion the module follows and the data
# written before is there.

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

# the seeds replace actingweb_redis; redis_cmd() is not used here
$ActingWeb::Test::DefaultHttpConfig{actingweb_redis} = undef;

block_defaults(
    http_config => <<'CONF',
    actingweb_redis_cluster 127.0.0.1:$TEST_NGINX_C1 127.0.0.1:$TEST_NGINX_C2;
    actingweb_redis_timeout 3s;
    actingweb_peer_timeout 5s;
CONF
    config => <<'CONF',
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
    my ($creator) = @_;
    my $res = $Http->post(url(''), {
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
--- request
GET /a/{{s0}}/subscriptions/{{s1}}/{{sub}}
--- more_headers
Authorization: Bearer {{secret}}
--- error_code: 200
--- response_body_json
{"...": 1, "data": [{"...": 1, "sequence": 1, "data": {"news": "fresh"}}]}



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



=== TEST 11: a primary killed: its shard 503 JSON, the others serve
--- init
main::kill_primary();
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
 '^\\{\\}$', '^$',
 '^\\{"error":\\{"code":503,"message":"storage unavailable']
--- no_error_log
[alert]
[crit]



=== TEST 12: the replica promoted: followed, the data written before is there
--- init
main::wait_failover();
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
