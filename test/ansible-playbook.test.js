// ansible/10_build_jupyter_images.yaml run by the real ansible-playbook against the real engine
// and password-protected registry, with a thinkube-control stand-in that follows the contract.
import t from 'tap';
import { chmodSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testEnv, uniqueName } from './helpers/env.js';
import { hostVars, runPlaybook, recap } from './helpers/ansible.js';
import { startControlStandin } from './helpers/control-standin.js';
import { RegistryClient } from '../dist/lib/registry/client.js';

const env = testEnv();

/** Three images: <p>-base, <p>-child (FROM base: a dependency) and <p>-solo. */
function imagesDir(prefix, { failBase = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-images-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  const image = (name, dockerfile, isDefault = false) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), dockerfile);
    writeFileSync(path.join(dir, name, 'requirements.txt'), '# nothing to install\n');
    writeFileSync(
      path.join(dir, name, 'image.yaml'),
      `name: ${name}\ndisplay_name: Test ${name}\ndescription: Fixture image ${name}\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: ${isDefault}\n  purpose: jupyter\n`,
    );
  };
  image(`${prefix}-base`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo ${failBase ? 'about-to-fail && exit 7' : `base-${prefix} > /base`}\n`, true);
  image(`${prefix}-child`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/${prefix}-base:latest\nRUN cat /base > /child\n`);
  image(`${prefix}-solo`, `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo solo-${prefix} > /solo\n`);
  return dir;
}

const registry = new RegistryClient({ registry: env.registryAuth, credentials: { username: env.registryUser, password: env.registryPassword } });

function baseVars(control, dir) {
  return {
    harbor_registry: env.registryAuth,
    harbor_username: env.registryUser,
    harbor_admin_password: env.registryPassword,
    thinkube_control_url: control.url,
    thinkube_control_token: control.token,
    images_dir: dir,
    engine_host: env.dockerHost,
  };
}

t.test('builds, pushes and registers a fixture set in dependency order; secrets stay hidden at -vvv', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const prefix = uniqueName('pb');
  const dir = imagesDir(prefix);
  const run = await runPlaybook({ extraVars: baseVars(control, dir), args: ['-vvv'] });
  if (!t.equal(run.code, 0, 'playbook succeeds')) t.comment(run.output.slice(-4000));
  t.notOk(run.output.includes(env.registryPassword), 'registry password never printed');
  t.notOk(run.output.includes(control.token), 'thinkube-control token never printed');
  t.notOk(run.output.includes('MODULE FAILURE'), 'no module failure');
  // One task for the set; its summary lists the images in build order.
  const order = ['base', 'child', 'solo'].map((n) => run.output.indexOf(`"${prefix}-${n}: done sha256:`));
  t.ok(order.every((i) => i > 0), `every image built:\n${run.output.slice(-3000)}`);
  t.ok(order[0] < order[1], 'the base is built before the image built on it');
  t.equal((run.output.match(/TASK \[Build, push, scan and register every image in dependency order\]/g) ?? []).length, 1, 'one pipeline task');
  for (const suffix of ['base', 'child', 'solo']) {
    const name = `${prefix}-${suffix}`;
    const head = await registry.headManifest(`library/${name}`, 'latest');
    t.ok(head, `${name} is in the registry`);
    const registered = control.images.get(name);
    t.ok(registered, `${name} registered with thinkube-control`);
    t.equal(registered?.digest, head?.digest, `${name}: registered digest is the registry's`);
    t.ok(run.output.includes(`${name}: done ${head?.digest}`), `${name}: summary reports the registry's digest`);
  }
  t.equal(recap(run.output)?.failed, 0);
});

t.test('--check changes nothing and says what would happen', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const prefix = uniqueName('pbc');
  const dir = imagesDir(prefix);
  const run = await runPlaybook({ extraVars: baseVars(control, dir), args: ['--check', '-v'] });
  if (!t.equal(run.code, 0, 'check run succeeds')) t.comment(run.output.slice(-4000));
  for (const suffix of ['base', 'child', 'solo']) {
    t.equal(await registry.headManifest(`library/${prefix}-${suffix}`, 'latest'), undefined, `${suffix} not pushed`);
  }
  t.equal(control.images.size, 0, 'nothing registered');
  t.equal(control.requests.filter((r) => r.method !== 'GET').length, 0, 'no write request reached thinkube-control');
  for (const suffix of ['base', 'child', 'solo']) {
    t.match(run.output, new RegExp(`${prefix}-${suffix}: planned, changed=true - would build .*registration would-register`), `summary line for ${suffix}`);
  }
});

t.test('a failing build fails the play with the step, skips its dependant, builds the rest', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const prefix = uniqueName('pbf');
  const dir = imagesDir(prefix, { failBase: true });
  const run = await runPlaybook({ extraVars: baseVars(control, dir) });
  t.not(run.code, 0, 'the play fails');
  t.match(run.output, new RegExp(`${prefix}-base: failed, changed=false - Build of .* failed at Step \\d+/\\d+ : RUN echo about-to-fail && exit 7`));
  t.match(run.output, new RegExp(`${prefix}-child: skipped, changed=false - builds on ${prefix}-base, which was not built`));
  t.match(run.output, /fatal: \[localhost\]: FAILED! => .*failed: /, 'the last task fails the play, naming the failed image');
  t.notOk(control.images.has(`${prefix}-child`), 'dependant not registered');
  t.equal(await registry.headManifest(`library/${prefix}-child`, 'latest'), undefined, 'dependant not pushed');
  t.ok(control.images.has(`${prefix}-solo`), 'an unrelated image is still built and registered');
  t.notOk(run.output.includes(env.registryPassword), 'password not in the failure output');
});

t.test('a base image missing from the registry stops the play before any build (the preflight of the one module call)', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const prefix = uniqueName('pbpre');
  const dir = imagesDir(prefix);
  const missing = `library/${prefix}-nowhere:1`;
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:1.35\n  - ${missing}\n`);
  writeFileSync(path.join(dir, `${prefix}-solo`, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${missing}\n`);
  const run = await runPlaybook({ extraVars: baseVars(control, dir) });
  t.not(run.code, 0, 'the play fails');
  t.match(run.output, /Preflight of .* failed/, 'with the preflight report');
  t.match(run.output, new RegExp(`base-images: .*${missing.replace(/[.]/g, '\\.')}`), 'naming the missing base');
  t.match(run.output, /TASK \[Check Node\.js on the host that runs the modules\] \*+\s+skipping: \[localhost\]/, 'the module answered: the Node.js check is skipped');
  t.notMatch(run.output, /TASK \[Require Node\.js 22 or later\]/);
  for (const name of ['base', 'child', 'solo']) {
    t.equal(await registry.headManifest(`library/${prefix}-${name}`, 'latest'), undefined, `${name}: nothing built or pushed`);
  }
  t.equal(control.images.size, 0, 'nothing registered');
});

t.test('an old Node.js on the host that runs the modules: the play says so in words, not as a MODULE FAILURE', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const dir = imagesDir(uniqueName('pbnode'));
  const fake = path.join(mkdtempSync(path.join(os.tmpdir(), 'tk-node-')), 'node');
  writeFileSync(fake, '#!/bin/sh\nif [ "$1" = --version ]; then echo v18.19.0; exit 0; fi\necho "SyntaxError: Unexpected token ?" >&2\nexit 1\n');
  chmodSync(fake, 0o755);
  const run = await runPlaybook({
    extraVars: baseVars(control, dir),
    inventory: `localhost ${hostVars()} ansible_node_interpreter=${fake}\n`,
  });
  t.not(run.code, 0, 'the play fails');
  t.match(run.output, /The modules need Node\.js 22 or later on localhost; it has v18\.19\.0/, 'the version check says what to do');
});

t.test('ansible-doc shows every module', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { repoRoot } = await import('./helpers/env.js');
  const library = path.join(repoRoot, 'ansible', 'library');
  for (const module of ['thinkube_image_build', 'thinkube_image_push', 'thinkube_image_register', 'thinkube_image_catalog', 'thinkube_image_pipeline', 'thinkube_image_preflight']) {
    const text = execFileSync('ansible-doc', ['-M', library, module], { encoding: 'utf8', env: { ...process.env, ANSIBLE_NOCOLOR: '1' } });
    t.match(text, new RegExp(`> ${module.toUpperCase()}`), `${module} documented`);
    t.match(text, /OPTIONS/);
    t.match(text, /RETURN VALUES/);
  }
});

t.test('second playbook run reports no changes', async (t) => {
  const control = await startControlStandin();
  t.teardown(() => control.close());
  const prefix = uniqueName('pbidem');
  const dir = imagesDir(prefix);
  const vars = baseVars(control, dir);
  const first = await runPlaybook({ extraVars: vars });
  t.equal(first.code, 0, `first run succeeds:\n${first.output.slice(-3000)}`);
  t.ok(recap(first.output)?.changed > 0, 'the first run changed something (it built, pushed and registered)');
  for (const suffix of ['base', 'child', 'solo']) t.match(first.output, new RegExp(`${prefix}-${suffix}: done sha256:[0-9a-f]{64}, changed=true - built .*registration created`), `${suffix}: built and registered`);
  const writes = control.requests.filter((r) => r.method !== 'GET').length;
  const { statSync, readFileSync } = await import('node:fs');
  const offset = statSync(env.registryAuthLog).size;
  const second = await runPlaybook({ extraVars: vars });
  t.equal(second.code, 0, `second run succeeds:\n${second.output.slice(-3000)}`);
  const counts = recap(second.output);
  t.equal(counts?.failed, 0);
  t.equal(counts?.changed, 0, `PLAY RECAP of the second run: changed=0\n${second.output.slice(-3000)}`);
  for (const suffix of ['base', 'child', 'solo']) {
    t.match(second.output, new RegExp(`${prefix}-${suffix}: done sha256:[0-9a-f]{64}, changed=false - inputs unchanged \\(in-[0-9a-f]+\\): built nothing; registration unchanged`), `${suffix}: summary says unchanged, not rebuilt, registration unchanged`);
  }
  t.equal(control.requests.filter((r) => r.method !== 'GET').length, writes, 'no write request reached thinkube-control during the second run');
  const log = readFileSync(env.registryAuthLog).subarray(offset).toString('utf8');
  t.notOk(log.split('\n').some((line) => line.includes(`/v2/library/${prefix}-`) && line.includes('/blobs/uploads')), 'no blob upload reached the registry during the second run');
});

t.test('with a kubeconfig: the ConfigMap is written through the Kubernetes API and synced; thinkube-control lists both images with metadata and vulnerability counts, and the entries another writer had there stay', async (t) => {
  const { startKubeStandin } = await import('./helpers/kube-standin.js');
  const { startHarborStandin } = await import('./helpers/harbor-standin.js');
  const kube = await startKubeStandin();
  const control = await startControlStandin({ kube: { url: kube.url, token: kube.adminToken, ca: kube.ca } });
  const harbor = await startHarborStandin({ users: { [env.registryUser]: env.registryPassword }, pushed: () => ({ scan: { outcome: 'Success', counts: { High: 1, Low: 3 } } }) });
  t.teardown(async () => {
    await control.close();
    await kube.close();
    await harbor.close();
  });
  // Another writer (Thinkube's installer, another operator) registered an image there before.
  const other = { name: 'python', registry: env.registryAuth, repository: 'library/python', tag: '3.12-slim', source_url: 'docker.io/library/python:3.12-slim', destination_url: `${env.registryAuth}/library/python:3.12-slim`, description: 'Mirrored Python', category: 'user', source: 'mirrored', protected: true, mirror_date: '2025-01-01T00:00:00Z', metadata: { purpose: 'base' } };
  kube.put('configmaps', {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'thinkube-custom-images-jupyter', namespace: 'thinkube-control', labels: { 'thinkube.io/image-manifest': 'true', 'thinkube.io/category': 'user' } },
    data: { 'manifest.json': JSON.stringify({ manifest_version: '1.0', images: [other] }) },
  });
  const prefix = uniqueName('pbk');
  const dir = imagesDir(prefix);
  const kubeconfig = kube.kubeconfig(mkdtempSync(path.join(os.tmpdir(), 'tk-kubeconfig-')));
  const names = [`${prefix}-base`, `${prefix}-child`];
  const vars = { ...baseVars(control, dir), thinkube_control_url: control.baseUrl, kubeconfig, images: names, scan_images: true, harbor_url: harbor.url };
  const run = await runPlaybook({ extraVars: vars, args: ['-v'] });
  if (!t.equal(run.code, 0, 'playbook succeeds')) t.comment(run.output.slice(-4000));
  t.notOk(run.output.includes(control.token), 'thinkube-control token never printed');
  t.notOk(run.output.includes(kube.adminToken), 'the kubeconfig token never printed');
  for (const name of names) t.match(run.output, new RegExp(`${name}: done sha256:[0-9a-f]{64}, changed=true, scan: 0 critical, 1 high, 0 medium, 3 low, 0 unknown \\(4 total\\) - built .*registration created`), `${name}: registration created (thinkube-control lists it)`);
  t.notOk(kube.requests.some((r) => r.user !== 'admin'), 'every Kubernetes call authenticated with the kubeconfig');

  // Read back the way thinkube-control's UI does.
  const answer = await fetch(`${control.baseUrl}/api/v1/harbor/images?search=${prefix}`, { headers: { authorization: `Bearer ${control.token}` } });
  const listed = await answer.json();
  t.equal(listed.total, 2, 'thinkube-control lists both images');
  for (const name of names) {
    const row = listed.images.find((r) => r.name === name);
    t.ok(row, `${name} listed`);
    t.equal(row?.destination_url, `${env.registryAuth}/library/${name}:latest`);
    t.equal(row?.metadata.purpose, 'jupyter', `${name}: metadata`);
    t.equal(row?.metadata.display_name, `Test ${name}`);
    t.match(row?.metadata.digest, /^sha256:[0-9a-f]{64}$/);
    t.same(row?.metadata.vulnerabilities, { critical: 0, high: 1, medium: 0, low: 3 }, `${name}: vulnerability counts`);
    t.equal(row?.metadata.scan_status, 'Success');
  }
  const manifest = JSON.parse(kube.get('configmaps', 'thinkube-control', 'thinkube-custom-images-jupyter').data['manifest.json']);
  t.same(manifest.images.find((i) => i.name === 'python'), other, "the other writer's entry is still there, unchanged");
  t.ok(control.rows.has(`${env.registryAuth}/library/python:3.12-slim`), 'and thinkube-control lists it too');

  // Again: nothing to do, nothing written, no sync; check mode predicts exactly that first.
  const writes = kube.requests.filter((r) => r.method !== 'GET').length;
  const syncs = control.requests.filter((r) => r.method === 'POST').length;
  const check = await runPlaybook({ extraVars: vars, args: ['--check'] });
  t.equal(check.code, 0, `check run succeeds:\n${check.output.slice(-3000)}`);
  t.equal(recap(check.output)?.changed, 0, 'check mode predicts changed=0');
  for (const name of names) t.match(check.output, new RegExp(`${name}: planned sha256:[0-9a-f]{64}, changed=false - .*registration unchanged`));
  const second = await runPlaybook({ extraVars: vars });
  t.equal(second.code, 0, `second run succeeds:\n${second.output.slice(-3000)}`);
  t.equal(recap(second.output)?.changed, 0, 'second run: changed=0');
  for (const name of names) t.match(second.output, new RegExp(`${name}: done sha256:[0-9a-f]{64}, changed=false, scan: .* - .*registration unchanged`));
  t.equal(kube.requests.filter((r) => r.method !== 'GET').length, writes, 'no ConfigMap write');
  t.equal(control.requests.filter((r) => r.method === 'POST').length, syncs, 'no sync');
});
