/** The two places MLflow runs can go (a tracking server over REST, a local file store) behind one interface. */

export interface MlflowMetric {
  key: string;
  value: number;
  /** ms since the epoch, taken at log() time. */
  timestamp: number;
  step: number;
}

export interface MlflowKV {
  key: string;
  value: string;
}

export interface ExperimentInfo {
  experimentId: string;
  name: string;
  artifactLocation: string;
}

export type RunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';

export interface RunInfo {
  runId: string;
  experimentId: string;
  runName: string;
  status: RunStatus;
  artifactUri: string;
  startTime: number;
}

export interface RunData {
  info: RunInfo;
  params: Record<string, string>;
  tags: Record<string, string>;
}

export interface MlflowStore {
  /** Where runs go, without credentials (for messages and spool headers). */
  readonly target: string;
  getExperimentByName(name: string): Promise<ExperimentInfo | undefined>;
  /** Create an experiment; if another writer created it meanwhile, return that one's id. */
  createExperiment(name: string, artifactLocation: string | null, tags: MlflowKV[]): Promise<string>;
  createRun(request: { experimentId: string; startTime: number; runName: string | null; tags: MlflowKV[] }): Promise<RunInfo>;
  getRun(runId: string): Promise<RunData | undefined>;
  updateRun(runId: string, status: RunStatus, endTime?: number): Promise<void>;
  /** One request's worth (≤ 1000 metrics, ≤ 100 params, ≤ 100 tags, ≤ 1000 in all). */
  logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: MlflowKV[]; tags?: MlflowKV[] }): Promise<void>;
  /** Every logged point of one metric (for de-duplicating replays). */
  metricHistory(runId: string, key: string): Promise<MlflowMetric[]>;
  close(): Promise<void>;
}

/** Thrown by stores when a param already has a different value (MLflow params are immutable). */
export const PARAM_IMMUTABLE = 'params are immutable in MLflow: a param that was already logged cannot change its value';
