// Reads the services started by test/env/up.sh (npm test runs it first). A missing file is a
// loud failure, never a skip: the tests need the real engine and registries.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached;
export function testEnv() {
  if (cached) return cached;
  const stateDir = process.env.THINKUBE_TEST_ENV ?? path.join(repoRoot, '.test-env');
  const file = path.join(stateDir, 'env.json');
  try {
    cached = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`Test environment missing (${file}): run "bash test/env/up.sh" first (npm test does). ${error.message}`);
  }
  return cached;
}

/** A unique repository name per test so that runs never see each other's images. */
export function uniqueName(prefix = 'test') {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}
