// Shared harness of the headless-Chromium tests (clip_playback.mjs, hls_live.mjs). It owns:
// the pass/fail counters, check() and the closing `NAME: N passed, M failed` line (and the exit
// code); freePort and waitFor; the temp dir (kept when anything failed); the daemon —
// `hindsight run --config FILE` with the config the test writes, its log tail, getJson, the
// SIGTERM-then-SIGKILL stop and the Ctrl-C handlers; and the Chromium launch (playwright-core,
// /usr/bin/chromium or $CHROMIUM, the common flags, a fresh profile in the temp dir).
// The tests own their configs, pages and every assertion.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const BIN = resolve(process.env.HINDSIGHT_BIN || 'target/debug/hindsight');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * One test run. `name` prefixes the closing line (`NAME: N passed, M failed`); the temp dir is
 * `$TMPDIR/<tmpPrefix>XXXXXX`.
 */
export function createHarness({ name, tmpPrefix }) {
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  let passed = 0;
  let failed = 0;
  function pass(what, detail = '') {
    passed++;
    console.log(`ok   ${what}${detail ? ` — ${detail}` : ''} [${since()}]`);
  }
  function fail(what, detail) {
    failed++;
    console.log(`FAIL ${what} — ${detail} [${since()}]`);
  }
  /** Runs one named check; `fn` returns a detail string, or throws with the reason. */
  async function check(what, fn) {
    try {
      pass(what, await fn());
      return true;
    } catch (e) {
      fail(what, e?.message ?? String(e));
      return false;
    }
  }

  /** Polls `probe` (returns a value when done, undefined to keep waiting) until `deadline_s`. */
  async function waitFor(what, deadline_s, probe) {
    const end = Date.now() + deadline_s * 1000;
    let last;
    for (;;) {
      try {
        const v = await probe();
        if (v !== undefined) return v;
      } catch (e) {
        last = e?.message ?? String(e);
      }
      if (daemonExit) throw new Error(`${what}: daemon exited (${daemonExit}) — log tail:\n${logTail()}`);
      if (Date.now() > end) throw new Error(`${what}: not within ${deadline_s} s${last ? ` (last error: ${last})` : ''}`);
      await sleep(200);
    }
  }

  // ---- the daemon ----
  const dir = mkdtempSync(join(tmpdir(), tmpPrefix));
  let daemon;
  let daemonExit = null;
  let daemonLog = '';
  const logTail = () => daemonLog.split('\n').slice(-30).join('\n');
  let context;
  let base;

  async function getJson(path) {
    const r = await fetch(base + path, { signal: AbortSignal.timeout(5000) });
    return { status: r.status, body: await r.json().catch(() => null) };
  }

  /**
   * Checks that the daemon binary and Chromium exist, picks a free port, writes
   * `configFor(port)` (TOML) into the temp dir and starts the daemon on it. Returns the base URL.
   */
  async function startDaemon(configFor) {
    if (!existsSync(BIN)) throw new Error(`${BIN} not found: run cargo build first (or set HINDSIGHT_BIN)`);
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (scripts/deps test)`);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const config = join(dir, 'hindsight.toml');
    writeFileSync(config, configFor(port));
    daemon = spawn(BIN, ['run', '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // ORC's code cache and anything else the daemon writes under $HOME stays in the temp dir.
      env: { ...process.env, XDG_RUNTIME_DIR: dir },
    });
    const keep = (b) => {
      daemonLog += b.toString();
      if (daemonLog.length > 200000) daemonLog = daemonLog.slice(-100000);
    };
    daemon.stdout.on('data', keep);
    daemon.stderr.on('data', keep);
    daemon.on('exit', (code, signal) => (daemonExit = signal ? `signal ${signal}` : `code ${code}`));
    daemon.on('error', (e) => (daemonExit = `spawn error: ${e.message}`));
    return base;
  }

  /**
   * The check "daemon healthy": GET /api/health answers ok within 60 s. `get` fetches a path
   * (default: plain HTTP on the daemon; pass the test's own for HTTPS). Resolves to whether it passed.
   */
  function checkHealthy(get = getJson) {
    return check('daemon healthy', () =>
      waitFor('GET /api/health → status ok', 60, async () => {
        const { status, body } = await get('/api/health');
        if (status === 200 && body?.status === 'ok') return `${base}/api/health ok`;
      }));
  }

  /** The check "N s buffered": camera `cam` holds ≥ `seconds` of pre-roll within 60 s. */
  function checkBuffered(cam, seconds) {
    return check(`${seconds} s buffered`, () =>
      waitFor(`${cam} buffered_s ≥ ${seconds}`, 60, async () => {
        const { body } = await getJson(`/api/cameras/${cam}`);
        if (body?.buffered_s >= seconds) return `buffered_s ${body.buffered_s}, encoder ${body.encoder}`;
      }));
  }

  async function stopDaemon() {
    if (!daemon || daemonExit) return;
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    const t = setTimeout(() => daemon.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(t);
  }

  // Ctrl-C / CI cancel: do not leave the daemon behind.
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      if (daemon && !daemonExit) daemon.kill('SIGKILL');
      process.exit(130);
    });
  }

  // ---- the browser ----
  /** Headless Chromium with a fresh profile in the temp dir; closed by run(). */
  async function launchChromium(extraArgs = []) {
    const profile = join(dir, 'chromium-profile');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...extraArgs],
    });
    return context;
  }

  /**
   * Runs `main`, then closes Chromium, stops the daemon, keeps (on failure, with the daemon log
   * tail) or removes the temp dir, prints the closing line and exits.
   */
  async function run(main) {
    try {
      await main();
    } catch (e) {
      fail('setup', e?.stack ?? String(e));
    } finally {
      if (context) await context.close().catch((e) => console.log(`closing chromium: ${e.message}`));
      await stopDaemon();
      if (failed) {
        console.log(`daemon log tail:\n${logTail()}`);
        console.log(`kept ${dir} for inspection`);
      } else {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    console.log(`took ${since()}`);
    console.log(`${name}: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  }

  return {
    dir,
    since,
    pass,
    fail,
    check,
    waitFor,
    getJson,
    startDaemon,
    checkHealthy,
    checkBuffered,
    launchChromium,
    run,
    /** The daemon's process id (for /proc/<pid>/stat and status), once started. */
    get daemonPid() { return daemon?.pid; },
    get passed() { return passed; },
    get failed() { return failed; },
  };
}

/**
 * The config head every browser test shares: storage under `dir` (no free-space reserve: the
 * host's disk is not under test), HTTP on `port` (plain, no login, unless `http` adds keys such
 * as `tls`/`auth`/`password`: one `key = value` per line), MQTT off.
 */
export function configHead(dir, port, http = '') {
  return `[storage]
path = ${JSON.stringify(join(dir, 'storage'))}
min_free_percent = 0

[http]
listen = "127.0.0.1:${port}"
${http}
[mqtt]
enabled = false
`;
}
