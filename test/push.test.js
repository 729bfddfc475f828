// pushImage against the real dockerd and the two loopback registries (anonymous and htpasswd).
import t from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildImage } from '../dist/lib/build/build.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { ThinkubeImageError } from '../dist/lib/core/errors.js';
import { MANIFEST_ACCEPT, dockerFor, registryDigest, removeImages, tempDir, testEnv, uniqueName, writeTree } from './fixtures/core/support.js';

const env = testEnv();
const docker = dockerFor(env.dockerHost);
const engine = { host: env.dockerHost };
const name = `core/${uniqueName('push')}`;
const anon = `${env.registryAnon}/${name}`;
const auth = `${env.registryAuth}/${name}`;
const unreachable = `localhost:1/${name}`;
const made = [];
t.teardown(() => removeImages(docker, made));

// One small image with a unique layer (so the first push really uploads), tagged for every target.
t.before(async () => {
  const dir = writeTree(tempDir(t), { Dockerfile: `FROM ${env.busyboxImage}\nRUN echo ${name} > /unique\n` });
  const tags = [`${anon}:1`, `${anon}:2`, `${auth}:1`, `${auth}:2`, `${unreachable}:1`];
  made.push(...tags);
  await buildImage({ context: dir, tags, engine });
});

const failure = (promise) =>
  promise.then(
    (value) => {
      throw new Error(`expected a failure, got ${JSON.stringify(value)}`);
    },
    (error) => error,
  );

t.test('anonymous registry: digest equals the registry Docker-Content-Digest; a second push changes nothing', async (t) => {
  const events = [];
  const first = await pushImage({ tags: [`${anon}:1`], engine }, { onEvent: (e) => events.push(e) });
  const seen = await registryDigest(env.registryAnon, name, '1');
  t.equal(seen.status, 200);
  t.match(first.digest, /^sha256:[0-9a-f]{64}$/);
  t.equal(first.digest, seen.digest, 'digest is the registry one');
  // The digest is the hash of the manifest the registry serves.
  const res = await fetch(`http://${env.registryAnon}/v2/${name}/manifests/1`, { headers: { Accept: MANIFEST_ACCEPT } });
  const body = Buffer.from(await res.arrayBuffer());
  t.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, first.digest);
  t.equal(first.manifestSize, body.length, 'manifest size as pushed');
  const manifest = JSON.parse(body.toString());
  t.equal(first.imageSize, manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0));
  t.equal(first.registry, env.registryAnon);
  t.equal(first.repository, name);
  t.equal(first.verified, true);
  t.equal(first.changed, true);
  t.equal(first.uploaded, true);
  t.equal(first.tags.length, 1);
  t.equal(first.tags[0].reference, `${anon}:1`);
  t.ok(first.tags[0].layersUploaded >= 1, 'the unique layer was uploaded');
  t.equal(first.tags[0].previousDigest, undefined, 'the tag did not exist before');
  t.ok(events.some((e) => e.type === 'push-layer' && e.status === 'Pushed'), 'layer events');
  t.same(events.filter((e) => e.type === 'push-digest'), [{ type: 'push-digest', reference: `${anon}:1`, digest: first.digest, size: first.manifestSize }]);

  const again = await pushImage({ tags: [`${anon}:1`], engine });
  t.equal(again.digest, first.digest);
  t.equal(again.changed, false, 'second push of the same tag: unchanged');
  t.equal(again.uploaded, false);
  t.equal(again.tags[0].layersUploaded, 0);
  t.equal(again.tags[0].previousDigest, first.digest);
  t.ok(again.tags[0].layersExisting >= 1);

  // A new tag of the same image: no upload, but the registry changed (a tag appeared).
  const tagged = await pushImage({ tags: [`${anon}:1`, `${anon}:2`], engine });
  t.equal(tagged.digest, first.digest);
  t.same(tagged.tags.map((x) => x.changed), [false, true]);
  t.equal(tagged.uploaded, false);
  t.equal((await registryDigest(env.registryAnon, name, '2')).digest, first.digest);
});

t.test('authenticated registry: credentials from options and from a docker config.json', async (t) => {
  const credentials = { username: env.registryUser, password: env.registryPassword };
  const viaOptions = await pushImage({ tags: [`${auth}:1`], auth: credentials, engine });
  const seen = await registryDigest(env.registryAuth, name, '1', credentials);
  t.equal(seen.status, 200);
  t.equal(viaOptions.digest, seen.digest, 'digest is the registry one');
  t.equal(viaOptions.changed, true);
  t.equal((await registryDigest(env.registryAuth, name, '1')).status, 401, 'the registry really needs credentials');

  const configDir = tempDir(t);
  writeFileSync(
    path.join(configDir, 'config.json'),
    JSON.stringify({ auths: { [env.registryAuth]: { auth: Buffer.from(`${env.registryUser}:${env.registryPassword}`).toString('base64') } } }),
  );
  const viaConfig = await pushImage({ tags: [`${auth}:2`], auth: { dockerConfig: path.join(configDir, 'config.json') }, engine });
  t.equal(viaConfig.digest, viaOptions.digest, 'same image, same digest');
  t.equal(viaConfig.tags[0].layersUploaded, 0, 'layers were already there');
  t.equal(viaConfig.changed, true, 'a new tag is a change');
  t.equal((await registryDigest(env.registryAuth, name, '2', credentials)).digest, viaConfig.digest);

  // A directory holding config.json works too, like DOCKER_CONFIG.
  const again = await pushImage({ tags: [`${auth}:2`], auth: { dockerConfig: configDir }, engine });
  t.equal(again.changed, false);
});

t.test('wrong password: ERR_REGISTRY_AUTH naming registry and user, never the password', async (t) => {
  const password = `wrong-${uniqueName('pw')}`;
  for (const verify of [true, false]) {
    const error = await failure(pushImage({ tags: [`${auth}:1`], auth: { username: env.registryUser, password }, verify, engine }));
    t.ok(error instanceof ThinkubeImageError, `typed error (verify ${verify})`);
    t.equal(error.code, 'ERR_REGISTRY_AUTH');
    t.match(error.message, env.registryAuth, 'names the registry');
    t.match(error.message, env.registryUser, 'names the user');
    t.ok(error.hint, 'has a hint');
    const encoded = Buffer.from(`${env.registryUser}:${password}`).toString('base64');
    for (const [where, text] of [
      ['message', error.message],
      ['hint', error.hint],
      ['JSON', JSON.stringify(error)],
      ['stack', error.stack],
      ['cause', String(error.cause?.message ?? '') + JSON.stringify(error.cause ?? {})],
    ]) {
      t.notOk(text.includes(password), `password absent from ${where}`);
      t.notOk(text.includes(encoded), `encoded credentials absent from ${where}`);
    }
  }
  const anonymous = await failure(pushImage({ tags: [`${auth}:1`], verify: false, engine }));
  t.equal(anonymous.code, 'ERR_REGISTRY_AUTH', 'no credentials at all');
  t.match(anonymous.message, env.registryAuth);
});

t.test('a tag that does not exist locally is a clear ERR_PUSH_FAILED', async (t) => {
  for (const ref of [`${anon}:no-such-tag`, `${env.registryAnon}/core/${uniqueName('nothing')}:1`]) {
    const error = await failure(pushImage({ tags: [ref], engine }));
    t.equal(error.code, 'ERR_PUSH_FAILED', ref);
    t.match(error.message, ref, 'names the reference');
    t.match(error.message, /does not exist/);
    t.match(error.hint, /[Bb]uild/, 'says to build or tag it first');
  }
});

t.test('an unreachable registry names the registry', async (t) => {
  for (const verify of [true, false]) {
    const error = await failure(pushImage({ tags: [`${unreachable}:1`], verify, engine }));
    t.equal(error.code, 'ERR_REGISTRY_UNREACHABLE', `verify ${verify}: ${error.message}`);
    t.match(error.message, 'localhost:1');
    t.ok(error.hint);
  }
});

t.test('tags of different repositories in one push are refused', async (t) => {
  const error = await failure(pushImage({ tags: [`${anon}:1`, `${auth}:1`], engine }));
  t.equal(error.code, 'ERR_INVALID_OPTIONS');
  t.match(error.message, auth);
});
