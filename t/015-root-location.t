# A factory at the server root (location /), and the error filter that
# keeps nginx's own error pages out of actor locations.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

no_root_location();

# a port of our own for the small-send-buffer server (TEST 6)
{
    require IO::Socket::INET;
    my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die "listen: $!";
    $ENV{TEST_NGINX_SMALLBUF_PORT} = $l->sockport;
}

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



=== TEST 6: many pipelined nginx error pages over a small send buffer all arrive
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SMALLBUF_PORT sndbuf=4k;
        keepalive_requests 10000;
        location /aw/ {
            deny all;
            actingweb;
        }
    }
--- config
    location / { actingweb; }
--- init
# 3000 requests on one connection, written by a child while we read: the
# JSON filter must pass nginx's flushes on, or the worker stalls once the
# socket buffer is full
use IO::Socket::INET ();
use IO::Select ();
ActingWeb::Test::wait_for_server();
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ENV{TEST_NGINX_SMALLBUF_PORT})
    or die "connect: $!";
my $n = 3000;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    print {$s} "GET /aw/x HTTP/1.1\r\nHost: a\r\n\r\n" for 1 .. $n;
    POSIX::_exit(0);
}
my ($got, $buf) = (0, '');
my $sel = IO::Select->new($s);
my $deadline = time + 20;
while ($got < $n && time < $deadline) {
    last unless $sel->can_read(5);
    my $r = sysread $s, my $chunk, 65536;
    last unless $r;
    $buf .= $chunk;
    $got++ while $buf =~ s/^.*?\{"error":\{"code":403,"message":"request failed"\}\}//s;
}
waitpid $pid, 0;
die "only $got of $n pipelined 403 answers arrived\n" if $got != $n;
--- request
GET /nothing-here
--- error_code: 404
--- response_headers
Content-Type: application/json
--- no_error_log
[alert]
[crit]
