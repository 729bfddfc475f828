#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_push) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'push',
  module: 'thinkube_image_push',
  schema: 'push-options.schema.json',
  summary: 'Push image tags to their registry through the engine and verify the pushed digest with the registry itself.',
  examples: [
    'node bin/push.js --tag harbor.example.com/library/jupyter-ml-cpu:latest --auth-username admin --auth-password-env HARBOR_PASSWORD',
  ],
  load: () => import('../dist/lib/adapters/commands/push.js'),
});
