/**
 * The executor of Docker-API engines (dockerd, Podman's service): a pool of engines, each with
 * its platforms and concurrency; one engine is a pool of one. A build takes a lease on an engine
 * that builds its platform, makes the engine's copy of the bases the right one, builds, and
 * pushes the input tag through the engine (the only push through an engine; other tags are set
 * registry-side by the publish step).
 */
import { EnginePool, type EngineLease } from '../engine/pool.js';
import type { Engine } from '../engine/engine.js';
import { runBuild } from './build.js';
import { registryLayerCache } from './layer-cache.js';
import { pullForCache, refreshBases } from './incremental.js';
import { runPush } from '../engine/push.js';
import { emit, type OperationControls } from '../core/progress.js';
import type { BuildExecutor, BuildRequest, BuiltImage } from './executor.js';
import type { EngineOptions, EngineSpec, RegistryAuth, RegistryTls, RetryOptions } from '../options/generated/types.js';

export interface EnginesExecutorOptions {
  /** Several engines; unset: the single engine of `engine`. */
  engines?: EngineSpec[];
  engine?: EngineOptions;
  /** Builds at once on the single engine (engines carry their own). */
  concurrency?: number;
  /** The registry the images go to, and its credentials (also used to pull bases). */
  registry: string;
  auth?: RegistryAuth;
  registryTls?: RegistryTls;
  retry?: RetryOptions;
}

export class EnginesExecutor implements BuildExecutor {
  readonly kind: string;
  readonly pool: EnginePool;
  readonly #options: EnginesExecutorOptions;
  #check: Promise<void> | undefined;
  #checked = false;

  constructor(options: EnginesExecutorOptions) {
    this.#options = options;
    this.kind = options.engines ? 'engines' : 'engine';
    this.pool = options.engines ? EnginePool.fromSpecs(options.engines) : EnginePool.single(options.engine, options.concurrency);
  }

  /** Builds the pool can run at once. */
  get capacity(): number {
    return this.pool.engines.reduce((n, e) => n + e.concurrency, 0);
  }

  /**
   * Start asking the engines now (the answer is awaited, and a failure thrown, by check()): a caller
   * reads and checks its images while the engines answer.
   */
  probe(): void {
    if (this.#check) return;
    this.#check = this.pool.check();
    this.#check.catch(() => undefined);
  }

  async check(platforms: Array<string | undefined>, what: string): Promise<void> {
    this.probe();
    await this.#check;
    this.#checked = true;
    this.pool.assertPlatforms(platforms, what);
  }

  localEngine(platform: string | undefined): Engine | undefined {
    return (this.pool.candidates(platform)[0] ?? this.pool.engines[0])?.engine;
  }

  async build(request: BuildRequest, controls: OperationControls): Promise<BuiltImage> {
    const { options } = request;
    const platform = options.platform;
    const auth = { registry: this.#options.registry, auth: this.#options.auth };
    const bases = request.bases.filter((b) => !b.digest.startsWith('local:'));
    let lease: EngineLease | undefined;
    try {
      lease = await this.pool.acquire({ platform, bases: bases.map((b) => b.reference), what: request.what, signal: controls.signal });
      const warnings = (await this.pool.prepareBases(lease, auth, controls.signal)).map((w) => `${request.what}: ${w}`);
      emit(controls, { type: 'info', message: `${request.what}: building on engine ${lease.name} (${lease.engine.address})` });
      let cacheFrom = options.cacheFrom;
      if (platform === undefined) {
        // A native build uses the engine's copy of a base: make it the registry's current one.
        if (!options.pull) await refreshBases(lease.engine, bases, options, controls);
        // On Podman the registry layer cache does this job, layer by layer, without pulling the image.
        const layerCache = await registryLayerCache(lease.engine, options);
        if (!cacheFrom && !layerCache && request.cacheFrom && !options.noCache && (await pullForCache(lease.engine, request.cacheFrom, options, controls))) cacheFrom = [request.cacheFrom];
      }
      const built = await runBuild(lease.engine, { ...options, cacheFrom, pull: platform === undefined ? options.pull : false }, request.scan, controls);
      warnings.push(...built.warnings);
      const pushed = await runPush(lease.engine, { tags: options.tags, auth: this.#options.auth, registryTls: this.#options.registryTls, retry: this.#options.retry }, controls);
      warnings.push(...pushed.warnings);
      return {
        digest: pushed.digest,
        imageSize: pushed.imageSize,
        layersUploaded: pushed.tags.reduce((n, t) => n + t.layersUploaded, 0),
        imageId: built.imageId,
        createdAt: built.labels['org.opencontainers.image.created'],
        engine: lease.name,
        warnings,
      };
    } finally {
      lease?.release();
    }
  }

  stats(): ReturnType<EnginePool['stats']> {
    return this.pool.stats();
  }

  async close(): Promise<string[]> {
    if (!this.#checked) return [];
    return this.pool.restoreNativeBases({ registry: this.#options.registry, auth: this.#options.auth });
  }
}
