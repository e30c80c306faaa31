/**
 * Stage 1+2: load every spec document (with source positions) and validate it against
 * spec/meta.schema.json. Problems are reported as `file:line:col  /pointer  message`.
 */
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { parseLocated, type Located } from '../runtime/core/config-file.js';
import { walkFiles } from '../runtime/io/fs-util.js';
import { humanizeErrors } from '../runtime/core/humanize.js';
import { packageRoot } from './paths.js';

export interface SpecDoc {
  /** Absolute path. */
  path: string;
  /** Path relative to the spec directory, '/'-separated (stable across machines). */
  rel: string;
  text: string;
  data: Record<string, unknown>;
  located: Located;
}

export interface SpecIssue {
  file: string;
  line: number;
  col: number;
  pointer: string;
  message: string;
}

export class SpecError extends Error {
  constructor(readonly issues: SpecIssue[]) {
    super(`invalid spec:\n${issues.map(formatSpecIssue).join('\n')}`);
    this.name = 'SpecError';
  }
}

export function formatSpecIssue(i: SpecIssue): string {
  return `${i.file}:${i.line}:${i.col}  ${i.pointer || '/'}  ${i.message}`;
}

let metaValidators: Promise<{ base: ValidateFunction; backend: ValidateFunction; meta: unknown }> | undefined;

function compileMeta() {
  return (metaValidators ??= (async () => {
    const meta = JSON.parse(await readFile(join(packageRoot(), 'spec', 'meta.schema.json'), 'utf8')) as { $id: string };
    const ajv = new Ajv({ allErrors: true, strict: true });
    ajv.addSchema(meta);
    return {
      base: ajv.getSchema(`${meta.$id}#/definitions/base`)!,
      backend: ajv.getSchema(`${meta.$id}#/definitions/backend`)!,
      meta,
    };
  })());
}

export interface LoadedSpec {
  dir: string;
  base: SpecDoc;
  backends: SpecDoc[];
  /** Every file that makes up the spec, including meta.schema.json, for the spec hash. */
  files: { rel: string; text: string }[];
}

/**
 * Load and validate a spec directory. A directory without base.json (a user's own spec) uses this
 * package's base contract.
 */
export async function loadSpec(dir: string): Promise<LoadedSpec> {
  const { base: vBase, backend: vBackend, meta } = await compileMeta();
  const paths = await walkFiles(dir, (n) => n.endsWith('.json') && n !== 'meta.schema.json');
  const issues: SpecIssue[] = [];
  const docs: SpecDoc[] = [];
  for (const path of paths) {
    const rel = relative(dir, path).split('\\').join('/');
    const text = await readFile(path, 'utf8');
    const located = await parseLocated(text);
    if (located.errors.length > 0) {
      for (const e of located.errors) issues.push({ file: path, line: e.line, col: e.col, pointer: '', message: e.message });
      continue;
    }
    const data = located.data as Record<string, unknown>;
    const kind = data && typeof data === 'object' ? data.kind : undefined;
    const validate = kind === 'base' ? vBase : kind === 'backend' ? vBackend : undefined;
    if (!validate) {
      const pos = located.locate('/kind', false);
      issues.push({ file: path, ...pos, pointer: '/kind', message: 'kind must be "base" or "backend"' });
      continue;
    }
    if (!validate(data)) {
      const schemaRoot = (meta as { definitions: Record<string, unknown> }).definitions[kind as string];
      // ajv reports schema paths from the definition it was compiled at; humanize against it.
      for (const issue of humanizeErrors(validate.errors, { data, schema: resolveLocalRefs(meta, schemaRoot) })) {
        const pos = located.locate(issue.pointer, issue.code === 'unknown-key');
        issues.push({ file: path, ...pos, pointer: issue.pointer, message: issue.message });
      }
      continue;
    }
    docs.push({ path, rel, text, data, located });
  }
  let base = docs.find((d) => d.data.kind === 'base');
  const files = docs.map((d) => ({ rel: d.rel, text: d.text }));
  if (!base) {
    const own = join(packageRoot(), 'spec', 'base.json');
    const text = await readFile(own, 'utf8');
    base = { path: own, rel: 'base.json', text, data: JSON.parse(text) as Record<string, unknown>, located: await parseLocated(text) };
    files.push({ rel: '(trackspec)/base.json', text });
  }
  if (docs.filter((d) => d.data.kind === 'base').length > 1) {
    issues.push({ file: dir, line: 1, col: 1, pointer: '', message: 'more than one base document' });
  }
  if (issues.length > 0) throw new SpecError(issues);
  files.push({ rel: '(trackspec)/meta.schema.json', text: JSON.stringify(meta) });
  return { dir, base, backends: docs.filter((d) => d.data.kind === 'backend'), files };
}

/** The meta-schema's definitions are referenced with #/definitions/...: give humanize a root that resolves them. */
function resolveLocalRefs(meta: unknown, root: unknown): unknown {
  return { ...(root as object), definitions: (meta as { definitions: unknown }).definitions };
}
