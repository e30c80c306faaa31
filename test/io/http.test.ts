import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient, HttpStatusError, HttpTransportError, httpError, parseRetryAfter, type HttpResponse } from '../../runtime/io/http.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let server: http.Server;
let base: string;
const seen: Seen[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const u = new URL(req.url!, 'http://x');
      switch (u.pathname) {
        case '/echo':
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ method: req.method, url: req.url, body: body ? JSON.parse(body) : null }));
          return;
        case '/prefix/api/echo':
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ url: req.url }));
          return;
        case '/html':
          res.statusCode = 500;
          res.setHeader('content-type', 'text/html');
          res.end('<!doctype html><html><body><h1>Internal Server Error</h1><p>boom</p></body></html>');
          return;
        case '/error':
          res.statusCode = 400;
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ error_code: 'INVALID_PARAMETER_VALUE', message: 'Missing value for required parameter' }));
          return;
        case '/empty':
          res.statusCode = 204;
          res.end();
          return;
        case '/slow':
          setTimeout(() => {
            if (!res.destroyed) res.end('{}');
          }, 2000).unref();
          return;
        case '/slowbody':
          res.setHeader('content-type', 'application/json');
          res.write('{"a":');
          setTimeout(() => {
            if (!res.destroyed) res.end('1}');
          }, 2000).unref();
          return;
        case '/reset':
          req.socket.destroy();
          return;
        default:
          res.statusCode = 404;
          res.end('not found');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const SECRET = 'sekrit-token-42';

function allText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 6 && e !== undefined; i++) {
    parts.push(String(e));
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? '', JSON.stringify(e));
      e = (e as { cause?: unknown }).cause;
    } else break;
  }
  return parts.join('\n');
}

describe('HttpClient', () => {
  it('encodes query strings (arrays repeated, undefined skipped) and parses JSON', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test' });
    try {
      const res = await c.request<{ url: string }>('GET', '/echo', {
        query: { run_id: 'a b&c', ids: ['1', 2, 'x/y'], flag: true, n: 5, skip: undefined },
      });
      expect(res.status).toBe(200);
      expect(res.body.url).toBe('/echo?run_id=a%20b%26c&ids=1&ids=2&ids=x%2Fy&flag=true&n=5');
      const parsed = new URL(res.body.url, 'http://x').searchParams;
      expect(parsed.getAll('ids')).toEqual(['1', '2', 'x/y']);
      expect(parsed.get('run_id')).toBe('a b&c');
    } finally {
      await c.close();
    }
  });

  it('sends JSON bodies with Content-Type and the configured headers', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test', headers: { Authorization: `Bearer ${SECRET}`, 'X-Extra': 'yes' } });
    try {
      seen.length = 0;
      const res = await c.request<{ body: unknown; method: string }>('POST', '/echo', { json: { a: 1, s: 'ü', n: [1, 2] } });
      expect(res.body).toMatchObject({ method: 'POST', body: { a: 1, s: 'ü', n: [1, 2] } });
      expect(seen[0]!.headers['content-type']).toBe('application/json');
      expect(seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
      expect(seen[0]!.headers['x-extra']).toBe('yes');
      await c.request('GET', '/echo');
      expect(seen[1]!.headers['content-type']).toBeUndefined();
      expect(seen[1]!.headers.authorization).toBe(`Bearer ${SECRET}`);
    } finally {
      await c.close();
    }
  });

  it('keeps a base path prefix and turns URL userinfo into Basic auth', async () => {
    const u = new URL(base);
    const c = new HttpClient({ baseUrl: `http://alice:${SECRET}@${u.host}/prefix/`, backend: 'test' });
    try {
      seen.length = 0;
      const res = await c.request<{ url: string }>('GET', '/api/echo', { query: { x: 1 } });
      expect(res.body.url).toBe('/prefix/api/echo?x=1');
      expect(seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from(`alice:${SECRET}`).toString('base64')}`);
      expect(c.publicUrl).toBe(`http://${u.host}/prefix`);
    } finally {
      await c.close();
    }
  });

  it('returns non-JSON bodies as text and never throws on status', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test' });
    try {
      const html = await c.request('GET', '/html');
      expect(html.status).toBe(500);
      expect(typeof html.body).toBe('string');
      expect(html.body).toContain('Internal Server Error');
      const nf = await c.request('DELETE', '/nope');
      expect(nf).toMatchObject({ status: 404, body: 'not found' });
      const empty = await c.request('PUT', '/empty', { json: {} });
      expect(empty).toMatchObject({ status: 204, body: '' });
      const e = httpError('test', 'get page', html);
      expect(e).toBeInstanceOf(HttpStatusError);
      expect(e.message).toBe('test: get page failed: HTTP 500 Internal Server Error boom');
    } finally {
      await c.close();
    }
  });

  it('times out (headers or body) with HttpTransportError ETIMEDOUT', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test', timeoutMs: 150 });
    try {
      const t0 = Date.now();
      const err = await c.request('GET', '/slow').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HttpTransportError);
      expect((err as HttpTransportError).code).toBe('ETIMEDOUT');
      expect((err as HttpTransportError).mayHaveReachedServer).toBe(true);
      expect(Date.now() - t0).toBeLessThan(1500);
      const err2 = await c.request('GET', '/slowbody').catch((e: unknown) => e);
      expect((err2 as HttpTransportError).code).toBe('ETIMEDOUT');
      // The pool still works afterwards.
      expect((await c.request('GET', '/echo')).status).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('a reset connection is an HttpTransportError (ECONNRESET)', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test' });
    try {
      const err = await c.request('POST', '/reset', { json: {} }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HttpTransportError);
      expect((err as HttpTransportError).code).toBe('ECONNRESET');
      expect((err as HttpTransportError).mayHaveReachedServer).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('connection refused → HttpTransportError ECONNREFUSED without credentials anywhere', async () => {
    // A port that was just free.
    const tmp = http.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const port = (tmp.address() as AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    const c = new HttpClient({
      baseUrl: `http://bob:${SECRET}-pw@127.0.0.1:${port}`,
      backend: 'mlflow',
      headers: { Authorization: `Bearer ${SECRET}`, 'X-Api-Key': `${SECRET}-key` },
    });
    try {
      const err = await c.request('POST', '/api/2.0/mlflow/runs/log-batch?token=abc', { json: { x: 1 } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HttpTransportError);
      const e = err as HttpTransportError;
      expect(e.code).toBe('ECONNREFUSED');
      expect(e.backend).toBe('mlflow');
      expect(e.message).toContain(`POST http://127.0.0.1:${port}/api/2.0/mlflow/runs/log-batch`);
      expect(e.message).toContain('ECONNREFUSED');
      expect(e.message).not.toContain('token=abc');
      expect(e.mayHaveReachedServer).toBe(false);
      expect(e.cause).toBeDefined();
      const text = allText(e);
      expect(String(e.cause)).not.toContain(SECRET);
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain('bob');
      expect(text).not.toContain(Buffer.from(`bob:${SECRET}-pw`).toString('base64'));
    } finally {
      await c.close();
    }
  });

  it('user abort rejects with the signal reason, not a transport error', async () => {
    const c = new HttpClient({ baseUrl: base, backend: 'test' });
    try {
      const ac = new AbortController();
      const p = c.request('GET', '/slow', { signal: ac.signal });
      setTimeout(() => ac.abort(new Error('stop')), 20);
      await expect(p).rejects.toThrow('stop');
    } finally {
      await c.close();
    }
  });

  it('rejects a bad base URL without echoing it', () => {
    expect(() => new HttpClient({ baseUrl: `ht!tp://x:${SECRET}@`, backend: 'test' })).toThrow(/invalid base URL/);
    try {
      new HttpClient({ baseUrl: `ht!tp://x:${SECRET}@`, backend: 'test' });
    } catch (e) {
      expect(String(e)).not.toContain(SECRET);
    }
  });
});

describe('httpError', () => {
  const res = (status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse => ({ status, headers, body });

  it('takes error_code and message from a JSON body', () => {
    const e = httpError('mlflow', 'log-batch', res(400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'Invalid metric name' }));
    expect(e).toBeInstanceOf(HttpStatusError);
    expect(e.status).toBe(400);
    expect(e.code).toBe('INVALID_PARAMETER_VALUE');
    expect(e.serverMessage).toBe('Invalid metric name');
    expect(e.retryAfterMs).toBeUndefined();
    expect(e.message).toBe('mlflow: log-batch failed: HTTP 400 INVALID_PARAMETER_VALUE: Invalid metric name');
    expect(e.body).toEqual({ error_code: 'INVALID_PARAMETER_VALUE', message: 'Invalid metric name' });
  });

  it('parses Retry-After in seconds and as an HTTP date', () => {
    expect(httpError('x', 'y', res(429, { error_code: 'REQUEST_LIMIT_EXCEEDED' }, { 'retry-after': '3' })).retryAfterMs).toBe(3000);
    expect(httpError('x', 'y', res(503, '', { 'retry-after': '0.5' })).retryAfterMs).toBe(500);
    const inFive = new Date(Date.now() + 5000).toUTCString();
    const ms = httpError('x', 'y', res(503, '', { 'retry-after': inFive })).retryAfterMs!;
    expect(ms).toBeGreaterThan(3000);
    expect(ms).toBeLessThanOrEqual(5000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:50 GMT'))).toBe(10_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:29:00 GMT'))).toBe(0);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter(['2', '9'])).toBe(2000);
  });

  it('redacts credentials echoed by the server in error messages', async () => {
    const echo = http.createServer((req, res) => {
      res.statusCode = 401;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error_code: 'UNAUTHENTICATED', message: `bad token ${req.headers.authorization}` }));
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const c = new HttpClient({ baseUrl: `http://127.0.0.1:${(echo.address() as AddressInfo).port}`, backend: 'test', headers: { authorization: `Bearer ${SECRET}` } });
    try {
      const r = await c.request('GET', '/');
      const e = httpError('test', 'auth', r);
      expect(e.message).toContain('UNAUTHENTICATED');
      expect(e.message).not.toContain(SECRET);
      expect(e.serverMessage).not.toContain(SECRET);
    } finally {
      await c.close();
      echo.closeAllConnections();
      await new Promise((r) => echo.close(r));
    }
  });
});
