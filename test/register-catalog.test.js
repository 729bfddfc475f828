// registerImage target catalog (the embedded default): a local JSON file, safe against concurrent
// writers in separate processes.
import t from 'tap';
import { rejection } from './helpers/assert.js';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerImage } from '../dist/lib/register/register.js';
import { readCatalog, defaultCatalogPath } from '../dist/lib/register/catalog-file.js';

const distRegister = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/lib/register/register.js');
const digest = (c) => `sha256:${c.repeat(64)}`;

function options(name, catalogPath, over = {}) {
  return {
    image: { name, display_name: `Image ${name}`, description: 'A test image', category: 'jupyter', metadata: { cpu_limit: 2 } },
    reference: { registry: 'localhost:5000', repository: `library/${name}`, tag: 'latest', digest: digest('a'), sizeBytes: 10 },
    catalogPath,
    ...over,
  };
}

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'catalog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}


t.test('create, unchanged, update; readCatalog returns the entries', async (t) => {
  const file = path.join(tmp(t), 'nested', 'catalog.json');
  const created = await registerImage(options('img-a', file));
  t.equal(created.target, 'catalog', 'catalog is the default target');
  t.equal(created.outcome, 'created');
  t.equal(created.changed, true);
  t.equal(created.location, file);
  const catalog = await readCatalog(file);
  t.equal(catalog.version, 1);
  t.same(Object.keys(catalog.images), ['img-a']);
  t.same(catalog.images['img-a'], created.entry);
  t.equal(catalog.images['img-a'].metadata.purpose, 'jupyter');
  t.equal(catalog.images['img-a'].digest, digest('a'));

  const same = await registerImage(options('img-a', file));
  t.equal(same.outcome, 'unchanged');
  t.equal(same.changed, false);

  const updated = await registerImage(options('img-a', file, { reference: { ...options('img-a', file).reference, digest: digest('b') } }));
  t.equal(updated.outcome, 'updated');
  t.equal(updated.diff.before.digest, digest('a'));
  t.equal(updated.diff.after.digest, digest('b'));
  t.equal((await readCatalog(file)).images['img-a'].digest, digest('b'));
  t.notOk(existsSync(`${file}.lock`), 'the lock is released');
});

t.test('default path: $THINKUBE_IMAGES_CATALOG', async (t) => {
  const file = path.join(tmp(t), 'env-catalog.json');
  const old = process.env.THINKUBE_IMAGES_CATALOG;
  process.env.THINKUBE_IMAGES_CATALOG = file;
  t.teardown(() => (old === undefined ? delete process.env.THINKUBE_IMAGES_CATALOG : (process.env.THINKUBE_IMAGES_CATALOG = old)));
  t.equal(defaultCatalogPath(), file);
  const result = await registerImage(options('img-env', undefined));
  t.equal(result.path, file);
  t.ok((await readCatalog(file)).images['img-env']);
  t.equal(defaultCatalogPath({}), path.join(os.homedir(), '.local', 'share', 'thinkube-custom-images', 'catalog.json'));
});

t.test('dry run changes nothing', async (t) => {
  const file = path.join(tmp(t), 'catalog.json');
  const first = await registerImage(options('img-a', file, { dryRun: true }));
  t.equal(first.outcome, 'created');
  t.equal(first.changed, true);
  t.notOk(existsSync(file));
  await registerImage(options('img-a', file));
  const before = readFileSync(file, 'utf8');
  const second = await registerImage(options('img-a', file, { dryRun: true, reference: { ...options('img-a', file).reference, tag: 'v2' } }));
  t.equal(second.outcome, 'updated');
  t.equal(second.diff.before.tag, 'latest');
  t.equal(readFileSync(file, 'utf8'), before);
});

t.test('20 concurrent registrations from 20 processes lose none', async (t) => {
  const file = path.join(tmp(t), 'catalog.json');
  const startAt = Date.now() + 1500; // all children call registerImage at the same moment
  const code = `
    import { registerImage } from ${JSON.stringify(distRegister)};
    const opts = JSON.parse(process.env.OPTS);
    await new Promise((r) => setTimeout(r, Math.max(0, Number(process.env.START_AT) - Date.now())));
    const result = await registerImage(opts);
    process.stdout.write(result.outcome);
  `;
  const runs = Array.from({ length: 20 }, (_, i) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      env: { ...process.env, OPTS: JSON.stringify(options(`img-${String(i).padStart(2, '0')}`, file)), START_AT: String(startAt) },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    return new Promise((resolve) => child.on('close', (status) => resolve({ status, out, err })));
  });
  const results = await Promise.all(runs);
  t.same(results.filter((r) => r.status !== 0).map((r) => r.err), [], 'every process succeeded');
  t.ok(results.every((r) => r.out === 'created'));
  const catalog = await readCatalog(file);
  t.equal(Object.keys(catalog.images).length, 20, 'all 20 entries kept');
  t.same(Object.keys(catalog.images), Array.from({ length: 20 }, (_, i) => `img-${String(i).padStart(2, '0')}`));
  t.notOk(existsSync(`${file}.lock`));
});

t.test('a corrupt catalog is named with its position and left alone', async (t) => {
  const file = path.join(tmp(t), 'catalog.json');
  writeFileSync(file, '{\n  "version": 1,\n  "images": {,}\n}\n');
  const error = await rejection(registerImage(options('img-a', file)));
  t.equal(error.code, 'ERR_CATALOG');
  t.match(error.message, `${file}:3:`);
  t.match(error.hint, /move it away/);
  t.equal(readFileSync(file, 'utf8'), '{\n  "version": 1,\n  "images": {,}\n}\n');
  writeFileSync(file, '[1, 2]');
  const notCatalog = await rejection(readCatalog(file));
  t.match(notCatalog.message, /is not a catalog/);
});

t.test('no verified digest, no registration', async (t) => {
  const file = path.join(tmp(t), 'catalog.json');
  const { digest: _d, ...reference } = options('img-a', file).reference;
  const error = await rejection(registerImage(options('img-a', file, { reference })));
  t.equal(error.code, 'ERR_INVALID_OPTIONS');
  t.match(error.message, /reference: needs digest .*verified/);
  const badDigest = await rejection(registerImage(options('img-a', file, { reference: { ...reference, digest: 'sha256:abc' } })));
  t.match(badDigest.message, /reference\.digest: must be a sha256 digest/);
  t.notOk(existsSync(file));
});
