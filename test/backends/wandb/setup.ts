/** What every W&B driver test starts from: no W&B variable of the machine, a fresh local test server, a temp dir, captured warnings. */
import { vi } from 'vitest';
import { setWarningHandler } from '../../../generated/index.gen.js';
import { tempDir } from '../../support/helpers.js';
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
