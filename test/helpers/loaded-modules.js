// Which modules a whole process loads (issue 15): node runs with a module hook (synchronous, so it
// also sees require() inside a CommonJS bundle) that writes down every module the process
// resolves: files of ours, dependencies, Node's built-ins.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const HOOK =
  "import { registerHooks } from 'node:module';\nimport { appendFileSync } from 'node:fs';\nregisterHooks({ resolve(specifier, context, next) { const result = next(specifier, context); appendFileSync(process.env.TK_LOADED, result.url + '\\n'); return result; } });\n";

// The engine client, SSH, Kubernetes: what a command with work to do needs. The HTTP stack is our
// own (lib/http on node:http/node:https, no dependency): 'http stack' when its transport loaded.
export const HEAVY = ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js', '@kubernetes/client-node', 'kubernetes-models'];
export const heavyIn = (urls) => [
  ...HEAVY.filter((name) => urls.some((u) => u.includes(`/node_modules/${name}/`))),
  ...(urls.some((u) => u.endsWith('/dist/lib/http/transport.js')) ? ['http stack'] : []),
];
export const dependencies = (urls) => urls.filter((u) => u.includes('/node_modules/'));
export const commands = (urls) => urls.filter((u) => u.includes('/adapters/commands/'));

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
