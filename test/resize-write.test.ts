import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {decodeToFloat32, encodeFromFloat32} from '../source/lora/dtypes.js';
import {computeFileHashes} from '../source/lora/hashes.js';
import {buildLoraModel} from '../source/lora/model.js';
import {networkDimAlpha, pythonFloat, resizedShapes, rewriteAdapterMetadata} from '../source/lora/resize-output.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import type {DType} from '../source/lora/types.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';
import type {JobContext} from '../source/engine/job-context.js';
import {disposeEngineKernels} from '../source/engine/kernels/index.js';
import {CancelledError, type JobParams, type JobResult} from '../source/engine/protocol.js';
import {getJobHandler} from '../source/engine/registry.js';
import '../source/engine/jobs/index.js';
import {rng} from './helpers/random.js';

let folder: string;

before(async () => {
	folder = await mkdtemp(path.join(os.tmpdir(), 'lorascope-resize-write-'));
});

after(async () => {
	await disposeEngineKernels();
	await rm(folder, {recursive: true, force: true});
});

function gaussian(random: () => number): number {
	return Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
}

type FixtureModule = {name: string; out: number; in: number; kernel?: [number, number]; rank: number; alpha?: number; zero?: boolean; dora?: boolean};

/** A kohya LoRA with factors whose product has a decaying spectrum. */
async function writeKohyaFixture(file: string, modules: FixtureModule[], dtype: DType, seed: number, extra: TensorToWrite[] = [], metadata: Record<string, string> = {}): Promise<void> {
	const random = rng(seed);
	const tensors: TensorToWrite[] = [];
	for (const module of modules) {
		const kernelSize = module.kernel ? module.kernel[0] * module.kernel[1] : 1;
		const down = new Float32Array(module.rank * module.in * kernelSize);
		const up = new Float32Array(module.out * module.rank);
		for (let i = 0; i < down.length; i++) {
			down[i] = gaussian(random) * 0.1;
		}

		for (let i = 0; i < module.out; i++) {
			for (let j = 0; j < module.rank; j++) {
				up[(i * module.rank) + j] = module.zero ? 0 : gaussian(random) * 0.1 * Math.exp(-j / 1.5);
			}
		}

		const downShape = module.kernel ? [module.rank, module.in, ...module.kernel] : [module.rank, module.in];
		const upShape = module.kernel ? [module.out, module.rank, 1, 1] : [module.out, module.rank];
		if (module.alpha !== undefined) {
			tensors.push({name: `${module.name}.alpha`, dtype, shape: [], data: encodeFromFloat32(Float32Array.of(module.alpha), dtype)});
		}

		tensors.push(
			{name: `${module.name}.lora_down.weight`, dtype, shape: downShape, data: encodeFromFloat32(down, dtype)},
			{name: `${module.name}.lora_up.weight`, dtype, shape: upShape, data: encodeFromFloat32(up, dtype)},
		);
		if (module.dora) {
			tensors.push({name: `${module.name}.dora_scale`, dtype, shape: [module.out, 1], data: encodeFromFloat32(Float32Array.from({length: module.out}, () => 1 + random()), dtype)});
		}
	}

	await writeSafetensorsAtomic(file, [...tensors, ...extra], {ss_network_dim: '4', ss_network_alpha: '2.0', ss_network_module: 'networks.lora', ss_training_comment: 'original comment', ...metadata}, {overwrite: true});
}

const prefix = 'lora_unet_down_blocks_0_attentions_0';
const standardModules: FixtureModule[] = [
	{name: `${prefix}_transformer_blocks_0_attn1_to_q`, out: 64, in: 48, rank: 6, alpha: 3},
	{name: `${prefix}_transformer_blocks_0_attn1_to_k`, out: 64, in: 48, rank: 4, alpha: 4, zero: true},
	{name: `${prefix}_transformer_blocks_0_attn1_to_v`, out: 64, in: 48, rank: 4, alpha: 2, dora: true},
	{name: `${prefix}_proj_in`, out: 32, in: 32, kernel: [1, 1], rank: 5, alpha: 1},
	{name: 'lora_unet_down_blocks_0_resnets_0_conv1', out: 16, in: 8, kernel: [3, 3], rank: 4, alpha: 4},
	{name: `${prefix}_transformer_blocks_0_ff_net_2`, out: 40, in: 80, rank: 3},
];

function lohaTensors(dtype: DType, seed: number): TensorToWrite[] {
	const random = rng(seed);
	const name = `${prefix}_transformer_blocks_0_attn2_to_out_0`;
	const make = (shape: number[]) => encodeFromFloat32(Float32Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => gaussian(random)), dtype);
	return [
		{name: `${name}.alpha`, dtype, shape: [], data: encodeFromFloat32(Float32Array.of(2), dtype)},
		{name: `${name}.hada_w1_a`, dtype, shape: [16, 2], data: make([16, 2])},
		{name: `${name}.hada_w1_b`, dtype, shape: [2, 16], data: make([2, 16])},
		{name: `${name}.hada_w2_a`, dtype, shape: [16, 2], data: make([16, 2])},
		{name: `${name}.hada_w2_b`, dtype, shape: [2, 16], data: make([2, 16])},
		{name: 'emb_params', dtype: 'F32', shape: [2, 8], data: encodeFromFloat32(Float32Array.from({length: 16}, (_, i) => i), 'F32')},
	];
}

function context(options: {signal?: AbortSignal; onProgress?: (done: number, total: number, label?: string) => void; cache?: Map<string, unknown>} = {}): JobContext {
	const signal = options.signal ?? new AbortController().signal;
	return {
		jobId: 'test',
		signal,
		progress(done, total, label) {
			options.onProgress?.(done, total, label);
		},
		log() {
			// Tests do not print engine logs.
		},
		async yield() {
			if (signal.aborted) {
				throw new CancelledError();
			}

			await new Promise(resolve => {
				setImmediate(resolve);
			});
		},
		device: 'cpu',
		cache: options.cache ?? new Map(),
	};
}

async function runResize(params: JobParams<'resize-write'>, ctx = context()): Promise<JobResult<'resize-write'>> {
	const handler = getJobHandler('resize-write');
	assert.ok(handler, 'resize-write is registered');
	return handler(params, ctx) as Promise<JobResult<'resize-write'>>;
}

type Dense = {out: number; cols: number; values: Float64Array};

/** Effective update scale·up·down in float64 for every factor module of a file. */
async function effectiveUpdates(file: string): Promise<Map<string, Dense>> {
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	try {
		const alphas = new Map<string, number>();
		for (const tensor of header.tensors) {
			if (tensor.name.endsWith('.alpha')) {
				alphas.set(tensor.name.slice(0, -'.alpha'.length), (await reader.read(tensor.name))[0]!);
			}
		}

		const out = new Map<string, Dense>();
		for (const tensor of header.tensors) {
			const match = /^(.+)\.(?:lora_down\.weight|lora_A\.weight)$/.exec(tensor.name);
			if (!match) {
				continue;
			}

			const name = match[1]!;
			const upKey = header.byName.has(`${name}.lora_up.weight`) ? `${name}.lora_up.weight` : `${name}.lora_B.weight`;
			const down = await reader.read(tensor.name);
			const up = await reader.read(upKey);
			const upInfo = header.byName.get(upKey)!;
			const rank = tensor.shape[0]!;
			const rows = upInfo.shape[0]!;
			const cols = down.length / rank;
			const scale = (alphas.get(name) ?? rank) / rank;
			const values = new Float64Array(rows * cols);
			for (let i = 0; i < rows; i++) {
				for (let t = 0; t < rank; t++) {
					const u = up[(i * rank) + t]! * scale;
					for (let j = 0; j < cols; j++) {
						values[(i * cols) + j]! += u * down[(t * cols) + j]!;
					}
				}
			}

			out.set(name, {out: rows, cols, values});
		}

		return out;
	} finally {
		await reader.close();
	}
}

function frobenius(values: Float64Array): number {
	let sum = 0;
	for (const v of values) {
		sum += v * v;
	}

	return Math.sqrt(sum);
}

function relativeError(a: Dense, b: Dense): number {
	const diff = new Float64Array(a.values.length);
	for (let i = 0; i < diff.length; i++) {
		diff[i] = a.values[i]! - b.values[i]!;
	}

	return frobenius(diff) / frobenius(a.values);
}

async function dataSha256(file: string): Promise<string> {
	const bytes = await readFile(file);
	const headerLength = Number(bytes.readBigUInt64LE(0));
	return createHash('sha256').update(bytes.subarray(8 + headerLength)).digest('hex');
}

test('rank 2 resize of an F32 kohya file: effective ΔW error equals √(1 − retained²), shapes, alphas, metadata', async () => {
	const source = path.join(folder, 'kohya_f32.safetensors');
	await writeKohyaFixture(source, standardModules, 'F32', 1, lohaTensors('F32', 2));
	const result = await runResize({path: source, method: {method: 'rank', rank: 2}});
	assert.equal(result.outPath, path.join(folder, 'kohya_f32_rank2.safetensors'));
	const before = await effectiveUpdates(source);
	const afterUpdates = await effectiveUpdates(result.outPath);
	const header = await readHeader(result.outPath);
	const sourceHeader = await readHeader(source);
	let checked = 0;
	for (const module of result.modules) {
		const reference = before.get(module.name);
		if (!reference || module.rankAfter === 0) {
			continue;
		}

		const written = afterUpdates.get(module.name)!;
		const error = relativeError(reference, written);
		const expected = Math.sqrt(Math.max(0, 1 - (module.froRetained ** 2)));
		assert.ok(Math.abs(error - expected) < 1e-3, `${module.name}: error ${error} vs √(1−r²) ${expected}`);
		// The retained fraction itself, from an independent dense SVD-free check: ‖ΔW_k‖/‖ΔW‖.
		assert.ok(Math.abs((frobenius(written.values) / frobenius(reference.values)) - module.froRetained) < 1e-3);
		checked++;
	}

	assert.equal(checked, 5);
	// Zero module removed with all its tensors; LoHa and unknown tensors copied byte for byte.
	assert.ok(result.modules.some(m => m.name.endsWith('attn1_to_k') && m.rankAfter === 0));
	assert.ok(![...header.byName.keys()].some(k => k.includes('attn1_to_k')));
	const sourceReader = await TensorReader.open(sourceHeader);
	const outReader = await TensorReader.open(header);
	try {
		for (const key of ['emb_params', `${prefix}_transformer_blocks_0_attn2_to_out_0.hada_w1_a`, `${prefix}_transformer_blocks_0_attn1_to_v.dora_scale`]) {
			assert.deepEqual(await outReader.readRaw(key), await sourceReader.readRaw(key), key);
		}

		// Shapes: linear, 1×1 conv and 3×3 conv keep their layout with the new rank.
		assert.deepEqual(header.byName.get(`${prefix}_transformer_blocks_0_attn1_to_q.lora_down.weight`)!.shape, [2, 48]);
		assert.deepEqual(header.byName.get(`${prefix}_transformer_blocks_0_attn1_to_q.lora_up.weight`)!.shape, [64, 2]);
		assert.deepEqual(header.byName.get(`${prefix}_proj_in.lora_down.weight`)!.shape, [2, 32, 1, 1]);
		assert.deepEqual(header.byName.get(`${prefix}_proj_in.lora_up.weight`)!.shape, [32, 2, 1, 1]);
		assert.deepEqual(header.byName.get('lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight')!.shape, [2, 8, 3, 3]);
		assert.deepEqual(header.byName.get('lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight')!.shape, [16, 2, 1, 1]);
		// alpha = scale × new rank (scale = source alpha / source rank); the module without alpha gets one (alpha = rank).
		const alpha = async (name: string) => (await outReader.read(`${name}.alpha`))[0]!;
		assert.equal(await alpha(`${prefix}_transformer_blocks_0_attn1_to_q`), 3 / 6 * 2);
		assert.equal(await alpha(`${prefix}_proj_in`), Math.fround(1 / 5 * 2));
		assert.equal(await alpha(`${prefix}_transformer_blocks_0_ff_net_2`), 2);
	} finally {
		await sourceReader.close();
		await outReader.close();
	}

	// dtype preserved; metadata made true.
	assert.ok(header.tensors.filter(t => t.name.includes('lora_')).every(t => t.dtype === 'F32'));
	assert.equal(header.metadata['ss_network_dim'], '2');
	assert.equal(header.metadata['ss_network_alpha'], 'Dynamic');
	assert.match(header.metadata['ss_training_comment']!, /^lorascope resize rank 2: .*; original comment$/);
	const record = JSON.parse(header.metadata['lorascope_resize']!) as {method: unknown; source: {sha256: string}; version: string};
	assert.deepEqual(record.method, {method: 'rank', rank: 2});
	assert.equal(record.source.sha256, await dataSha256(source));
	assert.equal(header.metadata['sshs_model_hash'], await dataSha256(result.outPath));
	const hashes = await computeFileHashes(result.outPath);
	assert.equal(hashes.modelHashStatus, 'verified');
	assert.equal(hashes.legacyHashStatus, 'verified');
	assert.equal(result.sizes.outputBytes, (await readFile(result.outPath)).length);
});

test('F16 input stays F16 (or the requested dtype) and dynamic methods write "Dynamic"', async () => {
	const source = path.join(folder, 'kohya_f16.safetensors');
	await writeKohyaFixture(source, standardModules.filter(m => !m.zero), 'F16', 3);
	const result = await runResize({path: source, method: {method: 'sv_fro', param: 0.9}});
	assert.equal(path.basename(result.outPath), 'kohya_f16_sv_fro0.9.safetensors');
	const header = await readHeader(result.outPath);
	assert.ok(header.tensors.every(t => t.dtype === 'F16'));
	assert.equal(header.metadata['ss_network_dim'], new Set(result.modules.map(m => m.rankAfter)).size > 1 ? 'Dynamic' : String(result.modules[0]!.rankAfter));
	const before = await effectiveUpdates(source);
	const written = await effectiveUpdates(result.outPath);
	for (const module of result.modules) {
		const error = relativeError(before.get(module.name)!, written.get(module.name)!);
		const expected = Math.sqrt(Math.max(0, 1 - (module.froRetained ** 2)));
		// F16 rounding of the new factors adds up to ~1e-3 on top of the truncation.
		assert.ok(Math.abs(error - expected) < 2e-3, `${module.name}: ${error} vs ${expected}`);
	}

	const asF32 = await runResize({path: source, method: {method: 'rank', rank: 3}, dtype: 'F32'});
	const f32Header = await readHeader(asF32.outPath);
	// Factors and alphas take the requested dtype; other tensors (dora_scale) are copied as they are.
	assert.ok(f32Header.tensors.filter(t => !t.name.endsWith('dora_scale')).every(t => t.dtype === 'F32'));
	assert.equal(f32Header.byName.get(`${prefix}_transformer_blocks_0_attn1_to_v.dora_scale`)!.dtype, 'F16');
});

test('modules whose rank does not change are copied byte for byte', async () => {
	const source = path.join(folder, 'kohya_keep.safetensors');
	await writeKohyaFixture(source, standardModules.filter(m => !m.zero), 'F16', 4);
	const result = await runResize({path: source, method: {method: 'rank', rank: 5}});
	const sourceHeader = await readHeader(source);
	const header = await readHeader(result.outPath);
	const a = await TensorReader.open(sourceHeader);
	const b = await TensorReader.open(header);
	try {
		// attn1_to_v has rank 4 ≤ 5: unchanged, so identical bytes (and its alpha).
		for (const suffix of ['lora_down.weight', 'lora_up.weight', 'alpha']) {
			const key = `${prefix}_transformer_blocks_0_attn1_to_v.${suffix}`;
			assert.deepEqual(await b.readRaw(key), await a.readRaw(key), key);
		}
	} finally {
		await a.close();
		await b.close();
	}
});

test('an existing target is not overwritten unless asked; the source never is', async () => {
	const source = path.join(folder, 'kohya_exists.safetensors');
	await writeKohyaFixture(source, standardModules.slice(0, 1), 'F32', 5);
	const target = path.join(folder, 'kohya_exists_rank2.safetensors');
	await writeFile(target, 'precious');
	await assert.rejects(runResize({path: source, method: {method: 'rank', rank: 2}}), /already exists/);
	assert.equal(await readFile(target, 'utf8'), 'precious');
	await runResize({path: source, method: {method: 'rank', rank: 2}, overwrite: true});
	assert.notEqual(await readFile(target, 'utf8'), 'precious');
	await assert.rejects(runResize({path: source, method: {method: 'rank', rank: 2}, outPath: source, overwrite: true}), /source file/);
});

test('a cancelled write leaves no file under the target name', async () => {
	const source = path.join(folder, 'kohya_cancel.safetensors');
	await writeKohyaFixture(source, standardModules, 'F32', 6);
	for (const when of ['building', 'writing']) {
		const controller = new AbortController();
		const ctx = context({
			signal: controller.signal,
			onProgress(_done, _total, label) {
				if (label?.startsWith(when)) {
					controller.abort(new CancelledError());
				}
			},
		});
		await assert.rejects(runResize({path: source, method: {method: 'rank', rank: 1}, outDir: folder}, ctx), CancelledError, when);
		const names = await readdir(folder);
		assert.ok(!names.includes('kohya_cancel_rank1.safetensors'), `${when}: target exists`);
		assert.ok(!names.some(n => n.includes('kohya_cancel_rank1') && n.includes('.lorascope-tmp-')), `${when}: temp file left`);
	}
});

test('PEFT in, PEFT out: lora_A/lora_B keys, no alpha tensors, scale carried in the factors', async () => {
	const source = path.join(folder, 'peft.safetensors');
	const random = rng(9);
	const tensors: TensorToWrite[] = [];
	const names = ['transformer.single_transformer_blocks.0.attn.to_q', 'transformer.single_transformer_blocks.0.attn.to_k'];
	for (const name of names) {
		const down = Float32Array.from({length: 8 * 24}, () => gaussian(random));
		const up = Float32Array.from({length: 24 * 8}, (_, i) => gaussian(random) * Math.exp(-(i % 8) / 2));
		tensors.push({name: `${name}.lora_A.weight`, dtype: 'BF16', shape: [8, 24], data: encodeFromFloat32(down, 'BF16')});
		tensors.push({name: `${name}.lora_B.weight`, dtype: 'BF16', shape: [24, 8], data: encodeFromFloat32(up, 'BF16')});
	}

	const adapter = JSON.stringify({['transformer.r']: 8, ['transformer.lora_alpha']: 4});
	await writeSafetensorsAtomic(source, tensors, {['lora_adapter_metadata']: adapter, format: 'pt'});
	const model = buildLoraModel(await readHeader(source));
	assert.equal(model.modules[0]!.scale, 0.5, 'fixture: PEFT alpha from adapter metadata');
	const result = await runResize({path: source, method: {method: 'sv_ratio', param: 3}});
	const header = await readHeader(result.outPath);
	assert.ok([...header.byName.keys()].every(k => /\.lora_[AB]\.weight$/.test(k)));
	assert.ok(header.tensors.every(t => t.dtype === 'BF16'));
	assert.equal(header.metadata['ss_network_dim'], undefined);
	const rewritten = buildLoraModel(header);
	for (const module of rewritten.modules) {
		assert.equal(module.scale, 1, `${module.name}: rewritten adapter metadata gives scale 1`);
	}

	// Reference: scale 0.5 × up·down of the source, against the output read with scale 1.
	const before = await effectiveUpdates(source);
	const written = await effectiveUpdates(result.outPath);
	for (const module of result.modules) {
		const reference = before.get(module.name)!;
		const halved = {...reference, values: reference.values.map(v => v * 0.5)};
		const error = relativeError(halved, written.get(module.name)!);
		assert.ok(Math.abs(error - Math.sqrt(1 - (module.froRetained ** 2))) < 1e-2, `${module.name}: ${error}`);
		assert.equal(module.alphaAfter, module.rankAfter);
	}
});

test('alpha tensors are read: a module with alpha ≠ rank keeps its effective update', async () => {
	// Guards the scale path end to end (the decomposition must see alpha/rank, not 1).
	const source = path.join(folder, 'alpha_scale.safetensors');
	await writeKohyaFixture(source, [{name: `${prefix}_transformer_blocks_0_attn1_to_q`, out: 32, in: 32, rank: 8, alpha: 1}], 'F32', 10);
	const result = await runResize({path: source, method: {method: 'rank', rank: 8}, outPath: path.join(folder, 'alpha_scale_out.safetensors')});
	const before = await effectiveUpdates(source);
	const written = await effectiveUpdates(result.outPath);
	const name = `${prefix}_transformer_blocks_0_attn1_to_q`;
	assert.ok(relativeError(before.get(name)!, written.get(name)!) < 1e-5);
	const sv = await runResize({path: source, method: {method: 'rank', rank: 3}, outPath: path.join(folder, 'alpha_scale_r3.safetensors')});
	const three = await effectiveUpdates(sv.outPath);
	const module = sv.modules[0]!;
	assert.ok(Math.abs(relativeError(before.get(name)!, three.get(name)!) - Math.sqrt(1 - (module.froRetained ** 2))) < 1e-3);
	assert.equal(module.alphaAfter, 1 / 8 * 3);
});

test('pure helpers: shapes, python floats, dim/alpha strings, adapter metadata', () => {
	assert.deepEqual(resizedShapes([8, 320, 3, 3], [640, 8, 1, 1], 3), {down: [3, 320, 3, 3], up: [640, 3, 1, 1]});
	assert.equal(pythonFloat(4), '4.0');
	assert.equal(pythonFloat(2.5), '2.5');
	assert.deepEqual(networkDimAlpha([4, 4], [2, 2]), {dim: '4', alpha: '2.0'});
	assert.deepEqual(networkDimAlpha([4, 8], [2, 4]), {dim: 'Dynamic', alpha: 'Dynamic'});
	const json = rewriteAdapterMetadata(JSON.stringify({['transformer.r']: 16, ['transformer.lora_alpha']: 8, ['transformer.use_rslora']: true}), [{name: 'transformer.a.b'}, {name: 'transformer.c'}, {name: 'transformer.d'}], [
		{name: 'transformer.a.b', rankBefore: 16, rankAfter: 4, alphaAfter: 4, froRetained: 0.9, action: 'resize'},
		{name: 'transformer.c', rankBefore: 16, rankAfter: 4, alphaAfter: 4, froRetained: 0.9, action: 'resize'},
		{name: 'transformer.d', rankBefore: 16, rankAfter: 7, alphaAfter: 7, froRetained: 0.9, action: 'resize'},
	]);
	assert.deepEqual(JSON.parse(json!), {
		['transformer.r']: 4,
		['transformer.lora_alpha']: 4,
		['transformer.use_rslora']: false,
		['transformer.rank_pattern']: {d: 7},
		['transformer.alpha_pattern']: {d: 7},
	});
	assert.equal(rewriteAdapterMetadata('not json', [], []), null);
	assert.equal(decodeToFloat32(encodeFromFloat32(Float32Array.of(1.5), 'F16'), 'F16')[0], 1.5);
});
