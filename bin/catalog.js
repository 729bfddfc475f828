#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_catalog) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'catalog',
  module: 'thinkube_image_catalog',
  schema: 'catalog-options.schema.json',
  summary: 'List the images of an images folder in build order (dependencies first), with the tags, context and metadata each needs; fails when the folder has errors.',
  positional: 'imagesDir',
  examples: ['node bin/catalog.js images --registry harbor.example.com'],
  load: () => import('../dist/lib/adapters/commands/catalog.js'),
});
