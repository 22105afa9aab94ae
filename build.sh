#!/usr/bin/env bash
#
# ngx_http_actingweb_module: deps | build | run | test | bench
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
#
# Environment:
#   NGINX_SRC=/path/to/nginx-x.y.z   build against that source tree instead
#                                    of the installed nginx (nginx-dev)
#   NGINX_CONFIGURE_ARGS="..."       extra configure arguments with NGINX_SRC
#   ACTINGWEB_REDIS=host:port        `run`: use this Redis, start none
#   PORT=8080                        `run`: listen port
#   TEST_NGINX_BINARY=/usr/sbin/nginx, TEST_NGINX_EVENT_TYPE=poll,
#   TEST_NGINX_USE_VALGRIND=1        nginx under memcheck: an error or a
#                                    definite leak fails the block
#   TEST_NGINX_SANITIZE=1            `test`: nginx and the module built with
#                                    ASan and UBSan; any report fails the run

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

    local redis_pid="" nginx_pid=""
    if [ -n "${ACTINGWEB_REDIS:-}" ]; then
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
        -e "s#127.0.0.1:6379#$redis#" \
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

    libs=(-lhiredis -lcjson -lcurl -lcrypto -lcrypt -lpthread -ldl)
    mapfile -t nginx_objs < <(find "$objs/src" -name '*.o' ! -name nginx.o)

    for f in "$ROOT"/fuzz/*.c; do
        t=$(basename "${f%.c}")
        local mod=() skip
        skip=$(sed -n 's/^#include ".*\(ngx_http_actingweb_[a-z_]*\)\.c"$/\1/p' "$f")
        for o in "$dir"/obj/*.o; do
            [ "$(basename "${o%.o}")" = "$skip" ] || mod+=("$o")
        done
        if [ ! -x "$dir/$t" ] \
           || [ -n "$(find "$f" "$ROOT/fuzz/fuzz.h" "${mod[@]}" \
                      "$dir/nginx-nomain.o" -newer "$dir/$t")" ]
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
    *)     sed -n '3,28p' "$0"; exit 2 ;;
esac
