// Executor kubernetes, proven without a cluster (no Kubernetes API server runs here): the run's
// plan is rendered as an Argo Workflow in check mode, validated, and then every task's container
// command runs for real with Debian's buildah, each in a fresh storage root as a new pod would,
// against the password-protected registry of test/env: the context images are pulled, images are
// built and pushed, and each digest a step reports is the one the registry holds. A base built
// in the same Workflow reaches its dependant as the task output, and a multi-arch image gets its
// index task. A second build with nothing changed takes its layers from the registry cache.
import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { scanContext } from '../dist/lib/source/context.js';
import { contextImageFor, pushContextImage } from '../dist/lib/build/argo/context-image.js';
import { workflowProblems } from '../dist/lib/build/argo/validate.js';
import { repoRoot, testEnv, uniqueName } from './helpers/env.js';
import { runDag, runStep } from './helpers/step-runner.js';
import { hostVars, recap, runPlaybook } from './helpers/ansible.js';

t.setTimeout(20 * 60_000);

const env = testEnv();
const credentials = { username: env.registryUser, password: env.registryPassword };
const registry = new RegistryClient({ registry: env.registryAuth, credentials });
const dockerConfig = JSON.stringify({ auths: { [env.registryAuth]: { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') } } });
const secrets = { 'harbor-docker-config': { 'config.json': dockerConfig } };
const project = uniqueName('cl').replace(/[^a-z0-9-]/g, '').slice(0, 40);

function imagesDir(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cluster-images-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  const image = (name, dockerfile, yaml, files = {}) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), dockerfile);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: ${name}\ndescription: test image ${name}\ncategory: test\n${yaml}`);
    for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, name, file), text);
  };
  // The RUN echoes a word the step line does not show ("RAN""MARK" is printed as RANMARK).
  image('base', `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}\nCOPY greeting.txt /greeting.txt\nRUN echo "RAN""MARK" && cat /greeting.txt > /built.txt\n`, 'metadata:\n  cpu_limit: 1\n  mem_limit: 512M\n', { 'greeting.txt': 'hello from the base\n' });
  image('app', `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${project}/base:latest\nCOPY app.txt /app.txt\n`, '', { 'app.txt': 'the app\n' });
  image('multi', 'FROM scratch\nCOPY data.txt /data.txt\n', 'platforms:\n  - linux/amd64\n  - linux/arm64\n', { 'data.txt': 'data for every platform\n' });
  return dir;
}

const options = (dir) => ({ imagesDir: dir, registry: env.registryAuth, project, auth: credentials, executor: 'kubernetes', register: false });

t.test('check mode renders one valid Workflow; its tasks run for real with buildah', async (t) => {
  const dir = imagesDir(t);
  const result = await runPipeline(options(dir), { checkMode: true });
  if (!t.equal(result.failed, false, 'no image fails the plan')) t.comment(JSON.stringify(result.images.map((i) => i.error ?? i.reason)));
  const wf = result.workflow?.manifest;
  t.ok(wf, 'a Workflow is rendered');
  t.same(workflowProblems(wf), [], 'valid for Argo and Kubernetes');
  t.notOk(JSON.stringify(result).includes(env.registryPassword), 'no password in the result or the Workflow');
  t.same(result.workflow.tasks.sort(), ['build-app', 'build-base', 'build-multi-amd64', 'build-multi-arm64', 'index-multi'].sort());
  const dag = wf.spec.templates[0].dag.tasks;
  t.same(dag.find((x) => x.name === 'build-app').dependencies, ['build-base'], 'the dependant waits for its base');
  t.same(dag.find((x) => x.name === 'index-multi').dependencies.sort(), ['build-multi-amd64', 'build-multi-arm64']);
  const base = wf.spec.templates.find((x) => x.name === 'build-base');
  t.same(base.nodeSelector, { 'kubernetes.io/arch': 'amd64' });
  t.same(base.container.resources, { requests: { cpu: '1', memory: '512M' }, limits: { cpu: '1', memory: '512M' } }, 'resources from image.yaml');
  t.same(wf.spec.templates.find((x) => x.name === 'build-multi-arm64').nodeSelector, { 'kubernetes.io/arch': 'arm64' });
  t.ok(result.workflow.contexts.every((c) => c.upload), 'check mode: every context would be uploaded');

  // What the client uploads before it submits: each context as a one-layer image; a second time nothing goes up.
  for (const name of ['base', 'app', 'multi']) {
    const scan = await scanContext(path.join(dir, name));
    const image = await contextImageFor(env.registryAuth, `${project}/${name}`, scan);
    t.equal(image.reference, result.workflow.contexts.find((c) => c.image === name).reference, `${name}: the context the Workflow names`);
    const first = await pushContextImage(registry, image, scan);
    t.equal(first.uploaded, true);
    const again = await pushContextImage(registry, image, scan);
    t.same([again.existed, again.uploaded], [true, false], `${name}: an unchanged context is not uploaded again`);
  }

  const uid = `uid-${Date.now().toString(36)}`;
  const results = await runDag(wf, { secrets, workflowUid: uid });
  for (const [task, r] of Object.entries(results)) {
    t.match(r.outputs.digest, /^sha256:[0-9a-f]{64}$/, `${task} reports a digest`);
  }
  // Each reported digest is the registry's for the tag the step pushed.
  const baseTag = base.container.args[0].match(/-t '([^']+)'/)[1];
  t.match(baseTag, new RegExp(`${project}/base:in-[0-9a-f]{32}$`), 'the base pushes its input tag');
  const head = await registry.headManifest(`${project}/base`, baseTag.split(':').pop());
  t.equal(head.digest, results['build-base'].outputs.digest, "the base's digest is the registry's");
  t.match(results['build-base'].output, /RANMARK/, 'the first build runs the RUN step');
  const appHead = await registry.headManifest(`${project}/app`, `build-${uid}-native`);
  t.equal(appHead.digest, results['build-app'].outputs.digest, "the dependant's digest is the registry's (Workflow tag)");
  const layers = async (repo, ref) => JSON.parse((await registry.getManifest(repo, ref)).body).layers.map((l) => l.digest);
  const baseLayers = await layers(`${project}/base`, head.digest);
  const appLayers = await layers(`${project}/app`, appHead.digest);
  t.same(appLayers.slice(0, baseLayers.length), baseLayers, 'the dependant is built FROM the base the Workflow just built');
  const index = await registry.getManifest(`${project}/multi`, `build-${uid}`);
  t.equal(index.digest, results['index-multi'].outputs.digest, "the index's digest is the registry's");
  const platforms = JSON.parse(index.body).manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort();
  t.same(platforms, ['linux/amd64', 'linux/arm64']);
  t.same(JSON.parse(index.body).manifests.map((m) => m.digest).sort(), [results['build-multi-amd64'].outputs.digest, results['build-multi-arm64'].outputs.digest].sort());

  // Nothing changed: the same step in a new storage root takes its layers from the registry cache.
  const second = await runStep(wf, 'build-base', { secrets, workflowUid: uid });
  if (!t.equal(second.code, 0, 'the second build succeeds')) t.comment(second.output.slice(-2000));
  t.notMatch(second.output, /RANMARK/, 'the RUN step did not run again');
  // Every step after FROM (COPY, RUN and the labels) comes from the registry; none is made again.
  const steps = Number(/STEP 1\/(\d+):/.exec(second.output)?.[1]);
  t.ok(steps >= 3, `${steps} steps`);
  t.equal(second.output.match(/Cache pulled from remote/g)?.length, steps - 1, 'every step after FROM came from the registry cache');
  const again = await registry.headManifest(`${project}/base`, baseTag.split(':').pop());
  t.equal(again.digest, second.outputs.digest, "the rebuilt base's digest is the registry's");
});

t.test('an image built on a rebuilt image of the run in a later stage fails alone', async (t) => {
  const dir = imagesDir(t);
  mkdirSync(path.join(dir, 'odd'));
  writeFileSync(path.join(dir, 'odd', 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag} AS tools\nFROM \${HARBOR_REGISTRY}/${project}/base:latest\nCOPY --from=tools /bin/busybox /bb\n`);
  writeFileSync(path.join(dir, 'odd', 'image.yaml'), 'name: odd\ndisplay_name: odd\ndescription: later-stage base\ncategory: test\n');
  // A base edit so that base is rebuilt whatever the test above pushed.
  writeFileSync(path.join(dir, 'base', 'greeting.txt'), `changed ${Date.now()}\n`);
  const result = await runPipeline(options(dir), { checkMode: true });
  const odd = result.images.find((i) => i.name === 'odd');
  t.equal(odd.status, 'failed');
  t.equal(odd.error.code, 'ERR_WORKFLOW');
  t.match(odd.error.message, /odd builds on base \(rebuilt by this run\) in a stage other than the first/);
  t.notOk(result.workflow.tasks.includes('build-odd'), 'left out of the Workflow');
  t.ok(result.workflow.tasks.includes('build-app'), 'the other images are still in it');
  t.same(workflowProblems(result.workflow.manifest), []);
});

t.test('a real run against a cluster that does not answer fails clearly, naming the server and the call', async (t) => {
  const dir = imagesDir(t);
  const { startKubeStandin } = await import('./helpers/kube-standin.js');
  const kube = await startKubeStandin({ namespaces: ['argo'] });
  const kubeconfig = kube.kubeconfig(dir, { file: 'gone-kubeconfig' });
  await kube.close(); // nobody listens there any more
  writeFileSync(path.join(dir, 'base', 'greeting.txt'), `unreachable ${Date.now()}\n`); // something to submit
  await t.rejects(runPipeline({ ...options(dir), images: ['base'], kubernetes: { connection: { kubeconfig, timeoutSeconds: 5 } } }), {
    code: 'ERR_KUBE_UNREACHABLE',
    message: new RegExp(`Cannot reach the Kubernetes API at ${kube.url.replace(/[.]/g, '\\.')} to create workflows\\.argoproj\\.io in namespace argo`),
    hint: /server address of the kubeconfig/,
  });
});

t.test('the CLI in check mode prints a Workflow that validates, and no secret', async (t) => {
  const dir = imagesDir(t);
  const { spawnSync } = await import('node:child_process');
  const run = spawnSync(process.execPath, ['bin/pipeline.js', dir, '--registry', env.registryAuth, '--project', project, '--auth-username', env.registryUser, '--auth-password-env', 'REG_PASSWORD', '--no-register', '--executor', 'kubernetes', '--kubernetes-print-workflow', '--kubernetes-namespace', 'builds', '--check'], {
    cwd: repoRoot,
    env: { ...process.env, REG_PASSWORD: env.registryPassword },
    encoding: 'utf8',
  });
  if (!t.equal(run.status, 0, 'the CLI succeeds')) t.comment(run.stderr.slice(-2000));
  const result = JSON.parse(run.stdout);
  const wf = result.workflow.manifest;
  t.equal(wf.apiVersion, 'argoproj.io/v1alpha1', 'the manifest keeps its own field names');
  t.equal(wf.metadata.namespace, 'builds');
  t.same(workflowProblems(wf), []);
  t.equal(result.workflow.submitted, false);
  t.match(run.stderr, /Workflow \(not submitted\):[\s\S]*kind: Workflow/, 'printed as YAML on the progress output');
  t.notOk(run.stdout.includes(env.registryPassword) || run.stderr.includes(env.registryPassword), 'no password anywhere');
});

t.test('the playbook with build_executor=kubernetes: check mode renders the Workflow; a run builds a two-image set on the stand-in cluster and registers both; the next run changes nothing', async (t) => {
  const dir = imagesDir(t);
  const { startKubeStandin } = await import('./helpers/kube-standin.js');
  const { startArgoController } = await import('./helpers/argo-controller.js');
  const { startControlStandin } = await import('./helpers/control-standin.js');
  const kube = await startKubeStandin({ namespaces: ['builds', 'thinkube-control'] });
  const argo = startArgoController(kube, { podGcDelayMs: 60_000 });
  const control = await startControlStandin({ kube: { url: kube.url, token: kube.adminToken, ca: kube.ca } });
  t.teardown(async () => {
    await control.close();
    await argo.stop();
    await kube.close();
  });
  kube.put('secrets', { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/dockerconfigjson', metadata: { name: 'harbor-docker-config', namespace: 'builds' }, data: { 'config.json': Buffer.from(dockerConfig).toString('base64') } });
  const kubeconfig = kube.kubeconfig(dir);
  const vars = {
    harbor_registry: env.registryAuth,
    harbor_username: env.registryUser,
    harbor_admin_password: env.registryPassword,
    harbor_project: project,
    images_dir: dir,
    images: ['base', 'app'],
    // With a kubeconfig the playbook registers through the ConfigMap thinkube-control syncs.
    kubeconfig,
    thinkube_control_url: control.baseUrl,
    thinkube_control_token: control.token,
    keep_input_tags: 0,
    build_executor: 'kubernetes',
    build_kubernetes: { namespace: 'builds' },
  };
  // Something for the Workflow to build whatever earlier tests pushed.
  writeFileSync(path.join(dir, 'base', 'greeting.txt'), `playbook ${Date.now()}\n`);
  const check = await runPlaybook({ extraVars: vars, args: ['--check', '-v'] });
  if (!t.equal(check.code, 0, 'the check run succeeds')) t.comment(check.output.slice(-3000));
  t.match(check.output, /"apiVersion": "argoproj.io\/v1alpha1"/, 'the module returns the Workflow with its own field names');
  t.match(check.output, /"namespace": "builds"/);
  t.equal(kube.list('workflows', 'builds', 'argoproj.io').length, 0, 'check mode submits nothing');

  const real = await runPlaybook({ extraVars: vars, args: ['-v'] });
  if (!t.equal(real.code, 0, 'the real run succeeds')) t.comment(real.output.slice(-4000));
  const [wf] = kube.list('workflows', 'builds', 'argoproj.io');
  t.equal(wf?.status?.phase, 'Succeeded', 'one Workflow ran to the end');
  t.same(argo.started(wf.metadata.name).map((s) => s.task), ['build-base', 'build-app'], 'the base first, then the image built on it');
  for (const name of ['base', 'app']) t.match(real.output, new RegExp(`${name}: done sha256:[0-9a-f]{64}, changed=true - built on engine node-amd64 .*registration created`), `${name}: built on the cluster and registered`);
  const listed = await (await fetch(`${control.baseUrl}/api/v1/harbor/images?search=${project}`, { headers: { authorization: `Bearer ${control.token}` } })).json();
  t.same(listed.images.map((i) => i.name).sort(), ['app', 'base'], 'thinkube-control lists both');
  t.notOk(real.output.includes(env.registryPassword) || real.output.includes(kube.adminToken) || real.output.includes(control.token), 'no secret in the output');

  const again = await runPlaybook({ extraVars: vars });
  if (!t.equal(again.code, 0, 'the second run succeeds')) t.comment(again.output.slice(-3000));
  t.equal(recap(again.output)?.changed, 0, 'the second run changes nothing');
  t.equal(kube.list('workflows', 'builds', 'argoproj.io').length, 1, 'and submits no Workflow');
});

t.test('playbook 20 with build_executor=kubernetes: one builder host, build_platforms for the play; check mode renders a task per platform and the index', async (t) => {
  const dir = imagesDir(t);
  writeFileSync(path.join(dir, 'multi', 'data.txt'), `playbook 20 ${Date.now()}\n`); // something to build
  const run = await runPlaybook({
    playbook: path.join(repoRoot, 'ansible', '20_build_multiarch.yaml'),
    // No build_platform on the host: the cluster builds every platform of build_platforms.
    inventory: `[builders]\nrunner ${hostVars()}\n`,
    extraVars: {
      harbor_registry: env.registryAuth,
      harbor_username: env.registryUser,
      harbor_admin_password: env.registryPassword,
      harbor_project: project,
      images_dir: dir,
      images: ['multi'],
      register_images: false,
      build_executor: 'kubernetes',
      build_platforms: ['linux/amd64', 'linux/arm64'],
      build_kubernetes: { namespace: 'builds' },
    },
    args: ['--check', '-v'],
  });
  if (!t.equal(run.code, 0, 'the check run succeeds')) t.comment(run.output.slice(-3000));
  for (const task of ['build-multi-amd64', 'build-multi-arm64', 'index-multi']) t.match(run.output, new RegExp(`"name": "${task}"`), `the Workflow has ${task}`);
  t.notOk(run.output.includes(env.registryPassword), 'no password in the output');
});
