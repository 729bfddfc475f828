// Input-tag retention (keepInputTags) against the real distribution registry: eight content
// changes of one image in a row leave at most N input tags, every other tag still resolves and
// pulls, each check run predicts exactly the removals of the real run that follows (and deletes
// nothing), and after the registry's garbage collector ran, its storage is smaller and what is
// left still pulls. A registry that refuses deletes gives a warning, not a failure.
// Each test has a registry of its own (test/helpers/private-registry.js): the garbage collector
// must not run beside other tests' uploads. Real dockerd of test/env; bases from its anonymous registry.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { buildMultiArchImage } from '../dist/lib/pipeline/multiarch.js';
import { assembleImageIndex } from '../dist/lib/publish/index.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { runScript } from './helpers/scripts.js';
import { startPrivateRegistry } from './helpers/private-registry.js';

t.setTimeout(20 * 60_000);

const env = testEnv();
const engine = { host: env.dockerHost };
const docker = new Docker({ socketPath: env.dockerHost.replace(/^unix:\/\//, '') });
const KEEP = 3;
const isInputTag = (tag) => /^in-[0-9a-f]{32}$/.test(tag);

function tmp(t, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** One image FROM the test env's busybox copying data.txt; change(i) gives it new content (256 KiB, so its layer is measurable). */
function fixture(t) {
  const p = uniqueName('ret');
  const dir = tmp(t, 'tk-retention-');
  const folder = path.join(dir, p);
  mkdirSync(folder);
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  writeFileSync(path.join(folder, 'Dockerfile'), 'ARG HARBOR_REGISTRY\nFROM ${HARBOR_REGISTRY}/library/busybox:1.35\nCOPY data.txt /data.txt\n');
  writeFileSync(path.join(folder, 'requirements.txt'), '# nothing to install\n');
  writeFileSync(path.join(folder, '.dockerignore'), 'image.yaml\n');
  writeFileSync(
    path.join(folder, 'image.yaml'),
    `name: ${p}\ndisplay_name: Retention\ndescription: Retention fixture\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: true\n  purpose: jupyter\n`,
  );
  return {
    p,
    dir,
    repository: `library/${p}`,
    change: (i) => writeFileSync(path.join(folder, 'data.txt'), Buffer.concat([Buffer.from(`change ${i}\n`), randomBytes(256 * 1024)])),
  };
}

/** Tag -> digest of the repository, as the registry answers now. */
async function tagMap(client, repository) {
  const map = {};
  for (const tag of (await client.listTags(repository)).sort()) map[tag] = (await client.headManifest(repository, tag))?.digest;
  return map;
}

/** Remove the engine's copies of the repository, then pull the reference: the layers come from the registry. */
async function pullFresh(reference) {
  const repo = reference.slice(0, reference.lastIndexOf(':'));
  for (const image of await docker.listImages()) {
    if ((image.RepoTags ?? []).some((tag) => tag.startsWith(`${repo}:`)) || (image.RepoDigests ?? []).some((d) => d.startsWith(`${repo}@`))) {
      await docker.getImage(image.Id).remove({ force: true });
    }
  }
  const stream = await docker.pull(reference);
  await new Promise((resolve, reject) => docker.modem.followProgress(stream, (error) => (error ? reject(error) : resolve())));
  return docker.getImage(reference).inspect();
}

const runCommand = (args) => runScript('pipeline.js', args);

const retentionOf = (image) => {
  const r = image.retention ?? {};
  return { removedTags: r.removedTags ?? r.removed_tags, removedDigests: r.removedDigests ?? r.removed_digests, kept: [...(r.kept ?? [])].sort(), inUse: r.inUse ?? r.in_use };
};

t.test(`eight content changes in a row leave ${KEEP} input tags; other tags resolve and pull; check mode predicts each removal; storage shrinks after GC`, async (t) => {
  const registry = await startPrivateRegistry({ deleteEnabled: true });
  t.teardown(() => registry.close());
  const client = new RegistryClient({ registry: registry.host });
  const fx = fixture(t);
  const options = { imagesDir: fx.dir, registry: registry.host, engine, buildArgs: { HARBOR_REGISTRY: env.registryAnon }, register: false, keepInputTags: KEEP };
  const inputTags = [];
  const digests = [];
  let v1;
  const removedAll = [];
  for (let i = 1; i <= 8; i++) {
    fx.change(i);
    const before = await tagMap(client, fx.repository);
    const check = await runPipeline(options, { checkMode: true });
    t.same(await tagMap(client, fx.repository), before, `change ${i}: the check run changed no tag`);
    const real = await runPipeline(options);
    t.equal(real.failed, false, `change ${i}: ${JSON.stringify(real.images.map((x) => x.error?.message ?? x.reason))}`);
    const [c, r] = [check.images[0], real.images[0]];
    t.equal(r.buildSkipped, false, `change ${i} was built`);
    t.equal(c.changed, r.changed, `change ${i}: check mode predicts changed`);
    t.same(retentionOf(c), retentionOf(r), `change ${i}: check mode predicts exactly the removals`);
    inputTags.push(r.inputDigest && `in-${r.inputDigest.replace(/^sha256:/, '').slice(0, 32)}`);
    digests.push(r.digest);
    removedAll.push(...r.retention.removedTags);
    if (i === 1) {
      // A version tag someone put on the first build: its image must survive (and its input tag with it).
      await client.retag(fx.repository, r.digest, 'v1');
      v1 = r.digest;
    }
    const tags = await tagMap(client, fx.repository);
    const present = Object.keys(tags).filter(isInputTag);
    const inUse = r.retention.inUse ?? [];
    t.ok(present.length - inUse.length <= KEEP, `change ${i}: at most ${KEEP} input tags besides the ones still in use (${present.length}, in use ${inUse.length})`);
    t.same(present.filter((tag) => !inUse.includes(tag)).sort(), inputTags.slice(-KEEP).filter((tag) => tag !== inputTags[0] || i <= KEEP).sort(), `change ${i}: the newest ${KEEP} input tags are the ones kept`);
    t.ok(present.includes(inputTags[i - 1]), `change ${i}: the input tag of this run stays`);
    t.equal(tags.latest, r.digest, `change ${i}: latest names this run's image`);
    t.equal(tags.v1, v1, `change ${i}: v1 still names the first build`);
    // Change 4 makes run 1's input tag stale, but v1 still names its image: it stays (deletes go by digest).
    if (i === KEEP + 1) t.same(r.retention.inUse, [inputTags[0]], `change ${i}: the stale input tag of v1's image stays, reported in use`);
    if (i > KEEP + 1) {
      t.ok(r.changed, `change ${i}: changed`);
      t.match(r.reason, /removed \d+ old input tag/, `change ${i}: the reason says what was removed`);
    }
  }
  // Runs 2..5 lost their input tags and images; run 1's input tag stays because v1 names its image.
  t.same(removedAll.sort(), inputTags.slice(1, 8 - KEEP).sort(), 'every input tag older than the newest three went, but the one v1 still needs');
  const finalTags = await tagMap(client, fx.repository);
  t.same(Object.keys(finalTags).filter(isInputTag).sort(), [inputTags[0], ...inputTags.slice(-KEEP)].sort(), 'left: the newest three and the one of v1');
  for (const gone of digests.slice(1, 8 - KEEP)) t.equal(await client.headManifest(fx.repository, gone), undefined, `${gone.slice(0, 19)} is deleted`);

  // Nothing changed: nothing to remove, changed=false, in check mode and for real.
  const again = await runPipeline(options);
  t.equal(again.images[0].changed, false, 'an unchanged re-run changes nothing');
  t.same(again.images[0].retention.removedTags, [], 'and removes nothing');

  // The garbage collector frees the deleted images' layers; what is left is whole.
  const beforeGc = registry.blobBytes();
  await registry.garbageCollect();
  const afterGc = registry.blobBytes();
  t.ok(afterGc < beforeGc - 4 * 256 * 1024, `storage shrank by the deleted images' layers (${beforeGc} -> ${afterGc} bytes)`);
  t.comment(`registry blobs: ${beforeGc} bytes before garbage-collect, ${afterGc} after (${beforeGc - afterGc} freed)`);
  for (const tag of Object.keys(finalTags)) {
    const manifest = JSON.parse((await client.getManifest(fx.repository, tag)).body.toString('utf8'));
    for (const blob of [manifest.config, ...manifest.layers]) t.ok(await client.blobExists(fx.repository, blob.digest), `${tag}: blob ${blob.digest.slice(0, 19)} still there`);
  }
  const latest = await pullFresh(`${registry.host}/${fx.repository}:latest`);
  t.ok(latest.RepoDigests.some((d) => d.endsWith(`@${digests[7]}`)), 'latest pulls after the deletions and the garbage collection');
  const old = await pullFresh(`${registry.host}/${fx.repository}:v1`);
  t.ok(old.RepoDigests.some((d) => d.endsWith(`@${v1}`)), 'v1 pulls too');

  // The pipeline command with --keep-input-tags: check then real agree, one more input tag goes.
  fx.change(9);
  const args = [fx.dir, '--registry', registry.host, '--engine-host', env.dockerHost, '--build-arg', `HARBOR_REGISTRY=${env.registryAnon}`, '--no-register', '--keep-input-tags', '2', '--quiet'];
  const beforeCheck = await tagMap(client, fx.repository);
  const checked = await runCommand([...args, '--check']);
  t.equal(checked.code, 0, checked.stderr.slice(-2000));
  t.same(await tagMap(client, fx.repository), beforeCheck, '--check changed no tag');
  const ran = await runCommand(args);
  t.equal(ran.code, 0, ran.stderr.slice(-2000));
  const [ci, ri] = [JSON.parse(checked.stdout).images[0], JSON.parse(ran.stdout).images[0]];
  t.same(retentionOf(ci), retentionOf(ri), 'the command: --check predicts the removals');
  t.equal(ri.retention.removed_tags.length, 2, 'keeping 2: the two oldest of the three kept input tags go');
  t.equal(Object.keys(await tagMap(client, fx.repository)).filter(isInputTag).filter((tag) => tag !== inputTags[0]).length, 2, 'two input tags left besides the one of v1');
});

t.test('a registry that refuses deletes: a warning, the image is done, nothing removed', async (t) => {
  const registry = await startPrivateRegistry({ deleteEnabled: false });
  t.teardown(() => registry.close());
  const client = new RegistryClient({ registry: registry.host });
  const fx = fixture(t);
  const options = { imagesDir: fx.dir, registry: registry.host, engine, buildArgs: { HARBOR_REGISTRY: env.registryAnon }, register: false, keepInputTags: 1 };
  fx.change(1);
  t.equal((await runPipeline(options)).failed, false);
  fx.change(2);
  const second = await runPipeline(options);
  const image = second.images[0];
  t.equal(image.status, 'done', 'the image is done');
  t.equal(second.failed, false);
  t.match(image.retention.warning, /refuses deletes/, 'the result says deletes are refused');
  t.ok(second.warnings.some((w) => /refuses deletes/.test(w)), 'and so do the run warnings');
  t.same(image.retention.removedTags, [], 'nothing counted as removed');
  t.equal((await client.listTags(fx.repository)).filter(isInputTag).length, 2, 'both input tags are still there');
});

t.test('multi-architecture: an index a tag names keeps its platform images; images of indexes no tag names any more go', async (t) => {
  const registry = await startPrivateRegistry({ deleteEnabled: true });
  t.teardown(() => registry.close());
  const client = new RegistryClient({ registry: registry.host });
  t.ok(env.arm64, 'the arm64 busybox of test/env is there');
  // A multi-platform base in this registry: test/env's busybox for amd64 and arm64, joined in an index.
  const stream = await docker.pull(env.busyboxArm64Image, { platform: 'linux/arm64' });
  await new Promise((resolve, reject) => docker.modem.followProgress(stream, (error) => (error ? reject(error) : resolve())));
  const base = [];
  for (const [source, arch] of [[env.busyboxImage, 'amd64'], [env.busyboxArm64Image, 'arm64']]) {
    await docker.getImage(source).tag({ repo: `${registry.host}/library/bb`, tag: arch });
    base.push((await pushImage({ tags: [`${registry.host}/library/bb:${arch}`], engine })).digest);
  }
  await assembleImageIndex({ tags: [`${registry.host}/library/bb:multi`], manifests: base, platforms: ['linux/amd64', 'linux/arm64'] });
  const context = tmp(t, 'tk-retention-multi-');
  writeFileSync(path.join(context, 'Dockerfile'), 'ARG HARBOR_REGISTRY\nFROM ${HARBOR_REGISTRY}/library/bb:multi\nCOPY data.txt /data.txt\n');
  const repository = `library/${uniqueName('retm')}`;
  const options = { context, tags: [`${registry.host}/${repository}:latest`], platforms: ['linux/amd64', 'linux/arm64'], buildArgs: { HARBOR_REGISTRY: registry.host }, engine, keepInputTags: 2 };
  const runs = [];
  for (let i = 1; i <= 3; i++) {
    writeFileSync(path.join(context, 'data.txt'), `change ${i}\n`);
    const result = await buildMultiArchImage(options);
    runs.push({ index: result.index.digest, platforms: result.platforms.map((p) => p.digest), inputTags: result.platforms.map((p) => p.inputTag.split(':').pop()), retention: result.retention });
    if (i === 1) await client.retag(repository, result.index.digest, 'v1');
  }
  const [first, second, third] = runs;
  t.same(second.retention.removedTags, [], 'change 2: the first build\'s platform images are in v1\'s index: nothing removed');
  t.same([...second.retention.inUse].sort(), [...first.inputTags].sort(), 'change 2: their input tags stay, reported in use');
  t.same([...third.retention.removedDigests].sort(), [...second.platforms].sort(), 'change 3: the platform images of the second build go (no tag names their index any more)');
  t.same([...third.retention.removedTags].sort(), [...second.inputTags].sort());
  const tags = await tagMap(client, repository);
  t.same(Object.keys(tags).filter(isInputTag).sort(), [...first.inputTags, ...third.inputTags].sort(), 'left: this run\'s input tags and the ones v1\'s images still need');
  t.equal(tags.v1, first.index, 'v1 names the first index');
  for (const d of first.platforms) t.ok(await client.headManifest(repository, d), `v1's platform image ${d.slice(0, 19)} is there`);
  for (const d of second.platforms) t.equal(await client.headManifest(repository, d), undefined, `${d.slice(0, 19)} is deleted`);
  t.equal(tags['latest-linux-arm64'], third.platforms[1], 'the per-arch tag names this run\'s arm64 image');
  const latest = await pullFresh(`${registry.host}/${repository}:latest`);
  t.ok(latest.RepoDigests.some((d) => d.endsWith(`@${third.index}`)), 'latest pulls');
  const v1 = await pullFresh(`${registry.host}/${repository}:v1`);
  t.ok(v1.RepoDigests.some((d) => d.endsWith(`@${first.index}`)), 'v1 pulls');
});
