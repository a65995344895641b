// Tensor tables shared between headers that differ only in `__metadata__` (structure-cache.ts):
// every answer must be what parsing the file alone gives, and every check that depends on the file
// (its metadata, its data area) must still run.
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, beforeEach, test} from 'node:test';
import {loadEntry} from '../source/lora/entry.js';
import {alphaTensorKeys, buildLoraModel, loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {sampleKinds, writeSample} from '../source/lora/samples.js';
import {clearSharedTables, isSharedTable} from '../source/lora/structure-cache.js';
import type {SafetensorsHeader, TensorInfo} from '../source/lora/types.js';
import {goodLora, headerFor, kohyaMetadata, rawFile, safetensorsFile, type RawTensor} from './fixtures/safetensors-builder.js';

let dir: string;
let counter = 0;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-structure-'));
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

beforeEach(() => {
	clearSharedTables();
	delete process.env['LORASCOPE_STRUCTURE_CACHE'];
});

async function fileWith(bytes: Uint8Array): Promise<string> {
	const file = path.join(dir, `f${counter++}.safetensors`);
	await writeFile(file, bytes);
	return file;
}

/** kohya modules without alpha tensors, so their alpha comes from `ss_network_alpha`. */
function tensorsOf(seed: number): RawTensor[] {
	return goodLora(seed).tensors.filter(t => !t.name.endsWith('.alpha'));
}

const rank = 4;

test('epochs of one run share one parsed table and one model, and keep their own metadata', async () => {
	const first = await fileWith(safetensorsFile(tensorsOf(1), kohyaMetadata({ss_epoch: '1'})));
	const second = await fileWith(safetensorsFile(tensorsOf(2), kohyaMetadata({ss_epoch: '2', ss_steps: '800'})));
	const a = await readHeader(first);
	const b = await readHeader(second);
	assert.equal(a.tensors, b.tensors, 'the same table object');
	assert.ok(isSharedTable(b.tensors));
	assert.equal(a.metadata['ss_epoch'], '1');
	assert.equal(b.metadata['ss_epoch'], '2');
	assert.equal(b.metadata['ss_steps'], '800');
	assert.equal(a.metadata['ss_steps'], undefined);
	assert.equal(b.tensors.length, 8);

	const modelA = buildLoraModel(a);
	assert.equal(buildLoraModel(b), modelA, 'model-relevant metadata agrees: one model');
	for (const module of modelA.modules) {
		assert.equal(module.alpha, 2);
		assert.equal(module.scale, 2 / rank);
	}
});

test('a file whose model-relevant metadata differs gets its own model on a shared table', async () => {
	const first = await fileWith(safetensorsFile(tensorsOf(1), kohyaMetadata()));
	const other = await fileWith(safetensorsFile(tensorsOf(3), kohyaMetadata({ss_network_alpha: '1.0', ss_base_model_version: 'sdxl_base_v1-0'})));
	const modelA = buildLoraModel(await readHeader(first));
	const header = await readHeader(other);
	assert.ok(isSharedTable(header.tensors));
	const model = buildLoraModel(header);
	assert.notEqual(model, modelA);
	for (const module of model.modules) {
		assert.equal(module.alpha, 1);
		assert.equal(module.scale, 1 / rank);
	}

	assert.equal(model.metadataArch, 'sdxl');
	assert.ok(model.warnings.some(w => w.includes('SDXL') && w.includes('SD1.x')), model.warnings.join('; '));
	assert.equal(modelA.warnings.length, 0);
});

test('models with alpha values read from the tensors are shared only between equal values', async () => {
	const tensors = goodLora(1).tensors;
	const headers = await Promise.all([1, 2].map(async epoch => readHeader(await fileWith(safetensorsFile(tensors, kohyaMetadata({ss_epoch: String(epoch)}))))));
	const [a, b] = headers as [SafetensorsHeader, SafetensorsHeader];
	assert.equal(a.tensors, b.tensors);
	const keys = alphaTensorKeys(a);
	assert.equal(keys.length, 4);
	assert.equal(alphaTensorKeys(b), keys, 'alpha keys are kept with the shared table');
	const exact = (header: SafetensorsHeader, alpha: number) => buildLoraModel(header, new Map(keys.map(key => [key, alpha])));
	const modelA = exact(a, 2);
	assert.equal(exact(b, 2), modelA);
	assert.notEqual(modelA, buildLoraModel(a), 'header-only and exact models differ');
	const other = exact(b, 8);
	assert.notEqual(other, modelA);
	for (const module of modelA.modules) {
		assert.equal(module.alpha, 2);
		assert.equal(module.scale, 2 / rank);
		assert.equal(module.alphaSource, 'tensor');
	}

	for (const module of other.modules) {
		assert.equal(module.alpha, 8);
		assert.equal(module.scale, 8 / rank);
	}

	// Read through a TensorReader (nearby alphas in one read): the file's own alpha, 2.
	const reader = await TensorReader.open(b);
	try {
		assert.equal(await loadLoraModel(b, reader), modelA);
	} finally {
		await reader.close();
	}
});

test('a shared table still checks this file\'s data area', async () => {
	const bytes = safetensorsFile(tensorsOf(1), kohyaMetadata());
	await readHeader(await fileWith(bytes));
	const short = await fileWith(bytes.subarray(0, bytes.length - 4));
	await assert.rejects(readHeader(short), /beyond the data area/);
});

test('invalid metadata in front of a known table is still reported', async () => {
	const tensors = tensorsOf(1);
	const {json} = headerFor(tensors, {ss_epoch: '1'});
	const data = Buffer.concat(tensors.map(t => t.data));
	await readHeader(await fileWith(rawFile(json, data)));
	const duplicate = json.replace('"__metadata__":{', '"__metadata__":{"a":"1","a":"2",');
	await assert.rejects(readHeader(await fileWith(rawFile(duplicate, data))), /duplicate key in __metadata__/);
	const notString = json.replace('"__metadata__":{', '"__metadata__":{"a":1,');
	await assert.rejects(readHeader(await fileWith(rawFile(notString, data))), /not a string/);
});

test('a table the whole parse rejects is never shared', async () => {
	const tensors = tensorsOf(1);
	const {json} = headerFor(tensors, {ss_epoch: '1'});
	const data = Buffer.concat(tensors.map(t => t.data));
	const twice = `${json.slice(0, -1)},"__metadata__":{}}`;
	for (let i = 0; i < 2; i++) {
		await assert.rejects(readHeader(await fileWith(rawFile(twice, data))), /duplicate __metadata__/);
	}
});

test('headers that do not start with __metadata__ are parsed alone, with the same result', async () => {
	const tensors = tensorsOf(1);
	const {json} = headerFor(tensors);
	const last = `${json.slice(0, -1)},"__metadata__":${JSON.stringify(kohyaMetadata())}}`;
	const data = Buffer.concat(tensors.map(t => t.data));
	const a = await readHeader(await fileWith(rawFile(last, data)));
	const b = await readHeader(await fileWith(rawFile(last, data)));
	assert.notEqual(a.tensors, b.tensors);
	assert.ok(!isSharedTable(a.tensors));
	const shared = await readHeader(await fileWith(safetensorsFile(tensors, kohyaMetadata())));
	assert.deepEqual([...b.tensors], [...shared.tensors]);
	assert.deepEqual({...b.metadata}, {...shared.metadata});
	assert.deepEqual(buildLoraModel(b), buildLoraModel(shared));
});

test('shared tables and models are frozen: a stray write throws instead of changing other files', async () => {
	const header = await readHeader(await fileWith(safetensorsFile(tensorsOf(1), kohyaMetadata())));
	const tensors = header.tensors as TensorInfo[];
	assert.throws(() => tensors.push(tensors[0]!), TypeError);
	assert.throws(() => {
		(tensors[0] as {begin: number}).begin = 1;
	}, TypeError);
	assert.throws(() => {
		(tensors[0]!.shape as number[])[0] = 1;
	}, TypeError);
	const model = buildLoraModel(header);
	assert.throws(() => {
		(model.modules[0] as {rank: number}).rank = 1;
	}, TypeError);
	assert.throws(() => {
		(model.warnings as string[]).push('x');
	}, TypeError);
});

test('LORASCOPE_STRUCTURE_CACHE=0 parses every header alone', async () => {
	process.env['LORASCOPE_STRUCTURE_CACHE'] = '0';
	const bytes = safetensorsFile(tensorsOf(1), kohyaMetadata());
	const a = await readHeader(await fileWith(bytes));
	const b = await readHeader(await fileWith(bytes));
	assert.notEqual(a.tensors, b.tensors);
	assert.ok(!isSharedTable(a.tensors));
	assert.notEqual(buildLoraModel(a), buildLoraModel(b));
	assert.deepEqual(buildLoraModel(a), buildLoraModel(b));
});

test('on every sample kind, a shared table gives the header and model the file gives alone', async () => {
	const folder = path.join(dir, 'kinds');
	await mkdir(folder);
	for (const kind of sampleKinds) {
		const files = [1, 2].map(seed => path.join(folder, `${kind}-${seed}.safetensors`));
		for (const [index, file] of files.entries()) {
			await writeSample(file, kind, {seed: index + 1, hashes: false, epoch: index + 1, outputName: `${kind}_${index + 1}`});
		}

		clearSharedTables();
		await readHeader(files[0]!);
		const shared = await readHeader(files[1]!);
		process.env['LORASCOPE_STRUCTURE_CACHE'] = '0';
		const alone = await readHeader(files[1]!);
		delete process.env['LORASCOPE_STRUCTURE_CACHE'];
		assert.ok(isSharedTable(shared.tensors), `${kind}: the seeds share a table`);
		assert.deepEqual([...shared.tensors], [...alone.tensors], kind);
		assert.deepEqual([...shared.byName], [...alone.byName], kind);
		assert.deepEqual({...shared.metadata}, {...alone.metadata}, kind);
		assert.equal(Object.getPrototypeOf(shared.metadata), null);
		assert.deepEqual(buildLoraModel(shared), buildLoraModel(alone), kind);
	}
});

test('blocking reads (header workers) give the same headers and the same one-line errors', async () => {
	const good = await fileWith(safetensorsFile(tensorsOf(1), kohyaMetadata()));
	const blocking = await loadEntry(good, {blocking: true});
	const plain = await loadEntry(good);
	assert.equal(blocking.error, null);
	assert.deepEqual({...blocking.header!.metadata}, {...plain.header!.metadata});
	assert.deepEqual([...blocking.header!.tensors], [...plain.header!.tensors]);

	const bytes = safetensorsFile(tensorsOf(1), kohyaMetadata());
	const cases: Array<[string, RegExp]> = [
		[path.join(dir, 'missing.safetensors'), /file not found/],
		[await fileWith(bytes.subarray(0, 100)), /larger than the file|file ended/],
		[await fileWith(Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n')), /LFS/],
	];
	const folder = path.join(dir, 'a-folder.safetensors');
	await mkdir(folder);
	cases.push([folder, /is a directory/]);
	const fifo = path.join(dir, 'pipe.safetensors');
	if (spawnSync('mkfifo', [fifo]).status === 0) {
		cases.push([fifo, /not a regular file/]);
	}

	for (const [file, reason] of cases) {
		const [a, b] = await Promise.all([loadEntry(file, {blocking: true}), loadEntry(file)]);
		assert.match(a.error ?? '', reason, file);
		assert.equal(a.error, b.error, file);
		assert.ok(!a.error!.includes('\n'));
	}
});

test('tables past the 64 kept are dropped oldest first, and files read after still parse right', async () => {
	const files: string[] = [];
	for (let i = 0; i < 70; i++) {
		const tensor: RawTensor = {name: `lora_unet_t${i}.alpha`, dtype: 'F32', shape: [1 + (i % 3)], data: new Uint8Array(4 * (1 + (i % 3)))};
		files.push(await fileWith(safetensorsFile([tensor], {ss_epoch: String(i)})));
	}

	const first = [];
	for (const file of files) {
		first.push(await readHeader(file));
	}

	const again = await readHeader(files[0]!);
	const recent = await readHeader(files[69]!);
	assert.notEqual(again.tensors, first[0]!.tensors, 'the oldest table was dropped');
	assert.equal(recent.tensors, first[69]!.tensors, 'the newest is still shared');
	assert.deepEqual([...again.tensors], [{name: 'lora_unet_t0.alpha', dtype: 'F32', shape: [1], begin: 0, end: 4}]);
	assert.equal(again.metadata['ss_epoch'], '0');
});

test('a table of more than 20,000 entries is parsed alone, never kept', async () => {
	const parts = Array.from({length: 21_000}, (_, i) => `"${i.toString(36)}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`);
	const json = `{"__metadata__":{"a":"1"},${parts.join(',')}}`;
	assert.ok(json.length < 2 * 1024 * 1024, 'under the tail-size limit, so the entry count decides');
	const file = await fileWith(rawFile(json));
	const a = await readHeader(file);
	const b = await readHeader(file);
	assert.equal(a.tensors.length, 21_000);
	assert.ok(!isSharedTable(a.tensors));
	assert.notEqual(a.tensors, b.tensors);
});
