import t from 'tap';
import { validate, ValidationError } from '../dist/lib/index.js';

const ok = { context: '/tmp', tags: ['localhost:5000/library/x:1'] };

t.test('valid build options get defaults and are not mutated', async (t) => {
  const input = structuredClone(ok);
  const out = validate('build-options.schema.json', input);
  t.equal(out.ociLabels, true);
  t.equal(out.pull, false);
  t.same(input, ok, 'caller object untouched');
});

t.test('wrong types, unknown keys and missing fields name the field', async (t) => {
  const cases = [
    [{ ...ok, tags: 'x' }, 'tags', /must be array/],
    [{ ...ok, noCache: 'yes' }, 'noCache', /must be boolean/],
    [{ ...ok, colour: 1 }, 'colour', /not a known option/],
    [{ tags: ok.tags }, 'context', /is required/],
    [{ ...ok, tags: ['UPPER/Case:1'] }, 'tags[0]', /image reference/],
    [{ ...ok, tags: [`r/x:${'a'.repeat(129)}`] }, 'tags[0]', /128/],
    [{ ...ok, platform: 'amd64' }, 'platform', /os\/arch/],
    [{ ...ok, engine: { host: 'docker.sock' } }, 'engine.host', /unix:\/\//],
  ];
  for (const [input, field, message] of cases) {
    const error = t.throws(() => validate('build-options.schema.json', input));
    t.type(error, ValidationError);
    const problem = error.problems.find((p) => p.field === field);
    t.ok(problem, `problem names ${field}: ${JSON.stringify(error.problems)}`);
    t.match(problem?.message, message);
    t.ok(error.message.includes(field), 'message names the field');
  }
});

t.test('field names follow the caller naming', async (t) => {
  const error = t.throws(() => validate('build-options.schema.json', { ...ok, noCache: 1, engine: { timeoutSeconds: 'x' } }, { naming: 'snake' }));
  t.same(error.problems.map((p) => p.field).sort(), ['engine.timeout_seconds', 'no_cache']);
  const kebab = t.throws(() => validate('build-options.schema.json', { ...ok, noCache: 1 }, { naming: 'kebab' }));
  t.same(kebab.problems.map((p) => p.field), ['--no-cache']);
});

t.test('push credentials come in pairs', async (t) => {
  const error = t.throws(() => validate('push-options.schema.json', { tags: ok.tags, auth: { password: 's3cret-value' } }));
  t.match(error.message, /auth\.password: needs username/);
  t.notMatch(error.message, /s3cret-value/);
});

t.test('the generated validators answer exactly as ajv compiling schemas/ at run time (errors, defaults; whole files, definitions, picks)', async (t) => {
  const { Ajv } = await import('ajv');
  const { default: ajvErrors } = await import('ajv-errors');
  const fc = (await import('fast-check')).default;
  const { assertProperty, FC_SEED } = await import('./helpers/fast-check.js');
  const { schemaErrors, schemaDocuments } = await import('../dist/lib/options/schema.js');
  t.comment(`FC_SEED=${FC_SEED}`);
  // The options scripts/gen-schemas.js compiles with.
  const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: true, allowUnionTypes: true });
  for (const keyword of ['x-secret', 'x-ansible', 'tsType']) ajv.addKeyword(keyword);
  ajvErrors(ajv);
  for (const doc of Object.values(schemaDocuments)) ajv.addSchema(doc);
  // ajv's uniqueItems throws on an item such as {valueOf: null} (the generated code treats such
  // items as different and goes on validating): no answer to compare with.
  const ajvAnswers = (fn, data) => {
    try {
      return fn(data);
    } catch {
      fc.pre(false);
    }
  };
  const shape = (errors) => (errors ?? []).map((e) => ({ instancePath: e.instancePath, keyword: e.keyword, params: e.params, message: e.message }));
  // Values near what a schema wants: its defaults, enums and examples, and anything at all.
  const hints = (schema) => {
    const found = [];
    const walk = (s) => {
      if (!s || typeof s !== 'object') return;
      if ('default' in s) found.push(s.default);
      if (Array.isArray(s.enum)) found.push(...s.enum);
      if (Array.isArray(s.examples)) found.push(...s.examples);
      for (const v of Object.values(s)) if (v && typeof v === 'object') walk(v);
    };
    walk(schema);
    return found;
  };
  let compared = 0;
  for (const [file, doc] of Object.entries(schemaDocuments)) {
    const value = fc.oneof(fc.constantFrom(...hints(doc), 'x', 1, 'unix:///run/docker.sock', 'localhost:5000/library/x:1'), fc.anything({ maxDepth: 2 }));
    const names = Object.keys(doc.properties ?? {});
    const object = fc.dictionary(fc.oneof(fc.constantFrom(...names, 'bogusOption'), fc.string({ maxLength: 4 })), value, { maxKeys: 6 });
    const parts = [{}, ...Object.keys(doc.definitions ?? {}).map((definition) => ({ definition }))];
    for (const part of parts) {
      const fn = part.definition ? ajv.getSchema(`${doc.$id}#/definitions/${part.definition}`) : ajv.getSchema(doc.$id);
      assertProperty(`${file} ${part.definition ?? ''}`, fc.property(fc.oneof(object, value.filter((v) => v && typeof v === 'object')), (data) => {
        const theirs = structuredClone(data);
        const ours = structuredClone(data);
        const ok = ajvAnswers(fn, theirs);
        const errors = schemaErrors(file, ours, part);
        compared++;
        return JSON.stringify(shape(ok ? [] : fn.errors)) === JSON.stringify(shape(errors)) && JSON.stringify(theirs) === JSON.stringify(ours);
      }), { numRuns: 40 });
    }
    if (names.length === 0) continue;
    // A part of the options (what validate's `pick` does): ajv compiles the picked properties as one schema.
    // (A picked property that refers to the file's own #/definitions has no such schema to resolve in: not a case here.)
    const pickable = names.filter((name) => !JSON.stringify(doc.properties[name]).includes('"$ref":"#'));
    if (pickable.length === 0) continue;
    assertProperty(`${file} pick`, fc.property(fc.shuffledSubarray(pickable, { minLength: 1 }), object, (pick, data) => {
      const fn = ajv.compile({ $id: `${doc.$id}?pick=${compared}`, type: 'object', additionalProperties: false, properties: Object.fromEntries(pick.map((name) => [name, doc.properties[name]])) });
      ajv.removeSchema(fn.schema.$id);
      const theirs = structuredClone(data);
      const ours = structuredClone(data);
      const ok = ajvAnswers(fn, theirs);
      const errors = schemaErrors(file, ours, { pick });
      compared++;
      return JSON.stringify(shape(ok ? [] : fn.errors)) === JSON.stringify(shape(errors)) && JSON.stringify(theirs) === JSON.stringify(ours);
    }), { numRuns: 25 });
  }
  t.ok(compared > 1000, `${compared} inputs compared`);
});

t.test('an array item whose valueOf is not a function is a validation error, not a TypeError', async (t) => {
  const error = t.throws(() => validate('pipeline-options.schema.json', { imagesDir: 'images', registry: 'localhost:5000', platforms: [{}, { valueOf: null }] }));
  t.type(error, ValidationError);
  t.match(error.problems, [{ field: 'platforms[0]' }, { field: 'platforms[1]' }]);
});
