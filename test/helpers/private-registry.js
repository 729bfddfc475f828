// A distribution registry of its own for one test (the real `docker-registry` of Debian, as
// test/env/up.sh runs it), on a free loopback port with filesystem storage in a temporary folder:
// for tests that run its garbage collector (which must not run beside other tests' uploads) or
// need deletes refused. Anonymous; the engine treats localhost:PORT as an insecure registry.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Total bytes of the files under dir. */
function bytesUnder(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += bytesUnder(p);
    else if (entry.isFile()) total += statSync(p).size;
  }
  return total;
}

/**
 * deleteEnabled: storage.delete.enabled (DELETE of manifests allowed; otherwise 405 UNSUPPORTED).
 * Returns { host, dataDir, config, blobBytes(), garbageCollect(), close() }.
 */
export async function startPrivateRegistry({ deleteEnabled = true } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-registry-'));
  const dataDir = path.join(dir, 'data');
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: info',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${dataDir}`,
      '  delete:',
      `    enabled: ${deleteEnabled}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  let log = '';
  const child = spawn('docker-registry', ['serve', config], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (log = (log + d).slice(-8000)));
  child.stderr.on('data', (d) => (log = (log + d).slice(-8000)));
  let exited = false;
  child.once('exit', () => (exited = true));
  const stop = () =>
    new Promise((resolve) => {
      if (exited) return resolve();
      child.once('exit', () => resolve());
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        resolve();
      }
    });
  // Up when /v2/ answers; polled, since the registry says nothing on stdout when it is ready.
  for (let i = 0; ; i++) {
    if (exited) throw new Error(`docker-registry exited during start-up:\n${log}`);
    const up = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200, () => false);
    if (up) break;
    if (i > 300) {
      await stop();
      throw new Error(`docker-registry did not answer on 127.0.0.1:${port}:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const blobsDir = path.join(dataDir, 'docker', 'registry', 'v2', 'blobs');
  return {
    host: `localhost:${port}`,
    dataDir,
    config,
    log: () => log,
    /** Bytes of every blob the registry stores (layers, configs, manifests). */
    blobBytes: () => bytesUnder(blobsDir),
    /** `docker-registry garbage-collect CONFIG`: removes blobs no manifest of any repository references. */
    garbageCollect: () =>
      new Promise((resolve, reject) =>
        execFile('docker-registry', ['garbage-collect', config], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
          error ? reject(new Error(`garbage-collect failed: ${stderr || error.message}`)) : resolve(stdout + stderr),
        ),
      ),
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
