#!/usr/bin/env node
// Runs the tap suite and ends with one plain summary line ("Tests: N passed, N failed") that any
// CI log reader understands. Exit code is tap's; a run that executed no test fails.
//
//   node scripts/run-tests.js                  every test file (npm test: build, services, this)
//   node scripts/run-tests.js --unit           the unit tier (npm run test:unit: build, this)
//   node scripts/run-tests.js --list           which tier each test file is in, and why
//   node scripts/run-tests.js test/x.test.js   these files (other tap options pass through)
//
// The unit tier is every test file that needs none of the services of test/env/up.sh (dockerd,
// Podman, the registries, ansible-playbook): files that never call testEnv() from
// test/helpers/env.js, neither themselves nor through the test/ modules they import, minus the
// SLOW ones below. It runs with THINKUBE_TEST_ENV pointing at a folder that does not exist, so a
// test that reaches for the services anyway fails loudly instead of quietly using them.
//
// This runner does not build: npm test and npm run test:unit run `npm run build` first. Run
// directly, it warns when dist/ is older than lib/ or schemas/ (the tests import dist/).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'test');
const tapBin = path.join(root, 'node_modules', '.bin', 'tap');

/** Service-free, but too slow for the unit tier (file name: why). */
export const SLOW = {
  'bad-input.test.js': 'runs every module as a real process for each of its ~400 cases (minutes on 2 cores)',
};

/** test/**\/*.test.js, sorted, relative to the repository root. */
export function testFiles() {
  const out = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(full);
      } else if (entry.name.endsWith('.test.js')) {
        out.push(path.relative(root, full));
      }
    }
  };
  walk(testDir);
  return out.sort();
}

/** Source without block comments and whole-line // comments (what a mention in prose would match). */
function code(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

const CALLS_TEST_ENV = /(?<!function\s+)\btestEnv\s*\(/;
const LOCAL_IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

/**
 * Why `file` needs the test services: the first file (itself or a test/ module it imports,
 * transitively) that calls testEnv(); undefined when none does.
 */
export function needsServices(file, seen = new Set()) {
  const full = path.resolve(root, file);
  if (seen.has(full)) return undefined;
  seen.add(full);
  const text = code(readFileSync(full, 'utf8'));
  if (CALLS_TEST_ENV.test(text)) return `${path.relative(root, full)} calls testEnv()`;
  for (const match of text.matchAll(LOCAL_IMPORT)) {
    const target = path.resolve(path.dirname(full), match[1]);
    // Only test code can reach for the services; the library under dist/ is what is tested.
    if (!target.startsWith(testDir + path.sep) || !existsSync(target)) continue;
    const why = needsServices(target, seen);
    if (why) return why;
  }
  return undefined;
}

/** Each test file with its tier and the reason. */
export function tiers() {
  return testFiles().map((file) => {
    const services = needsServices(file);
    if (services) return { file, tier: 'full', why: services };
    const slow = SLOW[path.basename(file)];
    if (slow) return { file, tier: 'full', why: `slow: ${slow}` };
    return { file, tier: 'unit', why: 'needs no test service' };
  });
}

/** The newest file under `dir` (recursively) whose name passes `keep`. */
function newest(dir, keep) {
  let best;
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (keep(entry.name)) {
        const mtime = statSync(full).mtimeMs;
        if (!best || mtime > best.mtime) best = { file: full, mtime };
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return best;
}

function warnIfStale() {
  const built = path.join(root, 'dist', 'lib', 'index.js');
  if (!existsSync(built)) {
    console.error('[run-tests] dist/ is missing: run "npm run build" first (npm test and npm run test:unit do)');
    return;
  }
  const builtAt = statSync(built).mtimeMs;
  const sources = [newest(path.join(root, 'lib'), (n) => n.endsWith('.ts')), newest(path.join(root, 'schemas'), (n) => n.endsWith('.json'))].filter(Boolean);
  const stale = sources.filter((s) => s.mtime > builtAt).sort((a, b) => b.mtime - a.mtime)[0];
  if (stale) {
    console.error(`[run-tests] WARNING: ${path.relative(root, stale.file)} is newer than dist/: these tests run the last build, not your edit. Run "npm run build" (npm test and npm run test:unit do).`);
  }
}

/**
 * Follows the TAP stream: the subtest path of each `not ok` assertion (leaf assertions only, not
 * the files and subtests that fail because of them) and the first lines of its YAML diagnostic.
 */
export function failureCollector() {
  const stack = []; // [indent, name]
  const found = [];
  let diag; // the failure whose diagnostic block is being read
  return {
    line(raw) {
      const indent = raw.length - raw.trimStart().length;
      const text = raw.trim();
      if (diag) {
        if (text === '...') diag = undefined;
        else if (text !== '---' && diag.lines.length < 25) diag.lines.push(raw.slice(diag.indent));
        return;
      }
      const sub = /^# Subtest: (.*)$/.exec(text);
      if (sub) {
        while (stack.length && stack[stack.length - 1][0] >= indent) stack.pop();
        stack.push([indent, sub[1]]);
        return;
      }
      const notOk = /^not ok \d+ - (.*?)(?: # time=[\d.]+m?s)?$/.exec(text);
      if (!notOk) return;
      while (stack.length && stack[stack.length - 1][0] > indent) stack.pop();
      const parents = stack.filter(([i]) => i < indent).map(([, n]) => n);
      const name = notOk[1];
      // A subtest's own closing `not ok` repeats a failure already recorded inside it.
      const isSubtestEnd = stack.length && stack[stack.length - 1][0] === indent && stack[stack.length - 1][1] === name;
      if (isSubtestEnd) {
        stack.pop();
        if (found.some((f) => f.path.slice(0, parents.length + 1).join('\0') === [...parents, name].join('\0'))) return;
      }
      const failure = { path: [...parents, name], lines: [], indent: indent + 2 };
      found.push(failure);
      diag = failure;
    },
    report() {
      if (found.length === 0) return '';
      const out = [`# Failed (${found.length}):`];
      for (const f of found) {
        out.push(`#   ${f.path.join(' > ')}`);
        for (const l of f.lines) out.push(`#       ${l}`);
      }
      return out.join('\n');
    },
  };
}

function main(argv) {
  const flags = new Set(argv.filter((a) => a === '--unit' || a === '--list'));
  const rest = argv.filter((a) => !flags.has(a));
  if (flags.has('--list')) {
    for (const { file, tier, why } of tiers()) console.log(`${tier.padEnd(4)}  ${file}  (${why})`);
    return;
  }
  const env = { ...process.env };
  let args = rest;
  if (flags.has('--unit')) {
    if (rest.some((a) => !a.startsWith('-'))) {
      console.error('--unit picks the test files itself: give either --unit or test files');
      process.exit(2);
    }
    const unit = tiers().filter((x) => x.tier === 'unit').map((x) => x.file);
    if (unit.length === 0) {
      console.log('Tests: 0 passed, 1 failed');
      console.error('The unit tier holds no test file: that is a failure.');
      process.exit(1);
    }
    args = [...rest, ...unit];
    env.THINKUBE_TEST_ENV = path.join(os.tmpdir(), 'thinkube-unit-tier-has-no-test-services');
    console.error(`[run-tests] unit tier: ${unit.length} test files that need no test service (node scripts/run-tests.js --list)`);
  }
  warnIfStale();
  // A terminal gets tap's live display; logs (CI) get plain TAP, which reads well as text.
  const reporter = process.stdout.isTTY ? 'base' : 'tap';
  const child = spawn(tapBin, [`--reporter=${reporter}`, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
  let summary;
  let pending = '';
  const failures = failureCollector();
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      failures.line(line);
      const m = /^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(line.trim());
      if (m) summary = { total: +m[1], pass: +(m[2] ?? 0), fail: +(m[3] ?? 0), skip: +(m[4] ?? 0), todo: +(m[5] ?? 0) };
    }
  });
  child.on('close', (code) => {
    if (!summary || summary.total === 0) {
      console.log('Tests: 0 passed, 1 failed');
      console.error('No test was executed: that is a failure.');
      process.exit(1);
    }
    // A CI log is often read from its end: name each failed assertion again just above the summary.
    const report = failures.report();
    if (report) console.log(report);
    const failed = summary.fail + (code !== 0 && summary.fail === 0 ? 1 : 0);
    console.log(`Tests: ${summary.pass} passed, ${failed} failed${summary.skip ? `, ${summary.skip} skipped` : ''}`);
    process.exit(code ?? 1);
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
