// Builds spread over several engines: the pool (platforms, concurrency, base-tag locks), the
// graph runner, and the pipeline on two real engines (dockerd and Podman's service as two
// "hosts") building independent images at the same time while a dependent image waits.
import t from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testEnv, uniqueName } from './helpers/env.js';
import { EnginePool, parsePlatform, platformMatches, formatPlatform } from '../dist/lib/engine/pool.js';
import { runGraph } from '../dist/lib/pipeline/graph.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { pullImage } from '../dist/lib/engine/pool.js';
import { runPush } from '../dist/lib/engine/push.js';
import { assembleImageIndex } from '../dist/lib/publish/index.js';

const env = testEnv();
const registry = new RegistryClient({ registry: env.registryAnon });
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** library/busybox-multi:1.35: the index of busybox amd64 + arm64 (a multi-platform base, as real bases are). */
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

t.test('platform names', async (t) => {
  t.same(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  t.same(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' }, 'uname names are normalized');
  t.ok(platformMatches(parsePlatform('linux/arm64'), parsePlatform('linux/arm64/v8')), 'arm64 means arm64/v8');
  t.notOk(platformMatches(parsePlatform('linux/arm/v6'), parsePlatform('linux/arm')), 'arm means arm/v7');
  t.equal(formatPlatform(parsePlatform('linux/arm/v7')), 'linux/arm/v7');
  t.throws(() => parsePlatform('arm64'), /must be os\/arch/);
});

t.test('the pool: engine options are checked, unreachable engines are named', async (t) => {
  t.throws(() => EnginePool.fromSpecs([{ name: 'a', host: env.dockerHost }, { name: 'a', host: env.podmanHost }]), /engines\[1\]\.name: "a" is also the name of engines\[0\]/);
  const pool = EnginePool.fromSpecs([
    { name: 'dockerd', host: env.dockerHost },
    { name: 'gone', host: 'unix:///nonexistent/docker.sock' },
  ]);
  const error = await pool.check().catch((e) => e);
  t.equal(error.code, 'ERR_ENGINE_UNREACHABLE');
  t.match(error.message, /engine gone: .*unix:\/\/\/nonexistent\/docker\.sock/);
  t.notMatch(error.message, /engine dockerd/, 'the working engine is not blamed');
  t.match(error.hint, /remove it from engines/);
});

t.test('the pool: platforms and concurrency limits', async (t) => {
  const pool = EnginePool.fromSpecs([
    { name: 'emulating', host: env.dockerHost, platforms: ['linux/amd64', 'linux/arm64'], concurrency: 2 },
    { name: 'own-platform', host: env.podmanHost },
  ]);
  await pool.check();
  t.same(pool.stats().find((s) => s.name === 'own-platform').platforms, ['linux/amd64'], 'without platforms: the platform the engine reports');
  t.same(pool.candidates('linux/arm64').map((e) => e.name), ['emulating'], 'only the engine that lists arm64');
  t.throws(() => pool.assertPlatforms(['linux/riscv64'], 'test-image'), /No engine builds linux\/riscv64 for test-image; the engines are emulating \(unix:.*\): linux\/amd64, linux\/arm64; own-platform \(unix:.*\): linux\/amd64/);

  const leases = [];
  for (let i = 0; i < 3; i++) leases.push(await pool.acquire({ platform: 'linux/amd64' }));
  t.same(leases.map((l) => l.name).sort(), ['emulating', 'emulating', 'own-platform'], 'three builds fill both engines (2 + 1)');
  // A lease is granted synchronously when a slot is free: the pool's build count says whether it was.
  const granted = () => pool.stats().reduce((n, s) => n + s.builds, 0);
  const waiting = pool.acquire({ platform: 'linux/amd64' });
  t.equal(granted(), 3, 'a fourth build waits: every slot is taken');
  leases.find((l) => l.name === 'own-platform').release();
  t.equal(granted(), 4, 'the freed slot goes to it at once');
  const fourth = await waiting;
  t.equal(fourth.name, 'own-platform', 'it gets the slot that was freed');
  for (const lease of [...leases, fourth]) lease.release();
  t.same(pool.stats().map((s) => s.peak), [2, 1], 'no engine ran more than its concurrency');

  const controller = new AbortController();
  const busy = [await pool.acquire({ platform: 'linux/arm64' }), await pool.acquire({ platform: 'linux/arm64' })];
  const cancelled = pool.acquire({ platform: 'linux/arm64', what: 'image x for linux/arm64', signal: controller.signal }).catch((e) => e);
  controller.abort();
  const error = await cancelled;
  t.equal(error.code, 'ERR_ABORTED');
  t.match(error.message, /image x for linux\/arm64 was cancelled while waiting for a free engine/);
  for (const lease of busy) lease.release();
});

t.test('the pool: builds for other platforms never share a base tag on one engine at the same time', async (t) => {
  const pool = EnginePool.fromSpecs([{ name: 'one', host: env.dockerHost, platforms: ['linux/amd64', 'linux/arm64'], concurrency: 4 }]);
  await pool.check();
  const base = `${env.registryAnon}/library/busybox-multi:1.35`;
  const amd = await pool.acquire({ platform: 'linux/amd64', bases: [base] });
  const amd2 = await pool.acquire({ platform: 'linux/amd64', bases: [base] });
  t.pass('two amd64 builds share the base');
  // Leases are granted synchronously when they can run: the build count says which were.
  const granted = () => pool.stats()[0].builds;
  const armWaiting = pool.acquire({ platform: 'linux/arm64', bases: [base] });
  t.equal(granted(), 2, 'an arm64 build on the same base tag waits');
  const other = await pool.acquire({ platform: 'linux/arm64', bases: ['localhost/other:1'] });
  t.ok(other, 'an arm64 build on another base is not held up (no head-of-line blocking)');
  t.equal(granted(), 3, 'only that one was granted');
  amd.release();
  t.equal(granted(), 3, 'still waiting while one amd64 build uses the base');
  amd2.release();
  t.equal(granted(), 4, 'granted once the amd64 builds are done');
  const arm = await armWaiting;
  t.equal(arm.platform, 'linux/arm64', 'it runs once the amd64 builds are done');
  arm.release();
  other.release();
});

t.test('runGraph: dependencies, concurrency, failures skip dependants, cycles are refused', async (t) => {
  const log = [];
  let running = 0;
  let peak = 0;
  const task = (id, dependsOn = [], ms = 30, fail = false) => ({
    id,
    dependsOn,
    run: async () => {
      running++;
      peak = Math.max(peak, running);
      log.push(`start ${id}`);
      await delay(ms);
      running--;
      log.push(`end ${id}`);
      if (fail) throw new Error(`${id} broke`);
      return id;
    },
  });
  const records = await runGraph([task('a', [], 60), task('b', [], 20), task('c', ['a']), task('d', ['b']), task('e', ['c', 'd'])], { concurrency: 2 });
  t.same([...records.values()].map((r) => r.status), ['done', 'done', 'done', 'done', 'done']);
  t.equal(peak, 2, 'never more than the concurrency');
  t.ok(log.indexOf('start c') > log.indexOf('end a'), 'c waits for a');
  t.ok(log.indexOf('start d') < log.indexOf('end a'), 'd only waits for b (edges, not waves)');
  t.ok(log.indexOf('start e') > log.indexOf('end c') && log.indexOf('start e') > log.indexOf('end d'), 'e waits for both');

  const failing = await runGraph([task('x', [], 10, true), task('y', ['x']), task('z', ['y']), task('w')]);
  t.equal(failing.get('x').status, 'failed');
  t.match(failing.get('x').error.message, /x broke/);
  t.equal(failing.get('y').status, 'skipped');
  t.match(failing.get('y').reason, /depends on x/);
  t.equal(failing.get('z').status, 'skipped', 'transitively');
  t.equal(failing.get('w').status, 'done', 'unrelated tasks go on');

  await t.rejects(runGraph([task('p', ['q']), task('q', ['p'])]), { code: 'ERR_INVALID_OPTIONS', message: /cycle: p -> q -> p/ });
});

function imagesDir(prefix, seconds) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-engines-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  const image = (name, dockerfile) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), dockerfile);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: Test ${name}\ndescription: Fixture ${name}\ncategory: test\n`);
  };
  image(`${prefix}-one`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN sleep ${seconds} && echo one-${prefix} > /one\n`);
  image(`${prefix}-two`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN sleep ${seconds} && echo two-${prefix} > /two\n`);
  image(`${prefix}-child`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${prefix}-one:latest\nRUN cat /one > /child\n`);
  return dir;
}

t.test('two engines build two independent images at the same time; the dependent image waits for its base', async (t) => {
  const prefix = uniqueName('eng');
  const dir = imagesDir(prefix, 4);
  const catalogPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'tk-engines-catalog-')), 'catalog.json');
  const events = [];
  const result = await runPipeline(
    {
      imagesDir: dir,
      registry: env.registryAnon,
      engines: [
        { name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64'], concurrency: 1 },
        { name: 'podman', host: env.podmanHost, platforms: ['linux/amd64'], concurrency: 1 },
      ],
      registration: { target: 'catalog', catalogPath },
    },
    { onEvent: (e) => events.push(e) },
  );
  t.equal(result.failed, false, `pipeline succeeds: ${JSON.stringify(result.images.map((i) => [i.name, i.status, i.error?.message]))}`);
  const byName = Object.fromEntries(result.images.map((i) => [i.name.slice(prefix.length + 1), i]));
  // Positions in the event stream: the order in which things happened, whatever the machine's speed.
  const mark = (kind, name) => events.findIndex((e) => e.type === 'info' && e.message.startsWith(`${kind} ${prefix}-${name}:`));
  const span = (name) => ({ start: mark('==>', name), end: mark('<==', name) });
  const one = span('one');
  const two = span('two');
  const child = span('child');
  t.ok([one, two, child].every((s) => s.start >= 0 && s.end > s.start), 'start and end events for every image');
  t.ok(Math.max(one.start, two.start) < Math.min(one.end, two.end), `both independent images started before either ended (events one [${one.start}, ${one.end}], two [${two.start}, ${two.end}]): they ran at the same time`);
  t.not(byName.one.engine, byName.two.engine, `built on different engines (${byName.one.engine}, ${byName.two.engine})`);
  // The dependent image is planned once its base is published (its digest known), and built only
  // once the base is done (registered): a base that fails its registration stops it before a build.
  const sent = events.findIndex((e) => e.type === 'build-context' && path.basename(e.context) === `${prefix}-child`);
  t.ok(sent > one.end, `the dependent image is built only after its base is done (context sent at event ${sent}, base done at ${one.end})`);
  t.ok(Date.parse(byName.child.finishedAt) >= Date.parse(byName.one.finishedAt), 'the results say the same');
  t.same(
    result.engines.map((e) => [e.name, e.peak]),
    [
      ['dockerd', 1],
      ['podman', 1],
    ],
    'each engine kept to its concurrency of 1',
  );
  for (const suffix of ['one', 'two', 'child']) {
    const head = await registry.headManifest(`library/${prefix}-${suffix}`, 'latest');
    t.equal(head?.digest, byName[suffix].digest, `${suffix} is in the registry with the reported digest`);
  }
  const catalog = JSON.parse(readFileSync(catalogPath, 'utf8'));
  t.equal(catalog.images[`${prefix}-child`].digest, byName.child.digest, 'registered with its digest');

  const again = await runPipeline({
    imagesDir: dir,
    registry: env.registryAnon,
    engines: [
      { name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64'] },
      { name: 'podman', host: env.podmanHost, platforms: ['linux/amd64'] },
    ],
    registration: { target: 'catalog', catalogPath },
  });
  t.ok(again.images.every((i) => i.status === 'done' && i.buildSkipped), 'second run: nothing rebuilt');
  t.equal(again.changed, false, 'second run: changed=false');
});

t.test('a failing image on one engine skips its dependant only', async (t) => {
  const prefix = uniqueName('engf');
  const dir = imagesDir(prefix, 0);
  writeFileSync(path.join(dir, `${prefix}-one`, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo about-to-fail && exit 3\n`);
  const result = await runPipeline({
    imagesDir: dir,
    registry: env.registryAnon,
    register: false,
    concurrency: 2,
    engine: { host: env.dockerHost },
  });
  const byName = Object.fromEntries(result.images.map((i) => [i.name.slice(prefix.length + 1), i]));
  t.equal(byName.one.status, 'failed');
  t.match(byName.one.error.message, /exit 3|returned a non-zero code: 3/);
  t.equal(byName.child.status, 'skipped');
  t.match(byName.child.reason, /builds on .*-one, which was not built/);
  t.equal(byName.two.status, 'done', 'the unrelated image is built');
  t.equal(result.failed, true);
});

t.test('registration records the platforms of a multi-architecture image built by the pipeline', async (t) => {
  if (!env.arm64) return t.fail('arm64 emulation is not available (env.json arm64=false)');
  const prefix = uniqueName('engp');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-engines-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox-multi:1.35\n');
  mkdirSync(path.join(dir, `${prefix}-m`));
  writeFileSync(path.join(dir, `${prefix}-m`, 'Dockerfile'), 'ARG HARBOR_REGISTRY\nFROM ${HARBOR_REGISTRY}/library/busybox-multi:1.35\nRUN uname -m > /arch\n');
  writeFileSync(path.join(dir, `${prefix}-m`, 'image.yaml'), `name: ${prefix}-m\ndisplay_name: M\ndescription: Fixture\ncategory: test\nplatforms: [linux/amd64, linux/arm64]\n`);
  const catalogPath = path.join(dir, 'catalog.json');
  await multiPlatformBase();
  const result = await runPipeline({ imagesDir: dir, registry: env.registryAnon, engine: { host: env.dockerHost }, registration: { target: 'catalog', catalogPath } });
  const image = result.images[0];
  t.equal(image.status, 'done', image.error?.message);
  t.same(image.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64'], 'the platforms from image.yaml');
  t.equal((await registry.headManifest(`library/${prefix}-m`, 'latest'))?.digest, image.digest, 'the digest is the index');
  const entry = JSON.parse(readFileSync(catalogPath, 'utf8')).images[`${prefix}-m`];
  t.same(entry.platforms, ['linux/amd64', 'linux/arm64'], 'the registration records the platforms');
  t.equal(entry.digest, image.digest);
});

t.test('sequential stays the default', async (t) => {
  const prefix = uniqueName('engs');
  const dir = imagesDir(prefix, 0);
  const result = await runPipeline({ imagesDir: dir, registry: env.registryAnon, register: false, engine: { host: env.dockerHost } });
  t.equal(result.failed, false);
  // Sequential is a pool of one engine that runs one build at a time.
  t.equal(result.engines.length, 1, 'one engine');
  t.equal(result.engines[0].peak, 1, 'never two builds at once');
  t.equal(result.engines[0].builds, result.images.filter((i) => !i.buildSkipped).length, 'every build went to that engine');
});
