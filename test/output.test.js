// A command's standard output and error (lib/adapters/output.ts): written with write(2) when they
// are pipes or files, so a start-up that only prints creates no stream; all of it arrives, in
// order, also when the pipe is non-blocking and full, and a reader that went away is no crash.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const output = path.join(root, 'dist', 'lib', 'adapters', 'output.js');
const temp = mkdtempSync(path.join(os.tmpdir(), 'tk-output-'));
t.teardown(() => rmSync(temp, { recursive: true, force: true }));

// 300,000 bytes (over a pipe's 64 KiB) with a multi-byte character on the way, then a short end.
const BIG_CODE = "`${'a'.repeat(100_000)}é${'b'.repeat(199_998)}`";
const BIG = `${'a'.repeat(100_000)}é${'b'.repeat(199_998)}`;
const expected = `${BIG}END\n`;

/** A child that writes BIG and END through writeOutput(fd), after `prelude`; returns its output as it arrives. */
function child(fd, prelude = '') {
  const code = `${prelude}
    const { writeOutput } = await import(${JSON.stringify(output)});
    writeOutput(${fd}, ${BIG_CODE});
    writeOutput(${fd}, 'END\\n');
    const loaded = process.moduleLoadList.filter((m) => m === 'NativeModule net');
    require('node:fs').writeSync(${fd === 1 ? 2 : 1}, JSON.stringify({ net: loaded.length > 0 }));`;
  // Without the NODE_OPTIONS tap adds to every child (its hooks load modules of their own, net
  // among them): the shell drops them before it becomes node.
  const script = `(async () => { ${code} })()`;
  return spawn('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$0" "$@"', process.execPath, '--input-type=commonjs', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function collect(stream) {
  const chunks = [];
  stream.on('data', (chunk) => chunks.push(chunk));
  return new Promise((resolve) => stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8'))));
}

t.test('a pipe gets every byte in order, without Node creating the stream', async (t) => {
  for (const fd of [1, 2]) {
    const proc = child(fd);
    const [written, other] = await Promise.all([collect(fd === 1 ? proc.stdout : proc.stderr), collect(fd === 1 ? proc.stderr : proc.stdout)]);
    const code = await new Promise((resolve) => proc.on('close', resolve));
    t.equal(code, 0, `fd ${fd}: exits 0 (${other.slice(0, 300)})`);
    t.equal(written.length, expected.length, `fd ${fd}: every character arrived`);
    t.ok(written === expected, `fd ${fd}: in order, the multi-byte character whole`);
    t.same(JSON.parse(other), { net: false }, `fd ${fd}: no stream (and no net module) was created`);
  }
});

t.test('a non-blocking pipe that fills up hands the rest to the stream, in order', async (t) => {
  // Opening fd 1 as a pipe handle makes its open file description non-blocking, as a parent Node
  // process sharing the pipe would; the reader below then waits until the pipe is full.
  const proc = child(1, "new (require('node:net').Socket)({ fd: 1, readable: false, writable: true });");
  proc.stdout.pause();
  await new Promise((resolve) => setTimeout(resolve, 500));
  proc.stdout.resume();
  const [written, other] = await Promise.all([collect(proc.stdout), collect(proc.stderr)]);
  const code = await new Promise((resolve) => proc.on('close', resolve));
  t.equal(code, 0, other.slice(0, 300));
  t.equal(written.length, expected.length, 'every character arrived');
  t.ok(written === expected, 'in order');
});

t.test('a reader that went away: no crash, no stack trace', async (t) => {
  const proc = child(1);
  proc.stdout.destroy();
  const stderr = await collect(proc.stderr);
  const code = await new Promise((resolve) => proc.on('close', resolve));
  t.equal(code, 0, stderr.slice(0, 500));
  t.notMatch(stderr, /EPIPE|at .*output\.js/, 'nothing about the closed pipe');
});

t.test('a file gets the text; /dev/null (a character device: through the stream) takes it without an error', async (t) => {
  const file = path.join(temp, 'out.txt');
  const run = spawnSync('/bin/sh', ['-c', `"${process.execPath}" "${path.join(root, 'bin', 'build.js')}" --help > "${file}" && "${process.execPath}" "${path.join(root, 'bin', 'build.js')}" --help > /dev/null`], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  const help = readFileSync(file, 'utf8');
  t.match(help, /^Usage: build\.js \[CONTEXT\] \[options\]\n/, 'the help text, from its first line');
  t.match(help, /--engine-host VALUE/, 'with the options');
  t.ok(help.endsWith('\n'), 'whole');
});

t.test('a command: the result on stdout and the error line on stderr, both pipes', async (t) => {
  const run = spawnSync(process.execPath, [path.join(root, 'bin', 'build.js'), '--frobnicate'], { encoding: 'utf8' });
  t.equal(run.status, 2);
  t.same(JSON.parse(run.stdout).error_code, 'ERR_USAGE');
  t.equal(run.stderr, 'Error: Unknown option --frobnicate (see --help)\n');
});
