#!/usr/bin/env node
// Bundles each bin/ script that declares an Ansible module name into one self-contained file in
// ansible/library/<module>.cjs. Ansible copies a module file ALONE to the target's temporary folder
// (keeping its extension) and runs it there, so it must not import anything relative to itself.
// CommonJS, because there is no package.json beside it there: Node would parse an ES module
// bundle twice (first as CommonJS, to detect its syntax), about 50 ms of every module's start-up.
import { readFile, readdir, mkdir, chmod, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'ansible', 'library');
await mkdir(outDir, { recursive: true });

const entries = [];
for (const file of (await readdir(path.join(root, 'bin'))).sort()) {
  if (!file.endsWith('.js')) continue;
  const text = await readFile(path.join(root, 'bin', file), 'utf8');
  const match = /module: '(thinkube_[a-z_]+)'/.exec(text);
  if (match && text.includes('WANT_JSON')) entries.push({ file, module: match[1] });
}

for (const { file, module } of entries) {
  const outfile = path.join(outDir, `${module}.cjs`);
  // The ES module bundle of earlier versions: Ansible would find two files for one module name.
  await rm(path.join(outDir, `${module}.js`), { force: true });
  await build({
    entryPoints: [path.join(root, 'bin', file)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    // ssh2's optional native speed-ups; it works without them.
    external: ['cpu-features', '*.node'],
    // ajv-formats-draft2019 (under the Kubernetes models' validators) requires "punycode", which
    // Node resolves to its deprecated core module (a warning on every module run outside
    // node_modules): bundle the npm package it declares instead.
    alias: { punycode: 'punycode/' },
    // WANT_JSON tells Ansible to pass the arguments as a JSON file.
    banner: { js: '// WANT_JSON' },
    legalComments: 'none',
    logLevel: 'warning',
  });
  await chmod(outfile, 0o755);
}
console.error(`bundled ${entries.length} Ansible modules into ${path.relative(root, outDir)}/`);
