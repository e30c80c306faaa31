/** `trackspec demo`: the example training run in examples/two-moons.ts. */
import { parseArgs } from 'node:util';
import { UsageError } from '../usage.js';

export async function cmdDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { logdir: { type: 'string' }, mlruns: { type: 'string' }, 'no-mlflow': { type: 'boolean', default: false }, steps: { type: 'string' }, seed: { type: 'string' } },
    allowPositionals: false,
  });
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const { runDemo } = await import('../../examples/two-moons.js');
  await runDemo({
    logdir: values.logdir,
    mlruns: values['no-mlflow'] ? null : values.mlruns,
    steps: num('steps', values.steps),
    seed: num('seed', values.seed),
  });
  return 0;
}
