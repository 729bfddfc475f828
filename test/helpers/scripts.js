// Runs a bin/ script as users do (a node process in the repository), for tests of the CLI and of
// the Ansible path (a module's args file as the only argument).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './env.js';

/** `node bin/<script> ...args` to completion: { code, signal, stdout, stderr }; onStart gets the child. */
export function runScript(script, args, { env: extraEnv = {}, onStart } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin', script), ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    onStart?.(child);
  });
}
