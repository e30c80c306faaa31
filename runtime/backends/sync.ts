/** `trackspec sync [DIR]`: replay every backend's spools found in DIR. */
import type { Env } from '../core/env.js';
import { syncAimSpools } from './aim/sync.js';
import { syncCometSpools } from './comet_ml/sync.js';
import type { SyncSummary } from '../io/spool.js';
import { syncSpools as syncMlflowSpools } from './mlflow/sync.js';
import { syncWandbRuns, syncWandbSpools, syncWandbUploads } from './wandb/sync.js';

export type { SyncSummary } from '../io/spool.js';

export async function syncAll(dir: string, options: { out?: (line: string) => void; env?: Env } = {}): Promise<SyncSummary> {
  const parts = [await syncMlflowSpools(dir, options), await syncCometSpools(dir, options), await syncWandbSpools(dir, options), await syncWandbRuns(dir, options), await syncWandbUploads(dir, options), await syncAimSpools(dir, options)];
  return {
    spools: parts.reduce((a, p) => a + p.spools, 0),
    sent: parts.reduce((a, p) => a + p.sent, 0),
    duplicates: parts.reduce((a, p) => a + p.duplicates, 0),
    failed: parts.flatMap((p) => p.failed),
  };
}
