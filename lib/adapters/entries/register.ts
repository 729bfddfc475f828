// The register command: what bin/register.js runs and the Ansible module thinkube_image_register
// is. scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded
// only once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'register',
  module: 'thinkube_image_register',
  schema: 'register-options.schema.json',
  summary: 'Register a pushed image (metadata, registry, repository, tag, verified digest) with thinkube-control: its HTTP API, a Kubernetes ConfigMap manifest, or the local catalog file.',
  examples: [
    'node bin/register.js --target api --control-url https://control.example.com/api --token-env THINKUBE_CONTROL_TOKEN --args-file registration.json',
  ],
  load: () => import('../commands/register.js'),
});
