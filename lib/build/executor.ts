/**
 * Where a build runs. The per-image path (lib/pipeline/image.ts) asks an executor to build one
 * image for one platform and push it under its input tag (in-<digest>); everything after that
 * (tags, index, scan, registration) happens registry-side, the same for every executor. Today:
 * the engines of an EnginePool (one engine is a pool of one), or an Argo Workflow submitted after a
 * planning pass (lib/build/argo/executor.ts), whose build() waits for the task of that build.
 */
import type { ContextScan } from '../source/context.js';
import type { Engine } from '../engine/engine.js';
import type { EngineStats } from '../engine/pool.js';
import type { OperationControls } from '../core/progress.js';
import type { BuildOptions } from '../options/generated/types.js';

export interface BuildRequest {
  /** The image's name in the run (its folder). */
  image: string;
  /** What is built, for messages and errors: registry/repository [platform]. */
  what: string;
  /** Tagged only with the input tag (in-<digest>), labelled with the input digest. */
  options: BuildOptions;
  scan: ContextScan;
  /** Base image references (FROM) the build uses, with the digests the input digest was made of. */
  bases: Array<{ reference: string; digest: string }>;
  /** A reference whose layers may serve as cache (the image's current tag), when it exists. */
  cacheFrom?: string;
}

export interface BuiltImage {
  /** Manifest digest the registry holds under the input tag. */
  digest: string;
  /** Compressed size of config and layers. */
  imageSize: number;
  layersUploaded: number;
  imageId?: string;
  /** The OCI created label of the image. */
  createdAt?: string;
  /** Name of the engine (or node) that built it. */
  engine?: string;
  warnings: string[];
}

export interface BuildExecutor {
  /** e.g. "engine" or "engines"; shows in results. */
  readonly kind: string;
  /** Builds it runs at once (the run's default concurrency). */
  readonly capacity: number;
  /** Fails (with a clear error) when the executor cannot build at all or lacks a platform. */
  check(platforms: Array<string | undefined>, what: string): Promise<void>;
  /** The engine that may hold base images found in no registry (planning), if there is one. */
  localEngine(platform: string | undefined): Engine | undefined;
  /**
   * A build already under way outside the run's graph (a submitted Workflow's task): the image
   * run waits for it through build() even when the registry holds its input tag by then.
   */
  underWay?(image: string, platform: string | undefined): boolean;
  /** Build and push under the request's input tag. Throws BuildError and friends. */
  build(request: BuildRequest, controls: OperationControls): Promise<BuiltImage>;
  /** Per engine (or node): builds given and most at once. */
  stats(): EngineStats[];
  /** Undo what the run left on the engines; returns warnings. */
  close(): Promise<string[]>;
}
