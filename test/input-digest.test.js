// Input digests: exactly what decides an image's content changes the digest; nothing else does.
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanContext } from '../dist/lib/source/context.js';
import { computeInputDigest, declaredBuildArgs, inputTag, baseImageReferences } from '../dist/lib/source/input-digest.js';
import { planBuild } from '../dist/lib/build/incremental.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { isValidTag } from '../dist/lib/registry/reference.js';
import { testEnv, uniqueName } from './helpers/env.js';

const BASES = [{ reference: 'localhost:5000/library/busybox:1.35', digest: `sha256:${'a'.repeat(64)}` }];

/** A small context: Dockerfile, a file, a script, a nested folder, a symlink and an ignored file. */
function context(t, { dockerfile = 'FROM busybox\nARG X\nCOPY . /app\n' } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-digest-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  writeFileSync(path.join(dir, 'a.txt'), 'alpha\n');
  writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o644 });
  mkdirSync(path.join(dir, 'sub'));
  writeFileSync(path.join(dir, 'sub', 'b.txt'), 'beta\n');
  symlinkSync('b.txt', path.join(dir, 'sub', 'link'));
  writeFileSync(path.join(dir, 'notes.log'), 'ignored\n');
  writeFileSync(path.join(dir, '.dockerignore'), '*.log\n');
  return dir;
}

async function digestOf(dir, parts = {}) {
  const scan = await scanContext(dir);
  return computeInputDigest({ scan, bases: BASES, ...parts });
}

t.test('same inputs give the same digest, wherever the folder is and whenever it is scanned', async (t) => {
  const a = context(t);
  const b = context(t);
  const first = await digestOf(a);
  t.match(first, /^sha256:[0-9a-f]{64}$/);
  t.equal(await digestOf(a), first, 'a second scan of the same folder');
  t.equal(await digestOf(b), first, 'another folder with the same content');
  t.equal(await digestOf(a, { buildArgs: { X: '1' }, labels: { a: '1', b: '2' } }), await digestOf(b, { buildArgs: { X: '1' }, labels: { b: '2', a: '1' } }), 'label order does not matter');
});

t.test('mtime-only changes do not change the digest', async (t) => {
  const dir = context(t);
  const before = await digestOf(dir);
  const when = new Date(Date.now() + 86_400_000);
  for (const file of ['Dockerfile', 'a.txt', 'run.sh', 'sub/b.txt', 'sub', '.dockerignore', '.']) utimesSync(path.join(dir, file), when, when);
  t.equal(await digestOf(dir), before);
});

t.test('each thing that decides the content changes the digest', async (t) => {
  const dir = context(t);
  const before = await digestOf(dir);
  const changes = {
    'content of a file': () => writeFileSync(path.join(dir, 'a.txt'), 'alpha!\n'),
    'mode (chmod +x)': () => chmodSync(path.join(dir, 'run.sh'), 0o755),
    'a file renamed': () => renameSync(path.join(dir, 'sub', 'b.txt'), path.join(dir, 'sub', 'c.txt')),
    'symlink target': () => {
      unlinkSync(path.join(dir, 'sub', 'link'));
      symlinkSync('../a.txt', path.join(dir, 'sub', 'link'));
    },
    'an empty folder added': () => mkdirSync(path.join(dir, 'empty')),
    'the Dockerfile': () => writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nARG X\nCOPY . /srv\n'),
    '.dockerignore itself': () => writeFileSync(path.join(dir, '.dockerignore'), '*.log\n*.tmp\n'),
  };
  const seen = new Set([before]);
  for (const [what, change] of Object.entries(changes)) {
    change();
    const after = await digestOf(dir);
    t.notOk(seen.has(after), `${what} changes the digest`);
    seen.add(after);
  }
});

t.test('a change to a .dockerignore\'d file does not change the digest', async (t) => {
  const dir = context(t);
  const before = await digestOf(dir);
  writeFileSync(path.join(dir, 'notes.log'), 'something else entirely\n');
  writeFileSync(path.join(dir, 'more.log'), 'a new ignored file\n');
  chmodSync(path.join(dir, 'notes.log'), 0o755);
  t.equal(await digestOf(dir), before);
});

t.test('labels, target, platform, base digests and declared build args are inputs', async (t) => {
  const dir = context(t);
  const before = await digestOf(dir);
  const variants = {
    label: { labels: { 'com.example.team': 'ml' } },
    'label value': { labels: { 'com.example.team': 'data' } },
    target: { target: 'runtime' },
    platform: { platform: 'linux/arm64' },
    'base digest': { bases: [{ ...BASES[0], digest: `sha256:${'b'.repeat(64)}` }] },
    'base reference': { bases: [{ ...BASES[0], reference: 'localhost:5000/library/busybox:1.36' }] },
    'declared build arg': { buildArgs: { X: 'one' } },
    'declared build arg value': { buildArgs: { X: 'two' } },
  };
  const seen = new Map([[before, 'nothing']]);
  for (const [what, parts] of Object.entries(variants)) {
    const digest = await digestOf(dir, parts);
    t.notOk(seen.has(digest), `${what} changes the digest${seen.has(digest) ? ` (same as ${seen.get(digest)})` : ''}`);
    seen.set(digest, what);
  }
  t.equal(await digestOf(dir, { platform: 'linux/arm64' }), await digestOf(dir, { platform: 'linux/arm64' }), 'and is stable for each');
});

t.test('build args the Dockerfile does not declare do not count (the builder ignores them)', async (t) => {
  const dir = context(t);
  const before = await digestOf(dir);
  t.equal(await digestOf(dir, { buildArgs: { HARBOR_REGISTRY: 'harbor.example.com', UNUSED: 'x' } }), before, 'undeclared args ignored');
  t.not(await digestOf(dir, { buildArgs: { X: '' } }), before, 'a declared arg given an empty value is an input');
  t.same(declaredBuildArgs('ARG A\nFROM busybox\nARG B=1 C\nRUN true\n', { A: '1', B: '2', C: '3', D: '4' }), { A: '1', B: '2', C: '3' }, 'global and stage ARGs, several per instruction');
  t.same(declaredBuildArgs(Buffer.from('FROM busybox\n'), { A: '1' }), {});
});

t.test('inputTag is a valid OCI tag naming the digest', async (t) => {
  const digest = await digestOf(context(t));
  const tag = inputTag(digest);
  t.match(tag, /^in-[0-9a-f]{32}$/);
  t.equal(tag.slice(3), digest.slice(7, 39));
  t.ok(isValidTag(tag));
});

t.test('baseImageReferences: the external images a Dockerfile builds on', async (t) => {
  const dockerfile = [
    'ARG REG=harbor.example.com',
    'ARG TAG',
    'FROM ${REG}/library/python:${TAG:-3.12} AS build',
    'COPY --from=${REG}/library/tools:1 /bin/tool /bin/tool',
    'FROM scratch AS empty',
    'FROM build AS runtime',
    'COPY --from=build /x /x',
    'COPY --from=0 /y /y',
    'FROM ${REG}/library/debug:1 AS debug',
    '',
  ].join('\n');
  t.same(baseImageReferences(dockerfile), ['harbor.example.com/library/debug:1', 'harbor.example.com/library/python:3.12', 'harbor.example.com/library/tools:1'], 'stages, scratch and stage indexes are not images');
  t.same(baseImageReferences(dockerfile, { REG: 'localhost:5000', TAG: '3.13' }, 'runtime'), ['localhost:5000/library/python:3.13', 'localhost:5000/library/tools:1'], 'build args substituted; stages after the target do not count');
});

t.test('planBuild: base digests from the registry, explicit OCI labels are inputs, a missing base is never skipped', async (t) => {
  const env = testEnv();
  const engine = connectEngine({ host: env.dockerHost });
  const dir = context(t, { dockerfile: `FROM ${env.busyboxImage}\nCOPY a.txt /a.txt\n` });
  const scan = await scanContext(dir);
  const tags = [`${env.registryAnon}/library/${uniqueName('digest')}:latest`];
  const plan = await planBuild(engine, { context: dir, tags }, scan);
  const head = await fetch(`http://${env.registryAnon}/v2/library/busybox/manifests/${env.busyboxTag}`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json' },
  });
  t.same(plan.bases, [{ reference: env.busyboxImage, digest: head.headers.get('docker-content-digest') }], 'the base digest is the registry\'s');
  t.equal(plan.existing, undefined, 'nothing built yet');
  t.equal(plan.uncertain, undefined);
  t.equal(plan.inputTag, `${tags[0].replace(/:latest$/, '')}:${inputTag(plan.inputDigest)}`);
  t.equal((await planBuild(engine, { context: dir, tags }, scan)).inputDigest, plan.inputDigest, 'stable');
  t.not((await planBuild(engine, { context: dir, tags, version: '2.0' }, scan)).inputDigest, plan.inputDigest, 'the version label counts');
  t.not((await planBuild(engine, { context: dir, tags, title: 'Other' }, scan)).inputDigest, plan.inputDigest, 'the title label counts');
  t.equal((await planBuild(engine, { context: dir, tags, title: 'Other', ociLabels: false }, scan)).inputDigest, plan.inputDigest, 'not when OCI labels are off');

  const missingDir = context(t, { dockerfile: `FROM ${env.registryAnon}/library/${uniqueName('nosuchbase')}:1\nCOPY a.txt /a.txt\n` });
  const missing = await planBuild(engine, { context: missingDir, tags }, await scanContext(missingDir));
  t.match(missing.uncertain, /neither in its registry nor on the engine/, 'a base that cannot be found makes the plan uncertain');
  t.equal(missing.existing, undefined, 'so it is never skipped');
});

t.test('buildIfChanged refuses tags in two repositories on the first run too, before building', async (t) => {
  const env = await testEnv();
  const dir = context(t);
  const name = uniqueName('span');
  const engine = connectEngine({ host: env.dockerHost });
  const { buildIfChanged } = await import('../dist/lib/build/incremental.js');
  const options = { context: dir, tags: [`${env.registryAnon}/library/${name}:latest`, `${env.registryAnon}/library/${name}-other:latest`], skipUnchanged: true };
  const events = [];
  const error = await buildIfChanged(engine, options, await scanContext(dir), { onEvent: (e) => events.push(e) }).catch((e) => e);
  t.equal(error.code, 'ERR_INVALID_OPTIONS', 'refused although nothing is in the registry yet (the skip path is not taken)');
  t.match(error.message, /every tag must be in .*-other:latest is not/);
  t.notOk(events.some((e) => e.type === 'build-step'), 'nothing was built');
});
