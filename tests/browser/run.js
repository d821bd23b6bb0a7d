/*
 * run.js: drives headless Chromium through one spoken turn on Banter's web page (tests/test_browser.sh runs it).
 *
 *   node run.js URL SAID FAIL_SCREENSHOT [TIMEOUT_S]
 *
 * Chromium must have been told to play a WAV file as its microphone (CHROMIUM_ARGS, space-separated, are
 * passed on; test_browser.sh sets them), and CHROMIUM names its binary (default /usr/bin/chromium). The script
 * opens URL, presses Connect and waits, at most TIMEOUT_S seconds (default 60), until the page shows
 *   - the user's transcript, with at least half of the words of SAID recognized,
 *   - assistant text,
 *   - reply audio actually played (window.banterStats.playedMs and audioChunksPlayed), and
 *   - a turn's latency (a banter.turn record with total_ms, shown in the latency table),
 * and that no error was shown and no script failed. Then it disconnects. On failure it saves a screenshot to
 * FAIL_SCREENSHOT and prints the page's state. Exit status: 0 passed, 1 failed.
 */
'use strict';

const { chromium } = require('playwright-core');

const [url, said, shot, timeoutArg] = process.argv.slice(2);
if (!url || !said || !shot) {
  console.error('usage: node run.js URL SAID FAIL_SCREENSHOT [TIMEOUT_S]');
  process.exit(2);
}
const timeoutMs = (Number(timeoutArg) || 60) * 1000;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const extraArgs = (process.env.CHROMIUM_ARGS || '').split(' ').filter(Boolean);

const t0 = Date.now();
const log = (msg) => console.log(`[browser ${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);

/* What the page shows, read in the page. */
function snapshot() {
  const s = window.banterStats || {};
  const text = (sel) => Array.from(document.querySelectorAll(sel), (e) => e.textContent.trim()).filter(Boolean);
  return {
    state: s.state,
    userTranscripts: s.userTranscripts || [],
    assistantText: text('#transcript li.assistant .text'),
    playedMs: s.playedMs || 0,
    audioChunksPlayed: s.audioChunksPlayed || 0,
    audioChunksReceived: s.audioChunksReceived || 0,
    turns: s.turns || [],
    latencyRows: document.querySelectorAll('#latency-rows tr').length,
    headline: document.getElementById('latency-headline').textContent,
    errors: s.errors || [],
    shownErrors: document.getElementById('errors').textContent,
    events: s.events || {},
  };
}

async function main() {
  const browser = await chromium.launch({ executablePath, headless: true, args: extraArgs });
  const problems = [];
  let page;
  try {
    page = await browser.newPage();
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') log(`console ${m.type()}: ${m.text()}`);
    });
    page.on('websocket', (ws) => {
      log(`WebSocket ${ws.url()}`);
      ws.on('close', () => log('WebSocket closed'));
    });

    const res = await page.goto(url, { waitUntil: 'load' });
    if (!res || res.status() !== 200) throw new Error(`GET ${url} answered ${res ? res.status() : 'nothing'}`);
    log(`page loaded: "${await page.title()}"`);
    await page.click('#connect');
    log('connect pressed');

    const saidWords = said.toLowerCase().split(/\s+/).filter(Boolean);
    const goals = {
      'user transcript': (s) => s.userTranscripts.length > 0,
      'assistant text': (s) => s.assistantText.length > 0,
      'reply audio played': (s) => s.playedMs >= 200 && s.audioChunksPlayed > 0,
      'turn latency shown': (s) =>
        s.turns.some((t) => typeof t.total_ms === 'number') && s.latencyRows > 0 && /\d+ ms/.test(s.headline),
    };
    const reached = new Set();
    let s;
    for (;;) {
      s = await page.evaluate(snapshot);
      for (const [name, ok] of Object.entries(goals)) {
        if (!reached.has(name) && ok(s)) {
          reached.add(name);
          log(`${name}: ok`);
        }
      }
      if (s.errors.length) break;
      if (reached.size === Object.keys(goals).length) break;
      if (Date.now() - t0 > timeoutMs) break;
      await page.waitForTimeout(250);
    }

    for (const name of Object.keys(goals)) if (!reached.has(name)) problems.push(`never reached: ${name}`);
    for (const e of s.errors) problems.push(`the page showed an error: ${e}`);
    if (s.userTranscripts.length) {
      const heard = s.userTranscripts.join(' ').toLowerCase().split(/\W+/);
      const hits = saidWords.filter((w) => heard.includes(w)).length;
      log(`user said "${said}", the server heard "${s.userTranscripts.join(' / ')}" (${hits} of ${saidWords.length} words)`);
      if (hits * 2 < saidWords.length) problems.push('fewer than half of the spoken words were recognized');
    }
    if (s.assistantText.length) log(`assistant: "${s.assistantText.join(' / ').slice(0, 200)}"`);
    log(`played ${Math.round(s.playedMs)} ms of reply audio in ${s.audioChunksPlayed} chunks (${s.audioChunksReceived} received)`);
    if (s.turns.length) log(`turn: ${JSON.stringify(s.turns[0])}`);
    log(`latency: ${s.headline}`);

    if (!problems.length) {
      await page.click('#connect'); // Disconnect
      await page.waitForFunction(() => window.banterStats.state === 'closed', null, { timeout: 10000 });
      log('disconnected');
      await page.waitForTimeout(100);
    }
    if (problems.length) {
      log(`events received: ${JSON.stringify(s.events)}`);
      log(`page state: ${s.state}; errors shown: "${s.shownErrors}"`);
    }
  } catch (e) {
    problems.push(`${e.message || e}`);
  }
  if (problems.length && page) {
    try {
      await page.screenshot({ path: shot, fullPage: true });
      log(`screenshot: ${shot}`);
    } catch (e) {
      log(`no screenshot: ${e.message}`);
    }
  }
  await browser.close();
  for (const p of problems) console.error(`FAIL: ${p}`);
  return problems.length ? 1 : 0;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(`FAIL: ${e.stack || e}`);
    process.exit(1);
  }
);
