// A registry's access log after a run, complete. The registry writes a request's log line just
// after answering it, so reading the log right after a run can miss the last lines (and a test
// that counts lines would then see "nothing happened"). Instead of sleeping and hoping, send a
// marker request of our own and read once its line is there: every request answered before the
// marker was sent has its line in the log by then.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The log text written after byte `offset` of `logFile` by the registry at `registry` (host:port),
 * up to a marker request sent now (its own lines left out).
 */
export async function registryLogSince(registry, logFile, offset) {
  const marker = `thinkube-log-marker-${randomUUID()}`;
  // The test registries listen on 127.0.0.1; "localhost" might resolve to ::1 first.
  const res = await fetch(`http://${registry.replace(/^localhost(?=:|$)/, '127.0.0.1')}/v2/${marker}/tags/list`);
  await res.arrayBuffer();
  for (let i = 0; ; i++) {
    const text = readFileSync(logFile).subarray(offset).toString('utf8');
    if (text.includes(`/v2/${marker}/`)) return text.split('\n').filter((line) => !line.includes(marker)).join('\n');
    // A bound on waiting for the registry's own write, so a broken log fails instead of hanging.
    if (i >= 1500) throw new Error(`the registry log ${logFile} never showed the marker request ${marker}`);
    await sleep(20);
  }
}
