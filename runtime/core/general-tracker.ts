/**
 * The tracker contract (Accelerate's GeneralTracker) as a TypeScript base class.
 * Generated backends extend it through `SpecTracker`; users may subclass it directly for a custom
 * tracker and pass an instance to `Tracking` (or register the class by name).
 */
import type { ImageData, TableData, Values } from './driver.js';

export abstract class GeneralTracker<H = unknown> {
  /** Unique lowercase name; the key of init_kwargs and log kwargs. */
  abstract readonly name: string;
  /** Whether Tracking must pass a logging_dir. */
  abstract readonly requiresLoggingDirectory: boolean;
  /** When true, methods are no-ops on processes whose rank is not 0. */
  readonly mainProcessOnly: boolean = true;
  /** The backend's own handle. */
  abstract get tracker(): H;

  /** Lazy initialisation; idempotent. */
  start(): Promise<void> {
    return Promise.resolve();
  }
  storeInitConfiguration(_values: Values): Promise<void> {
    return Promise.resolve();
  }
  log(_values: Values, _step?: number, _kwargs?: Values): void {}
  flush(): Promise<void> {
    return Promise.resolve();
  }
  finish(): Promise<void> {
    return Promise.resolve();
  }
}

/** Optional capabilities a tracker may have (see each backend's `capabilities` in the spec). */
export interface ImageLogger {
  logImages(values: Record<string, ImageData | ImageData[]>, step?: number, kwargs?: Values): void;
}
export interface TableLogger {
  logTable(name: string, table: TableData, step?: number, kwargs?: Values): void;
}
export interface ArtifactLogger {
  logArtifact(localPath: string, artifactPath?: string): void;
  logArtifacts(localDir: string, artifactPath?: string): void;
  logFigure(image: ImageData | Uint8Array, artifactFile: string): void;
}
