// Every module's sidecar documentation matches its JSON Schema, both ways, and the generated
// TypeScript types and schema copies are up to date with schemas/.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { repoRoot } from './helpers/env.js';
import { topLevelProperties, deref } from '../dist/lib/options/option-spec.js';
import { convertName } from '../dist/lib/options/schema.js';

const modules = readdirSync(path.join(repoRoot, 'lib', 'adapters', 'entries'))
  .map((file) => readFileSync(path.join(repoRoot, 'lib', 'adapters', 'entries', file), 'utf8'))
  .map((text) => ({ module: /module: '(thinkube_[a-z_]+)'/.exec(text)?.[1], schema: /schema: '([a-z-]+\.schema\.json)'/.exec(text)?.[1] }))
  .filter((m) => m.module && m.schema);

t.ok(modules.length >= 5, `found ${modules.length} modules`);

function schemaTree(properties) {
  const out = {};
  for (const { name, schema } of properties) {
    const sub = schema.type === 'object' && schema.properties ? Object.entries(schema.properties).map(([n, s]) => ({ name: n, schema: deref(s) })) : undefined;
    out[convertName(name, 'snake')] = { secret: schema['x-secret'] === true, children: sub ? schemaTree(sub) : undefined };
  }
  return out;
}

function compare(t, schemaOptions, docOptions, where) {
  const schemaNames = Object.keys(schemaOptions).sort();
  const docNames = Object.keys(docOptions ?? {}).sort();
  t.same(docNames, schemaNames, `${where}: documented options equal the schema's`);
  for (const name of schemaNames) {
    const doc = docOptions?.[name];
    if (!doc) continue;
    t.ok(Array.isArray(doc.description) && doc.description.join('').length > 3, `${where}.${name} has a description`);
    t.equal(doc.no_log === true, schemaOptions[name].secret, `${where}.${name}: no_log matches the schema's x-secret`);
    if (schemaOptions[name].children) compare(t, schemaOptions[name].children, doc.suboptions, `${where}.${name}`);
  }
}

for (const { module, schema } of modules) {
  t.test(`${module} documents exactly the options of ${schema}`, async (t) => {
    const doc = yaml.load(readFileSync(path.join(repoRoot, 'ansible', 'library', `${module}.yml`), 'utf8'));
    t.equal(doc.DOCUMENTATION.module, module);
    t.ok(doc.DOCUMENTATION.short_description && !/TODO/.test(JSON.stringify(doc)), 'hand-written parts filled in');
    t.ok(doc.EXAMPLES.includes(`${module}:`), 'examples use the module');
    t.ok(Object.keys(doc.RETURN ?? {}).length > 0, 'return values documented');
    compare(t, schemaTree(topLevelProperties(schema)), doc.DOCUMENTATION.options, module);
  });
}

t.test('generated files are up to date', async (t) => {
  t.doesNotThrow(() => execFileSync(process.execPath, [path.join(repoRoot, 'scripts', 'gen-schemas.js'), '--check'], { stdio: 'pipe' }), 'lib/options/generated matches schemas/');
  t.doesNotThrow(() => execFileSync(process.execPath, [path.join(repoRoot, 'scripts', 'gen-module-docs.js'), '--check'], { stdio: 'pipe' }), 'sidecar docs match schemas/');
});
