/** `trackspec validate`: check tracker config files, with located errors (text, JSON or GitHub annotations). */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { UsageError, color } from '../usage.js';

export async function cmdValidate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { format: { type: 'string', default: 'text' } },
    allowPositionals: true,
  });
  const format = values.format!;
  if (!['text', 'json', 'github'].includes(format)) throw new UsageError(`unknown --format ${JSON.stringify(format)}; use text, json or github`);
  if (positionals.length === 0) throw new UsageError('validate needs at least one FILE');
  const [{ checkConfigText }, sdk] = await Promise.all([import('../../runtime/core/config-file.js'), import('../../generated/index.gen.js')]);
  const schema = await sdk.loadTrackingConfigSchema();
  type Row = { file: string; line: number; col: number; severity: string; code: string; pointer: string; message: string };
  const rows: Row[] = [];
  let unreadable = false;
  for (const file of positionals) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      process.stderr.write(`trackspec validate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      unreadable = true;
      continue;
    }
    const result = await checkConfigText(file, text, sdk.validateTrackingConfig, schema);
    rows.push(...result.issues);
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(rows.map((r) => ({ file: r.file, line: r.line, col: r.col, severity: r.severity, code: r.code, pointer: r.pointer, message: r.message })), null, 2)}\n`);
  } else if (format === 'github') {
    const esc = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
    const escProp = (s: string) => esc(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
    for (const r of rows) process.stdout.write(`::error file=${escProp(r.file)},line=${r.line},col=${r.col},title=${escProp(r.code)}::${esc(`${r.pointer || '/'} ${r.message}`)}\n`);
  } else {
    for (const r of rows) {
      process.stdout.write(`${r.file}:${r.line}:${r.col}  ${color('31', 'error', process.stdout)}  ${r.pointer || '/'}  ${r.message}\n`);
    }
    const files = positionals.length;
    if (rows.length === 0 && !unreadable) process.stderr.write(`${files} file(s) valid\n`);
    else if (rows.length > 0) process.stderr.write(`${rows.length} problem(s) in ${new Set(rows.map((r) => r.file)).size} of ${files} file(s)\n`);
  }
  if (unreadable) return 2;
  return rows.length > 0 ? 1 : 0;
}
