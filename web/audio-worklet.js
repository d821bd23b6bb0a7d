/*
 * audio-worklet.js: the page's code that runs on the browser's audio thread (AudioWorkletGlobalScope).
 *
 * banter-capture: microphone -> 16-bit PCM at 24 kHz (the realtime API's pcm16), in frames of 40 ms posted to
 * the page as little-endian bytes. The context runs at the device's rate (usually 48 or 44.1 kHz), so the
 * signal is low-passed below the output's Nyquist frequency (a windowed-sinc FIR, needed when decimating) and
 * then read at the output's sample times by linear interpolation between the filtered samples.
 *
 * banter-player: the reply's 24 kHz samples (as Float32Array chunks tagged with their conversation item) ->
 * the speakers, resampled to the context's rate by linear interpolation. It is a jitter buffer: playback starts
 * once PREBUFFER ms are queued (or the response's audio has ended), and an underrun mid-reply goes back to
 * buffering instead of playing clicks. It counts what was actually played, per item: on "clear" (barge-in) it
 * drops everything queued and answers with how much of each unfinished item was heard, which is what the
 * client must report in conversation.item.truncate.
 */
'use strict';

const REPORT_S = 0.05; // how often each processor reports to the page

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.outRate || 24000;
    this.frame = Math.round((this.outRate * (o.frameMs || 40)) / 1000); // output samples per message
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.taps = this.step > 1 ? lowpass(63, (0.5 * 0.9) / this.step) : new Float32Array([1]);
    const n = this.taps.length;
    this.hist = new Float32Array(2 * n); // the last n inputs, written twice so a window is always contiguous
    this.h = 0;
    this.prev = 0; // the previous filtered sample
    this.t = 1; // where the next output sample falls after `prev`, in input samples
    this.bytes = new ArrayBuffer(this.frame * 2);
    this.view = new DataView(this.bytes);
    this.n = 0;
    this.muted = false;
    this.peak = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === 'mute') this.muted = !!e.data.muted;
    };
  }

  emit(v) {
    const s = v < -1 ? -1 : v > 1 ? 1 : v;
    this.view.setInt16(this.n * 2, s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff), true);
    if (++this.n === this.frame) {
      this.port.postMessage({ type: 'audio', pcm: this.bytes }, [this.bytes]);
      this.bytes = new ArrayBuffer(this.frame * 2);
      this.view = new DataView(this.bytes);
      this.n = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // not connected yet
    const len = input[0].length;
    const taps = this.taps, n = taps.length, hist = this.hist;
    for (let i = 0; i < len; i++) {
      let x = 0;
      for (let c = 0; c < input.length; c++) x += input[c][i];
      x = this.muted ? 0 : x / input.length;
      const a = Math.abs(x);
      if (a > this.peak) this.peak = a;
      hist[this.h] = x;
      hist[this.h + n] = x;
      this.h = this.h + 1 === n ? 0 : this.h + 1;
      let y = 0;
      for (let j = 0; j < n; j++) y += taps[j] * hist[this.h + j]; // oldest to newest
      while (this.t <= 1) {
        this.emit(this.prev + (y - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = y;
    }
    this.sinceReport += len;
    if (this.sinceReport >= sampleRate * REPORT_S) {
      this.port.postMessage({ type: 'level', peak: this.peak });
      this.peak = 0;
      this.sinceReport = 0;
    }
    return true;
  }
}

/* A linear-phase low-pass FIR of n taps (odd) with its cutoff at fc cycles per sample, Blackman-windowed and
 * normalized to unit gain at DC. */
function lowpass(n, fc) {
  const taps = new Float32Array(n);
  const m = (n - 1) / 2;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = i - m;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (n - 1));
    taps[i] = sinc * w;
    sum += taps[i];
  }
  for (let i = 0; i < n; i++) taps[i] /= sum;
  return taps;
}

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.inRate = o.inRate || 24000;
    this.step = this.inRate / sampleRate; // input samples per output sample
    this.prebuffer = Math.round((this.inRate * (o.prebufferMs || 80)) / 1000);
    this.chunks = []; // {item, data: Float32Array, off}
    this.queued = 0; // samples not yet played
    this.state = 'idle'; // idle | buffering | playing
    this.ending = false; // no more audio is coming for now: play out what is queued
    this.prev = 0; // the last sample played and the next one: output is interpolated between them
    this.cur = 0;
    this.frac = 0;
    this.played = new Map(); // item -> samples played
    this.totalPlayed = 0;
    this.chunksStarted = 0;
    this.underruns = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data || {});
  }

  onMessage(m) {
    if (m.type === 'push') {
      this.chunks.push({ item: m.item || '', data: m.samples, off: 0 });
      this.queued += m.samples.length;
      this.ending = false;
      if (this.state === 'idle') this.state = 'buffering';
    } else if (m.type === 'end') {
      this.ending = true;
    } else if (m.type === 'clear') {
      // Items with audio still queued were cut short: report how much of each was heard.
      const cut = [];
      for (const c of this.chunks) {
        if (c.off < c.data.length && !cut.some((x) => x.item === c.item))
          cut.push({ item: c.item, playedMs: ((this.played.get(c.item) || 0) * 1000) / this.inRate });
      }
      this.chunks = [];
      this.queued = 0;
      this.ending = false;
      this.state = 'idle';
      this.prev = this.cur = this.frac = 0;
      this.port.postMessage({ type: 'cleared', id: m.id, cut, ...this.counters() });
    }
  }

  counters() {
    return {
      totalPlayedMs: (this.totalPlayed * 1000) / this.inRate,
      chunksStarted: this.chunksStarted,
      queuedMs: (this.queued * 1000) / this.inRate,
      underruns: this.underruns,
    };
  }

  /* The next queued sample, or null when the queue is empty. */
  next() {
    while (this.chunks.length && this.chunks[0].off >= this.chunks[0].data.length) this.chunks.shift();
    if (!this.chunks.length) return null;
    const c = this.chunks[0];
    if (c.off === 0) this.chunksStarted++;
    this.played.set(c.item, (this.played.get(c.item) || 0) + 1);
    this.totalPlayed++;
    this.queued--;
    return c.data[c.off++];
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const ch = out[0];
    for (let i = 0; i < ch.length; i++) {
      if (this.state === 'buffering' && (this.queued >= this.prebuffer || (this.ending && this.queued > 0))) {
        this.state = 'playing';
        this.port.postMessage({ type: 'started', ...this.counters() });
      }
      if (this.state !== 'playing') {
        ch[i] = 0;
        continue;
      }
      ch[i] = this.prev + (this.cur - this.prev) * this.frac;
      this.frac += this.step;
      while (this.frac >= 1) {
        this.frac -= 1;
        this.prev = this.cur;
        const s = this.next();
        if (s === null) {
          this.cur = this.prev;
          this.frac = 0;
          if (this.ending) {
            this.state = 'idle';
            this.ending = false;
            this.port.postMessage({ type: 'drained', ...this.counters() });
          } else {
            this.state = 'buffering';
            this.underruns++;
          }
          break;
        }
        this.cur = s;
      }
    }
    for (let c = 1; c < out.length; c++) out[c].set(ch);
    this.sinceReport += ch.length;
    if (this.sinceReport >= sampleRate * REPORT_S) {
      this.sinceReport = 0;
      this.port.postMessage({ type: 'progress', ...this.counters() });
    }
    return true;
  }
}

registerProcessor('banter-capture', CaptureProcessor);
registerProcessor('banter-player', PlayerProcessor);
