// The Argo controller stand-in runs a Workflow the pipeline rendered (check mode, as
// test/cluster-steps.test.js), submitted and watched through @kubernetes/client-node: the build
// step runs for real with buildah against the password-protected registry of test/env, with the
// registry credentials from a Secret stored in the Kubernetes stand-in, and the digest output
// parameter Argo reports is the one the registry holds. A Stop during a build kills buildah and
// leaves no mount or storage root behind.
import t from 'tap';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { scanContext } from '../dist/lib/source/context.js';
import { contextImageFor, pushContextImage } from '../dist/lib/build/argo/context-image.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { startKubeStandin } from './helpers/kube-standin.js';
import { argoNodeId, argoPodName, startArgoController } from './helpers/argo-controller.js';

t.setTimeout(10 * 60_000);

const env = testEnv();
const credentials = { username: env.registryUser, password: env.registryPassword };
const registry = new RegistryClient({ registry: env.registryAuth, credentials });
const project = uniqueName('argo').replace(/[^a-z0-9-]/g, '').slice(0, 40);
const WF = { group: 'argoproj.io', version: 'v1alpha1', plural: 'workflows' };
const NS = 'argo';

/** One busybox image; its Dockerfile's RUN is `run`. Returns the rendered Workflow after pushing its context. */
async function rendered(t, run) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'argo-images-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  mkdirSync(path.join(dir, 'tiny'));
  writeFileSync(path.join(dir, 'tiny', 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}\nRUN ${run}\n`);
  writeFileSync(path.join(dir, 'tiny', 'image.yaml'), 'name: tiny\ndisplay_name: tiny\ndescription: test image tiny\ncategory: test\n');
  const result = await runPipeline({ imagesDir: dir, registry: env.registryAuth, project, auth: credentials, executor: 'kubernetes', register: false }, { checkMode: true });
  const scan = await scanContext(path.join(dir, 'tiny'));
  await pushContextImage(registry, await contextImageFor(env.registryAuth, `${project}/tiny`, scan), scan);
  return result.workflow.manifest;
}

async function cluster(t) {
  const kube = await startKubeStandin({ namespaces: ['default', NS] });
  const argo = startArgoController(kube, { podGcDelayMs: 60_000 });
  t.teardown(async () => {
    await argo.stop();
    await kube.close();
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'argo-kc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfig(dir, { namespace: NS }));
  const core = kc.makeApiClient(CoreV1Api);
  // The registry credentials as Thinkube keeps them: a dockerconfigjson Secret, key config.json.
  const config = JSON.stringify({ auths: { [env.registryAuth]: { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') } } });
  await core.createNamespacedSecret({ namespace: NS, body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'harbor-docker-config' }, type: 'kubernetes.io/dockerconfigjson', data: { 'config.json': Buffer.from(config).toString('base64') } } });
  return { kube, argo, kc, custom: kc.makeApiClient(CustomObjectsApi) };
}

/** Resolves with the Workflow from a client-node watch once its phase is a finished one. */
function watchUntilFinished(kc, name, resourceVersion) {
  return new Promise((resolve, reject) => {
    const phases = [];
    let controller;
    new Watch(kc)
      .watch(`/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows`, { fieldSelector: `metadata.name=${name}`, resourceVersion }, (type, object) => {
        if (phases.at(-1) !== object.status?.phase) phases.push(object.status?.phase);
        if (['Succeeded', 'Failed', 'Error'].includes(object.status?.phase)) {
          controller?.abort();
          resolve({ workflow: object, phases });
        }
      }, (error) => error && error.name !== 'AbortError' && reject(error))
      .then((c) => (controller = c));
  });
}

const stepDirs = () => readdirSync(os.tmpdir()).filter((d) => d.startsWith('step-'));
const stepMounts = () => readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(`${os.tmpdir()}/step-`));

t.test('a rendered Workflow, submitted and watched with client-node, builds with buildah; the digest Argo reports is the registry\'s', async (t) => {
  const { kube, argo, kc, custom } = await cluster(t);
  const manifest = await rendered(t, `echo built-${Date.now()} > /stamp`);
  const created = await custom.createNamespacedCustomObject({ ...WF, namespace: NS, body: manifest });
  const name = created.metadata.name;
  t.match(name, /^thinkube-images-[a-z0-9]{5}$/);
  const { workflow, phases } = await watchUntilFinished(kc, name, created.metadata.resourceVersion);
  const id = argoNodeId(name, `${name}.build-tiny`);
  const node = workflow.status.nodes[id];
  if (!t.equal(workflow.status.phase, 'Succeeded', 'the Workflow succeeds')) t.comment(argo.log(NS, argoPodName(name, `${name}.build-tiny`, 'build-tiny'))?.slice(-3000));
  t.same(phases, ['Running', 'Succeeded']);
  t.match(node, { type: 'Pod', phase: 'Succeeded', hostNodeName: 'node-amd64', templateName: 'build-tiny' });
  const digest = node.outputs.parameters.find((p) => p.name === 'digest').value;
  const tag = manifest.spec.templates.find((x) => x.name === 'build-tiny').container.args[0].match(/-t '([^']+)'/)[1].split(':').pop();
  const head = await registry.headManifest(`${project}/tiny`, tag);
  t.equal(digest, head.digest, 'the digest output parameter is what the registry holds');
  const log = argo.log(NS, argoPodName(name, `${name}.build-tiny`, 'build-tiny'));
  t.match(log, new RegExp(`pushed .*${project}/tiny:${tag}@${digest}`), "the pod's log ends with the push");
  t.notOk(JSON.stringify(kube.get('workflows', NS, name, 'argoproj.io')).includes(env.registryPassword), 'no password in the Workflow');
});

t.test('Stop during a buildah build: buildah is killed, the node and the Workflow fail, no mount or storage root is left', async (t) => {
  const { argo, custom } = await cluster(t);
  const before = stepDirs();
  const manifest = await rendered(t, 'echo WAITING-FOR-STOP && sleep 600');
  const created = await custom.createNamespacedCustomObject({ ...WF, namespace: NS, body: manifest });
  const name = created.metadata.name;
  const pod = argoPodName(name, `${name}.build-tiny`, 'build-tiny');
  await argo.whenLogged(NS, pod, /WAITING-FOR-STOP/);
  t.ok(stepMounts().length > 0, 'the build is running in its own storage root');
  await custom.patchNamespacedCustomObject({ ...WF, namespace: NS, name, body: { spec: { shutdown: 'Stop' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  const done = await argo.whenPhase(NS, name);
  t.match(done.status, { phase: 'Failed', message: "Stopped with strategy 'Stop'" });
  t.match(done.status.nodes[argoNodeId(name, `${name}.build-tiny`)], { phase: 'Failed', message: 'workflow shutdown with strategy:  Stop' });
  await argo.idle();
  t.same(stepMounts(), [], 'no overlay mount left');
  t.same(stepDirs(), before, 'the storage root is removed');
});
