import assert from 'node:assert/strict';
import {mkdtemp, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {encodeFromFloat32} from '../source/lora/dtypes.js';
import {gramColsSync, gramRowsSync, jsKernels} from '../source/lora/linalg.js';
import {loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {writeSample} from '../source/lora/samples.js';
import {blockNorms, computeStats, inspectorBucketOf} from '../source/lora/stats.js';
import type {GramKernels, LoraModel, LoraModule, SafetensorsHeader} from '../source/lora/types.js';
import {writeSafetensorsAtomic, type TensorToWrite} from '../source/lora/writer.js';

let dir: string;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-stats-'));
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

// ---------------------------------------------------------------- independent reference

let seed = 12_345;
function random(): number {
	// LCG (numerical recipes); values in (-1, 1).
	seed = (Math.imul(seed, 1_664_525) + 1_013_904_223) >>> 0;
	return ((seed / 0x1_00_00_00_00) * 2) - 1;
}

function randomValues(count: number, scale = 0.1): Float32Array {
	return Float32Array.from({length: count}, () => random() * scale);
}

/** float16 bits → number, written here so the reference does not share the reader's decoder. */
function halfToNumber(h: number): number {
	const sign = h & 0x80_00 ? -1 : 1;
	const exponent = (h >> 10) & 0x1f;
	const mantissa = h & 0x3_ff;
	if (exponent === 0) {
		return sign * mantissa * (2 ** -24);
	}

	if (exponent === 31) {
		return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
	}

	return sign * (1 + (mantissa / 1024)) * (2 ** (exponent - 15));
}

type FixtureTensor = {name: string; shape: number[]; values: Float32Array; dtype?: 'F32' | 'F16'};

async function writeFixture(file: string, tensors: FixtureTensor[], metadata: Record<string, string> = {}): Promise<void> {
	const toWrite: TensorToWrite[] = tensors.map(t => ({name: t.name, dtype: t.dtype ?? 'F32', shape: t.shape, data: encodeFromFloat32(t.values, t.dtype ?? 'F32')}));
	await writeSafetensorsAtomic(file, toWrite, metadata, {overwrite: true});
}

/** The values the file really holds (F16 rounded), decoded independently. */
function storedValues(t: FixtureTensor): Float64Array {
	if (t.dtype === 'F16') {
		const bits = new Uint16Array(encodeFromFloat32(t.values, 'F16').buffer.slice(0));
		return Float64Array.from(bits, b => halfToNumber(b));
	}

	return Float64Array.from(t.values);
}

function matmul(a: Float64Array, m: number, k: number, b: Float64Array, n: number): Float64Array {
	const out = new Float64Array(m * n);
	for (let i = 0; i < m; i++) {
		for (let j = 0; j < n; j++) {
			let sum = 0;
			for (let p = 0; p < k; p++) {
				sum += a[(i * k) + p]! * b[(p * n) + j]!;
			}

			out[(i * n) + j] = sum;
		}
	}

	return out;
}

function frobenius(values: ArrayLike<number>): number {
	let sum = 0;
	for (let i = 0; i < values.length; i++) {
		sum += values[i]! * values[i]!;
	}

	return Math.sqrt(sum);
}

/** Tucker rebuild W[o, c, s] = Σ_ij core[i, j, s]·a[i, o]·b[j, c] (a r1×m, b r2×n), flattened o × (c·S + s). */
function tucker(core: Float64Array, r1: number, r2: number, spatial: number, a: Float64Array, m: number, b: Float64Array, n: number): Float64Array {
	const out = new Float64Array(m * n * spatial);
	for (let o = 0; o < m; o++) {
		for (let c = 0; c < n; c++) {
			for (let s = 0; s < spatial; s++) {
				let sum = 0;
				for (let i = 0; i < r1; i++) {
					for (let j = 0; j < r2; j++) {
						sum += core[(((i * r2) + j) * spatial) + s]! * a[(i * m) + o]! * b[(j * n) + c]!;
					}
				}

				out[(o * n * spatial) + (c * spatial) + s] = sum;
			}
		}
	}

	return out;
}

function kron(a: Float64Array, p: number, q: number, b: Float64Array, s: number, t: number): Float64Array {
	const out = new Float64Array(p * s * q * t);
	for (let i = 0; i < p; i++) {
		for (let j = 0; j < q; j++) {
			for (let k = 0; k < s; k++) {
				for (let l = 0; l < t; l++) {
					out[(((i * s) + k) * q * t) + (j * t) + l] = a[(i * q) + j]! * b[(k * t) + l]!;
				}
			}
		}
	}

	return out;
}

/** lora-inspector's figures from the raw tensors: sorted keys, float64 sums in element order. */
function inspectorReference(tensors: FixtureTensor[]): Record<string, {magnitude: number; strength: number; tensors: number} | null> {
	const groups: Record<string, Array<{magnitude: number; strength: number}>> = {unet: [], unetConv: [], te: [], te2: []};
	for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1))) {
		const k = t.name;
		if (!k.endsWith('.weight')) {
			continue;
		}

		let bucket: string | null = null;
		if (k.startsWith('lora_unet')) {
			bucket = k.includes('conv') ? 'unetConv' : 'unet';
		} else if (k.startsWith('lora_te_text_model_encoder_layers_') || k.startsWith('lora_te1_text_model_encoder_layers')) {
			bucket = 'te';
		} else if (k.startsWith('lora_te2_text_model_encoder_layers_')) {
			bucket = 'te2';
		}

		if (bucket) {
			const values = storedValues(t);
			let squares = 0;
			let absolute = 0;
			for (const v of values) {
				squares += v ** 2;
				absolute += Math.abs(v);
			}

			groups[bucket]!.push({magnitude: Math.sqrt(squares), strength: absolute / values.length});
		}
	}

	const result: Record<string, {magnitude: number; strength: number; tensors: number} | null> = {};
	for (const [name, list] of Object.entries(groups)) {
		if (list.length === 0) {
			result[name] = null;
			continue;
		}

		let magnitude = 0;
		let strength = 0;
		for (const item of list) {
			magnitude += item.magnitude;
			strength += item.strength;
		}

		result[name] = {magnitude: magnitude / list.length, strength: strength / list.length, tensors: list.length};
	}

	return result;
}

// ---------------------------------------------------------------- fixture

type Reference = {name: string; algo: string; scale: number | null; delta: Float64Array | null};

function buildFixture(): {tensors: FixtureTensor[]; references: Reference[]} {
	const tensors: FixtureTensor[] = [];
	const references: Reference[] = [];
	const add = (name: string, shape: number[], values?: Float32Array, dtype?: 'F32' | 'F16'): Float64Array => {
		const count = shape.reduce((a, b) => a * b, 1);
		const t: FixtureTensor = {name, shape, values: values ?? randomValues(count), dtype};
		tensors.push(t);
		return storedValues(t);
	};

	const alpha = (module: string, value: number) => add(`${module}.alpha`, [], Float32Array.of(value));

	// LoRA linear (F16, the common case), scale 1.5/3. Element counts that are not multiples of 4
	// (123, 75) so the F16 figures' remainder path counts too.
	{
		const m = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
		const down = add(`${m}.lora_down.weight`, [3, 41], undefined, 'F16');
		const up = add(`${m}.lora_up.weight`, [25, 3], undefined, 'F16');
		alpha(m, 1.5);
		references.push({name: m, algo: 'lora', scale: 0.5, delta: matmul(up, 25, 3, down, 41)});
	}

	// Conv 1×1 (SD1 proj_in), scale 2/2.
	{
		const m = 'lora_unet_down_blocks_0_attentions_0_proj_in';
		const down = add(`${m}.lora_down.weight`, [2, 16, 1, 1]);
		const up = add(`${m}.lora_up.weight`, [16, 2, 1, 1]);
		alpha(m, 2);
		references.push({name: m, algo: 'lora', scale: 1, delta: matmul(up, 16, 2, down, 16)});
	}

	// Conv 3×3 (LoCon), scale 1/3.
	{
		const m = 'lora_unet_down_blocks_0_resnets_0_conv1';
		const down = add(`${m}.lora_down.weight`, [3, 8, 3, 3]);
		const up = add(`${m}.lora_up.weight`, [12, 3, 1, 1]);
		alpha(m, 1);
		references.push({name: m, algo: 'lora', scale: 1 / 3, delta: matmul(up, 12, 3, down, 72)});
	}

	// LoCon Tucker: ΔW[o,c,h,w] = Σ mid[i,j,h,w]·up[o,i]·down[j,c].
	{
		const m = 'lora_unet_up_blocks_1_resnets_0_conv2';
		const down = add(`${m}.lora_down.weight`, [2, 8, 1, 1]);
		const mid = add(`${m}.lora_mid.weight`, [2, 2, 3, 3]);
		const up = add(`${m}.lora_up.weight`, [10, 2, 1, 1]);
		alpha(m, 4);
		// up is out×r; the Tucker helper wants r×out.
		const upT = new Float64Array(20);
		for (let o = 0; o < 10; o++) {
			for (let i = 0; i < 2; i++) {
				upT[(i * 10) + o] = up[(o * 2) + i]!;
			}
		}

		references.push({name: m, algo: 'locon-tucker', scale: 2, delta: tucker(mid, 2, 2, 9, upT, 10, down, 8)});
	}

	// LoHa, small rank (face-splitting path) and large rank (dense path).
	for (const [m, rank, out, inDim] of [
		['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k', 3, 20, 30],
		['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v', 8, 6, 6],
	] as const) {
		const w1a = add(`${m}.hada_w1_a`, [out, rank]);
		const w1b = add(`${m}.hada_w1_b`, [rank, inDim]);
		const w2a = add(`${m}.hada_w2_a`, [out, rank]);
		const w2b = add(`${m}.hada_w2_b`, [rank, inDim]);
		alpha(m, 1);
		const a = matmul(w1a, out, rank, w1b, inDim);
		const b = matmul(w2a, out, rank, w2b, inDim);
		references.push({name: m, algo: 'loha', scale: 1 / rank, delta: a.map((x, i) => x * b[i]!)});
	}

	// LoHa Tucker (conv 3×3): w?_a r×out, w?_b r×in, t r×r×3×3.
	{
		const m = 'lora_unet_up_blocks_2_resnets_1_conv1';
		const t1 = add(`${m}.hada_t1`, [2, 2, 3, 3]);
		const w1a = add(`${m}.hada_w1_a`, [2, 10]);
		const w1b = add(`${m}.hada_w1_b`, [2, 6]);
		const t2 = add(`${m}.hada_t2`, [2, 2, 3, 3]);
		const w2a = add(`${m}.hada_w2_a`, [2, 10]);
		const w2b = add(`${m}.hada_w2_b`, [2, 6]);
		alpha(m, 1);
		const a = tucker(t1, 2, 2, 9, w1a, 10, w1b, 6);
		const b = tucker(t2, 2, 2, 9, w2a, 10, w2b, 6);
		references.push({name: m, algo: 'loha', scale: 0.5, delta: a.map((x, i) => x * b[i]!)});
	}

	// LoKr: full w1, factorised w2 (rank 2 → scale alpha/2).
	{
		const m = 'lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_2';
		const w1 = add(`${m}.lokr_w1`, [4, 5]);
		const w2a = add(`${m}.lokr_w2_a`, [6, 2]);
		const w2b = add(`${m}.lokr_w2_b`, [2, 7]);
		alpha(m, 1);
		references.push({name: m, algo: 'lokr', scale: 0.5, delta: kron(w1, 4, 5, matmul(w2a, 6, 2, w2b, 7), 6, 7)});
	}

	// LoKr with neither factor decomposed: scale 1 whatever alpha says.
	{
		const m = 'lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj';
		const w1 = add(`${m}.lokr_w1`, [3, 3]);
		const w2 = add(`${m}.lokr_w2`, [4, 4]);
		alpha(m, 7);
		references.push({name: m, algo: 'lokr', scale: 1, delta: kron(w1, 3, 3, w2, 4, 4)});
	}

	// LoKr Tucker w2 (conv): W2[p,q,s] = Σ t2[i,j,s]·w2a[i,p]·w2b[j,q].
	{
		const m = 'lora_unet_up_blocks_2_resnets_0_conv1';
		const w1a = add(`${m}.lokr_w1_a`, [3, 2]);
		const w1b = add(`${m}.lokr_w1_b`, [2, 4]);
		const t2 = add(`${m}.lokr_t2`, [2, 2, 3, 3]);
		const w2a = add(`${m}.lokr_w2_a`, [2, 5]);
		const w2b = add(`${m}.lokr_w2_b`, [2, 6]);
		alpha(m, 2);
		const w1 = matmul(w1a, 3, 2, w1b, 4);
		const w2 = tucker(t2, 2, 2, 9, w2a, 5, w2b, 6);
		references.push({name: m, algo: 'lokr', scale: 1, delta: kron(w1, 3, 4, w2, 5, 54)});
	}

	// Full diff.
	{
		const m = 'lora_unet_up_blocks_3_attentions_0_proj_out';
		const diff = add(`${m}.diff`, [7, 9]);
		references.push({name: m, algo: 'full', scale: 1, delta: diff});
	}

	// DoRA needs the base weights: no norm.
	{
		const m = 'lora_unet_up_blocks_3_attentions_1_transformer_blocks_0_attn1_to_k';
		add(`${m}.lora_down.weight`, [2, 8]);
		add(`${m}.lora_up.weight`, [8, 2]);
		add(`${m}.dora_scale`, [8, 1]);
		alpha(m, 2);
		references.push({name: m, algo: 'lora', scale: null, delta: null});
	}

	// An exactly zero update (untrained: up stays at its zero init).
	{
		const m = 'lora_te_text_model_encoder_layers_11_mlp_fc1';
		add(`${m}.lora_down.weight`, [2, 12], undefined, 'F16');
		add(`${m}.lora_up.weight`, [18, 2], new Float32Array(36), 'F16');
		alpha(m, 1);
		references.push({name: m, algo: 'lora', scale: 0.5, delta: new Float64Array(18 * 12)});
	}

	// Text encoders for the buckets.
	for (const m of ['lora_te_text_model_encoder_layers_0_self_attn_q_proj', 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj']) {
		const down = add(`${m}.lora_down.weight`, [2, 12], undefined, 'F16');
		const up = add(`${m}.lora_up.weight`, [12, 2], undefined, 'F16');
		alpha(m, 2);
		references.push({name: m, algo: 'lora', scale: 1, delta: matmul(up, 12, 2, down, 12)});
	}

	return {tensors, references};
}

async function load(file: string): Promise<{header: SafetensorsHeader; model: LoraModel}> {
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	try {
		return {header, model: await loadLoraModel(header, async name => reader.read(name))};
	} finally {
		await reader.close();
	}
}

function close(actual: number, expected: number, tolerance: number, label: string): void {
	const scale = Math.max(Math.abs(expected), 1e-30);
	assert.ok(Math.abs(actual - expected) / scale <= tolerance, `${label}: ${actual} vs ${expected}`);
}

const pairKernels: GramKernels & {gramPair: (up: Float32Array, o: number, r: number, down: Float32Array, i: number) => Promise<{gu: Float64Array; gd: Float64Array}>} = {
	...jsKernels,
	gramPair: async (up, outDim, rank, down, inDim) => ({gu: gramColsSync(up, outDim, rank), gd: gramRowsSync(down, rank, inDim)}),
};

test('module norms match a dense float64 ΔW for every module type, with both kernel paths', async () => {
	const {tensors, references} = buildFixture();
	const file = path.join(dir, 'fixture.safetensors');
	await writeFixture(file, tensors, {ss_network_module: 'lycoris.kohya'});
	const {header, model} = await load(file);
	const byName = new Map<string, LoraModule>(model.modules.map(m => [m.name, m]));
	for (const reference of references) {
		const module = byName.get(reference.name);
		assert.ok(module, `model has ${reference.name}`);
		assert.equal(module.algo, reference.algo, reference.name);
		if (reference.scale !== null) {
			close(module.scale, reference.scale, 1e-12, `${reference.name} scale`);
		}
	}

	for (const kernels of [jsKernels, pairKernels]) {
		const progress: number[] = [];
		const stats = await computeStats(header, model, {kernels, onProgress: p => progress.push(p.done)});
		assert.equal(progress.length, model.modules.length);
		assert.equal(progress.at(-1), model.modules.length);
		const norms = new Map(stats.modules.map(m => [m.name, m]));
		for (const reference of references) {
			const norm = norms.get(reference.name)!.norm;
			if (reference.delta === null) {
				assert.equal(norm, null, `${reference.name} needs the base weights`);
			} else {
				close(norm!, Math.abs(reference.scale!) * frobenius(reference.delta), 1e-9, reference.name);
			}
		}

		assert.deepEqual(stats.zeroModules, ['lora_te_text_model_encoder_layers_11_mlp_fc1']);
		assert.equal(stats.nonFiniteValues, 0);
		const expectedBytes = header.tensors.reduce((sum, t) => sum + (t.end - t.begin), 0);
		assert.equal(stats.bytesRead, expectedBytes);
		// UNet / TE totals from the reference norms.
		let unet = 0;
		let te = 0;
		for (const reference of references) {
			if (reference.delta !== null) {
				const value = (reference.scale! * frobenius(reference.delta)) ** 2;
				if (reference.name.startsWith('lora_te')) {
					te += value;
				} else {
					unet += value;
				}
			}
		}

		close(stats.unetNorm, Math.sqrt(unet), 1e-9, 'unetNorm');
		close(stats.teNorm, Math.sqrt(te), 1e-9, 'teNorm');
		// Blocks: √Σ norm² and mean over the modules of each block.
		for (const block of stats.blocks) {
			const members = stats.modules.filter(m => m.block === block.name && m.norm !== null);
			assert.equal(block.modules, members.length);
			close(block.norm, Math.sqrt(members.reduce((s, m) => s + (m.norm! ** 2), 0)), 1e-12, block.name);
			close(block.mean, members.reduce((s, m) => s + m.norm!, 0) / members.length, 1e-12, block.name);
		}

		// lora-inspector buckets, recomputed from the raw tensors: identical to the last bit.
		const expected = inspectorReference(tensors);
		for (const name of ['unet', 'unetConv', 'te', 'te2'] as const) {
			assert.deepEqual(stats.buckets[name], expected[name], name);
		}
	}
});

test('lora-inspector bucket rules', () => {
	assert.equal(inspectorBucketOf('lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight'), 'unet');
	assert.equal(inspectorBucketOf('lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight'), 'unetConv');
	assert.equal(inspectorBucketOf('lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight'), 'unet');
	assert.equal(inspectorBucketOf('lora_unet_down_blocks_0_resnets_0_conv1.alpha'), null);
	assert.equal(inspectorBucketOf('lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight'), 'te');
	assert.equal(inspectorBucketOf('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight'), 'te');
	assert.equal(inspectorBucketOf('lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight'), 'te2');
	assert.equal(inspectorBucketOf('lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight'), null);
	assert.equal(inspectorBucketOf('transformer.single_transformer_blocks.0.proj_out.lora_A.weight'), null);
	assert.equal(inspectorBucketOf('lora_unet_x.hada_w1_a'), null);
});

test('NaN and Inf values are counted and keep the module norm out of the totals', async () => {
	const m = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_v';
	// 18 values each: the NaN sits in the last two, past the F16 loop's groups of four.
	const down = randomValues(2 * 9);
	down[17] = Number.NaN;
	const up = randomValues(9 * 2);
	up[0] = Number.POSITIVE_INFINITY;
	const ok = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q';
	const file = path.join(dir, 'nan.safetensors');
	await writeFixture(file, [
		{name: `${m}.alpha`, shape: [], values: Float32Array.of(2)},
		{name: `${m}.lora_down.weight`, shape: [2, 9], values: down, dtype: 'F16'},
		{name: `${m}.lora_up.weight`, shape: [9, 2], values: up, dtype: 'F16'},
		{name: `${ok}.alpha`, shape: [], values: Float32Array.of(2)},
		{name: `${ok}.lora_down.weight`, shape: [2, 8], values: randomValues(16), dtype: 'F16'},
		{name: `${ok}.lora_up.weight`, shape: [8, 2], values: randomValues(16), dtype: 'F16'},
	]);
	const {header, model} = await load(file);
	for (const kernels of [jsKernels, pairKernels]) {
		const stats = await computeStats(header, model, {kernels});
		assert.equal(stats.nonFiniteValues, 2);
		const bad = stats.modules.find(x => x.name === m)!;
		assert.equal(bad.nonFinite, 2);
		assert.equal(bad.norm, null);
		const good = stats.modules.find(x => x.name === ok)!;
		assert.equal(good.nonFinite, 0);
		assert.ok(good.norm! > 0);
		close(stats.unetNorm, good.norm!, 1e-12, 'only the finite module counts');
		assert.ok(Number.isNaN(stats.buckets.unet!.magnitude), 'lora-inspector would print nan too');
	}
});

/**
 * A LoRA pair whose rank-1 terms cancel: ΔW = b·aᵀ − b·(a + δ)ᵀ = −b·δᵀ with ‖δ‖ ≈ 1e-2·‖a‖,
 * small next to ‖up‖·‖down‖. Columns (rows of down) past the first two are zero.
 */
function cancellingPair(out: number, rank: number, inDim: number): {up: Float32Array; down: Float32Array} {
	const b = randomValues(out, 1);
	const a = randomValues(inDim, 1);
	const up = new Float32Array(out * rank);
	const down = new Float32Array(rank * inDim);
	for (let i = 0; i < out; i++) {
		up[i * rank] = b[i]!;
		up[(i * rank) + 1] = -b[i]!;
	}

	for (let j = 0; j < inDim; j++) {
		down[j] = a[j]!;
		down[inDim + j] = a[j]! + (random() * 1e-2);
	}

	return {up, down};
}

test('onnxruntime float32 pair Grams: within 2e-6 of float64 ΔW, and cancelling pairs are redone in float64', async () => {
	const {createOrtKernels} = await import('../source/engine/kernels/ort-kernels.js');
	const {productNormSquaredFromGrams} = await import('../source/lora/linalg.js');
	const ort = await createOrtKernels('cpu', {threads: 1});
	try {
		const plain = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q';
		const cancelling = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k';
		const cancellingHalf = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_v';
		const [out, rank, inDim] = [320, 8, 768];
		// Rank 8 with six zero columns: pairs this large go to onnxruntime (smaller ones are
		// computed in float64 JS, see the next test), so the guard is what is tested here.
		const {up: upC, down: downC} = cancellingPair(out, rank, inDim);

		const tensors: FixtureTensor[] = [
			{name: `${plain}.alpha`, shape: [], values: Float32Array.of(4)},
			{name: `${plain}.lora_down.weight`, shape: [rank, inDim], values: randomValues(rank * inDim), dtype: 'F16'},
			{name: `${plain}.lora_up.weight`, shape: [out, rank], values: randomValues(out * rank), dtype: 'F16'},
			{name: `${cancelling}.alpha`, shape: [], values: Float32Array.of(rank)},
			{name: `${cancelling}.lora_down.weight`, shape: [rank, inDim], values: downC},
			{name: `${cancelling}.lora_up.weight`, shape: [out, rank], values: upC},
			// The same pair in F16, which onnxruntime widens itself (no JS decoding pass).
			{name: `${cancellingHalf}.alpha`, shape: [], values: Float32Array.of(rank)},
			{name: `${cancellingHalf}.lora_down.weight`, shape: [rank, inDim], values: downC, dtype: 'F16'},
			{name: `${cancellingHalf}.lora_up.weight`, shape: [out, rank], values: upC, dtype: 'F16'},
		];
		const file = path.join(dir, 'single.safetensors');
		await writeFixture(file, tensors);
		const stored = new Map(tensors.map(t => [t.name, storedValues(t)]));
		const reference = (name: string, r: number, scale: number) =>
			scale * frobenius(matmul(stored.get(`${name}.lora_up.weight`)!, out, r, stored.get(`${name}.lora_down.weight`)!, inDim));

		// Float32 Grams alone lose the cancelling pair's digits: the guard below is what saves them.
		const single = await ort.gramPairSingle(upC, out, rank, downC, inDim);
		const singleNorm = Math.sqrt(productNormSquaredFromGrams(single.gu, single.gd));
		const exact = reference(cancelling, rank, 1);
		assert.ok(Math.abs(singleNorm - exact) / exact > 1e-4, `float32 Grams alone: ${singleNorm} vs ${exact}`);

		const calls = {single: 0, rawHalves: 0, double: 0};
		const counted = {
			...ort,
			gramPairSingle: async (...args: Parameters<typeof ort.gramPairSingle>) => {
				calls.single++;
				calls.rawHalves += args[0] instanceof Float32Array ? 0 : 1;
				return ort.gramPairSingle(...args);
			},
			gramPair: async (...args: Parameters<typeof ort.gramPair>) => {
				calls.double++;
				return ort.gramPair(...args);
			},
		};
		const {header, model} = await load(file);
		const stats = await computeStats(header, model, {kernels: counted});
		const norms = new Map(stats.modules.map(m => [m.name, m.norm!]));
		close(norms.get(plain)!, reference(plain, rank, 4 / rank), 2e-6, plain);
		close(norms.get(cancelling)!, reference(cancelling, rank, 1), 1e-9, cancelling);
		close(norms.get(cancellingHalf)!, reference(cancellingHalf, rank, 1), 1e-9, cancellingHalf);
		// F16 pairs reach onnxruntime undecoded; only the cancelling pairs are redone in float64.
		assert.deepEqual(calls, {single: 3, rawHalves: 2, double: 2});
	} finally {
		await ort.dispose();
	}
});

test('small pairs skip onnxruntime: float64 JS Grams, exact, even when they cancel', async () => {
	const {createOrtKernels} = await import('../source/engine/kernels/ort-kernels.js');
	const ort = await createOrtKernels('cpu', {threads: 1});
	try {
		const name = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k';
		// (320 + 768)·2² = 4,352 multiply-adds: far below what an onnxruntime call is worth.
		const [out, rank, inDim] = [320, 2, 768];
		const {up, down} = cancellingPair(out, rank, inDim);
		const tensors: FixtureTensor[] = [
			{name: `${name}.alpha`, shape: [], values: Float32Array.of(rank)},
			{name: `${name}.lora_down.weight`, shape: [rank, inDim], values: down, dtype: 'F16'},
			{name: `${name}.lora_up.weight`, shape: [out, rank], values: up, dtype: 'F16'},
		];
		const file = path.join(dir, 'small-pair.safetensors');
		await writeFixture(file, tensors);
		const stored = new Map(tensors.map(t => [t.name, storedValues(t)]));
		const expected = frobenius(matmul(stored.get(`${name}.lora_up.weight`)!, out, rank, stored.get(`${name}.lora_down.weight`)!, inDim));
		let calls = 0;
		const counted = {
			...ort,
			gramPairSingle: async (...args: Parameters<typeof ort.gramPairSingle>) => {
				calls++;
				return ort.gramPairSingle(...args);
			},
			gramPair: async (...args: Parameters<typeof ort.gramPair>) => {
				calls++;
				return ort.gramPair(...args);
			},
			gramCols: async (...args: Parameters<typeof ort.gramCols>) => {
				calls++;
				return ort.gramCols(...args);
			},
			gramRows: async (...args: Parameters<typeof ort.gramRows>) => {
				calls++;
				return ort.gramRows(...args);
			},
		};
		const {header, model} = await load(file);
		const stats = await computeStats(header, model, {kernels: counted});
		close(stats.modules[0]!.norm!, expected, 1e-9, name);
		assert.equal(calls, 0);
	} finally {
		await ort.dispose();
	}
});

test('an aborted signal stops the computation', async () => {
	const file = path.join(dir, 'abort.safetensors');
	await writeSample(file, 'sd15-lora', {rank: 1, textEncoder: false, hashes: false});
	const {header, model} = await load(file);
	const controller = new AbortController();
	let calls = 0;
	await assert.rejects(computeStats(header, model, {
		signal: controller.signal,
		onProgress() {
			calls++;
			if (calls === 3) {
				controller.abort(new Error('stop here'));
			}
		},
	}), /stop here/);
	assert.equal(calls, 3);
});

test('a generated LoCon sample: norms against dense ΔW and buckets against the raw tensors', async () => {
	const file = path.join(dir, 'locon.safetensors');
	await writeSample(file, 'sd15-locon', {rank: 2, convRank: 2, hashes: false});
	const {header, model} = await load(file);
	const stats = await computeStats(header, model);
	const reader = await TensorReader.open(header);
	const raw: FixtureTensor[] = [];
	for (const t of header.tensors) {
		raw.push({name: t.name, shape: [...t.shape], values: await reader.read(t.name)});
	}

	const byName = new Map(raw.map(t => [t.name, t]));
	// Dense ΔW for every 7th module (all kinds occur) keeps the test fast.
	const norms = new Map(stats.modules.map(m => [m.name, m.norm]));
	let checked = 0;
	for (const [index, module] of model.modules.entries()) {
		if (index % 7 !== 0) {
			continue;
		}

		const down = byName.get(module.tensors['down']!)!;
		const up = byName.get(module.tensors['up']!)!;
		const rank = down.shape[0]!;
		const inDim = down.values.length / rank;
		const delta = matmul(Float64Array.from(up.values), up.shape[0]!, rank, Float64Array.from(down.values), inDim);
		const alphaValue = byName.get(module.tensors['alpha']!)!.values[0]!;
		close(norms.get(module.name)!, (alphaValue / rank) * frobenius(delta), 1e-9, module.name);
		checked++;
	}

	assert.ok(checked >= 40);
	const expected = inspectorReference(raw);
	for (const name of ['unet', 'unetConv', 'te', 'te2'] as const) {
		assert.deepEqual(stats.buckets[name], expected[name], name);
	}

	assert.equal(stats.zeroModules.length, 6, 'TE layer 11 is untrained with clip skip 2');
	await reader.close();
});

test('onnxruntime kernels give the same statistics', async t => {
	let kernels;
	try {
		const engine = await import('../source/engine/kernels/index.js');
		kernels = await engine.createOrtKernels('cpu');
	} catch (error) {
		t.skip(`onnxruntime kernels unavailable: ${error instanceof Error ? error.message : String(error)}`);
		return;
	}

	try {
		const file = path.join(dir, 'ort.safetensors');
		await writeSample(file, 'sd15-lora', {rank: 4, hashes: false});
		const {header, model} = await load(file);
		const reference = await computeStats(header, model);
		const fast = await computeStats(header, model, {kernels});
		assert.deepEqual(fast.buckets, reference.buckets);
		for (const [index, module] of fast.modules.entries()) {
			const expected = reference.modules[index]!;
			assert.equal(module.name, expected.name);
			if (expected.norm === 0) {
				assert.equal(module.norm, 0);
			} else {
				close(module.norm!, expected.norm!, 1e-6, module.name);
			}
		}
	} finally {
		await kernels.dispose();
	}
});

test('blockNorms aggregates modules with a known norm only', () => {
	const blocks = blockNorms([
		{name: 'a', block: 'IN01', blockOrder: 1, component: 'unet', rank: 1, alpha: 1, norm: 3, nonFinite: 0},
		{name: 'b', block: 'IN01', blockOrder: 1, component: 'unet', rank: 1, alpha: 1, norm: 4, nonFinite: 0},
		{name: 'c', block: 'IN01', blockOrder: 1, component: 'unet', rank: 1, alpha: 1, norm: null, nonFinite: 0},
		{name: 'd', block: 'OUT00', blockOrder: 5, component: 'unet', rank: 1, alpha: 1, norm: null, nonFinite: 0},
		{name: 'e', block: 'TE', blockOrder: 9, component: 'te', rank: 1, alpha: 1, norm: 1, nonFinite: 0},
	]);
	assert.deepEqual(blocks, [
		{name: 'IN01', blockOrder: 1, modules: 2, norm: 5, mean: 3.5},
		{name: 'TE', blockOrder: 9, modules: 1, norm: 1, mean: 1},
	]);
});
