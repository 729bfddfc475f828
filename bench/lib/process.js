// Shared by the whole-process benchmarks (bench/startup.js, bench/whole-process.js): one process
// timed to completion (wall and CPU time), pairs in alternating order, medians, and the table
// with goals met or missed.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Python's os.wait4 gives the child's rusage to the microsecond (Node cannot read a child's
// rusage; /usr/bin/time rounds to 10 ms). Linux adds to it the rusage of every descendant the
// child waited for, so a shell script of docker commands or ansible-playbook with its module
// processes counts whole. The engine's and registry's own CPU is in neither side's figure.
export const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p));
const TIMER = `
import os, sys, time, json
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = (time.perf_counter() - t) * 1000
sys.stderr.write("\\n@timed " + json.dumps({"wall": wall, "cpu": (ru.ru_utime + ru.ru_stime) * 1000, "code": os.waitstatus_to_exitcode(status)}) + "\\n")
sys.exit(0)
`;

export const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The services of test/env/up.sh (env.json), or undefined when they were never started. */
export function readTestEnv() {
  const file = path.join(process.env.THINKUBE_TEST_ENV ?? path.join(root, '.test-env'), 'env.json');
  return existsSync(file) ? { ...JSON.parse(readFileSync(file, 'utf8')), file } : undefined;
}

/** `--name=value` from the command line, or the default. */
export function option(name, fallback) {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
}

/**
 * One process to completion: its wall time and CPU time (user + system, its waited-for
 * descendants included), in ms, and its output. A process ending with another exit code than
 * `expectCode` measured the wrong thing: the benchmark stops with its output.
 */
export function timed(cmd, args, { cwd = root, env = {}, expectCode = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const [exe, argv] = PYTHON ? [PYTHON, ['-c', TIMER, cmd, ...args]] : [cmd, args];
    const started = performance.now();
    const child = spawn(exe, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = performance.now() - started;
      const match = /\n@timed (\{.*\})\s*$/.exec(err);
      const r = match ? JSON.parse(match[1]) : { wall, cpu: undefined, code };
      if (match) err = err.slice(0, match.index);
      if (r.code !== expectCode) return reject(new Error(`${cmd} ${args.join(' ')} exited ${r.code}, expected ${expectCode}:\n${(out + err).slice(-2500)}`));
      resolve({ wall: r.wall, cpu: r.cpu, stdout: out, stderr: err });
    });
  });
}

/**
 * Baseline and ours alternately, `pairs` times, after `warm` warm-up pairs; `check` looks at each
 * of our runs (e.g. that a no-op changed nothing) and throws when it measured the wrong thing.
 * Returns a row: medians of wall and CPU time of both sides and their ratios.
 */
export async function measurePairs({ figure, baselineName, goal, goalOn, pairs, warm = 1, ours, baseline, check = () => {}, log = console.log }) {
  for (let i = 0; i < warm; i++) {
    await baseline();
    check(await ours());
  }
  const base = [];
  const mine = [];
  for (let i = 0; i < pairs; i++) {
    base.push(await baseline());
    const r = await ours();
    check(r);
    mine.push(r);
  }
  const row = { figure, baselineName, goal, goalOn, pairs };
  for (const k of ['wall', 'cpu']) {
    const b = base.map((r) => r[k]).filter((v) => v !== undefined);
    const o = mine.map((r) => r[k]).filter((v) => v !== undefined);
    row[k] = b.length && o.length ? { base: median(b), ours: median(o), ratio: median(o) / median(b) } : undefined;
  }
  log(`  ${figure}: wall ${row.wall.ours.toFixed(0)} vs ${row.wall.base.toFixed(0)} ms${row.cpu ? `, CPU ${row.cpu.ours.toFixed(0)} vs ${row.cpu.base.toFixed(0)} ms` : ''} (${baselineName})`);
  return row;
}

/** "met", or by how much the ratio is over the goal; wall and CPU (or only row.goalOn) must be within it. */
export function verdict(row) {
  if (row.goal === undefined) return '-';
  const worst = Math.max(...(row.goalOn ?? ['wall', 'cpu']).map((k) => row[k]).filter(Boolean).map((m) => m.ratio / row.goal));
  if (worst <= 1) return 'met';
  return worst < 2 ? `missed by ${((worst - 1) * 100).toFixed(0)}%` : `missed: ${worst.toFixed(1)}x the goal`;
}

/** The rows as one aligned table (a plain-text table that also reads as Markdown). */
export function processTable(title, rows, log = console.log) {
  const ms = (v) => (v === undefined ? '-' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`);
  const lines = [['process', 'baseline', 'pairs', 'wall ours', 'wall base', 'ratio', 'CPU ours', 'CPU base', 'ratio', 'goal', 'result']];
  for (const r of rows) {
    lines.push([r.figure, r.baselineName, String(r.pairs), ms(r.wall.ours), ms(r.wall.base), r.wall.ratio.toFixed(2), ms(r.cpu?.ours), ms(r.cpu?.base), r.cpu ? r.cpu.ratio.toFixed(2) : '-', r.goal === undefined ? '-' : `<= ${r.goal}${r.goalOn ? ` (${r.goalOn.join(', ')})` : ''}`, verdict(r)]);
  }
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  log(`\n${title}: medians, node ${process.version}, ${os.cpus().length} CPUs${PYTHON ? '' : ' (no python3: wall only, of the child and its start)'}`);
  for (const [i, l] of lines.entries()) {
    log(`| ${l.map((cell, c) => (c <= 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(' | ')} |`);
    if (i === 0) log(`|${widths.map((w, c) => (c <= 1 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  }
}
