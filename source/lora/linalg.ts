// Plain-JS matrix helpers for the statistics: Gram kernels (float64 accumulation) that
// source/lora uses when no faster kernels are injected, and the small identities that give
// ‖ΔW‖_F of every module type without materialising ΔW. Matrices are dense row-major.
import type {GramKernels} from './types.js';

/** Columns processed per pass of gramRows: a block of r rows × this many floats stays in L1. */
const columnChunk = 512;

/** MᵀM (cols×cols) of a rows×cols matrix, accumulated row by row (one sequential pass over M). */
export function gramColsSync(m: Float32Array, rows: number, cols: number): Float64Array {
	checkSize('gramCols', m, rows, cols);
	const out = new Float64Array(cols * cols);
	for (let r = 0; r < rows; r++) {
		const base = r * cols;
		for (let i = 0; i < cols; i++) {
			const value = m[base + i]!;
			if (value === 0) {
				continue;
			}

			const row = i * cols;
			for (let j = i; j < cols; j++) {
				out[row + j]! += value * m[base + j]!;
			}
		}
	}

	mirrorUpper(out, cols);
	return out;
}

/** MMᵀ (rows×rows) of a rows×cols matrix, in column chunks so the rows being dotted stay in cache. */
export function gramRowsSync(m: Float32Array, rows: number, cols: number): Float64Array {
	checkSize('gramRows', m, rows, cols);
	const out = new Float64Array(rows * rows);
	for (let start = 0; start < cols; start += columnChunk) {
		const end = Math.min(cols, start + columnChunk);
		for (let i = 0; i < rows; i++) {
			const a = i * cols;
			for (let j = i; j < rows; j++) {
				const b = j * cols;
				let sum = 0;
				for (let k = start; k < end; k++) {
					sum += m[a + k]! * m[b + k]!;
				}

				out[(i * rows) + j]! += sum;
			}
		}
	}

	mirrorUpper(out, rows);
	return out;
}

/** Copies the upper triangle of an n×n row-major matrix into the lower one. */
export function mirrorUpper(out: Float64Array, n: number): void {
	for (let i = 0; i < n; i++) {
		for (let j = 0; j < i; j++) {
			out[(i * n) + j] = out[(j * n) + i]!;
		}
	}
}

function checkSize(name: string, m: {length: number}, rows: number, cols: number): void {
	if (m.length !== rows * cols) {
		throw new RangeError(`${name}: ${m.length} values for ${rows}×${cols}`);
	}
}

/** The plain-JS GramKernels (float64 accumulation). */
export const jsKernels: GramKernels = {
	gramCols: async (m, rows, cols) => gramColsSync(m, rows, cols),
	gramRows: async (m, rows, cols) => gramRowsSync(m, rows, cols),
};

/** Σ_ij A_ij·B_ij of two equally sized matrices (the Frobenius inner product). */
export function frobeniusInner(a: Float64Array, b: Float64Array): number {
	let sum = 0;
	for (let i = 0; i < a.length; i++) {
		sum += a[i]! * b[i]!;
	}

	return sum;
}

/** Σ w² in float64. */
export function sumOfSquares(values: Float32Array | Float64Array): number {
	let sum = 0;
	for (let i = 0; i < values.length; i++) {
		const v = values[i]!;
		sum += v * v;
	}

	return sum;
}

/**
 * ‖A·B‖²_F for A (m×r) and B (r×n) from their r×r Grams: tr(AᵀA·BBᵀ) = Σ (AᵀA ∘ BBᵀ)
 * (both Grams are symmetric). Clamped at 0 against rounding.
 */
export function productNormSquaredFromGrams(gramA: Float64Array, gramB: Float64Array): number {
	return Math.max(0, frobeniusInner(gramA, gramB));
}

/**
 * Σ_s ‖A·M_s·B‖²_F = Σ_s tr(M_sᵀ·Ga·M_s·Gb) for a Tucker core M (r1×r2×s, stored [i][j][s] as
 * LyCORIS writes r×r×kh×kw), Ga = AᵀA (r1×r1), Gb = BBᵀ (r2×r2).
 */
export function tuckerNormSquared(core: Float32Array, r1: number, r2: number, spatial: number, gramA: Float64Array, gramB: Float64Array): number {
	let total = 0;
	const slice = new Float64Array(r1 * r2);
	const left = new Float64Array(r1 * r2);
	for (let s = 0; s < spatial; s++) {
		for (let i = 0; i < r1; i++) {
			for (let j = 0; j < r2; j++) {
				slice[(i * r2) + j] = core[(((i * r2) + j) * spatial) + s]!;
			}
		}

		// left = Ga·M (r1×r2)
		left.fill(0);
		for (let i = 0; i < r1; i++) {
			for (let k = 0; k < r1; k++) {
				const g = gramA[(i * r1) + k]!;
				if (g === 0) {
					continue;
				}

				for (let j = 0; j < r2; j++) {
					left[(i * r2) + j]! += g * slice[(k * r2) + j]!;
				}
			}
		}

		// tr(Mᵀ·left·Gb) = Σ_ij M_ij·(left·Gb)_ij
		for (let i = 0; i < r1; i++) {
			for (let j = 0; j < r2; j++) {
				let value = 0;
				for (let k = 0; k < r2; k++) {
					value += left[(i * r2) + k]! * gramB[(k * r2) + j]!;
				}

				total += slice[(i * r2) + j]! * value;
			}
		}
	}

	return Math.max(0, total);
}

/**
 * Face-splitting product for LoHa: rows of A1 (m×r1) and A2 (m×r2) combined into U (m×r1r2) with
 * U[o, p·r2+q] = A1[o,p]·A2[o,q]; likewise columns of B1 (r1×n), B2 (r2×n) into V (r1r2×n). Then
 * (A1B1) ⊙ (A2B2) = U·V, so its norm follows from the Grams of U and V.
 */
export function faceSplitRows(a1: Float32Array, r1: number, a2: Float32Array, r2: number, m: number): Float32Array {
	const out = new Float32Array(m * r1 * r2);
	for (let o = 0; o < m; o++) {
		for (let p = 0; p < r1; p++) {
			const x = a1[(o * r1) + p]!;
			const base = (((o * r1) + p) * r2);
			for (let q = 0; q < r2; q++) {
				out[base + q] = x * a2[(o * r2) + q]!;
			}
		}
	}

	return out;
}

export function faceSplitColumns(b1: Float32Array, r1: number, b2: Float32Array, r2: number, n: number): Float32Array {
	const out = new Float32Array(r1 * r2 * n);
	for (let p = 0; p < r1; p++) {
		for (let q = 0; q < r2; q++) {
			const base = ((p * r2) + q) * n;
			for (let c = 0; c < n; c++) {
				out[base + c] = b1[(p * n) + c]! * b2[(q * n) + c]!;
			}
		}
	}

	return out;
}

/**
 * ‖(A1·B1) ⊙ (A2·B2)‖²_F by materialising one output row at a time (memory O(n)); used when the
 * face-splitting rank r1·r2 would cost more than the dense product.
 */
export function hadamardProductNormSquared(a1: Float32Array, b1: Float32Array, r1: number, a2: Float32Array, b2: Float32Array, r2: number, m: number, n: number): number {
	const row1 = new Float64Array(n);
	const row2 = new Float64Array(n);
	let total = 0;
	for (let o = 0; o < m; o++) {
		rowTimes(a1, o, r1, b1, n, row1);
		rowTimes(a2, o, r2, b2, n, row2);
		for (let c = 0; c < n; c++) {
			const v = row1[c]! * row2[c]!;
			total += v * v;
		}
	}

	return total;
}

/** out = A[o,:]·B for A (·×r) and B (r×n). */
function rowTimes(a: Float32Array, o: number, r: number, b: Float32Array, n: number, out: Float64Array): void {
	out.fill(0);
	for (let p = 0; p < r; p++) {
		const x = a[(o * r) + p]!;
		if (x === 0) {
			continue;
		}

		const base = p * n;
		for (let c = 0; c < n; c++) {
			out[c]! += x * b[base + c]!;
		}
	}
}

/**
 * One output row of a Tucker reconstruction, W[o, c, s] = Σ_ij T[i,j,s]·Wa[i,o]·Wb[j,c] for
 * T (r1×r2×spatial), Wa (r1×m), Wb (r2×n); `out` has n·spatial entries laid out [c][s].
 */
export function tuckerRow(core: Float32Array, r1: number, r2: number, spatial: number, wa: Float32Array, m: number, wb: Float32Array, n: number, o: number, out: Float64Array): void {
	// mix[j][s] = Σ_i Wa[i,o]·T[i,j,s]
	const mix = new Float64Array(r2 * spatial);
	for (let i = 0; i < r1; i++) {
		const x = wa[(i * m) + o]!;
		if (x === 0) {
			continue;
		}

		const base = i * r2 * spatial;
		for (let t = 0; t < r2 * spatial; t++) {
			mix[t]! += x * core[base + t]!;
		}
	}

	out.fill(0);
	for (let j = 0; j < r2; j++) {
		for (let c = 0; c < n; c++) {
			const y = wb[(j * n) + c]!;
			if (y === 0) {
				continue;
			}

			const target = c * spatial;
			const source = j * spatial;
			for (let s = 0; s < spatial; s++) {
				out[target + s]! += y * mix[source + s]!;
			}
		}
	}
}

/** Dense A (aRows×aCols) · B (aCols×bCols) in float64, for tests and small reconstructions. */
export function denseMatmul(a: ArrayLike<number>, aRows: number, aCols: number, b: ArrayLike<number>, bCols: number): Float64Array {
	const out = new Float64Array(aRows * bCols);
	for (let i = 0; i < aRows; i++) {
		for (let k = 0; k < aCols; k++) {
			const x = a[(i * aCols) + k]!;
			if (x === 0) {
				continue;
			}

			const base = k * bCols;
			const target = i * bCols;
			for (let j = 0; j < bCols; j++) {
				out[target + j]! += x * b[base + j]!;
			}
		}
	}

	return out;
}

/** Kronecker product of A (p×q) and B (s×t) → (p·s)×(q·t), float64. */
export function kronecker(a: ArrayLike<number>, p: number, q: number, b: ArrayLike<number>, s: number, t: number): Float64Array {
	const out = new Float64Array(p * s * q * t);
	const cols = q * t;
	for (let i = 0; i < p; i++) {
		for (let j = 0; j < q; j++) {
			const x = a[(i * q) + j]!;
			for (let k = 0; k < s; k++) {
				for (let l = 0; l < t; l++) {
					out[(((i * s) + k) * cols) + (j * t) + l] = x * b[(k * t) + l]!;
				}
			}
		}
	}

	return out;
}
