#!/usr/bin/env node
// Benchmarks. First whole processes as users run them (bench/startup.js: a script's --help and
// argument error, a module that only validates, against `node -e 0` pair by pair;
// bench/noop-process.js: a no-op pipeline of two images against docker build + push); then the
// content-addressed builds (issue 6), side by side with the Docker CLI on the same daemon and
// registry (test/env/up.sh). Prints two tables; never fails on a target.
//
//   node bench/run.js [--quick] [--only=startup,noop-process,cold,noop,context]   (npm run bench starts the services first)
//   BENCH_KEEP=1 keeps the generated contexts under /tmp for the next run.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { benchStartup, startupTable } from './startup.js';
import { benchNoopProcess } from './noop-process.js';
import { benchImages } from './lib/fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const keep = process.env.BENCH_KEEP === '1';
// --only=startup,noop-process,cold,noop,context runs a subset (startup alone needs no test service;
// cold, the older in-run --help figure, only when asked: the start-up table supersedes it).
const only = (process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? ['startup', 'noop-process', 'noop', 'context']).filter(Boolean);
const env = only.some((part) => part !== 'startup') ? readEnv() : {};
const STARTUP_PAIRS = quick ? 15 : 21;
const NOOP_PAIRS = quick ? 5 : 7;
const REPS = 3;
const COLD_RUNS = quick ? 10 : 20;
const GiB = 1024 ** 3;
const MB = 1000 ** 2;
// Big context: 1 GiB in 20,000 files (quick: 128 MiB in 2,500); small: 100 MB with the same file size.
const BIG = quick ? { bytes: 128 * 1024 ** 2, files: 2_500, label: '128 MiB' } : { bytes: GiB, files: 20_000, label: '1 GiB' };
const SMALL = quick ? { bytes: 16 * MB, files: 300, label: '16 MB' } : { bytes: 100 * MB, files: 1_900, label: '100 MB' };
const rows = [];
const made = []; // images to remove from the engine at the end
const t0 = performance.now();

function readEnv() {
  const file = path.join(process.env.THINKUBE_TEST_ENV ?? path.join(root, '.test-env'), 'env.json');
  if (!existsSync(file)) {
    console.error(`No test environment (${file}): run "bash test/env/up.sh" first (npm run bench does).`);
    process.exit(1);
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (v) => `${v.toFixed(0)} ms`;
const log = (...args) => console.log(...args);

/** Run a command to completion; throws with its output when it fails. Returns wall time in ms. */
function run(cmd, args, { env: extra = {}, quiet = true } = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { env: { ...process.env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const elapsed = performance.now() - started;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out.slice(-2000)}`));
      else {
        if (!quiet) process.stdout.write(out);
        resolve({ elapsed, out });
      }
    });
  });
}

const dockerEnv = { DOCKER_HOST: env.dockerHost, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' };
const docker = (...args) => run(env.dockerCli ?? 'docker', ['--config', env.dockerConfigDir, ...args], { env: dockerEnv });

function row(figure, ours, baseline, target, unit = 'ms') {
  const ratio = ours / baseline;
  rows.push({ figure, ours, baseline, ratio, target, unit });
  log(`  ${figure}: ${fmt(ours, unit)} vs ${fmt(baseline, unit)} -> ratio ${ratio.toFixed(3)} (target <= ${target})`);
}
const fmt = (v, unit) => (unit === 'ms' ? ms(v) : unit === 'MB' ? `${v.toFixed(1)} MB` : `${v}`);

// ---------------------------------------------------------------------------------------------
// 1. No-op re-run of a 4-image set: runPipeline vs docker build (classic, warm cache) + docker push
// ---------------------------------------------------------------------------------------------

/** base; child FROM base; grandchild FROM child; solo. Two images depend on another. */
function fixtureSet(prefix) {
  const busybox = `library/busybox:${env.busyboxTag}`;
  const dir = benchImages(env, 'images', [
    { name: `${prefix}-base`, from: busybox, isDefault: true },
    { name: `${prefix}-child`, from: `library/${prefix}-base:latest` },
    { name: `${prefix}-grandchild`, from: `library/${prefix}-child:latest` },
    { name: `${prefix}-solo`, from: busybox },
  ]);
  return { dir, order: ['base', 'child', 'grandchild', 'solo'].map((s) => `${prefix}-${s}`) };
}

async function benchNoop() {
  log('\n1. No-op re-run of a 4-image set (two dependent)');
  const id = `${process.pid}-${Date.now().toString(36)}`;
  const ours = fixtureSet(`bench-pl-${id}`);
  const theirs = fixtureSet(`bench-cli-${id}`);
  const catalogPath = path.join(ours.dir, '..', `${path.basename(ours.dir)}-catalog.json`);
  const options = { imagesDir: ours.dir, registry: env.registryAnon, engine: { host: env.dockerHost }, registration: { target: 'catalog', catalogPath } };

  const cliRound = async () => {
    const started = performance.now();
    for (const name of theirs.order) {
      const tag = `${env.registryAnon}/library/${name}:latest`;
      await docker('build', '-q', '-t', tag, '--build-arg', `HARBOR_REGISTRY=${env.registryAnon}`, path.join(theirs.dir, name));
      await docker('push', '-q', tag);
    }
    return performance.now() - started;
  };
  const pipelineRound = async () => {
    const started = performance.now();
    const result = await runPipeline(options);
    const elapsed = performance.now() - started;
    if (result.failed) throw new Error(`pipeline failed: ${JSON.stringify(result.images.map((i) => [i.name, i.error?.message]))}`);
    return { elapsed, result };
  };

  // Warm both: first builds (and pushes) everything, the second warms caches and connections.
  for (const name of [...ours.order, ...theirs.order]) made.push(`${env.registryAnon}/library/${name}:latest`);
  const cold = await pipelineRound();
  log(`  first pipeline run (builds everything): ${ms(cold.elapsed)}`);
  log(`  first docker build + push round: ${ms(await cliRound())}`);
  await pipelineRound();
  await cliRound();

  const pipelineTimes = [];
  for (let i = 0; i < REPS; i++) {
    const { elapsed, result } = await pipelineRound();
    const built = result.images.filter((im) => !im.buildSkipped).map((im) => im.name);
    if (built.length || result.changed) throw new Error(`a no-op run built or changed something: ${built.join(', ')}`);
    pipelineTimes.push(elapsed);
  }
  const cliTimes = [];
  for (let i = 0; i < REPS; i++) cliTimes.push(await cliRound());
  log(`  runPipeline no-op: ${pipelineTimes.map(ms).join(', ')}`);
  log(`  docker build + push (warm cache): ${cliTimes.map(ms).join(', ')}`);
  row('no-op re-run, 4 images (median)', median(pipelineTimes), median(cliTimes), 0.1);
  rmSync(ours.dir, { recursive: true, force: true });
  rmSync(theirs.dir, { recursive: true, force: true });
  rmSync(catalogPath, { force: true });
}

// ---------------------------------------------------------------------------------------------
// 2. Context upload: buildImage vs docker build (classic) for a big context; peak RSS
// ---------------------------------------------------------------------------------------------

/** A folder of `files` files of random (incompressible) data totalling `bytes`, made once and reused. */
function contextDir({ bytes, files }) {
  const dir = path.join(os.tmpdir(), `tk-bench-context-${bytes}-${files}`);
  const marker = path.join(dir, '.complete');
  if (existsSync(marker)) return { dir, reused: true };
  rmSync(dir, { recursive: true, force: true });
  const per = Math.floor(bytes / files);
  const chunk = randomBytes(per + 4096);
  for (let i = 0; i < files; i++) {
    const sub = path.join(dir, 'data', String(Math.floor(i / 500)).padStart(3, '0'));
    if (i % 500 === 0) mkdirSync(sub, { recursive: true });
    // A fresh random prefix per file keeps every file distinct; the rest comes from a random pool.
    const body = Buffer.concat([randomBytes(4096), chunk.subarray(i % 4096, i % 4096 + per - 4096)]);
    writeFileSync(path.join(sub, `f${i}.bin`), body);
  }
  // Copies nothing: the time is the context upload (and the engine unpacking it), nothing else.
  writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${env.busyboxImage}\nLABEL bench.context=${bytes}\n`);
  writeFileSync(marker, '');
  return { dir, reused: false };
}

/** buildImage in a child process: its own wall time for the call and the process's peak RSS. */
async function buildInChild(dir, tag) {
  const script = `
    import { buildImage } from ${JSON.stringify(path.join(root, 'dist/lib/build/build.js'))};
    const started = performance.now();
    await buildImage({ context: ${JSON.stringify(dir)}, tags: [${JSON.stringify(tag)}], noCache: true, engine: { host: ${JSON.stringify(env.dockerHost)} } });
    const elapsed = performance.now() - started;
    console.log(JSON.stringify({ elapsed, maxRssKiB: process.resourceUsage().maxRSS }));
  `;
  const { elapsed: processMs, out } = await run(process.execPath, ['--input-type=module', '-e', script]);
  const line = out.trim().split('\n').pop();
  return { ...JSON.parse(line), processMs };
}

async function benchContext() {
  log(`\n2. Context upload: ${BIG.label} in ${BIG.files} files (Dockerfile copies nothing, no cache)`);
  const started = performance.now();
  const big = contextDir(BIG);
  const small = contextDir(SMALL);
  log(`  contexts ${big.reused && small.reused ? 'reused' : 'generated'} in ${ms(performance.now() - started)} (${big.dir}, ${small.dir})`);
  const tag = `${env.registryAnon}/library/bench-context:latest`;
  made.push(tag);
  // Warm: page cache and the busybox base on the engine.
  await buildInChild(big.dir, tag);
  await docker('build', '-q', '--no-cache', '-t', tag, big.dir);

  const ours = [];
  const oursProcess = [];
  let bigRss = 0;
  const theirs = [];
  for (let i = 0; i < REPS; i++) {
    const r = await buildInChild(big.dir, tag);
    ours.push(r.elapsed);
    oursProcess.push(r.processMs);
    bigRss = Math.max(bigRss, r.maxRssKiB);
    theirs.push((await docker('build', '-q', '--no-cache', '-t', tag, big.dir)).elapsed);
  }
  log(`  buildImage: ${ours.map(ms).join(', ')} (whole node process: ${oursProcess.map(ms).join(', ')})`);
  log(`  docker build (DOCKER_BUILDKIT=0, whole CLI process): ${theirs.map(ms).join(', ')}`);
  row(`context upload ${BIG.label} / ${BIG.files} files (median)`, median(ours), median(theirs), 1.0);
  const smallRuns = [];
  for (let i = 0; i < 2; i++) smallRuns.push((await buildInChild(small.dir, tag)).maxRssKiB);
  const smallRss = Math.max(...smallRuns);
  log(`  peak RSS of the node process: ${BIG.label} ${(bigRss / 1024).toFixed(1)} MiB, ${SMALL.label} ${(smallRss / 1024).toFixed(1)} MiB`);
  rows.push({ figure: `peak RSS, ${BIG.label} context`, ours: bigRss / 1024, baseline: undefined, ratio: undefined, target: '< 150 MB', unit: 'MB', met: bigRss / 1024 < 150 });
  rows.push({ figure: `peak RSS, ${SMALL.label} context`, ours: smallRss / 1024, baseline: undefined, ratio: undefined, target: '< 150 MB', unit: 'MB', met: smallRss / 1024 < 150 });
  if (!keep) {
    rmSync(big.dir, { recursive: true, force: true });
    rmSync(small.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Cold start: node bin/build.js --help vs node -e 0
// ---------------------------------------------------------------------------------------------

async function benchColdStart() {
  log(`\n3. Cold start (median of ${COLD_RUNS})`);
  const time = async (args) => {
    const times = [];
    await run(process.execPath, args); // warm the file cache
    for (let i = 0; i < COLD_RUNS; i++) times.push((await run(process.execPath, args)).elapsed);
    return median(times);
  };
  const help = await time([path.join(root, 'bin', 'build.js'), '--help']);
  const bare = await time(['-e', '0']);
  row('cold start node bin/build.js --help', help, bare, 2.0);
}

function table() {
  const lines = [['figure', 'ours', 'baseline', 'ratio', 'target', 'met']];
  for (const r of rows) {
    const met = r.met ?? r.ratio <= r.target;
    lines.push([r.figure, fmt(r.ours, r.unit), r.baseline === undefined ? '-' : fmt(r.baseline, r.unit), r.ratio === undefined ? '-' : r.ratio.toFixed(3), typeof r.target === 'number' ? `<= ${r.target}` : r.target, met ? 'met' : 'NOT MET']);
  }
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  for (const [i, l] of lines.entries()) {
    log(l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
    if (i === 0) log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

async function cleanup() {
  if (!made.length) return;
  const engine = connectEngine({ host: env.dockerHost });
  for (const ref of made) await (await engine.client()).getImage(ref).remove({ force: true }).catch(() => {});
}

try {
  log(`Benchmark${quick ? ' (--quick)' : ''}: engine ${env.dockerHost}, registry ${env.registryAnon}, node ${process.version}, ${os.cpus().length} CPUs`);
  let startup;
  if (only.includes('startup')) {
    log(`\n0. Start-up of whole processes (${STARTUP_PAIRS} pairs, alternating with node -e 0)`);
    startup = await benchStartup({ pairs: STARTUP_PAIRS, log });
  }
  let noopProcess;
  if (only.includes('noop-process')) {
    log(`\n0b. No-op re-run of 2 images as whole processes (${NOOP_PAIRS} pairs, alternating with docker build + push)`);
    noopProcess = await benchNoopProcess({ pairs: NOOP_PAIRS, log });
  }
  if (only.includes('cold')) await benchColdStart();
  if (only.includes('noop')) await benchNoop();
  if (only.includes('context')) await benchContext();
  if (startup || noopProcess) startupTable([...(startup ?? []), ...(noopProcess ? [noopProcess] : [])], noopProcess && !startup ? NOOP_PAIRS : STARTUP_PAIRS, log);
  if (rows.length) {
    log('\nIn-process figures and the Docker CLI');
    table();
  }
  log(`\ntotal ${((performance.now() - t0) / 1000).toFixed(0)} s`);
} catch (error) {
  console.error(`Benchmark failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
