#!/usr/bin/env node
// A no-op re-run as users run it (issue 15): `node bin/pipeline.js DIR ...` as a whole process,
// nothing changed, against `docker build` (classic builder, warm cache) + `docker push` of the
// same two images (one built on the other) in one shell, same daemon and registry. Pairs
// alternate (the machine's load hits both alike); medians of wall and CPU time (user + system,
// the docker CLI processes included on the baseline side) and their ratios. Also counts the
// registry requests of one no-op (the registry's access log). Never fails on a goal.
//
//   node bench/noop-process.js [--pairs=N]   (test services needed: bash test/env/up.sh; bench/whole-process.js runs it)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { measurePairs, median, option, processTable, readTestEnv, root, timed } from './lib/process.js';
import { benchImages } from './lib/fixtures.js';
import { registryLogSince } from '../test/helpers/registry-log.js';

const GOAL = 0.5;
const COLD_GOAL = 1.1; // issue 15 item 4: a first build and push within 1.1x of the Docker CLI

function readEnv() {
  const env = readTestEnv();
  if (!env) throw new Error('No test environment: run "bash test/env/up.sh" first (npm run bench does).');
  return env;
}

/** <prefix>-base FROM busybox, <prefix>-child FROM <prefix>-base: a few small files each. */
export function twoImages(env, prefix) {
  const busybox = `library/busybox:${env.busyboxTag}`;
  const dir = benchImages(env, 'noop', [{ name: `${prefix}-base`, from: busybox, isDefault: true }, { name: `${prefix}-child`, from: `library/${prefix}-base:latest` }]);
  return { dir, order: [`${prefix}-base`, `${prefix}-child`] };
}

/** Requests per "METHOD path" in the registry's access log after `offset`. */
async function requestCounts(env, offset) {
  const text = await registryLogSince(env.registryAnon, env.registryAnonLog, offset);
  const counts = new Map();
  for (const line of text.split('\n')) {
    const m = /^\S+ - \S+ \[[^\]]+\] "(\w+) (\S+) HTTP/.exec(line);
    if (!m) continue;
    const key = `${m[1]} ${m[2].replace(/\?.*/, '')}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/**
 * Returns the row: { figure, goal, wall: { base, ours, ratio }, cpu: {...}, requests }.
 * `pairs` measured pairs after two warm-up rounds of each side.
 */
export async function benchNoopProcess({ pairs = 7, log = console.log } = {}) {
  const env = readEnv();
  const id = `${process.pid}-${Date.now().toString(36)}`;
  const ours = twoImages(env, `bench-np-${id}`);
  const theirs = twoImages(env, `bench-nc-${id}`);
  const catalogPath = path.join(ours.dir, 'catalog.json');
  const pipelineArgs = [
    path.join(root, 'bin', 'pipeline.js'), ours.dir, '--registry', env.registryAnon, '--engine-host', env.dockerHost,
    '--registration-target', 'catalog', '--registration-catalog-path', catalogPath,
  ];
  const docker = `${JSON.stringify(env.dockerCli ?? '/usr/bin/docker')} --config ${JSON.stringify(env.dockerConfigDir)}`;
  const script = theirs.order
    .map((name) => {
      const tag = `${env.registryAnon}/library/${name}:latest`;
      return `${docker} build -q -t ${tag} --build-arg HARBOR_REGISTRY=${env.registryAnon} ${JSON.stringify(path.join(theirs.dir, name))} >/dev/null && ${docker} push -q ${tag} >/dev/null`;
    })
    .join(' && ');
  const dockerEnv = { DOCKER_HOST: env.dockerHost, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' };
  const pipeline = async () => {
    const r = await timed(process.execPath, pipelineArgs);
    const result = JSON.parse(r.stdout);
    if (result.changed || result.failed) throw new Error(`the pipeline's no-op run changed or failed something: ${r.stdout.slice(0, 1500)}`);
    return r;
  };
  const cli = () => timed('/bin/sh', ['-c', script], { env: dockerEnv });
  try {
    // First runs build and push; the second warm caches. The pipeline's first run changes things.
    await timed(process.execPath, pipelineArgs);
    await cli();
    await pipeline();
    await cli();
    const offset = statSync(env.registryAnonLog).size;
    await pipeline();
    const counts = await requestCounts(env, offset);
    const requests = [...counts.values()].reduce((a, b) => a + b, 0);
    log(`  registry requests of one no-op (2 images): ${requests}`);
    for (const [k, v] of [...counts].sort()) log(`    ${v}x ${k.replaceAll(id, '<id>')}`);
    const a = [];
    const b = [];
    for (let i = 0; i < pairs; i++) {
      b.push(await cli());
      a.push(await pipeline());
    }
    const row = { figure: 'CLI no-op, 2 images (node bin/pipeline.js)', baselineName: 'docker build + push, warm', goal: GOAL, goalOn: ['wall'], requests, pairs };
    for (const k of ['wall', 'cpu']) {
      const o = a.map((r) => r[k]).filter((v) => v !== undefined);
      const t = b.map((r) => r[k]).filter((v) => v !== undefined);
      row[k] = o.length && t.length ? { base: median(t), ours: median(o), ratio: median(o) / median(t) } : undefined;
    }
    log(`  wall ${row.wall.ours.toFixed(0)} vs ${row.wall.base.toFixed(0)} ms (ratio ${row.wall.ratio.toFixed(2)})${row.cpu ? `, CPU ${row.cpu.ours.toFixed(0)} vs ${row.cpu.base.toFixed(0)} ms (ratio ${row.cpu.ratio.toFixed(2)})` : ''}; goal <= ${GOAL} (wall)`);
    return row;
  } finally {
    rmSync(ours.dir, { recursive: true, force: true });
    rmSync(theirs.dir, { recursive: true, force: true });
  }
}

/**
 * The first build and push (issue 15 item 4): two new images (one built on the other), fresh
 * content each pair so that nothing is cached but the base, `node bin/pipeline.js` against
 * `docker build` + `docker push`. Returns the row (goal 1.1, wall).
 *
 * labelled: the baseline's Dockerfiles end in the one LABEL line our builds append on dockerd
 * (input digest, created, title: the same step, the same kind of values), so the engine does the
 * same work on both sides and the ratio is the cost of our process alone. No goal on that row.
 */
export async function benchColdProcess({ pairs = 5, log = console.log, labelled = false } = {}) {
  const env = readEnv();
  const dirs = [];
  const tags = [];
  let n = 0;
  const fresh = (side) => {
    const set = twoImages(env, `bench-cold-${side}-${process.pid}-${Date.now().toString(36)}-${n++}`);
    dirs.push(set.dir);
    for (const name of set.order) tags.push(`${env.registryAnon}/library/${name}:latest`);
    return set;
  };
  const docker = `${JSON.stringify(env.dockerCli ?? '/usr/bin/docker')} --config ${JSON.stringify(env.dockerConfigDir)}`;
  const dockerEnv = { DOCKER_HOST: env.dockerHost, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' };
  const ours = async () => {
    const set = fresh('p');
    const r = await timed(process.execPath, [
      path.join(root, 'bin', 'pipeline.js'), set.dir, '--registry', env.registryAnon, '--engine-host', env.dockerHost,
      '--registration-target', 'catalog', '--registration-catalog-path', path.join(set.dir, 'catalog.json'),
    ]);
    const result = JSON.parse(r.stdout);
    if (!result.changed || result.failed || result.done?.length !== 2) throw new Error(`the pipeline's first run did not build both images: ${r.stdout.slice(0, 1500)}`);
    return r;
  };
  const baseline = () => {
    const set = fresh('c');
    if (labelled) for (const name of set.order) labelLikeOurs(path.join(set.dir, name), name);
    const script = set.order
      .map((name) => {
        const tag = `${env.registryAnon}/library/${name}:latest`;
        return `${docker} build -q -t ${tag} --build-arg HARBOR_REGISTRY=${env.registryAnon} ${JSON.stringify(path.join(set.dir, name))} >/dev/null && ${docker} push -q ${tag} >/dev/null`;
      })
      .join(' && ');
    return timed('/bin/sh', ['-c', script], { env: dockerEnv });
  };
  try {
    return labelled
      ? await measurePairs({ figure: 'CLI first build + push, 2 new images', baselineName: 'the same, our LABEL line added', pairs, ours, baseline, log })
      : await measurePairs({ figure: 'CLI first build + push, 2 new images', baselineName: 'docker build + push', goal: COLD_GOAL, goalOn: ['wall'], pairs, ours, baseline, log });
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    spawnSync(env.dockerCli ?? 'docker', ['rmi', '-f', ...tags], { env: { ...process.env, ...dockerEnv }, stdio: 'ignore' });
  }
}

/** Appends the LABEL line a build of ours adds on dockerd (lib/build/build.ts labelInstruction), with fresh values. */
function labelLikeOurs(dir, name) {
  const digest = createHash('sha256').update(`${dir} ${Date.now()}`).digest('hex');
  const line = `LABEL io.thinkube.custom-images.input-digest='sha256:${digest}' org.opencontainers.image.created='${new Date().toISOString()}' org.opencontainers.image.title='Bench ${name}'`;
  appendFileSync(path.join(dir, 'Dockerfile'), `\n${line}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const pairs = Number(option('pairs', 7));
  try {
    console.log(`No-op re-run of two images as whole processes, medians of ${pairs} pairs`);
    processTable('No-op re-run and first build, whole processes', [await benchNoopProcess({ pairs }), await benchColdProcess({ pairs }), await benchColdProcess({ pairs, labelled: true })]);
  } catch (error) {
    console.error(`Benchmark failed: ${error.message}`);
    process.exitCode = 1;
  }
}
