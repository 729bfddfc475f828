// Engine connection: addresses resolved like the Docker CLI, clear errors when unreachable, and the
// same code against dockerd and Podman's Docker API. Also option validation at the API level.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { buildImage } from '../dist/lib/build/build.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { BuildError, ValidationError } from '../dist/lib/core/errors.js';
import { DEFAULT_ENGINE_HOST, checkEngine, connectEngine, resolveEngineAddress } from '../dist/lib/engine/engine.js';
import { dockerFor, inspectImage, removeImages, tempDir, testEnv, uniqueName, writeTree } from './fixtures/core/support.js';

const env = testEnv();

const failure = (promise) =>
  promise.then(
    (value) => {
      throw new Error(`expected a failure, got ${JSON.stringify(value)}`);
    },
    (error) => error,
  );

/** A loopback TCP port with nothing listening on it. */
async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

t.test('engine address: option, then DOCKER_HOST, then the default socket', async (t) => {
  t.equal(resolveEngineAddress({}, {}), DEFAULT_ENGINE_HOST);
  t.equal(resolveEngineAddress({}, { DOCKER_HOST: 'tcp://127.0.0.1:2375' }), 'tcp://127.0.0.1:2375');
  t.equal(resolveEngineAddress({}, { DOCKER_HOST: '' }), DEFAULT_ENGINE_HOST, 'empty DOCKER_HOST is unset');
  t.equal(resolveEngineAddress({ host: 'unix:///x.sock' }, { DOCKER_HOST: 'tcp://127.0.0.1:2375' }), 'unix:///x.sock', 'the option wins');

  // connectEngine with only DOCKER_HOST reaches the engine named there.
  const viaEnv = connectEngine({}, { DOCKER_HOST: env.dockerHost });
  t.equal(viaEnv.address, env.dockerHost);
  t.match((await checkEngine(viaEnv)).apiVersion, /^1\.\d+$/);

  // And so does buildImage when the process environment names it (no engine option).
  const saved = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = env.dockerHost;
  t.teardown(() => {
    if (saved === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved;
  });
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\nLABEL via=docker-host\n' });
  const ref = `${env.registryAnon}/core/${uniqueName('dockerhost')}:1`;
  t.teardown(() => removeImages(dockerFor(env.dockerHost), [ref]));
  const result = await buildImage({ context: dir, tags: [ref], ociLabels: false });
  t.equal((await inspectImage(dockerFor(env.dockerHost), ref))?.Id, result.imageId, 'built on the DOCKER_HOST engine');

  // TLS like DOCKER_TLS_VERIFY: missing client certificates are named.
  const certDir = tempDir(t);
  const tls = t.throws(() => connectEngine({}, { DOCKER_HOST: 'tcp://127.0.0.1:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certDir }));
  t.equal(tls.code, 'ERR_INVALID_OPTIONS');
  t.match(tls.message, certDir);
  t.match(tls.message, /ca\.pem/);
  const scheme = t.throws(() => connectEngine({ host: 'ftp://127.0.0.1' }));
  t.match(scheme.message, /ftp:/);
});

t.test('an unreachable engine is ERR_ENGINE_UNREACHABLE naming the address', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n' });
  const port = await closedPort();
  const addresses = [`unix://${path.join(tempDir(t), 'no-such', 'docker.sock')}`, `tcp://127.0.0.1:${port}`];
  for (const host of addresses) {
    const check = await failure(checkEngine(connectEngine({ host })));
    t.equal(check.code, 'ERR_ENGINE_UNREACHABLE', `check ${host}`);
    t.match(check.message, host, 'names the address');
    t.match(check.hint, /DOCKER_HOST/, 'says what to check');

    const events = [];
    const build = await failure(buildImage({ context: dir, tags: ['localhost:1/core/never:1'], engine: { host } }, { onEvent: (e) => events.push(e) }));
    t.equal(build.code, 'ERR_ENGINE_UNREACHABLE', `build ${host}`);
    t.match(build.message, host);
    t.same(events.filter((e) => e.type === 'retry' || e.type === 'build-step'), [], 'gives up at once: no retry, no step started');

    const push = await failure(pushImage({ tags: [`${env.registryAnon}/core/never:1`], engine: { host } }));
    t.equal(push.code, 'ERR_ENGINE_UNREACHABLE', `push ${host}`);
    t.match(push.message, host);
  }
  const fromEnv = await failure(checkEngine(connectEngine({}, { DOCKER_HOST: addresses[1] })));
  t.match(fromEnv.message, addresses[1], 'the address from DOCKER_HOST is named');
});

t.test('checkEngine works against dockerd and against the Podman service', async (t) => {
  const dockerd = await checkEngine(connectEngine({ host: env.dockerHost }));
  const podman = await checkEngine(connectEngine({ host: env.podmanHost }));
  t.match(dockerd.version, /^\d+\.\d+/);
  t.match(podman.version, /^\d+\.\d+/);
  t.equal(dockerd.os, 'linux');
  t.equal(podman.os, 'linux');
  t.not(dockerd.version, podman.version, 'two different engines answered');
});

t.test('an engine over TLS with client certificates (DOCKER_TLS_VERIFY): the version check and dockerode calls both use them', async (t) => {
  // dockerd behind a TLS front that demands a client certificate signed by its CA, like dockerd --tlsverify.
  const dir = tempDir(t);
  const cert = (name, subject) =>
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, `${name}-key.pem`), '-out', path.join(dir, `${name}.pem`), '-days', '2', '-subj', subject, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  cert('server', '/CN=127.0.0.1');
  cert('client', '/CN=client');
  const read = (name) => readFileSync(path.join(dir, name));
  const socketPath = new URL(env.dockerHost).pathname;
  const front = tls.createServer({ key: read('server-key.pem'), cert: read('server.pem'), ca: [read('client.pem')], requestCert: true, rejectUnauthorized: true }, (socket) => {
    const upstream = net.connect(socketPath);
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
  t.teardown(() => front.close());
  const host = `tcp://127.0.0.1:${front.address().port}`;

  const certPath = tempDir(t);
  copyFileSync(path.join(dir, 'server.pem'), path.join(certPath, 'ca.pem'));
  copyFileSync(path.join(dir, 'client.pem'), path.join(certPath, 'cert.pem'));
  copyFileSync(path.join(dir, 'client-key.pem'), path.join(certPath, 'key.pem'));
  const engine = connectEngine({ host, tlsVerify: true, certPath });
  t.match(await checkEngine(engine), { os: 'linux', version: /^\d+\.\d+/ }, 'the version check over TLS');
  const image = await (await engine.client()).getImage(env.busyboxImage).inspect();
  t.match(image.Id, /^sha256:/, 'a dockerode call over the same TLS connection settings');

  // The same check can fail: a CA that did not sign the server's certificate.
  const wrongCa = tempDir(t);
  copyFileSync(path.join(dir, 'client.pem'), path.join(wrongCa, 'ca.pem'));
  copyFileSync(path.join(dir, 'client.pem'), path.join(wrongCa, 'cert.pem'));
  copyFileSync(path.join(dir, 'client-key.pem'), path.join(wrongCa, 'key.pem'));
  const error = await failure(checkEngine(connectEngine({ host, tlsVerify: true, certPath: wrongCa })));
  t.equal(error.code, 'ERR_ENGINE_UNREACHABLE', error.message);
  t.match(error.message, host, 'names the engine');
});

t.test('a build on Podman: base image pulled from the local registry, args and labels honoured, failures typed', async (t) => {
  const podman = dockerFor(env.podmanHost);
  // Podman needs the base image in its own store: pull it through its Docker API.
  const pull = await podman.pull(env.busyboxImage);
  await new Promise((resolve, reject) => podman.modem.followProgress(pull, (error) => (error ? reject(error) : resolve())));
  t.ok(await inspectImage(podman, env.busyboxImage), 'Podman has the base image');

  const ref = `localhost/core/${uniqueName('podman')}:1`;
  t.teardown(() => removeImages(podman, [ref]));
  const dir = writeTree(tempDir(t), {
    Dockerfile: `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nARG GREETING\nENV GREETING_ENV=\${GREETING}\nRUN test "$GREETING" = podman-hi && echo ok > /ok\n`,
  });
  const events = [];
  const result = await buildImage(
    { context: dir, tags: [ref], buildArgs: { HARBOR_REGISTRY: env.registryAnon, GREETING: 'podman-hi' }, labels: { 'com.example.engine': 'podman' }, engine: { host: env.podmanHost } },
    { onEvent: (e) => events.push(e) },
  );
  const image = await inspectImage(podman, ref);
  t.ok(image, 'Podman has the image');
  t.equal(image.Id.replace(/^sha256:/, ''), result.imageId.replace(/^sha256:/, ''));
  t.equal(image.Config.Labels['com.example.engine'], 'podman');
  t.ok(image.Config.Labels['org.opencontainers.image.created']);
  t.ok(image.Config.Env.includes('GREETING_ENV=podman-hi'));
  const steps = events.filter((e) => e.type === 'build-step');
  t.ok(steps.length >= 5, 'Podman STEP lines become step events');
  t.same(steps.map((s) => s.step), steps.map((_, i) => i + 1));
  t.equal(events.filter((e) => e.type === 'build-image').length, 1);
  t.equal(await inspectImage(dockerFor(env.dockerHost), ref), undefined, 'built on Podman, not on dockerd');

  writeTree(dir, { Dockerfile: `FROM ${env.busyboxImage}\nRUN echo podman-before-fail && exit 4\n` });
  const error = await failure(buildImage({ context: dir, tags: [`${ref}-fail`], ociLabels: false, engine: { host: env.podmanHost } }));
  t.ok(error instanceof BuildError, `BuildError on Podman, got ${error}`);
  t.equal(error.code, 'ERR_BUILD_FAILED');
  t.match(error.step, /RUN echo podman-before-fail && exit 4/);
  t.ok(error.logTail.includes('podman-before-fail'));
});

t.test('invalid options give a ValidationError naming the field, before any engine is contacted', async (t) => {
  const engine = { host: 'unix:///nonexistent/engine.sock' };
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n' });
  const tags = ['localhost:1/core/never:1'];
  const buildCases = [
    [{ tags, engine }, 'context', /required/],
    [{ context: dir, engine }, 'tags', /required/],
    [{ context: dir, tags: 'localhost:1/core/never:1', engine }, 'tags', /array/],
    [{ context: dir, tags: [], engine }, 'tags', /fewer than 1|at least/],
    [{ context: dir, tags: ['Not/Valid:Ref'], engine }, 'tags[0]', /image reference/],
    [{ context: dir, tags, noCache: 'yes', engine }, 'noCache', /boolean/],
    [{ context: dir, tags, buildArgs: { A: 1 }, engine }, 'buildArgs.A', /string/],
    [{ context: dir, tags, dockerFile: 'x', engine }, 'dockerFile', /not a known option/],
    [{ context: dir, tags, engine: { host: 'docker.sock' } }, 'engine.host', /unix:\/\//],
    [{ context: dir, tags, engine: { ...engine, colour: 'x' } }, 'engine.colour', /not a known option/],
  ];
  for (const [options, field, message] of buildCases) {
    const error = await failure(buildImage(options));
    t.ok(error instanceof ValidationError, `build ${field}: ${error.message}`);
    t.equal(error.code, 'ERR_INVALID_OPTIONS');
    const problem = error.problems.find((p) => p.field === field);
    t.ok(problem, `names ${field}: ${JSON.stringify(error.problems)}`);
    t.match(problem?.message, message);
  }
  const pushCases = [
    [{ engine }, 'tags', /required/],
    [{ tags: [1], engine }, 'tags[0]', /string|image reference/],
    [{ tags, verify: 'yes', engine }, 'verify', /boolean/],
    [{ tags, auth: { username: 'u' }, engine }, 'auth.username', /password/],
    [{ tags, auth: { user: 'u' }, engine }, 'auth.user', /not a known option/],
    [{ tags, registryTls: { validateCerts: 'no' }, engine }, 'registryTls.validateCerts', /boolean/],
  ];
  for (const [options, field, message] of pushCases) {
    const error = await failure(pushImage(options));
    t.ok(error instanceof ValidationError, `push ${field}: ${error.message}`);
    const problem = error.problems.find((p) => p.field === field);
    t.ok(problem, `names ${field}: ${JSON.stringify(error.problems)}`);
    t.match(problem?.message, message);
  }
  const secret = await failure(pushImage({ tags, auth: { password: 'do-not-echo-this' }, engine }));
  t.notMatch(JSON.stringify(secret) + secret.message, /do-not-echo-this/, 'a password is never echoed in validation errors');
});
