import { createRequire } from 'node:module';
const t0 = performance.now();
await import("trackspec");
const ms = performance.now() - t0;
const cache = Object.keys(createRequire(import.meta.url).cache);
const heavy = ['ts-morph', 'json-schema-to-typescript', 'handlebars', 'typescript', 'prettier', 'yaml', 'pngjs', 'ajv/dist/core', 'ajv/dist/ajv'];
const loaded = heavy.filter((h) => cache.some((p) => p.includes('/node_modules/' + h + '/')));
console.log(JSON.stringify({ ms, loaded }));