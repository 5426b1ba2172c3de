#!/usr/bin/env node
// The `tapbox` command. It runs the CLI bundle (tapbox.cjs beside it, made from main.js by
// scripts/bundle-cli.mjs) through V8's code cache (tapbox.cjs.cache, written by the same script from a
// run of `--help`): functions that run at every start come compiled instead of being parsed and
// compiled again, about 15 ms of a 100 ms start (issue 14). V8 refuses a cache made by another V8
// version or for another source length, and then compiles as usual. Without the bundle (tsc only),
// main.js runs as an ES module: the same program, slower to start.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Module = require('node:module');
import { join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'tapbox.cjs');
const cache = `${bundle}.cache`;

if (existsSync(bundle)) runBundle();
else void import('./main.js');

function runBundle(): void {
  // The shebang is not JavaScript once the source is wrapped as a function, as Node wraps a CommonJS module.
  const source = readFileSync(bundle, 'utf8').replace(/^#!.*/, '');
  const cachedData = existsSync(cache) ? readFileSync(cache) : undefined;
  const script = new Script(Module.wrap(source), { filename: bundle, cachedData });
  // scripts/bundle-cli.mjs asks for the cache this way, after the run has compiled what a start needs.
  if (process.env.TAPBOX_WRITE_CODE_CACHE === cache) process.once('exit', () => writeFileSync(cache, script.createCachedData()));
  const module = new Module(bundle);
  module.filename = bundle;
  const run = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  run.call(module.exports, module.exports, Module.createRequire(bundle), module, bundle, __dirname);
}
