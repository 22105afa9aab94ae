#!/usr/bin/env bash
#
# ngx_http_actingweb_module: deps | build | run | test | bench | deb | deb-check
#
#   ./build.sh deps            install what is missing (Debian/Ubuntu, apt)
#   ./build.sh build           build build/ngx_http_actingweb_module.so
#   ./build.sh run             build, then serve docs/example.conf on
#                              127.0.0.1:${PORT:-8080} with a local Redis
#   ./build.sh test [FILES]    build, then run the Test::Nginx suite (t/)
#   ./build.sh bench           benchmarks, ratios against plain nginx
#   ./build.sh fuzz [SECONDS] [TARGETS]
#                              libFuzzer targets (fuzz/), each for SECONDS
#                              (default 20); the whole `test` runs each for
#                              AW_FUZZ_SECONDS (default 15, 0: none)
#   ./build.sh deb             build libnginx-mod-http-actingweb_<ver>_<arch>.deb
#                              (build/deb/), then lintian
#   ./build.sh deb-check       install, serve, upgrade and purge that package
#                              in a clean Debian 12 root (debootstrap; root)
#
# Environment:
#   NGINX_SRC=/path/to/nginx-x.y.z   build against that source tree instead
#                                    of the installed nginx (nginx-dev)
#   NGINX_CONFIGURE_ARGS="..."       extra configure arguments with NGINX_SRC
#   ACTINGWEB_REDIS=host:port        `run`: use this Redis, start none
#   ACTINGWEB_REDIS_CLUSTER="h:p h:p" `run`: use this Redis Cluster (seed
#                                    nodes), start none; t/120-cluster.t
#                                    starts its own cluster regardless
#   PORT=8080                        `run`: listen port
#   TEST_NGINX_BINARY=/usr/sbin/nginx, TEST_NGINX_EVENT_TYPE=poll,
#   TEST_NGINX_USE_VALGRIND=1        nginx under memcheck: an error or a
#                                    definite leak fails the block (the
#                                    client timeout TEST_NGINX_TIMEOUT is
#                                    then 15 s unless set)
#   TEST_NGINX_SANITIZE=1            `test`: nginx and the module built with
#                                    ASan and UBSan; any report fails the run
#   DEBCHECK_MIRROR=http://...       `deb-check`: Debian mirror for debootstrap
#                                    (default: the one apt uses here)
#   DEBCHECK_KEEP=1                  `deb-check`: keep the root afterwards

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="$ROOT/build"
MODULE="$BUILD/ngx_http_actingweb_module.so"

APT_PACKAGES=(
    nginx nginx-dev libhiredis-dev libcjson-dev libcurl4-openssl-dev
    libssl-dev redis-server build-essential pkg-config curl
    libtest-base-perl libtest-longstring-perl liblist-moreutils-perl
    libtext-diff-perl liburi-perl libwww-perl libhttp-message-perl
    libipc-run-perl libredis-perl libjson-pp-perl wrk
)

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

cmd_deps() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# configure once per (config, nginx) pair, then `make modules` (fast)
cmd_build() {
    cmd_deps

    local src stamp want
    mkdir -p "$BUILD"

    if [ -n "${NGINX_SRC:-}" ]; then
        src=$(cd "$NGINX_SRC" && pwd)
        [ -x "$src/configure" ] || die "NGINX_SRC=$src has no configure"
        want="src:$src:${NGINX_CONFIGURE_ARGS:-}"
    else
        src=/usr/share/nginx/src
        [ -f "$src/conf_flags" ] || die "nginx-dev is not installed"
        want="deb:$(dpkg-query -W -f='${Version}' nginx-dev)"
    fi
    want="$want:$(cksum < "$ROOT/config")"

    local objs="$BUILD/nginx" target=modules
    if [ -n "${NGINX_SRC:-}" ]; then
        # also the binary: `./build.sh test` then runs against that nginx
        objs="$BUILD/nginx-src"
        target=
    fi
    stamp="$objs/.configured"

    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "configuring against $src"
        rm -rf "$objs"
        mkdir -p "$objs"
        (
            cd "$src"
            if [ -n "${NGINX_SRC:-}" ]; then
                # shellcheck disable=SC2086
                ./configure --with-compat ${NGINX_CONFIGURE_ARGS:-} \
                    --add-dynamic-module="$ROOT" --builddir="$objs"
            else
                # Debian's own flags: --with-compat and the same ABI
                . ./conf_flags
                ./configure \
                    --with-cc-opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS)" \
                    --with-ld-opt="$(dpkg-buildflags --get LDFLAGS) -fPIC" \
                    "${NGX_CONF_FLAGS[@]}" \
                    --add-dynamic-module="$ROOT" --builddir="$objs"
            fi
        ) > "$objs/configure.log" 2>&1 || {
            tail -n 30 "$objs/configure.log" >&2
            rm -f "$stamp"
            die "configure failed (full log: $objs/configure.log)"
        }
        echo "$want" > "$stamp"
    fi

    make -s -f "$objs/Makefile" -C "$src" -j"$(nproc)" $target >&2
    if ! cmp -s "$objs/ngx_http_actingweb_module.so" "$MODULE"; then
        # a new inode: a running nginx keeps its mapping of the old one
        cp "$objs/ngx_http_actingweb_module.so" "$MODULE.tmp.$$"
        mv -f "$MODULE.tmp.$$" "$MODULE"
    fi
    say "built $MODULE"
}

nginx_bin() {
    if [ -n "${TEST_NGINX_BINARY:-}" ]; then
        echo "$TEST_NGINX_BINARY"
    elif [ -n "${NGINX_SRC:-}" ] && [ -x "$BUILD/nginx-src/nginx" ]; then
        echo "$BUILD/nginx-src/nginx"
    else
        echo /usr/sbin/nginx
    fi
}

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0, ReuseAddr => 1)
            or die "no free port: $!";
        print $s->sockport, "\n";'
}

# start_redis DIR PORT [extra redis-server args...]; prints nothing
start_redis() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" "$@" >/dev/null
    local i
    for i in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "redis-server did not start (see $dir/redis.log)"
}

stop_redis() {
    local dir=$1 pid
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    rm -f "$dir/redis.pid"
}

cmd_run() {
    cmd_build

    local port=${PORT:-8080} run="$ROOT/.run" redis bin
    mkdir -p "$run/logs" "$run/tmp" "$run/redis"
    chmod 0755 "$run" "$run/tmp"
    bin=$(nginx_bin)

    local redis_pid="" nginx_pid="" directive=actingweb_redis
    if [ -n "${ACTINGWEB_REDIS_CLUSTER:-}" ]; then
        redis=$ACTINGWEB_REDIS_CLUSTER
        directive=actingweb_redis_cluster
        say "Redis Cluster, seeds: $redis"
    elif [ -n "${ACTINGWEB_REDIS:-}" ]; then
        redis=$ACTINGWEB_REDIS
    else
        local rport=${REDIS_PORT:-6390}
        start_redis "$run/redis" "$rport" --appendonly yes --save ''
        redis_pid=$(cat "$run/redis/redis.pid")
        redis="127.0.0.1:$rport"
        say "redis-server on $redis (data in .run/redis, AOF on)"
    fi

    # the example config, with this checkout's paths and ports
    sed -e "s#/usr/lib/nginx/modules/ngx_http_actingweb_module.so#$MODULE#" \
        -e "s#actingweb_redis 127.0.0.1:6379#$directive $redis#" \
        -e "s#127.0.0.1:8080#127.0.0.1:$port#" \
        -e "s#localhost:8080#localhost:$port#" \
        "$ROOT/docs/example.conf" > "$run/nginx.conf"

    cleanup() {
        trap - INT TERM EXIT
        [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
        [ -n "$nginx_pid" ] && wait "$nginx_pid" 2>/dev/null || true
        [ -n "$redis_pid" ] && stop_redis "$run/redis"
        say "stopped"
    }
    trap cleanup INT TERM EXIT

    "$bin" -p "$run" -c "$run/nginx.conf" -t -q || die "nginx -t failed"
    "$bin" -p "$run" -c "$run/nginx.conf" -g 'daemon off;' &
    nginx_pid=$!

    cat <<EOF

ActingWeb factory on http://127.0.0.1:$port/  (Ctrl-C stops nginx and Redis)

Create an actor:
  curl -i -X POST http://127.0.0.1:$port/ -H 'Content-Type: application/json' \\
       -d '{"creator":"alice@example.com","passphrase":"secret"}'
Then, with the id from the answer:
  curl -u alice@example.com:secret -X PUT http://127.0.0.1:$port/<id>/properties/greeting -d hello
  curl -u alice@example.com:secret http://127.0.0.1:$port/<id>/properties
  curl http://127.0.0.1:$port/<id>/meta

Logs: .run/logs/error.log

EOF
    wait "$nginx_pid" || true
    nginx_pid=""
}

# apt's own sources as deb-src, in a private state dir: the system's apt
# configuration is not touched
apt_private() {
    local dir="$BUILD/apt" f
    mkdir -p "$dir/parts" "$dir/lists/partial"
    : > "$dir/sources.list"
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$dir/sources.list"
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed 's/^Types:.*deb\b.*$/Types: deb-src/' "$f" \
            > "$dir/parts/$(basename "$f")"
    done
    for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -n 's/^deb /deb-src /p' "$f" >> "$dir/sources.list"
    done
    apt-get -q -o Dir::Etc::SourceList="$dir/sources.list" \
        -o Dir::Etc::SourceParts="$dir/parts" \
        -o Dir::State::Lists="$dir/lists" "$@"
}

# nginx's upstream source of the installed version, from Debian's source
# package (deb-src); prints the directory
nginx_source() {
    local ver upstream src
    ver=$(dpkg-query -W -f='${Version}' nginx)
    upstream=${ver#*:}
    upstream=${upstream%%-*}
    src="$BUILD/src/nginx-$upstream"

    if [ ! -d "$src" ]; then
        say "fetching the nginx $upstream source"
        mkdir -p "$BUILD/src"
        apt_private update -qq >/dev/null 2>&1 || true
        (cd "$BUILD/src" && apt_private source --download-only \
            "nginx=$ver" >/dev/null 2>&1) || true
        [ -f "$BUILD/src/nginx_$upstream.orig.tar.gz" ] \
            || die "cannot fetch nginx $upstream source (deb-src)"
        tar -xzf "$BUILD/src/nginx_$upstream.orig.tar.gz" -C "$BUILD/src"
    fi
    echo "$src"
}

# source_nginx DIR CC_OPT LD_OPT [configure args...]: nginx from its
# upstream source with Debian's configure flags and the module (dynamic)
# in DIR, configured once per (arguments, nginx version, config)
source_nginx() {
    local dir=$1 ccopt=$2 ldopt=$3 src want
    shift 3
    src=$(nginx_source)
    want="$(dpkg-query -W -f='${Version}' nginx):$ccopt:$ldopt:$*"
    want="$want:$(cksum < "$ROOT/config")"

    if [ ! -f "$dir/.configured" ] || [ "$(cat "$dir/.configured")" != "$want" ]
    then
        say "configuring nginx in $dir"
        rm -rf "$dir"
        mkdir -p "$dir"
        (
            cd "$src"
            . /usr/share/nginx/src/conf_flags
            ./configure --with-cc-opt="$ccopt" --with-ld-opt="$ldopt" \
                "${NGX_CONF_FLAGS[@]}" "$@" \
                --add-dynamic-module="$ROOT" --builddir="$dir"
        ) > "$dir/configure.log" 2>&1 || die "configure failed: $dir/configure.log"
        echo "$want" > "$dir/.configured"
    fi

    make -s -f "$dir/Makefile" -C "$src" -j"$(nproc)" >&2
    export TEST_NGINX_BINARY="$dir/nginx"
    export TEST_NGINX_LOAD_MODULES="$dir/ngx_http_actingweb_module.so"
}

# Debian's nginx has only the epoll event module; for another
# TEST_NGINX_EVENT_TYPE (poll, select) build the same nginx version from
# its upstream source with that module and Debian's configure flags.
# TEST_NGINX_SANITIZE=1: nginx and the module with AddressSanitizer and
# UndefinedBehaviorSanitizer (and every pool allocation a malloc of its
# own, so that ASan sees their bounds).
event_nginx() {
    local type=${TEST_NGINX_EVENT_TYPE:-} args=() dir
    case "$type" in ""|epoll) type= ;; esac
    [ -z "${NGINX_SRC:-}" ] || return 0

    if [ -n "$type" ] \
       && ! "$(nginx_bin)" -V 2>&1 | grep -q -- "--with-${type}_module"
    then
        args=("--with-${type}_module")
    elif [ -n "$type" ] && [ -z "${TEST_NGINX_SANITIZE:-}" ]; then
        return 0
    fi

    if [ -n "${TEST_NGINX_SANITIZE:-}" ]; then
        dir="$BUILD/nginx-sanitize${type:+-$type}"
        source_nginx "$dir" \
            "-g -O1 -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined -DNGX_DEBUG_PALLOC=1" \
            "-fPIC -fsanitize=address,undefined" "${args[@]}"
        say "testing with $dir/nginx (ASan, UBSan${type:+, $type})"
    elif [ -n "$type" ]; then
        dir="$BUILD/nginx-$type"
        source_nginx "$dir" -fPIC -fPIC "${args[@]}"
        say "testing with $dir/nginx ($type)"
    fi
}

cmd_test() {
    cmd_build

    local dir port rc=0 args=("$@")
    dir=$(mktemp -d /tmp/actingweb-test.XXXXXX)
    chmod 0755 "$dir"
    port=$(free_port)
    start_redis "$dir/redis" "$port" --save '' --appendonly no

    export TEST_NGINX_REDIS_HOST=127.0.0.1
    export TEST_NGINX_REDIS_PORT=$port
    export TEST_NGINX_REDIS_PIDFILE="$dir/redis/redis.pid"
    export TEST_NGINX_LOAD_MODULES="$MODULE"
    export TEST_NGINX_BINARY
    TEST_NGINX_BINARY=$(nginx_bin)
    event_nginx

    if [ -n "${TEST_NGINX_USE_VALGRIND:-}" ] && ! command -v valgrind >/dev/null
    then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends valgrind >/dev/null
    fi

    # startup errors ("--- must_die") go to logs/error.log, not stderr
    export AW_NGINX_BINARY=$TEST_NGINX_BINARY
    TEST_NGINX_BINARY="$ROOT/t/lib/nginx-errlog.sh"
    if [ "${TEST_NGINX_USE_VALGRIND:-}" = 1 ]; then
        # memcheck with the leak check (what "1" means to the runner), and
        # following the wrapper's exec into nginx; the runner fails a block
        # on anything valgrind logs: errors and definite leaks
        export TEST_NGINX_USE_VALGRIND="--tool=memcheck --leak-check=full \
--show-leak-kinds=definite --errors-for-leak-kinds=definite \
--trace-children=yes"
        # nginx runs 10-50 times slower there (PBKDF2 in the creator
        # checks): the client waits longer unless told otherwise
        export TEST_NGINX_TIMEOUT=${TEST_NGINX_TIMEOUT:-15}
    fi

    local inc=(-I"$ROOT/t/lib")
    if ! perl -MTest::Nginx::Socket -e1 2>/dev/null; then
        inc=(-I"$ROOT/t/lib/compat" "${inc[@]}")
        say "Test::Nginx not installed: using the bundled runner (t/lib/compat)"
    fi

    [ ${#args[@]} -eq 0 ] && args=(-r t/)

    if [ -n "${TEST_NGINX_SANITIZE:-}" ]; then
        # every report goes to a file of its own (.<pid> added); any of
        # them fails the run, whatever the blocks said
        mkdir -p "$dir/sanitize"
        export ASAN_OPTIONS="log_path=$dir/sanitize/asan:detect_leaks=0:\
abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:\
check_initialization_order=1:suppressions=$ROOT/sanitize/asan.supp"
        export LSAN_OPTIONS="suppressions=$ROOT/sanitize/lsan.supp:\
print_suppressions=0"
        export UBSAN_OPTIONS="log_path=$dir/sanitize/ubsan:print_stacktrace=1:\
halt_on_error=0:suppressions=$ROOT/sanitize/ubsan.supp"
    fi

    cd "$ROOT"
    prove "${inc[@]}" "${args[@]}" || rc=$?

    if [ -n "${TEST_NGINX_SANITIZE:-}" ]; then
        if compgen -G "$dir/sanitize/*" >/dev/null; then
            say "sanitizer reports:"
            cat "$dir"/sanitize/* >&2
            rc=1
        else
            say "sanitizers: no report"
        fi
        unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
    fi

    stop_redis "$dir/redis"
    rm -rf "$dir"

    # the whole suite also runs each fuzz target briefly (CI does this);
    # AW_FUZZ_SECONDS=0 skips it
    if [ ${#args[@]} -eq 2 ] && [ "${args[*]}" = "-r t/" ] \
       && [ "${AW_FUZZ_SECONDS:-15}" != 0 ] \
       && [ -z "${TEST_NGINX_SANITIZE:-}${TEST_NGINX_USE_VALGRIND:-}" ]
    then
        cmd_fuzz "${AW_FUZZ_SECONDS:-15}" || rc=1
    fi

    return $rc
}

# libFuzzer targets (fuzz/*.c): nginx's core objects (its own main()
# renamed) and the module's, built with clang and ASan + UBSan; a target
# that includes a module .c file (for its static functions) is linked
# without that file's object
FUZZ_FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
-fno-sanitize-recover=undefined -DNGX_DEBUG_PALLOC=1"

fuzz_build() {
    local src dir="$BUILD/fuzz" objs="$BUILD/fuzz/nginx" want f o t inc
    local deps cflags libs

    if ! command -v clang >/dev/null 2>&1 \
       || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n)
{return 0;}' | clang -x c -fsanitize=fuzzer,address - -o "/tmp/aw-fuzz-check.$$" \
            >/dev/null 2>&1
    then
        say "installing clang and libclang-rt for libFuzzer"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends clang libclang-rt-dev >/dev/null
    fi
    rm -f "/tmp/aw-fuzz-check.$$"

    src=$(nginx_source)
    want="$(dpkg-query -W -f='${Version}' nginx):$FUZZ_FLAGS"
    mkdir -p "$dir/obj"

    if [ ! -f "$objs/.configured" ] || [ "$(cat "$objs/.configured")" != "$want" ]
    then
        say "configuring nginx for the fuzz targets in $objs"
        rm -rf "$objs" "$dir/obj"
        mkdir -p "$objs" "$dir/obj"
        (
            cd "$src"
            ./configure --with-cc=clang \
                --with-cc-opt="$FUZZ_FLAGS -fsanitize=fuzzer-no-link" \
                --with-ld-opt="-fsanitize=fuzzer-no-link,address,undefined" \
                --with-threads --without-http_rewrite_module \
                --without-http_gzip_module --builddir="$objs"
        ) > "$objs/configure.log" 2>&1 || die "configure failed: $objs/configure.log"
        echo "$want" > "$objs/.configured"
    fi
    make -s -f "$objs/Makefile" -C "$src" -j"$(nproc)" >&2

    # nginx's objects, its main() renamed (nginx.o also holds core globals)
    if [ "$objs/src/core/nginx.o" -nt "$dir/nginx-nomain.o" ]; then
        objcopy --redefine-sym main=ngx_nginx_main \
            "$objs/src/core/nginx.o" "$dir/nginx-nomain.o"
    fi

    inc=(-I"$src/src/core" -I"$src/src/event" -I"$src/src/event/modules"
         -I"$src/src/os/unix" -I"$src/src/http" -I"$src/src/http/modules"
         -I"$objs" -I"$ROOT/ngx_http_actingweb_module")
    # shellcheck disable=SC2206
    cflags=($FUZZ_FLAGS -fsanitize=fuzzer-no-link -Wall -Werror
            -Wno-unused-function)
    deps=("$ROOT"/ngx_http_actingweb_module/*.h "$objs/.configured")

    for f in "$ROOT"/ngx_http_actingweb_module/*.c; do
        o="$dir/obj/$(basename "${f%.c}").o"
        if [ ! -f "$o" ] || [ -n "$(find "$f" "${deps[@]}" -newer "$o")" ]; then
            clang "${cflags[@]}" "${inc[@]}" -c "$f" -o "$o" || die "cc $f"
        fi
    done

    libs=(-lhiredis -lcjson -lcurl -lcrypto -lz -lcrypt -lpthread -ldl)
    mapfile -t nginx_objs < <(find "$objs/src" -name '*.o' ! -name nginx.o)

    for f in "$ROOT"/fuzz/*.c; do
        t=$(basename "${f%.c}")
        local mod=() skip src_in=()
        skip=$(sed -n 's/^#include ".*\(ngx_http_actingweb_[a-z_]*\)\.c"$/\1/p' "$f")
        for o in "$dir"/obj/*.o; do
            [ "$(basename "${o%.o}")" = "$skip" ] || mod+=("$o")
        done
        # the included module file is compiled into the target itself
        if [ -n "$skip" ]; then
            src_in=("$ROOT/ngx_http_actingweb_module/$skip.c")
        fi
        if [ ! -x "$dir/$t" ] \
           || [ -n "$(find "$f" "$ROOT/fuzz/fuzz.h" "${src_in[@]}" \
                      "${mod[@]}" "$dir/nginx-nomain.o" -newer "$dir/$t")" ]
        then
            clang "${cflags[@]}" -fsanitize=fuzzer "${inc[@]}" "$f" \
                "${mod[@]}" "$dir/nginx-nomain.o" "${nginx_objs[@]}" \
                "$objs/ngx_modules.o" "${libs[@]}" -o "$dir/$t" \
                || die "link $t"
        fi
    done
    say "fuzz targets in $dir"
}

# ./build.sh fuzz [SECONDS] [TARGET...]: each target first runs its seeds
# and the inputs of past defects (fuzz/regress/<target>/), then fuzzes for
# SECONDS (default 20); a crash, leak or timeout (>10 s on one input) fails
cmd_fuzz() {
    local secs=${1:-20} dir="$BUILD/fuzz" t f rc=0 line targets=()
    [ $# -gt 0 ] && shift
    fuzz_build

    if [ $# -gt 0 ]; then
        targets=("$@")
    else
        for f in "$ROOT"/fuzz/*.c; do
            targets+=("$(basename "${f%.c}")")
        done
    fi

    : > "$dir/summary"
    for t in "${targets[@]}"; do
        local corpus="$dir/corpus/$t" seeds=() log="$dir/$t.log"
        mkdir -p "$corpus" "$dir/artifacts"
        [ -d "$ROOT/fuzz/corpus/$t" ] && seeds+=("$ROOT/fuzz/corpus/$t")

        if [ -d "$ROOT/fuzz/regress/$t" ] \
           && ! "$dir/$t" -runs=0 "$ROOT/fuzz/regress/$t" > "$log" 2>&1
        then
            tail -n 40 "$log" >&2
            say "fuzz $t: a past defect is back (fuzz/regress/$t)"
            rc=1
            continue
        fi

        if "$dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
               -max_len=65536 -print_final_stats=1 \
               -artifact_prefix="$dir/artifacts/$t-" \
               "$corpus" "${seeds[@]}" > "$log" 2>&1
        then
            line=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" \
                   | grep -Eo '[0-9]+$' || echo '?')
            printf '%-14s ok   %8s exec/s  %s runs\n' "$t" "$line" \
                "$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" \
                   | grep -Eo '[0-9]+$')" | tee -a "$dir/summary" >&2
        else
            tail -n 60 "$log" >&2
            printf '%-14s FAILED (%s)\n' "$t" "$log" | tee -a "$dir/summary" >&2
            rc=1
        fi
    done
    return $rc
}

# the module version of the tree: the header's, checked against
# debian/changelog so that the package and the module never disagree
module_version() {
    local hv dv
    hv=$(sed -n 's/^#define NGX_HTTP_ACTINGWEB_VERSION *"\(.*\)"$/\1/p' \
        "$ROOT/ngx_http_actingweb_module/ngx_http_actingweb_module.h")
    [ -n "$hv" ] || die "no NGX_HTTP_ACTINGWEB_VERSION in the module header"
    dv=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
    [ "${dv%%[-+~]*}" = "$hv" ] \
        || die "debian/changelog has $dv, the module header $hv"
    echo "$dv"
}

# copy the tree (tracked and new files, not build/) to DIR
copy_tree() {
    local dir=$1
    rm -rf "$dir"
    mkdir -p "$dir"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"
              done | tar --null -T - -cf -) | tar -xf - -C "$dir"
    else
        tar -C "$ROOT" --exclude=./build --exclude=./.run --exclude=./.git \
            -cf - . | tar -xf - -C "$dir"
    fi
}

# dpkg-buildpackage in SRC, a copy of the tree; prints the .deb
deb_build() {
    local ver=$1 src=$2 out deb arch
    out=$(dirname "$src")
    arch=$(dpkg-architecture -qDEB_HOST_ARCH)
    deb="$out/libnginx-mod-http-actingweb_${ver}_${arch}.deb"
    rm -f "$deb"
    (
        cd "$src"
        dpkg-checkbuilddeps
        DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
            dpkg-buildpackage -b -us -uc
    ) > "$out/build-$ver.log" 2>&1 || {
        tail -n 40 "$out/build-$ver.log" >&2
        die "dpkg-buildpackage failed (full log: $out/build-$ver.log)"
    }
    [ -f "$deb" ] || die "no $deb (see $out/build-$ver.log)"
    echo "$deb"
}

cmd_deb() {
    APT_PACKAGES+=(debhelper dpkg-dev lintian)
    cmd_deps

    local ver deb rc=0
    ver=$(module_version)
    copy_tree "$BUILD/deb/libnginx-mod-http-actingweb-$ver"
    deb=$(deb_build "$ver" "$BUILD/deb/libnginx-mod-http-actingweb-$ver")
    say "built $deb"
    dpkg-deb -I "$deb" | sed -n '/^ Package:/,$p' >&2
    dpkg-deb -c "$deb" >&2
    say "lintian $(basename "$deb"):"
    lintian --info "$deb" >&2 || rc=$?
    [ $rc -eq 0 ] || die "lintian found errors"
    say "lintian: no errors"
    echo "$deb"
}

# the Debian mirror apt uses on this machine (DEBCHECK_MIRROR overrides)
deb_mirror() {
    local m=${DEBCHECK_MIRROR:-}
    [ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -E '^(deb |URIs:)' | grep -oE 'https?://[^ ]+/debian/?( |$)' \
        | head -n 1 | tr -d ' ')
    echo "${m:-http://deb.debian.org/debian}"
}

# curl lines of the README against 127.0.0.1:PORT; prints the actor's id
deb_smoke() {
    local port=$1 want=$2 base="http://127.0.0.1:$1" out id
    out=$(curl -sS -i -X POST "$base/" -H 'Content-Type: application/json' \
        -d '{"creator":"alice@example.com","passphrase":"secret"}') \
        || die "POST / failed"
    printf '%s' "$out" | head -n 1 | grep -q ' 201 ' \
        || die "POST / did not answer 201: $out"
    id=$(printf '%s' "$out" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
    [ -n "$id" ] || die "no actor id in: $out"
    curl -sSf -u alice@example.com:secret -X PUT \
        "$base/$id/properties/greeting" -d hello >/dev/null \
        || die "PUT property failed"
    curl -sSf -u alice@example.com:secret "$base/$id/properties" \
        | grep -q '"greeting":"hello"' || die "GET properties failed"
    curl -sSf "$base/$id/meta" | grep -q '"id":"'"$id"'"' \
        || die "GET meta failed"
    deb_status_version "$port" "$want"
    echo "$id"
}

deb_status_version() {
    local got
    got=$(curl -sSf "http://127.0.0.1:$1/_actingweb_status" \
        | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
    [ "$got" = "$2" ] || die "actingweb_status version \"$got\", want \"$2\""
}

# a clean Debian 12 root (debootstrap, cached as a tarball in build/debcheck)
# with nginx and redis-server: install, serve the example config, upgrade
# under load, reload, binary-upgrade, purge
cmd_deb_check() {
    [ "$(id -u)" = 0 ] || die "deb-check needs root (debootstrap, chroot)"
    APT_PACKAGES+=(debootstrap)

    local deb ver upver updeb dir root base mirror port rport id id2
    local loop_pid="" n fails pid left ex

    deb=$(cmd_deb)
    ver=$(module_version)

    # the upgrade: the same tree as $ver+check1, the module's version too
    upver="$ver+check1"
    dir="$BUILD/deb/upgrade/libnginx-mod-http-actingweb-$upver"
    copy_tree "$dir"
    sed -i "s/^\(#define NGX_HTTP_ACTINGWEB_VERSION *\)\".*\"/\1\"$upver\"/" \
        "$dir/ngx_http_actingweb_module/ngx_http_actingweb_module.h"
    { printf 'libnginx-mod-http-actingweb (%s) bookworm; urgency=medium\n\n' \
          "$upver"
      printf '  * deb-check: upgrade test build.\n\n'
      printf ' -- deb-check <deb-check@localhost>  %s\n\n' "$(date -R)"
      cat "$dir/debian/changelog"; } > "$dir/debian/changelog.new"
    mv "$dir/debian/changelog.new" "$dir/debian/changelog"
    updeb=$(deb_build "$upver" "$dir")
    say "built the upgrade $updeb"

    dir="$BUILD/debcheck"
    root="$dir/root"
    base="$dir/bookworm-minbase.tar"
    mkdir -p "$dir"

    in_root() {
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
    }
    root_nginx() {
        in_root /usr/sbin/nginx -p /tmp/aw/ -c /tmp/aw/nginx.conf "$@"
    }
    snapshot() {
        in_root find / -xdev \( -path /proc -o -path /dev -o -path /sys \
            -o -path /tmp -o -path /run -o -path /var/log -o -path /var/cache \
            -o -path /var/lib/apt -o -path /var/lib/dpkg \) -prune -o -print \
            | sort
    }
    deb_check_cleanup() {
        trap - INT TERM EXIT
        [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null
        for pid in "$root"/tmp/aw/logs/nginx.pid "$root"/tmp/aw/logs/*.oldbin \
                   "$root"/tmp/aw/redis.pid "$root"/tmp/plain/nginx.pid; do
            [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null
        done
        sleep 1
        if mountpoint -q "$root/proc"; then umount "$root/proc"; fi
        return 0
    }
    trap deb_check_cleanup INT TERM EXIT

    if [ ! -f "$base" ]; then
        mirror=$(deb_mirror)
        say "debootstrap bookworm from $mirror (once; cached in $base)"
        rm -rf "$dir/base"
        debootstrap --variant=minbase bookworm "$dir/base" "$mirror" \
            > "$dir/debootstrap.log" 2>&1 \
            || die "debootstrap failed (see $dir/debootstrap.log)"
        tar -C "$dir/base" -cf "$base.tmp" . && mv "$base.tmp" "$base"
        rm -rf "$dir/base"
    fi
    rm -rf "$root"
    mkdir -p "$root"
    tar -C "$root" -xf "$base"
    # no service starts in the root: it shares this machine's network
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"

    say "root $root: apt-get install nginx redis-server"
    in_root apt-get update -qq >/dev/null
    in_root apt-get install -y -qq nginx redis-server >/dev/null 2>&1 \
        || die "apt-get install nginx redis-server failed in the root"
    in_root nginx -t -q || die "nginx -t fails before the package"
    snapshot > "$dir/before.list"
    in_root dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' \
        | awk '$1 == "ii" { print $2 }' > "$dir/before.pkgs"

    say "install $(basename "$deb")"
    cp "$deb" "$updeb" "$root/tmp/"
    in_root apt-get install -y -qq "/tmp/$(basename "$deb")" \
        > "$dir/install.log" 2>&1 || die "install failed ($dir/install.log)"
    in_root dpkg -L libnginx-mod-http-actingweb > "$dir/files.list"
    [ -L "$root/etc/nginx/modules-enabled/50-mod-http-actingweb.conf" ] \
        || die "the module is not enabled in /etc/nginx/modules-enabled"
    in_root nginx -t -q || die "nginx -t fails with the module enabled"
    in_root nginx -T 2>/dev/null \
        | grep -q '^load_module modules/ngx_http_actingweb_module.so;' \
        || die "nginx -T does not load the module"
    say "nginx -t passes with 50-mod-http-actingweb.conf enabled"

    # the packaged example config, on free ports, run from /tmp/aw
    port=$(free_port)
    rport=$(free_port)
    mkdir -p "$root/tmp/aw/logs" "$root/tmp/aw/tmp"
    chmod 0755 "$root/tmp/aw" "$root/tmp/aw/tmp"
    in_root redis-server --bind 127.0.0.1 --port "$rport" --dir /tmp/aw \
        --daemonize yes --pidfile /tmp/aw/redis.pid --logfile /tmp/aw/redis.log \
        --save '' --appendonly no >/dev/null
    ex=/usr/share/doc/libnginx-mod-http-actingweb/docs/example.conf
    { if [ -f "$root$ex" ]; then cat "$root$ex"; else zcat "$root$ex.gz"; fi; } \
        | sed -e "s#127.0.0.1:6379#127.0.0.1:$rport#" \
              -e "s#127.0.0.1:8080#127.0.0.1:$port#" \
              -e "s#localhost:8080#localhost:$port#" > "$root/tmp/aw/nginx.conf"
    for n in $(seq 1 100); do
        redis-cli -p "$rport" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    root_nginx -t -q || die "nginx -t fails with the example config"
    root_nginx || die "nginx did not start with the example config"
    for n in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
    id=$(deb_smoke "$port" "$ver")
    grep -q "actingweb: module version $ver " "$root/tmp/aw/logs/error.log" \
        || die "no start-up notice with version $ver in the error log"
    say "example config on 127.0.0.1:$port: the README's curl lines answered," \
        "version $ver (status, start-up notice)"

    # upgrade, reload and binary upgrade while a client keeps asking
    rm -f "$dir/stop" "$dir/load.result"
    ( fails=0; n=0
      while [ ! -f "$dir/stop" ]; do
          code=$(curl -s -o /dev/null -w '%{http_code}' \
              "http://127.0.0.1:$port/$id/meta") || code=000
          n=$((n + 1))
          [ "$code" = 200 ] || fails=$((fails + 1))
          sleep 0.02
      done
      echo "$n $fails" > "$dir/load.result" ) &
    loop_pid=$!
    sleep 1
    say "upgrade to $(basename "$updeb") while nginx serves"
    in_root apt-get install -y -qq "/tmp/$(basename "$updeb")" \
        > "$dir/upgrade.log" 2>&1 || die "upgrade failed ($dir/upgrade.log)"
    [ -L "$root/etc/nginx/modules-enabled/50-mod-http-actingweb.conf" ] \
        || die "the upgrade disabled the module"
    sleep 1
    root_nginx -s reload 2>/dev/null || die "reload failed"
    sleep 2
    id2=$(deb_smoke "$port" "$ver")
    curl -sSf -u alice@example.com:secret \
        "http://127.0.0.1:$port/$id/properties" | grep -q greeting \
        || die "the first actor is gone after the reload"
    say "after the upgrade and a reload: serving, still version $ver" \
        "(a reload keeps the loaded .so)"

    # binary upgrade (USR2, then QUIT to the old master) loads the new .so
    pid=$(cat "$root/tmp/aw/logs/nginx.pid")
    kill -USR2 "$pid"
    for n in $(seq 1 100); do
        [ -f "$root/tmp/aw/logs/nginx.pid.oldbin" ] \
            && [ -s "$root/tmp/aw/logs/nginx.pid" ] && break
        sleep 0.1
    done
    [ -f "$root/tmp/aw/logs/nginx.pid.oldbin" ] \
        || die "USR2 did not start a new master"
    sleep 1
    kill -QUIT "$pid"
    for n in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    touch "$dir/stop"
    wait "$loop_pid" || true
    loop_pid=""
    read -r n fails < "$dir/load.result"
    say "during upgrade, reload and binary upgrade: $n requests, $fails failed"
    [ "$fails" = 0 ] || die "$fails requests failed during the upgrade"
    deb_smoke "$port" "$upver" >/dev/null
    curl -sSf -u alice@example.com:secret \
        "http://127.0.0.1:$port/$id2/properties" | grep -q greeting \
        || die "an actor is gone after the binary upgrade"
    grep -q "actingweb: module version $upver " "$root/tmp/aw/logs/error.log" \
        || die "no start-up notice with version $upver"
    say "after USR2 + QUIT: version $upver, actors kept"

    root_nginx -s quit 2>/dev/null
    for n in $(seq 1 100); do
        [ -f "$root/tmp/aw/logs/nginx.pid" ] || break
        sleep 0.1
    done
    kill "$(cat "$root/tmp/aw/redis.pid")"
    rm -f "$root/tmp/aw/redis.pid"

    say "apt-get purge --autoremove libnginx-mod-http-actingweb"
    in_root apt-get purge -y -qq --autoremove libnginx-mod-http-actingweb \
        > "$dir/purge.log" 2>&1 || die "purge failed ($dir/purge.log)"
    snapshot > "$dir/after.list"
    left=$(while read -r f; do
               [ "$f" = /. ] && continue
               grep -qxF "$f" "$dir/before.list" && continue
               if [ -e "$root$f" ] || [ -L "$root$f" ]; then echo "$f"; fi
           done < "$dir/files.list"
           grep -i actingweb "$dir/after.list" || true)
    [ -z "$left" ] || die "left after purge: $left"
    in_root dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' \
        | awk '$1 == "ii" { print $2 }' > "$dir/after.pkgs"
    if ! diff -u "$dir/before.list" "$dir/after.list" > "$dir/purge.diff"; then
        say "$(grep -c '^[-+]/' "$dir/purge.diff") other paths differ from" \
            "before the install ($dir/purge.diff), from packages apt kept:" \
            "$(comm -13 "$dir/before.pkgs" "$dir/after.pkgs" | tr '\n' ' ')"
    fi
    say "purge: none of the $(wc -l < "$dir/files.list") paths of the" \
        "package is left, nor the modules-enabled link"

    in_root nginx -t -q || die "nginx -t fails after the purge"
    port=$(free_port)
    mkdir -p "$root/tmp/plain/logs"
    cat > "$root/tmp/plain/nginx.conf" <<EOF
include /etc/nginx/modules-enabled/*.conf;
pid /tmp/plain/nginx.pid;
error_log /tmp/plain/logs/error.log;
events { }
http {
    access_log off;
    server { listen 127.0.0.1:$port; location / { return 200 "ok\n"; } }
}
EOF
    in_root /usr/sbin/nginx -p /tmp/plain/ -c /tmp/plain/nginx.conf \
        || die "nginx does not start after the purge"
    for n in $(seq 1 50); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/" | grep -qx ok \
        || die "nginx does not serve after the purge"
    in_root /usr/sbin/nginx -p /tmp/plain/ -c /tmp/plain/nginx.conf -s quit \
        2>/dev/null
    sleep 1
    say "after the purge nginx starts and serves"

    deb_check_cleanup
    [ -n "${DEBCHECK_KEEP:-}" ] || rm -rf "$root"
    say "deb-check passed"
}

cmd_bench() {
    cmd_build
    exec perl "$ROOT/bench/bench.pl" "$MODULE" "$(nginx_bin)" "$@"
}

case "${1:-build}" in
    deps)  cmd_deps ;;
    build) cmd_build ;;
    run)   cmd_run ;;
    test)  shift; cmd_test "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    fuzz)  shift; cmd_fuzz "$@" ;;
    deb)   cmd_deb >/dev/null ;;
    deb-check) cmd_deb_check ;;
    *)     sed -n '3,33p' "$0"; exit 2 ;;
esac
