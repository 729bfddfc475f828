// A distribution registry of its own for one test (the real `docker-registry` of Debian, as
// test/env/up.sh runs it), on a free loopback port with filesystem storage in a temporary folder:
// for tests that run its garbage collector (which must not run beside other tests' uploads) or
// need deletes refused. Anonymous; the engine treats localhost:PORT as an insecure registry.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startService } from './service-process.js';

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
  // Up when /v2/ answers; polled, since the registry says nothing on stdout when it is ready.
  const service = await startService({
    name: `docker-registry on 127.0.0.1:${port}`,
    cmd: 'docker-registry',
    args: ['serve', config],
    ready: () => fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200),
  });
  const blobsDir = path.join(dataDir, 'docker', 'registry', 'v2', 'blobs');
  return {
    host: `localhost:${port}`,
    dataDir,
    config,
    log: service.log,
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
      await service.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
