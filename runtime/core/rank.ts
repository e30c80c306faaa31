/**
 * Process rank detection for main-process gating. The first variable set wins:
 * RANK (torchrun, accelerate), SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK; LOCAL_RANK only when
 * none of those is set (single-node launchers that set nothing else).
 */
import { ConfigError } from './errors.js';
import { readEnv, type Env } from './env.js';

export const RANK_VARIABLES = ['RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'LOCAL_RANK'] as const;

export function processRank(env: Env = process.env): number {
  for (const name of RANK_VARIABLES) {
    const raw = readEnv(env, name);
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw)) {
      throw new ConfigError(
        `environment variable ${name} must be a non-negative integer process rank; got ${JSON.stringify(raw)}. Fix or unset ${name}.`,
        { envVar: name },
      );
    }
    return Number(raw);
  }
  return 0;
}

export function isMainProcess(env: Env = process.env): boolean {
  return processRank(env) === 0;
}
