#!/usr/bin/env node
// Runs the tap suite and ends with one plain summary line ("Tests: N passed, N failed") that any
// CI log reader understands. Exit code is tap's; a run that executed no test fails.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tapBin = path.join(root, 'node_modules', '.bin', 'tap');
// A terminal gets tap's live display; logs (CI) get plain TAP, which reads well as text.
const reporter = process.stdout.isTTY ? 'base' : 'tap';
const child = spawn(tapBin, [`--reporter=${reporter}`, ...process.argv.slice(2)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
let summary;
let pending = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  pending += chunk.toString('utf8');
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
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
  const failed = summary.fail + (code !== 0 && summary.fail === 0 ? 1 : 0);
  console.log(`Tests: ${summary.pass} passed, ${failed} failed${summary.skip ? `, ${summary.skip} skipped` : ''}`);
  process.exit(code ?? 1);
});
