// registerImage target api against a stateful stand-in of thinkube-control that follows the
// contract (schemas/control-api.schema.json) and FastAPI's conventions.
import t from 'tap';
import { closedPort, rejection } from './helpers/assert.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { registerImage, registrationEntry } from '../dist/lib/register/register.js';
import { controlApiRoot, harborSyncUrl, imagesUrl } from '../dist/lib/register/control-client.js';
import { startControlStandin } from './helpers/control-standin.js';

delete process.env.THINKUBE_CONTROL_TOKEN; // the tests say exactly which token is used

const digest = (c) => `sha256:${c.repeat(64)}`;

function options(control, over = {}) {
  return {
    target: 'api',
    controlUrl: control.url,
    token: control.token,
    image: {
      name: 'jupyter-ml-cpu',
      display_name: 'ML Development (CPU)',
      description: 'JupyterLab with standard ML packages',
      category: 'jupyter',
      tags: ['jupyter-compatible'],
      metadata: { gpu_required: false, cpu_limit: 4, mem_limit: '8G', default: true },
    },
    reference: { registry: 'harbor.example.com', repository: 'library/jupyter-ml-cpu', tag: 'latest', digest: digest('a'), sizeBytes: 123456, builtAt: '2025-01-31T12:00:00Z' },
    ...over,
  };
}

async function standin(t, opts) {
  const control = await startControlStandin(opts);
  t.teardown(() => control.close());
  return control;
}

const writes = (control) => control.requests.filter((r) => r.method === 'POST' || r.method === 'PUT');
const successfulPosts = (control) => control.requests.filter((r) => r.method === 'POST' && r.status === 201);


t.test('create, unchanged re-run, update, keyed by name', async (t) => {
  const control = await standin(t);
  const events = [];
  const created = await registerImage(options(control), { onEvent: (e) => events.push(e) });
  t.equal(created.outcome, 'created');
  t.equal(created.changed, true);
  t.equal(created.location, `${control.url}/v1/images/jupyter-ml-cpu`);
  t.same(created.diff.before, null);
  t.equal(control.images.size, 1);
  const stored = control.images.get('jupyter-ml-cpu');
  t.equal(stored.digest, digest('a'));
  t.equal(stored.destination_url, 'harbor.example.com/library/jupyter-ml-cpu:latest');
  t.equal(stored.source, 'built');
  t.equal(stored.size_bytes, 123456);
  t.equal(stored.metadata.purpose, 'jupyter', 'Jupyter images carry purpose jupyter');
  t.equal(stored.metadata.mem_limit, '8G');
  t.same(
    control.requests.map((r) => [r.method, r.path, r.status, r.auth]),
    [
      ['GET', '/api/v1/images/jupyter-ml-cpu', 404, 'valid'],
      ['POST', '/api/v1/images', 201, 'valid'],
    ],
    'reads first, then creates, always with the Bearer token',
  );
  t.same(control.requests[1].body, registrationEntry(options(control)), 'the body is the registered entry');
  t.ok(events.some((e) => e.type === 'registered' && e.outcome === 'created'));

  control.requests.length = 0;
  const again = await registerImage(options(control));
  t.equal(again.outcome, 'unchanged');
  t.equal(again.changed, false);
  t.same(writes(control), [], 'an unchanged re-run writes nothing (the server-set timestamps and nulls are ignored)');
  t.same(again.diff.before, again.diff.after);

  control.requests.length = 0;
  const createdAt = control.images.get('jupyter-ml-cpu').created_at;
  const updated = await registerImage(options(control, { reference: { ...options(control).reference, digest: digest('b') } }));
  t.equal(updated.outcome, 'updated');
  t.equal(updated.changed, true);
  t.same(
    writes(control).map((r) => [r.method, r.path, r.status]),
    [['PUT', '/api/v1/images/jupyter-ml-cpu', 200]],
  );
  t.equal(control.images.size, 1, 'still one image: the upsert is keyed by name');
  t.equal(control.images.get('jupyter-ml-cpu').digest, digest('b'));
  t.equal(control.images.get('jupyter-ml-cpu').created_at, createdAt);
  t.equal(updated.diff.before.digest, digest('a'));
  t.equal(updated.diff.after.digest, digest('b'));
});

t.test('controlUrl as people write it: the base URL, or ending in /api or /api/v1, with or without a trailing slash', async (t) => {
  const forms = {
    'https://control.example.com': 'https://control.example.com/api/v1',
    'https://control.example.com/': 'https://control.example.com/api/v1',
    'https://control.example.com/api': 'https://control.example.com/api/v1',
    'https://control.example.com/api/': 'https://control.example.com/api/v1',
    'https://control.example.com/api/v1': 'https://control.example.com/api/v1',
    'https://control.example.com/api/v1/': 'https://control.example.com/api/v1',
    'http://backend.thinkube-control:8000': 'http://backend.thinkube-control:8000/api/v1',
    'http://backend.thinkube-control.svc.cluster.local:8000/api': 'http://backend.thinkube-control.svc.cluster.local:8000/api/v1',
  };
  for (const [given, root] of Object.entries(forms)) {
    t.equal(controlApiRoot(given), root, given);
    t.equal(imagesUrl(given), `${root}/images`, `${given}: the registration endpoint`);
    t.equal(harborSyncUrl(given), `${root}/harbor/images/sync`, `${given}: the sync endpoint`);
  }
  const control = await standin(t);
  // Each form against the stand-in: every one reaches /api/v1/images.
  for (const [i, controlUrl] of [control.baseUrl, `${control.baseUrl}/`, control.url, `${control.url}/`, `${control.url}/v1`, `${control.url}/v1/`].entries()) {
    control.reset();
    const result = await registerImage(options(control, { controlUrl, reference: { ...options(control).reference, tag: `v${i}` } }));
    t.equal(result.outcome, 'created', `${controlUrl}: registered`);
    t.equal(control.requests.at(-1).path, '/api/v1/images', `${controlUrl}: reached /api/v1/images`);
    t.ok(control.images.has('jupyter-ml-cpu'), `${controlUrl}: stored`);
  }
  const bad = await rejection(registerImage(options(control, { controlUrl: `${control.url}/v1/images` })));
  t.equal(bad.code, 'ERR_INVALID_OPTIONS');
  t.match(bad.message, /controlUrl: .*leave \/images out/);
  const none = await rejection(registerImage(options(control, { controlUrl: undefined })));
  t.match(none.message, /controlUrl: is required/);
});

t.test('dry run reports what would change and writes nothing', async (t) => {
  const control = await standin(t);
  const wouldCreate = await registerImage(options(control, { dryRun: true }));
  t.equal(wouldCreate.outcome, 'created');
  t.equal(wouldCreate.changed, true);
  t.equal(wouldCreate.dryRun, true);
  t.equal(control.images.size, 0);
  t.same(writes(control), []);
  await registerImage(options(control));
  control.requests.length = 0;
  const wouldUpdate = await registerImage(options(control, { dryRun: true, reference: { ...options(control).reference, tag: '1.0' } }));
  t.equal(wouldUpdate.outcome, 'updated');
  t.equal(wouldUpdate.diff.before.tag, 'latest');
  t.equal(wouldUpdate.diff.after.tag, '1.0');
  t.same(writes(control), []);
  t.equal(control.images.get('jupyter-ml-cpu').tag, 'latest');
  control.setEndpoint('absent');
  const absent = await registerImage(options(control, { dryRun: true }));
  t.equal(absent.outcome, 'endpoint-unavailable');
});

t.test('missing endpoint: a warning, or a failure when required', async (t) => {
  for (const mode of ['absent', 'read-only']) {
    const control = await standin(t, { endpoint: mode });
    const status = mode === 'absent' ? 404 : 405;
    const events = [];
    const result = await registerImage(options(control), { onEvent: (e) => events.push(e) });
    t.equal(result.outcome, 'endpoint-unavailable', mode);
    t.equal(result.changed, false);
    t.equal(result.warnings.length, 1);
    t.match(result.warnings[0], `thinkube-control at ${control.url} has no /api/v1/images endpoint yet (HTTP ${status} to POST`);
    t.ok(events.some((e) => e.type === 'warning' && e.message === result.warnings[0]), 'the warning is an event too');
    t.equal(result.diff.after, null);
    t.equal(control.requests.filter((r) => r.method === 'POST').length, 1, 'no retry on 4xx');

    const error = await rejection(registerImage(options(control, { required: true })));
    t.equal(error.code, 'ERR_ENDPOINT_UNAVAILABLE');
    t.match(error.message, `thinkube-control at ${control.url} has no /api/v1/images endpoint yet`);
    t.match(error.hint, /configmap/);
  }
});

t.test('wrong, missing and read-only tokens name the problem, never the token', async (t) => {
  const control = await standin(t, { readOnlyToken: `tk_${'r'.repeat(40)}` });
  const wrong = `tk_${'s3cr3t'.repeat(8)}`;
  const events = [];
  const error = await rejection(registerImage(options(control, { token: wrong }), { onEvent: (e) => events.push(e) }));
  t.equal(error.code, 'ERR_REGISTRATION_AUTH');
  t.match(error.message, /answered 401 .*rejected the API token \(tk_…\) \(Invalid or expired token\)/);
  t.match(error.hint, /expired, revoked or wrong/);
  const secret = wrong.slice(3);
  for (const [what, text] of [
    ['message', error.message],
    ['hint', error.hint],
    ['JSON', JSON.stringify(error)],
    ['stack', error.stack],
    ['inspect', inspect(error, { depth: 20 })],
    ['events', JSON.stringify(events)],
  ]) {
    t.notOk(text.includes(secret.slice(0, 6)), `no part of the token in the ${what}`);
  }
  t.equal(control.requests.filter((r) => r.status === 401).length, 1, 'a 401 is not retried');

  const missing = await rejection(registerImage(options(control, { token: undefined })));
  t.equal(missing.code, 'ERR_REGISTRATION_AUTH');
  t.match(missing.message, /no API token was given/);
  t.equal(control.requests.at(-1).auth, 'missing');

  const readOnly = await rejection(registerImage(options(control, { token: `tk_${'r'.repeat(40)}` })));
  t.equal(readOnly.code, 'ERR_REGISTRATION_AUTH');
  t.match(readOnly.message, /answered 403 to POST/);
  t.match(readOnly.hint, /not allowed to manage images/);
  t.notOk(readOnly.message.includes('rrrr'));
  t.equal(control.images.size, 0);

  // A server that echoes the token in its detail still does not get it printed.
  control.failNext(1, 400, { method: 'GET', detail: `bad token ${wrong}` });
  const echoed = await rejection(registerImage(options(control, { token: wrong })));
  t.notOk(echoed.message.includes(secret), 'echoed token redacted');
});

t.test('503 twice, then success: registered exactly once', async (t) => {
  const control = await standin(t);
  control.failNext(2, 503);
  const events = [];
  const result = await registerImage(options(control), { onEvent: (e) => events.push(e) });
  t.equal(result.outcome, 'created');
  t.equal(control.images.size, 1);
  t.equal(successfulPosts(control).length, 1, 'exactly one successful POST');
  t.equal(control.requests.filter((r) => r.status === 503).length, 2);
  t.equal(events.filter((e) => e.type === 'retry').length, 2);
  // Exponential from retry.initialDelaySeconds (the schema's default, 1 s), plus up to 25% jitter (never shorter than the backoff).
  t.ok(events.filter((e) => e.type === 'retry').every((e, i) => e.delayMs >= 1000 * 2 ** i && e.delayMs <= 1250 * 2 ** i), 'exponential backoff with jitter');
});

t.test('a POST failing with 503 is retried only after a GET shows it was not stored', async (t) => {
  const control = await standin(t);
  control.failNext(2, 503, { method: 'POST', retryAfter: 0 });
  const result = await registerImage(options(control));
  t.equal(result.outcome, 'created');
  t.same(
    control.requests.map((r) => `${r.method} ${r.status}`),
    ['GET 404', 'POST 503', 'GET 404', 'POST 503', 'GET 404', 'POST 201'],
  );
  t.equal(control.images.size, 1);
  t.equal(successfulPosts(control).length, 1);
});

t.test('a POST stored by the server but answered 503 is not posted again', async (t) => {
  const control = await standin(t);
  control.failNext(1, 503, { method: 'POST', apply: true, retryAfter: 0 });
  const result = await registerImage(options(control));
  t.equal(result.outcome, 'created');
  t.equal(result.changed, true);
  t.same(
    control.requests.map((r) => `${r.method} ${r.status}`),
    ['GET 404', 'POST 503', 'GET 200'],
  );
  t.equal(control.requests.filter((r) => r.method === 'POST').length, 1, 'one POST in all: the retry never duplicates');
  t.equal(control.images.size, 1);
});

t.test('409 on create (created meanwhile) becomes an update or unchanged', async (t) => {
  const control = await standin(t);
  await registerImage(options(control));
  // A stale read: the GET misses the image, the POST then meets it.
  control.requests.length = 0;
  control.failNext(1, 404, { method: 'GET', detail: 'Image not found' });
  const same = await registerImage(options(control));
  t.equal(same.outcome, 'unchanged');
  t.same(
    control.requests.map((r) => `${r.method} ${r.status}`),
    ['GET 404', 'POST 409', 'GET 200'],
  );
  control.requests.length = 0;
  control.failNext(1, 404, { method: 'GET', detail: 'Image not found' });
  const changed = await registerImage(options(control, { reference: { ...options(control).reference, digest: digest('c') } }));
  t.equal(changed.outcome, 'updated');
  t.equal(changed.diff.before.digest, digest('a'));
  t.equal(control.images.get('jupyter-ml-cpu').digest, digest('c'));
});

t.test('5xx beyond the retries, and 4xx never retried, carry the server detail', async (t) => {
  const control = await standin(t);
  control.failNext(5, 500, { detail: 'database is down', retryAfter: 0 });
  const error = await rejection(registerImage(options(control, { retry: { limit: 1 } })));
  t.equal(error.code, 'ERR_REGISTRATION');
  t.match(error.message, /answered 500 to GET .* after 2 attempt\(s\): database is down/);
  t.match(error.hint, /logs/);
  t.equal(control.requests.length, 2);

  control.reset();
  control.failNext(1, 422, { method: 'POST', detail: [{ type: 'missing', loc: ['body', 'harbor_project'], msg: 'Field required' }] });
  const invalid = await rejection(registerImage(options(control)));
  t.equal(invalid.code, 'ERR_REGISTRATION');
  t.match(invalid.message, /answered 422 to POST .*: harbor_project: Field required/);
  t.equal(control.requests.filter((r) => r.method === 'POST').length, 1, '4xx not retried');
});

t.test('the stand-in enforces the contract like FastAPI', async (t) => {
  const control = await standin(t);
  const headers = { authorization: `Bearer ${control.token}`, 'content-type': 'application/json' };
  const bad = await fetch(`${control.url}/v1/images`, { method: 'POST', headers, body: JSON.stringify({ name: 'x', digest: 'md5:1' }) });
  t.equal(bad.status, 422);
  const body = await bad.json();
  t.ok(body.detail.some((p) => p.loc.join('.') === 'body.registry' && p.msg === 'Field required'));
  t.ok(body.detail.some((p) => p.loc.join('.') === 'body.digest'));
  const anon = await fetch(`${control.url}/v1/images`);
  t.equal(anon.status, 401);
  t.equal(anon.headers.get('www-authenticate'), 'Bearer, ApiKey realm="api"');
  const entry = registrationEntry(options(control));
  t.equal((await fetch(`${control.url}/v1/images`, { method: 'POST', headers, body: JSON.stringify(entry) })).status, 201);
  const dup = await fetch(`${control.url}/v1/images`, { method: 'POST', headers, body: JSON.stringify(entry) });
  t.equal(dup.status, 409);
  t.match((await dup.json()).detail, /already exists/);
  t.equal((await fetch(`${control.url}/v1/images/nope`, { headers })).status, 404);
});

t.test('connection refused is retried until thinkube-control is up; unreachable fails clearly', async (t) => {
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}/api`;
  const dead = await rejection(registerImage(options({ url, token: 'tk_x' }, { retry: { limit: 0 } })));
  t.equal(dead.code, 'ERR_REGISTRATION');
  t.match(dead.message, `Cannot reach thinkube-control at ${url} (ECONNREFUSED)`);
  t.match(dead.hint, /running/);

  const token = `tk_${'k'.repeat(32)}`;
  const starting = new Promise((resolve) => setTimeout(() => resolve(startControlStandin({ port, token })), 200));
  t.teardown(async () => (await starting).close());
  const events = [];
  const result = await registerImage(options({ url, token }), { onEvent: (e) => events.push(e) });
  const control = await starting;
  t.equal(result.outcome, 'created');
  t.equal(control.images.size, 1);
  t.ok(events.some((e) => e.type === 'retry' && /ECONNREFUSED/.test(e.reason)), 'retried after ECONNREFUSED');
});

t.test('TLS: verified by default, caFile trusts a private CA', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'control-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const control = await standin(t, { tls: { key: readFileSync(key), cert: readFileSync(cert) } });
  t.match(control.url, /^https:/);

  const untrusted = await rejection(registerImage(options(control, { retry: { limit: 0 } })));
  t.equal(untrusted.code, 'ERR_REGISTRATION');
  t.match(untrusted.message, `TLS with thinkube-control at ${control.url} failed (DEPTH_ZERO_SELF_SIGNED_CERT`);
  t.match(untrusted.hint, /caFile/);
  t.equal(control.images.size, 0);

  const trusted = await registerImage(options(control, { caFile: cert }));
  t.equal(trusted.outcome, 'created');
  t.same(trusted.warnings, []);

  const unverified = await registerImage(options(control, { validateCerts: false }));
  t.equal(unverified.outcome, 'unchanged');
  t.match(unverified.warnings[0], /not verified/);

  const missingCa = await rejection(registerImage(options(control, { caFile: path.join(dir, 'nope.pem') })));
  t.equal(missingCa.code, 'ERR_INVALID_OPTIONS');
  t.match(missingCa.message, /nope\.pem/);
});

t.test('abort during the backoff', async (t) => {
  const control = await standin(t);
  control.failNext(10, 503);
  const controller = new AbortController();
  const events = [];
  // A 10-minute backoff: only a wait that ends with the signal lets this test finish.
  const slow = { retry: { initialDelaySeconds: 600, maxDelaySeconds: 600, maxTotalSeconds: 3600 } };
  const error = await rejection(registerImage(options(control, slow), {
    signal: controller.signal,
    onEvent: (e) => {
      events.push(e);
      // Abort once the wait has begun (the retry event comes just before it).
      if (e.type === 'retry') setImmediate(() => controller.abort());
    },
  }));
  t.equal(error.code, 'ERR_ABORTED');
  t.match(error.message, /was cancelled for GET /, 'the cancelled request is named (the 10-minute wait ended with the signal, or this test would not finish)');
  t.same(events.filter((e) => e.type === 'retry').map((e) => [e.attempt, e.delayMs >= 600_000]), [[1, true]], 'one retry announced, with the 10-minute wait');
  t.equal(control.requests.length, 1, 'nothing was sent after the abort');
});

t.test('only a verified digest is registered; the reference must be the image', async (t) => {
  const control = await standin(t);
  const { digest: _d, ...noDigest } = options(control).reference;
  const error = await rejection(registerImage(options(control, { reference: noDigest })));
  t.equal(error.code, 'ERR_INVALID_OPTIONS');
  t.match(error.message, /reference: needs digest/);
  const other = await rejection(registerImage(options(control, { reference: { ...options(control).reference, repository: 'library/other' } })));
  t.equal(other.code, 'ERR_INVALID_OPTIONS');
  t.match(other.message, /reference\.repository: ends in other but image\.name is jupyter-ml-cpu/);
  t.equal(control.requests.length, 0, 'nothing sent');
});
