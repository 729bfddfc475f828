/**
 * Synchronous work in slices. Walking and hashing a build context is many small file system calls;
 * made synchronously they cost a fifth of the CPU of Node's promise-based calls (each of those is a
 * round trip through the thread pool), but a long walk would then hold the event loop. The loop
 * awaits the returned function at each step: it gives the event loop a turn once `sliceMs` passed
 * since the last one, and is free (no turn) otherwise.
 */
export function timeSlices(sliceMs = 10): () => Promise<void> | undefined {
  let since = Date.now();
  return () => {
    if (Date.now() - since < sliceMs) return undefined;
    return new Promise((resolve) =>
      setImmediate(() => {
        since = Date.now();
        resolve();
      }),
    );
  };
}
