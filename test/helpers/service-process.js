// A real service a test starts for itself (a distribution registry, Prism): a free loopback port,
// the process in a group of its own (stopping it ends it and whatever it started, nothing else),
// the tail of its output for error messages, and start-up polled until it answers.
import { spawn } from 'node:child_process';
import net from 'node:net';

/** A port nothing listens on at the moment, on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `cmd args` and waits until `ready()` (polled every `pollMs`) resolves true. Throws with
 * the service's output when it exits first or does not answer within `timeoutMs` (then stopped).
 * Returns { child, log(), stop(), startupMs }; stop() sends SIGTERM to the group, SIGKILL after 3 s.
 */
export async function startService({ name, cmd, args, cwd, ready, timeoutMs = 30_000, pollMs = 100 }) {
  const started = Date.now();
  const child = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log = (log + d).slice(-8000)));
  child.stderr.on('data', (d) => (log = (log + d).slice(-8000)));
  let exited = null;
  child.once('exit', (code, signal) => (exited = { code, signal }));
  const signalGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
      return true;
    } catch {
      return false; // already gone
    }
  };
  const stop = () =>
    new Promise((resolve) => {
      if (exited) return resolve();
      child.once('exit', () => resolve());
      if (!signalGroup('SIGTERM')) return resolve();
      setTimeout(() => exited || signalGroup('SIGKILL'), 3000).unref();
    });
  const deadline = started + timeoutMs;
  for (;;) {
    if (exited) throw new Error(`${name} exited (${JSON.stringify(exited)}) during start-up:\n${log}`);
    if (await ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not answer within ${timeoutMs / 1000} s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return { child, log: () => log, stop, startupMs: Date.now() - started };
}
