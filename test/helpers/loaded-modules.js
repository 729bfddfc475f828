// Which modules a whole process loads (issue 15): node runs with a module hook (synchronous, so it
// also sees require() inside a CommonJS bundle) that writes down every module the process
// resolves: files of ours (bin/ runs the bundles of dist/cli/, each part a file), dependencies,
// Node's built-ins. At exit it adds the built-ins Node itself loaded as `builtin:<name>`
// (process.moduleLoadList), which also sees process.getBuiltinModule().
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const HOOK =
  "import { registerHooks } from 'node:module';\nimport { appendFileSync } from 'node:fs';\nregisterHooks({ resolve(specifier, context, next) { const result = next(specifier, context); appendFileSync(process.env.TK_LOADED, result.url + '\\n'); return result; } });\n" +
  "process.on('exit', () => appendFileSync(process.env.TK_LOADED, process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => `builtin:${m.slice(13)}\\n`).join('')));\n";

// The engine client, SSH, Kubernetes: what a command with work to do needs. The HTTP stack is our
// own (lib/http on node:http/node:https, no dependency): 'http stack' when Node's http loaded.
export const HEAVY = ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js', '@kubernetes/client-node', 'kubernetes-models'];
// The bundles' lazy parts (scripts/bundle-modules.js): engine = dockerode and what it brings,
// cluster = the Kubernetes client and models.
const PARTS = { engine: ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js'], cluster: ['@kubernetes/client-node', 'kubernetes-models'] };
const partOf = (u) => /\/dist\/cli\/[a-z-]+\.([a-z]+)\.cjs$/.exec(u)?.[1];
export const heavyIn = (urls) => [
  ...HEAVY.filter((name) => urls.some((u) => u.includes(`/node_modules/${name}/`) || PARTS[partOf(u)]?.includes(name))),
  ...(urls.some((u) => u === 'builtin:http' || u === 'builtin:https') ? ['http stack'] : []),
];
export const dependencies = (urls) => urls.filter((u) => u.includes('/node_modules/'));
/** The command's own code: its ES module, or its bundle's command part. */
export const commands = (urls) => urls.filter((u) => u.includes('/adapters/commands/') || partOf(u) === 'command');

/** A runner for test `t`: run(args, { cwd, env }) resolves { code, stdout, stderr, urls }. */
export function moduleRecorder(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-loaded-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hook = path.join(dir, 'hooks.mjs');
  writeFileSync(hook, HOOK);
  let runs = 0;
  return (args, { cwd = process.cwd(), env = process.env } = {}) => {
    const list = path.join(dir, `loaded-${runs++}.txt`);
    writeFileSync(list, '');
    return new Promise((resolve) => {
      execFile(process.execPath, ['--import', hook, ...args], { cwd, env: { ...env, TK_LOADED: list } }, (error, stdout, stderr) => {
        const urls = [...new Set(readFileSync(list, 'utf8').split('\n').filter(Boolean))];
        resolve({ code: error ? error.code : 0, stdout, stderr, urls });
      });
    });
  };
}
