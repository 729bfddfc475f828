#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_index) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'index',
  module: 'thinkube_image_index',
  schema: 'image-index-options.schema.json',
  what: 'image index options',
  summary: 'Join per-platform images already in a repository into one multi-architecture image (OCI image index) and put it under every tag through the registry API; no layer is moved.',
  examples: [
    'node bin/index.js --tag harbor.example.com/library/jupyter-ml-cpu:latest --manifest sha256:<amd64 digest> --manifest sha256:<arm64 digest> --platform linux/amd64 --platform linux/arm64',
  ],
  load: () => import('../dist/lib/adapters/commands/index.js'),
});
