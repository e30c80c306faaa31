/** MLflow tracking server over REST (/api/2.0/mlflow/...), every call retried per the shared policy. */
import { BackendError } from '../../core/errors.js';
import { HttpClient, HttpStatusError, HttpTransportError, httpError } from '../../io/http.js';
import { classifyError, withRetry, type RetryDecision, type RetryPolicy } from '../../io/retry.js';
import { metricPointKey, wireMetricValue } from './keys.js';
import { PARAM_IMMUTABLE, type ExperimentInfo, type MlflowKV, type MlflowMetric, type MlflowStore, type RunData, type RunInfo, type RunStatus } from './store.js';
import { lazy } from '../../io/lazy.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

const API = '/api/2.0/mlflow';
/** Tag carrying a client-generated key, so a retried runs/create never makes a second run. */
export const CLIENT_KEY_TAG = 'trackspec.client_key';

export interface RestStoreOptions {
  url: string;
  headers: Record<string, string>;
  insecureTls: boolean;
  retry: Partial<RetryPolicy>;
}

interface WireRunInfo {
  run_id?: string;
  run_uuid?: string;
  experiment_id: string;
  run_name?: string;
  status?: RunStatus;
  artifact_uri?: string;
  start_time?: number;
}

function runInfo(w: WireRunInfo): RunInfo {
  return {
    runId: (w.run_id ?? w.run_uuid)!,
    experimentId: String(w.experiment_id),
    runName: w.run_name ?? '',
    status: w.status ?? 'RUNNING',
    artifactUri: w.artifact_uri ?? '',
    startTime: Number(w.start_time ?? 0),
  };
}

/**
 * The shared classification, minus the MLflow 5xx answers that are not transient: the file store
 * answers 500 INTERNAL_ERROR for a changed param in log-batch and 500 INVALID_STATE for a run in a
 * deleted experiment; 501 is NOT_IMPLEMENTED.
 */
export function classifyMlflowError(err: unknown): RetryDecision {
  if (err instanceof HttpStatusError) {
    if (err.status === 501 || err.code === 'INVALID_STATE' || /Changing param values is not allowed/.test(err.message)) return { retry: false };
  }
  return classifyError(err);
}

/** True when a failed request may still have been applied by the server (so a retry could duplicate it). */
function ambiguous(err: unknown): boolean {
  if (err instanceof HttpTransportError) return err.mayHaveReachedServer;
  return err instanceof HttpStatusError && err.status >= 500;
}

const pointKey = (m: { timestamp: number; step: number; value: number }) => metricPointKey(m.timestamp, m.step, m.value);

/** Strip userinfo so credentials never reach messages. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

export class RestStore implements MlflowStore {
  readonly target: string;
  readonly http: HttpClient;
  readonly #retry: Partial<RetryPolicy>;
  /** Requests sent, by endpoint (for benchmarks and tests). */
  readonly requestCounts = new Map<string, number>();

  constructor(options: RestStoreOptions) {
    this.target = displayUrl(options.url);
    this.http = new HttpClient({
      baseUrl: this.target,
      headers: options.headers,
      insecureTls: options.insecureTls,
      backend: 'mlflow',
    });
    this.#retry = options.retry;
  }

  /** One API call with retries; resolves with 2xx responses, `undefined` for an accepted 404. */
  async #call<T>(
    method: 'GET' | 'POST',
    endpoint: string,
    payload: unknown,
    what: string,
    allow404 = false,
    onError?: (err: unknown) => void,
    before?: () => Promise<unknown>,
  ): Promise<T | undefined> {
    return withRetry(
      async (attempt) => {
        if (attempt > 1 && before) {
          const replaced = await before();
          if (replaced !== undefined) payload = replaced;
        }
        this.requestCounts.set(endpoint, (this.requestCounts.get(endpoint) ?? 0) + 1);
        const res = await this.http.request<T>(
          method,
          `${API}/${endpoint}`,
          method === 'GET' ? { query: payload as Record<string, string> } : { json: payload },
        );
        if (res.status >= 200 && res.status < 300) return res.body;
        if (allow404 && res.status === 404) return undefined;
        throw httpError('mlflow', what, res);
      },
      {
        policy: this.#retry,
        backend: 'mlflow',
        classify: (err) => {
          onError?.(err);
          return classifyMlflowError(err);
        },
      },
    );
  }

  async getExperimentByName(name: string): Promise<ExperimentInfo | undefined> {
    const r = await this.#call<{ experiment: { experiment_id: string; name: string; artifact_location: string; lifecycle_stage: string } }>(
      'GET', 'experiments/get-by-name', { experiment_name: name }, `get experiment ${JSON.stringify(name)}`, true,
    );
    if (!r || r.experiment.lifecycle_stage === 'deleted') return undefined;
    return { experimentId: String(r.experiment.experiment_id), name: r.experiment.name, artifactLocation: r.experiment.artifact_location };
  }

  async createExperiment(name: string, artifactLocation: string | null, tags: MlflowKV[]): Promise<string> {
    try {
      const r = await this.#call<{ experiment_id: string }>(
        'POST', 'experiments/create',
        { name, ...(artifactLocation ? { artifact_location: artifactLocation } : {}), ...(tags.length ? { tags } : {}) },
        `create experiment ${JSON.stringify(name)}`,
      );
      return String(r!.experiment_id);
    } catch (e) {
      if (e instanceof BackendError && e.code === 'RESOURCE_ALREADY_EXISTS') {
        const existing = await this.getExperimentByName(name);
        if (existing) return existing.experimentId;
      }
      throw e;
    }
  }

  /**
   * runs/create is not idempotent: the run carries a client key tag, and a retry after an ambiguous
   * failure first looks the run up by that key instead of creating a second one.
   */
  async createRun(request: { experimentId: string; startTime: number; runName: string | null; tags: MlflowKV[] }): Promise<RunInfo> {
    const clientKey = crypto().randomBytes(12).toString('hex');
    let maybeCreated = false;
    let found: RunInfo | undefined;
    const r = await this.#call<{ run: { info: WireRunInfo } }>(
      'POST', 'runs/create',
      {
        experiment_id: request.experimentId,
        start_time: request.startTime,
        ...(request.runName ? { run_name: request.runName } : {}),
        tags: [...request.tags, { key: CLIENT_KEY_TAG, value: clientKey }],
      },
      'create run',
      false,
      (err) => {
        if (ambiguous(err)) maybeCreated = true;
      },
      async () => {
        if (!maybeCreated) return undefined;
        const hit = await this.#call<{ runs?: { info: WireRunInfo }[] }>('POST', 'runs/search', {
          experiment_ids: [request.experimentId],
          filter: `tags.${CLIENT_KEY_TAG} = '${clientKey}'`,
          max_results: 1,
        }, 'look up the run being created');
        const run = hit?.runs?.[0];
        if (run) {
          found = runInfo(run.info);
          throw new Error('found'); // stop retrying: the first attempt did create the run
        }
        return undefined;
      },
    ).catch((e: unknown) => {
      if (found) return undefined;
      throw e;
    });
    if (found) return found;
    if (!r) throw new BackendError('mlflow', 'runs/create returned no run');
    return runInfo(r.run.info);
  }

  async getRun(runId: string): Promise<RunData | undefined> {
    const r = await this.#call<{ run: { info: WireRunInfo; data: { params?: MlflowKV[]; tags?: MlflowKV[] } } }>(
      'GET', 'runs/get', { run_id: runId }, `get run ${runId}`, true,
    );
    if (!r) return undefined;
    const kv = (xs: MlflowKV[] | undefined) => Object.fromEntries((xs ?? []).map((x) => [x.key, x.value ?? '']));
    return { info: runInfo(r.run.info), params: kv(r.run.data.params), tags: kv(r.run.data.tags) };
  }

  async updateRun(runId: string, status: RunStatus, endTime?: number): Promise<void> {
    await this.#call('POST', 'runs/update', { run_id: runId, status, ...(endTime !== undefined ? { end_time: endTime } : {}) }, `set run ${runId} ${status}`);
  }

  async logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: MlflowKV[]; tags?: MlflowKV[] }): Promise<void> {
    const payload: Record<string, unknown> = { run_id: runId };
    if (batch.metrics?.length) {
      payload.metrics = batch.metrics.map((m) => ({ key: m.key, value: wireMetricValue(m.value), timestamp: m.timestamp, step: m.step }));
    }
    if (batch.params?.length) payload.params = batch.params;
    if (batch.tags?.length) payload.tags = batch.tags;
    // A retry after an ambiguous failure drops the points the server already has (exactly once).
    let maybeApplied = false;
    const dedupe = async () => {
      if (!maybeApplied || !batch.metrics?.length) return undefined;
      const have = new Map<string, Set<string>>();
      for (const key of new Set(batch.metrics.map((m) => m.key))) {
        have.set(key, new Set((await this.metricHistory(runId, key)).map(pointKey)));
      }
      const rest = batch.metrics.filter((m) => !have.get(m.key)!.has(pointKey(m)));
      return { ...payload, metrics: rest.map((m) => ({ key: m.key, value: wireMetricValue(m.value), timestamp: m.timestamp, step: m.step })) };
    };
    try {
      await this.#call('POST', 'runs/log-batch', payload, `log-batch to run ${runId}`, false, (err) => {
        if (ambiguous(err)) maybeApplied = true;
      }, dedupe);
    } catch (e) {
      if (e instanceof BackendError && /Changing param values is not allowed/.test(e.message)) {
        throw new BackendError('mlflow', `${PARAM_IMMUTABLE} (server: ${e.message.replace(/^mlflow: /, '')})`, { cause: e, status: e.status, code: e.code });
      }
      throw e;
    }
  }

  async metricHistory(runId: string, key: string): Promise<MlflowMetric[]> {
    const r = await this.#call<{ metrics?: { key: string; value: number | string; timestamp: number; step?: number }[] }>(
      'GET', 'metrics/get-history', { run_id: runId, metric_key: key }, `get history of ${key}`,
    );
    return (r?.metrics ?? []).map((m) => ({
      key: m.key,
      value: typeof m.value === 'string' ? Number(m.value === 'NaN' ? NaN : m.value) : m.value,
      timestamp: Number(m.timestamp),
      step: Number(m.step ?? 0),
    }));
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
