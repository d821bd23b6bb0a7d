#!/usr/bin/env bash
# test_browser.sh: the web page end to end in a real browser. Starts `banter serve` with a model, has headless
# Chromium play a spoken question (Flite, through `banter say`) as its microphone, opens the page, presses
# Connect and waits until the page shows the user's transcript, the assistant's text, reply audio played and
# the turn's latency (tests/browser/run.js); then stops the server with SIGINT and checks that it exits cleanly.
#
# Usage: test_browser.sh PATH/TO/banter   (run from the project root, as ctest does)
# Environment: BANTER_TEST_MODEL (default ../shared/fixtures/llm/gemma3-tiny-f32.gguf, else a model synthesized
# here: the replies are gibberish either way, but spoken), CHROMIUM (default /usr/bin/chromium),
# BROWSER_TIMEOUT_S (default 60: how long the page may take for the turn).
# Exits 77 (skipped) only when Chromium, Node.js or playwright-core is missing: scripts/install-deps.sh installs
# them. On failure the page's screenshot is left beside the binary as test_browser-failure.png.
set -uo pipefail

BANTER="$(realpath "$1")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BROWSER_DIR="$ROOT/tests/browser"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
SHOT="$(dirname "$BANTER")/test_browser-failure.png"
SAID="what is the capital of france"

skip() {
    echo "SKIP: $* (scripts/install-deps.sh installs it); the browser test was not run"
    exit 77
}
[ -x "$CHROMIUM" ] || skip "Chromium is not at $CHROMIUM (set CHROMIUM to use another)"
command -v node >/dev/null 2>&1 || skip "Node.js (node) is not installed"
(cd "$BROWSER_DIR" && node -e "require('playwright-core')" >/dev/null 2>&1) ||
    skip "playwright-core is not installed in tests/browser/node_modules, or this Node.js cannot load it"

TMP="$(mktemp -d)"
spid=""
cleanup() {
    if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then kill -KILL "$spid" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    if [ -s "$TMP/serve.out" ]; then
        echo "--- banter serve's output (last 40 lines):" >&2
        tail -n 40 "$TMP/serve.out" >&2
    fi
    exit 1
}
rm -f "$SHOT"

MODEL="${BANTER_TEST_MODEL:-../shared/fixtures/llm/gemma3-tiny-f32.gguf}"
if [ ! -f "$MODEL" ]; then
    echo "$MODEL not found: using a synthesized model"
    MODEL="$TMP/tiny.gguf"
    "$BANTER" model synth --arch gemma3 --shape tiny --type Q8_0 --seed 3 -o "$MODEL" >/dev/null ||
        fail "banter model synth failed"
fi

# The question, as the 48 kHz WAV Chromium's fake microphone plays: a second of silence, the speech, then
# silence for the rest of the test (the file loops).
"$BANTER" say "$SAID" -o "$TMP/said16.wav" >/dev/null || fail "banter say failed"
python3 "$BROWSER_DIR/make_wav.py" "$TMP/said16.wav" "$TMP/said.wav" 1 120 || fail "make_wav.py failed"

"$BANTER" serve -m "$MODEL" --port 0 >"$TMP/serve.out" 2>&1 &
spid=$!
port=""
for _ in $(seq 1 300); do
    port="$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$TMP/serve.out" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || fail "banter serve -m $MODEL --port 0 did not print 'listening on http://127.0.0.1:PORT'"
echo "banter serve is listening on port $port"

export CHROMIUM
export CHROMIUM_ARGS="--no-sandbox --disable-dev-shm-usage --use-fake-ui-for-media-stream \
--use-fake-device-for-media-stream --use-file-for-fake-audio-capture=$TMP/said.wav \
--autoplay-policy=no-user-gesture-required"
timeout_s="${BROWSER_TIMEOUT_S:-60}"
(cd "$BROWSER_DIR" && timeout $((timeout_s + 60)) node run.js "http://127.0.0.1:$port/" "$SAID" "$SHOT" "$timeout_s")
rc=$?
if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "FAIL: the browser driver did not finish in time" >&2
    [ -f "$SHOT" ] && echo "screenshot of the page: $SHOT" >&2
    fail "the page did not complete a spoken turn"
fi

kill -INT "$spid"
for _ in $(seq 1 150); do
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$spid" 2>/dev/null && fail "banter serve did not stop within 15 s of SIGINT"
wait "$spid"
src=$?
spid=""
[ "$src" -eq 0 ] || fail "banter serve exited with status $src after SIGINT"
echo "test_browser: passed"
