#!/usr/bin/env node
// In-process timings that used to be pass/fail thresholds in test/ (tests assert behaviour; how
// fast belongs here). Needs no test service. Prints medians; never fails on a figure.
//
//   node bench/micro.js        (after npm run build)
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { scanContext } from '../dist/lib/source/context.js';
import { buildArgSecrets } from '../dist/lib/core/secrets.js';

const REPS = 5;
const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
async function figure(name, was, fn) {
  await fn(); // warm up
  const times = [];
  for (let i = 0; i < REPS; i++) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  console.log(`  ${name}: median ${median(times).toFixed(1)} ms of ${REPS} (the test used to require < ${was})`);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-micro-'));
try {
  // test/context.test.js: a big tree is scanned and packed exactly.
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(path.join(dir, '.dockerignore'), '**/*.skip\n');
  for (let d = 0; d < 40; d++) {
    mkdirSync(path.join(dir, `d${d}`, 'inner'), { recursive: true });
    for (let f = 0; f < 50; f++) writeFileSync(path.join(dir, `d${d}`, f % 5 === 0 ? 'inner' : '', `f${f}.${f % 10 === 0 ? 'skip' : 'txt'}`), `${d}/${f}`);
  }
  writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\n');
  chmodSync(path.join(dir, 'run.sh'), 0o755);
  console.log('Micro benchmarks (in-process)');
  await figure('scanContext, 2,000 files in 80 folders with a .dockerignore', '10 s', () => scanContext(dir));
  // test/retry.test.js: secret heuristics on hostile input (linear, no catastrophic regex).
  await figure('buildArgSecrets on 1 MB values', '2 s', () => buildArgSecrets({ BIG: 'a'.repeat(1 << 20), URLS: 'a://'.repeat(200_000), HF_TOKEN: 'x'.repeat(1 << 20) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
