#!/usr/bin/env node
// Rebuild on an empty Podman storage (a new node, a wiped storage), as users run it: the build
// command as a whole process on a private Podman service with empty storage, with buildah's
// registry layer cache (--registry-layer-cache) and without it (--registry-layer-cache=false), pair by pair
// in alternating order. The image has a CPU-bound RUN step standing in for `pip install`.
// Prints medians and the ratio; never fails on a target.
//
//   node bench/layer-cache.js [--pairs=N]   (needs test/env/up.sh's services)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { startPrivatePodman } from '../test/helpers/private-podman.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pairs = Number(process.argv.find((a) => a.startsWith('--pairs='))?.slice(8) ?? 5);
const envFile = path.join(process.env.THINKUBE_TEST_ENV ?? path.join(root, '.test-env'), 'env.json');
if (!existsSync(envFile)) {
  console.error(`No test environment (${envFile}): run "bash test/env/up.sh" first.`);
  process.exit(1);
}
const env = JSON.parse(readFileSync(envFile, 'utf8'));
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function build(host, tag, extra = []) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [path.join(root, 'bin/build.js'), context, '--tag', tag, '--engine-host', host, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`build exited ${code}: ${out.slice(-1500)}`))));
  });
}

const context = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-lcache-'));
const id = `${process.pid}-${Date.now().toString(36)}`;
writeFileSync(
  path.join(context, 'Dockerfile'),
  `FROM ${env.busyboxImage}\nRUN i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done; echo ${id} > /installed\nRUN dd if=/dev/urandom of=/data bs=1M count=8 2>/dev/null\n`,
);
const repo = `${env.registryAnon}/bench/lcache-${id}`;
try {
  console.log('Rebuild on an empty Podman storage: with the registry layer cache vs without');
  // Fill the cache once (the shared Podman service).
  console.log(`  first build (fills ${repo}/cache): ${(await build(env.podmanHost, `${repo}:warm`, ['--registry-layer-cache'])).toFixed(0)} ms`);
  const withCache = [];
  const without = [];
  for (let i = 0; i < pairs; i++) {
    const order = i % 2 ? ['without', 'with'] : ['with', 'without'];
    for (const which of order) {
      const fresh = await startPrivatePodman(env);
      try {
        if (which === 'with') withCache.push(await build(fresh.host, `${repo}:p${i}`, ['--registry-layer-cache']));
        else without.push(await build(fresh.host, `${repo}:n${i}`, ['--registry-layer-cache=false']));
      } finally {
        await fresh.cleanup();
      }
    }
  }
  const a = median(withCache);
  const b = median(without);
  console.log('\n| figure | with cache | without | ratio |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| build command on empty Podman storage, median of ${pairs} pairs | ${a.toFixed(0)} ms | ${b.toFixed(0)} ms | ${(a / b).toFixed(2)} |`);
} finally {
  rmSync(context, { recursive: true, force: true });
}
