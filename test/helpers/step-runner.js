// Runs one rendered Workflow template's container command for real on this machine, the way a
// new build pod would: Debian's buildah, chroot isolation, a fresh storage root (graphroot and
// runroot of its own, through CONTAINERS_STORAGE_CONF, in place of the pod's emptyDir), the
// mounted Secret's files at a local path named by the same environment variable, and the output
// parameter read from the file the template names. Nothing of the command itself is changed
// beyond Argo's own substitutions ({{inputs.parameters.*}}, {{workflow.uid}}). The output can be
// followed as it is produced (onOutput), and an AbortSignal stops the step as the kubelet stops a
// container: SIGTERM to the whole process group, SIGKILL after the grace period, exit code 128 +
// signal; the storage root is cleaned either way.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Argo's substitution of input parameters and workflow variables; an unresolved one is an error. */
export function substitute(text, { parameters = {}, workflowUid, tasks = {} }) {
  const out = text.replace(/\{\{\s*([^}\s]+)\s*\}\}/g, (whole, name) => {
    let m;
    if ((m = /^inputs\.parameters\.(.+)$/.exec(name)) && m[1] in parameters) return parameters[m[1]];
    if (name === 'workflow.uid' && workflowUid) return workflowUid;
    if ((m = /^tasks\.([^.]+)\.outputs\.parameters\.(.+)$/.exec(name)) && tasks[m[1]]?.[m[2]] !== undefined) return tasks[m[1]][m[2]];
    throw new Error(`unresolved Argo expression ${whole}`);
  });
  return out;
}

function storageEnv(dir) {
  const conf = path.join(dir, 'storage.conf');
  writeFileSync(conf, `[storage]\ndriver = "overlay"\ngraphroot = "${dir}/root"\nrunroot = "${dir}/runroot"\n`);
  return { CONTAINERS_STORAGE_CONF: conf };
}

/** Unmount and remove a step's storage root (overlay mounts first); async, so a server in the same process keeps serving. */
async function cleanup(dir, env) {
  const quiet = (cmd, args, options) => run(cmd, args, options).catch(() => undefined);
  await quiet('buildah', ['rm', '--all'], { env });
  await quiet('buildah', ['rmi', '--all', '--force'], { env });
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && m.startsWith(dir)).sort().reverse();
  for (const m of mounts) await quiet('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Run `template` of `workflow` (a rendered Workflow) with the given input parameters.
 * secrets: { <secret name>: { <key>: content } } for the Secret volumes it mounts.
 * onOutput(chunk: Buffer): stdout and stderr as they come. signal: abort to stop the step
 * (SIGTERM, then SIGKILL after graceMs).
 * Resolves { code, signal, aborted, output (stdout+stderr), outputs: { <parameter>: value } }.
 */
export async function runStep(workflow, templateName, { parameters = {}, workflowUid = 'local-uid', secrets = {}, keepRoot = false, onOutput, signal, graceMs = 2000 } = {}) {
  const template = workflow.spec.templates.find((t) => t.name === templateName);
  if (!template?.container) throw new Error(`no container template ${templateName}`);
  const c = template.container;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'step-'));
  const vars = { parameters, workflowUid };
  const env = { PATH: process.env.PATH, HOME: path.join(dir, 'home'), ...storageEnv(dir) };
  mkdirSync(env.HOME);
  // Paths of the pod mapped to local ones: Secret volumes and output files.
  const mapped = [];
  for (const mount of c.volumeMounts ?? []) {
    const volume = [...(workflow.spec.volumes ?? []), ...(template.volumes ?? [])].find((v) => v.name === mount.name);
    if (!volume?.secret) continue; // emptyDir: the fresh storage root stands for it
    const local = path.join(dir, `volume-${mount.name}`);
    mkdirSync(local);
    const data = secrets[volume.secret.secretName];
    if (!data) throw new Error(`secret ${volume.secret.secretName} not given`);
    for (const item of volume.secret.items ?? Object.keys(data).map((key) => ({ key, path: key }))) writeFileSync(path.join(local, item.path), data[item.key], { mode: 0o600 });
    mapped.push([mount.mountPath, local]);
  }
  const outputFiles = {};
  for (const p of template.outputs?.parameters ?? []) {
    if (!p.valueFrom?.path) continue;
    outputFiles[p.name] = path.join(dir, `output-${p.name}`);
    mapped.push([p.valueFrom.path, outputFiles[p.name]]);
  }
  for (const e of c.env ?? []) {
    let value = substitute(e.value ?? '', vars);
    for (const [podPath, local] of mapped) if (value === podPath || value.startsWith(`${podPath}/`)) value = local + value.slice(podPath.length);
    env[e.name] = value;
  }
  const argv = [...(c.command ?? []), ...(c.args ?? [])].map((a) => substitute(a, vars));
  // Its own process group, so that a stop reaches buildah and its children, not only the shell.
  const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const take = (d) => {
    output += d;
    onOutput?.(d);
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  let graceTimer;
  const signalGroup = (name) => {
    try {
      process.kill(-child.pid, name);
    } catch {
      // Already gone.
    }
  };
  const stop = () => {
    signalGroup('SIGTERM');
    graceTimer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
  };
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  const [exitCode, exitSignal] = await new Promise((resolve) => child.on('close', (c, s) => resolve([c, s])));
  clearTimeout(graceTimer);
  signal?.removeEventListener('abort', stop);
  // As a container runtime reports a signalled process.
  const code = exitCode ?? 128 + os.constants.signals[exitSignal];
  const outputs = {};
  for (const [name, file] of Object.entries(outputFiles)) if (existsSync(file)) outputs[name] = readFileSync(file, 'utf8').trim();
  if (!keepRoot) await cleanup(dir, env);
  return { code, signal: exitSignal ?? undefined, aborted: signal?.aborted ?? false, output, outputs };
}

/** Run every task of the Workflow's DAG in dependency order; task arguments get the outputs of earlier tasks. */
export async function runDag(workflow, options = {}) {
  const dag = workflow.spec.templates.find((t) => t.name === workflow.spec.entrypoint).dag;
  const results = {};
  const tasks = {};
  const pending = [...dag.tasks];
  while (pending.length) {
    const i = pending.findIndex((t) => (t.dependencies ?? []).every((d) => d in results));
    if (i < 0) throw new Error(`DAG cannot proceed: ${pending.map((t) => t.name).join(', ')}`);
    const [task] = pending.splice(i, 1);
    const parameters = Object.fromEntries((task.arguments?.parameters ?? []).map((p) => [p.name, substitute(p.value, { tasks, workflowUid: options.workflowUid ?? 'local-uid' })]));
    const result = await runStep(workflow, task.template, { ...options, parameters });
    results[task.name] = result;
    if (result.code !== 0) throw Object.assign(new Error(`task ${task.name} failed (exit ${result.code}):\n${result.output.slice(-3000)}`), { results });
    tasks[task.name] = result.outputs;
  }
  return results;
}
