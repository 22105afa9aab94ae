# Callback delivery, second review: A publishes with a short change log;
# F's callbacks answer 500 (never cleared); R's answer 503 with
# Retry-After: 60 and are logged.  C is a second publisher R subscribes to.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();
$ENV{TEST_NGINX_CBLOG} ||= "/tmp/aw116-$$.log";
unlink $ENV{TEST_NGINX_CBLOG};

END { unlink $ENV{TEST_NGINX_CBLOG} if $ENV{TEST_NGINX_CBLOG} }

my $peer = peer_location();

block_defaults(
    http_config => <<"CONF",
    actingweb_peer_timeout 5s;
    log_format cb116 escape=none '\$request_uri';
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location ~ ^/r/[0-9a-f]+/callbacks/ {
            access_log \$TEST_NGINX_CBLOG cb116;
            add_header Retry-After 60 always;
            return 503;
        }
        location ~ ^/[fr]/[0-9a-f]+/meta/actingweb/supported\$ {
            return 200 "subscriptions,trust";
        }
        location ~ ^/f/[0-9a-f]+/callbacks/ { access_log off; return 500; }
        location /f/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/f;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
        location /r/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/r;
            actingweb_peer_allow 127.0.0.1;
            actingweb_auto_approve friend;
        }
$peer
    }
CONF
    config => <<"CONF",
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
        actingweb_change_log 3;
    }
    location /p/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/p;
        actingweb_peer_allow 127.0.0.1;
    }
    location = /status { actingweb_status; }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

sub put {
    my ($actor, $name, $value) = @_;
    my $port = main::wait_for_server();
    return HTTP::Tiny->new->request('PUT',
        "http://127.0.0.1:$port/a/" . main::captured($actor)
        . "/properties/$name",
        { headers => { Authorization => main::basic_auth('alice', 'pa'),
                       'Content-Type' => 'application/json' },
          content => $value })->{status};
}

sub status {
    my ($field) = @_;
    my $port = main::wait_for_server();
    my $s = HTTP::Tiny->new->get("http://127.0.0.1:$port/status")->{content};
    return $s =~ /"$field":(\d+)/ ? $1 : -1;
}

# Under valgrind and the sanitizers TEST 12 is skipped: it measures the
# worker's peak memory.
run_tests();

__DATA__

=== TEST 1: A and C (publishers), F and R (subscribers)
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/f/\n{\"creator\": \"fred\", \"passphrase\": \"pf\"}",
 "POST /tob/r/\n{\"creator\": \"rita\", \"passphrase\": \"pr\"}"]
--- more_headers
--- error_code eval
[201, 201, 201, 201]
--- capture eval
["a = json:id", "c = json:id", "f = json:id", "r = json:id"]



=== TEST 2: trusts A-F, A-R, C-R
--- request eval
["POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/f/{{f}}\", \"relationship\": \"friend\"}",
 "POST /a/{{a}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/r/{{r}}\", \"relationship\": \"friend\"}",
 "POST /a/{{c}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/r/{{r}}\", \"relationship\": \"friend\"}"]
--- error_code eval
[201, 201, 201]
--- capture eval
["sf = json:secret", "sra = json:secret", "src = json:secret"]



=== TEST 3: F subscribes high to x
--- request
POST /a/{{a}}/subscriptions/{{f}}
{"target": "properties", "subtarget": "x", "granularity": "high"}
--- more_headers
Authorization: Bearer {{sf}}
--- error_code: 201
--- capture
subf = json:subscriptionid



=== TEST 4: F never clears; writes go on until F's cursor is trimmed away: F gets no more diffs, but its cursor stays (a resync when F clears)
--- init
for my $v (1 .. 8) {
    Test::More::is(main::put('a', 'x', $v), 204, "PUT $v");
    select undef, undef, undef, 0.2;
}
for (1 .. 100) {
    last if main::status('outbox_depth') == 0
            && main::status('callbacks_failed') >= 3;
    select undef, undef, undef, 0.1;
}
select undef, undef, undef, 0.5;
--- request
GET /a/{{a}}/subscriptions/{{f}}/{{subf}}
--- more_headers
Authorization: Bearer {{sf}}
--- response_body_json
{"...": 1, "sequence": 3, "data": [{"...": 1, "sequence": 1, "data": 1}, {"...": 1, "sequence": 2, "data": 2}, {"...": 1, "sequence": 3, "data": 3}]}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: F clears what it has
--- request
PUT /a/{{a}}/subscriptions/{{f}}/{{subf}}
{"sequence": 3}
--- more_headers
Authorization: Bearer {{sf}}
--- error_code: 204
--- no_error_log
[error]



=== TEST 6: the next poll is a resync (x = 4 .. 8 were lost), not nothing
--- request
GET /a/{{a}}/subscriptions/{{f}}/{{subf}}
--- more_headers
Authorization: Bearer {{sf}}
--- response_body_json
{"...": 1, "sequence": 4, "data": [{"...": 1, "sequence": 4, "type": "resync"}]}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: R subscribes high to everything of A and of C
--- request eval
["POST /a/{{a}}/subscriptions/{{r}}\n{\"target\": \"properties\", \"granularity\": \"high\"}",
 "POST /a/{{c}}/subscriptions/{{r}}\n{\"target\": \"properties\", \"granularity\": \"high\"}"]
--- more_headers eval
["Authorization: Bearer {{sra}}", "Authorization: Bearer {{src}}"]
--- error_code eval
[201, 201]



=== TEST 8: R's 503 with Retry-After: 60 for A's callback opens its circuit; C's callback to R, in the same worker, waits too (not closed by C's claim, which has no record of R)
--- init
Test::More::is(main::put('a', 'y', 1), 204, 'PUT y on A');
Test::More::is(scalar main::sink_lines(1), 1, "A's callback went");
for (1 .. 100) {
    last if main::status('outbox_depth') == 0;
    select undef, undef, undef, 0.1;
}
Test::More::is(main::put('c', 'y', 1), 204, 'PUT y on C');
for (1 .. 100) {
    last if main::status('callbacks_failed') >= 2;
    select undef, undef, undef, 0.1;
}
select undef, undef, undef, 0.5;
my @l = main::sink_lines(2, 5);
Test::More::is(scalar @l, 1, 'R was called once') or Test::More::diag(join "\n", @l);
--- request
GET /status
--- response_body_like eval
qr/"circuits_open":1,/
--- error_log eval
["actingweb: callbacks to peer {{r}}: circuit open for 60000 ms after 1 failures"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9: P (publisher, the default change log)
--- request
POST /p/
{"creator": "alice", "passphrase": "pa"}
--- more_headers
--- error_code: 201
--- capture
p = json:id



=== TEST 10: trust P-F, F subscribes to x
--- request eval
["POST /p/{{p}}/trust\n{\"url\": \"http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/f/{{f}}\", \"relationship\": \"friend\"}"]
--- error_code eval
[201]
--- capture eval
["sfp = json:secret"]



=== TEST 11: F subscribes to x of P
--- request
POST /p/{{p}}/subscriptions/{{f}}
{"target": "properties", "subtarget": "x", "granularity": "high"}
--- more_headers
Authorization: Bearer {{sfp}}
--- error_code: 201
--- capture
subfp = json:subscriptionid



=== TEST 12: a backlog of 60 changes of 900 KB: a run makes about its budget (2 MB) of diffs, not all 54 MB (the worker's peak memory grows by less than 40 MB)
--- skip_eval
1: $ENV{TEST_NGINX_USE_VALGRIND} || $ENV{TEST_NGINX_SANITIZE}
--- init
my $p = main::captured('p');
my $big = '"' . ('v' x (900 * 1024)) . '"';
main::redis_cmd('XADD', "$ENV{TEST_NGINX_REDIS_PREFIX}:{$p}:changes", '*',
                'path', '["x"]', 'op', 'set', 'value', $big) for 1 .. 60;
sub hwm {
    open my $fh, '<', 't/servroot/logs/nginx.pid' or return -1;
    my $pid = <$fh>;
    chomp $pid;
    open my $st, '<', "/proc/$pid/status" or return -1;
    for (<$st>) { return $1 if /^VmHWM:\s+(\d+)/ }
    return -1;
}
my $before = hwm();
my $port = main::wait_for_server();
HTTP::Tiny->new->request('PUT', "http://127.0.0.1:$port/p/$p/properties/x",
    { headers => { Authorization => main::basic_auth('alice', 'pa'),
                   'Content-Type' => 'application/json' }, content => '1' });
for (1 .. 300) {
    last if main::status('callbacks_failed') >= 3 + 2 + 61
            && main::status('outbox_depth') == 0;
    select undef, undef, undef, 0.1;
}
my $after = hwm();
Test::More::cmp_ok($after - $before, '<', 40 * 1024,
                   "peak memory: $before kB, then $after kB");
--- request
GET /p/{{p}}/subscriptions/{{f}}/{{subfp}}
--- more_headers
Authorization: Bearer {{sfp}}
--- response_body_like: "sequence":61,
--- no_error_log
[error]
[alert]
[crit]
