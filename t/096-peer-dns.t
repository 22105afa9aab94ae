# Peers given by host name, with a tiny DNS server of the test's own: the
# proxy connects to exactly the address that passed the check (DNS
# rebinding), and the peer still sees its name as Host and, over TLS, as
# SNI and certificate name.  A config without $actingweb_peer_host keeps
# connecting by name, with a warning.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

use File::Temp ();
use IO::Socket::INET ();
use POSIX ();


# One echo server, on 127.0.0.1 and on 127.0.0.2 (the address a rebinding
# name answers second: refused by the policy below); it tells which
# address and Host a request came to.  Its TLS twin has a certificate for
# peer.test only.
$ENV{TEST_NGINX_ECHO_PORT} ||= free_port();
$ENV{TEST_NGINX_TLS_PORT} ||= free_port();

our $Certs = File::Temp->newdir();
$ENV{TEST_NGINX_CERTS} = "$Certs";
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $Certs/peer.key"
       . " -out $Certs/peer.crt -days 2 -subj /CN=peer.test"
       . " -addext subjectAltName=DNS:peer.test 2>/dev/null") == 0
    or die "openssl req failed";

# The DNS server (UDP, TTL 0; AAAA queries get no records):
#   peer.test        127.0.0.1
#   private.test     10.1.2.3
#   rebind*.test     127.0.0.1 to the first A query, 127.0.0.2 after it
#   v6.test          ::1 (AAAA only)
#   anything else    NXDOMAIN
our $Dns = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1',
                                 LocalPort => 0)
    or die "udp: $!";
$ENV{TEST_NGINX_DNS_PORT} = $Dns->sockport;

our $Parent = $$;
our $DnsPid = fork() // die "fork: $!";

if ($DnsPid == 0) {
    dns_serve($Dns);
    POSIX::_exit(0);
}

close $Dns;

END { kill 'TERM', $DnsPid if $$ == $Parent && $DnsPid; }

sub dns_serve {
    my ($s) = @_;
    my %seen;
    for (;;) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        unless (select(my $rout = $rin, undef, undef, 1)) {
            POSIX::_exit(0) if getppid() != $Parent;
            next;
        }
        my $from = $s->recv(my $q, 512);
        next unless defined $from && length $q > 16;
        my ($id) = unpack 'n', $q;
        my ($off, @labels) = (12);
        while ($off < length $q and my $len = ord substr $q, $off, 1) {
            push @labels, substr $q, $off + 1, $len;
            $off += $len + 1;
        }
        next if $off + 5 > length $q;
        my $name = lc join '.', @labels;
        my ($type) = unpack 'n', substr $q, $off + 1, 2;
        my ($rcode, @addrs) = (0);
        if ($name eq 'peer.test') {
            @addrs = ('127.0.0.1');
        } elsif ($name eq 'private.test') {
            @addrs = ('10.1.2.3');
        } elsif ($name =~ /^rebind[0-9]*\.test$/) {
            @addrs = ($seen{$name}++ ? '127.0.0.2' : '127.0.0.1')
                if $type == 1;
        } elsif ($name eq 'v6.test') {
            @addrs = ('::1');
        } else {
            $rcode = 3;
        }
        @addrs = grep { /:/ ? $type == 28 : $type == 1 } @addrs;
        my $answer = join '', map {
            /:/ ? pack('nnnNn', 0xc00c, 28, 1, 0, 16) . ("\0" x 15) . "\1"
                : pack('nnnNn', 0xc00c, 1, 1, 0, 4) . pack('C4', split /\./)
        } @addrs;
        $s->send(pack('nnnnnn', $id, 0x8180 | $rcode, 1, scalar @addrs, 0, 0)
                 . substr($q, 12, $off + 5 - 12) . $answer, 0, $from);
    }
}

my $echo = <<'CONF';
    server {
        listen 127.0.0.1:$TEST_NGINX_ECHO_PORT;
        listen 127.0.0.2:$TEST_NGINX_ECHO_PORT;
        listen [::1]:$TEST_NGINX_ECHO_PORT;
        location /echo/ {
            default_type application/json;
            return 200 '{"host":"$http_host","addr":"$server_addr"}';
        }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT ssl;
        ssl_certificate $TEST_NGINX_CERTS/peer.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/peer.key;
        location /echo/ {
            default_type application/json;
            return 200 '{"host":"$http_host","addr":"$server_addr","sni":"$ssl_server_name"}';
        }
    }
CONF

# the check's resolver and the proxy's are two (two caches), as when the
# checked answer has left the cache by the time the proxy connects
my $a = <<'CONF';
    location /a/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/a;
        actingweb_peer_allow 127.0.0.1;
        actingweb_peer_allow ::1;
        resolver 127.0.0.1:$TEST_NGINX_DNS_PORT;
        resolver_timeout 3s;
    }
CONF

my $peer = peer_location(
    'resolver 127.0.0.1:$TEST_NGINX_DNS_PORT;',
    'resolver_timeout 3s;',
    'proxy_ssl_verify on;',
    'proxy_ssl_trusted_certificate $TEST_NGINX_CERTS/peer.crt;',
    'proxy_ssl_name $actingweb_peer_host;',
    'proxy_ssl_server_name on;');

# a location of before $actingweb_peer_host
my $old_peer = <<'CONF';
    location = /_actingweb_peer {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_pass_request_headers off;
        proxy_set_header Authorization $actingweb_peer_authorization;
        proxy_set_header Content-Type application/json;
        resolver 127.0.0.1:$TEST_NGINX_DNS_PORT;
        resolver_timeout 3s;
    }
CONF

# /m/ calls through a location that does not send $actingweb_peer_host
my $m = <<'CONF';
    location /m/ {
        actingweb;
        actingweb_base_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/m;
        actingweb_peer_allow 127.0.0.1;
        actingweb_peer_location /_peer_nohost;
        resolver 127.0.0.1:$TEST_NGINX_DNS_PORT;
    }
    location = /_peer_nohost {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_pass_request_headers off;
    }
CONF

our $OldConfig = $a . $old_peer;

block_defaults(
    http_config => $echo,
    config => $a . $peer . $m,
    more_headers => "Authorization: {{basic:alice:pa}}\n",
);

run_tests();

__DATA__

=== TEST 1: alice at A, and an actor at /m/
--- request eval
["POST /a/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}",
 "POST /m/\n{\"creator\": \"alice\", \"passphrase\": \"pa\"}"]
--- more_headers
--- error_code eval
[201, 201]
--- capture eval
["a = json:id", "m = json:id"]
--- no_error_log
refused by
$actingweb_peer_host
[error]



=== TEST 2: a name is connected at its checked address, and sent as Host
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://peer.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "peer.test:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "127.0.0.1"}
--- no_error_log
refused by
$actingweb_peer_host
[error]
[alert]
[crit]



=== TEST 3: DNS rebinding: the name answers 127.0.0.2 once checked; the proxy never asks
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://rebind1.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "rebind1.test:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "127.0.0.1"}
--- no_error_log
refused by
$actingweb_peer_host
[error]
[alert]
[crit]



=== TEST 4: the same name checked again now resolves to 127.0.0.2: refused
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://rebind1.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 403
--- response_body_json
{"error": {"code": 403, "message": "peer address not allowed on this server"}}
--- error_log
peer address 127.0.0.2 of "rebind1.test" refused
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: a name of a private address is refused
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://private.test/echo}}
--- error_code: 403
--- response_body_json
{"error": {"code": 403, "message": "peer address not allowed on this server"}}
--- error_log
peer address 10.1.2.3 of "private.test" refused
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: a name that does not exist
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://nowhere.test/echo}}
--- error_code: 502
--- response_body_json
{"error": {"code": 502, "message": "peer host name could not be resolved"}}
--- error_log
peer host "nowhere.test" could not be resolved
--- no_error_log
[alert]
[crit]



=== TEST 7: https to a name: its address is connected, the certificate checked for the name, SNI sent
--- request
GET /a/{{a}}/peerinfo?url={{uri:https://peer.test:{{env:TEST_NGINX_TLS_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "peer.test:{{env:TEST_NGINX_TLS_PORT}}", "addr": "127.0.0.1",
 "sni": "peer.test"}
--- no_error_log
refused by
$actingweb_peer_host
[error]
[alert]
[crit]



=== TEST 8: an IP literal is its own Host
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://127.0.0.1:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "127.0.0.1:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "127.0.0.1"}
--- no_error_log
refused by
$actingweb_peer_host
[error]
[alert]
[crit]



=== TEST 9: a name of an IPv6 address: connected in brackets
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://v6.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "v6.test:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "::1"}
--- no_error_log
refused by
$actingweb_peer_host
[error]
[alert]
[crit]



=== TEST 10: a peer location without $actingweb_peer_host: the address as Host, a warning
--- request
GET /m/{{m}}/peerinfo?url={{uri:http://peer.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "127.0.0.1:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "127.0.0.1"}
--- error_log
peer location "/_peer_nohost" does not send $actingweb_peer_host
--- no_error_log
[error]
[alert]
[crit]



=== TEST 11: a config of before: a warning at start, and calls by name (the peer's Host kept)
--- config eval
$::OldConfig
--- request
GET /a/{{a}}/peerinfo?url={{uri:http://peer.test:{{env:TEST_NGINX_ECHO_PORT}}/echo}}
--- error_code: 200
--- response_body_json
{"host": "peer.test:{{env:TEST_NGINX_ECHO_PORT}}", "addr": "127.0.0.1"}
--- error_log
no peer location sends "proxy_set_header Host $actingweb_peer_host"
--- no_error_log
[error]
[alert]
[crit]
