import assert from 'node:assert/strict';
import {test} from 'node:test';
import {
	describeMethod,
	outputFileName,
	parseRecipe,
	planResize,
	preparePlanInput,
	ResizeMethodError,
	selectSizeThreshold,
	type BaseNorms,
	type KohyaDynamicMethod,
	type ResizeMethod,
} from '../source/lora/resize-plan.js';
import type {LayerKind, ModuleSpectrum} from '../source/lora/types.js';
import {rng} from './helpers/random.js';

function spectrum(name: string, values: number[], options: Partial<ModuleSpectrum> = {}): ModuleSpectrum {
	const kind: LayerKind = options.kind ?? 'linear';
	return {
		name,
		block: options.block ?? 'IN01',
		blockOrder: options.blockOrder ?? 1,
		component: 'unet',
		algo: 'lora',
		kind,
		outDim: options.outDim ?? 320,
		inDim: options.inDim ?? 320,
		kernel: kind === 'convkxk' ? [3, 3] : (kind === 'conv1x1' ? [1, 1] : null),
		rank: options.rank ?? values.length,
		alpha: options.alpha ?? values.length,
		scale: options.scale ?? 1,
		dtype: options.dtype ?? 'F16',
		singularValues: [...values].sort((a, b) => b - a),
		resizable: options.resizable ?? true,
		...(options.note ? {note: options.note} : {}),
	};
}

function randomSpectra(random: () => number, count: number): ModuleSpectrum[] {
	const kinds: LayerKind[] = ['linear', 'linear', 'conv1x1', 'convkxk'];
	const out: ModuleSpectrum[] = [];
	for (let i = 0; i < count; i++) {
		const rank = 1 + Math.floor(random() * 40);
		const nonZero = Math.max(0, rank - Math.floor(random() * 3));
		const decay = 0.3 + (random() * 4);
		const scale = [0.5, 1, 0.25, 2][Math.floor(random() * 4)]!;
		const tiny = random() < 0.05;
		const values = Array.from({length: nonZero}, (_, j) => (tiny ? 1e-8 : 1) * scale * Math.exp(-decay * j / rank) * (0.5 + random()));
		// Some modules have exact ties, some have dense length barely above the rank.
		if (random() < 0.1 && values.length > 2) {
			values[1] = values[0]!;
		}

		const small = random() < 0.2;
		out.push(spectrum(`m${i}`, values, {
			rank,
			scale,
			kind: kinds[Math.floor(random() * kinds.length)]!,
			outDim: small ? rank + Math.floor(random() * 3) : 320 + Math.floor(random() * 1000),
			inDim: small ? rank + 1 : 320 + Math.floor(random() * 1000),
			block: `B${i % 7}`,
			blockOrder: i % 7,
		}));
	}

	return out;
}

/**
 * kohya-ss resize_lora's rank rule, written from its description on a dense float64 spectrum:
 * the non-zero values padded with zeros to min(out, in), exactly as torch.linalg.svd returns them.
 */
function kohyaReference(module: ModuleSpectrum, method: Extract<ResizeMethod, {method: 'rank' | KohyaDynamicMethod}>): number {
	const length = Math.max(1, Math.min(module.outDim, module.inDim));
	const raw = module.singularValues.map(v => v / module.scale);
	const dense = Array.from({length}, (_, i) => raw[i] ?? 0);
	const is4d = module.kind !== 'linear';
	const clampIndex = (index: number) => Math.max(1, Math.min(index, length - 1));
	const searchsorted = (values: number[], target: number) => {
		const index = values.findIndex(v => v >= target);
		return index === -1 ? values.length : index;
	};

	const cumulative = (values: number[]) => {
		const total = values.reduce((a, b) => a + b, 0);
		let running = 0;
		return values.map(v => {
			running += v;
			return running / total;
		});
	};

	let k: number;
	if (method.method === 'rank') {
		k = is4d ? (method.convRank ?? method.rank) : method.rank;
	} else if (method.method === 'sv_ratio') {
		const minSv = dense[0]! / method.param;
		k = clampIndex(dense.filter(v => v > minSv).length) + 1;
	} else if (method.method === 'sv_cumulative') {
		k = clampIndex(searchsorted(cumulative(dense), method.param) + 1) + 1;
	} else {
		k = clampIndex(searchsorted(cumulative(dense.map(v => v * v)), method.param ** 2) + 1) + 1;
	}

	if (dense[0]! <= 1e-6) {
		return 1;
	}

	const cap = method.method === 'rank' ? Infinity : (is4d ? (method.convRank ?? method.rank) : method.rank) ?? Infinity;
	return Math.min(k, cap);
}

test('kohya rank rules match an independent dense implementation on random spectra', () => {
	const random = rng(7);
	const spectra = randomSpectra(random, 400);
	const input = preparePlanInput(spectra);
	const methods: Array<Extract<ResizeMethod, {method: 'rank' | KohyaDynamicMethod}>> = [
		{method: 'rank', rank: 8},
		{method: 'rank', rank: 4, convRank: 2},
		{method: 'rank', rank: 64},
		{method: 'sv_ratio', param: 4},
		{method: 'sv_ratio', param: 10, rank: 16},
		{method: 'sv_ratio', param: 1.5, rank: 32, convRank: 4},
		{method: 'sv_fro', param: 0.9},
		{method: 'sv_fro', param: 0.5, rank: 8},
		{method: 'sv_fro', param: 0.99, rank: 32, convRank: 8},
		{method: 'sv_fro', param: 1},
		{method: 'sv_cumulative', param: 0.7},
		{method: 'sv_cumulative', param: 0.95, rank: 12, convRank: 3},
	];
	let checked = 0;
	for (const method of methods) {
		const plan = planResize(input, method);
		for (const [i, planned] of plan.modules.entries()) {
			const module = spectra[i]!;
			const reference = kohyaReference(module, method);
			assert.equal(planned.kohyaRank, reference, `${describeMethod(method)} ${module.name} kohya rank`);
			// lorascope never keeps more directions than the module has non-zero values.
			assert.equal(planned.rankAfter, Math.min(reference, module.singularValues.length), `${describeMethod(method)} ${module.name}`);
			assert.ok(Math.abs((planned.alphaAfter ?? 0) - (module.scale * planned.rankAfter)) < 1e-12 || planned.rankAfter === 0);
			checked++;
		}
	}

	assert.equal(checked, methods.length * spectra.length);
});

test('dynamic methods keep one more value than the minimal count, then the cap applies', () => {
	// S² cumulative fractions: 16/30, 25/30, 29/30, 30/30. sv_fro 0.9 needs 0.81 → 2 values, kohya keeps 3.
	const module = spectrum('a', [4, 3, 2, 1], {outDim: 64, inDim: 64});
	assert.equal(planResize([module], {method: 'sv_fro', param: 0.9}).modules[0]!.rankAfter, 3);
	assert.equal(planResize([module], {method: 'sv_fro', param: 0.9, rank: 2}).modules[0]!.rankAfter, 2);
	// sv_ratio 2: values > 2 are 4 and 3 → count 2, keeps 3.
	assert.equal(planResize([module], {method: 'sv_ratio', param: 2}).modules[0]!.rankAfter, 3);
	// sv_cumulative 0.5: cumulative 0.4, 0.7 → index 1 → 2 values, keeps 3.
	assert.equal(planResize([module], {method: 'sv_cumulative', param: 0.5}).modules[0]!.rankAfter, 3);
	// Conv modules (1×1 included) are capped by --conv-rank, linear ones by --rank.
	const conv = spectrum('c', [4, 3, 2, 1], {kind: 'conv1x1', outDim: 64, inDim: 64});
	const plan = planResize([module, conv], {method: 'sv_ratio', param: 100, rank: 4, convRank: 2});
	assert.deepEqual(plan.modules.map(m => m.rankAfter), [4, 2]);
	// "One more" past the last non-zero value: kohya pads a zero direction, lorascope does not.
	const full = planResize([module], {method: 'sv_fro', param: 0.999});
	assert.equal(full.modules[0]!.kohyaRank, 5);
	assert.equal(full.modules[0]!.rankAfter, 4);
	assert.equal(full.modules[0]!.action, 'keep');
});

test('zero modules: kohya rank 1, lorascope removes exact zeros and keeps one for near zeros', () => {
	const zero = spectrum('zero', [], {rank: 8});
	const tiny = spectrum('tiny', [5e-7, 1e-7], {rank: 8, scale: 1});
	const scaled = spectrum('scaled', [2e-6, 1e-6], {rank: 8, scale: 4}); // raw max 5e-7
	const plan = planResize([zero, tiny, scaled], {method: 'rank', rank: 4});
	assert.deepEqual(plan.modules.map(m => m.kohyaRank), [1, 1, 1]);
	assert.deepEqual(plan.modules.map(m => m.rankAfter), [0, 1, 1]);
	assert.deepEqual(plan.removed, ['zero']);
	assert.equal(plan.modules[0]!.froRetained, 1);
});

test('retained energy, error and block figures match a direct computation', () => {
	const random = rng(11);
	const spectra = randomSpectra(random, 60);
	const plan = planResize(spectra, {method: 'sv_fro', param: 0.8, rank: 16});
	let energy = 0;
	let kept = 0;
	const byBlock = new Map<string, {energy: number; kept: number; before: number; after: number; n: number}>();
	for (const [i, planned] of plan.modules.entries()) {
		const values = spectra[i]!.singularValues;
		const all = values.reduce((s, v) => s + (v * v), 0);
		const part = values.slice(0, planned.rankAfter).reduce((s, v) => s + (v * v), 0);
		const fro = all > 0 ? Math.sqrt(part / all) : 1;
		assert.ok(Math.abs(planned.froRetained - fro) < 1e-12);
		assert.ok(Math.abs(planned.error - Math.sqrt(Math.max(0, 1 - (fro * fro)))) < 1e-9);
		const sum = values.reduce((s, v) => s + v, 0);
		assert.ok(Math.abs(planned.sumRetained - (sum > 0 ? values.slice(0, planned.rankAfter).reduce((s, v) => s + v, 0) / sum : 1)) < 1e-12);
		energy += all;
		kept += part;
		const block = byBlock.get(planned.block) ?? {energy: 0, kept: 0, before: 0, after: 0, n: 0};
		block.energy += all;
		block.kept += part;
		block.before += spectra[i]!.rank!;
		block.after += planned.rankAfter;
		block.n++;
		byBlock.set(planned.block, block);
	}

	assert.ok(Math.abs(plan.totals.froRetained - Math.sqrt(kept / energy)) < 1e-12);
	assert.equal(plan.blocks.length, byBlock.size);
	for (const block of plan.blocks) {
		const reference = byBlock.get(block.block)!;
		assert.equal(block.rankBefore, reference.before);
		assert.equal(block.rankAfter, reference.after);
		assert.equal(block.modules, reference.n);
		assert.ok(Math.abs(block.meanRankAfter - (reference.after / reference.n)) < 1e-12);
		assert.ok(Math.abs(block.froRetained - Math.sqrt(reference.kept / reference.energy)) < 1e-12);
	}

	// Worst modules are the largest errors, in order.
	const errors = plan.modules.map(m => m.error).sort((a, b) => b - a).slice(0, 10);
	assert.deepEqual(plan.worst.map(m => m.error), errors.filter(e => e > 0));
	// Histogram counts every resizable module once before and once after.
	assert.equal(plan.histogram.reduce((s, bin) => s + bin.after, 0), spectra.length);
	for (const bin of plan.histogram) {
		assert.equal(bin.after, plan.modules.filter(m => m.rankAfter === bin.rank).length);
		assert.equal(bin.before, spectra.filter(m => m.rank === bin.rank).length);
	}
});

test('sizes: factor bytes per dtype and compression', () => {
	const a = spectrum('a', [3, 2, 1], {outDim: 100, inDim: 50, dtype: 'F16', rank: 3});
	const plan = planResize(preparePlanInput([a], {fileBytes: 10_000, copiedBytes: 0, metadataBytes: 0}), {method: 'rank', rank: 2});
	const module = plan.modules[0]!;
	assert.equal(module.bytesAfter, ((2 * 150) + 1) * 2);
	assert.equal(module.bytesBefore, ((3 * 150) + 1) * 2);
	const f32 = planResize(preparePlanInput([a]), {method: 'rank', rank: 2}, {dtype: 'F32'});
	assert.equal(f32.modules[0]!.bytesAfter, ((2 * 150) + 1) * 4);
	assert.equal(plan.sizes.byDtype.F32 - plan.sizes.byDtype.F16, ((2 * 150) + 1) * 2);
	assert.equal(plan.sizes.sourceBytes, 10_000);
	assert.ok(Math.abs(plan.sizes.compression - (10_000 / plan.sizes.estimatedBytes)) < 1e-12);
});

test('non-resizable modules are copied and DoRA modules keep at least one direction', () => {
	const loha = spectrum('loha', [], {resizable: false, note: 'LoHa: copied unchanged'});
	const dora = spectrum('dora', [1, 0.5], {note: 'DoRA: approximate'});
	const plan = planResize([loha, dora], {method: 'recipe', weights: {spn_lora: 1, fro_lora: 0, spn_ckpt: 0, fro_ckpt: 0, subspace: 0, params: 0}, thr: 5}, {keepAtLeastOne: ['dora']});
	assert.deepEqual(plan.copied, ['loha']);
	assert.equal(plan.modules[0]!.action, 'copy');
	assert.equal(plan.modules[1]!.rankAfter, 1);
});

/** Elias' score for value j of a module, computed term by term. */
function eliasScore(module: ModuleSpectrum, j: number, weights: Record<string, number>, base: BaseNorms | undefined, rescale = 1): number {
	const s = module.singularValues;
	let score = Math.log10(s[j]!) + Math.log10(rescale);
	const w = (term: string) => (Math.abs(weights[term] ?? 0) > 1e-6 ? weights[term]! : 0);
	score -= w('spn_lora') * Math.log10(s[0]!);
	score -= w('fro_lora') * Math.log10(Math.hypot(...s));
	score -= w('params') * Math.log10(module.outDim + module.inDim);
	if (w('spn_ckpt') !== 0) {
		score -= w('spn_ckpt') * Math.log10(base![module.name]!.spectral);
	}

	if (w('fro_ckpt') !== 0) {
		score -= w('fro_ckpt') * Math.log10(base![module.name]!.frobenius);
	}

	return score;
}

function randomBase(random: () => number, spectra: ModuleSpectrum[]): BaseNorms {
	const base: Record<string, {spectral: number; frobenius: number}> = {};
	for (const module of spectra) {
		const spectral = 0.5 + (random() * 10);
		base[module.name] = {spectral, frobenius: spectral * (1 + (random() * 20))};
	}

	return base;
}

test('elias thr selection matches per-value scores', () => {
	const random = rng(3);
	const spectra = randomSpectra(random, 120);
	const base = randomBase(random, spectra);
	const recipes = ['spn_ckpt=1,thr=-1.2', 'spn_lora=1,thr=-0.602', 'fro_ckpt=0.8,params=0.2,thr=-3', 'fro_lora,spn_ckpt=2,thr=-1', 'spn_lora=1,thr=-0.3,rescale=2'];
	for (const text of recipes) {
		const method = parseRecipe(text);
		const plan = planResize(spectra, method, {base});
		for (const [i, planned] of plan.modules.entries()) {
			const module = spectra[i]!;
			const values = module.singularValues;
			const expected = values.length === 0 || values[0]! < 1e-6
				? 0
				: values.filter((_, j) => eliasScore(module, j, method.weights, base, method.rescale ?? 1) > method.thr!).length;
			assert.equal(planned.rankAfter, expected, `${text} ${module.name}`);
		}
	}
});

test('elias size selection matches a brute-force threshold search', () => {
	for (const seed of [1, 2, 3, 4, 5, 6]) {
		const random = rng(seed);
		const spectra = randomSpectra(random, 25);
		const base = randomBase(random, spectra);
		const scored: Array<{score: number; cost: number; module: number}> = [];
		const method = parseRecipe(seed % 2 === 0 ? 'spn_ckpt=1,size=0.05' : 'fro_ckpt=1,params=1,size=0.02');
		for (const [i, module] of spectra.entries()) {
			if (module.singularValues.length === 0 || module.singularValues[0]! < 1e-6) {
				continue;
			}

			for (let j = 0; j < module.singularValues.length; j++) {
				scored.push({score: eliasScore(module, j, method.weights, base), cost: 2 * (module.outDim + module.inDim), module: i});
			}
		}

		const target = method.size! * 1024 * 1024;
		const total = scored.reduce((s, x) => s + x.cost, 0);
		let threshold = Number.NEGATIVE_INFINITY;
		if (target < total) {
			// The largest score s whose "score ≥ s" set already costs at least the target.
			threshold = Math.max(...scored.filter(c => scored.filter(x => x.score >= c.score).reduce((s, x) => s + x.cost, 0) >= target).map(c => c.score));
		}

		const plan = planResize(spectra, method, {base, dtype: 'F16'});
		assert.ok(plan.threshold === threshold || Math.abs(plan.threshold! - threshold) < 1e-9, `seed ${seed}: ${plan.threshold} vs ${threshold}`);
		for (const [i, planned] of plan.modules.entries()) {
			const expected = scored.filter(x => x.module === i && x.score > threshold).length;
			assert.equal(planned.rankAfter, expected, `seed ${seed} module ${i}`);
		}

		const keptCost = scored.filter(x => x.score > threshold).reduce((s, x) => s + x.cost, 0);
		assert.ok(keptCost < target || threshold === Number.NEGATIVE_INFINITY);
	}
});

test('selectSizeThreshold handles ties and totals that fit', () => {
	const scores = Float64Array.from([1, 1, 0.5, 0.2]);
	const costs = Float64Array.from([10, 10, 10, 10]);
	assert.equal(selectSizeThreshold(scores, costs, 15), 1);
	assert.equal(selectSizeThreshold(scores, costs, 25), 0.5);
	assert.equal(selectSizeThreshold(scores, costs, 40), Number.NEGATIVE_INFINITY);
	assert.equal(selectSizeThreshold(scores, costs, 39), 0.2);
});

test('recipes without a base norm keep their module whole and say so', () => {
	const a = spectrum('a', [1, 0.1, 0.01]);
	const b = spectrum('b', [1, 0.1, 0.01]);
	const plan = planResize([a, b], parseRecipe('spn_ckpt=1,thr=-1.5'), {base: {a: {spectral: 1, frobenius: 2}}});
	assert.deepEqual(plan.unscored, ['b']);
	assert.equal(plan.modules[0]!.rankAfter, 2);
	assert.equal(plan.modules[1]!.rankAfter, 3);
	assert.throws(() => planResize([a], parseRecipe('spn_ckpt=1,thr=-1')), ResizeMethodError);
});

test('parseRecipe: normalised weights, bare terms, errors', () => {
	const recipe = parseRecipe('fro_ckpt=0.8, params=0.2, size=50');
	assert.ok(Math.abs(recipe.weights.fro_ckpt - 0.8) < 1e-12);
	assert.ok(Math.abs(recipe.weights.params - 0.2) < 1e-12);
	assert.equal(recipe.size, 50);
	const doubled = parseRecipe('spn_ckpt=2,spn_lora=2,thr=-1');
	assert.equal(doubled.weights.spn_ckpt, 0.5);
	assert.equal(parseRecipe('spn_lora,thr=-1').weights.spn_lora, 1);
	assert.throws(() => parseRecipe('spn_ckpt=1'), /thr=/);
	assert.throws(() => parseRecipe('bogus=1,thr=1'), /unknown key "bogus"/);
	assert.throws(() => parseRecipe('thr=1'), /at least one score weight/);
	assert.throws(() => parseRecipe('spn_ckpt=x,thr=1'), /cannot read/);
	assert.throws(() => planResize([], parseRecipe('subspace=1,thr=1')), /subspace/);
});

test('method validation rejects nonsense with one-line reasons', () => {
	assert.throws(() => planResize([], {method: 'rank', rank: 0}), /rank must be/);
	assert.throws(() => planResize([], {method: 'sv_fro', param: 1.5}), /fraction/);
	assert.throws(() => planResize([], {method: 'sv_ratio', param: -1}), /ratio/);
	assert.throws(() => planResize([], {method: 'sv_ratio', param: 2, convRank: 1.5}), /conv rank/);
});

test('describeMethod and outputFileName', () => {
	assert.equal(describeMethod({method: 'rank', rank: 8}), 'rank 8');
	assert.equal(describeMethod({method: 'rank', rank: 8, convRank: 4}), 'rank 8 (conv 4)');
	assert.equal(describeMethod({method: 'sv_fro', param: 0.9, rank: 32}), 'sv_fro 0.9 (max rank 32)');
	assert.equal(describeMethod(parseRecipe('spn_ckpt=1,thr=-1.2')), 'recipe spn_ckpt=1 thr=-1.2');
	assert.equal(outputFileName('/x/y/foo.safetensors', {method: 'rank', rank: 8}), 'foo_rank8.safetensors');
	assert.equal(outputFileName('foo.safetensors', {method: 'sv_ratio', param: 4}), 'foo_sv_ratio4.safetensors');
	assert.equal(outputFileName('foo.safetensors', {method: 'sv_fro', param: 0.9, rank: 32}), 'foo_sv_fro0.9_r32.safetensors');
	assert.equal(outputFileName('foo.safetensors', parseRecipe('spn_ckpt=1,thr=-1.2')), 'foo_spnckpt1_thr-1.2.safetensors');
	assert.equal(outputFileName('foo.safetensors', parseRecipe('fro_ckpt=0.8,params=0.2,size=50')), 'foo_frockpt0.8_params0.2_size50.safetensors');
});

test('re-planning an SDXL-sized input is fast once prepared', () => {
	const random = rng(5);
	const spectra: ModuleSpectrum[] = [];
	for (let i = 0; i < 1000; i++) {
		spectra.push(spectrum(`m${i}`, Array.from({length: 32}, (_, j) => Math.exp(-j / 8) * (0.5 + random())), {outDim: 1280, inDim: 1280, block: `B${i % 20}`, blockOrder: i % 20}));
	}

	const input = preparePlanInput(spectra);
	const base = randomBase(random, spectra);
	const methods: ResizeMethod[] = [{method: 'sv_fro', param: 0.9, rank: 32}, {method: 'rank', rank: 8}, parseRecipe('spn_ckpt=1,size=20')];
	for (const method of methods) {
		planResize(input, method, {base});
		const start = performance.now();
		for (let i = 0; i < 5; i++) {
			planResize(input, method, {base});
		}

		const each = (performance.now() - start) / 5;
		// The budget is 16 ms; leave room for a loaded CI machine (bench/resize.ts reports the figure).
		assert.ok(each < 80, `${describeMethod(method)}: ${each.toFixed(1)} ms per plan`);
	}
});
