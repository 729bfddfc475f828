// Bad module args, through the Ansible path of every module (bin/<name>.js with a JSON args file,
// exactly what Ansible runs): wrong types, unknown keys, missing required options, 1 MB strings,
// unicode, paths with .., empty and over-long tags, invalid references, nulls, nested mistakes.
// Every case must give one JSON object on stdout with failed: true and a msg naming the field in
// snake_case, exit code 1, and no stack trace anywhere. A property-based part (fast-check) then
// generates args from the schemas and checks the same promises in-process through the same
// name mapping and validation the runner uses, and a sample of those through real processes.
import t from 'tap';
import fc from 'fast-check';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './helpers/env.js';
import { FC_SEED, assertProperty, seededRandom } from './helpers/fast-check.js';
import { schemaDocuments } from '../dist/lib/options/generated/schemas.js';
import { deref } from '../dist/lib/options/option-spec.js';
import { ansibleOptions } from '../dist/lib/adapters/ansible.js';
import { validate } from '../dist/lib/options/schema.js';
import { ValidationError } from '../dist/lib/core/errors.js';

const HUGE = 'a'.repeat(1024 * 1024);
const work = mkdtempSync(path.join(os.tmpdir(), 'tk-bad-input-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
// Relative paths of the cases resolve from a folder a few levels down, so `..` stays harmless.
const cwd = path.join(work, 'a', 'b', 'c');
mkdirSync(cwd, { recursive: true });
const home = path.join(work, 'home');
mkdirSync(home);
const ctx = path.join(work, 'ctx');
mkdirSync(ctx);
writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\n');
const imagesDir = path.join(work, 'images');
mkdirSync(imagesDir);
// Nothing reachable: a case that slipped through validation fails on the engine, loudly.
const DEAD_ENGINE = { host: `unix://${path.join(work, 'no-engine.sock')}` };
const DIGEST = `sha256:${'a'.repeat(64)}`;

// ------------------------------------------------------------------ the modules

/** Every command (lib/adapters/entries/) that is also an Ansible module, with its bin/ script and schema. */
function discoverModules() {
  const out = [];
  for (const file of readdirSync(path.join(repoRoot, 'lib', 'adapters', 'entries')).sort()) {
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(path.join(repoRoot, 'lib', 'adapters', 'entries', file), 'utf8');
    const module = /module: '([a-z_]+)'/.exec(text)?.[1];
    const schema = /schema: '([a-z-]+\.schema\.json)'/.exec(text)?.[1];
    const name = file.replace(/\.ts$/, '');
    if (module && schema) out.push({ name, script: path.join(repoRoot, 'bin', `${name}.js`), module, schema });
  }
  return out;
}
const modules = discoverModules();

/** Valid args per module (snake_case, as a playbook writes them); cases break one thing each. */
const BASES = {
  build: { context: ctx, tags: ['localhost:5999/bad/input:1'], engine: DEAD_ENGINE },
  push: { tags: ['localhost:5999/bad/input:1'], engine: DEAD_ENGINE },
  register: {
    image: { name: 'input', display_name: 'Input', description: 'Bad input fixture', category: 'jupyter' },
    reference: { registry: 'localhost:5999', repository: 'bad/input', tag: '1', digest: DIGEST },
    target: 'catalog',
    catalog_path: path.join(work, 'catalog.json'),
  },
  pipeline: { images_dir: imagesDir, registry: 'localhost:5999', engine: DEAD_ENGINE },
  catalog: { images_dir: imagesDir },
  preflight: { registry: 'localhost:5999', engine: DEAD_ENGINE },
  // A registry nobody listens on: a case that slipped through validation fails on the connection.
  index: { tags: ['localhost:5999/bad/input:1'], manifests: [DIGEST] },
};

const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const schemaOf = (file) => deref(schemaDocuments[file]);
const typeOf = (spec) => (Array.isArray(spec.type) ? spec.type[0] : spec.type ?? (spec.properties ? 'object' : spec.items ? 'array' : undefined));

/** A value of the wrong JSON type for a property. */
function wrongType(spec) {
  switch (typeOf(spec)) {
    case 'string':
      return 42;
    case 'number':
    case 'integer':
      return 'forty-two';
    case 'boolean':
      return 'maybe';
    case 'array':
      return 'not-a-list';
    case 'object':
      return ['not', 'an', 'object'];
    default:
      return undefined;
  }
}

/**
 * Cases generated from a module's schema: for every option a wrong type, null and (strings) 1 MB;
 * for every nested option object an unknown key and a wrong type inside; every required option
 * missing; an unknown top-level key and one in unicode.
 */
function schemaCases(mod) {
  const schema = schemaOf(mod.schema);
  const base = BASES[mod.name];
  const cases = [];
  const add = (label, args, field) => cases.push({ label: `${mod.name}: ${label}`, mod, args, field });
  for (const [name, raw] of Object.entries(schema.properties)) {
    const spec = deref(raw);
    const key = snake(name);
    const wrong = wrongType(spec);
    if (wrong !== undefined) add(`${key} of the wrong type`, { ...base, [key]: wrong }, key);
    // null takes the type check's path; it is tried where a null could mean something else.
    if (schema.required?.includes(name) || ['object', 'array'].includes(typeOf(spec))) add(`${key} null`, { ...base, [key]: null }, key);
    if (typeOf(spec) === 'string' && (spec.maxLength !== undefined || spec.pattern || spec.enum)) add(`${key} of 1 MB`, { ...base, [key]: HUGE }, key);
    if (typeOf(spec) === 'array') add(`${key} holding a nested list`, { ...base, [key]: [['nested']] }, key);
    if (typeOf(spec) === 'object' && spec.properties && spec.additionalProperties === false) {
      add(`${key} with an unknown nested key`, { ...base, [key]: { no_such_field: true } }, `${key}.no_such_field`);
      const [inner, innerRaw] = Object.entries(spec.properties)[0];
      const innerWrong = wrongType(deref(innerRaw));
      if (innerWrong !== undefined) {
        const value = { ...(base[key] ?? {}), [snake(inner)]: innerWrong };
        add(`${key}.${snake(inner)} of the wrong type`, { ...base, [key]: value }, `${key}.${snake(inner)}`);
      }
    }
  }
  for (const name of schema.required ?? []) {
    const args = { ...base };
    delete args[snake(name)];
    add(`${snake(name)} missing`, args, snake(name));
  }
  add('an unknown option', { ...base, no_such_option: 1 }, 'no_such_option');
  add('an unknown option in unicode', { ...base, 'ключ_ü': 'wert' }, 'ключ_ü');
  add('a misspelt option', { ...base, [`${snake(Object.keys(schema.properties)[0])}x`]: 'typo' }, `${snake(Object.keys(schema.properties)[0])}x`);
  return cases;
}

const longTag = 'x'.repeat(129);
const up = '../'.repeat(8);
/** Cases a generator would not think of: grammar of references and tags, paths with .., maps. */
const HANDWRITTEN = {
  build: [
    ['no tags', { tags: [] }, 'tags'],
    ['an empty tag', { tags: [''] }, 'tags[0]'],
    ['a tag over 128 characters', { tags: [`localhost:5999/bad/input:${longTag}`] }, 'tags[0]'],
    ['an uppercase repository', { tags: ['localhost:5999/Bad/Input:1'] }, 'tags[0]'],
    ['a tag starting with -', { tags: ['localhost:5999/bad/input:-1'] }, 'tags[0]'],
    ['a unicode repository', { tags: ['localhost:5999/bad/ïnput:1'] }, 'tags[0]'],
    ['a URL as reference', { tags: ['https://localhost:5999/bad/input:1'] }, 'tags[0]'],
    ['null in tags', { tags: [null] }, 'tags[0]'],
    ['a context up and away (..)', { context: `${up}no-such-dir-${process.pid}/../x` }, 'context'],
    ['a Dockerfile up and away (..)', { dockerfile: `${up}no-such-dir-${process.pid}/Dockerfile` }, 'dockerfile'],
    ['an empty build arg name', { build_args: { '': 'x' } }, 'build_args'],
    ['a build arg that is a number', { build_args: { VERSION: 3 } }, 'build_args.VERSION'],
    ['a build arg of 1 MB', { build_args: { BIG: HUGE } }, 'build_args.BIG'],
    ['a label that is null', { labels: { 'org.example': null } }, 'labels.org.example'],
    ['a platform without arch', { platform: 'linux' }, 'platform'],
    ['an engine host with another scheme', { engine: { host: 'ftp://engine' } }, 'engine.host'],
    ['a negative engine timeout', { engine: { timeout_seconds: -1 } }, 'engine.timeout_seconds'],
    ['a zero stall timeout', { stall_timeout_seconds: 0 }, 'stall_timeout_seconds'],
    ['a fractional context limit', { max_context_bytes: 1.5 }, 'max_context_bytes'],
    ['a password without user', { auth: { password: 'pw-only-secret' } }, 'auth.password'],
    ['a __proto__ key (no prototype games)', { ['__proto__']: { context: '/etc' } }, '__proto__'],
    ['a camelCase typo kept as written', { buildArg: { A: '1' } }, 'buildArg'],
    ['a nested unknown key in camelCase', { engine: { timeOut: 5 } }, 'engine.timeOut'],
  ],
  push: [
    ['a reference with a space', { tags: ['localhost:5999/bad/in put:1'] }, 'tags[0]'],
    ['a digest that is not hex', { tags: ['localhost:5999/bad/input@sha256:xyz'] }, 'tags[0]'],
    ['a user without password', { auth: { username: 'someone' } }, 'auth.username'],
    ['a negative retry limit', { retry: { limit: -1 } }, 'retry.limit'],
    ['a fractional retry limit', { retry: { limit: 1.5 } }, 'retry.limit'],
    ['an unknown retry option', { retry: { attempts: 3 } }, 'retry.attempts'],
    ['a registry timeout that is text', { registry_tls: { timeout_seconds: 'soon' } }, 'registry_tls.timeout_seconds'],
    ['65 tags', { tags: Array.from({ length: 65 }, (_, i) => `localhost:5999/bad/input:t${i}`) }, 'tags'],
  ],
  register: [
    ['a digest that is not sha256', { reference: { ...BASES.register.reference, digest: 'md5:abc' } }, 'reference.digest'],
    ['no digest', { reference: { registry: 'localhost:5999', repository: 'bad/input', tag: '1' } }, 'reference: needs digest'],
    ['a tag over 128 characters', { reference: { ...BASES.register.reference, tag: longTag } }, 'reference.tag'],
    ['an empty tag', { reference: { ...BASES.register.reference, tag: '' } }, 'reference.tag'],
    ['an uppercase image name', { image: { ...BASES.register.image, name: 'Input' } }, 'image.name'],
    ['a repository of another image', { reference: { ...BASES.register.reference, repository: 'bad/other' } }, 'reference.repository'],
    ['target api without control_url', { target: 'api' }, 'control_url'],
    ['a control_url with another scheme', { target: 'api', control_url: 'ftp://control/api' }, 'control_url'],
    ['a control_url ending in /v1/images', { target: 'api', control_url: 'https://control.example.com/api/v1/images' }, 'control_url'],
    ['an unknown target', { target: 'everywhere' }, 'target'],
    ['a unicode target', { target: 'cätalog' }, 'target'],
    ['a retry limit above the maximum', { retry: { limit: 21 } }, 'retry.limit'],
    ['the former retries option', { retries: 3 }, 'retries'],
    ['a configmap namespace with uppercase', { target: 'configmap', configmap: { namespace: 'Thinkube' } }, 'configmap.namespace'],
    ['an image display_name of 1 MB', { image: { ...BASES.register.image, display_name: HUGE } }, 'image.display_name'],
    ['image metadata that is a list', { image: { ...BASES.register.image, metadata: [1, 2] } }, 'image.metadata'],
  ],
  pipeline: [
    ['a registry with a scheme', { registry: 'https://harbor.example.com' }, 'registry'],
    ['a registry with a path', { registry: 'harbor.example.com/library' }, 'registry'],
    ['an uppercase project', { project: 'Library' }, 'project'],
    ['a tag starting with -', { tags: ['-latest'] }, 'tags[0]'],
    ['an empty tag', { tags: [''] }, 'tags[0]'],
    ['a tag over 128 characters', { tags: [longTag] }, 'tags[0]'],
    ['the same image twice', { images: ['one', 'one'] }, 'images'],
    ['an unknown registration target', { registration: { target: 'nowhere' } }, 'registration.target'],
    ['a tagging flag that is text', { tagging: { version: 'yes please' } }, 'tagging.version'],
    ['images_dir up and away (..)', { images_dir: `${up}no-such-dir-${process.pid}` }, 'images_dir'],
    ['a registration token that is a number', { registration: { token: 12345 } }, 'registration.token'],
  ],
  catalog: [
    ['an empty images_dir', { images_dir: '' }, 'images_dir'],
    ['images_dir up and away (..)', { images_dir: `${up}no-such-dir-${process.pid}` }, 'images_dir'],
    ['a registry with spaces', { registry: 'bad host' }, 'registry'],
    ['a tag over 128 characters', { tags: ['ok', longTag] }, 'tags[1]'],
    ['images that are not a list', { images: 'one,two' }, 'images'],
  ],
  index: [
    ['an empty manifest reference', { manifests: [''] }, 'manifests[0]'],
    ['no manifests', { manifests: [] }, 'manifests'],
    ['an unknown media type', { media_type: 'zip' }, 'media_type'],
    ['a platform without arch', { platforms: ['linux'] }, 'platforms[0]'],
  ],
  preflight: [
    ['a negative free-space minimum', { min_free_gb: -1 }, 'min_free_gb'],
  ],
};

// ------------------------------------------------------------------ running a module

/** Run bin/<name>.js the way Ansible does (one argument: a JSON args file). */
function runModule(mod, args) {
  const dir = mkdtempSync(path.join(work, 'args-'));
  const file = path.join(dir, 'args.json');
  writeFileSync(file, JSON.stringify({ ...args, _ansible_check_mode: false, _ansible_diff: false, _ansible_verbosity: 0 }));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [mod.script, file], {
      cwd,
      env: { PATH: process.env.PATH, HOME: home, THINKUBE_IMAGES_CATALOG: path.join(work, 'default-catalog.json'), DOCKER_HOST: DEAD_ENGINE.host, THINKUBE_IMAGES_LOCK_DIR: path.join(work, 'locks') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout, stderr });
    });
  });
}

/** Run `jobs` async functions, `width` at a time. */
async function pool(jobs, width = Math.max(2, Math.min(6, os.availableParallelism()))) {
  const results = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const index = next++;
        results[index] = await jobs[index]();
      }
    }),
  );
  return results;
}

const STACK = /\n\s+at [^\n]*[(:]|node:internal|MODULE FAILURE/;

/** The promises every bad-input case keeps. Returns a list of broken promises (empty: all kept). */
function check(run, field) {
  const problems = [];
  const lines = run.stdout.trim().split('\n');
  let result;
  try {
    if (lines.length !== 1) throw new Error(`${lines.length} lines`);
    result = JSON.parse(lines[0]);
  } catch (error) {
    problems.push(`stdout is not one JSON object (${error.message}): ${run.stdout.slice(0, 300)}`);
    return problems;
  }
  if (result.failed !== true) problems.push(`failed is ${result.failed}`);
  if (run.code !== 1) problems.push(`exit code ${run.code}`);
  if (typeof result.msg !== 'string' || !result.msg) problems.push('no msg');
  else if (!result.msg.toLowerCase().includes(field.toLowerCase())) problems.push(`msg does not name ${field}: ${result.msg.slice(0, 400)}`);
  if (STACK.test(run.stdout) || STACK.test(run.stderr)) problems.push(`a stack trace or MODULE FAILURE: ${(run.stdout + run.stderr).slice(0, 600)}`);
  if (run.stdout.length > 200_000) problems.push(`${run.stdout.length} bytes of output (a 1 MB value echoed?)`);
  if (/pw-only-secret/.test(run.stdout + run.stderr)) problems.push('a password was printed');
  return problems;
}

let processCases = 0;

t.test('fixed corpus of bad args, every module, through the Ansible path', async (t) => {
  t.ok(modules.length >= 5, `modules found: ${modules.map((m) => m.name).join(', ')}`);
  for (const name of ['build', 'push', 'register', 'pipeline', 'catalog']) t.ok(modules.some((m) => m.name === name), `${name} is covered`);
  const cases = [];
  for (const mod of modules) {
    t.ok(BASES[mod.name], `${mod.name} has base args for the corpus`);
    if (!BASES[mod.name]) continue;
    cases.push(...schemaCases(mod));
    for (const [label, change, field] of HANDWRITTEN[mod.name] ?? []) cases.push({ label: `${mod.name}: ${label}`, mod, args: { ...BASES[mod.name], ...change }, field });
  }
  const runs = await pool(cases.map((c) => () => runModule(c.mod, c.args)));
  processCases += cases.length;
  let kept = 0;
  cases.forEach((c, i) => {
    const broken = check(runs[i], c.field);
    if (broken.length === 0) kept++;
    else t.fail(c.label, { broken });
  });
  t.equal(kept, cases.length, `${kept} of ${cases.length} cases failed cleanly, naming the field`);
});

// ------------------------------------------------------------------ property-based (fast-check)

/** The runner's own path from Ansible args to validated options, minus the process. */
function validateLikeAnsible(mod, args) {
  const options = ansibleOptions(Object.fromEntries(Object.entries(args).filter(([k]) => !k.startsWith('_ansible_'))), mod.schema);
  return validate(mod.schema, options, { naming: 'snake', what: `${mod.name} options` });
}

/** Arbitrary values shaped by a property's schema: mostly the right type, often out of bounds. */
function arbitraryFor(spec, depth = 0) {
  const s = deref(spec);
  const any = fc.jsonValue({ maxDepth: 2 });
  switch (typeOf(s)) {
    case 'string':
      return fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.constantFrom('', '..', '../..', '-x', 'UPPER', 'a'.repeat(300), 'x:y@z', ...(s.enum ?? [])), any);
    case 'number':
    case 'integer':
      return fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.constantFrom(0, -1, 1.5, 1e12), any);
    case 'boolean':
      return fc.oneof(fc.boolean(), any);
    case 'array':
      return fc.oneof(fc.array(depth < 2 && s.items ? arbitraryFor(s.items, depth + 1) : any, { maxLength: 4 }), any);
    case 'object':
      if (depth < 2 && s.properties) {
        const keys = Object.keys(s.properties);
        return fc.oneof(
          fc.record(Object.fromEntries(keys.map((k) => [snake(k), arbitraryFor(s.properties[k], depth + 1)])), { requiredKeys: [] }),
          fc.dictionary(fc.string({ maxLength: 12 }), any, { maxKeys: 3 }),
          any,
        );
      }
      return fc.oneof(fc.dictionary(fc.string({ maxLength: 12 }), any, { maxKeys: 3 }), any);
    default:
      return any;
  }
}

/** Blank keys are shown quoted in messages. */
const shown = (key) => (key.trim() === '' ? JSON.stringify(key) : key);
/** The arg a problem's field starts with (keys may hold dots or brackets themselves). */
const argOf = (field, names) => names.find((name) => field === shown(name) || field.startsWith(`${shown(name)}.`) || field.startsWith(`${shown(name)}[`));

/**
 * The invariant: validation either accepts the args, or throws a ValidationError whose every
 * problem names an option the args hold (or a required one they lack), in snake_case, and whose
 * message names it too. Never another kind of exception.
 */
function assertCleanValidation(mod, args) {
  try {
    validateLikeAnsible(mod, args);
    return 'valid';
  } catch (error) {
    if (!(error instanceof ValidationError)) throw new Error(`${mod.name}: ${error?.constructor?.name} instead of a ValidationError: ${error?.message}`);
    const schema = schemaOf(mod.schema);
    const names = [...Object.keys(args), ...(schema.required ?? []).map(snake)].sort((a, b) => b.length - a.length);
    // An option required only with another (control_url with target api) is named when missing.
    const conditional = Object.keys(schema.properties).map(snake);
    for (const problem of error.problems) {
      if (problem.message === 'is required' && conditional.includes(problem.field)) continue;
      const top = argOf(problem.field, names);
      if (top === undefined) throw new Error(`${mod.name}: problem names "${problem.field}", which the args do not hold: ${error.message}`);
      // Option names are snake_case; keys the playbook wrote are shown as written.
      if (/[A-Z]/.test(top) && !Object.hasOwn(args, top)) throw new Error(`${mod.name}: "${problem.field}" is not snake_case`);
      if (!error.message.includes(problem.field)) throw new Error(`${mod.name}: message does not name ${problem.field}`);
    }
    if (error.problems.length === 0) throw new Error(`${mod.name}: a ValidationError without problems`);
    return 'invalid';
  }
}

let propertyCases = 0;
const invalidSamples = [];
// Which generated invalid args are kept for the process runs: drawn from the seed, so a replay keeps the same.
const sampleDraw = seededRandom('invalid-samples');
t.comment(`fast-check seed ${FC_SEED} (replay this run with FC_SEED=${FC_SEED})`);

t.test('property-based: one option at a time takes arbitrary values', async (t) => {
  for (const mod of modules.filter((m) => BASES[m.name])) {
    const schema = schemaOf(mod.schema);
    for (const name of Object.keys(schema.properties)) {
      const key = snake(name);
      let tried = 0;
      assertProperty(
        `${mod.name}.${key}`,
        fc.property(arbitraryFor(schema.properties[name]), (value) => {
          tried++;
          const args = { ...BASES[mod.name], [key]: value };
          const outcome = assertCleanValidation(mod, args);
          if (outcome === 'invalid' && invalidSamples.length < 400 && sampleDraw() < 0.15) invalidSamples.push({ mod, args });
        }),
        { numRuns: 60 },
      );
      propertyCases += tried;
    }
    t.pass(`${mod.name}: every option took arbitrary values cleanly`);
  }
});

t.test('property-based: arbitrary extra keys are named, whatever their spelling', async (t) => {
  for (const mod of modules.filter((m) => BASES[m.name])) {
    const schema = schemaOf(mod.schema);
    const known = new Set([...Object.keys(schema.properties), ...Object.keys(schema.properties).map(snake)]);
    let tried = 0;
    assertProperty(
      `${mod.name}: extra keys`,
      fc.property(
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }).filter((k) => !known.has(k) && !k.startsWith('_ansible_')),
        fc.jsonValue({ maxDepth: 2 }),
        (key, value) => {
          tried++;
          const args = { ...BASES[mod.name], [key]: value };
          try {
            validateLikeAnsible(mod, args);
          } catch (error) {
            if (!(error instanceof ValidationError)) throw error;
            if (!error.problems.some((p) => p.field === shown(key) && /not a known option/.test(p.message))) throw new Error(`${mod.name}: extra key ${JSON.stringify(key)} not named: ${error.message}`);
            return;
          }
          throw new Error(`${mod.name}: extra key ${JSON.stringify(key)} was accepted`);
        },
      ),
      { numRuns: 150 },
    );
    propertyCases += tried;
    t.pass(`${mod.name}: extra keys refused by name`);
  }
});

t.test('property-based: whole arbitrary args objects', async (t) => {
  for (const mod of modules.filter((m) => BASES[m.name])) {
    let tried = 0;
    assertProperty(
      `${mod.name}: whole args`,
      fc.property(fc.oneof(arbitraryFor(schemaOf(mod.schema)), fc.dictionary(fc.string({ maxLength: 16 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 })), (args) => {
        tried++;
        if (!args || typeof args !== 'object' || Array.isArray(args)) return;
        assertCleanValidation(mod, args);
      }),
      { numRuns: 200 },
    );
    propertyCases += tried;
    t.pass(`${mod.name}: arbitrary args objects validated cleanly`);
  }
});

t.test('a sample of the generated invalid args through real module processes', async (t) => {
  t.ok(invalidSamples.length >= 30, `${invalidSamples.length} generated invalid args sampled`);
  const sample = invalidSamples.slice(0, 60);
  const runs = await pool(sample.map((s) => () => runModule(s.mod, s.args)));
  processCases += sample.length;
  let kept = 0;
  sample.forEach((s, i) => {
    let field;
    try {
      validateLikeAnsible(s.mod, s.args);
    } catch (error) {
      field = error.problems[0].field;
    }
    const broken = check(runs[i], field);
    if (broken.length === 0) kept++;
    else t.fail(`${s.mod.name}: ${JSON.stringify(s.args).slice(0, 200)}`, { broken });
  });
  t.equal(kept, sample.length, `${kept} of ${sample.length} generated cases failed cleanly through the module`);
});

t.test('number of cases tried', async (t) => {
  t.ok(processCases > 300, `${processCases} module runs`);
  t.ok(propertyCases > 3000, `${propertyCases} property-based validations`);
  t.comment(`bad input: ${processCases} module runs through the Ansible path + ${propertyCases} property-based cases in-process = ${processCases + propertyCases} cases`);
});
