#!/bin/sh
# nginx wrapper for the tests, used as TEST_NGINX_BINARY=t/lib/nginx-errlog.sh
#
# nginx writes messages from before its configuration is loaded (e.g. an
# invalid directive) to the log compiled in with --error-log-path, which
# is stderr for Debian's nginx.  Test::Nginx (real or compat) only looks
# at <server root>/logs/error.log, so "--- must_die" blocks could not
# check those messages with "--- error_log".  "-e" (nginx >= 1.19.5)
# sends them to logs/error.log under the -p prefix, i.e. the server root.
#
# AW_NGINX_BINARY selects the nginx to run (default: nginx in PATH, then
# /usr/sbin/nginx).
nginx=${AW_NGINX_BINARY:-$(command -v nginx || echo /usr/sbin/nginx)}
exec "$nginx" -e logs/error.log "$@"
