/**
 * Names that become paths (run names, sub-run names, metric/param/tag keys of a file store, file
 * name suffixes, ids) are checked here before anything is written: the name is resolved against
 * its root, and the result must stay inside the root. Backends wrap the problem in their own typed
 * error naming the option or key (`ConfigError` for options, `ValidationError` for logged keys).
 *
 * The check is lexical (what `path.resolve` gives); symbolic links already inside the root are the
 * user's own choice and are followed as they are.
 */
import * as path from 'node:path';

export interface PathRules {
  /** A name may name nested directories (`a/b`); default true. With false, it must be one path segment. */
  nested?: boolean;
  /** The name may resolve to the root itself (`''`, `.`, `a/..`); default false. */
  root?: boolean;
}

/** Why `name` cannot be used below a root under `rules`, or undefined when it can. */
export function pathNameProblem(name: string, rules: PathRules = {}): string | undefined {
  if (name.includes('\0')) return 'contains a NUL character';
  if (path.isAbsolute(name) || path.win32.isAbsolute(name)) return 'is an absolute path; give a name relative to its directory';
  if (rules.nested === false && /[/\\]/.test(name)) return "must be a single name, without '/' or '\\'";
  const probe = path.resolve('/', 'root', name);
  const rel = path.relative(path.resolve('/', 'root'), probe);
  if (rel === '' && !rules.root) return "resolves to its directory itself (e.g. '', '.' or 'a/..')";
  if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return "leaves its directory ('..' segments); use a name below it";
  return undefined;
}

/**
 * `root` joined with `name`, resolved, after checking that it stays inside `root` (see
 * pathNameProblem). `fail(problem)` builds the error to throw (naming the option or key).
 */
export function resolveInside(root: string, name: string, fail: (problem: string) => Error, rules: PathRules = {}): string {
  const problem = pathNameProblem(name, rules);
  if (problem !== undefined) throw fail(problem);
  const base = path.resolve(root);
  const full = path.resolve(base, name);
  const rel = path.relative(base, full);
  // Belt and braces: the lexical check above already covers this.
  if (rel.startsWith('..') && (rel === '..' || rel[2] === path.sep)) throw fail("leaves its directory ('..' segments); use a name below it");
  return full;
}
