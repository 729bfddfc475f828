#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_preflight) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'preflight',
  module: 'thinkube_image_preflight',
  schema: 'preflight-options.schema.json',
  summary:
    'Check before building: the engine answers and has free disk, the registry takes the credentials, Harbor is healthy and the project exists (or is created), and every base image the selected images need is in the registry. Harbor-only checks are not applicable on a plain OCI registry.',
  examples: [
    'node bin/preflight.js --registry harbor.example.com --auth-username \'robot$thinkube\' --auth-password-env HARBOR_ROBOT_SECRET --images-dir images',
    'node bin/preflight.js --registry harbor.example.com --project thinkube --create-project --only registry --only harbor-project',
  ],
  load: () => import('../dist/lib/adapters/commands/preflight.js'),
});
