#!/usr/bin/env node
// WANT_JSON: run by Ansible as the thinkube_image_pipeline module, this gets one argument, the args file.
// The pipeline command (lib/adapters/entries/pipeline.ts), run from its CommonJS bundle in dist/cli/ (npm run build):
// one file to read instead of a hundred ES modules to resolve, and Node's compile cache for it.
require('node:module').enableCompileCache?.();
require('../dist/cli/pipeline.cjs');
