#!/usr/bin/env node
// The rerank-server command. From a checkout it runs the TypeScript sources (Node strips their
// types; npm scripts and npx put the project's Node 24 first on the PATH); from an installed package,
// which ships no sources, the JavaScript that `npm pack` built (Node strips no types under node_modules).
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const sources = new URL('../server/cli/main.ts', import.meta.url);
const built = new URL('../dist/server/cli/main.js', import.meta.url);
const { runCli } = await import((existsSync(sources) ? sources : built).href);
await runCli(process.argv);
