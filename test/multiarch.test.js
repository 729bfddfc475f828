// Multi-architecture images against the real dockerd (arm64 under qemu emulation) and the real
// registry: per-platform builds pushed by digest, an index put through the registry API, pulled
// back per platform with the docker CLI; unchanged platforms are not rebuilt.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { testEnv, uniqueName } from './helpers/env.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { pullImage } from '../dist/lib/engine/pool.js';
import { runPush } from '../dist/lib/engine/push.js';
import { RegistryClient, MEDIA_TYPES } from '../dist/lib/registry/client.js';
import { buildMultiArchImage } from '../dist/lib/pipeline/multiarch.js';
import { assembleImageIndex, imageIndexDocument } from '../dist/lib/publish/index.js';

const run = promisify(execFile);
const env = testEnv();
const registry = new RegistryClient({ registry: env.registryAnon });
const dockerd = connectEngine({ host: env.dockerHost });
const dockerConfig = mkdtempSync(path.join(os.tmpdir(), 'tk-docker-config-'));
const docker = (...args) => run(env.dockerCli ?? 'docker', ['--config', dockerConfig, ...args], { env: { ...process.env, DOCKER_HOST: env.dockerHost }, timeout: 120_000 });

/** Push busybox amd64 and arm64 into `repository` (tags <tag>-amd64, <tag>-arm64) through dockerd. */
async function pushBusyboxPair(repository, tag) {
  await pullImage(dockerd, env.busyboxArm64Image, 'linux/arm64', {});
  const digests = {};
  for (const [source, arch] of [[env.busyboxImage, 'amd64'], [env.busyboxArm64Image, 'arm64']]) {
    await (await dockerd.client()).getImage(source).tag({ repo: `${env.registryAnon}/${repository}`, tag: `${tag}-${arch}` });
    digests[arch] = (await runPush(dockerd, { tags: [`${env.registryAnon}/${repository}:${tag}-${arch}`] })).digest;
  }
  return digests;
}

function fixture(files) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-multiarch-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  return dir;
}

function registryLogSince(offset) {
  return readFileSync(env.registryAnonLog, 'utf8').slice(offset);
}

t.test('the environment can run arm64 (qemu emulation)', async (t) => {
  t.ok(env.arm64, `arm64 emulation must work for these tests: env.json says arm64=${env.arm64} (test/env/up.sh needs qemu-user-static, binfmt_misc and the arm64 busybox; see its warnings in ${env.stateDir}/setup.log)`);
  t.match(env.busyboxArm64Image, /busybox-arm64/);
});

t.test('assembleImageIndex joins images already in the repository, through the registry API only', async (t) => {
  const repository = `library/${uniqueName('idx')}`;
  const digests = await pushBusyboxPair(repository, '1.35');
  const logOffset = readFileSync(env.registryAnonLog, 'utf8').length;
  const tag = `${env.registryAnon}/${repository}:1.35`;

  const result = await assembleImageIndex({ tags: [tag], manifests: ['1.35-amd64', `${env.registryAnon}/${repository}@${digests.arm64}`], platforms: ['linux/amd64', 'linux/arm64'] });
  t.equal(result.changed, true, 'the tag was created');
  t.same(result.platforms, ['linux/amd64', 'linux/arm64']);
  t.equal(result.mediaType, MEDIA_TYPES.dockerManifestList, 'Docker v2 images give a Docker manifest list (auto)');

  const stored = await registry.getManifest(repository, '1.35');
  t.equal(stored.digest, result.digest, 'the tag holds exactly the index returned');
  const document = JSON.parse(stored.body.toString('utf8'));
  t.equal(document.mediaType, MEDIA_TYPES.dockerManifestList);
  t.same(
    document.manifests.map((m) => ({ digest: m.digest, platform: `${m.platform.os}/${m.platform.architecture}` })),
    [
      { digest: digests.amd64, platform: 'linux/amd64' },
      { digest: digests.arm64, platform: 'linux/arm64' },
    ],
  );
  for (const entry of document.manifests) {
    const manifest = await registry.getManifest(repository, entry.digest);
    t.equal(entry.size, manifest.size, `${entry.platform.architecture}: size is the manifest's`);
    t.equal(entry.mediaType, MEDIA_TYPES.dockerManifest, `${entry.platform.architecture}: media type is the manifest's`);
  }
  // Only manifests and the small config blobs were read: no layer went to the client.
  const layers = new Set();
  for (const digest of Object.values(digests)) {
    for (const layer of JSON.parse((await registry.getManifest(repository, digest)).body.toString('utf8')).layers) layers.add(layer.digest);
  }
  const ourBlobReads = registryLogSince(logOffset)
    .split('\n')
    .filter((l) => l.includes('msg="response completed"') && l.includes('http.request.useragent=thinkube-custom-images') && l.includes(`/v2/${repository}/blobs/`));
  t.ok(ourBlobReads.length >= 2, 'the config blobs were read');
  t.notOk(ourBlobReads.some((l) => [...layers].some((d) => l.includes(d))), 'no layer blob was read');

  const again = await assembleImageIndex({ tags: [tag], manifests: [digests.amd64, digests.arm64] });
  t.equal(again.digest, result.digest, 'same images, same index bytes');
  t.equal(again.changed, false, 'unchanged index: changed=false');

  const dry = await assembleImageIndex({ tags: [`${env.registryAnon}/${repository}:dry`], manifests: [digests.amd64, digests.arm64] }, { dryRun: true });
  t.equal(dry.changed, true, 'check mode says the tag would be created');
  t.equal(await registry.headManifest(repository, 'dry'), undefined, 'check mode wrote nothing');

  const oci = await assembleImageIndex({
    tags: [`${env.registryAnon}/${repository}:oci`],
    manifests: [digests.arm64, digests.amd64],
    mediaType: 'oci',
    annotations: { 'org.opencontainers.image.source': 'https://example.com/images' },
  });
  const ociDocument = JSON.parse((await registry.getManifest(repository, 'oci')).body.toString('utf8'));
  t.equal(ociDocument.mediaType, MEDIA_TYPES.ociIndex, 'an OCI image index on request');
  t.equal((await registry.headManifest(repository, 'oci')).mediaType, MEDIA_TYPES.ociIndex, 'the registry serves it as an OCI index');
  t.same(ociDocument.annotations, { 'org.opencontainers.image.source': 'https://example.com/images' });
  t.same(oci.platforms, ['linux/arm64', 'linux/amd64'], 'without platforms the order given is kept');
});

t.test('assembleImageIndex refuses what cannot make a correct index, naming it', async (t) => {
  const repository = `library/${uniqueName('idxbad')}`;
  const digests = await pushBusyboxPair(repository, '1');
  const tag = `${env.registryAnon}/${repository}:x`;

  const otherRepo = await assembleImageIndex({ tags: [tag], manifests: [env.busyboxImage] }).catch((e) => e);
  t.equal(otherRepo.code, 'ERR_INVALID_OPTIONS');
  t.match(otherRepo.message, /manifests\[0\].*not in .*its own repository/);

  const missing = await assembleImageIndex({ tags: [tag], manifests: [digests.amd64], platforms: ['linux/amd64', 'linux/arm64'] }).catch((e) => e);
  t.equal(missing.code, 'ERR_PLATFORM_MISMATCH');
  t.match(missing.message, /missing linux\/arm64/);

  const twice = await assembleImageIndex({ tags: [tag], manifests: [digests.amd64, '1-amd64'] }).catch((e) => e);
  t.equal(twice.code, 'ERR_INVALID_OPTIONS');
  t.match(twice.message, /Two images of the index are for linux\/amd64/);

  await assembleImageIndex({ tags: [tag], manifests: [digests.amd64, digests.arm64] });
  const nested = await assembleImageIndex({ tags: [`${env.registryAnon}/${repository}:y`], manifests: ['x'] }).catch((e) => e);
  t.equal(nested.code, 'ERR_INVALID_OPTIONS');
  t.match(nested.message, /itself a multi-platform index/);

  const unknown = await assembleImageIndex({ tags: [tag], manifests: [`sha256:${'0'.repeat(64)}`] }).catch((e) => e);
  t.equal(unknown.code, 'ERR_MANIFEST_NOT_FOUND', 'a digest the repository does not have');

  const annotated = await assembleImageIndex({ tags: [tag], manifests: [digests.amd64], mediaType: 'docker', annotations: { a: 'b' } }).catch((e) => e);
  t.equal(annotated.code, 'ERR_INVALID_OPTIONS');
  t.match(annotated.message, /annotations: need an OCI index/);

  const twoRepos = await assembleImageIndex({ tags: [tag, `${env.registryAnon}/library/other:x`], manifests: [digests.amd64] }).catch((e) => e);
  t.equal(twoRepos.code, 'ERR_INVALID_OPTIONS');
  t.match(twoRepos.message, /must name one repository/);
});

t.test('imageIndexDocument is deterministic and picks the media type from the manifests', async (t) => {
  const entry = (arch, mediaType = MEDIA_TYPES.dockerManifest) => ({ mediaType, digest: `sha256:${arch.padEnd(64, 'a').slice(0, 64).replace(/[^a-f0-9]/g, 'b')}`, size: 10, platform: { os: 'linux', architecture: arch } });
  const a = imageIndexDocument([entry('amd64'), entry('arm64')]);
  const b = imageIndexDocument([entry('amd64'), entry('arm64')]);
  t.equal(a.body.toString(), b.body.toString());
  t.equal(a.mediaType, MEDIA_TYPES.dockerManifestList);
  t.equal(imageIndexDocument([entry('amd64'), entry('arm64', MEDIA_TYPES.ociManifest)]).mediaType, MEDIA_TYPES.ociIndex, 'mixed manifests: OCI index');
  t.throws(() => imageIndexDocument([entry('arm64'), { ...entry('arm64'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }]), /Two images of the index are for linux\/arm64/, 'arm64 and arm64/v8 are one platform');
});

t.test('a fixture built for linux/amd64 and linux/arm64 (emulated) is pushed as an index; unchanged platforms are not rebuilt', async (t) => {
  if (!env.arm64) return t.fail('arm64 emulation is not available (see the first test)');
  // A multi-platform base, as real bases are: the index of busybox amd64 + arm64 (itself made by assembleImageIndex).
  const baseRepository = 'library/busybox-multi';
  const base = await pushBusyboxPair(baseRepository, '1.35');
  await assembleImageIndex({ tags: [`${env.registryAnon}/${baseRepository}:1.35`], manifests: [base.amd64, base.arm64], platforms: ['linux/amd64', 'linux/arm64'] });

  const name = uniqueName('multi');
  const repository = `library/${name}`;
  const tag = `${env.registryAnon}/${repository}:latest`;
  const context = fixture({
    Dockerfile: `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox-multi:1.35\nCOPY hello /hello\nRUN uname -m > /arch\n`,
    hello: 'hello\n',
  });
  const engines = [{ name: 'dockerd', host: env.dockerHost, platforms: ['linux/amd64', 'linux/arm64'], concurrency: 2 }];
  const options = { context, tags: [tag, `${env.registryAnon}/${repository}:v1`], buildArgs: { HARBOR_REGISTRY: env.registryAnon }, engines };
  const build = async (platforms) => {
    const events = [];
    const result = await buildMultiArchImage({ ...options, platforms }, { onEvent: (e) => events.push(e) });
    return { result, built: events.filter((e) => e.type === 'info' && / building on engine /.test(e.message)).map((e) => e.message) };
  };

  const first = await build(['linux/amd64']);
  t.equal(first.built.length, 1, 'first run builds amd64');
  const amd64 = first.result.platforms[0];

  const second = await build(['linux/amd64', 'linux/arm64']);
  t.same(second.result.platforms.map((p) => [p.platform, p.skipped]), [['linux/amd64', true], ['linux/arm64', false]], 'amd64 unchanged, not rebuilt; arm64 built');
  t.equal(second.built.length, 1, 'one build only (arm64)');
  t.match(second.built[0], /linux\/arm64: building on engine dockerd/);
  t.equal(second.result.platforms[0].digest, amd64.digest, 'amd64 keeps its image');
  t.not(second.result.platforms[0].inputDigest, second.result.platforms[1].inputDigest, 'the input digest differs by platform');
  t.equal(second.result.changed, true);
  t.same(second.result.index.platforms, ['linux/amd64', 'linux/arm64']);

  // Each platform image is in the registry under its in-<digest> tag, and the index names them.
  for (const p of second.result.platforms) {
    const inTag = p.inputTag.split(':').pop();
    t.equal((await registry.headManifest(repository, inTag))?.digest, p.digest, `${p.platform} pushed as ${inTag}`);
  }
  for (const t2 of ['latest', 'v1']) {
    const stored = await registry.getManifest(repository, t2);
    t.equal(stored.digest, second.result.index.digest, `${t2} holds the index`);
    const document = JSON.parse(stored.body.toString('utf8'));
    t.ok([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList].includes(document.mediaType), 'an index media type');
    t.same(
      document.manifests.map((m) => [m.digest, `${m.platform.os}/${m.platform.architecture}`, m.mediaType, m.size]),
      second.result.platforms.map((p) => [p.digest, p.platform, p.mediaType, p.size]),
      'index entries carry each platform digest, platform, media type and size',
    );
  }

  // The docker CLI resolves the index per platform: arm64 gets the arm64 image, built under emulation.
  await docker('pull', '-q', '--platform', 'linux/arm64', tag);
  const { stdout: arch } = await docker('image', 'inspect', tag, '--format', '{{.Architecture}}');
  t.equal(arch.trim(), 'arm64', 'docker pull --platform linux/arm64 gets an arm64 image');
  const { stdout: uname } = await docker('run', '--rm', '--network', 'none', '--platform', 'linux/arm64', tag, 'cat', '/arch');
  t.equal(uname.trim(), 'aarch64', 'its RUN step ran as arm64 (qemu)');
  await docker('pull', '-q', '--platform', 'linux/amd64', tag);
  const { stdout: arch2 } = await docker('image', 'inspect', tag, '--format', '{{.Architecture}}');
  t.equal(arch2.trim(), 'amd64', 'and linux/amd64 gets the amd64 image');

  const third = await build(['linux/amd64', 'linux/arm64']);
  t.same(third.built, [], 're-run with nothing changed builds neither platform');
  t.ok(third.result.platforms.every((p) => p.skipped), 'both platforms skipped');
  t.equal(third.result.index.digest, second.result.index.digest, 'same index');
  t.equal(third.result.index.changed, false, 'index unchanged');
  t.equal(third.result.changed, false, 'changed=false');

  writeFileSync(path.join(context, 'hello'), 'hello again\n');
  const fourth = await build(['linux/amd64', 'linux/arm64']);
  t.equal(fourth.built.length, 2, 'a changed file rebuilds both platforms');
  t.not(fourth.result.index.digest, second.result.index.digest, 'a new index');

  const { stdout: local } = await docker('image', 'inspect', `${env.registryAnon}/library/busybox-multi:1.35`, '--format', '{{.Architecture}}');
  t.equal(local.trim(), 'amd64', "afterwards the engine's local base tag is its own platform again");
});

t.test('an image the engine built for the wrong platform is refused, not put in the index', async (t) => {
  if (!env.arm64) return t.fail('arm64 emulation is not available (see the first test)');
  // busybox:1.35 exists for amd64 only: dockerd 20.10 then builds on it whatever --platform says.
  const name = uniqueName('wrongarch');
  const context = fixture({ Dockerfile: `FROM ${env.busyboxImage}\nRUN echo x > /x\n` });
  const error = await buildMultiArchImage({ context, tags: [`${env.registryAnon}/library/${name}:latest`], platforms: ['linux/arm64'], engine: { host: env.dockerHost } }).catch((e) => e);
  t.equal(error.code, 'ERR_PLATFORM_MISMATCH');
  t.match(error.message, /built an image for linux\/amd64 when asked for linux\/arm64/);
  t.match(error.hint, /multi-platform index/);
  t.equal(await registry.headManifest(`library/${name}`, 'latest'), undefined, 'no index was put');
});

t.test('platforms no engine can build are refused before anything is built', async (t) => {
  const context = fixture({ Dockerfile: 'FROM scratch\n' });
  const error = await buildMultiArchImage({
    context,
    tags: [`${env.registryAnon}/library/${uniqueName('noengine')}:latest`],
    platforms: ['linux/amd64', 'linux/s390x'],
    engines: [{ name: 'amd-only', host: env.dockerHost, platforms: ['linux/amd64'] }],
  }).catch((e) => e);
  t.equal(error.code, 'ERR_INVALID_OPTIONS');
  t.match(error.message, /No engine builds linux\/s390x .*amd-only \(unix:\/\/.*\): linux\/amd64/);
  const invalid = await buildMultiArchImage({ context, tags: ['localhost/x:1'], platforms: ['amd64'] }).catch((e) => e);
  t.equal(invalid.code, 'ERR_INVALID_OPTIONS');
  t.match(invalid.message, /platforms\[0\].*os\/arch/);
});
