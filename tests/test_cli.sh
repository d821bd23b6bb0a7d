#!/usr/bin/env bash
# test_cli.sh: the `banter` command end to end: help and usage errors, `model info`, `model tokenize` and
# `model eval` on the reference fixtures (eval's logits checked against llama.cpp's dump with the fixture
# tolerance), `model synth` output loading back, `chat` one-shot, `bench llm --json` fields, speech (`say`,
# `transcribe`), spoken conversations (`talk` from a file and from a script, failures) and `bench serve`.
# Usage: test_cli.sh PATH/TO/banter   (run from the project root; ../shared is needed for the fixture parts)
set -uo pipefail

BANTER="$1"
PASS=0
FAIL=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

ok() { PASS=$((PASS + 1)); }
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $*" >&2
}
# expect_rc CODE CMD...: the command exits with CODE.
expect_rc() {
    local want="$1"
    shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "$* exited $rc, expected $want: $(head -c 300 "$TMP/err")"; fi
}
expect_grep() { # PATTERN FILE
    if grep -q -- "$1" "$2"; then ok; else bad "'$1' not in $2: $(head -c 300 "$2")"; fi
}

expect_rc 0 "$BANTER" --help
expect_grep "chat" "$TMP/out"
expect_rc 2 "$BANTER"
expect_rc 2 "$BANTER" no-such-command
expect_grep "unknown command" "$TMP/err"
for sub in "chat" "model info" "model eval" "model tokenize" "model synth" "bench llm"; do
    # shellcheck disable=SC2086
    expect_rc 0 "$BANTER" $sub --help
    expect_grep "usage" "$TMP/out"
done
expect_rc 2 "$BANTER" chat
expect_grep "model" "$TMP/err"
expect_rc 2 "$BANTER" chat --model x --max-tokens abc
expect_grep "integer" "$TMP/err"
expect_rc 1 "$BANTER" chat --model /nonexistent.gguf -p hi
expect_grep "nonexistent" "$TMP/err"
expect_rc 2 "$BANTER" model synth --shape huge -o "$TMP/x.gguf"

# Synthesized model: writes, loads, chats, benchmarks.
expect_rc 0 "$BANTER" model synth --arch gemma3 --shape tiny --type Q8_0 --seed 3 -o "$TMP/tiny.gguf"
expect_rc 0 "$BANTER" model info "$TMP/tiny.gguf"
expect_grep "gemma3.attention.sliding_window" "$TMP/out"
expect_grep "blk.3.ffn_down.weight" "$TMP/out"
expect_rc 0 "$BANTER" chat --model "$TMP/tiny.gguf" -p "hello there" -n 8 --temp 0 --stats
expect_grep "reply:" "$TMP/err"
expect_rc 0 "$BANTER" bench llm --model "$TMP/tiny.gguf" --prompt 32 --gen 4 --seqs 2 --reps 1 --json
for key in prefill_tps decode_tps batched sequences bandwidth_gbs; do expect_grep "\"$key\"" "$TMP/out"; done
if command -v python3 >/dev/null; then
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["prefill_tps"]>0 and d["decode_tps"]>0 and d["batched"][0]["sequences"]==2' "$TMP/out"; then ok; else bad "bench json"; fi
fi
# A truncated model is refused with a message, not a crash.
head -c 5000 "$TMP/tiny.gguf" >"$TMP/trunc.gguf"
expect_rc 1 "$BANTER" chat --model "$TMP/trunc.gguf" -p hi
expect_grep "cannot load" "$TMP/err"

# Speech: a sentence spoken by the default voice is recognized by the built-in recognizer.
# (Recognition is not exact: all but 3 of the 9 words must come back.)
said="please call me back when you get home tonight"
expect_rc 0 "$BANTER" say "$said" -o "$TMP/say.wav"
expect_rc 0 "$BANTER" transcribe "$TMP/say.wav"
if python3 - "$said" "$TMP/out" <<'PY'; then ok; else bad "transcript of the spoken sentence: $(cat "$TMP/out")"; fi
import sys
said = sys.argv[1].split()
heard = open(sys.argv[2]).read().lower().split()
hits = sum(1 for w in said if w in heard)
print("words recognized: %d of %d" % (hits, len(said)))
assert hits >= len(said) - 3
PY
expect_rc 1 "$BANTER" transcribe "$TMP/tiny.gguf"
expect_rc 1 "$BANTER" transcribe /nonexistent.wav
expect_rc 2 "$BANTER" say "hello" -o "$TMP/x.wav" --voice no-such-voice
expect_rc 2 "$BANTER" say
for sub in transcribe say talk "bench voice" "bench serve" serve; do
    # shellcheck disable=SC2086
    expect_rc 0 "$BANTER" $sub --help
    expect_grep "usage" "$TMP/out"
done

# Talk: one spoken turn from a file (the sentence above) answered aloud by the tiny model, and a scripted
# conversation of two turns; the transcript and the latency table come out, the reply audio is written.
expect_rc 0 "$BANTER" talk -m "$TMP/tiny.gguf" --in "$TMP/say.wav" --out "$TMP/reply.wav" -n 8 --temp 0
expect_grep "^user: please" "$TMP/out"
expect_grep "^assistant:" "$TMP/out"
expect_grep "latency per turn" "$TMP/out"
expect_rc 0 "$BANTER" transcribe "$TMP/reply.wav" # the reply is a readable sound file
mkdir -p "$TMP/script"
cp "$TMP/say.wav" "$TMP/script/01.wav"
expect_rc 0 "$BANTER" say "thank you very much" -o "$TMP/script/02.wav"
expect_rc 0 "$BANTER" talk -m "$TMP/tiny.gguf" --script "$TMP/script" -n 6 --temp 0 --out "$TMP/conv.wav"
if [ "$(grep -c '^user:' "$TMP/out")" -eq 2 ]; then ok; else bad "scripted talk: $(cat "$TMP/out")"; fi
# Without a model, the command says how to get one; bad files and options are clear errors.
expect_rc 1 "$BANTER" talk --in "$TMP/say.wav"
expect_grep "huggingface.co" "$TMP/err"
expect_grep "model synth" "$TMP/err"
expect_rc 1 "$BANTER" talk -m "$TMP/tiny.gguf" --in /nonexistent.wav
expect_rc 1 "$BANTER" talk -m "$TMP/tiny.gguf" --in "$TMP/tiny.gguf"
expect_rc 1 "$BANTER" talk -m "$TMP/tiny.gguf" --script /nonexistent-dir
expect_rc 2 "$BANTER" talk -m "$TMP/tiny.gguf" --in "$TMP/say.wav" --script "$TMP/script"
expect_rc 2 "$BANTER" talk -m "$TMP/tiny.gguf" --end-silence 5
expect_rc 2 "$BANTER" talk -m "$TMP/tiny.gguf" --barge-in 300 --in "$TMP/say.wav"
expect_rc 2 "$BANTER" talk --bogus
expect_rc 2 "$BANTER" bench serve --bogus
expect_rc 2 "$BANTER" bench serve -n 2
expect_rc 2 "$BANTER" bench serve --url ftp://127.0.0.1:9
expect_rc 1 "$BANTER" bench serve --url ws://127.0.0.1:9/v1/realtime -n 1 --turns 1
expect_grep "cannot connect" "$TMP/err"
# Silence alone: no turn, and the command says so.
python3 - "$TMP/silence.wav" <<'PY'
import struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b"\0\0" * 32000); w.close()
PY
expect_rc 1 "$BANTER" talk -m "$TMP/tiny.gguf" --in "$TMP/silence.wav" --fast
expect_grep "no speech" "$TMP/err"
# The server: start it on a free port, ask for its health and a spoken sentence, transcribe that back, stop it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$BANTER" serve --port "$port" >"$TMP/serve.out" 2>&1 &
spid=$!
for _ in $(seq 1 100); do grep -q "listening" "$TMP/serve.out" 2>/dev/null && break; sleep 0.1; done
if python3 - "$port" "$TMP/speech.wav" <<'PY'; then ok; else bad "serve: $(cat "$TMP/serve.out")"; fi
import json, sys, urllib.request
base = "http://127.0.0.1:%s" % sys.argv[1]
h = json.load(urllib.request.urlopen(base + "/health", timeout=30))
assert h["status"] == "ok", h
req = urllib.request.Request(base + "/v1/audio/speech", method="POST",
                             data=json.dumps({"input": "please call me back when you get home tonight"}).encode(),
                             headers={"Content-Type": "application/json"})
wav = urllib.request.urlopen(req, timeout=60).read()
assert wav[:4] == b"RIFF" and len(wav) > 24000, len(wav)
open(sys.argv[2], "wb").write(wav)
PY
expect_rc 0 "$BANTER" transcribe "$TMP/speech.wav"
expect_grep "back when you get" "$TMP/out"
kill -INT "$spid"
if wait "$spid"; then ok; else bad "serve did not stop cleanly on SIGINT: $(cat "$TMP/serve.out")"; fi

# A remote model that is down: the failure is reported and an apology is spoken.
expect_rc 1 "$BANTER" talk --llm-url http://127.0.0.1:9 --llm-timeout 2 --in "$TMP/say.wav" --out "$TMP/sorry.wav"
expect_grep "cannot reach" "$TMP/err"
expect_rc 0 "$BANTER" transcribe "$TMP/sorry.wav"
expect_grep "sorry" "$TMP/out"

FIX=../shared/fixtures/llm
if [ -d "$FIX" ]; then
    name=gemma3-tiny-f32
    prompt="$(head -n 1 "$FIX/$name.prompt")"
    expect_rc 0 "$BANTER" model tokenize --model "$FIX/$name.gguf" --ids "$prompt"
    if [ "$(cat "$TMP/out")" = "$(tr -s ' \n' ' ' <"$FIX/$name.tokens" | sed 's/ $//')" ]; then ok; else bad "tokenize ids differ from $name.tokens"; fi
    for name in gemma3-tiny-f32 llama-tiny-spm-f16; do
        prompt="$(head -n 1 "$FIX/$name.prompt")"
        expect_rc 0 "$BANTER" model eval --model "$FIX/$name.gguf" --prompt "$prompt" --logits "$TMP/$name.logits"
        if python3 - "$TMP/$name.logits" "$FIX/$name.logits" <<'PY'; then ok; else bad "eval logits of $name"; fi
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
assert len(a) == len(b), (len(a), len(b))
n = len(a) // 4
x = struct.unpack("<%df" % n, a); y = struct.unpack("<%df" % n, b)
err = max(abs(p - q) for p, q in zip(x, y)) / max(abs(q) for q in y)
print("eval vs llama.cpp:", err)
assert err < 2e-3
PY
    done
    # The realtime load generator: two spoken conversations of one turn against a server it starts and stops.
    expect_rc 0 "$BANTER" bench serve -m "$FIX/gemma3-tiny-f32.gguf" -n 2 --turns 1 --ramp 0
    expect_grep "2/2" "$TMP/out"
    expect_grep "largest N that kept every conversation real-time" "$TMP/out"
else
    echo "SKIP: ../shared/fixtures absent; fixture parts of the CLI test not run"
fi

echo "test_cli: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
