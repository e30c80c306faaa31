/**
 * `trackspec sync DIR` for W&B offline runs (`.wandb` files, written offline or after falling back):
 * uploaded through the online protocol. History lines go to fixed offsets (the run's history
 * offset when the file started, kept next to the file as `<file>.offset`), so a sync that is
 * interrupted and run again rewrites the same lines instead of duplicating them. A synced file
 * gets W&B's `.synced` marker. A file without an exit record is finished with exit code 1, as
 * `wandb sync` does.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readEnv, type Env } from '../../core/env.js';
import { describeRanges } from '../../io/framing.js';
import { pathNameProblem, resolveInside } from '../../io/safe-path.js';
import { listSpools, replaySpool, SpoolDamagedError, type SyncSummary } from '../../io/spool.js';
import { UPLOADS_MANIFEST, apiKeyFromNetrc, chunkLines, fileStream, graphql, resumeStatus, summaryLine, upsertBucket, wandbConnect, wandbJson, writeRunInfoFiles, type WandbConnection, type WandbSpoolFile, type WandbSpoolRow } from './index.js';
import { findOfflineRuns, markSynced, parseValueJson, readWandbFile, wandbDir } from './offline.js';
import { CREATE_RUN_FILES, MediaUploader, type CreateRunFilesResult } from './upload.js';

/**
 * Upload run files from `filesDir` (CreateRunFiles → PUT → `uploaded`), as the online run does.
 * Missing files are skipped with a note (as wandb sync). Returns the paths not uploaded.
 */
async function uploadRunFiles(conn: WandbConnection, entity: string, project: string, runId: string, filesDir: string, paths: readonly string[], out: (l: string) => void): Promise<string[]> {
  const files = [];
  for (const path of new Set(paths)) {
    const problem = pathNameProblem(path);
    if (problem !== undefined) {
      out(`  note: run file ${JSON.stringify(path)} ${problem}; skipped`);
      continue;
    }
    const local = join(filesDir, path);
    if (!existsSync(local)) {
      out(`  note: run file ${path} is missing under ${filesDir}; skipped`);
      continue;
    }
    files.push({ path, bytes: undefined, sha256: '', size: statSync(local).size });
  }
  if (files.length === 0) return [];
  const up = new MediaUploader(
    {
      createRunFiles: async (list) => (await graphql<{ createRunFiles: CreateRunFilesResult }>(conn, 'CreateRunFiles', CREATE_RUN_FILES, { entity, project, run: runId, files: list })).createRunFiles,
      reportUploaded: (list) => fileStream(conn, entity, project, runId, { uploaded: list }),
    },
    filesDir,
    { deadlineMs: conn.deadlineMs, warn: (m) => out(`  ${m}`) },
  );
  up.add(files);
  const left = await up.drain(Math.max(conn.deadlineMs, 30_000) * 2);
  await up.close();
  out(`  ${files.length - left.length}/${files.length} run files uploaded`);
  return left.map((f) => f.path);
}

/** An error naming the run files `uploadRunFiles` left (the sync of that item fails and can be run again). */
function requireAllUploaded(left: readonly string[], hint = ''): void {
  if (left.length > 0) throw new Error(`${left.length} run file(s) not uploaded: ${left.join(', ')}${hint}`);
}

/**
 * Run files an online run could not upload before finish() (`<wandb dir>/run-*\/trackspec-uploads.json`,
 * the files beside it under `files/`): uploaded now, then the manifest is removed. No history row is sent.
 */
export async function syncWandbUploads(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const env = options.env ?? process.env;
  const manifests: string[] = [];
  for (const base of [wandbDir(dir), dir]) {
    let names: string[] = [];
    try {
      names = (await readdir(base)).sort();
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith('run-') && existsSync(join(base, n, UPLOADS_MANIFEST))) manifests.push(join(base, n, UPLOADS_MANIFEST));
    if (manifests.length > 0) break;
  }
  const summary: SyncSummary = { spools: manifests.length, sent: 0, duplicates: 0, failed: [] };
  for (const m of manifests) {
    try {
      const man = JSON.parse(await readFile(m, 'utf8')) as { target: string; entity: string; project: string; run_id: string; files: { path: string }[] };
      const baseUrl = readEnv(env, 'WANDB_BASE_URL') ?? man.target;
      const apiKey = readEnv(env, 'WANDB_API_KEY') ?? apiKeyFromNetrc(baseUrl, env);
      out(`${m}: ${man.files.length} run file(s) of W&B run ${man.entity}/${man.project}/${man.run_id} → ${baseUrl}`);
      if (!apiKey) throw new Error('no W&B API key (set WANDB_API_KEY)');
      const conn = wandbConnect(baseUrl, apiKey, 30_000);
      try {
        const left = await uploadRunFiles(conn, man.entity, man.project, man.run_id, join(dirname(m), 'files'), man.files.map((f) => f.path), out);
        summary.sent += man.files.length - left.length;
        requireAllUploaded(left, ' (run sync again later)');
        await rm(m);
      } finally {
        await conn.http.close();
      }
    } catch (e) {
      summary.failed.push({ path: m, error: (e as Error).message });
      out(`  failed: ${(e as Error).message}`);
    }
  }
  return summary;
}

/**
 * Write-ahead spools of online runs (`<dir>/wandb/*.spool`, left by a process that was killed):
 * each row is posted at its own history offset, so rows the server already has are rewritten with
 * the same bytes and nothing is duplicated; run files it had not uploaded are uploaded from the
 * run's files directory (the header's `files_dir`, below the spool's parent); then the summary
 * (the server's, updated with the rows) and `complete` with exit code 1 (the process died), as
 * `wandb sync` finishes a run without an exit record.
 */
export async function syncWandbSpools(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const env = options.env ?? process.env;
  const spools = (await listSpools(dir, 'wandb')).filter((s) => s.pending > 0);
  const summary: SyncSummary = { spools: spools.length, sent: 0, duplicates: 0, failed: [] };
  if (spools.length === 0) return summary;
  for (const s of spools) {
    const meta = (s.header.meta ?? {}) as { entity?: string; project?: string; run_id?: string; files_dir?: string };
    const baseUrl = readEnv(env, 'WANDB_BASE_URL') ?? s.header.target;
    const apiKey = readEnv(env, 'WANDB_API_KEY') ?? apiKeyFromNetrc(baseUrl, env);
    out(`${s.path}: ${s.pending} history row(s) of W&B run ${meta.entity}/${meta.project}/${meta.run_id} → ${baseUrl}`);
    if (s.damaged.length > 0) out(`  damaged: ${describeRanges(s.damaged)} cannot be read; every intact record before and after is uploaded`);
    if (!apiKey || !meta.project || !meta.run_id) {
      const error = apiKey ? 'the spool header does not name the run' : 'no W&B API key (set WANDB_API_KEY)';
      summary.failed.push({ path: s.path, error });
      out(`  failed: ${error}`);
      continue;
    }
    const conn = wandbConnect(baseUrl, apiKey, 30_000);
    const { entity = '', project, run_id: runId } = meta;
    try {
      const values: Record<string, unknown> = { ...((await resumeStatus(conn, entity, project, runId))?.summary ?? {}) };
      // Run files the process had not uploaded (on disk under files_dir): uploaded as the online run does.
      const upload = async (paths: string[]): Promise<void> => {
        if (paths.length === 0) return;
        if (!meta.files_dir) throw new Error('the spool lists run files but its header does not say where they are');
        // Relative to the spool's parent folder, and never outside it (a spool is data, not a path to trust).
        const filesDir = resolveInside(dirname(dirname(s.path)), meta.files_dir, (problem) => new Error(`the spool's files_dir ${JSON.stringify(meta.files_dir)} ${problem}`));
        requireAllUploaded(await uploadRunFiles(conn, entity, project, runId, filesDir, paths, out));
      };
      const post = async (records: (WandbSpoolRow | WandbSpoolFile)[]): Promise<void> => {
        const rows = records.filter((r): r is WandbSpoolRow => 'o' in r).sort((a, b) => a.o - b.o);
        await upload(records.filter((r): r is WandbSpoolFile => 'u' in r).map((r) => r.u));
        for (const r of rows) Object.assign(values, parseValueJson(r.l) as Record<string, unknown>);
        let i = 0;
        while (i < rows.length) {
          let j = i + 1;
          while (j < rows.length && rows[j]!.o === rows[j - 1]!.o + 1) j++;
          for (const chunk of chunkLines(rows.slice(i, j), (r) => r.l)) {
            await fileStream(conn, entity, project, runId, { files: { 'wandb-history.jsonl': { offset: chunk[0]!.o, content: chunk.map((r) => r.l) } } });
          }
          i = j;
        }
      };
      let failure: unknown;
      try {
        const r = await replaySpool(s.path, (records) => post(records as (WandbSpoolRow | WandbSpoolFile)[]), {
          onProgress: (done, total) => out(`  ${done}/${total} history rows`),
        });
        summary.sent += r.sent;
      } catch (e) {
        if (!(e instanceof SpoolDamagedError)) throw e;
        summary.sent += e.sent;
        failure = e;
      }
      // The summary: one line, always at offset 0, as wandb-core writes it.
      const line = summaryLine(values, out);
      await fileStream(conn, entity, project, runId, { ...(line !== undefined ? { files: { 'wandb-summary.json': { offset: 0, content: [line] } } } : {}), complete: true, exitcode: 1 });
      if (failure) throw failure;
    } catch (e) {
      summary.failed.push({ path: s.path, error: (e as Error).message });
      out(`  failed: ${(e as Error).message}${e instanceof SpoolDamagedError ? '' : ' (run sync again later; it rewrites the same offsets)'}`);
    } finally {
      await conn.http.close();
    }
  }
  return summary;
}

export async function syncWandbRuns(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const env = options.env ?? process.env;
  const files = await findOfflineRuns(dir);
  const summary: SyncSummary = { spools: files.length, sent: 0, duplicates: 0, failed: [] };
  if (files.length === 0) return summary;
  const baseUrl = readEnv(env, 'WANDB_BASE_URL') ?? 'https://api.wandb.ai';
  const apiKey = readEnv(env, 'WANDB_API_KEY') ?? apiKeyFromNetrc(baseUrl, env);
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
      const runFiles: string[] = [];
      let exitCode: number | undefined;
      for (const r of records) {
        if (r.kind === 'config') Object.assign(config, r.items);
        else if (r.kind === 'history') lines.push(wandbJson(r.items ?? {}));
        else if (r.kind === 'summary') Object.assign(summaryValues, r.items);
        else if (r.kind === 'exit') exitCode = r.exitCode;
        else if (r.kind === 'files') runFiles.push(...(r.files ?? []));
      }
      await upsertBucket(conn, {
        name: run.runId, project: run.project, entity: run.entity, displayName: run.displayName, notes: run.notes,
        groupName: run.group, jobType: run.jobType, tags: run.tags, config,
      });
      // At most 1000 rows and about 10 MiB per post (wandb-core's request cap).
      let sent = 0;
      for (let i = 0; i < lines.length; i += 1000) {
        for (const chunk of chunkLines(lines.slice(i, i + 1000), (l) => l)) {
          await fileStream(conn, run.entity, run.project, run.runId, { files: { 'wandb-history.jsonl': { offset: base + sent, content: chunk } } });
          sent += chunk.length;
        }
        out(`  ${sent}/${lines.length} history rows`);
      }
      // The summary: one line, always at offset 0, as wandb-core writes it.
      const line = summaryLine(summaryValues, out);
      // Run files (FilesRecords), then wandb-summary.json and config.yaml as wandb-core adds them at
      // finish, all before `complete`, as wandb-core's finish order.
      const filesDir = join(dirname(file), 'files');
      for (const f of writeRunInfoFiles(filesDir, config, line)) runFiles.push(f.path);
      requireAllUploaded(await uploadRunFiles(conn, run.entity, run.project, run.runId, filesDir, runFiles, out));
      await fileStream(conn, run.entity, run.project, run.runId, {
        ...(line !== undefined ? { files: { 'wandb-summary.json': { offset: 0, content: [line] } } } : {}),
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
