// Plain-JS kernels: the fallback when onnxruntime cannot load, and the reference the tests
// compare the onnxruntime kernels with. Products of float32 values are exact in float64, so the
// Grams here are accurate to float64 rounding.
import {denseMatmul, gramColsSync, gramRowsSync, mirrorUpper} from '../../lora/linalg.js';
import {checkLength, toFloat32, type EngineKernels} from './types.js';

// The Grams are the statistics' own (source/lora/linalg.ts): one implementation, one set of tests.
export const gramColsJs = gramColsSync;
export const gramRowsJs = gramRowsSync;

/** Float64 product of two row-major matrices given as any numeric arrays, rounded to float32. */
export function matmulJs(a: ArrayLike<number>, aRows: number, aCols: number, b: ArrayLike<number>, bCols: number): Float32Array {
	checkLength('matmul a', a, aRows * aCols);
	checkLength('matmul b', b, aCols * bCols);
	const out = new Float32Array(aRows * bCols);
	const row = new Float64Array(bCols);
	for (let i = 0; i < aRows; i++) {
		row.fill(0);
		for (let k = 0; k < aCols; k++) {
			const value = a[(i * aCols) + k]!;
			if (value === 0) {
				continue;
			}

			const base = k * bCols;
			for (let j = 0; j < bCols; j++) {
				row[j]! += value * b[base + j]!;
			}
		}

		out.set(row, i * bCols);
	}

	return out;
}

/** Float64 product without rounding, for the product Grams. */
function matmul64(a: ArrayLike<number>, aRows: number, aCols: number, b: ArrayLike<number>, bCols: number): Float64Array {
	checkLength('product a', a, aRows * aCols);
	checkLength('product b', b, aCols * bCols);
	return denseMatmul(a, aRows, aCols, b, bCols);
}

function gramCols64(m: Float64Array, rows: number, cols: number): Float64Array {
	const out = new Float64Array(cols * cols);
	for (let r = 0; r < rows; r++) {
		for (let i = 0; i < cols; i++) {
			const value = m[(r * cols) + i]!;
			for (let j = i; j < cols; j++) {
				out[(i * cols) + j]! += value * m[(r * cols) + j]!;
			}
		}
	}

	mirrorUpper(out, cols);
	return out;
}

function gramRows64(m: Float64Array, rows: number, cols: number): Float64Array {
	const out = new Float64Array(rows * rows);
	for (let i = 0; i < rows; i++) {
		for (let j = i; j < rows; j++) {
			let sum = 0;
			for (let k = 0; k < cols; k++) {
				sum += m[(i * cols) + k]! * m[(j * cols) + k]!;
			}

			out[(i * rows) + j] = sum;
		}
	}

	mirrorUpper(out, rows);
	return out;
}

export function matvecJs(a: Float32Array, rows: number, cols: number, x: Float32Array): Float32Array {
	checkLength('matvec a', a, rows * cols);
	checkLength('matvec x', x, cols);
	const out = new Float32Array(rows);
	for (let i = 0; i < rows; i++) {
		let sum = 0;
		const base = i * cols;
		for (let j = 0; j < cols; j++) {
			sum += a[base + j]! * x[j]!;
		}

		out[i] = sum;
	}

	return out;
}

export function matvecTJs(a: Float32Array, rows: number, cols: number, y: Float32Array): Float32Array {
	checkLength('matvecT a', a, rows * cols);
	checkLength('matvecT y', y, rows);
	const sums = new Float64Array(cols);
	for (let i = 0; i < rows; i++) {
		const value = y[i]!;
		const base = i * cols;
		for (let j = 0; j < cols; j++) {
			sums[j]! += value * a[base + j]!;
		}
	}

	return Float32Array.from(sums);
}

export const jsKernels: EngineKernels = {
	backend: 'js',
	device: 'cpu',
	gramCols: async (m, rows, cols) => gramColsJs(m, rows, cols),
	gramRows: async (m, rows, cols) => gramRowsJs(m, rows, cols),
	async gramPair(up, outDim, rank, down, inDim) {
		return {gu: gramColsJs(toFloat32(up), outDim, rank), gd: gramRowsJs(toFloat32(down), rank, inDim)};
	},
	// Plain JS has no faster single-precision product: the float64 one serves both.
	async gramPairSingle(up, outDim, rank, down, inDim) {
		return {gu: gramColsJs(toFloat32(up), outDim, rank), gd: gramRowsJs(toFloat32(down), rank, inDim)};
	},
	matmul: async (a, aRows, aCols, b, bCols) => matmulJs(a, aRows, aCols, b, bCols),
	productGramCols: async (a, aRows, aCols, b, bCols) => gramCols64(matmul64(toFloat32(a), aRows, aCols, b, bCols), aRows, bCols),
	productGramRows: async (a, aRows, aCols, b, bCols) => gramRows64(matmul64(a, aRows, aCols, toFloat32(b), bCols), aRows, bCols),
	mulF32F64: async (a, aRows, aCols, b, bCols) => matmulJs(toFloat32(a), aRows, aCols, b, bCols),
	mulF64F32: async (a, aRows, aCols, b, bCols) => matmulJs(a, aRows, aCols, toFloat32(b), bCols),
	matvec: async (a, rows, cols, x) => matvecJs(a, rows, cols, x),
	matvecT: async (a, rows, cols, y) => matvecTJs(a, rows, cols, y),
	async dispose() {
		// Nothing to release.
	},
};
