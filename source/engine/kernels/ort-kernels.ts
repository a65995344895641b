// onnxruntime-backed kernels. Each kernel is a small ONNX graph with symbolic dimensions built at
// runtime (onnx-builder.ts); its session is created once and reused, so a call costs one
// session.run (tens of microseconds) plus the arithmetic. Grams are cast to float64 before the
// product: float32 Grams square the factor's condition number into float32 rounding and lose
// the small singular values the resize planner needs.
import type * as Ort from 'onnxruntime-node';
import type {Device} from '../protocol.js';
import {encodeModel, onnxType, type OnnxGraph} from './onnx-builder.js';
import {gramColsJs, gramRowsJs} from './js-kernels.js';
import {checkLength, inputLength, toFloat32, type EngineKernels, type MatrixInput} from './types.js';

type OrtModule = typeof Ort;

const castTo = (input: string, output: string, to: number) => ({
	opType: 'Cast',
	inputs: [input],
	outputs: [output],
	attributes: {to: {kind: 'int' as const, value: to}},
});

const castToDouble = (input: string, output: string) => castTo(input, output, onnxType.double);

const gemm = (a: string, b: string, output: string, transA: number, transB: number) => ({
	opType: 'Gemm',
	inputs: [a, b],
	outputs: [output],
	attributes: {transA: {kind: 'int' as const, value: transA}, transB: {kind: 'int' as const, value: transB}},
});

const f32 = (name: string, dims: Array<number | string>) => ({name, elemType: onnxType.float, dims});
const f64 = (name: string, dims: Array<number | string>) => ({name, elemType: onnxType.double, dims});

/** The kernel graphs, exported for tests of the encoder. */
export const kernelGraphs = {
	gramPair: {
		name: 'gram_pair',
		nodes: [castToDouble('up', 'up64'), castToDouble('down', 'down64'), gemm('up64', 'up64', 'gu', 1, 0), gemm('down64', 'down64', 'gd', 0, 1)],
		inputs: [f32('up', ['out', 'rank']), f32('down', ['rank', 'in'])],
		outputs: [f64('gu', ['rank', 'rank']), f64('gd', ['rank', 'rank'])],
	},
	// Float32 products, for statistics only: no cast pass over the inputs and SGEMM instead of
	// DGEMM, about 1.6× faster on a whole SDXL LoRA. Only the r×r results become float64.
	gramPairSingle: {
		name: 'gram_pair_single',
		nodes: [gemm('up', 'up', 'gu32', 1, 0), gemm('down', 'down', 'gd32', 0, 1), castToDouble('gu32', 'gu'), castToDouble('gd32', 'gd')],
		inputs: [f32('up', ['out', 'rank']), f32('down', ['rank', 'in'])],
		outputs: [f64('gu', ['rank', 'rank']), f64('gd', ['rank', 'rank'])],
	},
	// gramPairSingle on raw float16 tensors: onnxruntime widens them (vectorised), and the JS
	// pass over the values only sums them, without storing a float32 copy.
	gramPairSingleF16: {
		name: 'gram_pair_single_f16',
		nodes: [castTo('up', 'up32', onnxType.float), castTo('down', 'down32', onnxType.float), gemm('up32', 'up32', 'gu32', 1, 0), gemm('down32', 'down32', 'gd32', 0, 1), castToDouble('gu32', 'gu'), castToDouble('gd32', 'gd')],
		inputs: [{name: 'up', elemType: onnxType.float16, dims: ['out', 'rank']}, {name: 'down', elemType: onnxType.float16, dims: ['rank', 'in']}],
		outputs: [f64('gu', ['rank', 'rank']), f64('gd', ['rank', 'rank'])],
	},
	// The same on raw float16 tensors: onnxruntime casts them, no JS decoding pass.
	gramPairF16: {
		name: 'gram_pair_f16',
		nodes: [castToDouble('up', 'up64'), castToDouble('down', 'down64'), gemm('up64', 'up64', 'gu', 1, 0), gemm('down64', 'down64', 'gd', 0, 1)],
		inputs: [{name: 'up', elemType: onnxType.float16, dims: ['out', 'rank']}, {name: 'down', elemType: onnxType.float16, dims: ['rank', 'in']}],
		outputs: [f64('gu', ['rank', 'rank']), f64('gd', ['rank', 'rank'])],
	},
	gramCols: {
		name: 'gram_cols',
		nodes: [castToDouble('m', 'm64'), gemm('m64', 'm64', 'g', 1, 0)],
		inputs: [f32('m', ['rows', 'cols'])],
		outputs: [f64('g', ['cols', 'cols'])],
	},
	gramRows: {
		name: 'gram_rows',
		nodes: [castToDouble('m', 'm64'), gemm('m64', 'm64', 'g', 0, 1)],
		inputs: [f32('m', ['rows', 'cols'])],
		outputs: [f64('g', ['rows', 'rows'])],
	},
	matmul: {
		name: 'matmul',
		nodes: [{opType: 'MatMul', inputs: ['a', 'b'], outputs: ['c']}],
		inputs: [f32('a', ['m', 'k']), f32('b', ['k', 'n'])],
		outputs: [f32('c', ['m', 'n'])],
	},
	// Grams of products, for the refined decomposition route: all in float64.
	productGramCols: {
		name: 'product_gram_cols',
		nodes: [castToDouble('a', 'a64'), {opType: 'MatMul', inputs: ['a64', 'b'], outputs: ['c']}, gemm('c', 'c', 'g', 1, 0)],
		inputs: [f32('a', ['m', 'k']), f64('b', ['k', 'n'])],
		outputs: [f64('g', ['n', 'n'])],
	},
	productGramRows: {
		name: 'product_gram_rows',
		nodes: [castToDouble('b', 'b64'), {opType: 'MatMul', inputs: ['a', 'b64'], outputs: ['c']}, gemm('c', 'c', 'g', 0, 1)],
		inputs: [f64('a', ['m', 'k']), f32('b', ['k', 'n'])],
		outputs: [f64('g', ['m', 'm'])],
	},
	// Products for singular vectors: float64 accumulation, float32 result.
	mulF32F64: {
		name: 'mul_f32_f64',
		nodes: [castToDouble('a', 'a64'), {opType: 'MatMul', inputs: ['a64', 'b'], outputs: ['c64']}, castTo('c64', 'c', onnxType.float)],
		inputs: [f32('a', ['m', 'k']), f64('b', ['k', 'n'])],
		outputs: [f32('c', ['m', 'n'])],
	},
	mulF64F32: {
		name: 'mul_f64_f32',
		nodes: [castToDouble('b', 'b64'), {opType: 'MatMul', inputs: ['a', 'b64'], outputs: ['c64']}, castTo('c64', 'c', onnxType.float)],
		inputs: [f64('a', ['m', 'k']), f32('b', ['k', 'n'])],
		outputs: [f32('c', ['m', 'n'])],
	},
	matvec: {
		name: 'matvec',
		nodes: [{opType: 'MatMul', inputs: ['a', 'x'], outputs: ['y']}],
		inputs: [f32('a', ['m', 'n']), f32('x', ['n'])],
		outputs: [f32('y', ['m'])],
	},
	// A 1-D first operand makes MatMul compute yᵀA without materialising Aᵀ.
	matvecT: {
		name: 'matvec_t',
		nodes: [{opType: 'MatMul', inputs: ['y', 'a'], outputs: ['x']}],
		inputs: [f32('y', ['m']), f32('a', ['m', 'n'])],
		outputs: [f32('x', ['n'])],
	},
} satisfies Record<string, OnnxGraph>;

type KernelName = keyof typeof kernelGraphs;

/** The float16 bits of a raw F16 input as a Uint16Array (copied when misaligned), else null. */
function halves(input: MatrixInput): Uint16Array | null {
	if (input instanceof Float32Array || input.dtype !== 'F16') {
		return null;
	}

	const {bytes} = input;
	if (bytes.byteOffset % 2 === 0) {
		return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
	}

	return new Uint16Array(Uint8Array.from(bytes).buffer);
}

export async function loadOrt(): Promise<OrtModule> {
	const module = await import('onnxruntime-node') as OrtModule & {default?: OrtModule};
	// The package is CommonJS; depending on the loader its exports arrive on the namespace or on default.
	return typeof module.InferenceSession === 'function' ? module : module.default!;
}

/** Creates the sessions on the given device. Throws (without printing) when onnxruntime cannot load. */
export async function createOrtKernels(device: Device, options: {threads?: number} = {}): Promise<EngineKernels> {
	const ort = await loadOrt();
	const sessionOptions: Ort.InferenceSession.SessionOptions = {
		executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
		graphOptimizationLevel: 'all',
		// Warnings about unused initialisers and the like would go to the process's stderr.
		logSeverityLevel: 3,
		// One thread per session by default: the kernels are small, and on a 2-core machine a spinning
		// onnxruntime pool steals the core the JS thread needs for reads and the r×r work.
		intraOpNumThreads: options.threads ?? 1,
		interOpNumThreads: 1,
	};
	const sessions = new Map<KernelName, Ort.InferenceSession>();
	for (const [name, graph] of Object.entries(kernelGraphs) as Array<[KernelName, OnnxGraph]>) {
		// Sessions are created one after another: creating them concurrently gains nothing on 2 cores.
		sessions.set(name, await ort.InferenceSession.create(encodeModel(graph), sessionOptions));
	}

	const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
	const run = async (name: KernelName, feeds: Record<string, Ort.Tensor>): Promise<Ort.InferenceSession.ReturnType> => {
		const session = sessions.get(name);
		if (!session) {
			throw new Error('onnxruntime kernels were disposed');
		}

		return session.run(feeds);
	};

	const outputF64 = (result: Ort.InferenceSession.ReturnType, name: string): Float64Array => {
		const data = result[name]?.data;
		if (!(data instanceof Float64Array)) {
			throw new TypeError(`kernel output ${name} is not float64`);
		}

		return data;
	};

	const outputF32 = (result: Ort.InferenceSession.ReturnType, name: string): Float32Array => {
		const data = result[name]?.data;
		if (!(data instanceof Float32Array)) {
			throw new TypeError(`kernel output ${name} is not float32`);
		}

		return data;
	};

	/** Both Grams of a LoRA pair through `graph`, or `halvesGraph` when both are raw aligned F16. */
	const pairGrams = async (graph: KernelName, halvesGraph: KernelName, up: MatrixInput, outDim: number, rank: number, down: MatrixInput, inDim: number): Promise<{gu: Float64Array; gd: Float64Array}> => {
		checkLength(`${graph} up`, {length: inputLength(up)}, outDim * rank);
		checkLength(`${graph} down`, {length: inputLength(down)}, rank * inDim);
		if (outDim === 0 || rank === 0 || inDim === 0) {
			return {gu: gramColsJs(toFloat32(up), outDim, rank), gd: gramRowsJs(toFloat32(down), rank, inDim)};
		}

		const upHalves = halves(up);
		const downHalves = halves(down);
		const result = upHalves && downHalves
			? await run(halvesGraph, {up: new ort.Tensor('float16', upHalves, [outDim, rank]), down: new ort.Tensor('float16', downHalves, [rank, inDim])})
			: await run(graph, {up: tensor(toFloat32(up), [outDim, rank]), down: tensor(toFloat32(down), [rank, inDim])});
		return {gu: outputF64(result, 'gu'), gd: outputF64(result, 'gd')};
	};

	return {
		backend: 'onnxruntime',
		device,
		async gramCols(m, rows, cols) {
			checkLength('gramCols', m, rows * cols);
			if (rows === 0 || cols === 0) {
				return gramColsJs(m, rows, cols);
			}

			return outputF64(await run('gramCols', {m: tensor(m, [rows, cols])}), 'g');
		},
		async gramRows(m, rows, cols) {
			checkLength('gramRows', m, rows * cols);
			if (rows === 0 || cols === 0) {
				return gramRowsJs(m, rows, cols);
			}

			return outputF64(await run('gramRows', {m: tensor(m, [rows, cols])}), 'g');
		},
		gramPair: async (up, outDim, rank, down, inDim) => pairGrams('gramPair', 'gramPairF16', up, outDim, rank, down, inDim),
		gramPairSingle: async (up, outDim, rank, down, inDim) => pairGrams('gramPairSingle', 'gramPairSingleF16', up, outDim, rank, down, inDim),
		async matmul(a, aRows, aCols, b, bCols) {
			checkLength('matmul a', a, aRows * aCols);
			checkLength('matmul b', b, aCols * bCols);
			if (aRows === 0 || aCols === 0 || bCols === 0) {
				return new Float32Array(aRows * bCols);
			}

			return outputF32(await run('matmul', {a: tensor(a, [aRows, aCols]), b: tensor(b, [aCols, bCols])}), 'c');
		},
		async productGramCols(a, aRows, aCols, b, bCols) {
			checkLength('productGramCols a', {length: inputLength(a)}, aRows * aCols);
			checkLength('productGramCols b', b, aCols * bCols);
			if (aRows === 0 || aCols === 0 || bCols === 0) {
				return new Float64Array(bCols * bCols);
			}

			return outputF64(await run('productGramCols', {a: tensor(toFloat32(a), [aRows, aCols]), b: new ort.Tensor('float64', b, [aCols, bCols])}), 'g');
		},
		async productGramRows(a, aRows, aCols, b, bCols) {
			checkLength('productGramRows a', a, aRows * aCols);
			checkLength('productGramRows b', {length: inputLength(b)}, aCols * bCols);
			if (aRows === 0 || aCols === 0 || bCols === 0) {
				return new Float64Array(aRows * aRows);
			}

			return outputF64(await run('productGramRows', {a: new ort.Tensor('float64', a, [aRows, aCols]), b: tensor(toFloat32(b), [aCols, bCols])}), 'g');
		},
		async mulF32F64(a, aRows, aCols, b, bCols) {
			checkLength('mulF32F64 a', {length: inputLength(a)}, aRows * aCols);
			checkLength('mulF32F64 b', b, aCols * bCols);
			if (aRows === 0 || aCols === 0 || bCols === 0) {
				return new Float32Array(aRows * bCols);
			}

			return outputF32(await run('mulF32F64', {a: tensor(toFloat32(a), [aRows, aCols]), b: new ort.Tensor('float64', b, [aCols, bCols])}), 'c');
		},
		async mulF64F32(a, aRows, aCols, b, bCols) {
			checkLength('mulF64F32 a', a, aRows * aCols);
			checkLength('mulF64F32 b', {length: inputLength(b)}, aCols * bCols);
			if (aRows === 0 || aCols === 0 || bCols === 0) {
				return new Float32Array(aRows * bCols);
			}

			return outputF32(await run('mulF64F32', {a: new ort.Tensor('float64', a, [aRows, aCols]), b: tensor(toFloat32(b), [aCols, bCols])}), 'c');
		},
		async matvec(a, rows, cols, x) {
			checkLength('matvec a', a, rows * cols);
			checkLength('matvec x', x, cols);
			if (rows === 0 || cols === 0) {
				return new Float32Array(rows);
			}

			return outputF32(await run('matvec', {a: tensor(a, [rows, cols]), x: tensor(x, [cols])}), 'y');
		},
		async matvecT(a, rows, cols, y) {
			checkLength('matvecT a', a, rows * cols);
			checkLength('matvecT y', y, rows);
			if (rows === 0 || cols === 0) {
				return new Float32Array(cols);
			}

			return outputF32(await run('matvecT', {y: tensor(y, [rows]), a: tensor(a, [rows, cols])}), 'x');
		},
		async dispose() {
			const all = [...sessions.values()];
			sessions.clear();
			await Promise.all(all.map(async session => session.release()));
		},
	};
}
