#!/usr/bin/env node
// Bundles each bin/ script that declares an Ansible module name into one self-contained file in
// ansible/library/<module>.cjs. Ansible copies a module file ALONE to the target's temporary folder
// (keeping its extension) and runs it there, so it must not import anything relative to itself.
// CommonJS, because there is no package.json beside it there: Node would parse an ES module
// bundle twice (first as CommonJS, to detect its syntax), about 50 ms of every module's start-up.
import { readFile, readdir, mkdir, chmod, rm, writeFile } from 'node:fs/promises';
import zlib, { brotliCompressSync } from 'node:zlib';
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
  const command = /import\('\.\.\/dist\/lib\/adapters\/commands\/([a-z-]+\.js)'\)/.exec(text)?.[1];
  if (!command) throw new Error(`bin/${file} loads no command from dist/lib/adapters/commands/`);
  if (match && text.includes('WANT_JSON')) entries.push({ file, module: match[1], command });
}

const common = {
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
  legalComments: 'none',
  logLevel: 'warning',
};

/**
 * The module in two parts. The front is what every run needs: the runner, argument reading and
 * the validators. The command itself (the engine, SSH, HTTP and Kubernetes stacks, 2.5 MB) rides
 * along brotli-compressed and is compiled only when the validated options reach it: a module
 * that fails its options parses 2.5 MB less (about half of its start-up). The command part gets
 * the front's own instances of the modules both use (one ValidationError class, one schema set).
 */
async function bundle(entry, commandFile) {
  const commandPath = path.join(root, 'dist', 'lib', 'adapters', 'commands', commandFile);
  // The front, first with an empty command part: which of our modules it holds.
  const front = async (contents) =>
    build({
      ...common,
      entryPoints: [entry],
      write: false,
      metafile: true,
      outfile: 'front.cjs',
      plugins: [
        {
          name: 'command-part',
          setup(b) {
            b.onResolve({ filter: /\/adapters\/commands\// }, (args) => (path.resolve(args.resolveDir, args.path) === commandPath ? { path: commandPath, namespace: 'command-part' } : undefined));
            b.onLoad({ filter: /.*/, namespace: 'command-part' }, () => ({ contents, resolveDir: root, loader: 'js' }));
          },
        },
      ],
    });
  const probe = await front('module.exports = {};');
  const shared = Object.keys(probe.metafile.inputs).filter((input) => input.startsWith('dist/lib/'));
  const back = await build({
    ...common,
    entryPoints: [commandPath],
    write: false,
    outfile: 'command.cjs',
    plugins: [
      {
        name: 'shared-with-front',
        setup(b) {
          b.onResolve({ filter: /^\./ }, (args) => {
            const key = path.relative(root, path.resolve(args.resolveDir, args.path));
            return shared.includes(key) ? { path: key, external: true } : undefined;
          });
        },
      },
    ],
  });
  const code = brotliCompressSync(back.outputFiles[0].contents, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9 } }).toString('base64');
  const loader = [
    `const shared = { ${shared.map((key) => `${JSON.stringify(key)}: () => require(${JSON.stringify(path.join(root, key))})`).join(', ')} };`,
    "const need = Object.assign((id) => (Object.hasOwn(shared, id) ? shared[id]() : require(id)), { resolve: require.resolve, cache: require.cache });",
    `const code = require('node:zlib').brotliDecompressSync(Buffer.from('${code}', 'base64')).toString('utf8');`,
    'const part = { exports: {} };',
    '// Our own code, bundled at build time.',
    "new Function('require', 'module', 'exports', '__filename', '__dirname', code)(need, part, part.exports, __filename, __dirname);",
    'module.exports = part.exports;',
  ].join('\n');
  const done = await front(loader);
  return done.outputFiles[0].contents;
}

for (const { file, module, command } of entries) {
  const outfile = path.join(outDir, `${module}.cjs`);
  // The ES module bundle of earlier versions: Ansible would find two files for one module name.
  await rm(path.join(outDir, `${module}.js`), { force: true });
  const text = Buffer.from(await bundle(path.join(root, 'bin', file), command)).toString('utf8');
  // WANT_JSON tells Ansible to pass the arguments as a JSON file (after the #! line).
  await writeFile(outfile, text.replace(/^(#![^\n]*\n)?/, (shebang) => `${shebang}// WANT_JSON\n`));
  await chmod(outfile, 0o755);
}
console.error(`bundled ${entries.length} Ansible modules into ${path.relative(root, outDir)}/`);
