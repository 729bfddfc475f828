// RegistryClient against the real distribution registries of test/env/up.sh (anonymous and
// htpasswd), plus loopback stand-ins (node:http) for what those cannot show: Harbor's Bearer token
// flow, quota errors, retries, digest mismatches, TLS problems. Also the Docker config lookup.
import t from 'tap';
import http from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, statSync, chmodSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RegistryClient, parseAuthChallenges, sha256Digest, MEDIA_TYPES } from '../dist/lib/registry/client.js';
import { loadDockerCredentials, registryAuthHeader } from '../dist/lib/registry/docker-config.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { registryLogSince } from './helpers/registry-log.js';

const env = testEnv();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'thinkube-registry-test-'));

function sha(buf) {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

async function rejects(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Assert that a secret appears nowhere an error could show it. */
function assertNoSecret(t, error, secret, label) {
  const places = {
    message: error.message,
    hint: error.hint,
    details: JSON.stringify(error.details),
    json: JSON.stringify(error),
    stack: error.stack,
    cause: error.cause ? `${error.cause.message} ${error.cause.stack}` : '',
  };
  const b64 = Buffer.from(secret).toString('base64');
  for (const [where, text] of Object.entries(places)) {
    t.notOk(String(text ?? '').includes(secret), `${label}: secret not in ${where}`);
    t.notOk(String(text ?? '').includes(b64), `${label}: base64 of secret not in ${where}`);
  }
}

/** A node:http server on 127.0.0.1; resolves to { port, host, url, close }. */
async function serve(handler, options = {}) {
  const server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    host: `127.0.0.1:${port}`,
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

function sendJson(res, status, value, headers = {}) {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...headers });
  res.end(body);
}

const QUOTA_MESSAGE =
  'Quota exceeded when processing the request of adding 1.2 KiB of storage resource, which when updated to current usage of 1.0 GiB will exceed the configured upper limit of 1.0 GiB.';

/**
 * Harbor-like registry: /v2/ answers a Bearer challenge whose realm is /service/token with
 * service=harbor-registry; the token service checks Basic credentials (or a refresh token) and
 * grants the scopes asked for; manifest calls need a token holding the right action.
 */
async function harborStandIn({ user, secret, identityToken, realmOrigin, quota = false, denyPush = false } = {}) {
  const state = { tokenRequests: [], v2Authorizations: [], tokens: new Map(), manifests: new Map(), requests: [] };
  let n = 0;
  const srv = await serve(async (req, res) => {
    const url = new URL(req.url, 'http://stand-in');
    const body = await readBody(req);
    state.requests.push(`${req.method} ${url.pathname}`);
    if (url.pathname === '/service/token') {
      const record = { method: req.method, authorization: req.headers.authorization, query: url.searchParams, form: new URLSearchParams(body.toString()) };
      state.tokenRequests.push(record);
      let ok = false;
      let scopes = url.searchParams.getAll('scope');
      if (req.method === 'POST') {
        ok = identityToken !== undefined && record.form.get('grant_type') === 'refresh_token' && record.form.get('refresh_token') === identityToken;
        scopes = (record.form.get('scope') ?? '').split(' ').filter(Boolean);
      } else if (req.headers.authorization?.startsWith('Basic ')) {
        ok = Buffer.from(req.headers.authorization.slice(6), 'base64').toString() === `${user}:${secret}`;
      }
      if (!ok) return sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'unauthorized: authentication required' }] });
      const token = `tok-${++n}`;
      state.tokens.set(token, scopes);
      const answer = req.method === 'POST' ? { access_token: token, expires_in: 1800 } : { token, expires_in: 1800, issued_at: new Date().toISOString() };
      return sendJson(res, 200, answer);
    }
    if (!url.pathname.startsWith('/v2/')) return sendJson(res, 404, {});
    state.v2Authorizations.push(req.headers.authorization);
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    const name = m?.[1];
    const action = req.method === 'PUT' ? 'push' : 'pull';
    const token = req.headers.authorization?.startsWith('Bearer ') ? req.headers.authorization.slice(7) : undefined;
    const granted = token ? state.tokens.get(token) : undefined;
    const allowed =
      granted !== undefined &&
      (!name || granted.some((s) => s.startsWith(`repository:${name}:`) && s.split(':').pop().split(',').includes(action)));
    if (!allowed) {
      const realm = `${realmOrigin ?? srv.url}/service/token`;
      const scope = name ? `,scope="repository:${name}:pull,push"` : '';
      return sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'unauthorized to access repository' }] }, {
        'www-authenticate': `Bearer realm="${realm}",service="harbor-registry"${scope}`,
      });
    }
    if (!name) return sendJson(res, 200, {});
    const ref = m[2];
    if (req.method === 'PUT') {
      if (denyPush) return sendJson(res, 403, { errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] });
      if (quota) return sendJson(res, 403, { errors: [{ code: 'DENIED', message: QUOTA_MESSAGE }] });
      const stored = { body, type: req.headers['content-type'] };
      state.manifests.set(`${name}:${ref}`, stored);
      state.manifests.set(`${name}:${sha(body)}`, stored);
      res.writeHead(201, { 'docker-content-digest': sha(body), location: `/v2/${name}/manifests/${sha(body)}`, 'content-length': 0 });
      return res.end();
    }
    const found = state.manifests.get(`${name}:${ref}`);
    if (!found) return sendJson(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] });
    res.writeHead(200, { 'content-type': found.type, 'content-length': found.body.length, 'docker-content-digest': sha(found.body) });
    res.end(req.method === 'HEAD' ? undefined : found.body);
  });
  return { ...srv, state };
}

async function freePort() {
  const s = await serve(() => undefined);
  await s.close();
  return s.port;
}

function dockerCli(args) {
  return execFileSync(env.dockerCli ?? 'docker', ['--config', env.dockerConfigDir, ...args], {
    env: { ...process.env, DOCKER_HOST: env.dockerHost },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
}

function logSize(file) {
  return statSync(file).size;
}

// ------------------------------------------------------------------ parsing helpers

t.test('parseAuthChallenges handles quoted values with commas and several challenges', async (t) => {
  t.strictSame(parseAuthChallenges('Bearer realm="https://harbor.example.com/service/token",service="harbor-registry"'), [
    { scheme: 'bearer', params: { realm: 'https://harbor.example.com/service/token', service: 'harbor-registry' } },
  ]);
  t.strictSame(parseAuthChallenges('Bearer realm="https://r/token", service="svc" ,scope="repository:a/b:pull,push",error="insufficient_scope"'), [
    { scheme: 'bearer', params: { realm: 'https://r/token', service: 'svc', scope: 'repository:a/b:pull,push', error: 'insufficient_scope' } },
  ]);
  t.strictSame(parseAuthChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  t.strictSame(parseAuthChallenges('Basic realm="a, \\"quoted\\"", Bearer realm=https://x/t,service=s'), [
    { scheme: 'basic', params: { realm: 'a, "quoted"' } },
    { scheme: 'bearer', params: { realm: 'https://x/t', service: 's' } },
  ]);
  t.strictSame(parseAuthChallenges('Negotiate abc==, Basic realm=x'), [
    { scheme: 'negotiate', params: {} },
    { scheme: 'basic', params: { realm: 'x' } },
  ]);
  t.strictSame(parseAuthChallenges(''), []);
});

// ------------------------------------------------------------------ real anonymous registry

t.test('anonymous registry: manifests, blobs, tags, retag without blob traffic', async (t) => {
  const repo = `thinkube-test/${uniqueName('registry')}`;
  const image = `${env.registryAnon}/${repo}`;
  dockerCli(['tag', `${env.registryAnon}/library/busybox:${env.busyboxTag}`, `${image}:v1`]);
  dockerCli(['push', `${image}:v1`]);
  t.teardown(() => {
    try {
      dockerCli(['rmi', `${image}:v1`]);
    } catch {
      // the local tag is only a convenience
    }
  });

  const userAgent = `thinkube-registry-test/${uniqueName('ua')}`;
  const client = new RegistryClient({ registry: env.registryAnon, userAgent });
  t.strictSame(await client.ping(), { authRequired: false, authenticated: false });
  t.equal(client.baseUrl, `http://${env.registryAnon}`, 'loopback registry is plain HTTP');

  const head = await client.headManifest(repo, 'v1');
  t.match(head, { digest: /^sha256:[a-f0-9]{64}$/, mediaType: /^application\/vnd\.(docker|oci)\./ });
  const got = await client.getManifest(repo, 'v1');
  t.equal(got.digest, head.digest, 'GET and HEAD agree on the digest');
  t.equal(sha(got.body), head.digest, 'body bytes hash to the digest');
  t.equal(got.size, head.size);
  t.equal(got.mediaType, head.mediaType);

  // Round trip: the same bytes under a new tag keep the digest.
  const put = await client.putManifest(repo, 'copy', got.body, got.mediaType);
  t.equal(put.digest, head.digest, 'PUT keeps the digest');
  t.equal((await client.headManifest(repo, 'copy')).digest, head.digest);
  t.equal((await client.getManifest(repo, head.digest)).digest, head.digest, 'GET by digest');
  t.equal((await client.headManifest(repo, head.digest)).digest, head.digest, 'HEAD by digest');

  const manifest = JSON.parse(got.body.toString());
  t.equal(await client.blobExists(repo, manifest.config.digest), true, 'config blob exists');
  t.equal(await client.blobExists(repo, sha(Buffer.from(uniqueName()))), false, 'unknown blob');

  t.equal(await client.headManifest(repo, 'no-such-tag'), undefined, 'missing tag -> undefined');
  const missing = await rejects(client.getManifest(repo, 'no-such-tag'));
  t.equal(missing.code, 'ERR_MANIFEST_NOT_FOUND');
  t.match(missing.message, repo);
  t.strictSame(await client.listTags(`thinkube-test/${uniqueName('absent')}`), [], 'unknown repository has no tags');

  // Registry-side re-tag: only manifest traffic.
  const before = logSize(env.registryAnonLog);
  const retag = await client.retag(repo, 'v1', 'v2');
  t.strictSame(retag, { digest: head.digest, changed: true });
  const again = await client.retag(repo, 'v1', 'v2');
  t.strictSame(again, { digest: head.digest, changed: false }, 'second retag is a no-op');
  t.strictSame((await client.listTags(repo)).sort(), ['copy', 'v1', 'v2']);
  t.equal((await client.headManifest(repo, 'v2')).digest, head.digest);

  const log = await registryLogSince(env.registryAnon, env.registryAnonLog, before);
  const ours = log.split('\n').filter((l) => l.includes(`/v2/${repo}/`));
  t.ok(ours.some((l) => l.includes(`PUT /v2/${repo}/manifests/v2 `)), 'the registry log shows the manifest PUT (the log is being read)');
  t.equal(ours.filter((l) => l.includes('PUT /v2/')).length, 1, 'exactly one PUT: the unchanged retag did not PUT');
  t.strictSame(ours.filter((l) => /blobs\/uploads/.test(l)), [], 'no blob upload during retag');
  t.strictSame(log.split('\n').filter((l) => l.includes(userAgent) && /blobs/.test(l)), [], 'this client touched no blobs');

  // Bad arguments are caught before any request.
  for (const [call, field] of [
    [() => client.headManifest('Bad/Repo', 'v1'), 'repository'],
    [() => client.headManifest(repo, '../../x'), 'reference'],
    [() => client.retag(repo, 'v1', '-bad'), 'newTag'],
    [() => client.putManifest(repo, 'x', Buffer.alloc(0), MEDIA_TYPES.ociManifest), 'body'],
  ]) {
    const error = await rejects(call());
    t.equal(error.code, 'ERR_INVALID_OPTIONS', field);
    t.match(error.message, field);
  }
});

// ------------------------------------------------------------------ real password-protected registry

t.test('cacheByDigest: a manifest and a config read by digest are asked once; by tag always; a delete forgets it', async (t) => {
  const repo = `thinkube-test/${uniqueName('bydigest')}`;
  const seed = new RegistryClient({ registry: env.registryAnon });
  const source = await seed.getManifest('library/busybox', env.busyboxTag);
  const config = JSON.parse(source.body.toString()).config.digest;
  // The manifest's blobs, mounted into the new repository (no layer moves), then the manifest.
  for (const digest of [config, ...JSON.parse(source.body.toString()).layers.map((l) => l.digest)]) {
    const res = await fetch(`http://${env.registryAnon.replace('localhost', '127.0.0.1')}/v2/${repo}/blobs/uploads/?mount=${digest}&from=library/busybox`, { method: 'POST' });
    t.equal(res.status, 201, `blob ${digest.slice(0, 19)} mounted`);
  }
  await seed.putManifest(repo, 'v1', source.body, source.mediaType);

  const userAgent = `thinkube-registry-test/${uniqueName('ua')}`;
  const client = new RegistryClient({ registry: env.registryAnon, userAgent, cacheByDigest: true });
  const before = logSize(env.registryAnonLog);
  const byTag = await client.findManifest(repo, 'v1');
  t.equal(byTag.digest, source.digest, 'findManifest by tag');
  t.equal((await client.findManifest(repo, 'v1')).digest, source.digest, 'by tag again');
  t.equal(await client.findManifest(repo, 'no-such-tag'), undefined, 'a missing tag is undefined');
  const [a, b] = await Promise.all([client.getManifest(repo, source.digest), client.getManifest(repo, source.digest)]);
  t.equal(a.digest, source.digest);
  t.equal(b.body, a.body, 'two reads by digest at once share one answer');
  const [c1, c2] = await Promise.all([client.getBlob(repo, config), client.getBlob(repo, config)]);
  t.equal(sha(c1), config);
  t.equal(c2, c1);
  t.equal(await client.getBlob(repo, config), c1, 'the config again: kept');
  let log = await registryLogSince(env.registryAnon, env.registryAnonLog, before);
  // The access-log lines of this client (the registry's other lines name the user agent too).
  const requests = (text) => text.split('\n').map((l) => /^\S+ - \S+ \[[^\]]+\] "(\w+) (\S+) HTTP[^"]*" \d+ \d+ "[^"]*" "([^"]*)"/.exec(l)).filter((m) => m && m[3] === userAgent).map((m) => `${m[1]} ${m[2].replace(repo, 'R')}`);
  t.strictSame(requests(log).sort(), ['GET /v2/R/blobs/' + config, 'GET /v2/R/manifests/no-such-tag', 'GET /v2/R/manifests/v1', 'GET /v2/R/manifests/v1'].sort(), 'by tag: every time; by digest (the manifest read by tag included) and the config: once');

  // A client without the option asks every time.
  const plain = new RegistryClient({ registry: env.registryAnon, userAgent });
  const mark = logSize(env.registryAnonLog);
  await plain.getManifest(repo, source.digest);
  await plain.getManifest(repo, source.digest);
  log = await registryLogSince(env.registryAnon, env.registryAnonLog, mark);
  t.strictSame(requests(log), [`GET /v2/R/manifests/${source.digest}`, `GET /v2/R/manifests/${source.digest}`], 'without cacheByDigest: two GETs');

  // Deleted through the cached client: the next read asks the registry (which no longer has it).
  t.equal(await client.deleteManifest(repo, source.digest), 'deleted');
  const gone = await client.findManifest(repo, source.digest);
  t.equal(gone, undefined, 'after its delete the manifest is read again, and is gone');
});

t.test('auth registry: right password works, wrong one fails without showing it', async (t) => {
  const repo = 'library/busybox';
  const good = new RegistryClient({ registry: env.registryAuth, credentials: { username: env.registryUser, password: env.registryPassword } });
  t.strictSame(await good.ping(), { authRequired: true, authenticated: true });
  const head = await good.headManifest(repo, env.busyboxTag);
  t.match(head, { digest: /^sha256:/ });
  const tag = uniqueName('retag');
  t.strictSame(await good.retag(repo, env.busyboxTag, tag), { digest: head.digest, changed: true }, 'PUT with Basic auth');
  t.strictSame(await good.retag(repo, env.busyboxTag, tag), { digest: head.digest, changed: false });

  const anonymous = new RegistryClient({ registry: env.registryAuth });
  t.strictSame(await anonymous.ping(), { authRequired: true, authenticated: false });
  const anonError = await rejects(anonymous.headManifest(repo, env.busyboxTag));
  t.equal(anonError.code, 'ERR_REGISTRY_AUTH');
  t.match(anonError.message, env.registryAuth);

  const wrongPassword = `Wr0ng-${uniqueName('pw')}`;
  const bad = new RegistryClient({ registry: env.registryAuth, credentials: { username: env.registryUser, password: wrongPassword } });
  for (const [label, call] of [
    ['ping', () => bad.ping()],
    ['headManifest', () => bad.headManifest(repo, env.busyboxTag)],
    ['putManifest', () => bad.putManifest(repo, 'x', Buffer.from('{}'), MEDIA_TYPES.ociManifest)],
  ]) {
    const error = await rejects(call());
    t.equal(error.code, 'ERR_REGISTRY_AUTH', `${label}: code`);
    t.match(error.message, env.registryAuth, `${label}: names the registry`);
    t.match(error.message, env.registryUser, `${label}: names the user`);
    t.equal(error.details.username, env.registryUser);
    t.ok(error.hint, `${label}: has a hint`);
    assertNoSecret(t, error, wrongPassword, label);
  }
});

t.test('credentials from the docker config of the test environment', async (t) => {
  const creds = await loadDockerCredentials(env.registryAuth, env.dockerConfigDir);
  t.equal(creds?.username, env.registryUser);
  t.equal(creds?.password, env.registryPassword);
  const client = new RegistryClient({ registry: env.registryAuth, credentials: creds });
  t.strictSame(await client.ping(), { authRequired: true, authenticated: true });
});

// ------------------------------------------------------------------ connection failures

t.test('unreachable registry -> ERR_REGISTRY_UNREACHABLE naming the URL', async (t) => {
  const port = await freePort();
  const fast = new RegistryClient({ registry: `127.0.0.1:${port}`, retry: { limit: 0 } });
  const error = await rejects(fast.headManifest('library/busybox', 'latest'));
  t.equal(error.code, 'ERR_REGISTRY_UNREACHABLE');
  t.match(error.message, `http://127.0.0.1:${port}/v2/library/busybox/manifests/latest`);
  t.match(error.hint, /address/);
  t.equal(error.details.errorCode, 'ECONNREFUSED');

  // With the schema's default retry, GET/HEAD retry three times on ECONNREFUSED (1 s, 2 s, 4 s back-off) first.
  const retries = [];
  const slow = await rejects(new RegistryClient({ registry: `localhost:${port}`, credentials: { username: 'u', password: 'p4ss-unreachable' }, onRetry: (e) => retries.push(e) }).ping());
  t.equal(slow.code, 'ERR_REGISTRY_UNREACHABLE');
  t.same(retries.map((e) => e.attempt), [1, 2, 3], `retried three times before giving up: ${JSON.stringify(retries.map((e) => e.reason))}`);
  t.ok(retries.every((e, i) => i === 0 || e.delayMs > retries[i - 1].delayMs), `with growing back-off (${retries.map((e) => e.delayMs).join(', ')} ms planned)`);
  assertNoSecret(t, slow, 'p4ss-unreachable', 'unreachable');
});

t.test('a registry that does not answer in time -> ERR_TIMEOUT', async (t) => {
  const srv = await serve(() => undefined); // never responds
  t.teardown(srv.close);
  const client = new RegistryClient({ registry: srv.host, timeoutMs: 300, retry: { limit: 0 } });
  const error = await rejects(client.ping());
  t.equal(error.code, 'ERR_TIMEOUT');
  t.match(error.message, srv.host);
  t.match(error.message, '0.3 s', 'the request timeout ended it');
});

// ------------------------------------------------------------------ retry policy

t.test('GET/HEAD retry on 503 honouring Retry-After; PUT is not retried', async (t) => {
  const body = Buffer.from('{"schemaVersion":2}');
  let heads = 0;
  let puts = 0;
  const srv = await serve(async (req, res) => {
    await readBody(req);
    if (req.method === 'HEAD') {
      heads++;
      if (heads <= 2) {
        res.writeHead(503, { 'retry-after': '1' });
        return res.end();
      }
      res.writeHead(200, { 'docker-content-digest': sha(body), 'content-type': MEDIA_TYPES.ociManifest, 'content-length': body.length });
      return res.end();
    }
    puts++;
    sendJson(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'service unavailable' }] });
  });
  t.teardown(srv.close);
  const retries = [];
  const client = new RegistryClient({ registry: srv.host, onRetry: (e) => retries.push(e) });
  const info = await client.headManifest('a/b', 'v1');
  t.strictSame(info, { digest: sha(body), mediaType: MEDIA_TYPES.ociManifest, size: body.length });
  t.equal(heads, 3, 'two retries');
  // That a wait lasts its delayMs is proved on a virtual clock in retry.test.js.
  t.same(retries.map((e) => [e.attempt, e.delayMs, e.reason]), [[1, 1000, 'HTTP 503'], [2, 1000, 'HTTP 503']], 'each waits the Retry-After of 1 s');

  const error = await rejects(client.putManifest('a/b', 'v1', body, MEDIA_TYPES.ociManifest));
  t.equal(puts, 1, 'PUT sent once');
  t.equal(error.code, 'ERR_REGISTRY');
  t.match(error.message, /503.*UNAVAILABLE: service unavailable/);
  t.strictSame(error.details.registryErrors, [{ code: 'UNAVAILABLE', message: 'service unavailable' }]);

  const none = new RegistryClient({ registry: srv.host, retry: { limit: 0 } });
  heads = 0;
  const noRetry = await rejects(none.headManifest('a/b', 'v1'));
  t.equal(heads, 1, 'retry.limit 0 disables retries');
  t.equal(noRetry.code, 'ERR_REGISTRY');
});

t.test('PUT whose Docker-Content-Digest differs from the body -> ERR_DIGEST_MISMATCH', async (t) => {
  const srv = await serve(async (req, res) => {
    await readBody(req);
    res.writeHead(201, { 'docker-content-digest': `sha256:${'0'.repeat(64)}`, 'content-length': 0 });
    res.end();
  });
  t.teardown(srv.close);
  const body = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
  const error = await rejects(new RegistryClient({ registry: srv.host }).putManifest('a/b', 'v1', body, MEDIA_TYPES.ociManifest));
  t.equal(error.code, 'ERR_DIGEST_MISMATCH');
  t.equal(error.details.expected, sha256Digest(body));
  t.equal(error.details.actual, `sha256:${'0'.repeat(64)}`);
});

// ------------------------------------------------------------------ Harbor-style Bearer tokens

t.test('Bearer challenge: token from the realm with a robot account, cached per scope', async (t) => {
  const user = 'robot$thinkube';
  const secret = `s3cret-${uniqueName('robot')}`;
  const harbor = await harborStandIn({ user, secret });
  t.teardown(harbor.close);
  const client = new RegistryClient({ registry: harbor.host, credentials: { username: user, password: secret } });

  t.strictSame(await client.ping(), { authRequired: true, authenticated: true });
  t.equal(harbor.state.tokenRequests.length, 1);
  const tokenRequest = harbor.state.tokenRequests[0];
  t.equal(tokenRequest.method, 'GET');
  t.equal(tokenRequest.query.get('service'), 'harbor-registry');
  t.match(tokenRequest.authorization, /^Basic /);
  t.equal(Buffer.from(tokenRequest.authorization.slice(6), 'base64').toString('utf8'), `robot$thinkube:${secret}`, 'Basic header decodes to exactly robot$thinkube:<secret>');
  t.equal(harbor.state.v2Authorizations[0], undefined, 'first /v2/ is anonymous');
  t.match(harbor.state.v2Authorizations.at(-1), /^Bearer tok-\d+$/, '/v2/ retried with the Bearer token');

  const repo = 'thinkube/jupyter-ml-cpu';
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: {}, layers: [] }));
  const put = await client.putManifest(repo, 'v1', body, MEDIA_TYPES.ociManifest);
  t.equal(put.digest, sha(body));
  const pushScopes = harbor.state.tokenRequests.at(-1).query.getAll('scope');
  t.ok(pushScopes.includes(`repository:${repo}:pull,push`), 'PUT asks for pull,push');

  const head = await client.headManifest(repo, 'v1');
  t.equal(head.digest, sha(body));
  t.ok(harbor.state.tokenRequests.at(-1).query.getAll('scope').includes(`repository:${repo}:pull`), 'HEAD asks for pull');
  const count = harbor.state.tokenRequests.length;
  await client.headManifest(repo, 'v1');
  await client.getManifest(repo, 'v1');
  t.equal(harbor.state.tokenRequests.length, count, 'token reused for the same scope');

  t.strictSame(await client.retag(repo, 'v1', 'v1'), { digest: sha(body), changed: false });
  t.strictSame(await client.retag(repo, 'v1', 'latest'), { digest: sha(body), changed: true });
  t.equal(harbor.state.manifests.get(`${repo}:latest`).body.toString(), body.toString());
});

t.test('Bearer challenge: wrong robot secret -> ERR_REGISTRY_AUTH naming registry and user, not the secret', async (t) => {
  const user = 'robot$thinkube';
  const secret = `right-${uniqueName('s')}`;
  const wrong = `wrong-${uniqueName('s')}`;
  const harbor = await harborStandIn({ user, secret });
  t.teardown(harbor.close);
  const client = new RegistryClient({ registry: harbor.host, credentials: { username: user, password: wrong } });
  for (const [label, call] of [
    ['ping', () => client.ping()],
    ['headManifest', () => client.headManifest('thinkube/x', 'v1')],
  ]) {
    const error = await rejects(call());
    t.equal(error.code, 'ERR_REGISTRY_AUTH', label);
    t.match(error.message, harbor.host);
    t.match(error.message, 'robot$thinkube');
    t.match(error.message, '/service/token');
    assertNoSecret(t, error, wrong, label);
  }
  const anonymous = new RegistryClient({ registry: harbor.host });
  t.strictSame(await anonymous.ping(), { authRequired: true, authenticated: false });
  const error = await rejects(anonymous.headManifest('thinkube/x', 'v1'));
  t.equal(error.code, 'ERR_REGISTRY_AUTH');
  t.match(error.hint, /credentials/);
});

t.test('identity token is traded at the realm as an OAuth2 refresh token', async (t) => {
  const identityToken = `idt-${uniqueName('t')}`;
  const harbor = await harborStandIn({ identityToken });
  t.teardown(harbor.close);
  const client = new RegistryClient({ registry: harbor.host, credentials: { identityToken } });
  t.strictSame(await client.ping(), { authRequired: true, authenticated: true });
  const body = Buffer.from('{"schemaVersion":2}');
  await client.putManifest('a/b', 'v1', body, MEDIA_TYPES.ociManifest);
  const last = harbor.state.tokenRequests.at(-1);
  t.equal(last.method, 'POST');
  t.equal(last.form.get('grant_type'), 'refresh_token');
  t.equal(last.form.get('service'), 'harbor-registry');
  t.match(last.form.get('scope'), 'repository:a/b:pull,push');
  t.equal(last.authorization, undefined, 'no Basic header with an identity token');

  const bad = new RegistryClient({ registry: harbor.host, credentials: { identityToken: 'not-it-xyz' } });
  const error = await rejects(bad.ping());
  t.equal(error.code, 'ERR_REGISTRY_AUTH');
  assertNoSecret(t, error, 'not-it-xyz', 'identity token');
});

t.test("Harbor's 403 DENIED: quota is ERR_QUOTA_EXCEEDED with Harbor's message; other denials are auth errors", async (t) => {
  const user = 'robot$thinkube';
  const secret = 'quota-secret-1';
  const quota = await harborStandIn({ user, secret, quota: true });
  t.teardown(quota.close);
  const body = Buffer.from('{"schemaVersion":2}');
  const client = new RegistryClient({ registry: quota.host, credentials: { username: user, password: secret } });
  const error = await rejects(client.putManifest('thinkube/big', 'v1', body, MEDIA_TYPES.ociManifest));
  t.equal(error.code, 'ERR_QUOTA_EXCEEDED');
  t.strictSame(error.details.registryErrors, [{ code: 'DENIED', message: QUOTA_MESSAGE }]);
  t.match(error.message, 'Quota exceeded');
  t.match(error.hint, /quota/i);
  t.equal(error.details.status, 403);
  t.match(JSON.stringify(error), 'DENIED', 'registry error survives JSON serialisation');

  const denied = await harborStandIn({ user, secret, denyPush: true });
  t.teardown(denied.close);
  const error2 = await rejects(new RegistryClient({ registry: denied.host, credentials: { username: user, password: secret } }).putManifest('thinkube/x', 'v1', body, MEDIA_TYPES.ociManifest));
  t.equal(error2.code, 'ERR_REGISTRY_AUTH');
  t.match(error2.message, 'robot$thinkube');
  t.strictSame(error2.details.registryErrors[0].code, 'DENIED');
});

t.test('token realm with an untrusted TLS certificate: caFile or validateCerts fixes it', async (t) => {
  const dir = path.join(tmp, 'tls');
  mkdirSync(dir);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const tls = { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) };
  const user = 'robot$thinkube';
  const secret = 'tls-secret-1';
  // The token service runs over HTTPS (like Harbor's), the registry stand-in forwards to it.
  let harbor;
  const realm = await serve(async (req, res) => {
    const upstream = await fetch(`${harbor.url}${req.url}`, { method: req.method, headers: { authorization: req.headers.authorization ?? '' } });
    res.writeHead(upstream.status, { 'content-type': 'application/json' });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  }, { tls });
  t.teardown(realm.close);
  harbor = await harborStandIn({ user, secret, realmOrigin: realm.url });
  t.teardown(harbor.close);

  const credentials = { username: user, password: secret };
  const error = await rejects(new RegistryClient({ registry: harbor.host, credentials, retry: { limit: 0 } }).ping());
  t.equal(error.code, 'ERR_REGISTRY_UNREACHABLE');
  t.match(error.message, `${realm.url}/service/token`);
  t.match(error.message, /certificate/);
  t.match(error.hint, /caFile/);
  t.match(error.hint, /validateCerts/);
  assertNoSecret(t, error, secret, 'tls');

  t.strictSame(await new RegistryClient({ registry: harbor.host, credentials, caFile: path.join(dir, 'cert.pem') }).ping(), { authRequired: true, authenticated: true }, 'caFile');
  t.strictSame(await new RegistryClient({ registry: harbor.host, credentials, validateCerts: false }).ping(), { authRequired: true, authenticated: true }, 'validateCerts false');

  const noCa = await rejects(Promise.resolve().then(() => new RegistryClient({ registry: harbor.host, caFile: path.join(dir, 'missing.pem') })));
  t.equal(noCa.code, 'ERR_INVALID_OPTIONS');
  t.match(noCa.message, 'missing.pem');
});

t.test('credentials are not sent to a plain-HTTP token realm off loopback', async (t) => {
  // The realm is never contacted: the client refuses before sending anything.
  const srv = await serve((req, res) => {
    sendJson(res, 401, {}, { 'www-authenticate': 'Bearer realm="http://harbor.example.com/service/token",service="harbor-registry"' });
  });
  t.teardown(srv.close);
  const error = await rejects(new RegistryClient({ registry: srv.host, credentials: { username: 'u', password: 'plain-http-pw' } }).ping());
  t.equal(error.code, 'ERR_REGISTRY_AUTH');
  t.match(error.message, 'http://harbor.example.com/service/token');
  assertNoSecret(t, error, 'plain-http-pw', 'plain realm');
});

t.test('constructor validates the registry and picks the scheme', async (t) => {
  t.equal(new RegistryClient({ registry: 'harbor.example.com' }).baseUrl, 'https://harbor.example.com');
  t.equal(new RegistryClient({ registry: 'harbor.example.com:8080', plainHttp: true }).baseUrl, 'http://harbor.example.com:8080');
  t.equal(new RegistryClient({ registry: '127.0.0.1:5000' }).baseUrl, 'http://127.0.0.1:5000');
  t.equal(new RegistryClient({ registry: '[::1]:5000' }).baseUrl, 'http://[::1]:5000');
  t.equal(new RegistryClient({ registry: 'docker.io' }).baseUrl, 'https://registry-1.docker.io');
  for (const registry of ['', 'http://harbor', 'harbor/x', 'a b', 'h:99999']) {
    let error;
    try {
      new RegistryClient({ registry });
    } catch (e) {
      error = e;
    }
    t.equal(error?.code, 'ERR_INVALID_OPTIONS', JSON.stringify(registry));
  }
});

// ------------------------------------------------------------------ docker config

t.test('loadDockerCredentials: auth, https:// keys, helpers, missing entries', async (t) => {
  const dir = path.join(tmp, 'docker-config');
  mkdirSync(dir);
  const file = path.join(dir, 'config.json');
  const b64 = (s) => Buffer.from(s).toString('base64');
  writeFileSync(
    file,
    JSON.stringify({
      auths: {
        'harbor.example.com': { auth: b64('robot$thinkube:pa:ss') },
        'https://harbor2.example.com': { auth: b64('admin:two') },
        'https://harbor3.example.com:8443/v1/': { username: 'u3', password: 'p3' },
        'http://harbor4.example.com': { auth: b64('u4:p4') },
        'https://index.docker.io/v1/': { auth: b64('hubuser:hubpass') },
        'token.example.com': { auth: b64('<token>:'), identitytoken: 'refresh-abc' },
        'empty.example.com': {},
      },
    }),
  );
  t.strictSame(await loadDockerCredentials('harbor.example.com', file), { username: 'robot$thinkube', password: 'pa:ss' }, 'auth with $ and : in it');
  t.strictSame(await loadDockerCredentials('harbor2.example.com', file), { username: 'admin', password: 'two' }, 'https:// key');
  t.strictSame(await loadDockerCredentials('harbor3.example.com:8443', file), { username: 'u3', password: 'p3' }, 'https://host:port/v1/ key with username/password');
  t.strictSame(await loadDockerCredentials('harbor4.example.com', file), { username: 'u4', password: 'p4' }, 'http:// key');
  t.strictSame(await loadDockerCredentials('docker.io', file), { username: 'hubuser', password: 'hubpass' }, 'Docker Hub');
  t.strictSame(await loadDockerCredentials('token.example.com', file), { identityToken: 'refresh-abc' }, 'identity token');
  t.equal(await loadDockerCredentials('missing.example.com', file), undefined, 'missing entry');
  t.equal(await loadDockerCredentials('empty.example.com', file), undefined, 'empty entry');
  t.equal(await loadDockerCredentials('harbor3.example.com', file), undefined, 'port matters');
  t.strictSame(await loadDockerCredentials('harbor.example.com', dir), { username: 'robot$thinkube', password: 'pa:ss' }, 'directory like docker --config');

  const saved = process.env.DOCKER_CONFIG;
  process.env.DOCKER_CONFIG = dir;
  t.teardown(() => (saved === undefined ? delete process.env.DOCKER_CONFIG : (process.env.DOCKER_CONFIG = saved)));
  t.strictSame(await loadDockerCredentials('harbor2.example.com'), { username: 'admin', password: 'two' }, 'DOCKER_CONFIG');
  process.env.DOCKER_CONFIG = path.join(tmp, 'no-such-dir');
  t.equal(await loadDockerCredentials('harbor2.example.com'), undefined, 'missing default config -> undefined');

  const missingFile = await rejects(loadDockerCredentials('harbor.example.com', path.join(tmp, 'nope.json')));
  t.equal(missingFile.code, 'ERR_INVALID_OPTIONS');
  t.match(missingFile.message, 'nope.json');

  const broken = path.join(tmp, 'broken.json');
  writeFileSync(broken, '{"auths": {"h": {"auth": "c2VjcmV0LXZhbHVlLXh5eg=="}, oops');
  const brokenError = await rejects(loadDockerCredentials('h', broken));
  t.equal(brokenError.code, 'ERR_INVALID_OPTIONS');
  t.match(brokenError.message, 'broken.json');
  assertNoSecret(t, brokenError, 'c2VjcmV0LXZhbHVlLXh5eg', 'broken config');
});

t.test('loadDockerCredentials: credential helpers', async (t) => {
  const dir = path.join(tmp, 'helpers');
  const bin = path.join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const seen = path.join(dir, 'seen.txt');
  // A docker-credential-* helper speaks JSON on stdout; the server address comes on stdin.
  writeFileSync(
    path.join(bin, 'docker-credential-thinkube-fake'),
    `#!/bin/sh\nread server\nprintf '%s' "$server" >'${seen}'\ncase "$server" in\n  helper.example.com) printf '{"ServerURL":"%s","Username":"robot$thinkube","Secret":"helper-secret"}' "$server" ;;\n  https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"<token>","Secret":"hub-refresh"}' "$server" ;;\n  *) echo "credentials not found in native keychain"; exit 1 ;;\nesac\n`,
  );
  chmodSync(path.join(bin, 'docker-credential-thinkube-fake'), 0o755);
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  t.teardown(() => (process.env.PATH = savedPath));

  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ credsStore: 'thinkube-fake', auths: { 'fallback.example.com': { auth: Buffer.from('f:g').toString('base64') } } }));
  t.strictSame(await loadDockerCredentials('helper.example.com', file), { username: 'robot$thinkube', password: 'helper-secret' });
  t.equal(readFileSync(seen, 'utf8'), 'helper.example.com', 'server address on stdin');
  t.strictSame(await loadDockerCredentials('docker.io', file), { identityToken: 'hub-refresh' }, 'Docker Hub key for helpers');
  t.equal(await loadDockerCredentials('other.example.com', file), undefined, 'helper has no entry');
  t.strictSame(await loadDockerCredentials('fallback.example.com', file), { username: 'f', password: 'g' }, 'falls back to auths');

  const missing = path.join(dir, 'missing-helper.json');
  writeFileSync(missing, JSON.stringify({ credsStore: 'thinkube-not-installed', credHelpers: { 'x.example.com': 'thinkube-not-installed-either' } }));
  t.equal(await loadDockerCredentials('x.example.com', missing), undefined, 'credHelpers binary missing');
  t.equal(await loadDockerCredentials('y.example.com', missing), undefined, 'credsStore binary missing');

  const perRegistry = path.join(dir, 'per-registry.json');
  writeFileSync(perRegistry, JSON.stringify({ credsStore: 'thinkube-not-installed', credHelpers: { 'helper.example.com': 'thinkube-fake' } }));
  t.strictSame(await loadDockerCredentials('helper.example.com', perRegistry), { username: 'robot$thinkube', password: 'helper-secret' }, 'credHelpers wins over credsStore');
});

t.test('registryAuthHeader encodes Docker X-Registry-Auth', async (t) => {
  const decode = (s) => JSON.parse(Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString());
  t.equal(registryAuthHeader(undefined, 'harbor.example.com'), 'e30=', 'anonymous is {}');
  t.strictSame(decode(registryAuthHeader({}, 'h')), {});
  const header = registryAuthHeader({ username: 'robot$thinkube', password: 'p?>>~~~?' }, 'harbor.example.com');
  t.match(header, /^[A-Za-z0-9_-]+=*$/, 'URL-safe alphabet');
  t.strictSame(decode(header), { username: 'robot$thinkube', password: 'p?>>~~~?', serveraddress: 'harbor.example.com' });
  t.strictSame(decode(registryAuthHeader({ identityToken: 'idt' }, 'h')), { identitytoken: 'idt' });
});
