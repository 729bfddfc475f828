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
