// Faults of a real cluster, injected on loopback: a registry link cut mid-push and answering 503 /
// 429, thinkube-control answering 503, dockerd stopped mid-build, the engine link cut, a stalled
// build, SIGTERM to a running build, two pipelines at once. Each scenario asserts the FINAL state
// of the registry (asked directly, not through the proxy) and of the registration.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { buildImage } from '../dist/lib/build/build.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { HarborClient } from '../dist/lib/harbor/client.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { runScript } from './helpers/scripts.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { startControlStandin } from './helpers/control-standin.js';
import { startHarborStandin } from './helpers/harbor-standin.js';
import { startPrivateDockerd } from './helpers/private-dockerd.js';

const env = testEnv();
const engine = { host: env.dockerHost };
const docker = new Docker({ socketPath: env.dockerHost.replace(/^unix:\/\//, '') });
const registry = new RegistryClient({ registry: env.registryAnon });
// Fast retries: the scenarios prove the behaviour, not the default waits.
const FAST_RETRY = { limit: 3, initialDelaySeconds: 0.2, maxDelaySeconds: 2 };
process.env.THINKUBE_IMAGES_LOCK_DIR = mkdtempSync(path.join(os.tmpdir(), 'tk-fault-locks-'));

function tmp(t, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An images folder with one image per entry: { name: Dockerfile body after FROM }. Files: random 256 KiB payload. */
function imagesDir(t, images) {
  const dir = tmp(t, 'tk-fault-images-');
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  Object.entries(images).forEach(([name, body], index) => {
    mkdirSync(path.join(dir, name));
    // Random bytes: a real layer upload that the registry does not have yet.
    writeFileSync(path.join(dir, name, 'payload.bin'), randomBytes(256 * 1024));
    writeFileSync(path.join(dir, name, 'requirements.txt'), '# nothing to install\n');
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nCOPY payload.bin /payload.bin\n${body}`);
    writeFileSync(
      path.join(dir, name, 'image.yaml'),
      `name: ${name}\ndisplay_name: Fault ${name}\ndescription: Fault-injection fixture ${name}\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: ${index === 0}\n  purpose: jupyter\n`,
    );
  });
  return dir;
}

function readCatalog(file) {
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).images : {};
}

const describe = (result) => JSON.stringify(result.images.map((i) => [i.name, i.status, i.error?.code, i.error?.message?.slice(0, 300)]));

/** Containers (any state) whose command line holds `token`. */
async function containersWith(token, daemon = docker) {
  return (await daemon.listContainers({ all: true })).filter((c) => c.Command.includes(token));
}

async function waitFor(what, check, timeoutMs = 60_000, everyMs = 200) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Run a bin/ script; resolves with exit code, stdout, stderr; `onStart` gets the child. */
function argsFile(t, args) {
  const file = path.join(tmp(t, 'tk-fault-args-'), 'args.json');
  writeFileSync(file, JSON.stringify(args));
  return file;
}

// ------------------------------------------------------------------ registry faults

t.test('registry link cut mid-push and a 503 on the manifest: retried, digest verified, registered once', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const name = uniqueName('cut');
  const dir = imagesDir(t, { [name]: 'RUN echo built > /built\n' });
  const catalogPath = path.join(tmp(t, 'tk-fault-cat-'), 'catalog.json');
  // The first blob upload is cut after 64 KiB; the first manifest PUT is answered 503.
  proxy.failRequests({ method: 'PATCH', path: /\/blobs\/uploads\//, cutAfterBytes: 64 * 1024, times: 1 });
  proxy.failRequests({ method: 'PUT', path: /\/manifests\//, status: 503, times: 1 });
  const events = [];
  const result = await runPipeline(
    { imagesDir: dir, registry: proxy.address, engine, retry: FAST_RETRY, registration: { target: 'catalog', catalogPath } },
    { onEvent: (e) => events.push(e) },
  );
  t.equal(result.failed, false, describe(result));
  t.equal(proxy.stats.cuts, 1, 'one upload was cut mid-body');
  t.equal(proxy.stats.injected, 1, 'one manifest PUT was answered 503');
  const retries = events.filter((e) => e.type === 'retry');
  t.ok(retries.some((e) => /503/.test(e.reason) && e.operation.startsWith('push ')), `the push was retried after the 503: ${JSON.stringify(retries)}`);
  t.ok(retries.length >= 2, 'the cut upload was retried too (by the engine or by us), and reported');
  t.ok(retries.every((e) => e.delayMs > 0 && e.attempt >= 1), 'each retry says how long it waits');

  const image = result.images[0];
  const inRegistry = await registry.headManifest(`library/${name}`, 'latest');
  t.ok(inRegistry, 'the registry has the image');
  t.equal(image.digest, inRegistry.digest, 'the pushed digest is what the registry serves');
  const catalog = readCatalog(catalogPath);
  t.same(Object.keys(catalog), [name], 'registered once');
  t.equal(catalog[name].digest, inRegistry.digest, 'the registration names the registry digest');
});

t.test('registry failing past the retry budget: clear failure, nothing registered; the next run completes', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const name = uniqueName('budget');
  const dir = imagesDir(t, { [name]: '' });
  const catalogPath = path.join(tmp(t, 'tk-fault-cat-'), 'catalog.json');
  proxy.failRequests({ method: 'PUT', path: /\/manifests\//, status: 503, times: 1000 });
  const events = [];
  const failed = await runPipeline(
    { imagesDir: dir, registry: proxy.address, engine, retry: { limit: 2, initialDelaySeconds: 0.2 }, registration: { target: 'catalog', catalogPath } },
    { onEvent: (e) => events.push(e) },
  );
  t.equal(failed.failed, true);
  const image = failed.images[0];
  t.equal(image.status, 'failed');
  t.equal(image.error.code, 'ERR_PUSH_FAILED');
  t.match(image.error.message, /503 Service Unavailable/, 'names what the registry answered');
  t.match(image.error.message, /gave up after 2 retries/, 'says the retries were spent');
  t.match(image.error.message, proxy.address, 'names the registry');
  t.equal(events.filter((e) => e.type === 'retry' && e.operation.startsWith('push ')).length, 2, 'two retries, each reported');
  t.equal(await registry.headManifest(`library/${name}`, 'latest'), undefined, 'the registry has no tag');
  t.same(readCatalog(catalogPath), {}, 'nothing was registered');

  // Resume: the registry recovers; the next run pushes what is missing and registers it.
  proxy.clear();
  const again = await runPipeline({ imagesDir: dir, registry: proxy.address, engine, retry: FAST_RETRY, registration: { target: 'catalog', catalogPath } });
  t.equal(again.failed, false, describe(again));
  const inRegistry = await registry.headManifest(`library/${name}`, 'latest');
  t.equal(readCatalog(catalogPath)[name]?.digest, inRegistry?.digest, 'registered with the digest the registry has');
});

t.test('registry API: 429 honours Retry-After, 503 on reads is retried, each retry reported; a PUT 503 is not retried', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const events = [];
  const client = new RegistryClient({ registry: proxy.address, onRetry: (e) => events.push(e) });
  proxy.failRequests({ method: 'HEAD', path: /manifests/, status: 429, retryAfter: 1, times: 1 });
  proxy.failRequests({ method: 'HEAD', path: /manifests/, status: 503, times: 1 });
  const head = await client.headManifest('library/busybox', env.busyboxTag);
  t.ok(head?.digest, 'answered after the retries');
  // That a wait lasts its delayMs is proved on a virtual clock in retry.test.js.
  t.equal(events.length, 2);
  t.match(events[0], { type: 'retry', attempt: 1, delayMs: 1000, reason: 'HTTP 429' });
  t.match(events[1], { type: 'retry', attempt: 2, reason: 'HTTP 503' });
  t.match(events[0].operation, /^HEAD http:\/\/localhost:\d+\/v2\/library\/busybox\/manifests\//);

  // A 429 on a PUT was not processed: safe to retry. A 503 on a PUT might have been: not retried.
  const manifest = await client.getManifest('library/busybox', env.busyboxTag);
  // Same repository: a registry accepts a manifest only where its blobs are.
  const repo = 'library/busybox';
  const tagOne = uniqueName('fault-put');
  const tagTwo = `${tagOne}-2`;
  proxy.failRequests({ method: 'PUT', path: /manifests/, status: 429, retryAfter: 0, times: 1 });
  await client.putManifest(repo, tagOne, manifest.body, manifest.mediaType);
  t.equal((await registry.headManifest(repo, tagOne))?.digest, manifest.digest, 'PUT retried after 429');
  proxy.failRequests({ method: 'PUT', path: /manifests/, status: 503, times: 1 });
  const before = events.length;
  await t.rejects(client.putManifest(repo, tagTwo, manifest.body, manifest.mediaType), { code: 'ERR_REGISTRY' });
  t.equal(events.length, before, 'no retry of a PUT answered 503');
});

t.test('a stalled registry: the push is cancelled after stallTimeoutSeconds and fails with ERR_TIMEOUT', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const ref = `${proxy.address}/fault/${uniqueName('stall')}:1`;
  await docker.getImage(env.busyboxImage).tag({ repo: ref.slice(0, ref.lastIndexOf(':')), tag: '1' });
  t.teardown(() => docker.getImage(ref).remove().catch(() => {}));
  proxy.pause();
  const error = await pushImage({ tags: [ref], engine, verify: false, stallTimeoutSeconds: 2, retry: { limit: 0 } }).catch((e) => e);
  proxy.resume();
  t.equal(error.code, 'ERR_TIMEOUT', error.message);
  t.match(error.message, /no progress for 2 s/, 'the stall timeout ended it');
});

t.test('a push cancelled midway stops cleanly and says which tags were pushed and which not', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const repo = `${proxy.address}/fault/${uniqueName('abort')}`;
  for (const tag of ['one', 'two']) await docker.getImage(env.busyboxImage).tag({ repo, tag });
  t.teardown(() => Promise.all(['one', 'two'].map((tag) => docker.getImage(`${repo}:${tag}`).remove().catch(() => {}))));
  const controller = new AbortController();
  const events = [];
  // The first tag goes through; the second hangs at the registry until the caller gives up.
  const pushing = pushImage({ tags: [`${repo}:one`, `${repo}:two`], engine, verify: false }, {
    signal: controller.signal,
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'push-digest' && e.reference.endsWith(':one')) {
        proxy.pause();
        setTimeout(() => controller.abort(), 500);
      }
    },
  }).catch((e) => e);
  const error = await pushing;
  proxy.resume();
  t.equal(error.code, 'ERR_ABORTED', error.message);
  t.same(error.details.pushed, [`${repo}:one`], 'what was pushed');
  t.same(error.details.notPushed, [`${repo}:two`], 'what was not');
  t.match(error.hint, /Run it again/);
  const repository = repo.slice(proxy.address.length + 1);
  t.ok(await registry.headManifest(repository, 'one'), 'the first tag is in the registry');
});

// ------------------------------------------------------------------ thinkube-control faults

t.test('thinkube-control answering 503 twice: registered once, not twice; retries are Ansible warnings', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const proxy = await startFaultProxy({ target: `127.0.0.1:${control.port}`, mode: 'http' });
  t.teardown(() => proxy.close());
  const name = uniqueName('ctl');
  const dir = imagesDir(t, { [name]: '' });
  // The proxy answers the first two POSTs itself: thinkube-control never saw them.
  proxy.failRequests({ method: 'POST', path: '/api/v1/images', status: 503, times: 2 });
  const args = {
    images_dir: dir,
    registry: env.registryAnon,
    engine: { host: env.dockerHost },
    registration: { target: 'api', control_url: `${proxy.url}/api`, token: control.token, retry: { initial_delay_seconds: 0.1 } },
  };
  // The Ansible path: one JSON result with the retries as warnings and no token anywhere.
  const run = await runScript('pipeline.js', [argsFile(t, args)]);
  const result = JSON.parse(run.stdout);
  t.equal(run.code, 0, run.stdout + run.stderr);
  t.equal(result.failed, false);
  t.same(result.done, [name]);
  const retryWarnings = result.warnings.filter((w) => /^Retry \d of POST .*\/api\/v1\/images/.test(w));
  t.equal(retryWarnings.length, 2, `two retries as warnings: ${JSON.stringify(result.warnings)}`);
  t.match(retryWarnings[0], /HTTP 503/);
  t.notOk((run.stdout + run.stderr).includes(control.token), 'the token is not printed');

  t.equal(control.images.size, 1, 'one image registered');
  t.equal(control.requests.filter((r) => r.method === 'POST' && r.status === 201).length, 1, 'created by exactly one POST');
  const inRegistry = await registry.headManifest(`library/${name}`, 'latest');
  t.equal(control.images.get(name).digest, inRegistry.digest, 'registered with the digest the registry has');

  // A 503 AFTER the server stored the entry (a gateway timing out): still one entry, one POST.
  const second = uniqueName('ctl-applied');
  const dir2 = imagesDir(t, { [second]: '' });
  control.failNext(1, 503, { method: 'POST', apply: true, retryAfter: 0 });
  const applied = await runPipeline({
    imagesDir: dir2,
    registry: env.registryAnon,
    engine,
    registration: { target: 'api', controlUrl: control.url, token: control.token, retry: { initialDelaySeconds: 0.1 } },
  });
  t.equal(applied.failed, false, describe(applied));
  t.equal(applied.images[0].registration.outcome, 'created');
  t.equal(control.requests.filter((r) => r.method === 'POST' && r.path === '/api/v1/images' && r.body?.name === second).length, 1, 'the POST was not repeated');
  t.equal([...control.images.keys()].filter((k) => k === second).length, 1);
});

t.test('thinkube-control down past the budget: the image stays pushed, registration fails clearly, the rerun registers it', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const proxy = await startFaultProxy({ target: `127.0.0.1:${control.port}`, mode: 'http' });
  t.teardown(() => proxy.close());
  const name = uniqueName('ctl-down');
  const dir = imagesDir(t, { [name]: '' });
  await proxy.stop();
  const options = {
    imagesDir: dir,
    registry: env.registryAnon,
    engine,
    registration: { target: 'api', controlUrl: `${proxy.url}/api`, token: control.token, retry: { limit: 2, initialDelaySeconds: 0.1 } },
  };
  const failed = await runPipeline(options);
  t.equal(failed.images[0].status, 'failed');
  t.equal(failed.images[0].error.code, 'ERR_REGISTRATION');
  t.match(failed.images[0].error.message, /ECONNREFUSED.*after 3 attempt/);
  t.equal(control.images.size, 0, 'nothing registered');
  const pushed = await registry.headManifest(`library/${name}`, 'latest');
  t.ok(pushed, 'the push before it stands');

  await proxy.start();
  const again = await runPipeline(options);
  t.equal(again.failed, false, describe(again));
  t.equal(again.images[0].buildSkipped, true, 'the rerun did not build again (content-addressed skip)');
  t.equal(again.images[0].layersUploaded, 0, 'nor upload anything');
  t.equal(control.images.get(name)?.digest, pushed.digest, 'registered with the pushed digest');
});

// ------------------------------------------------------------------ Harbor

t.test('Harbor API: reads retried on 503 and reported, a POST answered 503 is not retried', async (t) => {
  const harbor = await startHarborStandin();
  t.teardown(() => harbor.close());
  const proxy = await startFaultProxy({ target: harbor.host, mode: 'http' });
  t.teardown(() => proxy.close());
  const client = new HarborClient({ url: proxy.url, username: 'admin', password: 'Harbor12345', retry: { initialDelaySeconds: 0.1 } });
  const events = [];
  proxy.failRequests({ method: 'GET', path: '/health', status: 503, times: 2 });
  const health = await client.health({ onRetry: (e) => events.push(e) });
  t.equal(health.status, 'healthy');
  t.equal(events.length, 2, 'two retries reported');
  t.match(events[0], { type: 'retry', attempt: 1, reason: 'HTTP 503' });
  proxy.failRequests({ method: 'POST', path: '/projects', status: 503, times: 1 });
  await t.rejects(client.createProject(uniqueName('p'), {}, { onRetry: (e) => events.push(e) }));
  t.equal(events.length, 2, 'the POST was not retried');
});

// ------------------------------------------------------------------ engine faults

t.test('dockerd stopped mid-build: a clear failure naming the engine; the next run succeeds', async (t) => {
  const daemon = await startPrivateDockerd();
  t.teardown(() => daemon.cleanup());
  const pdocker = new Docker({ socketPath: daemon.socket });
  const pull = await pdocker.pull(env.busyboxImage);
  await new Promise((resolve, reject) => pdocker.modem.followProgress(pull, (e) => (e ? reject(e) : resolve())));
  const name = uniqueName('stop');
  const token = `fault-${name}`;
  const dir = imagesDir(t, { [name]: `RUN echo ${token} && sleep 8\n` });
  const catalogPath = path.join(tmp(t, 'tk-fault-cat-'), 'catalog.json');
  const options = { imagesDir: dir, registry: env.registryAnon, engine: { host: daemon.host }, registration: { target: 'catalog', catalogPath } };
  const run = runPipeline(options);
  await waitFor('the RUN step on the private dockerd', async () => (await containersWith(token, pdocker)).some((c) => c.State === 'running'));
  await daemon.stop('SIGTERM');
  const failed = await run;
  const image = failed.images[0];
  t.equal(image.status, 'failed', describe(failed));
  t.ok(['ERR_ENGINE', 'ERR_ENGINE_UNREACHABLE'].includes(image.error.code), image.error.code);
  t.match(image.error.message, daemon.host, 'names the engine');
  t.match(image.error.message, /during Step \d+\/\d+ : /, 'names the step it was in');
  t.equal(await registry.headManifest(`library/${name}`, 'latest'), undefined, 'nothing pushed');
  t.same(readCatalog(catalogPath), {}, 'nothing registered');

  await daemon.start();
  const again = await runPipeline(options);
  t.equal(again.failed, false, describe(again));
  const inRegistry = await registry.headManifest(`library/${name}`, 'latest');
  t.equal(readCatalog(catalogPath)[name]?.digest, inRegistry?.digest, 'built, pushed and registered on the rerun');
});

t.test('the engine link cut mid-build (TCP proxy to the socket): clear failure, the build is cancelled on the daemon', async (t) => {
  const proxy = await startFaultProxy({ target: env.dockerHost, mode: 'tcp' });
  t.teardown(() => proxy.close());
  const ctx = tmp(t, 'tk-fault-ctx-');
  const token = `cut-${uniqueName('eng')}`;
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${token} && sleep 60\n`);
  const tag = `${env.registryAnon}/fault/${uniqueName('eng')}:1`;
  const building = buildImage({ context: ctx, tags: [tag], engine: { host: `tcp://127.0.0.1:${proxy.port}` } }).catch((e) => e);
  await waitFor('the RUN step', async () => (await containersWith(token)).some((c) => c.State === 'running'));
  proxy.cutAll();
  const error = await building;
  t.equal(error.code, 'ERR_ENGINE', error.message);
  t.match(error.message, `tcp://127.0.0.1:${proxy.port}`, 'names the engine');
  t.match(error.step, /RUN echo/, 'and the step');
  await waitFor('the build container to go', async () => (await containersWith(token)).length === 0, 30_000);
  t.pass('no build container left on the daemon');
});

t.test('a build without output for stallTimeoutSeconds: ERR_TIMEOUT naming the step, cancelled on the daemon', async (t) => {
  const ctx = tmp(t, 'tk-fault-ctx-');
  const token = `stall-${uniqueName('b')}`;
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${token} && sleep 60\n`);
  const error = await buildImage({ context: ctx, tags: [`${env.registryAnon}/fault/${uniqueName('stall')}:1`], engine, stallTimeoutSeconds: 2 }).catch((e) => e);
  t.equal(error.code, 'ERR_TIMEOUT', error.message);
  t.match(error.message, /sent no output for 2 s in Step 2\/\d+ : RUN echo/, 'the stall timeout ended it, not the 60 s step');
  t.match(error.step, /^Step 2\/\d+ : RUN echo/);
  await waitFor('the build container to go', async () => (await containersWith(token)).length === 0, 30_000);
  t.pass('the stalled build was cancelled on the daemon');
});

t.test('SIGTERM to bin/build.js during a long RUN: no build left running, the result says what happened', async (t) => {
  const ctx = tmp(t, 'tk-fault-ctx-');
  const token = `sigterm-${uniqueName('b')}`;
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${token} && sleep 300\n`);
  const tag = `${env.registryAnon}/fault/${uniqueName('sig')}:1`;
  let child;
  const run = runScript('build.js', [ctx, '--tag', tag, '--engine-host', env.dockerHost, '--quiet'], { onStart: (c) => (child = c) });
  await waitFor('the RUN step', async () => (await containersWith(token)).some((c) => c.State === 'running'));
  child.kill('SIGTERM');
  const done = await run;
  const result = JSON.parse(done.stdout);
  t.equal(result.failed, true);
  t.equal(result.error_code, 'ERR_ABORTED');
  t.equal(result.interrupted, 'SIGTERM');
  t.match(result.msg, /cancelled during Step 2\/\d+ : RUN echo/);
  t.match(result.msg, /interrupted by SIGTERM/);
  t.equal(done.code, 130, 'exit code of an interrupted command');
  await waitFor('no running build container', async () => !(await containersWith(token)).some((c) => c.State === 'running'), 30_000);
  await waitFor('the build container removed', async () => (await containersWith(token)).length === 0, 30_000);
  t.pass('the daemon shows no build container afterwards');
  t.equal(await docker.getImage(tag).inspect().catch(() => undefined), undefined, 'and no image was tagged');
});

t.test('SIGTERM to bin/pipeline.js mid-run: the result lists images done, failed and not started', async (t) => {
  const first = uniqueName('sig-a');
  const second = uniqueName('sig-b');
  const token = `sigpipe-${second}`;
  const dir = imagesDir(t, { [first]: '', [second]: `RUN echo ${token} && sleep 300\n` });
  // The second is built on the first, so it starts only after the first is done (independent
  // images are planned at the same time and built in whichever order their plans finish).
  writeFileSync(path.join(dir, second, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${first}:latest\nCOPY payload.bin /payload.bin\nRUN echo ${token} && sleep 300\n`);
  // A third image built on the second: never started.
  const third = uniqueName('sig-c');
  mkdirSync(path.join(dir, third));
  writeFileSync(path.join(dir, third, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${second}:latest\n`);
  writeFileSync(path.join(dir, third, 'requirements.txt'), '# nothing\n');
  writeFileSync(path.join(dir, third, 'image.yaml'), `name: ${third}\ndisplay_name: Fault ${third}\ndescription: after ${second}\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: false\n  purpose: jupyter\n`);
  const catalogPath = path.join(tmp(t, 'tk-fault-cat-'), 'catalog.json');
  const args = { images_dir: dir, registry: env.registryAnon, engine: { host: env.dockerHost }, registration: { target: 'catalog', catalog_path: catalogPath } };
  let child;
  const run = runScript('pipeline.js', [argsFile(t, args)], { onStart: (c) => (child = c) });
  await waitFor('the long RUN step', async () => (await containersWith(token)).some((c) => c.State === 'running'), 120_000);
  child.kill('SIGTERM');
  const done = await run;
  const result = JSON.parse(done.stdout);
  t.equal(done.code, 1, 'Ansible path: exit 1 with a failed result');
  t.equal(result.failed, true);
  t.equal(result.interrupted, 'SIGTERM');
  t.same(result.done, [first], 'done');
  t.same(result.failed_images, [second], 'cut short');
  t.same(result.not_started, [third], 'not started');
  t.match(result.images.find((i) => i.name === second).error.code, 'ERR_ABORTED');
  t.same(Object.keys(readCatalog(catalogPath)), [first], 'only the finished image is registered');
  await waitFor('the build container removed', async () => (await containersWith(token)).length === 0, 30_000);
});

// ------------------------------------------------------------------ concurrency

t.test('two pipelines started at once on the same images: both finish, registry and catalog consistent', async (t) => {
  const a = uniqueName('twin-a');
  const b = uniqueName('twin-b');
  const dir = imagesDir(t, { [a]: 'RUN echo a > /a\n', [b]: 'RUN echo b > /b\n' });
  const catalogPath = path.join(tmp(t, 'tk-fault-cat-'), 'catalog.json');
  const file = argsFile(t, { images_dir: dir, registry: env.registryAnon, engine: { host: env.dockerHost }, registration: { target: 'catalog', catalog_path: catalogPath } });
  const [one, two] = await Promise.all([runScript('pipeline.js', [file]), runScript('pipeline.js', [file])]);
  const results = [one, two].map((run) => JSON.parse(run.stdout));
  for (const [i, run] of [one, two].entries()) {
    t.equal(run.code, 0, `pipeline ${i + 1} finished: ${run.stdout.slice(0, 600)}`);
    t.equal(results[i].failed, false);
  }
  const catalog = readCatalog(catalogPath);
  t.same(Object.keys(catalog).sort(), [a, b].sort(), 'each image registered once');
  for (const name of [a, b]) {
    const inRegistry = await registry.headManifest(`library/${name}`, 'latest');
    t.equal(catalog[name].digest, inRegistry.digest, `${name}: the catalog names the digest the registry tags latest`);
    for (const result of results) t.equal(result.images.find((i) => i.name === name).digest, inRegistry.digest, `${name}: both runs report that digest`);
    const builds = results.filter((r) => r.images.find((i) => i.name === name).build_skipped === false).length;
    t.equal(builds, 1, `${name}: built by one run; the other found it in the registry`);
  }
});

// ------------------------------------------------------------------ secrets and context limits

t.test('secrets in build args: warned about, and redacted from logs, events, results and errors', async (t) => {
  const ctx = tmp(t, 'tk-fault-ctx-');
  const secret = `tok-${randomBytes(8).toString('hex')}`;
  const marked = `val-${randomBytes(8).toString('hex')}`;
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nARG API_TOKEN\nARG PLAIN\nRUN echo "token=$API_TOKEN plain=$PLAIN"\nRUN echo "again $API_TOKEN" && exit 3\n`);
  const tag = `${env.registryAnon}/fault/${uniqueName('secret')}:1`;
  const events = [];
  const error = await buildImage({ context: ctx, tags: [tag], engine, buildArgs: { API_TOKEN: secret, PLAIN: marked }, secretBuildArgs: ['PLAIN'] }, { onEvent: (e) => events.push(e) }).catch((e) => e);
  t.equal(error.code, 'ERR_BUILD_FAILED');
  const everything = JSON.stringify({ events, message: error.message, details: error.details });
  t.notOk(everything.includes(secret), 'the secret build arg value is nowhere');
  t.notOk(everything.includes(marked), 'nor the value of an arg marked secret');
  t.ok(events.some((e) => e.type === 'build-log' && e.line.includes('token=******** plain=********')), 'the echoed line is there, redacted');
  t.ok(error.logTail.some((l) => l.includes('again ********')), 'log tail redacted');
  t.ok(events.some((e) => e.type === 'warning' && /Build arg API_TOKEN looks like a secret.*image history/.test(e.message)), 'warned: it ends up in the image history');

  // The same through the Ansible path: invocation, warnings and the failure carry no secret.
  const run = await runScript('build.js', [argsFile(t, { context: ctx, tags: [tag], engine: { host: env.dockerHost }, build_args: { API_TOKEN: secret, PLAIN: marked }, secret_build_args: ['PLAIN'] })]);
  t.equal(run.code, 1);
  t.notOk((run.stdout + run.stderr).includes(secret), 'not in the module result');
  t.notOk((run.stdout + run.stderr).includes(marked));
  const result = JSON.parse(run.stdout);
  t.equal(result.invocation.module_args.build_args.API_TOKEN, '********');
  t.ok(result.warnings.some((w) => w.includes('API_TOKEN looks like a secret')), 'the warning reaches Ansible');
});

t.test('maxContextBytes: a context over the limit is refused before anything is sent', async (t) => {
  const ctx = tmp(t, 'tk-fault-ctx-');
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nCOPY . /ctx\n`);
  writeFileSync(path.join(ctx, 'big.bin'), Buffer.alloc(4096));
  // No engine listens there: the refusal must come first.
  const error = await buildImage({ context: ctx, tags: [`${env.registryAnon}/fault/ctx:1`], engine: { host: 'unix:///nonexistent/docker.sock' }, maxContextBytes: 1024 }).catch((e) => e);
  t.equal(error.code, 'ERR_CONTEXT', error.message);
  t.match(error.message, /larger than the limit of 1024 bytes/);
  const run = await runScript('build.js', [ctx, '--tag', `${env.registryAnon}/fault/ctx:1`, '--max-context-bytes', '1024', '--engine-host', 'unix:///nonexistent/docker.sock', '--quiet']);
  t.equal(run.code, 1);
  t.match(JSON.parse(run.stdout).msg, /larger than the limit of 1024 bytes/);
});
