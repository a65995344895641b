// Resize planning: from each module's singular spectrum (of its effective update scale·ΔW) to the
// rank it keeps, with the retained energy, sizes and summaries the preview and the CLI show.
//
// kohya-ss sd-scripts `networks/resize_lora.py` (peer-tools §3): fixed rank, sv_ratio,
// sv_fro and sv_cumulative, including its rules that users rely on:
//   - dynamic methods keep ONE MORE singular value than the minimal count that meets the target
//     (k = clamp(index, 1, L−1) + 1 with L = min(out, in·kh·kw), the length of a dense SVD);
//   - a module whose largest raw singular value (of up·down, before alpha/rank) is ≤ 1e-6 gets
//     rank 1;
//   - then k is capped by --rank, or by --conv-rank for every 4-D module (1×1 included);
//   - new alpha = scale × new rank, so alpha/rank (the scale) is preserved.
// Where lorascope deliberately differs (kohyaRank on each planned module keeps kohya's figure):
//   - the kept rank never exceeds the number of non-zero singular values the module has. kohya
//     pads with zero singular values (fixed rank above the old rank, or "one more" after the
//     last non-zero value) and crashes when the rank exceeds min(out, in); those directions add
//     nothing to ΔW, only bytes;
//   - an exactly-zero module (no non-zero singular value) is removed instead of written as a
//     rank-1 zero update; DoRA modules (`keepAtLeastOne`) keep rank ≥ 1 because their magnitude
//     vector still acts;
//   - without --rank a dynamic method is uncapped (kohya's silent default cap is 4).
//
// elias-gaeros resize_lora recipes (peer-tools §4): per singular value
//   score_i = log10 S_i + log10 rescale − Σ_w w·log10(term)
// with the terms spn_lora = S_0, fro_lora = ‖S‖₂, spn_ckpt = σ_max(W_base), fro_ckpt = ‖W_base‖_F,
// params = out + in·kh·kw (weights normalised to sum 1, terms with |w| ≤ 1e-6 skipped). A value is
// kept iff score > thr; `size=M` picks thr greedily so the factor bytes fit M MiB (elias' exact
// rule: sort descending, thr = score at the first index whose cumulative cost reaches the target,
// keep strictly greater; −∞ when everything fits). Modules with S_0 < 1e-6 are dropped as elias
// does. The `subspace` term is per singular value: |uᵢᵀ·W_base·vᵢ| (BaseNorm.subspace, from the
// base-norms job with `subspace: true`), so with it a module's scores are no longer in S order and
// the kept set is elias' mask, not necessarily the first k values (PlannedModule.keptIndices).
// Modules a ckpt term cannot score (no base weight mapped) keep their full rank and are listed
// in `unscored`; their bytes come off a size budget first.
//
// Every re-plan reuses preparePlanInput()'s prefix sums, so moving a slider costs a few binary
// searches per module (measured in bench/resize.ts).
import path from 'node:path';
import {dtypeSize} from './dtypes.js';
import type {Component, DType, LayerKind, ModuleSpectrum} from './types.js';

export type KohyaDynamicMethod = 'sv_ratio' | 'sv_fro' | 'sv_cumulative';

export const recipeTerms = ['spn_lora', 'fro_lora', 'spn_ckpt', 'fro_ckpt', 'subspace', 'params'] as const;
export type RecipeTerm = (typeof recipeTerms)[number];
export type RecipeWeights = Record<RecipeTerm, number>;

export type ResizeMethod =
	| {method: 'rank'; rank: number; convRank?: number}
	| {method: KohyaDynamicMethod; param: number; rank?: number; convRank?: number}
	| {
		method: 'recipe';
		/** Normalised to sum 1 by parseRecipe / normalizeRecipe. */
		weights: RecipeWeights;
		/** Score threshold (log10). */
		thr?: number;
		/** Target size of the factor tensors in MiB; takes precedence over thr. */
		size?: number;
		/** Multiplies the whole update (elias' `rescale`); default 1. */
		rescale?: number;
		/** The recipe as the user typed it. */
		text?: string;
	};

/** `spectral` is NaN where only ‖W‖_F was computed (base-norms job with need 'frobenius'). */
export type BaseNorm = {
	spectral: number;
	frobenius: number;
	/**
	 * |uᵢᵀ·W_base·vᵢ| for each singular triplet of the LoRA module's scale·up·down, in the order of
	 * its singular values (descending), for the `subspace` term; set by the base-norms job when
	 * asked with `subspace: true` (these depend on the LoRA, not only on the checkpoint).
	 */
	subspace?: readonly number[];
};
export type BaseNorms = Readonly<Record<string, BaseNorm>>;

export type PlanOptions = {
	/** Output dtype of the factor tensors; default each module's own. */
	dtype?: DType;
	/** Base checkpoint norms per module name, for the spn_ckpt / fro_ckpt / subspace recipe terms. */
	base?: BaseNorms;
	/** Modules that must keep rank ≥ 1 when they have a non-zero value (DoRA). */
	keepAtLeastOne?: Iterable<string>;
	/** How many modules `worst` lists (default 10). */
	worst?: number;
};

export type PlanExtras = {
	/** Size of the source file, for the compression ratio. */
	fileBytes?: number;
	/** Bytes of tensors copied unchanged (non-resizable modules, unknown tensors). */
	copiedBytes?: number;
	/** Bytes of the JSON metadata the output will carry (for the size estimate). */
	metadataBytes?: number;
};

export type ModuleAction = 'resize' | 'keep' | 'remove' | 'copy';

export type PlannedModule = {
	name: string;
	block: string;
	blockOrder: number;
	component: Component;
	kind: LayerKind;
	/** resize: fewer directions; keep: all non-zero directions kept; remove: rank 0; copy: not resizable. */
	action: ModuleAction;
	rankBefore: number | null;
	rankAfter: number;
	/** scale × rankAfter (kohya's rule); null for copied modules without alpha. */
	alphaAfter: number | null;
	/** The rank kohya's resize_lora would write (kohya methods only). */
	kohyaRank?: number;
	/** ‖S_kept‖₂ / ‖S‖₂ (1 when nothing is lost). */
	froRetained: number;
	/** ΣS_kept / ΣS. */
	sumRetained: number;
	/** Relative Frobenius error of the effective update: √(1 − froRetained²). */
	error: number;
	/**
	 * Indices (ascending, into the descending spectrum) of the singular values kept, present only
	 * when they are not the first rankAfter ones (a `subspace` recipe scores values out of S order).
	 */
	keptIndices?: number[];
	/** S_0 / S_{k−1}: how far down the spectrum the cut is (1 when k ≤ 1). */
	maxRatio: number;
	/** Estimated tensor bytes before / after (factor tensors + alpha). */
	bytesBefore: number;
	bytesAfter: number;
	note?: string;
};

export type PlannedBlock = {
	block: string;
	blockOrder: number;
	modules: number;
	rankBefore: number;
	rankAfter: number;
	meanRankBefore: number;
	meanRankAfter: number;
	/** √(Σ kept S² / Σ S²) over the block's resizable modules. */
	froRetained: number;
};

export type RankBin = {rank: number; before: number; after: number};

export type ResizePlan = {
	method: ResizeMethod;
	description: string;
	modules: PlannedModule[];
	blocks: PlannedBlock[];
	totals: {
		modules: number;
		resized: number;
		kept: number;
		removed: number;
		copied: number;
		rankBefore: number;
		rankAfter: number;
		/** √(Σ kept S² / Σ S²) over every resizable module. */
		froRetained: number;
		/** Relative Frobenius error of the whole LoRA's effective update. */
		error: number;
	};
	worst: PlannedModule[];
	histogram: RankBin[];
	removed: string[];
	copied: string[];
	/** Modules a recipe could not score (no base norm); kept at full rank. */
	unscored: string[];
	/** The recipe's final threshold (thr, or the one size= selected; −Infinity when all fit). */
	threshold: number | null;
	sizes: {
		/** Estimated output file size with the chosen dtype. */
		estimatedBytes: number;
		/** Estimated output size were every factor tensor written in this dtype. */
		byDtype: Record<'F32' | 'F16' | 'BF16', number>;
		/** Source file size (or the estimate of its tensors when unknown). */
		sourceBytes: number;
		/** sourceBytes / estimatedBytes. */
		compression: number;
	};
};

/** kohya's zero-matrix threshold on the largest raw singular value. */
export const kohyaMinSv = 1e-6;
/** elias' threshold on the largest effective singular value. */
export const eliasMinSv = 1e-6;
const minRecipeWeight = 1e-6;

type PreparedModule = {
	spectrum: ModuleSpectrum;
	sv: Float64Array;
	/** Prefix sums: cum[i] = Σ_{j≤i} S_j, cum2[i] = Σ_{j≤i} S_j². */
	cum: Float64Array;
	cum2: Float64Array;
	total: number;
	total2: number;
	log10Sv: Float64Array;
	/** Length of kohya's dense SVD spectrum: min(out, in·kh·kw). */
	denseLength: number;
	is4d: boolean;
	/** Largest raw singular value (of up·down, before the scale). */
	rawMax: number;
};

export type PlanInput = {
	readonly modules: readonly PreparedModule[];
	readonly extras: PlanExtras;
};

function isPrepared(value: PlanInput | readonly ModuleSpectrum[]): value is PlanInput {
	return !Array.isArray(value);
}

/** Precompute what every re-plan needs (prefix sums, logs) once per decomposition. */
export function preparePlanInput(spectra: readonly ModuleSpectrum[], extras: PlanExtras = {}): PlanInput {
	const modules = spectra.map((spectrum): PreparedModule => {
		const values = spectrum.resizable ? spectrum.singularValues : [];
		// Keep only positive finite values, descending, whatever the producer sent.
		const sv = Float64Array.from(values.filter(v => Number.isFinite(v) && v > 0)).sort().reverse();
		const n = sv.length;
		const cum = new Float64Array(n);
		const cum2 = new Float64Array(n);
		const log10Sv = new Float64Array(n);
		let s = 0;
		let s2 = 0;
		for (let i = 0; i < n; i++) {
			const v = sv[i]!;
			s += v;
			s2 += v * v;
			cum[i] = s;
			cum2[i] = s2;
			log10Sv[i] = Math.log10(v);
		}

		const scale = spectrum.scale > 0 && Number.isFinite(spectrum.scale) ? spectrum.scale : 1;
		return {
			spectrum,
			sv,
			cum,
			cum2,
			total: s,
			total2: s2,
			log10Sv,
			denseLength: Math.max(1, Math.min(spectrum.outDim, spectrum.inDim)),
			is4d: spectrum.kind !== 'linear',
			rawMax: n > 0 ? sv[0]! / scale : 0,
		};
	});
	return {modules, extras};
}

/** First index i with values[i] ≥ target (torch.searchsorted, side='left'); values ascending. */
function searchSorted(values: Float64Array, target: number, scaleBy = 1): number {
	let lo = 0;
	let hi = values.length;
	while (lo < hi) {
		const mid = (lo + hi) >>> 1;
		if (values[mid]! / scaleBy >= target) {
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}

	return lo;
}

/** Count of entries > x in a descending array. */
function countGreater(descending: Float64Array, x: number): number {
	let lo = 0;
	let hi = descending.length;
	while (lo < hi) {
		const mid = (lo + hi) >>> 1;
		if (descending[mid]! > x) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}

	return lo;
}

/**
 * Count of j with log10Sv[j] − offset > threshold. The score is formed exactly as for the size
 * selection (not as log10 S > threshold + offset), so the value that set the threshold compares
 * equal to it.
 */
function countScoresAbove(log10Sv: Float64Array, offset: number, threshold: number): number {
	let lo = 0;
	let hi = log10Sv.length;
	while (lo < hi) {
		const mid = (lo + hi) >>> 1;
		if (log10Sv[mid]! - offset > threshold) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}

	return lo;
}

function clamp(value: number, lo: number, hi: number): number {
	return Math.max(lo, Math.min(value, hi));
}

/**
 * The rank kohya's resize_lora writes for one module, on its dense spectrum (the non-zero values
 * followed by zeros up to min(out, in)).
 */
function kohyaRankOf(module: PreparedModule, method: Extract<ResizeMethod, {method: 'rank' | KohyaDynamicMethod}>): number {
	const length = module.denseLength;
	const n = module.sv.length;
	let k: number;
	switch (method.method) {
		case 'rank': {
			k = module.is4d ? (method.convRank ?? method.rank) : method.rank;
			break;
		}

		case 'sv_ratio': {
			const minSv = n > 0 ? module.sv[0]! / method.param : 0;
			// Zeros beyond n never exceed a non-negative bound.
			k = clamp(countGreater(module.sv, minSv), 1, length - 1) + 1;
			break;
		}

		case 'sv_cumulative': {
			// Padded zeros repeat the last cumulative value, so a target above it lands at `length`.
			const index = n > 0 ? searchSorted(module.cum, method.param, module.total) : 0;
			k = clamp((index >= n ? length : index) + 1, 1, length - 1) + 1;
			break;
		}

		case 'sv_fro': {
			const index = n > 0 ? searchSorted(module.cum2, method.param * method.param, module.total2) : 0;
			k = clamp((index >= n ? length : index) + 1, 1, length - 1) + 1;
			break;
		}
	}

	const cap = method.method === 'rank' ? Infinity : (module.is4d ? (method.convRank ?? method.rank) : method.rank) ?? Infinity;
	if (module.rawMax <= kohyaMinSv) {
		return 1;
	}

	return Math.min(k, cap);
}

export class ResizeMethodError extends Error {
	readonly reason: string;
	constructor(reason: string) {
		super(reason);
		this.name = 'ResizeMethodError';
		this.reason = reason;
	}
}

function isPositiveInteger(value: unknown): value is number {
	return typeof value === 'number' && Number.isInteger(value) && value >= 1;
}

/** Throws ResizeMethodError with a one-line reason when the method's parameters make no sense. */
export function validateMethod(method: ResizeMethod, options: PlanOptions = {}): void {
	switch (method.method) {
		case 'rank': {
			if (!isPositiveInteger(method.rank)) {
				throw new ResizeMethodError(`rank must be a whole number ≥ 1 (got ${String(method.rank)})`);
			}

			break;
		}

		case 'sv_ratio': {
			if (!(Number.isFinite(method.param) && method.param > 0)) {
				throw new ResizeMethodError(`sv_ratio needs a ratio > 0 (got ${String(method.param)})`);
			}

			break;
		}

		case 'sv_fro':
		case 'sv_cumulative': {
			if (!(Number.isFinite(method.param) && method.param > 0 && method.param <= 1)) {
				throw new ResizeMethodError(`${method.method} needs a fraction in (0, 1] (got ${String(method.param)})`);
			}

			break;
		}

		case 'recipe': {
			const sum = recipeTerms.reduce((s, term) => s + method.weights[term], 0);
			if (!recipeTerms.every(term => Number.isFinite(method.weights[term])) || Math.abs(sum) < minRecipeWeight) {
				throw new ResizeMethodError('a recipe needs at least one score weight (spn_lora, fro_lora, spn_ckpt, fro_ckpt, subspace, params)');
			}

			if (method.thr === undefined && method.size === undefined) {
				throw new ResizeMethodError('a recipe needs thr=<log10 threshold> or size=<MiB>');
			}

			if (method.thr !== undefined && !Number.isFinite(method.thr)) {
				throw new ResizeMethodError('thr must be a number');
			}

			if (method.size !== undefined && !(Number.isFinite(method.size) && method.size > 0)) {
				throw new ResizeMethodError('size must be a number of MiB > 0');
			}

			if (method.rescale !== undefined && !(Number.isFinite(method.rescale) && method.rescale > 0)) {
				throw new ResizeMethodError('rescale must be a number > 0');
			}

			const needsBase = (['spn_ckpt', 'fro_ckpt', 'subspace'] as const).some(term => Math.abs(method.weights[term]) > minRecipeWeight);
			if (needsBase && !options.base) {
				throw new ResizeMethodError('spn_ckpt / fro_ckpt / subspace need the base checkpoint (--base <checkpoint.safetensors>)');
			}

			// Checked on the whole set: a single module without values is only left unscored.
			const norms = options.base ? Object.values(options.base) : [];
			if (Math.abs(method.weights.subspace) > minRecipeWeight && norms.length > 0 && norms.every(norm => !norm.subspace)) {
				throw new ResizeMethodError('subspace needs uᵢᵀ·W·vᵢ per singular value, but these base norms hold none (base-norms computed without subspace: true)');
			}

			// Frobenius-only base norms would otherwise leave every module silently unscored.
			if (Math.abs(method.weights.spn_ckpt) > minRecipeWeight && options.base && Object.values(options.base).some(norm => !(norm.spectral >= 0))) {
				throw new ResizeMethodError('spn_ckpt needs σ_max of the base weights, but these base norms hold only ‖W‖_F (base-norms computed with need "frobenius")');
			}

			break;
		}
	}

	if (method.method !== 'recipe') {
		if (method.rank !== undefined && !isPositiveInteger(method.rank)) {
			throw new ResizeMethodError(`rank must be a whole number ≥ 1 (got ${String(method.rank)})`);
		}

		if (method.convRank !== undefined && !isPositiveInteger(method.convRank)) {
			throw new ResizeMethodError(`conv rank must be a whole number ≥ 1 (got ${String(method.convRank)})`);
		}
	}
}

/** Per-module log10 constant subtracted from log10 S_i; null when a needed base norm is missing. */
function recipeOffset(module: PreparedModule, weights: RecipeWeights, rescale: number, base: BaseNorms | undefined): number | null {
	let offset = -Math.log10(rescale);
	const n = module.sv.length;
	if (Math.abs(weights.spn_lora) > minRecipeWeight) {
		offset += weights.spn_lora * (n > 0 ? module.log10Sv[0]! : 0);
	}

	if (Math.abs(weights.fro_lora) > minRecipeWeight) {
		offset += weights.fro_lora * Math.log10(Math.sqrt(module.total2));
	}

	if (Math.abs(weights.params) > minRecipeWeight) {
		offset += weights.params * Math.log10(module.spectrum.outDim + module.spectrum.inDim);
	}

	const needsSpn = Math.abs(weights.spn_ckpt) > minRecipeWeight;
	const needsFro = Math.abs(weights.fro_ckpt) > minRecipeWeight;
	const needsSubspace = Math.abs(weights.subspace) > minRecipeWeight;
	if (needsSpn || needsFro || needsSubspace) {
		const norm = base?.[module.spectrum.name];
		if (!norm || (needsSpn && !(norm.spectral > 0)) || (needsFro && !(norm.frobenius > 0))
			|| (needsSubspace && norm.subspace?.length !== n)) {
			return null;
		}

		if (needsSpn) {
			offset += weights.spn_ckpt * Math.log10(norm.spectral);
		}

		if (needsFro) {
			offset += weights.fro_ckpt * Math.log10(norm.frobenius);
		}
	}

	return offset;
}

function elementSize(module: PreparedModule, dtype: DType | undefined): number {
	const chosen = dtype ?? module.spectrum.dtype;
	const size = dtypeSize[chosen];
	return size > 0 ? size : 4;
}

/**
 * Elias' greedy size selection over (score, cost) pairs of every scored singular value: the
 * threshold is the score at the first position (descending order) whose cumulative cost reaches
 * the target; values strictly above it are kept. −Infinity when the total fits.
 */
export function selectSizeThreshold(scores: Float64Array, costs: Float64Array, targetBytes: number): number {
	let total = 0;
	const costByScore = new Map<number, number>();
	for (let i = 0; i < scores.length; i++) {
		total += costs[i]!;
		costByScore.set(scores[i]!, (costByScore.get(scores[i]!) ?? 0) + costs[i]!);
	}

	if (!(targetBytes < total)) {
		return Number.NEGATIVE_INFINITY;
	}

	// Ties share one threshold value, so summing their costs per distinct score gives the same
	// threshold as walking them one by one.
	const distinct = Float64Array.from(costByScore.keys()).sort().reverse();
	let cumulative = 0;
	for (const score of distinct) {
		cumulative += costByScore.get(score)!;
		if (cumulative >= targetBytes) {
			return score;
		}
	}

	return Number.NEGATIVE_INFINITY;
}

/**
 * |uᵢᵀ·W·vᵢ| below this counts as this: log10 of an exact zero would make the score +∞ (elias
 * computes it in torch, where such a value is always kept), and an infinite score would break the
 * size selection. 1e-30 keeps the value (its score is ~30·w above any real one) with finite scores.
 */
const subspaceFloor = 1e-30;

/**
 * The scores of a module under a recipe with a `subspace` term, sorted descending, and for each
 * its index in the spectrum: score_j = log10 S_j − offset − w·log10|uⱼᵀ·W·vⱼ|.
 */
function subspaceScores(module: PreparedModule, offset: number, weight: number, subspace: readonly number[]): {scores: Float64Array; order: Int32Array} {
	const n = module.sv.length;
	const raw = new Float64Array(n);
	for (let j = 0; j < n; j++) {
		const d = Math.abs(subspace[j]!);
		raw[j] = module.log10Sv[j]! - offset - (weight * Math.log10(d > subspaceFloor ? d : subspaceFloor));
	}

	// Stable on ties: equal scores keep spectrum order.
	const order = Int32Array.from({length: n}, (_, j) => j).sort((a, b) => raw[b]! - raw[a]! || a - b);
	return {scores: Float64Array.from(order, j => raw[j]!), order};
}

type SubspaceScores = ReturnType<typeof subspaceScores>;

let subspaceMemo: {prepared: PlanInput; base: BaseNorms; key: string; perValue: Array<SubspaceScores | undefined>} | undefined;

/**
 * Per-value scores only depend on the decomposition, the base values, the weights and the rescale,
 * not on thr or size: kept from the last plan, so stepping the threshold re-plans an SDXL LoRA in
 * milliseconds instead of re-scoring and re-sorting ~30,000 values.
 */
function memoisedSubspaceScores(
	prepared: PlanInput,
	base: BaseNorms,
	weights: RecipeWeights,
	rescale: number,
	compute: () => Array<SubspaceScores | undefined>,
): Array<SubspaceScores | undefined> {
	const key = JSON.stringify([weights, rescale]);
	if (subspaceMemo?.prepared === prepared && subspaceMemo.base === base && subspaceMemo.key === key) {
		return subspaceMemo.perValue;
	}

	const perValue = compute();
	subspaceMemo = {prepared, base, key, perValue};
	return perValue;
}

type ScoredModule = {log10Sv: Float64Array; offset: number; cost: number};

/** Count of j with log10Sv[j] − offset ≥ t (log10Sv descending). */
function countScoresAtLeast(log10Sv: Float64Array, offset: number, t: number): number {
	let lo = 0;
	let hi = log10Sv.length;
	while (lo < hi) {
		const mid = (lo + hi) >>> 1;
		if (log10Sv[mid]! - offset >= t) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}

	return lo;
}

/**
 * selectSizeThreshold without flattening and sorting every score: bisection on the threshold
 * value (each step a binary search per module), then the few scores left in the final interval
 * are walked exactly as the flat rule does. Same result, a few ms for an SDXL LoRA.
 */
function sizeThreshold(modules: readonly ScoredModule[], targetBytes: number): number {
	let total = 0;
	let lo = Number.POSITIVE_INFINITY;
	let hi = Number.NEGATIVE_INFINITY;
	for (const module of modules) {
		const n = module.log10Sv.length;
		if (n === 0) {
			continue;
		}

		total += n * module.cost;
		lo = Math.min(lo, module.log10Sv[n - 1]! - module.offset);
		hi = Math.max(hi, module.log10Sv[0]! - module.offset);
	}

	if (!(targetBytes < total)) {
		return Number.NEGATIVE_INFINITY;
	}

	const costAtLeast = (t: number) => {
		let cost = 0;
		for (const module of modules) {
			cost += module.cost * countScoresAtLeast(module.log10Sv, module.offset, t);
		}

		return cost;
	};

	if (costAtLeast(hi) >= targetBytes) {
		return hi;
	}

	// Invariant: cost(≥ lo) ≥ target > cost(≥ hi); the threshold lies in [lo, hi).
	for (let iteration = 0; iteration < 64; iteration++) {
		const mid = lo + ((hi - lo) / 2);
		if (mid <= lo || mid >= hi) {
			break;
		}

		if (costAtLeast(mid) >= targetBytes) {
			lo = mid;
		} else {
			hi = mid;
		}
	}

	const inside: Array<{score: number; cost: number}> = [];
	for (const module of modules) {
		const from = countScoresAtLeast(module.log10Sv, module.offset, hi);
		const to = countScoresAtLeast(module.log10Sv, module.offset, lo);
		for (let j = from; j < to; j++) {
			inside.push({score: module.log10Sv[j]! - module.offset, cost: module.cost});
		}
	}

	inside.sort((a, b) => b.score - a.score);
	let cumulative = costAtLeast(hi);
	for (const {score, cost} of inside) {
		cumulative += cost;
		if (cumulative >= targetBytes) {
			return score;
		}
	}

	return lo;
}

/** Plan a resize. Pass preparePlanInput()'s result to make repeated plans cheap. */
export function planResize(input: PlanInput | readonly ModuleSpectrum[], method: ResizeMethod, options: PlanOptions = {}): ResizePlan {
	validateMethod(method, options);
	const prepared = isPrepared(input) ? input : preparePlanInput(input);
	const keepOne = new Set(options.keepAtLeastOne ?? []);
	const ranks = new Int32Array(prepared.modules.length);
	const kohyaRanks: Array<number | undefined> = [];
	const unscored: string[] = [];
	/** Kept spectrum indices of modules whose kept set is not the first ranks[i] values. */
	const masks: Array<number[] | undefined> = [];
	let threshold: number | null = null;

	if (method.method === 'recipe') {
		const rescale = method.rescale ?? 1;
		const subspaceWeight = Math.abs(method.weights.subspace) > minRecipeWeight ? method.weights.subspace : 0;
		const offsets: Array<number | null> = prepared.modules.map(module => (module.sv.length > 0 && module.sv[0]! >= eliasMinSv
			? recipeOffset(module, method.weights, rescale, options.base)
			: Number.NaN));
		// With a subspace term each module's scores, sorted descending, stand in for its log10 S
		// (offset 0), so the same threshold searches apply; `order` maps them back to the spectrum.
		const perValue = subspaceWeight === 0 ? [] : memoisedSubspaceScores(prepared, options.base!, method.weights, rescale, () => prepared.modules.map((module, i) => {
			const offset = offsets[i];
			return offset === null || offset === undefined || Number.isNaN(offset)
				? undefined
				: subspaceScores(module, offset, subspaceWeight, options.base![module.spectrum.name]!.subspace!);
		}));
		if (method.size === undefined) {
			threshold = method.thr!;
		} else {
			let target = method.size * 1024 * 1024;
			const scored: ScoredModule[] = [];
			prepared.modules.forEach((module, i) => {
				const offset = offsets[i];
				const cost = elementSize(module, options.dtype) * (module.spectrum.outDim + module.spectrum.inDim);
				const values = perValue[i];
				if (offset === null) {
					target -= module.sv.length * cost;
				} else if (values) {
					scored.push({log10Sv: values.scores, offset: 0, cost});
				} else if (offset !== undefined && !Number.isNaN(offset)) {
					scored.push({log10Sv: module.log10Sv, offset, cost});
				}
			});
			threshold = sizeThreshold(scored, target);
		}

		prepared.modules.forEach((module, i) => {
			const offset = offsets[i];
			const values = perValue[i];
			if (offset === null) {
				unscored.push(module.spectrum.name);
				ranks[i] = module.sv.length;
			} else if (offset === undefined || Number.isNaN(offset)) {
				ranks[i] = 0;
			} else if (values) {
				const k = countScoresAbove(values.scores, 0, threshold!);
				ranks[i] = k;
				// The kept indices are distinct, so they are the first k exactly when none is ≥ k.
				let largest = -1;
				for (let j = 0; j < k; j++) {
					largest = Math.max(largest, values.order[j]!);
				}

				if (largest !== k - 1) {
					masks[i] = Array.from(values.order.subarray(0, k)).sort((a, b) => a - b);
				}
			} else {
				ranks[i] = countScoresAbove(module.log10Sv, offset, threshold!);
			}
		});
	} else {
		prepared.modules.forEach((module, i) => {
			const kohya = kohyaRankOf(module, method);
			kohyaRanks[i] = kohya;
			ranks[i] = Math.min(kohya, module.sv.length);
		});
	}

	prepared.modules.forEach((module, i) => {
		if (ranks[i] === 0 && module.sv.length > 0 && keepOne.has(module.spectrum.name)) {
			ranks[i] = 1;
		}
	});

	return summarize(prepared, method, options, ranks, kohyaRanks, unscored, threshold, masks);
}

function factorBytes(spectrum: ModuleSpectrum, rank: number, elemSize: number): number {
	// Factors plus a 0-d alpha in the same dtype (kohya writes one per module).
	return rank === 0 ? 0 : (rank * (spectrum.outDim + spectrum.inDim) * elemSize) + elemSize;
}

function summarize(
	prepared: PlanInput,
	method: ResizeMethod,
	options: PlanOptions,
	ranks: Int32Array,
	kohyaRanks: ReadonlyArray<number | undefined>,
	unscored: string[],
	threshold: number | null,
	masks: ReadonlyArray<readonly number[] | undefined> = [],
): ResizePlan {
	const modules: PlannedModule[] = [];
	const blocks = new Map<string, PlannedBlock & {energy: number; kept: number}>();
	const histogram = new Map<number, RankBin>();
	const removed: string[] = [];
	const copied: string[] = [];
	let energy = 0;
	let keptEnergy = 0;
	let rankBefore = 0;
	let rankAfter = 0;
	let resized = 0;
	let kept = 0;
	let headerBytes = 8 + (prepared.extras.metadataBytes ?? 0);
	let bytesBefore = 0;
	let bytesAfter = 0;
	const byDtype = {F32: 0, F16: 0, BF16: 0};

	prepared.modules.forEach((module, i) => {
		const {spectrum} = module;
		const n = module.sv.length;
		const k = ranks[i]!;
		const sourceElem = elementSize(module, undefined);
		const outElem = elementSize(module, options.dtype);
		const before = spectrum.rank ?? 0;
		let planned: PlannedModule;
		if (spectrum.resizable) {
			const mask = masks[i];
			let keptSq = k > 0 ? module.cum2[k - 1]! : 0;
			let keptSum = k > 0 ? module.cum[k - 1]! : 0;
			let smallest = k > 0 ? module.sv[k - 1]! : 0;
			if (mask) {
				keptSq = 0;
				keptSum = 0;
				for (const j of mask) {
					keptSq += module.sv[j]! ** 2;
					keptSum += module.sv[j]!;
				}

				smallest = module.sv[mask.at(-1)!]!;
			}

			const froRetained = module.total2 > 0 ? Math.sqrt(keptSq / module.total2) : 1;
			const sumRetained = module.total > 0 ? keptSum / module.total : 1;
			const action: ModuleAction = k === 0 ? 'remove' : (k >= n && k === before ? 'keep' : 'resize');
			planned = {
				name: spectrum.name,
				block: spectrum.block,
				blockOrder: spectrum.blockOrder,
				component: spectrum.component,
				kind: spectrum.kind,
				action,
				rankBefore: spectrum.rank,
				rankAfter: k,
				alphaAfter: k === 0 ? null : spectrum.scale * k,
				froRetained,
				sumRetained,
				error: Math.sqrt(Math.max(0, 1 - (froRetained * froRetained))),
				maxRatio: k > 1 ? module.sv[0]! / smallest : 1,
				bytesBefore: factorBytes(spectrum, before, sourceElem),
				bytesAfter: factorBytes(spectrum, k, outElem),
			};
			if (mask) {
				planned.keptIndices = [...mask];
			}

			if (kohyaRanks[i] !== undefined) {
				planned.kohyaRank = kohyaRanks[i];
			}

			if (spectrum.note) {
				planned.note = spectrum.note;
			}

			energy += module.total2;
			keptEnergy += keptSq;
			rankBefore += before;
			rankAfter += k;
			if (action === 'remove') {
				removed.push(spectrum.name);
			} else if (action === 'keep') {
				kept++;
			} else {
				resized++;
			}

			for (const [rank, field] of [[before, 'before'], [k, 'after']] as const) {
				const bin = histogram.get(rank) ?? {rank, before: 0, after: 0};
				bin[field]++;
				histogram.set(rank, bin);
			}

			const block = blocks.get(spectrum.block) ?? {
				block: spectrum.block,
				blockOrder: spectrum.blockOrder,
				modules: 0,
				rankBefore: 0,
				rankAfter: 0,
				meanRankBefore: 0,
				meanRankAfter: 0,
				froRetained: 1,
				energy: 0,
				kept: 0,
			};
			block.modules++;
			block.rankBefore += before;
			block.rankAfter += k;
			block.energy += module.total2;
			block.kept += keptSq;
			blocks.set(spectrum.block, block);
			if (k > 0) {
				// Two factor tensors and an alpha: name + dtype/shape/offsets JSON.
				headerBytes += (3 * (spectrum.name.length + 80));
			}

			const factorElements = k === 0 ? 0 : (k * (spectrum.outDim + spectrum.inDim)) + 1;
			byDtype.F32 += factorElements * 4;
			byDtype.F16 += factorElements * 2;
			byDtype.BF16 += factorElements * 2;
		} else {
			planned = {
				name: spectrum.name,
				block: spectrum.block,
				blockOrder: spectrum.blockOrder,
				component: spectrum.component,
				kind: spectrum.kind,
				action: 'copy',
				rankBefore: spectrum.rank,
				rankAfter: spectrum.rank ?? 0,
				alphaAfter: spectrum.alpha,
				froRetained: 1,
				sumRetained: 1,
				error: 0,
				maxRatio: 1,
				bytesBefore: 0,
				bytesAfter: 0,
			};
			if (spectrum.note) {
				planned.note = spectrum.note;
			}

			copied.push(spectrum.name);
		}

		bytesBefore += planned.bytesBefore;
		bytesAfter += planned.bytesAfter;
		modules.push(planned);
	});

	const copiedBytes = prepared.extras.copiedBytes ?? 0;
	const estimatedBytes = bytesAfter + copiedBytes + headerBytes;
	const sourceBytes = prepared.extras.fileBytes ?? (bytesBefore + copiedBytes + headerBytes);
	const froRetained = energy > 0 ? Math.sqrt(keptEnergy / energy) : 1;
	const worstCount = options.worst ?? 10;
	const worst = modules
		.filter(m => m.error > 0)
		.sort((a, b) => b.error - a.error || a.name.localeCompare(b.name))
		.slice(0, worstCount);

	return {
		method,
		description: describeMethod(method),
		modules,
		blocks: [...blocks.values()]
			.sort((a, b) => a.blockOrder - b.blockOrder || a.block.localeCompare(b.block))
			.map(({energy: e, kept: kEnergy, ...block}) => ({
				...block,
				meanRankBefore: block.rankBefore / block.modules,
				meanRankAfter: block.rankAfter / block.modules,
				froRetained: e > 0 ? Math.sqrt(kEnergy / e) : 1,
			})),
		totals: {
			modules: modules.length,
			resized,
			kept,
			removed: removed.length,
			copied: copied.length,
			rankBefore,
			rankAfter,
			froRetained,
			error: Math.sqrt(Math.max(0, 1 - (froRetained * froRetained))),
		},
		worst,
		histogram: [...histogram.values()].sort((a, b) => a.rank - b.rank),
		removed,
		copied,
		unscored,
		threshold,
		sizes: {
			estimatedBytes,
			byDtype: {
				F32: byDtype.F32 + copiedBytes + headerBytes,
				F16: byDtype.F16 + copiedBytes + headerBytes,
				BF16: byDtype.BF16 + copiedBytes + headerBytes,
			},
			sourceBytes,
			compression: estimatedBytes > 0 ? sourceBytes / estimatedBytes : 1,
		},
	};
}

function emptyWeights(): RecipeWeights {
	return {spn_lora: 0, fro_lora: 0, spn_ckpt: 0, fro_ckpt: 0, subspace: 0, params: 0};
}

/** Weights divided by their sum (elias normalises them so they sum to 1). */
export function normalizeRecipeWeights(weights: Partial<RecipeWeights>): RecipeWeights {
	const out = {...emptyWeights(), ...weights};
	const sum = recipeTerms.reduce((s, term) => s + out[term], 0);
	if (Math.abs(sum) < minRecipeWeight || !Number.isFinite(sum)) {
		throw new ResizeMethodError('a recipe needs at least one score weight (spn_lora, fro_lora, spn_ckpt, fro_ckpt, subspace, params)');
	}

	for (const term of recipeTerms) {
		out[term] /= sum;
	}

	return out;
}

function parseNumber(text: string, key: string, recipe: string): number {
	const value = text.trim() === '' ? Number.NaN : Number(text);
	if (!Number.isFinite(value)) {
		throw new ResizeMethodError(`cannot read ${key}=${text} in recipe "${recipe}"`);
	}

	return value;
}

/**
 * Parse an elias-gaeros recipe: comma-separated `term=weight` (a bare term means weight 1),
 * `thr=<log10>`, `size=<MiB>`, `rescale=<factor>`. Weights are normalised to sum 1.
 */
export function parseRecipe(text: string): Extract<ResizeMethod, {method: 'recipe'}> {
	const weights: Partial<RecipeWeights> = {};
	let thr: number | undefined;
	let size: number | undefined;
	let rescale: number | undefined;
	const trimmed = text.trim();
	if (trimmed === '') {
		throw new ResizeMethodError('empty recipe');
	}

	for (const part of trimmed.split(',')) {
		const [rawKey = '', ...rest] = part.split('=');
		const key = rawKey.trim();
		const value = rest.join('=');
		const hasValue = rest.length > 0;
		if ((recipeTerms as readonly string[]).includes(key)) {
			weights[key as RecipeTerm] = hasValue ? parseNumber(value, key, trimmed) : 1;
			continue;
		}

		if (!hasValue) {
			throw new ResizeMethodError(`${key === '' ? 'empty entry' : key} needs a value in recipe "${trimmed}"`);
		}

		switch (key) {
			case 'thr': {
				thr = parseNumber(value, key, trimmed);
				break;
			}

			case 'size': {
				size = parseNumber(value, key, trimmed);
				break;
			}

			case 'rescale': {
				rescale = parseNumber(value, key, trimmed);
				break;
			}

			default: {
				throw new ResizeMethodError(`unknown key "${key}" in recipe "${trimmed}" (known: ${[...recipeTerms, 'thr', 'size', 'rescale'].join(', ')})`);
			}
		}
	}

	const method: Extract<ResizeMethod, {method: 'recipe'}> = {method: 'recipe', weights: normalizeRecipeWeights(weights), text: trimmed};
	if (thr !== undefined) {
		method.thr = thr;
	}

	if (size !== undefined) {
		method.size = size;
	}

	if (rescale !== undefined && rescale !== 1) {
		method.rescale = rescale;
	}

	if (thr === undefined && size === undefined) {
		throw new ResizeMethodError(`recipe "${trimmed}" needs thr=<log10 threshold> or size=<MiB>`);
	}

	return method;
}

/** Compact decimal for names and labels: 0.9 → "0.9", 4 → "4", 1/3 → "0.3333". */
export function formatParameter(value: number): string {
	if (!Number.isFinite(value)) {
		return value > 0 ? 'inf' : '-inf';
	}

	return String(Number(value.toPrecision(4)));
}

function recipeTermsText(weights: RecipeWeights, separator: string, compact: boolean): string {
	return recipeTerms
		.filter(term => weights[term] !== 0)
		.sort()
		.map(term => `${compact ? term.replace('_', '') : term}${compact ? '' : '='}${formatParameter(weights[term])}`)
		.join(separator);
}

/** One line for humans: "rank 8 (conv 4)", "sv_fro 0.9 (max rank 32)", "recipe spn_ckpt=1 thr=-1.2". */
export function describeMethod(method: ResizeMethod): string {
	switch (method.method) {
		case 'rank': {
			return method.convRank === undefined || method.convRank === method.rank
				? `rank ${method.rank}`
				: `rank ${method.rank} (conv ${method.convRank})`;
		}

		case 'recipe': {
			const parts = [`recipe ${recipeTermsText(method.weights, ' ', false)}`];
			if (method.size !== undefined) {
				parts.push(`size=${formatParameter(method.size)} MiB`);
			} else if (method.thr !== undefined) {
				parts.push(`thr=${formatParameter(method.thr)}`);
			}

			if (method.rescale !== undefined && method.rescale !== 1) {
				parts.push(`rescale=${formatParameter(method.rescale)}`);
			}

			return parts.join(' ');
		}

		default: {
			const caps: string[] = [];
			if (method.rank !== undefined) {
				caps.push(`max rank ${method.rank}`);
			}

			if (method.convRank !== undefined && method.convRank !== method.rank) {
				caps.push(`conv ${method.convRank}`);
			}

			return `${method.method} ${formatParameter(method.param)}${caps.length > 0 ? ` (${caps.join(', ')})` : ''}`;
		}
	}
}

/** The method part of an output name: "rank8", "sv_fro0.9_r32", "spnckpt1_thr-1.2", "spnckpt1_size50". */
export function methodSlug(method: ResizeMethod): string {
	switch (method.method) {
		case 'rank': {
			const conv = method.convRank === undefined || method.convRank === method.rank ? '' : `_c${method.convRank}`;
			return `rank${method.rank}${conv}`;
		}

		case 'recipe': {
			const parts = [recipeTermsText(method.weights, '_', true)];
			if (method.rescale !== undefined && method.rescale !== 1) {
				parts.push(`scale${formatParameter(method.rescale)}`);
			}

			parts.push(method.size === undefined ? `thr${formatParameter(method.thr ?? 0)}` : `size${formatParameter(method.size)}`);
			return parts.join('_');
		}

		default: {
			const cap = method.rank === undefined ? '' : `_r${method.rank}`;
			const conv = method.convRank === undefined || method.convRank === method.rank ? '' : `_c${method.convRank}`;
			return `${method.method}${formatParameter(method.param)}${cap}${conv}`;
		}
	}
}

/** `<name>_<method><param>.safetensors` for a source path or file name (a file name, no folder). */
export function outputFileName(source: string, method: ResizeMethod): string {
	const base = path.basename(source).replace(/\.safetensors$/i, '');
	return `${base}_${methodSlug(method)}.safetensors`;
}

/** outputFileName() placed in `directory`, or next to the source. */
export function outputPath(source: string, method: ResizeMethod, directory?: string): string {
	return path.join(directory ?? path.dirname(source), outputFileName(source, method));
}
