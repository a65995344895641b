// Header reading on worker threads (header-pool.ts): what a worker answers for good and bad files,
// that answers reach the right caller under load, and that closing or losing the workers rejects
// loads instead of hanging them (use-folder then reads the file itself).
import assert from 'node:assert/strict';
import {writeFile} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {pathToFileURL} from 'node:url';
import {isLightEntry, lightEntry, loadEntry, metadataOf} from '../source/lora/entry.js';
import {HeaderPool} from '../source/lora/header-pool.js';
import {LoraFileError, readHeader} from '../source/lora/safetensors.js';
import {sample, tempFolder} from './helpers/fixtures.js';

let folder: {dir: string; remove: () => Promise<void>};
let pool: HeaderPool;
const files: Record<string, string> = {};

before(async () => {
	folder = await tempFolder('lorascope-header-pool-');
	files['sd15'] = await sample(folder.dir, 'sd15.safetensors', 'sd15-lora', {rank: 8, alpha: 4, hashes: false});
	files['sdxl'] = await sample(folder.dir, 'sdxl.safetensors', 'sdxl-lora', {rank: 2, hashes: false});
	files['flux'] = await sample(folder.dir, 'flux.safetensors', 'flux-peft', {rank: 4, hashes: false});
	files['lokr'] = await sample(folder.dir, 'lokr.safetensors', 'sd15-lokr', {hashes: false});
	files['truncated'] = path.join(folder.dir, 'truncated.safetensors');
	// Declares a 4,096-byte header, holds 10 bytes of it.
	const truncated = Buffer.alloc(18);
	truncated.writeBigUInt64LE(4096n, 0);
	truncated.write('{"a":', 8, 'latin1');
	await writeFile(files['truncated'], truncated);
	files['pickle'] = path.join(folder.dir, 'model.ckpt');
	await writeFile(files['pickle'], Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
	files['missing'] = path.join(folder.dir, 'gone.safetensors');
	pool = HeaderPool.start(2);
});

after(async () => {
	await pool.close();
	await folder.remove();
});

/** Counted here from the tensor names, independently of the model's grouping. */
function kohyaModuleCount(names: string[]): number {
	return names.filter(name => name.endsWith('.lora_down.weight')).length;
}

test('a worker answers the light entry: summary and metadata of a good file', async () => {
	for (const [label, expected] of [
		['sd15', {arch: 'sd1', rank: 8, networkType: 'LoRA'}],
		['sdxl', {arch: 'sdxl', rank: 2, networkType: 'LoRA'}],
		['flux', {arch: 'flux', rank: 4, alpha: 8, networkType: 'LoRA'}],
		['lokr', {arch: 'sd1', networkType: 'LoKr'}],
	] as const) {
		const file = files[label]!;
		const light = await pool.load(file);
		assert.ok(isLightEntry(light), label);
		assert.equal(light.header, undefined, `${label}: no tensor table crosses threads`);
		assert.equal(light.model, undefined);
		assert.equal(light.error, null);
		const header = await readHeader(file);
		assert.equal(light.sizeBytes, header.sizeBytes);
		assert.equal(light.mtimeMs, header.mtimeMs);
		assert.deepEqual(metadataOf(light), header.metadata, `${label}: metadata as written`);
		const summary = light.summary!;
		assert.equal(summary.arch, expected.arch, label);
		assert.equal(summary.networkType, expected.networkType, label);
		if ('rank' in expected) {
			assert.equal(summary.rank, expected.rank, label);
		}

		if ('alpha' in expected) {
			assert.equal(summary.alpha, expected.alpha, label);
		}

		if (label === 'sd15' || label === 'sdxl') {
			assert.equal(summary.moduleCount, kohyaModuleCount(header.tensors.map(t => t.name)), label);
		}

		// The worker and a main-thread read agree field for field.
		assert.deepEqual(light, lightEntry(await loadEntry(file)), label);
	}
});

test('metadata keys such as __proto__ and constructor stay plain keys across threads', async () => {
	const {writeSafetensorsAtomic} = await import('../source/lora/writer.js');
	const metadata = Object.create(null) as Record<string, string>;
	metadata['__proto__'] = 'not a prototype';
	metadata['constructor'] = 'not a function';
	metadata['ss_network_dim'] = '4';
	const file = path.join(folder.dir, 'proto-keys.safetensors');
	await writeSafetensorsAtomic(file, [{name: 'lora_unet_x.alpha', dtype: 'F32', shape: [], data: new Uint8Array(4)}], metadata, {overwrite: true});
	const light = await pool.load(file);
	const received = metadataOf(light)!;
	assert.equal(Object.getPrototypeOf(received), null);
	assert.deepEqual(Object.keys(received).sort(), ['__proto__', 'constructor', 'ss_network_dim']);
	assert.equal(received['__proto__'], 'not a prototype');
	assert.equal(received['constructor'], 'not a function');
});

test('bad files come back as entries with the reader\'s one-line reason', async () => {
	for (const label of ['truncated', 'pickle', 'missing']) {
		const file = files[label]!;
		let reason: string | undefined;
		try {
			await readHeader(file);
		} catch (error) {
			assert.ok(error instanceof LoraFileError);
			reason = error.reason;
		}

		const light = await pool.load(file);
		assert.equal(light.error, reason, label);
		assert.equal(isLightEntry(light), false, `${label}: an error is not a light entry`);
	}
});

test('hundreds of loads in flight each reach their own caller', async () => {
	const order = Array.from({length: 240}, (_, i) => Object.values(files)[i % Object.keys(files).length]!);
	const entries = await Promise.all(order.map(async file => pool.load(file)));
	for (const [index, entry] of entries.entries()) {
		assert.equal(entry.path, order[index], `load #${index}`);
	}

	assert.equal(entries.filter(entry => entry.error === null).length, order.filter(file => !/truncated|ckpt|gone/.test(file)).length);
});

test('closing rejects waiting loads and later ones', async () => {
	const closing = HeaderPool.start(1);
	const settled = Promise.allSettled(Array.from({length: 20}, async () => closing.load(files['sdxl']!)));
	await closing.close();
	const results = await settled;
	assert.ok(results.some(result => result.status === 'rejected'), 'loads still waiting were rejected');
	await assert.rejects(closing.load(files['sd15']!), /closed/);
});

test('a worker that dies on a file is replaced: that load rejects, the next ones work', async () => {
	// 400,000 zero-size tensors: a valid header (~30 MB) whose parse needs more than a 96 MB heap.
	const many = path.join(folder.dir, 'many-entries.safetensors');
	const parts: string[] = [];
	for (let i = 0; i < 400_000; i++) {
		parts.push(`"lora_unet_block_${i}.lora_down.weight":{"dtype":"F16","shape":[0],"data_offsets":[0,0]}`);
	}

	const json = Buffer.from(`{${parts.join(',')}}`);
	const length = Buffer.alloc(8);
	length.writeBigUInt64LE(BigInt(json.length));
	await writeFile(many, Buffer.concat([length, json]));
	const small = HeaderPool.start(1, undefined, {heapMb: 96});
	try {
		assert.equal((await small.load(files['sd15']!)).error, null);
		await assert.rejects(small.load(many), /header worker stopped/);
		const next = await small.load(files['sdxl']!);
		assert.equal(next.error, null);
		assert.equal(next.summary?.arch, 'sdxl');
	} finally {
		await small.close();
	}
});

test('workers that cannot start reject loads instead of hanging them', async () => {
	// A module URL whose folder has no header-worker.js: every worker fails to load.
	const broken = HeaderPool.start(2, pathToFileURL(path.join(folder.dir, 'header-pool.js')).href);
	try {
		await assert.rejects(broken.load(files['sd15']!), /header worker/);
		await assert.rejects(broken.load(files['sd15']!), /header worker/);
	} finally {
		await broken.close();
	}
});
