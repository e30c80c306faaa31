/** What every command shares: the usage text, the error for bad arguments, and terminal colour. */

export const USAGE = `usage:
  trackspec generate [--spec DIR] [--out DIR] [--check] [--no-cache]
      Regenerate the SDK from a spec directory (default: this package's spec/ → generated/).
      --check writes nothing: exit 1 listing stale, missing and extra files, 0 when current.
      --no-cache always runs the emitters (the cache in node_modules/.cache/trackspec only skips
      them when the spec, the generator's code and the emitter versions are byte-identical).
      Needs the generator's toolchain, which installing the SDK does not bring (the command
      names the packages to install when they are missing).
  trackspec validate FILE... [--format text|json|github] [--max-bytes N]
      Check tracker config files (YAML or JSON). Exit 0 valid, 1 invalid, 2 usage or unreadable file.
      Files over --max-bytes (default 8388608, 8 MiB), binary files and YAML alias bombs are
      reported as problems (exit 1).
  trackspec sync [DIR]
      Upload records spooled while a server was unreachable or logged offline: MLflow spools
      (default DIR: $TRACKSPEC_SPOOL_DIR, else $XDG_STATE_HOME/trackspec/spool, else
      ~/.local/state/trackspec/spool: MLflow and Aim), Comet offline directories (e.g.
      .cometml-runs) and W&B offline runs. Resumable.
      Exit 0 when everything was uploaded, 1 when a spool could not be.
  trackspec demo [--logdir DIR] [--mlruns DIR | --no-mlflow] [--steps N] [--seed N]
      Train a small model on synthetic data and log it to TensorBoard (default ./runs) and to an
      MLflow file store (default ./mlruns).
  trackspec --help | --version`;

/** Bad arguments: the CLI prints the message and the usage, exit 2. */
export class UsageError extends Error {}

export function color(code: string, s: string, stream: NodeJS.WriteStream): string {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return s;
  if (!stream.isTTY) return s;
  return `\u001b[${code}m${s}\u001b[0m`;
}
