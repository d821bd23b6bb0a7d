"""make_wav.py: turns a spoken sentence into the file Chromium's fake microphone plays.

    python3 make_wav.py IN.wav OUT.wav [LEAD_S] [TAIL_S]

IN is 16-bit mono PCM at any rate (banter say writes 16 kHz). OUT is 16-bit mono PCM at 48 kHz, the rate
Chromium's fake capture device runs at, so the browser does no conversion of its own: LEAD_S seconds of silence
(default 1), the speech, and TAIL_S seconds of silence (default 90). Chromium plays the file in a loop; the long
tail keeps the question from being asked again, and barging in on the reply, while a test runs.

Resampling is band-limited interpolation: each output sample is the input's samples weighted by a
Blackman-windowed sinc (16 input samples on each side), which keeps the speech free of the aliasing that
linear interpolation adds.
"""
import math
import struct
import sys
import wave

OUT_RATE = 48000
HALF = 16  # input samples on each side of an output sample's time


def resample(x, in_rate, out_rate):
    if in_rate == out_rate:
        return list(x)
    ratio = in_rate / out_rate
    cutoff = min(1.0, out_rate / in_rate)  # below both Nyquist frequencies
    n_out = int(len(x) / ratio)
    out = []
    for j in range(n_out):
        t = j * ratio
        k0 = int(math.floor(t))
        acc = 0.0
        for k in range(k0 - HALF + 1, k0 + HALF + 1):
            if k < 0 or k >= len(x):
                continue
            d = t - k
            a = math.pi * d * cutoff
            sinc = cutoff if d == 0 else math.sin(a) / (math.pi * d)
            w = 0.42 + 0.5 * math.cos(math.pi * d / HALF) + 0.08 * math.cos(2 * math.pi * d / HALF)
            acc += x[k] * sinc * w
        out.append(acc)
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    lead = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    tail = float(sys.argv[4]) if len(sys.argv) > 4 else 90.0
    with wave.open(src, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            sys.exit("make_wav.py: %s must be 16-bit mono PCM" % src)
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    x = struct.unpack("<%dh" % (len(frames) // 2), frames)
    y = resample(x, rate, OUT_RATE)
    pcm = struct.pack("<%dh" % len(y), *(max(-32768, min(32767, int(round(v)))) for v in y))
    with wave.open(dst, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(OUT_RATE)
        w.writeframes(b"\0\0" * int(lead * OUT_RATE))
        w.writeframes(pcm)
        w.writeframes(b"\0\0" * int(tail * OUT_RATE))
    print("%s: %.2f s of speech at %d Hz, with %.1f s of silence before and %.1f s after" %
          (dst, len(y) / OUT_RATE, OUT_RATE, lead, tail))


if __name__ == "__main__":
    main()
