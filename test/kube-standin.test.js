// The Kubernetes stand-in and its Argo controller (test/helpers/kube-standin.js,
// test/helpers/argo-controller.js) hold to the API's contract as @kubernetes/client-node, the
// client the product uses, sees it: watch (replay, 410 after compaction, a cut connection,
// bookmarks, selectors), merge patch, generateName, 401 after a revoked token, RBAC 403 on
// workflows and pods/log, and Workflows run by the controller: DAG order, node and pod names,
// placement by architecture, outputs, a failing step, a Stop mid-step, a missing Secret, logs
// followed as they are written. The steps here are small shell commands (no registry needed);
// test/argo-controller.test.js runs a rendered build Workflow with buildah.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, Log, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { startKubeStandin } from './helpers/kube-standin.js';
import { addWorkflowResource, startArgoController, argoNodeId, argoPodName, fnv32a } from './helpers/argo-controller.js';

const WF = { group: 'argoproj.io', version: 'v1alpha1', plural: 'workflows' };
const NS = 'argo';
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kube-standin-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A stand-in (with the controller), and client-node configured from its kubeconfig. */
async function cluster(t, { controller = true, ...options } = {}) {
  const kube = await startKubeStandin({ namespaces: ['default', NS], ...options });
  const argo = controller ? startArgoController(kube, { podGcDelayMs: 60_000, graceMs: 500, ...options.controller }) : addWorkflowResource(kube);
  t.teardown(async () => {
    await argo?.stop();
    await kube.close();
  });
  const dir = tmp(t);
  const client = (token) => {
    const kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfig(dir, { token, file: `kc-${Math.random().toString(36).slice(2)}` }));
    return { kc, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
  };
  return { kube, argo, dir, client, ...client() };
}

/** A client-node Watch collecting its events; until(n) waits for n events (or for one matching a predicate), done resolves with the done() error (null when the stream ended). */
async function watchOf(kc, apiPath, query = {}) {
  const events = [];
  const waiters = [];
  let finish;
  const done = new Promise((resolve) => (finish = resolve));
  const notify = () => {
    for (const w of [...waiters]) if (w.test()) waiters.splice(waiters.indexOf(w), 1) && w.resolve();
  };
  const controller = await new Watch(kc).watch(
    apiPath,
    query,
    (type, object) => {
      events.push({ type, object });
      notify();
    },
    (error) => finish(error ?? null),
  );
  return {
    events,
    done,
    abort: () => controller.abort(),
    until: (n) => new Promise((resolve) => (waiters.push({ test: () => (typeof n === 'function' ? events.some(n) : events.length >= n), resolve }), notify())),
  };
}

const configMap = (name, labels = {}) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels }, data: { k: name } });

t.test('watch: replay after a resourceVersion, ADDED for current objects without one, selectors, DELETED with its own resourceVersion', async (t) => {
  const { kc, core } = await cluster(t, { controller: false });
  const a = await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('a', { app: 'x' }) });
  const b = await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('b', { app: 'y' }) });
  await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('c', { app: 'x' }) });

  const replay = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: a.metadata.resourceVersion });
  await replay.until(2);
  t.same(replay.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED b', 'ADDED c'], 'only the events after the given resourceVersion, in order');
  const fresh = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { labelSelector: 'app=x' });
  await fresh.until(2);
  t.same(fresh.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED a', 'ADDED c'], 'no resourceVersion: ADDED for each current object the selector matches');
  const one = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: '0', fieldSelector: 'metadata.name=b' });
  await one.until(1);

  // b moves into the selector (ADDED there), is changed, then deleted.
  await core.patchNamespacedConfigMap({ namespace: 'default', name: 'b', body: { metadata: { labels: { app: 'x' } } } }, merge);
  await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'b' });
  await replay.until(4);
  await fresh.until(4);
  await one.until(3);
  t.same(replay.events.slice(2).map((e) => `${e.type} ${e.object.metadata.name}`), ['MODIFIED b', 'DELETED b']);
  t.same(fresh.events.slice(2).map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED b', 'DELETED b'], 'an object that starts matching the selector comes as ADDED');
  t.same(one.events.map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED'], 'fieldSelector metadata.name: only that object');
  const [modified, deleted] = replay.events.slice(2).map((e) => Number(e.object.metadata.resourceVersion));
  t.ok(modified > Number(b.metadata.resourceVersion) && deleted > modified, 'each change has a newer resourceVersion, the deletion too');
  for (const w of [replay, fresh, one]) w.abort();

  const bad = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { fieldSelector: 'data.k=a' });
  t.equal((await bad.done)?.statusCode, 400, 'an unsupported field selector is 400');
});

t.test('watch: 410 Expired as an ERROR event after compaction; a cut connection; timeoutSeconds; bookmarks', async (t) => {
  const { kube, kc, core } = await cluster(t, { controller: false });
  const first = await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('a') });
  await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('b') });
  kube.compact();
  const old = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: first.metadata.resourceVersion });
  t.equal(await old.done, null, 'the stream ends after the error');
  t.equal(old.events.length, 1);
  t.equal(old.events[0].type, 'ERROR');
  t.match(old.events[0].object, { kind: 'Status', status: 'Failure', code: 410, reason: 'Expired', message: `too old resource version: ${first.metadata.resourceVersion} (${kube.revision})` });

  const fromNow = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: String(kube.revision), allowWatchBookmarks: true });
  await core.createNamespacedConfigMap({ namespace: 'default', body: configMap('c') });
  await fromNow.until(1);
  kube.bookmark();
  await fromNow.until(2);
  t.same(fromNow.events.map((e) => e.type), ['ADDED', 'BOOKMARK'], 'a watch from the current resourceVersion sees only new events, and the bookmark');
  t.same(fromNow.events[1].object, { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: String(kube.revision) } });
  t.equal(kube.dropWatches(), 1, 'one open watch cut');
  const cut = await fromNow.done;
  t.ok(cut instanceof Error, `a cut connection ends the watch with an error (${cut?.message})`);

  const ahead = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: String(kube.revision + 10) });
  t.equal((await ahead.done)?.statusCode, 504, 'a resourceVersion the server has not reached: 504 Timeout "Too large resource version"');
  const byUrl = await watchOf(kc, '/api/v1/namespaces/default/configmaps/c', {});
  await byUrl.until(1);
  t.same(byUrl.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED c'], 'a watch on an object URL sees only that object');
  byUrl.abort();
  kube.failNext({ path: '/api/v1/namespaces/default/configmaps', watch: true }, 503, { reason: 'ServiceUnavailable' });
  const list = await core.listNamespacedConfigMap({ namespace: 'default' });
  t.equal(list.items.length, 3, 'failNext({ watch: true }) leaves the list alone');
  const refused = await watchOf(kc, '/api/v1/namespaces/default/configmaps', {});
  t.equal((await refused.done)?.statusCode, 503, '...and fails the next watch');
  const timed = await watchOf(kc, '/api/v1/namespaces/default/configmaps', { timeoutSeconds: 1 });
  t.equal(await timed.done, null, 'timeoutSeconds ends the stream cleanly');
  t.equal(timed.events.length, 3, 'after the ADDED of the current objects');
  t.equal(kube.openWatches, 0);
});

t.test('PATCH: merge patch gives a new resourceVersion and a MODIFIED event; a no-op writes nothing; other types are refused as the API server does', async (t) => {
  const { kc, custom } = await cluster(t, { controller: false });
  const created = await custom.createNamespacedCustomObject({ ...WF, namespace: NS, body: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Workflow', metadata: { generateName: 'thinkube-images-' }, spec: { entrypoint: 'x', templates: [] } } });
  t.match(created.metadata.name, /^thinkube-images-[bcdfghjklmnpqrstvwxz2456789]{5}$/, 'generateName + 5 characters of the API server alphabet');
  t.equal(created.metadata.generateName, 'thinkube-images-');
  const name = created.metadata.name;
  const w = await watchOf(kc, `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows`, { resourceVersion: created.metadata.resourceVersion, fieldSelector: `metadata.name=${name}` });
  const patched = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: { shutdown: 'Stop', entrypoint: null } } }, merge);
  t.equal(patched.spec.shutdown, 'Stop');
  t.notOk('entrypoint' in patched.spec, 'null removes a field (RFC 7386)');
  t.ok(Number(patched.metadata.resourceVersion) > Number(created.metadata.resourceVersion));
  await w.until(1);
  t.same([w.events[0].type, w.events[0].object.metadata.resourceVersion], ['MODIFIED', patched.metadata.resourceVersion]);
  const again = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: { shutdown: 'Stop' } } }, merge);
  t.equal(again.metadata.resourceVersion, patched.metadata.resourceVersion, 'a patch that changes nothing keeps the resourceVersion');
  const stale = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { metadata: { resourceVersion: created.metadata.resourceVersion }, spec: { x: 1 } } }, merge).catch((e) => e);
  t.equal(stale.code, 409, 'a resourceVersion in the patch is a precondition');
  const strategic = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: {} } }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch)).catch((e) => e);
  t.equal(strategic.code, 415);
  t.match(JSON.parse(strategic.body).message, 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json');
  const asJsonPatch = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: {} } }).catch((e) => e);
  t.equal(asJsonPatch.code, 400, "client-node's default content type is JSON Patch: an object body is refused");
  const jsonPatched = await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: [{ op: 'replace', path: '/spec/shutdown', value: 'Terminate' }] });
  t.equal(jsonPatched.spec.shutdown, 'Terminate', 'JSON Patch (RFC 6902)');
  w.abort();
});

t.test('401 after the token is revoked; 403 from RBAC on workflows and on pods/log', async (t) => {
  const { kube, client } = await cluster(t);
  const token = kube.addUser('builder', [{ verbs: ['get', 'list', 'watch'], resources: ['workflows', 'pods'], namespaces: [NS] }]);
  const builder = client(token);
  const list = await builder.custom.listNamespacedCustomObject({ ...WF, namespace: NS });
  t.same(list.items, []);
  const created = await builder.custom.createNamespacedCustomObject({ ...WF, namespace: NS, body: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Workflow', metadata: { generateName: 'x-' }, spec: {} } }).catch((e) => e);
  t.ok(created instanceof ApiException);
  t.equal(created.code, 403);
  t.equal(JSON.parse(created.body).message, `workflows.argoproj.io is forbidden: User "builder" cannot create resource "workflows" in API group "argoproj.io" in the namespace "${NS}"`);
  kube.put('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: NS }, spec: { nodeName: 'node-amd64', containers: [{ name: 'main' }] } });
  const out = new PassThrough();
  const log = await new Log(builder.kc).log(NS, 'p', 'main', out).catch((e) => e);
  t.equal(log.code, 403, 'get on pods does not give pods/log');
  t.match(kube.requests.at(-1), { path: `/api/v1/namespaces/${NS}/pods/p/log`, status: 403 });

  const wrongGroup = client(kube.addUser('core-only', [{ apiGroups: [''], verbs: ['*'], resources: ['*'], namespaces: [NS] }]));
  t.equal((await wrongGroup.custom.listNamespacedCustomObject({ ...WF, namespace: NS }).catch((e) => e)).code, 403, "a rule's apiGroups limit it as a Role's do");

  kube.revoke(token);
  const revoked = await builder.custom.listNamespacedCustomObject({ ...WF, namespace: NS }).catch((e) => e);
  t.equal(revoked.code, 401, 'a revoked token is 401');
  t.match(kube.requests.at(-1), { user: 'invalid-token', status: 401 });
  t.notOk(JSON.stringify(kube.requests).includes(token), 'no token in the request log');
});

// ---- Workflows run by the controller (shell steps; the build steps are in argo-controller.test.js) ----

/** A Workflow shaped like the rendered ones: a DAG of container templates pinned by architecture. */
function workflow(tasks, { volumes } = {}) {
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Workflow',
    metadata: { generateName: 'thinkube-images-', labels: { 'thinkube.io/app-name': 'thinkube-custom-images' } },
    spec: {
      entrypoint: 'images',
      podMetadata: { labels: { 'app.kubernetes.io/part-of': 'thinkube' } },
      podGC: { strategy: 'OnWorkflowSuccess' },
      ...(volumes ? { volumes } : {}),
      templates: [
        { name: 'images', dag: { tasks: tasks.map(({ name, dependencies, args }) => ({ name, template: name, ...(dependencies ? { dependencies } : {}), ...(args ? { arguments: { parameters: Object.entries(args).map(([n, value]) => ({ name: n, value })) } } : {}) })) } },
        ...tasks.map(({ name, arch = 'amd64', script, args, mounts }) => ({
          name,
          nodeSelector: { 'kubernetes.io/arch': arch },
          ...(args ? { inputs: { parameters: Object.keys(args).map((n) => ({ name: n })) } } : {}),
          outputs: { parameters: [{ name: 'digest', valueFrom: { path: '/tmp/thinkube-digest' } }] },
          container: { name: 'main', image: 'busybox', command: ['/bin/sh', '-c'], args: [script], env: [{ name: 'DIGEST_FILE', value: '/tmp/thinkube-digest' }, ...(mounts ?? []).map((m) => ({ name: m.env, value: m.mountPath }))], volumeMounts: (mounts ?? []).map(({ env, ...m }) => m) },
        })),
      ],
    },
  };
}

async function submit(custom, body) {
  return custom.createNamespacedCustomObject({ ...WF, namespace: NS, body });
}

t.test('a Workflow runs its DAG: names as Argo v2 pod names, placement by architecture, outputs through parameters, status as the controller writes it', async (t) => {
  const { kube, argo, kc, custom, core } = await cluster(t);
  const wf = await submit(
    custom,
    workflow([
      { name: 'build-base', script: 'echo building base; printf sha256:%064d 1 > "$DIGEST_FILE"' },
      { name: 'build-app', arch: 'arm64', dependencies: ['build-base'], args: { 'base-image': 'reg/base@{{tasks.build-base.outputs.parameters.digest}}' }, script: 'echo "FROM {{inputs.parameters.base-image}} uid {{workflow.uid}}"; printf sha256:%064d 2 > "$DIGEST_FILE"' },
    ]),
  );
  const name = wf.metadata.name;
  const w = await watchOf(kc, `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows`, { resourceVersion: wf.metadata.resourceVersion });
  const done = await argo.whenPhase(NS, name);
  t.equal(done.status.phase, 'Succeeded');
  const phases = [];
  await w.until((e) => e.object.status?.phase === 'Succeeded');
  for (const e of w.events) if (phases.at(-1) !== e.object.status?.phase) phases.push(e.object.status?.phase);
  t.same(phases, ['Running', 'Succeeded'], 'the watch sees Running, then Succeeded');
  t.ok(w.events.every((e) => e.type === 'MODIFIED') && w.events.length >= 5, `every status write is a MODIFIED event (${w.events.length})`);
  t.same(new Set(w.events.map((e) => e.object.metadata.resourceVersion)).size, w.events.length, 'each with its own resourceVersion');
  w.abort();

  const baseNode = `${name}.build-base`;
  const baseId = `${name}-${fnv32a(baseNode)}`;
  t.equal(argoNodeId(name, baseNode), baseId);
  const nodes = done.status.nodes;
  t.same(Object.keys(nodes).sort(), [name, baseId, argoNodeId(name, `${name}.build-app`)].sort());
  t.match(nodes[name], { id: name, name, type: 'DAG', templateName: 'images', phase: 'Succeeded', children: [baseId] });
  t.match(nodes[baseId], { id: baseId, name: baseNode, displayName: 'build-base', type: 'Pod', templateName: 'build-base', phase: 'Succeeded', boundaryID: name, hostNodeName: 'node-amd64', children: [argoNodeId(name, `${name}.build-app`)] });
  t.same(nodes[baseId].outputs, { parameters: [{ name: 'digest', value: `sha256:${'0'.repeat(63)}1`, valueFrom: { path: '/tmp/thinkube-digest' } }], exitCode: '0' });
  const app = nodes[argoNodeId(name, `${name}.build-app`)];
  t.equal(app.hostNodeName, 'node-arm64', 'the arm64 task ran on the arm64 node');
  t.same(app.inputs.parameters, [{ name: 'base-image', value: `reg/base@sha256:${'0'.repeat(63)}1` }], "the base's digest reached its dependant");
  t.match(done.status, { progress: '2/2', startedAt: String, finishedAt: String });
  t.match(done.metadata.labels, { 'workflows.argoproj.io/phase': 'Succeeded', 'workflows.argoproj.io/completed': 'true' });
  t.same(argo.started(name), [{ task: 'build-base', host: 'node-amd64' }, { task: 'build-app', host: 'node-arm64' }], 'the dependant started after its base');

  const pod = argoPodName(name, `${name}.build-app`, 'build-app');
  t.equal(pod, `${name}-build-app-${fnv32a(`${name}.build-app`)}`);
  const stored = await core.readNamespacedPod({ namespace: NS, name: pod });
  t.match(stored.metadata.labels, { 'workflows.argoproj.io/workflow': name, 'workflows.argoproj.io/completed': 'true', 'app.kubernetes.io/part-of': 'thinkube' });
  t.match(stored.metadata.annotations, { 'workflows.argoproj.io/node-name': `${name}.build-app`, 'workflows.argoproj.io/node-id': app.id });
  t.same(stored.spec.containers.map((c) => c.name), ['wait', 'main']);
  t.match(stored, { spec: { nodeName: 'node-arm64' }, status: { phase: 'Succeeded' } });
  const out = new PassThrough();
  let text = '';
  out.on('data', (d) => (text += d));
  await new Log(kc).log(NS, pod, 'main', out);
  await new Promise((resolve) => out.on('end', resolve));
  t.equal(text, `FROM reg/base@sha256:${'0'.repeat(63)}1 uid ${wf.metadata.uid}\n`, 'the log: Argo substituted the input and {{workflow.uid}}');
  t.ok(kube.list('pods', NS).length === 2, 'podGC OnWorkflowSuccess: pods kept until the delay');
});

t.test('logs: followed as they are written and ending with the step; 400 for a container not in the pod or a pod with no node; 404 for no pod', async (t) => {
  const { kube, argo, kc, custom } = await cluster(t);
  const dir = tmp(t);
  const gate = path.join(dir, 'gate');
  const wf = await submit(
    custom,
    workflow([
      { name: 'slow', script: `echo first line; while [ ! -e ${gate} ]; do sleep 0.05; done; echo second line >&2; printf sha256:%064d 3 > "$DIGEST_FILE"` },
      { name: 'nowhere', arch: 's390x', script: 'echo never' },
    ]),
  );
  const name = wf.metadata.name;
  const pod = argoPodName(name, `${name}.slow`, 'slow');
  await argo.whenRecorded({ event: 'started', workflow: name, task: 'slow' });
  const out = new PassThrough();
  let text = '';
  const firstSeen = new Promise((resolve) => out.on('data', (d) => (text += d) && text.includes('first line') && resolve()));
  const ended = new Promise((resolve) => out.on('end', resolve));
  await new Log(kc).log(NS, pod, 'main', out, { follow: true });
  await firstSeen;
  t.equal(text, 'first line\n', 'the first line arrives while the step still runs');
  t.notOk(argo.record.some((r) => r.event === 'finished' && r.task === 'slow'), 'the step has not finished');
  writeFileSync(gate, '');
  await ended;
  t.equal(text, 'first line\nsecond line\n', 'stderr too; the stream ends with the step');

  const wrong = await new Log(kc).log(NS, pod, 'builder', new PassThrough()).catch((e) => e);
  t.equal(wrong.code, 400);
  t.match(kube.requests.at(-1), { status: 400 });
  const missing = await new Log(kc).log(NS, 'no-such-pod', 'main', new PassThrough()).catch((e) => e);
  t.equal(missing.code, 404);
  const unscheduled = argoPodName(name, `${name}.nowhere`, 'nowhere');
  const pending = await new Log(kc).log(NS, unscheduled, 'main', new PassThrough()).catch((e) => e);
  t.equal(pending.code, 400, 'a pod with no node has no log yet');
  const wfNow = kube.get('workflows', NS, name, 'argoproj.io');
  const nowhere = wfNow.status.nodes[argoNodeId(name, `${name}.nowhere`)];
  t.equal(nowhere.phase, 'Pending', 'no node matches s390x: the task stays Pending');
  t.match(nowhere.message, /^Unschedulable: 0\/2 nodes are available: 2 node\(s\) didn't match Pod's node affinity\/selector/);
  t.equal(wfNow.status.phase, 'Running', 'and the Workflow waits for it');
  t.match(kube.get('pods', NS, unscheduled).status.conditions, [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }]);
  await custom.deleteNamespacedCustomObject({ ...WF, namespace: NS, name });
  t.same(kube.list('pods', NS), [], 'deleting the Workflow deletes its pods');
});

t.test('a failing step fails its node and the Workflow; its dependants are Omitted; an independent task still runs', async (t) => {
  const { argo, custom } = await cluster(t);
  const wf = await submit(
    custom,
    workflow([
      { name: 'bad', script: 'echo about to fail; exit 3' },
      { name: 'after-bad', dependencies: ['bad'], script: 'echo never' },
      { name: 'other', arch: 'arm64', script: 'printf sha256:%064d 4 > "$DIGEST_FILE"' },
    ]),
  );
  const name = wf.metadata.name;
  const done = await argo.whenPhase(NS, name);
  t.equal(done.status.phase, 'Failed');
  t.notOk(done.status.message, 'a failed DAG gives the Workflow no message: the node has it');
  const nodes = done.status.nodes;
  t.match(nodes[argoNodeId(name, `${name}.bad`)], { phase: 'Failed', message: 'main: Error (exit code 3)', outputs: { exitCode: '3' } });
  t.match(nodes[argoNodeId(name, `${name}.after-bad`)], { type: 'Skipped', phase: 'Omitted', message: 'omitted: depends condition not met' });
  t.equal(nodes[argoNodeId(name, `${name}.other`)].phase, 'Succeeded');
  t.same(argo.started(name).map((s) => s.task).sort(), ['bad', 'other'], 'the omitted task never ran');
  t.equal(nodes[name].phase, 'Failed');
});

t.test('spec.shutdown Stop (a merge patch, as argo stop does) kills the running step; nothing new starts; the Workflow fails saying why', async (t) => {
  const { kube, argo, custom } = await cluster(t);
  const wf = await submit(
    custom,
    workflow([
      { name: 'long', script: 'echo running; exec sleep 600' },
      { name: 'next', dependencies: ['long'], script: 'echo never' },
    ]),
  );
  const name = wf.metadata.name;
  const pod = argoPodName(name, `${name}.long`, 'long');
  await argo.whenLogged(NS, pod, /running/);
  await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: { shutdown: 'Stop' } } }, merge);
  const done = await argo.whenPhase(NS, name);
  t.match(done.status, { phase: 'Failed', message: "Stopped with strategy 'Stop'" });
  t.match(done.status.nodes[argoNodeId(name, `${name}.long`)], { phase: 'Failed', message: 'workflow shutdown with strategy:  Stop' });
  t.notOk(done.status.nodes[argoNodeId(name, `${name}.next`)], 'the dependant never got a node');
  t.match(argo.record.find((r) => r.event === 'finished' && r.task === 'long'), { exitCode: 143 }, 'the step got SIGTERM (128 + 15)');
  t.equal(kube.get('pods', NS, pod).status.phase, 'Failed');
  t.same(argo.started(name).map((s) => s.task), ['long']);
});

t.test('a missing Secret keeps the pod in ContainerCreating with a FailedMount event naming it; creating the Secret lets it run', async (t) => {
  const { kube, argo, core, custom } = await cluster(t);
  const volumes = [{ name: 'registry-auth', secret: { secretName: 'harbor-docker-config', items: [{ key: 'config.json', path: 'config.json' }] } }];
  const wf = await submit(custom, workflow([{ name: 'auth', script: 'cat "$AUTH/config.json"; printf sha256:%064d 5 > "$DIGEST_FILE"', mounts: [{ name: 'registry-auth', mountPath: '/var/run/secrets/thinkube.io/registry', env: 'AUTH' }] }], { volumes }));
  const name = wf.metadata.name;
  await argo.whenRecorded({ event: 'waiting', workflow: name });
  const id = argoNodeId(name, `${name}.auth`);
  const waiting = kube.get('workflows', NS, name, 'argoproj.io');
  t.match(waiting.status.nodes[id], { phase: 'Pending', message: 'ContainerCreating', hostNodeName: 'node-amd64' });
  const events = await core.listNamespacedEvent({ namespace: NS });
  t.match(events.items, [{ reason: 'FailedMount', involvedObject: { name: argoPodName(name, `${name}.auth`, 'auth') }, message: 'MountVolume.SetUp failed for volume "registry-auth" : secret "harbor-docker-config" not found' }]);
  await core.createNamespacedSecret({ namespace: NS, body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'harbor-docker-config' }, type: 'kubernetes.io/dockerconfigjson', stringData: { 'config.json': '{"auths":{}}' } } });
  t.same(kube.get('secrets', NS, 'harbor-docker-config').data, { 'config.json': Buffer.from('{"auths":{}}').toString('base64') }, 'stringData is stored as base64 data');
  const done = await argo.whenPhase(NS, name);
  t.equal(done.status.phase, 'Succeeded');
  t.equal(argo.log(NS, argoPodName(name, `${name}.auth`, 'auth')), '{"auths":{}}', 'the step read the Secret where its volume is mounted');
});

t.test('deleting a running Workflow kills its step and deletes its pods; podGC deletes a finished pod, whose log is then 404', async (t) => {
  const { kube, argo, kc, custom } = await cluster(t);
  const wf = await submit(custom, workflow([{ name: 'long', script: 'echo running; exec sleep 600' }]));
  const name = wf.metadata.name;
  const pod = argoPodName(name, `${name}.long`, 'long');
  await argo.whenLogged(NS, pod, /running/);
  await custom.deleteNamespacedCustomObject({ ...WF, namespace: NS, name });
  t.match(await argo.whenRecorded({ event: 'finished', workflow: name, task: 'long' }), { exitCode: 143 }, 'the container got SIGTERM');
  t.match(argo.record.find((r) => r.event === 'pod-deleted' && r.workflow === name), { pod, by: 'garbage-collector' });
  t.equal(kube.get('pods', NS, pod), undefined);

  const gc = workflow([{ name: 'quick', script: 'echo done; printf sha256:%064d 6 > "$DIGEST_FILE"' }]);
  gc.spec.podGC = { strategy: 'OnPodCompletion', deleteDelayDuration: '0s' };
  const second = await submit(custom, gc);
  const quick = argoPodName(second.metadata.name, `${second.metadata.name}.quick`, 'quick');
  await argo.whenRecorded({ event: 'pod-deleted', pod: quick, by: 'podGC' });
  t.equal((await argo.whenPhase(NS, second.metadata.name)).status.phase, 'Succeeded');
  const gone = await new Log(kc).log(NS, quick, 'main', new PassThrough()).catch((e) => e);
  t.equal(gone.code, 404, 'the log of a collected pod is gone with it');
});

t.test('a node runs as many pods as it has slots: the next task of that architecture waits Unschedulable, then runs', async (t) => {
  const { argo, kube, custom } = await cluster(t);
  const gate = path.join(tmp(t), 'gate');
  const wf = await submit(
    custom,
    workflow([
      { name: 'first', script: `echo first; while [ ! -e ${gate} ]; do sleep 0.05; done; printf sha256:%064d 7 > "$DIGEST_FILE"` },
      { name: 'second', script: 'printf sha256:%064d 8 > "$DIGEST_FILE"' },
    ]),
  );
  const name = wf.metadata.name;
  const waiting = await argo.whenRecorded({ event: 'unschedulable', workflow: name, task: 'second' });
  t.equal(waiting.message, "0/2 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.");
  t.match(kube.get('workflows', NS, name, 'argoproj.io').status.nodes[argoNodeId(name, `${name}.second`)], { phase: 'Pending', message: `Unschedulable: ${waiting.message}` });
  t.same(argo.nodes.map((n) => [n.name, n.running]), [['node-amd64', [argoPodName(name, `${name}.first`, 'first')]], ['node-arm64', []]], 'the amd64 node is full');
  writeFileSync(gate, '');
  t.equal((await argo.whenPhase(NS, name)).status.phase, 'Succeeded');
  const order = argo.record.filter((r) => r.workflow === name && ['started', 'finished'].includes(r.event)).map((r) => `${r.event} ${r.task} ${r.host}`);
  t.same(order, ['started first node-amd64', 'finished first node-amd64', 'started second node-amd64', 'finished second node-amd64'], 'the second ran on the same node after the first');
});
