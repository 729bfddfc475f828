// lib/ by concern: dependency-cruiser (real, with .dependency-cruiser.cjs) finds no import cycle
// and no import against the layers' direction. A planted cycle and a planted upward import in a
// copy of the rules prove that the check can fail.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './helpers/env.js';

const run = promisify(execFile);
const depcruise = path.join(repoRoot, 'node_modules', '.bin', 'depcruise');

async function cruise(cwd) {
  try {
    const { stdout } = await run(depcruise, ['lib', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'], { cwd, maxBuffer: 64 * 1024 * 1024 });
    return JSON.parse(stdout);
  } catch (error) {
    // depcruise exits non-zero when a rule is broken; its JSON is still on stdout.
    if (error.stdout) return JSON.parse(error.stdout);
    throw error;
  }
}

t.test('lib/ has no import cycle and no import against the direction of its layers', async (t) => {
  const report = await cruise(repoRoot);
  t.ok(report.summary.totalCruised > 40, `${report.summary.totalCruised} modules cruised`);
  const violations = report.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (cycle ${v.cycle.map((c) => c.name ?? c).join(' -> ')})` : ''}`);
  t.same(violations, [], 'no violation');
});

t.test('the rules catch a cycle and an upward import', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-arch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(path.join(repoRoot, '.dependency-cruiser.cjs'), path.join(dir, '.dependency-cruiser.cjs'));
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['lib/**/*.ts'] }));
  for (const folder of ['build', 'publish', 'core']) mkdirSync(path.join(dir, 'lib', folder), { recursive: true });
  writeFileSync(path.join(dir, 'lib', 'build', 'a.ts'), "import { b } from '../publish/b.js';\nexport const a = b;\n");
  writeFileSync(path.join(dir, 'lib', 'publish', 'b.ts'), "export const b = 1;\n");
  writeFileSync(path.join(dir, 'lib', 'core', 'x.ts'), "import { y } from './y.js';\nexport const x = () => y;\n");
  writeFileSync(path.join(dir, 'lib', 'core', 'y.ts'), "import { x } from './x.js';\nexport const y = () => x;\n");
  const report = await cruise(dir);
  const names = report.summary.violations.map((v) => `${v.rule.name}: ${v.from}`).sort();
  t.ok(names.includes('build-imports-up: lib/build/a.ts'), `upward import found: ${names.join(', ')}`);
  t.ok(names.some((n) => n.startsWith('no-circular: lib/core/')), 'cycle found');
});
