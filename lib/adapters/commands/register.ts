/** The register command / thinkube_image_register module: registerImage with check and diff modes. */
import { registerImage } from '../../register/register.js';
import type { RegisterOptions } from '../../options/generated/types.js';
import type { CommandContext, CommandOutcome } from '../command.js';

export async function run(valid: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome> {
  const options = valid as unknown as RegisterOptions;
  if (context.checkMode) options.dryRun = true;
  // Retries are reported (a warning in the result) like those of the other commands.
  const result = await registerImage(options, { signal: context.controls.signal, onEvent: (event) => (event.type === 'retry' ? context.controls.onEvent?.(event) : undefined) });
  for (const warning of result.warnings) context.warn(warning);
  const verb = result.dryRun ? 'Would register' : 'Registered';
  const outcomeText = result.outcome === 'endpoint-unavailable' ? 'endpoint not available' : result.outcome;
  return {
    changed: result.changed,
    msg: `${verb} ${result.entry.name} with target ${result.target} (${outcomeText}) at ${result.location}`,
    target: result.target,
    outcome: result.outcome,
    entry: result.entry,
    location: result.location,
    ...(result.configMap ? { configMap: result.configMap } : {}),
    ...(result.conflicts !== undefined ? { conflicts: result.conflicts } : {}),
    diff: result.diff,
  };
}
