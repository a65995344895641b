// Small dense float64 factorisations for the r×r problems of the decomposition (r ≤ a few
// hundred). Matrices are row-major Float64Arrays.

export type SymmetricEigen = {
	/** Eigenvalues, descending. */
	values: Float64Array;
	/** n×n row-major; column j is the unit eigenvector of values[j]. */
	vectors: Float64Array;
};

/**
 * Eigen-decomposition of a symmetric matrix: Householder reduction to tridiagonal form, then the
 * implicit QL iteration with Wilkinson-style shifts, accumulating the transformations. About
 * 10n³ flops, several times less than cyclic Jacobi at the same float64 accuracy.
 */
export function symmetricEigen(matrix: Float64Array, n: number): SymmetricEigen {
	if (matrix.length !== n * n) {
		throw new RangeError(`symmetricEigen: expected ${n * n} values, got ${matrix.length}`);
	}

	const v = Float64Array.from(matrix);
	const d = new Float64Array(n);
	const e = new Float64Array(n);
	if (n > 0) {
		tridiagonalize(v, d, e, n);
		tridiagonalQl(v, d, e, n);
	}

	return sortDescending(d, v, n);
}

/** Eigenvalues only (descending): skips accumulating the transformations, several times faster. */
export function symmetricEigenvalues(matrix: Float64Array, n: number): Float64Array {
	if (matrix.length !== n * n) {
		throw new RangeError(`symmetricEigenvalues: expected ${n * n} values, got ${matrix.length}`);
	}

	const v = Float64Array.from(matrix);
	const d = new Float64Array(n);
	const e = new Float64Array(n);
	if (n > 0) {
		tridiagonalize(v, d, e, n, false);
		tridiagonalQl(v, d, e, n, false);
	}

	return d.sort().reverse();
}

/**
 * Householder tridiagonalisation in place: on return d holds the diagonal, e the sub-diagonal
 * (e[0] = 0) and, when `vectors`, v holds the orthogonal Q.
 */
function tridiagonalize(v: Float64Array, d: Float64Array, e: Float64Array, n: number, vectors = true): void {
	for (let j = 0; j < n; j++) {
		d[j] = v[((n - 1) * n) + j]!;
	}

	for (let i = n - 1; i > 0; i--) {
		let scale = 0;
		let h = 0;
		for (let k = 0; k < i; k++) {
			scale += Math.abs(d[k]!);
		}

		if (scale === 0) {
			e[i] = d[i - 1]!;
			for (let j = 0; j < i; j++) {
				d[j] = v[((i - 1) * n) + j]!;
				v[(i * n) + j] = 0;
				v[(j * n) + i] = 0;
			}
		} else {
			// Build the Householder vector of row i, scaled to avoid under/overflow.
			for (let k = 0; k < i; k++) {
				d[k]! /= scale;
				h += d[k]! * d[k]!;
			}

			let f = d[i - 1]!;
			let g = Math.sqrt(h);
			if (f > 0) {
				g = -g;
			}

			e[i] = scale * g;
			h -= f * g;
			d[i - 1] = f - g;
			for (let j = 0; j < i; j++) {
				e[j] = 0;
			}

			// p = A·u / h, using the lower triangle only.
			for (let j = 0; j < i; j++) {
				f = d[j]!;
				v[(j * n) + i] = f;
				g = e[j]! + (v[(j * n) + j]! * f);
				for (let k = j + 1; k <= i - 1; k++) {
					g += v[(k * n) + j]! * d[k]!;
					e[k]! += v[(k * n) + j]! * f;
				}

				e[j] = g;
			}

			f = 0;
			for (let j = 0; j < i; j++) {
				e[j]! /= h;
				f += e[j]! * d[j]!;
			}

			const hh = f / (h + h);
			for (let j = 0; j < i; j++) {
				e[j]! -= hh * d[j]!;
			}

			// A ← A − u·qᵀ − q·uᵀ on the lower triangle.
			for (let j = 0; j < i; j++) {
				f = d[j]!;
				g = e[j]!;
				for (let k = j; k <= i - 1; k++) {
					v[(k * n) + j]! -= (f * e[k]!) + (g * d[k]!);
				}

				d[j] = v[((i - 1) * n) + j]!;
				v[(i * n) + j] = 0;
			}
		}

		d[i] = h;
	}

	if (!vectors) {
		// Without accumulation the reduced diagonal is left on v's diagonal.
		for (let j = 0; j < n; j++) {
			d[j] = v[(j * n) + j]!;
		}

		e[0] = 0;
		return;
	}

	// Accumulate the reflections into Q.
	for (let i = 0; i < n - 1; i++) {
		v[((n - 1) * n) + i] = v[(i * n) + i]!;
		v[(i * n) + i] = 1;
		const h = d[i + 1]!;
		if (h !== 0) {
			for (let k = 0; k <= i; k++) {
				d[k] = v[(k * n) + i + 1]! / h;
			}

			for (let j = 0; j <= i; j++) {
				let g = 0;
				for (let k = 0; k <= i; k++) {
					g += v[(k * n) + i + 1]! * v[(k * n) + j]!;
				}

				for (let k = 0; k <= i; k++) {
					v[(k * n) + j]! -= g * d[k]!;
				}
			}
		}

		for (let k = 0; k <= i; k++) {
			v[(k * n) + i + 1] = 0;
		}
	}

	for (let j = 0; j < n; j++) {
		d[j] = v[((n - 1) * n) + j]!;
		v[((n - 1) * n) + j] = 0;
	}

	v[(n * n) - 1] = 1;
	e[0] = 0;
}

/** Implicit QL on the symmetric tridiagonal (d, e), rotating the columns of v along. */
function tridiagonalQl(v: Float64Array, d: Float64Array, e: Float64Array, n: number, vectors = true): void {
	for (let i = 1; i < n; i++) {
		e[i - 1] = e[i]!;
	}

	e[n - 1] = 0;
	let shiftSum = 0;
	let magnitude = 0;
	const eps = 2 ** -52;
	for (let l = 0; l < n; l++) {
		magnitude = Math.max(magnitude, Math.abs(d[l]!) + Math.abs(e[l]!));
		// Find the first negligible sub-diagonal element at or after l.
		let m = l;
		while (m < n - 1 && Math.abs(e[m]!) > eps * magnitude) {
			m++;
		}

		if (m > l) {
			let iterations = 0;
			do {
				if (++iterations > 60) {
					throw new Error('symmetricEigen: QL iteration did not converge');
				}

				// Shift from the leading 2×2 block.
				let g = d[l]!;
				let p = (d[l + 1]! - g) / (2 * e[l]!);
				let r = Math.hypot(p, 1);
				if (p < 0) {
					r = -r;
				}

				d[l] = e[l]! / (p + r);
				d[l + 1] = e[l]! * (p + r);
				const dl1 = d[l + 1]!;
				let h = g - d[l]!;
				for (let i = l + 2; i < n; i++) {
					d[i]! -= h;
				}

				shiftSum += h;

				// QL sweep with Givens rotations from m up to l.
				p = d[m]!;
				let c = 1;
				let c2 = c;
				let c3 = c;
				const el1 = e[l + 1]!;
				let s = 0;
				let s2 = 0;
				for (let i = m - 1; i >= l; i--) {
					c3 = c2;
					c2 = c;
					s2 = s;
					g = c * e[i]!;
					h = c * p;
					r = Math.hypot(p, e[i]!);
					e[i + 1] = s * r;
					s = e[i]! / r;
					c = p / r;
					p = (c * d[i]!) - (s * g);
					d[i + 1] = h + (s * ((c * g) + (s * d[i]!)));
					for (let k = 0; vectors && k < n; k++) {
						const row = k * n;
						h = v[row + i + 1]!;
						v[row + i + 1] = (s * v[row + i]!) + (c * h);
						v[row + i] = (c * v[row + i]!) - (s * h);
					}
				}

				p = -s * s2 * c3 * el1 * e[l]! / dl1;
				e[l] = s * p;
				d[l] = c * p;
			} while (Math.abs(e[l]!) > eps * magnitude);
		}

		d[l] = d[l]! + shiftSum;
		e[l] = 0;
	}
}

function sortDescending(d: Float64Array, v: Float64Array, n: number): SymmetricEigen {
	const order = Array.from({length: n}, (_, i) => i).sort((a, b) => d[b]! - d[a]!);
	const values = new Float64Array(n);
	const vectors = new Float64Array(n * n);
	for (const [target, source] of order.entries()) {
		values[target] = d[source]!;
		for (let k = 0; k < n; k++) {
			vectors[(k * n) + target] = v[(k * n) + source]!;
		}
	}

	return {values, vectors};
}

/**
 * Cyclic Jacobi eigen-decomposition of a symmetric matrix: slower than symmetricEigen but
 * simple and accurate to high relative precision; kept as a cross-check.
 */
export function jacobiEigen(matrix: Float64Array, n: number, maxSweeps = 60): SymmetricEigen {
	const a = Float64Array.from(matrix);
	const v = new Float64Array(n * n);
	for (let i = 0; i < n; i++) {
		v[(i * n) + i] = 1;
	}

	for (let sweep = 0; sweep < maxSweeps; sweep++) {
		let off = 0;
		let diagonal = 0;
		for (let i = 0; i < n; i++) {
			diagonal += a[(i * n) + i]! ** 2;
			for (let j = i + 1; j < n; j++) {
				off += a[(i * n) + j]! ** 2;
			}
		}

		if (off <= 1e-32 * diagonal || off === 0) {
			break;
		}

		for (let p = 0; p < n - 1; p++) {
			for (let q = p + 1; q < n; q++) {
				const apq = a[(p * n) + q]!;
				if (apq === 0) {
					continue;
				}

				const theta = (a[(q * n) + q]! - a[(p * n) + p]!) / (2 * apq);
				const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt((theta * theta) + 1));
				const c = 1 / Math.sqrt((t * t) + 1);
				const s = t * c;
				for (let k = 0; k < n; k++) {
					const akp = a[(k * n) + p]!;
					const akq = a[(k * n) + q]!;
					a[(k * n) + p] = (c * akp) - (s * akq);
					a[(k * n) + q] = (s * akp) + (c * akq);
				}

				for (let k = 0; k < n; k++) {
					const apk = a[(p * n) + k]!;
					const aqk = a[(q * n) + k]!;
					a[(p * n) + k] = (c * apk) - (s * aqk);
					a[(q * n) + k] = (s * apk) + (c * aqk);
				}

				for (let k = 0; k < n; k++) {
					const vkp = v[(k * n) + p]!;
					const vkq = v[(k * n) + q]!;
					v[(k * n) + p] = (c * vkp) - (s * vkq);
					v[(k * n) + q] = (s * vkp) + (c * vkq);
				}
			}
		}
	}

	const d = new Float64Array(n);
	for (let i = 0; i < n; i++) {
		d[i] = a[(i * n) + i]!;
	}

	return sortDescending(d, v, n);
}

export type PivotedCholesky = {
	/** Numerical rank: number of pivots above the tolerance. */
	rank: number;
	/** perm[i] = original index of pivoted row i. */
	perm: Int32Array;
	/** n×rank row-major, lower trapezoidal in pivoted order: Pᵀ·G·P ≈ L·Lᵀ. */
	l: Float64Array;
};

/**
 * Cholesky with diagonal pivoting of a symmetric positive semi-definite matrix. Stops when the
 * largest remaining pivot is ≤ relTol × the largest diagonal entry, which makes it rank-revealing
 * for the Grams of rank-deficient factors (zero rows, duplicated directions).
 */
export function pivotedCholesky(g: Float64Array, n: number, relTol = 1e-13): PivotedCholesky {
	const perm = Int32Array.from({length: n}, (_, i) => i);
	const full = new Float64Array(n * n);
	const residual = new Float64Array(n);
	let maxDiagonal = 0;
	for (let i = 0; i < n; i++) {
		residual[i] = g[(i * n) + i]!;
		maxDiagonal = Math.max(maxDiagonal, residual[i]!);
	}

	const tolerance = maxDiagonal * relTol;
	let rank = 0;
	for (let j = 0; j < n; j++) {
		let pivot = j;
		for (let i = j + 1; i < n; i++) {
			if (residual[i]! > residual[pivot]!) {
				pivot = i;
			}
		}

		if (!(residual[pivot]! > tolerance)) {
			break;
		}

		if (pivot !== j) {
			swap(perm, j, pivot);
			swap(residual, j, pivot);
			for (let t = 0; t < j; t++) {
				swap(full, (j * n) + t, (pivot * n) + t);
			}
		}

		const diagonal = Math.sqrt(residual[j]!);
		full[(j * n) + j] = diagonal;
		const pj = perm[j]!;
		for (let i = j + 1; i < n; i++) {
			let sum = g[(perm[i]! * n) + pj]!;
			for (let t = 0; t < j; t++) {
				sum -= full[(i * n) + t]! * full[(j * n) + t]!;
			}

			const value = sum / diagonal;
			full[(i * n) + j] = value;
			residual[i]! -= value * value;
		}

		rank++;
	}

	const l = new Float64Array(n * rank);
	for (let i = 0; i < n; i++) {
		for (let t = 0; t < rank; t++) {
			l[(i * rank) + t] = full[(i * n) + t]!;
		}
	}

	return {rank, perm, l};
}

function swap(array: Float64Array | Int32Array, i: number, j: number): void {
	const tmp = array[i]!;
	array[i] = array[j]!;
	array[j] = tmp;
}

/** Plain Cholesky G = L·Lᵀ (n×n lower, row-major) of a well-conditioned SPD matrix; null when a pivot is not positive. */
export function cholesky(g: Float64Array, n: number): Float64Array | null {
	const l = new Float64Array(n * n);
	for (let j = 0; j < n; j++) {
		let diagonal = g[(j * n) + j]!;
		for (let t = 0; t < j; t++) {
			diagonal -= l[(j * n) + t]! ** 2;
		}

		if (!(diagonal > 0)) {
			return null;
		}

		const root = Math.sqrt(diagonal);
		l[(j * n) + j] = root;
		for (let i = j + 1; i < n; i++) {
			let sum = g[(i * n) + j]!;
			for (let t = 0; t < j; t++) {
				sum -= l[(i * n) + t]! * l[(j * n) + t]!;
			}

			l[(i * n) + j] = sum / root;
		}
	}

	return l;
}
