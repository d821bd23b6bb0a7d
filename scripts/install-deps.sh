#!/usr/bin/env bash
# install-deps.sh: installs what Banter's build, tests, sanitizers and fuzzers need, on Debian 12 (bookworm).
#
#   ./scripts/install-deps.sh
#
# Runs as root, or through sudo when run by another user. Packages already installed are not touched, so a second
# run takes a fraction of a second and never needs the network. Only Debian's own package archive is used.
set -euo pipefail

# What each package is for:
#   build-essential     gcc, make, libc headers: the default compiler
#   cmake               the build system (3.18 or newer)
#   pkg-config          library discovery for optional dependencies
#   clang               the compiler for libFuzzer targets (scripts/test.sh --fuzz)
#   libclang-rt-14-dev  clang's sanitizer and libFuzzer runtimes
#   llvm                llvm-symbolizer, so sanitizer reports show file:line
#   valgrind            memory checking and instruction counts for benchmarks
#   git                 the source is a git repository; the version string reads it
#   libsndfile1-dev     WAV, FLAC and Ogg audio files
#   libspeexdsp-dev     resampling between the client's rate and the pipeline's 16 kHz
#   libpocketsphinx-dev, libsphinxbase-dev, pocketsphinx-en-us
#                       the built-in speech recognizer and its US English model
#   pocketsphinx-testdata  real recorded speech with transcripts, for the recognition tests
#   flite1-dev          the default assistant voice (cmu_us_slt) and the test speaker (slt, kal16)
#   libespeak-ng-dev    the alternative synthesizer (many languages, very low latency)
#   python3             small checks in the command-line tests
PACKAGES=(build-essential cmake pkg-config clang libclang-rt-14-dev llvm valgrind git
    libsndfile1-dev libspeexdsp-dev libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us pocketsphinx-testdata
    flite1-dev libespeak-ng-dev libcurl4-openssl-dev libjansson-dev libwebsockets-dev portaudio19-dev python3)

say() { printf '[install-deps] %s\n' "$*"; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    say "this script needs Debian's dpkg and apt-get (Debian 12 or a derivative)."
    say "elsewhere, install the equivalent of: ${PACKAGES[*]}"
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#PACKAGES[@]} packages are already installed: ${PACKAGES[*]}"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        say "not running as root and sudo is not available; run this script as root to install: ${missing[*]}"
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
say "installing ${#missing[@]} missing package(s): ${missing[*]}"
say "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "apt-get install"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
say "done"
