// The HTTP layer (lib/http) against real servers started here on 127.0.0.1 (node:http, node:https
// with a certificate made by openssl now): one classification for the registry, Harbor and
// thinkube-control clients (refused, TLS to a plain server, self-signed with and without caFile,
// 401, Harbor's full quota), retries reported with attempt numbers, the total time budget,
// cancellation, plain HTTP only to loopback, no cookies, no secret in any error; and the transport
// on node:http (lib/http/transport.ts): redirects (Authorization kept to the same origin only),
// decompression on and off, the time limit covering the body, registry Link pagination.
import t from 'tap';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import zlib from 'node:zlib';
import { HttpClient, resolveRetry, retryAfterMs } from '../dist/lib/http/client.js';
import { isLoopbackHost, tlsFailure } from '../dist/lib/http/tls.js';
import { RegistryClient, MEDIA_TYPES } from '../dist/lib/registry/client.js';
import { HarborClient } from '../dist/lib/harbor/client.js';
import { ControlClient } from '../dist/lib/register/control-client.js';
import { schemaDocuments } from '../dist/lib/options/schema.js';
import { closedPort, rejection } from './helpers/assert.js';

const PASSWORD = 'pw-http-layer-s3cret';
const TOKEN = `tk_${'t'.repeat(24)}-http-layer`;
const FAST = { initialDelaySeconds: 0.05, maxDelaySeconds: 1 };
const QUOTA = 'Quota exceeded when processing the request of adding 25.5 MiB of storage resource, which when updated to current usage of 9.8 GiB will exceed the configured upper limit of 10.0 GiB.';

const dir = mkdtempSync(path.join(os.tmpdir(), 'http-layer-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const certFile = path.join(dir, 'cert.pem');
const keyFile = path.join(dir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const TLS = { key: readFileSync(keyFile), cert: readFileSync(certFile) };

/** A server on 127.0.0.1; `requests` lists what it saw. */
async function serve(t, handler, { tls } = {}) {
  const requests = [];
  const wrapped = (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      handler(req, res, requests.length);
    });
  };
  const server = tls ? https.createServer(tls, wrapped) : http.createServer(wrapped);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  t.teardown(() => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  }));
  return { port, host: `127.0.0.1:${port}`, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, requests };
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** No secret (or its Basic encoding) anywhere an error can be shown. */
function assertNoSecret(t, error, label) {
  const text = [error.message, error.hint, JSON.stringify(error), JSON.stringify(error.details), error.stack, error.cause?.message, error.cause?.stack].join('\n');
  for (const secret of [PASSWORD, TOKEN, Buffer.from(`admin:${PASSWORD}`).toString('base64'), Buffer.from(`u:${PASSWORD}`).toString('base64')]) {
    t.notOk(text.includes(secret), `${label}: no secret in the error`);
  }
}

// One way to drive each client: a read (retried), a write, and the codes its failures get.
const CLIENTS = {
  registry: {
    codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH' },
    // Loopback registries are plain HTTP (like Docker): TLS is reached through the token realm, as with Harbor.
    make: (server, extra = {}) => new RegistryClient({ registry: server.host, credentials: { username: 'u', password: PASSWORD }, retry: FAST, ...extra }),
    read: (client) => client.ping(),
    write: (client) => client.putManifest('library/x', 'v1', Buffer.from('{"schemaVersion":2}'), MEDIA_TYPES.ociManifest),
    // What the server answers to the read when it works.
    ok: (res) => json(res, 200, {}),
    // A registry whose token service is at realmUrl (the TLS cases): it takes the token that service gives.
    realm: (realmUrl) => (req, res) =>
      req.headers.authorization === 'Bearer registry-token'
        ? json(res, 200, {})
        : json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, { 'www-authenticate': `Bearer realm="${realmUrl}/token",service="registry"` }),
  },
  harbor: {
    codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH' },
    make: (server, extra = {}) => new HarborClient({ url: server.url, basePath: '', username: 'admin', password: PASSWORD, retry: FAST, ...extra }),
    read: (client, controls) => client.health(controls),
    write: (client) => client.createProject('big'),
    ok: (res) => json(res, 200, { status: 'healthy', components: [] }),
  },
  control: {
    codes: { unreachable: 'ERR_REGISTRATION', auth: 'ERR_REGISTRATION_AUTH' },
    make: (server, extra = {}) => new ControlClient({ controlUrl: `${server.url}/api`, token: TOKEN, retry: FAST, ...extra }),
    read: (client) => client.getImage('x'),
    write: (client) => client.upsertImage({ name: 'x', registry: 'r.example.com', repository: 'library/x', tag: '1', digest: `sha256:${'a'.repeat(64)}` }),
    ok: (res) => json(res, 404, { detail: 'Image not found' }),
  },
};

t.test('the layer: loopback test, TLS error kinds, retry option resolved from the schema', async (t) => {
  for (const h of ['localhost', 'LOCALHOST:5000', '127.0.0.1', '127.8.9.10:80', '[::1]', '[::1]:5000', '::1']) t.equal(isLoopbackHost(h), true, h);
  for (const h of ['harbor.example.com', '128.0.0.1', '127.0.0.256', 'localhost.example.com', '[::2]:5000', '10.0.0.1:5000']) t.equal(isLoopbackHost(h), false, h);
  t.equal(tlsFailure('DEPTH_ZERO_SELF_SIGNED_CERT'), 'certificate');
  t.equal(tlsFailure('ERR_TLS_CERT_ALTNAME_INVALID'), 'certificate');
  t.equal(tlsFailure('EPROTO'), 'protocol');
  t.equal(tlsFailure('ECONNREFUSED'), undefined);

  // The defaults live in schemas/common.schema.json only.
  const props = schemaDocuments['common.schema.json'].definitions.retry.properties;
  const defaults = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.default]));
  t.strictSame(resolveRetry(undefined), defaults);
  t.strictSame(resolveRetry({ limit: 0 }), { ...defaults, limit: 0 });
  t.throws(() => resolveRetry({ limit: 1.5 }), { code: 'ERR_INVALID_OPTIONS', message: /retry\.limit/ });
  t.throws(() => resolveRetry({ retries: 3 }), { code: 'ERR_INVALID_OPTIONS', message: /retry\.retries: is not a known option/ });
});

t.test('classification: the same failure gets the same kind of code from all three clients', async (t) => {
  const refusedPort = await closedPort();
  const plain = await serve(t, (req, res) => json(res, 200, {}));
  // Over TLS: a token for the registry's realm, a healthy Harbor, an unknown image for thinkube-control.
  const selfSigned = await serve(t, (req, res) => (req.url.includes('/v1/images/') ? json(res, 404, { detail: 'Image not found' }) : json(res, 200, { token: 'registry-token', status: 'healthy', components: [] })), { tls: TLS });

  for (const [name, c] of Object.entries(CLIENTS)) {
    await t.test(name, async (t) => {
      // Connection refused.
      const refused = await rejection(c.read(c.make({ host: `127.0.0.1:${refusedPort}`, url: `http://127.0.0.1:${refusedPort}` }, { retry: { limit: 0 } })));
      t.equal(refused.code, c.codes.unreachable, 'refused');
      t.match(refused.message, `127.0.0.1:${refusedPort}`, 'names the host');
      t.match(refused.message, /ECONNREFUSED/);
      t.ok(refused.hint, 'says what to do');
      assertNoSecret(t, refused, 'refused');

      // TLS to a server that speaks plain HTTP, then to a self-signed one without and with caFile.
      let untrustedClient;
      let trustedClient;
      let toPlain;
      if (c.realm) {
        const viaPlain = await serve(t, c.realm(`https://127.0.0.1:${plain.port}`));
        const viaSelfSigned = await serve(t, c.realm(selfSigned.url));
        toPlain = c.make(viaPlain, { retry: { limit: 0 } });
        untrustedClient = c.make(viaSelfSigned, { retry: { limit: 0 } });
        trustedClient = c.make(viaSelfSigned, { caFile: certFile });
      } else {
        toPlain = c.make({ host: plain.host, url: `https://127.0.0.1:${plain.port}` }, { retry: { limit: 0 } });
        untrustedClient = c.make(selfSigned, { retry: { limit: 0 } });
        trustedClient = c.make(selfSigned, { caFile: certFile });
      }
      const notTls = await rejection(c.read(toPlain));
      t.equal(notTls.code, c.codes.unreachable, 'TLS to a plain server');
      t.match(notTls.message, /does not speak TLS/);
      t.match(notTls.hint, /scheme|plain HTTP/);
      const untrusted = await rejection(c.read(untrustedClient));
      t.equal(untrusted.code, c.codes.unreachable, 'self-signed certificate');
      t.match(untrusted.message, /DEPTH_ZERO_SELF_SIGNED_CERT.*not trusted/);
      t.match(untrusted.hint, /caFile/);
      assertNoSecret(t, untrusted, 'untrusted');
      if (c.realm) t.strictSame(await c.read(trustedClient), { authRequired: true, authenticated: true }, 'caFile: the token service is trusted');
      else await t.resolves(c.read(trustedClient), 'caFile adds the CA');

      // 401.
      const denied = await serve(t, (req, res) => json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }], detail: 'Invalid token' }, { 'www-authenticate': 'Basic realm="x"' }));
      const unauthorized = await rejection(c.read(c.make(denied)));
      t.equal(unauthorized.code, c.codes.auth, '401');
      t.match(unauthorized.message, denied.host);
      t.equal(unauthorized.details.status, 401);
      assertNoSecret(t, unauthorized, '401');

      // Harbor's full quota: HTTP 403, DENIED, "Quota exceeded ...".
      const full = await serve(t, (req, res) => {
        if (req.method === 'GET' && req.url.includes('/v1/images/')) return json(res, 404, { detail: 'Image not found' });
        if (req.method === 'GET' && req.url === '/v2/') return json(res, 200, {});
        return json(res, 403, { errors: [{ code: 'DENIED', message: QUOTA }] });
      });
      const quota = await rejection(c.write(c.make(full)));
      t.equal(quota.code, 'ERR_QUOTA_EXCEEDED', '403 quota: one code');
      t.match(quota.message, 'Quota exceeded');
      t.match(quota.message, full.host, 'names the host');
      t.match(quota.hint, /quota/);
      t.equal(quota.details.status, 403);
      t.equal(quota.details.quotaExceeded, true);
      assertNoSecret(t, quota, 'quota');
    });
  }
});

t.test('503 twice, then an answer: retried, each retry reported before its wait with its attempt number', async (t) => {
  for (const [name, c] of Object.entries(CLIENTS)) {
    await t.test(name, async (t) => {
      // The first 503 asks to retry at once (Retry-After: 0), the second leaves the wait to the backoff.
      const server = await serve(t, (req, res, n) => (n <= 2 ? json(res, 503, { detail: 'busy' }, n === 1 ? { 'retry-after': '0' } : {}) : c.ok(res)));
      const events = [];
      const started = [];
      const onRetry = (e) => {
        events.push(e);
        started.push(server.requests.length);
      };
      const onEvent = (e) => e.type === 'retry' && onRetry(e);
      const client = name === 'control' ? c.make(server, { onEvent }) : name === 'registry' ? c.make(server, { onRetry }) : c.make(server);
      await c.read(client, { onRetry });
      t.equal(server.requests.length, 3, 'three requests');
      t.same(events.map((e) => [e.type, e.attempt, e.reason]), [['retry', 1, 'HTTP 503'], ['retry', 2, 'HTTP 503']]);
      t.same(started, [1, 2], 'each retry is reported before it is sent');
      t.equal(events[0].delayMs, 0, 'Retry-After: 0 honoured');
      t.ok(events[1].delayMs >= 100 && events[1].delayMs <= 125, `the backoff doubled from 0.05 s, jittered (${events[1].delayMs} ms)`);
      t.ok(events.every((e) => e.operation.includes(server.host)), 'naming the request');
    });
  }
});

t.test('the total time budget: no retry starts past maxTotalSeconds, and the error says so', async (t) => {
  const server = await serve(t, (req, res) => json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'down' }] }));
  const events = [];
  const client = new HttpClient({
    service: { name: `test service ${server.host}`, codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH', failed: 'ERR_REGISTRY' } },
    timeoutSeconds: 5,
    validateCerts: true,
    retry: { limit: 20, initialDelaySeconds: 0.2, maxDelaySeconds: 0.2, maxTotalSeconds: 1 },
    onRetry: (e) => events.push(e),
  });
  const res = await client.request({ method: 'GET', url: `${server.url}/x` });
  t.equal(res.status, 503, 'the last answer comes back');
  t.ok(events.length >= 2 && events.length <= 5, `a few retries, not 20 (${events.length})`);
  t.equal(res.retries, events.length);
  t.equal(server.requests.length, events.length + 1);
  t.match(res.gaveUp, /1 s retry time budget is spent/);
  const error = client.error(res);
  t.equal(error.code, 'ERR_REGISTRY', '5xx: the service failure code');
  t.match(error.message, /HTTP 503.*UNAVAILABLE: down.*after \d+ attempts \(gave up after \d+ retries: the 1 s retry time budget is spent\)/);
  t.match(error.hint, /health and logs/);
});

t.test('abort: cancelling stops the wait between retries at once, in all three clients', async (t) => {
  for (const [name, c] of Object.entries(CLIENTS)) {
    await t.test(name, async (t) => {
      const server = await serve(t, (req, res) => json(res, 503, { detail: 'busy' }));
      const controller = new AbortController();
      // A 10-minute backoff: only a wait that ends with the signal lets this test finish.
      const slow = { retry: { limit: 5, initialDelaySeconds: 600, maxDelaySeconds: 600, maxTotalSeconds: 3600 }, signal: controller.signal };
      const client = name === 'harbor' ? c.make(server, { retry: slow.retry }) : c.make(server, slow);
      setTimeout(() => controller.abort(), 200);
      const error = await rejection(c.read(client, { signal: controller.signal }));
      t.equal(error.code, 'ERR_ABORTED');
      t.equal(server.requests.length, 1, 'no retry after the abort');
      t.ok(error.hint);
    });
  }
});

t.test('a 429 is retried whatever the method (its Retry-After honoured); a POST answered 503 is not', async (t) => {
  const server = await serve(t, (req, res, n) => (n === 1 ? json(res, 429, {}, { 'retry-after': '1' }) : json(res, 503, {})));
  const events = [];
  const client = new HttpClient({
    service: { name: 'test service', codes: { unreachable: 'ERR_HARBOR', auth: 'ERR_HARBOR', failed: 'ERR_HARBOR' } },
    timeoutSeconds: 5,
    validateCerts: true,
    retry: FAST,
    onRetry: (e) => events.push(e),
  });
  const res = await client.request({ method: 'POST', url: `${server.url}/things`, json: { a: 1 } });
  t.equal(res.status, 503);
  t.equal(server.requests.length, 2, 'the 429 was retried, the 503 was not');
  t.match(events, [{ attempt: 1, delayMs: 1000, reason: 'HTTP 429' }]);
  t.equal(server.requests[1].body, '{"a":1}', 'the body is sent again');
});

t.test('Retry-After as an HTTP date is honoured', async (t) => {
  const server = await serve(t, (req, res, n) => (n === 1 ? json(res, 503, {}, { 'retry-after': new Date(Date.now() + 3000).toUTCString() }) : json(res, 200, {})));
  const events = [];
  const client = new HttpClient({ service: { name: 'test service', codes: { unreachable: 'ERR_HARBOR', auth: 'ERR_HARBOR', failed: 'ERR_HARBOR' } }, timeoutSeconds: 5, validateCerts: true, retry: { maxDelaySeconds: 5 } });
  const res = await client.request({ method: 'GET', url: `${server.url}/x`, onRetry: (e) => events.push(e) });
  t.equal(res.status, 200);
  t.equal(events.length, 1);
  // The date has a one-second resolution: the wait is 2 to 3 s, not the backoff (1 to 1.25 s).
  t.ok(events[0].delayMs > 1500 && events[0].delayMs <= 3100, `waited until the date (${events[0].delayMs} ms)`);
});

t.test('plain HTTP only to loopback: a redirect to another host over http is refused; no cookies are kept', async (t) => {
  const offLoopback = new HttpClient({ service: { name: 'test service', codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH', failed: 'ERR_REGISTRY' } }, timeoutSeconds: 5, validateCerts: true });
  const refused = await rejection(offLoopback.request({ method: 'GET', url: 'http://registry.example.com/v2/' }));
  t.equal(refused.code, 'ERR_REGISTRY');
  t.match(refused.message, /Refusing plain HTTP to registry\.example\.com/);
  t.match(refused.hint, /https:\/\/|plainHttp/);

  // The registry follows redirects (blob storage): never to plain HTTP off loopback, where credentials would travel in clear.
  const redirecting = await serve(t, (req, res) => {
    res.writeHead(307, { location: 'http://storage.example.com/blob' });
    res.end();
  });
  const error = await rejection(new RegistryClient({ registry: redirecting.host, credentials: { username: 'u', password: PASSWORD } }).ping());
  t.equal(error.code, 'ERR_REGISTRY');
  t.match(error.message, /Refusing plain HTTP to storage\.example\.com/);
  assertNoSecret(t, error, 'redirect');

  const cookies = await serve(t, (req, res) => json(res, 200, { status: 'healthy', components: [] }, { 'set-cookie': 'sid=abc; Path=/' }));
  const harbor = CLIENTS.harbor.make(cookies);
  await harbor.health();
  await harbor.health();
  t.equal(cookies.requests.length, 2);
  t.notOk(cookies.requests[1].headers.cookie, 'no cookie sent back');
});

/** A bare client of the layer (the registry's codes), for the transport's behaviour. */
function bare(extra = {}) {
  return new HttpClient({ service: { name: 'test service', codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH', failed: 'ERR_REGISTRY' } }, timeoutSeconds: 5, validateCerts: true, retry: FAST, ...extra });
}

t.test('redirects: followed only when asked; Authorization and Cookie go to the same origin only; a 303 becomes a GET', async (t) => {
  // Another origin: localhost (not 127.0.0.1) on another port, like a storage service for blobs.
  const storage = await serve(t, (req, res) => json(res, 200, { from: 'storage' }));
  const registry = await serve(t, (req, res) => {
    if (req.url === '/same') return res.writeHead(307, { location: '/final' }).end();
    if (req.url === '/other') return res.writeHead(307, { location: `http://localhost:${storage.port}/blob?sig=x` }).end();
    if (req.url === '/other-port') return res.writeHead(302, { location: `http://127.0.0.1:${storage.port}/blob` }).end();
    if (req.url === '/see-other') return res.writeHead(303, { location: '/final' }).end();
    if (req.url === '/loop') return res.writeHead(302, { location: '/loop' }).end();
    return json(res, 200, { from: 'registry', url: req.url });
  });
  const auth = { authorization: `Bearer ${TOKEN}`, cookie: 'sid=abc' };

  const notFollowed = await bare().request({ method: 'GET', url: `${registry.url}/same`, headers: auth });
  t.equal(notFollowed.status, 307, 'by default the redirect is the answer');
  t.equal(notFollowed.header('location'), '/final');

  const client = bare({ followRedirect: true });
  const same = await client.request({ method: 'GET', url: `${registry.url}/same`, headers: auth });
  t.strictSame(same.json(), { from: 'registry', url: '/final' });
  t.equal(registry.requests.at(-1).headers.authorization, `Bearer ${TOKEN}`, 'same origin: Authorization kept');

  const other = await client.request({ method: 'GET', url: `${registry.url}/other`, headers: auth });
  t.strictSame(other.json(), { from: 'storage' }, 'followed to the other host');
  const atStorage = storage.requests.at(-1);
  t.equal(atStorage.url, '/blob?sig=x', 'the query (a presigned URL) is kept');
  t.equal(atStorage.headers.authorization, undefined, 'another host: no Authorization');
  t.equal(atStorage.headers.cookie, undefined, 'another host: no Cookie');
  t.equal(atStorage.headers.host, `localhost:${storage.port}`, 'the Host of the new origin');

  await client.request({ method: 'GET', url: `${registry.url}/other-port`, headers: auth });
  t.equal(storage.requests.at(-1).headers.authorization, undefined, 'same host, another port: no Authorization');

  const seeOther = await client.request({ method: 'POST', url: `${registry.url}/see-other`, json: { a: 1 } });
  t.equal(seeOther.status, 200);
  t.match(registry.requests.at(-1), { method: 'GET', url: '/final', body: '' }, '303: a GET without the body');
  t.equal(registry.requests.at(-1).headers['content-type'], undefined, 'and without its content type');

  const loop = await rejection(client.request({ method: 'GET', url: `${registry.url}/loop`, headers: auth }));
  t.equal(loop.code, 'ERR_REGISTRY_UNREACHABLE', 'a redirect loop is a failure');
  t.match(loop.message, /ERR_TOO_MANY_REDIRECTS/);
  t.equal(registry.requests.filter((r) => r.url === '/loop').length, 11, 'the request and 10 redirects');
  assertNoSecret(t, loop, 'redirect loop');
});

t.test('decompress: gzip, deflate (zlib and raw), br and zstd decoded by default (accept-encoding sent); off: the raw bytes, nothing asked', async (t) => {
  const document = JSON.stringify({ hello: 'world'.repeat(100) });
  // path: [content-encoding, encoder]
  const encoders = {
    gzip: ['gzip', zlib.gzipSync],
    deflate: ['deflate', zlib.deflateSync],
    'deflate-raw': ['deflate', zlib.deflateRawSync],
    br: ['br', zlib.brotliCompressSync],
    zstd: ['zstd', zlib.zstdCompressSync],
  };
  const server = await serve(t, (req, res) => {
    const name = req.url.slice(1);
    if (name === 'head') return res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': '40' }).end();
    const [encoding, encode] = encoders[name];
    const body = encode(document);
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': encoding, 'content-length': String(body.length) });
    res.end(body);
  });
  for (const name of Object.keys(encoders)) {
    const decoded = await bare().request({ method: 'GET', url: `${server.url}/${name}` });
    t.equal(decoded.text(), document, `${name}: decoded`);
    t.equal(decoded.header('content-encoding'), undefined, `${name}: the headers describe the decoded body`);
    t.equal(server.requests.at(-1).headers['accept-encoding'], 'gzip, deflate, br, zstd', 'asked for what it can decode');
  }
  const raw = await bare({ decompress: false }).request({ method: 'GET', url: `${server.url}/gzip` });
  t.ok(raw.body.equals(zlib.gzipSync(document)), 'decompress off: the bytes as sent (what a digest covers)');
  t.equal(raw.header('content-encoding'), 'gzip');
  t.equal(server.requests.at(-1).headers['accept-encoding'], undefined, 'decompress off: no accept-encoding');
  const head = await bare().request({ method: 'HEAD', url: `${server.url}/head` });
  t.equal(head.status, 200, 'a HEAD answer has no body to decode');
  t.equal(head.body.length, 0);
});

t.test('the time limit covers the body: an answer that stalls mid-body is ERR_TIMEOUT, retried for a GET, no secret in it', async (t) => {
  const server = await serve(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"partial":'); // and nothing more
  });
  const events = [];
  const client = bare({ timeoutSeconds: 0.3, retry: { ...FAST, limit: 1 }, onRetry: (e) => events.push(e) });
  const error = await rejection(client.request({ method: 'GET', url: `${server.url}/slow`, headers: { Authorization: `Bearer ${TOKEN}` } }));
  t.equal(error.code, 'ERR_TIMEOUT');
  t.match(error.message, /did not answer GET http:\/\/127\.0\.0\.1:\d+\/slow within 0\.3 s, after 2 attempts/);
  t.match(events, [{ attempt: 1, reason: 'ETIMEDOUT' }], 'the timeout was retried once');
  t.equal(server.requests.length, 2);
  t.notOk(JSON.stringify(Object.getOwnPropertyNames(error.cause)).includes('options'), 'the cause is bare');
  assertNoSecret(t, error, 'timeout');
  // Not retried for a POST (it may have been processed).
  const post = await rejection(bare({ timeoutSeconds: 0.3 }).request({ method: 'POST', url: `${server.url}/slow`, json: {} }));
  t.equal(post.code, 'ERR_TIMEOUT');
  t.equal(server.requests.length, 3, 'the POST went once');
});

t.test('Retry-After: seconds, an HTTP date (one already past: at once), nothing readable', async (t) => {
  t.equal(retryAfterMs('3'), 3000);
  t.equal(retryAfterMs('0'), 0);
  t.equal(retryAfterMs(undefined), undefined);
  t.equal(retryAfterMs('soon'), undefined, 'unreadable: the backoff decides');
  const inTen = retryAfterMs(new Date(Date.now() + 10_000).toUTCString());
  t.ok(inTen > 8000 && inTen <= 10_000, `a date 10 s ahead (${inTen} ms)`);
  t.equal(retryAfterMs(new Date(Date.now() - 60_000).toUTCString()), 1, 'a date past');
});

t.test('registry tag list: pages followed through Link rel="next" on the same registry only; a malformed Link is a clear error', async (t) => {
  let elsewhere = 0;
  const other = await serve(t, (req, res) => {
    elsewhere++;
    json(res, 200, { tags: ['stolen'] });
  });
  const server = await serve(t, (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/v2/') return json(res, 200, {});
    const repo = url.pathname.split('/')[3];
    if (repo === 'paged' && !url.searchParams.get('last')) return json(res, 200, { tags: ['a', 'b'] }, { link: '</v2/library/paged/tags/list?n=2&last=b>; rel="next"' });
    if (repo === 'paged' && url.searchParams.get('last') === 'b') return json(res, 200, { tags: ['c'] }, { link: `<http://127.0.0.1:${other.port}/v2/library/paged/tags/list?last=c>; rel="next"` });
    if (repo === 'broken') return json(res, 200, { tags: ['a'] }, { link: 'not a link' });
    return json(res, 404, {});
  });
  const client = new RegistryClient({ registry: server.host, retry: FAST });
  t.strictSame(await client.listTags('library/paged'), ['a', 'b', 'c'], 'two pages');
  t.equal(elsewhere, 0, 'a next page on another origin is not followed');
  const error = await rejection(client.listTags('library/broken'));
  t.equal(error.code, 'ERR_REGISTRY');
  t.match(error.message, /malformed Link header/);
});
