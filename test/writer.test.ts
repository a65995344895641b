import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import {mkdtemp, readFile, readdir, rm, stat, utimes, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, test} from 'node:test';
import {TensorReader, readHeader} from '../source/lora/safetensors.js';
import {
	TargetExistsError,
	cleanStaleTempFiles,
	serializeHeader,
	tempMarker,
	tempPathFor,
	writeFileAtomic,
	writeSafetensorsAtomic,
	type TensorToWrite,
} from '../source/lora/writer.js';
import {f32Bytes} from './fixtures/safetensors-builder.js';

let dir: string;
let counter = 0;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-writer-'));
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

async function freshDir(): Promise<string> {
	return mkdtemp(path.join(dir, `case${counter++}-`));
}

function tensors(): TensorToWrite[] {
	return [
		{name: 'b.lora_down.weight', dtype: 'F32', shape: [2, 3], data: f32Bytes([1, 2, 3, 4, 5, 6])},
		{name: 'b.alpha', dtype: 'F16', shape: [], data: Uint8Array.from([0x00, 0x40])},
		{name: 'a.lora_up.weight', dtype: 'BF16', shape: [3, 1], data: Uint8Array.from([0x80, 0x3f, 0x00, 0x40, 0x40, 0x40])},
		{name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array()},
	];
}

async function tempLeftovers(folder: string): Promise<string[]> {
	return (await readdir(folder)).filter(name => name.includes(tempMarker));
}

test('serializeHeader: u64 length, JSON padded with spaces to 8 bytes, offsets back to back', () => {
	const list = tensors();
	const metadata = {ss_network_dim: '4', note: 'x'};
	const bytes = serializeHeader(list, metadata);
	const length = Number(bytes.readBigUInt64LE(0));
	assert.equal(bytes.length, 8 + length);
	assert.equal(length % 8, 0);
	assert.equal((8 + length) % 8, 0, 'data starts 8-aligned');
	const text = bytes.subarray(8).toString('utf8');
	const trimmed = text.trimEnd();
	assert.match(text.slice(trimmed.length), /^ *$/, 'padding is spaces');
	assert.ok(text.length - trimmed.length < 8);
	const parsed = JSON.parse(trimmed) as Record<string, {dtype: string; shape: number[]; data_offsets: [number, number]}> & {__metadata__: Record<string, string>};
	assert.deepEqual(parsed.__metadata__, metadata);
	let offset = 0;
	for (const tensor of list) {
		const entry = parsed[tensor.name]!;
		assert.equal(entry.dtype, tensor.dtype);
		assert.deepEqual(entry.shape, tensor.shape);
		assert.deepEqual(entry.data_offsets, [offset, offset + (tensor.data as Uint8Array).byteLength]);
		offset += (tensor.data as Uint8Array).byteLength;
	}

	assert.ok(!('__metadata__' in JSON.parse(serializeHeader(list, {}).subarray(8).toString())), 'no empty metadata entry');
});

test('serializeHeader refuses duplicate or reserved names and bad shapes; keeps __proto__ as a name', () => {
	const [first] = tensors();
	assert.throws(() => serializeHeader([first!, first!], undefined), /duplicate or reserved tensor name/);
	assert.throws(() => serializeHeader([{...first!, name: '__metadata__'}], undefined), /duplicate or reserved/);
	assert.throws(() => serializeHeader([{...first!, shape: [-1, 2]}], undefined), /invalid dtype or shape/);
	assert.throws(() => serializeHeader([{...first!, shape: [1.5]}], undefined), /invalid dtype or shape/);
	assert.throws(() => serializeHeader([{...first!, dtype: 'F4' as 'F32'}], undefined), /invalid dtype or shape/);
	assert.throws(() => serializeHeader([first!], {a: 1 as unknown as string}), /not a string/);
	const json = JSON.parse(serializeHeader([{...first!, name: '__proto__'}], {['__proto__']: 'kept'}).subarray(8).toString()) as object;
	assert.ok(Object.hasOwn(json, '__proto__'), 'a tensor named __proto__ is written, not swallowed');
});

test('writeSafetensorsAtomic: readHeader reads the layout back and the bytes are intact', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'out.safetensors');
	const list = tensors();
	const progress: number[] = [];
	await writeSafetensorsAtomic(target, list, {ss_output_name: 'out'}, {onProgress: p => progress.push(p.done)});
	const header = await readHeader(target);
	assert.deepEqual(header.tensors.map(t => t.name).sort(), list.map(t => t.name).sort());
	assert.equal(header.metadata['ss_output_name'], 'out');
	assert.equal(header.dataOffset % 8, 0);
	const reader = await TensorReader.open(header);
	for (const tensor of list) {
		assert.deepEqual(await reader.readRaw(tensor.name), Buffer.from(tensor.data as Uint8Array), tensor.name);
	}

	await reader.close();
	assert.deepEqual(progress, [24, 26, 32, 32]);
	assert.deepEqual(await tempLeftovers(folder), []);
});

test('tensor data may come from loaders, awaited one at a time', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'lazy.safetensors');
	const order: string[] = [];
	const list = tensors().map(t => ({
		...t,
		data: async () => {
			order.push(t.name);
			return t.data as Uint8Array;
		},
	}));
	await writeSafetensorsAtomic(target, list, undefined);
	assert.deepEqual(order, list.map(t => t.name));
	assert.equal((await readHeader(target)).tensors.length, list.length);
});

test('no overwrite by default: an existing target is untouched and the write fails', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'exists.safetensors');
	await writeFile(target, 'precious');
	await assert.rejects(writeSafetensorsAtomic(target, tensors(), undefined), TargetExistsError);
	assert.equal(await readFile(target, 'utf8'), 'precious');
	assert.deepEqual(await tempLeftovers(folder), []);
});

test('two writers racing for one new name: exactly one wins, the other gets TargetExistsError', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'race.safetensors');
	const results = await Promise.allSettled([
		writeFileAtomic(target, [Buffer.from('first')]),
		writeFileAtomic(target, [Buffer.from('second')]),
	]);
	assert.equal(results.filter(r => r.status === 'fulfilled').length, 1);
	const rejected = results.find(r => r.status === 'rejected');
	assert.ok(rejected?.reason instanceof TargetExistsError);
	assert.match(await readFile(target, 'utf8'), /^(first|second)$/);
	assert.deepEqual(await tempLeftovers(folder), []);
});

test('overwrite when asked replaces the file', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'replace.safetensors');
	await writeFile(target, 'old');
	await writeSafetensorsAtomic(target, tensors(), undefined, {overwrite: true});
	assert.equal((await readHeader(target)).tensors.length, 4);
	assert.deepEqual(await tempLeftovers(folder), []);
});

test('abort via signal leaves no target and no temp file', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'aborted.safetensors');
	const controller = new AbortController();
	await assert.rejects(writeSafetensorsAtomic(target, tensors(), undefined, {
		signal: controller.signal,
		onProgress() {
			controller.abort(new Error('user cancelled'));
		},
	}), /user cancelled/);
	await assert.rejects(stat(target), {code: 'ENOENT'});
	assert.deepEqual(await readdir(folder), []);

	const already = AbortSignal.abort();
	await assert.rejects(writeSafetensorsAtomic(target, tensors(), undefined, {signal: already}));
	assert.deepEqual(await readdir(folder), []);

	// Aborting an overwrite leaves the old file in place.
	await writeFile(target, 'old');
	const late = new AbortController();
	await assert.rejects(writeSafetensorsAtomic(target, tensors(), undefined, {
		overwrite: true,
		signal: late.signal,
		onProgress(p) {
			if (p.done === p.total) {
				late.abort();
			}
		},
	}));
	assert.equal(await readFile(target, 'utf8'), 'old');
	assert.deepEqual(await readdir(folder), ['aborted.safetensors']);
});

test('a failing loader or a wrong byte count leaves nothing behind', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'failed.safetensors');
	const list = tensors();
	list[2] = {...list[2]!, data: async () => {
		throw new Error('disk on fire');
	}};
	await assert.rejects(writeSafetensorsAtomic(target, list, undefined), /disk on fire/);
	const wrong = tensors();
	wrong[0] = {...wrong[0]!, data: new Uint8Array(5)};
	await assert.rejects(writeSafetensorsAtomic(target, wrong, undefined), /5 bytes for shape \[2,3\] F32 \(expected 24\)/);
	assert.deepEqual(await readdir(folder), []);
});

test('the mode asked for is kept, also when replacing', async () => {
	const folder = await freshDir();
	const target = path.join(folder, 'mode.safetensors');
	await writeSafetensorsAtomic(target, tensors(), undefined, {mode: 0o640});
	assert.equal((await stat(target)).mode & 0o777, 0o640);
	await writeSafetensorsAtomic(target, tensors(), undefined, {mode: 0o600, overwrite: true});
	assert.equal((await stat(target)).mode & 0o777, 0o600);
});

test('temp files live in the target folder and carry the marker', () => {
	const temporary = tempPathFor('/some/folder/out.safetensors');
	assert.equal(path.dirname(temporary), '/some/folder');
	assert.ok(path.basename(temporary).startsWith('.out.safetensors'));
	assert.ok(temporary.includes(`${tempMarker}${process.pid}-`));
});

test('cleanStaleTempFiles removes leftovers of dead writers, keeps live ones and other files', async () => {
	const folder = await freshDir();
	const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {encoding: 'utf8'});
	const deadPid = Number(dead.stdout);
	assert.ok(deadPid > 0);
	const old = new Date(Date.now() - (10 * 60_000));
	const files = {
		deadOld: `.a.safetensors${tempMarker}${deadPid}-0001`,
		deadYoung: `.b.safetensors${tempMarker}${deadPid}-0002`,
		mineOld: `.c.safetensors${tempMarker}${process.pid}-0003`,
		abandoned: `.d.safetensors${tempMarker}${process.pid}-0004`,
		other: 'keep.safetensors',
	};
	for (const name of Object.values(files)) {
		await writeFile(path.join(folder, name), 'x');
	}

	for (const name of [files.deadOld, files.mineOld, files.other]) {
		await utimes(path.join(folder, name), old, old);
	}

	const dayAndMore = new Date(Date.now() - (25 * 60 * 60_000));
	await utimes(path.join(folder, files.abandoned), dayAndMore, dayAndMore);

	const removed = await cleanStaleTempFiles(folder);
	assert.deepEqual(removed.map(f => path.basename(f)).sort(), [files.deadOld, files.abandoned].sort());
	assert.deepEqual((await readdir(folder)).sort(), [files.deadYoung, files.mineOld, files.other].sort());
	const now = await cleanStaleTempFiles(folder, 0);
	assert.deepEqual(now.map(f => path.basename(f)), [files.deadYoung]);
	assert.deepEqual(await cleanStaleTempFiles(path.join(folder, 'missing')), [], 'a missing folder is not an error');
});
