// One file's statistics shared between the main thread and helper threads (stats-threads.ts):
// the same numbers as one thread, to the last bit, with every thread taking a share; a helper that
// cannot run leaves the main thread to do it all; a file that breaks under them fails with the
// reader's one-line reason.
import assert from 'node:assert/strict';
import {truncate} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {pathToFileURL} from 'node:url';
import {createOrtKernels} from '../source/engine/kernels/ort-kernels.js';
import type {EngineKernels} from '../source/engine/kernels/types.js';
import {computeStatsThreaded, StatsThreads} from '../source/engine/stats-threads.js';
import {loadEntry} from '../source/lora/entry.js';
import {LoraFileError} from '../source/lora/safetensors.js';
import {computeStatsWithModel} from '../source/lora/stats.js';
import {sample, tempFolder} from './helpers/fixtures.js';

let folder: {dir: string; remove: () => Promise<void>};
let file: string;
let kernels: EngineKernels;
let threads: StatsThreads;

before(async () => {
	folder = await tempFolder('lorascope-stats-threads-');
	// ~25 MB: several 8 MB windows, with linear pairs and 3×3 conv (LoCon) modules.
	file = await sample(folder.dir, 'locon.safetensors', 'sd15-locon', {rank: 16, convRank: 8, hashes: false});
	kernels = await createOrtKernels('cpu', {threads: 1});
	threads = StatsThreads.start(2);
});

after(async () => {
	await threads.close();
	await kernels.dispose();
	await folder.remove();
});

async function loaded(target: string) {
	const entry = await loadEntry(target);
	assert.ok(entry.header && entry.model, entry.error ?? 'loaded');
	return {header: entry.header, model: entry.model};
}

test('three threads give exactly the single-thread statistics, each taking a share', async () => {
	const {header, model} = await loaded(file);
	const single = await computeStatsWithModel(header, model, {kernels});
	await threads.ready();
	const shared = await computeStatsThreaded(header, model, kernels, threads);
	assert.deepEqual(shared.stats, single.stats);
	assert.deepEqual(shared.model, single.model);
	assert.equal(shared.modulesByThread.length, 3);
	assert.equal(shared.modulesByThread.reduce((a, b) => a + b, 0), model.modules.length, 'every module once');
	assert.ok(shared.modulesByThread.filter(count => count > 0).length >= 2, `work was shared: ${shared.modulesByThread.join(', ')}`);
	assert.ok(single.stats.modules.some(m => m.norm !== null && m.norm > 0));
});

test('helpers that cannot start leave the whole file to the main thread', async () => {
	const {header, model} = await loaded(file);
	const broken = StatsThreads.start(1, pathToFileURL(path.join(folder.dir, 'stats-threads.js')).href);
	try {
		const single = await computeStatsWithModel(header, model, {kernels});
		const result = await computeStatsThreaded(header, model, kernels, broken);
		assert.deepEqual(result.stats, single.stats);
		assert.deepEqual(result.modulesByThread, [model.modules.length]);
	} finally {
		await broken.close();
	}
});

test('a file truncated under the threads fails with the reader\'s reason, naming the file', async () => {
	const target = await sample(folder.dir, 'shrinking.safetensors', 'sd15-locon', {rank: 16, convRank: 8, hashes: false});
	const {header, model} = await loaded(target);
	await truncate(target, header.dataOffset + 1024);
	await assert.rejects(computeStatsThreaded(header, model, kernels, threads), (error: unknown) => {
		assert.ok(error instanceof LoraFileError, String(error));
		assert.match(error.message, /^shrinking\.safetensors: /);
		return true;
	});
	// The threads still work afterwards.
	const again = await loaded(file);
	const result = await computeStatsThreaded(again.header, again.model, kernels, threads);
	assert.equal(result.modulesByThread.reduce((a, b) => a + b, 0), again.model.modules.length);
});
