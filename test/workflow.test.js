// The Workflow renderer (a pure function of the plan) and the validation every rendered Workflow
// goes through: Argo's Workflow schema and Kubernetes' pod schemas from the pinned
// @kubernetes-models packages, plus unknown fields (which those validators let through, and Argo
// and the API server refuse). No service: the renderer talks to nothing.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { renderWorkflow } from '../dist/lib/build/argo/workflow.js';
import { validateWorkflow, workflowProblems } from '../dist/lib/build/argo/validate.js';
import { buildStepScript, shellQuote } from '../dist/lib/build/argo/step-script.js';
import { validate } from '../dist/lib/options/schema.js';
import { repoRoot } from './helpers/env.js';

const settings = validate('kubernetes-executor.schema.json', {});
const context = (image) => ({ registry: 'harbor.example.com', repository: `library/${image}-context`, tag: 'ctx-0123', reference: `harbor.example.com/library/${image}-context:ctx-0123`, contextDigest: 'sha256:0123', dockerfile: 'Dockerfile' });
const build = (image, extra = {}) => ({ image, repository: `harbor.example.com/library/${image}`, cache: `harbor.example.com/library/${image}/cache`, inputTag: `harbor.example.com/library/${image}:in-abc`, inputDigest: 'sha256:abc', context: context(image), buildArgs: { HARBOR_REGISTRY: 'harbor.example.com' }, labels: {}, ...extra });
const plan = (builds, indexes = [], extra = {}) => ({ registry: 'harbor.example.com', builds, indexes, settings: { ...settings, ...extra } });
const clone = (value) => JSON.parse(JSON.stringify(value));

t.test('a rendered plan is a valid Workflow with Thinkube labels, TTL, pod GC and only Secret names', async (t) => {
  const wf = renderWorkflow(plan([
    build('cpu', { resources: { cpu: 4, memory: '8G' } }),
    build('agent', { inputTag: undefined, inputDigest: undefined, from: { image: 'cpu', repository: 'harbor.example.com/library/cpu' } }),
    build('multi', { platform: 'linux/amd64' }),
    build('multi', { platform: 'linux/arm64' }),
  ], [{ image: 'multi', repository: 'harbor.example.com/library/multi', platforms: [{ platform: 'linux/amd64' }, { platform: 'linux/arm64' }] }]));
  t.same(workflowProblems(wf), []);
  t.equal(wf.metadata.generateName, 'thinkube-images-');
  t.equal(wf.metadata.namespace, 'argo');
  t.equal(wf.metadata.labels['thinkube.io/app-name'], 'thinkube-custom-images');
  t.equal(wf.spec.podMetadata.labels['thinkube.io/app-name'], 'thinkube-custom-images', 'pods carry the label too');
  t.same(wf.spec.ttlStrategy, { secondsAfterCompletion: 86400 });
  t.same(wf.spec.podGC, { strategy: 'OnPodSuccess' });
  t.equal(wf.spec.serviceAccountName, 'thinkube-image-builder');
  t.same(wf.spec.volumes[0].secret, { secretName: 'harbor-docker-config', items: [{ key: 'config.json', path: 'config.json' }] });
  const tasks = wf.spec.templates[0].dag.tasks;
  t.equal(wf.spec.templates[0].dag.failFast, false, 'a failed build does not stop unrelated ones from starting (Argo fails DAGs fast by default)');
  t.same(tasks.map((x) => x.name), ['build-cpu', 'build-agent', 'build-multi-amd64', 'build-multi-arm64', 'index-multi']);
  t.same(tasks[1].dependencies, ['build-cpu']);
  t.equal(tasks[1].arguments.parameters[0].value, 'harbor.example.com/library/cpu@{{tasks.build-cpu.outputs.parameters.digest}}');
  const cpu = wf.spec.templates.find((x) => x.name === 'build-cpu');
  t.same(cpu.nodeSelector, { 'kubernetes.io/arch': 'amd64' }, 'an image without platforms builds on a node of the native platform');
  t.same(cpu.container.resources.limits, { cpu: '4', memory: '8G' });
  t.equal(cpu.container.image, 'harbor.example.com/library/buildah:v1.43.4', 'builder: Harbor mirror of Buildah');
  t.same(cpu.container.env.find((e) => e.name === 'REGISTRY_AUTH_FILE'), { name: 'REGISTRY_AUTH_FILE', value: '/var/run/secrets/thinkube.io/registry/config.json' });
  const script = cpu.container.args[0];
  t.match(script, "'buildah' 'build' '--isolation' 'chroot' '--storage-driver' 'overlay' '--layers' '--cache-from' 'harbor.example.com/library/cpu/cache' '--cache-to' 'harbor.example.com/library/cpu/cache'");
  t.match(script, "'--build-arg' 'HARBOR_REGISTRY=harbor.example.com'");
  t.match(script, '--digestfile "$DIGEST_FILE"');
  t.notMatch(script, /tls-verify/, 'TLS is verified for a registry that is not on loopback');
  const arm = wf.spec.templates.find((x) => x.name === 'build-multi-arm64');
  t.same(arm.nodeSelector, { 'kubernetes.io/arch': 'arm64' });
  t.match(arm.container.args[0], "'--platform' 'linux/arm64'");
  t.same(tasks[4].dependencies, ['build-multi-amd64', 'build-multi-arm64']);
});

t.test('a base of the run that is not rebuilt is taken by its digest; loopback registries skip TLS', async (t) => {
  const wf = renderWorkflow({ ...plan([build('agent', { repository: 'localhost:5000/library/agent', from: { image: 'cpu', repository: 'localhost:5000/library/cpu', digest: 'sha256:' + 'a'.repeat(64) } })]), registry: 'localhost:5000' });
  const task = wf.spec.templates[0].dag.tasks[0];
  t.notOk(task.dependencies);
  const env = wf.spec.templates[1].container.env.find((e) => e.name === 'BASE_IMAGE');
  t.equal(env.value, `localhost:5000/library/cpu@sha256:${'a'.repeat(64)}`);
  t.match(wf.spec.templates[1].container.args[0], "'--tls-verify=false'");
  t.same(workflowProblems(wf), []);
});

t.test('nothing to build: no Workflow', async (t) => {
  t.equal(renderWorkflow(plan([])), undefined);
});

t.test('validation rejects unknown fields, wrong types and missing required fields, naming the path', async (t) => {
  const good = renderWorkflow(plan([build('cpu')]));
  const cases = [
    ['an unknown field in a template', (w) => (w.spec.templates[1].bogusField = 1), /data\/spec\/templates\/1\/bogusField is not a field/],
    ['an unknown field in a container', (w) => (w.spec.templates[1].container.imagePullSecretz = 'x'), /templates\/1\/container\/imagePullSecretz is not a field/],
    ['an unknown field in the spec', (w) => (w.spec.ttlSecondsAfterFinished = 5), /data\/spec\/ttlSecondsAfterFinished is not a field/],
    ['a wrong type in a template', (w) => (w.spec.templates[1].nodeSelector = { 'kubernetes.io/arch': 5 }), /nodeSelector\/kubernetes.io~1arch must be string|nodeSelector.*must be string/],
    ['a wrong type in a container', (w) => (w.spec.templates[1].container.args = 'not a list'), /container\/args must be array/],
    ['a bad quantity', (w) => (w.spec.templates[1].container.resources = { limits: { cpu: { n: 1 } } }), /limits\/cpu/],
    ['a container without its name', (w) => delete w.spec.templates[1].container.name, /must have required property 'name'|required property name/],
  ];
  for (const [what, change, pattern] of cases) {
    const bad = clone(good);
    change(bad);
    const problems = workflowProblems(bad);
    t.ok(problems.length > 0, `${what} is rejected`);
    t.match(problems.join('\n'), pattern, `${what}: the problem names the path`);
    t.throws(() => validateWorkflow(bad), { code: 'ERR_WORKFLOW' });
  }
});

t.test('build arguments Argo would read as expressions are refused', async (t) => {
  t.throws(() => renderWorkflow(plan([build('cpu', { buildArgs: { X: '{{workflow.name}}' } })])), { code: 'ERR_WORKFLOW', message: /"X" holds "\{\{"/ });
});

t.test('shell quoting survives quotes, dollars and newlines', async (t) => {
  t.equal(shellQuote(`it's $HOME\n`), `'it'\\''s $HOME\n'`);
  const script = buildStepScript({ contextImage: 'r/c:ctx-1', dockerfile: 'Dockerfile', destination: 'r/x:in-1', cacheRepository: 'r/x/cache', buildArgs: { A: `a'b $c` }, labels: {}, tlsVerify: true });
  t.match(script, `'--build-arg' 'A=a'\\''b $c'`);
  const uncached = buildStepScript({ contextImage: 'r/c:ctx-1', dockerfile: 'Dockerfile', destination: 'r/x:in-1', cacheRepository: 'r/x/cache', noCache: true, buildArgs: {}, labels: {}, tlsVerify: true });
  t.match(uncached, "'--no-cache'");
  t.notMatch(uncached, /cache-from|cache-to/, 'noCache: no registry cache either');
});

t.test('the field map was generated from the installed Argo models', async (t) => {
  const require = createRequire(import.meta.url);
  const version = JSON.parse(readFileSync(require.resolve('@kubernetes-models/argo-workflows/package.json'), 'utf8')).version;
  const generated = readFileSync(`${repoRoot}/lib/build/argo/generated/workflow-fields.ts`, 'utf8');
  t.match(generated, `from @kubernetes-models/argo-workflows ${version}.`, 'regenerate with npm run gen after changing the package');
});

t.test('the pipeline refuses what cannot go to a cluster before it contacts anything', async (t) => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { runPipeline } = await import('../dist/lib/pipeline/pipeline.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wf-images-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'solo'));
  writeFileSync(path.join(dir, 'solo', 'Dockerfile'), 'FROM scratch\nCOPY Dockerfile /\n');
  writeFileSync(path.join(dir, 'solo', 'image.yaml'), 'name: solo\ndisplay_name: solo\ndescription: one image\ncategory: test\n');
  // A registry nobody listens on: reaching it would fail differently.
  const base = { imagesDir: dir, registry: '127.0.0.1:9', executor: 'kubernetes', register: false };
  await t.rejects(runPipeline({ ...base, buildArgs: { TOKEN: 'a-secret-value' }, secretBuildArgs: ['TOKEN'] }, { checkMode: true }), { code: 'ERR_INVALID_OPTIONS', message: /secretBuildArgs \(TOKEN\) cannot go to a cluster build/ });
  // A real run loads the cluster connection first: a bad kubeconfig fails before any registry call.
  await t.rejects(runPipeline({ ...base, kubernetes: { connection: { kubeconfig: path.join(dir, 'no-such-kubeconfig') } } }), { code: 'ERR_KUBE_CONFIG', message: /no-such-kubeconfig .*does not exist/ });
  await t.rejects(runPipeline({ ...base, kubernetes: { namespace: 'Not_A_Namespace' } }, { checkMode: true }), { code: 'ERR_INVALID_OPTIONS', message: /kubernetes\.namespace/ });
});
