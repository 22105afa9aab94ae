# actingweb_status: the server's counters (shared memory) as JSON and as
# Prometheus text, with the module version; the version in the workers'
# start-up notice.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

# the version the module is built with (also the Debian package's)
our $VERSION;
{
    open my $fh, '<', 'ngx_http_actingweb_module/ngx_http_actingweb_module.h'
        or die "header: $!";
    local $/;
    ($VERSION) = <$fh> =~ /#define NGX_HTTP_ACTINGWEB_VERSION\s+"([^"]+)"/
        or die "no NGX_HTTP_ACTINGWEB_VERSION";
}

block_defaults(config => <<'CONF');
    location /aw/ { actingweb; }
    location = /status { actingweb_status; }
CONF

run_tests();

__DATA__

=== TEST 1: counters move with requests, errors and credential checks; version
--- request eval
["POST /aw/\n{\"creator\": \"s\", \"passphrase\": \"pw\"}",
 "GET /aw/0123456789abcdef0123456789abcdef/meta",
 "GET /status"]
--- error_code eval
[201, 404, 200]
--- response_body_json eval
['{"id": "{{ANY}}", "creator": "s", "passphrase": "pw"}',
 '{"error": {"code": 404, "message": "actor not found"}}',
 '{"version": "' . $main::VERSION . '", "redis_up": true, "requests": 2, "errors_4xx": 1,
   "errors_5xx": 0,
   "endpoints": {"factory": {"2xx": 1}, "meta": {"4xx": 1}},
   "redis_commands": 2, "redis_timeouts": 0,
   "redis_unavailable": 0, "redis_connects": 1, "redis_disconnects": 0,
   "auth_cache_hits": 0, "auth_kdf_runs": 0,
   "peer_calls_ok": 0, "peer_calls_timeout": 0, "peer_calls_failed": 0,
   "peer_calls_refused": 0, "callbacks_sent": 0, "callbacks_failed": 0,
   "callbacks_retried": 0, "callbacks_dropped": 0,
   "callbacks_downgraded": 0, "callbacks_redis_commands": "{{ANY}}",
   "circuit_opened": 0,
   "circuits_open": 0, "circuits_half_open": 0, "outbox_depth": 0}']



=== TEST 2: Prometheus text: HELP, TYPE, _total, histograms in seconds
--- request eval
["GET /aw/0123456789abcdef0123456789abcdef/meta",
 "GET /status?format=prometheus"]
--- error_code eval
[404, 200]
--- response_headers eval
["Content-Type: application/json",
 "Content-Type: text/plain; version=0.0.4"]
--- response_body_like eval
[qr/actor not found/,
 qr/\A# HELP actingweb_requests_total actor requests answered, by endpoint and status class
# TYPE actingweb_requests_total counter
actingweb_requests_total\{endpoint="meta",code="4xx"\} 1
# HELP actingweb_redis_commands_total Redis commands sent
# TYPE actingweb_redis_commands_total counter
actingweb_redis_commands_total 1
.*
# HELP actingweb_peer_calls_total peer calls by outcome
# TYPE actingweb_peer_calls_total counter
actingweb_peer_calls_total\{outcome="ok"\} 0
actingweb_peer_calls_total\{outcome="timeout"\} 0
.*
# HELP actingweb_outbox_depth callbacks waiting for delivery
# TYPE actingweb_outbox_depth gauge
actingweb_outbox_depth 0
# HELP actingweb_redis_latency_seconds Redis command round trip
# TYPE actingweb_redis_latency_seconds histogram
actingweb_redis_latency_seconds_bucket\{le="0.001"\} \d
.*
actingweb_redis_latency_seconds_bucket\{le="\+Inf"\} 1
actingweb_redis_latency_seconds_sum \d+\.\d{3}
actingweb_redis_latency_seconds_count 1
.*
actingweb_redis_up 1
# HELP actingweb_info module version
# TYPE actingweb_info gauge
actingweb_info\{version="\Q$main::VERSION\E"\} 1\n\z/s]



=== TEST 3: only GET and HEAD
--- request
POST /status
--- error_code: 405
--- response_headers
Allow: GET, HEAD
Content-Type: application/json
--- response_body: {"error":{"code":405,"message":"method not allowed"}}



=== TEST 4: with Redis down, redis_up is false
--- http_config
    actingweb_redis 127.0.0.1:1;
--- request
GET /status
--- response_body_like: "redis_up":false
--- no_error_log
[alert]
[crit]



=== TEST 5: each worker logs the module version when it starts
--- request
GET /status
--- response_body_like: "version":"
--- error_log eval
qr/\[notice\] .*actingweb: module version \Q$main::VERSION\E \(ActingWeb 1\.4\) started/
--- no_error_log
[error]
[alert]
[crit]
