/** `trackspec validate`: check tracker config files, with located errors (text, JSON or GitHub annotations). */
import { parseArgs } from 'node:util';
import { UsageError, color } from '../usage.js';

export async function cmdValidate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { format: { type: 'string', default: 'text' }, 'max-bytes': { type: 'string' } },
    allowPositionals: true,
  });
  const format = values.format!;
  if (!['text', 'json', 'github'].includes(format)) throw new UsageError(`unknown --format ${JSON.stringify(format)}; use text, json or github`);
  if (positionals.length === 0) throw new UsageError('validate needs at least one FILE');
  let maxBytes: number | undefined;
  if (values['max-bytes'] !== undefined) {
    maxBytes = Number(values['max-bytes']);
    if (!/^\d+$/.test(values['max-bytes']) || !Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new UsageError(`--max-bytes must be a positive whole number of bytes; got ${JSON.stringify(values['max-bytes'])}`);
    }
  }
  const [{ checkConfigText, readConfigText }, sdk] = await Promise.all([import('../../runtime/core/config-file.js'), import('../../generated/index.gen.js')]);
  const schema = await sdk.loadTrackingConfigSchema();
  type Row = { file: string; line: number; col: number; severity: string; code: string; pointer: string; message: string };
  const rows: Row[] = [];
  let unreadable = false;
  for (const file of positionals) {
    let read: Awaited<ReturnType<typeof readConfigText>>;
    try {
      read = await readConfigText(file, { maxBytes, limitName: '--max-bytes N' });
    } catch (e) {
      process.stderr.write(`trackspec validate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      unreadable = true;
      continue;
    }
    if ('issue' in read) {
      rows.push(read.issue);
      continue;
    }
    const result = await checkConfigText(file, read.text, sdk.validateTrackingConfig, schema);
    for (const issue of result.issues) rows.push(issue);
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(rows.map((r) => ({ file: r.file, line: r.line, col: r.col, severity: r.severity, code: r.code, pointer: r.pointer, message: r.message })), null, 2)}\n`);
  } else if (format === 'github') {
    const esc = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
    const escProp = (s: string) => esc(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
    process.stdout.write(rows.map((r) => `::error file=${escProp(r.file)},line=${r.line},col=${r.col},title=${escProp(r.code)}::${esc(`${r.pointer || '/'} ${r.message}`)}\n`).join(''));
  } else {
    const error = color('31', 'error', process.stdout);
    process.stdout.write(rows.map((r) => `${r.file}:${r.line}:${r.col}  ${error}  ${r.pointer || '/'}  ${r.message}\n`).join(''));
    const files = positionals.length;
    if (rows.length === 0 && !unreadable) process.stderr.write(`${files} file(s) valid\n`);
    else if (rows.length > 0) process.stderr.write(`${rows.length} problem(s) in ${new Set(rows.map((r) => r.file)).size} of ${files} file(s)\n`);
  }
  if (unreadable) return 2;
  return rows.length > 0 ? 1 : 0;
}
