/** Small file-system helpers shared by the generator and the backends. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Every file below `dir` (recursively) whose name passes `filter`, sorted; [] when `dir` does not exist. */
export async function walkFiles(dir: string, filter: (name: string) => boolean = () => true): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walkFiles(p, filter)));
    else if (filter(e.name)) out.push(p);
  }
  return out.sort();
}
