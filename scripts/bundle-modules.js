#!/usr/bin/env node
// Bundles each command of lib/adapters/entries/ twice, from its build in dist/:
// - dist/cli/<name>.cjs (with its parts beside it): what bin/<name>.js runs. One CommonJS file
//   to read instead of a hundred ES modules to resolve and link, and each part a file of its own
//   that Node's compile cache keeps (bin/ turns it on).
// - ansible/library/<module>.cjs for the commands that are Ansible modules: one self-contained
//   file. Ansible copies a module file ALONE to the target's temporary folder (keeping its
//   extension) and runs it there, so it must not import anything relative to itself; its parts
//   ride along brotli-compressed. CommonJS, because there is no package.json beside it there:
//   Node would parse an ES module bundle twice (first as CommonJS, to detect its syntax), about
//   50 ms of every module's start-up.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, readdir, mkdir, chmod, rm, writeFile } from 'node:fs/promises';
import zlib, { brotliCompressSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'ansible', 'library');
const cliDir = path.join(root, 'dist', 'cli');
await mkdir(outDir, { recursive: true });
await rm(cliDir, { recursive: true, force: true });
await mkdir(cliDir, { recursive: true });

const entries = [];
for (const file of (await readdir(path.join(root, 'lib', 'adapters', 'entries'))).sort()) {
  if (!file.endsWith('.ts')) continue;
  const name = file.replace(/\.ts$/, '');
  const text = await readFile(path.join(root, 'lib', 'adapters', 'entries', file), 'utf8');
  const command = /import\('\.\.\/commands\/([a-z-]+)\.js'\)/.exec(text)?.[1];
  if (!command) throw new Error(`lib/adapters/entries/${file} loads no command from ../commands/`);
  entries.push({ name, module: /module: '(thinkube_[a-z_]+)'/.exec(text)?.[1], command: `${command}.js` });
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
  // No comments or indentation: less to read and to checksum for the compile cache each start,
  // and no UTF-8 (comments hold a few non-ASCII characters; an all-ASCII file is read as
  // Latin-1, several times faster). Names stay, for readable profiles and stack traces.
  minifyWhitespace: true,
  charset: 'ascii',
  logLevel: 'warning',
  // Code that finds files of the package from its own place (lint's default images folder):
  // the bundle's file (run() passes it on to a part).
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: "var __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
};

/**
 * Packages a run loads only for some work, each group bundled apart and evaluated on its first
 * require: dockerode (with docker-modem, ssh2, gRPC) for a build or push, the Kubernetes client and
 * models for a cluster run. A no-op run compiles none of them (they are 80% of the command's code).
 */
const LAZY_GROUPS = [
  { name: 'engine', packages: /^dockerode$/ },
  { name: 'cluster', packages: /^(@kubernetes\/client-node|kubernetes-models|@kubernetes-models\/[^/]+)(\/.*)?$/ },
];
const groupOf = (specifier) => LAZY_GROUPS.find((g) => g.packages.test(specifier));

/**
 * Packages a group's packages require at load but use only for work this project never or rarely
 * asks for: dockerode's BuildKit session (gRPC) and docker-modem's ssh:// transport (ssh2). Each
 * is evaluated on first use through a stand-in (about 80 ms of every build's start-up otherwise).
 */
const DEFERRED = { '@grpc/grpc-js': /[\\/]node_modules[\\/]dockerode[\\/]/, '@grpc/proto-loader': /[\\/]node_modules[\\/]dockerode[\\/]/, ssh2: /[\\/]node_modules[\\/]docker-modem[\\/]/ };
const deferredDependencies = {
  name: 'deferred-dependencies',
  setup(b) {
    b.onResolve({ filter: /^(@grpc\/grpc-js|@grpc\/proto-loader|ssh2)$/ }, (args) => {
      if (args.namespace === 'deferred' || !DEFERRED[args.path]?.test(args.importer)) return undefined;
      return { path: args.path, namespace: 'deferred', pluginData: { resolveDir: args.resolveDir } };
    });
    // Every member is a stand-in that loads the package when it is called, constructed or read
    // (docker-modem reads require('ssh2').Client at load, and constructs it only for ssh://).
    b.onLoad({ filter: /.*/, namespace: 'deferred' }, (args) => ({
      contents: [
        'let real;',
        `const load = () => (real ??= require(${JSON.stringify(args.path)}));`,
        'const member = (key) => new Proxy(function () {}, {',
        '  get: (_, k) => Reflect.get(load()[key], k),',
        '  apply: (_, self, list) => Reflect.apply(load()[key], self, list),',
        '  construct: (_, list) => Reflect.construct(load()[key], list),',
        '});',
        "module.exports = new Proxy({}, { get: (_, key) => (key === '__esModule' ? false : member(key)) });",
      ].join('\n'),
      resolveDir: args.pluginData.resolveDir,
      loader: 'js',
    }));
  },
};

/**
 * The names `code` (tsc's output) imports from `specifier`: a Set, or '*' for a namespace, a
 * default import or anything this does not read.
 */
function importedNames(code, specifier) {
  const quoted = specifier.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const named = new RegExp(`import\\s*\\{([^}]*)\\}\\s*from\\s*['"]${quoted}['"]`, 'g');
  const any = new RegExp(`(?:import|export)[^;'"]*from\\s*['"]${quoted}['"]`, 'g');
  const names = new Set();
  let count = 0;
  for (const match of code.matchAll(named)) {
    count++;
    for (const part of match[1].split(',').map((p) => p.trim()).filter(Boolean)) names.add(part.split(/\s+as\s+/)[0]);
  }
  return count > 0 && count === [...code.matchAll(any)].length ? names : '*';
}

/** A part kept in the module file: its code brotli-compressed, and an id naming that code (lib/core/code-cache.ts). */
const packed = (code) =>
  `{ id: ${JSON.stringify(createHash('sha256').update(code).digest('hex').slice(0, 16))}, code: ${JSON.stringify(brotliCompressSync(code, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9 } }).toString('base64'))} }`;

/**
 * The command in parts. The front is what every run needs: the runner, argument reading and the
 * validators. The command itself (the engine, SSH, HTTP and Kubernetes stacks) is compiled only
 * when the validated options reach it: a run that fails its options parses none of it. The
 * command part gets the front's own instances of the modules both use (one ValidationError class,
 * one schema set); the lazy groups above are parts of their own, compiled when the command first
 * requires one of their packages.
 *
 * The parts are built once; `assemble(store, prefix)` then makes a front for them. `store` says
 * where a part goes: 'packed' keeps it in the front as a brotli-compressed string (the
 * self-contained Ansible module; lib/core/code-cache.ts compiles it, with V8's code cache kept by
 * its content, as Node's compile cache keys by a path Ansible changes every task), 'files' writes
 * it as <prefix>.<part>.cjs beside the front (Node's compile cache keeps it). It
 * returns the front's code and the part files to write.
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
            b.onResolve({ filter: /commands\/[a-z-]+\.js$/ }, (args) => (path.resolve(args.resolveDir, args.path) === commandPath ? { path: commandPath, namespace: 'command-part' } : undefined));
            b.onLoad({ filter: /.*/, namespace: 'command-part' }, () => ({ contents, resolveDir: root, loader: 'js' }));
          },
        },
      ],
    });
  const probe = await front('module.exports = {};');
  const shared = Object.keys(probe.metafile.inputs).filter((input) => input.startsWith('dist/lib/'));
  // Package specifiers of the lazy groups that the command requires, per group.
  const lazy = new Map();
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
      {
        name: 'lazy-groups',
        setup(b) {
          b.onResolve({ filter: /^[@a-z]/ }, (args) => {
            // Only the command's own imports: a package inside a group keeps its dependencies.
            if (args.namespace !== 'lazy-shim' && !args.importer.startsWith(path.join(root, 'dist'))) return undefined;
            const group = groupOf(args.path);
            if (!group) return undefined;
            // esbuild keeps an external import() as it is, which code run by new Function cannot
            // resolve: it goes through a bundled shim that re-exports the package instead.
            if (args.kind === 'dynamic-import') return { path: args.path, namespace: 'lazy-shim' };
            if (!lazy.has(group.name)) lazy.set(group.name, new Map());
            const names = lazy.get(group.name);
            const wanted = args.namespace === 'lazy-shim' ? '*' : importedNames(readFileSync(args.importer, 'utf8'), args.path);
            const known = names.get(args.path);
            names.set(args.path, wanted === '*' || known === '*' ? '*' : new Set([...(known ?? []), ...wanted]));
            return { path: args.path, external: true };
          });
          // An ES module outside any package.json: esbuild's interop takes the group's default
          // export as the default, as Node's import() of the package would.
          b.onLoad({ filter: /.*/, namespace: 'lazy-shim' }, (args) => ({ contents: `export * from ${JSON.stringify(args.path)};\nexport { default } from ${JSON.stringify(args.path)};`, resolveDir: root, loader: 'js' }));
        },
      },
    ],
  });
  const groups = [];
  for (const [name, specifiers] of lazy) {
    const ids = [...specifiers.keys()].sort();
    // Only the names the command imports (esbuild then leaves the rest of the package out), or the
    // whole namespace when it takes that.
    const imports = ids.map((id, i) => {
      const names = specifiers.get(id);
      if (names === '*') return { line: `import * as m${i} from ${JSON.stringify(id)};`, value: `m${i}` };
      const list = [...names].sort();
      return { line: `import { ${list.map((n) => `${n} as m${i}_${n}`).join(', ')} } from ${JSON.stringify(id)};`, value: `{ ${list.map((n) => `${n}: m${i}_${n}`).join(', ')} }` };
    });
    const part = await build({
      ...common,
      // ES imports (some of these packages export only to import); each namespace marked as an ES
      // module, so that the command's own interop takes its default export as it would in Node.
      stdin: {
        contents: [
          ...imports.map((i) => i.line),
          "const esm = (ns) => Object.defineProperty({ ...ns }, '__esModule', { value: true });",
          `export const modules = { ${ids.map((id, i) => `${JSON.stringify(id)}: esm(${imports[i].value})`).join(', ')} };`,
        ].join('\n'),
        resolveDir: root,
        loader: 'js',
      },
      write: false,
      outfile: `${name}.cjs`,
      plugins: [deferredDependencies],
    });
    groups.push({ name, ids, code: part.outputFiles[0].contents });
  }
  const assemble = async (store, prefix) => {
    const files = [];
    // A part as the loader finds it: a packed string, or the name of its file beside the front.
    const partRef = (part, code) => {
      if (store === 'packed') return packed(code);
      const file = `${prefix}.${part}.cjs`;
      // The part's code takes the loader's require (the front's shared modules, the lazy groups).
      files.push({ file, code: `'use strict';\nmodule.exports = function (require, module, exports, __filename, __dirname) {\n${Buffer.from(code).toString('utf8')}\n};\n` });
      return JSON.stringify(file);
    };
    const run =
      store === 'packed'
        ? `const { runCached } = require(${JSON.stringify(path.join(root, 'dist', 'lib', 'core', 'code-cache.js'))});\nconst run = (source) => { const part = { exports: {} }; runCached(source, ['require', 'module', 'exports', '__filename', '__dirname'], [need, part, part.exports, __filename, __dirname]); return part.exports; };`
        : "const run = (file) => { const part = { exports: {} }; require(require('node:path').join(__dirname, file))(need, part, part.exports, __filename, __dirname); return part.exports; };";
    const loader = [
      `const shared = { ${shared.map((key) => `${JSON.stringify(key)}: () => require(${JSON.stringify(path.join(root, key))})`).join(', ')} };`,
      `const lazy = { ${groups.flatMap((g) => g.ids.map((id) => `${JSON.stringify(id)}: ${JSON.stringify(g.name)}`)).join(', ')} };`,
      `const parts = { ${groups.map((g) => `${JSON.stringify(g.name)}: ${partRef(g.name, g.code)}`).join(', ')} };`,
      'const groups = {};',
      run,
      'const fromGroup = (id) => (groups[lazy[id]] ??= run(parts[lazy[id]]).modules)[id];',
      'const need = Object.assign((id) => (Object.hasOwn(shared, id) ? shared[id]() : Object.hasOwn(lazy, id) ? fromGroup(id) : require(id)), { resolve: require.resolve, cache: require.cache });',
      '// Our own code, bundled at build time.',
      `module.exports = run(${partRef('command', back.outputFiles[0].contents)});`,
    ].join('\n');
    const done = await front(loader);
    return { front: Buffer.from(done.outputFiles[0].contents).toString('utf8'), files };
  };
  return { assemble };
}

for (const { name, module, command } of entries) {
  const entry = path.join(root, 'dist', 'lib', 'adapters', 'entries', `${name}.js`);
  const parts = await bundle(entry, command);
  const cli = await parts.assemble('files', name);
  await writeFile(path.join(cliDir, `${name}.cjs`), cli.front);
  for (const part of cli.files) await writeFile(path.join(cliDir, part.file), part.code);
  if (!module) continue;
  const outfile = path.join(outDir, `${module}.cjs`);
  // The ES module bundle of earlier versions: Ansible would find two files for one module name.
  await rm(path.join(outDir, `${module}.js`), { force: true });
  const { front: text } = await parts.assemble('packed', name);
  // WANT_JSON tells Ansible to pass the arguments as a JSON file (after the #! line). The
  // interpreter is named directly: Ansible replaces the #! line's program by the host's
  // ansible_<name>_interpreter, and for "/usr/bin/env node" that would be ansible_env_interpreter
  // with "node" kept as an argument, which no setting can fix.
  await writeFile(outfile, text.replace(/^(#![^\n]*\n)?/, () => '#!/usr/bin/node\n// WANT_JSON\n'));
  await chmod(outfile, 0o755);
}
console.error(`bundled ${entries.length} commands into ${path.relative(root, cliDir)}/ and ${entries.filter((e) => e.module).length} Ansible modules into ${path.relative(root, outDir)}/`);
