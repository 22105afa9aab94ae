# A factory at the server root (location /), and the error filter that
# keeps nginx's own error pages out of actor locations.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

no_root_location();

run_tests();

__DATA__

=== TEST 1: factory at the server root: actor URLs are /<id>
--- config
    location / { actingweb; }
--- request
POST /
--- error_code: 201
--- response_headers_like
Location: http://localhost(:\d+)?/[0-9a-f]{32}$
--- capture
id = json:id
pass = json:passphrase



=== TEST 2: the actor is reachable under the root
--- config
    location / { actingweb; }
--- request
GET /{{id}}/meta/id
--- response_body chomp
{{id}}
--- response_headers
Content-Type: text/plain; charset=utf-8



=== TEST 3: a too large Content-Length is refused by nginx itself: still JSON
--- config
    location / {
        actingweb;
        client_max_body_size 10;
    }
--- request
PUT /{{id}}/properties/x
0123456789abcdef
--- more_headers
Authorization: {{basic:creator:{{pass}}}}
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body_json
{"error": {"code": 413, "message": "request body too large"}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]
[crit]



=== TEST 4: a too large chunked body: JSON 413 too
--- config
    location / {
        actingweb;
        client_max_body_size 10;
    }
--- raw_request eval
"PUT /{{id}}/properties/x HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: {{basic:creator:{{pass}}}}\r
Transfer-Encoding: chunked\r
\r
8\r
01234567\r
8\r
89abcdef\r
0\r
\r
"
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body_json
{"error": {"code": 413, "message": "request body too large"}}
--- error_log
client intended to send too large chunked body
--- no_error_log
[alert]
[crit]



=== TEST 5: locations without actingweb keep nginx's pages
--- config
    location / { actingweb; }
    location = /plain { return 404; }
--- request
GET /plain
--- error_code: 404
--- response_headers_like
Content-Type: text/html
