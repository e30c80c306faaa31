/**
 * Send a few HTTP requests synchronously, for process-exit paths where the event loop is gone
 * (uncaught exception, process.exit, signals): a short-lived child process posts them in order.
 * Credentials travel on the child's stdin, never in argv or the environment.
 */
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
