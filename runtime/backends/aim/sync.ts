/**
 * `trackspec sync DIR` for Aim spools: write messages of runs whose server was unreachable. The
 * run's resources are re-created on the server under the handlers recorded in the spool header
 * (the messages name them), then the messages are sent in order, each acknowledged in the spool
 * after the server's `OK`. Re-sending a message after a crash applies it again, which is harmless
 * because replay restarts at the first unacknowledged message and goes in order (run.ts). No run
 * lock is taken (the writer is gone).
 */
import { listSpools, replaySpool, type SyncSummary } from '../../io/spool.js';
import { withRetry } from '../../io/retry.js';
import { AimClient } from './client.js';
import { parseAimUri } from './config.js';
import { createRunResources, runHandlerList, type AimSpoolMeta } from './session.js';

export async function syncAimSpools(dir: string, options: { out?: (line: string) => void } = {}): Promise<SyncSummary> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const spools = (await listSpools(dir, 'aim')).filter((s) => s.pending > 0);
  const summary: SyncSummary = { spools: spools.length, sent: 0, duplicates: 0, failed: [] };
  for (const s of spools) {
    const meta = s.header.meta as unknown as AimSpoolMeta;
    out(`${s.path}: ${s.pending} write message(s) of Aim run ${meta.hash} for ${s.header.target}`);
    let client: AimClient | undefined;
    try {
      const { address } = parseAimUri(s.header.target);
      client = await withRetry(() => AimClient.open(address), { policy: { deadlineMs: 30_000 }, backend: 'aim' });
      await createRunResources(client, meta.hash, meta.handlers);
      const c = client;
      const r = await replaySpool(
        s.path,
        async (records) => {
          for (const rec of records as { m: string }[]) {
            const message = Buffer.from(rec.m, 'base64');
            await withRetry(
              async (attempt) => {
                if (attempt > 1) await c.reconnect();
                await c.write(message);
              },
              { policy: { deadlineMs: 30_000 }, backend: 'aim' },
            );
          }
        },
        { chunk: 50, onProgress: (done, total) => (done === total || done % 1000 === 0 ? out(`  ${done}/${total} messages`) : undefined) },
      );
      for (const h of runHandlerList(meta.handlers)) await client.release(h);
      summary.sent += r.sent;
    } catch (e) {
      summary.failed.push({ path: s.path, error: (e as Error).message });
      out(`  failed: ${(e as Error).message} (run sync again later; it resumes where it stopped)`);
    } finally {
      await client?.close().catch(() => undefined);
    }
  }
  return summary;
}
