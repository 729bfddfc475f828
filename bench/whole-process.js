#!/usr/bin/env node
// Whole processes as users run them (issue 15), in one table: start-up (bench/startup.js's cases
// against `node -e 0`), the no-op re-run of two unchanged images (one built on the other) by the
// CLI against `docker build` + `docker push` of both with a warm cache, and by the project's
// playbook against a community.docker playbook doing the same build and push. Ours and the
// baseline alternate pair by pair on the same daemon and registry (test/env/up.sh); medians of
// wall and CPU time, ratios, goals met or missed. Never fails on a goal: the numbers are for
// people. Installs nothing: without Debian's ansible and python3-docker the playbook row says
// what to install and the rest runs.
//
//   node bench/whole-process.js [--pairs=N] [--startup-pairs=N] [--only=startup,cli,playbook,in-process] [--quick]
//   (npm run bench). in-process: bench/run.js's no-op and context-upload figures (their table
//   second), run after this table; --quick goes to it.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { measurePairs, option, processTable, readTestEnv, root, timed } from './lib/process.js';
import { benchStartup } from './startup.js';
import { benchColdProcess, benchNoopProcess, twoImages } from './noop-process.js';
import { ansiblePython, playbookCommand, playbookPath, recap } from '../test/helpers/ansible.js';

const quick = process.argv.includes('--quick');
const pairs = Number(option('pairs', quick ? 3 : 7));
const startupPairs = Number(option('startup-pairs', quick ? 15 : 21));
const only = option('only', 'startup,cli,playbook,in-process').split(',').filter(Boolean);
const log = (...args) => console.log(...args);
const t0 = performance.now();
const env = only.some((part) => part !== 'startup') ? readTestEnv() : {};
if (!env) {
  console.error('No test environment: run "bash test/env/up.sh" first (npm run bench does), or --only=startup.');
  process.exit(1);
}
const NOOP_GOAL = 0.5; // issue 15: a playbook no-op at or under half of the community.docker one (wall)
const made = []; // image references to remove from the engine at the end
const temp = []; // folders to remove at the end

const runId = `${process.pid}-${Date.now().toString(36)}`;
const dockerEnv = () => ({ DOCKER_HOST: env.dockerHost, DOCKER_CLI_HINTS: 'false', DOCKER_CONFIG: env.dockerConfigDir });

/** bench/noop-process.js's two images (one built on the other), removed at the end. */
function imageSet(prefix) {
  const set = twoImages(env, prefix);
  temp.push(set.dir);
  for (const name of set.order) made.push(`${env.registryAuth}/library/${name}:latest`);
  return { dir: set.dir, names: set.order };
}

/** Debian's ansible (community.docker) and python3-docker, or what is missing. */
function communityDockerMissing() {
  const missing = [];
  try {
    const listed = JSON.parse(execFileSync('ansible-galaxy', ['collection', 'list', 'community.docker', '--format', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    if (!Object.values(listed).some((c) => c['community.docker'])) missing.push('ansible');
  } catch {
    missing.push('ansible');
  }
  try {
    execFileSync(ansiblePython, ['-c', 'import docker'], { stdio: 'ignore' });
  } catch {
    missing.push('python3-docker');
  }
  return missing;
}

/** The peer users would pick: community.docker's docker_image, build and push, per image. */
function communityPlaybook(dir) {
  const file = path.join(dir, 'community-docker.yaml');
  writeFileSync(
    file,
    `- name: Build and push the images with community.docker
  hosts: all
  gather_facts: false
  tasks:
    - name: Build and push each image
      community.docker.docker_image:
        name: "{{ registry }}/library/{{ item }}"
        tag: latest
        source: build
        build:
          path: "{{ images_dir }}/{{ item }}"
          args:
            HARBOR_REGISTRY: "{{ registry }}"
        push: true
        force_source: true
        docker_host: "{{ docker_host }}"
      loop: "{{ image_names }}"
`,
  );
  return file;
}

async function benchPlaybook() {
  log('\nPlaybook no-op: ansible/10_build_jupyter_images.yaml on two unchanged images vs a community.docker playbook (docker_image, source: build, push: true, force_source: true)');
  const missing = communityDockerMissing();
  if (missing.length) {
    const note = `not measured: the community.docker baseline needs Debian's ${missing.join(' and ')} (apt-get install -y ${missing.join(' ')})`;
    log(`  ${note}`);
    return { figure: 'playbook no-op, 2 images', note };
  }
  const ours = imageSet(`bench-wpb-${runId}`);
  const theirs = imageSet(`bench-wcd-${runId}`);
  const playbook = playbookCommand({
    playbook: playbookPath,
    extraVars: { harbor_registry: env.registryAuth, harbor_username: env.registryUser, harbor_admin_password: env.registryPassword, images_dir: ours.dir, engine_host: env.dockerHost, catalog_path: path.join(ours.dir, 'catalog.json') },
  });
  const community = playbookCommand({
    playbook: communityPlaybook(theirs.dir),
    extraVars: { registry: env.registryAuth, images_dir: theirs.dir, image_names: theirs.names, docker_host: env.dockerHost },
    // docker_image's push takes the registry credentials from the Docker CLI config, as after `docker login`.
    env: { DOCKER_CONFIG: env.dockerConfigDir },
  });
  temp.push(playbook.dir, community.dir);
  const oursRun = () => timed(playbook.cmd, playbook.args, { env: playbook.env });
  const communityRun = () => timed(community.cmd, community.args, { env: community.env });
  const check = (r) => {
    const counts = recap(r.stdout);
    if (!counts || counts.changed !== 0 || counts.failed !== 0) throw new Error(`the no-op playbook run changed or failed something:\n${r.stdout.slice(-2500)}`);
  };
  const first = await oursRun();
  log(`  first playbook run (builds and pushes both): ${first.wall.toFixed(0)} ms; first community.docker run: ${(await communityRun()).wall.toFixed(0)} ms`);
  const row = await measurePairs({ figure: 'playbook no-op, 2 images (ansible-playbook)', baselineName: 'community.docker playbook', goal: NOOP_GOAL, goalOn: ['wall'], pairs, ours: oursRun, baseline: communityRun, check, log });
  // The floor: ansible-playbook itself, one debug task and no module. No playbook's ratio goes below it.
  const floorFile = path.join(playbook.dir, 'floor.yaml');
  writeFileSync(floorFile, '- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: nothing\n');
  const floor = playbookCommand({ playbook: floorFile, extraVars: {} });
  temp.push(floor.dir);
  const floorRow = await measurePairs({ figure: 'floor: ansible-playbook, one debug task', baselineName: 'community.docker playbook', pairs, ours: () => timed(floor.cmd, floor.args, { env: floor.env }), baseline: communityRun, log });
  return [row, floorRow];
}

async function cleanup() {
  for (const ref of made.splice(0)) {
    try {
      execFileSync(env.dockerCli ?? 'docker', ['rmi', '-f', ref], { env: { ...process.env, ...dockerEnv() }, stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  for (const dir of temp.splice(0)) rmSync(dir, { recursive: true, force: true });
}

const rows = [];
try {
  log(`Whole processes${env.dockerHost ? `: engine ${env.dockerHost}, registry ${env.registryAuth}` : ''}, ${pairs} pairs (start-up ${startupPairs})`);
  if (only.includes('startup')) {
    log(`\nStart-up against node -e 0`);
    rows.push(...(await benchStartup({ pairs: startupPairs, log })));
  }
  if (only.includes('cli')) {
    log('\nCLI no-op: node bin/pipeline.js on two unchanged images vs docker build + docker push of both (warm cache)');
    rows.push(await benchNoopProcess({ pairs, log }));
    log('\nCLI first build: node bin/pipeline.js on two new images vs docker build + docker push of both (fresh content each pair)');
    rows.push(await benchColdProcess({ pairs, log }));
    log('\nCLI first build, the engine doing the same work: docker build + push of the same Dockerfiles with the LABEL line our builds append');
    rows.push(await benchColdProcess({ pairs, log, labelled: true }));
  }
  if (only.includes('playbook')) rows.push(...[await benchPlaybook()].flat());
  if (rows.some((r) => !r.note)) processTable('Whole processes, ours and the baseline alternating pair by pair', rows.filter((r) => !r.note), log);
  for (const r of rows.filter((r) => r.note)) log(`${r.figure}: ${r.note}`);
  log(`\ntotal ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (only.includes('in-process')) {
    await cleanup();
    log('\nIn-process figures (bench/run.js)\n');
    const inProcess = spawnSync(process.execPath, [path.join(root, 'bench', 'run.js'), '--only=noop,context', ...(quick ? ['--quick'] : [])], { stdio: 'inherit' });
    if (inProcess.status !== 0) process.exitCode = inProcess.status ?? 1;
  }
} catch (error) {
  console.error(`Benchmark failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
