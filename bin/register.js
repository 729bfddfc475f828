#!/usr/bin/env node
// @ts-check
// WANT_JSON: as an Ansible module (thinkube_image_register) this gets one argument, the args file.
import { runCommand } from '../dist/lib/adapters/command.js';

// No top-level await: the Ansible module bundle is CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'register',
  module: 'thinkube_image_register',
  schema: 'register-options.schema.json',
  summary: 'Register a pushed image (metadata, registry, repository, tag, verified digest) with thinkube-control: its HTTP API, a Kubernetes ConfigMap manifest, or the local catalog file.',
  examples: [
    'node bin/register.js --target api --control-url https://control.example.com/api --token-env THINKUBE_CONTROL_TOKEN --args-file registration.json',
  ],
  load: () => import('../dist/lib/adapters/commands/register.js'),
});
