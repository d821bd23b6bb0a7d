#!/usr/bin/env bash
# install-deps.sh: installs what Banter's build, tests, sanitizers and fuzzers need, on Debian 12 (bookworm).
#
#   ./scripts/install-deps.sh
#
# Runs as root, or through sudo when run by another user. Packages already installed are not touched, so a second
# run takes a fraction of a second and never needs the network. Debian's packages come from Debian's archive;
# the browser test's one npm package (playwright-core, pinned in tests/browser/package-lock.json) from the npm
# registry, into tests/browser/node_modules, with no browser download: the test drives Debian's chromium.
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
#   chromium            the headless browser that tests/test_browser.sh drives through the web page
#   nodejs, npm         run that test's driver script (playwright-core) and install it
#   python3-websockets  WebSocket clients in tests of the realtime endpoint
PACKAGES=(build-essential cmake pkg-config clang libclang-rt-14-dev llvm valgrind git
    libsndfile1-dev libspeexdsp-dev libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us pocketsphinx-testdata
    flite1-dev libespeak-ng-dev libcurl4-openssl-dev libjansson-dev libwebsockets-dev portaudio19-dev python3
    chromium nodejs npm python3-websockets)
BROWSER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"

say() { printf '[install-deps] %s\n' "$*"; }

# A package counts as present when dpkg has it, or (for node and npm, which NodeSource's nodejs package also
# provides, npm included) when its command is on the PATH.
present() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ] && return 0
    case "$1" in
    nodejs) command -v node >/dev/null 2>&1 ;;
    npm) command -v npm >/dev/null 2>&1 ;;
    *) return 1 ;;
    esac
}

# The browser test's npm package, installed as the lock file pins it (npm ci). Skipped when node_modules was
# installed after the lock file last changed; as the user running the script, so the files stay theirs.
install_npm() {
    if [ ! -f "$BROWSER_DIR/package.json" ]; then return 0; fi
    if [ -f "$BROWSER_DIR/node_modules/.package-lock.json" ] &&
        [ "$BROWSER_DIR/node_modules/.package-lock.json" -nt "$BROWSER_DIR/package-lock.json" ]; then
        say "tests/browser: npm packages are up to date"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is not installed: the browser test will be skipped"
        return 0
    fi
    say "tests/browser: npm ci (playwright-core, no browser download)"
    (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    say "this script needs Debian's dpkg and apt-get (Debian 12 or a derivative)."
    say "elsewhere, install the equivalent of: ${PACKAGES[*]}"
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    present "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#PACKAGES[@]} packages are already installed: ${PACKAGES[*]}"
    install_npm
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
install_npm
say "done"
