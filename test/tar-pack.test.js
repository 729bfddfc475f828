// The context tar (lib/source/tar-pack.ts): read back by GNU tar and by tar-stream, every entry as
// on disk (names long and not ASCII, modes without the umask, links, a file streamed in pieces),
// the generated entries of a Dockerfile from outside the context, and a file gone after the scan
// failing the stream instead of leaving it short.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { extract } from 'tar-stream';
import { packContext, scanContext } from '../dist/lib/source/context.js';

const temp = mkdtempSync(path.join(os.tmpdir(), 'tk-tar-pack-'));
t.teardown(() => rmSync(temp, { recursive: true, force: true }));
const sha = (buffer) => createHash('sha256').update(buffer).digest('hex');

async function entriesOf(stream) {
  const out = [];
  const reader = extract();
  const done = new Promise((resolve, reject) => {
    reader.on('entry', (header, body, next) => {
      const chunks = [];
      body.on('data', (c) => chunks.push(c));
      body.on('end', () => {
        out.push({ ...header, content: Buffer.concat(chunks) });
        next();
      });
    });
    reader.on('finish', resolve);
    reader.on('error', reject);
  });
  stream.pipe(reader);
  await done;
  return out;
}

function fixture(name) {
  const dir = path.join(temp, name);
  mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY . /\n');
  writeFileSync(path.join(dir, 'a', 'b', 'run.sh'), '#!/bin/sh\n');
  chmodSync(path.join(dir, 'a', 'b', 'run.sh'), 0o777);
  writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 7, 7));
  mkdirSync(path.join(dir, 'd'.repeat(90)));
  writeFileSync(path.join(dir, 'd'.repeat(90), 'e'.repeat(120)), 'long');
  writeFileSync(path.join(dir, 'ünï.txt'), 'utf-8 name');
  symlinkSync('a/b/run.sh', path.join(dir, 'link'));
  return dir;
}

t.test('every entry of the scan, as on disk', async (t) => {
  const dir = fixture('plain');
  const scan = await scanContext(dir);
  const entries = await entriesOf(await packContext(scan));
  t.same(entries.map((e) => e.name), scan.entries.map((e) => e.path), 'the scan order, nothing else');
  const umask = process.umask();
  for (const entry of entries) {
    const abs = path.join(dir, entry.name);
    const st = entry.type === 'symlink' ? undefined : statSync(abs);
    t.equal(entry.uid, 0);
    t.equal(entry.gid, 0);
    if (st) {
      t.equal(entry.mode, st.mode & ~umask & 0o7777, `${entry.name}: mode without the umask`);
      t.equal(entry.mtime.getTime(), Math.floor(st.mtimeMs / 1000) * 1000, `${entry.name}: its own mtime`);
    }
    if (entry.type === 'file') t.equal(sha(entry.content), sha(readFileSync(abs)), `${entry.name}: content`);
  }
  t.equal(entries.find((e) => e.name === 'link').linkname, 'a/b/run.sh');
  t.equal(entries.find((e) => e.name === 'big.bin').size, 3 * 1024 * 1024 + 7, 'the large file, streamed');
  const listing = execFileSync('tar', ['-tvf', '-'], { input: await collect(await packContext(scan)) }).toString();
  t.match(listing, `${'d'.repeat(90)}/${'e'.repeat(120)}`, 'GNU tar reads the long name');
  t.match(listing, 'ünï.txt');
  t.match(listing, 'link -> a/b/run.sh');
});

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

t.test('a given mtime, and the entries of a Dockerfile from outside the context', async (t) => {
  const dir = fixture('outside');
  const scan = await scanContext(dir);
  const outside = { ...scan, dockerfileOutside: true, dockerfileName: '.dockerfile.test', dockerfile: Buffer.from('FROM elsewhere\n') };
  const entries = await entriesOf(await packContext(outside, { mtime: new Date(0) }));
  t.ok(entries.every((e) => e.mtime.getTime() === 0), 'every entry at the given time');
  t.same(entries.slice(-2).map((e) => [e.name, e.content.toString()]), [
    ['.dockerignore', '.dockerignore\n.dockerfile.test\n'],
    ['.dockerfile.test', 'FROM elsewhere\n'],
  ]);
  const again = await collect(await packContext(outside, { mtime: new Date(0) }));
  const first = await collect(await packContext(outside, { mtime: new Date(0) }));
  t.ok(again.equals(first), 'the same files give the same bytes');
});

t.test('a file gone after the scan fails the stream', async (t) => {
  const dir = fixture('gone');
  const scan = await scanContext(dir);
  unlinkSync(path.join(dir, 'ünï.txt'));
  await t.rejects(collect(await packContext(scan)), { code: 'ENOENT' });
});

t.test('a consumer that gives up stops the tar: no read after, nothing thrown', async (t) => {
  const dir = fixture('given-up');
  const scan = await scanContext(dir);
  const uncaught = [];
  const onUncaught = (error) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => process.off('uncaughtException', onUncaught));
  const stream = await packContext(scan);
  const errors = [];
  stream.on('error', (error) => errors.push(error.message));
  stream.destroy(new Error('the engine went away'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(errors, ['the engine went away'], "the consumer's error, once");
  t.same(uncaught.map((e) => e.message), [], 'no error escapes after the stream is destroyed');
});
