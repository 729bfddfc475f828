#!/usr/bin/env node
// The lint command (lib/adapters/entries/lint.ts), run from its CommonJS bundle in dist/cli/ (npm run build):
// one file to read instead of a hundred ES modules to resolve, and Node's compile cache for it.
require('node:module').enableCompileCache?.();
require('../dist/cli/lint.cjs');
