/**
 * Send a few HTTP requests (or WebSocket messages) synchronously, for process-exit paths where the
 * event loop is gone (uncaught exception, process.exit, signals): a short-lived child process sends
 * them in order.
 * Credentials travel on the child's stdin, never in argv or the environment.
 */
import { createRequire } from 'node:module';
import { lazy } from './lazy.js';

const childProcess = lazy<typeof import('node:child_process')>('node:child_process');

export interface ExitRequest {
  url: string;
  body: unknown;
}

const CHILD = `
const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
if (input.insecure) process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
(async () => {
  for (const r of input.requests) {
    const res = await fetch(r.url, {
      method: 'POST', headers: { ...input.headers, 'content-type': 'application/json' }, body: JSON.stringify(r.body),
      signal: AbortSignal.timeout(input.perRequestMs),
    });
    if (!res.ok) throw new Error('HTTP ' + res.status);
  }
})().then(() => process.exit(0), () => process.exit(1));
`;

/** POST each request in order; true when all were answered 2xx within the time limit. */
export function postSync(requests: ExitRequest[], options: { headers: Record<string, string>; insecure?: boolean; timeoutMs?: number }): boolean {
  const timeoutMs = options.timeoutMs ?? 6000;
  const r = childProcess().spawnSync(process.execPath, ['-e', CHILD], {
    input: JSON.stringify({ requests, headers: options.headers, insecure: options.insecure ?? false, perRequestMs: Math.max(500, Math.floor(timeoutMs / 2)) }),
    timeout: timeoutMs,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  return r.status === 0;
}

export interface ExitCall {
  method: 'GET' | 'POST';
  url: string;
  body?: unknown;
}

const WS_CHILD = `
const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
const { WebSocket } = require(input.undici);
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const ws = new WebSocket(input.url);
  ws.binaryType = 'arraybuffer';
  const replies = [];
  let waiting;
  ws.onmessage = (ev) => { const w = waiting; waiting = undefined; if (w) w(Buffer.from(ev.data).toString('latin1')); };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onclose = () => reject(new Error('closed')); });
  ws.onclose = () => { const w = waiting; waiting = undefined; if (w) w('closed'); };
  for (const m of input.messages) {
    const reply = await Promise.race([new Promise((r) => { waiting = r; ws.send(Buffer.from(m, 'base64')); }), wait(input.perMessageMs).then(() => 'timeout')]);
    if (reply !== 'OK') throw new Error(reply);
  }
  ws.close();
  for (const c of input.after) {
    try {
      await fetch(c.url, { method: c.method, headers: { 'content-type': 'application/json' }, body: c.body === undefined ? undefined : JSON.stringify(c.body), signal: AbortSignal.timeout(input.perMessageMs) });
    } catch {}
  }
})().then(() => process.exit(0), () => process.exit(1));
`;

/**
 * Send binary WebSocket messages synchronously (each must be answered `OK`, Aim's write protocol),
 * then make `after` HTTP calls best effort; for process-exit paths. True when every message was
 * acknowledged within the time limit.
 */
export function sendWsSync(url: string, messages: Uint8Array[], options: { after?: ExitCall[]; timeoutMs?: number } = {}): boolean {
  const timeoutMs = options.timeoutMs ?? 8000;
  const undici = createRequire(import.meta.url).resolve('undici');
  const r = childProcess().spawnSync(process.execPath, ['-e', WS_CHILD], {
    input: JSON.stringify({
      url,
      undici,
      messages: messages.map((m) => Buffer.from(m.buffer, m.byteOffset, m.byteLength).toString('base64')),
      after: options.after ?? [],
      perMessageMs: Math.max(500, Math.floor(timeoutMs / 2)),
    }),
    timeout: timeoutMs,
    stdio: ['pipe', 'ignore', 'ignore'],
    maxBuffer: 1 << 20,
  });
  return r.status === 0;
}
