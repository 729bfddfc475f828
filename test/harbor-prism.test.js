// Every request HarborClient makes is checked against Harbor's own API description: Prism serves
// test/contracts/harbor-api.yaml (the operations the client uses, copied verbatim from Harbor's
// swagger; scripts/check-harbor-contract.js keeps it equal to Harbor's) with --errors, so a
// request that breaks the spec (unknown path, wrong parameter type or name, bad body, bad header,
// bad auth scheme) gets a 4xx instead of a mocked answer. A recording proxy between the client and Prism keeps every
// status, so no 4xx can hide behind the client's own handling (404 -> false, 409 -> unchanged).
import t from 'tap';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { repoRoot } from './helpers/env.js';
import { freePort, startService } from './helpers/service-process.js';
import { HarborClient } from '../dist/lib/harbor/client.js';

const swagger = path.join(repoRoot, 'test', 'contracts', 'harbor-api.yaml');
const prismBin = path.join(repoRoot, 'node_modules', '.bin', 'prism');
const DIGEST = `sha256:${'ab'.repeat(32)}`;

async function startPrism() {
  if (!existsSync(swagger)) throw new Error(`The Harbor API description is missing: ${swagger}`);
  if (!existsSync(prismBin)) throw new Error(`Prism is missing: ${prismBin} (npm install)`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const prism = await startService({
    name: `Prism on ${url}`,
    cmd: prismBin,
    args: ['mock', '--errors', '-h', '127.0.0.1', '-p', String(port), swagger],
    cwd: repoRoot,
    ready: () => fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) }).then((res) => res.status === 200),
    timeoutMs: 60_000,
    pollMs: 150,
  });
  return { url, stop: prism.stop, startupMs: prism.startupMs };
}

/** A pass-through proxy that records each exchange's status and Prism's violation header. */
async function startRecorder(target) {
  const exchanges = [];
  const server = http.createServer((req, res) => {
    const upstream = http.request(`${target}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (up) => {
      const chunks = [];
      up.on('data', (c) => chunks.push(c));
      up.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        exchanges.push({ method: req.method, url: req.url, status: up.statusCode, violations: up.headers['sl-violations'], body, headers: { ...req.headers } });
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.end(body);
      });
    });
    upstream.on('error', (e) => {
      exchanges.push({ method: req.method, url: req.url, status: 599, body: e.message, headers: { ...req.headers } });
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    exchanges,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

// One Prism for the whole file: its startup (2-3 s) dominates the run.
const prism = await startPrism();
t.teardown(() => prism.stop());
t.comment(`Prism started in ${prism.startupMs} ms`);
const recorder = await startRecorder(prism.url);
t.teardown(() => recorder.close());

function accepted(t, from, what) {
  const seen = recorder.exchanges.slice(from);
  t.ok(seen.length > 0, `${what}: made requests`);
  for (const x of seen) {
    t.ok(x.status < 400 && !x.violations, `${what}: Prism accepted ${x.method} ${x.url} (HTTP ${x.status}${x.violations ? `, ${x.violations}` : ''}${x.status >= 400 ? `: ${x.body.slice(0, 300)}` : ''})`);
  }
  return seen;
}

const admin = new HarborClient({ url: recorder.url, basePath: '', username: 'admin', password: 'Harbor12345' });
const robot = new HarborClient({ url: recorder.url, basePath: '', username: 'robot$thinkube', password: 'robot-secret' });
const anonymous = new HarborClient({ url: recorder.url, basePath: '' });

t.test('--errors really rejects requests that break the spec', async (t) => {
  const bad = [
    [`${recorder.url}/projects/library/repositories/app/artifacts/${DIGEST}?with_scan_overview=maybe`, {}],
    [`${recorder.url}/projects/library/repositories/app/artifacts/${DIGEST}/scan`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"scan_type":"virus"}' }],
    [`${recorder.url}/projects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"project_name":42}' }],
    [`${recorder.url}/users/current`, { headers: { authorization: 'Bearer abc' } }],
    [`${recorder.url}/projects/library/artifact/${DIGEST}`, {}],
  ];
  for (const [url, init] of bad) {
    const res = await fetch(url, { ...init, headers: { ...init.headers, 'x-test-probe': '1' } });
    await res.arrayBuffer();
    t.ok(res.status >= 400, `${init.method ?? 'GET'} ${url.slice(recorder.url.length)} -> HTTP ${res.status}`);
  }
});

t.test('health and ping', async (t) => {
  const from = recorder.exchanges.length;
  const health = await anonymous.health();
  t.type(health.status, 'string');
  t.ok(Array.isArray(health.components) && Array.isArray(health.unhealthy));
  t.type(await anonymous.ping(), 'string');
  const seen = accepted(t, from, 'health/ping');
  t.same(seen.map((x) => `${x.method} ${x.url.split('?')[0]}`), ['GET /health', 'GET /ping']);
});

t.test('currentUser for a user and a robot account', async (t) => {
  let from = recorder.exchanges.length;
  const user = await admin.currentUser();
  t.equal(user.robot, false);
  let seen = accepted(t, from, 'currentUser (user)');
  t.same(seen.map((x) => x.url), ['/users/current']);

  from = recorder.exchanges.length;
  const bot = await robot.currentUser();
  t.match(bot, { username: 'robot$thinkube', robot: true });
  seen = accepted(t, from, 'currentUser (robot)');
  t.same(seen.map((x) => x.url), ['/users/current/permissions']);
  t.equal(seen[0].headers.authorization, `Basic ${Buffer.from('robot$thinkube:robot-secret').toString('base64')}`);
});

t.test('projects: exists, create (private and public), get with summary', async (t) => {
  const from = recorder.exchanges.length;
  t.type(await robot.projectExists('thinkube'), 'boolean');
  t.match(await robot.createProject('thinkube', { public: false }), { name: 'thinkube', changed: true });
  t.match(await robot.createProject('mirror', { public: true, storageLimitBytes: 10737418240 }), { changed: true });
  const project = await robot.getProject('library');
  t.type(project.public, 'boolean');
  t.type(await robot.projectSummary('library'), 'object');
  const seen = accepted(t, from, 'projects');
  t.same(seen.map((x) => `${x.method} ${x.url}`), [
    'HEAD /projects?project_name=thinkube',
    'POST /projects',
    'POST /projects',
    'GET /projects/library',
    'GET /projects/library/summary',
    'GET /projects/library/summary',
  ]);
});

t.test('artifacts: get (plain, with scan overview, nested repository, by tag), scan, tags', async (t) => {
  const from = recorder.exchanges.length;
  const artifact = await robot.getArtifact('library', 'jupyter-ml-cpu', DIGEST);
  t.type(artifact, 'object');
  const scanned = await robot.getArtifact('library', 'team/jupyter-ml-cpu', DIGEST, { withScanOverview: true });
  t.type(scanned.scan_overview, 'object');
  await robot.getArtifact('library', 'jupyter-ml-cpu', 'latest', { withScanOverview: true, withTag: false });
  t.same(await robot.scanArtifact('library', 'team/jupyter-ml-cpu', DIGEST), { accepted: true });
  const tags = await robot.artifactTags('library', 'team/jupyter-ml-cpu', DIGEST);
  t.ok(Array.isArray(tags));
  const seen = accepted(t, from, 'artifacts');
  t.same(seen.map((x) => `${x.method} ${x.url}`), [
    `GET /projects/library/repositories/jupyter-ml-cpu/artifacts/${DIGEST}?with_tag=true&with_scan_overview=false`,
    `GET /projects/library/repositories/team%252Fjupyter-ml-cpu/artifacts/${DIGEST}?with_tag=true&with_scan_overview=true`,
    'GET /projects/library/repositories/jupyter-ml-cpu/artifacts/latest?with_tag=false&with_scan_overview=true',
    `POST /projects/library/repositories/team%252Fjupyter-ml-cpu/artifacts/${DIGEST}/scan`,
    `GET /projects/library/repositories/team%252Fjupyter-ml-cpu/artifacts/${DIGEST}/tags?page=1&page_size=100`,
  ]);
  t.equal(seen[1].headers['x-accept-vulnerabilities'], 'application/vnd.security.vulnerability.report; version=1.1, application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0');
});

t.test('retention: list the artifacts of a repository, delete a tag, delete an artifact', async (t) => {
  const from = recorder.exchanges.length;
  const artifacts = await robot.listArtifacts('library', 'team/jupyter-ml-cpu');
  t.ok(Array.isArray(artifacts));
  t.type(await robot.deleteTag('library', 'team/jupyter-ml-cpu', DIGEST, `in-${'0'.repeat(32)}`), 'boolean');
  t.type(await robot.deleteArtifact('library', 'jupyter-ml-cpu', DIGEST), 'boolean');
  const seen = accepted(t, from, 'retention');
  t.same(seen.map((x) => `${x.method} ${x.url}`), [
    'GET /projects/library/repositories/team%252Fjupyter-ml-cpu/artifacts?page=1&page_size=100&with_tag=true',
    `DELETE /projects/library/repositories/team%252Fjupyter-ml-cpu/artifacts/${DIGEST}/tags/in-${'0'.repeat(32)}`,
    `DELETE /projects/library/repositories/jupyter-ml-cpu/artifacts/${DIGEST}`,
  ]);
});

t.test('every public HarborClient method was exercised', async (t) => {
  const methods = Object.getOwnPropertyNames(HarborClient.prototype).filter((n) => n !== 'constructor');
  t.same(methods.sort(), ['artifactTags', 'createProject', 'currentUser', 'deleteArtifact', 'deleteTag', 'getArtifact', 'getProject', 'health', 'listArtifacts', 'ping', 'projectExists', 'projectSummary', 'scanArtifact'],
    'a new method needs a Prism check here');
  const fromClient = recorder.exchanges.filter((x) => !x.headers['x-test-probe']);
  t.ok(fromClient.length >= 15);
  t.ok(fromClient.every((x) => typeof x.headers['x-request-id'] === 'string' && x.status < 400), 'X-Request-Id on every client request, none refused');
});
