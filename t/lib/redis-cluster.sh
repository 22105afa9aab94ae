#!/usr/bin/env bash
#
# A small local Redis Cluster for tests (t/120-cluster.t) and trials:
#
#   t/lib/redis-cluster.sh start DIR PORT...   one redis-server per port
#                                              (cluster bus: port + 10000),
#                                              the first half primaries,
#                                              the rest their replicas
#   t/lib/redis-cluster.sh stop DIR            stops every node under DIR
#   t/lib/redis-cluster.sh wait PORT...        until every node says
#                                              cluster_state:ok
#
# cluster-require-full-coverage no: while one shard fails over the others
# keep serving (docs/operations.md "Redis Cluster").

set -euo pipefail

die() { printf 'redis-cluster.sh: %s\n' "$*" >&2; exit 1; }

wait_ok() {
    local port i
    for port in "$@"; do
        for i in $(seq 1 200); do
            redis-cli -p "$port" cluster info 2>/dev/null \
                | grep -q '^cluster_state:ok' && break
            [ "$i" = 200 ] && die "node $port: cluster not ok"
            sleep 0.1
        done
    done
}

cmd=${1:-}; shift || true

case "$cmd" in
start)
    dir=$1; shift
    [ $# -ge 6 ] && [ $(($# % 2)) = 0 ] || die "start: need 6, 8, ... ports"
    mkdir -p "$dir"
    addrs=()
    for port in "$@"; do
        mkdir -p "$dir/$port"
        redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" \
            --daemonize yes --pidfile "$dir/$port/redis.pid" \
            --logfile "$dir/$port/redis.log" --save '' --appendonly no \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 1000 \
            --cluster-require-full-coverage no >/dev/null
        addrs+=("127.0.0.1:$port")
    done
    for port in "$@"; do
        for i in $(seq 1 100); do
            redis-cli -p "$port" ping >/dev/null 2>&1 && break
            [ "$i" = 100 ] && die "redis-server $port did not start"
            sleep 0.05
        done
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 \
        --cluster-yes > "$dir/create.log" 2>&1 \
        || die "cluster create failed (see $dir/create.log)"
    wait_ok "$@"
    # replicas attached and in sync, so that a failover has one to promote
    for port in "$@"; do
        for i in $(seq 1 200); do
            info=$(redis-cli -p "$port" info replication)
            if echo "$info" | grep -q '^role:master'; then
                echo "$info" | grep -q '^connected_slaves:1' && break
            else
                echo "$info" | grep -q '^master_link_status:up' && break
            fi
            [ "$i" = 200 ] && die "node $port: replication not up"
            sleep 0.1
        done
    done
    ;;
stop)
    dir=$1
    for pidfile in "$dir"/*/redis.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        rm -f "$pidfile"
    done
    ;;
wait)
    wait_ok "$@"
    ;;
*)
    die "usage: $0 start DIR PORT... | stop DIR | wait PORT..."
    ;;
esac
