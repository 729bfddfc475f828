// registerImage target configmap, mode cluster: the live ConfigMap through the Kubernetes API
// (stand-in: test/helpers/kube-standin.js) and thinkube-control's sync and image list (stand-in:
// test/helpers/control-standin.js, which reads the ConfigMaps from the Kubernetes stand-in).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { closedPort, rejection } from './helpers/assert.js';
import { startKubeStandin } from './helpers/kube-standin.js';
import { startControlStandin } from './helpers/control-standin.js';
import { registerImage } from '../dist/lib/register/register.js';
import { KubeConnection } from '../dist/lib/kube/connection.js';
import { ConfigMapClient } from '../dist/lib/kube/configmaps.js';

delete process.env.THINKUBE_CONTROL_TOKEN;
delete process.env.KUBECONFIG;

const digest = (c) => `sha256:${c.repeat(64)}`;
const NS = 'thinkube-control';
const CM = 'thinkube-custom-images-jupyter';

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'register-cluster-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A Kubernetes stand-in, a thinkube-control stand-in reading it, and a kubeconfig for the admin. */
async function cluster(t) {
  const kube = await startKubeStandin();
  const control = await startControlStandin({ kube: { url: kube.url, token: kube.adminToken, ca: kube.ca } });
  t.teardown(async () => {
    await control.close();
    await kube.close();
  });
  const dir = tmp(t);
  return { kube, control, dir, kubeconfig: kube.kubeconfig(dir) };
}

function options(env, name, over = {}) {
  return {
    target: 'configmap',
    configmap: { mode: 'cluster' },
    kubernetes: { kubeconfig: env.kubeconfig },
    controlUrl: env.control.baseUrl,
    token: env.control.token,
    image: { name, display_name: `Image ${name}`, description: `The ${name} image`, category: 'jupyter', tags: ['jupyter-compatible'], metadata: { gpu_required: false, purpose: 'jupyter' } },
    reference: { registry: 'harbor.example.com', repository: `library/${name}`, tag: 'latest', digest: digest('a'), builtAt: '2025-01-31T12:00:00Z' },
    scan: { status: 'Success', critical: 0, high: 2, medium: 5, low: 7, scanner: 'Trivy 0.50.1' },
    ...over,
  };
}

function manifestOf(kube, name = CM, ns = NS) {
  const cm = kube.get('configmaps', ns, name);
  return cm && JSON.parse(cm.data['manifest.json']);
}

const writes = (kube) => kube.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path} ${r.status}`);

/** Another writer's ConfigMap content, as Thinkube's installer writes it. */
function installerEntry(name) {
  return {
    name,
    registry: 'harbor.example.com',
    repository: `library/${name}`,
    tag: 'latest',
    source_url: `docker.io/library/${name}:latest`,
    destination_url: `harbor.example.com/library/${name}:latest`,
    description: `Mirrored ${name}`,
    category: 'user',
    source: 'mirrored',
    protected: true,
    mirror_date: '2025-01-01T00:00:00Z',
    metadata: { purpose: 'base' },
  };
}

function seed(kube, entries, { name = CM, ns = NS, category = 'user' } = {}) {
  return kube.put('configmaps', {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: ns, labels: { 'thinkube.io/image-manifest': 'true', 'thinkube.io/category': category, 'app.kubernetes.io/managed-by': 'installer' }, annotations: { note: 'kept' } },
    data: { 'manifest.json': JSON.stringify({ manifest_version: '1.0', images: entries }), 'README': 'kept too' },
  });
}

t.test('registers into the live ConfigMap, syncs, and thinkube-control lists it; a second run changes nothing', async (t) => {
  const env = await cluster(t);
  const first = await registerImage(options(env, 'img-a'));
  t.equal(first.outcome, 'created');
  t.equal(first.changed, true);
  t.same(first.warnings, []);
  t.equal(first.location, `${NS}/${CM}`);
  t.same(writes(env.kube), [`POST /api/v1/namespaces/${NS}/configmaps 201`], 'created with one POST');
  const cm = env.kube.get('configmaps', NS, CM);
  t.equal(cm.metadata.labels['thinkube.io/image-manifest'], 'true');
  t.equal(cm.metadata.labels['thinkube.io/category'], 'user');
  t.same(manifestOf(env.kube).images.map((i) => i.name), ['img-a']);
  t.ok(env.control.requests.some((r) => r.method === 'POST' && r.path === '/api/v1/harbor/images/sync'), 'the sync was called');
  const row = env.control.rows.get('harbor.example.com/library/img-a:latest');
  t.ok(row, 'thinkube-control holds the image');
  t.equal(row.metadata.purpose, 'jupyter');
  t.same(row.metadata.vulnerabilities, { critical: 0, high: 2, medium: 5, low: 7 }, 'the counts are in the row metadata');
  t.equal(row.metadata.scan_status, 'Success');
  t.equal(row.vulnerabilities, null, 'thinkube-control does not read a vulnerabilities field from the manifest: metadata is where they show');

  env.kube.requests.length = 0;
  env.control.requests.length = 0;
  const again = await registerImage(options(env, 'img-a'));
  t.equal(again.outcome, 'unchanged');
  t.equal(again.changed, false);
  t.same(writes(env.kube), [], 'no write');
  t.notOk(env.control.requests.some((r) => r.method === 'POST'), 'no sync: thinkube-control already lists it');

  const changed = await registerImage(options(env, 'img-a', { reference: { ...options(env, 'img-a').reference, digest: digest('b') } }));
  t.equal(changed.outcome, 'updated');
  t.equal(changed.diff.before.metadata.digest, digest('a'));
  t.equal(env.control.rows.get('harbor.example.com/library/img-a:latest').metadata.digest, digest('b'));
  t.match(writes(env.kube), [`PUT /api/v1/namespaces/${NS}/configmaps/${CM} 200`]);
});

t.test("another writer's entries, labels, annotations and data keys are kept", async (t) => {
  const env = await cluster(t);
  seed(env.kube, [installerEntry('python'), installerEntry('cuda')]);
  const result = await registerImage(options(env, 'img-a'));
  t.equal(result.outcome, 'created');
  const cm = env.kube.get('configmaps', NS, CM);
  t.same(manifestOf(env.kube).images.map((i) => i.name), ['cuda', 'img-a', 'python']);
  t.same(manifestOf(env.kube).images.find((i) => i.name === 'python'), installerEntry('python'), "the other writer's entry is unchanged");
  t.equal(cm.metadata.annotations.note, 'kept');
  t.equal(cm.data.README, 'kept too');
  t.equal(cm.metadata.labels['app.kubernetes.io/managed-by'], 'thinkube-custom-images');
  t.same([...env.control.rows.keys()].sort(), ['harbor.example.com/library/cuda:latest', 'harbor.example.com/library/img-a:latest', 'harbor.example.com/library/python:latest']);
});

t.test('two writers registering different images into one ConfigMap at once lose nothing (forced conflict)', async (t) => {
  const env = await cluster(t);
  seed(env.kube, [installerEntry('python')]);
  // Hold both reads until both arrived: both then write on the same resourceVersion, one loses.
  const getPath = `/api/v1/namespaces/${NS}/configmaps/${CM}`;
  let arrived = 0;
  let release;
  const both = new Promise((resolve) => (release = resolve));
  for (let i = 0; i < 2; i++) {
    env.kube.beforeNext({ method: 'GET', path: getPath }, async () => {
      if (++arrived === 2) release();
      await both;
    });
  }
  const [a, b] = await Promise.all([registerImage(options(env, 'img-a')), registerImage(options(env, 'img-b'))]);
  t.same(manifestOf(env.kube).images.map((i) => i.name), ['img-a', 'img-b', 'python'], 'every entry is there');
  const conflicts = env.kube.requests.filter((r) => r.method === 'PUT' && r.status === 409);
  t.equal(conflicts.length, 1, 'one write lost the race (409 Conflict)');
  t.equal(a.conflicts + b.conflicts, 1, 'and was read, merged and written again');
  t.match([...a.warnings, ...b.warnings].join('\n'), /changed by another writer meanwhile: read and merged again \(1 time\(s\)\); their entries were kept/);
  for (const r of [a, b]) t.equal(r.outcome, 'created', `${r.entry.name}: thinkube-control lists it`);
  t.ok(env.control.rows.has('harbor.example.com/library/img-b:latest') && env.control.rows.has('harbor.example.com/library/img-a:latest'));
});

t.test('a create race: the ConfigMap appears between the read and the create', async (t) => {
  const env = await cluster(t);
  env.kube.beforeNext({ method: 'POST', path: `/api/v1/namespaces/${NS}/configmaps` }, () => seed(env.kube, [installerEntry('python')]));
  const result = await registerImage(options(env, 'img-a'));
  t.equal(result.outcome, 'created');
  t.equal(result.conflicts, 1);
  t.same(manifestOf(env.kube).images.map((i) => i.name), ['img-a', 'python'], 'AlreadyExists: read again and merged');
});

t.test("every entry is checked before writing: another writer's bad entry fails the registration, nothing is written", async (t) => {
  const env = await cluster(t);
  seed(env.kube, [{ ...installerEntry('python'), category: 'jupyter' }, { ...installerEntry('cuda'), destination_url: '' }]);
  const before = env.kube.get('configmaps', NS, CM);
  const error = await rejection(registerImage(options(env, 'img-a')));
  t.equal(error.code, 'ERR_MANIFEST_INVALID');
  t.match(error.message, /images\[\d+\] \(python\)\.category is "jupyter"; thinkube-control accepts only system or user/);
  t.match(error.message, /images\[\d+\] \(cuda\)\.destination_url is required/);
  t.match(error.message, /one bad entry rolls back its whole sync/);
  t.match(error.hint, /nothing was written/);
  t.same(writes(env.kube), [], 'no write');
  t.equal(env.kube.get('configmaps', NS, CM).metadata.resourceVersion, before.metadata.resourceVersion);
  t.notOk(env.control.requests.some((r) => r.path.endsWith('/sync')), 'no sync');

  // A ConfigMap of the other category: refused, named.
  env.kube.reset();
  seed(env.kube, [installerEntry('python')], { category: 'system' });
  const wrong = await rejection(registerImage(options(env, 'img-a')));
  t.equal(wrong.code, 'ERR_INVALID_OPTIONS');
  t.match(wrong.message, `ConfigMap ${NS}/${CM} holds system images; img-a is registered as user`);
});

t.test('a sync failure is reported, not hidden; required makes it a failure', async (t) => {
  const env = await cluster(t);
  // Another ConfigMap, elsewhere, with a category thinkube-control refuses: its whole sync fails (500).
  seed(env.kube, [installerEntry('python')], { name: 'broken', ns: 'default', category: 'jupyter' });
  const result = await registerImage(options(env, 'img-a'));
  t.equal(result.outcome, 'sync-failed');
  t.equal(result.changed, true, 'the ConfigMap was written');
  t.ok(manifestOf(env.kube).images.some((i) => i.name === 'img-a'), 'the ConfigMap holds the image');
  t.equal(env.control.rows.size, 0, 'thinkube-control holds nothing (the sync rolled back)');
  t.match(result.warnings[0], /holds img-a \(written\), but thinkube-control's sync failed .*answered 500 to POST .*\/api\/v1\/harbor\/images\/sync: Failed to sync images: ConfigMap default\/broken: invalid category "jupyter"/);

  const required = await rejection(registerImage(options(env, 'img-a', { required: true })));
  t.equal(required.code, 'ERR_REGISTRATION_NOT_VISIBLE');
  t.match(required.message, /\(outcome sync-failed\)/);
  t.match(required.hint, /thinkube-control's logs/);

  // Unreachable thinkube-control.
  const port = await closedPort();
  const unreachable = await registerImage(options(env, 'img-a', { controlUrl: `http://127.0.0.1:${port}`, retry: { limit: 0 } }));
  t.equal(unreachable.outcome, 'sync-unreachable');
  t.equal(unreachable.changed, false, 'the ConfigMap already held the entry');
  t.match(unreachable.warnings[0], /image list could not be read/);

  // No controlUrl: the ConfigMap holds it, thinkube-control was not asked.
  const notSynced = await registerImage(options(env, 'img-b', { controlUrl: undefined }));
  t.equal(notSynced.outcome, 'not-synced');
  t.equal(notSynced.changed, true);
  t.match(notSynced.warnings[0], /thinkube-control was not asked to sync \(no controlUrl\): it reads the ConfigMap at its next start/);
});

t.test('synced but not visible: thinkube-control reads another cluster', async (t) => {
  const env = await cluster(t);
  const elsewhere = await startKubeStandin();
  const control = await startControlStandin({ kube: { url: elsewhere.url, token: elsewhere.adminToken, ca: elsewhere.ca } });
  t.teardown(async () => {
    await control.close();
    await elsewhere.close();
  });
  const result = await registerImage(options(env, 'img-a', { controlUrl: control.url, token: control.token }));
  t.equal(result.outcome, 'synced-not-visible');
  t.match(result.warnings[0], /the sync succeeded, but GET \/api\/v1\/harbor\/images\?search=img-a lists no image harbor.example.com\/library\/img-a:latest/);
});

t.test('check mode predicts changed exactly and writes nothing', async (t) => {
  const env = await cluster(t);
  seed(env.kube, [installerEntry('python')]);
  const rv = env.kube.get('configmaps', NS, CM).metadata.resourceVersion;
  const dry = await registerImage(options(env, 'img-a', { dryRun: true }));
  t.equal(dry.outcome, 'created');
  t.equal(dry.changed, true);
  t.same(writes(env.kube), [], 'nothing written');
  t.equal(env.kube.get('configmaps', NS, CM).metadata.resourceVersion, rv);
  t.notOk(env.control.requests.some((r) => r.method === 'POST'), 'no sync');
  const real = await registerImage(options(env, 'img-a'));
  t.equal(real.changed, dry.changed);
  t.equal(real.outcome, dry.outcome);
  const dryAgain = await registerImage(options(env, 'img-a', { dryRun: true }));
  t.equal(dryAgain.changed, false);
  t.equal(dryAgain.outcome, 'unchanged');
  // The entry holds, but thinkube-control lost the row (e.g. its database was reset): a sync is due.
  env.control.rows.clear();
  const dryMissing = await registerImage(options(env, 'img-a', { dryRun: true }));
  t.equal(dryMissing.changed, true);
  t.equal(dryMissing.outcome, 'created');
  const realMissing = await registerImage(options(env, 'img-a'));
  t.equal(realMissing.changed, true);
  t.equal(realMissing.outcome, 'created');
  t.same(writes(env.kube).filter((w) => w.startsWith('PUT')).length, 1, 'only the first real run wrote the ConfigMap');
});

t.test('Kubernetes failures name the server, verb, resource and namespace, never the token', async (t) => {
  const env = await cluster(t);
  const dir = env.dir;
  // 401: a token the API server does not know (expired).
  const expired = 'kube-expired-0123456789abcdef';
  const bad = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: env.kube.kubeconfig(dir, { token: expired, file: 'expired' }) } })));
  t.equal(bad.code, 'ERR_KUBE_AUTH');
  t.match(bad.message, `The Kubernetes API at ${env.kube.url} answered 401 Unauthorized to get configmaps/${CM} in namespace ${NS}`);
  t.match(bad.hint, /expired, revoked or wrong/);
  t.notOk(inspect(bad, { depth: 8 }).includes(expired), 'token not in the error');

  // 403: allowed to read, not to create.
  const reader = env.kube.addUser('reader', [{ verbs: ['get'], resources: ['configmaps'], namespaces: [NS] }]);
  const forbidden = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: env.kube.kubeconfig(dir, { token: reader, file: 'reader' }) } })));
  t.equal(forbidden.code, 'ERR_KUBE_FORBIDDEN');
  t.match(forbidden.message, `answered 403 Forbidden to create configmaps/${CM} in namespace ${NS}: configmaps is forbidden: User "reader" cannot create resource "configmaps" in API group "" in the namespace "${NS}"`);
  t.match(forbidden.hint, `grant a Role with verb create on configmaps in namespace ${NS}`);
  t.notOk(inspect(forbidden, { depth: 8 }).includes(reader));

  // Unreachable cluster.
  const port = await closedPort();
  const down = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: env.kube.kubeconfig(dir, { server: `https://127.0.0.1:${port}`, file: 'down' }) } })));
  t.equal(down.code, 'ERR_KUBE_UNREACHABLE');
  t.match(down.message, `Cannot reach the Kubernetes API at https://127.0.0.1:${port} to get configmaps/${CM} in namespace ${NS} (ECONNREFUSED)`);

  // A CA the server's certificate does not chain to.
  const otherCa = (await startKubeStandin().then(async (k) => (await k.close(), k.ca)));
  const untrusted = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: env.kube.kubeconfig(dir, { ca: otherCa, file: 'untrusted' }) } })));
  t.equal(untrusted.code, 'ERR_KUBE_UNREACHABLE');
  t.match(untrusted.hint, /certificate is not trusted/);

  // A namespace that does not exist.
  const noNs = await rejection(registerImage(options(env, 'img-a', { configmap: { mode: 'cluster', namespace: 'nowhere' } })));
  t.equal(noNs.code, 'ERR_KUBE');
  t.match(noNs.message, /answered 404 NotFound to create configmaps\/thinkube-custom-images-jupyter in namespace nowhere: namespaces "nowhere" not found/);
  t.match(noNs.hint, /Create the namespace nowhere first/);

  // A kubeconfig that is missing, or not YAML: named, its content never quoted.
  const missing = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: path.join(dir, 'nope') } })));
  t.equal(missing.code, 'ERR_KUBE_CONFIG');
  t.match(missing.message, `The kubeconfig ${path.join(dir, 'nope')} (kubernetes.kubeconfig) does not exist`);
  const broken = path.join(dir, 'broken');
  const secret = 'kube-secret-in-a-broken-file-0123456789';
  writeFileSync(broken, `users:\n- name: u\n  user:\n    token: ${secret}\n   bad: [indent\n`);
  const unreadable = await rejection(registerImage(options(env, 'img-a', { kubernetes: { kubeconfig: broken } })));
  t.equal(unreadable.code, 'ERR_KUBE_CONFIG');
  t.match(unreadable.message, /cannot be read at line \d+, column \d+: not valid YAML/);
  t.notOk(inspect(unreadable, { depth: 8 }).includes(secret), 'the file content is never quoted');
  t.same(writes(env.kube), [`POST /api/v1/namespaces/${NS}/configmaps 403`, 'POST /api/v1/namespaces/nowhere/configmaps 404'], 'no write succeeded');
  t.equal(env.kube.get('configmaps', NS, CM), undefined);
});

t.test('credentials: KUBECONFIG, a context, the in-cluster service account', async (t) => {
  const env = await cluster(t);
  const dir = env.dir;
  const viaEnv = KubeConnection.load({}, { env: { KUBECONFIG: env.kubeconfig } });
  t.equal(viaEnv.server, env.kube.url);
  t.match(viaEnv.source, `kubeconfig ${env.kubeconfig} (KUBECONFIG)`);
  t.equal(await new ConfigMapClient(viaEnv).get({ namespace: NS, name: 'absent' }), undefined, 'a missing ConfigMap is undefined');
  const noContext = await rejection(Promise.resolve().then(() => KubeConnection.load({ kubeconfig: env.kubeconfig, context: 'prod' })));
  t.equal(noContext.code, 'ERR_KUBE_CONFIG');
  t.match(noContext.message, /has no context prod \(it has: standin\)/);
  const nothing = await rejection(Promise.resolve().then(() => KubeConnection.load({}, { env: {}, home: dir })));
  t.equal(nothing.code, 'ERR_KUBE_CONFIG');
  t.match(nothing.hint, /configmap.mode: file/);

  // A pod's service account: token, CA and namespace files, KUBERNETES_SERVICE_HOST/PORT.
  const sa = env.kube.addUser('system:serviceaccount:thinkube-control:images', [{ verbs: ['get', 'create', 'update'], resources: ['configmaps'], namespaces: [NS] }]);
  const root = path.join(dir, 'pod');
  const saDir = path.join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(saDir, { recursive: true });
  writeFileSync(path.join(saDir, 'token'), sa);
  writeFileSync(path.join(saDir, 'ca.crt'), env.kube.ca);
  writeFileSync(path.join(saDir, 'namespace'), NS);
  const podEnv = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(env.kube.port) };
  const inPod = KubeConnection.load({}, { env: podEnv, serviceAccountRoot: root });
  t.equal(inPod.source, 'in-cluster service account');
  t.equal(inPod.server, env.kube.url);
  const client = new ConfigMapClient(inPod);
  const made = await client.modify({ namespace: NS, name: 'from-pod' }, () => ({ metadata: { name: 'from-pod' }, data: { a: '1' } }));
  t.equal(made.action, 'created');
  t.equal(env.kube.requests.at(-1).user, 'system:serviceaccount:thinkube-control:images', 'authenticated with the service account token');
  const denied = await rejection(client.modify({ namespace: 'default', name: 'x' }, () => ({ metadata: { name: 'x' } })));
  t.equal(denied.code, 'ERR_KUBE_FORBIDDEN');
  t.notOk(inspect(denied, { depth: 8 }).includes(sa));
  t.ok(readFileSync(path.join(saDir, 'token'), 'utf8') === sa);
});

t.test('the control URL forms reach the sync and the image list', async (t) => {
  const env = await cluster(t);
  for (const [i, controlUrl] of [env.control.baseUrl, `${env.control.baseUrl}/`, env.control.url, `${env.control.url}/v1`].entries()) {
    const name = `img-${i}`;
    const result = await registerImage(options(env, name, { controlUrl }));
    t.equal(result.outcome, 'created', `${controlUrl}: thinkube-control lists ${name}`);
  }
  t.same(
    [...new Set(env.control.requests.map((r) => `${r.method} ${r.path}`))].sort(),
    ['GET /api/v1/harbor/images', 'POST /api/v1/harbor/images/sync'],
  );
});

t.test('an image not scanned, or whose scan failed, says so instead of showing zeros', async (t) => {
  const env = await cluster(t);
  await registerImage(options(env, 'img-a', { scan: undefined }));
  await registerImage(options(env, 'img-b', { scan: { status: 'Timeout' } }));
  const a = env.control.rows.get('harbor.example.com/library/img-a:latest').metadata;
  const b = env.control.rows.get('harbor.example.com/library/img-b:latest').metadata;
  t.equal(a.scan_status, 'not-scanned');
  t.notOk('vulnerabilities' in a);
  t.equal(b.scan_status, 'Timeout');
  t.notOk('vulnerabilities' in b);
  const bad = await rejection(registerImage(options(env, 'img-c', { scan: { status: 'Success', critical: 1 } })));
  t.equal(bad.code, 'ERR_INVALID_OPTIONS');
  t.match(bad.message, /a finished scan \(status Success\) needs its counts/);
});

t.test("vulnerability counts land in each target's entry", async (t) => {
  const env = await cluster(t);
  const counts = { critical: 0, high: 2, medium: 5, low: 7 };
  const dir = env.dir;
  const base = (target, over = {}) => ({ ...options(env, 'img-v'), target, configmap: undefined, kubernetes: undefined, controlUrl: undefined, token: undefined, ...over });

  const catalogPath = path.join(dir, 'catalog.json');
  await registerImage(base('catalog', { catalogPath }));
  const cataloged = JSON.parse(readFileSync(catalogPath, 'utf8')).images['img-v'];
  t.same(cataloged.vulnerabilities, counts, 'catalog');
  t.equal(cataloged.scan_status, 'Success');
  t.equal(cataloged.scanner, 'Trivy 0.50.1');

  const api = await startControlStandin();
  t.teardown(() => api.close());
  await registerImage(base('api', { controlUrl: api.baseUrl, token: api.token }));
  t.same(api.images.get('img-v').vulnerabilities, counts, 'api record (accepted by the contract)');
  t.equal(api.images.get('img-v').scan_status, 'Success');

  const file = path.join(dir, 'cm.json');
  await registerImage(base('configmap', { configmap: { outputPath: file } }));
  const entry = JSON.parse(JSON.parse(readFileSync(file, 'utf8')).data['manifest.json']).images[0];
  t.same(entry.metadata.vulnerabilities, counts, 'ConfigMap file: the manifest entry metadata');
  t.equal(entry.metadata.scan_status, 'Success');

  await registerImage(options(env, 'img-v'));
  t.same(env.control.rows.get('harbor.example.com/library/img-v:latest').metadata.vulnerabilities, counts, 'ConfigMap in the cluster: thinkube-control lists them');

  // Not scanned: no counts anywhere, the status instead.
  await registerImage(base('catalog', { catalogPath, scan: undefined }));
  const unscanned = JSON.parse(readFileSync(catalogPath, 'utf8')).images['img-v'];
  t.equal(unscanned.scan_status, 'not-scanned');
  t.notOk('vulnerabilities' in unscanned);
  await registerImage(base('api', { controlUrl: api.baseUrl, token: api.token, scan: { status: 'Error' } }));
  t.equal(api.images.get('img-v').scan_status, 'Error');
  t.equal(api.images.get('img-v').vulnerabilities, undefined);
});

t.test("the file mode checks every entry too: another writer's bad entry is named, the file kept", async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'cm.json');
  const text = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: CM, namespace: NS, labels: { 'thinkube.io/image-manifest': 'true', 'thinkube.io/category': 'user' } }, data: { 'manifest.json': JSON.stringify({ manifest_version: '1.0', images: [{ ...installerEntry('python'), mirror_date: 'yesterday' }] }) } });
  writeFileSync(file, text);
  const error = await rejection(registerImage({ ...options({ control: {}, kubeconfig: '' }, 'img-a'), configmap: { outputPath: file }, kubernetes: undefined, controlUrl: undefined, token: undefined }));
  t.equal(error.code, 'ERR_MANIFEST_INVALID');
  t.match(error.message, /\(python\)\.mirror_date must be an ISO date/);
  t.equal(readFileSync(file, 'utf8'), text, 'the file is unchanged');
});
