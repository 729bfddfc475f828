/**
 * A pool of container engines that share the builds: each engine (DOCKER_HOST-style address:
 * unix, tcp with TLS, ssh) lists the platforms it can build, natively or through qemu/binfmt
 * emulation, and how many builds it takes at once. A build asks the pool for an engine that can
 * build its platform and waits for a free slot.
 *
 * Engines keep ONE local image per tag: a build for linux/arm64 that pulls a base tag replaces the
 * engine's amd64 copy of that tag, and the classic builder then uses whatever copy is local,
 * whatever --platform says. So the pool also (1) never lets builds for different platforms that use
 * the same base tag run on one engine at the same time, and (2) remembers which base tags it left
 * holding a foreign platform, so that a later native build pulls its native copy first and
 * `restoreNativeBases` can put them back when the work is done.
 */
import { checkEngine, connectEngine, engineError, type Engine } from './engine.js';
import { ThinkubeImageError, ValidationError } from '../core/errors.js';
import { registryAuthHeader } from '../registry/docker-config.js';
import { resolveCredentials } from '../registry/connect.js';
import { parseReference, withDefaultTag } from '../registry/reference.js';
import type { EngineOptions, EngineSpec, RegistryAuth } from '../options/generated/types.js';
import { schemaDefault } from '../options/defaults.js';

export type { EngineSpec };

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const PLATFORM = /^([a-z0-9]+)\/([a-z0-9_]+)(?:\/([a-z0-9]+))?$/;

/** "linux/arm64/v8" -> {os, architecture, variant}; throws ValidationError for anything else. */
export function parsePlatform(text: string, field = 'platform'): Platform {
  const match = PLATFORM.exec(String(text).trim().toLowerCase());
  if (!match) throw new ValidationError('platform', [{ field, message: `"${String(text)}" must be os/arch[/variant], e.g. linux/amd64 or linux/arm64` }]);
  const platform: Platform = { os: match[1] as string, architecture: normalizeArchitecture(match[2] as string) };
  if (match[3]) platform.variant = match[3];
  return platform;
}

function normalizeArchitecture(arch: string): string {
  // The names engines and uname use for the same thing, as containerd normalizes them.
  if (arch === 'x86_64' || arch === 'x86-64') return 'amd64';
  if (arch === 'aarch64') return 'arm64';
  return arch;
}

export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
}

/** The variant an unset variant means (containerd's normalization): arm64 is v8, arm is v7. */
function effectiveVariant(platform: Platform): string | undefined {
  if (platform.variant) return platform.variant;
  if (platform.architecture === 'arm64') return 'v8';
  if (platform.architecture === 'arm') return 'v7';
  return undefined;
}

/** Same os and architecture, and the same variant once defaults are filled in (linux/arm64 = linux/arm64/v8). */
export function platformMatches(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && effectiveVariant(a) === effectiveVariant(b);
}

export interface PoolEngine {
  name: string;
  engine: Engine;
  /** Platforms it builds; 'any' builds whatever it is asked (the single engine of the engine option). */
  platforms: Platform[] | 'any';
  /** True when the platforms were not configured: they are the engine's own, learned by check(). */
  nativeOnly: boolean;
  concurrency: number;
  /** The engine's own platform (after check()). */
  native?: Platform;
  active: number;
  /** Most builds it ran at the same time. */
  peak: number;
  /** Builds it was given. */
  builds: number;
  /** Base tag -> platform key of the builds using it right now, and how many. */
  holders: Map<string, { platform: string; count: number }>;
  /** Base tags whose local copy on this engine is now of a foreign platform. */
  foreign: Map<string, string>;
}

export interface EngineLease {
  name: string;
  engine: Engine;
  /** The platform the build is for (undefined: the engine's own). */
  platform?: string;
  /** Base tags this build holds; see prepareBases. */
  bases: string[];
  release(): void;
}

export interface AcquireRequest {
  /** os/arch[/variant]; undefined: any engine, building for its own platform. */
  platform?: string;
  /** Base image references (FROM) the build uses: builds for other platforms using them wait. */
  bases?: string[];
  /** What the build is, for messages. */
  what?: string;
  signal?: AbortSignal;
}

interface Waiter {
  request: AcquireRequest;
  resolve(lease: EngineLease): void;
  reject(error: unknown): void;
}

export interface EngineStats {
  name: string;
  address: string;
  platforms: string[] | 'any';
  concurrency: number;
  builds: number;
  peak: number;
}

function abortError(what: string | undefined): ThinkubeImageError {
  return new ThinkubeImageError('ERR_ABORTED', `${what ?? 'The build'} was cancelled while waiting for a free engine`);
}

export class EnginePool {
  readonly engines: PoolEngine[];
  private readonly waiting: Waiter[] = [];

  private constructor(engines: PoolEngine[]) {
    this.engines = engines;
  }

  /** A pool of the given engines (validated options: names unique, addresses like DOCKER_HOST). */
  static fromSpecs(specs: EngineSpec[], env: NodeJS.ProcessEnv = process.env): EnginePool {
    const seen = new Map<string, number>();
    const problems: Array<{ field: string; message: string }> = [];
    specs.forEach((spec, i) => {
      const before = seen.get(spec.name);
      if (before !== undefined) problems.push({ field: `engines[${i}].name`, message: `"${spec.name}" is also the name of engines[${before}]: names must be unique` });
      seen.set(spec.name, i);
      (spec.platforms ?? []).forEach((p, j) => {
        try {
          parsePlatform(p);
        } catch {
          problems.push({ field: `engines[${i}].platforms[${j}]`, message: `"${p}" must be os/arch[/variant], e.g. linux/arm64` });
        }
      });
    });
    if (problems.length > 0) throw new ValidationError('engines', problems);
    return new EnginePool(
      specs.map((spec) => {
        const options: EngineOptions = { host: spec.host, tlsVerify: spec.tlsVerify, certPath: spec.certPath, timeoutSeconds: spec.timeoutSeconds };
        return {
          name: spec.name,
          engine: connectEngine(options, env),
          platforms: spec.platforms ? spec.platforms.map((p) => parsePlatform(p)) : [],
          nativeOnly: !spec.platforms,
          concurrency: spec.concurrency ?? schemaDefault('engine-pool.schema.json', 'definitions/engineSpec/properties/concurrency'),
          active: 0,
          peak: 0,
          builds: 0,
          holders: new Map(),
          foreign: new Map(),
        };
      }),
    );
  }

  /** The one engine of the engine option (DOCKER_HOST when unset), sent every platform. */
  static single(options: EngineOptions | undefined, concurrency: number = schemaDefault('engine-pool.schema.json', 'definitions/engineSpec/properties/concurrency'), env: NodeJS.ProcessEnv = process.env): EnginePool {
    const engine = connectEngine(options ?? {}, env);
    return new EnginePool([
      { name: 'default', engine, platforms: 'any', nativeOnly: false, concurrency, active: 0, peak: 0, builds: 0, holders: new Map(), foreign: new Map() },
    ]);
  }

  /**
   * Ping every engine at once and learn its own platform. Throws ERR_ENGINE_UNREACHABLE naming the
   * engine (name and address) that does not answer.
   */
  async check(): Promise<void> {
    const results = await Promise.allSettled(this.engines.map((e) => checkEngine(e.engine)));
    const failures: string[] = [];
    results.forEach((result, i) => {
      const entry = this.engines[i] as PoolEngine;
      if (result.status === 'rejected') {
        const error = result.reason as ThinkubeImageError;
        failures.push(`engine ${entry.name}: ${error.message ?? String(error)}`);
        return;
      }
      entry.native = { os: result.value.os || 'linux', architecture: normalizeArchitecture(result.value.arch || 'amd64') };
      if (entry.nativeOnly) entry.platforms = [entry.native];
    });
    if (failures.length > 0) {
      throw new ThinkubeImageError('ERR_ENGINE_UNREACHABLE', `${failures.length} of ${this.engines.length} engines cannot be used: ${failures.join('; ')}`, {
        hint: 'Start the engine (dockerd or `podman system service`) or fix its address, or remove it from engines',
        details: { engines: failures },
      });
    }
  }

  /** Engines that can build the platform at all (busy or not). */
  candidates(platform: string | undefined): PoolEngine[] {
    if (platform === undefined) return [...this.engines];
    const wanted = parsePlatform(platform);
    return this.engines.filter((e) => e.platforms === 'any' || e.platforms.some((p) => platformMatches(p, wanted)));
  }

  /** Throws ERR_INVALID_OPTIONS when a platform has no engine, naming the engines and what they build. */
  assertPlatforms(platforms: Array<string | undefined>, what = 'the build'): void {
    const missing = [...new Set(platforms.filter((p): p is string => p !== undefined && this.candidates(p).length === 0))];
    if (missing.length === 0) return;
    const listed = this.engines.map((e) => `${e.name} (${e.engine.address}): ${e.platforms === 'any' ? 'any platform' : e.platforms.length ? e.platforms.map(formatPlatform).join(', ') : 'its own platform, not known yet'}`);
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `No engine builds ${missing.join(', ')} for ${what}; the engines are ${listed.join('; ')}`, {
      hint: 'Add the platform to the platforms of an engine that can build it (natively, or with qemu-user-static and binfmt_misc set up on its host), or add such an engine',
      details: { platforms: missing, engines: listed },
    });
  }

  /** Wait for a free slot on an engine that builds the platform; release the lease when done. */
  acquire(request: AcquireRequest): Promise<EngineLease> {
    this.assertPlatforms([request.platform], request.what);
    if (request.signal?.aborted) return Promise.reject(abortError(request.what));
    return new Promise<EngineLease>((resolve, reject) => {
      const waiter: Waiter = { request, resolve, reject };
      this.waiting.push(waiter);
      request.signal?.addEventListener(
        'abort',
        () => {
          const index = this.waiting.indexOf(waiter);
          if (index >= 0) {
            this.waiting.splice(index, 1);
            reject(abortError(request.what));
          }
        },
        { once: true },
      );
      this.pump();
    });
  }

  stats(): EngineStats[] {
    return this.engines.map((e) => ({
      name: e.name,
      address: e.engine.address,
      platforms: e.platforms === 'any' ? 'any' : e.platforms.map(formatPlatform),
      concurrency: e.concurrency,
      builds: e.builds,
      peak: e.peak,
    }));
  }

  /** The key under which a build holds its base tags: its platform, or the engine's own. */
  private platformKey(entry: PoolEngine, platform: string | undefined): string {
    if (platform !== undefined) return formatPlatform(parsePlatform(platform));
    return entry.native ? formatPlatform(entry.native) : 'native';
  }

  private canRun(entry: PoolEngine, request: AcquireRequest): boolean {
    if (entry.active >= entry.concurrency) return false;
    const key = this.platformKey(entry, request.platform);
    return (request.bases ?? []).every((base) => {
      const holder = entry.holders.get(base);
      return !holder || holder.platform === key;
    });
  }

  private pump(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const waiter = this.waiting[i] as Waiter;
      const { request } = waiter;
      const wanted = request.platform === undefined ? undefined : parsePlatform(request.platform);
      const free = this.candidates(request.platform).filter((e) => this.canRun(e, request));
      if (free.length === 0) {
        i++; // a later request (another platform) may still fit: no head-of-line blocking
        continue;
      }
      // Native engines first (emulation is many times slower), then the least busy, then list order.
      const score = (e: PoolEngine): [number, number, number] => [
        wanted && !(e.native && platformMatches(e.native, wanted)) ? 1 : 0,
        e.active / e.concurrency,
        this.engines.indexOf(e),
      ];
      free.sort((a, b) => {
        const [a0, a1, a2] = score(a);
        const [b0, b1, b2] = score(b);
        return a0 - b0 || a1 - b1 || a2 - b2;
      });
      const chosen = free[0] as PoolEngine;
      this.waiting.splice(i, 1);
      waiter.resolve(this.grant(chosen, request));
    }
  }

  private grant(entry: PoolEngine, request: AcquireRequest): EngineLease {
    entry.active++;
    entry.builds++;
    entry.peak = Math.max(entry.peak, entry.active);
    const key = this.platformKey(entry, request.platform);
    const bases = [...new Set(request.bases ?? [])];
    for (const base of bases) {
      const holder = entry.holders.get(base);
      if (holder) holder.count++;
      else entry.holders.set(base, { platform: key, count: 1 });
    }
    let released = false;
    return {
      name: entry.name,
      engine: entry.engine,
      platform: request.platform,
      bases,
      release: () => {
        if (released) return;
        released = true;
        entry.active--;
        for (const base of bases) {
          const holder = entry.holders.get(base);
          if (holder && --holder.count === 0) entry.holders.delete(base);
        }
        this.pump();
      },
    };
  }

  /**
   * Make the engine's local copy of each base tag the one for the lease's platform, pulling it
   * (with the registry's credentials) when needed: always for an explicit platform, and for a
   * native build when an earlier build of this pool left a foreign copy. Bases that are in no
   * registry are left alone (the build then uses the local copy; the caller checks the result).
   */
  async prepareBases(lease: EngineLease, auth: PullAuth, signal?: AbortSignal): Promise<string[]> {
    const entry = this.engines.find((e) => e.name === lease.name) as PoolEngine;
    const warnings: string[] = [];
    const native = entry.native ? formatPlatform(entry.native) : undefined;
    const wanted = lease.platform === undefined ? native : formatPlatform(parsePlatform(lease.platform));
    const isNative = wanted === undefined || (entry.native !== undefined && platformMatches(parsePlatform(wanted), entry.native));
    for (const base of lease.bases) {
      if (lease.platform === undefined && !entry.foreign.has(base)) continue;
      try {
        await pullImage(entry.engine, base, wanted, auth, signal);
        if (isNative) entry.foreign.delete(base);
        else entry.foreign.set(base, wanted as string);
      } catch (error) {
        warnings.push(`Could not pull ${base}${wanted ? ` for ${wanted}` : ''} on engine ${entry.name}: ${(error as Error).message}; the build uses the engine's local copy`);
      }
    }
    return warnings;
  }

  /**
   * Put back the native copy of every base tag that builds of this pool left holding a foreign
   * platform, so that later builds outside the pool (which do not pull) get the right one.
   * Returns warnings for the tags that could not be restored.
   */
  async restoreNativeBases(auth: PullAuth, signal?: AbortSignal): Promise<string[]> {
    const warnings: string[] = [];
    for (const entry of this.engines) {
      for (const base of [...entry.foreign.keys()]) {
        if (entry.holders.has(base)) continue; // in use right now
        try {
          await pullImage(entry.engine, base, entry.native ? formatPlatform(entry.native) : undefined, auth, signal);
          entry.foreign.delete(base);
        } catch (error) {
          warnings.push(`Engine ${entry.name} keeps the ${entry.foreign.get(base)} copy of ${base}: pulling its own platform failed (${(error as Error).message}); run docker pull ${base} there before a build without --platform`);
        }
      }
    }
    return warnings;
  }
}

/** Registry credentials for pulls: the build's own auth for its registry, docker config for others. */
export interface PullAuth {
  /** Registry host the auth below belongs to. */
  registry?: string;
  auth?: RegistryAuth;
}

async function authHeaderFor(reference: string, pullAuth: PullAuth): Promise<string> {
  const ref = withDefaultTag(parseReference(reference));
  const auth = ref.registry === pullAuth.registry ? pullAuth.auth : pullAuth.auth?.dockerConfig ? { dockerConfig: pullAuth.auth.dockerConfig } : undefined;
  return registryAuthHeader(await resolveCredentials(ref.registry, auth), ref.registry);
}

/** Pull one image (for a platform) through the engine; throws with the engine's message. */
export async function pullImage(engine: Engine, reference: string, platform: string | undefined, pullAuth: PullAuth, signal?: AbortSignal): Promise<void> {
  const key = await authHeaderFor(reference, pullAuth);
  let stream: NodeJS.ReadableStream;
  let docker: Awaited<ReturnType<Engine['client']>>;
  try {
    docker = await engine.client();
    stream = (await docker.pull(reference, { ...(platform ? { platform } : {}), authconfig: { key }, abortSignal: signal } as object)) as NodeJS.ReadableStream;
  } catch (error) {
    throw engineError(engine, error, `pulling ${reference}${platform ? ` for ${platform}` : ''}`);
  }
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(engineError(engine, error, `pulling ${reference}`)) : resolve()),
      (event: { error?: string }) => {
        if (event.error) failure = event.error;
      },
    );
  });
  if (failure) {
    throw new ThinkubeImageError('ERR_ENGINE', `The engine at ${engine.address} could not pull ${reference}${platform ? ` for ${platform}` : ''}: ${failure}`, {
      details: { engine: engine.address, reference, platform },
    });
  }
}
