// Content-addressed builds through runPipeline against the real dockerd and the anonymous
// registry: unchanged inputs build and upload nothing; a change rebuilds exactly the images it
// affects and the images built on them. The registry's access log proves "no layer upload".
import t from 'tap';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { buildImage } from '../dist/lib/build/build.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { registryLogSince } from './helpers/registry-log.js';

const env = testEnv();
const engine = { host: env.dockerHost };
const registry = new RegistryClient({ registry: env.registryAnon });

function tmp(t, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Three images: <p>-base (FROM `baseFrom`, copies hello.txt), <p>-child (FROM <p>-base, declares
 * ARG X and bakes it in) and <p>-solo (FROM busybox, copies its own file). Only child declares X.
 */
function imagesDir(t, p, { baseFrom = 'library/busybox:1.35', bases = ['library/busybox:1.35'] } = {}) {
  const dir = tmp(t, 'tk-idem-');
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n${bases.map((b) => `  - ${b}\n`).join('')}`);
  const image = (name, files, isDefault = false) => {
    mkdirSync(path.join(dir, name));
    for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, name, file), text);
    writeFileSync(path.join(dir, name, 'requirements.txt'), '# nothing to install\n');
    writeFileSync(
      path.join(dir, name, 'image.yaml'),
      `name: ${name}\ndisplay_name: Test ${name}\ndescription: Fixture image ${name}\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: ${isDefault}\n  purpose: jupyter\n`,
    );
  };
  image(`${p}-base`, { Dockerfile: `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${baseFrom}\nCOPY hello.txt /hello.txt\nRUN echo base-${p} > /base\n`, 'hello.txt': 'hello 1\n' }, true);
  image(`${p}-child`, { Dockerfile: `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${p}-base:latest\nARG X=unset\nRUN echo "x=$X" > /x && cat /base > /child\n` });
  image(`${p}-solo`, { Dockerfile: `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nCOPY solo.txt /solo.txt\n`, 'solo.txt': `solo ${p}\n` });
  return dir;
}

function pipelineOptions(dir, catalogPath, over = {}) {
  return { imagesDir: dir, registry: env.registryAnon, engine, registration: { target: 'catalog', catalogPath }, ...over };
}

/** Byte length of the registry's access log now: what is appended after it is this run's traffic. */
const logOffset = () => statSync(env.registryAnonLog).size;

/** Lines of the registry log after `offset` that start or continue a blob upload into one of `repositories`. */
async function uploadLines(offset, repositories) {
  const text = await registryLogSince(env.registryAnon, env.registryAnonLog, offset);
  return text.split('\n').filter((line) => /\b(PUT|POST|PATCH)\b/.test(line) && repositories.some((repo) => line.includes(`/v2/${repo}/blobs/uploads`)));
}

const byName = (result) => Object.fromEntries(result.images.map((i) => [i.name.replace(/^.*-(base|child|solo)$/, '$1'), i]));

/** The set of images that were rebuilt (not skipped), by short name. */
const rebuilt = (result) =>
  result.images
    .filter((i) => i.buildSkipped === false)
    .map((i) => i.name.replace(/^.*-(base|child|solo)$/, '$1'))
    .sort();

async function firstRun(t, dir, catalogPath, over = {}) {
  const first = await runPipeline(pipelineOptions(dir, catalogPath, over));
  t.equal(first.failed, false, `first run succeeds: ${JSON.stringify(first.images.map((i) => [i.name, i.status, i.error?.message]))}`);
  t.same(rebuilt(first), ['base', 'child', 'solo'], 'first run builds every image');
  return first;
}

t.test('a second run of an unchanged set builds nothing, uploads no layer and changes nothing', async (t) => {
  const p = uniqueName('idem');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  const repos = ['base', 'child', 'solo'].map((s) => `library/${p}-${s}`);

  const before = logOffset();
  const first = await firstRun(t, dir, catalogPath);
  t.ok((await uploadLines(before, repos)).length > 0, 'positive control: the first run shows layer uploads in the registry log');
  for (const image of first.images) {
    t.equal(image.changed, true, `${image.name}: first run changed`);
    t.equal(image.registration?.outcome, 'created');
    const inTag = `in-${image.inputDigest.slice(7, 39)}`;
    t.equal((await registry.headManifest(`library/${image.name}`, inTag))?.digest, image.digest, `${image.name}: the ${inTag} tag names the pushed image`);
  }

  const offset = logOffset();
  const second = await runPipeline(pipelineOptions(dir, catalogPath));
  t.equal(second.failed, false);
  t.equal(second.changed, false, 'the run as a whole reports no change');
  for (const image of second.images) {
    const was = first.images.find((i) => i.name === image.name);
    t.equal(image.status, 'done', `${image.name}: done`);
    t.equal(image.buildSkipped, true, `${image.name}: build skipped`);
    t.equal(image.changed, false, `${image.name}: changed false`);
    t.equal(image.layersUploaded, 0, `${image.name}: no layer uploaded`);
    t.equal(image.registration?.outcome, 'unchanged', `${image.name}: registration unchanged`);
    t.equal(image.digest, was.digest, `${image.name}: same digest`);
    t.equal(image.inputDigest, was.inputDigest, `${image.name}: same input digest`);
    t.match(image.reason, /inputs unchanged/);
  }
  t.same(await uploadLines(offset, repos), [], 'the registry log shows no blob upload during the second run');
  const catalog = JSON.parse(readFileSync(catalogPath, 'utf8'));
  for (const image of second.images) t.equal(catalog.images[image.name].digest, image.digest, `${image.name}: catalog entry keeps the digest`);
});

/**
 * Our requests (user agent thinkube-custom-images) in the registry log after `offset`, as
 * "METHOD path" with the fixture prefix as P, input tags as in-<d> and digests as <digest>.
 */
async function ourRequests(offset, p) {
  const text = await registryLogSince(env.registryAnon, env.registryAnonLog, offset);
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^\S+ - \S+ \[[^\]]+\] "(\w+) (\S+) HTTP[^"]*" \d+ \d+ "[^"]*" "thinkube-custom-images"/.exec(line);
    if (!m) continue;
    const where = m[2].replace(/\?.*$/, '').replaceAll(p, 'P').replace(/in-[0-9a-f]{32}/, 'in-<d>').replace(/sha256:[0-9a-f]{64}/, '<digest>');
    out.push(`${m[1]} ${where}`);
  }
  return out.sort();
}

t.test('a no-op run asks the registry once per thing: the shared base once, per image its in- manifest, config, tag and tag list', async (t) => {
  const p = uniqueName('idemreq');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  await firstRun(t, dir, catalogPath);
  // base and solo are both FROM busybox:1.35; child is FROM base (a base of the run: no request).
  const perImage = (name) => [`GET /v2/library/P-${name}/blobs/<digest>`, `GET /v2/library/P-${name}/manifests/in-<d>`, `GET /v2/library/P-${name}/tags/list`, `HEAD /v2/library/P-${name}/manifests/latest`];
  const expected = ['GET /api/v2.0/ping', 'HEAD /v2/library/busybox/manifests/1.35', ...['base', 'child', 'solo'].flatMap(perImage)].sort();
  // Check mode, then two real runs: every run asks again (nothing is kept across runs), and only this.
  for (const [what, controls] of [['check mode', { checkMode: true }], ['a no-op run', {}], ['the next no-op run', {}]]) {
    const offset = logOffset();
    const result = await runPipeline(pipelineOptions(dir, catalogPath), controls);
    t.equal(result.changed, false, `${what}: nothing changes`);
    t.same(await ourRequests(offset, p), expected, `${what}: ${expected.length} requests, each once`);
  }
});

t.test('a tag that was moved away is put back by a registry-side retag, without building or uploading', async (t) => {
  const p = uniqueName('idemtag');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  const first = await firstRun(t, dir, catalogPath);
  const solo = byName(first).solo;
  // Another manifest with the same blobs (same JSON plus a newline has another digest) under latest.
  const manifest = await registry.getManifest(`library/${p}-solo`, solo.digest);
  const other = await registry.putManifest(`library/${p}-solo`, 'latest', Buffer.concat([manifest.body, Buffer.from('\n')]), manifest.mediaType);
  t.not(other.digest, solo.digest);
  const offset = logOffset();
  const again = await runPipeline(pipelineOptions(dir, catalogPath, { register: false }));
  t.same(rebuilt(again), [], 'nothing rebuilt');
  t.equal(byName(again).solo.changed, true, 'solo:latest was moved back: changed');
  t.equal(byName(again).base.changed, false);
  t.equal(byName(again).child.changed, false);
  t.equal((await registry.headManifest(`library/${p}-solo`, 'latest'))?.digest, solo.digest, 'latest names the image with these inputs again');
  t.same(await uploadLines(offset, [`library/${p}-solo`]), [], 'no layer upload, only a manifest PUT');
});

t.test('a change to one file rebuilds that image and its dependants; a build arg only the images declaring it', async (t) => {
  const p = uniqueName('idemchg');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  const first = await firstRun(t, dir, catalogPath, { buildArgs: { X: 'one' } });

  writeFileSync(path.join(dir, `${p}-base`, 'hello.txt'), 'hello 2\n');
  const afterFile = await runPipeline(pipelineOptions(dir, catalogPath, { buildArgs: { X: 'one' } }));
  t.equal(afterFile.failed, false);
  t.same(rebuilt(afterFile), ['base', 'child'], 'a file of base changed: base and child (built on it) rebuilt, solo not');
  t.equal(byName(afterFile).solo.changed, false, 'solo unchanged');
  t.equal(byName(afterFile).solo.digest, byName(first).solo.digest);
  t.not(byName(afterFile).base.digest, byName(first).base.digest, 'base has a new digest');
  t.not(byName(afterFile).child.inputDigest, byName(first).child.inputDigest, 'child inputs changed through its base digest');
  t.equal(byName(afterFile).child.registration?.outcome, 'updated', 'child registration updated to the new digest');

  const offset = logOffset();
  const afterArg = await runPipeline(pipelineOptions(dir, catalogPath, { buildArgs: { X: 'two' } }));
  t.equal(afterArg.failed, false);
  t.same(rebuilt(afterArg), ['child'], 'build arg X (declared by child only) changed: only child rebuilt');
  t.equal(byName(afterArg).base.changed, false);
  t.equal(byName(afterArg).solo.changed, false);
  t.same(await uploadLines(offset, [`library/${p}-base`, `library/${p}-solo`]), [], 'nothing uploaded for the images that did not change');

  // An arg that no Dockerfile declares changes nothing at all.
  const unused = await runPipeline(pipelineOptions(dir, catalogPath, { buildArgs: { X: 'two', NOBODY_DECLARES_THIS: 'x' } }));
  t.same(rebuilt(unused), [], 'an undeclared build arg rebuilds nothing');
  t.equal(unused.changed, false);
});

t.test('mtime-only changes rebuild nothing; force rebuilds everything', async (t) => {
  const p = uniqueName('idemtime');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  const first = await firstRun(t, dir, catalogPath);
  const future = new Date(Date.now() + 3600_000);
  const touch = (d) => {
    for (const name of readdirSync(d)) {
      const file = path.join(d, name);
      if (statSync(file).isDirectory()) touch(file);
      utimesSync(file, future, future);
    }
  };
  touch(dir);
  t.ok(Math.abs(statSync(path.join(dir, `${p}-base`, 'hello.txt')).mtimeMs - future.getTime()) < 1000, 'mtimes moved');
  const touched = await runPipeline(pipelineOptions(dir, catalogPath));
  t.same(rebuilt(touched), [], 'touching every file rebuilds nothing');
  t.equal(touched.changed, false);

  const forced = await runPipeline(pipelineOptions(dir, catalogPath, { force: true }));
  t.equal(forced.failed, false);
  t.same(rebuilt(forced), ['base', 'child', 'solo'], 'force: every image rebuilt');
  for (const image of forced.images) {
    const was = first.images.find((i) => i.name === image.name);
    t.equal(image.changed, true, `${image.name}: forced rebuild reports changed`);
    // The child's inputs include its base's digest, which the forced rebuild of base changed.
    if (image.name.endsWith('-child')) t.not(image.inputDigest, was.inputDigest, `${image.name}: new inputs (its base was rebuilt)`);
    else t.equal(image.inputDigest, was.inputDigest, `${image.name}: same inputs`);
    t.not(image.digest, was.digest, `${image.name}: a new image (new created time) was pushed`);
    t.equal((await registry.headManifest(`library/${image.name}`, `in-${image.inputDigest.slice(7, 39)}`))?.digest, image.digest, `${image.name}: the input tag follows the rebuilt image`);
    t.equal(image.registration?.outcome, 'updated', `${image.name}: registration updated`);
  }
});

/**
 * Build FROM busybox with a marker and push it as <repo>:<tag>; `as` then points <repo>:<as> at it
 * registry-side, so the engine's own copy of <repo>:<as> stays the old image (as on a build host
 * where someone else updated the mirrored base).
 */
async function pushBaseVariant(t, repo, marker, tag, as = tag) {
  const dir = tmp(t, 'tk-bbase-');
  writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${marker} > /variant\n`);
  const reference = `${env.registryAnon}/${repo}:${tag}`;
  await buildImage({ context: dir, tags: [reference], engine, ociLabels: false });
  const pushed = await pushImage({ tags: [reference], engine });
  if (as !== tag) await registry.retag(repo, tag, as);
  return pushed;
}

t.test('a base image that moved rebuilds the images built on it and their dependants, nothing else', async (t) => {
  const p = uniqueName('idembase');
  const bbase = `library/${p}-bbase`;
  const v1 = await pushBaseVariant(t, bbase, `v1-${p}`, '1');
  const dir = imagesDir(t, p, { baseFrom: `${bbase}:1`, bases: ['library/busybox:1.35', `${bbase}:1`] });
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  await firstRun(t, dir, catalogPath);
  const same = await runPipeline(pipelineOptions(dir, catalogPath));
  t.same(rebuilt(same), [], 'nothing moved: nothing rebuilt');

  const v2 = await pushBaseVariant(t, bbase, `v2-${p}`, '2', '1');
  t.not(v2.digest, v1.digest, 'the base tag now names a different image');
  const after = await runPipeline(pipelineOptions(dir, catalogPath));
  t.equal(after.failed, false, JSON.stringify(after.images.map((i) => [i.name, i.error?.message])));
  t.same(rebuilt(after), ['base', 'child'], 'the image on the moved base and its dependant are rebuilt; solo is not');
  t.equal(byName(after).solo.changed, false);
  // The rebuilt image really is on the new base: its layers start with the new base's layers.
  const layers = async (repo, ref) => JSON.parse((await registry.getManifest(repo, ref)).body.toString()).layers.map((l) => l.digest);
  const baseLayers = await layers(bbase, v2.digest);
  const built = await layers(`library/${p}-base`, byName(after).base.digest);
  t.same(built.slice(0, baseLayers.length), baseLayers, 'the rebuilt image is built on the new base (not the engine\'s stale copy)');
  const again = await runPipeline(pipelineOptions(dir, catalogPath));
  t.same(rebuilt(again), [], 'and a run after that builds nothing');
});

t.test('an image built on one the run just built: the engine tags its own copy of the base instead of pulling it', async (t) => {
  const p = uniqueName('idemlocal');
  const dir = imagesDir(t, p);
  const catalogPath = path.join(tmp(t, 'tk-cat-'), 'catalog.json');
  const events = [];
  const first = await runPipeline(pipelineOptions(dir, catalogPath, { images: [`${p}-base`, `${p}-child`] }), { onEvent: (e) => events.push(e) });
  t.equal(first.failed, false, JSON.stringify(first.images.map((i) => [i.name, i.error?.message])));
  const messages = events.filter((e) => e.type === 'info').map((e) => e.message);
  const base = `${env.registryAnon}/library/${p}-base:latest`;
  t.ok(messages.some((m) => m.startsWith(`${base}: the engine holds sha256:`) && m.endsWith('tagged it, no pull')), `tagged, not pulled: ${messages.filter((m) => m.includes(base)).join(' | ')}`);
  t.notOk(messages.some((m) => m.includes(base) && m.includes('pulling it')), 'no pull of the base');
  // The child really is built on the base of this run.
  const layers = async (repo, ref) => JSON.parse((await registry.getManifest(repo, ref)).body.toString()).layers.map((l) => l.digest);
  const baseLayers = await layers(`library/${p}-base`, byName(first).base.digest);
  const childLayers = await layers(`library/${p}-child`, byName(first).child.digest);
  t.same(childLayers.slice(0, baseLayers.length), baseLayers, 'the child starts with the base\'s layers');
});
