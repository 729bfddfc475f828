#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_pipeline) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'pipeline',
  module: 'thinkube_image_pipeline',
  schema: 'pipeline-options.schema.json',
  summary: 'Build, push and register every image of an images folder (or a selection) in dependency order. A failed image skips the images built on it; the others go on.',
  positional: 'imagesDir',
  examples: [
    'node bin/pipeline.js images --registry harbor.example.com --auth-username admin --auth-password-env HARBOR_PASSWORD',
    'node bin/pipeline.js images --registry harbor.example.com --image jupyter-ml-cpu --registration-target api --registration-control-url https://control.example.com/api --registration-token-env THINKUBE_CONTROL_TOKEN',
  ],
  load: () => import('../dist/lib/adapters/commands/pipeline.js'),
});
