#!/usr/bin/env node
// Start-up of whole processes as users run them (issue 15): a bin/ script's --help and argument
// error, and an Ansible module that only validates its arguments, each against `node -e 0`.
// Baseline and ours alternate pair by pair (the machine's load hits both alike); medians of wall
// and CPU time (user + system) and their ratios, with the goal met or missed.
// Needs no test service. Never fails on a goal: the numbers are for people.
//
//   node bench/startup.js [--pairs=N]      (after npm run build; bench/run.js runs it first)
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Python's os.wait4 gives the child's rusage to the microsecond (Node cannot read a child's
// rusage; /usr/bin/time rounds to 10 ms). Wall time is taken around the child alone.
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p));
const TIMER = `
import os, sys, time, json
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = (time.perf_counter() - t) * 1000
sys.stderr.write("\\n@timed " + json.dumps({"wall": wall, "cpu": (ru.ru_utime + ru.ru_stime) * 1000, "code": os.waitstatus_to_exitcode(status)}) + "\\n")
sys.exit(0)
`;
const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One node process to completion: its wall time and CPU time (user + system), in ms. */
function once(args, expectCode) {
  return timeCommand(process.execPath, args, expectCode);
}

/**
 * One process to completion: its wall time and CPU time (user + system, its waited-for children
 * included: a shell's docker commands count), in ms. Rejects when it ends with another code.
 */
export function timeCommand(command, args, expectCode, { env = {}, cwd = root } = {}) {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = PYTHON ? [PYTHON, ['-c', TIMER, command, ...args]] : [command, args];
    const started = performance.now();
    const child = spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = performance.now() - started;
      const timed = /@timed (\{.*\})\s*$/.exec(err);
      const r = timed ? JSON.parse(timed[1]) : { wall, cpu: undefined, code };
      if (r.code !== expectCode) return reject(new Error(`${command} ${args.join(' ')} exited ${r.code}, expected ${expectCode}:\n${(out + err).slice(-1500)}`));
      resolve({ wall: r.wall, cpu: r.cpu, out });
    });
  });
}

/** A module args file as Ansible writes it (WANT_JSON). */
function argsFile(dir, name, args) {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ ...args, _ansible_check_mode: true, _ansible_diff: false, _ansible_verbosity: 0 }));
  return file;
}

/**
 * The cases: ours, the goal (ratio to `node -e 0`), the exit code ours must end with (a case
 * that ends otherwise measures the wrong thing, so the benchmark stops).
 */
export function startupCases(dir) {
  // Copied ALONE into an empty folder, as Ansible does (no package.json beside it).
  const module = (name) => {
    const file = path.join(dir, `AnsiballZ_${name}.cjs`);
    copyFileSync(path.join(root, 'ansible', 'library', `${name}.cjs`), file);
    return file;
  };
  const images = path.join(dir, 'images');
  mkdirSync(path.join(images, 'one'), { recursive: true });
  writeFileSync(path.join(images, 'one', 'Dockerfile'), 'FROM busybox:1.36\n');
  writeFileSync(path.join(images, 'one', 'image.yaml'), 'name: one\ndisplay_name: One\ndescription: One image\ncategory: jupyter\nmetadata:\n  default: true\n');
  return [
    { name: 'node bin/build.js --help', args: ['bin/build.js', '--help'], code: 0, goal: 1.3 },
    { name: 'node bin/build.js --frobnicate (argument error)', args: ['bin/build.js', '--frobnicate'], code: 2, goal: 1.3 },
    { name: 'node bin/lint.js --help', args: ['bin/lint.js', '--help'], code: 0, goal: 1.3 },
    {
      name: 'module thinkube_image_build, a bad tag (validates, fails)',
      args: [module('thinkube_image_build'), argsFile(dir, 'build-bad', { context: dir, tags: ['Not A Reference'] })],
      code: 1,
      goal: 1.5,
    },
    {
      name: 'module thinkube_image_push, a missing option (validates, fails)',
      args: [module('thinkube_image_push'), argsFile(dir, 'push-missing', {})],
      code: 1,
      goal: 1.5,
    },
    {
      name: 'module thinkube_image_catalog, one image (check mode)',
      args: [module('thinkube_image_catalog'), argsFile(dir, 'catalog', { images_dir: images })],
      code: 0,
      goal: undefined,
    },
  ];
}

/**
 * Every case against `node -e 0`, pair by pair (baseline then ours), after one warm-up pair.
 * Returns the rows of the table.
 */
export async function benchStartup({ pairs = 15, log = console.log } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-bench-startup-'));
  const rows = [];
  try {
    for (const c of startupCases(dir)) {
      await once(['-e', '0'], 0);
      await once(c.args, c.code);
      const base = [];
      const ours = [];
      for (let i = 0; i < pairs; i++) {
        base.push(await once(['-e', '0'], 0));
        ours.push(await once(c.args, c.code));
      }
      const row = { figure: c.name, goal: c.goal };
      for (const k of ['wall', 'cpu']) {
        const b = base.map((r) => r[k]).filter((v) => v !== undefined);
        const o = ours.map((r) => r[k]).filter((v) => v !== undefined);
        row[k] = b.length && o.length ? { base: median(b), ours: median(o), ratio: median(o) / median(b) } : undefined;
      }
      rows.push(row);
      log(`  ${c.name}: wall ${row.wall.ours.toFixed(0)} vs ${row.wall.base.toFixed(0)} ms${row.cpu ? `, CPU ${row.cpu.ours.toFixed(0)} vs ${row.cpu.base.toFixed(0)} ms` : ''}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** "met", or by how much the ratio is over the goal; wall and CPU (or only row.goalOn) must be within it. */
function verdict(row) {
  if (row.goal === undefined) return '-';
  const over = (row.goalOn ?? ['wall', 'cpu']).map((k) => row[k]).filter(Boolean).map((m) => m.ratio / row.goal - 1);
  const worst = Math.max(...over);
  return worst <= 0 ? 'met' : `missed by ${(worst * 100).toFixed(0)}%`;
}

/**
 * The whole-process table: start-up rows (against node -e 0) and any other whole-process rows
 * (row.baseline names their baseline; row.goalOn: the ratios the goal applies to).
 */
export function startupTable(rows, pairs, log = console.log) {
  const ms = (v) => (v === undefined ? '-' : `${v.toFixed(0)} ms`);
  const lines = [['process', 'baseline', 'wall base', 'wall ours', 'ratio', 'CPU base', 'CPU ours', 'ratio', 'goal', 'result']];
  for (const r of rows) {
    const goal = r.goal === undefined ? '-' : `<= ${r.goal}${r.goalOn ? ` (${r.goalOn.join(', ')})` : ''}`;
    lines.push([r.pairs && r.pairs !== pairs ? `${r.figure} (${r.pairs} pairs)` : r.figure, r.baseline ?? 'node -e 0', ms(r.wall.base), ms(r.wall.ours), r.wall.ratio.toFixed(2), ms(r.cpu?.base), ms(r.cpu?.ours), r.cpu ? r.cpu.ratio.toFixed(2) : '-', goal, verdict(r)]);
  }
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  log(`\nWhole processes: medians of ${pairs} pairs, node ${process.version}, ${os.cpus().length} CPUs${PYTHON ? '' : ' (no python3: wall only, of the child and its start)'}`);
  for (const [i, l] of lines.entries()) {
    log(l.map((cell, c) => (c <= 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
    if (i === 0) log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const pairs = Number(process.argv.find((a) => a.startsWith('--pairs='))?.slice(8) ?? 15);
  try {
    const rows = await benchStartup({ pairs });
    startupTable(rows, pairs);
  } catch (error) {
    console.error(`Benchmark failed: ${error.message}`);
    process.exitCode = 1;
  }
}
