/**
 * Trackio benchmark (test/bench/local-backend.ts): log() cost, points/s to disk (rows committed to
 * the SQLite database) and RSS growth, against TensorBoard in the same run. Pending rows are bounded:
 * a write pass runs every 10k rows. Needs node:sqlite (Node.js >= 22.13); elsewhere it reports that
 * it was skipped.
 *
 * Run directly: `npx tsx test/bench/trackio.bench.ts`.
 */
import { pathToFileURL } from 'node:url';
import { TrackioTracker } from '../../generated/index.gen.js';
import { sqliteAvailable } from '../../runtime/backends/trackio/index.js';
import { localBackendBench } from './local-backend.js';
import type { BenchRow } from './tensorboard.bench.js';

export default async function bench(): Promise<BenchRow[]> {
  if (!sqliteAvailable()) return [{ name: `trackio: skipped, node:sqlite is not in Node.js ${process.version} (needs >= 22.13)`, value: 0, unit: '' }];
  return localBackendBench('trackio', (root, name) => new TrackioTracker({ run_name: name, trackio_dir: root }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}
