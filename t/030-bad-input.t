# Bad input gets a clear JSON error and changes nothing: malformed and
# over-deep JSON, non-UTF-8, odd paths and names, empty and huge bodies,
# bodies spilled to temp files, unknown methods, 10,000-key POSTs and
# concurrent writers.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use HTTP::Tiny ();
use POSIX ();

# nested PUTs of N distinct keys into one property from N processes at
# once; returns the statuses (all must be 204 and no key may be lost)
sub concurrent_puts {
    my ($id, $n) = @_;
    my $port = ActingWeb::Test::wait_for_server();
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $res = HTTP::Tiny->new(timeout => 60)->request('PUT',
                "http://127.0.0.1:$port/aw/$id/properties/shared/k$i",
                { content => qq({"v": $i}), headers => {
                    Authorization => ActingWeb::Test::basic_auth('c', 'pw'),
                } });
            # exit status: 0 for 204, else the HTTP status minus 300
            POSIX::_exit($res->{status} == 204 ? 0 : $res->{status} - 300);
        }
        push @pids, $pid;
    }
    my %bad;
    for (@pids) { waitpid $_, 0; $bad{($? >> 8) + 300}++ if $? }
    die "concurrent PUTs failed: "
        . join(', ', map { "$bad{$_} x $_" } sort keys %bad) . "\n" if %bad;
}

my $deep = ('[' x 100) . (']' x 100);
my $many = '{' . join(',', map { qq("p$_":$_) } 1 .. 10000) . '}';
my $big_text = 'x' x 200000;

our ($Deep, $Many, $BigText) = ($deep, $many, $big_text);

block_defaults(
    config       => <<'CONF',
    location /aw/ {
        actingweb;
        client_max_body_size 2m;
        client_body_buffer_size 16k;
    }
CONF
    more_headers => "Authorization: {{basic:c:pw}}\n",
);

run_tests();

__DATA__

=== TEST 1: create the actor
--- request
POST /aw/
{"creator": "c", "passphrase": "pw"}
--- error_code: 201
--- capture
id = json:id



=== TEST 2: malformed JSON, wrong JSON types: 400 JSON, nothing stored
--- request eval
["POST /aw/{{id}}/properties\n{\"a\": ",
 "POST /aw/{{id}}/properties\n\"text\"",
 "POST /aw/{{id}}/properties\n12",
 "PUT /aw/{{id}}/properties/j\n{\"a\": ",
 "GET /aw/{{id}}/properties"]
--- more_headers eval
["Authorization: {{basic:c:pw}}", "Authorization: {{basic:c:pw}}",
 "Authorization: {{basic:c:pw}}",
 "Authorization: {{basic:c:pw}}\nContent-Type: application/json",
 "Authorization: {{basic:c:pw}}"]
--- error_code eval
[400, 400, 400, 400, 200]
--- response_body eval
['{"error":{"code":400,"message":"malformed JSON"}}',
 '{"error":{"code":400,"message":"body must be a JSON object of properties"}}',
 '{"error":{"code":400,"message":"body must be a JSON object of properties"}}',
 '{"error":{"code":400,"message":"malformed JSON"}}',
 '{}']



=== TEST 3: JSON nested deeper than 64 levels is refused
--- request eval
"PUT /aw/{{id}}/properties/deep\n$main::Deep"
--- more_headers
Authorization: {{basic:c:pw}}
Content-Type: application/json
--- error_code: 400
--- response_body: {"error":{"code":400,"message":"JSON nested too deeply"}}



=== TEST 4: non-UTF-8 bodies, form values and names are refused
--- request eval
["PUT /aw/{{id}}/properties/bin\nab\xff\xfecd",
 "POST /aw/{{id}}/properties\n{\"k\": \"\xc3\x28\"}",
 "PUT /aw/{{id}}/properties/%C3%28\nx",
 "PUT /aw/{{id}}/properties/over\n\xc0\xaf",
 "GET /aw/{{id}}/properties"]
--- error_code eval
[400, 400, 400, 400, 200]
--- response_body eval
['{"error":{"code":400,"message":"body is not valid UTF-8"}}',
 '{"error":{"code":400,"message":"body is not valid UTF-8"}}',
 qr/invalid path segment/,
 '{"error":{"code":400,"message":"body is not valid UTF-8"}}',
 '{}']



=== TEST 5: odd paths: "..", "%00", "%2F" in a name, bad escapes, long segments
--- request eval
["GET /aw/{{id}}/properties/a/../b",
 "GET /aw/{{id}}/properties/a%00b",
 "PUT /aw/{{id}}/properties/a%2Fb\nx",
 "GET /aw/{{id}}/properties/a%zzb",
 "GET /aw/{{id}}/properties/" . ("n" x 300),
 "GET /aw/{{id}}/properties/" . CORE::join("/", ("s") x 40),
 "GET /aw/{{id}}/properties/%2E%2E"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]
--- response_headers eval
# nginx itself refuses "%00" and bad escapes while parsing the request line,
# before any location is chosen: its own 400 page (docs/protocol.md)
["Content-Type: application/json", "", "Content-Type: application/json", "",
 ("Content-Type: application/json") x 3]



=== TEST 6: names with "%", spaces and UTF-8 are fine and round-trip
--- request eval
["PUT /aw/{{id}}/properties/50%25%20off\nsale",
 "PUT /aw/{{id}}/properties/gr%C3%BC%C3%9Fe\nhi",
 "GET /aw/{{id}}/properties/50%25%20off",
 "GET /aw/{{id}}/properties"]
--- error_code eval
[204, 204, 200, 200]
--- response_body eval
["", "", "sale", '{"50% off":"sale","grüße":"hi"}']



=== TEST 7: empty bodies: PUT and POST are 400, nothing stored
--- request eval
["PUT /aw/{{id}}/properties/e", "POST /aw/{{id}}/properties",
 "GET /aw/{{id}}/properties/e"]
--- error_code eval
[400, 400, 404]
--- response_body eval
['{"error":{"code":400,"message":"empty body: send the value"}}',
 '{"error":{"code":400,"message":"empty body: send a JSON object of properties"}}',
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 8: a body larger than client_body_buffer_size (temp file) is read whole
--- request eval
"PUT /aw/{{id}}/properties/big\n$main::BigText"
--- more_headers
Authorization: {{basic:c:pw}}
Content-Type: text/plain
--- error_code: 204



=== TEST 9: ... and comes back byte for byte
--- request
GET /aw/{{id}}/properties/big
--- response_body eval
$main::BigText



=== TEST 10: a body over client_max_body_size is a JSON 413
--- request eval
"PUT /aw/{{id}}/properties/huge\n" . ("y" x 2200000)
--- error_code: 413
--- response_body: {"error":{"code":413,"message":"request body too large"}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]
[crit]



=== TEST 11: unknown methods and endpoints
--- request eval
["PATCH /aw/{{id}}/properties/x\n{}", "FOO /aw/{{id}}/meta",
 "GET /aw/{{id}}/sessions", "GET /aw/{{id}}/nonsense", "GET /aw/{{id}}/devtest/ping"]
--- error_code eval
[405, 405, 404, 404, 404]
--- response_body eval
['{"error":{"code":405,"message":"method not allowed"}}',
 '{"error":{"code":405,"message":"method not allowed"}}',
 '{"error":{"code":404,"message":"endpoint not supported"}}',
 '{"error":{"code":404,"message":"endpoint not supported"}}',
 '{"error":{"code":404,"message":"endpoint not supported"}}']



=== TEST 12: a 10,000-key POST is stored whole
--- request eval
"POST /aw/{{id}}/properties\n$main::Many"
--- error_code: 201
--- response_body_like: ^\{"p1":1,"p2":2,.*"p10000":10000\}$



=== TEST 13: ... every key is there
--- request
GET /aw/{{id}}/properties/p9999
--- response_body: 9999
--- init
my $key = "$ENV{TEST_NGINX_REDIS_PREFIX}:{"
          . ActingWeb::Test::captured('id') . "}:props";
my $n = ActingWeb::Test::redis_cmd('HLEN', $key);
die "expected at least 10000 properties, found $n\n" if $n < 10000;



=== TEST 14: 20 concurrent nested PUTs into one property lose nothing
--- init
main::concurrent_puts(ActingWeb::Test::captured('id'), 20);
--- request
GET /aw/{{id}}/properties/shared
--- response_body_json eval
'{' . CORE::join(',', map { qq("k$_": {"v": $_}) } 1 .. 20) . '}'



=== TEST 15: text with a NUL byte is refused
--- request eval
"PUT /aw/{{id}}/properties/nul\na\0b"
--- more_headers
Authorization: {{basic:c:pw}}
Content-Type: text/plain
--- error_code: 400
--- response_body: {"error":{"code":400,"message":"text values cannot contain NUL characters"}}



=== TEST 16: JSON followed by anything but space is not JSON
--- request eval
["PUT /aw/{{id}}/properties/tg\n1st place",
 "GET /aw/{{id}}/properties/tg",
 "PUT /aw/{{id}}/properties/tg2\n{\"a\":1} junk",
 "POST /aw/{{id}}/properties\n{\"x\":1}{\"y\":2}",
 "GET /aw/{{id}}/properties/x",
 "POST /aw/\n{\"creator\":\"a\"} trailing"]
--- more_headers eval
["Authorization: {{basic:c:pw}}", "Authorization: {{basic:c:pw}}",
 "Authorization: {{basic:c:pw}}\nContent-Type: application/json",
 "Authorization: {{basic:c:pw}}", "Authorization: {{basic:c:pw}}", ""]
--- error_code eval
[204, 200, 400, 400, 404, 400]
--- response_body eval
["", "1st place",
 '{"error":{"code":400,"message":"malformed JSON: data after the value"}}',
 '{"error":{"code":400,"message":"malformed JSON: data after the value"}}',
 '{"error":{"code":404,"message":"property not found"}}',
 '{"error":{"code":400,"message":"malformed JSON: data after the value"}}']



=== TEST 17: "\u0000" in a JSON string is refused, not cut short
--- request eval
["PUT /aw/{{id}}/properties/nulj\n\"ab\\u0000cd\"",
 "POST /aw/{{id}}/properties\n{\"k\": \"x\\u0000y\"}",
 "PUT /aw/{{id}}/properties/slash\n\"a\\\\u0000b\"",
 "GET /aw/{{id}}/properties/slash"]
--- more_headers
Authorization: {{basic:c:pw}}
Content-Type: application/json
--- error_code eval
[400, 400, 204, 200]
--- response_body eval
['{"error":{"code":400,"message":"\\\\u0000 is not supported in JSON strings"}}',
 '{"error":{"code":400,"message":"\\\\u0000 is not supported in JSON strings"}}',
 "", '"a\\\\u0000b"']



=== TEST 18: big integers keep every digit (stored as sent)
--- request eval
["PUT /aw/{{id}}/properties/bigint\n9007199254740993",
 "GET /aw/{{id}}/properties/bigint",
 "PUT /aw/{{id}}/properties/bigobj\n{\"ns\": 1732480000123456789}",
 "GET /aw/{{id}}/properties/bigobj"]
--- error_code eval
[204, 200, 204, 200]
--- response_body eval
["", "9007199254740993", "", '{"ns": 1732480000123456789}']



=== TEST 19: ... also in GET /properties, which inserts stored JSON as it is
--- request
GET /aw/{{id}}/properties
--- response_body_like: ^(?=.*"bigint":9007199254740993[,}])(?=.*"bigobj":\{"ns": 1732480000123456789\}[,}])



=== TEST 20: array indexes beyond the array (or beyond int) are 404
--- request eval
["PUT /aw/{{id}}/properties/arr\n[10, 11]",
 "GET /aw/{{id}}/properties/arr/1",
 "GET /aw/{{id}}/properties/arr/2",
 "GET /aw/{{id}}/properties/arr/4294967297"]
--- error_code eval
[204, 200, 404, 404]
--- response_body eval
["", "11", '{"error":{"code":404,"message":"property not found"}}',
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 21: a malformed chunked body closes the connection (no smuggling)
--- raw_request eval
"PUT /aw/{{id}}/properties/smuggle HTTP/1.1\r
Host: localhost\r
Authorization: {{basic:c:pw}}\r
Transfer-Encoding: chunked\r
\r
zz\r
GET /aw/{{id}}/meta/id HTTP/1.1\r
Host: localhost\r
\r
"
--- error_code: 400
--- response_headers
Connection: close
Content-Type: application/json
--- response_body: {"error":{"code":400,"message":"malformed request"}}
--- error_log
client sent invalid chunked body
--- no_error_log
[alert]
[crit]



=== TEST 22: a merge past actingweb_max_value_size is 413 and changes nothing
--- config
    location /aw/ {
        actingweb;
        actingweb_max_value_size 40;
    }
--- request eval
["PUT /aw/{{id}}/properties/capped\n{\"a\": \"0123456789\"}",
 "PUT /aw/{{id}}/properties/capped/b\n\"abcdefghijklmnopqrstuvwxyz\"",
 "GET /aw/{{id}}/properties/capped",
 "PUT /aw/{{id}}/properties/capped/c\n1",
 "GET /aw/{{id}}/properties/capped"]
--- error_code eval
[204, 413, 200, 204, 200]
--- response_body eval
["", '{"error":{"code":413,"message":"property value too large"}}',
 '{"a": "0123456789"}', "", '{"a":"0123456789","c":1}']



=== TEST 23: ... so are PUT and POST values past it, and the POST stores none
--- config
    location /aw/ {
        actingweb;
        actingweb_max_value_size 40;
    }
--- request eval
["PUT /aw/{{id}}/properties/big\n" . ('x' x 41),
 "POST /aw/{{id}}/properties\n{\"small\": 1, \"big\": \"" . ('x' x 41) . "\"}",
 "GET /aw/{{id}}/properties/small",
 "PUT /aw/{{id}}/properties/edge\n" . ('x' x 40),
 "DELETE /aw/{{id}}/properties/capped/a"]
--- error_code eval
[413, 413, 404, 204, 204]
--- response_body eval
['{"error":{"code":413,"message":"property value too large"}}',
 '{"error":{"code":413,"message":"property value too large"}}',
 '{"error":{"code":404,"message":"property not found"}}', "", ""]



=== TEST 24: without the directive the cap is client_max_body_size
--- config
    location /aw/ {
        actingweb;
        client_max_body_size 64;
    }
--- request eval
["PUT /aw/{{id}}/properties/bodycap\n{\"a\": \"" . ('x' x 40) . "\"}",
 "PUT /aw/{{id}}/properties/bodycap/b\n\"" . ('y' x 30) . "\"",
 "GET /aw/{{id}}/properties/bodycap/a"]
--- error_code eval
[204, 413, 200]
--- response_body eval
["", '{"error":{"code":413,"message":"property value too large"}}',
 'x' x 40]
