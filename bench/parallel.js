#!/usr/bin/env node
// Benchmark of builds spread over engines (issue 9): 4 independent fixture images, each with a
// deliberate `RUN sleep 10`, built by the pipeline sequentially on one engine (dockerd) and then on
// two engines (dockerd and Podman's service) with concurrency 2 each. Both runs really build
// (force + noCache, fresh repositories). Prints both wall times and their ratio (target <= 0.6).
//
//   node bench/parallel.js [--sleep=10] [--images=4]   (after bash test/env/up.sh)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const SLEEP = arg('sleep', 10);
const IMAGES = arg('images', 4);
const TARGET = 0.6;

const envFile = path.join(process.env.THINKUBE_TEST_ENV ?? path.join(root, '.test-env'), 'env.json');
if (!existsSync(envFile)) {
  console.error(`No test environment (${envFile}): run "bash test/env/up.sh" first.`);
  process.exit(1);
}
const env = JSON.parse(readFileSync(envFile, 'utf8'));

/** A fresh images folder: IMAGES independent images on busybox, each sleeping SLEEP seconds in a RUN. */
function imagesDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-parallel-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  for (let i = 1; i <= IMAGES; i++) {
    const name = `${prefix}-${i}`;
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN sleep ${SLEEP} && echo ${name} > /built\n`);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: Bench ${name}\ndescription: Benchmark fixture\ncategory: bench\n`);
  }
  return dir;
}

async function timed(label, options) {
  const prefix = `bench-par-${Date.now().toString(36)}`;
  const dir = imagesDir(prefix);
  const started = performance.now();
  const result = await runPipeline({ imagesDir: dir, registry: env.registryAnon, register: false, force: true, noCache: true, ...options });
  const ms = performance.now() - started;
  rmSync(dir, { recursive: true, force: true });
  const failed = result.images.filter((i) => i.status !== 'done');
  if (failed.length) throw new Error(`${label}: ${failed.map((i) => `${i.name} ${i.status}: ${i.error?.message ?? i.reason}`).join('; ')}`);
  const built = result.images.filter((i) => !i.buildSkipped).length;
  const perEngine = result.engines ? result.engines.map((e) => `${e.name} ${e.builds} builds, at most ${e.peak} at once`).join('; ') : 'dockerd, one after the other';
  console.log(`${label.padEnd(52)} ${(ms / 1000).toFixed(1).padStart(6)} s  (${built}/${IMAGES} built; ${perEngine})`);
  return ms;
}

console.log(`${IMAGES} independent images, RUN sleep ${SLEEP} each, force + noCache (every run really builds)\n`);
const sequential = await timed('sequential, one engine (dockerd)', { engine: { host: env.dockerHost } });
const parallel = await timed('two engines (dockerd, podman), concurrency 2 each', {
  engines: [
    { name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64'], concurrency: 2 },
    { name: 'podman', host: env.podmanHost, platforms: ['linux/amd64'], concurrency: 2 },
  ],
});
const ratio = parallel / sequential;
console.log(`\nratio parallel / sequential: ${ratio.toFixed(2)} (target <= ${TARGET}: ${ratio <= TARGET ? 'met' : 'NOT met'})`);
