#!/usr/bin/env bash
# test.sh: builds Banter and runs its whole test suite.
#
#   ./scripts/test.sh                 Release build with -Werror into build/, then ctest
#   ./scripts/test.sh --asan          AddressSanitizer + UndefinedBehaviorSanitizer build into build-asan/, then ctest
#   ./scripts/test.sh --fuzz SECONDS  clang libFuzzer build into build-fuzz/, then every fuzz/fuzz_*.c target for
#                                     SECONDS each over a scratch copy of its corpus fuzz/corpus/<name>/
#
# Tests that need the reference data in ../shared skip (ctest shows them as "Skipped") when it is absent.
# Exits non-zero if the build or any test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="$(nproc 2>/dev/null || echo 2)"
MODE=release
FUZZ_SECONDS=0

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --asan) MODE=asan ;;
        --fuzz)
            MODE=fuzz
            if [ $# -lt 2 ] || ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
                echo "test.sh: --fuzz needs a whole number of seconds per target (e.g. --fuzz 60)" >&2
                exit 2
            fi
            FUZZ_SECONDS="$2"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "test.sh: unknown option '$1'" >&2
            usage >&2
            exit 2
            ;;
    esac
    shift
done

say() { printf '\n==> %s\n' "$*"; }
START=$(date +%s)

configure_and_build() { # build_dir, cmake args..., then -- targets...
    local dir="$1"
    shift
    local args=() targets=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        args+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    targets=("$@")
    say "configure $dir (${args[*]})"
    cmake -S "$ROOT" -B "$ROOT/$dir" "${args[@]}"
    say "build $dir with $JOBS jobs"
    if [ ${#targets[@]} -gt 0 ]; then
        cmake --build "$ROOT/$dir" -j "$JOBS" --target "${targets[@]}"
    else
        cmake --build "$ROOT/$dir" -j "$JOBS"
    fi
}

run_ctest() { # build_dir
    say "ctest in $1"
    # One test at a time: several tests assert latency bounds (speech recognition's time to the final result),
    # and a neighbour competing for the cores would make them fail for reasons that are not bugs.
    (cd "$ROOT/$1" && ctest --output-on-failure)
}

case "$MODE" in
    release)
        configure_and_build build -DCMAKE_BUILD_TYPE=Release -DBANTER_WERROR=ON
        run_ctest build
        ;;
    asan)
        configure_and_build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTER_WERROR=ON -DBANTER_ASAN=ON \
            -DBANTER_UBSAN=ON
        export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        run_ctest build-asan
        ;;
    fuzz)
        if ! command -v clang >/dev/null 2>&1; then
            echo "test.sh: --fuzz needs clang (run ./scripts/install-deps.sh)" >&2
            exit 1
        fi
        shopt -s nullglob
        sources=("$ROOT"/fuzz/fuzz_*.c)
        if [ ${#sources[@]} -eq 0 ]; then
            say "no fuzz targets (fuzz/fuzz_*.c); nothing to do"
            exit 0
        fi
        names=()
        for s in "${sources[@]}"; do names+=("$(basename "$s" .c)"); done
        # The library itself is instrumented for coverage (fuzzer-no-link) so that libFuzzer sees the parsers'
        # branches, not only the harness's; the targets link the fuzzer runtime (CMakeLists.txt).
        CC=clang configure_and_build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTER_FUZZ=ON \
            -DBANTER_ASAN=ON -DBANTER_UBSAN=ON -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -- "${names[@]}"
        export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        artifacts="$ROOT/build-fuzz/artifacts"
        mkdir -p "$artifacts"
        failed=()
        for name in "${names[@]}"; do
            corpus_name="${name#fuzz_}"
            scratch="$(mktemp -d "${TMPDIR:-/tmp}/banter-$name.XXXXXX")"
            if [ -d "$ROOT/fuzz/corpus/$corpus_name" ]; then
                cp -R "$ROOT/fuzz/corpus/$corpus_name/." "$scratch/"
            fi
            say "fuzz $name for ${FUZZ_SECONDS}s over $(find "$scratch" -type f | wc -l) seed input(s)"
            # libFuzzer's progress lines go to a log; the summary (and on failure the report) is printed.
            log="$artifacts/$name.log"
            if "$ROOT/build-fuzz/$name" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 \
                -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$scratch" >"$log" 2>&1; then
                grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
                echo "$name: no failure in ${FUZZ_SECONDS}s"
            else
                tail -n 60 "$log" >&2
                echo "$name: FAILED (the input that failed is in $artifacts/, the whole log in $log)" >&2
                failed+=("$name")
            fi
            rm -rf "$scratch"
        done
        if [ ${#failed[@]} -gt 0 ]; then
            say "fuzzing found failures in: ${failed[*]}"
            exit 1
        fi
        ;;
esac

say "test.sh $MODE: passed in $(($(date +%s) - START))s"
