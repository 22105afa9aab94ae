# Directives: valid configurations load (nginx -t equivalent: nginx starts
# and serves), every bad value stops nginx with a message naming it.

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

run_tests();

__DATA__

=== TEST 1: the module loads and every directive takes a valid value
--- http_config
    actingweb_redis_db 0;
    actingweb_redis_timeout 2s;
    actingweb_redis_password secret-not-used-by-the-test;
    actingweb_callback_timeout 3s;
    actingweb_callback_concurrency 8;
    actingweb_callback_max_payload 128k;
    actingweb_callback_retries 0;
    actingweb_base_url https://example.org/srv;
    actingweb_type urn:actingweb:example.org:test;
    actingweb_desc "test actors";
    actingweb_version 2.1.3;
    actingweb_info https://example.org/info;
    actingweb_max_value_size 512k;
    actingweb_peer_location /_peer;
    actingweb_peer_timeout 5s;
    actingweb_auto_approve friend partner;
    actingweb_default_relationship friend;
--- config
    location /aw/ {
        actingweb;
        actingweb_auto_approve off;
        actingweb_devtest on;
    }
    location = /_peer {
        internal;
        proxy_pass $actingweb_peer_url;
        proxy_set_header Authorization $actingweb_peer_authorization;
    }
    location = /status { actingweb_status; }
--- request
GET /status
--- response_body_like: "requests":0
--- response_headers
Content-Type: application/json
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 2: actingweb in a regex location
--- http_config
    
--- config
    location ~ ^/x { actingweb; }
--- must_die
--- error_log
"actingweb" directive cannot be used in a regular expression location



=== TEST 3: actingweb in an exact location
--- http_config
    
--- config
    location = /x { actingweb; }
--- must_die
--- error_log
"actingweb" directive can only be used in a prefix location



=== TEST 4: actingweb twice
--- http_config
    
--- config
    location /x/ { actingweb; actingweb; }
--- must_die
--- error_log
"actingweb" directive is duplicate



=== TEST 5: actingweb with an argument
--- http_config
    
--- config
    location /x/ { actingweb on; }
--- must_die
--- error_log
invalid number of arguments in "actingweb" directive



=== TEST 6: actingweb_base_url not absolute
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_base_url /app; }
--- must_die
--- error_log
actingweb_base_url "/app" must be an absolute http:// or https:// URL



=== TEST 7: actingweb_base_url with a query
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_base_url http://h/a?b; }
--- must_die
--- error_log
must not contain a query, a fragment or spaces



=== TEST 8: actingweb_type empty
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_type ""; }
--- must_die
--- error_log
"actingweb_type" directive must not be empty



=== TEST 9: actingweb_version not a.b
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_version 1; }
--- must_die
--- error_log
"actingweb_version" directive must be a version of the form a.b or a.b.c



=== TEST 10: actingweb_version letters
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_version 1.x; }
--- must_die
--- error_log
"actingweb_version" directive must be a version of the form a.b or a.b.c



=== TEST 11: actingweb_info empty
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_info ""; }
--- must_die
--- error_log
"actingweb_info" directive must not be empty



=== TEST 12: actingweb_redis bad port
--- http_config
    actingweb_redis 127.0.0.1:99999;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
actingweb_redis "127.0.0.1:99999": invalid port



=== TEST 13: actingweb_redis relative unix path
--- http_config
    actingweb_redis unix:redis.sock;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
actingweb_redis "unix:redis.sock": unix socket path must be absolute



=== TEST 14: actingweb_redis twice
--- http_config
    actingweb_redis 127.0.0.1:1; actingweb_redis 127.0.0.1:2;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis" directive is duplicate



=== TEST 15: actingweb_redis in a server
--- http_config
    
--- config
    actingweb_redis 127.0.0.1:6379; location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis" directive is not allowed here



=== TEST 16: actingweb_redis_db out of range
--- http_config
    actingweb_redis_db 1024;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
value must be between 0 and 1023



=== TEST 17: actingweb_redis_db not a number
--- http_config
    actingweb_redis_db one;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_db" directive invalid number



=== TEST 18: actingweb_redis_prefix with a space
--- http_config
    actingweb_redis_prefix "a b";
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_prefix" directive must be 1-64 characters



=== TEST 19: actingweb_redis_prefix with braces
--- http_config
    actingweb_redis_prefix "a{b}";
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_prefix" directive must be 1-64 characters



=== TEST 20: actingweb_redis_timeout zero
--- http_config
    actingweb_redis_timeout 0;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_timeout" directive must be greater than zero



=== TEST 21: actingweb_redis_timeout garbage
--- http_config
    actingweb_redis_timeout soon;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_timeout" directive invalid value



=== TEST 22: actingweb_redis_password empty
--- http_config
    actingweb_redis_password "";
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_redis_password" directive must not be empty



=== TEST 23: actingweb_peer_location relative
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_peer_location peer; }
--- must_die
--- error_log
"actingweb_peer_location" directive must be a URI starting with "/"



=== TEST 24: actingweb_peer_timeout zero
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_peer_timeout 0s; }
--- must_die
--- error_log
"actingweb_peer_timeout" directive must be greater than zero



=== TEST 25: actingweb_auto_approve bad name
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_auto_approve friend bad/name; }
--- must_die
--- error_log
invalid relationship "bad/name" in actingweb_auto_approve



=== TEST 26: actingweb_auto_approve off among names
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_auto_approve friend off; }
--- must_die
--- error_log
invalid relationship "off" in actingweb_auto_approve



=== TEST 27: actingweb_default_relationship bad
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_default_relationship "a b"; }
--- must_die
--- error_log
"actingweb_default_relationship" directive must be 1-64 characters



=== TEST 28: actingweb_callback_timeout zero
--- http_config
    actingweb_callback_timeout 0;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_callback_timeout" directive must be greater than zero



=== TEST 29: actingweb_callback_concurrency zero
--- http_config
    actingweb_callback_concurrency 0;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
value must be between 1 and 10000



=== TEST 30: actingweb_callback_max_payload garbage
--- http_config
    actingweb_callback_max_payload big;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_callback_max_payload" directive invalid value



=== TEST 31: actingweb_callback_retries too many
--- http_config
    actingweb_callback_retries 101;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
value must be between 0 and 100



=== TEST 32: actingweb_devtest not a flag
--- http_config
    
--- config
    location /x/ { actingweb; actingweb_devtest maybe; }
--- must_die
--- error_log
invalid value "maybe" in "actingweb_devtest" directive, it must be "on" or "off"



=== TEST 33: actingweb_devtest in http
--- http_config
    actingweb_devtest on;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_devtest" directive is not allowed here



=== TEST 34: actingweb_status with an argument
--- http_config
    
--- config
    location /s { actingweb_status json; }
--- must_die
--- error_log
invalid number of arguments in "actingweb_status" directive



=== TEST 35: actingweb and actingweb_status together
--- http_config
    
--- config
    location /s { actingweb_status; actingweb; }
--- must_die
--- error_log
"actingweb" directive is duplicate



=== TEST 36: actingweb_max_value_size garbage
--- http_config
    actingweb_max_value_size huge;
--- config
    location /x/ { actingweb; }
--- must_die
--- error_log
"actingweb_max_value_size" directive invalid value
