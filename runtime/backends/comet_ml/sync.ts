/**
 * `trackspec sync DIR` for Comet spools (written offline or while the server was unreachable).
 * Records are replayed one per acknowledged chunk, so a crash re-sends at most the one record in
 * flight (Comet's write API cannot be asked what it already has). An experiment that was never
 * created online is created first; its key is kept next to the spool (`<spool>.key`) so a resumed
 * sync continues the same experiment. Images, tables and assets are spooled as a record naming a
 * copy of the file in `files/` next to the spool; the multipart upload is rebuilt from that copy,
 * and the copies are removed once the whole spool was uploaded.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BackendError } from '../../core/errors.js';
import { readEnv, type Env } from '../../core/env.js';
import { describeRanges } from '../../io/framing.js';
import { listSpools, replaySpool, SpoolDamagedError, type SyncSummary } from '../../io/spool.js';
import { connect, createExperiment, sendRecord, type CometRecord } from './index.js';
import { readCometConfigFiles } from './config.js';
import { uploadAsset, type MediaRecord } from './media.js';

export async function syncCometSpools(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const spools = (await listSpools(dir, 'comet_ml')).filter((s) => s.pending > 0);
  const summary: SyncSummary = { spools: spools.length, sent: 0, duplicates: 0, failed: [] };
  if (spools.length === 0) return summary;
  const apiKey = readEnv(options.env ?? process.env, 'COMET_API_KEY') ?? readCometConfigFiles().api_key;
  for (const s of spools) {
    out(`${s.path}: ${s.pending} record(s) for ${s.header.target}`);
    if (s.damaged.length > 0) out(`  damaged: ${describeRanges(s.damaged)} cannot be read; every intact record before and after is uploaded`);
    if (!apiKey) {
      summary.failed.push({ path: s.path, error: 'no Comet API key (set COMET_API_KEY or api_key in .comet.config)' });
      out('  failed: no Comet API key (set COMET_API_KEY or api_key under [comet] in .comet.config)');
      continue;
    }
    const conn = connect(s.header.target, apiKey, { retryDeadlineMs: 30_000 });
    try {
      const meta = (s.header.meta ?? {}) as { experimentKey?: string | null; workspace?: string | null; project?: string | null; name?: string | null };
      const keyFile = `${s.path}.key`;
      let key = meta.experimentKey ?? undefined;
      if (!key) {
        try {
          key = readFileSync(keyFile, 'utf8').trim() || undefined;
        } catch {
          key = (await createExperiment(conn, meta.workspace ?? null, meta.project ?? null, meta.name ?? null)).key;
          writeFileSync(`${keyFile}.tmp`, key);
          renameSync(`${keyFile}.tmp`, keyFile);
          out(`  created experiment ${key}`);
        }
      }
      const experimentKey: string = key!;
      const copies: string[] = [];
      const r = await replaySpool(
        s.path,
        async (records) => {
          for (const rec of records as (CometRecord | MediaRecord)[]) {
            if (rec.t !== 'media') {
              await sendRecord(conn, experimentKey, rec);
              continue;
            }
            // images, tables, assets: the multipart body is rebuilt from the spool's copy
            const copy = join(dirname(s.path), rec.file);
            if (!existsSync(copy)) throw new BackendError('comet_ml', `the spooled copy ${copy} of ${rec.fileName} is missing; it cannot be uploaded`);
            await uploadAsset(conn, experimentKey, rec, { path: copy });
            copies.push(copy);
          }
        },
        { chunk: 1, onProgress: (done, total) => (done === total || done % 500 === 0 ? out(`  ${done}/${total} records`) : undefined) },
      );
      summary.sent += r.sent;
      for (const c of copies) rmSync(c, { force: true }); // uploaded and acknowledged: the copies are done
    } catch (e) {
      summary.failed.push({ path: s.path, error: (e as Error).message });
      if (e instanceof SpoolDamagedError) {
        summary.sent += e.sent;
        out(`  failed: ${e.message}`);
      } else out(`  failed: ${(e as Error).message} (run sync again later; it resumes where it stopped)`);
    } finally {
      await conn.http.close();
    }
  }
  return summary;
}
