/**
 * The one interface every backend folder in `runtime/` implements.
 *
 * A generated tracker class (see `generated/`) validates options, resolves environment variables,
 * gates by process rank and applies the spec's value rules; it then hands work to its backend's
 * `BackendDriver`. Drivers never see unresolved options or values the rules rejected.
 */
import { BackendError } from './errors.js';

export type Values = Record<string, unknown>;

/** An image as `logImages` accepts it: HWC, uint8. */
export interface ImageData {
  data: Uint8Array;
  height: number;
  width: number;
  /** 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA). */
  channels: number;
}

export interface TableData {
  columns?: string[];
  data?: unknown[][];
}

/** What the generated `logArtifact` / `logArtifacts` / `logFigure` methods hand to a driver (artifacts capability). */
export type ArtifactRequest =
  | { kind: 'file'; localPath: string; artifactPath: string | undefined }
  | { kind: 'dir'; localDir: string; artifactPath: string | undefined }
  | { kind: 'figure'; image: ImageData | Uint8Array; artifactFile: string };

export interface DriverContext {
  /** Spec name of the backend, e.g. `tensorboard`. */
  readonly backend: string;
  /** Public class name, e.g. `TensorBoardTracker`. */
  readonly className: string;
  /** Emit a warning once per `key` for this tracker instance. */
  warnOnce(key: string, message: string): void;
  /** Emit a warning. */
  warn(message: string): void;
}

/** A started backend. Created by `BackendDriver.start`. */
export interface TrackerDriver<H> {
  /** What `tracker.tracker` returns: the backend's own handle (writer, run, ...). */
  readonly handle: H;
  storeInitConfiguration(values: Readonly<Values>): Promise<void>;
  /**
   * Log already-filtered values. Must not block on I/O and must not keep a reference to `values`
   * after returning (copy or encode synchronously): callers may reuse the object.
   */
  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void;
  logImages?(
    values: Readonly<Record<string, ImageData | ImageData[]>>,
    step: number | undefined,
    kwargs: Readonly<Values> | undefined,
  ): void;
  logTable?(name: string, table: TableData, step: number | undefined, kwargs: Readonly<Values> | undefined): void;
  /**
   * Queue an artifact (artifacts capability). Bad input throws here (ValidationError); the upload
   * runs in the background and its failure is reported by flush()/finish().
   */
  logArtifact?(request: ArtifactRequest): void;
  /** Resolve when everything logged so far is durable; reject with the first write failure. */
  flush(): Promise<void>;
  /** Flush, then close the run. Called once. */
  finish(): Promise<void>;
}

/** What a backend folder exports: a factory for started drivers. */
export interface BackendDriver<O, H> {
  /** False while the backend's transport has not been built: `start()` then throws. */
  readonly available: boolean;
  readonly start: (options: O, ctx: DriverContext) => Promise<TrackerDriver<H>>;
}

/** The handle type a driver produces, for typing `tracker.tracker`. */
export type DriverHandle<D> = D extends BackendDriver<never, infer H> ? H : never;

/**
 * Placeholder for a backend whose transport is not built yet. `start()` fails loudly with a
 * `BackendError`; nothing is ever pretended to be logged.
 */
export function unavailableDriver(backend: string, issue: string): BackendDriver<unknown, unknown> {
  return {
    available: false,
    start: () =>
      Promise.reject(
        new BackendError(
          backend,
          `the ${backend} transport is not built in this version of trackspec (tracked in ${issue}); ` +
            `nothing was logged. Use another backend (e.g. 'tensorboard') until it lands.`,
        ),
      ),
  };
}
