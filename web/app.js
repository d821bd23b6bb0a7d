/*
 * app.js: Banter's browser client. It opens the server's realtime WebSocket (/v1/realtime, OpenAI Realtime API
 * events, docs/realtime.md), streams the microphone to it and plays the spoken replies.
 *
 * Audio: one AudioContext at the device's rate holds two worklets (audio-worklet.js). banter-capture turns the
 * microphone into 40 ms frames of pcm16 at 24 kHz, sent as input_audio_buffer.append; banter-player is the
 * reply's jitter buffer and counts what was actually played. The server detects turns (server VAD). When it
 * hears speech while a reply is playing (barge-in), the page stops playback at once and sends
 * conversation.item.truncate with the milliseconds heard, so the server cuts the reply to what the user heard.
 *
 * Events: the GA names are used by default and the beta names (response.audio.delta, ...) are understood too;
 * ?beta=1 asks the server for them. ?key=KEY sends the server's API key as the subprotocol
 * "openai-insecure-api-key.KEY", since browsers cannot set an Authorization header on a WebSocket.
 *
 * For tests and debugging, window.banterStats holds what happened: turns (the server's banter.turn latency
 * records), audioChunksPlayed, playedMs, user and assistant transcripts, errors, the connection state and a
 * count of each event type received.
 */
'use strict';

(function () {
  const RATE = 24000; // pcm16 in both directions
  const FRAME_MS = 40; // microphone audio per input_audio_buffer.append
  const PREBUFFER_MS = 80; // reply audio queued before playback starts
  const MAX_WS_BACKLOG = 1 << 20; // bytes unsent on the socket before microphone frames are dropped
  const CONNECT_TIMEOUT_S = 15;

  const params = new URLSearchParams(location.search);
  const apiKey = params.get('key') || '';
  const beta = ['1', 'true', 'yes'].includes((params.get('beta') || '').toLowerCase());

  const stats = {
    state: 'idle',
    turns: [],
    audioChunksReceived: 0,
    audioChunksPlayed: 0,
    playedMs: 0,
    userTranscripts: [],
    assistantTranscripts: [],
    truncations: [],
    errors: [],
    events: {},
  };
  window.banterStats = stats;

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $('state'),
    connect: $('connect'),
    mute: $('mute'),
    level: $('level'),
    instructions: $('instructions'),
    errors: $('errors'),
    transcript: $('transcript'),
    headline: $('latency-headline'),
    rows: $('latency-rows'),
    announce: $('announce'),
  };

  let ws = null;
  let ctx = null;
  let mic = null; // MediaStream
  let captureNode = null;
  let playerNode = null;
  let closing = false; // the user asked to disconnect
  let pushedMs = 0; // reply audio handed to the player
  let playedMs = 0; // of which played (as last reported by the player)
  const dropped = new Set(); // assistant items cut by barge-in: late audio for them is ignored
  const entries = new Map(); // item id -> transcript entry
  let turn = null; // the turn in progress: {stoppedAt, heardMs, stats, row}
  let clearSeq = 0;

  /* ---- page state ---- */

  const STATE_TEXT = {
    idle: 'Not connected',
    connecting: 'Connecting\u2026',
    connected: 'Listening',
    speaking: 'You are speaking',
    thinking: 'Thinking\u2026',
    replying: 'Assistant speaking',
    closed: 'Disconnected',
    error: 'Connection failed',
  };

  function setState(s) {
    stats.state = s;
    const live = ['connected', 'speaking', 'thinking', 'replying'].includes(s);
    ui.state.dataset.state = live ? 'connected' : s;
    ui.state.textContent = STATE_TEXT[s] || s;
    ui.connect.textContent = live || s === 'connecting' ? 'Disconnect' : 'Connect';
    ui.connect.classList.toggle('primary', !live && s !== 'connecting');
    ui.mute.disabled = !live || !mic;
  }

  function showError(msg) {
    stats.errors.push(msg);
    const p = document.createElement('p');
    p.textContent = msg;
    ui.errors.appendChild(p);
    while (ui.errors.children.length > 5) ui.errors.removeChild(ui.errors.firstChild);
    console.warn('banter:', msg);
  }

  function clearErrors() {
    ui.errors.textContent = '';
  }

  /* ---- transcript ---- */

  function entry(id, role) {
    let e = entries.get(id);
    if (e) return e;
    const placeholder = ui.transcript.querySelector('li.empty');
    if (placeholder) placeholder.remove();
    const li = document.createElement('li');
    li.className = role;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : 'Assistant';
    const text = document.createElement('span');
    text.className = 'text';
    const partial = document.createElement('span');
    partial.className = 'partial';
    li.append(who, text, partial);
    ui.transcript.appendChild(li);
    e = { id, role, li, textEl: text, partialEl: partial, text: '', final: false };
    entries.set(id, e);
    return e;
  }

  function scrollToEnd(e) {
    if (e.li.scrollIntoView) e.li.scrollIntoView({ block: 'nearest' });
  }

  /* The recognizer's hypothesis so far, shown until the final transcript replaces it. Deltas only add text
   * (a revision of earlier words waits for the final transcript). */
  function userPartial(id, delta) {
    const e = entry(id, 'user');
    if (e.final || typeof delta !== 'string') return;
    e.partialEl.textContent += delta;
    scrollToEnd(e);
  }

  function userFinal(id, transcript) {
    const e = entry(id, 'user');
    e.text = (transcript || '').trim();
    e.textEl.textContent = e.text || '(nothing recognized)';
    e.partialEl.textContent = '';
    if (!e.final && e.text) {
      stats.userTranscripts.push(e.text);
      ui.announce.textContent = `You said: ${e.text}`;
    }
    e.final = true;
    scrollToEnd(e);
  }

  function assistantDelta(id, delta) {
    if (typeof delta !== 'string' || !delta) return;
    const e = entry(id || 'assistant', 'assistant');
    if (e.final) return;
    e.text += delta;
    e.textEl.textContent = e.text;
    scrollToEnd(e);
  }

  function assistantFinal(id, text) {
    const e = entries.get(id);
    if (!e || e.final) return;
    if (typeof text === 'string' && text) e.text = text;
    e.textEl.textContent = e.text;
    e.final = true;
    if (e.text.trim()) {
      stats.assistantTranscripts.push(e.text);
      ui.announce.textContent = `Assistant: ${e.text}`;
    }
  }

  /* ---- latency ---- */

  const ms = (v) => (typeof v === 'number' && isFinite(v) ? String(Math.round(v)) : '\u2013');

  function renderTurn(t) {
    if (!t.row) {
      t.row = document.createElement('tr');
      ui.rows.prepend(t.row);
    }
    const s = t.stats || {};
    const cells = [
      s.turn !== undefined ? String(s.turn) : '?',
      ms(s.total_ms),
      ms(s.endpoint_delay_ms),
      ms(s.asr_final_ms),
      ms(s.first_token_ms),
      ms(s.first_audio_ms !== undefined ? s.first_audio_ms : s.processing_ms),
      ms(t.heardMs),
    ];
    t.row.textContent = '';
    cells.forEach((c, i) => {
      const td = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) td.scope = 'row';
      td.textContent = c;
      t.row.appendChild(td);
    });
    if (t.stats) {
      let h = `Turn ${ms(s.turn)}: ${ms(s.total_ms)} ms from the end of your speech to the first reply audio`;
      if (typeof s.endpoint_delay_ms === 'number' && typeof s.processing_ms === 'number')
        h += ` (${ms(s.endpoint_delay_ms)} ms waiting for the pause, ${ms(s.processing_ms)} ms processing)`;
      if (typeof t.heardMs === 'number') h += `; heard here after ${ms(t.heardMs)} ms`;
      if (s.interrupted) h += '; interrupted';
      if (s.failed) h += '; the model failed';
      ui.headline.textContent = h + '.';
    }
  }

  function onTurnStats(ev) {
    const s = ev.turn && typeof ev.turn === 'object' ? ev.turn : ev.stats && typeof ev.stats === 'object' ? ev.stats : ev;
    stats.turns.push(s);
    if (!turn || turn.stats) turn = { stoppedAt: null, heardMs: undefined, stats: null, row: null };
    turn.stats = s;
    renderTurn(turn);
  }

  /* ---- audio ---- */

  function toBase64(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function pcm16ToFloat(b64) {
    const bin = atob(b64);
    const n = bin.length >> 1;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
      if (v >= 0x8000) v -= 0x10000;
      out[i] = v / 32768;
    }
    return out;
  }

  async function startAudio() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) throw new Error('this browser has no Web Audio API');
    ctx = new AC({ latencyHint: 'interactive' });
    if (!ctx.audioWorklet) throw new Error('this browser cannot run AudioWorklets (it needs https or localhost)');
    await ctx.audioWorklet.addModule('/audio-worklet.js');
    if (ctx.state !== 'running') await ctx.resume();

    playerNode = new AudioWorkletNode(ctx, 'banter-player', {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { inRate: RATE, prebufferMs: PREBUFFER_MS },
    });
    playerNode.port.onmessage = (e) => onPlayer(e.data);
    playerNode.connect(ctx.destination);

    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError('No microphone access: the page must be opened over https or from localhost. Replies will still play.');
      return;
    }
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) {
      showError(`The microphone could not be opened (${err.name || 'error'}: ${err.message || err}).`);
      return;
    }
    const src = ctx.createMediaStreamSource(mic);
    captureNode = new AudioWorkletNode(ctx, 'banter-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      processorOptions: { outRate: RATE, frameMs: FRAME_MS },
    });
    captureNode.port.onmessage = (e) => onCapture(e.data);
    src.connect(captureNode);
  }

  function stopAudio() {
    if (mic) mic.getTracks().forEach((t) => t.stop());
    mic = null;
    if (ctx) ctx.close().catch(() => {});
    ctx = null;
    captureNode = playerNode = null;
    pushedMs = playedMs = 0;
    ui.level.style.width = '0';
  }

  function onCapture(m) {
    if (m.type === 'audio') {
      if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_WS_BACKLOG) return;
      send({ type: 'input_audio_buffer.append', audio: toBase64(new Uint8Array(m.pcm)) });
    } else if (m.type === 'level') {
      ui.level.style.width = `${Math.min(100, Math.round(Math.sqrt(m.peak) * 100))}%`;
    }
  }

  function onPlayer(m) {
    if (typeof m.totalPlayedMs === 'number') {
      playedMs = m.totalPlayedMs;
      stats.playedMs = m.totalPlayedMs;
      stats.audioChunksPlayed = m.chunksStarted;
      stats.underruns = m.underruns;
    }
    if (m.type === 'started') {
      if (turn && turn.stoppedAt !== null && turn.heardMs === undefined) {
        turn.heardMs = performance.now() - turn.stoppedAt;
        renderTurn(turn);
      }
      setState('replying');
    } else if (m.type === 'drained') {
      if (stats.state === 'replying') setState('connected');
    } else if (m.type === 'cleared') {
      pushedMs = playedMs;
      for (const c of m.cut) {
        if (!c.item) continue;
        dropped.add(c.item);
        const audioEnd = Math.max(0, Math.floor(c.playedMs));
        stats.truncations.push({ item_id: c.item, audio_end_ms: audioEnd });
        send({ type: 'conversation.item.truncate', item_id: c.item, content_index: 0, audio_end_ms: audioEnd });
        const e = entries.get(c.item);
        if (e) e.li.classList.add('interrupted');
      }
    }
  }

  /* Barge-in: the user speaks while the reply plays. Playback stops now; the player answers "cleared" with
   * how much of each cut item was heard, and onPlayer sends the truncations. */
  function bargeIn() {
    if (!playerNode || pushedMs <= playedMs + 1) return;
    playerNode.port.postMessage({ type: 'clear', id: ++clearSeq });
    pushedMs = playedMs;
  }

  function playAudio(ev) {
    stats.audioChunksReceived++;
    if (!playerNode || typeof ev.delta !== 'string' || dropped.has(ev.item_id)) return;
    const samples = pcm16ToFloat(ev.delta);
    if (!samples.length) return;
    pushedMs += (samples.length * 1000) / RATE;
    playerNode.port.postMessage({ type: 'push', item: ev.item_id || '', samples }, [samples.buffer]);
  }

  function audioEnded() {
    if (playerNode) playerNode.port.postMessage({ type: 'end' });
  }

  /* ---- the protocol ---- */

  function send(ev) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(ev));
  }

  function sessionUpdate() {
    const instructions = ui.instructions.value.trim();
    const vad = { type: 'server_vad' };
    let session;
    if (beta) {
      session = {
        modalities: ['audio', 'text'],
        input_audio_format: 'pcm16',
        output_audio_format: 'pcm16',
        turn_detection: vad,
      };
    } else {
      session = {
        type: 'realtime',
        audio: {
          input: { format: { type: 'audio/pcm', rate: RATE }, turn_detection: vad },
          output: { format: { type: 'audio/pcm', rate: RATE } },
        },
      };
    }
    if (instructions) session.instructions = instructions;
    send({ type: 'session.update', session });
  }

  const handlers = {
    'session.created': () => setState('connected'),
    'session.updated': () => {},
    error: (ev) => {
      const e = ev.error || {};
      const code = e.code ? ` [${e.code}]` : '';
      showError(`Server error${code}: ${e.message || JSON.stringify(e)}`);
    },
    'input_audio_buffer.speech_started': (ev) => {
      bargeIn();
      if (ev.item_id) entry(ev.item_id, 'user');
      setState('speaking');
    },
    'input_audio_buffer.speech_stopped': (ev) => {
      turn = { stoppedAt: performance.now(), heardMs: undefined, stats: null, row: null };
      if (ev.item_id) entry(ev.item_id, 'user');
      setState('thinking');
    },
    'input_audio_buffer.committed': (ev) => {
      if (ev.item_id) entry(ev.item_id, 'user');
    },
    'conversation.item.input_audio_transcription.delta': (ev) => userPartial(ev.item_id, ev.delta),
    'conversation.item.input_audio_transcription.completed': (ev) => userFinal(ev.item_id, ev.transcript),
    'conversation.item.input_audio_transcription.failed': (ev) => {
      const e = ev.error || {};
      showError(`Your speech could not be transcribed: ${e.message || 'unknown error'}`);
    },
    'conversation.item.created': (ev) => onItem(ev.item),
    'conversation.item.added': (ev) => onItem(ev.item),
    'response.output_item.added': (ev) => {
      const it = ev.item || {};
      if (it.id && it.role === 'assistant') entry(it.id, 'assistant');
    },
    'response.output_audio_transcript.delta': (ev) => assistantDelta(ev.item_id, ev.delta),
    'response.audio_transcript.delta': (ev) => assistantDelta(ev.item_id, ev.delta),
    'response.output_text.delta': (ev) => assistantDelta(ev.item_id, ev.delta),
    'response.text.delta': (ev) => assistantDelta(ev.item_id, ev.delta),
    'response.output_audio_transcript.done': (ev) => assistantFinal(ev.item_id, ev.transcript),
    'response.audio_transcript.done': (ev) => assistantFinal(ev.item_id, ev.transcript),
    'response.output_text.done': (ev) => assistantFinal(ev.item_id, ev.text),
    'response.text.done': (ev) => assistantFinal(ev.item_id, ev.text),
    'response.output_audio.delta': playAudio,
    'response.audio.delta': playAudio,
    'response.output_audio.done': audioEnded,
    'response.audio.done': audioEnded,
    'response.done': (ev) => {
      const r = ev.response || {};
      for (const it of r.output || []) if (it && it.id) assistantFinal(it.id);
      audioEnded();
      if (r.status === 'failed') {
        const d = r.status_details || {};
        const e = d.error || {};
        showError(`The reply failed: ${e.message || d.reason || 'unknown reason'}`);
      }
      if (stats.state === 'thinking') setState('connected');
    },
    'conversation.item.truncated': (ev) => {
      const e = entries.get(ev.item_id);
      if (e) e.li.classList.add('interrupted');
    },
    'banter.turn': onTurnStats,
  };

  /* A message that entered the history: user messages typed by a client (text) are shown; audio ones are
   * shown as their transcripts arrive. */
  function onItem(it) {
    if (!it || !it.id || it.type !== 'message') return;
    const parts = Array.isArray(it.content) ? it.content : [];
    const text = parts
      .map((p) => (p && (p.type === 'input_text' || p.type === 'text') ? p.text || '' : ''))
      .join('');
    if (it.role === 'user' && parts.some((p) => p && p.type === 'input_audio')) entry(it.id, 'user');
    else if (it.role === 'user' && text) userFinal(it.id, text);
  }

  function onMessage(msg) {
    if (typeof msg.data !== 'string') {
      showError('The server sent a binary message; this page expects JSON events.');
      return;
    }
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch (err) {
      showError(`The server sent a message that is not JSON: ${msg.data.slice(0, 80)}`);
      return;
    }
    const type = ev && typeof ev.type === 'string' ? ev.type : '?';
    stats.events[type] = (stats.events[type] || 0) + 1;
    const h = handlers[type];
    if (!h) return; // events this page has no use for (rate_limits.updated, ...)
    try {
      h(ev);
    } catch (err) {
      showError(`Error handling ${type}: ${err.message || err}`);
    }
  }

  async function connect() {
    clearErrors();
    closing = false;
    setState('connecting');
    ui.connect.disabled = true;
    try {
      await startAudio();
    } catch (err) {
      showError(`Audio could not start: ${err.message || err}`);
      stopAudio();
      setState('error');
      ui.connect.disabled = false;
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/v1/realtime${beta ? '?beta=1' : ''}`;
    try {
      ws = apiKey ? new WebSocket(url, ['realtime', `openai-insecure-api-key.${apiKey}`]) : new WebSocket(url);
    } catch (err) {
      showError(`Cannot open ${url}: ${err.message || err}`);
      stopAudio();
      setState('error');
      ui.connect.disabled = false;
      return;
    }
    ui.connect.disabled = false; // a connection that hangs can be given up
    let opened = false;
    const sock = ws;
    // The connection counts as made when the server's session.created arrives.
    const timer = setTimeout(() => {
      if (ws !== sock || stats.state !== 'connecting') return;
      showError(
        opened
          ? `${url} accepted the connection but sent no session.created within ${CONNECT_TIMEOUT_S} s: is it a realtime endpoint?`
          : `No answer from ${url} within ${CONNECT_TIMEOUT_S} s.`
      );
      closing = true;
      sock.close();
      setState('error');
    }, CONNECT_TIMEOUT_S * 1000);
    ws.onopen = () => {
      opened = true;
      sessionUpdate();
    };
    ws.onmessage = onMessage;
    ws.onerror = () => {}; // onclose follows with the details there are
    ws.onclose = (ev) => {
      clearTimeout(timer);
      if (ws !== sock) return;
      ws = null;
      stopAudio();
      ui.connect.disabled = false;
      if (closing) {
        if (stats.state !== 'error') setState('closed');
        return;
      }
      if (!opened) {
        showError(
          `Could not connect to ${url}. The server may be down or may not offer /v1/realtime, or ` +
            (apiKey
              ? 'it refused the API key given in ?key=.'
              : 'it needs an API key: open this page as /?key=YOUR_KEY.')
        );
        setState('error');
        return;
      }
      const why = ev.reason ? `: ${ev.reason}` : ev.code === 1009 ? ': a message was too large' : '';
      showError(`The connection closed (code ${ev.code}${why}).`);
      setState('closed');
    };
  }

  function disconnect() {
    closing = true;
    if (ws) ws.close(1000, 'bye');
    else {
      stopAudio();
      setState('closed');
    }
  }

  ui.connect.addEventListener('click', () => {
    if (ws || stats.state === 'connecting') disconnect();
    else connect();
  });
  ui.mute.addEventListener('click', () => {
    const muted = ui.mute.getAttribute('aria-pressed') !== 'true';
    ui.mute.setAttribute('aria-pressed', String(muted));
    ui.mute.textContent = muted ? 'Unmute microphone' : 'Mute microphone';
    if (captureNode) captureNode.port.postMessage({ type: 'mute', muted });
  });
  window.addEventListener('beforeunload', () => {
    closing = true;
    if (ws) ws.close(1000);
  });
  setState('idle');
})();
