# Cross-site writes: a form on another site can POST to an actor (with
# ?_method=DELETE or PUT) and the browser adds the Basic credentials it
# has cached.  Writes with Basic credentials that the browser marks as
# cross-site (Sec-Fetch-Site, else Origin) are refused with 403; reads,
# Bearer requests, the factory and clients without those headers are not.
#
# Blocks without log sections get ActingWeb::Test's default
# --- no_error_log: [error] [alert] [crit] [emerg].

use strict;
use warnings;

use lib 't/lib';
use ActingWeb::Test;

block_defaults(
    config => <<'CONF',
    location /aw/ { actingweb; }
CONF
);

run_tests();

__DATA__

=== TEST 1: the factory takes a cross-site POST (it uses no credentials)
--- request
POST /aw/
{"creator": "c", "passphrase": "pw"}
--- more_headers
Sec-Fetch-Site: cross-site
Origin: https://evil.example
--- error_code: 201
--- capture
id = json:id



=== TEST 2: a cross-site form deleting the actor with Basic is refused
--- request
POST /aw/{{id}}?_method=DELETE
a=1
--- more_headers
Authorization: {{basic:c:pw}}
Content-Type: application/x-www-form-urlencoded
Sec-Fetch-Site: cross-site
Origin: https://evil.example
--- error_code: 403
--- response_headers
Content-Type: application/json
--- response_body: {"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}
--- error_log
cross-site write with Basic credentials refused ("Sec-Fetch-Site: cross-site")



=== TEST 3: ... and the actor is still there
--- request
GET /aw/{{id}}
--- more_headers
Authorization: {{basic:c:pw}}
--- response_body_json
{"id": "{{id}}", "creator": "c"}



=== TEST 4: without Sec-Fetch-Site, an Origin that is not this server is refused
--- request eval
["PUT /aw/{{id}}/properties/x\n1", "PUT /aw/{{id}}/properties/x\n1",
 "POST /aw/{{id}}/properties\n{\"x\": 1}",
 "DELETE /aw/{{id}}/properties", "PUT /aw/{{id}}/properties/x\n1",
 "GET /aw/{{id}}/properties/x"]
--- more_headers eval
["Authorization: {{basic:c:pw}}\nOrigin: http://evil.example",
 "Authorization: {{basic:c:pw}}\nOrigin: null",
 "Authorization: {{basic:c:pw}}\nOrigin: http://localhost:8081",
 "Authorization: {{basic:c:pw}}\nOrigin: https://localhost",
 "Authorization: {{basic:c:pw}}\nOrigin: http://localhost\nSec-Fetch-Site: cross-site",
 "Authorization: {{basic:c:pw}}"]
--- error_code eval
[403, 403, 403, 403, 403, 404]
--- response_body eval
['{"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}',
 '{"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}',
 '{"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}',
 '{"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}',
 '{"error":{"code":403,"message":"cross-site request with Basic credentials refused"}}',
 '{"error":{"code":404,"message":"property not found"}}']



=== TEST 5: an Origin that is this server is accepted (case, default port)
--- request eval
["PUT /aw/{{id}}/properties/x\n1", "PUT /aw/{{id}}/properties/y\n2",
 "PUT /aw/{{id}}/properties/z\n3"]
--- more_headers eval
["Authorization: {{basic:c:pw}}\nOrigin: http://localhost",
 "Authorization: {{basic:c:pw}}\nHost: Actors.Example.org\nOrigin: http://actors.example.ORG:80",
 "Authorization: {{basic:c:pw}}\nHost: actors.example.org:8080\nOrigin: http://actors.example.org:8080"]
--- error_code eval
[204, 204, 204]



=== TEST 6: no Origin and no Sec-Fetch-Site (curl, peers) is accepted
--- request eval
["POST /aw/{{id}}/properties/z?_method=DELETE",
 "POST /aw/{{id}}/properties\n{\"v\": 5}"]
--- more_headers
Authorization: {{basic:c:pw}}
--- error_code eval
[204, 201]



=== TEST 7: Sec-Fetch-Site same-origin, same-site and none are accepted
--- request eval
["PUT /aw/{{id}}/properties/s1\n1", "PUT /aw/{{id}}/properties/s2\n2",
 "PUT /aw/{{id}}/properties/s3\n3"]
--- more_headers eval
["Authorization: {{basic:c:pw}}\nSec-Fetch-Site: same-origin\nOrigin: http://localhost",
 "Authorization: {{basic:c:pw}}\nSec-Fetch-Site: same-site\nOrigin: https://www.localhost",
 "Authorization: {{basic:c:pw}}\nSec-Fetch-Site: none"]
--- error_code eval
[204, 204, 204]



=== TEST 8: reads are not writes: cross-site GET, HEAD and _method=GET pass
--- request eval
["GET /aw/{{id}}/properties/x", "POST /aw/{{id}}/properties/x?_method=GET",
 "HEAD /aw/{{id}}/properties/x"]
--- more_headers
Authorization: {{basic:c:pw}}
Sec-Fetch-Site: cross-site
Origin: https://evil.example
--- error_code eval
[200, 200, 200]
--- response_body eval
["1", "1", ""]



=== TEST 9: a trustee actor for the Bearer case
--- request
POST /aw/
{"creator": "trustee", "passphrase": "a-long-trustee-secret"}
--- error_code: 201
--- capture
tid = json:id



=== TEST 10: Bearer requests are not affected (browsers do not add them)
--- request
PUT /aw/{{tid}}/properties/b
1
--- more_headers
Authorization: Bearer a-long-trustee-secret
Sec-Fetch-Site: cross-site
Origin: https://evil.example
--- error_code: 204



=== TEST 11: with actingweb_base_url, its origin is this server's
--- config
    location /aw/ {
        actingweb;
        actingweb_base_url https://actors.example.org:443/app;
    }
--- request eval
["PUT /aw/{{id}}/properties/x\n1", "PUT /aw/{{id}}/properties/x\n1"]
--- more_headers eval
["Authorization: {{basic:c:pw}}\nOrigin: https://actors.example.org",
 "Authorization: {{basic:c:pw}}\nOrigin: http://localhost"]
--- error_code eval
[204, 403]



=== TEST 12: the actor can still be deleted from its own origin
--- request
POST /aw/{{id}}?_method=DELETE
--- more_headers
Authorization: {{basic:c:pw}}
Sec-Fetch-Site: same-origin
Origin: http://localhost
--- error_code: 204
