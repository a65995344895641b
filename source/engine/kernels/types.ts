import {decodeToFloat32, dtypeSize} from '../../lora/dtypes.js';
import type {DType, GramKernels} from '../../lora/types.js';
import type {Device} from '../protocol.js';

/** A row-major matrix as float32 values, or as the raw little-endian bytes of a tensor. */
export type MatrixInput = Float32Array | {dtype: DType; bytes: Uint8Array};

export function toFloat32(input: MatrixInput): Float32Array {
	return input instanceof Float32Array ? input : decodeToFloat32(input.bytes, input.dtype);
}

export function inputLength(input: MatrixInput): number {
	return input instanceof Float32Array ? input.length : input.bytes.byteLength / dtypeSize[input.dtype];
}

/**
 * The engine's matrix kernels: onnxruntime-backed where it loads, plain JS otherwise.
 * Inputs are dense row-major float32; Grams come back in float64 (accumulated in float64, so
 * singular values computed from them stay accurate), products in float32.
 */
export type EngineKernels = GramKernels & {
	/** 'onnxruntime' or 'js'. */
	readonly backend: 'onnxruntime' | 'js';
	readonly device: Device;
	/**
	 * upᵀ·up (rank×rank) and down·downᵀ (rank×rank) of one LoRA module in one call. Raw F16
	 * tensors go to onnxruntime undecoded (it casts them), saving a JS decoding pass.
	 */
	gramPair: (up: MatrixInput, outDim: number, rank: number, down: MatrixInput, inDim: number) => Promise<{gu: Float64Array; gd: Float64Array}>;
	/**
	 * gramPair accumulated in float32 (relative error ~1e-6 on real LoRAs): for norms that are
	 * shown, never for singular values. Callers check for cancellation and fall back to gramPair.
	 */
	gramPairSingle: (up: MatrixInput, outDim: number, rank: number, down: MatrixInput, inDim: number) => Promise<{gu: Float64Array; gd: Float64Array}>;
	/** A (aRows×aCols) · B (aCols×bCols). */
	matmul: (a: Float32Array, aRows: number, aCols: number, b: Float32Array, bCols: number) => Promise<Float32Array>;
	/** (A·B)ᵀ(A·B) in float64 (bCols×bCols) for A (aRows×aCols) and a float64 B (aCols×bCols). */
	productGramCols: (a: MatrixInput, aRows: number, aCols: number, b: Float64Array, bCols: number) => Promise<Float64Array>;
	/** (A·B)(A·B)ᵀ in float64 (aRows×aRows) for a float64 A (aRows×aCols) and B (aCols×bCols). */
	productGramRows: (a: Float64Array, aRows: number, aCols: number, b: MatrixInput, bCols: number) => Promise<Float64Array>;
	/** A (aRows×aCols) · B with B in float64, accumulated in float64, rounded to float32 at the end. */
	mulF32F64: (a: MatrixInput, aRows: number, aCols: number, b: Float64Array, bCols: number) => Promise<Float32Array>;
	/** A · B with A in float64, accumulated in float64, rounded to float32 at the end. */
	mulF64F32: (a: Float64Array, aRows: number, aCols: number, b: MatrixInput, bCols: number) => Promise<Float32Array>;
	/** A (rows×cols) · x (cols). */
	matvec: (a: Float32Array, rows: number, cols: number, x: Float32Array) => Promise<Float32Array>;
	/** Aᵀ (cols×rows) · y (rows), without transposing A. */
	matvecT: (a: Float32Array, rows: number, cols: number, y: Float32Array) => Promise<Float32Array>;
	dispose: () => Promise<void>;
};

export function checkLength(name: string, data: {length: number}, expected: number): void {
	if (data.length !== expected) {
		throw new RangeError(`${name}: expected ${expected} values, got ${data.length}`);
	}
}
