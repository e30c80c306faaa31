/** Modules loaded on first use, so importing the SDK only pays for what a run actually uses. */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

/** A getter that requires `id` the first time it is called. */
export function lazy<T>(id: string): () => T {
  let mod: T | undefined;
  return () => (mod ??= load(id) as T);
}
