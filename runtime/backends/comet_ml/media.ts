/**
 * Comet images, tables and assets: one multipart `POST write/experiment/upload-asset` each, as
 * Comet's clients send them (fact sheet §1-3): query `experimentKey`, `type` (`image`, `dataframe`,
 * `asset`), `fileName`, `extension` (without the dot, as the Java SDK and comet-llm), `step`,
 * `overwrite`, `context`; a `file` part (filename = the file's name), and a `metadata` part (a JSON
 * string) only when there is metadata (an image caption goes there: REST v2 has no caption field).
 *
 * The body is streamed: the file part of an asset is read from disk as it is sent (never whole in
 * memory), with a Content-Length worked out beforehand. Each retry builds a new stream.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ImageData, TableData } from '../../core/driver.js';
import { ValidationError } from '../../core/errors.js';
import { httpError, type HttpClient } from '../../io/http.js';
import { lazy } from '../../io/lazy.js';
import type { RateLimiter } from '../../io/rate-limit.js';
import { withRetry } from '../../io/retry.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

/** The part of index.ts's CometConnection an upload needs. */
export interface UploadConnection {
  http: HttpClient;
  limiters: { other: RateLimiter };
  retryDeadlineMs: number;
}

export type AssetType = 'image' | 'dataframe' | 'asset';

/** One upload as queued and spooled (`file`: the original path online, the spool's copy once spooled, relative to the spool's folder). */
export interface MediaRecord {
  t: 'media';
  type: AssetType;
  fileName: string;
  step: number | null;
  overwrite: boolean;
  context: string | null;
  metadata: Record<string, unknown> | null;
  file: string;
  ts: number;
}

/** What one upload sends: bytes made here (PNG, CSV), or a file on disk. */
export type MediaBody = { bytes: Uint8Array } | { path: string };

/** The extension Comet's clients send: after the last dot, without it ('' when none). */
export function extensionOf(fileName: string): string {
  const base = fileName.slice(fileName.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1) : '';
}

const MIME: Record<string, string> = { png: 'image/png', csv: 'text/csv', json: 'application/json', txt: 'text/plain' };

/** Quote a multipart header parameter (RFC 7578: `"` and CR/LF escaped as browsers do). */
const quoteParam = (s: string): string => s.replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22');

/** Upload one asset (paced in the "everything else" bucket, retried until the connection's deadline). */
export async function uploadAsset(conn: UploadConnection, experimentKey: string, m: MediaRecord, body: MediaBody): Promise<void> {
  await conn.limiters.other.take();
  const ext = extensionOf(m.fileName);
  const query: Record<string, string | number | boolean | undefined> = {
    experimentKey,
    type: m.type,
    fileName: m.fileName,
    extension: ext || undefined,
    step: m.step ?? undefined,
    overwrite: m.overwrite,
    context: m.context ?? undefined,
  };
  const size = 'bytes' in body ? body.bytes.byteLength : (await stat(body.path)).size;
  await withRetry(
    async () => {
      const boundary = `----trackspec${crypto().randomBytes(12).toString('hex')}`;
      const base = m.fileName.slice(m.fileName.lastIndexOf('/') + 1);
      const head = Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quoteParam(base)}"\r\nContent-Type: ${MIME[ext] ?? 'application/octet-stream'}\r\n\r\n`,
      );
      const meta = m.metadata
        ? `\r\n--${boundary}\r\nContent-Disposition: form-data; name="metadata"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(m.metadata)}`
        : '';
      const tail = Buffer.from(`${meta}\r\n--${boundary}--\r\n`);
      const length = head.byteLength + size + tail.byteLength;
      const stream =
        'bytes' in body
          ? Buffer.concat([head, body.bytes, tail])
          : Readable.from(
              (async function* () {
                yield head;
                let n = 0;
                for await (const chunk of createReadStream(body.path)) {
                  n += (chunk as Buffer).byteLength;
                  yield chunk as Buffer;
                }
                if (n !== size) throw new Error(`${body.path} changed size while it was uploaded (${size} → ${n} bytes)`);
                yield tail;
              })(),
            );
      const res = await conn.http.request('POST', '/write/experiment/upload-asset', {
        query,
        body: stream,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(length) },
        timeoutMs: 0,
      });
      if (res.status >= 200 && res.status < 300) return;
      throw httpError('comet_ml', 'upload-asset', res);
    },
    { policy: { deadlineMs: conn.retryDeadlineMs }, backend: 'comet_ml' },
  );
}

/** A CSV field as RFC 4180 quotes it: in double quotes (doubled inside) when it has `,`, `"`, CR or LF. */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A scalar cell as text: numbers as JavaScript prints them (NaN/Infinity as `nan`/`inf` as pandas writes them), booleans, null/undefined as empty. */
function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return String(v);
}

/** Check and encode a table as RFC 4180 CSV (CRLF line ends, header row first). */
export function tableCsv(where: string, table: TableData): Buffer {
  const issues: { pointer: string; code: string; message: string }[] = [];
  if (table === null || typeof table !== 'object') issues.push({ pointer: '', code: 'table', message: 'must be an object { columns, data }' });
  else {
    const { columns, data } = table;
    if (!Array.isArray(columns) || columns.some((c) => typeof c !== 'string')) issues.push({ pointer: '/columns', code: 'table', message: 'columns must be an array of strings' });
    if (data !== undefined && !Array.isArray(data)) issues.push({ pointer: '/data', code: 'table', message: 'data must be an array of rows' });
    if (issues.length === 0) {
      (data ?? []).forEach((row, i) => {
        if (!Array.isArray(row)) issues.push({ pointer: `/data/${i}`, code: 'table', message: `row ${i} is not an array` });
        else if (row.length !== columns!.length) issues.push({ pointer: `/data/${i}`, code: 'table', message: `row ${i} has ${row.length} cells for ${columns!.length} columns` });
        else
          row.forEach((cell, j) => {
            if (cell !== null && cell !== undefined && typeof cell === 'object') {
              issues.push({ pointer: `/data/${i}/${j}`, code: 'table', message: `row ${i}, column ${JSON.stringify(columns![j])}: cells must be scalars (string, number, boolean or null), got ${Array.isArray(cell) ? 'an array' : 'an object'}` });
            }
          });
      });
    }
  }
  if (issues.length > 0) throw new ValidationError(`${where}: ${issues.map((i) => i.message).join('; ')}`, issues);
  const lines = [table.columns!.map(csvField).join(',')];
  for (const row of table.data ?? []) lines.push(row.map((c) => csvField(cellText(c))).join(','));
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
}

/** A file name Comet stores under: non-empty, no NUL, no `..` segment. */
export function checkAssetName(where: string, option: string, name: unknown): string {
  if (typeof name !== 'string' || name === '' || name.includes('\0') || name.split(/[\\/]/).includes('..') || /^[\\/]/.test(name)) {
    throw new ValidationError(`${where}: ${option} ${JSON.stringify(name)} is not a usable asset name (a non-empty relative name, no '..', no NUL)`, [
      { pointer: `/${option}`, code: 'asset-name', message: 'bad name' },
    ]);
  }
  return name;
}

export type { ImageData };
