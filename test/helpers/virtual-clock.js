// A virtual clock, for tests that show WHEN something happens (a wait of exactly the Retry-After,
// polls that back off) without waiting for it or measuring it: setTimeout (the global one and
// node:timers/promises') and Date run on node:test's mock timers, and only move when the test
// says so. Deterministic on any machine, however loaded. setImmediate stays real (it lets pending
// promise callbacks run between two steps). Use it only for code that waits on timers alone, not
// on real I/O (a socket's own timeouts would be frozen too).
import { mock } from 'node:test';
import { syncBuiltinESMExports } from 'node:module';

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Freeze time at 0 for the rest of test `t`; the returned clock moves it. */
export function virtualClock(t) {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  // Modules that imported { setTimeout } from 'node:timers/promises' before see the mock too.
  syncBuiltinESMExports();
  t.teardown(() => {
    mock.timers.reset();
    syncBuiltinESMExports();
  });
  return {
    /** Virtual milliseconds since the clock was frozen. */
    now: () => Date.now(),
    /** Let pending callbacks run, move time on by `ms`, let the woken callbacks run. */
    async tick(ms) {
      await settle();
      mock.timers.tick(ms);
      await settle();
    },
    /**
     * Move time on 1 ms at a time until `promise` settles; its value (or rejection). Fails
     * when it has not settled after `limitMs` virtual milliseconds.
     */
    async run(promise, limitMs = 60_000) {
      let outcome;
      promise.then((value) => (outcome = { value }), (error) => (outcome = { error }));
      await settle();
      for (let elapsed = 0; !outcome; elapsed++) {
        if (elapsed >= limitMs) throw new Error(`still pending after ${limitMs} virtual ms`);
        mock.timers.tick(1);
        await settle();
      }
      if ('error' in outcome) throw outcome.error;
      return outcome.value;
    },
  };
}
