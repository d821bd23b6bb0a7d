#!/usr/bin/env python3
"""test_realtime.py: the realtime endpoint /v1/realtime of `banter serve`, driven by a real WebSocket client
(Debian's python3-websockets) speaking the OpenAI Realtime protocol.

    test_realtime.py BANTER [MODEL.gguf]

Covers: a spoken turn with server VAD (GA and beta names, pcm16 and G.711), text items and text-only responses,
response.cancel, barge-in by server VAD and by conversation.item.truncate (the truncated reply must shrink the
next prompt: the model's cache was cut), bad input (invalid JSON, unknown events, bad base64, odd PCM, binary and
oversized messages, bad settings) with the session still usable afterwards, the API key, the session limit, the
idle timeout, abrupt disconnects in every state, a client that never reads, and 16 sessions talking at once.
The server must stop cleanly on SIGINT at the end (under AddressSanitizer that includes finding no leaks).
Exits 77 (skipped) when websockets or the model fixture is missing.
"""
import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import audioop  # noqa: E402  (resampling and G.711 reference; in Python's standard library up to 3.12)

try:
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatusCode
except ImportError:
    print("SKIP: python3-websockets is not installed (scripts/install-deps.sh installs it)")
    sys.exit(77)

BANTER = sys.argv[1] if len(sys.argv) > 1 else "build/banter"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "../shared/fixtures/llm/gemma3-tiny-f32.gguf"
if not os.path.exists(MODEL):
    print(f"SKIP: no model at {MODEL} (../shared/fixtures is missing)")
    sys.exit(77)
SANITIZED = os.environ.get("BANTER_SANITIZED") == "1"
SLOW = 3 if SANITIZED else 1  # sanitizers make everything slower: scale the waits
TMP = tempfile.mkdtemp(prefix="banter-rt-")
FAILS = []


def check(cond, what):
    if cond:
        print(f"  ok   {what}")
    else:
        print(f"  FAIL {what}")
        FAILS.append(what)
    return cond


class Server:
    def __init__(self, *args):
        self.log = open(os.path.join(TMP, "server.log"), "ab")
        self.p = subprocess.Popen([BANTER, "serve", "-m", MODEL, "--port", "0", *args], stdout=subprocess.PIPE,
                                  stderr=self.log)
        line = self.p.stdout.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"the server did not start: {line!r} (log in {TMP}/server.log)")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime"

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=60 * SLOW)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "hung"
        self.log.close()
        return rc


def speech(text, rate=24000, voice="slt", silence_s=1.5):
    """Flite speech of text as 16-bit mono PCM at rate, followed by silence."""
    path = os.path.join(TMP, f"say-{abs(hash((text, voice)))}.wav")
    if not os.path.exists(path):
        subprocess.run([BANTER, "say", text, "--voice", voice, "-o", path], check=True, capture_output=True)
    with wave.open(path) as w:
        pcm, src = w.readframes(w.getnframes()), w.getframerate()
    if src != rate:
        pcm, _ = audioop.ratecv(pcm, 2, 1, src, rate, None)
    return pcm + b"\0" * int(rate * silence_s) * 2


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.events = []

    @classmethod
    async def connect(cls, url, **kw):
        ws = await websockets.connect(url, max_size=None, **kw)
        c = cls(ws)
        first = await c.next(10)
        assert first["type"] == "session.created", first
        c.session = first["session"]
        return c

    async def send(self, ev):
        await self.ws.send(json.dumps(ev))

    async def next(self, timeout=30):
        ev = json.loads(await asyncio.wait_for(self.ws.recv(), timeout * SLOW))
        self.events.append(ev)
        return ev

    async def until(self, types, timeout=60):
        """Events until one of types (returned last)."""
        types = (types,) if isinstance(types, str) else types
        got = []
        deadline = time.monotonic() + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {types} within {timeout} s; got {[e['type'] for e in got][-12:]}")
            ev = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            got.append(ev)
            if ev["type"] in types:
                return got

    async def append(self, pcm, chunk=4800):
        for i in range(0, len(pcm), chunk):
            await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i:i + chunk]).decode()})

    async def close(self):
        await self.ws.close()


def types_of(evs):
    return [e["type"] for e in evs]


def first(evs, t):
    return next((e for e in evs if e["type"] == t), None)


def audio_bytes(evs, t):
    return b"".join(base64.b64decode(e["delta"]) for e in evs if e["type"] == t)


QUESTION = "What is the weather like in Paris today?"


async def test_spoken_turn_ga(srv):
    print("a spoken turn, GA names, pcm16 24 kHz, server VAD")
    c = await Client.connect(srv.url)
    check(c.session.get("type") == "realtime" and c.session["audio"]["input"]["format"]["type"] == "audio/pcm",
          "session.created carries a GA session object")
    await c.send({"type": "session.update", "event_id": "ev1",
                  "session": {"type": "realtime", "instructions": "You are a test.",
                              "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}})
    evs = await c.until("session.updated")
    s = evs[-1]["session"]
    check(s["instructions"] == "You are a test." and s["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500,
          "session.updated reflects the instructions and the turn detection")
    await c.append(speech(QUESTION))
    evs = await c.until("response.done", 90)
    t = types_of(evs)
    for name in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                 "conversation.item.input_audio_transcription.completed", "response.created",
                 "response.output_item.added", "response.content_part.added", "response.output_audio.delta",
                 "response.output_audio_transcript.delta", "response.output_audio.done",
                 "response.output_audio_transcript.done", "response.content_part.done", "response.output_item.done"):
        check(name in t, f"event {name}")
    order = [t.index(n) for n in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                  "input_audio_buffer.committed", "response.created", "response.done")]
    check(order == sorted(order), "speech_started < speech_stopped < committed < response.created < response.done")
    tr = first(evs, "conversation.item.input_audio_transcription.completed")["transcript"]
    words = set(tr.lower().split())
    check(len(words & {"what", "weather", "paris", "today", "like"}) >= 3, f"the user's words were recognized: {tr!r}")
    done = evs[-1]["response"]
    check(done["status"] == "completed", f"response.done status completed ({done['status']})")
    check(done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0, "response.done has token usage")
    pcm = audio_bytes(evs, "response.output_audio.delta")
    check(len(pcm) > 24000 * 2 * 0.3 and len(pcm) % 2 == 0, f"reply audio: {len(pcm) / 48000:.2f} s of pcm16")
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    check(max(abs(x) for x in samples) > 1000, "the reply audio is not silent")
    deltas = "".join(e["delta"] for e in evs if e["type"] == "response.output_audio_transcript.delta")
    final = first(evs, "response.output_audio_transcript.done")["transcript"]
    check(final.strip() != "" and final.strip() == deltas.strip().replace("\ufffd", "") or final.strip() in deltas,
          "the transcript deltas add up to the final transcript")
    ids = {e["item"]["id"] for e in evs if e["type"] == "conversation.item.added"}
    check(len(ids) == 2, "two items: the user's and the assistant's")
    turn = (await c.until("banter.turn"))[-1]["turn"]
    check(turn["total_ms"] > 0 and turn["first_audio_ms"] > 0, f"banter.turn latency: {turn['total_ms']:.0f} ms")
    await c.close()


async def test_beta_g711(srv):
    print("a spoken turn, beta names, G.711 mu-law in and A-law out")
    c = await Client.connect(srv.url, subprotocols=["realtime", "openai-beta.realtime-v1"])
    check(c.session.get("object") == "realtime.session" and c.session.get("input_audio_format") == "pcm16",
          "session.created carries a beta session object")
    await c.send({"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                                                        "output_audio_format": "g711_alaw", "voice": "alloy"}})
    s = (await c.until("session.updated"))[-1]["session"]
    check(s["input_audio_format"] == "g711_ulaw" and s["output_audio_format"] == "g711_alaw", "formats updated")
    ulaw = audioop.lin2ulaw(speech(QUESTION, rate=8000), 2)
    await c.append(ulaw, chunk=1600)
    evs = await c.until("response.done", 90)
    t = types_of(evs)
    check("conversation.item.created" in t and "conversation.item.added" not in t, "beta item event names")
    check("response.audio.delta" in t and "response.audio_transcript.delta" in t, "beta response event names")
    tr = first(evs, "conversation.item.input_audio_transcription.completed")["transcript"]
    # Telephone-band speech (8 kHz) is much harder for the wideband recognizer: a turn must be taken; the
    # codec itself is checked sample by sample in test_codec.
    check(tr.strip() != "", f"mu-law speech became a user turn: {tr!r}")
    alaw = audio_bytes(evs, "response.audio.delta")
    lin = audioop.alaw2lin(alaw, 2)
    check(len(alaw) > 8000 * 0.3 and max(abs(x) for x in struct.unpack(f"<{len(lin) // 2}h", lin)) > 1000,
          f"A-law reply audio at 8 kHz: {len(alaw) / 8000:.2f} s")
    await c.close()


async def text_turn(c, text, modalities=None):
    await c.send({"type": "conversation.item.create",
                  "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await c.until("conversation.item.done")
    r = {"type": "response.create"}
    if modalities:
        r["response"] = {"output_modalities": modalities}
    await c.send(r)
    return await c.until("response.done", 90)


async def test_text_items(srv):
    print("text items, manual turns, a text-only response")
    c = await Client.connect(srv.url)
    await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    s = (await c.until("session.updated"))[-1]["session"]
    check(s["audio"]["input"]["turn_detection"] is None, "turn detection off")
    evs = await text_turn(c, "Tell me a story.", ["text"])
    t = types_of(evs)
    check("response.output_text.delta" in t and "response.output_audio.delta" not in t,
          "a text-only response has text deltas and no audio")
    check(evs[-1]["response"]["status"] == "completed", "and completes")
    evs = await text_turn(c, "Again, aloud.")
    check("response.output_audio.delta" in types_of(evs), "the next response speaks")
    await c.send({"type": "session.update", "session": {"max_output_tokens": 5}})
    s = (await c.until("session.updated"))[-1]["session"]
    evs = await text_turn(c, "And briefly?")
    out = evs[-1]["response"]["usage"]["output_tokens"]
    check(s["max_output_tokens"] == 5 and 0 < out <= 5, f"max_output_tokens 5 limits the reply ({out} tokens)")
    await c.send({"type": "response.create"})
    err = (await c.until("error"))[-1]["error"]
    check(err["message"].startswith("there is nothing to respond to"), "response.create after a reply: an error")
    # Manual turn: audio then commit.
    await c.append(speech(QUESTION, silence_s=0.3))
    await c.send({"type": "input_audio_buffer.commit"})
    evs = await c.until("response.done", 90)
    tr = first(evs, "conversation.item.input_audio_transcription.completed")["transcript"]
    check("weather" in tr or "paris" in tr, f"a committed manual turn was recognized and answered: {tr!r}")
    await c.send({"type": "input_audio_buffer.clear"})
    await c.until("input_audio_buffer.cleared")
    await c.send({"type": "input_audio_buffer.commit", "event_id": "c2"})
    err = (await c.until("error"))[-1]["error"]
    check(err["code"] == "input_audio_buffer_commit_empty" and err["event_id"] == "c2",
          "commit of an empty buffer: error with the event's id")
    await c.close()


async def test_cancel(srv):
    print("response.cancel")
    c = await Client.connect(srv.url)
    await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await c.until("session.updated")
    await c.send({"type": "conversation.item.create",
                  "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello."}]}})
    await c.send({"type": "response.create"})
    await c.send({"type": "response.cancel"})
    evs = await c.until("response.done", 60)
    check(evs[-1]["response"]["status"] == "cancelled", f"cancelled response ({evs[-1]['response']['status']})")
    check(evs[-1]["response"]["status_details"]["reason"] == "client_cancelled", "the reason is client_cancelled")
    await c.send({"type": "response.cancel"})
    err = (await c.until("error"))[-1]["error"]
    check(err["code"] == "response_cancel_not_active", "cancel with nothing in progress: an error")
    evs = await text_turn(c, "Hello again.")
    check(evs[-1]["response"]["status"] == "completed", "the session goes on")
    await c.close()


async def prompt_after(srv, truncate_ms):
    """The prompt size of a second turn after a first reply truncated at truncate_ms (None = not)."""
    c = await Client.connect(srv.url)
    await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await c.until("session.updated")
    evs = await text_turn(c, "Say something long.")
    item = first(evs, "response.output_item.done")["item"]
    if truncate_ms is not None:
        await c.send({"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0,
                      "audio_end_ms": truncate_ms})
        ev = (await c.until(("conversation.item.truncated", "error")))[-1]
        check(ev["type"] == "conversation.item.truncated" and ev["audio_end_ms"] == truncate_ms,
              f"conversation.item.truncated at {truncate_ms} ms")
    evs = await text_turn(c, "And then?")
    await c.close()
    return evs[-1]["response"]["usage"]["input_tokens"]


async def test_truncate(srv):
    print("conversation.item.truncate cuts the assistant's message and the cache")
    full = await prompt_after(srv, None)
    cut = await prompt_after(srv, 3000)
    none = await prompt_after(srv, 0)
    check(none < cut < full, f"next prompt tokens: untouched {full}, truncated at 3 s {cut}, at 0 ms {none}")
    c = await Client.connect(srv.url)
    await c.send({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 5})
    err = (await c.until("error"))[-1]["error"]
    check(err["code"] == "item_truncate_invalid_item_id", "truncating an unknown item: an error")
    await c.close()


async def test_barge_in_vad(srv):
    print("barge-in by server VAD while the reply plays")
    c = await Client.connect(srv.url)
    await c.append(speech(QUESTION, silence_s=0.8))
    evs = await c.until("response.output_audio.delta", 90)
    # The user speaks again right away: the reply is cut (cancelled, or truncated if it was complete).
    await c.append(speech("Stop, stop, wait a moment please.", silence_s=1.2))
    evs = await c.until("input_audio_buffer.speech_started", 60)
    more = await c.until(("conversation.item.input_audio_transcription.completed",), 90)
    evs += more
    t = types_of(evs)
    done = [e for e in evs if e["type"] == "response.done"]
    cancelled = any(d["response"]["status"] == "cancelled" for d in done)
    check(cancelled or "conversation.item.truncated" in t,
          "speech during the reply cancels it (response.done cancelled) or truncates it")
    if cancelled:
        d = next(d for d in done if d["response"]["status"] == "cancelled")
        check(d["response"]["status_details"]["reason"] == "turn_detected", "the reason is turn_detected")
    await c.until("response.done", 90)  # the new turn is answered
    await c.close()


async def expect_error(c, payload, code, what, binary=False):
    if binary:
        await c.ws.send(payload)
    else:
        await c.ws.send(payload if isinstance(payload, str) else json.dumps(payload))
    ev = (await c.until("error"))[-1]["error"]
    check(ev["code"] == code, f"{what}: error {ev['code']} ({ev['message'][:70]})")


async def test_bad_input(srv):
    print("bad input gets error events; the session stays usable")
    c = await Client.connect(srv.url)
    await expect_error(c, "{not json", "invalid_json", "invalid JSON")
    await expect_error(c, "[1,2]", "invalid_json", "a JSON array")
    await expect_error(c, {"no": "type"}, "missing_type", "no type")
    await expect_error(c, {"type": "session.explode"}, "unknown_event", "unknown event type")
    await expect_error(c, {"type": "input_audio_buffer.append", "audio": "@@@notbase64"}, "invalid_value", "bad base64")
    await expect_error(c, {"type": "input_audio_buffer.append", "audio": 12}, "invalid_value", "audio not a string")
    await expect_error(c, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()},
                       "invalid_value", "odd-length pcm16")
    await expect_error(c, b"\x00\x01binary", "invalid_message", "a binary message", binary=True)
    await expect_error(c, {"type": "session.update", "session": {"input_audio_format": "mp3"}}, "invalid_value",
                       "an unknown audio format")
    await expect_error(c, {"type": "session.update", "session": {"voice": "no-such-voice-xyz"}}, "invalid_value",
                       "an unknown voice")
    await expect_error(c, {"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 5}}},
                       "invalid_value", "silence_duration_ms out of range")
    await expect_error(c, {"type": "conversation.item.create", "item": {"type": "message", "role": "robot",
                                                                        "content": []}}, "invalid_value", "a bad role")
    await expect_error(c, {"type": "conversation.item.delete", "item_id": "x"}, "unsupported", "item.delete")
    await expect_error(c, "[" * 100000 + "]" * 100000, "invalid_json", "deeply nested JSON")
    await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    s = (await c.until("session.updated"))[-1]["session"]
    check(s["audio"]["input"]["format"]["type"] == "audio/pcm" and s["audio"]["output"]["voice"] == "slt",
          "the refused settings changed nothing")
    evs = await text_turn(c, "Still there?")
    check(evs[-1]["response"]["status"] == "completed", "the session still answers")
    # Too large: the connection is closed with 1009, and the server goes on.
    code = None
    try:
        await c.ws.send("x" * (2 << 20))
        while True:  # events still due from the last turn, then the close
            await asyncio.wait_for(c.ws.recv(), 10 * SLOW)
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
    check(code == 1009, f"a message over --max-message closes with 1009 ({code})")


async def test_auth_and_limits():
    print("API key, session limit, idle timeout")
    srv = Server("--api-key", "sekrit", "--max-sessions", "2", "--idle-timeout", "2")
    try:
        try:
            await websockets.connect(srv.url)
            status = 101
        except InvalidStatusCode as e:
            status = e.status_code
        check(status == 401, f"no key: HTTP {status}")
        try:
            await websockets.connect(srv.url, extra_headers={"Authorization": "Bearer wrong"})
            status = 101
        except InvalidStatusCode as e:
            status = e.status_code
        check(status == 401, f"a wrong key: HTTP {status}")
        a = await Client.connect(srv.url, extra_headers={"Authorization": "Bearer sekrit"})
        b = await Client.connect(srv.url, subprotocols=["realtime", "openai-insecure-api-key.sekrit"])
        check(b.ws.subprotocol == "realtime", "the key as a subprotocol; the server picks 'realtime'")
        try:
            await websockets.connect(srv.url, extra_headers={"Authorization": "Bearer sekrit"})
            status = 101
        except InvalidStatusCode as e:
            status = e.status_code
        check(status == 503, f"over --max-sessions: HTTP {status}")
        try:
            await websockets.connect(f"ws://127.0.0.1:{srv.port}/v1/elsewhere",
                                     extra_headers={"Authorization": "Bearer sekrit"})
            status = 101
        except InvalidStatusCode as e:
            status = e.status_code
        check(status in (404, 503), f"a WebSocket on another path: HTTP {status}")
        # Idle: a has sent nothing since it connected.
        evs = []
        try:
            while True:
                evs.append(json.loads(await asyncio.wait_for(a.ws.recv(), 20 * SLOW)))
        except ConnectionClosed:
            pass
        check(any(e["type"] == "error" and e["error"]["code"] == "idle_timeout" for e in evs),
              "an idle connection gets an idle_timeout error and is closed")
        await b.close()
        await asyncio.sleep(1)
        c = await Client.connect(srv.url, extra_headers={"Authorization": "Bearer sekrit"})
        check(True, "a session slot is free again after the others left")
        await c.close()
    finally:
        rc = srv.stop()
    check(rc == 0, f"the server stopped cleanly ({rc})")


async def test_disconnects(srv):
    print("abrupt disconnects in every state; a client that never reads")
    # Before session.created arrives.
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        s.close()
    # In the middle of speech.
    c = await Client.connect(srv.url)
    await c.append(speech(QUESTION)[: 24000 * 2])
    c.ws.transport.abort()
    # While a reply is generated.
    c = await Client.connect(srv.url)
    await c.append(speech(QUESTION))
    await c.until("response.created", 60)
    c.ws.transport.abort()
    # Mid-message (a frame cut short).
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    time.sleep(0.3)
    s.sendall(bytes([0x81, 0xFE, 0x10, 0x00, 1, 2, 3, 4]) + b"\x00" * 100)
    s.close()
    # Never reads: asks for replies and never takes the events.
    lazy = socket.create_connection(("127.0.0.1", srv.port))
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def frame(text):
        data = text.encode()
        mask = b"\x01\x02\x03\x04"
        hdr = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126 else
                               bytes([0x80 | 126]) + struct.pack(">H", len(data)))
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    for _ in range(3):
        lazy.sendall(frame(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Talk."}]}})))
        lazy.sendall(frame(json.dumps({"type": "response.create"})))
    # Meanwhile another session is served normally.
    c = await Client.connect(srv.url)
    await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await c.until("session.updated")
    evs = await text_turn(c, "Are you there?")
    check(evs[-1]["response"]["status"] == "completed", "other sessions are unharmed by all of that")
    await c.close()
    lazy.close()


async def one_conversation(url, k):
    c = await Client.connect(url)
    await c.append(speech(QUESTION if k % 2 else "Please tell me a joke about cats.", voice="kal16" if k % 3 else "slt"))
    evs = await c.until("response.done", 240)
    await c.close()
    ok = evs[-1]["response"]["status"] == "completed" and "response.output_audio.delta" in types_of(evs)
    return ok, first(evs, "conversation.item.input_audio_transcription.completed") is not None


async def test_concurrency(srv, n=16):
    print(f"{n} sessions talking at once")
    t0 = time.monotonic()
    res = await asyncio.gather(*(one_conversation(srv.url, k) for k in range(n)), return_exceptions=True)
    errs = [r for r in res if isinstance(r, BaseException)]
    check(not errs, f"no session failed ({errs[:2]})")
    good = [r for r in res if not isinstance(r, BaseException) and r[0] and r[1]]
    check(len(good) == n, f"all {n} spoken turns were recognized and answered with audio ({len(good)}) "
                          f"in {time.monotonic() - t0:.1f} s")


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode(errors="replace")


async def main():
    srv = Server("--max-message", "1048576", "--max-sessions", "24")
    try:
        await test_spoken_turn_ga(srv)
        await test_beta_g711(srv)
        await test_text_items(srv)
        await test_cancel(srv)
        await test_truncate(srv)
        await test_barge_in_vad(srv)
        await test_bad_input(srv)
        await test_disconnects(srv)
        await test_concurrency(srv)
        r = http_get(srv.port, "/v1/realtime")
        check(r.startswith("HTTP/1.1 426") and "WebSocket" in r, "a plain GET of /v1/realtime: 426 with a hint")
        m = http_get(srv.port, "/metrics")
        check("banter_sessions_total" in m and "banter_turns_total" in m, "/metrics counts sessions and turns")
    finally:
        rc = srv.stop()
    check(rc == 0, f"the server stopped cleanly on SIGINT ({rc})")
    await test_auth_and_limits()


asyncio.run(main())
if FAILS:
    print(f"{len(FAILS)} check(s) failed; server logs in {TMP}")
    sys.exit(1)
print("all realtime checks passed")
