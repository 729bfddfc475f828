// Synchronous file system work in slices (lib/core/time-slice.ts): a long walk or hash of a build
// context still gives the event loop turns (timers, sockets of other images), a short one costs none.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { timeSlices } from '../dist/lib/core/time-slice.js';
import { scanContext } from '../dist/lib/source/context.js';
import { contextFileLines } from '../dist/lib/source/input-digest.js';

const temp = mkdtempSync(path.join(os.tmpdir(), 'tk-time-slice-'));
t.teardown(() => rmSync(temp, { recursive: true, force: true }));

/** Counts the event loop turns taken while `work` runs. */
async function turnsDuring(work) {
  let turns = 0;
  let running = true;
  const tick = () => {
    if (!running) return;
    turns += 1;
    setImmediate(tick);
  };
  setImmediate(tick);
  const started = Date.now();
  const value = await work();
  running = false;
  return { turns, ms: Date.now() - started, value };
}

t.test('a slice gives the event loop a turn only once its time is up', async (t) => {
  const slice = timeSlices(20);
  const busy = async (ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) await slice();
  };
  const short = await turnsDuring(() => busy(5));
  t.equal(short.turns, 0, 'work shorter than a slice takes no turn');
  const long = await turnsDuring(() => busy(200));
  t.ok(long.turns >= 5, `200 ms of work in 20 ms slices took ${long.turns} turns`);
  t.ok(long.turns <= 12, 'and not a turn at every step');
});

t.test('scanning and hashing a large context leave the event loop turns', async (t) => {
  const dir = path.join(temp, 'context');
  mkdirSync(path.join(dir, 'files'), { recursive: true });
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY files /files\n');
  for (let i = 0; i < 20_000; i++) writeFileSync(path.join(dir, 'files', `f${i}`), `${i}\n`);
  const scan = await turnsDuring(() => scanContext(dir));
  t.equal(scan.value.fileCount, 20_001);
  t.ok(scan.turns > 0, `the scan (${scan.ms} ms) gave the event loop ${scan.turns} turns`);
  const hash = await turnsDuring(() => contextFileLines(scan.value));
  t.equal(hash.value.length, scan.value.entries.length);
  t.ok(hash.turns > 0, `hashing (${hash.ms} ms) gave the event loop ${hash.turns} turns`);
});

t.test('a file larger than a single read is streamed and hashes the same', async (t) => {
  const dir = path.join(temp, 'large');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
  const content = Buffer.alloc(3 * 1024 * 1024, 'x');
  writeFileSync(path.join(dir, 'big.bin'), content);
  writeFileSync(path.join(dir, 'small.bin'), content.subarray(0, 1024));
  const lines = await contextFileLines(await scanContext(dir));
  const { createHash } = await import('node:crypto');
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  t.ok(lines.some((l) => l.startsWith('file\u0000big.bin\u0000') && l.endsWith(sha(content))), 'the streamed file');
  t.ok(lines.some((l) => l.startsWith('file\u0000small.bin\u0000') && l.endsWith(sha(content.subarray(0, 1024)))), 'the file read whole');
});
