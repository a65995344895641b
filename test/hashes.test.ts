import {test} from 'node:test';
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import {existsSync, readdirSync} from 'node:fs';
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {computeFileHashes, emptySha256, hashStatus, sshsHashesFor, SshsHasher} from '../source/lora/hashes.js';
import {LoraFileError, readHeader} from '../source/lora/safetensors.js';
import '../source/engine/jobs/hash.js';
import type {EngineEvent} from '../source/engine/protocol.js';
import {EngineServer} from '../source/engine/server.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const realDir = path.resolve(repoRoot, '../shared/real-loras');
const missingReal = !existsSync(realDir);

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

type Spec = {name: string; shape: number[]; data: Buffer};

/** Deterministic pseudo-random float32 bytes (xorshift), so hashes are not of zeros. */
function randomF32(count: number, seed: number): Buffer {
	const out = Buffer.alloc(count * 4);
	let x = seed >>> 0 || 1;
	for (let i = 0; i < count; i++) {
		x ^= x << 13;
		x >>>= 0;
		x ^= x >>> 17;
		x ^= x << 5;
		x >>>= 0;
		out.writeFloatLE((x / 0xFF_FF_FF_FF) - 0.5, i * 4);
	}

	return out;
}

/** Header JSON bytes built here, independently of the code under test; `pad` to 8 with spaces. */
function headerFor(specs: Spec[], metadata: Record<string, string> | undefined, pad = true): Buffer {
	const object: Record<string, unknown> = {};
	if (metadata) {
		object['__metadata__'] = metadata;
	}

	let offset = 0;
	for (const spec of specs) {
		object[spec.name] = {dtype: 'F32', shape: spec.shape, data_offsets: [offset, offset + spec.data.length]};
		offset += spec.data.length;
	}

	let json = Buffer.from(JSON.stringify(object));
	if (pad && json.length % 8 !== 0) {
		json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
	}

	const prefix = Buffer.alloc(8);
	prefix.writeBigUInt64LE(BigInt(json.length));
	return Buffer.concat([prefix, json]);
}

function ssOnly(metadata: Record<string, string>): Record<string, string> {
	return Object.fromEntries(Object.entries(metadata).filter(([key]) => key.startsWith('ss_')));
}

/** sd-scripts' two hashes, computed the plain way: serialise everything, then slice. */
function referenceSshs(specs: Spec[], metadata: Record<string, string>, pad = true): {model: string; legacy: string} {
	const data = Buffer.concat(specs.map(s => s.data));
	const whole = Buffer.concat([headerFor(specs, ssOnly(metadata), pad), data]);
	return {model: sha(data), legacy: sha(whole.subarray(0x10_00_00, 0x11_00_00)).slice(0, 8)};
}

function specsOf(sizes: Array<[string, number[]]>): Spec[] {
	return sizes.map(([name, shape], index) => ({name, shape, data: randomF32(shape.reduce((a, b) => a * b, 1), index + 7)}));
}

function sha256sum(file: string): string {
	return execFileSync('sha256sum', [file], {encoding: 'utf8'}).split(' ')[0]!;
}

async function withTemp(run: (directory: string) => Promise<void>): Promise<void> {
	const directory = await mkdtemp(path.join(os.tmpdir(), 'lorascope-hash-'));
	try {
		await run(directory);
	} finally {
		await rm(directory, {recursive: true, force: true});
	}
}

// About 1.4 MB of data, so the legacy window (1 MiB + 64 KiB) lies inside it.
const bigSpecs = specsOf([
	['lora_unet_a.alpha', []],
	['lora_unet_a.lora_down.weight', [8, 320]],
	['lora_unet_a.lora_up.weight', [320, 8]],
	['lora_unet_b.lora_down.weight', [16, 20_000]],
]);
const baseMetadata = {ss_network_dim: '8', ss_network_alpha: '4.0', ['modelspec.title']: 'test', other: 'x'};

test('hashes of a generated file match sha256sum and an independent computation', async () => {
	await withTemp(async directory => {
		const reference = referenceSshs(bigSpecs, baseMetadata);
		const metadata = {...baseMetadata, sshs_model_hash: reference.model, sshs_legacy_hash: reference.legacy};
		const file = path.join(directory, 'a.safetensors');
		const bytes = Buffer.concat([headerFor(bigSpecs, metadata), ...bigSpecs.map(s => s.data)]);
		await writeFile(file, bytes);
		const header = await readHeader(file);
		assert.ok(header.sizeBytes - header.dataOffset > 0x11_00_00, 'fixture reaches past the legacy window');

		for (const chunkBytes of [undefined, 65_537, 1000]) {
			const progress: number[] = [];
			const hashes = await computeFileHashes(file, {chunkBytes, onProgress: p => progress.push(p.done)});
			assert.equal(hashes.sha256, sha256sum(file));
			assert.equal(hashes.sha256, sha(bytes));
			assert.equal(hashes.autov2, sha(bytes).slice(0, 10));
			assert.equal(hashes.dataSha256, sha(bytes.subarray(header.dataOffset)));
			assert.equal(hashes.dataSha256, reference.model);
			assert.equal(hashes.legacyHash, reference.legacy);
			assert.notEqual(hashes.legacyHash, emptySha256.slice(0, 8));
			assert.equal(hashes.modelHashStatus, 'verified');
			assert.equal(hashes.legacyHashStatus, 'verified');
			assert.equal(hashes.storedModelHash, reference.model);
			assert.equal(progress.at(-1), bytes.length);
		}
	});
});

test('stale, bogus and absent stored hashes are told apart', async () => {
	await withTemp(async directory => {
		const cases: Array<[Record<string, string>, string, string]> = [
			[{sshs_model_hash: 'ab'.repeat(32), sshs_legacy_hash: '12345678'}, 'stale', 'stale'],
			[{sshs_model_hash: emptySha256, sshs_legacy_hash: 'e3b0c442'}, 'bogus', 'bogus'],
			[{sshs_model_hash: 'not a hash'}, 'bogus', 'absent'],
			[{}, 'absent', 'absent'],
		];
		for (const [index, [extra, model, legacy]] of cases.entries()) {
			const file = path.join(directory, `${index}.safetensors`);
			await writeFile(file, Buffer.concat([headerFor(bigSpecs, {...baseMetadata, ...extra}), ...bigSpecs.map(s => s.data)]));
			const hashes = await computeFileHashes(file);
			assert.equal(hashes.modelHashStatus, model, JSON.stringify(extra));
			assert.equal(hashes.legacyHashStatus, legacy, JSON.stringify(extra));
		}
	});
});

test('a file under 1 MiB has the hash of nothing as its legacy hash, and that is verified', async () => {
	await withTemp(async directory => {
		const specs = specsOf([['x.lora_down.weight', [4, 64]], ['x.lora_up.weight', [64, 4]]]);
		const data = Buffer.concat(specs.map(s => s.data));
		const metadata = {ss_network_dim: '4', sshs_model_hash: sha(data).toUpperCase(), sshs_legacy_hash: 'e3b0c442'};
		const file = path.join(directory, 'small.safetensors');
		await writeFile(file, Buffer.concat([headerFor(specs, metadata), data]));
		const hashes = await computeFileHashes(file);
		assert.equal(hashes.legacyHash, 'e3b0c442');
		assert.equal(hashes.legacyHashStatus, 'verified');
		assert.equal(hashes.modelHashStatus, 'verified', 'upper-case hex is the same hash');
	});
});

test('a header larger than 1 MiB puts the legacy window inside the header', async () => {
	const metadata = {ss_tag_frequency: JSON.stringify({dir: Object.fromEntries(Array.from({length: 60_000}, (_, i) => [`tag${i}`, i]))})};
	const reference = referenceSshs(bigSpecs, metadata);
	assert.ok(headerFor(bigSpecs, ssOnly(metadata)).length > 0x10_00_00);
	const hasher = new SshsHasher(
		bigSpecs.map((s, i) => ({name: s.name, dtype: 'F32' as const, shape: s.shape, begin: offsetOf(i), end: offsetOf(i) + s.data.length})),
		metadata,
	);
	for (const spec of bigSpecs) {
		hasher.update(spec.data);
	}

	assert.deepEqual(hasher.digest(), {modelHash: reference.model, legacyHash: reference.legacy});
});

function offsetOf(index: number): number {
	return bigSpecs.slice(0, index).reduce((sum, s) => sum + s.data.length, 0);
}

test('an older unpadded serialisation of the legacy hash is also accepted', async () => {
	await withTemp(async directory => {
		let metadata: Record<string, string> = {...baseMetadata};
		// Make the ss_-only JSON length not a multiple of 8, so padded and unpadded differ.
		while (headerFor(bigSpecs, ssOnly(metadata), false).length % 8 === 0) {
			metadata = {...metadata, ss_pad: `${metadata['ss_pad'] ?? ''}x`};
		}

		const unpadded = referenceSshs(bigSpecs, metadata, false);
		const padded = referenceSshs(bigSpecs, metadata, true);
		assert.notEqual(unpadded.legacy, padded.legacy);
		const file = path.join(directory, 'old.safetensors');
		await writeFile(file, Buffer.concat([headerFor(bigSpecs, {...metadata, sshs_legacy_hash: unpadded.legacy}), ...bigSpecs.map(s => s.data)]));
		const hashes = await computeFileHashes(file);
		assert.equal(hashes.legacyHash, padded.legacy, 'the value written is the current one');
		assert.equal(hashes.legacyHashStatus, 'verified');
	});
});

test('sshsHashesFor gives what sd-scripts would store for a file about to be written', async () => {
	const metadata = {...baseMetadata, ss_training_comment: 'résumé ✓ "quoted"\n'};
	const reference = referenceSshs(bigSpecs, metadata);
	const tensors = bigSpecs.map((s, i) => ({
		name: s.name,
		dtype: 'F32' as const,
		shape: s.shape,
		data: i % 2 === 0 ? s.data : async () => s.data,
	}));
	assert.deepEqual(await sshsHashesFor(tensors, metadata), {modelHash: reference.model, legacyHash: reference.legacy});
	// Non-ss_ keys do not change the hashes; ss_ keys change the legacy one only.
	assert.deepEqual(await sshsHashesFor(tensors, {...metadata, other: 'changed'}), {modelHash: reference.model, legacyHash: reference.legacy});
	const changed = await sshsHashesFor(tensors, {...metadata, ss_network_dim: '16'});
	assert.equal(changed.modelHash, reference.model);
	assert.equal(changed.legacyHash, referenceSshs(bigSpecs, {...metadata, ss_network_dim: '16'}).legacy);
});

test('hashStatus rules', () => {
	assert.equal(hashStatus(undefined, 'abcd1234'), 'absent');
	assert.equal(hashStatus(' ABCD1234 ', 'abcd1234'), 'verified');
	assert.equal(hashStatus('e3b0c442', 'e3b0c442'), 'verified');
	assert.equal(hashStatus('e3b0c442', 'abcd1234'), 'bogus');
	assert.equal(hashStatus('abcd12', 'abcd1234'), 'bogus');
	assert.equal(hashStatus('abcd1235', 'abcd1234'), 'stale');
});

test('cancelling and damaged files', async () => {
	await withTemp(async directory => {
		const file = path.join(directory, 'a.safetensors');
		await writeFile(file, Buffer.concat([headerFor(bigSpecs, baseMetadata), ...bigSpecs.map(s => s.data)]));
		const controller = new AbortController();
		await assert.rejects(
			computeFileHashes(file, {chunkBytes: 4096, signal: controller.signal, onProgress() {
				controller.abort(new Error('stop'));
			}}),
			/stop/,
		);
		const broken = path.join(directory, 'broken.safetensors');
		await writeFile(broken, (await readFile(file)).subarray(0, 100));
		await assert.rejects(computeFileHashes(broken), (error: unknown) => error instanceof LoraFileError && !error.reason.includes('\n'));
	});
});

test('real files: sha256 matches sha256sum; stored sshs hashes classified', {skip: missingReal ? 'needs ../shared/real-loras' : false}, async () => {
	const files = readdirSync(realDir).filter(name => name.endsWith('.safetensors'));
	assert.ok(files.length >= 5);
	for (const name of files) {
		const file = path.join(realDir, name);
		const hashes = await computeFileHashes(file);
		const bytes = await readFile(file);
		const header = await readHeader(file);
		assert.equal(hashes.sha256, sha256sum(file), name);
		assert.equal(hashes.autov2, hashes.sha256.slice(0, 10));
		assert.equal(hashes.dataSha256, sha(bytes.subarray(header.dataOffset)), name);
	}

	// The LoKr file was written by sd-scripts: its stored hashes are known good (it is < 1 MiB, so
	// the legacy hash is the hash of nothing).
	const lokr = await computeFileHashes(path.join(realDir, 'lycoris_lokr_sd15_kohya_dim4_smart_falcon.safetensors'));
	assert.equal(lokr.storedModelHash, '150ef207aad02214f69756f53c3fc56efacdf6c79e32dd76e5fcbcf6c6a5350f');
	assert.equal(lokr.dataSha256, lokr.storedModelHash);
	assert.equal(lokr.modelHashStatus, 'verified');
	assert.equal(lokr.legacyHash, 'e3b0c442');
	assert.equal(lokr.legacyHashStatus, 'verified');
	// ai-toolkit wrote the hash of nothing into a 2.4 MB file.
	const flux = await computeFileHashes(path.join(realDir, 'aitoolkit_flux_peft_transformer_4layers_r16.safetensors'));
	assert.equal(flux.modelHashStatus, 'bogus');
	assert.equal(flux.legacyHashStatus, 'bogus');
	const plain = await computeFileHashes(path.join(realDir, 'diffusers_sd15_unet_loradown_r4_f32.safetensors'));
	assert.equal(plain.modelHashStatus, 'absent');
});

test('engine job "hash": byte progress, result, cache per path + size + mtime, errors', async () => {
	await withTemp(async directory => {
		const file = path.join(directory, 'a.safetensors');
		const bytes = Buffer.concat([headerFor(bigSpecs, baseMetadata), ...bigSpecs.map(s => s.data)]);
		await writeFile(file, bytes);
		const events: EngineEvent[] = [];
		const server = new EngineServer(event => events.push(event), {resolveDevice: () => ({device: 'cpu', detail: 'test'}), progressIntervalMs: 0});
		server.handle({type: 'run', jobId: 'one', kind: 'hash', params: {path: file}});
		await server.idle();
		const result = events.find(e => e.type === 'result' && e.jobId === 'one');
		assert.ok(result?.type === 'result');
		const hashes = result.result as {sha256: string; dataSha256: string};
		assert.equal(hashes.sha256, sha256sum(file));
		const progress = events.filter((e): e is Extract<EngineEvent, {type: 'progress'}> => e.type === 'progress' && e.jobId === 'one');
		assert.ok(progress.length > 0);
		assert.deepEqual([progress.at(-1)?.done, progress.at(-1)?.total], [bytes.length, bytes.length]);

		// Same file again: served from the cache (one 'cached' step).
		server.handle({type: 'run', jobId: 'two', kind: 'hash', params: {path: file}});
		await server.idle();
		const again = events.filter(e => 'jobId' in e && e.jobId === 'two');
		assert.ok(again.some(e => e.type === 'progress' && e.label === 'cached'));
		assert.deepEqual((again.find(e => e.type === 'result') as {result: unknown}).result, hashes);

		// Changed file (new size): hashed again.
		await writeFile(file, Buffer.concat([headerFor(bigSpecs, {...baseMetadata, more: 'x'.repeat(9)}), ...bigSpecs.map(s => s.data)]));
		server.handle({type: 'run', jobId: 'three', kind: 'hash', params: {path: file}});
		await server.idle();
		const third = events.find(e => e.type === 'result' && e.jobId === 'three') as {result: {sha256: string}};
		assert.equal(third.result.sha256, sha256sum(file));
		assert.notEqual(third.result.sha256, hashes.sha256);

		server.handle({type: 'run', jobId: 'four', kind: 'hash', params: {path: path.join(directory, 'missing.safetensors')}});
		await server.idle();
		const failed = events.find(e => e.type === 'error' && e.jobId === 'four');
		assert.ok(failed?.type === 'error');
		assert.equal(failed.error.reason, 'file not found');
	});
});
