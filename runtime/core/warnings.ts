/**
 * Warnings go through one handler so applications (and tests) can route them.
 * The default prints `trackspec: <message>` to stderr.
 */
export type WarningHandler = (message: string) => void;

const defaultHandler: WarningHandler = (message) => {
  process.stderr.write(`trackspec: warning: ${message}\n`);
};

let handler: WarningHandler = defaultHandler;

/** Replace the warning handler; pass `undefined` to restore the default. Returns the previous one. */
export function setWarningHandler(next: WarningHandler | undefined): WarningHandler {
  const previous = handler;
  handler = next ?? defaultHandler;
  return previous;
}

export function warn(message: string): void {
  handler(message);
}

/** A set-backed "warn once per key" helper, one per tracker instance. */
export class WarnOnce {
  private readonly seen = new Set<string>();
  warn(key: string, message: string): void {
    if (this.seen.has(key)) return;
    this.seen.add(key);
    warn(message);
  }
}
