#!/usr/bin/env node
// Bundles each bin/ script that declares an Ansible module name into one self-contained file in
// ansible/library/<module>.js. Ansible copies a module file ALONE to the target's temporary folder
// and runs it there, so it must not import anything relative to itself.
import { readFile, readdir, mkdir, chmod } from 'node:fs/promises';
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
  const outfile = path.join(outDir, `${module}.js`);
  await build({
    entryPoints: [path.join(root, 'bin', file)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    // ssh2's optional native speed-ups; it works without them.
    external: ['cpu-features', '*.node'],
    // ajv-formats-draft2019 (under the Kubernetes models' validators) requires "punycode", which
    // Node resolves to its deprecated core module (a warning on every module run outside
    // node_modules): bundle the npm package it declares instead.
    alias: { punycode: 'punycode/' },
    banner: {
      // WANT_JSON tells Ansible to pass the arguments as a JSON file; CommonJS dependencies
      // inside an ES module bundle need a require().
      js: "// WANT_JSON\nimport { createRequire as __thinkubeCreateRequire } from 'node:module';\nconst require = __thinkubeCreateRequire(import.meta.url);\nimport { fileURLToPath as __thinkubeFileURLToPath } from 'node:url';\nconst __filename = __thinkubeFileURLToPath(import.meta.url);\nconst __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
    },
    legalComments: 'none',
    logLevel: 'warning',
  });
  await chmod(outfile, 0o755);
}
console.error(`bundled ${entries.length} Ansible modules into ${path.relative(root, outDir)}/`);
