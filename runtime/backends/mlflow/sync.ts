/**
 * `trackspec sync [DIR]` for MLflow spools: replay every unsent record to where the run lives, exactly
 * once. A chunk whose ack was not written (a crash between send and ack) is re-sent, so metrics are
 * de-duplicated against the server's own history first (same key, timestamp, step and value);
 * params are idempotent in MLflow (same value accepted) and tags overwrite.
 */
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BackendError } from '../../core/errors.js';
import { describeRanges } from '../../io/framing.js';
import { listSpools, replaySpool, SpoolDamagedError, type SpoolHeader, type SyncSummary } from '../../io/spool.js';
import type { Env } from '../../core/env.js';
import { artifactTarget, fileDigest, sendArtifact, type ArtifactTarget, type RestAccess } from './artifacts.js';
import { openStore, type SpoolRecord } from './index.js';
import type { RestStore } from './rest-store.js';
import { MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, MAX_TAGS_PER_BATCH, metricPointKey } from './keys.js';
import type { MlflowKV, MlflowMetric, MlflowStore } from './store.js';

const metricValue = (v: number | string) => (typeof v === 'number' ? v : v === 'NaN' ? NaN : Number(v));
const pointKey = metricPointKey;

type ArtifactRecord = SpoolRecord & { t: 'artifact' };

/**
 * Upload one spooled artifact from its copy next to the spool, after checking the copy's size and
 * sha256 against the record (a PUT of the same path is idempotent, so a re-sent chunk is harmless).
 */
async function replayArtifact(spoolPath: string, a: ArtifactRecord, target: ArtifactTarget, deadlineMs: number): Promise<string> {
  const copy = join(dirname(spoolPath), a.file);
  let digest: { size: number; sha256: string };
  try {
    digest = await fileDigest(copy);
  } catch (e) {
    throw new BackendError('mlflow', `the spooled copy ${copy} of ${a.source} (artifact ${a.path}) cannot be read: ${(e as Error).message}`, { cause: e });
  }
  if (digest.size !== a.size || digest.sha256 !== a.sha256) {
    throw new BackendError('mlflow', `the spooled copy ${copy} of ${a.source} (artifact ${a.path}) is damaged: ${digest.size} bytes, sha256 ${digest.sha256}, expected ${a.size} bytes, sha256 ${a.sha256}; it was not uploaded`);
  }
  await sendArtifact(target, a.path, { file: copy }, { deadlineMs });
  return copy;
}

/** Replay one spool; `counts` is updated as records go out (also when the replay then fails). Returns the artifact copies uploaded. */
async function replayOne(
  path: string,
  store: MlflowStore,
  rest: RestAccess | undefined,
  deadlineMs: number,
  out: (line: string) => void,
  counts: { sent: number; duplicates: number },
): Promise<string[]> {
  const copies: string[] = [];
  const targets = new Map<string, ArtifactTarget>();
  const seen = new Map<string, Set<string>>(); // run\0key → points already on the server
  const history = async (run: string, key: string) => {
    const id = `${run}\u0000${key}`;
    let s = seen.get(id);
    if (!s) {
      s = new Set((await store.metricHistory(run, key)).map((m) => pointKey(m.timestamp, m.step, m.value)));
      seen.set(id, s);
    }
    return s;
  };
  await replaySpool(
    path,
    async (records) => {
      const byRun = new Map<string, { metrics: MlflowMetric[]; params: MlflowKV[]; tags: MlflowKV[]; artifacts: ArtifactRecord[]; status?: SpoolRecord & { t: 'status' } }>();
      const slot = (run: string) => {
        let s = byRun.get(run);
        if (!s) byRun.set(run, (s = { metrics: [], params: [], tags: [], artifacts: [] }));
        return s;
      };
      for (const r of records as SpoolRecord[]) {
        const s = slot(r.run);
        if (r.t === 'metric') {
          const value = metricValue(r.value);
          const known = await history(r.run, r.key);
          const k = pointKey(r.ts, r.step, value);
          if (known.has(k)) {
            counts.duplicates++;
            continue;
          }
          known.add(k);
          s.metrics.push({ key: r.key, value, timestamp: r.ts, step: r.step });
        } else if (r.t === 'param') s.params.push({ key: r.key, value: r.value });
        else if (r.t === 'tag') s.tags.push({ key: r.key, value: r.value });
        else if (r.t === 'artifact') s.artifacts.push(r);
        else s.status = r;
      }
      for (const [run, s] of byRun) {
        for (const a of s.artifacts) {
          let target = targets.get(a.uri);
          if (!target) targets.set(a.uri, (target = artifactTarget(a.uri, rest)));
          copies.push(await replayArtifact(path, a, target, deadlineMs));
        }
        for (let i = 0; i < s.params.length; i += MAX_PARAMS_PER_BATCH) await store.logBatch(run, { params: s.params.slice(i, i + MAX_PARAMS_PER_BATCH) });
        for (let i = 0; i < s.tags.length; i += MAX_TAGS_PER_BATCH) await store.logBatch(run, { tags: s.tags.slice(i, i + MAX_TAGS_PER_BATCH) });
        for (let i = 0; i < s.metrics.length; i += MAX_METRICS_PER_BATCH) await store.logBatch(run, { metrics: s.metrics.slice(i, i + MAX_METRICS_PER_BATCH) });
        if (s.status) await store.updateRun(run, s.status.status, s.status.end);
        counts.sent += s.metrics.length + s.params.length + s.tags.length + s.artifacts.length + (s.status ? 1 : 0);
      }
    },
    { chunk: MAX_METRICS_PER_BATCH, onProgress: (done, total) => out(`  ${done}/${total} records`) },
  ).finally(async () => {
    for (const t of targets.values()) if (t.kind === 'http' && t.own) await t.client.close();
  });
  return copies;
}

/** Replay every MLflow spool in `dir`. `out` receives progress lines. */
export async function syncSpools(dir: string, options: { out?: (line: string) => void; env?: Env; retryDeadlineSecs?: number } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const spools = (await listSpools(dir, 'mlflow')).filter((s) => s.pending > 0);
  const summary: SyncSummary = { spools: spools.length, sent: 0, duplicates: 0, failed: [] };
  for (const s of spools) {
    const header: SpoolHeader = s.header;
    out(`${s.path}: ${s.pending} record(s) for ${header.target}${s.tornTail ? ' (a torn last record from a crash is skipped)' : ''}`);
    if (s.damaged.length > 0) out(`  damaged: ${describeRanges(s.damaged)} cannot be read; every intact record before and after is uploaded`);
    const deadlineSecs = options.retryDeadlineSecs ?? 30;
    const { store, rest } = await openStore(header.target, deadlineSecs, options.env);
    const access: RestAccess | undefined = rest && { ...rest, http: (store as RestStore).http };
    const counts = { sent: 0, duplicates: 0 };
    try {
      const copies = await replayOne(s.path, store, access, deadlineSecs * 1000, out, counts);
      // The spool is done: its artifact copies are no longer needed.
      for (const c of copies) await rm(c, { force: true });
    } catch (e) {
      summary.failed.push({ path: s.path, error: (e as Error).message });
      if (e instanceof SpoolDamagedError) out(`  failed: ${e.message}`);
      else out(`  failed: ${(e as Error).message} (run sync again later; it resumes where it stopped)`);
    } finally {
      summary.sent += counts.sent;
      summary.duplicates += counts.duplicates;
      await store.close();
    }
  }
  return summary;
}
