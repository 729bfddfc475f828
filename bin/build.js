#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_build) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'build',
  module: 'thinkube_image_build',
  schema: 'build-options.schema.json',
  summary: 'Build a container image from a context folder on a Docker-compatible engine (dockerd or Podman), streaming the context and reporting each step.',
  positional: 'context',
  examples: [
    'node bin/build.js images/jupyter-ml-cpu --tag harbor.example.com/library/jupyter-ml-cpu:latest --build-arg HARBOR_REGISTRY=harbor.example.com',
  ],
  load: () => import('../dist/lib/adapters/commands/build.js'),
});
