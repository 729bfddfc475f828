// Executor kubernetes, a whole run against a stand-in cluster: no Kubernetes API server runs here,
// so the Kubernetes stand-in (test/helpers/kube-standin.js) with Argo's workflow controller and
// two "nodes" (test/helpers/argo-controller.js) takes the Workflow the pipeline submits, runs its
// DAG and each task's container command for real (Debian's buildah in a fresh storage root per
// step, against the password-protected test registry), writes status as Argo does and serves the
// pods' logs. The pipeline's client creates, watches (resuming after drops and 410s), reads logs,
// stops; the images are then published and registered locally as with any executor.
// Faults: a failing step, a watch dropped mid-build and one expired (410), a revoked token, and
// SIGINT to the CLI mid-run.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { repoRoot, testEnv, uniqueName } from './helpers/env.js';
import { startKubeStandin } from './helpers/kube-standin.js';
import { startArgoController } from './helpers/argo-controller.js';

t.setTimeout(30 * 60_000);

const env = testEnv();
const credentials = { username: env.registryUser, password: env.registryPassword };
const registry = new RegistryClient({ registry: env.registryAuth, credentials });
const dockerConfig = JSON.stringify({ auths: { [env.registryAuth]: { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') } } });

/** A stand-in cluster with Argo, the registry Secret in namespace argo, and a kubeconfig for `user` (default admin). */
async function cluster(t, { rules } = {}) {
  const kube = await startKubeStandin({ namespaces: ['default', 'argo', 'thinkube-control'] });
  const argo = startArgoController(kube, { podGcDelayMs: 60_000 });
  t.teardown(async () => {
    await argo.stop();
    await kube.close();
  });
  kube.put('secrets', { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/dockerconfigjson', metadata: { name: 'harbor-docker-config', namespace: 'argo' }, data: { 'config.json': Buffer.from(dockerConfig).toString('base64') } });
  const token = rules ? kube.addUser('ci', rules) : kube.adminToken;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-cluster-kc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { kube, argo, token, kubeconfig: kube.kubeconfig(dir, { token }) };
}

/** base (busybox, COPY, RUN), app FROM base, solo (its own); extra: more image folders. */
function imagesDir(t, project, extra = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-cluster-images-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  const image = (name, dockerfile, files = {}) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), dockerfile);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: ${name}\ndescription: test image ${name}\ncategory: test\nmetadata:\n  cpu_limit: 1\n  mem_limit: 512M\n`);
    for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, name, file), text);
  };
  const busybox = `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}\n`;
  // "RAN""MARK" prints RANMARK: the word shows only when the RUN step really runs.
  image('base', `${busybox}COPY greeting.txt /greeting.txt\nRUN echo "RAN""MARK" && cat /greeting.txt > /built.txt\n`, { 'greeting.txt': `hello ${project}\n` });
  image('app', `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${project}/base:latest\nCOPY app.txt /app.txt\n`, { 'app.txt': 'the app\n' });
  for (const [name, dockerfile] of Object.entries(extra)) image(name, dockerfile(busybox));
  return dir;
}

function options(dir, project, kubeconfig, extra = {}) {
  return {
    imagesDir: dir,
    registry: env.registryAuth,
    project,
    auth: credentials,
    executor: 'kubernetes',
    kubernetes: { connection: { kubeconfig } },
    keepInputTags: 0,
    registration: { target: 'catalog', catalogPath: path.join(dir, 'catalog.json') },
    ...extra,
  };
}

const workflows = (kube) => kube.list('workflows', 'argo', 'argoproj.io');
/** Names of the images registered in the run's catalog. */
const registered = (dir) => (existsSync(path.join(dir, 'catalog.json')) ? Object.keys(JSON.parse(readFileSync(path.join(dir, 'catalog.json'), 'utf8')).images).sort() : []);

t.test('a run builds through one Workflow on the cluster, then publishes and registers; a second run submits nothing', async (t) => {
  const project = uniqueName('cr').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, argo, kubeconfig } = await cluster(t);
  const dir = imagesDir(t, project, { solo: (from) => `${from}COPY Dockerfile /solo\n` });
  const events = [];
  const result = await runPipeline(options(dir, project, kubeconfig), { onEvent: (e) => events.push(e) });
  if (!t.equal(result.failed, false, 'no image fails')) t.comment(JSON.stringify(result.images.map((i) => i.error ?? i.reason), null, 1));
  t.same(result.images.map((i) => [i.name, i.status, i.changed]).sort(), [['app', 'done', true], ['base', 'done', true], ['solo', 'done', true]]);

  const [wf] = workflows(kube);
  t.equal(workflows(kube).length, 1, 'one Workflow for the whole run');
  t.equal(result.workflow.submitted, true);
  t.equal(result.workflow.name, wf.metadata.name);
  t.equal(result.workflow.phase, 'Succeeded');
  t.equal(wf.metadata.labels['thinkube.io/app-name'], 'thinkube-custom-images', 'visible where Thinkube users look');
  t.same(argo.started(wf.metadata.name).map((s) => s.task).sort(), ['build-app', 'build-base', 'build-solo']);
  t.ok(argo.started(wf.metadata.name).every((s) => s.host === 'node-amd64'), 'native builds on the amd64 node');
  const order = argo.started(wf.metadata.name).map((s) => s.task);
  t.ok(order.indexOf('build-app') > order.indexOf('build-base'), 'the dependant started after its base');

  // Published as a local build publishes: every tag names the digest the task reported and the registry holds.
  for (const image of result.images) {
    const head = await registry.headManifest(`${project}/${image.name}`, 'latest');
    t.equal(head?.digest, image.digest, `${image.name}: latest names the built digest`);
    const inTag = result.workflow.builds.find((b) => b.image === image.name);
    t.ok(inTag, `${image.name} was a task`);
    t.equal(image.engine, 'node-amd64', `${image.name}: the node that built it`);
  }
  const app = result.images.find((i) => i.name === 'app');
  const appBuild = result.workflow.builds.find((b) => b.image === 'app');
  t.match(appBuild.pushedAs, new RegExp(`:build-${wf.metadata.uid}-native$`), 'the dependant pushed under the Workflow tag (its inputs were not known)');
  t.equal((await registry.headManifest(`${project}/app`, `in-${app.inputDigest.slice(7, 39)}`))?.digest, app.digest, 'and has its input tag now');
  const layers = async (repo, ref) => JSON.parse((await registry.getManifest(repo, ref)).body).layers.map((l) => l.digest);
  const baseLayers = await layers(`${project}/base`, result.images.find((i) => i.name === 'base').digest);
  t.same((await layers(`${project}/app`, app.digest)).slice(0, baseLayers.length), baseLayers, 'app is built FROM the base this Workflow built');

  // Progress as a local build reports it: the steps and the log lines of each task.
  t.ok(events.some((e) => e.type === 'build-step' && /\(build-base\)$/.test(e.instruction) && /^RUN /.test(e.instruction)), 'build steps of the base');
  t.ok(events.some((e) => e.type === 'build-log' && e.line === '[build-base] RANMARK'), "the RUN step's output, streamed from the pod log");
  t.ok(events.some((e) => e.type === 'info' && new RegExp(`Submitted Workflow argo/${wf.metadata.name}`).test(e.message)));
  t.notOk(JSON.stringify(result).includes(env.registryPassword), 'no password in the result');
  t.notOk(JSON.stringify(events).includes(env.registryPassword), 'no password in the events');
  t.same(registered(dir), ['app', 'base', 'solo'], 'all three registered');

  // Nothing changed: planned locally, nothing reaches the cluster.
  const requestsBefore = kube.requests.length;
  const again = await runPipeline(options(dir, project, kubeconfig));
  t.equal(again.changed, false, 'the second run changes nothing');
  t.same(again.images.map((i) => i.status), ['done', 'done', 'done']);
  t.equal(workflows(kube).length, 1, 'no second Workflow');
  t.equal(kube.requests.length, requestsBefore, 'not one request to the cluster');
  t.notOk(again.workflow?.submitted, 'nothing submitted');
  const check = await runPipeline(options(dir, project, kubeconfig), { checkMode: true });
  t.equal(check.changed, false, 'check mode agrees');
});

t.test('a failing step fails its image with the step and the log tail; its dependant is not built; an unrelated image is', async (t) => {
  const project = uniqueName('cf').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, kubeconfig } = await cluster(t);
  const dir = imagesDir(t, project, { solo: (from) => `${from}COPY Dockerfile /solo\n` });
  writeFileSync(path.join(dir, 'base', 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}\nRUN echo "about to fail" && exit 3\n`);
  const result = await runPipeline(options(dir, project, kubeconfig));
  const byName = Object.fromEntries(result.images.map((i) => [i.name, i]));
  t.equal(result.failed, true);
  t.equal(byName.base.status, 'failed');
  t.equal(byName.base.error.code, 'ERR_BUILD_FAILED');
  t.match(byName.base.error.step, /^STEP 2\/\d+: RUN echo "about to fail" && exit 3$/, 'the failing Dockerfile step');
  t.ok(byName.base.error.logTail.includes('about to fail'), 'the log tail holds the output');
  t.match(byName.base.error.message, /task build-base of Workflow argo\/thinkube-images-/);
  t.equal(byName.app.status, 'skipped', 'the dependant is not built');
  t.equal(byName.solo.status, 'done', 'an unrelated image is built (the DAG does not fail fast)');
  t.same(registered(dir), ['solo'], 'only solo registered');
  t.equal(workflows(kube)[0].status.phase, 'Failed');
});

t.test('a watch dropped mid-build and one too old (410) are resumed; the run completes', async (t) => {
  const project = uniqueName('cw').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, argo, kubeconfig } = await cluster(t);
  const dir = imagesDir(t, project);
  const run = runPipeline(options(dir, project, kubeconfig));
  const started = await argo.whenRecorded({ event: 'started', task: 'build-base' });
  kube.dropWatches();
  await argo.whenRecorded({ event: 'started', task: 'build-app' });
  // Events the client has not seen are forgotten: its next watch names a version too old. (A
  // write elsewhere first, so that the compaction is past whatever the client has seen.)
  kube.put('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'bump', namespace: 'argo' }, data: { at: String(Date.now()) } });
  kube.compact();
  kube.dropWatches();
  const result = await run;
  if (!t.equal(result.failed, false, 'the run completes')) t.comment(JSON.stringify(result.images.map((i) => i.error ?? i.reason), null, 1));
  const watchPath = `/apis/argoproj.io/v1alpha1/namespaces/argo/workflows`;
  const watches = kube.requests.filter((r) => r.method === 'GET' && r.path === watchPath && /watch=true/.test(r.query));
  t.ok(watches.length >= 3, `watched ${watches.length} times`);
  t.ok(kube.requests.some((r) => r.method === 'GET' && r.path === `${watchPath}/${started.workflow}`), 'after the 410 the Workflow was read again');
  t.same(registered(dir), ['app', 'base']);
});

t.test('a token revoked mid-run: the images fail with the 401, nothing is registered, the message says the Workflow may still run', async (t) => {
  const project = uniqueName('ct').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, argo, token, kubeconfig } = await cluster(t, { rules: [{ verbs: ['*'], resources: ['*'], namespaces: ['argo'] }] });
  const dir = imagesDir(t, project);
  const run = runPipeline(options(dir, project, kubeconfig));
  await argo.whenRecorded({ event: 'started', task: 'build-base' });
  kube.revoke(token);
  kube.dropWatches();
  const result = await run;
  t.equal(result.failed, true);
  const base = result.images.find((i) => i.name === 'base');
  t.equal(base.error.code, 'ERR_KUBE_AUTH');
  t.match(base.error.message, /401 Unauthorized to watch workflows\.argoproj\.io/);
  t.match(base.error.message, /may still be running in the cluster/);
  t.notOk(JSON.stringify(result).includes(token), 'the token is never printed');
  t.same(registered(dir), [], 'nothing registered');
});

t.test('RBAC without create on workflows: a clear 403 naming the verb, resource and namespace, before any build', async (t) => {
  const project = uniqueName('cr').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, kubeconfig } = await cluster(t, { rules: [{ verbs: ['get', 'watch'], resources: ['workflows'], namespaces: ['argo'] }] });
  const dir = imagesDir(t, project);
  await t.rejects(runPipeline(options(dir, project, kubeconfig)), { code: 'ERR_KUBE_FORBIDDEN', message: /403 Forbidden to create workflows\.argoproj\.io in namespace argo/, hint: /verb create on workflows\.argoproj\.io in namespace argo/ });
  t.equal(workflows(kube).length, 0);
  t.same(registered(dir), [], 'nothing registered');
});

t.test('SIGINT to the CLI mid-run stops the Workflow; the result says so and nothing is registered', async (t) => {
  const project = uniqueName('cs').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const { kube, argo, kubeconfig } = await cluster(t);
  const dir = imagesDir(t, project);
  // A step that runs until it is killed, so that the interrupt lands mid-build.
  writeFileSync(path.join(dir, 'base', 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}\nRUN echo "WAITING""NOW" && sleep 600\n`);
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'pipeline.js'), dir, '--registry', env.registryAuth, '--project', project, '--auth-username', credentials.username, '--auth-password-env', 'TK_TEST_PASSWORD', '--keep-input-tags', '0', '--executor', 'kubernetes', '--kubernetes-connection-kubeconfig', kubeconfig, '--registration-target', 'catalog', '--registration-catalog-path', path.join(dir, 'catalog.json'), '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TK_TEST_PASSWORD: credentials.password } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', resolve));
  const started = await argo.whenRecorded({ event: 'started', task: 'build-base' });
  await argo.whenLogged('argo', started.pod, /WAITINGNOW/);
  child.kill('SIGINT');
  const code = await exited;
  t.not(code, 0, 'the command fails');
  let result;
  try {
    result = JSON.parse(stdout.trim().split('\n').pop());
  } catch {
    t.fail(`no JSON result: ${stdout} ${stderr.slice(-2000)}`);
    return;
  }
  t.equal(result.workflow?.stopped, true, 'the result says the Workflow was stopped');
  t.match(result.msg, /Workflow argo\/thinkube-images-\S+ was stopped/);
  t.equal(kube.get('workflows', 'argo', started.workflow, 'argoproj.io').spec.shutdown, 'Stop', 'stopped as argo stop does');
  const final = await argo.whenPhase('argo', started.workflow);
  t.equal(final.status.phase, 'Failed');
  t.match(final.status.message, /Stopped with strategy 'Stop'/);
  t.same(registered(dir), [], 'nothing registered');
  t.notOk(stdout.includes(credentials.password) || stderr.includes(credentials.password), 'no password printed');
});

t.test('kubernetes options given to a local run are reported as ignored, not silently dropped', async (t) => {
  const project = uniqueName('ci').replace(/[^a-z0-9-]/g, '').slice(0, 40);
  const dir = imagesDir(t, project);
  const result = await runPipeline({ ...options(dir, project, '/nowhere/kubeconfig'), executor: 'local', engine: { host: env.dockerHost } }, { checkMode: true });
  t.equal(result.failed, false);
  t.ok(result.warnings.some((w) => /The kubernetes options are ignored: executor is local/.test(w)), 'a warning says so');
  t.notOk(result.workflow, 'no Workflow');
});
