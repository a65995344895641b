// Weight statistics of one LoRA file, streamed module by module (memory: one module's tensors):
// - lora-inspector's buckets (UNet / UNet conv / TE / TE2 average magnitude and strength), with
//   its exact formulas and summation order so users can compare with figures they know;
// - ‖ΔW‖_F of every module's effective update (scale·ΔW), from r×r Grams instead of ΔW itself;
// - per-block aggregates, NaN/Inf counts and modules whose update is exactly zero.
// Work is split into chunks (modules whose tensors share one read window), so several threads can
// share a file through computeStatsPart + finishStats; computeStats is the one-thread case.
import type {FileHandle} from 'node:fs/promises';
import {decodeInto, decodeToFloat32, dtypeSize} from './dtypes.js';
import {
	faceSplitColumns,
	faceSplitRows,
	gramColsSync,
	gramRowsSync,
	hadamardProductNormSquared,
	jsKernels,
	productNormSquaredFromGrams,
	sumOfSquares,
	tuckerNormSquared,
	tuckerRow,
} from './linalg.js';
import {buildLoraModel} from './model.js';
import {errorReason, LoraFileError, openForRead} from './safetensors.js';
import type {
	BlockNorm,
	GramKernels,
	InspectorBuckets,
	LoraModel,
	LoraModule,
	LoraStats,
	ModuleNorm,
	ProgressCallback,
	SafetensorsHeader,
	TensorInfo,
	WeightBucket,
} from './types.js';

export type StatsOptions = {
	/** Gram kernels (onnxruntime in the engine); plain JS by default. */
	kernels?: GramKernels;
	onProgress?: ProgressCallback;
	signal?: AbortSignal;
};

type GramPair = (up: Float32Array, outDim: number, rank: number, down: Float32Array, inDim: number) => Promise<{gu: Float64Array; gd: Float64Array}>;
/** Raw little-endian F16 bytes, which onnxruntime widens itself. */
type RawHalves = {dtype: 'F16'; bytes: Uint8Array};
type GramPairRaw = (up: Float32Array | RawHalves, outDim: number, rank: number, down: Float32Array | RawHalves, inDim: number) => Promise<{gu: Float64Array; gd: Float64Array}>;

/**
 * EngineKernels has these: a single call computes both Grams of a LoRA pair, in float64
 * (`gramPair`) or accumulated in float32 (`gramPairSingle`, faster, used when it is safe).
 */
type PairKernels = GramKernels & {
	gramPair?: GramPair;
	gramPairSingle?: GramPairRaw;
	/** 'onnxruntime' when the kernels take raw F16 (JS kernels would decode it again). */
	backend?: string;
};

type BucketName = keyof InspectorBuckets;

/** Code-point order (how Python and Rust sort strings), unlike JS's default UTF-16 unit order. */
export function compareCodePoints(a: string, b: string): number {
	const length = Math.min(a.length, b.length);
	for (let i = 0; i < length; i++) {
		const x = a.codePointAt(i)!;
		const y = b.codePointAt(i)!;
		if (x !== y) {
			return x - y;
		}

		if (x > 0xff_ff) {
			i++;
		}
	}

	return a.length - b.length;
}

/**
 * lora-inspector's bucket of a tensor key (`find_vectors_weights`): keys ending `.weight`;
 * `lora_unet…` is "UNet conv" when the key contains "conv" anywhere, else "UNet";
 * `lora_te_text_model_encoder_layers_` and `lora_te1_text_model_encoder_layers` are TE (1),
 * `lora_te2_text_model_encoder_layers_` TE (2). Everything else (PEFT, LoHa, LoKr, alpha) is ignored.
 */
export function inspectorBucketOf(key: string): BucketName | null {
	if (!key.endsWith('.weight')) {
		return null;
	}

	if (key.startsWith('lora_unet')) {
		return key.includes('conv') ? 'unetConv' : 'unet';
	}

	if (key.startsWith('lora_te_text_model_encoder_layers_') || key.startsWith('lora_te1_text_model_encoder_layers')) {
		return 'te';
	}

	if (key.startsWith('lora_te2_text_model_encoder_layers_')) {
		return 'te2';
	}

	return null;
}

type TensorFigures = {magnitude: number; strength: number};

/**
 * √Σw² and mean|w| of one tensor, accumulated in float64 in element order exactly as
 * lora-inspector's Python loops do (so the printed digits match), plus the NaN/Inf count.
 */
export function tensorFigures(values: Float32Array): TensorFigures & {nonFinite: number} {
	let squares = 0;
	let absolute = 0;
	for (let i = 0; i < values.length; i++) {
		const v = values[i]!;
		squares += v * v;
		absolute += Math.abs(v);
	}

	// v² of a float32 never overflows a double, so the sum is finite exactly when every value is.
	const nonFinite = Number.isFinite(squares) ? 0 : countNonFinite(values);
	return {magnitude: Math.sqrt(squares), strength: values.length === 0 ? 0 : absolute / values.length, nonFinite};
}

function countNonFinite(values: Float32Array): number {
	let count = 0;
	for (let i = 0; i < values.length; i++) {
		const v = values[i]!;
		if (v - v !== 0) {
			count++;
		}
	}

	return count;
}

let halfTable: Float32Array | undefined;

/** float16 bits → value, built once through the reader's own decoder. */
function getHalfTable(): Float32Array {
	if (!halfTable) {
		const bits = new Uint16Array(65_536);
		for (let i = 0; i < bits.length; i++) {
			bits[i] = i;
		}

		halfTable = decodeToFloat32(new Uint8Array(bits.buffer), 'F16');
	}

	return halfTable;
}

/** Σv² and Σ|v| of the last halfSums / halfSumsInto call (no object per tensor). */
const halfSumsOut = new Float64Array(2);

// The two hot loops of `inspect -w` (every F16 value of the file) live in functions with nothing
// else in them. With the remainder loop and the NaN scan in the same function, V8 optimised it on
// stack (OSR) with no type feedback for the never-run tail, deoptimised at the end of every tensor,
// and ran each next call in the interpreter until the loop was hot again: most LoRA tensors are
// small, so most values were summed unoptimised (~4.4 ns each instead of ~1.5). Four independent
// sums each: one chain of dependent float adds would bound the loop at the add latency. The two
// are the same loop on purpose: sharing one would test `out` per value or write to a dummy buffer.

/** Sums of the first `n4` values (a multiple of 4) of `halves`, decoded through `table`. */
function halfSums(halves: Uint16Array, table: Float32Array, n4: number): void {
	let s0 = 0;
	let s1 = 0;
	let s2 = 0;
	let s3 = 0;
	let a0 = 0;
	let a1 = 0;
	let a2 = 0;
	let a3 = 0;
	for (let i = 0; i < n4; i += 4) {
		const v0 = table[halves[i]!]!;
		const v1 = table[halves[i + 1]!]!;
		const v2 = table[halves[i + 2]!]!;
		const v3 = table[halves[i + 3]!]!;
		s0 += v0 * v0;
		s1 += v1 * v1;
		s2 += v2 * v2;
		s3 += v3 * v3;
		a0 += Math.abs(v0);
		a1 += Math.abs(v1);
		a2 += Math.abs(v2);
		a3 += Math.abs(v3);
	}

	halfSumsOut[0] = (s0 + s1) + (s2 + s3);
	halfSumsOut[1] = (a0 + a1) + (a2 + a3);
}

/** halfSums that also writes the decoded values to `out`. */
function halfSumsInto(halves: Uint16Array, table: Float32Array, n4: number, out: Float32Array): void {
	let s0 = 0;
	let s1 = 0;
	let s2 = 0;
	let s3 = 0;
	let a0 = 0;
	let a1 = 0;
	let a2 = 0;
	let a3 = 0;
	for (let i = 0; i < n4; i += 4) {
		const v0 = table[halves[i]!]!;
		const v1 = table[halves[i + 1]!]!;
		const v2 = table[halves[i + 2]!]!;
		const v3 = table[halves[i + 3]!]!;
		out[i] = v0;
		out[i + 1] = v1;
		out[i + 2] = v2;
		out[i + 3] = v3;
		s0 += v0 * v0;
		s1 += v1 * v1;
		s2 += v2 * v2;
		s3 += v3 * v3;
		a0 += Math.abs(v0);
		a1 += Math.abs(v1);
		a2 += Math.abs(v2);
		a3 += Math.abs(v3);
	}

	halfSumsOut[0] = (s0 + s1) + (s2 + s3);
	halfSumsOut[1] = (a0 + a1) + (a2 + a3);
}

/**
 * tensorFigures of raw F16 bytes without materialising the decoded tensor (one table load per
 * value); `out`, when given, receives the decoded values too.
 */
function halfFigures(halves: Uint16Array, out?: Float32Array): TensorFigures & {nonFinite: number} {
	const table = getHalfTable();
	const n = halves.length;
	const n4 = n - (n % 4);
	if (out) {
		halfSumsInto(halves, table, n4, out);
	} else {
		halfSums(halves, table, n4);
	}

	let squares = halfSumsOut[0]!;
	let absolute = halfSumsOut[1]!;
	for (let i = n4; i < n; i++) {
		const v = table[halves[i]!]!;
		if (out) {
			out[i] = v;
		}

		squares += v * v;
		absolute += Math.abs(v);
	}

	return {magnitude: Math.sqrt(squares), strength: n === 0 ? 0 : absolute / n, nonFinite: Number.isFinite(squares) ? 0 : countNonFiniteHalves(halves)};
}

function countNonFiniteHalves(halves: Uint16Array): number {
	let count = 0;
	for (let i = 0; i < halves.length; i++) {
		// Exponent bits all ones: Inf or NaN.
		if ((halves[i]! & 0x7c_00) === 0x7c_00) {
			count++;
		}
	}

	return count;
}

type RawTensor = {info: TensorInfo; bytes: Uint8Array};

/**
 * Figures of a raw tensor and, when `decode`, its float32 values (F16 in one fused pass). With
 * `scratch` the values are written there (a view of it is returned) instead of a new array.
 */
function figuresOf(raw: RawTensor, decode: boolean, scratch?: Scratch): {figures: TensorFigures & {nonFinite: number}; values?: Float32Array} {
	const {bytes, info} = raw;
	const count = bytes.byteLength / dtypeSize[info.dtype];
	if (info.dtype === 'F16' && bytes.byteOffset % 2 === 0) {
		const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
		if (!decode) {
			return {figures: halfFigures(halves)};
		}

		const values = scratch ? scratch.take(count) : new Float32Array(count);
		return {figures: halfFigures(halves, values), values};
	}

	if (info.dtype === 'F32' && bytes.byteOffset % 4 === 0) {
		const values = new Float32Array(bytes.buffer, bytes.byteOffset, count);
		return {figures: tensorFigures(values), values};
	}

	const values = scratch ? scratch.take(count) : new Float32Array(count);
	decodeInto(bytes, info.dtype, values);
	return {figures: tensorFigures(values), values};
}

/** A reusable float32 buffer: LoRA pairs are decoded here, so a whole file allocates almost nothing. */
class Scratch {
	private buffer = new Float32Array(0);

	take(count: number): Float32Array {
		if (this.buffer.length < count) {
			this.buffer = new Float32Array(Math.max(count, Math.ceil(this.buffer.length * 1.5)));
		}

		return this.buffer.subarray(0, count);
	}
}

type LoadedTensor = {info: TensorInfo; values: Float32Array};

type ModuleTensors = Map<string, LoadedTensor>;

function roleTensor(module: LoraModule, tensors: ModuleTensors, role: string): LoadedTensor | undefined {
	const key = module.tensors[role];
	return key === undefined ? undefined : tensors.get(key);
}

/** A tensor as a rows×cols matrix with rows = its first dimension (everything else flattened). */
function asMatrix(tensor: LoadedTensor): {values: Float32Array; rows: number; cols: number} {
	const rows = tensor.info.shape[0] ?? 1;
	const cols = rows === 0 ? 0 : tensor.values.length / rows;
	return {values: tensor.values, rows, cols};
}

/** ‖up·down‖² for up out×r and down r×in (4-D tensors flattened), from the two r×r Grams. */
async function loraNormSquared(kernels: PairKernels, up: Float32Array, outDim: number, rank: number, down: Float32Array, inDim: number): Promise<number> {
	if (isSmallPair(outDim, rank, inDim)) {
		// gramsOf computes a small pair in float64 JS, whatever `kernels` are.
		const [gu, gd] = await gramsOf(kernels, up, outDim, rank, down, rank, inDim);
		return productNormSquaredFromGrams(gu, gd);
	}

	const single = kernels.gramPairSingle;
	return guardedNormSquared(kernels, single && (async () => single(up, outDim, rank, down, inDim)), () => ({up, down}), outDim, rank, inDim);
}

/**
 * Below this many multiply-adds for its two Grams, a pair is cheaper in plain JS (float64, exact
 * enough to need no cancellation check) than in an onnxruntime call (~25 µs each, plus the tensors
 * it allocates): a folder of rank-1 to rank-4 SD1.5 LoRAs made ~260,000 calls and spent a quarter
 * of `inspect -w` collecting their garbage.
 */
const smallPairMultiplyAdds = 32_768;

/** Whether the Grams uᵀu (rows×uCols) and v·vᵀ (vRows×cols) are cheaper in plain JS. */
function smallGrams(rows: number, uCols: number, vRows: number, cols: number): boolean {
	return (rows * uCols * uCols) + (cols * vRows * vRows) <= smallPairMultiplyAdds;
}

function isSmallPair(outDim: number, rank: number, inDim: number): boolean {
	return smallGrams(outDim, rank, rank, inDim);
}

/** uᵀu (uCols×uCols) and v·vᵀ (vRows×vRows): in plain JS for small inputs, else on `kernels`. */
async function gramsOf(kernels: GramKernels, u: Float32Array, rows: number, uCols: number, v: Float32Array, vRows: number, cols: number): Promise<[Float64Array, Float64Array]> {
	if (smallGrams(rows, uCols, vRows, cols)) {
		return [gramColsSync(u, rows, uCols), gramRowsSync(v, vRows, cols)];
	}

	return Promise.all([kernels.gramCols(u, rows, uCols), kernels.gramRows(v, vRows, cols)]);
}

/**
 * ‖up·down‖² from the float32 Grams `single` gives, unless the pair cancels (or there is no
 * `single`): then from float64 Grams of the values `decoded` gives (called only then).
 */
async function guardedNormSquared(
	kernels: PairKernels,
	single: (() => Promise<{gu: Float64Array; gd: Float64Array}>) | undefined,
	decoded: () => {up: Float32Array; down: Float32Array},
	outDim: number,
	rank: number,
	inDim: number,
): Promise<number> {
	if (rank === 0 || outDim === 0 || inDim === 0) {
		return 0;
	}

	if (single) {
		const {gu, gd} = await single();
		const squared = productNormSquaredFromGrams(gu, gd);
		if (!cancels(squared, gu, gd, rank)) {
			return squared;
		}
	}

	const {up, down} = decoded();
	if (kernels.gramPair) {
		const {gu, gd} = await kernels.gramPair(up, outDim, rank, down, inDim);
		return productNormSquaredFromGrams(gu, gd);
	}

	const [gu, gd] = await gramsOf(kernels, up, outDim, rank, down, rank, inDim);
	return productNormSquaredFromGrams(gu, gd);
}

/**
 * Whether ‖up·down‖² = Σ Gu∘Gd computed from float32-accumulated Grams may have lost its digits
 * to cancellation. Each Gram entry's rounding error scales with √(Gu_ii·Gu_jj) (Cauchy–Schwarz),
 * so the error of the sum scales with T = (Σ_i √(Gu_ii·Gd_ii))². For rank-1 terms of similar size
 * that point in unrelated directions, T ≈ rank·result, and real LoRAs measured within 1e-6 of the
 * float64 result. A result far below T/rank means the terms cancel, and float32 rounding of the
 * Grams could then be most of what is left: such pairs (and non-finite ones) are redone in float64.
 */
function cancels(squared: number, gu: Float64Array, gd: Float64Array, rank: number): boolean {
	let diagonal = 0;
	for (let i = 0; i < rank; i++) {
		diagonal += Math.sqrt(Math.max(0, gu[(i * rank) + i]!) * Math.max(0, gd[(i * rank) + i]!));
	}

	const bound = diagonal * diagonal;
	if (!Number.isFinite(bound) || !Number.isFinite(squared)) {
		return true;
	}

	return squared * rank * cancellationLimit < bound;
}

/** How far below the no-cancellation size (T/rank) a float32 result may fall before it is redone. */
const cancellationLimit = 64;

/** Shapes of a LoRA pair as matrices, or null when up's columns do not match down's rows. */
function pairShape(up: TensorInfo, down: TensorInfo): {outDim: number; rank: number; inDim: number} | null {
	const count = (info: TensorInfo) => info.shape.reduce((a, b) => a * b, 1);
	const outDim = up.shape[0] ?? 1;
	const rank = down.shape[0] ?? 1;
	const upCols = outDim === 0 ? 0 : count(up) / outDim;
	const inDim = rank === 0 ? 0 : count(down) / rank;
	if (upCols !== rank && !(outDim === 0 || rank === 0)) {
		return null;
	}

	return {outDim, rank, inDim};
}

/** ‖A·B‖² of a small factor pair (LoKr), A rows×r and B r×cols, with the plain-JS Grams. */
function smallProductNormSquared(a: LoadedTensor, b: LoadedTensor): number | null {
	const am = asMatrix(a);
	const bm = asMatrix(b);
	if (am.cols !== bm.rows) {
		return null;
	}

	return productNormSquaredFromGrams(gramColsSync(am.values, am.rows, am.cols), gramRowsSync(bm.values, bm.rows, bm.cols));
}

async function lohaNormSquared(kernels: GramKernels, module: LoraModule, tensors: ModuleTensors): Promise<number | null> {
	const w1a = roleTensor(module, tensors, 'hada_w1_a');
	const w1b = roleTensor(module, tensors, 'hada_w1_b');
	const w2a = roleTensor(module, tensors, 'hada_w2_a');
	const w2b = roleTensor(module, tensors, 'hada_w2_b');
	if (!w1a || !w1b || !w2a || !w2b) {
		return null;
	}

	const t1 = roleTensor(module, tensors, 'hada_t1');
	const t2 = roleTensor(module, tensors, 'hada_t2');
	if (t1 || t2) {
		if (!t1 || !t2) {
			return null;
		}

		// Tucker (w?_a r×out, w?_b r×in, t r×r×kh×kw): reconstruct one output row at a time.
		const [r1, r1b] = [t1.info.shape[0]!, t1.info.shape[1]!];
		const [r2, r2b] = [t2.info.shape[0]!, t2.info.shape[1]!];
		const spatial = t1.values.length / (r1 * r1b);
		const out = w1a.info.shape[1]!;
		const inDim = w1b.info.shape[1]!;
		const row1 = new Float64Array(inDim * spatial);
		const row2 = new Float64Array(inDim * spatial);
		let total = 0;
		for (let o = 0; o < out; o++) {
			tuckerRow(t1.values, r1, r1b, spatial, w1a.values, out, w1b.values, inDim, o, row1);
			tuckerRow(t2.values, r2, r2b, spatial, w2a.values, out, w2b.values, inDim, o, row2);
			for (let i = 0; i < row1.length; i++) {
				const v = row1[i]! * row2[i]!;
				total += v * v;
			}
		}

		return total;
	}

	const a1 = asMatrix(w1a);
	const b1 = asMatrix(w1b);
	const a2 = asMatrix(w2a);
	const b2 = asMatrix(w2b);
	const m = a1.rows;
	const n = b1.cols;
	const r1 = a1.cols;
	const r2 = a2.cols;
	if (b1.rows !== r1 || b2.rows !== r2 || a2.rows !== m || b2.cols !== n) {
		return null;
	}

	// (A1B1)⊙(A2B2) = U·V with rank r1·r2 (face-splitting products): cheaper than the dense
	// product while (m+n)·(r1r2)² < m·n·(r1+r2), i.e. for the small dims LoHa is used with.
	const kr = r1 * r2;
	if ((m + n) * kr * kr <= m * n * (r1 + r2)) {
		const u = faceSplitRows(a1.values, r1, a2.values, r2, m);
		const v = faceSplitColumns(b1.values, r1, b2.values, r2, n);
		const [gu, gv] = await gramsOf(kernels, u, m, kr, v, kr, n);
		return productNormSquaredFromGrams(gu, gv);
	}

	return hadamardProductNormSquared(a1.values, b1.values, r1, a2.values, b2.values, r2, m, n);
}

function lokrNormSquared(module: LoraModule, tensors: ModuleTensors): number | null {
	// ‖kron(W1, W2)‖ = ‖W1‖·‖W2‖ (every product w1_ij·w2_kl appears exactly once).
	let w1: number | null;
	const full1 = roleTensor(module, tensors, 'lokr_w1');
	if (full1) {
		w1 = sumOfSquares(full1.values);
	} else {
		const a = roleTensor(module, tensors, 'lokr_w1_a');
		const b = roleTensor(module, tensors, 'lokr_w1_b');
		w1 = a && b ? smallProductNormSquared(a, b) : null;
	}

	let w2: number | null;
	const full2 = roleTensor(module, tensors, 'lokr_w2');
	const t2 = roleTensor(module, tensors, 'lokr_t2');
	const a2 = roleTensor(module, tensors, 'lokr_w2_a');
	const b2 = roleTensor(module, tensors, 'lokr_w2_b');
	if (full2) {
		w2 = sumOfSquares(full2.values);
	} else if (t2 && a2 && b2) {
		// W2_s = w2_aᵀ·T_s·w2_b with w2_a r×b, w2_b r×d: Grams w2_a·w2_aᵀ and w2_b·w2_bᵀ.
		const r1 = t2.info.shape[0]!;
		const r2 = t2.info.shape[1]!;
		const spatial = t2.values.length / (r1 * r2);
		const ga = asMatrix(a2);
		const gb = asMatrix(b2);
		w2 = ga.rows === r1 && gb.rows === r2
			? tuckerNormSquared(t2.values, r1, r2, spatial, gramRowsSync(ga.values, ga.rows, ga.cols), gramRowsSync(gb.values, gb.rows, gb.cols))
			: null;
	} else {
		w2 = a2 && b2 ? smallProductNormSquared(a2, b2) : null;
	}

	return w1 === null || w2 === null ? null : w1 * w2;
}

/** ‖ΔW‖²_F before scale, or null when ΔW needs the base weights or the tensors do not fit. */
async function moduleNormSquared(kernels: PairKernels, module: LoraModule, tensors: ModuleTensors): Promise<number | null> {
	if (module.needsBase) {
		return null;
	}

	switch (module.algo) {
		case 'lora': {
			const up = roleTensor(module, tensors, 'up');
			const down = roleTensor(module, tensors, 'down');
			const shape = up && down ? pairShape(up.info, down.info) : null;
			return shape ? loraNormSquared(kernels, up!.values, shape.outDim, shape.rank, down!.values, shape.inDim) : null;
		}

		case 'locon-tucker': {
			const up = roleTensor(module, tensors, 'up');
			const mid = roleTensor(module, tensors, 'mid');
			const down = roleTensor(module, tensors, 'down');
			if (!up || !mid || !down) {
				return null;
			}

			// ΔW_s = up·mid_s·down for every kernel position s.
			const u = asMatrix(up);
			const d = asMatrix(down);
			const r1 = mid.info.shape[0]!;
			const r2 = mid.info.shape[1]!;
			if (u.cols !== r1 || d.rows !== r2) {
				return null;
			}

			const [gu, gd] = await gramsOf(kernels, u.values, u.rows, r1, d.values, r2, d.cols);
			return tuckerNormSquared(mid.values, r1, r2, mid.values.length / (r1 * r2), gu, gd);
		}

		case 'loha': {
			return lohaNormSquared(kernels, module, tensors);
		}

		case 'lokr': {
			return lokrNormSquared(module, tensors);
		}

		case 'full': {
			const diff = roleTensor(module, tensors, 'diff');
			return diff ? sumOfSquares(diff.values) : null;
		}

		case 'norm': {
			const weight = roleTensor(module, tensors, 'w_norm') ?? roleTensor(module, tensors, 'b_norm');
			return weight ? sumOfSquares(weight.values) : null;
		}

		default: {
			return null;
		}
	}
}

function throwIfAborted(signal: AbortSignal | undefined): void {
	if (signal?.aborted) {
		throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
	}
}

function bucketOf(figures: Map<string, TensorFigures>, keys: string[]): WeightBucket | null {
	if (keys.length === 0) {
		return null;
	}

	// Summed in float64 in sorted key order, as lora-inspector iterates safe_open's sorted keys.
	keys.sort(compareCodePoints);
	let magnitude = 0;
	let strength = 0;
	for (const key of keys) {
		const f = figures.get(key)!;
		magnitude += f.magnitude;
		strength += f.strength;
	}

	return {magnitude: magnitude / keys.length, strength: strength / keys.length, tensors: keys.length};
}

const teComponents = new Set(['te', 'te1', 'te2', 'te3']);

/** Block aggregates over modules with a known norm; blocks with none are left out. */
export function blockNorms(modules: readonly ModuleNorm[]): BlockNorm[] {
	const blocks = new Map<string, {blockOrder: number; count: number; squares: number; sum: number}>();
	for (const module of modules) {
		if (module.norm === null) {
			continue;
		}

		const entry = blocks.get(module.block) ?? {blockOrder: module.blockOrder, count: 0, squares: 0, sum: 0};
		entry.count++;
		entry.squares += module.norm * module.norm;
		entry.sum += module.norm;
		blocks.set(module.block, entry);
	}

	return [...blocks]
		.map(([name, b]) => ({name, blockOrder: b.blockOrder, modules: b.count, norm: Math.sqrt(b.squares), mean: b.sum / b.count}))
		.sort((a, b) => a.blockOrder - b.blockOrder || compareCodePoints(a.name, b.name));
}

/** Bytes read per positioned read: large enough that syscalls vanish, small enough to stay bounded. */
const windowBytes = 8 * 1024 * 1024;

/** One unit of work: modules whose tensors sit in one window, or tensors outside any module. */
type Chunk = {
	modules: number[];
	/** Bucket-eligible tensors that belong to no module (lora-inspector still counts them). */
	extra: string[];
	begin: number;
	end: number;
	/** Tensors far apart: read one by one instead of as one window. */
	scattered: boolean;
};

/** How a file's tensors are grouped into chunks; deterministic for a header and model, so threads can share it. */
export type StatsPlan = {chunks: Chunk[]; keys: string[][]};

/**
 * Group modules, in file order, into windows read with one positioned read each. A module whose
 * tensors are not next to each other (or larger than a window) is read on its own.
 */
export function planStats(header: SafetensorsHeader, model: LoraModel): StatsPlan {
	const keys: string[][] = [];
	const spans: Array<{index: number; begin: number; end: number; total: number}> = [];
	const claimed = new Set<string>();
	for (const [index, module] of model.modules.entries()) {
		const moduleKeys = [...new Set(Object.values(module.tensors))].filter(key => header.byName.has(key) && !claimed.has(key));
		for (const key of moduleKeys) {
			claimed.add(key);
		}

		keys.push(moduleKeys);
		let begin = Number.POSITIVE_INFINITY;
		let end = 0;
		let total = 0;
		for (const key of moduleKeys) {
			const info = header.byName.get(key)!;
			begin = Math.min(begin, info.begin);
			end = Math.max(end, info.end);
			total += info.end - info.begin;
		}

		spans.push({index, begin: moduleKeys.length === 0 ? 0 : begin, end: moduleKeys.length === 0 ? 0 : end, total});
	}

	spans.sort((a, b) => a.begin - b.begin || a.index - b.index);
	const chunks: Chunk[] = [];
	let current: Chunk | undefined;
	for (const span of spans) {
		const contiguous = span.end - span.begin <= span.total + 4096;
		if (!contiguous || span.end - span.begin > windowBytes) {
			current = undefined;
			chunks.push({modules: [span.index], extra: [], begin: span.begin, end: span.end, scattered: !contiguous});
			continue;
		}

		if (current && span.begin >= current.begin && span.end - current.begin <= windowBytes && span.begin - current.end <= 4096) {
			current.modules.push(span.index);
			current.end = Math.max(current.end, span.end);
		} else {
			current = {modules: [span.index], extra: [], begin: span.begin, end: span.end, scattered: false};
			chunks.push(current);
		}
	}

	const extra = header.tensors.filter(t => !claimed.has(t.name) && inspectorBucketOf(t.name)).map(t => t.name);
	if (extra.length > 0) {
		chunks.push({modules: [], extra, begin: 0, end: 0, scattered: true});
	}

	return {chunks, keys};
}

/**
 * Positioned reads of the data area into two reused window buffers (the chunk being computed
 * and the one read ahead), so a whole file allocates almost nothing.
 */
class WindowReader {
	static async open(header: SafetensorsHeader): Promise<WindowReader> {
		return new WindowReader(header, await openForRead(header.path));
	}

	private readonly slots = [Buffer.allocUnsafe(0), Buffer.allocUnsafe(0)];
	private readonly header: SafetensorsHeader;
	private readonly handle: FileHandle;

	private constructor(header: SafetensorsHeader, handle: FileHandle) {
		this.header = header;
		this.handle = handle;
	}

	/** `length` bytes at data offset `begin`, in slot `slot` (valid until that slot is reused). */
	async read(begin: number, length: number, slot: number): Promise<Buffer> {
		let buffer = this.slots[slot]!;
		if (buffer.length < length) {
			buffer = Buffer.allocUnsafe(Math.max(length, length <= windowBytes ? windowBytes : 0));
			if (length <= windowBytes) {
				this.slots[slot] = buffer;
			}
		}

		const position = this.header.dataOffset + begin;
		let filled = 0;
		while (filled < length) {
			let bytesRead: number;
			try {
				({bytesRead} = await this.handle.read(buffer, filled, length - filled, position + filled));
			} catch (error) {
				throw new LoraFileError(this.header.path, errorReason(error));
			}

			if (bytesRead === 0) {
				throw new LoraFileError(this.header.path, `file ended at byte ${position + filled} while reading tensor data (truncated or being written)`);
			}

			filled += bytesRead;
		}

		return buffer.subarray(0, length);
	}

	async close(): Promise<void> {
		await this.handle.close();
	}
}

/** Raw bytes of every tensor of a chunk. */
async function readChunk(reader: WindowReader, header: SafetensorsHeader, chunk: Chunk, keys: string[][], slot: number): Promise<Map<string, RawTensor>> {
	const raw = new Map<string, RawTensor>();
	const all = [...chunk.modules.flatMap(index => keys[index]!), ...chunk.extra];
	if (chunk.scattered) {
		for (const key of all) {
			const info = header.byName.get(key)!;
			// Copied out: scattered tensors are few, and each read reuses the slot.
			const bytes = Buffer.from(await reader.read(info.begin, info.end - info.begin, slot));
			raw.set(key, {info, bytes});
		}

		return raw;
	}

	const span = await reader.read(chunk.begin, chunk.end - chunk.begin, slot);
	for (const key of all) {
		const info = header.byName.get(key)!;
		raw.set(key, {info, bytes: span.subarray(info.begin - chunk.begin, info.end - chunk.begin)});
	}

	return raw;
}

/**
 * What one thread found over the chunks it processed: plain data (structured-clone friendly),
 * merged by finishStats. Norms are before scale (alpha/rank is applied when finishing).
 */
export type StatsPart = {
	/** lora-inspector figures of bucket-eligible tensors: [key, magnitude, strength]. */
	figures: Array<[string, number, number]>;
	/** ‖ΔW‖² before scale by module index; null where it needs the base weights or shapes do not fit. */
	squared: Array<[number, number | null]>;
	/** NaN/Inf values per module index. */
	nonFinite: Array<[number, number]>;
	nonFiniteValues: number;
	bytesRead: number;
	/** Values of 0-d alpha tensors by key, for exact scales. */
	alphas: Array<[string, number]>;
	modulesDone: number;
};

/**
 * A claim function over a counter shared between threads (an Int32 in a SharedArrayBuffer): each
 * call takes the next chunk index of a plan of `chunks` chunks, or null once none is left.
 */
export function sharedClaim(counter: SharedArrayBuffer, chunks: number): () => number | null {
	const next = new Int32Array(counter);
	return () => {
		const index = Atomics.add(next, 0, 1);
		return index < chunks ? index : null;
	};
}

export type StatsPartOptions = StatsOptions & {
	/** Index of the next chunk this thread should take, or null when none is left (default: all, in order). */
	claim?: () => number | null;
};

/**
 * Process chunks of `plan` (all of them, or those `claim` hands out) and report the raw findings.
 * Several threads can share one plan through a shared `claim` counter; finishStats merges.
 */
export async function computeStatsPart(header: SafetensorsHeader, model: LoraModel, plan: StatsPlan, options: StatsPartOptions = {}): Promise<StatsPart> {
	const kernels: PairKernels = options.kernels ?? jsKernels;
	// Only onnxruntime takes raw F16 without decoding it in JS again (the JS kernels would).
	const rawHalvesKernels = kernels.backend === 'onnxruntime' && kernels.gramPairSingle ? {gramPairSingle: kernels.gramPairSingle} : undefined;
	let sequential = 0;
	const claim = options.claim ?? (() => (sequential < plan.chunks.length ? sequential++ : null));
	const part: StatsPart = {figures: [], squared: [], nonFinite: [], nonFiniteValues: 0, bytesRead: 0, alphas: [], modulesDone: 0};
	const total = model.modules.length;
	const upScratch = new Scratch();
	const downScratch = new Scratch();
	const reader = await WindowReader.open(header);
	try {
		const absorb = (raw: RawTensor, f: TensorFigures & {nonFinite: number}): number => {
			part.bytesRead += raw.bytes.byteLength;
			part.nonFiniteValues += f.nonFinite;
			if (inspectorBucketOf(raw.info.name)) {
				part.figures.push([raw.info.name, f.magnitude, f.strength]);
			}

			return f.nonFinite;
		};

		let slot = 0;
		let current = claim();
		let next: Promise<Map<string, RawTensor>> | undefined = current === null ? undefined : readChunk(reader, header, plan.chunks[current]!, plan.keys, slot);
		while (current !== null) {
			throwIfAborted(options.signal);
			const raw = await next!;
			const chunk = plan.chunks[current]!;
			// Read the next window into the other slot while this one is computed.
			current = claim();
			slot = 1 - slot;
			next = current === null ? undefined : readChunk(reader, header, plan.chunks[current]!, plan.keys, slot);
			// A failed read ahead is reported when its turn comes, not as an unhandled rejection.
			next?.catch(() => undefined);
			for (const key of chunk.extra) {
				const tensor = raw.get(key)!;
				absorb(tensor, figuresOf(tensor, false).figures);
			}

			for (const index of chunk.modules) {
				throwIfAborted(options.signal);
				const module = model.modules[index]!;
				const moduleRaw = plan.keys[index]!.map(key => raw.get(key)!);
				let nonFinite = 0;
				const alphaKey = module.tensors['alpha'];
				const alpha = alphaKey === undefined ? undefined : raw.get(alphaKey);
				if (alpha && alpha.bytes.byteLength === dtypeSize[alpha.info.dtype]) {
					part.alphas.push([alpha.info.name, decodeToFloat32(alpha.bytes, alpha.info.dtype)[0]!]);
				}

				const up = raw.get(module.tensors['up'] ?? '');
				const down = raw.get(module.tensors['down'] ?? '');
				const shape = module.algo === 'lora' && up && down ? pairShape(up.info, down.info) : null;
				let squared: number | null = null;
				if (module.needsBase) {
					// ΔW needs the base weights: only the figures, the norm stays null.
					for (const tensor of moduleRaw) {
						nonFinite += absorb(tensor, figuresOf(tensor, false).figures);
					}
				} else if (shape && up!.info.dtype === 'F16' && down!.info.dtype === 'F16' && rawHalvesKernels?.gramPairSingle && !isSmallPair(shape.outDim, shape.rank, shape.inDim)) {
					// The common case on onnxruntime: JS only sums the values; onnxruntime widens the raw
					// F16 and forms the float32 Grams (SDXL r32: 0.39–0.44 s instead of 0.44–0.55 s with
					// a JS decoding pass). A pair whose terms cancel is decoded and redone in float64.
					for (const tensor of moduleRaw) {
						nonFinite += absorb(tensor, figuresOf(tensor, false).figures);
					}

					const {outDim, rank, inDim} = shape;
					squared = await guardedNormSquared(
						kernels,
						async () => rawHalvesKernels.gramPairSingle({dtype: 'F16', bytes: up!.bytes}, outDim, rank, {dtype: 'F16', bytes: down!.bytes}, inDim),
						() => ({up: figuresOf(up!, true, upScratch).values!, down: figuresOf(down!, true, downScratch).values!}),
						outDim,
						rank,
						inDim,
					);
				} else if (shape) {
					// The common case, kept allocation-free: the pair is decoded into reused buffers.
					let upValues: Float32Array | undefined;
					let downValues: Float32Array | undefined;
					for (const tensor of moduleRaw) {
						const isUp = tensor === up;
						const isDown = tensor === down && !isUp;
						const {figures: f, values} = figuresOf(tensor, isUp || isDown, isUp ? upScratch : (isDown ? downScratch : undefined));
						nonFinite += absorb(tensor, f);
						if (isUp) {
							upValues = values;
						} else if (isDown) {
							downValues = values;
						}
					}

					squared = await loraNormSquared(kernels, upValues!, shape.outDim, shape.rank, downValues!, shape.inDim);
				} else {
					const tensors: ModuleTensors = new Map();
					for (const tensor of moduleRaw) {
						const {figures: f, values} = figuresOf(tensor, true);
						nonFinite += absorb(tensor, f);
						tensors.set(tensor.info.name, {info: tensor.info, values: values!});
					}

					squared = await moduleNormSquared(kernels, module, tensors);
				}

				part.squared.push([index, squared]);
				part.nonFinite.push([index, nonFinite]);
				part.modulesDone++;
				options.onProgress?.({done: part.modulesDone, total, label: module.name});
			}
		}

		return part;
	} finally {
		await reader.close();
	}
}

/**
 * Merge parts into the file's statistics. Scales come from `model` when it carries alpha values,
 * else from a model rebuilt with the alpha values the parts read (returned too).
 */
export function finishStats(header: SafetensorsHeader, model: LoraModel, parts: readonly StatsPart[]): {stats: LoraStats; model: LoraModel} {
	if (model.modules.some(m => m.alphaSource === 'tensor' && m.alpha === null)) {
		const alphas = new Map<string, number>();
		for (const part of parts) {
			for (const [key, value] of part.alphas) {
				alphas.set(key, value);
			}
		}

		model = buildLoraModel(header, alphas);
	}

	const figures = new Map<string, TensorFigures>();
	const bucketKeys: Record<BucketName, string[]> = {unet: [], unetConv: [], te: [], te2: []};
	const squared = new Array<number | null>(model.modules.length).fill(null);
	const nonFinite = new Array<number>(model.modules.length).fill(0);
	let nonFiniteValues = 0;
	let bytesRead = 0;
	for (const part of parts) {
		for (const [key, magnitude, strength] of part.figures) {
			if (!figures.has(key)) {
				figures.set(key, {magnitude, strength});
				bucketKeys[inspectorBucketOf(key)!].push(key);
			}
		}

		for (const [index, value] of part.squared) {
			squared[index] = value;
		}

		for (const [index, count] of part.nonFinite) {
			nonFinite[index] = count;
		}

		nonFiniteValues += part.nonFiniteValues;
		bytesRead += part.bytesRead;
	}

	const modules: ModuleNorm[] = [];
	const zeroModules: string[] = [];
	let unetSquares = 0;
	let teSquares = 0;
	for (const [index, module] of model.modules.entries()) {
		const value = squared[index];
		let norm: number | null = null;
		if (value !== null && value !== undefined) {
			const scaled = Math.abs(module.scale) * Math.sqrt(value);
			norm = Number.isFinite(scaled) ? scaled : null;
		}

		if (norm === 0) {
			zeroModules.push(module.name);
		}

		if (norm !== null) {
			if (teComponents.has(module.component)) {
				teSquares += norm * norm;
			} else {
				unetSquares += norm * norm;
			}
		}

		modules.push({
			name: module.name,
			block: module.block,
			blockOrder: module.blockOrder,
			component: module.component,
			rank: module.rank,
			alpha: module.alpha,
			norm,
			nonFinite: nonFinite[index]!,
		});
	}

	const stats: LoraStats = {
		buckets: {
			unet: bucketOf(figures, bucketKeys.unet),
			unetConv: bucketOf(figures, bucketKeys.unetConv),
			te: bucketOf(figures, bucketKeys.te),
			te2: bucketOf(figures, bucketKeys.te2),
		},
		modules,
		blocks: blockNorms(modules),
		unetNorm: Math.sqrt(unetSquares),
		teNorm: Math.sqrt(teSquares),
		nonFiniteValues,
		zeroModules,
		bytesRead,
	};
	return {stats, model};
}

/**
 * Statistics of one file, streamed module by module through reused windows of a few MB, so
 * memory stays bounded. Alpha values are taken from `model` or, when it has none, from the
 * tensors as they are read. Throws LoraFileError when the data cannot be read (truncated file)
 * and the signal's reason when aborted.
 */
export async function computeStats(header: SafetensorsHeader, model: LoraModel, options: StatsOptions = {}): Promise<LoraStats> {
	return (await computeStatsWithModel(header, model, options)).stats;
}

/** computeStats plus the model with exact alpha values (for callers that started from a header-only model). */
export async function computeStatsWithModel(header: SafetensorsHeader, model: LoraModel, options: StatsOptions = {}): Promise<{stats: LoraStats; model: LoraModel}> {
	const part = await computeStatsPart(header, model, planStats(header, model), options);
	return finishStats(header, model, [part]);
}
