import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {elfNeededLibraries, resolveDevice} from '../source/engine/device.js';
import {jsKernels} from '../source/engine/kernels/js-kernels.js';
import {encodeModel, onnxType} from '../source/engine/kernels/onnx-builder.js';
import {createOrtKernels} from '../source/engine/kernels/ort-kernels.js';
import {jacobiEigen, pivotedCholesky, symmetricEigen} from '../source/engine/kernels/svd.js';
import type {EngineKernels} from '../source/engine/kernels/types.js';
import {encodeFromFloat32} from '../source/lora/dtypes.js';

// Deterministic values in [-0.5, 0.5) so failures reproduce.
function lcg(seed: number): () => number {
	let state = seed >>> 0;
	return () => {
		state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
		return (state / 2 ** 32) - 0.5;
	};
}

function randomMatrix(rows: number, cols: number, seed: number): Float32Array {
	const next = lcg(seed);
	return Float32Array.from({length: rows * cols}, next);
}

// Plain loops in float64: the reference every kernel is checked against.
function refMatmul(a: ArrayLike<number>, m: number, k: number, b: ArrayLike<number>, n: number): Float64Array {
	const out = new Float64Array(m * n);
	for (let i = 0; i < m; i++) {
		for (let j = 0; j < n; j++) {
			let sum = 0;
			for (let t = 0; t < k; t++) {
				sum += a[(i * k) + t]! * b[(t * n) + j]!;
			}

			out[(i * n) + j] = sum;
		}
	}

	return out;
}

function transpose(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
	const out = new Float64Array(rows * cols);
	for (let i = 0; i < rows; i++) {
		for (let j = 0; j < cols; j++) {
			out[(j * rows) + i] = a[(i * cols) + j]!;
		}
	}

	return out;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number, label: string): void {
	assert.equal(actual.length, expected.length, `${label}: length`);
	let scale = 0;
	for (let i = 0; i < expected.length; i++) {
		scale = Math.max(scale, Math.abs(expected[i]!));
	}

	for (let i = 0; i < expected.length; i++) {
		const error = Math.abs(actual[i]! - expected[i]!);
		assert.ok(error <= relTol * Math.max(scale, 1e-30), `${label}[${i}]: ${actual[i]} vs ${expected[i]}`);
	}
}

let ort: EngineKernels;
before(async () => {
	ort = await createOrtKernels('cpu', {threads: 1});
});
after(async () => {
	await ort.dispose();
});

const shapes: Array<[number, number]> = [[1, 1], [7, 3], [64, 16], [300, 32], [5, 40]];

test('gramCols and gramRows match plain loops in float64 (ORT and JS)', async () => {
	for (const [rows, cols] of shapes) {
		const m = randomMatrix(rows, cols, rows * 31 + cols);
		const mt = transpose(m, rows, cols);
		const expectedCols = refMatmul(mt, cols, rows, m, cols);
		const expectedRows = refMatmul(m, rows, cols, mt, rows);
		for (const kernels of [ort, jsKernels]) {
			const cols64 = await kernels.gramCols(m, rows, cols);
			const rows64 = await kernels.gramRows(m, rows, cols);
			assert.ok(cols64 instanceof Float64Array);
			// Products of float32 values are exact in float64: only float64 summation error remains.
			assertClose(cols64, expectedCols, 1e-13, `${kernels.backend} gramCols ${rows}×${cols}`);
			assertClose(rows64, expectedRows, 1e-13, `${kernels.backend} gramRows ${rows}×${cols}`);
		}
	}
});

test('gramPair accumulates in float64, also from raw F16 and BF16 bytes', async () => {
	const out = 200;
	const rank = 8;
	const inDim = 90;
	// A near-cancelling pair of columns: a float32 Gram would lose the small difference.
	const up = randomMatrix(out, rank, 5);
	const down = randomMatrix(rank, inDim, 6);
	for (const dtype of ['F32', 'F16', 'BF16'] as const) {
		const upBytes = encodeFromFloat32(up, dtype);
		const downBytes = encodeFromFloat32(down, dtype);
		// Reference on the values the bytes actually hold.
		const upValues = dtype === 'F32' ? up : (await import('../source/lora/dtypes.js')).decodeToFloat32(upBytes, dtype);
		const downValues = dtype === 'F32' ? down : (await import('../source/lora/dtypes.js')).decodeToFloat32(downBytes, dtype);
		const expectedGu = refMatmul(transpose(upValues, out, rank), rank, out, upValues, rank);
		const expectedGd = refMatmul(downValues, rank, inDim, transpose(downValues, rank, inDim), rank);
		for (const kernels of [ort, jsKernels]) {
			const {gu, gd} = await kernels.gramPair({dtype, bytes: upBytes}, out, rank, {dtype, bytes: downBytes}, inDim);
			assertClose(gu, expectedGu, 1e-13, `${kernels.backend} ${dtype} gu`);
			assertClose(gd, expectedGd, 1e-13, `${kernels.backend} ${dtype} gd`);
		}
	}
});

test('gramPairSingle: float32 accumulation within 2e-5 of float64, from float32 and raw F16 (also at an odd offset)', async () => {
	const out = 640;
	const rank = 16;
	const inDim = 1280;
	const up = randomMatrix(out, rank, 11);
	const down = randomMatrix(rank, inDim, 12);
	const {decodeToFloat32} = await import('../source/lora/dtypes.js');
	for (const dtype of ['F32', 'F16'] as const) {
		const upBytes = encodeFromFloat32(up, dtype);
		const downBytes = encodeFromFloat32(down, dtype);
		const upValues = dtype === 'F32' ? up : decodeToFloat32(upBytes, dtype);
		const downValues = dtype === 'F32' ? down : decodeToFloat32(downBytes, dtype);
		const expectedGu = refMatmul(transpose(upValues, out, rank), rank, out, upValues, rank);
		const expectedGd = refMatmul(downValues, rank, inDim, transpose(downValues, rank, inDim), rank);
		const shifted = new Uint8Array(upBytes.length + 1);
		shifted.set(upBytes, 1);
		const inputs = dtype === 'F32'
			? [[upValues, downValues]] as const
			: [[{dtype, bytes: upBytes}, {dtype, bytes: downBytes}], [{dtype, bytes: shifted.subarray(1)}, {dtype, bytes: downBytes}]] as const;
		for (const kernels of [ort, jsKernels]) {
			for (const [upInput, downInput] of inputs) {
				const {gu, gd} = await kernels.gramPairSingle(upInput, out, rank, downInput, inDim);
				assert.ok(gu instanceof Float64Array && gd instanceof Float64Array);
				// Sums of 640 and 1,280 float32 terms: rounding grows like √n·2⁻²⁴ (≈2e-6 here), at worst n·2⁻²⁴.
				assertClose(gu, expectedGu, 2e-5, `${kernels.backend} ${dtype} gu`);
				assertClose(gd, expectedGd, 2e-5, `${kernels.backend} ${dtype} gd`);
			}
		}
	}
});

test('an F16 tensor at an odd byte offset is handled', async () => {
	const up = randomMatrix(10, 4, 9);
	const down = randomMatrix(4, 6, 10);
	const upBytes = encodeFromFloat32(up, 'F16');
	const shifted = new Uint8Array(upBytes.length + 1);
	shifted.set(upBytes, 1);
	const a = await ort.gramPair({dtype: 'F16', bytes: shifted.subarray(1)}, 10, 4, {dtype: 'F16', bytes: encodeFromFloat32(down, 'F16')}, 6);
	const b = await jsKernels.gramPair({dtype: 'F16', bytes: upBytes}, 10, 4, {dtype: 'F16', bytes: encodeFromFloat32(down, 'F16')}, 6);
	assertClose(a.gu, b.gu, 1e-14, 'gu');
});

test('matmul, matvec and matvecT match plain loops (float32 tolerance)', async () => {
	for (const [m, k, n] of [[1, 1, 1], [33, 17, 9], [128, 32, 200]] as Array<[number, number, number]>) {
		const a = randomMatrix(m, k, m + k);
		const b = randomMatrix(k, n, k + n);
		const expected = refMatmul(a, m, k, b, n);
		const x = randomMatrix(k, 1, 3);
		const y = randomMatrix(m, 1, 4);
		const expectedAx = refMatmul(a, m, k, x, 1);
		const expectedAty = refMatmul(transpose(a, m, k), k, m, y, 1);
		for (const kernels of [ort, jsKernels]) {
			assertClose(await kernels.matmul(a, m, k, b, n), expected, 1e-5, `${kernels.backend} matmul`);
			assertClose(await kernels.matvec(a, m, k, x), expectedAx, 1e-5, `${kernels.backend} matvec`);
			assertClose(await kernels.matvecT(a, m, k, y), expectedAty, 1e-5, `${kernels.backend} matvecT`);
			// Mixed products accumulate in float64: only the final float32 rounding remains.
			const b64 = Float64Array.from(b, (value, i) => value + (i * 1e-9));
			const expectedMixed = refMatmul(a, m, k, b64, n);
			assertClose(await kernels.mulF32F64(a, m, k, b64, n), expectedMixed, 2e-7, `${kernels.backend} mulF32F64`);
			const a64 = Float64Array.from(a, (value, i) => value - (i * 1e-9));
			assertClose(await kernels.mulF64F32(a64, m, k, {dtype: 'F32', bytes: new Uint8Array(b.buffer)}, n), refMatmul(a64, m, k, b, n), 2e-7, `${kernels.backend} mulF64F32`);
		}
	}
});

test('kernels reject inputs whose length does not match the dimensions', async () => {
	const m = randomMatrix(3, 3, 1);
	for (const kernels of [ort, jsKernels]) {
		await assert.rejects(kernels.gramCols(m, 3, 4), RangeError);
		await assert.rejects(kernels.matmul(m, 3, 3, m, 2), RangeError);
	}
});

test('empty matrices give empty or zero results', async () => {
	const empty = new Float32Array(0);
	assert.deepEqual(Array.from(await ort.gramCols(empty, 0, 3)), Array.from({length: 9}, () => 0));
	assert.equal((await ort.matmul(empty, 0, 4, new Float32Array(8), 2)).length, 0);
});

function randomSymmetric(n: number, seed: number): Float64Array {
	const next = lcg(seed);
	const a = new Float64Array(n * n);
	for (let i = 0; i < n; i++) {
		for (let j = i; j < n; j++) {
			const value = next();
			a[(i * n) + j] = value;
			a[(j * n) + i] = value;
		}
	}

	return a;
}

test('symmetricEigen: A·v = λ·v, orthonormal vectors, eigenvalues match Jacobi and the trace', () => {
	for (const n of [1, 2, 5, 32, 64]) {
		const a = randomSymmetric(n, n);
		const {values, vectors} = symmetricEigen(a, n);
		const jacobi = jacobiEigen(a, n);
		let trace = 0;
		for (let i = 0; i < n; i++) {
			trace += a[(i * n) + i]!;
		}

		assert.ok(Math.abs(values.reduce((s, v) => s + v, 0) - trace) < 1e-12 * n);
		for (let j = 0; j < n; j++) {
			assert.ok(Math.abs(values[j]! - jacobi.values[j]!) < 1e-12, `λ${j} ${values[j]} vs ${jacobi.values[j]}`);
			if (j > 0) {
				assert.ok(values[j]! <= values[j - 1]!);
			}

			// Residual ‖A·v − λ·v‖ and unit norm.
			let residual = 0;
			let norm = 0;
			for (let i = 0; i < n; i++) {
				let av = 0;
				for (let t = 0; t < n; t++) {
					av += a[(i * n) + t]! * vectors[(t * n) + j]!;
				}

				residual = Math.max(residual, Math.abs(av - (values[j]! * vectors[(i * n) + j]!)));
				norm += vectors[(i * n) + j]! ** 2;
			}

			assert.ok(residual < 1e-12, `residual ${residual}`);
			assert.ok(Math.abs(norm - 1) < 1e-12);
		}
	}
});

test('symmetricEigen handles diagonal, zero and repeated-eigenvalue matrices', () => {
	const diagonal = Float64Array.from([3, 0, 0, 0, -1, 0, 0, 0, 2]);
	assert.deepEqual(Array.from(symmetricEigen(diagonal, 3).values), [3, 2, -1]);
	assert.deepEqual(Array.from(symmetricEigen(new Float64Array(16), 4).values), [0, 0, 0, 0]);
	const identity = Float64Array.from([1, 0, 0, 1]);
	assert.deepEqual(Array.from(symmetricEigen(identity, 2).values), [1, 1]);
});

test('pivotedCholesky reveals the rank and reproduces the matrix', () => {
	// G = B·Bᵀ with B 6×3: rank 3.
	const b = randomMatrix(6, 3, 77);
	const g = refMatmul(b, 6, 3, transpose(b, 6, 3), 6);
	const {rank, perm, l} = pivotedCholesky(g, 6);
	assert.equal(rank, 3);
	for (let i = 0; i < 6; i++) {
		for (let j = 0; j < 6; j++) {
			let sum = 0;
			for (let t = 0; t < rank; t++) {
				sum += l[(i * rank) + t]! * l[(j * rank) + t]!;
			}

			assert.ok(Math.abs(sum - g[(perm[i]! * 6) + perm[j]!]!) < 1e-12);
		}
	}

	assert.equal(pivotedCholesky(new Float64Array(9), 3).rank, 0);
});

test('the ONNX encoder writes the protobuf wire format (field tags, varints, symbolic dims)', () => {
	const bytes = encodeModel({
		name: 'g',
		nodes: [{opType: 'Cast', inputs: ['x'], outputs: ['y'], attributes: {to: {kind: 'int', value: onnxType.double}}}],
		inputs: [{name: 'x', elemType: onnxType.float, dims: ['n', 300]}],
		outputs: [{name: 'y', elemType: onnxType.double, dims: ['n', 300]}],
	});
	// ModelProto.ir_version (field 1, varint) = 8 comes first.
	assert.deepEqual(Array.from(bytes.subarray(0, 2)), [0x08, 0x08]);
	const text = Buffer.from(bytes).toString('latin1');
	assert.ok(text.includes('Cast'));
	// 300 as a varint: 0xAC 0x02 after the dim_value tag 0x08.
	assert.ok(text.includes('\u0008\u00AC\u0002'));
	// The symbolic dim as dim_param (field 2, length-delimited): 0x12 0x01 'n'.
	assert.ok(text.includes('\u0012\u0001n'));
});

test('resolveDevice: cpu on request, cuda error when requested without libraries, auto falls back with a reason', () => {
	const missing = () => ({available: false, reason: 'libonnxruntime_providers_cuda.so is not installed'});
	const present = () => ({available: true, reason: 'CUDA provider and 5 libraries found'});
	assert.deepEqual(resolveDevice('cpu', present), {device: 'cpu', detail: 'cpu (requested)'});
	assert.throws(() => resolveDevice('cuda', missing), /CUDA requested but unavailable: libonnxruntime_providers_cuda.so is not installed/);
	assert.deepEqual(resolveDevice('auto', missing), {device: 'cpu', detail: 'cpu (cuda unavailable: libonnxruntime_providers_cuda.so is not installed)'});
	assert.equal(resolveDevice('auto', present).device, 'cuda');
});

test('elfNeededLibraries reads DT_NEEDED from a real shared object and rejects non-ELF bytes', async () => {
	const {ortBinaryFolder} = await import('../source/engine/device.js');
	const {readFileSync, existsSync} = await import('node:fs');
	const path = await import('node:path');
	const folder = ortBinaryFolder();
	const binding = folder ? path.join(folder, 'libonnxruntime.so.1') : '';
	if (process.platform === 'linux' && existsSync(binding)) {
		const needed = elfNeededLibraries(readFileSync(binding));
		assert.ok(needed?.some(name => name.startsWith('libc.so')), String(needed));
	}

	assert.equal(elfNeededLibraries(new Uint8Array(100)), null);
});
