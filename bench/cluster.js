#!/usr/bin/env node
// Cluster builds against the local engine pool (issue 13): a four-image set, every image for two
// platforms (linux/amd64, linux/arm64; arm64 emulated by qemu on this machine), one image built
// on another, each build with a `RUN sleep`. The same pipeline run twice per pair, alternating:
//   local    executor local, an engine pool of two engines (dockerd for amd64, Podman for arm64),
//            one build at a time each;
//   cluster  executor kubernetes on the stand-in cluster (test/helpers/kube-standin.js with
//            Argo's controller, test/helpers/argo-controller.js): two "nodes" (amd64, arm64), one
//            pod at a time each, every step run for real with Debian's buildah in a fresh storage
//            root, as a new pod would.
// Both really build (force + noCache, a fresh project per run) against the password-protected
// test registry, and publish, join the indexes and register to a throwaway catalog. Prints the
// wall time of each run, the medians and the ratio cluster/local. Nothing fails on a figure.
//
//   node bench/cluster.js [--pairs=2] [--sleep=5]   (after bash test/env/up.sh)
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { median, option, readTestEnv } from './lib/process.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { startKubeStandin } from '../test/helpers/kube-standin.js';
import { startArgoController } from '../test/helpers/argo-controller.js';

const PAIRS = Number(option('pairs', 2));
const SLEEP = Number(option('sleep', 5));

const env = readTestEnv();
if (!env) {
  console.error('No test environment: run "bash test/env/up.sh" first.');
  process.exit(1);
}
const auth = { username: env.registryUser, password: env.registryPassword };
const PLATFORMS = ['linux/amd64', 'linux/arm64'];

/** base, child (FROM base), solo-1, solo-2: every one for both platforms, each sleeping in a RUN. */
function imagesDir(project) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-cluster-'));
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  const image = (name, from) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${from}\nRUN sleep ${SLEEP} && echo ${name} >> /built\n`);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: Bench ${name}\ndescription: Benchmark fixture\ncategory: bench\nplatforms:\n${PLATFORMS.map((p) => `  - ${p}\n`).join('')}`);
  };
  image('base', `library/busybox:${env.busyboxTag}`);
  image('child', `${project}/base:latest`);
  image('solo-1', `library/busybox:${env.busyboxTag}`);
  image('solo-2', `library/busybox:${env.busyboxTag}`);
  return dir;
}

async function cluster() {
  const kube = await startKubeStandin({ namespaces: ['argo'] });
  const argo = startArgoController(kube, { podGcDelayMs: 60_000 });
  const config = JSON.stringify({ auths: { [env.registryAuth]: { auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') } } });
  kube.put('secrets', { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/dockerconfigjson', metadata: { name: 'harbor-docker-config', namespace: 'argo' }, data: { 'config.json': Buffer.from(config).toString('base64') } });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-kc-'));
  return { kube, argo, kubeconfig: kube.kubeconfig(dir), dir };
}

async function timed(label, extra) {
  const project = `bench-cl-${Date.now().toString(36)}`;
  const dir = imagesDir(project);
  const started = performance.now();
  const result = await runPipeline({
    imagesDir: dir,
    registry: env.registryAuth,
    project,
    auth,
    force: true,
    noCache: true,
    keepInputTags: 0,
    registration: { target: 'catalog', catalogPath: path.join(dir, 'catalog.json') },
    ...extra,
  });
  const ms = performance.now() - started;
  rmSync(dir, { recursive: true, force: true });
  const failed = result.images.filter((i) => i.status !== 'done');
  if (failed.length) throw new Error(`${label}: ${failed.map((i) => `${i.name} ${i.status}: ${i.error?.message ?? i.reason}`).join('; ')}`);
  const builds = result.images.reduce((n, i) => n + (i.platforms ?? []).filter((p) => !p.skipped).length, 0);
  console.log(`  ${label.padEnd(8)} ${(ms / 1000).toFixed(1).padStart(6)} s  (${builds} platform builds; ${result.engines.map((e) => `${e.name} ${e.builds}`).join(', ')})`);
  return ms;
}

console.log(`4 images x 2 platforms (one image built on another), RUN sleep ${SLEEP} each, force + noCache; ${PAIRS} pairs, alternating\n`);
const stand = await cluster();
const times = { local: [], cluster: [] };
try {
  for (let pair = 1; pair <= PAIRS; pair++) {
    console.log(`pair ${pair}`);
    times.local.push(
      await timed('local', {
        engines: [
          { name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64'], concurrency: 1 },
          { name: 'podman', host: env.podmanHost, platforms: ['linux/arm64'], concurrency: 1 },
        ],
      }),
    );
    times.cluster.push(await timed('cluster', { executor: 'kubernetes', kubernetes: { connection: { kubeconfig: stand.kubeconfig } } }));
  }
} finally {
  await stand.argo.stop();
  await stand.kube.close();
  rmSync(stand.dir, { recursive: true, force: true });
}
const local = median(times.local);
const clusterMs = median(times.cluster);
console.log(`\n| Run | Median wall time |\n| --- | --- |\n| local engine pool (dockerd amd64 + Podman arm64, 1 build each) | ${(local / 1000).toFixed(1)} s |\n| stand-in cluster (2 nodes, 1 pod each, buildah) | ${(clusterMs / 1000).toFixed(1)} s |\n| ratio cluster / local | ${(clusterMs / local).toFixed(2)} |`);
