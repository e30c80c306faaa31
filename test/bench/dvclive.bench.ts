/**
 * DVCLive benchmark (test/bench/local-backend.ts): log() cost, points/s to disk (TSV rows,
 * metrics.json and dvc.yaml written) and RSS growth, against TensorBoard in the same run. Pending rows
 * are bounded: a write pass runs every 100k rows.
 *
 * Run directly: `npx tsx test/bench/dvclive.bench.ts`.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DVCLiveTracker } from '../../generated/index.gen.js';
import { localBackendBench } from './local-backend.js';
import type { BenchRow } from './tensorboard.bench.js';

export default function bench(): Promise<BenchRow[]> {
  return localBackendBench('dvclive', (root, name) => new DVCLiveTracker({ dir: path.join(root, name), dvcyaml: path.join(root, name, 'dvc.yaml') }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}
