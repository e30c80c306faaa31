/**
 * The W&B API key from a `.netrc` file, where `wandb login` stores it (wandb `wbnetrc.py`): the file
 * is `$NETRC`, else `~/.netrc`, else `~/_netrc`; the entry is `machine <host[:port]>` of the base URL
 * (else a `default` entry, as Python's `netrc.authenticators`), and the key is its `password`.
 * A missing or unreadable file gives undefined.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function netrcPath(env: Record<string, string | undefined> = process.env): string {
  const fromEnv = env.NETRC;
  if (fromEnv) return fromEnv.startsWith('~') ? join(homedir(), fromEnv.slice(1)) : fromEnv;
  const unix = join(homedir(), '.netrc');
  if (existsSync(unix)) return unix;
  const windows = join(homedir(), '_netrc');
  return existsSync(windows) ? windows : unix;
}

/** `machine` → password entries of a .netrc text (`default` under the key ''). `macdef` bodies are skipped. */
export function parseNetrc(text: string): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  const lines = text.split(/\r?\n/);
  const tokens: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*#/.test(line)) continue;
    const ts = line.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
    for (let j = 0; j < ts.length; j++) {
      const t = ts[j]!;
      if (t === 'macdef') {
        // The macro body runs to the next empty line.
        while (i + 1 < lines.length && lines[i + 1]!.trim() !== '') i++;
        break;
      }
      tokens.push(t.startsWith('"') ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t);
    }
  }
  let machine: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === 'machine') {
      machine = tokens[++i];
      if (machine !== undefined && !out.has(machine)) out.set(machine, undefined);
    } else if (t === 'default') {
      machine = '';
      if (!out.has('')) out.set('', undefined);
    } else if ((t === 'password' || t === 'login' || t === 'account') && machine !== undefined) {
      const v = tokens[++i];
      if (t === 'password' && out.get(machine) === undefined) out.set(machine, v);
    }
  }
  return out;
}

/** The password stored for `host` (host[:port]), else the `default` entry's, else undefined. */
export function netrcPassword(host: string, env: Record<string, string | undefined> = process.env): string | undefined {
  let text: string;
  try {
    text = readFileSync(netrcPath(env), 'utf8');
  } catch {
    return undefined;
  }
  const entries = parseNetrc(text);
  const v = entries.has(host) ? entries.get(host) : entries.get('');
  return v ? v : undefined;
}
