/**
 * pushImage: push local tags through the engine, take the digest from the engine's stream and
 * check it against the registry itself. `changed` means the registry changed: a layer was uploaded
 * or mounted, or a tag now points somewhere new.
 */
import { ThinkubeImageError } from '../core/errors.js';
import { connectEngine, engineError, type Engine } from './engine.js';
import { loadDockerCredentials, registryAuthHeader, type RegistryCredentials } from '../registry/docker-config.js';
import { parseReference, withDefaultTag, formatReference } from '../registry/reference.js';
import { registryClientFor, resolveCredentials } from '../registry/connect.js';


import { LogTail, cleanLine, emit, readJsonLines, type OperationControls } from '../core/progress.js';
import { RetryBudget, retrySettings, type RetryListener, type RetrySettings } from '../core/retry.js';
import { validate } from '../options/schema.js';
import type { PushOptions, RegistryAuth, RegistryTls, RetryOptions } from '../options/generated/types.js';
import { schemaDefault } from '../options/defaults.js';

export type { PushOptions };

export interface TagPushResult {
  reference: string;
  digest: string;
  /** Digest the tag pointed at before the push (undefined: the tag did not exist). */
  previousDigest?: string;
  layersUploaded: number;
  layersExisting: number;
  layersMounted: number;
  changed: boolean;
}

export interface PushResult {
  registry: string;
  repository: string;
  /** Manifest digest (sha256:...), verified with the registry unless verify is false. */
  digest: string;
  /** Size in bytes of the manifest, as the engine reports it. */
  manifestSize: number;
  /** Compressed size in bytes of config and layers, from the manifest (0 when unknown). */
  imageSize: number;
  tags: TagPushResult[];
  /** True when any layer was uploaded. */
  uploaded: boolean;
  changed: boolean;
  verified: boolean;
  durationMs: number;
  warnings: string[];
}

const DIGEST_LINE = /digest: (sha256:[0-9a-f]{64}) size: (\d+)/;
/** The engine's own retry of a layer upload: "Retrying in 5 seconds" (counting down each second). */
const ENGINE_RETRY_LINE = /^Retrying in (\d+) seconds?/;

/** Retries of a whole tag's push (options.retry overrides these). */
export const PUSH_RETRY_DEFAULTS: Readonly<RetrySettings> = Object.freeze({ limit: 3, maxTotalMs: 900_000, initialDelayMs: 2000, maxDelayMs: 60_000 });

/** Registry failures that never pass by trying again: credentials, permissions, quota, bad requests. */
const PERMANENT_PUSH_ERROR = /unauthorized|authentication required|no basic auth credentials|denied|forbidden|quota|incorrect username or password|does not exist|no such image|manifest invalid|name invalid|tag invalid|blob unknown|x509|certificate|no such host/i;
/** Failures of the link or of the registry that may pass: each gives a short reason for the retry event. */
const TRANSIENT_PUSH_ERRORS: Array<[RegExp, string]> = [
  [/too many requests|toomanyrequests|\b429\b/i, 'HTTP 429 (rate limited)'],
  [/\b(50[0234])\b|service unavailable|bad gateway|gateway time-?out|internal server error/i, 'HTTP 5xx from the registry'],
  [/connection reset/i, 'connection reset'],
  [/connection refused/i, 'connection refused'],
  [/broken pipe/i, 'broken pipe'],
  [/\bEOF\b/, 'connection closed (EOF)'],
  [/i\/o timeout|timeout|timed out|deadline exceeded/i, 'timeout'],
  [/use of closed network connection|server closed idle connection|no route to host|network is unreachable/i, 'connection lost'],
];

/**
 * Why a push error reported in the engine's stream is worth another try (a short reason), or
 * undefined when it is not: authentication, permission and quota errors never are.
 */
export function transientPushError(message: string): string | undefined {
  if (PERMANENT_PUSH_ERROR.test(message)) return undefined;
  for (const [pattern, reason] of TRANSIENT_PUSH_ERRORS) {
    if (pattern.test(message)) {
      // The status line is the useful part of a 5xx: "received unexpected HTTP status: 503 Service Unavailable".
      const status = /\b([45]\d\d [A-Z][A-Za-z ]+)/.exec(message)?.[1];
      return status && reason.startsWith('HTTP') ? `HTTP ${status.trim()}` : reason;
    }
  }
  return undefined;
}



function classifyPushError(message: string, registry: string, credentials: RegistryCredentials | undefined, reference: string, retried = ''): ThinkubeImageError {
  const who = credentials?.username ? `user ${credentials.username}` : 'anonymous access';
  const lower = message.toLowerCase();
  if (/does not exist locally|no such image|tag does not exist/.test(lower)) {
    return new ThinkubeImageError('ERR_PUSH_FAILED', `Image ${reference} does not exist on the engine: ${message}`, {
      hint: 'Build (or tag) it before pushing',
      details: { registry, reference },
    });
  }
  if (/quota exceeded/i.test(message)) {
    return new ThinkubeImageError('ERR_PUSH_FAILED', `Push of ${reference} was refused by ${registry}: ${message}`, {
      hint: 'The project quota in Harbor is full: free space (delete old artifacts, run garbage collection) or raise the quota',
      details: { registry, quotaExceeded: true },
    });
  }
  if (/unauthorized|authentication required|no basic auth credentials|denied|forbidden|incorrect username or password/.test(lower)) {
    return new ThinkubeImageError('ERR_REGISTRY_AUTH', `Registry ${registry} refused the push of ${reference} for ${who}: ${message}`, {
      hint: credentials?.username
        ? `Check the password of ${credentials.username} and that it may push to this project`
        : 'Give registry credentials (auth.username and auth.password, or a docker login entry in ~/.docker/config.json)',
      details: { registry, username: credentials?.username },
    });
  }
  if (/connection refused|no such host|i\/o timeout|dial tcp|tls:|x509|server gave http response|eof|connection reset|broken pipe/.test(lower)) {
    return new ThinkubeImageError('ERR_REGISTRY_UNREACHABLE', `The engine could not reach registry ${registry} to push ${reference}${retried}: ${message}`, {
      hint: 'Check the registry address and that it is running and reachable from the engine host (TLS certificates trusted by the engine)',
      details: { registry },
    });
  }
  return new ThinkubeImageError('ERR_PUSH_FAILED', `Push of ${reference} to ${registry} failed${retried}: ${message}`, {
    hint: retried ? 'The registry kept failing: check its health and logs (and free disk), then run again; what was pushed is not pushed again' : 'Check the registry and the engine log, then run again',
    details: { registry },
  });
}

interface TagOutcome {
  digest?: string;
  size?: number;
  uploaded: number;
  existing: number;
  mounted: number;
  error?: string;
  /** The engine sent nothing for stallMs: the push was cancelled on the engine. */
  stalled?: boolean;
  tail: string[];
}

async function pushOneTag(engine: Engine, reference: string, authHeader: string, controls: OperationControls, stallMs: number): Promise<TagOutcome> {
  const ref = withDefaultTag(parseReference(reference));
  const name = formatReference({ ...ref, tag: undefined, digest: undefined });
  // Closing the connection is what cancels a push on the engine: a stall closes it like a cancel.
  const stall = new AbortController();
  const signal = controls.signal ? AbortSignal.any([controls.signal, stall.signal]) : stall.signal;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(), stallMs);
  };
  const layers = new Map<string, string>();
  const tail = new LogTail(30);
  const engineRetries = new Map<string, { seconds: number; count: number }>();
  let digest: string | undefined;
  let size: number | undefined;
  let error: string | undefined;
  arm();
  try {
    const stream = (await (await engine.client()).getImage(name).push({
      tag: ref.tag,
      authconfig: { key: authHeader },
      abortSignal: signal,
    } as object)) as unknown as import('node:stream').Readable;
    for await (const message of readJsonLines(stream)) {
      arm();
      if (typeof message.error === 'string' || message.errorDetail) {
        error = String(message.error ?? (message.errorDetail as { message?: string }).message ?? 'unknown error').trim();
        continue;
      }
      const status = typeof message.status === 'string' ? message.status : undefined;
      const id = typeof message.id === 'string' ? message.id : undefined;
      const engineRetry = status ? ENGINE_RETRY_LINE.exec(status) : null;
      if (engineRetry && id) {
        // Reported once per retry: the countdown repeats the line every second.
        const seconds = Number(engineRetry[1]);
        const seen = engineRetries.get(id);
        if (!seen || seconds > seen.seconds) {
          const count = (seen?.count ?? 0) + 1;
          emit(controls, { type: 'retry', operation: `upload of layer ${id} of ${reference} (by the engine)`, attempt: count, delayMs: seconds * 1000, reason: 'the layer upload failed' });
          engineRetries.set(id, { seconds, count });
        } else engineRetries.set(id, { seconds, count: seen.count });
        continue;
      }
      if (status) {
        const match = DIGEST_LINE.exec(status);
        if (match) {
          digest = match[1];
          size = Number(match[2]);
        }
        if (id && /^[0-9a-f]{12,64}$/.test(id)) {
          const previous = layers.get(id);
          // Keep the final word on each layer: Pushed / Layer already exists / Mounted from x.
          if (!previous || status === 'Pushed' || status.startsWith('Mounted from') || status === 'Layer already exists') layers.set(id, status);
          const detail = message.progressDetail as { current?: number; total?: number } | undefined;
          emit(controls, { type: 'push-layer', reference, layer: id, status, current: detail?.current, total: detail?.total });
        }
        if (!message.progressDetail || status !== 'Pushing') tail.push(cleanLine(id ? `${id}: ${status}` : status));
      }
      const aux = message.aux as { Digest?: string; Size?: number } | undefined;
      if (aux?.Digest && !digest) {
        digest = aux.Digest;
        size = aux.Size;
      }
    }
  } catch (failure) {
    if (!stall.signal.aborted || controls.signal?.aborted) throw failure;
  } finally {
    clearTimeout(timer);
  }
  if (stall.signal.aborted && !controls.signal?.aborted) {
    return { uploaded: 0, existing: 0, mounted: 0, stalled: true, error: `the engine reported no progress for ${Math.round(stallMs / 1000)} s (push cancelled)`, tail: tail.last() };
  }
  let uploaded = 0;
  let existing = 0;
  let mounted = 0;
  for (const status of layers.values()) {
    if (status === 'Pushed') uploaded++;
    else if (status.startsWith('Mounted from')) mounted++;
    else if (status === 'Layer already exists') existing++;
  }
  return { digest, size, uploaded, existing, mounted, error, tail: tail.last() };
}

export async function pushImage(options: PushOptions, controls: OperationControls = {}): Promise<PushResult> {
  const valid = validate<PushOptions>('push-options.schema.json', options, { what: 'push options' });
  const engine = connectEngine(valid.engine);
  return runPush(engine, valid, controls);
}

export async function runPush(engine: Engine, options: PushOptions, controls: OperationControls = {}): Promise<PushResult> {
  const started = Date.now();
  const refs = options.tags.map((t) => withDefaultTag(parseReference(t)));
  const first = refs[0] as (typeof refs)[number];
  for (const ref of refs) {
    if (ref.registry !== first.registry || ref.repository !== first.repository) {
      throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `All tags of one push must name the same repository: ${formatReference(ref)} differs from ${formatReference(first)}`, {
        hint: 'Push each repository with its own call',
      });
    }
  }
  const credentials = await resolveCredentials(first.registry, options.auth);
  const authHeader = registryAuthHeader(credentials, first.registry);
  const verify = options.verify !== false;
  const onRetry = (event: Parameters<RetryListener>[0]): void => emit(controls, event);
  const client = registryClientFor(first.registry, credentials, options.registryTls, { retry: options.retry, onRetry, signal: controls.signal });
  const settings = retrySettings(options.retry, PUSH_RETRY_DEFAULTS);
  const stallMs = Math.round((options.stallTimeoutSeconds ?? schemaDefault('push-options.schema.json', 'properties/stallTimeoutSeconds')) * 1000);
  const warnings: string[] = [];
  const results: TagPushResult[] = [];
  let manifestSize = 0;
  let digest: string | undefined;
  // What was done and what not, for an interrupted or failed push.
  const progress = (): Record<string, unknown> => ({
    pushed: results.map((r) => r.reference),
    notPushed: refs.map((r) => formatReference(r)).filter((r) => !results.some((done) => done.reference === r)),
  });
  const cancelled = (reference: string, during: boolean): ThinkubeImageError =>
    new ThinkubeImageError('ERR_ABORTED', during ? `Push of ${reference} was cancelled (the engine stops it when the connection closes)` : `Push cancelled before ${reference}`, {
      hint: 'Run it again: layers already in the registry are not uploaded again',
      details: progress(),
    });

  for (const ref of refs) {
    const reference = formatReference(ref);
    if (controls.signal?.aborted) throw cancelled(reference, false);
    const previousDigest = verify ? (await client.headManifest(ref.repository, ref.tag as string))?.digest : undefined;
    const budget = new RetryBudget(`push ${reference}`, settings, { onRetry, signal: controls.signal });
    let uploadedBefore = 0;
    let outcome: TagOutcome;
    for (;;) {
      try {
        outcome = await pushOneTag(engine, reference, authHeader, controls, stallMs);
      } catch (error) {
        if (controls.signal?.aborted) throw cancelled(reference, true);
        const wrapped = engineError(engine, error, `pushing ${reference}`);
        if (wrapped.code === 'ERR_ENGINE' && /does not exist|no such image|not found/i.test(wrapped.message)) {
          throw new ThinkubeImageError('ERR_PUSH_FAILED', `Image ${reference} does not exist on the engine at ${engine.address}`, {
            hint: 'Build (or tag) it before pushing',
            details: { reference },
          });
        }
        throw wrapped;
      }
      if (!outcome.error) break;
      // The whole tag is pushed again: the engine skips the layers the registry already has.
      const reason = outcome.stalled ? 'no progress (stalled)' : transientPushError(outcome.error);
      if (reason) {
        let again: boolean;
        try {
          again = await budget.wait(reason);
        } catch {
          throw cancelled(reference, true);
        }
        if (again) {
          uploadedBefore += outcome.uploaded;
          continue;
        }
      }
      const retried = budget.retries > 0 || (reason && budget.exhausted) ? ` (${budget.exhausted ?? `after ${budget.retries} retries`})` : '';
      const classified = outcome.stalled
        ? new ThinkubeImageError('ERR_TIMEOUT', `Push of ${reference} to ${first.registry} stalled: ${outcome.error}${retried}`, {
            hint: 'Check the link between the engine and the registry and the registry itself; raise stallTimeoutSeconds for a very slow link',
            details: { registry: first.registry },
          })
        : classifyPushError(outcome.error, first.registry, credentials, reference, retried);
      Object.assign(classified.details, { logTail: outcome.tail, retries: budget.retries, ...progress() });
      throw classified;
    }
    outcome.uploaded += uploadedBefore;
    if (!outcome.digest) {
      throw new ThinkubeImageError('ERR_PUSH_FAILED', `The engine at ${engine.address} pushed ${reference} but reported no digest`, {
        hint: 'Check the engine log; retry the push',
        details: { logTail: outcome.tail },
      });
    }
    if (digest && outcome.digest !== digest) {
      warnings.push(`${reference} has digest ${outcome.digest}, other tags of this push have ${digest}`);
    }
    digest ??= outcome.digest;
    manifestSize = outcome.size ?? manifestSize;
    emit(controls, { type: 'push-digest', reference, digest: outcome.digest, size: outcome.size ?? 0 });
    if (verify) {
      const seen = await client.headManifest(ref.repository, ref.tag as string);
      if (!seen) {
        throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Registry ${first.registry} does not list ${reference} right after the push`, {
          hint: 'Another process may have deleted it, or the engine pushed elsewhere (registry mirror or DNS); push again',
          details: { reference, expected: outcome.digest },
        });
      }
      if (seen.digest !== outcome.digest) {
        throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Registry ${first.registry} reports ${seen.digest} for ${reference}, but the engine pushed ${outcome.digest}`, {
          hint: 'Something else pushed the same tag at the same time, or a proxy rewrote the manifest; push again and check who else writes this tag',
          details: { reference, expected: outcome.digest, actual: seen.digest },
        });
      }
    }
    results.push({
      reference,
      digest: outcome.digest,
      previousDigest,
      layersUploaded: outcome.uploaded,
      layersExisting: outcome.existing,
      layersMounted: outcome.mounted,
      changed: outcome.uploaded > 0 || outcome.mounted > 0 || previousDigest !== outcome.digest,
    });
  }

  let imageSize = 0;
  if (verify && digest) {
    try {
      const manifest = await client.getManifest(first.repository, digest);
      const json = JSON.parse(manifest.body.toString('utf8')) as { config?: { size?: number }; layers?: { size?: number }[] };
      imageSize = (json.config?.size ?? 0) + (json.layers ?? []).reduce((sum, layer) => sum + (layer.size ?? 0), 0);
    } catch {
      warnings.push(`Could not read the manifest of ${first.repository}@${digest} to compute the image size`);
    }
  }
  return {
    registry: first.registry,
    repository: first.repository,
    digest: digest as string,
    manifestSize,
    imageSize,
    tags: results,
    uploaded: results.some((r) => r.layersUploaded > 0),
    changed: results.some((r) => r.changed),
    verified: verify,
    durationMs: Date.now() - started,
    warnings,
  };
}
