/** The pipeline command / thinkube_image_pipeline module: every image of a folder, in dependency order. */
import { runValidatedPipeline } from '../../pipeline/pipeline.js';
import type { PipelineOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';
import type { PipelineImageResult } from '../../pipeline/pipeline.js';

/** e.g. "jupyter-ml-cpu: done sha256:... [linux/amd64, linux/arm64], changed=false - inputs unchanged ...". */
export function summaryLine(image: PipelineImageResult): string {
  const platforms = image.platforms ? ` [${image.platforms.map((p) => p.platform).join(', ')}]` : '';
  const scan = image.scan && image.scan.status !== 'not-run' ? `, scan: ${image.scan.summary}` : '';
  return `${image.name}: ${image.status}${image.digest ? ` ${image.digest}` : ''}${platforms}, changed=${image.changed}${scan}${image.reason ? ` - ${image.reason}` : ''}`;
}

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as PipelineOptions;
  const result = await runValidatedPipeline(options, { ...context.controls, checkMode: context.checkMode, naming: context.naming });
  for (const check of result.preflight?.checks ?? []) if (check.status === 'warning') context.warn(`preflight ${check.name}: ${check.message}`);
  for (const warning of result.warnings) context.warn(warning);
  const count = (status: string): number => result.images.filter((i) => i.status === status).length;
  const failedNames = result.images.filter((i) => i.status === 'failed').map((i) => i.name);
  const skippedNames = result.images.filter((i) => i.status === 'skipped').map((i) => i.name);
  const changing = result.images.filter((i) => i.changed).map((i) => i.name);
  const parts = context.checkMode
    ? [`${count('planned')} image(s) planned in order ${result.order.join(', ')}; ${changing.length ? `would change ${changing.join(', ')}` : 'nothing would change'}`, ...(failedNames.length ? [`would fail: ${failedNames.join(', ')}`] : []), ...(skippedNames.length ? [`skipped: ${skippedNames.join(', ')}`] : [])]
    : [`${count('done')} done`, ...(failedNames.length ? [`failed: ${failedNames.join(', ')}`] : []), ...(skippedNames.length ? [`skipped: ${skippedNames.join(', ')}`] : [])];
  const firstFailure = result.images.find((i) => i.status === 'failed');
  // What was done and what was not, also when the run was interrupted.
  const names = (wanted: (i: (typeof result.images)[number]) => boolean): string[] => result.images.filter(wanted).map((i) => i.name);
  return {
    changed: result.changed,
    failed: result.failed,
    done: names((i) => i.status === 'done'),
    failedImages: names((i) => i.status === 'failed'),
    notStarted: names((i) => i.status === 'skipped' || (i.status === 'planned' && !context.checkMode)),
    msg: `Pipeline: ${parts.join('; ')}${firstFailure?.error ? `. ${firstFailure.name}: ${firstFailure.error.message}` : ''}${result.workflow?.stopped ? `. Workflow ${result.workflow.namespace}/${result.workflow.name ?? ''} was stopped (cancelled): the images not done were not registered` : ''}`,
    // One line per image, in build order: what a playbook shows as each image's outcome.
    summary: result.images.map(summaryLine),
    images: result.images,
    order: result.order,
    // executor kubernetes: the Workflow (check mode: rendered, not submitted; a run: its name, phase, stopped).
    ...(result.workflow ? { workflow: result.workflow } : {}),
    // Option preflight: the checks that passed before the run (a failed one fails the run instead).
    ...(result.preflight ? { preflight: { registryKind: result.preflight.registryKind, identity: result.preflight.identity, checks: result.preflight.checks } } : {}),
    duration: result.durationMs / 1000,
  };
}
