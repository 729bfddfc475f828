// ansible/20_build_multiarch.yaml run by the real ansible-playbook with a two-host inventory (both
// local connections): builder-amd64 builds on Podman's service, builder-arm64 on dockerd (arm64
// under qemu), one host joins the platforms into the index. The library builds the same index.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { testEnv, uniqueName, repoRoot } from './helpers/env.js';
import { hostVars, runPlaybook, recap } from './helpers/ansible.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { pullImage } from '../dist/lib/engine/pool.js';
import { runPush } from '../dist/lib/engine/push.js';
import { assembleImageIndex } from '../dist/lib/publish/index.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';

const run = promisify(execFile);
const env = testEnv();
const playbook = path.join(repoRoot, 'ansible', '20_build_multiarch.yaml');
const registry = new RegistryClient({ registry: env.registryAnon });
const dockerConfig = mkdtempSync(path.join(os.tmpdir(), 'tk-docker-config-'));
const docker = (...args) => run(env.dockerCli ?? 'docker', ['--config', dockerConfig, ...args], { env: { ...process.env, DOCKER_HOST: env.dockerHost }, timeout: 120_000 });

/** library/busybox-multi:1.35: the index of busybox amd64 + arm64 (a multi-platform base). */
async function multiPlatformBase() {
  const dockerd = connectEngine({ host: env.dockerHost });
  await pullImage(dockerd, env.busyboxArm64Image, 'linux/arm64', {});
  const manifests = [];
  for (const [source, arch] of [[env.busyboxImage, 'amd64'], [env.busyboxArm64Image, 'arm64']]) {
    await (await dockerd.client()).getImage(source).tag({ repo: `${env.registryAnon}/library/busybox-multi`, tag: `1.35-${arch}` });
    manifests.push((await runPush(dockerd, { tags: [`${env.registryAnon}/library/busybox-multi:1.35-${arch}`] })).digest);
  }
  await assembleImageIndex({ tags: [`${env.registryAnon}/library/busybox-multi:1.35`], manifests, platforms: ['linux/amd64', 'linux/arm64'] });
}

/** <p>-base (FROM the multi-platform busybox) and <p>-child (FROM <p>-base: a dependency). */
function imagesDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-images-ma-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox-multi:1.35\n');
  const image = (name, dockerfile) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), dockerfile);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: Test ${name}\ndescription: Fixture ${name}\ncategory: test\n`);
  };
  image(`${prefix}-base`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox-multi:1.35\nRUN uname -m > /base-arch && echo ${prefix} > /base\n`);
  image(`${prefix}-child`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${prefix}-base:latest\nRUN uname -m > /child-arch\n`);
  return dir;
}

function inventory({ amd64Engine = env.podmanHost, arm64Engine = env.dockerHost, arm64Platform = 'linux/arm64' } = {}) {
  return [
    '[builders]',
    `builder-amd64 ${hostVars()} build_platform=linux/amd64 engine_host=${amd64Engine}`,
    `builder-arm64 ${hostVars()} build_platform=${arm64Platform} engine_host=${arm64Engine}`,
    '',
  ].join('\n');
}

t.test('arm64 emulation is available', async (t) => {
  t.ok(env.arm64, `the playbook test builds linux/arm64 under qemu: env.json says arm64=${env.arm64} (see ${env.stateDir}/setup.log)`);
});

t.test('two builder hosts each build their platform; one host joins them; the library gives the same index', async (t) => {
  if (!env.arm64) return t.fail('arm64 emulation is not available');
  await multiPlatformBase();
  const prefix = uniqueName('pbma');
  const dir = imagesDir(prefix);
  const catalogPath = path.join(dir, 'catalog.json');
  const extraVars = { harbor_registry: env.registryAnon, images_dir: dir, catalog_path: catalogPath };

  const first = await runPlaybook({ playbook, inventory: inventory(), extraVars });
  t.equal(first.code, 0, `playbook succeeds:\n${first.output.slice(-4000)}`);
  t.equal(recap(first.output, 'builder-amd64')?.failed, 0);
  t.equal(recap(first.output, 'builder-arm64')?.failed, 0);
  t.notOk(first.output.includes('MODULE FAILURE'), 'no module failure');
  // One pipeline task, run once (on the first builder), driving the engines of both builders.
  const pipelineTask = first.output.split('TASK [Build, push, join, scan and register every image in dependency order]')[1]?.split('TASK [')[0] ?? '';
  t.match(pipelineTask, /changed: \[builder-amd64\]/, 'the pipeline ran on one host');
  t.notMatch(pipelineTask, /builder-arm64/, 'not once more on the other host');
  t.ok(first.output.indexOf(`"${prefix}-child: done`) > first.output.indexOf(`"${prefix}-base: done`), 'the summary lists the base before the image built on it');

  const catalog = JSON.parse(readFileSync(catalogPath, 'utf8'));
  const indexes = {};
  for (const suffix of ['base', 'child']) {
    const repository = `library/${prefix}-${suffix}`;
    const stored = await registry.getManifest(repository, 'latest');
    const document = JSON.parse(stored.body.toString('utf8'));
    indexes[suffix] = stored.digest;
    t.same(document.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`), ['linux/amd64', 'linux/arm64'], `${suffix}: the index names both platforms`);
    for (const [platform, hostSuffix] of [['linux/amd64', 'linux-amd64'], ['linux/arm64', 'linux-arm64']]) {
      const perPlatform = await registry.headManifest(repository, `latest-${hostSuffix}`);
      t.equal(perPlatform?.digest, document.manifests.find((m) => `${m.platform.os}/${m.platform.architecture}` === platform).digest, `${suffix}: ${platform} is the image its builder pushed`);
    }
    t.ok(first.output.includes(`${prefix}-${suffix}: done ${stored.digest} [linux/amd64, linux/arm64], changed=true`), `${suffix}: the summary reports the index`);
    t.same(catalog.images[`${prefix}-${suffix}`].platforms, ['linux/amd64', 'linux/arm64'], `${suffix}: registered with its platforms`);
    t.equal(catalog.images[`${prefix}-${suffix}`].digest, stored.digest, `${suffix}: registered with the index digest`);
  }

  // The arm64 child was built on the arm64 base: both RUN steps ran as arm64.
  const childTag = `${env.registryAnon}/library/${prefix}-child:latest`;
  await docker('pull', '-q', '--platform', 'linux/arm64', childTag);
  const { stdout: arch } = await docker('image', 'inspect', childTag, '--format', '{{.Architecture}}');
  t.equal(arch.trim(), 'arm64', 'docker pull --platform linux/arm64 gets the arm64 image');
  const { stdout: archs } = await docker('run', '--rm', '--network', 'none', '--platform', 'linux/arm64', childTag, 'cat', '/base-arch', '/child-arch');
  t.same(archs.trim().split('\n'), ['aarch64', 'aarch64'], 'base and child layers were built as arm64');

  // The library builds the same images to the same index: every platform is found unchanged.
  const library = await runPipeline({
    imagesDir: dir,
    registry: env.registryAnon,
    platforms: ['linux/amd64', 'linux/arm64'],
    engines: [{ name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64', 'linux/arm64'], concurrency: 2 }],
    register: false,
  });
  t.equal(library.failed, false, JSON.stringify(library.images.map((i) => i.error?.message)));
  for (const image of library.images) {
    const suffix = image.name.slice(prefix.length + 1);
    t.equal(image.digest, indexes[suffix], `${suffix}: the library's index is the playbook's`);
    t.same(image.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64'], `${suffix}: same platforms`);
    t.equal(image.buildSkipped, true, `${suffix}: the library rebuilt nothing (same per-platform inputs)`);
  }
  t.equal(library.changed, false, 'the library changed nothing');

  const second = await runPlaybook({ playbook, inventory: inventory(), extraVars });
  t.equal(second.code, 0, `second run succeeds:\n${second.output.slice(-3000)}`);
  t.equal(recap(second.output, 'builder-amd64')?.changed, 0, 'second run: nothing changed on builder-amd64');
  t.equal(recap(second.output, 'builder-arm64')?.changed, 0, 'second run: nothing changed on builder-arm64');
  t.ok(second.output.includes(`${prefix}-child: done ${indexes.child} [linux/amd64, linux/arm64], changed=false - inputs unchanged`), 'second run: nothing built, same index');
});

t.test('a builder whose engine cannot be reached fails the play before anything is built', async (t) => {
  const prefix = uniqueName('pbmf');
  const dir = imagesDir(prefix);
  await multiPlatformBase();
  const run1 = await runPlaybook({
    playbook,
    inventory: inventory({ arm64Engine: 'unix:///nonexistent/docker.sock' }),
    extraVars: { harbor_registry: env.registryAnon, images_dir: dir, register_images: false },
  });
  t.not(run1.code, 0, 'the play fails');
  // The engines are checked before anything is built: nothing half-done is left in the registry.
  t.match(run1.output, /builder-arm64.*nonexistent\/docker\.sock/, 'the failure names the builder and its engine');
  t.equal(await registry.headManifest(`library/${prefix}-base`, 'latest'), undefined, 'no index with only some platforms was put');
  t.equal(await registry.headManifest(`library/${prefix}-base`, 'latest-linux-amd64'), undefined, 'no platform was built either');
});

t.test('two builders with the same platform are refused', async (t) => {
  const dir = imagesDir(uniqueName('pbmd'));
  const run1 = await runPlaybook({ playbook, inventory: inventory({ arm64Platform: 'linux/amd64' }), extraVars: { harbor_registry: env.registryAnon, images_dir: dir } });
  t.not(run1.code, 0);
  t.match(run1.output, /Two builder hosts have the same build_platform \(linux\/amd64, linux\/amd64\)/);
});
