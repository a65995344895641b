import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {mkdtemp, readFile, readdir, rm, stat} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {decodeToFloat32} from '../source/lora/dtypes.js';
import {buildLoraModel, loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {builtInSamples, ensureSamples, factorPair, generateSample, sampleKinds, writeSample, type SampleKind, type SampleOptions} from '../source/lora/samples.js';
import type {Arch, KeyStyle, NetworkType} from '../source/lora/types.js';

let dir: string;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-samples-'));
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

test('the same kind and options give the same bytes', async () => {
	for (const kind of ['sd15-lora', 'sd15-lokr', 'flux-peft', 'sd15-loha'] as const) {
		const a = path.join(dir, `${kind}-a.safetensors`);
		const b = path.join(dir, `${kind}-b.safetensors`);
		await writeSample(a, kind, {rank: 1, textEncoder: false});
		await writeSample(b, kind, {rank: 1, textEncoder: false});
		const [bytesA, bytesB] = await Promise.all([readFile(a), readFile(b)]);
		assert.ok(bytesA.length > 1000);
		assert.ok(bytesA.equals(bytesB), `${kind} differs between runs`);
	}

	// And a different seed changes the weights.
	const c = path.join(dir, 'seed2.safetensors');
	await writeSample(c, 'sd15-lora', {rank: 1, textEncoder: false, seed: 2});
	assert.ok(!(await readFile(c)).equals(await readFile(path.join(dir, 'sd15-lora-a.safetensors'))));
});

const expectations: Record<SampleKind, {options: SampleOptions; keyStyle: KeyStyle; networkType: NetworkType; arch: Arch; rank: number; alpha: number}> = {
	'sd15-lora': {options: {rank: 2, alpha: 1}, keyStyle: 'kohya', networkType: 'LoRA', arch: 'sd1', rank: 2, alpha: 1},
	'sd15-locon': {options: {rank: 2, alpha: 1, convRank: 2, convAlpha: 1}, keyStyle: 'kohya', networkType: 'LoCon', arch: 'sd1', rank: 2, alpha: 1},
	'sdxl-lora': {options: {rank: 1, alpha: 1}, keyStyle: 'kohya', networkType: 'LoRA', arch: 'sdxl', rank: 1, alpha: 1},
	'flux-lora': {options: {rank: 1, alpha: 1}, keyStyle: 'kohya', networkType: 'LoRA', arch: 'flux', rank: 1, alpha: 1},
	'sd15-loha': {options: {rank: 2, alpha: 1}, keyStyle: 'lycoris', networkType: 'LoHa', arch: 'sd1', rank: 2, alpha: 1},
	'sd15-lokr': {options: {}, keyStyle: 'lycoris', networkType: 'LoKr', arch: 'sd1', rank: 4, alpha: 4},
	'flux-peft': {options: {rank: 2, alpha: 4}, keyStyle: 'peft', networkType: 'LoRA', arch: 'flux', rank: 2, alpha: 4},
	'sd15-epoch': {options: {epoch: 2}, keyStyle: 'kohya', networkType: 'LoRA', arch: 'sd1', rank: 2, alpha: 1},
};

test('every kind reads back with the expected style, type, architecture, rank and alpha', async () => {
	assert.deepEqual([...sampleKinds].sort(), Object.keys(expectations).sort());
	for (const kind of sampleKinds) {
		const expected = expectations[kind];
		const file = path.join(dir, `${kind}.safetensors`);
		await writeSample(file, kind, expected.options);
		const header = await readHeader(file);
		const reader = await TensorReader.open(header);
		const model = await loadLoraModel(header, async name => reader.read(name));
		await reader.close();
		assert.equal(model.keyStyle, expected.keyStyle, kind);
		assert.equal(model.networkType, expected.networkType, kind);
		assert.equal(model.arch, expected.arch, `${kind}: ${model.archEvidence}`);
		assert.equal(model.rank, expected.rank, kind);
		assert.equal(model.alpha, expected.alpha, kind);
		assert.deepEqual(model.warnings, [], kind);
		assert.deepEqual(model.unknownTensors, [], kind);
		assert.equal(model.metadataArch === null || model.metadataArch === model.arch, true, `${kind} metadata claims ${model.metadataArch}`);
		assert.equal(buildLoraModel(header).modules.length, model.modules.length);
		for (const tensor of header.tensors) {
			assert.equal(tensor.dtype, 'F16', `${kind} ${tensor.name}`);
		}
	}
});

test('module lists have the real architectures\' counts', async () => {
	const counts: Array<[SampleKind, SampleOptions, number]> = [
		['sd15-lora', {rank: 1}, 192 + 72],
		['sd15-locon', {rank: 1, convRank: 1}, 350],
		['sdxl-lora', {rank: 1}, 722 + 72 + 192],
		['flux-lora', {rank: 1}, (19 * 10) + (38 * 3)],
		['sd15-lokr', {}, 350],
	];
	for (const [kind, options, modules] of counts) {
		const sample = await generateSample(kind, {...options, hashes: false});
		const names = new Set(sample.tensors.filter(t => !t.name.endsWith('.alpha')).map(t => t.name.slice(0, t.name.indexOf('.'))));
		assert.equal(names.size, modules, kind);
	}
});

test('LoKr factors follow LyCORIS\' factorisation as real files show', () => {
	assert.deepEqual(factorPair(320), [20, 16]);
	assert.deepEqual(factorPair(2560), [64, 40]);
	assert.deepEqual(factorPair(2880), [60, 48]);
	assert.deepEqual(factorPair(768), [32, 24]);
	assert.deepEqual(factorPair(3072), [64, 48]);
});

function tensorValues(sample: Awaited<ReturnType<typeof generateSample>>, name: string): {values: Float32Array; shape: number[]} {
	const tensor = sample.tensors.find(t => t.name === name);
	assert.ok(tensor, name);
	return {values: decodeToFloat32(tensor.data as Uint8Array, tensor.dtype), shape: tensor.shape};
}

test('up·down has the designed decaying spectrum', async () => {
	const sample = await generateSample('sd15-lora', {rank: 6, alpha: 3, textEncoder: false, dtype: 'F32', hashes: false});
	const name = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q';
	const spectrum = sample.spectra[name]!;
	assert.equal(spectrum.length, 6);
	for (let i = 1; i < spectrum.length; i++) {
		assert.ok(spectrum[i]! <= spectrum[i - 1]!, 'descending');
	}

	assert.ok(spectrum[5]! < spectrum[0]! / 2, 'decays');
	const up = tensorValues(sample, `${name}.lora_up.weight`);
	const down = tensorValues(sample, `${name}.lora_down.weight`);
	const [m, r] = up.shape as [number, number];
	const n = down.shape[1]!;
	// Dense product in float64, then its Gram's eigenvalues by power iteration with deflation.
	const product = new Float64Array(m * n);
	for (let i = 0; i < m; i++) {
		for (let k = 0; k < r; k++) {
			const x = up.values[(i * r) + k]!;
			for (let j = 0; j < n; j++) {
				product[(i * n) + j]! += x * down.values[(k * n) + j]!;
			}
		}
	}

	let fro = 0;
	for (const v of product) {
		fro += v * v;
	}

	const designed = spectrum.reduce((sum, s) => sum + (s * s), 0);
	assert.ok(Math.abs(fro - designed) / designed < 1e-5, `‖up·down‖² ${fro} vs Σs² ${designed}`);
	// Largest singular value by power iteration on productᵀ·product.
	let v = new Float64Array(n).fill(1);
	let sigma = 0;
	for (let iteration = 0; iteration < 200; iteration++) {
		const u = new Float64Array(m);
		for (let i = 0; i < m; i++) {
			let sum = 0;
			for (let j = 0; j < n; j++) {
				sum += product[(i * n) + j]! * v[j]!;
			}

			u[i] = sum;
		}

		const w = new Float64Array(n);
		for (let i = 0; i < m; i++) {
			for (let j = 0; j < n; j++) {
				w[j]! += product[(i * n) + j]! * u[i]!;
			}
		}

		const norm = Math.sqrt(w.reduce((sum, x) => sum + (x * x), 0));
		sigma = Math.sqrt(norm);
		v = w.map(x => x / norm);
	}

	assert.ok(Math.abs(sigma - spectrum[0]!) / spectrum[0]! < 1e-3, `σ₁ ${sigma} vs designed ${spectrum[0]}`);
});

test('metadata is written the way sd-scripts writes it', async () => {
	const sample = await generateSample('sd15-lora', {rank: 1, textEncoder: false});
	const md = sample.metadata;
	assert.equal(md['ss_network_module'], 'networks.lora');
	assert.equal(md['ss_network_dim'], '1');
	assert.equal(md['ss_network_alpha'], '4.0');
	assert.equal(md['ss_learning_rate'], '0.0001');
	assert.equal(md['ss_text_encoder_lr'], 'None');
	assert.equal(md['ss_network_dropout'], 'None');
	assert.equal(md['ss_full_fp16'], 'False');
	assert.equal(md['ss_resolution'], '(512, 512)');
	assert.equal(md['ss_base_model_version'], 'sd_v1');
	assert.match(md['ss_training_started_at']!, /^\d{10}\.\d+$/);
	assert.ok(Number(md['ss_training_finished_at']) > Number(md['ss_training_started_at']));
	assert.equal(md['ss_steps'], String(Number(md['ss_num_batches_per_epoch']) * 10));
	const tags = JSON.parse(md['ss_tag_frequency']!) as Record<string, Record<string, number>>;
	const dirs = JSON.parse(md['ss_dataset_dirs']!) as Record<string, {n_repeats: number; img_count: number}>;
	assert.deepEqual(Object.keys(tags).sort(), Object.keys(dirs).sort());
	assert.ok(Object.keys(dirs).length >= 1 && Object.keys(dirs).length <= 2);
	for (const [dir, counts] of Object.entries(tags)) {
		assert.ok(Object.keys(counts).length >= 24, `${dir}: dozens of tags`);
		for (const count of Object.values(counts)) {
			assert.ok(Number.isInteger(count) && count >= 1 && count <= dirs[dir]!.img_count);
		}
	}

	// json.dumps escapes non-ASCII; the spacing is Python's.
	assert.doesNotMatch(md['ss_tag_frequency']!, /[^\u0000-\u007F]/);
	assert.match(md['ss_dataset_dirs']!, /^\{"\d+_[^"]+": \{"n_repeats": \d+, "img_count": \d+\}/);
	const buckets = JSON.parse(md['ss_bucket_info']!) as {buckets: Record<string, {resolution: number[]; count: number}>};
	const bucketImages = Object.values(buckets.buckets).reduce((sum, b) => sum + b.count, 0);
	assert.equal(bucketImages, Number(md['ss_num_train_images']));
	// sshs_model_hash = sha256 of the data area (independently computed here).
	const file = path.join(dir, 'hashed.safetensors');
	await writeSample(file, 'sd15-lora', {rank: 1, textEncoder: false});
	const bytes = await readFile(file);
	const headerLength = Number(bytes.readBigUInt64LE(0));
	const data = bytes.subarray(8 + headerLength);
	assert.equal((await readHeader(file)).metadata['sshs_model_hash'], createHash('sha256').update(data).digest('hex'));
});

test('an epoch series is one run with growing updates', async () => {
	const epochs = [];
	for (let epoch = 1; epoch <= 4; epoch++) {
		epochs.push(await generateSample('sd15-epoch', {epoch, textEncoder: false, hashes: false}));
	}

	const session = epochs[0]!.metadata['ss_session_id'];
	let previousEnergy = 0;
	let previousSteps = 0;
	for (const [index, sample] of epochs.entries()) {
		assert.equal(sample.metadata['ss_session_id'], session);
		assert.equal(sample.metadata['ss_output_name'], 'mira_lsc');
		assert.equal(sample.metadata['ss_epoch'], String(index + 1));
		const steps = Number(sample.metadata['ss_steps']);
		assert.ok(steps > previousSteps);
		previousSteps = steps;
		// ‖up·down‖² summed over the file, from the raw tensors (down rows are orthonormal/√3).
		let energy = 0;
		for (const tensor of sample.tensors.filter(t => t.name.endsWith('.lora_up.weight'))) {
			for (const v of decodeToFloat32(tensor.data as Uint8Array, tensor.dtype)) {
				energy += v * v;
			}
		}

		assert.ok(energy > previousEnergy * 1.05, `epoch ${index + 1} energy ${energy} after ${previousEnergy}`);
		previousEnergy = energy;
	}
});

test('PEFT sample carries alpha in lora_adapter_metadata', async () => {
	const sample = await generateSample('flux-peft', {rank: 2, alpha: 4});
	const config = JSON.parse(sample.metadata['lora_adapter_metadata']!) as Record<string, unknown>;
	assert.equal(config['transformer.r'], 2);
	assert.equal(config['transformer.lora_alpha'], 4);
	assert.ok(sample.tensors.every(t => /^transformer\.transformer_blocks\.\d+\.attn\.[\w.]+\.lora_[AB]\.weight$/.test(t.name)));
	assert.equal(sample.metadata['sshs_model_hash'], undefined);
});

test('ensureSamples builds the set once, atomically, and reuses it', {timeout: 120_000}, async () => {
	const cache = path.join(dir, 'cache');
	const folder = await ensureSamples(cache);
	assert.equal(folder, path.join(cache, 'samples-v1'));
	let total = 0;
	for (const sample of builtInSamples) {
		const info = await stat(path.join(folder, sample.file));
		total += info.size;
		const header = await readHeader(path.join(folder, sample.file));
		assert.ok(buildLoraModel(header).modules.length > 0, sample.file);
	}

	assert.ok(total < 80 * 1024 * 1024, `samples total ${total} bytes`);
	const first = (await stat(path.join(folder, builtInSamples[0]!.file))).mtimeMs;
	assert.equal(await ensureSamples(cache), folder);
	assert.equal((await stat(path.join(folder, builtInSamples[0]!.file))).mtimeMs, first, 'not regenerated');
	// No temporary build folders are left behind.
	assert.deepEqual((await readdir(cache)).filter(name => name !== 'samples-v1'), []);
});
