# actingweb_secret_key: trust secrets are stored encrypted (AES-256-GCM)
# and the Bearer index is a keyed hash; trusts work as before, and a Redis
# dump holds no secret in clear text.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use Digest::SHA ();
use IO::Socket::INET ();


$ENV{TEST_NGINX_B_PORT} ||= free_port();

my $peer = peer_location();

block_defaults(
    user_files => <<'FILES',
>>> aw.key
# id key (the first line encrypts)
2 8f2a5c0e1b7d4a6f9c3e2b1a0d9f8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10
1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
FILES
    http_config => <<"CONF",
    actingweb_secret_key ../html/aw.key;
    server {
        listen 127.0.0.1:\$TEST_NGINX_B_PORT;
        location /b/ {
            actingweb;
            actingweb_base_url http://127.0.0.1:\$TEST_NGINX_B_PORT/b;
            actingweb_peer_allow 127.0.0.1;
        }
$peer
    }
CONF
    config => <<"CONF",
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
    }
    location /tob/ {
        proxy_pass http://127.0.0.1:\$TEST_NGINX_B_PORT/;
    }
$peer
CONF
);

# SAVE the test Redis uncompressed and return the dump file's bytes
sub redis_dump {
    ActingWeb::Test::redis_cmd('CONFIG', 'SET', 'rdbcompression', 'no');
    my (undef, $dir) = ActingWeb::Test::redis_cmd('CONFIG', 'GET', 'dir');
    my (undef, $file) = ActingWeb::Test::redis_cmd('CONFIG', 'GET',
                                                   'dbfilename');
    ActingWeb::Test::redis_cmd('SAVE');
    open my $fh, '<:raw', "$dir/$file" or die "open $dir/$file: $!";
    local $/;
    my $dump = <$fh>;
    unlink "$dir/$file";
    return $dump;
}

run_tests();

__DATA__

=== TEST 1: actors A and B
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /tob/b/\n{\"creator\": \"bob\", \"passphrase\": \"pb\"}"]
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "b = json:id"]



=== TEST 2: A initiates a trust with B; the secret is shown as before
--- request
POST /a/{{a}}/trust
{"url": "http://127.0.0.1:{{env:TEST_NGINX_B_PORT}}/b/{{b}}", "relationship": "friend"}
--- more_headers
Authorization: {{basic:alice:pa}}
--- error_code: 201
--- response_body_json
{"...": 1, "peerid": "{{b}}", "secret": "~^[0-9a-f]{40}$",
 "verified": true}
--- capture
secret = json:secret



=== TEST 3: B approves; the Bearer secret works on B, A reads its record
--- request eval
["PUT /tob/b/{{b}}/trust/friend/{{a}}\n{\"approved\": true}",
 "GET /tob/b/{{b}}/trust/friend/{{a}}",
 "GET /a/{{a}}/trust/friend/{{b}}",
 "GET /tob/b/{{b}}/trust/friend/{{a}}"]
--- more_headers eval
["Authorization: {{basic:bob:pb}}",
 "Authorization: Bearer {{secret}}",
 "Authorization: {{basic:alice:pa}}",
 "Authorization: Bearer 0000000000000000000000000000000000000000"]
--- error_code eval
[204, 200, 200, 403]
--- response_body_json eval
[undef,
 '{"...": 1, "peerid": "{{a}}", "secret": "{{secret}}", "approved": true}',
 '{"...": 1, "peerid": "{{b}}", "secret": "{{secret}}",
   "peer_approved": true}',
 undef]



=== TEST 4: a Redis dump holds no trust secret in clear text
--- init
my $secret = captured('secret');
my $dump = main::redis_dump();
Test::More::cmp_ok(length $dump, '>', 100, 'a dump was taken');
Test::More::unlike($dump, qr/\Q$secret\E/, 'no clear-text secret');
Test::More::unlike($dump, qr/"secret":/, 'no "secret" field');
# Lua's cjson writes "/" as "\/" when a script rewrites a record
Test::More::like($dump, qr/"secret_enc":"[A-Za-z0-9+\\\/=]+"/,
                 'sealed secrets');
my $sha = Digest::SHA::sha256_hex($secret);
Test::More::unlike($dump, qr/$sha/, 'the index is not a plain SHA-256');
for my $id (captured('a'), captured('b')) {
    Test::More::is(ActingWeb::Test::redis_cmd('HLEN',
        "$ENV{TEST_NGINX_REDIS_PREFIX}:{$id}:trustsec"), 1,
        "one index entry for $id");
}
--- request
GET /a/{{a}}/trust
--- more_headers
Authorization: {{basic:alice:pa}}
--- response_body_like: "secret":"{{secret}}"



=== TEST 5: a bad key file stops the start
--- user_files
>>> aw.key
1 0011
--- must_die
--- error_log
each line must be "ID HEX"
