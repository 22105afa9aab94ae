# actingweb_error_json: requests nginx refuses while reading the request
# line or headers (before any location) get the module's JSON error body.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

our $Long = 'x' x 3000;

block_defaults(config => <<'CONF');
    actingweb_error_json on;
    large_client_header_buffers 2 1k;
    location /aw/ { actingweb; }
CONF

run_tests();

__DATA__

=== TEST 1: %00 in the path
--- raw_request eval
"GET /aw/%00 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":400,"message":"malformed request"}}
--- no_error_log
[error]
[alert]



=== TEST 2: a bad escape in the request line
--- raw_request eval
"GET /aw/../../%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":400,"message":"malformed request"}}



=== TEST 3: a header line too large for the buffers
--- raw_request eval
"GET /aw/ HTTP/1.1\r\nHost: localhost\r\nX-Big: $main::Long\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":400,"message":"malformed request"}}



=== TEST 4: a request line too long
--- raw_request eval
"GET /aw/$main::Long HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 414
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":414,"message":"request URI too long"}}



=== TEST 5: a garbled request line
--- raw_request eval
"GET\x01 / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":400,"message":"malformed request"}}



=== TEST 6: other locations keep nginx's pages
--- config
    actingweb_error_json on;
    location /aw/ { actingweb; }
    location /files/ { return 404; }
--- request
GET /files/x
--- error_code: 404
--- response_headers
Content-Type: text/html
--- response_body_like: <title>404 Not Found</title>



=== TEST 7: without the directive, nginx's HTML page
--- config
    large_client_header_buffers 2 1k;
    location /aw/ { actingweb; }
--- raw_request eval
"GET /aw/%00 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: text/html
--- response_body_like: <title>400 Bad Request</title>
