import assert from 'node:assert/strict';
import {mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import type {JobContext} from '../source/engine/job-context.js';
import {spectralNorm, sumOfSquares, type BaseNormsParams, type BaseNormsResult} from '../source/engine/jobs/base-norms.js';
import {jsKernels} from '../source/engine/kernels/js-kernels.js';
import {disposeEngineKernels} from '../source/engine/kernels/index.js';
import {CancelledError} from '../source/engine/protocol.js';
import {getJobHandler} from '../source/engine/registry.js';
import {decodeToFloat32, encodeFromFloat32} from '../source/lora/dtypes.js';
import {parseRecipe, planResize} from '../source/lora/resize-plan.js';
import type {DType, ModuleSpectrum} from '../source/lora/types.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';
import '../source/engine/jobs/index.js';
import {orthonormal, rng} from './helpers/random.js';

let folder: string;

before(async () => {
	folder = await mkdtemp(path.join(os.tmpdir(), 'lorascope-base-norms-'));
});

after(async () => {
	await disposeEngineKernels();
	await rm(folder, {recursive: true, force: true});
});

/** W = Σ s_i u_i v_iᵀ: a rows×cols matrix with exactly these singular values. */
function matrixWithSpectrum(random: () => number, rows: number, cols: number, singular: number[]): Float32Array {
	const u = orthonormal(random, rows, singular.length);
	const v = orthonormal(random, cols, singular.length);
	const w = new Float32Array(rows * cols);
	for (let i = 0; i < rows; i++) {
		for (let j = 0; j < cols; j++) {
			let sum = 0;
			for (const [k, s] of singular.entries()) {
				sum += s * u[k]![i]! * v[k]![j]!;
			}

			w[(i * cols) + j] = sum;
		}
	}

	return w;
}

test('spectralNorm (Lanczos) matches the designed σ_max', async () => {
	const random = rng(1);
	for (const [rows, cols, singular] of [
		[40, 30, [5, 4.9, 3, 1, 0.5]],
		[17, 64, [2, 1.999, 1.5]],
		[50, 50, Array.from({length: 50}, (_, i) => 10 * Math.exp(-i / 10))],
		[8, 3, [1, 1, 1]],
	] as Array<[number, number, number[]]>) {
		const w = matrixWithSpectrum(random, rows, cols, singular);
		const sigma = await spectralNorm(w, rows, cols, jsKernels);
		assert.ok(Math.abs(sigma - singular[0]!) < 1e-4 * singular[0]!, `${rows}×${cols}: ${sigma} vs ${singular[0]}`);
	}

	assert.equal(await spectralNorm(new Float32Array(12), 3, 4, jsKernels), 0);
});

function context(): JobContext {
	const controller = new AbortController();
	return {
		jobId: 'test',
		signal: controller.signal,
		progress() {
			// Not shown in tests.
		},
		log() {
			// Not shown in tests.
		},
		async yield() {
			if (controller.signal.aborted) {
				throw new CancelledError();
			}
		},
		device: 'cpu',
		cache: new Map(),
	};
}

function f(values: Float32Array, dtype: DType = 'F32'): Uint8Array {
	return encodeFromFloat32(values, dtype);
}

test('base-norms job: mapped weights, fused OpenCLIP q/k/v rows, disk cache, unmapped modules', async () => {
	const random = rng(2);
	const loraTensors: TensorToWrite[] = [];
	const lora = (name: string, out: number, inDim: number) => {
		loraTensors.push(
			{name: `${name}.alpha`, dtype: 'F32', shape: [], data: f(Float32Array.of(2))},
			{name: `${name}.lora_down.weight`, dtype: 'F16', shape: [4, inDim], data: f(Float32Array.from({length: 4 * inDim}, () => random() - 0.5), 'F16')},
			{name: `${name}.lora_up.weight`, dtype: 'F16', shape: [out, 4], data: f(Float32Array.from({length: out * 4}, () => random() - 0.5), 'F16')},
		);
	};

	lora('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', 64, 64);
	lora('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', 64, 96);
	lora('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 48, 48);
	lora('lora_te2_text_model_encoder_layers_0_self_attn_k_proj', 48, 48);
	lora('lora_te2_text_model_encoder_layers_0_self_attn_v_proj', 48, 48);
	lora('lora_unet_output_blocks_0_1_proj_out', 64, 64);
	const loraPath = path.join(folder, 'lora.safetensors');
	await writeSafetensorsAtomic(loraPath, loraTensors, {ss_network_module: 'networks.lora'});

	// Base: designed spectra; the fused in_proj stacks q, k, v with different σ_max each.
	const q = matrixWithSpectrum(random, 48, 48, [3, 1]);
	const k = matrixWithSpectrum(random, 48, 48, [7, 2]);
	const v = matrixWithSpectrum(random, 48, 48, [0.5, 0.25]);
	const inProj = new Float32Array(144 * 48);
	inProj.set(q, 0);
	inProj.set(k, 48 * 48);
	inProj.set(v, 2 * 48 * 48);
	const baseTensors: TensorToWrite[] = [
		{name: 'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight', dtype: 'F32', shape: [144, 48], data: f(inProj)},
		{name: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight', dtype: 'F16', shape: [64, 64], data: f(matrixWithSpectrum(random, 64, 64, [4, 3, 2]), 'F16')},
		{name: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight', dtype: 'BF16', shape: [64, 96], data: f(matrixWithSpectrum(random, 64, 96, [1.5, 1]), 'BF16')},
		{name: 'first_stage_model.decoder.conv_in.weight', dtype: 'F32', shape: [4, 4, 1, 1], data: f(new Float32Array(16))},
	];
	const basePath = path.join(folder, 'base.safetensors');
	await writeSafetensorsAtomic(basePath, baseTensors, undefined);

	const handler = getJobHandler('base-norms');
	assert.ok(handler);
	const cacheDir = path.join(folder, 'cache');
	const run = async () => handler({basePath, loraPath, cacheDir}, context()) as Promise<BaseNormsResult>;
	const first = await run();
	assert.equal(first.cached, false);
	assert.deepEqual(first.unmapped, ['lora_unet_output_blocks_0_1_proj_out']);
	const expected: Record<string, {spectral: number; frobenius: number; tolerance: number}> = {
		['lora_te2_text_model_encoder_layers_0_self_attn_q_proj']: {spectral: 3, frobenius: Math.hypot(3, 1), tolerance: 1e-5},
		['lora_te2_text_model_encoder_layers_0_self_attn_k_proj']: {spectral: 7, frobenius: Math.hypot(7, 2), tolerance: 1e-5},
		['lora_te2_text_model_encoder_layers_0_self_attn_v_proj']: {spectral: 0.5, frobenius: Math.hypot(0.5, 0.25), tolerance: 1e-5},
		// F16 / BF16 storage rounds the weights: looser bounds.
		['lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q']: {spectral: 4, frobenius: Math.hypot(4, 3, 2), tolerance: 2e-3},
		['lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k']: {spectral: 1.5, frobenius: Math.hypot(1.5, 1), tolerance: 1e-2},
	};
	assert.deepEqual(Object.keys(first.norms).sort(), Object.keys(expected).sort());
	for (const [name, reference] of Object.entries(expected)) {
		const norm = first.norms[name]!;
		assert.ok(Math.abs(norm.spectral - reference.spectral) < reference.tolerance * reference.spectral, `${name} σ ${norm.spectral} vs ${reference.spectral}`);
		assert.ok(Math.abs(norm.frobenius - reference.frobenius) < reference.tolerance * reference.frobenius, `${name} F ${norm.frobenius} vs ${reference.frobenius}`);
	}

	const second = await run();
	assert.equal(second.cached, true);
	assert.deepEqual(second.norms, first.norms);

	// The norms drive spn_ckpt: keep S_i ≥ 10^thr · σ_max(W) per module.
	const spectra: ModuleSpectrum[] = Object.keys(expected).map(name => ({
		name, block: 'X', blockOrder: 0, component: 'unet', algo: 'lora', kind: 'linear', outDim: 48, inDim: 48, kernel: null,
		rank: 4, alpha: 2, scale: 0.5, dtype: 'F16', singularValues: [1, 0.3, 0.1, 0.01], resizable: true,
	}));
	const plan = planResize(spectra, parseRecipe('spn_ckpt=1,thr=-1.2'), {base: first.norms});
	for (const module of plan.modules) {
		const sigma = first.norms[module.name]!.spectral;
		assert.equal(module.rankAfter, [1, 0.3, 0.1, 0.01].filter(s => Math.log10(s) - Math.log10(sigma) > -1.2).length, module.name);
	}
});

/** A LoRA module's three tensors (values do not matter to the base norms). */
function loraModule(random: () => number, name: string, out: number, inDim: number): TensorToWrite[] {
	return [
		{name: `${name}.alpha`, dtype: 'F32', shape: [], data: f(Float32Array.of(2))},
		{name: `${name}.lora_down.weight`, dtype: 'F16', shape: [4, inDim], data: f(Float32Array.from({length: 4 * inDim}, () => random() - 0.5), 'F16')},
		{name: `${name}.lora_up.weight`, dtype: 'F16', shape: [out, 4], data: f(Float32Array.from({length: out * 4}, () => random() - 0.5), 'F16')},
	];
}

/** ‖W‖_F in float64 of the values as stored in `dtype` (rounded by the dtype codec, summed here). */
function storedFrobenius(values: Float32Array, dtype: DType): number {
	const stored = decodeToFloat32(encodeFromFloat32(values, dtype), dtype);
	let sum = 0;
	for (const x of stored) {
		sum += x * x;
	}

	return Math.sqrt(sum);
}

type Fixture = {
	basePath: string;
	/** LoRA holding only the first two modules, and one holding all. */
	smallLora: string;
	fullLora: string;
	/** Per module: ‖W‖_F (float64 of the stored values), designed σ_max and its tolerance. */
	expected: Record<string, {frobenius: number; spectral: number; tolerance: number}>;
};

/**
 * A base with every stored dtype, a fused q/k/v weight read by row ranges, an odd F16 element
 * count and a weight larger than the stream's 8 MiB read chunk.
 */
async function fixture(name: string): Promise<Fixture> {
	const random = rng(7);
	const dir = path.join(folder, name);
	await mkdir(dir, {recursive: true});
	const modules: Array<{lora: string; key: string; dtype: DType; rows: number; cols: number; singular: number[]; tolerance: number}> = [
		{lora: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight', dtype: 'F16', rows: 40, cols: 24, singular: [4, 3, 2], tolerance: 2e-3},
		{lora: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k', key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_k.weight', dtype: 'F64', rows: 9, cols: 7, singular: [2, 1], tolerance: 1e-5},
		{lora: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_v', key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_v.weight', dtype: 'F16', rows: 7, cols: 9, singular: [1.5, 0.5], tolerance: 2e-3},
		{lora: 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight', dtype: 'BF16', rows: 32, cols: 48, singular: [1.5, 1], tolerance: 1e-2},
		// 1100 × 2048 F32 = 8.6 MiB: read in two pieces.
		{lora: 'lora_unet_output_blocks_0_1_proj_out', key: 'model.diffusion_model.output_blocks.0.1.proj_out.weight', dtype: 'F32', rows: 1100, cols: 2048, singular: [6, 5], tolerance: 1e-4},
	];
	const baseTensors: TensorToWrite[] = [];
	const loraTensors: TensorToWrite[] = [];
	const expected: Fixture['expected'] = {};
	for (const module of modules) {
		// The big one: plain noise, built cheaply (assertSpectral only bounds its σ_max).
		const values = module.rows > 100
			? Float32Array.from({length: module.rows * module.cols}, () => (random() - 0.5) * 1e-3)
			: matrixWithSpectrum(random, module.rows, module.cols, module.singular);
		baseTensors.push({name: module.key, dtype: module.dtype, shape: [module.rows, module.cols], data: f(values, module.dtype)});
		loraTensors.push(...loraModule(random, module.lora, module.rows, module.cols));
		expected[module.lora] = {frobenius: storedFrobenius(values, module.dtype), spectral: module.singular[0]!, tolerance: module.tolerance};
	}

	// Fused OpenCLIP in_proj: q, k, v are row ranges of one F16 weight.
	const parts = [[3, 1], [7, 2], [0.5, 0.25]].map(singular => matrixWithSpectrum(random, 16, 16, singular));
	const inProj = new Float32Array(48 * 16);
	for (const [index, part] of parts.entries()) {
		inProj.set(part, index * 16 * 16);
	}

	baseTensors.push({name: 'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight', dtype: 'F16', shape: [48, 16], data: f(inProj, 'F16')});
	for (const [index, part] of ['q', 'k', 'v'].entries()) {
		const lora = `lora_te2_text_model_encoder_layers_0_self_attn_${part}_proj`;
		loraTensors.push(...loraModule(random, lora, 16, 16));
		expected[lora] = {frobenius: storedFrobenius(parts[index]!, 'F16'), spectral: [3, 7, 0.5][index]!, tolerance: 2e-3};
	}

	const basePath = path.join(dir, 'base.safetensors');
	await writeSafetensorsAtomic(basePath, baseTensors, undefined);
	const fullLora = path.join(dir, 'full.safetensors');
	await writeSafetensorsAtomic(fullLora, loraTensors, {ss_network_module: 'networks.lora'});
	const smallNames = new Set(modules.slice(0, 2).map(m => m.lora));
	const smallLora = path.join(dir, 'small.safetensors');
	await writeSafetensorsAtomic(smallLora, loraTensors.filter(t => smallNames.has(t.name.slice(0, t.name.indexOf('.')))), {ss_network_module: 'networks.lora'});
	return {basePath, smallLora, fullLora, expected};
}

async function runJob(params: BaseNormsParams, ctx = context()): Promise<BaseNormsResult> {
	return getJobHandler('base-norms')!(params, ctx) as Promise<BaseNormsResult>;
}

function assertFrobenius(result: BaseNormsResult, expected: Fixture['expected'], names = Object.keys(expected)): void {
	for (const name of names) {
		const norm = result.norms[name];
		assert.ok(norm, name);
		// Both sides sum the same stored values in float64: only the summation order differs.
		assert.ok(Math.abs(norm.frobenius - expected[name]!.frobenius) <= 1e-12 * expected[name]!.frobenius, `${name} F ${norm.frobenius} vs ${expected[name]!.frobenius}`);
	}
}

function assertSpectral(result: BaseNormsResult, expected: Fixture['expected'], names: string[]): void {
	for (const name of names) {
		if (name === 'lora_unet_output_blocks_0_1_proj_out') {
			// Noise only: σ_max lies between ‖W‖_F/√rank and ‖W‖_F.
			const {frobenius, spectral} = result.norms[name]!;
			assert.ok(spectral > frobenius / Math.sqrt(1100) && spectral <= frobenius * (1 + 1e-6), `${name} σ ${spectral}`);
			continue;
		}

		const reference = expected[name]!;
		const sigma = result.norms[name]!.spectral;
		assert.ok(Math.abs(sigma - reference.spectral) < reference.tolerance * reference.spectral, `${name} σ ${sigma} vs ${reference.spectral}`);
	}
}

async function cacheFileOf(cacheDir: string): Promise<string> {
	const names = await readdir(path.join(cacheDir, 'base-norms'));
	const json = names.filter(n => n.endsWith('.json'));
	assert.equal(json.length, 1, names.join(', '));
	return path.join(cacheDir, 'base-norms', json[0]!);
}

test('need "frobenius": ‖W‖_F of every dtype, row slices and chunked reads; σ_max left NaN; cached', async () => {
	const {basePath, fullLora, expected} = await fixture('fro-only');
	const cacheDir = path.join(folder, 'fro-only', 'cache');
	const first = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	const names = Object.keys(expected);
	assert.deepEqual(Object.keys(first.norms).sort(), [...names].sort());
	assert.deepEqual(first.unmapped, []);
	assert.equal(first.cached, false);
	assert.deepEqual(first.computed, {frobenius: names.length, spectral: 0});
	assertFrobenius(first, expected);
	for (const name of names) {
		assert.ok(Number.isNaN(first.norms[name]!.spectral), name);
	}

	const second = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	assert.equal(second.cached, true);
	assert.deepEqual(second.computed, {frobenius: 0, spectral: 0});
	assert.deepEqual(second.norms, first.norms);

	// The fro_ckpt recipe plans on these norms; spn_ckpt refuses them instead of leaving modules unscored.
	const singular = [1, 0.3, 0.1, 0.01];
	const spectra: ModuleSpectrum[] = names.map(name => ({
		name, block: 'X', blockOrder: 0, component: 'unet', algo: 'lora', kind: 'linear', outDim: 16, inDim: 16, kernel: null,
		rank: 4, alpha: 2, scale: 0.5, dtype: 'F16', singularValues: singular, resizable: true,
	}));
	const plan = planResize(spectra, parseRecipe('fro_ckpt=1,thr=-1.5'), {base: first.norms});
	for (const module of plan.modules) {
		const keep = singular.filter(s => Math.log10(s) - Math.log10(expected[module.name]!.frobenius) > -1.5).length;
		assert.equal(module.rankAfter, keep, module.name);
	}

	assert.ok(plan.modules.some(m => m.rankAfter > 0 && m.rankAfter < 4), 'the threshold must separate some values');
	assert.throws(() => planResize(spectra, parseRecipe('spn_ckpt=1,thr=-1.2'), {base: first.norms}), /σ_max/);
	assert.throws(() => planResize(spectra, parseRecipe('spn_ckpt=0.5,fro_ckpt=0.5,thr=-1.2'), {base: first.norms}), /only ‖W‖_F/);
});

test('cache upgrade: "both" computes only the missing σ_max; "frobenius" is served from complete entries', async () => {
	const {basePath, smallLora, fullLora, expected} = await fixture('upgrade');
	const cacheDir = path.join(folder, 'upgrade', 'cache');
	const names = Object.keys(expected);
	const smallNames = names.slice(0, 2);
	const small = await runJob({basePath, loraPath: smallLora, cacheDir, need: 'both'});
	assert.deepEqual(small.computed, {frobenius: 2, spectral: 2});
	assertSpectral(small, expected, smallNames);

	// Only the modules the small LoRA lacks are streamed; the others come back with their σ_max.
	const fro = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	assert.deepEqual(fro.computed, {frobenius: names.length - 2, spectral: 0});
	assert.equal(fro.cached, false);
	assertFrobenius(fro, expected);
	for (const name of names) {
		assert.equal(Number.isNaN(fro.norms[name]!.spectral), !smallNames.includes(name), name);
	}

	// Mark a cached σ_max: it must come back untouched (not recomputed) by the 'both' run.
	const file = await cacheFileOf(cacheDir);
	const content = JSON.parse(await readFile(file, 'utf8')) as {version: number; norms: Record<string, {frobenius: number; spectral?: number}>};
	assert.equal(content.version, 2);
	const marked = 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight';
	assert.ok(content.norms[marked]?.spectral !== undefined);
	content.norms[marked]!.spectral = 123.5;
	await writeFile(file, JSON.stringify(content));

	const both = await runJob({basePath, loraPath: fullLora, cacheDir});
	assert.deepEqual(both.computed, {frobenius: 0, spectral: names.length - 2});
	assert.equal(both.norms[smallNames[0]!]!.spectral, 123.5);
	assertSpectral(both, expected, names.slice(1));
	assertFrobenius(both, expected);

	const again = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	assert.equal(again.cached, true);
	assert.deepEqual(again.norms, both.norms);
});

test('a garbled, stale or old-version cache file is ignored or read safely, never fatal', async () => {
	const {basePath, fullLora, expected} = await fixture('garbled');
	const cacheDir = path.join(folder, 'garbled', 'cache');
	const names = Object.keys(expected);
	const reference = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	const file = await cacheFileOf(cacheDir);
	const valid = JSON.parse(await readFile(file, 'utf8')) as {path: string; sizeBytes: number; mtimeMs: number; norms: Record<string, unknown>};
	const ids = Object.keys(valid.norms);
	const header = {path: valid.path, sizeBytes: valid.sizeBytes, mtimeMs: valid.mtimeMs};
	const badEntries = Object.fromEntries(ids.map((id, i) => [id, [null, 'x', {frobenius: -1}, {frobenius: '2'}, {frobenius: Number.MAX_VALUE, spectral: 'big'}, [1, 2], {spectral: 3}, {frobenius: 1, spectral: -2}][i % 8]]));
	for (const [label, text] of [
		['not JSON', '{"version": 2, "norms": {'],
		['binary', '\u0000\u00FF\u0001'],
		['null', 'null'],
		['array', '[1, 2]'],
		['future version', JSON.stringify({...valid, version: 99})],
		['other file size', JSON.stringify({...valid, sizeBytes: valid.sizeBytes + 1})],
		['norms not an object', JSON.stringify({version: 2, ...header, norms: 'x'})],
		['bad entries', JSON.stringify({version: 2, ...header, norms: badEntries})],
		['v1 entries lacking σ_max', JSON.stringify({version: 1, ...header, norms: Object.fromEntries(ids.map(id => [id, {frobenius: 1}]))})],
		['__proto__ ids', `{"version": 2, "path": ${JSON.stringify(header.path)}, "sizeBytes": ${header.sizeBytes}, "mtimeMs": ${header.mtimeMs}, "norms": {"__proto__": {"frobenius": 1}}}`],
	] as Array<[string, string]>) {
		await writeFile(file, text);
		const result = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
		assert.deepEqual(result.computed, {frobenius: names.length, spectral: 0}, label);
		assert.deepEqual(result.norms, reference.norms, label);
	}

	// A version 1 file (both norms per entry) is still read as it is.
	await writeFile(file, JSON.stringify({version: 1, ...header, norms: Object.fromEntries(ids.map(id => [id, {spectral: 2, frobenius: 3}]))}));
	const old = await runJob({basePath, loraPath: fullLora, cacheDir});
	assert.equal(old.cached, true);
	for (const name of names) {
		assert.deepEqual(old.norms[name], {spectral: 2, frobenius: 3}, name);
	}
});

test('need "frobenius" is cancellable mid-stream and leaves a usable cache', async () => {
	const {basePath, fullLora, expected} = await fixture('cancel');
	const cacheDir = path.join(folder, 'cancel', 'cache');
	const ctx = context();
	let yields = 0;
	ctx.yield = async () => {
		if (++yields > 2) {
			throw new CancelledError();
		}
	};

	await assert.rejects(runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'}, ctx), CancelledError);
	const result = await runJob({basePath, loraPath: fullLora, cacheDir, need: 'frobenius'});
	assertFrobenius(result, expected);
	await assert.rejects(runJob({basePath, loraPath: fullLora, cacheDir, need: 'spectral' as 'both'}), /need must be/);
});

test('sumOfSquares: float64 sums for each dtype, unaligned input, odd counts', () => {
	const random = rng(9);
	for (const dtype of ['F16', 'BF16', 'F32', 'F64'] as const) {
		for (const count of [0, 1, 7, 1000]) {
			const values = Float32Array.from({length: count}, () => (random() - 0.5) * 100);
			const encoded = encodeFromFloat32(values, dtype);
			// Shift by one byte: the view must not rely on alignment.
			const shifted = new Uint8Array(encoded.byteLength + 1);
			shifted.set(encoded, 1);
			const expected = storedFrobenius(values, dtype) ** 2;
			for (const bytes of [encoded, shifted.subarray(1)]) {
				const sum = sumOfSquares(bytes, dtype);
				assert.ok(Math.abs(sum - expected) <= 1e-12 * expected, `${dtype} ×${count}: ${sum} vs ${expected}`);
			}
		}
	}
});
