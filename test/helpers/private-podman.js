// A private Podman service with its own, empty storage: a "fresh host" for tests of what survives
// only in the registry (buildah's registry layer cache). It reads the shared service's
// configuration (test/env/up.sh: registries, no networking) with its own root, run root and temp
// dir, and the vfs driver so that nothing stays mounted when it stops.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function ping(socketPath) {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** env: testEnv(). Returns { host, cleanup() }. */
export async function startPrivatePodman(env) {
  const dir = mkdtempSync('/tmp/tkp-');
  const socket = path.join(dir, 'podman.sock');
  const logFile = path.join(dir, 'podman.log');
  const shared = env.podmanEnv;
  const conf = readFileSync(shared.CONTAINERS_CONF, 'utf8').replace(/^tmp_dir = .*$/m, `tmp_dir = "${path.join(dir, 'tmp')}"`).replace(/^events_logfile_path = .*$/m, `events_logfile_path = "${path.join(dir, 'events.log')}"`);
  writeFileSync(path.join(dir, 'containers.conf'), conf);
  writeFileSync(path.join(dir, 'storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = "${path.join(dir, 'root')}"\nrunroot = "${path.join(dir, 'run')}"\n`);
  const childEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(https?|all|no)_proxy$/i.test(k))),
    CONTAINERS_CONF: path.join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: shared.CONTAINERS_REGISTRIES_CONF,
  };
  const log = openSync(logFile, 'a');
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { cwd: '/', env: childEnv, stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let up = false;
  for (let i = 0; i < 300 && !up; i++) {
    up = await ping(socket);
    if (!up) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      await sleep(100);
    }
  }
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const done = await Promise.race([exited, sleep(20_000).then(() => false)]);
      if (done === false) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  if (!up) {
    const tail = readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
    await cleanup();
    throw new Error(`private podman service did not start: ${tail}`);
  }
  return { host: `unix://${socket}`, dir, cleanup };
}
