/**
 * buildah's registry layer cache for builds on Podman: every layer a build makes is pushed to
 * `<registry>/<repository>/cache` (one tag per layer, named by its cache key) and looked up there
 * before a step runs, so a fresh host or a wiped storage rebuilds from cached layers. It is the
 * layout Thinkube's CI uses (`buildah build --layers --cache-to <image>/cache --cache-from
 * <image>/cache`). Docker's classic builder has no such cache: there it does not apply.
 */
import { engineProduct, type Engine } from '../engine/engine.js';
import { parseReference } from '../registry/reference.js';
import type { BuildOptions } from '../options/generated/types.js';

export interface LayerCache {
  /** registry/repository/cache */
  repository: string;
  /** Query parameters of the engine's /build for it. */
  query: { cacheto: string; cachefrom: string };
}

/** Podman 4.4 and later read cachefrom/cacheto as JSON lists (podman PR 16380); 4.3 as one plain repository. */
function readsJsonLists(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((n) => Number.parseInt(n, 10) || 0);
  return major > 4 || (major === 4 && minor >= 4);
}

/**
 * The layer cache repository of a build (registry/repository/cache of its first tag), or
 * undefined when switched off or noCache. Buildah reads it the same on Podman and in a build pod.
 */
export function layerCacheRepository(options: Pick<BuildOptions, 'tags' | 'noCache' | 'registryLayerCache'>): string | undefined {
  if (options.registryLayerCache === false || options.noCache || options.tags.length === 0) return undefined;
  const ref = parseReference(options.tags[0] as string);
  return `${ref.registry}/${ref.repository}/cache`;
}

/** The registry layer cache a build of these options uses on this engine, or undefined (not Podman, switched off, noCache). */
export async function registryLayerCache(engine: Engine, options: Pick<BuildOptions, 'tags' | 'noCache' | 'registryLayerCache'>): Promise<LayerCache | undefined> {
  const repository = layerCacheRepository(options);
  if (!repository) return undefined;
  const product = await engineProduct(engine);
  if (product.name !== 'podman') return undefined;
  const value = readsJsonLists(product.version) ? JSON.stringify([repository]) : repository;
  return { repository, query: { cacheto: value, cachefrom: value } };
}
