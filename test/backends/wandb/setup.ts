/** What every W&B driver test starts from: no W&B variable of the machine, a fresh local test server, a temp dir, captured warnings. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { vi } from 'vitest';
import { setWarningHandler } from '../../../generated/index.gen.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { WandbTestServer } from './server.js';

const ENV = ['WANDB_API_KEY', 'WANDB_BASE_URL', 'WANDB_PROJECT', 'WANDB_ENTITY', 'WANDB_MODE', 'WANDB_DIR', 'WANDB_RUN_ID', 'WANDB_RESUME', 'WANDB_NAME', 'WANDB_NOTES', 'WANDB_TAGS', 'WANDB_RUN_GROUP', 'WANDB_JOB_TYPE', 'RANK', 'LOCAL_RANK', 'NETRC', 'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];

/** For beforeEach: the environment cleared and pointed at a new test server. */
export async function wandbTestSetup(dirPrefix: string): Promise<{ server: WandbTestServer; dir: string; warnings: string[] }> {
  for (const v of ENV) vi.stubEnv(v, undefined);
  const server = await WandbTestServer.start();
  vi.stubEnv('WANDB_API_KEY', server.apiKey);
  vi.stubEnv('WANDB_BASE_URL', server.url);
  const warnings: string[] = [];
  setWarningHandler((m) => warnings.push(m));
  return { server, dir: tempDir(dirPrefix), warnings };
}

/** For afterEach. */
export async function wandbTestTeardown(server: WandbTestServer): Promise<void> {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.close();
}

/**
 * Run a child process that starts an online W&B run `dying` in `dir` (against the test server in
 * the environment), then runs `body` and ends however `body` makes it end. Returns the run's entity
 * and id (for server.run(entity, 'dying', runId)) once the child has exited.
 */
export async function runDyingChild(dir: string, body: string): Promise<{ entity: string; runId: string }> {
  const script = join(tempDir(), 'child.mts');
  writeFileSync(
    script,
    `import { WandBTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new WandBTracker({ run_name: 'dying', dir: ${JSON.stringify(dir)} });
await t.start();
process.stdout.write(t.tracker.entity + ' ' + t.tracker.runId + '\\n');
${body}
`,
  );
  const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  await once(proc, 'close');
  const [entity, runId] = stdout.trim().split(' ');
  return { entity: entity!, runId: runId! };
}
