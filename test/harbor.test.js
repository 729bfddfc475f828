// HarborClient and the scan gate against the stateful Harbor stand-in (test/helpers/harbor-standin.js).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { HarborClient, encodeRepositoryName, ACCEPT_VULNERABILITIES } from '../dist/lib/harbor/client.js';
import {
  scanGate,
  scanGateError,
  parseQuotaExceeded,
  describeQuota,
  quotaExceededError,
  formatBytes,
} from '../dist/lib/harbor/scan-gate.js';
import { startHarborStandin, fakeDigest, GiB, MiB } from './helpers/harbor-standin.js';
import { virtualClock } from './helpers/virtual-clock.js';

const ADMIN = { username: 'admin', password: 'Harbor12345' };
const ROBOT = { username: 'robot$thinkube', password: 'robot-secret' };

async function standin(t, options) {
  const s = await startHarborStandin(options);
  t.teardown(() => s.close());
  return s;
}

function basic(user, password) {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

/** Every place a secret could leak from an error. */
function errorText(error) {
  return [error.message, error.hint, JSON.stringify(error), inspect(error, { depth: 8 }), String(error.cause?.message ?? '')].join('\n');
}

t.test('options: validation, url/host, base path', async (t) => {
  t.throws(() => new HarborClient({}), { code: 'ERR_INVALID_OPTIONS', message: /url: or host is required/ });
  t.throws(() => new HarborClient({ url: 'ftp://harbor.example.com' }), { code: 'ERR_INVALID_OPTIONS', message: /url: must be an http\(s\) URL/ });
  t.throws(() => new HarborClient({ host: 'harbor.example.com', username: 'admin' }), { code: 'ERR_INVALID_OPTIONS', message: /username: needs password as well/ });
  t.throws(() => new HarborClient({ host: 'https://harbor.example.com' }), { code: 'ERR_INVALID_OPTIONS', message: /host: must be a host name/ });
  t.equal(new HarborClient({ host: 'harbor.example.com' }).baseUrl, 'https://harbor.example.com/api/v2.0');
  t.equal(new HarborClient({ host: 'harbor.example.com:8443' }).baseUrl, 'https://harbor.example.com:8443/api/v2.0');
  t.equal(new HarborClient({ host: '127.0.0.1:5000' }).baseUrl, 'http://127.0.0.1:5000/api/v2.0', 'loopback is plain HTTP, like Docker treats it');
  t.equal(new HarborClient({ url: 'http://127.0.0.1:4010/', basePath: '' }).baseUrl, 'http://127.0.0.1:4010');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'harbor-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.throws(() => new HarborClient({ host: 'h.example.com', caFile: path.join(dir, 'missing.pem') }), { code: 'ERR_INVALID_OPTIONS', message: /missing\.pem/ });
  const client = new HarborClient({ host: 'harbor.example.com', ...ROBOT });
  t.notMatch(inspect(client, { depth: 8 }) + JSON.stringify(client), /robot-secret/, 'the client never shows the secret');
  t.equal(client.options.password, undefined);
});

t.test('health names the unhealthy component; ping answers', async (t) => {
  const s = await standin(t, { health: { redis: 'dial tcp 10.0.0.5:6379: connect: connection refused' } });
  const client = new HarborClient({ url: s.url, ...ADMIN });
  const health = await client.health();
  t.equal(health.status, 'unhealthy');
  t.equal(health.healthy, false);
  t.same(health.unhealthy, ['redis']);
  t.match(health.components.find((c) => c.name === 'redis'), { status: 'unhealthy', error: /connection refused/ });
  t.equal(health.components.length, 8);
  t.equal(s.requests.at(-1).headers.authorization, undefined, 'health needs no credentials and gets none');

  s.state.health.redis = null;
  const healthy = await client.health();
  t.equal(healthy.status, 'healthy');
  t.same(healthy.unhealthy, []);
  t.equal(await client.ping(), 'Pong');

  const notHarbor = await new HarborClient({ url: s.url, basePath: '/v2' }).health().then(() => undefined, (e) => e);
  t.match(notHarbor, { code: 'ERR_HARBOR', message: `No Harbor API at ${s.url}/v2 (GET /v2/health: HTTP 404`, details: { status: 404, notHarbor: true } });
});

t.test('current user: a user, a robot$ account, a robot Harbor answers 412 for', async (t) => {
  const s = await standin(t, { users: { admin: 'Harbor12345', 'robot$thinkube': 'robot-secret', 'svc+bot': 'x' }, robots: ['robot$thinkube', 'svc+bot'] });
  const admin = await new HarborClient({ url: s.url, ...ADMIN }).currentUser();
  t.match(admin, { username: 'admin', robot: false, sysadmin: true, source: 'users/current' });

  const before = s.requests.length;
  const robot = await new HarborClient({ url: s.url, ...ROBOT }).currentUser();
  t.match(robot, { username: 'robot$thinkube', robot: true, source: 'users/current/permissions' });
  t.ok(robot.permissions.some((p) => p.resource === 'repository' && p.action === 'push'));
  const sent = s.requests.slice(before);
  t.same(sent.map((r) => r.rawPath), ['/api/v2.0/users/current/permissions'], 'a robot$ name skips /users/current');
  t.equal(sent[0].headers.authorization, basic('robot$thinkube', 'robot-secret'), 'the $ survives into the Authorization header exactly');
  t.equal(sent[0].user, 'robot$thinkube');

  const other = await new HarborClient({ url: s.url, username: 'svc+bot', password: 'x' }).currentUser();
  t.match(other, { username: 'svc+bot', robot: true }, '412 on /users/current means a robot');

  await t.rejects(new HarborClient({ url: s.url }).currentUser(), { code: 'ERR_REGISTRY_AUTH', message: /No credentials/ });
});

t.test('wrong password: ERR_REGISTRY_AUTH naming the user, never the password', async (t) => {
  const s = await standin(t);
  for (const username of ['admin', 'robot$thinkube']) {
    const password = 'S3cret-pa$$word-42';
    const client = new HarborClient({ url: s.url, username, password });
    const error = await client.currentUser().then(
      () => undefined,
      (e) => e,
    );
    t.ok(error, `${username}: rejected`);
    t.equal(error.code, 'ERR_REGISTRY_AUTH');
    t.match(error.message, `user "${username}"`);
    t.match(error.message, s.host);
    t.match(error.message, /HTTP 401, UNAUTHORIZED: unauthorized/);
    const text = errorText(error);
    t.notMatch(text, password, 'no password');
    t.notMatch(text, Buffer.from(`${username}:${password}`).toString('base64'), 'no Basic credentials');
    t.equal(s.requests.at(-1).user, username);
  }
});

t.test('no cookies are kept between calls, so Harbor\'s CSRF check never applies', async (t) => {
  const s = await standin(t);
  const client = new HarborClient({ url: s.url, ...ADMIN });
  await client.currentUser();
  await client.projectExists('library');
  const created = await client.createProject('nocookie');
  t.equal(created.changed, true, 'a POST after answers that set cookies passes the CSRF rule');
  t.ok(s.requests.length >= 3);
  t.ok(s.requests.every((r) => r.headers.cookie === undefined), 'no request carried a cookie');
  t.ok(s.requests.every((r) => typeof r.headers['x-request-id'] === 'string' && r.headers['x-request-id'].length > 0), 'X-Request-Id on every request');
  // The stand-in's CSRF rule is real: a request that sends the cookie back is refused.
  const res = await fetch(`${s.url}/api/v2.0/projects`, {
    method: 'POST',
    headers: { authorization: basic('admin', 'Harbor12345'), cookie: 'sid=abc', 'content-type': 'application/json' },
    body: JSON.stringify({ project_name: 'withcookie' }),
  });
  t.equal(res.status, 403);
});

t.test('projects: missing project created, 409 is not an error, quota described', async (t) => {
  const s = await standin(t, { projects: { library: { public: true, quota: { hard: 10 * GiB, used: Math.round(9.8 * GiB) } } } });
  const client = new HarborClient({ url: s.url, ...ADMIN });
  t.equal(await client.projectExists('library'), true);
  t.equal(await client.projectExists('thinkube'), false);
  const head = s.requests.at(-1);
  t.equal(head.method, 'HEAD');
  t.equal(head.rawUrl, '/api/v2.0/projects?project_name=thinkube');

  t.same(await client.createProject('thinkube', { public: false }), { name: 'thinkube', changed: true, location: `/api/v2.0/projects/${s.state.projects.get('thinkube').project_id}` });
  t.same(JSON.parse(s.requests.at(-1).body), { project_name: 'thinkube', metadata: { public: 'false' } });
  t.equal(s.state.projects.get('thinkube').metadata.public, 'false');
  t.equal(await client.projectExists('thinkube'), true);
  t.same(await client.createProject('thinkube', { public: false }), { name: 'thinkube', changed: false }, '409 -> changed false');
  t.equal(s.requests.at(-1).method, 'POST');

  await client.createProject('pub', { public: true, storageLimitBytes: 5 * GiB });
  t.equal(s.state.projects.get('pub').metadata.public, 'true');
  const pub = await client.getProject('pub');
  t.match(pub, { name: 'pub', public: true, quota: { storageLimitBytes: 5 * GiB, storageUsedBytes: 0 } });

  const library = await client.getProject('library');
  t.match(library, { name: 'library', public: true, ownerName: 'admin', quota: { storageLimitBytes: 10 * GiB } });
  t.equal(describeQuota(library), 'project library uses 9.8 GiB of 10 GiB (98%)');
  t.equal(s.requests.at(-1).headers['x-is-resource-name'], 'true');
  t.equal(describeQuota(await client.projectSummary('library'), 'library'), 'project library uses 9.8 GiB of 10 GiB (98%)', 'a raw summary works too');
  t.equal(describeQuota(pub), 'project pub uses 0 B of 5 GiB (0%)');
  t.equal(describeQuota({ name: 'x', quota: { hard: { storage: -1 }, used: { storage: 3 * MiB } } }), 'project x uses 3 MiB (no storage limit)');
  t.equal(describeQuota({ name: 'x' }), 'project x: quota and usage not readable');

  const missing = await client.getProject('nope').then(() => undefined, (e) => e);
  t.match(missing, { code: 'ERR_HARBOR', message: /Project "nope" does not exist on Harbor at 127\.0\.0\.1:\d+ \(GET \/api\/v2\.0\/projects\/nope: HTTP 404, NOT_FOUND: project nope not found\)/, hint: /create_project/ });
  t.equal(missing.details.status, 404);
});

t.test('a permission error names the user and Harbor\'s error code', async (t) => {
  const s = await standin(t, { users: { reader: 'pw' }, readOnly: ['reader'] });
  const error = await new HarborClient({ url: s.url, username: 'reader', password: 'pw' }).createProject('x1').then(() => undefined, (e) => e);
  t.match(error, { code: 'ERR_REGISTRY_AUTH', message: /does not allow user "reader" to create private project "x1" \(POST \/api\/v2\.0\/projects: HTTP 403, FORBIDDEN: user reader has no permission/ });
  t.equal(error.details.harborErrors[0].code, 'FORBIDDEN');
});

t.test('artifacts: repository names with / are encoded twice; tags read back', async (t) => {
  const digest = fakeDigest('team/app');
  const s = await standin(t, {
    artifacts: [{ project: 'library', repository: 'team/app', digest, tags: ['latest', '1.0', '1.0.1'], size: 4242 }],
  });
  const client = new HarborClient({ url: s.url, ...ROBOT });
  t.equal(encodeRepositoryName('team/app'), 'team%252Fapp');
  const artifact = await client.getArtifact('library', 'team/app', digest);
  t.equal(s.requests.at(-1).rawPath, `/api/v2.0/projects/library/repositories/team%252Fapp/artifacts/${digest}`);
  t.equal(s.requests.at(-1).headers['x-accept-vulnerabilities'], undefined, 'no scan header unless asked');
  t.match(artifact, { digest, size: 4242, repository_name: 'library/team/app' });
  t.same(artifact.tags.map((x) => x.name), ['latest', '1.0', '1.0.1']);
  t.same((await client.getArtifact('library', 'team/app', '1.0')).digest, digest, 'by tag');
  t.equal(s.requests.at(-1).rawPath, '/api/v2.0/projects/library/repositories/team%252Fapp/artifacts/1.0');

  const tags = await client.artifactTags('library', 'team/app', digest);
  t.same(tags.map((x) => x.name), ['latest', '1.0', '1.0.1']);
  t.match(s.requests.at(-1).rawUrl, /\/team%252Fapp\/artifacts\/sha256:[a-f0-9]{64}\/tags\?page=1&page_size=100$/);

  // The stand-in decodes like Harbor: encoding once breaks the path.
  const once = await fetch(`${s.url}/api/v2.0/projects/library/repositories/team%2Fapp/artifacts/${digest}`, { headers: { authorization: basic(ROBOT.username, ROBOT.password) } });
  t.equal(once.status, 404, 'single encoding is not found');

  const scanned = await client.getArtifact('library', 'team/app', digest, { withScanOverview: true });
  t.equal(s.requests.at(-1).headers['x-accept-vulnerabilities'], ACCEPT_VULNERABILITIES);
  t.equal(ACCEPT_VULNERABILITIES, 'application/vnd.security.vulnerability.report; version=1.1, application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0');
  t.equal(s.requests.at(-1).query.with_scan_overview, 'true');
  t.type(scanned.scan_overview, 'object');

  const missing = await client.getArtifact('library', 'team/app', 'nope').then(() => undefined, (e) => e);
  t.match(missing, { code: 'ERR_MANIFEST_NOT_FOUND', message: /Artifact library\/team\/app:nope is not on Harbor/ });
});

t.test('scan gate: Pending -> Running -> Success with counts; threshold decides', async (t) => {
  const digest = fakeDigest('library/jupyter-ml-cpu');
  const s = await standin(t, {
    artifacts: [{
      project: 'library',
      repository: 'jupyter-ml-cpu',
      digest,
      scan: { outcome: 'Success', pendingPolls: 1, runningPolls: 2, counts: { High: 1, Medium: 3, Low: 5 }, fixable: 4 },
    }],
  });
  const client = new HarborClient({ url: s.url, ...ROBOT });
  const events = [];
  const failed = await scanGate(client, { project: 'library', repository: 'jupyter-ml-cpu', digest, maxSeverity: 'medium', pollIntervalMs: 20 }, { onEvent: (e) => events.push(e) });
  t.match(failed, {
    status: 'Success',
    passed: false,
    counts: { critical: 0, high: 1, medium: 3, low: 5, unknown: 0, total: 9 },
    fixable: 4,
    severity: 'High',
    maxSeverity: 'medium',
    scanner: 'Trivy v0.50.1',
    summary: '0 critical, 1 high, 3 medium, 5 low, 0 unknown (9 total)',
    reason: `library/jupyter-ml-cpu@${digest} has vulnerabilities of severity medium or worse: 1 high, 3 medium`,
  });
  const statuses = events.filter((e) => e.type === 'scan-status').map((e) => e.status);
  t.same(statuses, ['Pending', 'Running', 'Success'], 'statuses in order');
  t.match(events[0], { type: 'scan-requested', accepted: true });
  t.equal(events.at(-1).type, 'scan-finished');
  const scanPosts = s.requests.filter((r) => r.method === 'POST' && r.rawPath.endsWith('/scan'));
  t.equal(scanPosts.length, 1);
  t.same(JSON.parse(scanPosts[0].body), { scan_type: 'vulnerability' });
  t.equal(scanPosts[0].headers.authorization, basic('robot$thinkube', 'robot-secret'));
  const polls = s.requests.filter((r) => r.method === 'GET' && r.query.with_scan_overview === 'true');
  t.ok(polls.every((r) => r.headers['x-accept-vulnerabilities'] === ACCEPT_VULNERABILITIES));

  const error = scanGateError(failed);
  t.match(error, { code: 'ERR_SCAN_GATE', message: /Scan gate failed: .*1 high, 3 medium/, hint: /4 fixable/ });

  const passed = await scanGate(client, { project: 'library', repository: 'jupyter-ml-cpu', digest, maxSeverity: 'critical', pollIntervalMs: 20 });
  t.match(passed, { status: 'Success', passed: true, counts: { high: 1, total: 9 } });
  t.equal(passed.reason, undefined);
  t.match(passed.message, /passed \(max severity critical\)/);

  const high = await scanGate(client, { project: 'library', repository: 'jupyter-ml-cpu', digest, maxSeverity: 'high', pollIntervalMs: 20 });
  t.equal(high.passed, false, 'a high vulnerability fails at max_severity high (at or above)');
});

t.test('scan gate: none fails on any vulnerability, unknown included', async (t) => {
  const digest = fakeDigest('u');
  const s = await standin(t, { artifacts: [{ project: 'library', repository: 'u', digest, scan: { outcome: 'Success', counts: { Unknown: 2 } } }] });
  const client = new HarborClient({ url: s.url, ...ADMIN });
  const low = await scanGate(client, { project: 'library', repository: 'u', digest, maxSeverity: 'low', pollIntervalMs: 10 });
  t.equal(low.passed, true);
  const none = await scanGate(client, { project: 'library', repository: 'u', digest, maxSeverity: 'none', pollIntervalMs: 10 });
  t.match(none, { passed: false, counts: { unknown: 2, total: 2 }, reason: /has vulnerabilities \(2 unknown\) and max severity is none/ });
  s.state.artifacts.get(`library/u@${digest}`).scanPlan = { outcome: 'Success', counts: {} };
  t.equal((await scanGate(client, { project: 'library', repository: 'u', digest, maxSeverity: 'none', pollIntervalMs: 10 })).passed, true, 'a clean image passes none');
});

t.test('scan gate: scan Error fails with a clear reason', async (t) => {
  const digest = fakeDigest('broken');
  const s = await standin(t, { artifacts: [{ project: 'library', repository: 'broken', digest, scan: { outcome: 'Error' } }] });
  const result = await scanGate(new HarborClient({ url: s.url, ...ADMIN }), { project: 'library', repository: 'broken', digest, maxSeverity: 'critical', pollIntervalMs: 10 });
  t.match(result, { status: 'Error', passed: false, reason: /scanner failed on library\/broken@sha256:[a-f0-9]{64} \(scan status Error\)/, summary: 'no result (scan Error)' });
  t.same(result.counts, { critical: 0, high: 0, medium: 0, low: 0, unknown: 0, total: 0 });
  t.ok(result.reportId);
  t.match(scanGateError(result), { code: 'ERR_SCAN_GATE', hint: /scan log of report/ });
});

t.test('scan gate: a scan that never finishes times out (against the stand-in)', async (t) => {
  const digest = fakeDigest('slow');
  const s = await standin(t, { artifacts: [{ project: 'library', repository: 'slow', digest, scan: { outcome: 'Hang' } }] });
  const events = [];
  const result = await scanGate(new HarborClient({ url: s.url, ...ADMIN }), {
    project: 'library', repository: 'slow', digest, maxSeverity: 'critical', timeoutSeconds: 1, pollIntervalMs: 50, maxPollIntervalMs: 200,
  }, { onEvent: (e) => events.push(e) });
  t.match(result, { status: 'Timeout', passed: false, reason: /did not finish within 1 s \(last status: Running\)/ });
  const polls = s.requests.filter((r) => r.query.with_scan_overview === 'true');
  t.ok(polls.length >= 2, `read the overview before the scan and polled it after (${polls.length} reads)`);
  t.equal(events[0].type, 'scan-requested');
  t.equal(events.filter((e) => e.type === 'scan-status').at(-1)?.status, 'Running', 'the last status reported is Running');
  t.match(events.at(-1), { type: 'scan-finished', result: { status: 'Timeout' } }, 'then the verdict');
  t.match(scanGateError(result).hint, /raise the scan timeout/);
});

t.test('scan gate: polls back off by half up to the cap and give up at the timeout (virtual clock)', async (t) => {
  const digest = fakeDigest('virtual');
  const clock = virtualClock(t);
  const reads = [];
  // Only what scanGate calls; answers at once, so the timers alone decide when the gate polls.
  const client = {
    async getArtifact() {
      reads.push(clock.now());
      return { digest, scan_overview: { [ACCEPT_VULNERABILITIES.split(', ')[0]]: { report_id: 'r1', scan_status: 'Running', complete_percent: 10 } } };
    },
    async scanArtifact() {
      return { accepted: true };
    },
  };
  const result = await clock.run(scanGate(client, { project: 'library', repository: 'slow', digest, timeoutSeconds: 1, pollIntervalMs: 50, maxPollIntervalMs: 200 }));
  t.match(result, { status: 'Timeout', passed: false, reason: /did not finish within 1 s \(last status: Running\)/ });
  t.same(reads, [0, 0, 50, 125, 238, 408, 608, 808, 1000], 'a read before the scan, then polls at these virtual ms');
  const gaps = reads.slice(2).map((at, i) => at - reads[i + 1]);
  t.same(gaps, [50, 75, 113, 170, 200, 200, 192], 'each wait half again as long, capped at 200 ms, the last cut to the deadline');
  t.equal(clock.now(), 1000, 'gave up exactly at the 1 s timeout');
});

t.test('scan gate: the previous report shown before the new scan starts is not taken as the result', async (t) => {
  const digest = fakeDigest('stale');
  const s = await standin(t, {
    artifacts: [{
      project: 'library', repository: 'stale', digest,
      previousScan: { counts: {} },
      scan: { outcome: 'Success', startDelayPolls: 2, counts: { Critical: 2 } },
    }],
  });
  const result = await scanGate(new HarborClient({ url: s.url, ...ADMIN }), { project: 'library', repository: 'stale', digest, maxSeverity: 'critical', pollIntervalMs: 10 });
  t.match(result, { status: 'Success', passed: false, counts: { critical: 2 } });
});

t.test('scan gate: options checked, missing artifact, abort', async (t) => {
  const digest = fakeDigest('x');
  const s = await standin(t, { artifacts: [{ project: 'library', repository: 'x', digest, scan: { outcome: 'Hang' } }] });
  const client = new HarborClient({ url: s.url, ...ADMIN });
  await t.rejects(scanGate(client, { project: 'library', repository: 'x', digest: 'latest', maxSeverity: 'severe' }), {
    code: 'ERR_INVALID_OPTIONS',
    message: /digest: must be a sha256 digest.*maxSeverity: must be one of critical, high, medium, low, none/,
  });
  await t.rejects(scanGate(client, { project: 'library', repository: 'missing', digest }), { code: 'ERR_MANIFEST_NOT_FOUND', message: /library\/missing@sha256/ });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  await t.rejects(scanGate(client, { project: 'library', repository: 'x', digest, pollIntervalMs: 50 }, { signal: controller.signal }), { code: 'ERR_ABORTED' });
});

t.test('quota: Harbor\'s DENIED "Quota exceeded" recognised and described', async (t) => {
  const harborText = 'Quota exceeded when processing the request of adding 25.5 MiB of storage resource, which when updated to current usage of 9.8 GiB will exceed the configured upper limit of 10.0 GiB.';
  const fromJson = parseQuotaExceeded(JSON.stringify({ errors: [{ code: 'DENIED', message: harborText }] }));
  t.same(fromJson, { message: harborText, addingBytes: Math.round(25.5 * MiB), usedBytes: Math.round(9.8 * GiB), limitBytes: 10 * GiB });
  t.same(parseQuotaExceeded(`denied: ${harborText}`), fromJson, 'an engine\'s "denied:" line');
  t.match(parseQuotaExceeded('denied: adding 37.1 MiB of storage resource, which when updated to current usage of 993.4 MiB will exceed the configured upper limit of 1.0 GiB.'), { addingBytes: Math.round(37.1 * MiB), limitBytes: GiB });
  t.equal(parseQuotaExceeded('denied: requested access to the resource is denied'), undefined);
  t.equal(parseQuotaExceeded(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] })), undefined);
  t.equal(parseQuotaExceeded(''), undefined);
  t.equal(parseQuotaExceeded(undefined), undefined);

  t.equal(formatBytes(10 * GiB), '10 GiB');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(12), '12 B');

  const s = await standin(t, { projects: { library: { public: true, quota: { hard: 10 * GiB, used: Math.round(9.8 * GiB) } } } });
  const project = await new HarborClient({ url: s.url, ...ROBOT }).getProject('library');
  const error = quotaExceededError(fromJson, { project: 'library', image: `${s.host}/library/jupyter-ml-gpu:latest`, quotaDescription: describeQuota(project) });
  t.equal(error.code, 'ERR_QUOTA_EXCEEDED');
  t.equal(error.message, `Pushing ${s.host}/library/jupyter-ml-gpu:latest exceeds the storage quota of Harbor project library: the push adds 25.5 MiB, 9.8 GiB already used, limit 10 GiB (project library uses 9.8 GiB of 10 GiB (98%))`);
  t.match(error.hint, /Raise the quota of project library/);
});

t.test('transport: unreachable, timeout, TLS verified by default and caFile', async (t) => {
  const port = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const gone = await new HarborClient({ url: `http://127.0.0.1:${port}`, ...ADMIN }).health().then(() => undefined, (e) => e);
  t.match(gone, { code: 'ERR_REGISTRY_UNREACHABLE', message: `Cannot reach Harbor at http://127.0.0.1:${port}/api/v2.0 (ECONNREFUSED)` });
  t.notMatch(errorText(gone), /Harbor12345|SGFyYm9yMTIzNDU/);

  const s = await standin(t);
  s.state.delayMs = 1500;
  const slow = await new HarborClient({ url: s.url, ...ADMIN, timeoutSeconds: 0.3 }).projectExists('library').then(() => undefined, (e) => e);
  t.match(slow, { code: 'ERR_TIMEOUT', message: /did not answer HEAD \/api\/v2\.0\/projects \(check whether project "library" exists\) within 0\.3 s/ });
  s.state.delayMs = 0;

  // A self-signed certificate for 127.0.0.1.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'harbor-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  const tls = await standin(t, { tls: { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) } });
  const untrusted = await new HarborClient({ url: tls.url, ...ADMIN }).health().then(() => undefined, (e) => e);
  t.match(untrusted, { code: 'ERR_REGISTRY_UNREACHABLE', message: /TLS with Harbor at https:\/\/127\.0\.0\.1:\d+\/api\/v2\.0 failed \(DEPTH_ZERO_SELF_SIGNED_CERT/, hint: /caFile/ });
  t.equal((await new HarborClient({ url: tls.url, ...ADMIN, caFile: path.join(dir, 'cert.pem') }).health()).status, 'healthy', 'caFile adds the CA');
  t.equal((await new HarborClient({ url: tls.url, ...ADMIN, validateCerts: false }).health()).status, 'healthy', 'validateCerts: false skips verification');
  t.throws(() => new HarborClient({ url: tls.url, caFile: path.join(dir, 'key.pem') }), { code: 'ERR_INVALID_OPTIONS', message: /holds no PEM certificate/ });
});
