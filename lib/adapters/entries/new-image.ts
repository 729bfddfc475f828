// The new-image command: what bin/new-image.js runs. scripts/bundle-modules.js bundles it into
// dist/cli/; the work is loaded only once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'new-image',
  schema: 'new-image-options.schema.json',
  summary: 'Create images/NAME with a Dockerfile (ARG HARBOR_REGISTRY + FROM), a pinned requirements.txt, image.yaml and .dockerignore that pass the checks. Refuses an invalid name or an existing folder.',
  positional: 'name',
  examples: ['node bin/new-image.js data-tools', 'node bin/new-image.js agents-extra --from jupyter-ml-cpu', 'node bin/new-image.js tiny --from library/busybox:1.35 --no-python'],
  load: () => import('../commands/new-image.js'),
});
