// registerImage target configmap: the ConfigMap that thinkube-control's image discovery reads
// (labels thinkube.io/image-manifest and thinkube.io/category, data["manifest.json"]).
import t from 'tap';
import { rejection } from './helpers/assert.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { registerImage } from '../dist/lib/register/register.js';
import { mergeManifest, renderConfigMap, manifestEntry, dumpConfigMap } from '../dist/lib/register/configmap.js';

const distRegister = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/lib/register/register.js');
const digest = (c) => `sha256:${c.repeat(64)}`;

// The four Jupyter images of the reference.
const IMAGES = {
  'jupyter-ml-cpu': { display_name: 'ML Development (CPU)', description: 'JupyterLab with standard ML packages', metadata: { gpu_required: false, cpu_limit: 4, mem_limit: '8G', default: true } },
  'jupyter-ml-gpu': { display_name: 'Deep Learning (GPU)', description: 'JupyterLab with PyTorch and GPU support', metadata: { gpu_required: true, cpu_limit: 8, mem_limit: '16G', default: false } },
  'jupyter-agent-dev': { display_name: 'Agent Development', description: 'LangChain, CrewAI, and agent frameworks', metadata: { gpu_required: false, cpu_limit: 4, mem_limit: '8G', default: false } },
};

function options(name, outputPath, over = {}) {
  return {
    target: 'configmap',
    image: { name, category: 'jupyter', tags: ['jupyter-compatible'], ...IMAGES[name] },
    reference: { registry: 'harbor.example.com', repository: `library/${name}`, tag: 'latest', digest: digest('a'), sizeBytes: 2048, builtAt: '2025-01-31T12:00:00Z', platforms: ['linux/amd64'] },
    configmap: { outputPath },
    ...over,
  };
}

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'configmap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function load(file) {
  const cm = yaml.load(readFileSync(file, 'utf8'));
  return { cm, manifest: JSON.parse(cm.data['manifest.json']) };
}


// The fields thinkube-control's discovery reads from each manifest entry (reference: thinkube.md).
const REFERENCE_FIELDS = ['name', 'registry', 'repository', 'tag', 'source_url', 'destination_url', 'description', 'category', 'source', 'protected', 'mirror_date', 'metadata'];

t.test('the rendered ConfigMap, parsed back, field by field', async (t) => {
  const file = path.join(tmp(t), 'cm.yaml');
  const result = await registerImage(options('jupyter-ml-cpu', file));
  t.equal(result.target, 'configmap');
  t.equal(result.outcome, 'written');
  t.equal(result.changed, true);
  t.equal(result.location, 'thinkube-control/thinkube-custom-images-jupyter');
  t.equal(result.path, file);

  const text = readFileSync(file, 'utf8');
  t.match(text, /thinkube\.io\/image-manifest: 'true'/, 'the label value is the string "true", quoted');
  const { cm, manifest } = load(file);
  t.equal(cm.apiVersion, 'v1');
  t.equal(cm.kind, 'ConfigMap');
  t.equal(cm.metadata.name, 'thinkube-custom-images-jupyter');
  t.equal(cm.metadata.namespace, 'thinkube-control');
  t.equal(cm.metadata.labels['thinkube.io/image-manifest'], 'true');
  t.equal(cm.metadata.labels['thinkube.io/category'], 'user', 'Jupyter images are user images');
  t.same(Object.keys(cm.data), ['manifest.json']);
  t.same(result.configMap, cm, 'the result carries the object for kubernetes.core.k8s');

  t.equal(manifest.manifest_version, '1.0');
  t.equal(manifest.images.length, 1);
  const [image] = manifest.images;
  for (const field of REFERENCE_FIELDS) t.ok(field in image, `manifest entry has ${field}`);
  t.equal(image.name, 'jupyter-ml-cpu');
  t.equal(image.registry, 'harbor.example.com');
  t.equal(image.repository, 'library/jupyter-ml-cpu');
  t.equal(image.tag, 'latest');
  t.equal(image.source_url, null, 'a built image has no upstream');
  t.equal(image.destination_url, 'harbor.example.com/library/jupyter-ml-cpu:latest');
  t.equal(image.description, 'JupyterLab with standard ML packages');
  t.equal(image.category, 'user');
  t.ok(['system', 'user'].includes(image.category));
  t.equal(image.source, 'built');
  t.equal(image.protected, false);
  t.equal(image.mirror_date, '2025-01-31T12:00:00Z');
  t.ok(!Number.isNaN(Date.parse(image.mirror_date.replace('Z', '+00:00'))), 'mirror_date parses as an ISO date (fromisoformat after Z -> +00:00)');
  t.equal(image.harbor_project, 'library');
  t.same(image.metadata, {
    gpu_required: false,
    cpu_limit: 4,
    mem_limit: '8G',
    default: true,
    purpose: 'jupyter',
    display_name: 'ML Development (CPU)',
    image_category: 'jupyter',
    tags: ['jupyter-compatible'],
    digest: digest('a'),
    size_bytes: 2048,
    built_at: '2025-01-31T12:00:00Z',
    platforms: ['linux/amd64'],
    scan_status: 'not-scanned',
  });
  t.notOk('vulnerabilities' in image.metadata, 'not scanned: no counts, not zeros');
  t.same(result.diff, { before: null, after: image });

  const mtime = statSync(file).mtimeMs;
  const again = await registerImage(options('jupyter-ml-cpu', file));
  t.equal(again.outcome, 'file-unchanged', 'the file is unchanged (whether thinkube-control holds it is not known in mode file)');
  t.equal(again.changed, false);
  t.equal(statSync(file).mtimeMs, mtime, 'not rewritten');
});

t.test('three images over two runs merge into one manifest; an update replaces one entry', async (t) => {
  const file = path.join(tmp(t), 'jupyter.yaml');
  await registerImage(options('jupyter-ml-cpu', file));
  await registerImage(options('jupyter-ml-gpu', file));
  // Second run: a separate process, as a later playbook run would be.
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', `import { registerImage } from ${JSON.stringify(distRegister)}; const r = await registerImage(JSON.parse(process.env.OPTS)); console.log(r.outcome);`], {
    env: { ...process.env, OPTS: JSON.stringify(options('jupyter-agent-dev', file)) },
    encoding: 'utf8',
  });
  t.equal(child.status, 0, child.stderr);
  t.equal(child.stdout.trim(), 'written');
  let { cm, manifest } = load(file);
  t.same(manifest.images.map((i) => i.name), ['jupyter-agent-dev', 'jupyter-ml-cpu', 'jupyter-ml-gpu'], 'all three kept, sorted');
  t.equal(manifest.images.find((i) => i.name === 'jupyter-ml-gpu').metadata.gpu_required, true);
  t.equal(cm.metadata.labels['thinkube.io/category'], 'user');

  const updated = await registerImage(options('jupyter-ml-gpu', file, { reference: { ...options('jupyter-ml-gpu', file).reference, digest: digest('b') } }));
  t.equal(updated.outcome, 'written');
  t.equal(updated.diff.before.metadata.digest, digest('a'));
  t.equal(updated.diff.after.metadata.digest, digest('b'));
  ({ manifest } = load(file));
  t.equal(manifest.images.length, 3);
  t.same(manifest.images.map((i) => i.metadata.digest), [digest('a'), digest('a'), digest('b')]);
});

t.test('concurrent registrations into one file keep every image', async (t) => {
  const file = path.join(tmp(t), 'cm.yaml');
  const names = Object.keys(IMAGES);
  const results = await Promise.all(names.map((n) => registerImage(options(n, file))));
  t.ok(results.every((r) => r.outcome === 'written'));
  t.same(load(file).manifest.images.map((i) => i.name).sort(), names.sort());
});

t.test('options: category, name, namespace, harbor project, JSON output', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'system.json');
  const result = await registerImage(
    options('jupyter-ml-cpu', file, { configmap: { outputPath: file, category: 'system', name: 'platform-images', namespace: 'kube-system', harborProject: 'thinkube', protected: true } }),
  );
  const cm = JSON.parse(readFileSync(file, 'utf8'));
  t.equal(cm.metadata.name, 'platform-images');
  t.equal(cm.metadata.namespace, 'kube-system');
  t.equal(cm.metadata.labels['thinkube.io/category'], 'system');
  const [image] = JSON.parse(cm.data['manifest.json']).images;
  t.equal(image.category, 'system');
  t.equal(image.harbor_project, 'thinkube');
  t.equal(image.protected, true);
  t.equal(result.location, 'kube-system/platform-images');

  const bad = await rejection(registerImage(options('jupyter-ml-cpu', file, { configmap: { outputPath: file, category: 'jupyter' } })));
  t.equal(bad.code, 'ERR_INVALID_OPTIONS');
  t.match(bad.message, /configmap\.category/);

  // The same file cannot silently become another ConfigMap or mix categories.
  const other = await rejection(registerImage(options('jupyter-ml-cpu', file, { configmap: { outputPath: file, category: 'system', name: 'other' } })));
  t.equal(other.code, 'ERR_INVALID_OPTIONS');
  t.match(other.message, `${file} holds ConfigMap kube-system/platform-images, not thinkube-control/other`);
  const mixed = await rejection(
    registerImage(options('jupyter-ml-gpu', file, { configmap: { outputPath: file, category: 'user', name: 'platform-images', namespace: 'kube-system' } })),
  );
  t.match(mixed.message, /holds system images; jupyter-ml-gpu is registered as user/);
});

t.test('dry run writes nothing', async (t) => {
  const file = path.join(tmp(t), 'cm.yaml');
  const first = await registerImage(options('jupyter-ml-cpu', file, { dryRun: true }));
  t.equal(first.outcome, 'written');
  t.equal(first.changed, true);
  t.notOk(existsSync(file), 'no file created');
  await registerImage(options('jupyter-ml-cpu', file));
  const before = readFileSync(file, 'utf8');
  const second = await registerImage(options('jupyter-ml-gpu', file, { dryRun: true }));
  t.equal(second.changed, true);
  t.equal(second.configMap && JSON.parse(second.configMap.data['manifest.json']).images.length, 2, 'reports the would-be manifest');
  t.equal(readFileSync(file, 'utf8'), before, 'file untouched');
});

t.test('mergeManifest and renderConfigMap keep foreign entries and labels', async (t) => {
  const mirrored = { name: 'alpine', registry: 'harbor.example.com', repository: 'library/alpine', tag: '3.20', source_url: 'docker.io/library/alpine:3.20', destination_url: 'harbor.example.com/library/alpine:3.20', description: 'Alpine', category: 'user', source: 'mirrored', protected: true, mirror_date: '2024-01-01T00:00:00Z', metadata: {}, is_base: true };
  const entry = manifestEntry(
    { name: 'jupyter-ml-cpu', display_name: 'X', description: 'd', category: 'jupyter', registry: 'r.example.com', repository: 'library/jupyter-ml-cpu', tag: 'latest', digest: digest('a'), destination_url: 'r.example.com/library/jupyter-ml-cpu:latest', source: 'built', metadata: { purpose: 'jupyter' } },
    { category: 'user' },
  );
  const merged = mergeManifest({ manifest_version: '1.0', images: [mirrored], generator: 'someone' }, entry);
  t.same(merged.images.map((i) => i.name), ['alpine', 'jupyter-ml-cpu']);
  t.same(merged.images[0], mirrored, 'foreign entry kept as is');
  t.equal(merged.generator, 'someone');
  t.equal(mergeManifest(merged, { ...entry, tag: '2' }).images.length, 2, 'replaced by name');
  t.equal(mergeManifest(undefined, entry).images.length, 1);

  const previous = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'n', namespace: 'ns', labels: { team: 'ml' }, annotations: { note: 'x' } }, data: { 'manifest.json': '{}', 'README': 'hi' } };
  const cm = renderConfigMap(merged, { namespace: 'ns', name: 'n', category: 'user' }, previous);
  t.equal(cm.metadata.labels.team, 'ml');
  t.equal(cm.metadata.labels['thinkube.io/image-manifest'], 'true');
  t.equal(cm.metadata.annotations.note, 'x');
  t.equal(cm.data.README, 'hi');
  t.same(yaml.load(dumpConfigMap(cm)), cm, 'YAML round trip');
  t.same(JSON.parse(dumpConfigMap(cm, 'json')), cm, 'JSON round trip');
});

t.test('a broken file is named, not overwritten', async (t) => {
  const file = path.join(tmp(t), 'cm.yaml');
  writeFileSync(file, 'apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n');
  const error = await rejection(registerImage(options('jupyter-ml-cpu', file)));
  t.equal(error.code, 'ERR_CATALOG');
  t.match(error.message, `${file}:`);
  t.match(error.hint, /move it away/);
  t.equal(readFileSync(file, 'utf8'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n');
});
