/**
 * The preflight command / thinkube_image_preflight module: runPreflight. `changed` only when the
 * Harbor project was created (in check mode: when it would be); `failed` when any check failed,
 * with every check's result returned either way.
 */
import { runValidatedPreflight, summarizePreflight } from '../../pipeline/preflight.js';
import type { PreflightOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as PreflightOptions;
  const result = await runValidatedPreflight(options, { ...context.controls, checkMode: context.checkMode, naming: context.naming });
  for (const check of result.checks) if (check.status === 'warning') context.warn(`${check.name}: ${check.message}`);
  return {
    changed: result.changed || (context.checkMode && result.wouldCreateProject),
    failed: !result.ok,
    msg: summarizePreflight(result),
    ok: result.ok,
    registry: result.registry,
    project: result.project,
    registryKind: result.registryKind,
    identity: result.identity,
    checks: result.checks,
    projectCreated: result.projectCreated,
    wouldCreateProject: result.wouldCreateProject,
    missingBaseImages: result.missingBaseImages,
    duration: result.durationMs / 1000,
  };
}
