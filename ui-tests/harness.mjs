// Starts a real `zenith up` on a free loopback port with a fresh data directory, serving
// HTTPS with the certificates it makes (--tls), and Debian's Chromium through playwright-core.
// Waits on conditions with deadlines, never on sleeps.
//
// The browser and this process's fetch accept the made certificate without checking its CA
// (Chromium cannot be given a CA without a certificate database; Node reads extra CAs only at
// start): what is tested here is the UI served over HTTPS. Checking the chain is tested in
// crates/cli/tests/e2e_tls.rs, and the CLI here is given the CA (ZENITH_CA_CERT).
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const OUT = resolve(process.env.ZENITH_UI_OUT || join(import.meta.dirname, '..', 'test-output', 'ui'));

function binary() {
  if (process.env.ZENITH_BIN) return process.env.ZENITH_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(import.meta.dirname, '..', 'target');
  return join(target, 'debug', 'zenith');
}

export async function startZenith() {
  const dir = mkdtempSync(join(tmpdir(), 'zenith-ui-'));
  const child = spawn(binary(), ['up', '--tls', '--data-dir', dir, '--listen', '127.0.0.1:0', '--cpus', '2'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  let log = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`zenith up did not start in 30 s:\n${log}`)), 30000);
    child.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/zenith is up at (https:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`zenith up exited with ${code}:\n${log}`)); });
  });
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  const api = async (method, path, body) => {
    const r = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const stop = async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  await waitFor(async () => (await api('GET', '/nodes')).nodes.length === 1, 'the local agent to register');
  const cli = (...args) => execFileSync(binary(), args, {
    env: { ...process.env, ZENITH_SERVER: url, ZENITH_TOKEN: token, ZENITH_CA_CERT: join(dir, 'tls', 'ca.pem') },
    encoding: 'utf8',
  });
  // zenith up prints the signed-in link only to a terminal; here its output is a pipe.
  const link = cli('ui').trim();
  return { url, token, api, stop, dir, link, cli, log: () => log };
}

export async function startBrowser() {
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--ignore-certificate-errors',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return browser;
}

export async function waitFor(cond, what, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { if (await cond()) return; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

export function shot(page, name) {
  return page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}
