import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { HttpClient, HttpStatusError, HttpTransportError, httpError } from '../../runtime/io/http.js';
import { DEFAULT_RETRY_POLICY, RetryDeadlineError, backoffDelay, classifyError, withRetry } from '../../runtime/io/retry.js';

const status = (s: number, headers: Record<string, string> = {}, body: unknown = { error_code: 'X', message: 'm' }) =>
  httpError('test', 'op', { status: s, headers, body });
const transport = (code = 'ECONNREFUSED') => new HttpTransportError('test', `GET /: ${code}`, code, 'GET /');

/** A fake clock: sleep advances time instantly and records delays. */
function fakeClock() {
  let t = 1_000_000;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      t += ms;
    },
    advance: (ms: number) => (t += ms),
  };
}

describe('classifyError', () => {
  it('retries transport errors, 429 and 5xx; not 4xx or other errors', () => {
    expect(classifyError(transport())).toEqual({ retry: true });
    expect(classifyError(status(500))).toEqual({ retry: true });
    expect(classifyError(status(503, { 'retry-after': '2' }))).toEqual({ retry: true, afterMs: 2000 });
    expect(classifyError(status(429, { 'retry-after': '7' }))).toEqual({ retry: true, afterMs: 7000 });
    expect(classifyError(status(429))).toEqual({ retry: true });
    expect(classifyError(status(400))).toEqual({ retry: false });
    expect(classifyError(status(404))).toEqual({ retry: false });
    expect(classifyError(new TypeError('bug'))).toEqual({ retry: false });
    expect(classifyError('string')).toEqual({ retry: false });
    expect(classifyError(transport('ECLOSED'))).toEqual({ retry: false });
  });
});

describe('withRetry', () => {
  it('defaults', () => {
    expect(DEFAULT_RETRY_POLICY).toEqual({ baseDelayMs: 200, maxDelayMs: 10_000, deadlineMs: 60_000 });
  });

  it('retries 5xx, 429 and connection errors until success', async () => {
    const clock = fakeClock();
    const errors = [transport(), status(502), status(429), transport('ECONNRESET')];
    const retries: number[] = [];
    const result = await withRetry(
      async (attempt) => {
        if (attempt <= errors.length) throw errors[attempt - 1];
        return `ok@${attempt}`;
      },
      { sleep: clock.sleep, now: clock.now, onRetry: (i) => retries.push(i.attempt) },
    );
    expect(result).toBe('ok@5');
    expect(retries).toEqual([1, 2, 3, 4]);
    expect(clock.sleeps).toHaveLength(4);
  });

  it('honours Retry-After (at least that long, even above maxDelayMs)', async () => {
    const clock = fakeClock();
    let n = 0;
    await withRetry(
      async () => {
        if (n++ === 0) throw status(429, { 'retry-after': '15' });
        return 1;
      },
      { sleep: clock.sleep, now: clock.now, random: () => 0.99 },
    );
    expect(clock.sleeps).toEqual([15_000]);
  });

  it('fails fast on 400, throwing the original error with the server error_code', async () => {
    const clock = fakeClock();
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw httpError('mlflow', 'log-batch', { status: 400, headers: {}, body: { error_code: 'INVALID_PARAMETER_VALUE', message: 'bad key' } });
      },
      { sleep: clock.sleep, now: clock.now },
    ).catch((e: unknown) => e);
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
    expect(err).toBeInstanceOf(HttpStatusError);
    expect((err as HttpStatusError).code).toBe('INVALID_PARAMETER_VALUE');
  });

  it('gives up with RetryDeadlineError before the deadline would pass', async () => {
    const clock = fakeClock();
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        clock.advance(100); // each attempt takes 100 ms
        throw status(503);
      },
      { sleep: clock.sleep, now: clock.now, random: () => 0.5, policy: { baseDelayMs: 100, maxDelayMs: 1000, deadlineMs: 5000 } },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryDeadlineError);
    const d = err as RetryDeadlineError;
    expect(d.deadlineExceeded).toBe(true);
    expect(d.attempts).toBe(calls);
    expect(d.cause).toBeInstanceOf(HttpStatusError);
    expect(d.status).toBe(503);
    expect(d.backend).toBe('test');
    expect(d.message).toMatch(/^test: gave up after \d+ attempts in \d+ ms \(retry deadline 5000 ms\): op failed: HTTP 503/);
    const total = clock.sleeps.reduce((a, b) => a + b, 0) + calls * 100;
    expect(total).toBeLessThanOrEqual(5000 + 100);
    expect(calls).toBeGreaterThan(5);
  });

  it('a Retry-After beyond the deadline gives up at once', async () => {
    const clock = fakeClock();
    const err = await withRetry(async () => {
      throw status(429, { 'retry-after': '120' });
    }, { sleep: clock.sleep, now: clock.now }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryDeadlineError);
    expect((err as RetryDeadlineError).attempts).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('full jitter stays within [0, min(max, base * 2^(n-1)))', () => {
    const p = { baseDelayMs: 200, maxDelayMs: 10_000, deadlineMs: 60_000 };
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(10_000, 200 * 2 ** (attempt - 1));
      expect(backoffDelay(attempt, p, () => 0)).toBe(0);
      expect(backoffDelay(attempt, p, () => 0.999999)).toBe(ceiling - 1);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, p);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
    }
    expect(backoffDelay(2000, p, () => 0.5)).toBe(5000); // no overflow on huge attempt numbers
  });

  it('observed delays respect the jitter bounds', async () => {
    const clock = fakeClock();
    let n = 0;
    const delays: number[] = [];
    await withRetry(
      async () => {
        if (n++ < 8) throw transport();
      },
      { sleep: clock.sleep, now: clock.now, onRetry: (i) => delays.push(i.delayMs), policy: { baseDelayMs: 50, maxDelayMs: 1000 } },
    );
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(Math.min(1000, 50 * 2 ** i));
    });
    expect(clock.sleeps).toEqual(delays);
  });

  it('custom classify, and abort stops the loop', async () => {
    const clock = fakeClock();
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw status(500);
        },
        { sleep: clock.sleep, now: clock.now, classify: () => ({ retry: false }) },
      ),
    ).rejects.toBeInstanceOf(HttpStatusError);
    expect(calls).toBe(1);

    const ac = new AbortController();
    const p = withRetry(
      async () => {
        throw transport();
      },
      { signal: ac.signal, policy: { baseDelayMs: 10_000, maxDelayMs: 10_000 }, random: () => 0.9 },
    );
    setTimeout(() => ac.abort(new Error('cancelled')), 10);
    await expect(p).rejects.toThrow('cancelled');
  });

  it('end to end: HttpClient + httpError + withRetry against a flaky local server', async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      res.setHeader('content-type', 'application/json');
      if (hits === 1) {
        res.statusCode = 503;
        res.setHeader('retry-after', '0');
        res.end('{"error_code":"TEMPORARILY_UNAVAILABLE","message":"busy"}');
      } else if (hits === 2) {
        res.statusCode = 500;
        res.setHeader('content-type', 'text/html');
        res.end('<html>oops</html>');
      } else {
        res.end('{"ok":true}');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = new HttpClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, backend: 'test' });
    try {
      const body = await withRetry(
        async () => {
          const res = await c.request<{ ok: boolean }>('POST', '/x', { json: {} });
          if (res.status >= 300) throw httpError('test', 'x', res);
          return res.body;
        },
        { policy: { baseDelayMs: 1, maxDelayMs: 5 } },
      );
      expect(body).toEqual({ ok: true });
      expect(hits).toBe(3);
    } finally {
      await c.close();
      await new Promise((r) => server.close(r));
    }
  });
});
