/**
 * The executor of a Kubernetes cluster with Argo Workflows. The plan of a run is rendered as one
 * Workflow (lib/pipeline/cluster.ts, ./workflow.ts) after the planning pass; in check mode that is
 * all there is. Submitting the Workflow and following its tasks is the Kubernetes client's part,
 * which this version does not have yet: a real build says so instead of pretending.
 */
import { ThinkubeImageError } from '../../core/errors.js';
import type { Engine } from '../../engine/engine.js';
import type { EngineStats } from '../../engine/pool.js';
import type { BuildExecutor, BuiltImage } from '../executor.js';

export function submissionUnavailable(): ThinkubeImageError {
  return new ThinkubeImageError('ERR_WORKFLOW', 'Executor kubernetes cannot submit Workflows yet: this version only renders them (check mode)', {
    hint: 'Run with --check (Ansible: check mode) to render and print the Workflow, or build with executor local',
  });
}

export class ClusterExecutor implements BuildExecutor {
  readonly kind = 'kubernetes';
  /** Planning runs images side by side; the cluster's own capacity limits the pods. */
  readonly capacity = 16;

  async check(platforms: Array<string | undefined>, what: string): Promise<void> {
    for (const platform of platforms) {
      if (platform !== undefined && !platform.startsWith('linux/')) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${what} asks for platform ${platform}, but cluster builds run on Linux nodes`, { hint: 'Build linux/<arch> platforms on the cluster' });
      }
    }
  }

  /** No engine of this machine takes part: every base must be in a registry. */
  localEngine(): Engine | undefined {
    return undefined;
  }

  async build(): Promise<BuiltImage> {
    throw submissionUnavailable();
  }

  stats(): EngineStats[] {
    return [];
  }

  async close(): Promise<string[]> {
    return [];
  }
}
