#!/usr/bin/env node
// Start-up of whole processes as users run them (issue 15): a bin/ script's --help and argument
// error, and an Ansible module that only validates its arguments, each against `node -e 0`.
// Baseline and ours alternate pair by pair (the machine's load hits both alike); medians of wall
// and CPU time (user + system) and their ratios, with the goal met or missed.
// Needs no test service. Never fails on a goal: the numbers are for people.
//
//   node bench/startup.js [--pairs=N]      (after npm run build; bench/whole-process.js runs it first)
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { measurePairs, processTable, root, timed } from './lib/process.js';

const BASELINE = 'node -e 0';
/** One node process to completion: its wall time and CPU time (user + system), in ms. */
const once = (args, expectCode) => timed(process.execPath, args, { expectCode });

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
      rows.push(await measurePairs({ figure: c.name, baselineName: BASELINE, goal: c.goal, pairs, ours: () => once(c.args, c.code), baseline: () => once(['-e', '0'], 0), log }));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function startupTable(rows, pairs, log = console.log) {
  processTable(`Start-up, whole processes against ${BASELINE} (${pairs} pairs)`, rows, log);
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
