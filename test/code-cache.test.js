// The code cache of generated code (lib/core/code-cache.ts), seen through the validators: written at exit where a folder is
// set, read by the next process, rebuilt when V8 rejects it, never written without a folder; the
// validation results are the same either way. Each run is a real Node process, as the cache lives
// across processes.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const temp = mkdtempSync(path.join(os.tmpdir(), 'tk-validator-cache-'));
t.teardown(() => rmSync(temp, { recursive: true, force: true }));

// Validates one valid and one invalid pipeline options object, and prints what validate() said.
const script = `
import { setCodeCacheDir } from ${JSON.stringify(path.join(root, 'dist/lib/core/code-cache.js'))};
import { validate } from ${JSON.stringify(path.join(root, 'dist/lib/options/schema.js'))};
setCodeCacheDir(process.env.CACHE_DIR || undefined);
const out = {};
out.valid = validate('pipeline-options.schema.json', { imagesDir: 'images', registry: 'registry.example.com' });
try { validate('pipeline-options.schema.json', { imagesDir: 'images', registry: 'registry.example.com', concurrency: 'many' }); } catch (error) { out.invalid = error.message; }
console.log(JSON.stringify(out));
`;

function run(cacheDir) {
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, CACHE_DIR: cacheDir ?? '' }, encoding: 'utf8' }));
}

const cacheFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.code')).sort() : []);

t.test('the cache is written at exit, read by the next process, and changes no result', async (t) => {
  const dir = path.join(temp, 'cache');
  const folder = path.join(dir, 'thinkube-code');
  const first = run(dir);
  t.equal(first.valid.registry, 'registry.example.com');
  t.match(first.invalid, /concurrency/, 'the invalid options name the field');
  const files = cacheFiles(folder);
  t.equal(files.length, 1, 'one validator used, one cache file (the root validator of the pipeline options)');
  t.match(files[0], new RegExp(`^[0-9a-f]{16}-${process.version}-${process.arch}\\.code$`));
  t.notOk(readdirSync(folder).some((f) => f.endsWith('.tmp')), 'no temporary file left');
  const file = path.join(folder, files[0]);
  const written = statSync(file);
  // Layout: text length (4 bytes), the text, V8's code cache.
  const textLength = readFileSync(file).readUInt32LE(0);
  t.ok(written.size - 4 - textLength > 10_000, 'the cache holds the compiled functions');

  const second = run(dir);
  t.same(second, first, 'same results from the cached code');
  const after = statSync(file);
  t.equal(after.mtimeMs, written.mtimeMs, 'an accepted cache is not written again');
});

t.test('a cache V8 rejects is rebuilt, and the results stay right', async (t) => {
  const dir = path.join(temp, 'corrupt');
  const folder = path.join(dir, 'thinkube-code');
  const good = run(dir);
  const [name] = cacheFiles(folder);
  const file = path.join(folder, name);
  // The text kept, V8's part damaged: V8 rejects it.
  const whole = readFileSync(file);
  const codeAt = 4 + whole.readUInt32LE(0);
  writeFileSync(file, Buffer.concat([whole.subarray(0, codeAt), Buffer.alloc(whole.length - codeAt, 7)]));
  const again = run(dir);
  t.same(again, good);
  const rewritten = readFileSync(file);
  t.notOk(rewritten.subarray(codeAt).every((b) => b === 7), 'the rejected cache was replaced');
  t.same(run(dir), good, 'and the replacement is read');

  // The text kept in the file cut short: its length no longer matches, and it is not used.
  const kept = readFileSync(file);
  writeFileSync(file, kept.subarray(0, 4 + 1000));
  t.same(run(dir), good, 'a cut text is not run');
  t.ok(readFileSync(file).length > 4 + 1000, 'and the file is written anew');
});

t.test('without a folder nothing is written', async (t) => {
  const tmp = mkdtempSync(path.join(temp, 'library-tmp-'));
  const result = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, CACHE_DIR: '', TMPDIR: tmp }, encoding: 'utf8' }));
  t.equal(result.valid.registry, 'registry.example.com');
  t.same(readdirSync(tmp), [], 'the library alone writes no cache');
});

t.test('bin/ keeps the cache in Node compile cache folder; an Ansible module in the folder Node would use', async (t) => {
  const nodeCache = path.join(temp, 'node-cache');
  const images = mkdtempSync(path.join(temp, 'images-'));
  const cli = spawnSync(process.execPath, [path.join(root, 'bin', 'lint.js'), images], { env: { ...process.env, NODE_COMPILE_CACHE: nodeCache }, encoding: 'utf8' });
  t.not(cli.status, null);
  const versioned = readdirSync(nodeCache).filter((d) => d.startsWith('v'));
  t.equal(versioned.length, 1, "Node's own cache folder");
  t.ok(cacheFiles(path.join(nodeCache, versioned[0], 'thinkube-code')).length > 0, 'the validators are cached inside it');

  // As Ansible runs it: no NODE_COMPILE_CACHE (which would turn Node's own cache on).
  const moduleTmp = mkdtempSync(path.join(temp, 'module-tmp-'));
  const argsFile = path.join(temp, 'args.json');
  writeFileSync(argsFile, JSON.stringify({ images_dir: images }));
  const moduleFile = path.join(root, 'ansible', 'library', 'thinkube_image_catalog.cjs');
  const moduleEnv = { ...process.env, TMPDIR: moduleTmp };
  delete moduleEnv.NODE_COMPILE_CACHE;
  const module = spawnSync(process.execPath, [moduleFile, argsFile], { env: moduleEnv, encoding: 'utf8' });
  t.match(JSON.parse(module.stdout), { images: [] }, 'the module ran');
  t.ok(cacheFiles(path.join(moduleTmp, 'node-compile-cache', 'thinkube-code')).length > 0, 'the module cached its validators where Node keeps its cache');
  t.same(readdirSync(path.join(moduleTmp, 'node-compile-cache')), ['thinkube-code'], "and Node's own cache stayed off (a new entry for each run's copy of the module)");

  const off = path.join(temp, 'off');
  spawnSync(process.execPath, [path.join(root, 'bin', 'lint.js'), images], { env: { ...process.env, NODE_COMPILE_CACHE: off, NODE_DISABLE_COMPILE_CACHE: '1' } });
  t.notOk(existsSync(off), 'NODE_DISABLE_COMPILE_CACHE turns it off');
});
