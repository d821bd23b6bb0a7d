#!/bin/sh
# make_corpus.sh: rebuilds the committed seed corpus of fuzz_gguf (fuzz/corpus/gguf/) with Banter's own GGUF
# writer. Usage, from the repository root: fuzz/make_corpus.sh [BUILD_DIR]   (default: build)
set -eu
build=${1:-build}
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -B "$build" -S . >/dev/null
fi
cmake --build "$build" --target banter_static >/dev/null
${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -Iinclude -Isrc fuzz/make_corpus.c "$build/libbanter_static.a" -lm -lpthread \
    -o "$build/make_corpus"
mkdir -p fuzz/corpus/gguf
"$build/make_corpus" fuzz/corpus/gguf
