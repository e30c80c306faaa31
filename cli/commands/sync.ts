/** `trackspec sync`: upload what was spooled or logged offline, for every backend. */
import { parseArgs } from 'node:util';
import { UsageError } from '../usage.js';

export async function cmdSync(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length > 1) throw new UsageError('sync takes at most one DIR');
  const [{ syncAll }, { defaultSpoolDir }] = await Promise.all([import('../../runtime/backends/sync.js'), import('../../runtime/io/spool.js')]);
  const dir = positionals[0] ?? defaultSpoolDir();
  const summary = await syncAll(dir);
  process.stdout.write(
    summary.spools === 0
      ? `nothing to upload in ${dir}\n`
      : `${summary.spools} spool(s): ${summary.sent} record(s) uploaded, ${summary.duplicates} already on the server skipped, ${summary.failed.length} spool(s) failed\n`,
  );
  return summary.failed.length > 0 ? 1 : 0;
}
