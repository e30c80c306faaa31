/**
 * `trackspec sync DIR` for W&B offline runs (`.wandb` files, written offline or after falling back):
 * uploaded through the online protocol. History lines go to fixed offsets (the run's history
 * offset when the file started, kept next to the file as `<file>.offset`), so a sync that is
 * interrupted and run again rewrites the same lines instead of duplicating them. A synced file
 * gets W&B's `.synced` marker. A file without an exit record is finished with exit code 1, as
 * `wandb sync` does.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { readEnv, type Env } from '../../core/env.js';
import { describeRanges } from '../../io/framing.js';
import type { SyncSummary } from '../../io/spool.js';
import { fileStream, graphql, resumeStatus, upsertBucket, wandbConnect, wandbJson } from './index.js';
import { findOfflineRuns, markSynced, readWandbFile } from './offline.js';

export async function syncWandbRuns(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const env = options.env ?? process.env;
  const files = await findOfflineRuns(dir);
  const summary: SyncSummary = { spools: files.length, sent: 0, duplicates: 0, failed: [] };
  if (files.length === 0) return summary;
  const apiKey = readEnv(env, 'WANDB_API_KEY');
  const baseUrl = readEnv(env, 'WANDB_BASE_URL') ?? 'https://api.wandb.ai';
  for (const file of files) {
    out(`${file}: W&B offline run → ${baseUrl}`);
    if (!apiKey) {
      summary.failed.push({ path: file, error: 'no W&B API key (set WANDB_API_KEY)' });
      out('  failed: no W&B API key (set WANDB_API_KEY)');
      continue;
    }
    const conn = wandbConnect(baseUrl, apiKey, 30_000);
    try {
      const { records, damaged, error } = await readWandbFile(file);
      if (error) out(`  note: ${error.message} at byte ${error.offset}; the records before it are uploaded`);
      if (damaged.length > 0) out(`  damaged: ${describeRanges(damaged.map((d) => ({ from: d.offset, to: d.to })))} cannot be read; every intact record before and after is uploaded`);
      const run = records.find((r) => r.kind === 'run')?.run;
      if (!run) throw new Error('the file has no run record');
      if (!run.entity) {
        const v = await graphql<{ viewer: { entity: string } | null }>(conn, 'Viewer', 'query Viewer { viewer { id entity username } }', {});
        run.entity = v.viewer?.entity ?? '';
      }
      const offsetFile = `${file}.offset`;
      let base: number;
      try {
        base = Number((await readFile(offsetFile, 'utf8')).trim()) || 0;
      } catch {
        base = run.resumed ? ((await resumeStatus(conn, run.entity, run.project, run.runId))?.historyLineCount ?? 0) : 0;
        await writeFile(offsetFile, String(base));
      }
      const config = { ...run.config };
      const summaryValues: Record<string, unknown> = {};
      const lines: string[] = [];
      let exitCode: number | undefined;
      for (const r of records) {
        if (r.kind === 'config') Object.assign(config, r.items);
        else if (r.kind === 'history') lines.push(wandbJson(r.items ?? {}));
        else if (r.kind === 'summary') Object.assign(summaryValues, r.items);
        else if (r.kind === 'exit') exitCode = r.exitCode;
      }
      await upsertBucket(conn, {
        name: run.runId, project: run.project, entity: run.entity, displayName: run.displayName, notes: run.notes,
        groupName: run.group, jobType: run.jobType, tags: run.tags, config,
      });
      for (let i = 0; i < lines.length; i += 1000) {
        const chunk = lines.slice(i, i + 1000);
        await fileStream(conn, run.entity, run.project, run.runId, {
          files: {
            'wandb-history.jsonl': { offset: base + i, content: chunk },
            'wandb-summary.json': { offset: 0, content: [wandbJson(summaryValues)] },
          },
        });
        out(`  ${Math.min(i + 1000, lines.length)}/${lines.length} history rows`);
      }
      await fileStream(conn, run.entity, run.project, run.runId, {
        files: { 'wandb-summary.json': { offset: 0, content: [wandbJson(summaryValues)] } },
        complete: true,
        exitcode: exitCode ?? 1,
      });
      await markSynced(file);
      summary.sent += lines.length;
      if (damaged.length > 0) {
        const message = `${file} is damaged at ${describeRanges(damaged.map((d) => ({ from: d.offset, to: d.to })))} (${damaged.map((d) => d.message).join('; ')}): the records there are lost; every intact record was uploaded; the file is kept`;
        summary.failed.push({ path: file, error: message });
        out(`  failed: ${message}`);
      }
    } catch (e) {
      summary.failed.push({ path: file, error: (e as Error).message });
      out(`  failed: ${(e as Error).message} (run sync again later; it rewrites the same offsets)`);
    } finally {
      await conn.http.close();
    }
  }
  return summary;
}
