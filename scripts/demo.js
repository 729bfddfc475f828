#!/usr/bin/env node
// The quick start's main job on the embedded default: the sample image set (examples/images) is
// built on the local engine, pushed to the throwaway local registry and registered in a local
// catalog file, all started by test/env/up.sh (npm run demo runs it first).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = process.env.THINKUBE_TEST_ENV ?? path.join(root, '.test-env');
const env = JSON.parse(readFileSync(path.join(stateDir, 'env.json'), 'utf8'));
const catalog = path.join(stateDir, 'catalog.json');
const args = [
  path.join(root, 'bin', 'pipeline.js'),
  path.join(root, 'examples', 'images'),
  '--registry', env.registryAnon,
  '--engine-host', env.dockerHost,
  '--registration-catalog-path', catalog,
  ...process.argv.slice(2),
];
console.error(`$ node ${args.map((a) => path.relative(root, a) || a).join(' ')}`);
const run = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (run.status === 0) console.error(`\nDone. Registry: http://${env.registryAnon}/v2/_catalog  Catalog: ${path.relative(root, catalog)}`);
process.exit(run.status ?? 1);
