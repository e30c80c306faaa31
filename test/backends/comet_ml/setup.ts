/** What every Comet driver test starts from: no Comet variable of the machine, a fresh local test server, a temp offline directory, captured warnings. */
import { vi } from 'vitest';
import { setWarningHandler } from '../../../generated/index.gen.js';
import { tempDir } from '../../support/helpers.js';
import { CometTestServer } from './server.js';

const ENV = ['COMET_API_KEY', 'COMET_WORKSPACE', 'COMET_PROJECT_NAME', 'COMET_URL_OVERRIDE', 'COMET_EXPERIMENT_KEY', 'COMET_OFFLINE_DIRECTORY', 'COMET_START_ONLINE', 'COMET_START_MODE', 'RANK', 'LOCAL_RANK'];

/** For beforeEach: the environment cleared (HOME too: no ~/.comet.config) and pointed at a new test server. */
export async function cometTestSetup(offlinePrefix: string, serverOptions?: Parameters<typeof CometTestServer.start>[0]): Promise<{ server: CometTestServer; offline: string; warnings: string[] }> {
  for (const v of ENV) vi.stubEnv(v, undefined);
  vi.stubEnv('HOME', tempDir('home-'));
  const server = await CometTestServer.start(serverOptions);
  vi.stubEnv('COMET_API_KEY', server.apiKey);
  vi.stubEnv('COMET_URL_OVERRIDE', server.clientlibUrl);
  const warnings: string[] = [];
  setWarningHandler((m) => warnings.push(m));
  return { server, offline: tempDir(offlinePrefix), warnings };
}

/** For afterEach. */
export async function cometTestTeardown(server: CometTestServer): Promise<void> {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.close();
}
