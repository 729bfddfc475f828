/**
 * One build -> push -> register of an image at a time on this host. Two runs started together on
 * the same images would otherwise both build, and the later push could move the tag after the
 * earlier run registered its own digest: the catalog would name an image the registry no longer
 * tags. With the lock, the second run waits, then finds the image in the registry (content-
 * addressed skip) and registers the same digest. A lock whose holder died goes stale and is taken.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';
import { ThinkubeImageError, errorCodeOf } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';

/** Folder of the lock files: $THINKUBE_IMAGES_LOCK_DIR, else <tmp>/thinkube-custom-images-locks. */
export function imageLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.THINKUBE_IMAGES_LOCK_DIR || path.join(os.tmpdir(), 'thinkube-custom-images-locks');
}

/** A holder refreshes its lock every STALE_MS / 2; one not refreshed for STALE_MS is taken over. */
const STALE_MS = 30_000;

/**
 * Take the lock of `key` (e.g. registry/project/name), waiting while another run holds it.
 * Resolves to the function that releases it. Rejects with ERR_ABORTED when the signal fires.
 */
export async function lockImage(key: string, controls: OperationControls = {}, dir: string = imageLockDir()): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.lock`);
  let announced = false;
  let wait = 250;
  for (;;) {
    if (controls.signal?.aborted) throw new ThinkubeImageError('ERR_ABORTED', `Cancelled while waiting for another run that is building ${key}`, { hint: 'Run it again' });
    try {
      const release = await lockfile.lock(file, {
        realpath: false,
        stale: STALE_MS,
        // Losing the lock (the host slept past `stale`) is reported, not fatal.
        onCompromised: (error) => emit(controls, { type: 'warning', message: `The lock of ${key} was taken over (${error.message})` }),
      });
      return async () => {
        try {
          await release();
        } catch {
          // Already released or taken over: nothing left to undo.
        }
      };
    } catch (error) {
      if (errorCodeOf(error) !== 'ELOCKED') {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Cannot take the lock of ${key} in ${dir} (${errorCodeOf(error) ?? (error as Error).message})`, {
          hint: 'Make the folder writable, or point THINKUBE_IMAGES_LOCK_DIR at a writable folder',
        });
      }
    }
    if (!announced) {
      emit(controls, { type: 'info', message: `${key}: waiting for another run that is building it` });
      announced = true;
    }
    try {
      await sleep(wait, undefined, controls.signal ? { signal: controls.signal } : {});
    } catch {
      // The loop's first check turns it into ERR_ABORTED.
    }
    wait = Math.min(wait * 2, 2000);
  }
}
