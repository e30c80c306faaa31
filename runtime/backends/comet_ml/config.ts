/**
 * Comet configuration beyond the constructor options: `.comet.config` (INI, section [comet]) in the
 * current directory, then the home directory. Precedence, as Comet documents it: explicit option >
 * environment variable (both resolved by the generated class) > config file (cwd, then home) > default.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { lazy } from '../../io/lazy.js';

const ini = lazy<typeof import('ini')>('ini');

export interface CometFileConfig {
  api_key?: string;
  workspace?: string;
  project_name?: string;
  url_override?: string;
  offline_directory?: string;
  /** Which files were read (for messages). */
  files: string[];
}

const KEYS = ['api_key', 'workspace', 'project_name', 'url_override', 'offline_directory'] as const;

export function readCometConfigFiles(cwd = process.cwd(), home = homedir()): CometFileConfig {
  const out: CometFileConfig = { files: [] };
  for (const dir of [cwd, home]) {
    const file = join(dir, '.comet.config');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    out.files.push(file);
    const parsed = ini().parse(text) as Record<string, Record<string, unknown> | undefined>;
    const section = parsed.comet ?? {};
    for (const k of KEYS) {
      const v = section[k];
      if (typeof v === 'string' && v.trim() !== '' && out[k] === undefined) out[k] = v.trim();
    }
  }
  return out;
}

/** Comet's clients take `…/clientlib/`: strip it (and trailing slashes) and append the REST v2 base. */
export function restBase(urlOverride: string): string {
  const base = urlOverride.trim().replace(/\/+$/, '').replace(/\/clientlib$/, '');
  return `${base}/api/rest/v2`;
}
