# Tests of the test harness itself (t/lib): the Test::Nginx sections we
# rely on, ActingWeb::Test's captures, placeholders, JSON comparison and
# Redis helpers, and - by running t/fixtures/failing.tfail - that failing
# expectations really make a test file fail.
#
# Only plain nginx features are used, so this file does not need the
# ActingWeb module; the Redis block needs a Redis server
# (TEST_NGINX_REDIS_HOST / TEST_NGINX_REDIS_PORT).

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use File::Basename ();
use File::Temp ();
use IO::Socket::INET ();

# plain nginx: no actingweb_* directives in http_config
no_actingweb_defaults();

$ENV{TEST_NGINX_HARNESS_GREETING} = 'hello from the environment';

# Run a test file through prove (App::Prove) in a child perl, on its own
# port and server root, and write a summary of its TAP output to
# html/fixture.txt so that a block can fetch and compare it.  prove's exit
# status is used rather than the file's own: the real runner switches off
# Test::Builder's end-of-run handling after a client timeout, and then
# only the missing plan tells that the file failed.  Called from
# "--- init" (package Test::Nginx::Util under the real runner, hence the
# main:: prefix there).
sub run_fixture {
    my ($file) = @_;
    my $probe = IO::Socket::INET->new(
        Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
    ) or die "no free port: $!";
    my $port = $probe->sockport;
    close $probe;
    my $tmp = File::Temp->newdir;

    # same runner as ours: pass on the compat directory if we use it
    my @inc = ('-It/lib');
    if ($Test::Nginx::Socket::IsCompat) {
        my $dir = $INC{'Test/Nginx/Socket.pm'};
        $dir = File::Basename::dirname($dir) for 1 .. 3;
        unshift @inc, "-I$dir";
    }

    local $ENV{TEST_NGINX_SERVER_PORT} = $port;
    local $ENV{TEST_NGINX_SERVROOT} = "$tmp/servroot";
    delete local $ENV{TEST_NGINX_PORT};
    delete local $ENV{TEST_NGINX_CLIENT_PORT};
    delete local $ENV{TEST_NGINX_NO_CLEAN};
    delete local $ENV{TEST_NGINX_RANDOMIZE};
    delete local $ENV{TEST_NGINX_USE_VALGRIND};    # fast, and no leak noise
    my $prove = 'my $p = App::Prove->new; $p->process_args(@ARGV); '
              . 'exit($p->run ? 0 : 1)';
    my $out = qx{$^X -MApp::Prove -e '$prove' -- -v @inc $file 2>&1};
    my $status = $?;
    Test::More::note("output of $file:\n$out");

    my (%ok, %not_ok);
    for my $line (split /\n/, $out) {
        if ($line =~ /^(not )?ok \d+ - .*?\bTEST (\d+):/) {
            ($1 ? \%not_ok : \%ok)->{$2} = 1;
        }
    }
    delete @ok{ keys %not_ok };
    my $summary = sprintf "prove failed: %s\npassed blocks: %s\n"
        . "failed blocks: %s\n", $status ? 'yes' : 'no',
        join(' ', sort { $a <=> $b } keys %ok),
        join(' ', sort { $a <=> $b } keys %not_ok);

    open my $fh, '>', html_dir() . '/fixture.txt' or die $!;
    print {$fh} $summary;
    close $fh;
}

run_tests();

__DATA__

=== TEST 1: status, body and response headers (incl. absent ones)
--- config
    location = /t {
        add_header X-Test yes;
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- response_headers
X-Test: yes
Content-Type: text/plain
!X-Absent
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: error_code, response_headers_like, response_body_like
--- config
    location = /t {
        return 404;
    }
--- request
GET /t
--- error_code: 404
--- response_headers_like
Content-Type: text/html.*
Server: nginx.*
--- response_body_like: 404 Not Found
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: several requests, one array entry per request
--- config
    location = /a { return 200 "A"; }
    location = /b { return 201 "B"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["A", "B"]
--- response_headers eval
["Content-Length: 1", "Content-Length: 1"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: pipelined requests over one connection
--- config
    location = /a { return 200 "A\n"; }
    location = /b { return 200 "B $connection_requests\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["A\n", "B 2\n"]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: second server on a random port; body and more_headers pass
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "backend $uri foo=$http_x_foo body=$http_x_body\n";
        }
    }
--- config
    location /proxy/ {
        proxy_set_header X-Body $request_body;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/back/;
    }
--- request
POST /proxy/x
hello body
--- more_headers
X-Foo: bar
--- response_body
backend /back/x foo=bar body=hello body
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: $TEST_NGINX_* in config, {{env:...}} and {{LBRACES}} elsewhere
--- config
    location = /t {
        return 200 "$TEST_NGINX_HARNESS_GREETING|$TEST_NGINX_SERVER_PORT|{{LBRACES}}x}}\n";
    }
--- request
GET /t
--- response_body
{{env:TEST_NGINX_HARNESS_GREETING}}|$ServerPort|{{LBRACES}}x}}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 7: capture values from a response (block A)
--- config
    location = /actors {
        add_header Location "http://localhost/actors/a1b2c3" always;
        return 201 '{"id": "a1b2c3", "passphrase": "p+a.ss/w=rd", "creator": "alice", "n": [10, {"deep": true}]}';
    }
--- request
POST /actors
{"creator": "alice"}
--- more_headers
Content-Type: application/json
--- error_code: 201
--- capture
actor_id = json:id
pass     = json:passphrase
creator  = json:creator
deep     = json:n.1.deep
location = header:Location
tail     = header:Location ~ /actors/(\w+)$
count    = regex:"n": \[(\d+)
--- response_body_json
{"passphrase": "{{ANY}}", "id": "~^[0-9a-f]{6}$",
 "n": [10, {"deep": true}], "...": ""}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: use the captured values (block B), incl. nested placeholders
--- config
    location /actors/ {
        return 200 "uri=$uri pass=$arg_pass auth=$http_authorization\n";
    }
--- request
GET /actors/{{actor_id}}?pass={{uri:{{pass}}}}
--- more_headers
Authorization: {{basic:{{creator}}:{{pass}}}}
--- response_body
uri=/actors/a1b2c3 pass=p%2Ba.ss%2Fw%3Drd auth=Basic YWxpY2U6cCthLnNzL3c9cmQ=
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9: placeholders in regular expressions are quoted
--- config
    location = /t {
        return 200 "pass is p+a.ss/w=rd, id a1b2c3, deep true, count 10, at http://localhost/actors/a1b2c3\n";
    }
--- request
GET /t
--- response_body_like
^pass is {{pass}}, id {{tail}}, deep {{deep}}, count {{count}}, at {{location}}$
--- no_error_log
[error]
[alert]
[crit]



=== TEST 10: placeholders in eval results; helpers callable in eval
--- config
    location = /t {
        return 200 "$http_authorization|$arg_id\n";
    }
--- request eval
"GET /t?id={{actor_id}}"
--- more_headers eval
"Authorization: " . basic_auth("bob", "secret")
--- response_body eval
qr/^Basic Ym9iOnNlY3JldA==\|\{\{actor_id\}\}$/
--- no_error_log
[error]
[alert]
[crit]



=== TEST 11: JSON comparison ignores key order and whitespace
--- config
    location = /j {
        default_type application/json;
        return 200 '{"b":[1,2,{"y":null,"x":"s"}],"a":{"z":false,"k":1.5}}';
    }
--- request
GET /j
--- response_body_json
{
    "a": {"k": 1.5, "z": false},
    "b": [1, 2, {"x": "s", "y": null}]
}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 12: response_body_json per request, with ANY and regex markers
--- config
    location = /one {
        return 200 '{"id":"0123456789abcdef0123456789abcdef","t":7}';
    }
    location = /two {
        return 200 '[{"v":"x"},{"v":"y"}]';
    }
--- request eval
["GET /one", "GET /two"]
--- response_body_json eval
['{"t": 7, "id": "~^[0-9a-f]{32}$"}', '[{"v": "x"}, {"v": "{{ANY}}"}]']
--- no_error_log
[error]
[alert]
[crit]



=== TEST 13: error_log: strings and regexes must appear
--- config
    rewrite_log on;
    location = /old {
        rewrite ^ /t last;
    }
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /old
--- response_body
ok
--- error_log eval
[qr/rewritten data: "\/t"/, 'event method']
--- no_error_log
[error]
[alert]
[crit]



=== TEST 14: raw_request is sent as is
--- config
    location = /t {
        return 200 "raw $server_protocol\n";
    }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_body
raw HTTP/1.0
--- no_error_log
[error]
[alert]
[crit]



=== TEST 15: request sent in packets with a delay; timeout and wait
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "backend $uri body=$http_x_body\n";
        }
    }
--- config
    location /proxy/ {
        proxy_set_header X-Body $request_body;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/back/;
    }
--- request eval
[["POST /proxy/p\nhel", {value => "lo", delay_before => 0.2}]]
--- timeout: 2s
--- wait: 0.1
--- response_body
backend /back/p body=hello
--- no_error_log
[error]
[alert]
[crit]



=== TEST 16: Redis helpers and the per-file key prefix
--- config
    location = /t {
        return 200 "$TEST_NGINX_REDIS_PREFIX\n";
    }
--- init
redis_cmd('SET', redis_key('actor', 'a1'), 'x');
redis_cmd('HSET', redis_key('actor', 'a2'), 'f', 'v');
Test::More::is_deeply([redis_keys('actor:*')], ['actor:a1', 'actor:a2'],
                      'redis_keys lists the keys under the file prefix');
Test::More::is(scalar redis_cmd('GET', redis_key('actor', 'a1')), 'x',
               'redis_cmd GET');
Test::More::is(redis_cleanup(), 2, 'redis_cleanup deletes them');
Test::More::is(scalar(my @k = redis_keys()), 0, 'no keys left');
--- request
GET /t
--- response_body
{{env:TEST_NGINX_REDIS_PREFIX}}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 17: a block without --- config reuses the running server
--- request
GET /t
--- response_body_like
^awt:000-harness:\d+$
--- no_error_log
[error]
[alert]
[crit]



=== TEST 18: user_files and response_body_filters
--- config
    location = /unused {
        return 204;
    }
--- user_files
>>> data/hello.txt
Hello from a user file
--- request
GET /data/hello.txt
--- response_body_filters
uc
--- response_body
HELLO FROM A USER FILE
--- no_error_log
[error]
[alert]
[crit]



=== TEST 19: grep_error_log
--- config
    rewrite_log on;
    location = /old {
        rewrite ^ /t last;
    }
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /old
--- grep_error_log eval
qr/rewritten data: "[^"]*"/
--- grep_error_log_out
rewritten data: "/t"
--- no_error_log
[error]
[alert]
[crit]



=== TEST 20: skip_nginx skips the block's tests (and does not run it)
--- config
    this is not a valid nginx configuration;
--- request
GET /t
--- response_body
never
--- skip_nginx
3: > 0.1.0



=== TEST 21: must_die, with the startup error in error.log
(needs TEST_NGINX_BINARY=t/lib/nginx-errlog.sh, see t/lib/README.md; the
default no_error_log does not apply to must_die blocks)
--- config
    location = /t {
        return a b c;
    }
--- must_die
--- error_log
invalid number of arguments in "return" directive
--- skip_eval
2: ($ENV{TEST_NGINX_BINARY} // '') !~ m{nginx-errlog\.sh$}



=== TEST 22: a --- SKIP block is not run
--- SKIP
--- config
    this is not a valid nginx configuration;
--- request
GET /t
--- response_body
never



=== TEST 23: failing expectations really fail (t/fixtures/failing.tfail)
--- config
    location = /unused {
        return 204;
    }
--- init
main::run_fixture('t/fixtures/failing.tfail');
--- request
GET /fixture.txt
--- response_body
prove failed: yes
passed blocks: 1
failed blocks: 2 3 4 5 6 7 8 9 10 11 12
--- no_error_log
[error]
[alert]
[crit]



=== TEST 24: --- main_config goes to the main context (main-only directive)
--- main_config
    worker_rlimit_nofile 4096;
--- config
    location = /t { return 200 "main ok\n"; }
--- request
GET /t
--- response_body
main ok
--- no_error_log
[error]
[alert]
[crit]
[emerg]



=== TEST 25: ... and is really there: a bad value there stops nginx
--- main_config
    worker_rlimit_nofile lots;
--- config
    location = /t { return 200 "unreachable\n"; }
--- must_die
--- error_log
"worker_rlimit_nofile" directive invalid number
