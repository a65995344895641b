// Starting a worker thread from a module next to the caller: the compiled shim in tsc's build, or
// its TypeScript source under tsx (tests, `npm run dev`). Shared by the header pool and the
// stats threads.
import {existsSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {Worker} from 'node:worker_threads';

/**
 * Starts `<folder>/<name>.js` of tsc's build (or `<name>.ts` beside `callerUrl` under tsx). Workers
 * print nothing to the terminal (it belongs to Ink): their stdout and stderr are piped here and
 * never read. Reading them (resume()) would keep the process alive after the worker goes idle,
 * since a flowing worker stdio stream holds its port open.
 */
export function startThreadWorker(callerUrl: string, folder: 'lora' | 'engine', name: string, heapMb: number): Worker {
	const options = {stdout: true, stderr: true, resourceLimits: {maxOldGenerationSizeMb: heapMb}} as const;
	if (callerUrl.endsWith('.ts')) {
		// Node 20 does not run a worker's --import hooks, so the shim registers tsx itself.
		const api = import.meta.resolve('tsx/esm/api');
		const target = new URL(`${name}.ts`, callerUrl).href;
		return new Worker(`import(${JSON.stringify(api)}).then(api => { api.register(); return import(${JSON.stringify(target)}); });`, {eval: true, ...options});
	}

	// tsc's build has the shim beside the caller; from the CLI bundle (build/bundle/) it is one
	// folder over, in build/<folder>/.
	const here = path.dirname(fileURLToPath(callerUrl));
	const beside = path.join(here, `${name}.js`);
	const fromBundle = path.join(here, '..', folder, `${name}.js`);
	return new Worker(existsSync(beside) || !existsSync(fromBundle) ? beside : fromBundle, options);
}
