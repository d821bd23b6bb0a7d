#!/usr/bin/env bash
# setup.sh: installs what Banter needs, builds it, and runs the main job on built-in defaults.
#
#   ./scripts/setup.sh [MODEL.gguf]
#
# 1. installs the build dependencies from Debian's packages (scripts/install-deps.sh; root or sudo)
# 2. builds the library and the `banter` command into build/ (Release)
# 3. picks a model: MODEL.gguf if given, else a *.gguf file in models/ (a downloaded one before a synthetic one);
#    if models/ has none, writes a random-weight model of Gemma 3 270M's real shape to
#    models/synth-gemma3-270m-q8_0.gguf (no download needed)
# 4. one spoken turn: `banter say` speaks a question into build/question.wav, and
#    `banter talk --in build/question.wav --out build/reply.wav` hears it, answers it aloud, and prints the
#    transcript and the latency of each stage
# 5. the main job, the server: `banter bench serve` starts `banter serve` on the model and holds four spoken
#    conversations with it at once over the realtime WebSocket protocol, then prints their latency; setup ends
#    by saying how to start the server for yourself (its web page talks from the microphone)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="$(nproc 2>/dev/null || echo 2)"
BANTER="$ROOT/build/banter"
SYNTH="$ROOT/models/synth-gemma3-270m-q8_0.gguf"

say() { printf '\n==> %s\n' "$*"; }

case "${1:-}" in
    -h | --help)
        sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
if [ $# -gt 1 ]; then
    echo "setup.sh: at most one argument, a model file (see --help)" >&2
    exit 2
fi
MODEL="${1:-}"
if [ -n "$MODEL" ] && [ ! -f "$MODEL" ]; then
    echo "setup.sh: model file '$MODEL' does not exist" >&2
    exit 2
fi

say "installing dependencies"
"$ROOT/scripts/install-deps.sh"

say "building into build/ with $JOBS jobs"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$ROOT/build" -j "$JOBS"
"$BANTER" --version

if [ -z "$MODEL" ]; then
    shopt -s nullglob
    real=() synth=()
    for f in "$ROOT"/models/*.gguf; do
        case "$(basename "$f")" in
            synth-*) synth+=("$f") ;;
            *) real+=("$f") ;;
        esac
    done
    if [ ${#real[@]} -gt 0 ]; then
        MODEL="${real[0]}"
    elif [ ${#synth[@]} -gt 0 ]; then
        MODEL="${synth[0]}"
    else
        say "no model in models/: writing a synthetic one"
        cat <<'MSG'
No *.gguf file is in models/, and this machine may not be able to download one, so setup writes a model with
random weights and the real shape of Gemma 3 270M (Q8_0). Every stage of the engine runs on it at real size and
speed, but its replies are gibberish. For real answers, download a GGUF model into models/ and run setup again,
for example Gemma 3 270M instruct, Q8_0 (about 290 MB):
  https://huggingface.co/ggml-org/gemma-3-270m-it-GGUF
(see README.md, "Models", for more choices).
MSG
        mkdir -p "$ROOT/models"
        "$BANTER" model synth --arch gemma3 --shape 270m --type Q8_0 -o "$SYNTH"
        MODEL="$SYNTH"
    fi
fi

# The main job: one spoken turn. A question is spoken by the built-in voice, heard by the recognizer, answered
# by the model, and the answer is spoken into build/reply.wav, with the latency of each stage.
say "banter talk: a spoken question, answered aloud"
"$BANTER" say "Hello! What can you do for me today?" -o "$ROOT/build/question.wav"
"$BANTER" talk --model "$MODEL" --in "$ROOT/build/question.wav" --out "$ROOT/build/reply.wav" -n 32
# Models written by `banter model synth` are named "synthetic-..." inside, whatever their file name.
info="$("$BANTER" model info "$MODEL" 2>/dev/null || true)"
if [[ "$info" == *'general.name = "synthetic-'* ]]; then
    echo
    echo "(this model has random weights, so its reply is gibberish. For real answers, download a GGUF model"
    echo " into models/, e.g. https://huggingface.co/ggml-org/gemma-3-270m-it-GGUF, and run setup again;"
    echo " see README.md, \"Models\".)"
fi

# The main job: the server, with four conversations at once over the realtime protocol.
say "banter serve: four spoken conversations at once over the realtime WebSocket protocol"
"$BANTER" bench serve --model "$MODEL" -n 4 --turns 2

say "setup done. Listen to build/reply.wav. Start the server with: build/banter serve --model ${MODEL#"$ROOT"/}
    and open http://127.0.0.1:8080/ to talk from the browser (or point an OpenAI realtime client at
    ws://127.0.0.1:8080/v1/realtime); talk locally with: build/banter talk --model ${MODEL#"$ROOT"/}"
