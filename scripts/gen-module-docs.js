#!/usr/bin/env node
// Writes the `options` of each Ansible module's sidecar documentation (ansible/library/<module>.yml)
// from the module's JSON Schema, keeping the hand-written parts (descriptions, EXAMPLES, RETURN).
// `--check` exits 1 when a sidecar is out of date (the tests run it).
import { readFile, writeFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { moduleOptionsDoc } from '../dist/lib/adapters/module-docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const stale = [];
const entriesDir = path.join(root, 'lib', 'adapters', 'entries');
for (const file of (await readdir(entriesDir)).sort()) {
  const text = await readFile(path.join(entriesDir, file), 'utf8');
  const module = /module: '(thinkube_[a-z_]+)'/.exec(text)?.[1];
  const schema = /schema: '([a-z-]+\.schema\.json)'/.exec(text)?.[1];
  if (!module || !schema) continue;
  const docFile = path.join(root, 'ansible', 'library', `${module}.yml`);
  const existing = await readFile(docFile, 'utf8').catch(() => '');
  const doc = existing ? yaml.load(existing) : { DOCUMENTATION: { module, short_description: 'TODO', description: ['TODO'] }, EXAMPLES: '', RETURN: {} };
  doc.DOCUMENTATION.module = module;
  doc.DOCUMENTATION.options = moduleOptionsDoc(schema);
  doc.DOCUMENTATION.notes = doc.DOCUMENTATION.notes ?? [];
  const header = `# Sidecar documentation of the ${module} module (ansible-doc -M ansible/library ${module}).\n# DOCUMENTATION.options is generated from schemas/${schema} by scripts/gen-module-docs.js; edit the rest by hand.\n`;
  const out = header + yaml.dump(doc, { lineWidth: 100, noRefs: true });
  if (out === existing) continue;
  if (check) stale.push(path.relative(root, docFile));
  else await writeFile(docFile, out);
}
if (stale.length) {
  console.error(`${stale.join(', ')} out of date with schemas/: run node scripts/gen-module-docs.js`);
  process.exit(1);
}
