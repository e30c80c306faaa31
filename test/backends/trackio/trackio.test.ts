/**
 * Trackio backend. The SQLite tests need node:sqlite (Node.js >= 22.13, or 22.5 with
 * --experimental-sqlite); on an older Node.js they are skipped and the ConfigError is tested instead.
 * To run them on a machine whose default node is 20: `<node22> node_modules/vitest/vitest.mjs run test/backends/trackio`.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, Tracking, TrackioTracker, ValidationError } from '../../../generated/index.gen.js';
import { canonicalProjectName, defaultTrackioDir, readableName, sqliteAvailable } from '../../../runtime/backends/trackio/index.js';
import { setWarningHandler } from '../../../runtime/core/warnings.js';
import { ROOT, runCli, tempDir } from '../../support/helpers.js';

const HAS_SQLITE = sqliteAvailable();
const UPSTREAM = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'fixtures/upstream-accelerate-run.json'), 'utf8')) as {
  schema: Record<string, unknown>;
  metrics_rows: Array<[string, number, string, string]>;
  configs: Array<[string, Record<string, unknown>]>;
};

interface Db {
  prepare(sql: string): { all(...p: unknown[]): Record<string, unknown>[]; get(...p: unknown[]): Record<string, unknown> | undefined };
  exec(sql: string): void;
  close(): void;
}
function openDb(file: string, readOnly = true): Db {
  const { DatabaseSync } = createRequire(import.meta.url)('node:sqlite') as { DatabaseSync: new (f: string, o?: object) => Db };
  const db = new DatabaseSync(file, { readOnly });
  db.exec('PRAGMA busy_timeout = 10000'); // as trackio's readers (sqlite3.connect(timeout=30))
  return db;
}

/** The schema as the fixture records it (PRAGMA table_info / index_info / index_list). */
function schemaOf(file: string): Record<string, unknown> {
  const db = openDb(file);
  try {
    const out: Record<string, unknown> = {};
    for (const o of db.prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all()) {
      const name = String(o.name);
      if (o.type === 'table') {
        out[`table ${name}`] = db.prepare(`PRAGMA table_info(${name})`).all().map((r) => [r.name, r.type, r.notnull, r.dflt_value, r.pk]);
      } else {
        const info = db.prepare(`PRAGMA index_list(${String(o.tbl_name)})`).all().find((r) => r.name === name)!;
        out[`index ${name}`] = { table: o.tbl_name, columns: db.prepare(`PRAGMA index_info(${name})`).all().map((r) => r.name), unique: info.unique, partial: info.partial };
      }
    }
    return out;
  } finally {
    db.close();
  }
}

interface RunRows {
  rows: Array<{ run_id: string; run_name: string; step: number; metrics: string; kind: string; timestamp: string; log_id: string | null }>;
  configs: Array<{ run_id: string; run_name: string; config: Record<string, unknown> }>;
}
function readRows(file: string): RunRows {
  const db = openDb(file);
  try {
    const text = (v: unknown) => (typeof v === 'string' ? v : Buffer.from(v as Uint8Array).toString('utf8'));
    return {
      rows: db.prepare('SELECT run_id, run_name, step, metrics, typeof(metrics) AS kind, timestamp, log_id FROM metrics ORDER BY id').all().map((r) => ({ ...r, metrics: text(r.metrics) })) as RunRows['rows'],
      configs: db.prepare('SELECT run_id, run_name, config FROM configs ORDER BY id').all().map((r) => ({ run_id: String(r.run_id), run_name: String(r.run_name), config: JSON.parse(text(r.config)) as Record<string, unknown> })),
    };
  } finally {
    db.close();
  }
}

let warnings: string[];
let restore: ReturnType<typeof setWarningHandler>;
beforeEach(() => {
  warnings = [];
  restore = setWarningHandler((m) => void warnings.push(m));
});
afterEach(() => {
  setWarningHandler(restore);
});

describe('Trackio: what needs no SQLite', () => {
  it('project file names and generated run names follow trackio', () => {
    expect(canonicalProjectName('my.model v2')).toBe('mymodelv2');
    expect(canonicalProjectName('...')).toBe('default');
    expect(readableName(new Set())).toBe('dainty-sunset-0');
    expect(readableName(new Set(['dainty-sunset-0']))).toBe('brave-river-1');
  });

  it("default directory: TRACKIO_DIR option/env, else $HF_HOME/trackio, else the XDG cache's huggingface/trackio", () => {
    expect(defaultTrackioDir({ HF_HOME: '/h' })).toBe('/h/trackio');
    expect(defaultTrackioDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/huggingface/trackio');
    process.env.TRACKIO_DIR = '/from/env';
    try {
      expect(new TrackioTracker({ run_name: 'p' }).options.trackio_dir).toBe('/from/env');
    } finally {
      delete process.env.TRACKIO_DIR;
    }
  });

  it('trackspec validate accepts trackio options and names a wrong one', () => {
    const root = tempDir('trackio-cfg-');
    const good = path.join(root, 'good.yaml');
    fs.writeFileSync(good, 'project_name: p\nlog_with: [trackio]\ninit_kwargs:\n  trackio: { name: r1, resume: allow, config: { a: 1 } }\n');
    expect(runCli(['validate', good])).toMatchObject({ code: 0 });
    const bad = path.join(root, 'bad.yaml');
    fs.writeFileSync(bad, 'project_name: p\nlog_with: [trackio]\ninit_kwargs:\n  trackio: { resume: sometimes }\n');
    const r = runCli(['validate', bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('/init_kwargs/trackio/resume  must be one of "never", "allow", "must"; got "sometimes"');
  }, 60_000);

  it("'all' includes trackio exactly when this Node.js has SQLite; naming it is always valid", () => {
    const names = (t: Tracking) => t.logWith.map((e) => ('trackerName' in e ? e.trackerName : e.name));
    expect(names(new Tracking({ log_with: 'all', logging_dir: '/tmp' })).includes('trackio')).toBe(HAS_SQLITE);
    expect(names(new Tracking({ log_with: ['trackio'] }))).toEqual(['trackio']);
  });

  it.runIf(!HAS_SQLITE)('without node:sqlite, start() is a ConfigError naming the Node.js requirement', async () => {
    const t = new TrackioTracker({ run_name: 'p', trackio_dir: tempDir('trackio-') });
    const err = await t.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/Node\.js 22\.13/);
    expect((err as Error).message).toContain(process.version);
  });
});

describe.runIf(HAS_SQLITE)('Trackio: the store trackio 0.36.0 reads', () => {
  async function run(extra: Record<string, unknown> = {}, dir = tempDir('trackio-')) {
    const t = new TrackioTracker({ run_name: 'p', trackio_dir: dir, ...extra });
    await t.start();
    return { t, dir, db: path.join(dir, 'p.db') };
  }

  it("an Accelerate-style run: trackio's schema, and the rows and config upstream writes (fixtures/upstream-accelerate-run.json)", async () => {
    const { t, db } = await run();
    await t.storeInitConfiguration({ lr: 0.001 });
    for (let s = 0; s < 3; s++) t.log({ loss: 1 / (s + 1), acc: s / 3 }, s);
    await t.finish();
    expect(fs.readdirSync(path.dirname(db))).toEqual(['p.db']); // WAL checkpointed and removed at finish()
    expect(schemaOf(db)).toEqual(UPSTREAM.schema);
    const r = readRows(db);
    expect(r.rows.map((x) => [x.run_name, x.step, x.metrics, x.kind === 'blob' ? 'bytes' : x.kind])).toEqual(UPSTREAM.metrics_rows);
    const { allow_val_change: _dropped, ...upstreamConfig } = UPSTREAM.configs[0]![1];
    expect(r.configs.map((c) => [c.run_name, { ...c.config, _Created: '<time>' }])).toEqual([[UPSTREAM.configs[0]![0], upstreamConfig]]);
    expect(r.rows.every((x) => x.run_id === t.tracker.id && /^[0-9a-f]{32}$/.test(x.log_id!))).toBe(true);
    expect(r.rows[0]!.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
  });

  it('steps as trackio: step-less → next; explicit used as given; next = max(next, step + 1)', async () => {
    const { t, db } = await run();
    t.log({ a: 1 });
    t.log({ a: 2 });
    t.log({ a: 3 }, 5);
    t.log({ a: 4 });
    t.log({ a: 5 }, 2);
    t.log({ a: 6 });
    await t.finish();
    expect(readRows(db).rows.map((x) => x.step)).toEqual([0, 1, 5, 6, 2, 7]);
  });

  it('values: NaN/±Infinity as strings (nested too), integers as floats, JSON passthrough, reserved keys renamed with a warning', async () => {
    const { t, db } = await run();
    t.log({ x: NaN, y: -Infinity, n: 3, z: -0, tiny: 1e-7, s: 'text', b: true, nul: null, arr: [1, Infinity], obj: { k: NaN }, step: 9, __x: 1 }, 0);
    t.log({ step: 10 }, 1);
    expect(() => t.log({ bad: new Date(0) })).toThrow(ValidationError);
    await t.finish();
    expect(readRows(db).rows.map((x) => x.metrics)).toEqual([
      '{"x":"NaN","y":"-Infinity","n":3.0,"z":-0.0,"tiny":1e-7,"s":"text","b":true,"nul":null,"arr":[1.0,"Infinity"],"obj":{"k":"NaN"},"__step":9.0,"____x":1.0}',
      '{"__step":10.0}',
    ]);
    expect(warnings.filter((w) => w.includes('reserved key "step"'))).toHaveLength(1);
  });

  it('config: initial config, _Username/_Created/_Group, later updates rewritten; "_" keys refused', async () => {
    const { t, db } = await run({ config: { seed: 1 }, group: 'g', name: 'r1' });
    await t.storeInitConfiguration({ lr: 0.1 });
    await expect(t.storeInitConfiguration({ _secret: 1 })).rejects.toThrow(ValidationError);
    t.log({ a: 1 });
    await t.flush();
    await t.storeInitConfiguration({ late: true });
    await t.finish();
    const c = readRows(db).configs;
    expect(c).toHaveLength(1);
    expect(c[0]!.config).toMatchObject({ seed: 1, _Username: null, _Group: 'g', lr: 0.1, late: true });
    expect(Object.keys(c[0]!.config)).toEqual(['seed', '_Username', '_Created', '_Group', 'lr', 'late']);
    await expect(new TrackioTracker({ run_name: 'p', trackio_dir: path.dirname(db), config: { _x: 1 } }).start()).rejects.toThrow(/option 'config'/);
  });

  it('resume: allow continues the named run after its largest step; must fails for an unknown run; never makes a new id', async () => {
    const { t, dir, db } = await run({ name: 'r' });
    t.log({ a: 1 }, 4);
    await t.finish();
    const t2 = new TrackioTracker({ run_name: 'p', trackio_dir: dir, name: 'r', resume: 'allow' });
    await t2.start();
    expect(t2.tracker.id).toBe(t.tracker.id);
    t2.log({ a: 2 });
    await t2.finish();
    const t3 = new TrackioTracker({ run_name: 'p', trackio_dir: dir, name: 'r' });
    await t3.start();
    expect(t3.tracker.id).not.toBe(t.tracker.id);
    await t3.finish();
    expect(readRows(db).rows.map((x) => [x.run_id === t.tracker.id, x.step])).toEqual([
      [true, 4],
      [true, 5],
    ]);
    const err = await new TrackioTracker({ run_name: 'p', trackio_dir: dir, name: 'nope', resume: 'must' }).start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe('resume');
  });

  it('generated run names skip the ones the project has; reserved project names are a ConfigError', async () => {
    const { t, dir } = await run();
    t.log({ a: 1 });
    await t.finish();
    const { t: t2 } = await run({}, dir);
    expect([t.tracker.name, t2.tracker.name]).toEqual(['dainty-sunset-0', 'brave-river-1']);
    await t2.finish();
    await expect(new TrackioTracker({ run_name: 'model_configs', trackio_dir: dir }).start()).rejects.toThrow(/reserved suffix '_configs'/);
  });

  it('another process may read while we write (WAL), and a locked database only delays the write', async () => {
    const dir = tempDir('trackio-conc-');
    const child = spawn(process.execPath, ['--no-warnings', '--import', 'tsx', path.join(ROOT, 'test/backends/trackio/fixtures/child.ts'), 'steps', dir, '3000'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const db = path.join(dir, 'p.db');
    const hasTable = (): boolean => {
      if (!fs.existsSync(db)) return false;
      const conn = openDb(db);
      try {
        return conn.prepare("SELECT 1 FROM sqlite_master WHERE name = 'metrics'").get() !== undefined;
      } finally {
        conn.close();
      }
    };
    while (!hasTable()) await new Promise((r) => setTimeout(r, 10));
    let reads = 0;
    let last = 0;
    let done = false;
    void closed.then(() => (done = true));
    while (!done) {
      const conn = openDb(db, false);
      try {
        const n = Number(conn.prepare('SELECT COUNT(*) AS n FROM metrics').get()?.n ?? 0);
        expect(n).toBeGreaterThanOrEqual(last); // never a torn or rolled-back view
        last = n;
        reads++;
        if (reads === 5) {
          // Hold the write lock for 300 ms: the writer's background pass backs off and retries.
          conn.exec('BEGIN IMMEDIATE');
          await new Promise((r) => setTimeout(r, 300));
          conn.exec('COMMIT');
        }
      } finally {
        conn.close();
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await closed, stderr).toBe(0);
    expect(reads).toBeGreaterThan(5);
    expect(readRows(db).rows.map((x) => x.step)).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  }, 60_000);

  it('SIGKILL mid-run leaves a database that opens, passes integrity_check and holds whole batches', async () => {
    const dir = tempDir('trackio-kill-');
    const child = spawn(process.execPath, ['--no-warnings', '--import', 'tsx', path.join(ROOT, 'test/backends/trackio/fixtures/child.ts'), 'loop', dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready\n') && !child.killed) setTimeout(() => child.kill('SIGKILL'), 37);
    });
    const sig = await new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_c, s) => resolve(s)));
    expect(sig).toBe('SIGKILL');
    const db = openDb(path.join(dir, 'p.db'), false);
    try {
      expect(db.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
    } finally {
      db.close();
    }
    const steps = readRows(path.join(dir, 'p.db')).rows.map((x) => x.step);
    expect(steps.length).toBeGreaterThan(0);
    expect(steps).toEqual(steps.map((_, i) => i));
  }, 60_000);

  it("Tracking: 'trackio' with init_kwargs", async () => {
    const dir = tempDir('trackio-');
    const tr = new Tracking({ log_with: ['trackio'] });
    await tr.initTrackers('proj.x', { lr: 0.5 }, { trackio: { trackio_dir: dir, name: 'run' } });
    tr.log({ loss: 0.5 }, 3);
    await tr.endTraining();
    const r = readRows(path.join(dir, 'projx.db'));
    expect(r.rows.map((x) => [x.run_name, x.step, x.metrics])).toEqual([['run', 3, '{"loss":0.5}']]);
    expect(r.configs[0]!.config).toMatchObject({ lr: 0.5 });
  });
});
