// The build command: what bin/build.js runs and the Ansible module thinkube_image_build is.
// scripts/bundle-modules.js bundles it into dist/cli/ and ansible/library/; the work is loaded only
// once the options are valid.
import { runCommand } from '../command.js';

// No top-level await: the bundles are CommonJS (see scripts/bundle-modules.js).
void runCommand({
  name: 'build',
  module: 'thinkube_image_build',
  schema: 'build-options.schema.json',
  summary: 'Build a container image from a context folder on a Docker-compatible engine (dockerd or Podman), streaming the context and reporting each step.',
  positional: 'context',
  examples: [
    'node bin/build.js images/jupyter-ml-cpu --tag harbor.example.com/library/jupyter-ml-cpu:latest --build-arg HARBOR_REGISTRY=harbor.example.com',
  ],
  load: () => import('../commands/build.js'),
});
