// A second, private dockerd for tests that stop the engine mid-run: its own data root, exec root,
// pidfile and socket under a temp dir, started like test/env/up.sh starts the shared one (no bridge,
// no iptables), so stopping it never disturbs the shared engine other tests use.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function ping(socketPath) {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 && body === 'OK'));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

export async function startPrivateDockerd() {
  // Short path: containerd's sockets under the exec root must stay under 100 characters.
  const dir = mkdtempSync('/tmp/tkd-');
  const socket = path.join(dir, 'docker.sock');
  const logFile = path.join(dir, 'dockerd.log');
  const config = path.join(dir, 'daemon.json');
  writeFileSync(config, '{}\n');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(https?|all|no)_proxy$/i.test(k)));
  let child;
  let exited;

  async function start() {
    const log = openSync(logFile, 'a');
    child = spawn(
      'dockerd',
      [
        '--config-file', config,
        '--data-root', path.join(dir, 'data'),
        '--exec-root', path.join(dir, 'x'),
        '--pidfile', path.join(dir, 'docker.pid'),
        '--host', `unix://${socket}`,
        // vfs: nothing stays mounted when the daemon is killed; the test images are tiny.
        '--storage-driver', 'vfs',
        '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
      ],
      { cwd: '/', env, stdio: ['ignore', log, log], detached: true },
    );
    closeSync(log);
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    for (let i = 0; i < 300; i++) {
      if (await ping(socket)) return;
      if (child.exitCode !== null || child.signalCode !== null) break;
      await sleep(100);
    }
    throw new Error(`private dockerd did not start: ${readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n')}`);
  }

  /** Stop it like an operator or systemd would (SIGTERM), waiting for it to exit; SIGKILL after timeoutMs. */
  async function stop(signal = 'SIGTERM', timeoutMs = 30_000) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const done = await Promise.race([exited, sleep(timeoutMs).then(() => undefined)]);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
    // dockerd stops the containerd it started; make sure, by its own pidfile only.
    const ctdPidFile = path.join(dir, 'x', 'containerd', 'containerd.pid');
    if (existsSync(ctdPidFile)) {
      const pid = Number(readFileSync(ctdPidFile, 'utf8').trim());
      if (pid && alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) {
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    }
  }

  await start();
  return {
    host: `unix://${socket}`,
    socket,
    dir,
    get pid() {
      return child.pid;
    },
    log: () => readFileSync(logFile, 'utf8'),
    start,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
