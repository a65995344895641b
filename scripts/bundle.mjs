// `npm run build`, second step: bundles the compiled CLI (build/cli.js, from tsc) into
// build/bundle/, which is what `lorascope` and `npm start` run.
//
// Why: Node 20 resolves and compiles Ink, React and their ~150 small ES modules one by one, which
// took 0.35–0.6 s on the 2-core machine, most of the time before the dashboard's first frame. One
// bundle loads in a fraction of that. Code splitting keeps the dashboard a chunk of its own, so
// `inspect`, `resize` and the other commands do not load Ink at all.
//
// Left out of the bundle: onnxruntime-node (native binding, loaded from node_modules) and the
// engine worker, which the client forks from build/engine/worker.js (tsc's output) as before.
import {mkdir, rm, writeFile} from 'node:fs/promises';
import {createRequire} from 'node:module';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath} from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);

const outdir = path.join(root, 'build', 'bundle');
// Chunk names carry content hashes: clear the last build's so stale chunks do not pile up.
await rm(outdir, {recursive: true, force: true});

let esbuild;
try {
	esbuild = require('esbuild');
} catch {
	// Without esbuild the CLI still works, unbundled (slower to start): the entry just imports it.
	console.warn('bundle: esbuild not found; build/bundle/cli.js runs the unbundled build (run npm install)');
	await mkdir(outdir, {recursive: true});
	await writeFile(path.join(outdir, 'cli.js'), '#!/usr/bin/env node\nimport \'../cli.js\';\n', {mode: 0o755});
	process.exit(0);
}

// Ink imports react-devtools-core only when DEV=true; a bundle must not need it installed.
const devtoolsStub = {
	name: 'react-devtools-core-stub',
	setup(build) {
		build.onResolve({filter: /^react-devtools-core$/}, () => ({path: 'react-devtools-core', namespace: 'stub'}));
		build.onLoad({filter: /.*/, namespace: 'stub'}, () => ({contents: 'export default {initialize() {}, connectToDevTools() {}};', loader: 'js'}));
	},
};

await esbuild.build({
	entryPoints: [path.join(root, 'build', 'cli.js')],
	outdir,
	bundle: true,
	splitting: true,
	format: 'esm',
	platform: 'node',
	target: 'node20',
	external: ['onnxruntime-node'],
	plugins: [devtoolsStub],
	// Some dependencies are CommonJS that call require() for Node built-ins.
	banner: {js: 'import {createRequire as lorascopeCreateRequire} from \'node:module\'; const require = lorascopeCreateRequire(import.meta.url);'},
	logLevel: 'warning',
});
