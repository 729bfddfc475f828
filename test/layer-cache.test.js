// buildah's registry layer cache on Podman (build option registryLayerCache): the layers of a
// build land in <repository>/cache in the registry (the pipeline's default; a build on its own
// opts in), and a "fresh host" (a private Podman service
// with empty storage) takes every layer from there instead of running the RUN steps; switched off,
// the fresh host runs them. Docker's classic builder is left as it was.
import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildImage } from '../dist/lib/build/build.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { startPrivatePodman } from './helpers/private-podman.js';

t.setTimeout(20 * 60_000);
const env = testEnv();
const auth = { username: env.registryUser, password: env.registryPassword };

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-lcache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A context whose two RUN steps print a line that only appears when they really run: "ran-2", "ran-3". */
function context(t, p) {
  const dir = tmp(t);
  writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${env.busyboxImage}\nCOPY note.txt /note.txt\nRUN echo "ran-$((1+1))" && echo ${p} > /a\nRUN echo "ran-$((1+2))" && cat /a > /b\n`);
  writeFileSync(path.join(dir, 'note.txt'), `${p}\n`);
  return dir;
}

async function build(options) {
  const events = [];
  const result = await buildImage(options, { onEvent: (e) => events.push(e) });
  const lines = events.filter((e) => e.type === 'build-log').map((e) => e.line);
  const info = events.filter((e) => e.type === 'info').map((e) => e.message);
  return { result, lines, info, ran: lines.filter((l) => /^ran-\d$/.test(l.trim())).map((l) => l.trim()) };
}

async function cacheTags(t, registry, repository, credentials) {
  const headers = credentials ? { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` } : {};
  const res = await fetch(`http://${registry}/v2/${repository}/cache/tags/list`, { headers });
  if (res.status === 404) return [];
  t.equal(res.status, 200, `tag list of ${repository}/cache`);
  return (await res.json()).tags ?? [];
}

t.test('Podman: the layers go to <repository>/cache; a fresh host takes them from there and runs no RUN step', async (t) => {
  const p = uniqueName('lc');
  const repository = `cache/${p}`;
  const dir = context(t, p);

  const first = await build({ context: dir, tags: [`${env.registryAnon}/${repository}:1`], engine: { host: env.podmanHost }, registryLayerCache: true });
  t.same(first.ran, ['ran-2', 'ran-3'], 'the first build runs both RUN steps');
  t.ok(first.info.some((m) => m.includes(`${env.registryAnon}/${repository}/cache`)), 'it says which layer cache it uses');
  t.ok((await cacheTags(t, env.registryAnon, repository)).length >= 3, 'one cache tag per layer (COPY and two RUN) in the registry');

  const fresh = await startPrivatePodman(env);
  t.teardown(() => fresh.cleanup());
  const again = await build({ context: dir, tags: [`${env.registryAnon}/${repository}:2`], engine: { host: fresh.host }, registryLayerCache: true });
  t.same(again.ran, [], 'the fresh host runs no RUN step');
  // Distinct lines: buildah has been seen (once, under load) to print one of them twice.
  const pulled = [...new Set(again.lines.filter((l) => l.includes('Cache pulled from remote')).map((l) => l.trim()))];
  t.equal(pulled.length, 3, `every layer pulled from the registry cache: ${pulled.join(' | ')}`);

  const off = await startPrivatePodman(env);
  t.teardown(() => off.cleanup());
  const without = await build({ context: dir, tags: [`${env.registryAnon}/${repository}:3`], engine: { host: off.host }, registryLayerCache: false });
  t.same(without.ran, ['ran-2', 'ran-3'], 'registryLayerCache: false on a fresh host: both RUN steps run');
  t.notOk(without.lines.some((l) => l.includes('Cache pulled')), 'and nothing comes from the registry cache');
});

t.test('Podman: the cache is pushed to a registry that needs credentials, with the build\'s credentials', async (t) => {
  const p = uniqueName('lca');
  const repository = `cache/${p}`;
  const dir = context(t, p);
  const built = await build({ context: dir, tags: [`${env.registryAuth}/${repository}:1`], engine: { host: env.podmanHost }, auth, registryLayerCache: true });
  t.same(built.ran, ['ran-2', 'ran-3']);
  t.ok((await cacheTags(t, env.registryAuth, repository, auth)).length >= 3, 'cache tags in the registry that needs credentials');
  t.notOk(JSON.stringify(built).includes(env.registryPassword), 'the password is in no event or result');
});

t.test('Podman on a fresh host builds another platform FROM a registry that needs credentials, without the layer cache', async (t) => {
  // Podman pulls the base itself for a --platform build: it needs the build's credentials too.
  const p = uniqueName('lcp');
  const dir = tmp(t);
  writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${env.registryAuth}/library/busybox:${env.busyboxTag}\nCOPY note.txt /note.txt\n`);
  writeFileSync(path.join(dir, 'note.txt'), `${p}\n`);
  const fresh = await startPrivatePodman(env);
  t.teardown(() => fresh.cleanup());
  const built = await build({ context: dir, tags: [`${env.registryAuth}/platform/${p}:1`], engine: { host: fresh.host }, auth, platform: 'linux/arm64', noCache: true, registryLayerCache: false });
  t.match(built.result.imageId, /^sha256:[0-9a-f]{64}$/, "built");
  t.notOk(built.info.some((m) => /Layer cache/.test(m)), 'without the layer cache');
  t.notOk(JSON.stringify(built).includes(env.registryPassword), 'the password is in no event or result');
});

t.test('the pipeline on a fresh Podman host (force) builds from the registry cache', async (t) => {
  const p = uniqueName('lcp');
  const images = tmp(t);
  writeFileSync(path.join(images, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  const name = `${p}-img`;
  mkdirSync(path.join(images, name));
  writeFileSync(path.join(images, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo "ran-$((1+1))" && echo ${p} > /a\n`);
  writeFileSync(path.join(images, name, 'requirements.txt'), '# nothing to install\n');
  writeFileSync(path.join(images, name, 'image.yaml'), `name: ${name}\ndisplay_name: Cache\ndescription: Registry layer cache\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: true\n  purpose: jupyter\n`);
  const catalogPath = path.join(tmp(t), 'catalog.json');
  const run = async (host) => {
    const lines = [];
    const result = await runPipeline({ imagesDir: images, registry: env.registryAnon, engine: { host }, force: true, registration: { target: 'catalog', catalogPath } }, { onEvent: (e) => e.type === 'build-log' && lines.push(e.line) });
    t.equal(result.failed, false, JSON.stringify(result.images.map((i) => i.reason)));
    return lines;
  };
  t.ok((await run(env.podmanHost)).some((l) => l.trim() === 'ran-2'), 'first host: the RUN step runs');
  const fresh = await startPrivatePodman(env);
  t.teardown(() => fresh.cleanup());
  const lines = await run(fresh.host);
  t.notOk(lines.some((l) => l.trim() === 'ran-2'), 'fresh host: the RUN step does not run');
  t.ok(lines.some((l) => l.includes('Cache pulled from remote')), 'its layer came from the registry cache');
});

t.test('Docker: no registry layer cache (the classic builder has none), the build is as before', async (t) => {
  const p = uniqueName('lcd');
  const dir = context(t, p);
  const built = await build({ context: dir, tags: [`${env.registryAnon}/cache/${p}:1`], engine: { host: env.dockerHost }, registryLayerCache: true });
  t.same(built.ran, ['ran-2', 'ran-3']);
  t.notOk(built.info.some((m) => m.includes('Layer cache')), 'no layer cache announced');
  t.same(await cacheTags(t, env.registryAnon, `cache/${p}`), [], 'nothing pushed to <repository>/cache');
});
