#!/usr/bin/env node
// @ts-check
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'new-image',
  schema: 'new-image-options.schema.json',
  summary: 'Create images/NAME with a Dockerfile (ARG HARBOR_REGISTRY + FROM), a pinned requirements.txt, image.yaml and .dockerignore that pass the checks. Refuses an invalid name or an existing folder.',
  positional: 'name',
  examples: ['node bin/new-image.js data-tools', 'node bin/new-image.js agents-extra --from jupyter-ml-cpu', 'node bin/new-image.js tiny --from library/busybox:1.35 --no-python'],
  load: () => import('../dist/lib/adapters/commands/new-image.js'),
});
