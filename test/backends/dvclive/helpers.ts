import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';

export const FIXTURES = path.join(import.meta.dirname, 'fixtures');

/** Every file under `dir`, relative, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p).split(path.sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/** A TSV as Python's csv module (delimiter tab, minimal quoting) reads it: rows of cells. */
export function parseTsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === '\t') {
      row.push(cell);
      cell = '';
    } else if (c === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else if (c !== '\r') cell += c;
    i++;
  }
  if (cell !== '' || row.length > 0) throw new Error(`torn last line: ${JSON.stringify(row.concat(cell))}`);
  return rows;
}

export interface Decoded {
  params: unknown;
  metrics: unknown;
  /** name → [step, value-as-written][] */
  plots: Record<string, Array<[number, string]>>;
  headers: Record<string, string[]>;
  dvcYaml: unknown;
}

/** Read a dvclive directory back (params.yaml, metrics.json, every TSV, dvc.yaml). */
export function decode(dir: string, dvcYaml?: string): Decoded {
  const read = (p: string): string | undefined => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : undefined);
  const params = read(path.join(dir, 'params.yaml'));
  const metrics = read(path.join(dir, 'metrics.json'));
  const plots: Decoded['plots'] = {};
  const headers: Decoded['headers'] = {};
  const mdir = path.join(dir, 'plots', 'metrics');
  if (fs.existsSync(mdir)) {
    for (const f of listFiles(mdir)) {
      const rows = parseTsv(fs.readFileSync(path.join(mdir, f), 'utf8'));
      const name = f.replace(/\.tsv$/, '');
      headers[name] = rows[0]!;
      const si = rows[0]!.indexOf('step');
      plots[name] = rows.slice(1).map((r) => [Number(r[si]), r[r.length - 1]!]);
    }
  }
  const y = dvcYaml ? read(dvcYaml) : undefined;
  return {
    params: params === undefined ? undefined : parseYaml(params),
    metrics: metrics === undefined ? undefined : JSON.parse(metrics),
    plots,
    headers,
    dvcYaml: y === undefined ? undefined : parseYaml(y),
  };
}
