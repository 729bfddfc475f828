// Runs the real ansible-playbook (ansible-core) against localhost with a local connection. Always
// asynchronous: stand-ins served by the test process must keep answering while the playbook runs.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './env.js';

export const playbookPath = path.join(repoRoot, 'ansible', '10_build_jupyter_images.yaml');
/** The Python that runs the modules (inventory's ansible_python_interpreter). */
export const ansiblePython = process.env.ANSIBLE_PYTHON ?? '/usr/bin/python3';
/** Inventory variables of a host that runs the modules: its Python, and this Node (the modules' #! names /usr/bin/node). */
export const hostVars = (python = ansiblePython) => `ansible_connection=local ansible_python_interpreter=${python} ansible_node_interpreter=${process.execPath}`;

/**
 * The ansible-playbook command line of a run (vars and inventory files in a new temporary folder),
 * shared with bench/whole-process.js, which times the same command as a whole process.
 */
export function playbookCommand({ extraVars = {}, args = [], playbook = playbookPath, inventory, env = {} } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-ansible-'));
  const varsFile = path.join(dir, 'vars.json');
  writeFileSync(varsFile, JSON.stringify({ target_hosts: 'all', ...extraVars }), { mode: 0o600 });
  const inventoryFile = path.join(dir, 'inventory.ini');
  writeFileSync(inventoryFile, inventory ?? `localhost ${hostVars()}\n`);
  return {
    cmd: 'ansible-playbook',
    args: ['-i', inventoryFile, '-e', `@${varsFile}`, ...args, playbook],
    env: {
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_FORCE_COLOR: '0',
      ANSIBLE_LOCAL_TEMP: path.join(dir, 'tmp'),
      ANSIBLE_REMOTE_TEMP: path.join(dir, 'remote-tmp'),
      ANSIBLE_RETRY_FILES_ENABLED: '0',
      ANSIBLE_HOST_KEY_CHECKING: '0',
      ANSIBLE_DEPRECATION_WARNINGS: '0',
      ...env,
    },
    dir,
  };
}

export function runPlaybook({ timeoutMs = 600_000, ...options } = {}) {
  const { cmd, args, env, dir } = playbookCommand(options);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, output: stdout + stderr, dir });
    });
  });
}

/** PLAY RECAP counts for localhost, e.g. { ok: 12, changed: 3, failed: 0, ... }. */
export function recap(output, host = 'localhost') {
  const line = output.split('\n').find((l) => l.startsWith(host) && l.includes('ok='));
  if (!line) return undefined;
  return Object.fromEntries([...line.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
}
