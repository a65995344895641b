// SVD of one LoRA module's effective update ΔW = scale·up·down without forming ΔW.
//
// Everything reduces to a small "core": a factor L (rank×k) with down = P·L·Q for orthonormal
// rows Q (P a row permutation), and M = (up·P·L)ᵀ(up·P·L) (k×k), whose eigenvalues are the
// squared singular values of up·down. With M = W·Λ·Wᵀ and B = up·P·L = U·Σ·Wᵀ:
//   U  = up · (P·L·W·Σ⁻¹)       (leftMap, rank×k)
//   Vt = (Wᵀ·L₁⁻¹·Pᵀ) · down     (rightMap, k×rank; L₁ = the top k×k block of L)
// so the singular vectors cost one more product each and are only built when needed.
//
// Fast route (every ordinary LoRA): float64 Grams G_u = upᵀup and G_d = down·downᵀ, a pivoted
// Cholesky G_d = P·L·Lᵀ·Pᵀ (rank-revealing) and M = (P·L)ᵀ·G_u·(P·L). Its eigenvalue error is
// about ε·‖up‖²‖down‖², harmless while ‖up‖·‖down‖ is within a few hundred of σmax (real files:
// ρ = tr G_u·tr G_d / σmax² ≈ 10–300). Factors that cancel each other (ρ > 1e5) take the refined
// route: CholeskyQR2 of downᵀ (a second Cholesky of the re-orthogonalised rows) and M as the
// Gram of B = up·P·L formed explicitly in float64, whose error is ε·σmax² instead.
import {denseMatmul} from '../../lora/linalg.js';
import {cholesky, pivotedCholesky, symmetricEigen, symmetricEigenvalues} from './svd.js';
import type {EngineKernels, MatrixInput} from './types.js';

/** The k×k problem of one module (see the file comment). */
export type FactorCore = {
	rank: number;
	/** Numerical rank of down. */
	k: number;
	/** perm[i] = row of down that pivoted row i is. */
	perm: Int32Array;
	/** rank×k row-major, lower trapezoidal in pivoted order. */
	l: Float64Array;
	/** k×k symmetric: Gram of up·P·L. */
	m: Float64Array;
	/** True when the refined (CholeskyQR2) route was taken. */
	refined: boolean;
	/** Eigenvalues of m (descending), once computed. */
	eigenvalues?: Float64Array;
};

/** Singular values and the small maps that turn up/down into singular vectors. */
export type ModuleFactorization = {
	outDim: number;
	rank: number;
	inDim: number;
	/** Singular values of scale·up·down, descending (numerically non-zero ones only). */
	singularValues: Float64Array;
	/** rank×k row-major: U = up · leftMap (columns orthonormal; the sign of scale is folded in). */
	leftMap: Float64Array;
	/** k×rank row-major: Vt = rightMap · down (rows orthonormal). */
	rightMap: Float64Array;
};

export type ModuleDecomposition = {
	singularValues: Float64Array;
	/** outDim×k row-major, orthonormal columns. */
	u: Float32Array;
	/** k×inDim row-major, orthonormal rows. */
	vt: Float32Array;
};

/** Eigenvalues below this fraction of the largest are rounding noise (σ < 1e-7·σmax). */
const relativeEigenFloor = 1e-14;
/** Above this ρ = tr G_u·tr G_d / λmax(M) the fast route may miss 1e-4 at σ = 1e-3·σmax. */
const refineAbove = 1e5;

/** P·L in original coordinates (rank×k): row perm[i] = row i of L. */
function unpivot(core: Pick<FactorCore, 'rank' | 'k' | 'perm' | 'l'>): Float64Array {
	const {rank, k, perm, l} = core;
	const ld = new Float64Array(rank * k);
	for (let i = 0; i < rank; i++) {
		ld.set(l.subarray(i * k, (i + 1) * k), perm[i]! * k);
	}

	return ld;
}

/** The fast core from the two float64 Grams; null when down (or the module) is numerically zero. */
export function coreFromGrams(gu: Float64Array, gd: Float64Array, rank: number): FactorCore | null {
	if (rank === 0) {
		return null;
	}

	const chol = pivotedCholesky(gd, rank);
	const k = chol.rank;
	if (k === 0) {
		return null;
	}

	const ld = unpivot({rank, k, perm: chol.perm, l: chol.l});
	// M = Ldᵀ·(G_u·Ld), filled symmetrically against rounding.
	const m = upperProduct(ld, denseMatmul(gu, rank, rank, ld, k), rank, k);
	mirrorUpper(m, k);
	return {rank, k, perm: chol.perm, l: chol.l, m, refined: false};
}

/**
 * The upper triangle of Ldᵀ·(G_u·Ld) (k×k from two rank×k matrices). A function of its own so V8
 * optimises it whole: as a loop inside coreFromGrams it was optimised on stack and deoptimised at
 * the next call in that function, once per module.
 */
function upperProduct(ld: Float64Array, guLd: Float64Array, rank: number, k: number): Float64Array {
	const m = new Float64Array(k * k);
	for (let i = 0; i < rank; i++) {
		const row = i * k;
		for (let a = 0; a < k; a++) {
			const value = ld[row + a]!;
			if (value === 0) {
				continue;
			}

			for (let b = a; b < k; b++) {
				m[(a * k) + b]! += value * guLd[row + b]!;
			}
		}
	}

	return m;
}

/**
 * The refined core (CholeskyQR2 of downᵀ, explicit B = up·P·L): about three times the work of
 * the fast route, for modules whose factors cancel. Falls back to `fast` if the second
 * Cholesky fails (down too ill-conditioned even for CholeskyQR2).
 */
export async function refinedCore(
	fast: FactorCore,
	up: MatrixInput,
	down: MatrixInput,
	outDim: number,
	inDim: number,
	kernels: Pick<EngineKernels, 'productGramCols' | 'productGramRows'>,
): Promise<FactorCore> {
	const {rank, k, perm, l: l1} = fast;
	// T1 = L1₁⁻¹·(rows perm[0..k) of the identity): Q1 = T1·down has nearly orthonormal rows.
	const l1Inverse = lowerInverse(l1, k, k);
	const t1 = new Float64Array(k * rank);
	for (let a = 0; a < k; a++) {
		for (let t = 0; t <= a; t++) {
			t1[(a * rank) + perm[t]!] = l1Inverse[(a * k) + t]!;
		}
	}

	const g2 = await kernels.productGramRows(t1, k, rank, down, inDim);
	const l2 = cholesky(g2, k);
	if (!l2) {
		return fast;
	}

	// L = L1·L2 stays lower trapezoidal in pivoted order.
	const l = denseMatmul(l1, rank, k, l2, k);
	const m = await kernels.productGramCols(up, outDim, rank, unpivot({rank, k, perm, l}), k);
	mirrorUpper(m, k, true);
	return {rank, k, perm, l, m, refined: true};
}

/** ρ = tr G_u · tr G_d / λmax(M): how much the factors cancel in their product. */
export function cancellation(gu: Float64Array, gd: Float64Array, rank: number, lambdaMax: number): number {
	let traceU = 0;
	let traceD = 0;
	for (let i = 0; i < rank; i++) {
		traceU += gu[(i * rank) + i]!;
		traceD += gd[(i * rank) + i]!;
	}

	return lambdaMax > 0 ? traceU * traceD / lambdaMax : 0;
}

function keptCount(values: Float64Array): number {
	const lambdaMax = values[0] ?? 0;
	let kept = 0;
	while (kept < values.length && values[kept]! > lambdaMax * relativeEigenFloor) {
		kept++;
	}

	return lambdaMax > 0 ? kept : 0;
}

const usableScale = (scale: number) => scale !== 0 && Number.isFinite(scale);

/** Singular values only of scale·up·down from a core (no eigenvectors: the decompose job's path). */
export function spectrumOfCore(core: FactorCore | null, scale: number): Float64Array {
	if (!core || !usableScale(scale)) {
		return new Float64Array(0);
	}

	const values = core.eigenvalues ?? symmetricEigenvalues(core.m, core.k);
	const kept = keptCount(values);
	const sigma = new Float64Array(kept);
	for (let j = 0; j < kept; j++) {
		sigma[j] = Math.abs(scale) * Math.sqrt(values[j]!);
	}

	return sigma;
}

/** The core of one module: the fast route, refined when the factors cancel. */
export async function moduleCore(
	up: MatrixInput,
	down: MatrixInput,
	outDim: number,
	rank: number,
	inDim: number,
	kernels: Pick<EngineKernels, 'gramPair' | 'productGramCols' | 'productGramRows'>,
): Promise<FactorCore | null> {
	const {gu, gd} = await kernels.gramPair(up, outDim, rank, down, inDim);
	return moduleCoreFromGrams(gu, gd, up, down, outDim, rank, inDim, kernels);
}

/** moduleCore for Grams already computed (the decompose job overlaps them with the previous module's r×r work). */
export async function moduleCoreFromGrams(
	gu: Float64Array,
	gd: Float64Array,
	up: MatrixInput,
	down: MatrixInput,
	outDim: number,
	rank: number,
	inDim: number,
	kernels: Pick<EngineKernels, 'productGramCols' | 'productGramRows'>,
): Promise<FactorCore | null> {
	const fast = coreFromGrams(gu, gd, rank);
	if (!fast) {
		return null;
	}

	fast.eigenvalues = symmetricEigenvalues(fast.m, fast.k);
	return cancellation(gu, gd, rank, fast.eigenvalues[0] ?? 0) > refineAbove ? refinedCore(fast, up, down, outDim, inDim, kernels) : fast;
}

/**
 * Singular values and maps from a core. `count` forces the number of triplets (to match a
 * spectrum computed earlier by spectrumOfCore).
 */
export function factorizeCore(core: FactorCore | null, outDim: number, inDim: number, scale: number, count?: number): ModuleFactorization {
	const rank = core?.rank ?? 0;
	const empty = {outDim, rank, inDim, singularValues: new Float64Array(0), leftMap: new Float64Array(0), rightMap: new Float64Array(0)};
	if (!core || !usableScale(scale)) {
		return empty;
	}

	const {k, l, perm} = core;
	const r = rank;
	const ld = unpivot(core);
	const eigen = symmetricEigen(core.m, k);
	const kept = Math.min(count ?? keptCount(eigen.values), k);
	if (kept === 0) {
		return empty;
	}

	const sign = scale < 0 ? -1 : 1;
	const singularValues = new Float64Array(kept);
	const inverseSigma = new Float64Array(kept);
	for (let j = 0; j < kept; j++) {
		const lambda = Math.max(eigen.values[j]!, 0);
		singularValues[j] = Math.abs(scale) * Math.sqrt(lambda);
		// A forced triplet with a zero value gets a zero column rather than a division by zero.
		inverseSigma[j] = lambda > 0 ? 1 / Math.sqrt(lambda) : 0;
	}

	// leftMap = Ld·W[:, :kept]·Σcore⁻¹ (× sign of scale).
	const leftMap = new Float64Array(r * kept);
	for (let i = 0; i < r; i++) {
		for (let t = 0; t < k; t++) {
			const value = ld[(i * k) + t]!;
			if (value === 0) {
				continue;
			}

			for (let j = 0; j < kept; j++) {
				leftMap[(i * kept) + j]! += value * eigen.vectors[(t * k) + j]!;
			}
		}

		for (let j = 0; j < kept; j++) {
			leftMap[(i * kept) + j]! *= sign * inverseSigma[j]!;
		}
	}

	// X = W[:, :kept]ᵀ·L₁⁻¹ (kept×k): solve X·L₁ = Wᵀ from the last column back, L₁ lower triangular.
	const x = new Float64Array(kept * k);
	for (let j = 0; j < kept; j++) {
		for (let t = k - 1; t >= 0; t--) {
			let sum = eigen.vectors[(t * k) + j]!;
			for (let s = t + 1; s < k; s++) {
				sum -= x[(j * k) + s]! * l[(s * k) + t]!;
			}

			x[(j * k) + t] = sum / l[(t * k) + t]!;
		}
	}

	// rightMap = X·Pᵀ restricted to the first k pivots: column perm[t] of rightMap = column t of X.
	const rightMap = new Float64Array(kept * r);
	for (let j = 0; j < kept; j++) {
		for (let t = 0; t < k; t++) {
			rightMap[(j * r) + perm[t]!] = x[(j * k) + t]!;
		}
	}

	return {outDim, rank, inDim, singularValues, leftMap, rightMap};
}

/** Singular values only, from the two Grams (fast route). */
export function spectrumFromGrams(gu: Float64Array, gd: Float64Array, rank: number, scale: number): Float64Array {
	return spectrumOfCore(coreFromGrams(gu, gd, rank), scale);
}

/** Singular values and maps from the two Grams (fast route). */
export function factorizeFromGrams(gu: Float64Array, gd: Float64Array, outDim: number, rank: number, inDim: number, scale: number, count?: number): ModuleFactorization {
	return factorizeCore(coreFromGrams(gu, gd, rank), outDim, inDim, scale, count);
}

/** Singular values and maps of scale·up·down (up: outDim×rank, down: rank×inDim, conv flattened). */
export async function factorizeModule(
	up: MatrixInput,
	down: MatrixInput,
	outDim: number,
	rank: number,
	inDim: number,
	scale: number,
	kernels: Pick<EngineKernels, 'gramPair' | 'productGramCols' | 'productGramRows'>,
): Promise<ModuleFactorization> {
	const core = await moduleCore(up, down, outDim, rank, inDim, kernels);
	return {...factorizeCore(core, outDim, inDim, scale), rank};
}

/**
 * U (outDim×keep) and Vt (keep×inDim) of the first `keep` singular triplets (or of the triplets
 * at the indices `keep` lists). The products are
 * accumulated in float64: with ill-conditioned factors up·leftMap cancels heavily, and float32
 * accumulation would cost the small triplets their orthonormality.
 */
export async function moduleVectors(
	factorization: ModuleFactorization,
	up: MatrixInput,
	down: MatrixInput,
	kernels: Pick<EngineKernels, 'mulF32F64' | 'mulF64F32'>,
	keep: number | readonly number[] = factorization.singularValues.length,
): Promise<{u: Float32Array; vt: Float32Array}> {
	const {outDim, rank, inDim} = factorization;
	const total = factorization.singularValues.length;
	// `keep`: the first `keep` triplets, or these indices (a subspace recipe's mask), in this order.
	let columns: number[] | null = null;
	let k: number;
	if (typeof keep === 'number') {
		k = Math.max(0, Math.min(keep, total));
	} else {
		columns = keep.filter(j => Number.isInteger(j) && j >= 0 && j < total);
		k = columns.length;
	}

	const left = new Float64Array(rank * k);
	for (let i = 0; i < rank; i++) {
		for (let j = 0; j < k; j++) {
			left[(i * k) + j] = factorization.leftMap[(i * total) + (columns ? columns[j]! : j)]!;
		}
	}

	let right: Float64Array;
	if (columns) {
		right = new Float64Array(k * rank);
		for (const [j, column] of columns.entries()) {
			right.set(factorization.rightMap.subarray(column * rank, (column + 1) * rank), j * rank);
		}
	} else {
		right = factorization.rightMap.slice(0, k * rank);
	}

	const [u, vt] = await Promise.all([kernels.mulF32F64(up, outDim, rank, left, k), kernels.mulF64F32(right, k, rank, down, inDim)]);
	return {u, vt};
}

/** Full decomposition of one module: singular values of scale·up·down with U and Vt. */
export async function decomposeModule(
	up: MatrixInput,
	down: MatrixInput,
	outDim: number,
	rank: number,
	inDim: number,
	scale: number,
	kernels: Pick<EngineKernels, 'gramPair' | 'productGramCols' | 'productGramRows' | 'mulF32F64' | 'mulF64F32'>,
): Promise<ModuleDecomposition> {
	const factorization = await factorizeModule(up, down, outDim, rank, inDim, scale, kernels);
	const {u, vt} = await moduleVectors(factorization, up, down, kernels);
	return {singularValues: factorization.singularValues, u, vt};
}

function mirrorUpper(m: Float64Array, n: number, average = false): void {
	for (let a = 0; a < n; a++) {
		for (let b = a + 1; b < n; b++) {
			const value = average ? (m[(a * n) + b]! + m[(b * n) + a]!) / 2 : m[(a * n) + b]!;
			m[(a * n) + b] = value;
			m[(b * n) + a] = value;
		}
	}
}

/** Inverse of the top n×n lower-triangular block of a row-major matrix with `cols` columns. */
function lowerInverse(l: Float64Array, n: number, cols: number): Float64Array {
	const inverse = new Float64Array(n * n);
	for (let j = 0; j < n; j++) {
		// Column j of L⁻¹ by forward substitution on e_j.
		for (let i = j; i < n; i++) {
			let sum = i === j ? 1 : 0;
			for (let t = j; t < i; t++) {
				sum -= l[(i * cols) + t]! * inverse[(t * n) + j]!;
			}

			inverse[(i * n) + j] = sum / l[(i * cols) + i]!;
		}
	}

	return inverse;
}
