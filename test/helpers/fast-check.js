// Reproducible property-based tests. One seed per run of a test file: FC_SEED=<integer> replays
// a run, otherwise a random one is drawn. Each property gets its own seed derived from that seed
// and a label, so adding or reordering properties does not change what the others generate. A
// failure prints fast-check's own report (seed, path, counterexample) plus the FC_SEED to replay
// the whole file with; print FC_SEED at the start too (t.comment) so a passing log has it.
import fc from 'fast-check';

const fromEnv = process.env.FC_SEED?.trim();
if (fromEnv !== undefined && fromEnv !== '' && !/^-?\d+$/.test(fromEnv)) {
  throw new Error(`FC_SEED must be an integer (the seed a failed run printed), got ${JSON.stringify(process.env.FC_SEED)}`);
}
/** The run's seed: FC_SEED, or random. */
export const FC_SEED = fromEnv ? Number(fromEnv) | 0 : (Math.random() * 0x7fffffff) | 0;

/** A 32-bit seed from the run's seed and a label (FNV-1a over both). */
export function seedFor(label) {
  let h = 0x811c9dc5 ^ FC_SEED;
  for (const ch of String(label)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/** fc.assert with the seed of `label`; on failure the message says how to replay. */
export function assertProperty(label, property, params = {}) {
  try {
    fc.assert(property, { ...params, seed: seedFor(label) });
  } catch (error) {
    if (error instanceof Error) {
      error.message = `${label}: ${error.message}\nReplay this run: FC_SEED=${FC_SEED} node scripts/run-tests.js ${process.argv[1] ? process.argv[1].replace(/^.*?(test\/)/, '$1') : '<test file>'}`;
    }
    throw error;
  }
}

/** Deterministic numbers in [0, 1) from the seed of `label` (mulberry32), for sampling that must replay too. */
export function seededRandom(label) {
  let a = seedFor(label) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
